//! Commands that look after a store: `ls`, `verify` and `gc`.

use crate::store_args::StoreArgs;
use crate::{EXIT_BAD_ENTRIES, print_json, printable};
use cwasm_store::Digest;
use std::process::ExitCode;
use wasmtime::Result;

pub fn ls(store: &StoreArgs, json: bool) -> Result<()> {
    let engines = store.open()?.engines()?;
    if json {
        return print_json(&engines);
    }
    if engines.is_empty() {
        println!("(empty store)");
    }
    for e in engines {
        let what = match &e.descriptor {
            // Read from the store: anyone who can write to it wrote it.
            Some(d) => printable(&format!("wasmtime {} {}", d.wasmtime_version, d.target)),
            None => "(no descriptor)".to_string(),
        };
        println!(
            "{}  {:>6} entries  {:>12} bytes  {what}",
            e.engine, e.entries, e.bytes
        );
    }
    Ok(())
}

pub fn verify(store: &StoreArgs, json: bool) -> Result<ExitCode> {
    let store = store.open()?;
    let checked = store.list()?.len();
    let bad = store.verify()?;
    let strays = store.strays()?;
    if json {
        let bad: Vec<_> = bad
            .iter()
            .map(|(key, reason)| serde_json::json!({ "key": key, "reason": reason }))
            .collect();
        print_json(&serde_json::json!({ "checked": checked, "bad": bad, "strays": strays }))?;
    } else {
        for (key, reason) in &bad {
            println!("bad {}/{}: {}", key.engine, key.wasm, printable(reason));
        }
        for stray in &strays {
            println!(
                "stray {}: not a store entry (ignored by lookups)",
                printable(stray)
            );
        }
        println!(
            "{checked} entries checked, {} bad, {} stray objects",
            bad.len(),
            strays.len()
        );
    }
    Ok(if bad.is_empty() && strays.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_ENTRIES)
    })
}

pub fn gc(store: &StoreArgs, keep: &[String], dry_run: bool, json: bool) -> Result<()> {
    let store = store.open()?;
    let mut dropped = Vec::new();
    if !keep.is_empty() {
        let keep: Vec<Digest> = keep.iter().map(|h| h.parse()).collect::<Result<_>>()?;
        for e in store.engines()? {
            if !keep.contains(&e.engine) {
                dropped.push(e);
            }
        }
        if !dry_run {
            store.retain(&keep)?;
        }
    }
    let report = store.gc(dry_run)?;
    if json {
        return print_json(&serde_json::json!({
            "dry_run": dry_run,
            "dropped_engines": dropped,
            "limits": report,
        }));
    }
    let verb = if dry_run { "would drop" } else { "dropped" };
    for e in &dropped {
        println!(
            "{verb} engine {} ({} entries, {} bytes)",
            e.engine, e.entries, e.bytes
        );
    }
    for dir in &report.unreadable {
        println!(
            "skipped {}: this user may not read it",
            crate::printable(dir)
        );
    }
    let verb = if dry_run { "would evict" } else { "evicted" };
    println!(
        "{verb} {} of {} entries ({} of {} bytes) to meet the limits",
        report.deleted.len(),
        report.entries_before,
        report.bytes_freed,
        report.bytes_before
    );
    Ok(())
}
