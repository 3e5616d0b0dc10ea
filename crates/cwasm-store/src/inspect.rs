//! Reading what an artifact says about the engine that compiled it.

use object::{Object, ObjectSection};
use serde::Serialize;
use wasmtime::error::Context;
use wasmtime::{Engine, Precompiled, Result, bail};

const ENGINE_SECTION: &str = ".wasmtime.engine";

/// What a precompiled artifact records about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactInfo {
    /// `"module"` or `"component"`.
    pub kind: &'static str,
    /// The compiling engine's `serialization_compatibility_hash`, hex.
    pub engine_hash: String,
    /// The module version string (the wasmtime version by default).
    pub version: String,
    /// The compilation target.
    pub target: String,
    /// Cranelift's shared settings.
    pub shared_flags: Vec<FlagSetting>,
    /// Cranelift's ISA-specific settings (CPU features).
    pub isa_flags: Vec<FlagSetting>,
    /// Size of the engine section in bytes.
    pub engine_section_len: usize,
}

/// One Cranelift setting recorded in an artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlagSetting {
    /// The setting's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// Reads `artifact`'s engine section: hash, version, target and Cranelift
/// settings. Fails with a one-line reason for anything that is not a
/// wasmtime artifact.
///
/// The version string and hash are read for artifacts of any wasmtime
/// version; target and settings are decoded in the layout wasmtime 48 writes
/// (they read `unknown` and empty for other layouts).
pub fn inspect(artifact: &[u8]) -> Result<ArtifactInfo> {
    let kind = match Engine::detect_precompiled(artifact) {
        Some(Precompiled::Module) => "module",
        Some(Precompiled::Component) => "component",
        None => bail!("not a wasmtime artifact (no wasmtime ELF header)"),
    };
    let hash = Engine::detect_serialization_compatibility_hash(artifact)
        .context("a wasmtime ELF header, but no readable engine section")?;
    let file = object::File::parse(artifact).context("not a readable ELF file")?;
    let section = file
        .section_by_name(ENGINE_SECTION)
        .context("no engine section")?
        .data()
        .context("unreadable engine section")?;
    let mut r = Reader(section);
    let layout = r.byte().context("empty engine section")?;
    let len = usize::from(r.byte().context("truncated engine section")?);
    let version = String::from_utf8_lossy(r.take(len).context("truncated version string")?);
    let mut info = ArtifactInfo {
        kind,
        engine_hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
        version: version.into_owned(),
        target: "unknown".into(),
        shared_flags: Vec::new(),
        isa_flags: Vec::new(),
        engine_section_len: section.len(),
    };
    if layout == 0
        && let Some((target, shared, isa)) = metadata_v0(&mut r)
    {
        info.target = target;
        info.shared_flags = shared;
        info.isa_flags = isa;
    }
    Ok(info)
}

/// Target and flags of wasmtime 48's postcard-encoded `Metadata`.
fn metadata_v0(r: &mut Reader<'_>) -> Option<(String, Vec<FlagSetting>, Vec<FlagSetting>)> {
    let target = r.string()?;
    let shared = r.flags()?;
    let isa = r.flags()?;
    Some((target, shared, isa))
}

/// Just enough of postcard's encoding for the fields above.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.varint()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn flags(&mut self) -> Option<Vec<FlagSetting>> {
        let n = self.varint()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let name = self.string()?;
            let value = match self.varint()? {
                0 => self.string()?,
                1 => self.byte()?.to_string(),
                2 => (self.byte()? != 0).to_string(),
                _ => return None,
            };
            out.push(FlagSetting { name, value });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_engine_wrote() {
        let mut config = wasmtime::Config::new();
        config.target("x86_64-unknown-linux-gnu").unwrap();
        unsafe {
            config.cranelift_flag_enable("has_sse41");
        }
        let engine = Engine::new(&config).unwrap();
        let artifact = engine.precompile_module(b"(module)").unwrap();
        let info = inspect(&artifact).unwrap();
        assert_eq!(info.kind, "module");
        // wasmtime records its major version: patch releases share artifacts.
        assert_eq!(info.version, "48");
        assert_eq!(info.target, "x86_64-unknown-linux-gnu");
        let hash: String = engine
            .serialization_compatibility_hash()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(info.engine_hash, hash);
        assert!(
            info.isa_flags
                .iter()
                .any(|f| f.name == "has_sse41" && f.value == "true"),
            "{:?}",
            info.isa_flags
        );
        assert!(info.shared_flags.iter().any(|f| f.name == "opt_level"));

        let component = engine.precompile_component(b"(component)").unwrap();
        assert_eq!(inspect(&component).unwrap().kind, "component");
    }

    #[test]
    fn rejects_non_artifacts_in_one_line() {
        for bytes in [&b""[..], b"\0asm\x01\0\0\0", b"\x7fELF garbage"] {
            let err = format!("{:#}", inspect(bytes).unwrap_err());
            assert!(err.contains("not a wasmtime artifact"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
