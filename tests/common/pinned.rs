//! The fully pinned configurations of the golden vectors
//! (`tests/golden/hashes.txt`, `tests/lts36/tests/golden/hashes.txt`): they
//! depend on nothing about the host (explicit target, explicit CPU features,
//! a custom module version). Shared by `tests/stability.rs` and by the
//! program `cargo xtask test` builds against *pristine* wasmtime 36
//! (`tests/lts36/pristine_golden.rs`), so it uses nothing the series adds.

use wasmtime::{Config, ModuleVersionStrategy, OptLevel};

/// Configurations that depend on nothing about the host: explicit target,
/// explicit CPU features, and a custom module version.
pub fn pinned() -> Vec<(&'static str, Config)> {
    fn base(target: &str) -> Config {
        let mut c = Config::new();
        c.target(target).unwrap();
        c.module_version(ModuleVersionStrategy::Custom("golden".into()))
            .unwrap();
        c
    }
    let mut out = Vec::new();

    out.push(("x86_64-linux", base("x86_64-unknown-linux-gnu")));

    let mut c = base("x86_64-unknown-linux-gnu");
    // SAFETY: only used to compile, never to run, in this test.
    unsafe {
        c.cranelift_flag_enable("has_sse41");
        c.cranelift_flag_enable("has_avx");
    }
    c.cranelift_opt_level(OptLevel::SpeedAndSize);
    out.push(("x86_64-linux+sse41+avx,opt=s", c));

    let mut c = base("x86_64-unknown-linux-gnu");
    c.consume_fuel(true).epoch_interruption(true);
    out.push(("x86_64-linux,fuel,epoch", c));

    out.push(("aarch64-linux", base("aarch64-unknown-linux-gnu")));
    out.push(("riscv64gc-linux", base("riscv64gc-unknown-linux-gnu")));
    out.push(("s390x-linux", base("s390x-unknown-linux-gnu")));
    out.push(("pulley64", base("pulley64")));
    out
}
