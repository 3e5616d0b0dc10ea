//! How an entry is read, checked and loaded: the layer between the tiers
//! (`backend/`) and the store (`store/`).
//!
//! Every `unsafe` load of the store is in this module: the calls that hand
//! bytes to wasmtime's deserialization (`CheckedArtifact::probe`,
//! `CheckedArtifact::deserialize`). (The crate's only other `unsafe` sets a
//! Cranelift setting in `profile.rs`, and maps memory in `sealed.rs`.)
//! wasmtime trusts what it deserializes, so the store must only ever hand it
//! an artifact that this engine compiled, or one that passed every check
//! below. The checks are in this module too, and the only way to obtain a
//! [`CheckedArtifact`] that is not yet deserialized is through them (or
//! [`CheckedArtifact::compiled`], for bytes the engine just produced): a
//! reviewer reads this one file to see why each load is sound.
//!
//! # The rule of a keyed store
//!
//! **With a key, every byte wasmtime executes was authenticated by the key,
//! in this process, after it could no longer change.** There is no
//! exception for owners, modes, ACLs or mount types: who owns a file now
//! says nothing about who wrote its bytes (`cp -r` of a shared store, a
//! FUSE-mounted bucket, a CI cache restored from a tar, an entry an unkeyed
//! run wrote before the key was set). So a keyed lookup copies the entry
//! into sealed memory (`sealed.rs`: a memfd that nothing can write once
//! sealed), verifies the tag over that memory, and wasmtime maps that same
//! memory: the bytes checked are the bytes run, and a writer rewriting the
//! file in place meanwhile changes nothing. A remote object is streamed into
//! sealed memory the same way. Without a key, a local hit memory-maps the
//! file itself (the directory must then be writable by trusted users only).
//!
//! # Checks, in order, before a load
//!
//! 1. The object is a regular file (no symlink followed, no FIFO, opened
//!    without blocking) or a remote object, of at most `max_artifact_size`
//!    bytes. A larger one is a miss; a non-file is rejected.
//! 2. With a key, trusted keys or a producer policy, the object is copied
//!    (a local file) or streamed (a remote object) into sealed memory, and
//!    its tag (5) verifies over that memory, before anything else reads it
//!    (decompression, the stamp).
//!    Remote objects go to sealed memory with or without a key.
//!    With trusted keys, the statement (10) must be signed by one of them,
//!    for this key, and for these bytes (its digest, over the sealed
//!    memory, after decompression); with refused producers, the producer it
//!    names must not be refused. A statement that fails is a *refusal*: a
//!    miss that deletes nothing, since other hosts may trust other keys or
//!    producers.
//! 3. A compressed object (4) inflates, into sealed memory, to at most
//!    `max_artifact_size`.
//! 4. The artifact's own engine section hashes to the key's engine hash
//!    (`Engine::detect_serialization_compatibility_hash`): the artifact was
//!    compiled by an engine with exactly this engine's settings. Unkeyed, a
//!    local file's section is read through the descriptor that was checked
//!    (a read-only mapping), never by opening a path again.
//! 5. The bytes that were checked are the bytes loaded: the sealed memory
//!    itself (wasmtime maps the memfd; without memfds, it copies the
//!    private buffer), or, unkeyed, the same open file.
//! 6. wasmtime's own checks (`check_compatible`, the host's CPU features).
//!
//! A failed check 1 (a non-file), 2, 3 (not zstd), 4 or 6 proves the entry
//! bad: it is rejected (deleted, counted, logged) and compiled again. A
//! rejection deletes only what was checked ([`Checked`]): the local file
//! while its name still names it, the remote object of the form read. Some
//! refusals at 6 are not the entry's fault and delete nothing: this host
//! lacking a CPU feature, or failing a system call wasmtime makes (no
//! memory, memory it may not make executable on a `noexec` mount or under
//! SELinux: `refused_by_host`), are misses that leave the fleet's entry in
//! place; an artifact of the other kind than the caller asked for (a module
//! under a component's key) is the caller's error. Neither does an error reading the
//! object or its tag (I/O, network), or a lack of memory for the sealed
//! copy: a miss, counted as a store error.

