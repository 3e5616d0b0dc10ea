//! What a shared CPU baseline costs: one compute-heavy module compiled for
//! this host's own features (the default) and for the named baselines of its
//! architecture (`CpuProfile::preset`), all run here, side by side in one
//! run. docs/design.md ("A fleet of different CPUs") quotes the result.
//!
//! The module mixes what CPU features change in Cranelift's output: bit
//! counting (POPCNT, LZCNT, BMI1), rounding (SSE4.1's ROUNDSD, a libcall
//! without it), and 128-bit SIMD (SSE4.1's PMULLD, SSSE3's PSHUFB, AVX's
//! three-operand forms).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use cwasm_store::CpuProfile;
use std::hint::black_box;
use wasmtime::{Config, Engine, Instance, Module, Store, TypedFunc};

const KERNEL: &str = r#"(module
  (func (export "run") (param $n i32) (result i64)
    (local $i i32) (local $acc i64) (local $f f64) (local $v v128) (local $w v128)
    (local.set $v (v128.const i32x4 1 2 3 4))
    (local.set $w (v128.const i8x16 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0))
    (loop $l
      ;; bit counting
      (local.set $acc (i64.add (local.get $acc)
        (i64.add
          (i64.popcnt (i64.mul (i64.extend_i32_u (local.get $i)) (i64.const 0x9E3779B97F4A7C15)))
          (i64.extend_i32_u (i32.add
            (i32.clz (i32.or (local.get $i) (i32.const 1)))
            (i32.ctz (i32.or (local.get $i) (i32.const 0x10000))))))))
      ;; rounding
      (local.set $f (f64.add (local.get $f)
        (f64.add
          (f64.floor (f64.div (f64.convert_i32_u (local.get $i)) (f64.const 3.7)))
          (f64.nearest (f64.mul (f64.convert_i32_u (local.get $i)) (f64.const 0.33))))))
      ;; SIMD
      (local.set $v (i32x4.add
        (i32x4.mul (local.get $v) (i32x4.splat (i32.or (local.get $i) (i32.const 1))))
        (i8x16.swizzle (local.get $v) (local.get $w))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (i64.add (i64.add (local.get $acc) (i64.trunc_sat_f64_u (local.get $f)))
      (i64.extend_i32_u (i32x4.extract_lane 0 (local.get $v))))))"#;

const ITERATIONS: i32 = 100_000;

/// The baselines of this host's architecture, from weakest to strongest.
fn presets() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["x86-64-v1", "x86-64-v2", "x86-64-v3"]
    } else if cfg!(target_arch = "aarch64") {
        &["aarch64-v8.0", "aarch64-v8.1"]
    } else {
        &[]
    }
}

fn instantiate(config: &Config) -> (Store<()>, TypedFunc<i32, i64>) {
    let engine = Engine::new(config).unwrap();
    let module = Module::new(&engine, KERNEL).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let run = instance.get_typed_func(&mut store, "run").unwrap();
    (store, run)
}

fn bench(c: &mut Criterion) {
    let mut variants = vec![("native".to_string(), Config::new())];
    for name in presets() {
        let config = CpuProfile::preset(name).unwrap().config().unwrap();
        variants.push((name.to_string(), config));
    }
    let mut expected = None;
    let mut g = c.benchmark_group("cpu_baseline");
    for (name, config) in &variants {
        let (mut store, run) = instantiate(config);
        // Every variant computes the same thing.
        let result = run.call(&mut store, ITERATIONS).unwrap();
        assert_eq!(*expected.get_or_insert(result), result, "{name}");
        g.bench_function(BenchmarkId::new("kernel", name), |b| {
            b.iter(|| run.call(&mut store, black_box(ITERATIONS)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
