//! The compatibility hash checked against oracles we did not write.
//!
//! - `no_setting_changes_code_behind_the_hash`: for every value of every
//!   public `Config` setter in `cwasm_test_support::settings`, compares the
//!   fork's `serialization_compatibility_hash` with upstream's own cache key
//!   (`precompile_compatibility_hash` fed to one hasher) and with the
//!   compiled artifacts of the probe programs. Fails, naming the setting,
//!   when the upstream key or the compiled code changes but our hash does
//!   not; and when a setting's class in the table is not what is observed.
//! - `every_config_setter_is_classified`: every `pub fn` of `impl Config` in
//!   the fork's source is in the table, and nothing else is.
//! - `fork_artifacts_match_pristine`: the fork's artifacts are byte for byte
//!   those of pristine wasmtime (built by `cargo xtask test` as
//!   `cwasm-oracle`) for every configuration that does not use a setting the
//!   series added to the engine section, and each build loads and runs the
//!   other's.

mod common;

use common::ENGINE_SECTION;
use cwasm_test_support::probes::{PROBES, Probe};
use cwasm_test_support::settings::{Class, Setting, Variant, file_name, settings};
use cwasm_test_support::{DEFAULT, config, labelled_variants, precompile, run};
use object::{Object, ObjectSection};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Config, Engine};

/// Settings the series records in the engine section, beyond what pristine
/// wasmtime records: configurations using them get other artifacts (only
/// their engine section differs) from the fork than from pristine.
const STAMPED_BY_THE_SERIES: &[&str] = &[
    "wmemcheck=true",
    "cranelift_wasmtime_debug_checks=true",
    "cranelift_flag_set=wasmtime_debug_checks=false",
    "cranelift_flag_set=wasmtime_linkopt_padding_between_functions=64",
    "cranelift_flag_set=wasmtime_linkopt_force_jump_veneer=true",
    "memory_guaranteed_dense_image_size=0",
];

/// Settings whose code the series changes on purpose (patch 6: `false`
/// no longer turns the debug checks on): the fork's artifacts are then the
/// default configuration's.
const FIXED_BY_THE_SERIES: &[&str] = &["cranelift_wasmtime_debug_checks=false"];

/// Settings that only change which CPU features the engine believes its host
/// has: with an equal hash, an artifact may be refused here (never loaded
/// wrongly), since the host check happens at load time.
const HOST_CHECK_ONLY: &[&str] = &["detect_host_feature"];

/// What compiling every probe with one configuration gives.
struct Observed {
    hash: [u8; 32],
    upstream: u64,
    /// Per probe: the artifact's sections other than the engine section,
    /// or the compile error.
    code: Vec<Result<BTreeMap<String, Vec<u8>>, String>>,
    artifacts: Vec<Option<Vec<u8>>>,
}

/// Every section of `artifact` but the engine section, by name.
fn code_sections(artifact: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let file = object::File::parse(artifact).expect("artifact parses as an object file");
    file.sections()
        .filter_map(|s| {
            let name = s.name().expect("section name").to_string();
            (name != ENGINE_SECTION).then(|| (name, s.data().expect("section data").to_vec()))
        })
        .collect()
}

fn upstream_key(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

fn observe(config: &Config) -> Result<Observed, String> {
    let engine = Engine::new(config).map_err(|e| format!("{e:#}"))?;
    let hash = engine
        .serialization_compatibility_hash()
        .map_err(|e| format!("hash: {e:#}"))?;
    let mut code = Vec::new();
    let mut artifacts = Vec::new();
    for probe in PROBES {
        match precompile(&engine, probe) {
            Ok(bytes) => {
                code.push(Ok(code_sections(&bytes)));
                artifacts.push(Some(bytes));
            }
            Err(e) => {
                code.push(Err(format!("{e:#}")));
                artifacts.push(None);
            }
        }
    }
    Ok(Observed {
        hash,
        upstream: upstream_key(&engine),
        code,
        artifacts,
    })
}

/// The probes whose compiled code (or whether they compile at all) differs.
fn code_changes(a: &Observed, b: &Observed) -> Vec<&'static str> {
    PROBES
        .iter()
        .zip(a.code.iter().zip(&b.code))
        .filter(|(_, (a, b))| match (a, b) {
            (Ok(a), Ok(b)) => a != b,
            (Err(_), Err(_)) => false,
            _ => true,
        })
        .map(|(p, _)| p.name)
        .collect()
}

#[derive(Default)]
struct SettingSeen {
    hash: bool,
    upstream: bool,
    code: bool,
    built: usize,
}

