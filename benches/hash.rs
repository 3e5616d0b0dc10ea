//! What the compatibility hash costs, against the alternatives an embedder
//! has without it.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use object::{Object, ObjectSection};
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use wasmtime::{Config, Engine};

/// A `Hasher` that feeds SHA-256: what a careful embedder might pass to
/// upstream's `precompile_compatibility_hash()` to avoid `DefaultHasher`.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap())
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compatibility-hash");
    let engine = Engine::default();
    engine.serialization_compatibility_hash().unwrap();

    g.bench_function("serialization_compatibility_hash/warm", |b| {
        b.iter(|| {
            black_box(&engine)
                .serialization_compatibility_hash()
                .unwrap()
        })
    });
    g.bench_function("serialization_compatibility_hash/cold", |b| {
        // A fresh engine per iteration; only the first call is timed.
        b.iter_batched(
            || Engine::new(&Config::new()).unwrap(),
            |engine| engine.serialization_compatibility_hash().unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function(
        "upstream precompile_compatibility_hash/DefaultHasher",
        |b| {
            b.iter(|| {
                let mut h = DefaultHasher::new();
                black_box(&engine)
                    .precompile_compatibility_hash()
                    .hash(&mut h);
                h.finish()
            })
        },
    );
    g.bench_function("upstream precompile_compatibility_hash/SHA-256", |b| {
        b.iter(|| {
            let mut h = Sha256Hasher(Sha256::new());
            black_box(&engine)
                .precompile_compatibility_hash()
                .hash(&mut h);
            h.0.finalize()
        })
    });
    g.bench_function(
        "workaround #5802 (precompile empty module, hash section)",
        |b| {
            b.iter(|| {
                let artifact = black_box(&engine).precompile_module(b"(module)").unwrap();
                let file = object::File::parse(&*artifact).unwrap();
                let section = file.section_by_name(".wasmtime.engine").unwrap();
                <[u8; 32]>::from(Sha256::digest(section.data().unwrap()))
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
