//! What an entry is on disk, and how one is read, checked and loaded.
//!
//! Every `unsafe` load of the store is in this module: the two calls that
//! hand bytes to wasmtime's deserialization (`Loaded::probe`,
//! `Loaded::deserialize`). (The crate's only other `unsafe` sets a Cranelift
//! setting in `profile.rs`.) wasmtime trusts what it deserializes, so the
//! store must only ever hand it an artifact that this engine compiled, or
//! one that passed every check below. The checks are in this module too,
//! and the only way to obtain a [`Loaded`] that is not yet deserialized is
//! through them (or [`Loaded::compiled`], for bytes the engine just
//! produced): a reviewer reads this one file to see why each load is sound.
//!
//! # Layout
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
//! 5. `<engine-hex>/<wasm-hex>.cwasm.hmac` ([`TAG_SUFFIX`]): with an HMAC
//!    key, the 32-byte HMAC-SHA-256 of [`HMAC_DOMAIN`], the engine hash, the
//!    wasm digest, one byte saying whether the object is compressed, and the
//!    object's bytes as stored. It is written before its artifact, so an
//!    artifact is never visible without its tag; `gc` deletes a tag whose
//!    artifact has been missing for an hour.
//! 6. `.tmp-<random>` ([`TMP_PREFIX`], local tiers; in the directory of the
//!    file being written, a prefix or the root): a write in progress. Never
//!    read; `gc` removes a crashed writer's after an hour.
//! 7. `.gc-stamp` ([`GC_STAMP`], in the root; local tiers): its modification
//!    time is when eviction last ran, shared by every process using the
//!    store.
//! 8. `.gc-lock` ([`GC_LOCK`], in the root; local tiers): `flock`ed by a
//!    running `gc`.
//!
//! Anything else is not the store's: lookups never read it, and `verify`'s
//! caller is told of the files under prefixes (`ArtifactStore::strays`).
//! Nothing deletes it, except that retiring a generation deletes its whole
//! prefix.
//!
//! # Checks, in order, before a load
//!
//! 1. The object is a regular file (no symlink followed, no FIFO, opened
//!    without blocking) or a remote object, of at most `max_artifact_size`
//!    bytes. A larger one is a miss; a non-file is rejected.
//! 2. With an HMAC key, the tag (5) verifies over the bytes as stored,
//!    before anything else reads them (decompression, the stamp). A
//!    *private* local entry (file, prefix and root owned by this user and
//!    writable by no one else) skips this on lookups: its tag verified when
//!    it entered the tier, and only this user can have changed it since
//!    (unless `reverify_private_entries`; `verify` always checks).
//! 3. A compressed object (4) inflates to at most `max_artifact_size`.
//! 4. The artifact's own engine section hashes to the key's engine hash
//!    (`Engine::detect_serialization_compatibility_hash`): the artifact was
//!    compiled by an engine with exactly this engine's settings.
//! 5. The bytes that were checked are the bytes loaded: the same open file
//!    (a module is memory-mapped from it; a component is read from it), or
//!    the same buffer.
//! 6. wasmtime's own checks (`check_compatible`, the host's CPU features).
//!
//! A failed check 1 (a non-file), 2, 3 (not zstd), 4 or 6 proves the entry
//! bad: it is rejected (deleted, counted, logged) and compiled again. Two
//! refusals at 6 are not the entry's fault and delete nothing: this host
//! lacking a CPU feature (a miss; the fleet's entry stays), and an artifact
//! of the other kind than the caller asked for (a module under a
//! component's key: the caller's error). Neither does an error reading the
//! object or its tag (I/O, network): a miss, counted as a store error.

use crate::backend::{Backend, Fetched, LocalDir};
use crate::digest::{Digest, Key};
use crate::fsops::{Opened, read_all};
use crate::stats::bump;
use crate::store::{ArtifactStore, used_long_ago};
use hmac::{Hmac, Mac};
use std::time::SystemTime;
use wasmtime::component::Component;
use wasmtime::{Engine, Module, Result, bail, format_err};

