//! The store's on-disk layout: every name a backend holds, what it means,
//! and the parsers of those names. The bottom of the crate: it uses `Digest`
//! and `Key` (`digest.rs`) and the artifact reader (`inspect.rs`, for the
//! descriptor), and every module that names an object takes its name from
//! here.
//!
//! Every backend (a local directory, or a bucket and prefix) holds the same
//! names. This is their one definition; the constants below spell them.
//!
//! 1. `<engine-hex>/`: one prefix per engine, named by the 64 lowercase hex
//!    digits of `Engine::serialization_compatibility_hash()`
//!    ([`prefix_engine`]). Retiring an engine generation deletes its prefix.
//! 2. `<engine-hex>/engine.json` ([`DESCRIPTOR`]): what the prefix is for
//!    (`EngineDescriptor`: module version string, target, first write),
//!    read from the first artifact's own engine section. Informational: no
//!    check trusts it.
//! 3. `<engine-hex>/<wasm-hex>.cwasm` ([`ARTIFACT_SUFFIX`]): an artifact,
//!    byte for byte as wasmtime wrote it, under the SHA-256 of its wasm (or a
//!    digest the caller supplied). Only the canonical lowercase form is an
//!    entry (`Key::from_artifact_path`). Local tiers keep artifacts raw, so
//!    that they can be memory-mapped.
//! 4. `<engine-hex>/<wasm-hex>.cwasm.zst` ([`ZSTD_SUFFIX`]): the same,
//!    zstd-compressed (object stores, with `compress_remote`).
//! 5. `<engine-hex>/<wasm-hex>.cwasm.hmac` ([`TAG_SUFFIX`]): with a key,
//!    the raw artifact's tag, and `<wasm-hex>.cwasm.zst.hmac` the
//!    compressed one's (stores before this kept both at the first name:
//!    still read for a compressed object that has no tag of its own, and
//!    written with `write_v2_tags`). A tag (`tag.rs`) is 33 bytes, `3` and the keyed BLAKE3 hash
//!    of a domain string, the engine hash, the wasm digest, one byte saying
//!    whether the object is compressed, and the object's bytes as stored
//!    (v3); tags of 32 bytes, the HMAC-SHA-256 of the same fields (v2), are
//!    still read. It is written before its artifact, so an artifact is
//!    never visible without its tag; `gc` deletes a tag older than an hour
//!    whose artifact is missing.
//! 6. `.tmp-<random>` ([`TMP_PREFIX`], local tiers; in the directory of the
//!    file being written, a prefix or the root): a write in progress. Never
//!    read; `gc` removes a crashed writer's after an hour.
//! 7. `.gc-stamp` ([`GC_STAMP`], in the root; local tiers): its modification
//!    time is when eviction last ran, shared by every process using the
//!    store.
//! 8. `.gc-lock` ([`GC_LOCK`], in the root; local tiers): `flock`ed by a
//!    running `gc`.
//! 9. `<engine-hex>/engine.section` ([`SECTION`]): the engine section
//!    every artifact of the prefix carries, byte for byte, written beside
//!    the descriptor. Its SHA-256 is the prefix's name, so it needs no tag:
//!    a reader hashes it and ignores it if it does not match. With it, a
//!    host can ask wasmtime whether it would load the prefix's artifacts
//!    without reading one (`store/reuse.rs`).
//! 10. `<engine-hex>/<wasm-hex>.cwasm.intoto.json` ([`STATEMENT_SUFFIX`]):
//!     the entry's statement (`attest.rs`): a DSSE envelope holding an
//!     in-toto statement of the artifact's digests, wasm digest, engine
//!     hash, producer, target and time, signed by the writer's signing key
//!     if it had one. Written before the artifact (after its tag), copied
//!     verbatim with a remote hit into the local tier, one per key (for both
//!     forms: its digests are the raw artifact's). `gc` deletes one older
//!     than an hour whose artifact is missing.
//!
//! Anything else is not the store's: lookups never read it, and `verify`'s
//! caller is told of the files under prefixes (`ArtifactStore::strays`).
//! Nothing deletes it, except that retiring a generation deletes its whole
//! prefix.
//!

