//! CPU profiles: one compilation target and one set of Cranelift ISA settings
//! shared by a fleet of different machines, so that the fleet shares one
//! engine hash, and so one artifact per module, instead of one per CPU model.
//!
//! By default an engine compiles for the CPU it runs on and records every
//! feature it detected there in the engine section; two machines of different
//! CPU generations get different hashes. A [`CpuProfile`] names the target
//! and every ISA setting explicitly (naming the target turns detection off),
//! so every engine configured from it records the same section, wherever it
//! runs:
//!
//! 1. on each kind of machine, [`HostInfo::detect`] (`cwasm host --json`)
//!    says what its engine records;
//! 2. [`CpuProfile::baseline`] (`cwasm baseline`) keeps the features every
//!    host has;
//! 3. build farms and services configure their engines with
//!    [`CpuProfile::apply`] (`cwasm compile --profile`), and all get the
//!    hash [`CpuProfile::engine_hash`] gives.
//!
//! Named presets ([`CpuProfile::preset`]) cover the common cases without
//! collecting hosts: the x86-64 micro-architecture levels of the x86-64
//! psABI, and aarch64 baselines.
//!
//! Safety does not rest on the profile being right: wasmtime checks, when an
//! artifact is loaded, that the host has every CPU feature it was compiled
//! for, and refuses it otherwise (the store then treats it as a miss, and
//! leaves the shared entry alone).

use crate::digest::Digest;
use crate::inspect::inspect;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use wasmtime::error::Context;
use wasmtime::{Config, Engine, Result, bail};

/// A compilation target and the Cranelift ISA settings a fleet compiles with.
///
/// Written as TOML (or JSON, the same fields):
///
/// ```toml
/// target = "x86_64-unknown-linux-gnu"
///
/// [flags]
/// has_sse3 = "true"
/// has_avx2 = "true"
/// ```
///
/// Settings not named keep Cranelift's default for the target, which for CPU
/// features is "absent". A baseline computed from hosts names every setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuProfile {
    /// The target triple, as `Config::target` takes it.
    pub target: String,
    /// Cranelift ISA settings by name (`has_avx2`), with their values
    /// (`"true"`, `"false"`, or an enum setting's value).
    #[serde(default)]
    pub flags: BTreeMap<String, String>,
    /// The wasmtime Cargo features of the hosts that will load the
    /// artifacts, when they are not this build's: a host built with
    /// `default-features = false` refuses artifacts that use what it left
    /// out (GC types, threads, the component model, async components), even
    /// for wasm that never uses them. Naming them here turns those off in
    /// the compiling engine ([`CpuProfile::apply`]); `None` compiles for a
    /// host built like this one.
    ///
    /// ```toml
    /// host_features = ["runtime", "std", "component-model"]
    /// ```
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_features: Option<Vec<String>>,
}

/// The wasmtime Cargo features that decide whether a host accepts an
/// artifact (its engine's wasm features and tunables follow them), each with
/// the `wasmtime -W` options that [`CpuProfile::apply`] turns off for a host
/// without it.
const HOST_FEATURES: &[(&str, &[&str])] = &[
    ("gc", &["gc-support", "exceptions"]),
    ("threads", &["threads"]),
    ("component-model", &["component-model"]),
    ("component-model-async", &["concurrency-support"]),
];

/// Features that turn on others of [`HOST_FEATURES`] (wasmtime's
/// `Cargo.toml`).
const IMPLIED: &[(&str, &[&str])] = &[
    (
        "default",
        &["gc", "threads", "component-model", "component-model-async"],
    ),
    ("gc-copying", &["gc"]),
    ("gc-drc", &["gc"]),
    ("gc-null", &["gc"]),
    ("component-model-async", &["component-model"]),
    ("rr", &["component-model"]),
];