/// Layout 2: a prefix's descriptor.
pub(crate) const DESCRIPTOR: &str = "engine.json";
/// Layout 3: the suffix of an artifact's name.
pub(crate) const ARTIFACT_SUFFIX: &str = ".cwasm";
/// Layout 4: the suffix of a compressed artifact (after layout 3's).
pub(crate) const ZSTD_SUFFIX: &str = ".zst";
/// Layout 5: the suffix of a tag (after layout 3's).
pub(crate) const TAG_SUFFIX: &str = ".hmac";
/// Layout 5: the start of every tag's MAC input. Version 2 tags cover the
/// bytes as stored (compressed or not), so a tag is checked before
/// anything is decompressed.
pub(crate) const HMAC_DOMAIN: &[u8] = b"cwasm-entry-v2\0";
/// Layout 6: the start of a temporary file's name.
pub(crate) const TMP_PREFIX: &str = ".tmp-";
/// Layout 7: the time eviction last ran.
pub(crate) const GC_STAMP: &str = ".gc-stamp";
/// Layout 8: the lock a running `gc` holds.
pub(crate) const GC_LOCK: &str = ".gc-lock";

/// What the caller asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Module,
    Component,
}

/// Why an entry was refused.
pub(crate) struct Rejected(pub(crate) String);

/// What a local entry is read for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFor {
    /// A lookup: the checked open file itself when there is no tag to
    /// verify (unkeyed, or a private entry), so that it can be
    /// memory-mapped; otherwise the checked bytes.
    Load,
    /// `get`: the checked bytes.
    Bytes,
    /// `verify`: the checked bytes, the tag verified even for a private
    /// entry.
    Audit,
}

/// The result of looking for an entry's tag.
enum Tag {
    Verified,
    /// The tag could not be read (an I/O or network error): not proof of
    /// anything, so a miss that leaves the entry in place.
    Unavailable,
}

