//! Reuse of other engines' artifacts (src/reuse.rs): a host with more CPU
//! features than a stored artifact needs loads it without compiling; a host
//! with fewer never loads it; a compiling host reuses nothing wasmtime would
//! accept but that is not its own engine for fewer CPU features; and the
//! engine sections the choice is made from are checked like everything
//! else.
//!
//! The other kinds of x86-64 host are simulated with
//! `Config::detect_host_feature`, wasmtime's own hook for what a host has.

#![cfg(target_arch = "x86_64")]

mod common;

use common::{call, wasm};
use cwasm_store::{ArtifactStore, CpuProfile, Digest, Key, LocalDir, StoreConfig, Verdict};
use std::path::Path;
use wasmtime::{Config, Engine, OptLevel};

/// The features of the x86-64-v2 level, as wasmtime's detection names them.
const V2_FEATURES: &[&str] = &["cmpxchg16b", "popcnt", "sse3", "ssse3", "sse4.1", "sse4.2"];

/// An x86-64-v2 machine: it has the v2 features and nothing newer.
fn v2_machine(feature: &str) -> Option<bool> {
    Some(V2_FEATURES.contains(&feature))
}

/// An engine compiling for the x86-64 preset `level`.
fn preset_engine(level: &str) -> Engine {
    Engine::new(&CpuProfile::preset(level).unwrap().config().unwrap()).unwrap()
}

/// The engine of an x86-64-v2 host: it compiles for v2, and wasmtime's
/// checks see a machine with v2's features only.
fn v2_host() -> Engine {
    let mut config = CpuProfile::preset("x86-64-v2").unwrap().config().unwrap();
    // SAFETY: the answers are a subset of what this machine has (the test
    // skips otherwise), so nothing runs that the CPU lacks.
    unsafe {
        config.detect_host_feature(v2_machine);
    }
    Engine::new(&config).unwrap()
}

/// Whether this machine has AVX2, which the tests of a wider host need
/// (and, if not, says that the test is skipped).
fn has_avx2() -> bool {
    let has = std::arch::is_x86_feature_detected!("avx2");
    if !has {
        eprintln!("skipped: this machine has no AVX2");
    }
    has
}

fn open(root: &Path, config: StoreConfig) -> ArtifactStore {
    ArtifactStore::new(Some(LocalDir::new(root).unwrap()), None, config).unwrap()
}

fn store(root: &Path) -> ArtifactStore {
    open(root, StoreConfig::default())
}

fn hash(engine: &Engine) -> Digest {
    Digest(engine.serialization_compatibility_hash().unwrap())
}

/// Compiles `wasm` with `engine` into the store at `root`, from a store of
/// its own (a build farm, which reuses nothing: it is there to compile).
fn compile_into(root: &Path, engine: &Engine, wasm: &[u8], config: StoreConfig) {
    let farm = open(
        root,
        StoreConfig {
            reuse_cpu_subsets: false,
            ..config
        },
    );
    farm.get_or_compile_module(engine, wasm).unwrap();
    assert_eq!(farm.stats().compiles, 1);
}

#[test]
fn a_host_with_more_cpu_features_loads_a_subset_artifact_without_compiling() {
    if !has_avx2() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let v2 = preset_engine("x86-64-v2");
    compile_into(dir.path(), &v2, &wasm(7), StoreConfig::default());

    let native = Engine::default();
    assert_ne!(hash(&native), hash(&v2));
    let host = store(dir.path());
    let module = host.get_or_compile_module(&native, &wasm(7)).unwrap();
    assert_eq!(call(&native, &module), 7);
    let stats = host.stats();
    assert_eq!((stats.compiles, stats.hits, stats.reused), (0, 1, 1));
    assert_eq!(stats.last_reused_engine, Some(hash(&v2)));
    // Nothing was written under the host's own key: a later compile of
    // the exact engine is still possible, and the subset stays the fleet's.
    assert!(
        !host
            .contains(&Key::new(&native, &wasm(7)).unwrap())
            .unwrap()
    );

    // The choice is remembered: without the sections to choose from, the
    // same store still reuses.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let _ = std::fs::remove_file(e.unwrap().path().join("engine.section"));
    }
    host.get_or_compile_module(&native, &wasm(7)).unwrap();
    assert_eq!((host.stats().compiles, host.stats().reused), (0, 2));
}

#[test]
fn a_host_with_fewer_cpu_features_never_loads_the_artifact() {
    if !has_avx2() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let v3 = preset_engine("x86-64-v3");
    compile_into(dir.path(), &v3, &wasm(8), StoreConfig::default());
    let v3_key = Key::new(&v3, &wasm(8)).unwrap();

    let host_engine = v2_host();
    let host = store(dir.path());
    // wasmtime itself refuses it here, and says why.
    let verdicts = host.engine_verdicts(&host_engine).unwrap();
    match &verdicts[..] {
        [(engine, Verdict::Refused(why))] if *engine == v3_key.engine => {
            assert!(why.contains("avx"), "unexpected reason: {why}");
        }
        other => panic!("unexpected verdicts {other:?}"),
    }
    assert_eq!(
        host.load_module(&host_engine, v3_key.wasm)
            .unwrap()
            .map(|_| ()),
        None
    );
    let module = host.get_or_compile_module(&host_engine, &wasm(8)).unwrap();
    assert_eq!(call(&host_engine, &module), 8);
    let stats = host.stats();
    assert_eq!((stats.compiles, stats.reused, stats.rejected), (1, 0, 0));
    // The fleet's artifact stays.
    assert!(host.contains(&v3_key).unwrap());
}