use crate::attest::{self, TrustedKey};
use crate::backend::{Backend, Fetched, LocalDir, Streamed};
use crate::config::StoreConfig;
use crate::digest::{Digest, Key};
use crate::fsops::{FileId, Opened};
use crate::layout::ZSTD_SUFFIX;
use crate::sealed::{Sealed, with_mapping};
use crate::stats::{Counters, bump};
use crate::tag::{self, Verdict};
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::component::Component;
use wasmtime::error::Context;
use wasmtime::{Engine, Module, Result, bail, format_err};

/// What the caller asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Module,
    Component,
}

/// Why an entry was refused, and what exactly was checked: a rejection
/// deletes that, and nothing else (not a file a writer renamed into place
/// since, not the other form of the entry).
pub(crate) struct Rejected {
    pub(crate) reason: String,
    pub(crate) checked: Checked,
    /// Refused by this store's policy (signatures, producers) rather than
    /// proven bad: counted and logged, not deleted.
    pub(crate) kept: bool,
}

/// What a check read.
#[derive(Clone, Debug)]
pub(crate) enum Checked {
    /// The local tier's file at the artifact path, by identity; `None`: a
    /// name there that is not a regular file (a link, a FIFO).
    Local(Option<FileId>),
    /// The remote object at this path (raw or compressed).
    Remote(String),
}

/// What a local entry is read for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFor {
    /// A lookup: unkeyed, the checked open file itself, so that it can be
    /// memory-mapped; keyed, the verified sealed copy.
    Load,
    /// `get` and `verify`: the checked bytes, in sealed memory.
    Bytes,
}

/// The result of checking an entry's statement.
enum Statement {
    /// No policy asks for one: not read.
    NotChecked,
    /// It vouches for the entry; its bytes, to copy with the entry.
    Vouched(Vec<u8>),
    /// It could not be read (an I/O or network error): a miss that leaves
    /// the entry in place.
    Unavailable,
}

/// The result of looking for an entry's tag.
enum Tag {
    Verified,
    /// The tag could not be read (an I/O or network error): not proof of
    /// anything, so a miss that leaves the entry in place.
    Unavailable,
}

/// What the checks need of the store: its configuration, its counters, the
/// keys it trusts and its local tier (where a rejection deletes).
pub(crate) struct Checker<'a> {
    pub(crate) config: &'a StoreConfig,
    pub(crate) counters: &'a Counters,
    pub(crate) trust: &'a [TrustedKey],
    pub(crate) local: Option<&'a LocalDir>,
}