impl ArtifactStore {
    /// Finds a usable artifact for `key`: local tier, then remote. Entries
    /// that fail a check are evicted and counted; backend errors are logged.
    /// The only error is a caller's: asking for a module under a component's
    /// key, or the reverse.
    pub(crate) fn lookup(&self, engine: &Engine, key: &Key, kind: Kind) -> Result<Option<Loaded>> {
        let path = key.artifact_path();
        if let Some(local) = &self.local {
            match self.read_checked(local, key, &path, ReadFor::Load) {
                Ok(Some((checked, used))) => {
                    let again = checked.try_clone();
                    match checked.probe(engine, kind, self.config.max_artifact_size) {
                        Ok(loaded) => {
                            if used_long_ago(used)
                                && let Err(e) = local.touch(&path)
                            {
                                tracing::debug!(error = %format!("{e:#}"), "could not record last use");
                            }
                            return Ok(Some(loaded));
                        }
                        Err(e) => {
                            check_kind(key, kind, again.as_ref().and_then(Loaded::precompiled))?;
                            self.refused_by_wasmtime(local, key, &e);
                        }
                    }
                }
                Ok(None) => {}
                Err(Rejected(reason)) => self.reject(local, key, &reason),
            }
        }
        let Some(remote) = self.remote.as_deref() else {
            return Ok(None);
        };
        let bytes = match self.read_remote(remote, key) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(Rejected(reason)) => {
                self.reject(remote, key, &reason);
                return Ok(None);
            }
        };
        check_kind(key, kind, Engine::detect_precompiled(&bytes))?;
        // The checked bytes are loaded as they are; the local tier's copy is
        // written off the hit path.
        match Loaded::deserialize(engine, kind, &bytes) {
            Ok(loaded) => {
                self.copy_to_local(key, bytes);
                Ok(Some(loaded))
            }
            Err(e) => {
                self.refused_by_wasmtime(remote, key, &e);
                Ok(None)
            }
        }
    }

    /// wasmtime refused an artifact whose stamp (and tag) matched. If it is
    /// this host that cannot run it (a CPU feature it lacks), the entry is
    /// fine for the rest of the fleet: a miss, nothing deleted. Otherwise the
    /// artifact is damaged: evicted.
    fn refused_by_wasmtime(&self, backend: &dyn Backend, key: &Key, error: &wasmtime::Error) {
        let reason = format!("wasmtime refused it: {error:#}");
        if reason.contains("native host") {
            bump(&self.counters.store_errors);
            tracing::warn!(store = %backend.describe(), engine = %key.engine, wasm = %key.wasm, reason, "this host cannot run the stored artifact; compiling instead, leaving it in place");
        } else {
            self.reject(backend, key, &reason);
        }
    }

    /// Reads and checks `key`'s artifact in the local tier. For a
    /// [`ReadFor::Load`] without a tag to verify, checks the open file in
    /// place (reading only its section table and engine section) so that
    /// the same open file can be memory-mapped; otherwise reads the bytes,
    /// verifies the tag, then checks the stamp. Either way the check and the
    /// load use the same open file: a rename in between changes nothing.
    pub(crate) fn read_checked(
        &self,
        local: &LocalDir,
        key: &Key,
        path: &str,
        purpose: ReadFor,
    ) -> Result<Option<(Loaded, SystemTime)>, Rejected> {
        let limit = self.config.max_artifact_size;
        // Privacy matters only to a keyed store that trusts private entries:
        // unkeyed hits skip its two `fstat`s.
        let trust_private = self.config.hmac_key.is_some() && !self.config.reverify_private_entries;
        let (file, len, private, used) = match local.open_entry(path, limit, trust_private) {
            Ok(Opened::Missing) => return Ok(None),
            Ok(Opened::File(file, len, private, used)) => (file, len, private, used),
            Ok(Opened::NotAFile(what)) => return Err(Rejected(what)),
            Ok(Opened::TooLarge(len)) => {
                self.skip(
                    key,
                    &format!("it has {len} bytes, more than max_artifact_size"),
                );
                return Ok(None);
            }
            Err(e) => {
                self.store_error("store read failed; treating as a miss", &e);
                return Ok(None);
            }
        };
        // A private entry's tag was verified when it entered the tier, and
        // only this user can have changed it since (docs/store.md).
        let verify = self.config.hmac_key.is_some()
            && (!private || self.config.reverify_private_entries || purpose == ReadFor::Audit);
        if purpose == ReadFor::Load && !verify {
            return match Engine::detect_serialization_compatibility_hash_file(fd_path(&file)) {
                // Re-opening the open file failed (no `/proc`, no descriptor
                // left): says nothing about the entry.
                Err(e) => {
                    self.store_error("store read failed; treating as a miss", &e);
                    Ok(None)
                }
                Ok(found) => {
                    check_stamp(key, found)?;
                    Ok(Some((Loaded(State::Open(file, len)), used)))
                }
            };
        }
        let bytes = match read_all(&file, len, limit) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.store_error("store read failed; treating as a miss", &e.into());
                return Ok(None);
            }
        };
        // Nothing unauthenticated is parsed: the tag first, then the stamp.
        if verify && let Tag::Unavailable = self.check_tag(local, key, false, &bytes)? {
            return Ok(None);
        }
        check_stamp(key, Engine::detect_serialization_compatibility_hash(&bytes))?;
        // The bytes that were verified are the ones to load: re-opening the
        // file would let a writer swap it after the check.
        Ok(Some((Loaded(State::Bytes(bytes)), used)))
    }

    /// An entry left in place and treated as a miss.
    fn skip(&self, key: &Key, reason: &str) {
        bump(&self.counters.store_errors);
        tracing::warn!(engine = %key.engine, wasm = %key.wasm, reason, "not reading a stored artifact; treating it as a miss");
    }

    pub(crate) fn read_remote(
        &self,
        remote: &dyn Backend,
        key: &Key,
    ) -> Result<Option<Vec<u8>>, Rejected> {
        let limit = self.config.max_artifact_size;
        let raw_path = key.artifact_path();
        let zst_path = format!("{raw_path}{ZSTD_SUFFIX}");
        let mut paths = [raw_path, zst_path];
        if self.config.compress_remote {
            paths.reverse();
        }
        for path in &paths {
            let compressed = path.ends_with(ZSTD_SUFFIX);
            let stored = match remote.read_limited(path, limit) {
                Ok(Fetched::Bytes(stored)) => stored,
                Ok(Fetched::Missing) => continue,
                Ok(Fetched::TooLarge(len)) => {
                    self.skip(
                        key,
                        &format!("{path} has {len} bytes, more than max_artifact_size"),
                    );
                    return Ok(None);
                }
                Ok(Fetched::NotAnObject(what)) => return Err(Rejected(what)),
                Err(e) => {
                    self.store_error("remote read failed; treating as a miss", &e);
                    return Ok(None);
                }
            };
            // The tag covers the stored bytes: nothing unauthenticated is
            // decompressed.
            if let Tag::Unavailable = self.check_tag(remote, key, compressed, &stored)? {
                return Ok(None);
            }
            let bytes = if compressed {
                match decompress(&stored, limit) {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => {
                        self.skip(
                            key,
                            &format!("{path} decompresses to more than max_artifact_size"),
                        );
                        return Ok(None);
                    }
                    Err(e) => return Err(Rejected(format!("not valid zstd: {e}"))),
                }
            } else {
                stored
            };
            check_stamp(key, Engine::detect_serialization_compatibility_hash(&bytes))?;
            return Ok(Some(bytes));
        }
        Ok(None)
    }

    /// With a key, verifies `key`'s tag over `stored` (the bytes as stored,
    /// `compressed` or not). A missing, malformed or wrong tag is a
    /// rejection; a tag that cannot be read now is [`Tag::Unavailable`].
    fn check_tag(
        &self,
        backend: &dyn Backend,
        key: &Key,
        compressed: bool,
        stored: &[u8],
    ) -> Result<Tag, Rejected> {
        let Some(secret) = &self.config.hmac_key else {
            return Ok(Tag::Verified);
        };
        let tag = match backend.read_limited(&key.tag_path(), 64) {
            Ok(Fetched::Bytes(tag)) => tag,
            Ok(Fetched::Missing) => return Err(Rejected("it has no HMAC tag".into())),
            Ok(Fetched::TooLarge(_) | Fetched::NotAnObject(_)) => {
                return Err(Rejected("its HMAC tag is not a tag".into()));
            }
            Err(e) => {
                self.store_error("could not read an HMAC tag; treating as a miss", &e);
                return Ok(Tag::Unavailable);
            }
        };
        let mut mac = hmac_for(secret, key, compressed);
        mac.update(stored);
        mac.verify_slice(&tag)
            .map(|()| Tag::Verified)
            .map_err(|_| Rejected("its HMAC tag does not verify".into()))
    }

    /// A backend failure: counted and logged, and the lookup goes on as a
    /// miss (nothing is deleted).
    fn store_error(&self, what: &'static str, error: &wasmtime::Error) {
        bump(&self.counters.store_errors);
        tracing::warn!(error = %format!("{error:#}"), "{what}");
    }

    pub(crate) fn reject(&self, backend: &dyn Backend, key: &Key, reason: &str) {
        bump(&self.counters.rejected);
        tracing::warn!(store = %backend.describe(), engine = %key.engine, wasm = %key.wasm, reason, "rejected a stored artifact; evicting it");
        for path in [
            key.artifact_path(),
            format!("{}{ZSTD_SUFFIX}", key.artifact_path()),
            key.tag_path(),
        ] {
            if let Err(e) = backend.delete(&path) {
                bump(&self.counters.store_errors);
                tracing::warn!(error = %format!("{e:#}"), "could not evict a rejected artifact");
            }
        }
    }
}

