//! The object-store backend against real servers, which `cargo xtask test`
//! installs and starts on loopback, passing their addresses in the
//! environment: moto (S3), gcp-storage-emulator (GCS) and Azurite (Azure).
//! Every test runs once per server (modules `s3`, `gcs`, `azure`). Run
//! alone, without the servers, these tests say so and pass, unless
//! `CWASM_REQUIRE_SERVERS` is set (as `cargo xtask test` and CI do), when
//! a missing server is a failure. `cargo xtask servers` starts them for a
//! run by hand.
//!
//! The GCS emulator lacks parts of GCS's XML API that `object_store` uses;
//! `cargo xtask test` puts a small proxy in front of it for those (listing,
//! deleting, `ETag` and `Last-Modified`: see `xtask/src/servers.rs`). It
//! also ignores `x-goog-if-generation-match`, so a conditional create
//! overwrites: `write_new_keeps_the_first_object` checks that it still
//! does, so that it learns when the emulator stops lacking it.

mod common;

use common::{call, peak_memory, wasm, zstd_bomb_frame};
use cwasm_store::{ArtifactStore, Backend, Digest, Key, LocalDir, ObjectStoreBackend, StoreConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use wasmtime::{Config, Engine, OptLevel, Result};

/// The servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    S3,
    Gcs,
    Azure,
}

/// A server to test against: its base URL (`s3://cwasm-test`).
struct Target {
    kind: Kind,
    base: String,
}

impl Target {
    /// The server of `kind` that `cargo xtask test` started, if any.
    fn get(kind: Kind) -> Option<Target> {
        let var = match kind {
            Kind::S3 => "CWASM_TEST_S3_URL",
            Kind::Gcs => "CWASM_TEST_GCS_URL",
            Kind::Azure => "CWASM_TEST_AZURE_URL",
        };
        let base = common::server(var, &format!("{kind:?} server"))?;
        Some(Target { kind, base })
    }