impl Checker<'_> {
    /// wasmtime refused an artifact whose stamp (and tag) matched. If the
    /// refusal is the host's (a CPU feature it lacks, no memory, memory it
    /// may not make executable: a `noexec` mount, SELinux), the entry is
    /// fine for the rest of the fleet, and for this host later: a miss,
    /// nothing deleted. Only a refusal of the artifact itself (wasmtime
    /// found it damaged or incompatible) evicts it.
    pub(crate) fn refused_by_wasmtime(
        &self,
        backend: &dyn Backend,
        key: &Key,
        error: &wasmtime::Error,
        checked: Checked,
    ) {
        let reason = format!("wasmtime refused it: {error:#}");
        if refused_by_host(error) {
            bump(&self.counters.store_errors);
            tracing::warn!(store = %backend.describe(), engine = %key.engine, wasm = %key.wasm, reason, "this host cannot load the stored artifact now; compiling instead, leaving it in place");
        } else {
            self.reject(
                backend,
                key,
                &Rejected {
                    reason,
                    checked,
                    kept: false,
                },
            );
        }
    }

    /// Reads and checks `key`'s artifact in the local tier. Unkeyed, for a
    /// [`ReadFor::Load`], checks the open file in place (reading only its
    /// section table and engine section, through the descriptor) so that
    /// the same open file can be memory-mapped. Otherwise copies the file
    /// into sealed memory, verifies the tag (with a key) over that memory,
    /// then checks the stamp: the memory checked is the memory loaded, and
    /// a rename or an in-place write meanwhile changes nothing.
    pub(crate) fn read_checked(
        &self,
        local: &LocalDir,
        key: &Key,
        path: &str,
        purpose: ReadFor,
    ) -> Result<Option<(CheckedArtifact, SystemTime, FileId)>, Rejected> {
        let limit = self.config.max_artifact_size;
        let (file, len, used, id) = match local.open_entry(path, limit) {
            Ok(Opened::Missing) => return Ok(None),
            Ok(Opened::File(file, len, used, id)) => (file, len, used, id),
            Ok(Opened::NotAFile(what)) => {
                return Err(Rejected {
                    reason: what,
                    checked: Checked::Local(None),
                    kept: false,
                });
            }
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
        let rejected = |reason| Rejected {
            reason,
            checked: Checked::Local(Some(id)),
            kept: false,
        };
        if purpose == ReadFor::Load
            && self.config.hmac_key.is_none()
            && !self.config.checks_statements()
        {
            return match with_mapping(&file, len, Engine::detect_serialization_compatibility_hash) {
                Err(e) => {
                    self.store_error("store read failed; treating as a miss", &e.into());
                    Ok(None)
                }
                Ok(found) => {
                    check_stamp(key, found).map_err(rejected)?;
                    Ok(Some((CheckedArtifact(State::Open(file, len)), used, id)))
                }
            };
        }
        // CheckedArtifact bytes go where wasmtime can map them in place (a sealed
        // memfd); bytes only read (`get`, `verify`) stay in a private buffer,
        // which they are moved out of.
        let copy = match purpose {
            ReadFor::Load => Sealed::copy_of,
            ReadFor::Bytes => Sealed::private_copy_of,
        };
        let sealed = match copy(&file, len) {
            Ok(sealed) => sealed,
            Err(e) => {
                let e = wasmtime::Error::from(e).context("could not copy the entry to memory");
                self.store_error("store read failed; treating as a miss", &e);
                return Ok(None);
            }
        };
        // Nothing unauthenticated is parsed: the tag first, then the stamp.
        if let Tag::Unavailable = self
            .check_tag(local, key, false, sealed.bytes())
            .map_err(rejected)?
        {
            return Ok(None);
        }
        match self.check_statement(local, key, sealed.bytes()) {
            Ok(Statement::NotChecked | Statement::Vouched(_)) => {}
            Ok(Statement::Unavailable) => return Ok(None),
            Err(reason) => {
                return Err(Rejected {
                    reason,
                    checked: Checked::Local(Some(id)),
                    kept: true,
                });
            }
        }
        check_stamp(
            key,
            Engine::detect_serialization_compatibility_hash(sealed.bytes()),
        )
        .map_err(rejected)?;
        Ok(Some((
            CheckedArtifact(State::Sealed(Arc::new(sealed))),
            used,
            id,
        )))
    }

    /// An entry left in place and treated as a miss.
    pub(crate) fn skip(&self, key: &Key, reason: &str) {
        bump(&self.counters.store_errors);
        tracing::warn!(engine = %key.engine, wasm = %key.wasm, reason, "not reading a stored artifact; treating it as a miss");
    }

    /// Streams `key`'s remote object into sealed memory and checks it there
    /// (tag, decompression into sealed memory, stamp). Returns the checked
    /// artifact and the path of the object it came from.
    pub(crate) fn read_remote(
        &self,
        remote: &dyn Backend,
        key: &Key,
    ) -> Result<Option<RemoteHit>, Rejected> {
        let limit = self.config.max_artifact_size;
        let raw_path = key.artifact_path();
        let zst_path = key.compressed_path();
        let mut paths = [raw_path, zst_path];
        if self.config.compress_remote {
            paths.reverse();
        }
        let sealing = |e: std::io::Error| {
            let e = wasmtime::Error::from(e).context("could not hold a fetched object in memory");
            self.store_error("remote read failed; treating as a miss", &e);
        };
        for path in &paths {
            let compressed = path.ends_with(ZSTD_SUFFIX);
            let rejected = |reason| Rejected {
                reason,
                checked: Checked::Remote(path.clone()),
                kept: false,
            };
            let mut writer = match Sealed::writer(0) {
                Ok(writer) => writer,
                Err(e) => {
                    sealing(e);
                    return Ok(None);
                }
            };
            match remote.read_to(path, limit, &mut writer) {
                Ok(Streamed::Written(_)) => {}
                Ok(Streamed::Missing) => continue,
                Ok(Streamed::TooLarge(len)) => {
                    self.skip(
                        key,
                        &format!("{path} has {len} bytes, more than max_artifact_size"),
                    );
                    return Ok(None);
                }
                Ok(Streamed::NotAnObject(what)) => return Err(rejected(what)),
                Err(e) => {
                    self.store_error("remote read failed; treating as a miss", &e);
                    return Ok(None);
                }
            }
            let stored = match writer.seal() {
                Ok(stored) => stored,
                Err(e) => {
                    sealing(e);
                    return Ok(None);
                }
            };
            // The tag covers the stored bytes: nothing unauthenticated is
            // decompressed.
            if let Tag::Unavailable = self
                .check_tag(remote, key, compressed, stored.bytes())
                .map_err(rejected)?
            {
                return Ok(None);
            }
            let artifact = if compressed {
                match decompress(stored.bytes(), limit) {
                    Ok(Some(artifact)) => artifact,
                    Ok(None) => {
                        self.skip(
                            key,
                            &format!("{path} decompresses to more than max_artifact_size"),
                        );
                        return Ok(None);
                    }
                    Err(Inflate::Invalid(e)) => {
                        return Err(rejected(format!("not valid zstd: {e}")));
                    }
                    Err(Inflate::Holding(e)) => {
                        sealing(e);
                        return Ok(None);
                    }
                }
            } else {
                stored
            };
            let statement = match self.check_statement(remote, key, artifact.bytes()) {
                Ok(Statement::NotChecked) => None,
                Ok(Statement::Vouched(envelope)) => Some(envelope),
                Ok(Statement::Unavailable) => return Ok(None),
                Err(reason) => {
                    return Err(Rejected {
                        reason,
                        checked: Checked::Remote(path.clone()),
                        kept: true,
                    });
                }
            };
            check_stamp(
                key,
                Engine::detect_serialization_compatibility_hash(artifact.bytes()),
            )
            .map_err(rejected)?;
            return Ok(Some(RemoteHit {
                artifact: Arc::new(artifact),
                path: path.clone(),
                statement,
            }));
        }
        Ok(None)
    }

    /// With a key, verifies `key`'s tag over `stored` (the bytes as stored,
    /// `compressed` or not). A missing, malformed or wrong tag is a
    /// rejection (its reason); a tag that cannot be read now is
    /// [`Tag::Unavailable`].
    fn check_tag(
        &self,
        backend: &dyn Backend,
        key: &Key,
        compressed: bool,
        stored: &[u8],
    ) -> Result<Tag, String> {
        let Some(secret) = &self.config.hmac_key else {
            return Ok(Tag::Verified);
        };
        let mut found = backend.read_limited(&key.tag_path_for(compressed), tag::MAX_LEN);
        if compressed && matches!(found, Ok(Fetched::Missing)) {
            // Stores before separate tags kept a compressed object's tag at
            // the raw one's path; its MAC says which form it covers.
            found = backend.read_limited(&key.tag_path(), tag::MAX_LEN);
        }
        let Some(found) =
            self.companion(found, "tag", "could not read a tag; treating as a miss")?
        else {
            return Ok(Tag::Unavailable);
        };
        match tag::verify(secret, key, compressed, stored, &found) {
            Verdict::Valid => Ok(Tag::Verified),
            Verdict::Invalid => Err("its tag does not verify".into()),
            Verdict::Malformed => Err("its tag is not a tag".into()),
        }
    }

    /// What reading a small object beside an artifact (its tag, its
    /// statement) found: its bytes; `None` if it cannot be read now (an I/O
    /// or network error: counted, logged with `unreadable`, a miss); and the
    /// reason to refuse the entry if it is missing or not a `noun`.
    fn companion(
        &self,
        found: Result<Fetched>,
        noun: &str,
        unreadable: &'static str,
    ) -> Result<Option<Vec<u8>>, String> {
        match found {
            Ok(Fetched::Bytes(bytes)) => Ok(Some(bytes)),
            Ok(Fetched::Missing) => Err(format!("it has no {noun}")),
            Ok(Fetched::TooLarge(_) | Fetched::NotAnObject(_)) => {
                Err(format!("its {noun} is not a {noun}"))
            }
            Err(e) => {
                self.store_error(unreadable, &e);
                Ok(None)
            }
        }
    }

    /// With trusted keys or refused producers, reads `key`'s statement from
    /// `backend` and checks it against `artifact` (the checked, sealed
    /// bytes); the error is the reason to refuse the entry.
    fn check_statement(
        &self,
        backend: &dyn Backend,
        key: &Key,
        artifact: &[u8],
    ) -> Result<Statement, String> {
        if !self.config.checks_statements() {
            return Ok(Statement::NotChecked);
        }
        let found = backend.read_limited(&key.statement_path(), attest::MAX_STATEMENT_LEN);
        let Some(envelope) = self.companion(
            found,
            "statement",
            "could not read a statement; treating as a miss",
        )?
        else {
            return Ok(Statement::Unavailable);
        };
        let vouched = attest::check(&envelope, self.trust, key, artifact)?;
        let refused = &self.config.refused_producers;
        if !refused.is_empty() {
            let Some(version) = vouched.producer.version() else {
                return Err(format!(
                    "its producer's version {:?} is not a version",
                    vouched.producer.wasmtime
                ));
            };
            if let Some(refused) = refused.iter().find(|r| r.matches(&version)) {
                return Err(format!(
                    "it was produced by {}, which matches the refused {refused}",
                    vouched.producer
                ));
            }
        }
        Ok(Statement::Vouched(envelope))
    }

    /// A backend failure: counted and logged, and the lookup goes on as a
    /// miss (nothing is deleted).
    pub(crate) fn store_error(&self, what: &'static str, error: &wasmtime::Error) {
        bump(&self.counters.store_errors);
        tracing::warn!(error = %format!("{error:#}"), "{what}");
    }

    /// Evicts what `rejected` checked, and nothing else: the local file
    /// only if the name still names it (a writer may have renamed a good
    /// entry into place since), the remote object of the form that was
    /// read (not the other form's), and the tag with it. Counted and
    /// logged.
    pub(crate) fn reject(&self, backend: &dyn Backend, key: &Key, rejected: &Rejected) {
        let reason = &rejected.reason;
        if rejected.kept {
            bump(&self.counters.refused);
            tracing::warn!(store = %backend.describe(), engine = %key.engine, wasm = %key.wasm, reason, "refused a stored artifact; leaving it in place");
            return;
        }
        bump(&self.counters.rejected);
        tracing::warn!(store = %backend.describe(), engine = %key.engine, wasm = %key.wasm, reason, "rejected a stored artifact; evicting it");
        let (deleted, compressed) = match (&rejected.checked, &self.local) {
            (Checked::Local(id), Some(local)) => {
                (local.delete_checked(&key.artifact_path(), *id), false)
            }
            (Checked::Remote(path), _) => (
                backend.delete(path).map(|()| true),
                path.ends_with(ZSTD_SUFFIX),
            ),
            (Checked::Local(_), None) => (Ok(false), false),
        };
        // The tag of the form that was checked; the other form's stays.
        let deleted = deleted.and_then(|deleted| {
            if deleted {
                backend.delete(&key.tag_path_for(compressed))?;
            }
            Ok(())
        });
        if let Err(e) = deleted {
            bump(&self.counters.store_errors);
            tracing::warn!(error = %format!("{e:#}"), "could not evict a rejected artifact");
        }
    }
}

