//! `cargo xtask run`: the main job, and the forks every command needs.

use crate::cmd::{cargo, run};
use crate::fork::{self, ForkOptions};
use crate::lines::{self, Line, Role};
use anyhow::Result;
use std::path::Path;

pub(crate) fn ensure_fork(root: &Path, line: &'static Line) -> Result<()> {
    fork::fork(
        root,
        &ForkOptions {
            line,
            out: None,
            force: false,
        },
    )
    .map(drop)
}

/// The forks the root workspace's `[patch.crates-io]` names: cargo cannot
/// read the workspace without them, whatever it builds.
pub(crate) fn ensure_workspace_forks(root: &Path) -> Result<()> {
    ensure_fork(root, lines::with_role(Role::Fork))?;
    ensure_fork(root, lines::with_role(Role::CApi))
}

/// The main job: show this host's compatibility hash, and the same hash read
/// back from an artifact precompiled and stored by the `cwasm` tool.
pub fn run_main_job(root: &Path) -> Result<()> {
    ensure_workspace_forks(root)?;
    run(cargo()
        .current_dir(root)
        .args(["run", "--locked", "--quiet", "--bin", "cwasm", "--", "demo"]))
}
