//! The store's hit paths against their floors:
//!
//! * local hit (lookup, stamp check, mmap deserialize) vs
//!   `Module::deserialize_file` alone, and vs compiling;
//! * remote hit with a cold local tier vs a raw object GET of the same
//!   bytes. Needs the S3 server `cargo xtask bench` starts (it passes
//!   `CWASM_TEST_S3_URL`); skipped without it.

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use cwasm_store::{ArtifactStore, Backend, Key, LocalDir, ObjectStoreBackend, StoreConfig};
use std::hint::black_box;
use wasmtime::{Engine, Module};

fn bench(c: &mut Criterion) {
    let engine = Engine::default();
    let wasm = wat::parse_str(common::code_module(2000)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    store.get_or_compile_module(&engine, &wasm).unwrap();
    let key = Key::new(&engine, &wasm).unwrap();
    let file = dir.path().join(key.artifact_path());
    let size = std::fs::metadata(&file).unwrap().len();

    let mut g = c.benchmark_group(format!("store hit ({size} byte artifact)"));
    g.bench_function("Module::deserialize_file alone", |b| {
        // SAFETY: produced by this engine for this benchmark.
        b.iter(|| unsafe { Module::deserialize_file(&engine, black_box(&file)).unwrap() })
    });
    // The store's own work: lookup, stamp check, mmap deserialize, with the
    // wasm digest known (an OCI layer digest, say).
    let digest = key.wasm;
    g.bench_function("local hit: get_or_compile_module_with_digest", |b| {
        b.iter(|| {
            store
                .get_or_compile_module_with_digest(&engine, black_box(&wasm), digest)
                .unwrap()
        })
    });
    // The same, plus SHA-256 of the wasm bytes to make the key.
    g.bench_function("local hit: get_or_compile_module (hashes the wasm)", |b| {
        b.iter(|| {
            store
                .get_or_compile_module(&engine, black_box(&wasm))
                .unwrap()
        })
    });
    g.sample_size(10);
    g.bench_function("miss: precompile_module + deserialize", |b| {
        b.iter(|| {
            let artifact = engine.precompile_module(black_box(&wasm)).unwrap();
            // SAFETY: just produced by this engine.
            unsafe { Module::deserialize(&engine, &artifact).unwrap() }
        })
    });
    g.finish();

    let Ok(bucket) = std::env::var("CWASM_TEST_S3_URL") else {
        eprintln!("remote benchmarks skipped: no S3 server (run `cargo xtask bench`)");
        return;
    };
    let url = format!("{bucket}/bench-{}", std::process::id());
    let remote = ObjectStoreBackend::open(&url).unwrap();
    let artifact = std::fs::read(&file).unwrap();
    remote.write(&key.artifact_path(), &artifact).unwrap();
    let mut g = c.benchmark_group(format!("remote hit ({size} byte artifact)"));
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
    g.bench_function("cold local tier: get_or_compile_module", |b| {
        b.iter_batched(
            || {
                let local = tempfile::tempdir().unwrap();
                let store = ArtifactStore::new(
                    Some(LocalDir::new(local.path()).unwrap()),
                    Some(Box::new(ObjectStoreBackend::open(&url).unwrap())),
                    StoreConfig::default(),
                )
                .unwrap();
                (local, store)
            },
            |(local, store)| {
                let m = store.get_or_compile_module(&engine, &wasm).unwrap();
                assert_eq!(store.stats().compiles, 0);
                (m, local)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