/// A remote object that passed every check.
pub(crate) struct RemoteHit {
    /// The artifact, in sealed memory.
    pub(crate) artifact: Arc<Sealed>,
    /// The object it came from (raw or compressed).
    pub(crate) path: String,
    /// Its statement, if it was read (it is copied with the hit).
    pub(crate) statement: Option<Vec<u8>>,
}

impl RemoteHit {
    /// The checked artifact, to load.
    pub(crate) fn checked(&self) -> CheckedArtifact {
        CheckedArtifact(State::Sealed(self.artifact.clone()))
    }
}

/// An artifact on its way to wasmtime: checked (an open file or sealed
/// memory), compiled, or already deserialized. Outside this module, one
/// comes only from the checks above or from [`CheckedArtifact::compiled`].
pub(crate) struct CheckedArtifact(State);

enum State {
    /// Unkeyed: a checked file, and its length, mapped in place.
    Open(std::fs::File, u64),
    /// Checked bytes in sealed memory (`sealed.rs`), shared with a copy
    /// into the local tier.
    Sealed(Arc<Sealed>),
    /// Bytes the engine compiled (only a compiling store has any).
    #[cfg_attr(not(feature = "compile"), allow(dead_code))]
    Bytes(Vec<u8>),
    Module(Module),
    Component(Component),
}

