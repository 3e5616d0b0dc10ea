//! Programs the tests need that a fresh machine may lack, installed into
//! `target/` on first use: cmake (for the C API's build script), and the
//! real servers the remote backends are tested against (`servers.rs`).

use crate::cmd::run;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// `cmake` on this process's `PATH` (so every cargo command below finds
/// it): `wasmtime-c-api-impl`'s build script runs it to install the C
/// headers. The system's if it has one, else one installed from the Python
/// package registry into `target/tools-venv` on first use.
pub(crate) fn provide_cmake(root: &Path) -> Result<()> {
    if Command::new("cmake").arg("--version").output().is_ok() {
        return Ok(());
    }
    let venv = root.join("target/tools-venv");
    let bin = venv.join("bin");
    if !bin.join("cmake").exists() {
        pip_install(&venv, CMAKE)?;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&path));
    // SAFETY: xtask is single-threaded here; no other thread reads the
    // environment.
    unsafe { std::env::set_var("PATH", std::env::join_paths(dirs)?) };
    Ok(())
}

/// Installs `package` from the Python package registry into the virtual
/// environment `venv`, made first.
pub(crate) fn pip_install(venv: &Path, package: &str) -> Result<()> {
    run(Command::new("python3").arg("-m").arg("venv").arg(venv)).with_context(|| {
        format!("creating a Python virtual environment for {package} (needs python3)")
    })?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        package,
    ]))
    .with_context(|| format!("installing {package} from the Python package registry"))
}

/// The cmake the C API's build script gets where the system has none.
const CMAKE: &str = "cmake==3.31.6";
