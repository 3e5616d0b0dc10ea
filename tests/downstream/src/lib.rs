//! A crate written the way a downstream embedder writes one (see
//! `Cargo.toml`): it depends on `wasmtime = "48"` and `wasmtime-wasi = "48"`
//! from the package registry and reaches the fork only through the root
//! manifest's `[patch.crates-io]`. If the override did not unify with the
//! registry crates, `wasmtime-wasi`'s `Linker` would be another crate's type
//! than ours and this would not compile.

use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module, Result};

/// Where a precompiled `wasm` lives under `dir`: keyed on the engine's
/// compatibility hash, then on the wasm's own digest.
pub fn artifact_path(engine: &Engine, dir: &Path, wasm_digest: &str) -> Result<PathBuf> {
    let engine_hash: String = engine
        .serialization_compatibility_hash()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(dir.join(engine_hash).join(format!("{wasm_digest}.cwasm")))
}

/// Loads a module from `dir`, compiling and storing it on a miss.
pub fn load_or_compile(engine: &Engine, dir: &Path, wasm: &[u8], digest: &str) -> Result<Module> {
    let path = artifact_path(engine, dir, digest)?;
    if Engine::detect_serialization_compatibility_hash_file(&path)
        .ok()
        .flatten()
        == Some(engine.serialization_compatibility_hash()?)
    {
        // SAFETY: the file is an artifact whose engine section matches this
        // engine's, written by `load_or_compile` below.
        return unsafe { Module::deserialize_file(engine, &path) };
    }
    let artifact = engine.precompile_module(wasm)?;
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, &artifact)?;
    // SAFETY: produced by this engine just now.
    unsafe { Module::deserialize(engine, &artifact) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Linker, Store};
    use wasmtime_wasi::WasiCtxBuilder;
    use wasmtime_wasi::p1::WasiP1Ctx;

    /// A WASI preview 1 command asking for its argument count.
    const WASI_WAT: &str = r#"(module
      (import "wasi_snapshot_preview1" "args_sizes_get"
        (func $args_sizes_get (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "argc") (result i32)
        (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
        (i32.load (i32.const 0))))"#;

    #[test]
    fn registry_crates_use_the_fork() -> Result<()> {
        let engine = Engine::default();
        let dir = tempfile_dir();
        let first = load_or_compile(&engine, &dir, WASI_WAT.as_bytes(), "wasi-argc")?;
        let path = artifact_path(&engine, &dir, "wasi-argc")?;
        assert_eq!(
            Engine::detect_serialization_compatibility_hash_file(&path)?,
            Some(engine.serialization_compatibility_hash()?)
        );
        // Second time round it is a hit, loaded from the file.
        let second = load_or_compile(&engine, &dir, WASI_WAT.as_bytes(), "wasi-argc")?;

        for module in [first, second] {
            let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
            let wasi = WasiCtxBuilder::new().args(&["a", "b", "c"]).build_p1();
            let mut store = Store::new(&engine, wasi);
            let instance = linker.instantiate(&mut store, &module)?;
            let argc = instance.get_typed_func::<(), i32>(&mut store, "argc")?;
            assert_eq!(argc.call(&mut store, ())?, 3);
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("downstream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