#[test]
fn no_setting_changes_code_behind_the_hash() {
    let default = observe(&Config::new()).expect("default engine");
    // The oracle is only meaningful if compiling is deterministic.
    let again = observe(&Config::new()).expect("default engine");
    assert_eq!(default.upstream, again.upstream);
    assert!(
        code_changes(&default, &again).is_empty(),
        "compiling the same probes twice gave different code: the oracle cannot work"
    );
    for (probe, code) in PROBES.iter().zip(&default.code) {
        assert!(
            code.is_ok(),
            "probe `{}` does not compile by default: {code:?}",
            probe.name
        );
    }
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for setting in settings() {
        let mut seen = SettingSeen::default();
        for variant in &setting.variants {
            judge_variant(&default, &setting, variant, &mut seen, &mut failures);
        }
        let observed = match (&seen, setting.class) {
            (_, Class::NotApplicable) => Class::NotApplicable,
            (SettingSeen { built: 0, .. }, _) => {
                failures.push(format!("`{}`: no variant builds an engine", setting.name));
                continue;
            }
            (SettingSeen { code: true, .. }, _) => Class::Compiled,
            (SettingSeen { hash: true, .. }, _) => Class::Pessimistic,
            _ => Class::Runtime,
        };
        if observed != setting.class {
            failures.push(format!(
                "`{}` is classified {:?} but behaves as {observed:?} (hash {}, upstream key {}, code {})",
                setting.name, setting.class, seen.hash, seen.upstream, seen.code
            ));
        }
        table.push(format!(
            "{:<42} {:<14} hash:{:<5} upstream:{:<5} code:{}",
            setting.name,
            format!("{observed:?}"),
            seen.hash,
            seen.upstream,
            seen.code
        ));
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Builds an engine with one variant of a setting and compares it with the
/// default: a hole is a change of upstream's key or of the compiled code
/// that our hash misses. Records what changed in `seen`.
fn judge_variant(
    default: &Observed,
    setting: &Setting,
    variant: &Variant,
    seen: &mut SettingSeen,
    failures: &mut Vec<String>,
) {
    let config = config(Some(variant)).expect("variant applies");
    let observed = match observe(&config) {
        Ok(observed) => observed,
        Err(e) => {
            eprintln!("{}: no engine: {e}", variant.label);
            return;
        }
    };
    seen.built += 1;
    let hash = observed.hash != default.hash;
    let upstream = observed.upstream != default.upstream;
    let code = code_changes(default, &observed);
    if !hash && upstream {
        failures.push(format!(
            "HOLE `{}`: upstream's precompile_compatibility_hash changes, ours does not",
            variant.label
        ));
    }
    if !hash && !code.is_empty() {
        failures.push(format!(
            "HOLE `{}`: the compiled code of {code:?} changes, our hash does not",
            variant.label
        ));
    }
    if !hash {
        let engine = Engine::new(&config).expect("built above");
        equal_hash_runs_the_defaults(default, setting, variant, &engine, failures);
    }
    seen.hash |= hash;
    seen.upstream |= upstream;
    seen.code |= !code.is_empty();
}

/// Equal hashes must mean interchangeable artifacts: the default engine's
/// artifacts load and run in `engine` (equal hashes mean an equal target,
/// this host).
fn equal_hash_runs_the_defaults(
    default: &Observed,
    setting: &Setting,
    variant: &Variant,
    engine: &Engine,
    failures: &mut Vec<String>,
) {
    for (probe, artifact) in PROBES.iter().zip(&default.artifacts) {
        let artifact = artifact.as_ref().expect("default compiles every probe");
        // SAFETY: an artifact of wasmtime's, from this process.
        match unsafe { run(engine, probe, artifact) } {
            Ok(answer) if answer == probe.answer => {}
            Err(e)
                if HOST_CHECK_ONLY.contains(&setting.name)
                    && format!("{e:#}").contains("native host") => {}
            Ok(answer) => failures.push(format!(
                "`{}`: equal hash, but the default's `{}` returns {answer}",
                variant.label, probe.name
            )),
            Err(e) => failures.push(format!(
                "`{}`: equal hash, but the default's `{}` fails: {e:#}",
                variant.label, probe.name
            )),
        }
    }
}

/// The names of the `pub fn`s of `impl Config` in the fork's `config.rs`.
fn config_setters_in_source() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/wasmtime/src/config.rs");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fork`)", path.display()));
    let start = source
        .find("\nimpl Config {\n")
        .expect("`impl Config` in config.rs");
    let body = &source[start..];
    let end = body.find("\n}\n").expect("end of `impl Config`");
    body[..end]
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("    pub ")?;
            let rest = rest.strip_prefix("unsafe ").unwrap_or(rest);
            let name = rest.strip_prefix("fn ")?;
            let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
            Some(name[..end].to_string())
        })
        .collect()
}

#[test]
fn every_config_setter_is_classified() {
    let in_source = config_setters_in_source();
    assert!(
        in_source.len() > 50,
        "found only {in_source:?}: parser broken?"
    );
    let in_table: BTreeSet<String> = settings().iter().map(|s| s.name.to_string()).collect();
    let missing: Vec<_> = in_source.difference(&in_table).collect();
    let stale: Vec<_> = in_table.difference(&in_source).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "`Config` setters not classified in crates/cwasm-test-support/src/settings.rs: \
         {missing:?}; classified but no longer in wasmtime: {stale:?}"
    );
    for setting in settings() {
        assert_eq!(
            setting.variants.is_empty(),
            setting.class == Class::NotApplicable,
            "`{}`: only settings the oracle cannot vary go without variants",
            setting.name
        );
        assert!(
            setting.class != Class::NotApplicable || !setting.reason.is_empty(),
            "`{}`: say why it cannot be varied",
            setting.name
        );
    }
}

