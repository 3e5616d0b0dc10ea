//! The object-store backend against a real S3-compatible server (moto),
//! which `cargo xtask test` installs and starts on loopback, passing its
//! address in the environment. Run alone, without that server, these tests
//! say so and pass, unless `CWASM_REQUIRE_S3` is set (as `cargo xtask test`
//! and CI do), when its absence is a failure.

mod common;

use common::{call, wasm};
use cwasm_store::{ArtifactStore, Backend, Digest, Key, LocalDir, ObjectStoreBackend, StoreConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use wasmtime::{Config, Engine, OptLevel, Result};

/// A fresh prefix in the test bucket for each test.
fn s3_url() -> Option<String> {
    static N: AtomicU32 = AtomicU32::new(0);
    match std::env::var("CWASM_TEST_S3_URL") {
        Ok(url) => Some(format!(
            "{url}/run-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )),
        Err(_) if std::env::var_os("CWASM_REQUIRE_S3").is_some() => {
            panic!("CWASM_REQUIRE_S3 is set but CWASM_TEST_S3_URL is not")
        }
        Err(_) => {
            eprintln!("skipped: no S3 server (run `cargo xtask test`)");
            None
        }
    }
}

fn remote(url: &str) -> Box<dyn Backend> {
    Box::new(ObjectStoreBackend::open(url).unwrap())
}

#[test]
fn remote_only_store_round_trips() -> Result<()> {
    let Some(url) = s3_url() else { return Ok(()) };
    let engine = Engine::default();
    let store = ArtifactStore::open_location(&url, StoreConfig::default())?;
    let m = store.get_or_compile_module(&engine, &wasm(1))?;
    assert_eq!(call(&engine, &m), 1);
    let again = ArtifactStore::open_location(&url, StoreConfig::default())?;
    let m = again.get_or_compile_module(&engine, &wasm(1))?;
    assert_eq!(call(&engine, &m), 1);
    assert_eq!((again.stats().hits, again.stats().compiles), (1, 0));

    let key = Key::new(&engine, &wasm(1))?;
    assert!(again.contains(&key)?);
    let engines = again.engines()?;
    assert_eq!(engines.len(), 1);
    assert_eq!(engines[0].entries, 1);
    assert_eq!(
        engines[0].descriptor.as_ref().unwrap().wasmtime_version,
        "48"
    );
    assert!(again.verify()?.is_empty());
    again.retain(&[])?;
    assert!(again.list()?.is_empty());
    Ok(())
}

/// Write-through and read-through: a fleet host with a cold local tier
/// finds what another host compiled, and keeps a local, mmap-able copy.
#[test]
fn local_tier_in_front_of_s3() -> Result<()> {
    let Some(url) = s3_url() else { return Ok(()) };
    let engine = Engine::default();
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let config = StoreConfig {
        compress_remote: true,
        hmac_key: Some(b"fleet key, 32 bytes long, ok!!!".to_vec()),
        ..StoreConfig::default()
    };
    let host_a = ArtifactStore::new(
        Some(LocalDir::new(dir_a.path())?),
        Some(remote(&url)),
        config.clone(),
    )?;
    host_a.get_or_compile_module(&engine, &wasm(2))?;
    let key = Key::new(&engine, &wasm(2))?;
    // Compressed in the bucket, raw locally.
    let bucket = ObjectStoreBackend::open(&url)?;
    let packed = bucket
        .read(&format!("{}.zst", key.artifact_path()))?
        .expect("compressed object in the bucket");
    let raw = std::fs::read(dir_a.path().join(key.artifact_path()))?;
    assert!(
        packed.len() < raw.len(),
        "{} vs {}",
        packed.len(),
        raw.len()
    );
    assert!(bucket.read(&key.tag_path())?.is_some());

    let host_b = ArtifactStore::new(
        Some(LocalDir::new(dir_b.path())?),
        Some(remote(&url)),
        config,
    )?;
    let m = host_b.get_or_compile_module(&engine, &wasm(2))?;
    assert_eq!(call(&engine, &m), 2);
    assert_eq!((host_b.stats().hits, host_b.stats().compiles), (1, 0));
    assert_eq!(std::fs::read(dir_b.path().join(key.artifact_path()))?, raw);
    Ok(())
}

/// A bad object in the bucket (another engine's artifact, or a planted one
/// without a valid tag) is never loaded: it is deleted and recompiled.
#[test]
fn bad_remote_objects_are_evicted() -> Result<()> {
    let Some(url) = s3_url() else { return Ok(()) };
    let engine = Engine::default();
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::None);
    let other = Engine::new(&config)?;
    let key = Key::new(&engine, &wasm(3))?;
    let bucket = ObjectStoreBackend::open(&url)?;
    bucket.write(&key.artifact_path(), &other.precompile_module(&wasm(3))?)?;

    let store = ArtifactStore::open_location(&url, StoreConfig::default())?;
    let m = store.get_or_compile_module(&engine, &wasm(3))?;
    assert_eq!(call(&engine, &m), 3);
    assert_eq!(store.stats().rejected, 1);
    assert_eq!(
        Engine::detect_serialization_compatibility_hash(
            &bucket.read(&key.artifact_path())?.unwrap()
        ),
        Some(key.engine.0)
    );

    // Planted without the fleet's key.
    let keyed = ArtifactStore::open_location(
        &url,
        StoreConfig {
            hmac_key: Some(b"fleet key, 32 bytes long, ok!!!".to_vec()),
            ..StoreConfig::default()
        },
    )?;
    let m = keyed.get_or_compile_module(&engine, &wasm(3))?;
    assert_eq!(call(&engine, &m), 3);
    assert_eq!(keyed.stats().rejected, 1);
    assert_eq!(keyed.stats().compiles, 1);
    Ok(())
}

#[test]
fn retiring_a_generation_deletes_its_prefix_only() -> Result<()> {
    let Some(url) = s3_url() else { return Ok(()) };
    let store = ArtifactStore::open_location(&url, StoreConfig::default())?;
    let new = Engine::default();
    let mut config = Config::new();
    config.module_version(wasmtime::ModuleVersionStrategy::Custom("old".into()))?;
    let old = Engine::new(&config)?;
    store.get_or_compile_module(&new, &wasm(4))?;
    store.get_or_compile_module(&old, &wasm(4))?;
    assert_eq!(store.engines()?.len(), 2);
    store.retain(&[Digest(new.serialization_compatibility_hash()?)])?;
    let left = store.engines()?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].engine.0, new.serialization_compatibility_hash()?);
    assert_eq!(
        left[0]
            .descriptor
            .as_ref()
            .map(|d| d.wasmtime_version.as_str()),
        Some("48")
    );
    Ok(())
}
