//! `cargo xtask upstream-check --git <checkout>`: the series as a reviewer of
//! the upstream pull request would try it.
//!
//! Review happens against upstream `main`, where the series is kept in
//! `patches/main/` (rebased on the commit `patches/main/base` names). This
//! command:
//!
//! 1. makes a scratch git repository in `target/upstream-check/wasmtime` that
//!    borrows the checkout's objects (`objects/info/alternates`, nothing is
//!    copied into git) and checks out the base commit's files. A checkout may
//!    lack some blobs (a partial clone, or a mirror without large test
//!    fixtures): the files that are present are checked out and the rest are
//!    listed, which is enough as long as no build input is missing;
//! 2. applies the series with `git am`, and runs `cargo check -p wasmtime`
//!    after every patch ([`PER_PATCH_CHECKS`]: the default features, and a
//!    runtime without a compiler), so each patch builds on its own;
//! 3. runs on the result every `cargo check` of the `wasmtime` crate that
//!    upstream's CI runs and this machine can run, read from the checkout's
//!    own `.github/workflows/main.yml` ([`ci_checks`]): its feature matrix
//!    (`micro_checks`) on the host, and its `no_std` checks for each target
//!    whose standard library is installed (`rustup target add`);
//! 4. runs upstream's tests on the result: `cargo test -p wasmtime --lib`
//!    (with the `wmemcheck` feature, which the series' own tests need), and
//!    the integration tests in upstream's `tests/all/` that exercise the engine
//!    section (`module_serialize.rs`, `module.rs`, `component_model/aot.rs`),
//!    compiled by a small harness package because upstream's `all` test
//!    binary needs `wasm32-wasip1` guest programs that cannot be built
//!    offline.
//!
//! Upstream `main` declares a newer `rust-version` than this repository's
//! toolchain; every cargo command passes `--ignore-rust-version`.
//!
//! Nothing here runs in CI: CI has no upstream checkout. CONTRIBUTING.md says
//! how to get one.

use crate::cmd::{cargo, output, run};
use crate::fork::{git_am, git_command as git, read_series_in};
use crate::test::skip_upstream_failures;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Upstream's integration tests that exercise the engine section, relative
/// to the checkout, and the module name the harness gives each.
const INTEGRATION_TESTS: &[(&str, &str)] = &[
    ("tests/all/module_serialize.rs", "module_serialize"),
    ("tests/all/module.rs", "module"),
];

/// Upstream's component-model test of artifacts, which takes its engine from
/// its parent module (`super::engine()`); the harness gives it one.
const COMPONENT_AOT_TEST: &str = "tests/all/component_model/aot.rs";

/// The `cargo check -p wasmtime --lib` feature sets every patch must build
/// with on its own: the default features with the unit tests (and
/// `wmemcheck`, which the series' tests use), and a runtime with `std` but
/// without a compiler, where code only compiling engines use must not leave
/// unused imports (wasmtime allows them only without `runtime` or `std`).
const PER_PATCH_CHECKS: &[&[&str]] = &[
    &["--tests", "--features", "wmemcheck"],
    &["--no-default-features", "--features", "runtime,std"],
];

/// Where upstream's CI is defined, relative to the checkout.
const CI_WORKFLOW: &str = ".github/workflows/main.yml";

/// One `cargo check` of upstream's CI: its arguments after `check`, and the
/// target it runs for (`None`: the host).
#[derive(Debug, PartialEq)]
struct CiCheck {
    args: Vec<String>,
    target: Option<String>,
}

/// The features upstream's integration tests enable on wasmtime (its root
/// `Cargo.toml`, `[dev-dependencies.wasmtime]`), plus `wmemcheck` for the
/// series' own test of that setting.
const WASMTIME_TEST_FEATURES: &str = "\"default\", \"anyhow\", \"winch\", \"pulley\", \
    \"all-arch\", \"call-hook\", \"memory-protection-keys\", \"component-model-async\", \
    \"component-model-bytes\", \"gc-copying\", \"wmemcheck\"";