impl CheckedArtifact {
    /// An artifact the engine of this lookup just compiled (or that a single
    /// flight's leader compiled or checked for it).
    #[cfg(feature = "compile")]
    pub(crate) fn compiled(artifact: Vec<u8>) -> CheckedArtifact {
        CheckedArtifact(State::Bytes(artifact))
    }

    /// Deserializes into `kind`, so failures surface inside `lookup`.
    pub(crate) fn probe(self, engine: &Engine, kind: Kind) -> Result<CheckedArtifact> {
        // SAFETY: every `State::Open`, `State::Sealed` and `State::Bytes` is
        // either an artifact `engine` just compiled, or one that passed the
        // checks of this module: its engine section hashes to
        // `engine.serialization_compatibility_hash()` and, with a key
        // configured, its tag verified over the sealed memory loaded here,
        // which can no longer change; unkeyed, it is the same open file that
        // was checked.
        Ok(match (self.0, kind) {
            (State::Open(f, _), Kind::Module) => CheckedArtifact(State::Module(unsafe {
                Module::deserialize_open_file(engine, f)?
            })),
            (State::Open(f, len), Kind::Component) => CheckedArtifact(State::Component(unsafe {
                Component::deserialize(engine, Sealed::private_copy_of(&f, len)?.bytes())?
            })),
            (State::Sealed(sealed), kind) => {
                let memfd = sealed.file();
                match (memfd, kind, memfd.and_then(fd_path)) {
                    (Some(memfd), Kind::Module, _) => {
                        let memfd = memfd.try_clone().context("could not share a sealed copy")?;
                        CheckedArtifact(State::Module(unsafe {
                            Module::deserialize_open_file(engine, memfd)?
                        }))
                    }
                    // `Component` has no `deserialize_open_file`; the path
                    // names the sealed memfd itself, not a directory entry.
                    (Some(_), Kind::Component, Some(path)) => {
                        CheckedArtifact(State::Component(unsafe {
                            Component::deserialize_file(engine, path)?
                        }))
                    }
                    _ => CheckedArtifact::deserialize(engine, kind, sealed.bytes())?,
                }
            }
            (State::Bytes(b), kind) => CheckedArtifact::deserialize(engine, kind, &b)?,
            (done, _) => CheckedArtifact(done),
        })
    }

