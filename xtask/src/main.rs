//! Build automation for this repository, in the style of rust-analyzer's
//! `xtask`: every step a contributor or CI runs is Rust code behind
//! `cargo xtask <command>` (see `.cargo/config.toml` for the alias).
//!
//! `xtask` is its own workspace so that it builds and runs before
//! `crates/wasmtime` exists: the root workspace cannot even resolve until
//! `cargo xtask fork` has generated that directory.
//!
//! One module per command (`fork`, `export`, `upstream_check`, `run`,
//! `test`, `bench`); the flags of all of them are declared once, below;
//! every version and line comes from `lines.rs`.

mod bench;
mod cmd;
mod export;
mod fork;
mod lines;
mod patchfile;
mod run;
mod servers;
mod test;
mod tools;
mod upstream_check;

use anyhow::Result;
use clap::{Parser, Subcommand};
use lines::Line;
use std::path::PathBuf;
use std::process::ExitCode;

/// Build automation for the wasmtime serialization-compatibility-hash fork.
#[derive(Parser)]
#[command(name = "cargo xtask", disable_version_flag = true)]
struct Xtask {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Materialise a line's registry package with `patches/<line>/` applied.
    /// With --out, write it to DIR and print the [patch.crates-io] lines for
    /// an embedder.
    Fork {
        #[arg(long, default_value = lines::default_line().name, value_parser = parse_line, help = lines::help())]
        line: &'static Line,
        /// Where to write the fork (default: the line's directory here).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Discard local changes in an existing fork.
        #[arg(long)]
        force: bool,
    },
    /// Regenerate `patches/<line>/` (and its series) from the commits of the
    /// line's fork.
    ExportPatches {
        #[arg(long, default_value = lines::default_line().name, value_parser = parse_line, help = lines::help())]
        line: &'static Line,
    },
    /// Apply `patches/main/` to the commit `patches/main/base` names in a
    /// wasmtime git checkout (in a scratch worktree), `cargo check` after
    /// every patch, then run upstream's serialization tests (see
    /// CONTRIBUTING.md).
    UpstreamCheck {
        /// The wasmtime git checkout.
        #[arg(long, value_name = "DIR")]
        git: PathBuf,
        /// Only check that every patch builds.
        #[arg(long)]
        skip_tests: bool,
    },
    /// The main job: fork, build, and run the demo.
    Run,
    /// Every test: formatting, xtask's own tests, the workspace tests,
    /// wasmtime's own --lib tests on the fork, and the same for the LTS line.
    Test,
    /// Instruction counts (valgrind) of pristine vs fork and of the store's
    /// paths, then the criterion benchmarks, then a summary of every ratio
    /// (see docs/performance.md).
    Bench {
        /// Criterion's quick mode.
        #[arg(long)]
        quick: bool,
    },
    /// Start the test servers (S3, GCS, Azure, an OCI registry) on
    /// loopback, print the environment the tests read, and keep them up
    /// until interrupted: for running single tests by hand.
    Servers,
}

fn parse_line(name: &str) -> Result<&'static Line, String> {
    lines::line(name).map_err(|e| format!("{e:#}"))
}

fn main() -> ExitCode {
    let command = Xtask::parse().command;
    match dispatch(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    let root = cmd::project_root()?;
    match command {
        Command::Fork { line, out, force } => {
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
        Command::ExportPatches { line } => export::export_patches(&root, line),
        Command::UpstreamCheck { git, skip_tests } => {
            upstream_check::check(&root, &git, !skip_tests)
        }
        Command::Run => run::run_main_job(&root),
        Command::Test => test::test(&root),
        Command::Bench { quick } => bench::bench(&root, quick),
        Command::Servers => servers::serve(&root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent_and_parse() {
        Xtask::command().debug_assert();
        let parsed = Xtask::try_parse_from(["xtask", "fork", "--line", "36", "--force"]).unwrap();
        assert!(
            matches!(parsed.command, Command::Fork { line, force: true, .. } if line.name == "36")
        );
        let parsed = Xtask::try_parse_from(["xtask", "export-patches"]).unwrap();
        assert!(
            matches!(parsed.command, Command::ExportPatches { line } if line.name == lines::default_line().name)
        );
        assert!(Xtask::try_parse_from(["xtask", "fork", "--line", "99"]).is_err());
        assert!(Xtask::try_parse_from(["xtask", "test", "--quick"]).is_err());
    }
}
