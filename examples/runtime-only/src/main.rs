//! A host whose wasmtime cannot compile (built without Cranelift or Winch),
//! loading precompiled artifacts from a cwasm store.
//!
//! Such a host cannot compute its engine's compatibility hash, which
//! describes a compiler's settings, so it cannot look an artifact up by key.
//! It looks up by wasm digest instead: the store reads the engine section of
//! each engine it holds, asks this host's wasmtime whether it would load
//! that engine's artifacts, and loads the best one it accepts
//! (`ArtifactStore::load_module`).
//!
//! ```text
//! cwasm-runtime-host STORE WASM [EXPORT]
//! ```
//!
//! calls `EXPORT` (default `answer`, a function with no parameters and one
//! `i32` result) of the module compiled from `WASM` (the file the artifact
//! was compiled from: only its SHA-256 is used) and prints the result. With
//! no acceptable artifact, it prints why each stored engine was refused and
//! exits with 2.

use cwasm_store::{ArtifactStore, Digest, Verdict};
use std::process::ExitCode;
use wasmtime::error::Context;
use wasmtime::{Config, Engine, Instance, Result, Store};

/// How this build numbers wasmtime's runtime builtins (which compiled code
/// calls by number): the count, and the numbers of one builtin behind no
/// feature, one behind `gc` and one behind `threads` (neither of which this
/// build has).
fn builtins() -> String {
    use wasmtime_environ::BuiltinFunctionIndex as B;
    format!(
        "len={} floor_f32={} gc_alloc_raw={} memory_atomic_wait32={}",
        B::len(),
        B::floor_f32().index(),
        B::gc_alloc_raw().index(),
        B::memory_atomic_wait32().index()
    )
}

fn main() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (store_dir, wasm_path, export) = match &args[..] {
        [flag] if flag == "--builtins" => {
            println!("{}", builtins());
            return Ok(ExitCode::SUCCESS);
        }
        [store, wasm] => (store, wasm, "answer"),
        [store, wasm, export] => (store, wasm, export.as_str()),
        _ => {
            eprintln!("usage: cwasm-runtime-host STORE WASM [EXPORT]");
            return Ok(ExitCode::from(64));
        }
    };
    let engine = Engine::new(&Config::new())?;
    let store = ArtifactStore::open(store_dir)?;
    let wasm = std::fs::read(wasm_path).with_context(|| format!("failed to read {wasm_path}"))?;
    let digest = Digest::of(&wasm);

    let Some(module) = store.load_module(&engine, digest)? else {
        eprintln!("no stored artifact of {wasm_path} ({digest}) that this host accepts:");
        for (stored, verdict) in store.engine_verdicts(&engine)? {
            match verdict {
                Verdict::Accepted { .. } => {
                    eprintln!("  {stored}: accepted, but has no artifact of it")
                }
                Verdict::Refused(why) => eprintln!("  {stored}: refused: {why}"),
            }
        }
        return Ok(ExitCode::from(2));
    };
    let stats = store.stats();
    let served_by = stats
        .last_reused_engine
        .context("a hit of a host without a compiler is always another engine's")?;
    let mut instance_store = Store::new(&engine, ());
    let instance = Instance::new(&mut instance_store, &module, &[])?;
    let func = instance.get_typed_func::<(), i32>(&mut instance_store, export)?;
    let result = func.call(&mut instance_store, ())?;
    println!("engine {served_by}");
    println!("{export}() = {result}");
    Ok(ExitCode::SUCCESS)
}
