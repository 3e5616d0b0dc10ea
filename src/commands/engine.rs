//! Commands about engines: `hash`, `host` and `baseline`.

use crate::{flags, print_json, printable};
use cwasm_store::{CpuProfile, Digest, HostInfo};
use std::path::{Path, PathBuf};
use wasmtime::Result;
use wasmtime::error::Context;

pub fn hash(flags: &flags::EngineFlags, json: bool) -> Result<()> {
    let engine = flags.engine()?;
    let hash = Digest(engine.serialization_compatibility_hash()?);
    if json {
        // What an artifact of this engine would record.
        let info = cwasm_store::inspect(&engine.precompile_module(b"(module)")?)?;
        print_json(&serde_json::json!({
            "engine_hash": hash.to_string(),
            "version": info.version,
            "target": info.target,
        }))
    } else {
        println!("{hash}");
        Ok(())
    }
}

pub fn host(json: bool) -> Result<()> {
    let info = HostInfo::detect(&wasmtime::Config::new())?;
    if json {
        return print_json(&info);
    }
    println!("target:      {}", info.target);
    if let Some(hash) = info.engine_hash {
        println!("engine hash: {hash}");
    }
    println!("version:     {}", printable(&info.version));
    let on: Vec<&str> = info
        .flags
        .iter()
        .filter(|(_, v)| *v == "true")
        .map(|(n, _)| n.as_str())
        .collect();
    let other: Vec<String> = info
        .flags
        .iter()
        .filter(|(_, v)| *v != "true")
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    println!("features:    {}", on.join(" "));
    println!("other:       {}", other.join(" "));
    Ok(())
}

pub fn baseline(files: &[PathBuf], write: Option<&Path>, json: bool) -> Result<()> {
    let hosts = files
        .iter()
        .map(|path| CpuProfile::from_file(path))
        .collect::<Result<Vec<_>>>()?;
    let profile = CpuProfile::baseline(&hosts)?;
    let hash = profile.engine_hash()?;
    let toml = profile.to_toml()?;
    if let Some(path) = write {
        std::fs::write(path, &toml)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    if json {
        return print_json(&serde_json::json!({
            "engine_hash": hash.to_string(),
            "flags": profile.cli_flags(),
            "profile": profile,
        }));
    }
    println!("# {} hosts, target {}", hosts.len(), profile.target);
    println!("engine hash: {hash}");
    println!("flags:       {}", profile.cli_flags().join(" "));
    println!("profile:\n{toml}");
    Ok(())
}