/// An artifact on its way to wasmtime: checked (an open file or bytes) or
/// already deserialized. Outside this module, one comes only from the
/// checks above or from [`Loaded::compiled`].
pub(crate) struct Loaded(State);

enum State {
    /// A checked file, and its length.
    Open(std::fs::File, u64),
    /// Checked bytes, or bytes the engine compiled.
    Bytes(Vec<u8>),
    Module(Module),
    Component(Component),
}

impl Loaded {
    /// An artifact the engine of this lookup just compiled (or that a single
    /// flight's leader compiled or checked for it).
    pub(crate) fn compiled(artifact: Vec<u8>) -> Loaded {
        Loaded(State::Bytes(artifact))
    }

    /// Deserializes into `kind`, so failures surface inside `lookup`.
    fn probe(self, engine: &Engine, kind: Kind, limit: u64) -> Result<Loaded> {
        // SAFETY: every `State::Open`/`State::Bytes` is either an artifact
        // `engine` just compiled, or one that passed the checks of this
        // module: its engine section hashes to
        // `engine.serialization_compatibility_hash()` and, with a key
        // configured, its HMAC tag verified (or it is a private entry whose
        // tag verified when it entered the local tier); it is read from the
        // same open file that was checked.
        Ok(match (self.0, kind) {
            (State::Open(f, _), Kind::Module) => Loaded(State::Module(unsafe {
                Module::deserialize_open_file(engine, f)?
            })),
            (State::Open(f, len), Kind::Component) => {
                Loaded::deserialize(engine, kind, &read_all(&f, len, limit)?)?
            }
            (State::Bytes(b), kind) => Loaded::deserialize(engine, kind, &b)?,
            (done, _) => Loaded(done),
        })
    }

    /// Deserializes checked bytes (see `probe`'s safety note) into `kind`.
    fn deserialize(engine: &Engine, kind: Kind, bytes: &[u8]) -> Result<Loaded> {
        // SAFETY: as in `probe`: `bytes` were compiled by `engine`, or
        // passed this module's checks.
        Ok(Loaded(match kind {
            Kind::Module => State::Module(unsafe { Module::deserialize(engine, bytes)? }),
            Kind::Component => State::Component(unsafe { Component::deserialize(engine, bytes)? }),
        }))
    }

    /// The artifact's bytes, for waiters of a single flight (a memory-mapped
    /// hit is read once more for them).
    pub(crate) fn bytes(&self) -> Option<Vec<u8>> {
        match &self.0 {
            State::Bytes(b) => Some(b.clone()),
            State::Module(m) => m.serialize().ok(),
            State::Component(c) => c.serialize().ok(),
            State::Open(..) => None,
        }
    }

