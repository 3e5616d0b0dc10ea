//! `cwasm`: precompiled WebAssembly keyed on wasmtime's
//! `Engine::serialization_compatibility_hash`, for operators. See README.md.

mod commands;
mod flags;
mod store_args;

use clap::{Parser, Subcommand};
use commands::{admin, compile, demo, engine, inspect};
use std::path::PathBuf;
use std::process::ExitCode;
use store_args::StoreArgs;
use wasmtime::Result;

/// Exit status for invalid usage, as clap uses for its own errors.
const EXIT_USAGE: u8 = 2;

/// Exit status when `verify` finds bad entries.
pub(crate) const EXIT_BAD_ENTRIES: u8 = 3;

#[derive(Parser)]
#[command(
    name = "cwasm",
    version,
    about = "Precompiled WebAssembly stored by wasmtime's serialization compatibility hash",
    after_help = "\
Stores: --store takes a directory, an object store URL (s3://bucket/prefix,
gs://..., az://..., http(s)://...) or an OCI repository
(oci://registry/repository[:tag]; see `cwasm push`); credentials and
endpoints come from the usual environment variables (AWS_ACCESS_KEY_ID,
AWS_ENDPOINT, ..., CWASM_OCI_USERNAME and CWASM_OCI_PASSWORD). Without
--store, the local store in your cache directory is used
($XDG_CACHE_HOME/cwasm or ~/.cache/cwasm on Linux, ~/Library/Caches/cwasm on
macOS, the local application data folder on Windows), or the `directory` of
--cache-config.

Exit status: 0 success; 1 error; 2 invalid usage; 3 `verify` found bad entries."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the engine hash of this host's default config, or of the config
    /// the flags describe.
    Hash {
        #[command(flatten)]
        engine: flags::EngineFlags,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what this machine's engine records: its target and every
    /// Cranelift ISA setting detected here (the input of `baseline`).
    Host {
        /// Print JSON (a host file for `baseline`).
        #[arg(long)]
        json: bool,
    },
    /// Compute the CPU baseline every given host has, from the output of
    /// `cwasm host --json` on each kind of machine (or profiles), and print
    /// the flags that select it, the profile, and the engine hash it gives.
    Baseline {
        /// Host files (`cwasm host --json`) or profiles, one per kind of
        /// machine.
        #[arg(required = true, value_name = "HOST")]
        hosts: Vec<PathBuf>,
        /// Also write the profile (TOML) to this file, for `--profile`.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a precompiled artifact (.cwasm) was compiled for, and its
    /// statement (who produced it, who signed it) if it has one.
    Inspect {
        /// The artifact.
        file: PathBuf,
        /// Its statement (default: FILE.intoto.json, where the store keeps
        /// it, if there is one).
        #[arg(long, value_name = "FILE")]
        statement: Option<PathBuf>,
        /// Verify the statement's signature with this public key (PEM);
        /// fails unless one of the keys signed it for this file. Repeatable.
        #[arg(long = "trusted-key", value_name = "FILE")]
        trusted_keys: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an Ed25519 key pair for signing statements: NAME.key (private,
    /// PKCS#8 PEM, readable by this user only) for --sign-key on a build
    /// machine, NAME.pub (public) for --trusted-key on every host.
    Keygen {
        /// Where to write the two files (never overwritten).
        #[arg(value_name = "NAME")]
        name: PathBuf,
    },
    /// Push a .wasm as an OCI image (oci://registry/repository:tag), laid
    /// out as wasm toolchains push one, and print its digest. An OCI store
    /// (--store oci://registry/repository) attaches its artifacts to the
    /// image holding the wasm: this is for wasm no toolchain pushed.
    Push {
        /// The image: oci://registry/repository:tag.
        #[arg(value_name = "IMAGE")]
        image: String,
        /// The binary .wasm (the image holds the bytes hosts load).
        #[arg(value_name = "WASM")]
        file: PathBuf,
    },
    /// Precompile wasm modules and components into the store, in parallel.
    Compile {
        /// The .wasm (or .wat) files.
        #[arg(required = true, value_name = "WASM")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        engine: flags::EngineFlags,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the store: per engine hash, entries, bytes and what it is for.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every entry's engine stamp against its key (and its tag, with
    /// --hmac-key-file; its signed statement, with --trusted-key). Exits
    /// with 3 if any entry is bad.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the size and count limits, with --keep drop every other engine
    /// generation, and with --produced-by the artifacts of a wasmtime
    /// release.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Keep only these engine hashes (hex), deleting all other prefixes.
        #[arg(long, num_args = 1..)]
        keep: Vec<String>,
        /// Delete the entries whose statement names a wasmtime version
        /// matching this requirement (`<48.0.8`): a release found to
        /// miscompile. Entries without a statement are left.
        #[arg(long, value_name = "REQ")]
        produced_by: Option<cwasm_store::semver::VersionReq>,
        /// Report what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The main job: compile a bundled example into the local store, show its
    /// hash, and load it back from the store.
    Demo {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // Error chains carry names and server messages others chose:
            // shown without their control characters (escape sequences).
            eprintln!("error: {}", printable(&format!("{e:#}")));
            if e.is::<flags::InvalidOptions>() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command whose reader goes away (`cwasm inspect app.cwasm | head -2`)
/// stops quietly, as other Unix tools do. Rust starts programs with SIGPIPE
/// ignored, which turns the next write into a panic in `println!`; this
/// restores the default action.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists;
    // it only resets one signal's disposition to the default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Hash { engine, json } => engine::hash(&engine, json)?,
        Command::Host { json } => engine::host(json)?,
        Command::Baseline { hosts, write, json } => {
            engine::baseline(&hosts, write.as_deref(), json)?
        }
        Command::Inspect {
            file,
            statement,
            trusted_keys,
            json,
        } => inspect::inspect(&file, statement.as_deref(), &trusted_keys, json)?,
        Command::Keygen { name } => admin::keygen(&name)?,
        Command::Push { image, file } => admin::push(&image, &file)?,
        Command::Compile {
            files,
            engine,
            store,
            json,
        } => compile::compile(&files, &engine, &store, json)?,
        Command::Ls { store, json } => admin::ls(&store, json)?,
        Command::Verify { store, json } => return admin::verify(&store, json),
        Command::Gc {
            store,
            keep,
            produced_by,
            dry_run,
            json,
        } => admin::gc(&store, &keep, produced_by.as_ref(), dry_run, json)?,
        Command::Demo { store } => demo::demo(&store)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `text` with control characters escaped (`\u{1b}`, `\n`, ...): text read
/// from artifacts and stores is someone else's, and must not drive the
/// operator's terminal.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_stores_are_escaped() {
        assert_eq!(printable("48\u{1b}[2J\nx86_64"), "48\\u{1b}[2J\\nx86_64");
        assert_eq!(
            printable("wasmtime 48 x86_64-unknown-linux-gnu"),
            "wasmtime 48 x86_64-unknown-linux-gnu"
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