    /// Deserializes checked bytes (see `probe`'s safety note) into `kind`.
    fn deserialize(engine: &Engine, kind: Kind, bytes: &[u8]) -> Result<CheckedArtifact> {
        // SAFETY: as in `probe`: `bytes` were compiled by `engine`, or
        // passed this module's checks and cannot change.
        Ok(CheckedArtifact(match kind {
            Kind::Module => State::Module(unsafe { Module::deserialize(engine, bytes)? }),
            Kind::Component => State::Component(unsafe { Component::deserialize(engine, bytes)? }),
        }))
    }

    /// The artifact's bytes, for waiters of a single flight (a memory-mapped
    /// hit is read once more for them).
    #[cfg(feature = "compile")]
    pub(crate) fn bytes(&self) -> Option<Vec<u8>> {
        match &self.0 {
            State::Bytes(b) => Some(b.clone()),
            State::Sealed(s) => Some(s.bytes().to_vec()),
            State::Module(m) => m.serialize().ok(),
            State::Component(c) => c.serialize().ok(),
            State::Open(..) => None,
        }
    }

    /// The checked bytes themselves (a `get`), if this holds bytes.
    pub(crate) fn into_bytes(self) -> Option<Vec<u8>> {
        match self.0 {
            State::Bytes(b) => Some(b),
            State::Sealed(s) => {
                Some(Arc::try_unwrap(s).map_or_else(|s| s.bytes().to_vec(), Sealed::into_vec))
            }
            _ => None,
        }
    }