pub fn check(root: &Path, checkout: &Path, run_tests: bool) -> Result<()> {
    let series_dir = root.join("patches/main");
    let base = read_base(&series_dir)?;
    let series = read_series_in(&series_dir)?;
    let git_dir = git_dir_of(checkout)?;
    let scratch = root.join("target/upstream-check");
    let wt = scratch.join("wasmtime");

    eprintln!("== upstream {base} from {}", checkout.display());
    check_out_base(&git_dir, &base, &wt)?;

    let target_dir = root.join("target");
    for (i, patch) in series.iter().enumerate() {
        let path = wt.join(".git").join(&patch.name);
        fs::write(&path, &patch.text)?;
        if let Some(report) = git_am(&wt, &path)? {
            bail!(
                "patches/main/{} does not apply to upstream {base}:\n{report}\n\
                 (the scratch repository is left in {} to resolve it)",
                patch.name,
                wt.display()
            );
        }
        eprintln!(
            "== [{}/{}] {}: cargo check",
            i + 1,
            series.len(),
            patch.name
        );
        for features in PER_PATCH_CHECKS {
            run(upstream_cargo(&wt, &target_dir)
                .args(["check", "--quiet", "-p", "wasmtime", "--lib"])
                .args(*features)
                .arg("--ignore-rust-version"))
            .with_context(|| {
                format!(
                    "{} does not build on upstream {base} with {}",
                    patch.name,
                    features.join(" ")
                )
            })?;
        }
    }
    run_ci_checks(&wt, &target_dir)?;
    if !run_tests {
        eprintln!(
            "upstream-check: {} patches apply and build on {base}",
            series.len()
        );
        return Ok(());
    }

    eprintln!("== upstream's unit tests: cargo test -p wasmtime --lib");
    let mut cmd = upstream_cargo(&wt, &target_dir);
    cmd.args([
        "test",
        "-p",
        "wasmtime",
        "--lib",
        "--features",
        "wmemcheck",
        "--ignore-rust-version",
        "--",
    ]);
    // The same five tests as on 48 fail in this sandbox, for the same
    // kernel reason; see CONTRIBUTING.md ("Known failures upstream").
    skip_upstream_failures(&mut cmd);
    run(&mut cmd)?;

    eprintln!("== upstream's integration tests of the engine section");
    let harness = write_harness(&scratch, &wt)?;
    run(upstream_cargo(&harness, &target_dir).args(["test", "--ignore-rust-version"]))?;
    eprintln!(
        "upstream-check: {} patches apply, build and pass upstream's tests on {base}",
        series.len()
    );
    Ok(())
}

/// Runs every check [`ci_checks`] finds in `wt`'s workflow, skipping those
/// for targets whose standard library is not installed, and fails if any
/// fails (after running them all, so the report is complete).
fn run_ci_checks(wt: &Path, target_dir: &Path) -> Result<()> {
    let workflow = fs::read_to_string(wt.join(CI_WORKFLOW))
        .with_context(|| format!("reading upstream's {CI_WORKFLOW}"))?;
    let checks = ci_checks(&workflow);
    if checks.is_empty() {
        bail!("found no `cargo check -p wasmtime` in upstream's {CI_WORKFLOW}");
    }
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    let mut failed = Vec::new();
    for check in &checks {
        let shown = match &check.target {
            Some(target) => format!("{} --target {target}", check.args.join(" ")),
            None => check.args.join(" "),
        };
        if let Some(target) = &check.target
            && !installed.lines().any(|t| t.trim() == target)
        {
            eprintln!("== skipped (no `{target}` standard library here): cargo check {shown}");
            continue;
        }
        eprintln!("== upstream CI: cargo check {shown}");
        let mut cmd = upstream_cargo(wt, target_dir);
        cmd.args(["check", "--quiet"]).args(&check.args);
        if let Some(target) = &check.target {
            cmd.args(["--target", target]);
        }
        if run(cmd.arg("--ignore-rust-version")).is_err() {
            failed.push(shown);
        }
    }
    if !failed.is_empty() {
        bail!(
            "the series fails upstream's CI checks:\n  {}",
            failed.join("\n  ")
        );
    }
    eprintln!(
        "upstream-check: {} of upstream's CI checks pass",
        checks.len()
    );
    Ok(())
}