use crate::digest::{Digest, Key};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Layout 2: a prefix's descriptor.
pub(crate) const DESCRIPTOR: &str = "engine.json";
/// Layout 9: a prefix's engine section.
pub(crate) const SECTION: &str = "engine.section";
/// Layout 3: the suffix of an artifact's name.
pub(crate) const ARTIFACT_SUFFIX: &str = ".cwasm";
/// Layout 4: the suffix of a compressed artifact (after layout 3's).
pub(crate) const ZSTD_SUFFIX: &str = ".zst";
/// Layout 5: the suffix of a tag (after layout 3's).
pub(crate) const TAG_SUFFIX: &str = ".hmac";
/// Layout 10: the suffix of an entry's statement (after layout 3's).
pub(crate) const STATEMENT_SUFFIX: &str = ".intoto.json";
/// Layout 6: the start of a temporary file's name.
pub(crate) const TMP_PREFIX: &str = ".tmp-";
/// Layout 7: the time eviction last ran.
pub(crate) const GC_STAMP: &str = ".gc-stamp";
/// Layout 8: the lock a running `gc` holds.
pub(crate) const GC_LOCK: &str = ".gc-lock";

/// The largest `engine.json` read: a descriptor is a few hundred bytes.
pub(crate) const MAX_DESCRIPTOR: u64 = 64 << 10;

/// What an engine-hash prefix of the store is for, written once per prefix
/// as `<engine-hex>/engine.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineDescriptor {
    /// The engine hash (hex in the file).
    pub engine: Digest,
    /// The module version string recorded in the artifacts (wasmtime's
    /// major version, `48`, unless the engine set a custom one).
    pub wasmtime_version: String,
    /// The compilation target.
    pub target: String,
    /// When the prefix was first written, in seconds since the Unix epoch.
    pub first_written: u64,
}

/// Layout 2: the path of the descriptor of `engine`'s prefix.
pub(crate) fn descriptor_path(engine: Digest) -> String {
    format!("{engine}/{DESCRIPTOR}")
}

/// Layout 9: the path of the engine section of `engine`'s prefix.
pub(crate) fn section_path(engine: Digest) -> String {
    format!("{engine}/{SECTION}")
}

impl Key {
    /// The artifact's path relative to the store root.
    pub fn artifact_path(&self) -> String {
        format!("{}/{}{ARTIFACT_SUFFIX}", self.engine, self.wasm)
    }

    /// The path of the zstd-compressed artifact (layout 4).
    pub fn compressed_path(&self) -> String {
        format!("{}{ZSTD_SUFFIX}", self.artifact_path())
    }

    /// The path of the object of one form: the raw artifact, or the
    /// compressed one.
    pub fn object_path(&self, compressed: bool) -> String {
        if compressed {
            self.compressed_path()
        } else {
            self.artifact_path()
        }
    }

    /// The path of the raw artifact's tag.
    pub fn tag_path(&self) -> String {
        format!("{}{TAG_SUFFIX}", self.artifact_path())
    }

    /// The path of the tag of the object of one form: the raw artifact's
    /// ([`Key::tag_path`]), or the compressed one's
    /// (`<wasm-hex>.cwasm.zst.hmac`), so that both forms can be stored
    /// and verified side by side.
    pub fn tag_path_for(&self, compressed: bool) -> String {
        if compressed {
            format!("{}{ZSTD_SUFFIX}{TAG_SUFFIX}", self.artifact_path())
        } else {
            self.tag_path()
        }
    }

    /// The path of the entry's statement (`<wasm-hex>.cwasm.intoto.json`),
    /// one for both forms of the entry.
    pub fn statement_path(&self) -> String {
        format!("{}{STATEMENT_SUFFIX}", self.artifact_path())
    }