/// Turns off the `-W` option `option` (one of [`HOST_FEATURES`]').
fn turn_off(config: &mut Config, option: &str) {
    match option {
        "gc-support" => config.gc_support(false),
        "exceptions" => config.wasm_exceptions(false),
        "threads" => config.wasm_threads(false),
        "component-model" => config.wasm_component_model(false),
        "concurrency-support" => config.concurrency_support(false),
        _ => unreachable!("HOST_FEATURES names only these"),
    };
}

/// The other Cargo features of wasmtime 48, which change nothing a host
/// checks in an artifact's engine section.
const OTHER_FEATURES: &[&str] = &[
    "addr2line",
    "all-arch",
    "anyhow",
    "async",
    "backtrace",
    "cache",
    "call-hook",
    "compile-time-builtins",
    "component-model-bytes",
    "coredump",
    "cranelift",
    "custom-fiber",
    "custom-native-signals",
    "custom-sync-primitives",
    "custom-virtual-memory",
    "debug",
    "debug-builtins",
    "default",
    "demangle",
    "gc-copying",
    "gc-drc",
    "gc-null",
    "incremental-cache",
    "memory-protection-keys",
    "parallel-compilation",
    "pooling-allocator",
    "profile-pulley",
    "profiling",
    "pulley",
    "reexport-wasmparser",
    "rr",
    "runtime",
    "signals-based-traps",
    "stack-switching",
    "std",
    "trace-log",
    "wat",
    "winch",
    "wit-parser",
    "wmemcheck",
];

/// What an engine on this machine records: its target and every ISA setting,
/// with the value detected here. `cwasm host --json` prints it; it is the
/// input of [`CpuProfile::baseline`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The target triple.
    pub target: String,
    /// Every ISA setting the engine records, by name.
    pub flags: BTreeMap<String, String>,
    /// The engine hash of this host's default engine (absent from host
    /// files written by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_hash: Option<Digest>,
    /// The module version the engine records (wasmtime's major version).
    #[serde(default)]
    pub version: String,
}

/// The named presets of [`CpuProfile::preset`]: name, target, and the
/// groups of Cranelift features it enables. The x86-64 levels follow the
/// x86-64 psABI, each adding to the one below; features of a level that
/// Cranelift has no setting for (MOVBE, F16C, AVX512BW, ...) are simply not
/// named. (Cranelift's own `x86-64-v3` and `x86-64-v4` presets leave out
/// `has_avx` and `has_avx512f`; these do not.)
const PRESETS: &[(&str, &str, &[&[&str]])] = &[
    ("x86-64-v1", X86_64, &[]),
    ("x86-64-v2", X86_64, &[X86_64_V2]),
    ("x86-64-v3", X86_64, &[X86_64_V2, X86_64_V3]),
    ("x86-64-v4", X86_64, &[X86_64_V2, X86_64_V3, X86_64_V4]),
    ("aarch64-v8.0", AARCH64, &[]),
    ("aarch64-v8.1", AARCH64, &[&["has_lse"]]),
    ("aarch64-v8.3", AARCH64, &[&["has_lse", "has_pauth"]]),
];

const X86_64: &str = "x86_64-unknown-linux-gnu";
const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// What x86-64-v2 adds to the base ISA.
const X86_64_V2: &[&str] = &[
    "has_cmpxchg16b",
    "has_popcnt",
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
];

/// What x86-64-v3 adds to v2.
const X86_64_V3: &[&str] = &[
    "has_avx",
    "has_avx2",
    "has_bmi1",
    "has_bmi2",
    "has_fma",
    "has_lzcnt",
];

/// What x86-64-v4 adds to v3.
const X86_64_V4: &[&str] = &["has_avx512f", "has_avx512dq", "has_avx512vl"];

