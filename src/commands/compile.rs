//! `compile`: precompile wasm files into the store, in parallel.

use crate::store_args::{StoreArgs, default_store};
use crate::{flags, print_json};
use cwasm_store::{ArtifactStore, Key};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use wasmtime::error::Context;
use wasmtime::{Engine, Result, bail};

/// How much of a file [`is_component`] looks at: room for a long licence
/// comment before a text file's first form.
const HEAD: u64 = 64 << 10;

/// The first [`HEAD`] bytes of `file`.
fn head(file: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(HEAD).read_to_end(&mut bytes))
        .with_context(|| format!("failed to read {}", file.display()))?;
    Ok(bytes)
}

/// Whether `bytes`, the start of a binary or text file, is a component
/// rather than a core module: wasmparser reads a binary's header, and the
/// text format's own lexer (comments of both kinds skipped) finds the
/// first form.
fn is_component(bytes: &[u8]) -> bool {
    use wast::lexer::{Lexer, TokenKind};
    if bytes.starts_with(b"\0asm") {
        return wasmparser::Parser::is_component(bytes);
    }
    let text = String::from_utf8_lossy(bytes);
    let lexer = Lexer::new(&text);
    let mut tokens = lexer.iter(0).map_while(Result::ok).filter(|t| {
        !matches!(
            t.kind,
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment
        )
    });
    tokens.next().is_some_and(|t| t.kind == TokenKind::LParen)
        && tokens
            .next()
            .is_some_and(|t| t.kind == TokenKind::Keyword && t.keyword(&text) == "component")
}

#[derive(serde::Serialize)]
struct Compiled {
    file: String,
    kind: &'static str,
    engine: String,
    wasm: String,
    error: Option<String>,
}

pub fn compile(
    files: &[PathBuf],
    flags: &flags::EngineFlags,
    store: &StoreArgs,
    json: bool,
) -> Result<()> {
    let engine = flags.engine()?;
    // Compiling is what was asked: an artifact of this very engine, even
    // where one built for fewer CPU features would load here.
    let store = store.open_with(|config| {
        config.reuse_cpu_subsets = false;
        config.producer.profile = flags.profile_name();
    })?;
    // Digests of unchanged files, remembered from earlier runs (in the
    // user's cache directory, next to the default store).
    let remembered = default_store()
        .ok()
        .map(|dir| dir.with_file_name("cwasm-remembered-digests.json"));
    if let Some(file) = &remembered
        && let Err(e) = store.load_remembered_digests(file)
    {
        eprintln!("warning: {}", crate::printable(&format!("{e:#}")));
    }
    let progress = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                .expect("a valid template"),
        );
        bar
    });
    // In parallel on rayon's pool (one thread per core); the results, and so
    // the JSON, come in the order the files were given.
    let results: Vec<Compiled> = files
        .par_iter()
        .map(|file| {
            let result = compile_one(&engine, &store, file);
            let line = match &result.error {
                None => format!(
                    "compiled {} ({}) -> {}/{}",
                    result.file, result.kind, result.engine, result.wasm
                ),
                Some(e) => format!("failed {}: {e}", result.file),
            };
            match &progress {
                Some(bar) => {
                    bar.println(&line);
                    bar.inc(1);
                }
                None if !json => println!("{line}"),
                None => {}
            }
            result
        })
        .collect();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(file) = &remembered
        && let Err(e) = store.save_remembered_digests(file)
    {
        eprintln!("warning: {}", crate::printable(&format!("{e:#}")));
    }
    if json {
        print_json(&results)?;
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} of {} files failed to compile", results.len());
    }
    Ok(())
}

fn compile_one(engine: &Engine, store: &ArtifactStore, file: &Path) -> Compiled {
    let mut out = Compiled {
        file: file.display().to_string(),
        kind: "module",
        engine: String::new(),
        wasm: String::new(),
        error: None,
    };
    let result = (|| -> Result<()> {
        // By path: an unchanged file's digest is remembered (across runs,
        // see `compile`), so it is not hashed again.
        let digest = store.file_digest(file)?;
        let key = Key::with_wasm_digest(engine, digest)?;
        out.engine = key.engine.to_string();
        out.wasm = key.wasm.to_string();
        if is_component(&head(file)?) {
            out.kind = "component";
            store.get_or_compile_component_file(engine, file)?;
        } else {
            store.get_or_compile_module_file(engine, file)?;
        }
        Ok(())
    })();
    out.error = result.err().map(|e| format!("{e:#}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_told_from_modules() {
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(is_component(b";; a comment\n(component)"));
        assert!(is_component(b"(; a (module) ;)\n  (component $c)"));
        assert!(!is_component(b"(;;) (module (; (component) ;))"));
        assert!(!is_component(b"(module)"));
        assert!(!is_component(b"not wasm"));
    }
}
