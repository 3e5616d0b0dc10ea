//! Build automation for this repository, in the style of rust-analyzer's
//! `xtask`: every step a contributor or CI runs is Rust code behind
//! `cargo xtask <command>` (see `.cargo/config.toml` for the alias).
//!
//! `xtask` is its own workspace so that it builds and runs before
//! `crates/wasmtime` exists: the root workspace cannot even resolve until
//! `cargo xtask fork` has generated that directory.

mod bench;
mod fork;
mod patchfile;
mod tasks;
mod upstream_check;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
cargo xtask <command> [options]

commands:
  fork [--line L] [--out DIR] [--force]
                               Materialise wasmtime with patches/L/ applied: line 48
                               (the default: wasmtime 48.0.8, into crates/wasmtime),
                               36 (the LTS line: wasmtime 36.0.20, into
                               tests/lts36/wasmtime), or c-api-48 (wasmtime's C API,
                               wasmtime-c-api-impl 48.0.8, into crates/wasmtime-c-api).
                               With --out, write it to DIR and
                               print the [patch.crates-io] lines for an embedder.
                               --force discards local changes in an existing fork.
  export-patches [--line L]    Regenerate patches/L/ (and its series) from the commits
                               of line L's fork.
  upstream-check --git DIR [--skip-tests]
                               Apply patches/main/ to the commit patches/main/base names
                               in a wasmtime git checkout DIR (in a scratch worktree),
                               `cargo check` after every patch, then run upstream's
                               serialization tests (see CONTRIBUTING.md).
  run                          The main job: fork, build, and run the demo.
  test                         Every test: formatting, xtask's own tests, the
                               workspace tests, wasmtime's own --lib tests on the fork,
                               and the same for the 36 LTS line.
  bench [--quick]              Instruction counts (valgrind) of pristine vs fork and of
                               the store's paths, then the criterion benchmarks, then
                               a summary of every ratio (see docs/performance.md).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let root = project_root()?;
    let (cmd, rest) = match args.split_first() {
        Some((cmd, rest)) => (cmd.as_str(), rest),
        None => {
            print!("{USAGE}");
            return Ok(());
        }
    };
    match cmd {
        "fork" => {
            let mut out = None;
            let mut force = false;
            let mut line = fork::default_line();
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--line" => {
                        line = fork::line(
                            it.next()
                                .context("`--line` needs a line: 48, 36 or c-api-48")?,
                        )?
                    }
                    "--out" => {
                        let dir = it.next().context("`--out` needs a directory")?;
                        out = Some(PathBuf::from(dir));
                    }
                    "--force" => force = true,
                    other => bail!("unknown option `{other}` for `fork`\n\n{USAGE}"),
                }
            }
            let opts = fork::ForkOptions { line, out, force };
            let dest = fork::fork(&root, &opts)?;
            if opts.out.is_some() {
                println!(
                    "\nAdd this to your workspace's Cargo.toml:\n\n{}",
                    fork::patch_snippet(line, &dest)
                );
            }
            Ok(())
        }
        "export-patches" => {
            let line = match rest {
                [] => fork::default_line(),
                [flag, name] if flag == "--line" => fork::line(name)?,
                _ => bail!("usage: cargo xtask export-patches [--line 48|36]"),
            };
            fork::export_patches(&root, line)
        }
        "upstream-check" => {
            let mut checkout = None;
            let mut run_tests = true;
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--git" => {
                        let dir = it.next().context("`--git` needs a wasmtime checkout")?;
                        checkout = Some(PathBuf::from(dir));
                    }
                    "--skip-tests" => run_tests = false,
                    other => bail!("unknown option `{other}` for `upstream-check`\n\n{USAGE}"),
                }
            }
            let checkout = checkout.context("usage: cargo xtask upstream-check --git DIR")?;
            upstream_check::check(&root, &checkout, run_tests)
        }
        "run" => {
            no_options(cmd, rest)?;
            tasks::run_main_job(&root)
        }
        "test" => {
            no_options(cmd, rest)?;
            tasks::test(&root)
        }
        "bench" => {
            let quick = match rest {
                [] => false,
                [q] if q == "--quick" => true,
                _ => bail!("usage: cargo xtask bench [--quick]"),
            };
            bench::bench(&root, quick)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn no_options(cmd: &str, rest: &[String]) -> Result<()> {
    if let Some(arg) = rest.first() {
        bail!("`{cmd}` takes no options, got `{arg}`");
    }
    Ok(())
}

/// The repository root: the parent of this crate's manifest directory.
fn project_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// Runs `cmd`, echoing it first, and fails with the command line if it fails.
fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", display(cmd));
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{}`", display(cmd)))?;
    // The time of each step, for the per-stage table of a CI run.
    eprintln!(
        "[xtask] {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        short(cmd)
    );
    if !status.success() {
        bail!("`{}` failed with {status}", display(cmd));
    }
    Ok(())
}

/// `cmd`'s program and first few arguments, for the timing lines.
fn short(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let args: Vec<String> = cmd
        .get_args()
        .take(5)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{program} {}", args.join(" "))
}

/// Runs `cmd` quietly and returns its standard output; on failure the error
/// carries the command line and its standard error.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed with {}:\n{}{}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