    /// A second handle on the same checked artifact, for reading its kind
    /// after wasmtime refused it.
    pub(crate) fn try_clone(&self) -> Option<CheckedArtifact> {
        Some(CheckedArtifact(match &self.0 {
            State::Open(f, len) => State::Open(f.try_clone().ok()?, *len),
            State::Sealed(s) => State::Sealed(s.clone()),
            State::Bytes(b) => State::Bytes(b.clone()),
            _ => return None,
        }))
    }

    /// What the artifact says it is, read only when wasmtime refused it.
    pub(crate) fn precompiled(&self) -> Option<wasmtime::Precompiled> {
        match &self.0 {
            State::Open(file, len) => with_mapping(file, *len, Engine::detect_precompiled)
                .ok()
                .flatten(),
            State::Sealed(s) => Engine::detect_precompiled(s.bytes()),
            State::Bytes(bytes) => Engine::detect_precompiled(bytes),
            _ => None,
        }
    }

    pub(crate) fn into_module(self, engine: &Engine) -> Result<Module> {
        match self.probe(engine, Kind::Module)?.0 {
            State::Module(m) => Ok(m),
            _ => Err(format_err!(
                "the stored artifact is a component, not a module"
            )),
        }
    }

    pub(crate) fn into_component(self, engine: &Engine) -> Result<Component> {
        match self.probe(engine, Kind::Component)?.0 {
            State::Component(c) => Ok(c),
            _ => Err(format_err!(
                "the stored artifact is a module, not a component"
            )),
        }
    }
}

/// Whether wasmtime's refusal of an artifact whose stamp matched is the
/// host's doing, not the artifact's: this CPU lacks a feature the artifact
/// was compiled for, or a system call failed (every `io::Error`, `Errno` or
/// out-of-memory error in the chain: mapping, making memory executable,
/// reading, opening). wasmtime reports what it finds wrong with an artifact
/// in messages of its own, without an OS error.
fn refused_by_host(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("native host")
        || error.chain().any(|cause| {
            cause.is::<std::io::Error>()
                || cause.is::<rustix::io::Errno>()
                || cause.is::<wasmtime::OutOfMemory>()
        })
}

