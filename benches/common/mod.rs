//! Inputs shared by the benchmarks. Uses only upstream wasmtime API, so that
//! `precompile.rs` and `pair_counts.rs` build against pristine wasmtime too.

#![allow(dead_code, reason = "each bench uses a different subset")]

/// A binary module whose memory is initialised by one `len`-byte data
/// segment: its artifact is about `len` bytes larger than an empty one's.
pub fn data_module(len: usize) -> Vec<u8> {
    use wasm_encoder::{ConstExpr, DataSection, MemorySection, MemoryType};
    let pages = (len as u64).div_ceil(65536) + 1;
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes = (0..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    });
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(0), bytes);
    let mut module = wasm_encoder::Module::new();
    module.section(&memories).section(&data);
    module.finish()
}

/// The module of the hit benchmarks: 2,300 functions of checked float
/// truncations and divisions (each a few bytes of wasm, and tens of bytes of
/// machine code with its trap checks), about 1 MB of wasm whose artifact is
/// about 10 MB, the shape of the measurement.
pub fn hit_module() -> String {
    let mut wat = String::from("(module\n");
    for f in 0..2300 {
        wat.push_str(&format!(
            "  (func (export \"f{f}\") (param f64 i64 i64) (result i64) (local i64)\n"
        ));
        for s in 0..50 {
            wat.push_str(if s % 4 == 0 {
                "    (local.set 3 (i64.div_s (local.get 3) (local.get 2)))\n"
            } else {
                "    (local.set 3 (i64.trunc_f64_s (f64.add (local.get 0) (f64.convert_i64_s (local.get 3)))))\n"
            });
        }
        wat.push_str("    (local.get 3))\n");
    }
    wat.push_str(")\n");
    wat
}

/// A configuration whose compiled code does not depend on the CPU it runs
/// on: the host's triple with x86-64-v2's features (SSE4.2, POPCNT) instead
/// of the detected ones. Under valgrind, which shows programs a CPU of its
/// own, the artifacts prepared natively are still this engine's.
pub fn fixed_cpu_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    if cfg!(target_arch = "x86_64") {
        config.target("x86_64-unknown-linux-gnu").unwrap();
        for flag in [
            "has_sse3",
            "has_ssse3",
            "has_sse41",
            "has_sse42",
            "has_popcnt",
        ] {
            // SAFETY: every x86-64 CPU valgrind and this project run on has
            // these (x86-64-v2).
            unsafe {
                config.cranelift_flag_enable(flag);
            }
        }
    }
    config
}

/// A deterministic module with `funcs` functions of loops, arithmetic,
/// memory traffic and calls: code shaped like real compiled programs, about
/// 500 bytes of wasm per function.
pub fn code_module(funcs: usize) -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut wat = String::from("(module\n  (memory (export \"memory\") 4)\n");
    for f in 0..funcs {
        wat.push_str(&format!(
            "  (func $f{f} (export \"f{f}\") (param i32 i32) (result i32) (local i32 i32 i64)\n"
        ));
        wat.push_str("    (local.set 2 (i32.add (local.get 0) (local.get 1)))\n");
        wat.push_str("    (block $out (loop $top\n");
        for _ in 0..6 {
            let op = [
                "i32.add", "i32.sub", "i32.mul", "i32.xor", "i32.rotl", "i32.and",
            ][next(6) as usize];
            let k = next(1 << 20);
            let off = next(4096) * 4;
            wat.push_str(&format!(
                "      (local.set 3 ({op} (local.get 2) (i32.const {k})))\n\
                 \x20     (i32.store offset={off} (i32.and (local.get 3) (i32.const 0xfffc)) (local.get 2))\n\
                 \x20     (local.set 2 (i32.add (local.get 3) (i32.load offset={off} (i32.and (local.get 2) (i32.const 0xfffc)))))\n\
                 \x20     (local.set 4 (i64.add (local.get 4) (i64.extend_i32_u (local.get 3))))\n"
            ));
        }
        wat.push_str(
            "      (local.set 1 (i32.sub (local.get 1) (i32.const 1)))\n\
             \x20     (br_if $top (i32.gt_s (local.get 1) (i32.const 0)))))\n",
        );
        if f > 0 {
            let callee = next(f as u64);
            wat.push_str(&format!(
                "    (local.set 2 (i32.add (local.get 2) (call $f{callee} (local.get 2) (i32.const 1))))\n"
            ));
        }
        wat.push_str("    (i32.add (local.get 2) (i32.wrap_i64 (local.get 4))))\n");
    }
    wat.push_str(")\n");
    wat
}
