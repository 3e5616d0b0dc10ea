//! The README's commands (`run`, `test`) and `bench`.

use crate::fork::{self, ForkOptions};
use crate::{cargo, run};
use anyhow::Result;
use std::path::Path;

fn ensure_fork(root: &Path) -> Result<()> {
    fork::fork(
        root,
        &ForkOptions {
            out: None,
            force: false,
        },
    )
    .map(drop)
}

/// The main job: show this host's compatibility hash, and the same hash read
/// back from an artifact precompiled and stored by the `cwasm` tool.
pub fn run_main_job(root: &Path) -> Result<()> {
    ensure_fork(root)?;
    run(cargo()
        .current_dir(root)
        .args(["run", "--locked", "--quiet", "--bin", "cwasm", "--", "demo"]))
}

/// Every test, in one target directory with one feature set for wasmtime.
pub fn test(root: &Path) -> Result<()> {
    ensure_fork(root)?;
    run(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .current_dir(root.join("xtask"))
        .args(["fmt", "--check"]))?;
    run(cargo()
        .current_dir(root.join("xtask"))
        .args(["test", "--locked", "--quiet"]))?;
    run(cargo()
        .current_dir(root)
        .args(["test", "--locked", "--workspace"]))?;
    // Upstream's own unit tests, on the patched crate.
    run(cargo()
        .current_dir(root)
        .args(["test", "--locked", "-p", "wasmtime", "--lib"]))
}

pub fn bench(root: &Path, _quick: bool) -> Result<()> {
    ensure_fork(root)?;
    run(cargo()
        .current_dir(root)
        .args(["bench", "--locked", "--workspace"]))
}
