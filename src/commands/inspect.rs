//! `inspect`: what an artifact was compiled for.

use crate::{print_json, printable};
use std::path::Path;
use wasmtime::Result;
use wasmtime::error::Context;

pub fn inspect(file: &Path, json: bool) -> Result<()> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    let info = cwasm_store::inspect(&bytes).with_context(|| format!("{}", file.display()))?;
    if json {
        return print_json(&info);
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
    Ok(())
}