    /// Parses `<engine-hex>/<wasm-hex>.cwasm`, in the canonical form the
    /// store writes (lowercase hex) only: any other name is not an entry.
    pub fn from_artifact_path(path: &str) -> Option<Key> {
        let (engine, file) = path.split_once('/')?;
        let wasm = file.strip_suffix(ARTIFACT_SUFFIX)?;
        let canonical = |hex: &str| !hex.bytes().any(|c| c.is_ascii_uppercase());
        if !canonical(engine) || !canonical(wasm) {
            return None;
        }
        Some(Key {
            engine: engine.parse().ok()?,
            wasm: wasm.parse().ok()?,
        })
    }
}

/// The engine hash a top-level name stands for, if it is a prefix (layout
/// 1: exactly 64 lowercase hex digits).
pub(crate) fn prefix_engine(name: &str) -> Option<Digest> {
    let lowercase = name
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if !lowercase {
        return None;
    }
    name.parse::<Digest>().ok()
}

pub(crate) fn is_artifact(path: &str) -> bool {
    key_of(path).is_some()
}

pub(crate) fn key_of(path: &str) -> Option<Key> {
    Key::from_artifact_path(path.strip_suffix(ZSTD_SUFFIX).unwrap_or(path))
}

/// The descriptor for `key`'s prefix, read from the artifact's own engine
/// section.
pub(crate) fn describe(key: &Key, artifact: &[u8]) -> Option<EngineDescriptor> {
    let info = crate::inspect::inspect(artifact).ok()?;
    Some(EngineDescriptor {
        engine: key.engine,
        wasmtime_version: info.version,
        target: info.target,
        first_written: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each layout name, with its number in the module documentation.
    const NAMES: [(u8, &str); 10] = [
        (2, DESCRIPTOR),
        (10, STATEMENT_SUFFIX),
        (9, SECTION),
        (3, ARTIFACT_SUFFIX),
        (4, ZSTD_SUFFIX),
        (5, TAG_SUFFIX),
        (6, TMP_PREFIX),
        (7, GC_STAMP),
        (8, GC_LOCK),
        (1, "<engine-hex>/"),
    ];

    /// The layout's one definition (this module's documentation) and its
    /// summary in docs/store.md spell each name as the code does.
    #[test]
    fn the_documented_layout_is_the_code() {
        let doc: Vec<&str> = include_str!("layout.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect();
        let store_md = include_str!("../../../docs/store.md");
        for (n, name) in NAMES {
            let item = doc
                .iter()
                .position(|l| l.starts_with(&format!("//! {n}. ")))
                .unwrap_or_else(|| panic!("layout item {n} is not documented"));
            // An item's first line names the file.
            assert!(doc[item].contains(name), "item {n} does not name `{name}`");
            assert!(
                store_md
                    .lines()
                    .any(|l| l.contains(name) && l.contains(&format!(" {n}. "))),
                "docs/store.md does not name `{name}` as item {n}"
            );
        }
    }

    #[test]
    fn entry_names_are_recognised_and_others_are_not() {
        let key = Key {
            engine: Digest([1; 32]),
            wasm: Digest([2; 32]),
        };
        let raw = key.artifact_path();
        assert_eq!(key_of(&raw), Some(key));
        assert_eq!(key_of(&format!("{raw}{ZSTD_SUFFIX}")), Some(key));
        assert!(!is_artifact(&key.tag_path()));
        assert!(!is_artifact(&format!("{}/{DESCRIPTOR}", key.engine)));
        assert!(!is_artifact(&format!("{}/{SECTION}", key.engine)));
        assert!(!is_artifact(&format!("{}/{TMP_PREFIX}0123", key.engine)));
        let engine = Digest([0xab; 32]);
        let prefix = engine.to_string();
        assert_eq!(prefix_engine(&prefix), Some(engine));
        for other in [
            prefix.to_uppercase(),
            prefix[1..].to_string(),
            format!("{prefix}0"),
            format!("+{}", &prefix[1..]),
        ] {
            assert_eq!(prefix_engine(&other), None, "{other}");
        }
    }
}
