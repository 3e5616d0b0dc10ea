//! Reading what an artifact says about the engine that compiled it.

use crate::digest::Digest;
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
    /// The compiling engine's `serialization_compatibility_hash` (the
    /// SHA-256 of the engine section read here).
    pub engine_hash: Digest,
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
    let file = object::File::parse(artifact).context("not a readable ELF file")?;
    let section = file
        .section_by_name(ENGINE_SECTION)
        .context("a wasmtime ELF header, but no engine section")?
        .data()
        .context("unreadable engine section")?;
    // The hash is by definition the SHA-256 of the section's bytes
    // (`Engine::serialization_compatibility_hash`).
    let hash = Digest::of(section);
    let (&layout, rest) = section.split_first().context("empty engine section")?;
    let (&len, rest) = rest.split_first().context("truncated engine section")?;
    let (version, metadata) = rest
        .split_at_checked(usize::from(len))
        .context("truncated version string")?;
    let mut info = ArtifactInfo {
        kind,
        engine_hash: hash,
        version: String::from_utf8_lossy(version).into_owned(),
        target: "unknown".into(),
        shared_flags: Vec::new(),
        isa_flags: Vec::new(),
        engine_section_len: section.len(),
    };
    // Layouts 0 and 1 (1: the series' codegen settings follow) start alike.
    if layout <= 1
        && let Ok((m, _rest)) = postcard::take_from_bytes::<MetadataPrefix<'_>>(metadata)
    {
        info.target = m.target.to_string();
        info.shared_flags = m.shared_flags.into_iter().map(FlagSetting::from).collect();
        info.isa_flags = m.isa_flags.into_iter().map(FlagSetting::from).collect();
    }
    Ok(info)
}

/// The engine section of `artifact`, if it is a wasmtime artifact that has
/// one.
pub(crate) fn engine_section(artifact: &[u8]) -> Option<&[u8]> {
    Engine::detect_precompiled(artifact)?;
    let file = object::File::parse(artifact).ok()?;
    file.section_by_name(ENGINE_SECTION)?.data().ok()
}

/// An engine section in wasmtime 48's layout, split where two engines that
/// differ only in CPU features differ.
#[derive(PartialEq, Eq)]
pub(crate) struct SectionParts<'a> {
    /// The layout byte and the version string.
    head: &'a [u8],
    target: &'a str,
    shared_flags: Vec<(&'a str, FlagValue<'a>)>,
    /// The ISA settings that are on (CPU features, for the most part), by
    /// name, sorted.
    pub(crate) isa_on: Vec<&'a str>,
    /// The ISA settings with other values (enums, numbers), kept as
    /// compared.
    isa_other: Vec<(&'a str, FlagValue<'a>)>,
    /// Tunables, wasm features and the series' codegen settings, as bytes.
    rest: &'a [u8],
}

impl<'a> SectionParts<'a> {
    /// `section` split, or `None` if it is not in a layout this crate reads.
    pub(crate) fn of(section: &'a [u8]) -> Option<SectionParts<'a>> {
        let (&layout, rest) = section.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let (_version, metadata) = rest.split_at_checked(usize::from(len))?;
        if layout > 1 {
            return None;
        }
        let (m, rest) = postcard::take_from_bytes::<MetadataPrefix<'_>>(metadata).ok()?;
        let mut isa_on = Vec::new();
        let mut isa_other = Vec::new();
        for (name, value) in m.isa_flags {
            match value {
                FlagValue::Bool(true) => isa_on.push(name),
                FlagValue::Bool(false) => {}
                other => isa_other.push((name, other)),
            }
        }
        isa_on.sort_unstable();
        isa_other.sort_unstable_by_key(|(name, _)| *name);
        Some(SectionParts {
            head: &section[..2 + usize::from(len)],
            target: m.target,
            shared_flags: m.shared_flags,
            isa_on,
            isa_other,
            rest,
        })
    }

    /// Whether `self` describes the same engine as `other` except for CPU
    /// features, of which it has a subset: its artifacts are what `other`
    /// would compile, for fewer CPU features.
    pub(crate) fn is_cpu_subset_of(&self, other: &SectionParts<'_>) -> bool {
        self.head == other.head
            && self.target == other.target
            && self.shared_flags == other.shared_flags
            && self.isa_other == other.isa_other
            && self.rest == other.rest
            && self
                .isa_on
                .iter()
                .all(|f| other.isa_on.binary_search(f).is_ok())
    }
}

/// The leading fields of wasmtime 48's `Metadata` (postcard, serde): the
/// target and Cranelift's settings, as `wasmtime_environ`'s `FlagValue`.
/// The fields after them (tunables, features) are not decoded.
#[derive(serde::Deserialize)]
struct MetadataPrefix<'a> {
    target: &'a str,
    #[serde(borrow)]
    shared_flags: Vec<(&'a str, FlagValue<'a>)>,
    #[serde(borrow)]
    isa_flags: Vec<(&'a str, FlagValue<'a>)>,
}

/// `wasmtime_environ::FlagValue`, variant for variant.
#[derive(serde::Deserialize, PartialEq, Eq)]
enum FlagValue<'a> {
    Enum(&'a str),
    Num(u8),
    Bool(bool),
}

impl From<(&str, FlagValue<'_>)> for FlagSetting {
    fn from((name, value): (&str, FlagValue<'_>)) -> FlagSetting {
        let value = match value {
            FlagValue::Enum(s) => s.to_string(),
            FlagValue::Num(n) => n.to_string(),
            FlagValue::Bool(b) => b.to_string(),
        };
        FlagSetting {
            name: name.to_string(),
            value,
        }
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
        let hash = engine.serialization_compatibility_hash().unwrap();
        assert_eq!(info.engine_hash, Digest(hash));
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

    /// A setting the series records after `Metadata` (layout byte 1) leaves
    /// the leading fields readable.
    #[test]
    fn reads_the_target_of_layout_1_sections() {
        let mut config = wasmtime::Config::new();
        config.target("x86_64-unknown-linux-gnu").unwrap();
        config.memory_guaranteed_dense_image_size(1 << 20);
        let artifact = Engine::new(&config)
            .unwrap()
            .precompile_module(b"(module)")
            .unwrap();
        let file = object::File::parse(&artifact[..]).unwrap();
        let section = file.section_by_name(ENGINE_SECTION).unwrap();
        assert_eq!(section.data().unwrap()[0], 1, "not a layout 1 section");
        let info = inspect(&artifact).unwrap();
        assert_eq!(info.target, "x86_64-unknown-linux-gnu");
        assert!(!info.shared_flags.is_empty());
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