/// The oracle binaries built by `cargo xtask test` from the same source
/// against pristine wasmtime and against the fork, if it built them.
fn oracles() -> Option<(PathBuf, PathBuf)> {
    match (
        std::env::var_os("CWASM_PRISTINE_ORACLE"),
        std::env::var_os("CWASM_FORK_ORACLE"),
    ) {
        (Some(pristine), Some(fork)) => Some((pristine.into(), fork.into())),
        _ if std::env::var_os("CWASM_REQUIRE_PRISTINE").is_some() => panic!(
            "CWASM_REQUIRE_PRISTINE is set but CWASM_PRISTINE_ORACLE or CWASM_FORK_ORACLE is not"
        ),
        _ => {
            eprintln!(
                "SKIPPED: no pristine wasmtime build to compare with; `cargo xtask test` \
                 builds one and sets CWASM_PRISTINE_ORACLE and CWASM_FORK_ORACLE"
            );
            None
        }
    }
}

/// `oracle dump DIR`.
fn dump(oracle: &Path, dir: &Path) {
    let status = std::process::Command::new(oracle)
        .arg("dump")
        .arg(dir)
        .status()
        .expect("running cwasm-oracle");
    assert!(status.success(), "{} dump failed", oracle.display());
}

/// Runs the pristine oracle's `run` on an artifact file.
fn pristine_run(oracle: &Path, label: &str, probe: &Probe, artifact: &Path) -> Result<i32, String> {
    let out = std::process::Command::new(oracle)
        .args(["run", label, probe.name])
        .arg(artifact)
        .output()
        .expect("running cwasm-oracle");
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn fork_artifacts_match_pristine() {
    let Some((oracle, fork_oracle)) = oracles() else {
        return;
    };
    // Both sides are dumped by the same program in the same way: some
    // artifacts (with `debug_info`) name modules after a per-process
    // counter, so only equal process histories give equal bytes.
    let dir = tempfile::tempdir().unwrap();
    let (pristine_dir, fork_dir) = (dir.path().join("pristine"), dir.path().join("fork"));
    dump(&oracle, &pristine_dir);
    dump(&fork_oracle, &fork_dir);

    let mut failures = Vec::new();
    let mut identical = 0;
    for (label, _) in labelled_variants() {
        let (p, f) = (
            pristine_dir.join(file_name(&label)),
            fork_dir.join(file_name(&label)),
        );
        if p.join("engine.err").exists() != f.join("engine.err").exists() {
            failures.push(format!("`{label}`: only one of the builds makes an engine"));
            continue;
        }
        for probe in PROBES {
            let name = format!("{}.cwasm", probe.name);
            let (pristine, fork) = (
                std::fs::read(p.join(&name)).ok(),
                std::fs::read(f.join(&name)).ok(),
            );
            match (&fork, &pristine) {
                (None, None) => continue,
                (Some(f), Some(p)) if f == p => identical += 1,
                (Some(f), Some(p)) if STAMPED_BY_THE_SERIES.contains(&label.as_str()) => {
                    if code_sections(f) != code_sections(p) {
                        failures.push(format!("`{label}` `{}`: code differs", probe.name));
                    }
                }
                (Some(f), Some(_)) if FIXED_BY_THE_SERIES.contains(&label.as_str()) => {
                    let default = std::fs::read(fork_dir.join(DEFAULT).join(&name)).unwrap();
                    if *f != default {
                        failures.push(format!(
                            "`{label}` `{}`: not the default's code",
                            probe.name
                        ));
                    }
                }
                _ => failures.push(format!(
                    "`{label}` `{}`: the fork's artifact differs from pristine's",
                    probe.name
                )),
            }
        }
    }

    // Both directions of loading, on the default configuration.
    let host = Engine::default();
    for probe in PROBES {
        let pristine_file = pristine_dir
            .join(DEFAULT)
            .join(format!("{}.cwasm", probe.name));
        let pristine = std::fs::read(&pristine_file).unwrap();
        // SAFETY: an artifact of pristine wasmtime's.
        match unsafe { run(&host, probe, &pristine) } {
            Ok(a) if a == probe.answer => {}
            other => failures.push(format!("fork loading pristine `{}`: {other:?}", probe.name)),
        }
        let fork_file = dir.path().join(format!("{}.cwasm", probe.name));
        std::fs::write(&fork_file, precompile(&host, probe).unwrap()).unwrap();
        match pristine_run(&oracle, DEFAULT, probe, &fork_file) {
            Ok(a) if a == probe.answer => {}
            other => failures.push(format!(
                "pristine loading the fork's `{}`: {other:?}",
                probe.name
            )),
        }
    }
    eprintln!("{identical} artifacts byte-identical to pristine wasmtime's");
    assert!(identical > 500, "only {identical} artifacts compared");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