    /// The checked bytes themselves (a `get`), if this holds bytes.
    pub(crate) fn into_bytes(self) -> Option<Vec<u8>> {
        match self.0 {
            State::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A second handle on the same checked artifact, for reading its kind
    /// after wasmtime refused it.
    fn try_clone(&self) -> Option<Loaded> {
        Some(Loaded(match &self.0 {
            State::Open(f, len) => State::Open(f.try_clone().ok()?, *len),
            State::Bytes(b) => State::Bytes(b.clone()),
            _ => return None,
        }))
    }

    /// What the artifact says it is, read only when wasmtime refused it
    /// (reading it from a file parses the symbol table).
    fn precompiled(&self) -> Option<wasmtime::Precompiled> {
        match &self.0 {
            State::Open(file, _) => Engine::detect_precompiled_file(fd_path(file))
                .ok()
                .flatten(),
            State::Bytes(bytes) => Engine::detect_precompiled(bytes),
            _ => None,
        }
    }

    pub(crate) fn into_module(self, engine: &Engine) -> Result<Module> {
        match self.probe(engine, Kind::Module, u64::MAX)?.0 {
            State::Module(m) => Ok(m),
            _ => Err(format_err!(
                "the stored artifact is a component, not a module"
            )),
        }
    }

    pub(crate) fn into_component(self, engine: &Engine) -> Result<Component> {
        match self.probe(engine, Kind::Component, u64::MAX)?.0 {
            State::Component(c) => Ok(c),
            _ => Err(format_err!(
                "the stored artifact is a module, not a component"
            )),
        }
    }
}

fn check_kind(key: &Key, kind: Kind, found: Option<wasmtime::Precompiled>) -> Result<()> {
    use wasmtime::Precompiled;
    match (kind, found) {
        (Kind::Module, Some(Precompiled::Component)) => bail!(
            "the artifact stored under wasm digest {} is a component; use \
             `get_or_compile_component`",
            key.wasm
        ),
        (Kind::Component, Some(Precompiled::Module)) => bail!(
            "the artifact stored under wasm digest {} is a module; use \
             `get_or_compile_module`",
            key.wasm
        ),
        _ => Ok(()),
    }
}

fn check_stamp(key: &Key, found: Option<[u8; 32]>) -> Result<(), Rejected> {
    match found {
        Some(found) if found == key.engine.0 => Ok(()),
        Some(found) => Err(Rejected(format!(
            "its engine stamp is {}, not the key's {}",
            Digest(found),
            key.engine
        ))),
        None => Err(Rejected("it is not a wasmtime artifact".into())),
    }
}

/// The MAC of the object stored for `key`, raw or zstd-compressed: bound to
/// the key and to the form, so neither can be swapped for another's.
pub(crate) fn hmac_for(secret: &[u8], key: &Key, compressed: bool) -> Hmac<sha2::Sha256> {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(HMAC_DOMAIN);
    mac.update(&key.engine.0);
    mac.update(&key.wasm.0);
    mac.update(&[u8::from(compressed)]);
    mac
}

/// `stored` decompressed, or `None` if it would be more than `limit` bytes
/// (never holding more than `limit + 1` of them).
fn decompress(stored: &[u8], limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(stored)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    Ok((out.len() as u64 <= limit).then_some(out))
}

/// A path that opens the very file `file` is (not whatever is at its name
/// now), for wasmtime's readers that take paths.
fn fd_path(file: &std::fs::File) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    std::path::Path::new(dir).join(file.as_raw_fd().to_string())
}

/// The engine hash a top-level name stands for, if it is a prefix (layout
/// 1: exactly 64 lowercase hex digits).
pub(crate) fn prefix_engine(name: &str) -> Option<Digest> {
    name.parse::<Digest>()
        .ok()
        .filter(|engine| engine.to_string() == name)
}

pub(crate) fn is_artifact(path: &str) -> bool {
    key_of(path).is_some()
}

pub(crate) fn key_of(path: &str) -> Option<Key> {
    Key::from_artifact_path(path.strip_suffix(ZSTD_SUFFIX).unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each layout name, with its number in the module documentation.
    const NAMES: [(u8, &str); 8] = [
        (2, DESCRIPTOR),
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
        let doc: Vec<&str> = include_str!("entry.rs")
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
        assert!(!is_artifact(&format!("{}/{TMP_PREFIX}0123", key.engine)));
    }
}