pub(crate) fn check_kind(
    key: &Key,
    kind: Kind,
    found: Option<wasmtime::Precompiled>,
) -> Result<()> {
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

fn check_stamp(key: &Key, found: Option<[u8; 32]>) -> Result<(), String> {
    match found {
        Some(found) if found == key.engine.0 => Ok(()),
        Some(found) => Err(format!(
            "its engine stamp is {}, not the key's {}",
            Digest(found),
            key.engine
        )),
        None => Err("it is not a wasmtime artifact".into()),
    }
}

/// Why inflating a compressed object failed.
enum Inflate {
    /// The object is not valid zstd: the entry is bad.
    Invalid(std::io::Error),
    /// The output could not be held (no memory): says nothing of the entry.
    Holding(std::io::Error),
}

/// The largest zstd window the store inflates (and writes, `store.rs`):
/// 32 MiB, so that inflating never holds more than that, whatever an object
/// asks for.
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// `stored` decompressed into sealed memory, or `None` if it would be more
/// than `limit` bytes. Nothing is held until the size is known to be within
/// the limit: memory stays at the decoder's window (at most
/// 2^[`ZSTD_WINDOW_LOG_MAX`]) whatever the limit, and a bomb costs time
/// (bounded by the limit), never memory.
fn decompress(stored: &[u8], limit: u64) -> Result<Option<Sealed>, Inflate> {
    let Some(size) = inflated_size(stored, limit)? else {
        return Ok(None);
    };
    let mut out = Sealed::writer(size).map_err(Inflate::Holding)?;
    let written = inflate(stored, size, &mut out)?;
    if written != size {
        return Err(Inflate::Invalid(std::io::Error::other(format!(
            "it inflates to {written} bytes, not the {size} found first"
        ))));
    }
    out.seal().map(Some).map_err(Inflate::Holding)
}

/// How many bytes `stored` inflates to, or `None` if more than `limit`.
/// One frame that declares its size (what this store writes) says so in
/// its header, and the decoder holds it to that; anything else is counted
/// by inflating into nothing, stopping past the limit.
fn inflated_size(stored: &[u8], limit: u64) -> Result<Option<u64>, Inflate> {
    use zstd::zstd_safe;
    let one_frame = zstd_safe::find_frame_compressed_size(stored).is_ok_and(|n| n == stored.len());
    if one_frame && let Ok(Some(size)) = zstd_safe::get_frame_content_size(stored) {
        return Ok((size <= limit).then_some(size));
    }
    let counted = inflate(stored, limit, &mut std::io::sink())?;
    Ok((counted <= limit).then_some(counted))
}

/// Inflates `stored` into `out`, stopping once more than `cap` bytes came
/// out; returns how many were written (at most `cap + 1`).
fn inflate(stored: &[u8], cap: u64, out: &mut dyn std::io::Write) -> Result<u64, Inflate> {
    use std::io::Read;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(stored).map_err(Inflate::Invalid)?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(Inflate::Invalid)?;
    let mut decoder = decoder.take(cap.saturating_add(1));
    let mut buf = vec![0; 256 << 10];
    let mut written = 0u64;
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A window over the cap (an object written at zstd's ultra
            // levels elsewhere) is valid zstd this host will not hold: a
            // miss, not a damaged entry.
            Err(e) if e.to_string().contains("too much memory") => {
                return Err(Inflate::Holding(e));
            }
            Err(e) => return Err(Inflate::Invalid(e)),
        };
        out.write_all(&buf[..n]).map_err(Inflate::Holding)?;
        written += n as u64;
    }
}

/// A path that opens the sealed memfd `file` itself, where `/proc` shows
/// one: Linux, whose `/proc/thread-self/fd` names this thread's descriptors
/// (right even if the thread unshared its descriptor table) and opens a new
/// description of the same file (no shared offset).
fn fd_path(file: &std::fs::File) -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    let path = std::path::Path::new("/proc/thread-self/fd").join(file.as_raw_fd().to_string());
    (cfg!(target_os = "linux") && path.exists()).then_some(path)
}
