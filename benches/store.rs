//! The store's hit paths against their floors, on the hit module (about 1 MB
//! of wasm, a 10 MB artifact), side by side in one run:
//!
//! * `store hit`: `Module::deserialize_file` alone; a local hit unkeyed and
//!   keyed (copied into sealed memory, its tag verified there, loaded in
//!   place); the keyed hit's floor (one read pass and one hash pass over
//!   the artifact, with the tag's hash); a signed hit (statement verified
//!   with the farm's public key, in sealed memory) and what it does more
//!   than a keyed one (the statement's read and signature); a hit through
//!   `get_or_compile_module_file` (digest remembered); and a hit in
//!   wasmtime's own cache (`Config::cache`, `Module::new`) on the same
//!   module;
//! * `remote hit`: a cold local tier in front of S3 against a raw GET of the
//!   same object. Needs the S3 server `cargo xtask bench` starts (it passes
//!   `CWASM_TEST_S3_URL`); skipped without it.
//!
//! * `oci hit`: the same, in front of an OCI registry (distribution 2.8,
//!   which `cargo xtask bench` starts, `CWASM_TEST_OCI_REGISTRY`: the
//!   referrers tag schema), digest supplied, against a raw blob GET of the
//!   artifact from the same registry, and the backend's share of the hit
//!   (listing and blob into a buffer, no sealed copy, no load);
//!   `oci hit, referrers API`: the same on go-containerregistry's registry
//!   (`CWASM_TEST_OCI_REFERRERS_REGISTRY`).
//!
//! `cargo xtask bench` reads the means back by these group and function
//! names and prints the ratios.

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use cwasm_store::{
    ArtifactStore, Backend, Digest, Key, LocalDir, ObjectStoreBackend, OciBackend, SigningKey,
    StoreConfig,
};
use std::hint::black_box;
use std::path::Path;
use wasmtime::{Cache, CacheConfig, Config, Engine, Module};

const KEY: &[u8] = b"a 32-byte key for the bench only";

fn keyed(dir: &Path) -> ArtifactStore {
    let config = StoreConfig {
        hmac_key: Some(KEY.to_vec()),
        ..StoreConfig::default()
    };
    ArtifactStore::new(Some(LocalDir::new(dir).unwrap()), None, config).unwrap()
}

/// A farm's store (it signs) and a host's on the same directory (it holds
/// the public key only), and the statement of `key`'s entry.
fn signed(dir: &Path) -> (ArtifactStore, ArtifactStore) {
    let farm_key = SigningKey::generate().unwrap();
    let farm = StoreConfig {
        signing_key: Some(farm_key.clone()),
        ..StoreConfig::default()
    };
    let host = StoreConfig {
        trusted_keys: vec![farm_key.public_key().clone()],
        ..StoreConfig::default()
    };
    let open =
        |config| ArtifactStore::new(Some(LocalDir::new(dir).unwrap()), None, config).unwrap();
    (open(farm), open(host))
}