#[test]
fn the_artifact_with_the_most_cpu_features_is_chosen() {
    if !has_avx2() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for level in ["x86-64-v1", "x86-64-v3", "x86-64-v2"] {
        compile_into(
            dir.path(),
            &preset_engine(level),
            &wasm(9),
            StoreConfig::default(),
        );
    }
    let native = Engine::default();
    let host = store(dir.path());
    let module = host
        .load_module(&native, Digest::of(&wasm(9)))
        .unwrap()
        .unwrap();
    assert_eq!(call(&native, &module), 9);
    assert_eq!(
        host.stats().last_reused_engine,
        Some(hash(&preset_engine("x86-64-v3")))
    );
}

#[test]
fn a_compiling_host_reuses_only_its_own_engine_with_fewer_cpu_features() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::None);
    let unoptimized = Engine::new(&config).unwrap();
    compile_into(dir.path(), &unoptimized, &wasm(10), StoreConfig::default());

    let native = Engine::default();
    let host = store(dir.path());
    // wasmtime would load it (the optimization level is not checked)...
    let verdicts = host.engine_verdicts(&native).unwrap();
    assert!(
        matches!(&verdicts[..], [(_, Verdict::Accepted { .. })]),
        "{verdicts:?}"
    );
    // ...but a host that can compile compiles rather than run code built
    // with other settings than its own.
    host.get_or_compile_module(&native, &wasm(10)).unwrap();
    let stats = host.stats();
    assert_eq!((stats.compiles, stats.reused), (1, 0));
    assert_eq!(
        host.load_module(&native, Digest::of(&wasm(10)))
            .unwrap()
            .map(|m| call(&native, &m)),
        Some(10),
        "the exact entry, written by the compile, is found"
    );
    assert_eq!(host.stats().reused, 0);
}

#[test]
fn reuse_can_be_turned_off() {
    if !has_avx2() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    compile_into(
        dir.path(),
        &preset_engine("x86-64-v2"),
        &wasm(11),
        StoreConfig::default(),
    );
    let host = open(
        dir.path(),
        StoreConfig {
            reuse_cpu_subsets: false,
            ..StoreConfig::default()
        },
    );
    // Off means off for `load_module` too.
    let lookup = host.load_module(&Engine::default(), Digest::of(&wasm(11)));
    assert!(lookup.unwrap().is_none());
    host.get_or_compile_module(&Engine::default(), &wasm(11))
        .unwrap();
    assert_eq!((host.stats().compiles, host.stats().reused), (1, 0));
}

/// A section is its prefix's only if it hashes to the prefix's name: a
/// section copied from another prefix, or damaged, is not used, and the
/// artifacts of that prefix are not reused.
#[test]
fn a_section_that_is_not_its_prefixs_is_ignored() {
    if !has_avx2() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (v2, v3) = (preset_engine("x86-64-v2"), preset_engine("x86-64-v3"));
    compile_into(dir.path(), &v3, &wasm(12), StoreConfig::default());
    compile_into(dir.path(), &v2, &wasm(13), StoreConfig::default());
    let section = |engine: &Engine| {
        dir.path()
            .join(hash(engine).to_string())
            .join("engine.section")
    };
    // The v3 prefix now claims v2's section (which this host would accept
    // for anything), and v2's own is damaged.
    std::fs::copy(section(&v2), section(&v3)).unwrap();
    let mut damaged = std::fs::read(section(&v2)).unwrap();
    damaged[5] ^= 1;
    std::fs::write(section(&v2), damaged).unwrap();

    let native = Engine::default();
    let host = store(dir.path());
    let verdicts = host.engine_verdicts(&native).unwrap();
    assert_eq!(verdicts.len(), 2);
    for (_, verdict) in verdicts {
        assert_eq!(
            verdict,
            Verdict::Refused("no readable engine section".into())
        );
    }
    assert!(
        host.load_module(&native, Digest::of(&wasm(12)))
            .unwrap()
            .is_none()
    );
    assert!(
        host.load_module(&native, Digest::of(&wasm(13)))
            .unwrap()
            .is_none()
    );
    assert_eq!((host.stats().reused, host.stats().rejected), (0, 0));
}

/// With a key, a reused artifact is verified under its own engine's key
/// like any other: one planted without a valid tag is rejected, and the
/// host compiles.
#[test]
fn a_keyed_store_verifies_reused_artifacts() {
    if !has_avx2() {
        return;
    }
    let secret = b"the fleet's key, sixteen bytes or more".to_vec();
    let keyed = || StoreConfig {
        hmac_key: Some(secret.clone()),
        ..StoreConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let v2 = preset_engine("x86-64-v2");
    compile_into(dir.path(), &v2, &wasm(14), keyed());
    // A planted artifact: v2's real one for another wasm, under wasm(15)'s
    // name, with no tag (the unkeyed store wrote it).
    compile_into(dir.path(), &v2, &wasm(15), StoreConfig::default());
    let planted = Key::new(&v2, &wasm(15)).unwrap();
    std::fs::copy(
        dir.path()
            .join(Key::new(&v2, &wasm(14)).unwrap().artifact_path()),
        dir.path().join(planted.artifact_path()),
    )
    .unwrap();

    let native = Engine::default();
    let host = open(dir.path(), keyed());
    let module = host.get_or_compile_module(&native, &wasm(14)).unwrap();
    assert_eq!(call(&native, &module), 14);
    assert_eq!((host.stats().compiles, host.stats().reused), (0, 1));

    let module = host.get_or_compile_module(&native, &wasm(15)).unwrap();
    assert_eq!(call(&native, &module), 15, "the planted artifact ran");
    let stats = host.stats();
    assert_eq!((stats.compiles, stats.reused, stats.rejected), (1, 1, 1));
}
