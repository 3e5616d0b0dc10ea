//! The artifact reader's cost against the artifact's size and its number of
//! functions. It parses the ELF file as `Engine::detect_precompiled{,_file}`
//! do (header, section table, symbol table), then hashes the engine section:
//! flat in the size of data and code, while the file variant reads the whole
//! symbol table, which grows with the number of functions.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wasmtime::Engine;

const SIZES: &[(&str, usize)] = &[
    ("1KB", 1 << 10),
    ("64KB", 64 << 10),
    ("1MB", 1 << 20),
    ("16MB", 16 << 20),
    ("64MB", 64 << 20),
];

fn bench(c: &mut Criterion) {
    let engine = Engine::default();
    let dir = std::env::temp_dir().join(format!("cwasm-bench-reader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = c.benchmark_group("detect_serialization_compatibility_hash");
    for &(name, len) in SIZES {
        let artifact = engine.precompile_module(&common::data_module(len)).unwrap();
        let path = dir.join(format!("{name}.cwasm"));
        std::fs::write(&path, &artifact).unwrap();
        g.throughput(Throughput::Elements(1));
        let label = format!("{name} data ({} byte artifact)", artifact.len());
        g.bench_with_input(BenchmarkId::new("bytes", &label), &artifact, |b, a| {
            b.iter(|| Engine::detect_serialization_compatibility_hash(black_box(a)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("file", &label), &path, |b, p| {
            b.iter(|| {
                Engine::detect_serialization_compatibility_hash_file(black_box(p))
                    .unwrap()
                    .unwrap()
            })
        });
    }
    // Code-heavy artifacts: many functions, many symbols.
    for funcs in [10, 1000, 5000] {
        let artifact = engine
            .precompile_module(common::code_module(funcs).as_bytes())
            .unwrap();
        let label = format!("{funcs} functions ({} byte artifact)", artifact.len());
        let path = dir.join(format!("{funcs}-functions.cwasm"));
        std::fs::write(&path, &artifact).unwrap();
        g.bench_with_input(BenchmarkId::new("bytes", &label), &artifact, |b, a| {
            b.iter(|| Engine::detect_serialization_compatibility_hash(black_box(a)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("file", &label), &path, |b, p| {
            b.iter(|| {
                Engine::detect_serialization_compatibility_hash_file(black_box(p))
                    .unwrap()
                    .unwrap()
            })
        });
    }
    g.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