fn bench(c: &mut Criterion) {
    choose(c);
    let engine = Engine::default();
    let wasm = wat::parse_str(common::hit_module()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wasm_file = dir.path().join("app.wasm");
    std::fs::write(&wasm_file, &wasm).unwrap();
    let store = ArtifactStore::open(dir.path().join("store")).unwrap();
    store.get_or_compile_module(&engine, &wasm).unwrap();
    let key = Key::new(&engine, &wasm).unwrap();
    let file = dir.path().join("store").join(key.artifact_path());
    let size = std::fs::metadata(&file).unwrap().len();
    eprintln!(
        "hit module: {} bytes of wasm, {size} byte artifact",
        wasm.len()
    );
    let keyed_store = keyed(&dir.path().join("keyed"));
    keyed_store.get_or_compile_module(&engine, &wasm).unwrap();
    let (farm, signed_store) = signed(&dir.path().join("signed"));
    farm.get_or_compile_module(&engine, &wasm).unwrap();
    let statement = std::fs::read(dir.path().join("signed").join(key.statement_path())).unwrap();
    let trusted = signed_store.config().trusted_keys.clone();
    let mut cache = CacheConfig::new();
    cache.with_directory(dir.path().join("wasmtime-cache"));
    let mut config = Config::new();
    config.cache(Some(Cache::new(cache).unwrap()));
    let cached = Engine::new(&config).unwrap();
    Module::new(&cached, &wasm).unwrap();
    // The file's digest is remembered once the file has settled.
    std::thread::sleep(std::time::Duration::from_millis(3200));

    let mut g = c.benchmark_group("store hit");
    g.bench_function("Module::deserialize_file alone", |b| {
        // SAFETY: produced by this engine for this benchmark.
        b.iter(|| unsafe { Module::deserialize_file(&engine, black_box(&file)).unwrap() })
    });
    g.bench_function("unkeyed: get_or_compile_module", |b| {
        b.iter(|| {
            store
                .get_or_compile_module(&engine, black_box(&wasm))
                .unwrap()
        })
    });
    // The store's own work, with the wasm digest known (an OCI layer, say).
    let digest = Digest::of(&wasm);
    g.bench_function("unkeyed: get_or_compile_module_with_digest", |b| {
        b.iter(|| {
            store
                .get_or_compile_module_with_digest(&engine, black_box(&wasm), digest)
                .unwrap()
        })
    });
    g.bench_function("unkeyed: get_or_compile_module_file", |b| {
        b.iter(|| {
            store
                .get_or_compile_module_file(&engine, black_box(&wasm_file))
                .unwrap()
        })
    });
    g.bench_function("keyed: get_or_compile_module", |b| {
        b.iter(|| {
            keyed_store
                .get_or_compile_module(&engine, black_box(&wasm))
                .unwrap()
        })
    });
    g.bench_function("keyed: get_or_compile_module_with_digest", |b| {
        b.iter(|| {
            keyed_store
                .get_or_compile_module_with_digest(&engine, black_box(&wasm), digest)
                .unwrap()
        })
    });
    g.bench_function("signed: get_or_compile_module_with_digest", |b| {
        b.iter(|| {
            signed_store
                .get_or_compile_module_with_digest(&engine, black_box(&wasm), digest)
                .unwrap()
        })
    });
    // What a signed hit does that a keyed one does not: read and parse the
    // statement, and one Ed25519 verification (its digest check replaces
    // the tag's, at the same cost: BLAKE3 both).
    g.bench_function(
        "signed extra: read the statement + verify its signature",
        |b| {
            let path = dir.path().join("signed").join(key.statement_path());
            b.iter(|| {
                let envelope = std::fs::read(black_box(&path)).unwrap();
                cwasm_store::read_statement(&envelope, &trusted).unwrap()
            })
        },
    );
    assert!(!statement.is_empty());
    // The floor of a verified hit: read every byte once (into memory no one
    // else can change) and hash it once with the tag's keyed hash; the
    // unkeyed hit's work comes on top.
    let derived = blake3::derive_key("cwasm-store 2026-12-02 entry tag v3", KEY);
    g.bench_function("floor: read + keyed BLAKE3 of the artifact", |b| {
        b.iter(|| {
            let bytes = std::fs::read(black_box(&file)).unwrap();
            blake3::keyed_hash(&derived, &bytes)
        })
    });
    g.bench_function("wasmtime Config::cache: Module::new", |b| {
        b.iter(|| Module::new(&cached, black_box(&wasm)).unwrap())
    });
    g.finish();
    // One compile each while setting up, none since.
    let stats = [store.stats(), keyed_store.stats(), signed_store.stats()];
    let compiles: Vec<u64> = stats.iter().map(|s| s.compiles).collect();
    assert_eq!(compiles, [1, 1, 0], "{stats:?}");
    assert_eq!(
        stats[0].files_hashed, 1,
        "the settled file was hashed again"
    );

    for (var, group) in [
        ("CWASM_TEST_OCI_REGISTRY", "oci hit"),
        (
            "CWASM_TEST_OCI_REFERRERS_REGISTRY",
            "oci hit, referrers API",
        ),
    ] {
        match std::env::var(var) {
            Ok(registry) => oci_hit(c, group, &registry, &engine, &wasm, size),
            Err(_) => eprintln!("`{group}` skipped: no {var} (run `cargo xtask bench`)"),
        }
    }

    let Ok(bucket) = std::env::var("CWASM_TEST_S3_URL") else {
        eprintln!("remote benchmarks skipped: no S3 server (run `cargo xtask bench`)");
        return;
    };
    let url = format!("{bucket}/bench-{}", std::process::id());
    let remote = ObjectStoreBackend::open(&url).unwrap();
    let artifact = std::fs::read(&file).unwrap();
    remote.write(&key.artifact_path(), &artifact).unwrap();
    let mut g = c.benchmark_group("remote hit");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(20);
    g.bench_function("raw object GET", |b| {
        b.iter(|| {
            remote
                .read(black_box(&key.artifact_path()))
                .unwrap()
                .unwrap()
        })
    });
    let (url, engine, wasm) = (url.as_str(), &engine, &wasm[..]);
    // A connection already open, as for the raw GET: the hit is timed, not
    // the TCP handshake.
    let open = || -> Box<dyn Backend> {
        let remote = ObjectStoreBackend::open(url).unwrap();
        remote.read("warm-up: no such object").unwrap();
        Box::new(remote)
    };
    let cold = |hash: bool| {
        move |b: &mut criterion::Bencher| {
            cold_remote_hit(b, &open, engine, wasm, (!hash).then_some(digest))
        }
    };
    g.bench_function(
        "cold local tier: get_or_compile_module_with_digest",
        cold(false),
    );
    g.bench_function("cold local tier: get_or_compile_module", cold(true));
    g.finish();
}

/// An OCI hit, digests supplied (the wasm's, and the image's in the URL),
/// with a cold local tier (a fresh store and backend each time, so the
/// referrers listing is fetched every time), against a raw GET of the
/// artifact's blob from the same registry.
fn oci_hit(
    c: &mut Criterion,
    group: &str,
    registry: &str,
    engine: &Engine,
    wasm: &[u8],
    size: u64,
) {
    let repository = format!("oci://{registry}/bench/hit-{}", std::process::id());
    let image = OciBackend::open(&repository)
        .unwrap()
        .push_wasm_image("v1", wasm)
        .unwrap();
    // The image by digest, as a runtime that pulled it knows it.
    let url = format!("{repository}@{image}");
    let backend = OciBackend::open(&url).unwrap();
    let farm = ArtifactStore::new(
        None,
        Some(Box::new(OciBackend::open(&url).unwrap())),
        StoreConfig::default(),
    )
    .unwrap();
    farm.get_or_compile_module(engine, wasm).unwrap();
    let key = Key::new(engine, wasm).unwrap();
    let layer = backend
        .layer_of(&key.artifact_path())
        .unwrap()
        .expect("pushed");
    let digest = Digest::of(wasm);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(size));
    g.sample_size(20);
    g.bench_function("raw blob GET", |b| {
        b.iter(|| backend.read_blob(black_box(&layer), u64::MAX).unwrap())
    });
    let open = || -> Box<dyn Backend> {
        // A connection already open, as for the raw GET.
        let remote = OciBackend::open(&url).unwrap();
        remote.read_blob(&layer, u64::MAX).unwrap();
        Box::new(remote)
    };
    // The backend's share of a hit: the listing and the blob into a buffer
    // through a fresh backend, without the store's sealed copy and load.
    let path = key.artifact_path();
    g.bench_function("backend read: listing + blob", |b| {
        b.iter_batched(
            &open,
            |remote| remote.read(black_box(&path)).unwrap().expect("stored"),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("cold local tier: get_or_compile_module_with_digest", |b| {
        cold_remote_hit(b, &open, engine, wasm, Some(digest))
    });
    g.finish();
}

/// One hit through a fresh store whose local tier is empty, in front of
/// the remote `open` makes (outside the timing, as is dropping the store,
/// which waits for its background copy into the local tier); with
/// `digest`, the wasm digest is supplied, else hashed.
fn cold_remote_hit(
    b: &mut criterion::Bencher,
    open: &dyn Fn() -> Box<dyn Backend>,
    engine: &Engine,
    wasm: &[u8],
    digest: Option<Digest>,
) {
    b.iter_batched(
        || {
            let local = tempfile::tempdir().unwrap();
            let store = ArtifactStore::new(
                Some(LocalDir::new(local.path()).unwrap()),
                Some(open()),
                StoreConfig::default(),
            )
            .unwrap();
            (local, store)
        },
        |(local, store)| {
            let m = match digest {
                Some(digest) => store.get_or_compile_module_with_digest(engine, wasm, digest),
                None => store.get_or_compile_module(engine, wasm),
            };
            assert_eq!(store.stats().compiles, 0);
            (m.unwrap(), store, local)
        },
        BatchSize::PerIteration,
    )
}

/// Choosing among 16 stored engines for one wasm, as a host that cannot
/// compute its key does (`ArtifactStore::engine_verdicts`): list the
/// prefixes, read each engine's section (never an artifact), and ask
/// wasmtime about each. A fresh store each time, so nothing is remembered.
fn choose(c: &mut Criterion) {
    use wasmtime::OptLevel;
    let dir = tempfile::tempdir().unwrap();
    let wasm = b"(module (func (export \"answer\") (result i32) i32.const 42))";
    let mut engines = Vec::new();
    for preset in ["x86-64-v1", "x86-64-v2", "x86-64-v3", "x86-64-v4"] {
        for variant in 0..4 {
            let mut config = cwasm_store::CpuProfile::preset(preset)
                .unwrap()
                .config()
                .unwrap();
            match variant {
                0 => {}
                1 => drop(config.cranelift_opt_level(OptLevel::None)),
                2 => drop(config.consume_fuel(true)),
                _ => drop(config.epoch_interruption(true)),
            }
            let engine = Engine::new(&config).unwrap();
            let farm = ArtifactStore::new(
                Some(LocalDir::new(dir.path()).unwrap()),
                None,
                StoreConfig {
                    reuse_cpu_subsets: false,
                    ..StoreConfig::default()
                },
            )
            .unwrap();
            farm.get_or_compile_module(&engine, wasm).unwrap();
            engines.push(engine);
        }
    }
    let host = Engine::default();
    let verdicts = ArtifactStore::open(dir.path())
        .unwrap()
        .engine_verdicts(&host)
        .unwrap();
    assert_eq!(verdicts.len(), 16);
    let mut g = c.benchmark_group("choose engine");
    g.bench_function("16 stored engines, nothing remembered", |b| {
        b.iter_batched(
            || ArtifactStore::open(dir.path()).unwrap(),
            |store| black_box(store.engine_verdicts(&host).unwrap()),
            BatchSize::SmallInput,
        )
    });
    // A process's later lookups: the verdicts are remembered, the store is
    // listed again (it may have new engines).
    let warm = ArtifactStore::open(dir.path()).unwrap();
    warm.engine_verdicts(&host).unwrap();
    g.bench_function("16 stored engines, verdicts remembered", |b| {
        b.iter(|| black_box(warm.engine_verdicts(&host).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
