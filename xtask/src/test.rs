//! `cargo xtask test`: every test, in one target directory with one
//! feature set for wasmtime, then the 36 LTS line in its own workspace.

use crate::cmd::{cargo, output, run};
use crate::fork;
use crate::lines::{self, Role};
use crate::run::{ensure_fork, ensure_workspace_forks};
use crate::servers::{Server, Servers};
use crate::tools::provide_cmake;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// wasmtime unit tests that fail in this project's CI sandbox on pristine
/// wasmtime too (48.0.8, and upstream `main`), for reasons unrelated to the series; see
/// CONTRIBUTING.md ("Known failures upstream").
const SKIPPED_UPSTREAM_TESTS: &[&str] = &[
    // The sandbox kernel's PAGEMAP_SCAN ioctl reports pages as written that
    // the tests never touched.
    "runtime::vm::sys::unix::pagemap::tests::basic_page_flags",
    "runtime::vm::sys::unix::pagemap::tests::no_pages_returned",
    "runtime::vm::sys::unix::pagemap::tests::only_written_pages",
    "runtime::vm::sys::unix::pagemap::tests::page_limit_with_hole",
    "runtime::vm::sys::unix::pagemap::tests::region_limit",
];

/// Adds `--skip` for each of [`SKIPPED_UPSTREAM_TESTS`] to a test command
/// that already ends in `--`.
pub fn skip_upstream_failures(cmd: &mut Command) {
    for skip in SKIPPED_UPSTREAM_TESTS {
        cmd.args(["--skip", skip]);
    }
}

