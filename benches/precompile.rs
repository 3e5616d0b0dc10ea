//! `Engine::precompile_module` of a generated module of a few MB. Uses only
//! upstream API: `cargo xtask bench` runs this same file against pristine
//! wasmtime 48.0.8 (saving a criterion baseline) and against the fork
//! (comparing with it), to show the series costs nothing.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use wasmtime::Engine;

/// About 2 MB of wasm.
const FUNCTIONS: usize = 4000;

fn bench(c: &mut Criterion) {
    let wasm = wat::parse_str(common::code_module(FUNCTIONS)).unwrap();
    let engine = Engine::default();
    let mut g = c.benchmark_group("precompile_module");
    // Enough samples to resolve a 2% difference on a noisy 2-vCPU machine.
    g.sample_size(30);
    g.measurement_time(std::time::Duration::from_secs(30));
    g.bench_function(format!("{} byte module", wasm.len()), |b| {
        b.iter(|| engine.precompile_module(black_box(&wasm)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
