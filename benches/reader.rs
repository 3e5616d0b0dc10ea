//! The artifact reader's cost against the artifact's size and its number of
//! functions. It parses the ELF file as `Engine::detect_precompiled{,_file}`
//! do (header, section table, symbol table), then hashes the engine section:
//! flat in the size of data and code, while the file variant reads the whole
//! symbol table, which grows with the number of functions.

mod common;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use std::hint::black_box;
use std::path::Path;
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
    g.throughput(Throughput::Elements(1));
    for &(name, len) in SIZES {
        let artifact = engine.precompile_module(&common::data_module(len)).unwrap();
        let path = dir.join(format!("{name}.cwasm"));
        bench_both_readers(&mut g, &format!("{name} data"), &artifact, &path);
    }
    // Code-heavy artifacts: many functions, many symbols.
    for funcs in [10, 1000, 5000] {
        let artifact = engine
            .precompile_module(common::code_module(funcs).as_bytes())
            .unwrap();
        let path = dir.join(format!("{funcs}-functions.cwasm"));
        bench_both_readers(&mut g, &format!("{funcs} functions"), &artifact, &path);
    }
    g.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `artifact` to `path`, then times the bytes reader on `artifact`
/// and the file reader on `path`, both labelled `what` and the size.
fn bench_both_readers(
    g: &mut BenchmarkGroup<'_, WallTime>,
    what: &str,
    artifact: &[u8],
    path: &Path,
) {
    std::fs::write(path, artifact).unwrap();
    let label = format!("{what} ({} byte artifact)", artifact.len());
    g.bench_with_input(BenchmarkId::new("bytes", &label), artifact, |b, a| {
        b.iter(|| Engine::detect_serialization_compatibility_hash(black_box(a)).unwrap())
    });
    g.bench_with_input(BenchmarkId::new("file", &label), path, |b, p| {
        b.iter(|| {
            Engine::detect_serialization_compatibility_hash_file(black_box(p))
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
