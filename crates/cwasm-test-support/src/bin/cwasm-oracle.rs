//! Built by `cargo xtask test` against *pristine* wasmtime, this program is
//! the oracle the fork's artifacts are compared with (`tests/oracle.rs`).
//!
//! - `cwasm-oracle dump DIR`: for every configuration of the settings
//!   table, `DIR/<label>/<probe>.cwasm` (or `.err` with the error), and
//!   `DIR/<label>/engine.err` where the engine cannot be built.
//! - `cwasm-oracle run LABEL PROBE ARTIFACT`: loads the artifact into the
//!   engine of that configuration and prints what `run` returns; exit 1 and
//!   the error if it is refused or fails.

use cwasm_test_support::wasmtime::error::Context;
use cwasm_test_support::wasmtime::{Engine, Result, bail};
use cwasm_test_support::{config, labelled_variants, precompile, probe, probes::PROBES, run};
use std::path::Path;

fn engine_for(label: &str) -> Result<Engine> {
    let (_, variant) = labelled_variants()
        .into_iter()
        .find(|(l, _)| l == label)
        .with_context(|| format!("no configuration `{label}`"))?;
    Engine::new(&config(variant.as_ref())?)
}

fn dump(dir: &Path) -> Result<()> {
    for (label, variant) in labelled_variants() {
        let out = dir.join(cwasm_test_support::settings::file_name(&label));
        std::fs::create_dir_all(&out)?;
        let engine = match config(variant.as_ref()).and_then(|c| Engine::new(&c)) {
            Ok(engine) => engine,
            Err(e) => {
                std::fs::write(out.join("engine.err"), format!("{e:#}"))?;
                continue;
            }
        };
        for probe in PROBES {
            match precompile(&engine, probe) {
                Ok(bytes) => std::fs::write(out.join(format!("{}.cwasm", probe.name)), bytes)?,
                Err(e) => {
                    std::fs::write(out.join(format!("{}.err", probe.name)), format!("{e:#}"))?
                }
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["dump", dir] => dump(Path::new(dir)),
        ["run", label, name, artifact] => {
            let engine = engine_for(label)?;
            let bytes = std::fs::read(artifact).with_context(|| format!("reading {artifact}"))?;
            // SAFETY: the artifacts the oracle is given are wasmtime's own,
            // from the fork or from this build.
            let answer = unsafe { run(&engine, probe(name)?, &bytes)? };
            println!("{answer}");
            Ok(())
        }
        _ => bail!("usage: cwasm-oracle dump DIR | cwasm-oracle run LABEL PROBE ARTIFACT"),
    }
}
