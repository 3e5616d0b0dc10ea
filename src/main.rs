//! `cwasm`: precompiled WebAssembly keyed on wasmtime's
//! `Engine::serialization_compatibility_hash`. See README.md.

use std::path::PathBuf;
use wasmtime::error::Context;
use wasmtime::{Engine, Instance, Module, Store};
use wasmtime::{Result, bail};

const EXAMPLE_WAT: &str = include_str!("../examples/hello.wat");

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") | None => demo(),
        Some(other) => bail!("unknown command `{other}`; try `cwasm demo`"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Shows the feature end to end: this host's hash, a freshly precompiled
/// artifact whose section yields the same hash, and the artifact loaded back.
fn demo() -> Result<()> {
    let engine = Engine::default();
    let hash = engine.serialization_compatibility_hash()?;
    println!("engine hash of this host's default config: {}", hex(&hash));

    let artifact = engine
        .precompile_module(EXAMPLE_WAT.as_bytes())
        .context("precompiling examples/hello.wat")?;
    let dir = tempdir()?;
    let path = dir.join(format!("{}.cwasm", hex(&hash)));
    std::fs::write(&path, &artifact).with_context(|| format!("writing {}", path.display()))?;
    let read_back = Engine::detect_serialization_compatibility_hash_file(&path)?
        .context("the artifact has no engine section")?;
    println!(
        "engine hash read back from {} ({} bytes): {}",
        path.display(),
        artifact.len(),
        hex(&read_back)
    );
    if read_back != hash {
        bail!("the artifact's hash differs from the engine's");
    }

    // SAFETY: the file was just produced by this engine, and its engine
    // section was checked against this engine's hash above.
    let module = unsafe { Module::deserialize_file(&engine, &path)? };
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[])?;
    let answer = instance.get_typed_func::<(), i32>(&mut store, "answer")?;
    println!(
        "loaded it back and called `answer`: {}",
        answer.call(&mut store, ())?
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cwasm-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