    /// A fresh prefix for each call.
    fn url(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "{}/run-{}-{}",
            self.base,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The server's address, for a proxy in front of it.
    fn address(&self) -> std::net::SocketAddr {
        let endpoint = match self.kind {
            Kind::S3 => std::env::var("AWS_ENDPOINT").unwrap(),
            Kind::Gcs => self.gcs_account()["gcs_base_url"]
                .as_str()
                .unwrap()
                .to_string(),
            Kind::Azure => std::env::var("AZURE_STORAGE_ENDPOINT").unwrap(),
        };
        let url = url::Url::parse(&endpoint).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
            .parse()
            .unwrap()
    }

    fn gcs_account(&self) -> serde_json::Value {
        serde_json::from_str(&std::env::var("GOOGLE_SERVICE_ACCOUNT_KEY").unwrap()).unwrap()
    }

    /// The client settings that send this server's requests to `proxy`.
    fn through(&self, proxy: std::net::SocketAddr) -> Vec<(&'static str, String)> {
        match self.kind {
            Kind::S3 => vec![("aws_endpoint", format!("http://{proxy}"))],
            Kind::Gcs => {
                let mut account = self.gcs_account();
                account["gcs_base_url"] = format!("http://{proxy}").into();
                vec![("google_service_account_key", account.to_string())]
            }
            Kind::Azure => {
                let endpoint = std::env::var("AZURE_STORAGE_ENDPOINT").unwrap();
                let account = url::Url::parse(&endpoint).unwrap().path().to_string();
                vec![("azure_storage_endpoint", format!("http://{proxy}{account}"))]
            }
        }
    }
}

fn remote(url: &str) -> Box<dyn Backend> {
    Box::new(ObjectStoreBackend::open(url).unwrap())
}

/// Every test, once per server.
macro_rules! on_every_server {
    ($($test:ident),* $(,)?) => {
        mod s3 { $(#[test] fn $test() -> super::Result<()> { super::run(super::Kind::S3, super::$test) })* }
        mod gcs { $(#[test] fn $test() -> super::Result<()> { super::run(super::Kind::Gcs, super::$test) })* }
        mod azure { $(#[test] fn $test() -> super::Result<()> { super::run(super::Kind::Azure, super::$test) })* }
    };
}

on_every_server!(
    remote_only_store_round_trips,
    local_tier_in_front_of_the_bucket,
    bad_remote_objects_are_evicted,
    retiring_a_generation_deletes_its_prefix_only,
    faults_on_the_wire_cost_a_bounded_time_and_fall_back_to_compiling,
    a_multi_gib_zstd_bomb_in_the_bucket_is_never_inflated,
    write_new_keeps_the_first_object,
    a_wider_host_reuses_a_subset_artifact_from_the_bucket,
    signed_entries_travel_through_the_bucket,
);

fn run(kind: Kind, test: fn(&Target) -> Result<()>) -> Result<()> {
    match Target::get(kind) {
        Some(target) => test(&target),
        None => Ok(()),
    }
}

fn remote_only_store_round_trips(target: &Target) -> Result<()> {
    let url = target.url();
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
fn local_tier_in_front_of_the_bucket(target: &Target) -> Result<()> {
    let url = target.url();
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
    // The compressed object's tag is its own (`.cwasm.zst.hmac`).
    assert!(bucket.read(&key.tag_path_for(true))?.is_some());
    assert!(bucket.read(&key.tag_path())?.is_none());

    let config_b = config.clone();
    let host_b = ArtifactStore::new(
        Some(LocalDir::new(dir_b.path())?),
        Some(remote(&url)),
        config,
    )?;
    let m = host_b.get_or_compile_module(&engine, &wasm(2))?;
    assert_eq!(call(&engine, &m), 2);
    assert_eq!((host_b.stats().hits, host_b.stats().compiles), (1, 0));
    // The local copy is written off the hit path; `flush` waits for it.
    host_b.flush();
    assert_eq!(std::fs::read(dir_b.path().join(key.artifact_path()))?, raw);
    assert_eq!(host_b.stats().store_errors, 0);
    // And the next hit is local (copied into sealed memory and verified).
    drop(host_b);
    let host_b = ArtifactStore::new(Some(LocalDir::new(dir_b.path())?), None, config_b)?;
    let m = host_b.get_or_compile_module(&engine, &wasm(2))?;
    assert_eq!(call(&engine, &m), 2);
    assert_eq!((host_b.stats().hits, host_b.stats().rejected), (1, 0));
    Ok(())
}

/// A bad object in the bucket (another engine's artifact, or a planted one
/// without a valid tag) is never loaded: it is deleted and recompiled.
fn bad_remote_objects_are_evicted(target: &Target) -> Result<()> {
    let url = target.url();
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

fn retiring_a_generation_deletes_its_prefix_only(target: &Target) -> Result<()> {
    let url = target.url();
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

fn faults_on_the_wire_cost_a_bounded_time_and_fall_back_to_compiling(
    target: &Target,
) -> Result<()> {
    let url = target.url();
    let upstream = target.address();
    let engine = Engine::default();
    // The entry is there, behind the faulty proxy.
    ArtifactStore::open_location(&url, StoreConfig::default())?
        .get_or_compile_module(&engine, &wasm(21))?;
    common::faults_cost_a_bounded_time(&engine, 21, upstream, |proxy| {
        let settings = target.through(proxy);
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let backend =
            ObjectStoreBackend::open_with_settings(&url, common::fault_options(), &settings)?;
        ArtifactStore::new(None, Some(Box::new(backend)), StoreConfig::default())
    })?;
    // Nothing was lost: the entry is intact behind a healthy connection.
    let healthy = ArtifactStore::open_location(&url, StoreConfig::default())?;
    healthy.get_or_compile_module(&engine, &wasm(21))?;
    assert_eq!((healthy.stats().hits, healthy.stats().rejected), (1, 0));
    Ok(())
}

fn a_multi_gib_zstd_bomb_in_the_bucket_is_never_inflated(target: &Target) -> Result<()> {
    let url = target.url();
    // One 256 MiB frame of zeros, compressed, repeated 16 times: a valid
    // zstd stream of 4 GiB in a few kilobytes.
    let bomb = zstd_bomb_frame().repeat(16);
    // One at a time: the bound is on the process's peak, and the three
    // servers' runs of this test would otherwise overlap.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let engine = Engine::default();
    let key = Key::new(&engine, &wasm(22))?;
    ObjectStoreBackend::open(&url)?.write(&format!("{}.zst", key.artifact_path()), &bomb)?;
    let config = StoreConfig {
        compress_remote: true,
        max_artifact_size: 32 << 20,
        ..StoreConfig::default()
    };
    let store = ArtifactStore::open_location(&url, config)?;
    let before = peak_memory();
    let start = std::time::Instant::now();
    let m = store.get_or_compile_module(&engine, &wasm(22))?;
    assert_eq!(call(&engine, &m), 22);
    let grew = peak_memory().saturating_sub(before);
    eprintln!(
        "4 GiB bomb ({} bytes): {:?}, peak memory +{grew}",
        bomb.len(),
        start.elapsed()
    );
    assert!(grew < 96 << 20, "peak memory grew by {grew} bytes");
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    Ok(())
}

/// `write_new` (how engine descriptors are written) is a conditional PUT
/// against each server: the first object stays, and writers racing
/// for one name all succeed, leaving one whole object.
fn write_new_keeps_the_first_object(target: &Target) -> Result<()> {
    let url = target.url();
    let bucket = ObjectStoreBackend::open(&format!("{url}/write-new-{}", std::process::id()))?;
    bucket.write_new("e/engine.json", b"first")?;
    bucket.write_new("e/engine.json", b"second")?;
    if target.kind == Kind::Gcs {
        assert_eq!(
            bucket.read("e/engine.json")?.as_deref(),
            Some(&b"second"[..]),
            "the GCS emulator honours conditional creates now: test it as the others"
        );
        return Ok(());
    }
    assert_eq!(
        bucket.read("e/engine.json")?.as_deref(),
        Some(&b"first"[..])
    );
    let bucket = std::sync::Arc::new(bucket);
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let writers: Vec<_> = (0..8u8)
        .map(|i| {
            let (bucket, start) = (bucket.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                bucket.write_new("race/engine.json", &[i; 64])
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap()?;
    }
    let got = bucket.read("race/engine.json")?.unwrap();
    assert!(
        got.len() == 64 && got.iter().all(|b| *b == got[0]),
        "{got:?}"
    );
    Ok(())
}

/// Reuse across CPU features through an object store: the engines are
/// listed with one delimited LIST, their sections read with bounded GETs,
/// and the artifact is checked like any remote hit (here compressed and
/// tagged).
#[cfg(not(target_arch = "x86_64"))]
fn a_wider_host_reuses_a_subset_artifact_from_the_bucket(_: &Target) -> Result<()> {
    eprintln!("skipped: the presets are x86-64's");
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn a_wider_host_reuses_a_subset_artifact_from_the_bucket(target: &Target) -> Result<()> {
    let url = target.url();
    if !std::arch::is_x86_feature_detected!("avx2") {
        eprintln!("skipped: this machine has no AVX2");
        return Ok(());
    }
    let config = StoreConfig {
        compress_remote: true,
        hmac_key: Some(b"fleet key, 32 bytes long, ok!!!".to_vec()),
        ..StoreConfig::default()
    };
    let v2 = Engine::new(&cwasm_store::CpuProfile::preset("x86-64-v2")?.config()?)?;
    let farm = ArtifactStore::new(
        None,
        Some(remote(&url)),
        StoreConfig {
            reuse_cpu_subsets: false,
            ..config.clone()
        },
    )?;
    farm.get_or_compile_module(&v2, &wasm(21))?;

    let dir = tempfile::tempdir()?;
    let host = ArtifactStore::new(Some(LocalDir::new(dir.path())?), Some(remote(&url)), config)?;
    let native = Engine::default();
    let module = host.get_or_compile_module(&native, &wasm(21))?;
    assert_eq!(call(&native, &module), 21);
    let stats = host.stats();
    assert_eq!((stats.compiles, stats.reused), (0, 1), "{stats:?}");
    assert_eq!(
        stats.last_reused_engine,
        Some(Digest(v2.serialization_compatibility_hash()?))
    );
    Ok(())
}

/// A signed entry travels through the bucket, compressed, to a host that
/// holds only the farm's public key, and on into its local tier with its
/// signature; an entry signed by no trusted key stays in the bucket.
fn signed_entries_travel_through_the_bucket(target: &Target) -> Result<()> {
    let url = target.url();
    let engine = Engine::default();
    let farm_key = cwasm_store::SigningKey::generate()?;
    let farm = StoreConfig {
        compress_remote: true,
        signing_key: Some(farm_key.clone()),
        ..StoreConfig::default()
    };
    ArtifactStore::new(None, Some(remote(&url)), farm)?.get_or_compile_module(&engine, &wasm(3))?;
    let rogue = StoreConfig {
        signing_key: Some(cwasm_store::SigningKey::generate()?),
        ..StoreConfig::default()
    };
    ArtifactStore::new(None, Some(remote(&url)), rogue)?
        .get_or_compile_module(&engine, &wasm(4))?;

    let dir = tempfile::tempdir()?;
    let host = StoreConfig {
        compress_remote: true,
        trusted_keys: vec![farm_key.public_key().clone()],
        ..StoreConfig::default()
    };
    let host = ArtifactStore::new(Some(LocalDir::new(dir.path())?), Some(remote(&url)), host)?;
    for n in [3, 4] {
        let m = host.get_or_compile_module(&engine, &wasm(n))?;
        assert_eq!(call(&engine, &m), n);
    }
    host.flush();
    let stats = host.stats();
    assert_eq!(
        (stats.hits, stats.compiles, stats.rejected),
        (1, 1, 0),
        "{stats:?}"
    );
    assert!(stats.refused >= 1, "{stats:?}");
    let bucket = ObjectStoreBackend::open(&url)?;
    let signed = Key::new(&engine, &wasm(3))?;
    let statement = bucket
        .read(&signed.statement_path())?
        .expect("in the bucket");
    let local = std::fs::read(dir.path().join(signed.statement_path()))?;
    assert_eq!(local, statement, "the statement was not copied verbatim");
    // The rogue's entry is left in the bucket, and the host wrote nothing.
    let rogue = Key::new(&engine, &wasm(4))?;
    assert!(bucket.read(&rogue.artifact_path())?.is_some());
    assert!(!dir.path().join(rogue.artifact_path()).exists());
    Ok(())
}
