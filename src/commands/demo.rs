//! `demo`, the main job: the feature end to end, on the local store.

use crate::printable;
use crate::store_args::{StoreArgs, default_store};
use cwasm_store::{Digest, Key};
use wasmtime::error::Context;
use wasmtime::{Engine, Instance, Result, Store, bail};

const EXAMPLE_WAT: &str = include_str!("../../examples/hello.wat");

/// The main job: the feature end to end, on the local store.
pub fn demo(store_args: &StoreArgs) -> Result<()> {
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
        "examples/hello.wat is stored at {}/{}",
        printable(&cwasm_store::shown_location(&location)),
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
