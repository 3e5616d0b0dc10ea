//! `cwasm`: precompiled WebAssembly keyed on wasmtime's
//! `Engine::serialization_compatibility_hash`, for operators. See README.md.

mod flags;

use clap::{Args, Parser, Subcommand};
use cwasm_store::{ArtifactStore, CpuProfile, Digest, HostInfo, Key, StoreConfig};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wasmtime::error::Context;
use wasmtime::{Engine, Instance, Result, Store, bail};

const EXAMPLE_WAT: &str = include_str!("../examples/hello.wat");

/// Exit status for invalid usage, as clap uses for its own errors.
const EXIT_USAGE: u8 = 2;

/// Exit status when `verify` finds bad entries.
const EXIT_BAD_ENTRIES: u8 = 3;

#[derive(Parser)]
#[command(
    name = "cwasm",
    version,
    about = "Precompiled WebAssembly stored by wasmtime's serialization compatibility hash",
    after_help = "\
Stores: --store takes a directory or an object store URL (s3://bucket/prefix,
gs://..., az://..., http(s)://...); credentials and endpoints come from the
usual environment variables (AWS_ACCESS_KEY_ID, AWS_ENDPOINT, ...). Without
--store, the local store in your cache directory is used
($XDG_CACHE_HOME/cwasm or ~/.cache/cwasm on Linux, ~/Library/Caches/cwasm on
macOS, the local application data folder on Windows), or the `directory` of
--cache-config.

