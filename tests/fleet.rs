//! A fleet of different CPUs sharing one artifact per module
//! (docs/design.md, "A fleet of different CPUs"): `cwasm host --json` on
//! each kind of machine, `cwasm baseline`, `cwasm compile --profile`, and a
//! store hit on an engine configured from the same profile. The other kind of
//! machine is simulated: this host's own file with features taken away.

mod cli_support;
mod common;

use cli_support::{cwasm, stdout, write_json};
use common::{MODULE_WAT, run_module};
use cwasm_store::{ArtifactStore, CpuProfile, HostInfo, Key, LocalDir, StoreConfig};
use std::path::Path;
use wasmtime::{Config, Engine};

/// This host, as `cwasm host --json` reports it, checked against the library.
fn this_host() -> HostInfo {
    let host: HostInfo = serde_json::from_str(&stdout(cwasm().args(["host", "--json"]))).unwrap();
    assert_eq!(
        host.engine_hash.map(|h| h.0),
        Some(
            Engine::default()
                .serialization_compatibility_hash()
                .unwrap()
        ),
        "`cwasm host` describes another engine than Engine::default()"
    );
    assert!(
        host.flags.keys().any(|k| k.starts_with("has_")),
        "no CPU features in {host:?}"
    );
    host
}

/// An older machine of the same architecture: this host without any of the
/// features whose names contain `marker` (the wide vector units, say).
fn weaker(host: &HostInfo, marker: &str) -> HostInfo {
    let mut weaker = host.clone();
    for (name, value) in weaker.flags.iter_mut() {
        if name.contains(marker) {
            *value = "false".to_string();
        }
    }
    weaker.engine_hash = None;
    weaker
}

#[test]
fn host_baseline_compile_and_store_hit() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = baseline_of_two_hosts(dir.path());
    let (profile, hash) = (&fleet.profile, &fleet.hash);
    // Both kinds of machine, configured from the profile, get one hash.
    assert_eq!(profile.engine_hash().unwrap().to_string(), *hash);

    // The build farm compiles with the profile ...
    let wat = dir.path().join("answer.wat");
    std::fs::write(&wat, MODULE_WAT).unwrap();
    let store_dir = dir.path().join("store");
    let compiled: serde_json::Value = serde_json::from_str(&stdout(
        cwasm()
            .arg("compile")
            .arg(&wat)
            .arg("--store")
            .arg(&store_dir)
            .arg("--profile")
            .arg(&fleet.profile_path)
            .arg("--json"),
    ))
    .unwrap();
    assert_eq!(compiled[0]["engine"], hash.as_str(), "{compiled}");
    assert!(compiled[0]["error"].is_null(), "{compiled}");

    // ... and a service whose engine is configured from the same profile
    // hits in the store, and runs the artifact.
    let engine = Engine::new(&profile.config().unwrap()).unwrap();
    let store = ArtifactStore::new(
        Some(LocalDir::new(&store_dir).unwrap()),
        None,
        StoreConfig::default(),
    )
    .unwrap();
    store
        .get_or_compile_module(&engine, MODULE_WAT.as_bytes())
        .unwrap();
    let stats = store.stats();
    assert_eq!((stats.hits, stats.compiles), (1, 0), "{stats:?}");
    let key = Key::new(&engine, MODULE_WAT.as_bytes()).unwrap();
    let artifact = store.get(&key).unwrap().expect("the compiled entry");
    assert_eq!(run_module(&engine, &artifact).unwrap(), 42);
}

/// The baseline `cwasm baseline --write` computed for this host and a
/// weaker one.
struct Baseline {
    profile_path: std::path::PathBuf,
    profile: CpuProfile,
    /// The engine hash `baseline` printed.
    hash: String,
}