impl HostInfo {
    /// What `config` records on this machine: its target and ISA settings
    /// (for a default `Config`, the features detected here).
    ///
    /// Found the way a reader of artifacts would: by compiling an empty
    /// module and reading its engine section.
    pub fn detect(config: &Config) -> Result<HostInfo> {
        let engine = Engine::new(config)?;
        let artifact = engine
            .precompile_module(b"\0asm\x01\0\0\0")
            .context("compiling an empty module to read what the engine records")?;
        let info = inspect(&artifact)?;
        if info.target == "unknown" {
            bail!("this wasmtime writes an engine section this tool cannot decode");
        }
        Ok(HostInfo {
            target: info.target,
            flags: info
                .isa_flags
                .into_iter()
                .map(|f| (f.name, f.value))
                .collect(),
            engine_hash: Some(info.engine_hash),
            version: info.version,
        })
    }

    /// This host's own profile: its target and every setting as detected.
    pub fn profile(&self) -> CpuProfile {
        CpuProfile {
            target: self.target.clone(),
            flags: self.flags.clone(),
            host_features: None,
        }
    }
}

impl CpuProfile {
    /// The names [`CpuProfile::preset`] knows.
    pub fn preset_names() -> impl Iterator<Item = &'static str> {
        PRESETS.iter().map(|(name, _, _)| *name)
    }

    /// A named preset: `x86-64-v1` to `x86-64-v4` (the x86-64 psABI levels),
    /// `aarch64-v8.0`, `aarch64-v8.1` (LSE), `aarch64-v8.3` (LSE and pointer
    /// authentication). The target is the Linux triple of the architecture.
    pub fn preset(name: &str) -> Result<CpuProfile> {
        let Some((_, target, features)) = PRESETS.iter().find(|(n, _, _)| *n == name) else {
            bail!(
                "unknown CPU preset `{name}`; known: {}",
                Self::preset_names().collect::<Vec<_>>().join(", ")
            );
        };
        Ok(CpuProfile {
            target: target.to_string(),
            flags: features
                .iter()
                .flat_map(|group| group.iter())
                .map(|f| (f.to_string(), "true".to_string()))
                .collect(),
            host_features: None,
        })
    }

    /// The profile every one of `hosts` can run, given each host's own
    /// profile ([`HostInfo::profile`], or a file `cwasm host --json` wrote):
    /// their common target, each boolean setting on only where it is on for
    /// every host, and every other setting at the value all hosts share.
    ///
    /// Fails if the hosts have different targets, record different sets of
    /// settings (different wasmtime versions), or disagree on a setting that
    /// is not a yes/no feature.
    pub fn baseline(hosts: &[CpuProfile]) -> Result<CpuProfile> {
        let Some((first, rest)) = hosts.split_first() else {
            bail!("a baseline needs at least one host");
        };
        let mut flags = first.flags.clone();
        for host in rest {
            if host.target != first.target {
                bail!(
                    "hosts have different targets (`{}` and `{}`): one artifact cannot serve both",
                    first.target,
                    host.target
                );
            }
            if host.flags.len() != flags.len() || host.flags.keys().ne(flags.keys()) {
                bail!(
                    "hosts record different ISA settings: they run different wasmtime \
                     versions, whose artifacts are not interchangeable anyway"
                );
            }
            for (name, value) in flags.iter_mut() {
                let other = &host.flags[name];
                match (value.as_str(), other.as_str()) {
                    (a, b) if a == b => {}
                    ("true", "false") | ("false", "true") => *value = "false".to_string(),
                    (a, b) => bail!("hosts disagree on the ISA setting `{name}` (`{a}`, `{b}`)"),
                }
            }
        }
        Ok(CpuProfile {
            target: first.target.clone(),
            flags,
            host_features: None,
        })
    }

    /// Reads a profile from a TOML or JSON file (JSON if it starts with `{`).
    /// The output of `cwasm host --json` is accepted too: it is a host's own
    /// profile.
    pub fn from_file(path: &Path) -> Result<CpuProfile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read CPU profile {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid CPU profile {}", path.display()))
    }

    /// Parses a profile from TOML or JSON text (JSON if it starts with `{`).
    pub fn parse(text: &str) -> Result<CpuProfile> {
        if text.trim_start().starts_with('{') {
            /// A profile, or a host file (whose two other fields are
            /// descriptive); anything else is a mistake, not a profile.
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Either {
                target: String,
                #[serde(default)]
                flags: BTreeMap<String, String>,
                #[serde(default, rename = "engine_hash")]
                _engine_hash: String,
                #[serde(default, rename = "version")]
                _version: String,
                #[serde(default)]
                host_features: Option<Vec<String>>,
            }
            let either: Either = serde_json::from_str(text)?;
            Ok(CpuProfile {
                target: either.target,
                flags: either.flags,
                host_features: either.host_features,
            })
        } else {
            Ok(toml::from_str(text)?)
        }
    }

    /// The profile as TOML, with a comment saying what it is.
    pub fn to_toml(&self) -> Result<String> {
        Ok(format!(
            "# CPU profile for wasmtime engines (cwasm): the target and Cranelift ISA\n\
             # settings a fleet compiles with. Use with `cwasm compile --profile`, or\n\
             # cwasm_store::CpuProfile::apply in your engine's Config.\n{}",
            toml::to_string(self)?
        ))
    }

    /// Sets the target and every named ISA setting on `config`.
    ///
    /// Naming the target turns off the detection of this host's features, so
    /// the engine compiles for exactly this profile on any machine. Loading
    /// its artifacts stays safe on a host that lacks one of the features:
    /// wasmtime refuses them there.
    ///
    /// With [`CpuProfile::host_features`], it also turns off what hosts
    /// without each of those features refuse.
    pub fn apply(&self, config: &mut Config) -> Result<()> {
        for option in self.turned_off()? {
            turn_off(config, option);
        }
        config
            .target(&self.target)
            .with_context(|| format!("profile target `{}`", self.target))?;
        for (name, value) in &self.flags {
            // SAFETY: as for `wasmtime compile -C cranelift-*`: a setting the
            // host lacks is refused when an artifact is loaded here
            // (`Module::deserialize` checks the ISA settings against the
            // host), so a wrong profile costs a miss, never wrong code.
            unsafe {
                config.cranelift_flag_set(name, value);
            }
        }
        Ok(())
    }

    /// `Config::new()` with this profile applied.
    pub fn config(&self) -> Result<Config> {
        let mut config = Config::new();
        self.apply(&mut config)?;
        Ok(config)
    }

    /// The engine hash of `Config::new()` with this profile applied: what
    /// every engine configured this way, on any host, has.
    pub fn engine_hash(&self) -> Result<Digest> {
        let engine =
            Engine::new(&self.config()?).context("the profile does not make a valid engine")?;
        Ok(Digest(engine.serialization_compatibility_hash()?))
    }

    /// The `-W` options a host of [`CpuProfile::host_features`] needs off.
    fn turned_off(&self) -> Result<Vec<&'static str>> {
        let Some(features) = &self.host_features else {
            return Ok(Vec::new());
        };
        let mut has: Vec<&str> = Vec::new();
        for name in features {
            if !HOST_FEATURES.iter().any(|(n, _)| n == name)
                && !OTHER_FEATURES.contains(&name.as_str())
            {
                bail!("`{name}` in host_features is not a Cargo feature of wasmtime 48");
            }
            has.push(name);
            for (feature, implied) in IMPLIED {
                if feature == name {
                    has.extend(implied.iter());
                }
            }
        }
        Ok(HOST_FEATURES
            .iter()
            .filter(|(name, _)| !has.contains(name))
            .flat_map(|(_, options)| options.iter().copied())
            .collect())
    }

    /// The options of `wasmtime compile` (and `cwasm compile`) that select
    /// this profile: `--target T -C cranelift-has-avx=true ...`
    /// (and `-W gc-support=n ...` for its [`CpuProfile::host_features`]).
    pub fn cli_flags(&self) -> Vec<String> {
        let mut out = vec!["--target".to_string(), self.target.clone()];
        // A profile whose host_features are invalid fails in `apply`.
        for option in self.turned_off().unwrap_or_default() {
            out.push("-W".to_string());
            out.push(format!("{option}=n"));
        }
        for (name, value) in &self.flags {
            out.push("-C".to_string());
            out.push(format!("cranelift-{}={value}", name.replace('_', "-")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(flags: &[(&str, &str)]) -> CpuProfile {
        CpuProfile {
            target: "x86_64-unknown-linux-gnu".into(),
            flags: flags
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            host_features: None,
        }
    }

    #[test]
    fn baseline_keeps_what_every_host_has() {
        let a = host(&[("has_avx", "true"), ("has_sse3", "true"), ("x", "1")]);
        let b = host(&[("has_avx", "false"), ("has_sse3", "true"), ("x", "1")]);
        let p = CpuProfile::baseline(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(p.flags["has_avx"], "false");
        assert_eq!(p.flags["has_sse3"], "true");
        assert_eq!(p, CpuProfile::baseline(&[b.clone(), a.clone()]).unwrap());
        assert_eq!(p, CpuProfile::baseline(&[a, b.clone(), b]).unwrap());
    }

    #[test]
    fn baseline_refuses_what_it_cannot_merge() {
        let a = host(&[("has_avx", "true"), ("x", "1")]);
        let mut other_target = a.clone();
        other_target.target = "aarch64-unknown-linux-gnu".into();
        assert!(CpuProfile::baseline(&[a.clone(), other_target]).is_err());
        let other_enum = host(&[("has_avx", "true"), ("x", "2")]);
        let err = CpuProfile::baseline(&[a.clone(), other_enum]).unwrap_err();
        assert!(format!("{err}").contains("`x`"), "{err}");
        let other_set = host(&[("has_avx", "true")]);
        assert!(CpuProfile::baseline(&[a, other_set]).is_err());
        assert!(CpuProfile::baseline(&[]).is_err());
    }

    #[test]
    fn profiles_round_trip_through_toml_and_json() {
        let p = CpuProfile::preset("x86-64-v3").unwrap();
        assert_eq!(CpuProfile::parse(&p.to_toml().unwrap()).unwrap(), p);
        assert_eq!(
            CpuProfile::parse(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
        assert!(CpuProfile::parse("target = 1").is_err());
        // A misspelt field is an error, not a profile without features.
        assert!(CpuProfile::parse(r#"{"target": "x", "flagz": {}}"#).is_err());
        let host = r#"{"target": "x", "flags": {}, "engine_hash": "00", "version": "48"}"#;
        assert_eq!(CpuProfile::parse(host).unwrap().target, "x");
        assert!(CpuProfile::parse("target = \"x\"\nbogus = 1").is_err());
    }

    #[test]
    fn presets_are_cumulative_and_known_to_cranelift() {
        let mut previous = CpuProfile::preset("x86-64-v1").unwrap();
        for level in ["x86-64-v2", "x86-64-v3", "x86-64-v4"] {
            let p = CpuProfile::preset(level).unwrap();
            assert!(previous.flags.keys().all(|k| p.flags.contains_key(k)));
            // Every named setting exists: the engine accepts the profile, and
            // each level has its own hash.
            assert_ne!(p.engine_hash().unwrap(), previous.engine_hash().unwrap());
            previous = p;
        }
        for name in ["aarch64-v8.0", "aarch64-v8.1", "aarch64-v8.3"] {
            CpuProfile::preset(name).unwrap().engine_hash().unwrap();
        }
        assert!(CpuProfile::preset("pentium").is_err());
    }

    #[test]
    fn cli_flags_name_the_target_and_every_setting() {
        let p = CpuProfile::preset("x86-64-v2").unwrap();
        let flags = p.cli_flags().join(" ");
        assert!(flags.starts_with("--target x86_64-unknown-linux-gnu -C cranelift-"));
        assert!(flags.contains("-C cranelift-has-sse41=true"), "{flags}");
    }
}