/// The integration tests of the workspace's own packages: every `tests/*.rs`
/// of the root package and of the crates under `crates/` (the fork excepted).
fn integration_tests(root: &Path) -> Result<Vec<String>> {
    let mut dirs = vec![root.join("tests"), root.join("tests/c-api/tests")];
    for entry in std::fs::read_dir(root.join("crates"))? {
        let path = entry?.path();
        // The generated forks (`wasmtime`, `wasmtime-c-api`) are upstream's.
        let fork = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("wasmtime"));
        if path.is_dir() && !fork {
            dirs.push(path.join("tests"));
        }
    }
    let mut names = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "rs")
                && let Some(stem) = path.file_stem()
            {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The name of the oracle binary built against pristine wasmtime.
const PRISTINE_ORACLE: &str = "cwasm-oracle-pristine";

/// Builds `cwasm-oracle` against pristine wasmtime (the fork's release), in the shared
/// target directory (only wasmtime itself and the test-support crate are
/// built again), and returns the binary's path.
fn build_pristine_oracle(root: &Path) -> Result<PathBuf> {
    let pristine = pristine_workspace(root)?;
    run(cargo()
        .current_dir(&pristine)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .args(["build", "--quiet", "-p", "pristine-oracle"]))
    .context("building the pristine oracle")?;
    Ok(root.join("target/debug").join(PRISTINE_ORACLE))
}

/// The crates that make a wasmtime able to compile: none of them may be in
/// the runtime-only host's dependency tree.
const COMPILERS: &[&str] = &[
    "cranelift-codegen",
    "wasmtime-cranelift",
    "wasmtime-winch",
    "winch-codegen",
];

/// Builds the runtime-only example host (examples/runtime-only) on its own,
/// so that its wasmtime has only the features it asks for, checks that no
/// compiler is among its dependencies, and returns a copy of the binary
/// (which the workspace-wide build that follows would otherwise replace
/// with one built with the workspace's features).
fn build_runtime_host(root: &Path) -> Result<PathBuf> {
    const HOST: &str = "cwasm-runtime-host";
    let tree = output(cargo().current_dir(root).args([
        "tree", "--locked", "-p", HOST, "-e", "normal", "--prefix", "none",
    ]))?;
    for line in tree.lines() {
        if let Some(compiler) = COMPILERS
            .iter()
            .find(|c| line.starts_with(&format!("{c} ")))
        {
            bail!("{HOST} depends on {compiler}: its wasmtime can compile");
        }
    }
    run(cargo()
        .current_dir(root)
        .args(["build", "--locked", "--quiet", "-p", HOST]))
    .context("building the runtime-only host")?;
    let dir = root.join("target/runtime-only");
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join(HOST);
    std::fs::copy(root.join("target/debug").join(HOST), &copy)?;
    Ok(copy)
}

/// Every test, in one target directory with one feature set for wasmtime.
pub fn test(root: &Path) -> Result<()> {
    ensure_workspace_forks(root)?;
    provide_cmake(root)?;
    // Formatting: our crates, xtask, and the files the series touches in the
    // fork (upstream keeps wasmtime rustfmt-clean, and so do we).
    run(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .current_dir(root.join("xtask"))
        .args(["fmt", "--check"]))?;
    run(cargo()
        .current_dir(root.join("xtask"))
        .args(["test", "--locked", "--quiet"]))?;
    // Clippy on our crates (not on upstream's), warnings denied.
    run(cargo().current_dir(root).args([
        "clippy",
        "--locked",
        "--workspace",
        "--exclude",
        "wasmtime",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().current_dir(root.join("xtask")).args([
        "clippy",
        "--locked",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // One invocation, so wasmtime and its dependencies are built with one
    // feature set: upstream's unit tests on the patched crate (`--lib`
    // includes wasmtime's), and every library, binary and integration test
    // of ours. Upstream's own integration tests are left out by naming ours:
    // they need workspace-internal crates that the registry package lacks.
    // The object-store tests run against a real S3-compatible server.
    // The oracle the fork's artifacts are compared with (tests/oracle.rs),
    // and the same program built against the fork with the same features
    // (only test-support's), so that both sides are made alike.
    let oracle = build_pristine_oracle(root)?;
    run(cargo().current_dir(root).args([
        "build",
        "--locked",
        "--quiet",
        "-p",
        "cwasm-test-support",
        "--bin",
        "cwasm-oracle",
    ]))?;
    let runtime_host = build_runtime_host(root)?;
    let servers = Servers::start(root, &Server::ALL)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .envs(servers.env())
        .env("CWASM_RUNTIME_HOST", &runtime_host)
        .env("CWASM_REQUIRE_RUNTIME_HOST", "1")
        .env("CWASM_PRISTINE_ORACLE", &oracle)
        .env("CWASM_FORK_ORACLE", root.join("target/debug/cwasm-oracle"))
        .env("CWASM_REQUIRE_PRISTINE", "1")
        .args(["test", "--locked", "--workspace", "--lib", "--bins"]);
    for name in integration_tests(root)? {
        cmd.args(["--test", &name]);
    }
    cmd.arg("--");
    skip_upstream_failures(&mut cmd);
    run(&mut cmd)?;
    // Our doctests (not upstream's hundreds).
    run(cargo().current_dir(root).args([
        "test",
        "--locked",
        "--workspace",
        "--exclude",
        "wasmtime",
        "--doc",
    ]))?;
    test_lts36(root)
}

/// The 36 LTS line: its fork, formatting of the files the series touches
/// there, then in one invocation (one feature set) wasmtime's own `--lib`
/// tests on the fork and the shared round-trip, sensitivity, soundness and
/// golden-vector tests (`tests/lts36/Cargo.toml`).
fn test_lts36(root: &Path) -> Result<()> {
    ensure_fork(root, lines::with_role(Role::Lts))?;
    let dir = root.join("tests/lts36");
    run(cargo().current_dir(&dir).args(["fmt", "--all", "--check"]))?;
    let mut cmd = lts36_cargo(root, &dir);
    cmd.args([
        "test",
        "--locked",
        "--workspace",
        "--lib",
        "--test",
        "roundtrip",
        "--test",
        "stability",
        "--",
    ]);
    skip_upstream_failures(&mut cmd);
    run(&mut cmd)?;
    check_lts36_golden_against_pristine(root)
}

/// `cargo` in `dir` for the 36 line's builds, all alike so that they share
/// their dependencies: the shared target directory, and lints capped at
/// warn. wasmtime 36 predates lints of this toolchain (rustc 1.95) and warns
/// in code the series does not touch, so this replaces CI's RUSTFLAGS
/// (warnings denied); our code in the 36 workspace (the shared tests) is
/// built with CI's flags by the root workspace's run.
fn lts36_cargo(root: &Path, dir: &Path) -> Command {
    let mut cmd = cargo();
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("RUSTFLAGS", "--cap-lints=warn");
    cmd
}

/// The 36 line's golden vectors against an oracle we did not write: the
/// engine sections that *pristine* wasmtime 36.0.20 (the registry package,
/// without the series) writes for the same pinned configurations, digested
/// by `tests/lts36/pristine_golden.rs`. The series leaves those sections
/// byte-identical, so the digests must equal the fork's hashes.
fn check_lts36_golden_against_pristine(root: &Path) -> Result<()> {
    let line = lines::with_role(Role::Lts);
    let dir = root.join("target/xtask-pristine-36");
    std::fs::create_dir_all(&dir)?;
    // The same wasmtime features and dependency versions as tests/lts36, so
    // that only wasmtime itself is built again.
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"pristine-golden-36\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[dependencies]\n\
             wasmtime = {{ version = \"={}\", features = [\"all-arch\", \"wmemcheck\"] }}\n\
             object = {{ version = \"0.37\", default-features = false, features = [\"read_core\", \"elf\", \"std\"] }}\n\
             sha2 = {{ version = \"0.10.2\", default-features = false }}\n\n\
             [[bin]]\nname = \"pristine-golden-36\"\npath = \"{}\"\n\n[workspace]\n",
            line.version,
            root.join("tests/lts36/pristine_golden.rs").display()
        ),
    )?;
    std::fs::copy(root.join("tests/lts36/Cargo.lock"), dir.join("Cargo.lock"))?;
    let out = output(lts36_cargo(root, &dir).args(["run", "--quiet"]))
        .context("running pristine-golden-36")?;
    let golden_path = root.join("tests/lts36/tests/golden/hashes.txt");
    let golden: String = std::fs::read_to_string(&golden_path)?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    if out != golden {
        bail!(
            "{} differs from the engine sections pristine wasmtime {} writes:\n\
             golden:\n{golden}\npristine:\n{out}",
            golden_path.display(),
            line.version
        );
    }
    eprintln!(
        "the 36 golden vectors are the digests of pristine wasmtime {}'s sections ({} configurations)",
        line.version,
        golden.lines().count()
    );
    Ok(())
}

/// Builds `target/xtask-pristine`: the registry package unpatched, and the
/// oracle of `tests/oracle.rs` built against it.
fn pristine_workspace(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/xtask-pristine");
    let upstream = fork::upstream_dir(root, lines::with_role(Role::Fork))?;
    // The pinned registry package never changes, so an existing copy is
    // kept (copying again would make cargo rebuild it).
    // It is copied next to its place and renamed, so that an interrupted
    // copy is never taken for a complete one.
    if !dir.join("wasmtime").exists() {
        let partial = dir.join("wasmtime.partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        fork::copy_dir(&upstream, &partial)?;
        let manifest = partial.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)?;
        std::fs::write(&manifest, fork::as_member_manifest(&text))?;
        std::fs::rename(&partial, dir.join("wasmtime"))?;
    }
    // `[patch]`: crates that ask for wasmtime from the registry (the shared
    // test-support crate) get the pristine package too.
    std::fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nmembers = [\"wasmtime\", \"oracle\"]\nresolver = \"3\"\n\n\
         [patch.crates-io]\nwasmtime = { path = \"wasmtime\" }\n",
    )?;
    // The oracle of `tests/oracle.rs`: the same source as the fork's
    // `cwasm-oracle`, built against pristine wasmtime.
    let support = root.join("crates/cwasm-test-support");
    std::fs::create_dir_all(dir.join("oracle"))?;
    std::fs::write(
        dir.join("oracle/Cargo.toml"),
        format!(
            "[package]\nname = \"pristine-oracle\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[dependencies]\n\
             cwasm-test-support = {{ path = \"{}\" }}\n\n\
             [[bin]]\nname = \"{PRISTINE_ORACLE}\"\npath = \"{}\"\n",
            support.display(),
            support.join("src/bin/cwasm-oracle.rs").display()
        ),
    )?;
    // Same dependency versions as the fork's build.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    Ok(dir)
}
