//! The README's commands (`run`, `test`) and the pieces `bench` shares.

use crate::fork::{self, ForkOptions, Line};
use crate::{cargo, run};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ensure_fork(root: &Path, line: &'static Line) -> Result<()> {
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
    ensure_fork(root, fork::default_line())?;
    ensure_fork(root, fork::line("c-api-48")?)
}

/// The main job: show this host's compatibility hash, and the same hash read
/// back from an artifact precompiled and stored by the `cwasm` tool.
pub fn run_main_job(root: &Path) -> Result<()> {
    ensure_workspace_forks(root)?;
    run(cargo()
        .current_dir(root)
        .args(["run", "--locked", "--quiet", "--bin", "cwasm", "--", "demo"]))
}

/// wasmtime unit tests that fail in this project's CI sandbox on pristine
/// wasmtime 48.0.8 too (and on upstream `main`), for reasons unrelated to the series; see
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

/// Builds `cwasm-oracle` against pristine wasmtime 48.0.8, in the shared
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
    let tree = crate::output(cargo().current_dir(root).args([
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

/// `cmake` on this process's `PATH` (so every cargo command below finds
/// it): `wasmtime-c-api-impl`'s build script runs it to install the C
/// headers. The system's if it has one, else one installed from the Python
/// package registry into `target/tools-venv` on first use.
fn provide_cmake(root: &Path) -> Result<()> {
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
fn pip_install(venv: &Path, package: &str) -> Result<()> {
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
    let s3 = S3Server::start(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .envs(s3.env())
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
    ensure_fork(root, fork::line("36")?)?;
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
    let line = fork::line("36")?;
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
    let out = crate::output(lts36_cargo(root, &dir).args(["run", "--quiet"]))
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
    let upstream = fork::upstream_dir(root, fork::default_line())?;
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

/// moto's S3 server, installed from the Python package registry into
/// `target/moto-venv` on first use and started on a free loopback port for
/// the duration of the tests.
pub(crate) struct S3Server {
    child: std::process::Child,
    port: u16,
}

const MOTO: &str = "moto[server]==5.2.5";
const TEST_BUCKET: &str = "cwasm-test";

impl S3Server {
    pub(crate) fn start(root: &Path) -> Result<S3Server> {
        let venv = root.join("target/moto-venv");
        let server = venv.join("bin/moto_server");
        if !server.exists() {
            pip_install(&venv, MOTO)?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(root.join("target/moto.log"))?;
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting moto_server")?;
        let server = S3Server { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match server.create_bucket() {
                Ok(()) => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(e).context("moto did not come up within 60s (see target/moto.log)");
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
        eprintln!("S3 (moto) listening on 127.0.0.1:{port}, bucket `{TEST_BUCKET}`");
        Ok(server)
    }

    /// `PUT /<bucket>`: moto accepts unsigned requests.
    fn create_bucket(&self) -> Result<()> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        write!(
            stream,
            "PUT /{TEST_BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("creating the test bucket failed: {response}");
        }
        Ok(())
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("CWASM_TEST_S3_URL", format!("s3://{TEST_BUCKET}")),
            ("CWASM_REQUIRE_S3", "1".into()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
