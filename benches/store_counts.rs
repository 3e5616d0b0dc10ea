//! `store_counts prepare <dir>`, then `store_counts <op> <dir> <n>`: the
//! fork's hash, reader and hit paths, one operation `n` times, for `cargo
//! xtask bench` to count instructions under valgrind (cachegrind).
//!
//! `prepare` runs natively: it compiles the hit module (about 1 MB of wasm,
//! a 10 MB artifact) into an unkeyed store, a keyed store, a signed store
//! (the farm's public key in `farm.pub`) and wasmtime's own
//! cache, all with an engine whose code does not depend on the CPU (so that
//! the engine under valgrind is the same). Each operation's cost is then the
//! difference of two counts over the difference of their `n`: the setup
//! (opening the stores, the first call that hashes a file) cancels out.
//!
//! `store_counts hit-remote <dir> <n>` is not counted (valgrind would time
//! out the network): with the S3 environment `cargo xtask bench` sets
//! (`CWASM_TEST_S3_URL`, `AWS_ENDPOINT`, ...), it runs `n` remote hits
//! into cold local tiers, for `strace -c` (docs/performance.md).

mod common;

use cwasm_store::{ArtifactStore, Digest, LocalDir, SigningKey, StoreConfig, TrustedKey};
use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::path::Path;
use wasmtime::{Cache, CacheConfig, Engine, Module, Result, bail};

/// Every operation, in the order `cargo xtask bench` reports them.
const OPS: &[&str] = &[
    "engine",
    "hash-cold",
    "hash-warm",
    "upstream-hash",
    "detect",
    "detect-file",
    "deserialize-file",
    "hit",
    "hit-digest",
    "hit-file",
    "hit-keyed",
    "hit-keyed-digest",
    "hit-signed-digest",
    "hit-subset-digest",
    "wasmtime-cache-hit",
];

const KEY: &[u8] = b"a 32-byte key for the bench only";

fn new_engine(cache: Option<&Path>) -> Result<Engine> {
    let mut config = common::fixed_cpu_config();
    config.parallel_compilation(false);
    if let Some(dir) = cache {
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        config.cache(Some(Cache::new(cache)?));
    }
    Engine::new(&config)
}

/// [`new_engine`] with AVX on (which valgrind's CPU has too).
fn wider_engine() -> Result<Engine> {
    let mut config = common::fixed_cpu_config();
    config.parallel_compilation(false);
    // SAFETY: checked against the host when an artifact is loaded.
    unsafe {
        config.cranelift_flag_enable("has_avx");
    }
    Engine::new(&config)
}

fn keyed(dir: &Path) -> Result<ArtifactStore> {
    let config = StoreConfig {
        hmac_key: Some(KEY.to_vec()),
        ..StoreConfig::default()
    };
    ArtifactStore::new(Some(LocalDir::new(dir.join("keyed"))?), None, config)
}

/// A host's store on the farm's signed entries: it holds the public key
/// only, from the PEM `prepare` wrote.
fn signed(dir: &Path) -> Result<ArtifactStore> {
    let public = std::fs::read_to_string(dir.join("farm.pub"))?;
    let config = StoreConfig {
        trusted_keys: vec![TrustedKey::from_pem(&public)?],
        ..StoreConfig::default()
    };
    ArtifactStore::new(Some(LocalDir::new(dir.join("signed"))?), None, config)
}

fn prepare(dir: &Path) -> Result<()> {
    let wasm = wat::parse_str(common::hit_module())?;
    std::fs::write(dir.join("app.wasm"), &wasm)?;
    let engine = new_engine(None)?;
    std::fs::write(dir.join("app.cwasm"), engine.precompile_module(&wasm)?)?;
    ArtifactStore::open(dir.join("store"))?.get_or_compile_module(&engine, &wasm)?;
    keyed(dir)?.get_or_compile_module(&engine, &wasm)?;
    let farm_key = SigningKey::generate()?;
    std::fs::write(dir.join("farm.pub"), farm_key.public_key().to_pem())?;
    let farm = StoreConfig {
        signing_key: Some(farm_key),
        ..StoreConfig::default()
    };
    ArtifactStore::new(Some(LocalDir::new(dir.join("signed"))?), None, farm)?
        .get_or_compile_module(&engine, &wasm)?;
    Module::new(&new_engine(Some(&dir.join("wasmtime-cache")))?, &wasm)?;
    // `hit-file` remembers the digest only of a file that has settled.
    std::thread::sleep(std::time::Duration::from_millis(3200));
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [op, dir] if op == "prepare" => prepare(Path::new(dir)),
        [op, dir, n] if op == "hit-remote" => remote_hits(Path::new(dir), n.parse()?),
        [op, dir, n] if OPS.contains(&op.as_str()) => run(op, Path::new(dir), n.parse()?),
        _ => bail!(
            "usage: store_counts prepare <dir> | store_counts <op> <dir> <n>; ops: {}",
            OPS.join(", ")
        ),
    }
}