/// `cwasm host --json` for this host and a weaker one (x86: AVX and wider
/// off; aarch64: LSE off), then `cwasm baseline` of the two, checked: the
/// baseline has every feature both have, and the flags it prints give its
/// hash.
fn baseline_of_two_hosts(dir: &Path) -> Baseline {
    let a = this_host();
    let marker = if a.target.starts_with("x86_64") {
        "avx"
    } else {
        "lse"
    };
    let b = weaker(&a, marker);
    let (a_path, b_path) = (dir.join("a.json"), dir.join("b.json"));
    write_json(&a_path, &a);
    write_json(&b_path, &b);
    let profile_path = dir.join("fleet.toml");
    let out: serde_json::Value = serde_json::from_str(&stdout(
        cwasm()
            .arg("baseline")
            .args([&a_path, &b_path])
            .arg("--write")
            .arg(&profile_path)
            .arg("--json"),
    ))
    .unwrap();
    let hash = out["engine_hash"].as_str().unwrap().to_string();
    let profile = CpuProfile::from_file(&profile_path).unwrap();
    assert_eq!(profile.target, a.target);
    assert_eq!(profile.flags.len(), a.flags.len());
    for (name, value) in &profile.flags {
        let expected = match (a.flags[name].as_str(), b.flags[name].as_str()) {
            ("true", "true") => "true",
            ("true" | "false", "true" | "false") => "false",
            (same, _) => same,
        };
        assert_eq!(value, expected, "{name}");
    }
    let flags: Vec<String> = out["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(stdout(cwasm().arg("hash").args(&flags)).trim(), hash);
    assert_ne!(
        Some(&hash),
        a.engine_hash.map(|h| h.to_string()).as_ref(),
        "the simulated host changed nothing"
    );
    Baseline {
        profile_path,
        profile,
        hash,
    }
}

#[test]
fn a_host_missing_a_feature_refuses_the_artifact_and_keeps_it() {
    let host = HostInfo::detect(&Config::new()).unwrap();
    let Some(missing) = host
        .flags
        .iter()
        .find(|(name, value)| name.starts_with("has_") && *value == "false")
        .map(|(name, _)| name.clone())
    else {
        eprintln!("this host has every CPU feature Cranelift knows: nothing to simulate");
        return;
    };
    // A profile made on a stronger machine: this host plus what it lacks.
    let mut stronger = host.profile();
    stronger.flags.insert(missing.clone(), "true".into());
    let engine = Engine::new(&stronger.config().unwrap()).unwrap();

    // Compiling for it works anywhere (a build farm may be any machine).
    let artifact = engine.precompile_module(MODULE_WAT.as_bytes()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::new(
        Some(LocalDir::new(dir.path()).unwrap()),
        None,
        StoreConfig::default(),
    )
    .unwrap();
    let key = Key::new(&engine, MODULE_WAT.as_bytes()).unwrap();
    store.put(&key, &artifact).unwrap();

    // This host, configured from that profile, never runs the artifact ...
    let err = store
        .get_or_compile_module(&engine, MODULE_WAT.as_bytes())
        .expect_err("a host without a feature the artifact uses loaded it");
    assert!(format!("{err:#}").contains(&missing), "{err:#}");
    // ... and leaves the fleet's shared copy where it is.
    assert_eq!(store.get(&key).unwrap().as_deref(), Some(&artifact[..]));
    let stats = store.stats();
    assert_eq!(stats.rejected, 0, "{stats:?}");
}

#[test]
fn presets_select_the_same_engine_as_their_profile() {
    for name in ["x86-64-v2", "x86-64-v3", "aarch64-v8.1"] {
        let profile = CpuProfile::preset(name).unwrap();
        let by_name = stdout(cwasm().args(["hash", "--cpu", name]));
        assert_eq!(
            by_name.trim(),
            profile.engine_hash().unwrap().to_string(),
            "{name}"
        );
        let path =
            std::env::temp_dir().join(format!("cwasm-preset-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, profile.to_toml().unwrap()).unwrap();
        let by_file = stdout(cwasm().arg("hash").arg("--profile").arg(&path));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(by_file, by_name, "{name}");
    }
    cwasm()
        .args(["hash", "--cpu", "pentium"])
        .assert()
        .failure();
    cwasm()
        .args(["hash", "--cpu", "x86-64-v2", "--target", "pulley64"])
        .assert()
        .failure();
}
