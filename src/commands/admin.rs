//! Commands that look after a store: `ls`, `verify` and `gc`.

use crate::store_args::StoreArgs;
use crate::{EXIT_BAD_ENTRIES, print_json, printable};
use cwasm_store::semver::VersionReq;
use cwasm_store::{Digest, SigningKey};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wasmtime::error::Context;
use wasmtime::{Result, bail};

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
        // Read from the statements: claims, verified only by `verify`.
        let producers = e
            .producers
            .iter()
            .map(|(version, n)| format!("{n} by {}", printable(version)))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{}  {:>6} entries  {:>12} bytes  {what}  (produced: {producers})",
            e.engine, e.entries, e.bytes
        );
    }
    Ok(())
}

/// `keygen`: NAME.key (0600) and NAME.pub, neither overwritten.
pub fn keygen(name: &Path) -> Result<()> {
    let key = SigningKey::generate()?;
    let with = |suffix: &str| {
        let mut path = name.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    let (private, public) = (with(".key"), with(".pub"));
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} exists; not overwriting a key", path.display());
        }
    }
    write_new(&private, key.to_pem().as_bytes(), 0o600)?;
    write_new(&public, key.public_key().to_pem().as_bytes(), 0o644)?;
    println!(
        "signing key {} (keep it on build machines)",
        private.display()
    );
    println!(
        "public key  {} (for --trusted-key on every host)",
        public.display()
    );
    println!("key id      {}", key.public_key().id());
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .with_context(|| format!("failed to write {}", path.display()))
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

pub fn gc(
    store: &StoreArgs,
    keep: &[String],
    produced_by: Option<&VersionReq>,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let store = store.open()?;
    let produced = match produced_by {
        Some(requirement) => store.remove_produced_by(requirement, dry_run)?,
        None => Vec::new(),
    };
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
            "produced_by": produced,
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
    if let Some(requirement) = produced_by {
        let verb = if dry_run { "would remove" } else { "removed" };
        for key in &produced {
            println!(
                "{verb} {}/{} (produced by {requirement})",
                key.engine, key.wasm
            );
        }
        println!(
            "{verb} {} entries produced by {requirement}",
            produced.len()
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

/// `push`: `file` as a wasm image under `image`'s tag; prints its digest.
pub(crate) fn push(image: &str, file: &Path) -> Result<()> {
    let backend = cwasm_store::OciBackend::open(image)?;
    let tag = backend
        .tag()
        .with_context(|| format!("`{image}` names no tag (oci://registry/repository:tag)"))?;
    let wasm = std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    if !wasm.starts_with(b"\0asm") {
        bail!(
            "{} is not a binary wasm module or component: an image holds the bytes hosts \
             load, and the store keys artifacts on their digest",
            file.display()
        );
    }
    println!("{}", backend.push_wasm_image(tag, &wasm)?);
    Ok(())
}
