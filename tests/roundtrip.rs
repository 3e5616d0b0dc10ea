//! The central promise: the hash is the SHA-256 of exactly the section every
//! artifact carries, across the configurations users run; engines with equal
//! hashes load each other's artifacts; and every knob that changes the
//! section changes the hash.

mod common;

use common::*;
use wasmtime::{Config, Engine};

/// Every configuration of the matrix, module and component, checked against
/// a SHA-256 of the section taken with the `object` crate and against the
/// artifact reader.
#[test]
fn matrix_round_trips() {
    let mut configs = 0;
    let mut artifacts = 0;
    for knob in knobs() {
        let engine = Engine::new(&config_with(&knob))
            .unwrap_or_else(|e| panic!("{}: Engine::new: {e:#}", knob.name));
        let checked = check_round_trip(&engine, knob.name);
        configs += 1;
        artifacts += 1 + usize::from(checked.component.is_some());
    }
    println!("round trip: {configs} configurations, {artifacts} artifacts checked");
    assert!(
        configs >= 50,
        "the matrix shrank to {configs} configurations"
    );
}

/// Each knob that changes the section changes the hash, each runtime-only
/// knob leaves both alone, and the classification in `knobs()` (which
/// docs/compatibility.md lists) matches what wasmtime actually writes.
#[test]
fn knobs_that_reach_artifacts_change_the_hash() {
    let default = check_round_trip(&Engine::default(), "default");
    let mut seen: Vec<(&str, [u8; 32], Vec<u8>)> = Vec::new();
    let mut misclassified = Vec::new();
    for knob in knobs() {
        let engine = Engine::new(&config_with(&knob)).unwrap();
        let checked = check_round_trip(&engine, knob.name);
        let section_changed = checked.section != default.section;
        if section_changed != knob.reaches_artifact {
            misclassified.push(format!(
                "{}: expected the knob {} the engine section",
                knob.name,
                if knob.reaches_artifact {
                    "to change"
                } else {
                    "to leave alone"
                }
            ));
        }
        assert_eq!(
            checked.hash != default.hash,
            section_changed,
            "{}: the hash must change exactly when the section does",
            knob.name
        );
        // Pairwise: equal sections <=> equal hashes, over the whole matrix.
        for (other, hash, section) in &seen {
            assert_eq!(
                *hash == checked.hash,
                *section == checked.section,
                "{} vs {other}",
                knob.name
            );
        }
        seen.push((knob.name, checked.hash, checked.section));
    }
    assert!(misclassified.is_empty(), "{misclassified:#?}");
}

/// Soundness: two engines with equal hashes load and run each other's
/// modules and components. Checked for every host configuration against a
/// second engine built from the same `Config`, and for every runtime-only
/// knob against the default engine in both directions.
#[test]
fn equal_hashes_load_each_other() {
    let default_engine = Engine::default();
    let default = check_round_trip(&default_engine, "default");
    let mut pairs = 0;
    for knob in knobs().into_iter().filter(|k| k.target == Target::Host) {
        let config = config_with(&knob);
        let a = Engine::new(&config).unwrap();
        let b = Engine::new(&config).unwrap();
        let from_a = check_round_trip(&a, knob.name);
        assert_eq!(b.serialization_compatibility_hash().unwrap(), from_a.hash);
        load_and_run(&b, &from_a, knob.name);
        pairs += 1;

        if !knob.reaches_artifact {
            assert_eq!(from_a.hash, default.hash, "{}", knob.name);
            load_and_run(&a, &default, &format!("default -> {}", knob.name));
            load_and_run(
                &default_engine,
                &from_a,
                &format!("{} -> default", knob.name),
            );
            pairs += 2;
        }
    }
    println!("soundness: {pairs} engine pairs with equal hashes loaded each other's artifacts");
}

fn load_and_run(engine: &Engine, artifacts: &Checked, what: &str) {
    let got = run_module(engine, &artifacts.module)
        .unwrap_or_else(|e| panic!("{what}: module did not load and run: {e:#}"));
    assert_eq!(got, 42, "{what}");
    if let Some(component) = &artifacts.component {
        let got = run_component(engine, component)
            .unwrap_or_else(|e| panic!("{what}: component did not load and run: {e:#}"));
        assert_eq!(got, 42, "{what}");
    }
}

/// The hash is stricter than deserialization: an engine that differs only
/// in `generate_address_map` has another hash, yet loads the artifact. This
/// documents the trade-off rather than a requirement on wasmtime.
#[test]
fn the_hash_is_stricter_than_deserialization() {
    let default = check_round_trip(&Engine::default(), "default");
    let mut config = Config::new();
    config.generate_address_map(false);
    let other = Engine::new(&config).unwrap();
    assert_ne!(
        other.serialization_compatibility_hash().unwrap(),
        default.hash
    );
    assert_eq!(run_module(&other, &default.module).unwrap(), 42);
}

/// Engines that cannot compile report an error instead of panicking, and the
/// artifact reader still works for them. (The 36 LTS line has no
/// `Config::enable_compiler`: every engine there can compile.)
#[test]
#[cfg(not(wasmtime_lts36))]
fn engines_without_a_compiler_report_an_error() {
    let mut config = Config::new();
    config.enable_compiler(false);
    let loader = Engine::new(&config).unwrap();
    let err = loader.serialization_compatibility_hash().unwrap_err();
    assert!(format!("{err:#}").contains("compiler"), "{err:#}");

    let default = check_round_trip(&Engine::default(), "default");
    assert_eq!(
        Engine::detect_serialization_compatibility_hash(&default.module),
        Some(default.hash)
    );
    assert_eq!(run_module(&loader, &default.module).unwrap(), 42);
}