fn run(op: &str, dir: &Path, n: usize) -> Result<()> {
    let wasm_file = dir.join("app.wasm");
    let artifact_file = dir.join("app.cwasm");
    let wasm = std::fs::read(&wasm_file)?;
    let artifact = std::fs::read(&artifact_file)?;
    let engine = new_engine(None)?;
    let digest = Digest::of(&wasm);
    let store = ArtifactStore::open(dir.join("store"))?;
    let keyed_store = keyed(dir)?;
    let signed_store = signed(dir)?;
    let cached = new_engine(Some(&dir.join("wasmtime-cache")))?;
    // An engine like `engine` with one CPU feature more: the store's
    // artifact is a subset for it (`store/reuse.rs` in cwasm-store), found after a miss
    // under its own key.
    let wider = wider_engine()?;
    store.get_or_compile_module_with_digest(&wider, &wasm, digest)?;
    // The first call of each path outside the loop: one-time work (the
    // engine's hash, the file's first hashing) is setup.
    engine.serialization_compatibility_hash()?;
    store.get_or_compile_module_file(&engine, &wasm_file)?;
    for _ in 0..n {
        match op {
            "engine" => drop(black_box(new_engine(None)?)),
            "hash-cold" => {
                let fresh = new_engine(None)?;
                black_box(fresh.serialization_compatibility_hash()?);
            }
            "hash-warm" => drop(black_box(engine.serialization_compatibility_hash())),
            "upstream-hash" => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut hasher);
                black_box(hasher.finish());
            }
            "detect" => {
                black_box(Engine::detect_serialization_compatibility_hash(black_box(
                    &artifact,
                )));
            }
            "detect-file" => {
                black_box(Engine::detect_serialization_compatibility_hash_file(
                    &artifact_file,
                )?);
            }
            // SAFETY: compiled by this engine in `prepare`.
            "deserialize-file" => drop(black_box(unsafe {
                Module::deserialize_file(&engine, &artifact_file)?
            })),
            "hit" => drop(black_box(store.get_or_compile_module(&engine, &wasm)?)),
            "hit-digest" => drop(black_box(
                store.get_or_compile_module_with_digest(&engine, &wasm, digest)?,
            )),
            "hit-file" => drop(black_box(
                store.get_or_compile_module_file(&engine, &wasm_file)?,
            )),
            "hit-keyed" => drop(black_box(
                keyed_store.get_or_compile_module(&engine, &wasm)?,
            )),
            "hit-keyed-digest" => drop(black_box(
                keyed_store.get_or_compile_module_with_digest(&engine, &wasm, digest)?,
            )),
            "hit-signed-digest" => drop(black_box(
                signed_store.get_or_compile_module_with_digest(&engine, &wasm, digest)?,
            )),
            "hit-subset-digest" => drop(black_box(
                store.get_or_compile_module_with_digest(&wider, &wasm, digest)?,
            )),
            "wasmtime-cache-hit" => drop(black_box(Module::new(&cached, &wasm)?)),
            _ => unreachable!("checked in main"),
        }
    }
    let all = [&store, &keyed_store, &signed_store];
    if all.iter().any(|s| s.stats().compiles > 0) {
        bail!("a store missed: the engine differs from the one `prepare` used");
    }
    Ok(())
}

/// `n` remote hits, digest supplied, through one store (one connection):
/// after each, the copy the hit wrote into the local tier is waited for
/// and removed, so that the next lookup is a remote hit again.
fn remote_hits(dir: &Path, n: usize) -> Result<()> {
    use cwasm_store::{Backend, Key, ObjectStoreBackend};
    let url = std::env::var("CWASM_TEST_S3_URL")
        .map_err(|_| wasmtime::format_err!("hit-remote needs CWASM_TEST_S3_URL"))?;
    let url = format!("{url}/store-counts-{}", std::process::id());
    let wasm = std::fs::read(dir.join("app.wasm"))?;
    let engine = new_engine(None)?;
    let key = Key::new(&engine, &wasm)?;
    let remote = ObjectStoreBackend::open(&url)?;
    remote.write(&key.artifact_path(), &std::fs::read(dir.join("app.cwasm"))?)?;
    let local = tempfile::tempdir()?;
    let store = ArtifactStore::new(
        Some(LocalDir::new(local.path())?),
        Some(Box::new(remote)),
        StoreConfig::default(),
    )?;
    for _ in 0..n {
        drop(black_box(store.get_or_compile_module_with_digest(
            &engine, &wasm, key.wasm,
        )?));
        store.flush();
        std::fs::remove_file(local.path().join(key.artifact_path()))?;
    }
    if store.stats().compiles > 0 {
        bail!("a remote hit missed");
    }
    Ok(())
}
