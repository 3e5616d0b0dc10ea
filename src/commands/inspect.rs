//! `inspect`: what an artifact was compiled for, and who produced it.

use crate::{print_json, printable};
use cwasm_store::{Digest, MAX_STATEMENT_LEN, Provenance, TrustedKey};
use std::path::{Path, PathBuf};
use wasmtime::error::Context;
use wasmtime::{Result, bail};

pub fn inspect(
    file: &Path,
    statement: Option<&Path>,
    trusted_keys: &[PathBuf],
    json: bool,
) -> Result<()> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    let info = cwasm_store::inspect(&bytes).with_context(|| format!("{}", file.display()))?;
    let trusted: Vec<TrustedKey> = trusted_keys
        .iter()
        .map(|path| TrustedKey::read(path))
        .collect::<Result<_>>()?;
    let provenance = read_provenance(file, statement, &trusted, &bytes)?;
    if json {
        let mut value = serde_json::to_value(&info)?;
        value["statement"] = match &provenance {
            Some((statement, verified_by)) => serde_json::json!({
                "provenance": statement,
                "verified_by": verified_by,
            }),
            None => serde_json::Value::Null,
        };
        return print_json(&value);
    }
    println!("file:         {}", file.display());
    println!("kind:         {}", info.kind);
    println!("engine hash:  {}", info.engine_hash);
    println!("version:      {}", printable(&info.version));
    println!("target:       {}", printable(&info.target));
    let show = |flags: &[cwasm_store::FlagSetting]| {
        let shown = flags
            .iter()
            .map(|f| format!("{}={}", f.name, f.value))
            .collect::<Vec<_>>()
            .join(" ");
        printable(&shown)
    };
    println!("shared flags: {}", show(&info.shared_flags));
    println!("isa flags:    {}", show(&info.isa_flags));
    match provenance {
        None => println!("statement:    none"),
        Some((p, verified_by)) => {
            let signed = match (&verified_by, p.signed_by.is_empty()) {
                (Some(id), _) => format!("signed by {id} (verified)"),
                (None, true) => "unsigned".to_string(),
                (None, false) => format!(
                    "signed by {} (not verified: pass --trusted-key)",
                    printable(&p.signed_by.join(", "))
                ),
            };
            println!("statement:    {signed}");
            println!("  wasm:       {}", p.key.wasm);
            println!("  producer:   {}", printable(&p.producer.to_string()));
            println!("  target:     {}", printable(&p.target));
            println!("  time:       {}", printable(&p.timestamp));
        }
    }
    Ok(())
}

/// The statement of `file` (at `statement`, or beside it as the store keeps
/// it), checked against the file: it must be for this artifact's engine and
/// bytes, and with `trusted` keys, signed by one of them.
fn read_provenance(
    file: &Path,
    statement: Option<&Path>,
    trusted: &[TrustedKey],
    artifact: &[u8],
) -> Result<Option<(Provenance, Option<String>)>> {
    let beside = {
        let mut path = file.as_os_str().to_owned();
        path.push(".intoto.json");
        PathBuf::from(path)
    };
    let path = match statement {
        Some(path) => path.to_path_buf(),
        None if beside.is_file() => beside,
        None if trusted.is_empty() => return Ok(None),
        None => bail!(
            "{} has no statement beside it ({}) to verify",
            file.display(),
            beside.display()
        ),
    };
    let envelope = {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_STATEMENT_LEN + 1).read_to_end(&mut bytes))
            .with_context(|| format!("failed to read {}", path.display()))?;
        if bytes.len() as u64 > MAX_STATEMENT_LEN {
            bail!("{} is too large to be a statement", path.display());
        }
        bytes
    };
    let (provenance, verified_by) = cwasm_store::read_statement(&envelope, trusted)
        .with_context(|| format!("{}", path.display()))?;
    let actual = Digest::of(artifact);
    if provenance.artifact_sha256 != actual {
        bail!(
            "{} is the statement of an artifact whose SHA-256 is {}, not {} ({actual})",
            path.display(),
            provenance.artifact_sha256,
            file.display()
        );
    }
    let engine = wasmtime::Engine::detect_serialization_compatibility_hash(artifact).map(Digest);
    if engine != Some(provenance.key.engine) {
        bail!(
            "{} is the statement of engine {}, not of {}'s",
            path.display(),
            provenance.key.engine,
            file.display()
        );
    }
    Ok(Some((provenance, verified_by)))
}