/// The `cargo check`s of the `wasmtime` crate in upstream's CI workflow:
/// each `-p wasmtime ...` line of the `wasmtime` entry of `micro_checks`
/// (run on the host), and each `cargo check -p wasmtime ...` command of a
/// `platform_checks` entry for a `*-none*` target (the `no_std` checks).
fn ci_checks(workflow: &str) -> Vec<CiCheck> {
    let mut checks = Vec::new();
    let mut job = "";
    let mut target: Option<&str> = None;
    for line in workflow.lines() {
        // Jobs are the keys indented by two spaces.
        if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !key.starts_with(' ')
        {
            job = key;
            target = None;
        }
        let text = line.trim();
        if let Some(t) = text.strip_prefix("- target: ") {
            target = Some(t.trim());
        }
        if job == "micro_checks" && text.starts_with("-p wasmtime ") {
            checks.push(CiCheck {
                args: text.split_whitespace().map(String::from).collect(),
                target: None,
            });
        }
        if job == "platform_checks"
            && let Some(t) = target.filter(|t| t.contains("-none"))
        {
            for command in text.split("&&") {
                let command = command.trim();
                let command = command.strip_prefix("test:").unwrap_or(command).trim();
                if let Some(args) = command.strip_prefix("cargo check -p wasmtime ") {
                    let mut all = vec!["-p".to_string(), "wasmtime".to_string()];
                    all.extend(args.split_whitespace().map(String::from));
                    checks.push(CiCheck {
                        args: all,
                        target: Some(t.to_string()),
                    });
                }
            }
        }
    }
    checks
}

/// `cargo` in `dir`, for every build of upstream's code: the shared target
/// directory, warnings denied (so builds are alike, and the series adds none).
fn upstream_cargo(dir: &Path, target_dir: &Path) -> Command {
    let mut cmd = cargo();
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", "-D warnings");
    cmd
}

/// The commit `patches/main/base` names: its first line that is neither
/// empty nor a comment.
fn read_base(series_dir: &Path) -> Result<String> {
    let path = series_dir.join("base");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let base = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .with_context(|| format!("{} names no commit", path.display()))?;
    if base.len() != 40 || !base.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{}: `{base}` is not a full commit id", path.display());
    }
    Ok(base.to_string())
}

/// The absolute git directory of `checkout` (a work tree or a bare mirror).
fn git_dir_of(checkout: &Path) -> Result<PathBuf> {
    let dir = output(
        Command::new("git")
            .current_dir(checkout)
            .args(["rev-parse", "--absolute-git-dir"]),
    )
    .with_context(|| format!("{} is not a git checkout", checkout.display()))?;
    Ok(PathBuf::from(dir.trim()))
}

/// Makes `wt` a fresh repository whose first commit holds the files of
/// `base` that `git_dir` has.
fn check_out_base(git_dir: &Path, base: &str, wt: &Path) -> Result<()> {
    let upstream = || {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir").arg(git_dir);
        cmd
    };
    output(upstream().args(["cat-file", "-e", &format!("{base}^{{commit}}")])).with_context(
        || {
            format!(
                "{} does not have commit {base}: fetch upstream `main` first",
                git_dir.display()
            )
        },
    )?;
    if wt.exists() {
        fs::remove_dir_all(wt).with_context(|| format!("removing {}", wt.display()))?;
    }
    fs::create_dir_all(wt)?;
    output(git(wt).args(["init", "--quiet", "--initial-branch=main"]))?;
    fs::write(
        wt.join(".git/objects/info/alternates"),
        format!("{}\n", git_dir.join("objects").display()),
    )?;

    // Every blob of the tree, then the ones the object store really has.
    let listing = output(upstream().args(["ls-tree", "-r", "--full-tree", base]))?;
    let mut blobs = Vec::new();
    for line in listing.lines() {
        let (meta, path) = line.split_once('\t').context("unexpected `ls-tree` line")?;
        let mut parts = meta.split(' ');
        let (Some(mode), Some(kind), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("unexpected `ls-tree` line: {line}");
        };
        // Submodules (`commit`) have no files here.
        if kind == "blob" {
            blobs.push((mode.to_string(), id.to_string(), path.to_string()));
        }
    }
    let ids: String = blobs.iter().map(|(_, id, _)| format!("{id}\n")).collect();
    let present = pipe(upstream().args(["cat-file", "--batch-check"]), &ids)?;
    let mut index = String::new();
    let mut missing = Vec::new();
    for ((mode, id, path), status) in blobs.iter().zip(present.lines()) {
        if status.ends_with(" missing") {
            missing.push(path.as_str());
        } else {
            index.push_str(&format!("{mode} {id}\t{path}\n"));
        }
    }
    pipe(git(wt).args(["update-index", "--index-info"]), &index)?;
    output(git(wt).args(["checkout-index", "--all", "--force"]))?;
    output(git(wt).args([
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        &format!("upstream {base}"),
    ]))?;
    eprintln!(
        "checked out {} files of {base} into {}",
        blobs.len() - missing.len(),
        wt.display()
    );
    if !missing.is_empty() {
        eprintln!(
            "{} files are not in the checkout's object store (not needed by these builds):",
            missing.len()
        );
        for path in &missing {
            eprintln!("  {path}");
        }
    }
    Ok(())
}

