//! `pair_counts <op> <n>`: runs one operation `n` times, for `cargo xtask
//! bench` to count its instructions under valgrind (cachegrind), built once
//! against pristine wasmtime 48.0.8 and once against the fork, from this
//! same file, lockfile, feature set and profile. Uses only upstream API.
//!
//! The setup (parsing, the one compile `deserialize` needs) is the same for
//! every `n`, so the cost of one operation is the difference of two counts
//! divided by the difference of their `n`. Compilation runs on one thread:
//! work stealing would make the counts vary from run to run.
//!
//! Operations:
//! - `precompile`: `Engine::precompile_module` of a 500-function module;
//! - `deserialize`: `Module::deserialize_file` of its artifact;
//! - `upstream-hash`: `precompile_compatibility_hash()` fed to `DefaultHasher`.

mod common;

use std::hash::{Hash, Hasher};
use std::hint::black_box;
use wasmtime::{Engine, Module, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, n] = &args[..] else {
        bail!("usage: pair_counts <precompile|deserialize|upstream-hash> <n>");
    };
    let n: usize = n.parse()?;
    let mut config = common::fixed_cpu_config();
    config.parallel_compilation(false);
    let engine = Engine::new(&config)?;
    let wasm = wat::parse_str(common::code_module(500))?;
    match op.as_str() {
        "precompile" => {
            for _ in 0..n {
                black_box(engine.precompile_module(black_box(&wasm))?);
            }
        }
        "deserialize" => {
            let path = std::env::temp_dir().join("cwasm-pair-counts.cwasm");
            std::fs::write(&path, engine.precompile_module(&wasm)?)?;
            for _ in 0..n {
                // SAFETY: compiled by this engine just above.
                black_box(unsafe { Module::deserialize_file(&engine, &path)? });
            }
            std::fs::remove_file(&path)?;
        }
        "upstream-hash" => {
            for _ in 0..n {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut hasher);
                black_box(hasher.finish());
            }
        }
        other => bail!("unknown operation `{other}`"),
    }
    Ok(())
}