Exit status: 0 success; 1 error; 2 invalid usage; 3 `verify` found bad entries."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the engine hash of this host's default config, or of the config
    /// the flags describe.
    Hash {
        #[command(flatten)]
        engine: flags::EngineFlags,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what this machine's engine records: its target and every
    /// Cranelift ISA setting detected here (the input of `baseline`).
    Host {
        /// Print JSON (a host file for `baseline`).
        #[arg(long)]
        json: bool,
    },
    /// Compute the CPU baseline every given host has, from the output of
    /// `cwasm host --json` on each kind of machine (or profiles), and print
    /// the flags that select it, the profile, and the engine hash it gives.
    Baseline {
        /// Host files (`cwasm host --json`) or profiles, one per kind of
        /// machine.
        #[arg(required = true, value_name = "HOST")]
        hosts: Vec<PathBuf>,
        /// Also write the profile (TOML) to this file, for `--profile`.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a precompiled artifact (.cwasm) was compiled for.
    Inspect {
        /// The artifact.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Precompile wasm modules and components into the store, in parallel.
    Compile {
        /// The .wasm (or .wat) files.
        #[arg(required = true, value_name = "WASM")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        engine: flags::EngineFlags,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the store: per engine hash, entries, bytes and what it is for.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every entry's engine stamp against its key (and its HMAC tag,
    /// with --hmac-key-file). Exits with 3 if any entry is bad.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the size and count limits, and with --keep, drop every other
    /// engine generation.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Keep only these engine hashes (hex), deleting all other prefixes.
        #[arg(long, num_args = 1..)]
        keep: Vec<String>,
        /// Report what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The main job: compile a bundled example into the local store, show its
    /// hash, and load it back from the store.
    Demo {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// Directory or object store URL of the store.
    #[arg(long)]
    store: Option<String>,
    /// A wasmtime cache config file (`[cache]` TOML, as `wasmtime -C
    /// cache-config=FILE` takes): limits, and the directory when --store is
    /// not given.
    #[arg(long, value_name = "FILE")]
    cache_config: Option<PathBuf>,
    /// File holding the key for HMAC-SHA-256 entry tags.
    #[arg(long)]
    hmac_key_file: Option<PathBuf>,
    /// Compress artifacts with zstd in object stores.
    #[arg(long)]
    compress: bool,
}

impl StoreArgs {
    fn open(&self) -> Result<ArtifactStore> {
        let (mut config, directory) = match &self.cache_config {
            Some(path) => StoreConfig::from_cache_file(path)?,
            None => (StoreConfig::default(), None),
        };
        config.hmac_key = match &self.hmac_key_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("failed to read HMAC key {}", path.display()))?,
            ),
            None => None,
        };
        config.compress_remote = self.compress;
        let location = match (&self.store, directory) {
            (Some(store), _) => store.clone(),
            (None, Some(dir)) => dir.display().to_string(),
            (None, None) => default_store()?.display().to_string(),
        };
        ArtifactStore::open_location(&location, config)
            .with_context(|| format!("failed to open the store at {location}"))
    }
}

/// `cwasm` in the platform's cache directory, found as wasmtime's own cache
/// finds its directory (`directories-next`): `$XDG_CACHE_HOME` (when
/// absolute) or `~/.cache` on Linux, `~/Library/Caches` on macOS, the local
/// application data folder on Windows.
fn default_store() -> Result<PathBuf> {
    let dirs = directories_next::BaseDirs::new()
        .context("no home directory to find a cache directory in: pass --store")?;
    Ok(dirs.cache_dir().join("cwasm"))
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<flags::InvalidOptions>() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command whose reader goes away (`cwasm inspect app.cwasm | head -2`)
/// stops quietly, as other Unix tools do. Rust starts programs with SIGPIPE
/// ignored, which turns the next write into a panic in `println!`; this
/// restores the default action.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists;
    // it only resets one signal's disposition to the default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Hash { engine, json } => hash(&engine, json)?,
        Command::Host { json } => host(json)?,
        Command::Baseline { hosts, write, json } => baseline(&hosts, write.as_deref(), json)?,
        Command::Inspect { file, json } => inspect(&file, json)?,
        Command::Compile {
            files,
            engine,
            store,
            json,
        } => compile(&files, &engine, &store, json)?,
        Command::Ls { store, json } => ls(&store, json)?,
        Command::Verify { store, json } => return verify(&store, json),
        Command::Gc {
            store,
            keep,
            dry_run,
            json,
        } => gc(&store, &keep, dry_run, json)?,
        Command::Demo { store } => demo(&store)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn hash(flags: &flags::EngineFlags, json: bool) -> Result<()> {
    let engine = flags.engine()?;
    let hash = Digest(engine.serialization_compatibility_hash()?);
    if json {
        // What an artifact of this engine would record.
        let info = cwasm_store::inspect(&engine.precompile_module(b"(module)")?)?;
        print_json(&serde_json::json!({
            "engine_hash": hash.to_string(),
            "version": info.version,
            "target": info.target,
        }))
    } else {
        println!("{hash}");
        Ok(())
    }
}

fn host(json: bool) -> Result<()> {
    let info = HostInfo::detect(&wasmtime::Config::new())?;
    if json {
        return print_json(&info);
    }
    println!("target:      {}", info.target);
    println!("engine hash: {}", info.engine_hash);
    println!("version:     {}", printable(&info.version));
    let on: Vec<&str> = info
        .flags
        .iter()
        .filter(|(_, v)| *v == "true")
        .map(|(n, _)| n.as_str())
        .collect();
    let other: Vec<String> = info
        .flags
        .iter()
        .filter(|(_, v)| *v != "true")
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    println!("features:    {}", on.join(" "));
    println!("other:       {}", other.join(" "));
    Ok(())
}

fn baseline(files: &[PathBuf], write: Option<&Path>, json: bool) -> Result<()> {
    let hosts = files
        .iter()
        .map(|path| CpuProfile::from_file(path))
        .collect::<Result<Vec<_>>>()?;
    let profile = CpuProfile::baseline(&hosts)?;
    let hash = Digest(profile.engine_hash()?);
    let toml = profile.to_toml()?;
    if let Some(path) = write {
        std::fs::write(path, &toml)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    if json {
        return print_json(&serde_json::json!({
            "engine_hash": hash.to_string(),
            "flags": profile.cli_flags(),
            "profile": profile,
        }));
    }
    println!("# {} hosts, target {}", hosts.len(), profile.target);
    println!("engine hash: {hash}");
    println!("flags:       {}", profile.cli_flags().join(" "));
    println!("profile:\n{toml}");
    Ok(())
}

/// `text` with control characters escaped (`\u{1b}`, `\n`, ...): text read
/// from artifacts and stores is someone else's, and must not drive the
/// operator's terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn inspect(file: &Path, json: bool) -> Result<()> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    let info = cwasm_store::inspect(&bytes).with_context(|| format!("{}", file.display()))?;
    if json {
        return print_json(&info);
    }
    println!("file:         {}", file.display());
    println!("kind:         {}", info.kind);
    println!("engine hash:  {}", info.engine_hash);
    println!("version:      {}", printable(&info.version));
    println!("target:       {}", printable(&info.target));
    let show = |flags: &[cwasm_store::FlagSetting]| {
        let shown = flags
            .iter()
            .map(|f| format!("{}={}", f.name, f.value))
            .collect::<Vec<_>>()
            .join(" ");
        printable(&shown)
    };
    println!("shared flags: {}", show(&info.shared_flags));
    println!("isa flags:    {}", show(&info.isa_flags));
    Ok(())
}

/// Whether `bytes` (binary or text) is a component rather than a core module.
/// The first 4 KiB of `file`: enough for [`is_component`].
fn head(file: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(4096).read_to_end(&mut bytes))
        .with_context(|| format!("failed to read {}", file.display()))?;
    Ok(bytes)
}

fn is_component(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"\0asm") {
        // Core modules have version 1, layer 0; components layer 1.
        return bytes.get(6..8) == Some(&[1, 0]);
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    text.lines()
        .map(|l| l.split(";;").next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with("(component"))
}

#[derive(serde::Serialize)]
struct Compiled {
    file: String,
    kind: &'static str,
    engine: String,
    wasm: String,
    error: Option<String>,
}

fn compile(
    files: &[PathBuf],
    flags: &flags::EngineFlags,
    store: &StoreArgs,
    json: bool,
) -> Result<()> {
    let engine = flags.engine()?;
    let store = store.open()?;
    // Digests of unchanged files, remembered from earlier runs (in the
    // user's cache directory, next to the default store).
    let remembered = default_store()
        .ok()
        .map(|dir| dir.with_file_name("cwasm-remembered-digests.json"));
    if let Some(file) = &remembered
        && let Err(e) = store.load_remembered_digests(file)
    {
        eprintln!("warning: {e:#}");
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
        eprintln!("warning: {e:#}");
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

fn ls(store: &StoreArgs, json: bool) -> Result<()> {
    let engines = store.open()?.engines()?;
    if json {
        return print_json(&engines);
    }
    if engines.is_empty() {
        println!("(empty store)");
    }
    for e in engines {
        let what = match &e.descriptor {
            // Read from the store: anyone who can write to it wrote it.
            Some(d) => printable(&format!("wasmtime {} {}", d.wasmtime_version, d.target)),
            None => "(no descriptor)".to_string(),
        };
        println!(
            "{}  {:>6} entries  {:>12} bytes  {what}",
            e.engine, e.entries, e.bytes
        );
    }
    Ok(())
}

fn verify(store: &StoreArgs, json: bool) -> Result<ExitCode> {
    let store = store.open()?;
    let checked = store.list()?.len();
    let bad = store.verify()?;
    let strays = store.strays()?;
    if json {
        let bad: Vec<_> = bad
            .iter()
            .map(|(key, reason)| serde_json::json!({ "key": key, "reason": reason }))
            .collect();
        print_json(&serde_json::json!({ "checked": checked, "bad": bad, "strays": strays }))?;
    } else {
        for (key, reason) in &bad {
            println!("bad {}/{}: {}", key.engine, key.wasm, printable(reason));
        }
        for stray in &strays {
            println!(
                "stray {}: not a store entry (ignored by lookups)",
                printable(stray)
            );
        }
        println!(
            "{checked} entries checked, {} bad, {} stray objects",
            bad.len(),
            strays.len()
        );
    }
    Ok(if bad.is_empty() && strays.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_ENTRIES)
    })
}

fn gc(store: &StoreArgs, keep: &[String], dry_run: bool, json: bool) -> Result<()> {
    let store = store.open()?;
    let mut dropped = Vec::new();
    if !keep.is_empty() {
        let keep: Vec<Digest> = keep.iter().map(|h| h.parse()).collect::<Result<_>>()?;
        for e in store.engines()? {
            if !keep.contains(&e.engine) {
                dropped.push(e);
            }
        }
        if !dry_run {
            store.retain(&keep)?;
        }
    }
    let report = store.gc(dry_run)?;
    if json {
        return print_json(&serde_json::json!({
            "dry_run": dry_run,
            "dropped_engines": dropped,
            "limits": report,
        }));
    }
    let verb = if dry_run { "would drop" } else { "dropped" };
    for e in &dropped {
        println!(
            "{verb} engine {} ({} entries, {} bytes)",
            e.engine, e.entries, e.bytes
        );
    }
    let verb = if dry_run { "would evict" } else { "evicted" };
    println!(
        "{verb} {} of {} entries ({} of {} bytes) to meet the limits",
        report.deleted.len(),
        report.entries_before,
        report.bytes_freed,
        report.bytes_before
    );
    Ok(())
}

/// The main job: the feature end to end, on the local store.
fn demo(store_args: &StoreArgs) -> Result<()> {
    let engine = Engine::default();
    let hash = Digest(engine.serialization_compatibility_hash()?);
    println!("engine hash of this host's default config: {hash}");

    let store = store_args.open()?;
    // Compiles and stores the example the first time, finds it afterwards.
    store.get_or_compile_module(&engine, EXAMPLE_WAT.as_bytes())?;
    let key = Key::new(&engine, EXAMPLE_WAT.as_bytes())?;
    let location = store_args
        .store
        .clone()
        .map_or_else(|| default_store().map(|p| p.display().to_string()), Ok)?;
    println!(
        "examples/hello.wat is stored at {location}/{}",
        key.artifact_path()
    );
    let artifact = store
        .get(&key)?
        .context("the example is not in the store after compiling it")?;
    let read_back = Engine::detect_serialization_compatibility_hash(&artifact)
        .context("the stored artifact has no engine section")?;
    println!(
        "engine hash read back from the stored artifact: {}",
        Digest(read_back)
    );
    if read_back != hash.0 {
        bail!("the stored artifact's hash differs from the engine's");
    }
    // Now certainly a hit: loaded (memory-mapped) from the store.
    let module = store.get_or_compile_module(&engine, EXAMPLE_WAT.as_bytes())?;
    let mut wasm_store = Store::new(&engine, ());
    let instance = Instance::new(&mut wasm_store, &module, &[])?;
    let answer = instance.get_typed_func::<(), i32>(&mut wasm_store, "answer")?;
    println!(
        "loaded it from the store and called `answer`: {}",
        answer.call(&mut wasm_store, ())?
    );
    let stats = store.stats();
    println!(
        "store: {} hit(s), {} miss(es), {} compile(s)",
        stats.hits, stats.misses, stats.compiles
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_stores_are_escaped() {
        assert_eq!(printable("48\u{1b}[2J\nx86_64"), "48\\u{1b}[2J\\nx86_64");
        assert_eq!(
            printable("wasmtime 48 x86_64-unknown-linux-gnu"),
            "wasmtime 48 x86_64-unknown-linux-gnu"
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn components_are_told_from_modules() {
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(is_component(b";; a comment\n(component)"));
        assert!(!is_component(b"(module)"));
    }
}