/// A package that compiles [`INTEGRATION_TESTS`] from the scratch checkout
/// against its patched wasmtime, in a workspace of its own that uses
/// upstream's lockfile.
fn write_harness(scratch: &Path, wt: &Path) -> Result<PathBuf> {
    let dir = scratch.join("serialization-tests");
    fs::create_dir_all(dir.join("src"))?;
    let crate_dir = |name: &str| wt.join("crates").join(name).display().to_string();
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"upstream-serialization-tests\"\nversion = \"0.0.0\"\n\
             edition = \"2024\"\npublish = false\n\n[dependencies]\n\
             wasmtime = {{ path = \"{}\", features = [{WASMTIME_TEST_FEATURES}] }}\n\
             wasmtime-environ = {{ path = \"{}\" }}\n\
             wasmtime-test-macros = {{ path = \"{}\" }}\n\
             wasmtime-test-util = {{ path = \"{}\", features = [\"wast\", \"wasmtime-wast\", \"component\"] }}\n\
             env_logger = \"0.11\"\ntarget-lexicon = \"0.13\"\ntempfile = \"3\"\nwat = \"1\"\n\
             tokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n\n\
             [workspace]\n",
            crate_dir("wasmtime"),
            crate_dir("environ"),
            crate_dir("test-macros"),
            crate_dir("test-util"),
        ),
    )?;
    let mut lib = String::from(
        "//! Generated by `cargo xtask upstream-check`: upstream's own tests of\n\
         //! the engine section, compiled against the patched checkout.\n\
         #![cfg(test)]\n#![allow(dead_code, unused_imports)]\n",
    );
    for (path, module) in INTEGRATION_TESTS {
        lib.push_str(&format!(
            "#[path = \"{}\"]\nmod {module};\n",
            wt.join(path).display()
        ));
    }
    lib.push_str(&format!(
        "mod component_model {{\n    pub use wasmtime_test_util::component::engine;\n    \
         #[path = \"{}\"]\n    mod aot;\n}}\n",
        wt.join(COMPONENT_AOT_TEST).display()
    ));
    fs::write(dir.join("src/lib.rs"), lib)?;
    fs::copy(wt.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    Ok(dir)
}

/// Runs `cmd` with `input` on its standard input and returns its output.
fn pipe(cmd: &mut Command, input: &str) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting git")?;
    let mut stdin = child.stdin.take().context("git has no stdin")?;
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing to git panicked"))??;
    if !out.status.success() {
        bail!("git failed with {}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_checks_are_read_from_the_workflow() {
        let workflow = "\
jobs:
  micro_checks:
    strategy:
      matrix:
        include:
          - name: wasmtime
            checks: |
              -p wasmtime --no-default-features
              -p wasmtime --all-features
          - name: wasmtime-fiber
            checks: |
              -p wasmtime-internal-fiber --no-default-features
  platform_checks:
    strategy:
      matrix:
        include:
        - target: x86_64-unknown-none
          test: >
            cargo check -p wasmtime --no-default-features --features runtime &&
            cargo check -p cranelift-control --no-default-features
        - target: wasm32-wasip1
          test: cargo check -p wasmtime --features x
        - target: riscv32imac-unknown-none-elf
          test: cargo check -p wasmtime --no-default-features --features gc
  other:
    steps:
    - run: cargo check -p wasmtime --features y
";
        let check = |args: &str, target: Option<&str>| CiCheck {
            args: args.split(' ').map(String::from).collect(),
            target: target.map(String::from),
        };
        let none = "--no-default-features --features";
        assert_eq!(
            ci_checks(workflow),
            [
                check("-p wasmtime --no-default-features", None),
                check("-p wasmtime --all-features", None),
                check(
                    &format!("-p wasmtime {none} runtime"),
                    Some("x86_64-unknown-none")
                ),
                check(
                    &format!("-p wasmtime {none} gc"),
                    Some("riscv32imac-unknown-none-elf")
                ),
            ]
        );
    }
}
