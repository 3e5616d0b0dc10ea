//! The hash is a stable identifier: equal across processes, and, for fully
//! pinned configurations, equal to the values recorded in
//! `tests/golden/hashes.txt`, so that any accidental change to the encoding
//! of the engine section fails loudly.
//!
//! To regenerate the golden file after an *intended* change (a new wasmtime
//! release, a change to the series that alters the section), run
//! `CWASM_BLESS=1 cargo test --test stability` and commit the diff; see
//! CONTRIBUTING.md.

mod common;

use common::pinned::pinned;
use common::{check_round_trip, hex};
use std::collections::BTreeMap;
use std::process::Command;
use wasmtime::{Engine, Result};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/hashes.txt");
const CHILD_ENV: &str = "CWASM_STABILITY_CHILD";

fn hashes() -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, config) in pinned() {
        let engine = Engine::new(&config)?;
        out.insert(
            name.to_string(),
            hex(&engine.serialization_compatibility_hash()?),
        );
    }
    // Not pinned, so not in the golden file, but compared across processes.
    out.insert(
        "host-default".to_string(),
        hex(&Engine::default().serialization_compatibility_hash()?),
    );
    Ok(out)
}

/// Run in a child process by `equal_across_processes`; does nothing when run
/// by the test harness directly.
#[test]
#[ignore = "the child process of `equal_across_processes`, which runs it"]
fn child_prints_hashes() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    for (name, hash) in hashes().unwrap() {
        println!("HASH\t{name}\t{hash}");
    }
}

#[test]
fn equal_across_processes() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_prints_hashes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let child: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.split_once("HASH\t").map(|(_, rest)| rest))
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .collect();
    let ours = hashes().unwrap();
    assert_eq!(child.len(), ours.len(), "child printed:\n{stdout}");
    assert_eq!(child, ours);
}

#[test]
fn pinned_configs_match_the_golden_file() {
    let ours: BTreeMap<String, String> = hashes()
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name != "host-default")
        .collect();
    let rendered: String = ours
        .iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect();
    if std::env::var_os("CWASM_BLESS").is_some() {
        let header = "# SHA-256 engine hashes of fully pinned configurations (tests/stability.rs).\n\
                      # Regenerate: CWASM_BLESS=1 cargo test --test stability (see CONTRIBUTING.md).\n";
        std::fs::write(GOLDEN, format!("{header}{rendered}")).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap();
    let golden: String = golden
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        golden == rendered,
        "the engine hash of a pinned configuration changed: the encoding of \
         the .wasmtime.engine section is different.\n\nexpected (golden):\n{golden}\n\
         got:\n{rendered}\nIf this is intended, regenerate with \
         `CWASM_BLESS=1 cargo test --test stability` and say why in the commit."
    );
}

/// The pinned configurations also keep the round-trip invariant.
#[test]
fn pinned_configs_round_trip() {
    for (name, config) in pinned() {
        check_round_trip(&Engine::new(&config).unwrap(), name);
    }
}
