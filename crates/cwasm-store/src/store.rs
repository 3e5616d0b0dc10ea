//! The store itself: keys, tiers, checks, eviction and counters.

use crate::backend::{Backend, Fetched, Listed, LocalDir, ObjectStoreBackend};
use crate::config::StoreConfig;
use crate::digest::{Digest, Key};
use crate::fsops::{Opened, read_all};
use crate::remembered::{FileStamp, Remembered};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::component::Component;
use wasmtime::error::Context;
use wasmtime::{Engine, Module, Result, bail, format_err};

const DESCRIPTOR: &str = "engine.json";
const GC_STAMP: &str = ".gc-stamp";
/// A hit records its time of use (the entry's modification time, which
/// eviction reads) only if the recorded one is older than this: a hot entry
/// costs no extra `open` and `futimens` per hit.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// A tag without its artifact is a write in progress (tags are written
/// first) until it is this old.
const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);
/// Version 2 tags cover the bytes as stored (compressed or not), so a
/// tag is checked before anything is decompressed.
const HMAC_DOMAIN: &[u8] = b"cwasm-entry-v2\0";

/// Counters of what the store did since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Lookups answered from the store.
    pub hits: u64,
    /// Lookups the store could not answer.
    pub misses: u64,
    /// Artifacts compiled by `get_or_compile_*`.
    pub compiles: u64,
    /// Entries deleted to stay within the size and count limits.
    pub evictions: u64,
    /// Entries refused (wrong engine stamp, bad or missing HMAC tag,
    /// unreadable, or refused by wasmtime) and deleted.
    pub rejected: u64,
    /// Backend operations that failed (and were worked around).
    pub store_errors: u64,
    /// Wasm files hashed by the `*_file` lookups (an unchanged file is
    /// hashed once, then its digest is remembered).
    pub files_hashed: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    compiles: AtomicU64,
    evictions: AtomicU64,
    rejected: AtomicU64,
    store_errors: AtomicU64,
    files_hashed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What an engine-hash prefix of the store is for, written once per prefix
/// as `<engine-hex>/engine.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineDescriptor {
    /// The engine hash, hex.
    pub engine: String,
    /// The module version string recorded in the artifacts (wasmtime's
    /// major version, `48`, unless the engine set a custom one).
    pub wasmtime_version: String,
    /// The compilation target.
    pub target: String,
    /// When the prefix was first written, in seconds since the Unix epoch.
    pub first_written: u64,
}

/// One stored artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its key.
    pub key: Key,
    /// Its size in bytes, as stored.
    pub size: u64,
    /// When it was last used (local) or written (object stores), seconds
    /// since the Unix epoch.
    pub last_used: u64,
}

/// One engine-hash prefix of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineSummary {
    /// The engine hash.
    pub engine: Digest,
    /// Number of artifacts.
    pub entries: u64,
    /// Bytes of all objects under the prefix.
    pub bytes: u64,
    /// The prefix's descriptor, if it has a readable one.
    pub descriptor: Option<EngineDescriptor>,
}

/// What a garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Artifacts before.
    pub entries_before: u64,
    /// Bytes before.
    pub bytes_before: u64,
    /// Artifacts deleted (or that would be, in a dry run).
    pub deleted: Vec<Key>,
    /// Bytes freed (or that would be).
    pub bytes_freed: u64,
    /// Tags without an artifact, older than an hour, deleted (or that would
    /// be).
    pub orphan_tags: u64,
    /// Empty engine prefixes removed (local tier).
    pub empty_prefixes: u64,
    /// Whether another process's `gc` held the lock, so this one did nothing
    /// (only when it was started by a `put`).
    pub skipped_busy: bool,
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Key", 2)?;
        st.serialize_field("engine", &self.engine)?;
        st.serialize_field("wasm", &self.wasm)?;
        st.end()
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Module,
    Component,
}

/// A store of precompiled artifacts; see the crate documentation.
///
/// Cheap to share between threads (`&ArtifactStore` is all the API needs),
/// and safe to share between processes: every write is atomic, and every
/// read is checked before it reaches wasmtime.
pub struct ArtifactStore {
    local: Option<LocalDir>,
    remote: Option<Box<dyn Backend>>,
    config: StoreConfig,
    counters: Arc<Counters>,
    inflight: Mutex<HashMap<Key, Arc<Flight>>>,
    /// Copies of remote hits being written into the local tier.
    copies: Mutex<Vec<std::thread::JoinHandle<()>>>,
    remembered: Remembered,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl ArtifactStore {
    /// A store in the local directory `dir`, with default limits.
    pub fn open(dir: impl AsRef<Path>) -> Result<ArtifactStore> {
        ArtifactStore::new(
            Some(LocalDir::new(dir.as_ref())?),
            None,
            StoreConfig::default(),
        )
    }

    /// A store at `location`: a directory path, or an object store URL
    /// (`s3://bucket/prefix`, ...). An object store gets no local tier; use
    /// [`ArtifactStore::new`] to put one in front.
    pub fn open_location(location: &str, config: StoreConfig) -> Result<ArtifactStore> {
        if location.contains("://") && !location.starts_with("file://") {
            let remote = ObjectStoreBackend::open(location)?;
            ArtifactStore::new(None, Some(Box::new(remote)), config)
        } else {
            let dir = location.strip_prefix("file://").unwrap_or(location);
            ArtifactStore::new(Some(LocalDir::new(dir)?), None, config)
        }
    }

    /// A store with an optional local directory tier in front of an optional
    /// remote backend: reads go local first, then remote (copying hits into
    /// the local tier), writes go to both. The `directory` of
    /// `config.cache` is not used (see [`StoreConfig::from_cache_file`]).
    pub fn new(
        local: Option<LocalDir>,
        remote: Option<Box<dyn Backend>>,
        config: StoreConfig,
    ) -> Result<ArtifactStore> {
        if local.is_none() && remote.is_none() {
            bail!("a store needs a local directory, a remote backend, or both");
        }
        config.validate()?;
        Ok(ArtifactStore {
            local,
            remote,
            config,
            counters: Arc::default(),
            inflight: Mutex::new(HashMap::new()),
            copies: Mutex::new(Vec::new()),
            remembered: Remembered::default(),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The counters since the store was opened.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            compiles: get(&c.compiles),
            evictions: get(&c.evictions),
            rejected: get(&c.rejected),
            store_errors: get(&c.store_errors),
            files_hashed: get(&c.files_hashed),
        }
    }

    /// Loads the module `wasm` compiled by `engine` from the store, or
    /// compiles it and stores the artifact. Store failures never fail this
    /// call: they are logged, counted, and the module is compiled.
    pub fn get_or_compile_module(&self, engine: &Engine, wasm: &[u8]) -> Result<Module> {
        self.get_or_compile_module_with_digest(engine, wasm, Digest::of(wasm))
    }

    /// Like [`ArtifactStore::get_or_compile_module`], with the wasm's digest
    /// supplied by the caller (say, an OCI layer digest) instead of computed.
    pub fn get_or_compile_module_with_digest(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_digest: Digest,
    ) -> Result<Module> {
        let key = Key::with_wasm_digest(engine, wasm_digest)?;
        self.get_or_compile(engine, &key, Kind::Module, || {
            engine.precompile_module(wasm)
        })
        // SAFETY: `get_or_compile` hands out only artifacts whose engine
        // stamp equals this engine's hash (and whose tag verified).
        .and_then(|loaded| loaded.into_module(engine))
    }

    /// Like [`ArtifactStore::get_or_compile_module`], for components.
    pub fn get_or_compile_component(&self, engine: &Engine, wasm: &[u8]) -> Result<Component> {
        self.get_or_compile_component_with_digest(engine, wasm, Digest::of(wasm))
    }

    /// Like [`ArtifactStore::get_or_compile_component`], with the wasm's
    /// digest supplied by the caller.
    pub fn get_or_compile_component_with_digest(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_digest: Digest,
    ) -> Result<Component> {
        let key = Key::with_wasm_digest(engine, wasm_digest)?;
        self.get_or_compile(engine, &key, Kind::Component, || {
            engine.precompile_component(wasm)
        })
        .and_then(|loaded| loaded.into_component(engine))
    }

    /// Like [`ArtifactStore::get_or_compile_module`], for the wasm (or
    /// text) in the file at `path`. The file's digest is remembered by what
    /// `fstat` says of it (device, inode, size, modification and change
    /// times), so a repeated lookup of an unchanged file costs a `stat`, not
    /// a hash; a changed file is always hashed again. See
    /// [`Stats::files_hashed`].
    ///
    /// ```no_run
    /// # fn main() -> wasmtime::Result<()> {
    /// let engine = wasmtime::Engine::default();
    /// let store = cwasm_store::ArtifactStore::open("/var/cache/my-app/cwasm")?;
    /// // Every call after the first costs an open, an fstat and the load.
    /// let module = store.get_or_compile_module_file(&engine, "app.wasm")?;
    /// # let _ = module;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_or_compile_module_file(
        &self,
        engine: &Engine,
        path: impl AsRef<Path>,
    ) -> Result<Module> {
        self.get_or_compile_file(engine, path.as_ref(), Kind::Module)?
            .into_module(engine)
    }

    /// Like [`ArtifactStore::get_or_compile_module_file`], for components.
    pub fn get_or_compile_component_file(
        &self,
        engine: &Engine,
        path: impl AsRef<Path>,
    ) -> Result<Component> {
        self.get_or_compile_file(engine, path.as_ref(), Kind::Component)?
            .into_component(engine)
    }

    fn get_or_compile_file(&self, engine: &Engine, path: &Path, kind: Kind) -> Result<Loaded> {
        let (mut file, stamp) = open_stamped(path)?;
        if let Some(digest) = self.remembered.get(&stamp) {
            let key = Key::with_wasm_digest(engine, digest)?;
            if let Some(loaded) = self.lookup(engine, &key, kind)? {
                bump(&self.counters.hits);
                return Ok(loaded);
            }
        }
        let (digest, wasm) = self.hash_file(&mut file, stamp, path)?;
        let key = Key::with_wasm_digest(engine, digest)?;
        self.get_or_compile(engine, &key, kind, || match kind {
            Kind::Module => engine.precompile_module(&wasm),
            Kind::Component => engine.precompile_component(&wasm),
        })
    }

    /// The SHA-256 of the file at `path`: remembered, as for
    /// [`ArtifactStore::get_or_compile_module_file`], or computed (and
    /// remembered once the file has settled).
    pub fn file_digest(&self, path: impl AsRef<Path>) -> Result<Digest> {
        let path = path.as_ref();
        let (mut file, stamp) = open_stamped(path)?;
        match self.remembered.get(&stamp) {
            Some(digest) => Ok(digest),
            None => Ok(self.hash_file(&mut file, stamp, path)?.0),
        }
    }

    /// Adds the file digests an earlier process saved to `file` with
    /// [`ArtifactStore::save_remembered_digests`], and returns how many.
    /// A missing file adds none; a file (or directory) that another user
    /// can write is refused, since a planted digest would make a lookup
    /// load another module's artifact.
    pub fn load_remembered_digests(&self, file: impl AsRef<Path>) -> Result<usize> {
        self.remembered.load(file.as_ref())
    }

    /// Saves the remembered file digests to `file` (atomically, mode 0600),
    /// for a later process's [`ArtifactStore::load_remembered_digests`].
    pub fn save_remembered_digests(&self, file: impl AsRef<Path>) -> Result<()> {
        self.remembered.save(file.as_ref())
    }

    /// Reads and hashes the open `file` (whose stamp was `stamp`), and
    /// remembers the digest if the file did not change while it was read
    /// and changed last long enough ago that a later change shows.
    fn hash_file(
        &self,
        file: &mut std::fs::File,
        stamp: FileStamp,
        path: &Path,
    ) -> Result<(Digest, Vec<u8>)> {
        use std::io::Read;
        let mut wasm = Vec::new();
        file.read_to_end(&mut wasm)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let digest = Digest::of(&wasm);
        bump(&self.counters.files_hashed);
        let (after, settled) =
            FileStamp::of(file).with_context(|| format!("failed to read {}", path.display()))?;
        if settled && after == stamp {
            self.remembered.remember(stamp, digest);
        }
        Ok((digest, wasm))
    }

    fn get_or_compile(
        &self,
        engine: &Engine,
        key: &Key,
        kind: Kind,
        compile: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Loaded> {
        let span = tracing::info_span!("cwasm_store.get_or_compile", engine = %key.engine, wasm = %key.wasm, ?kind);
        let _enter = span.enter();
        if let Some(loaded) = self.lookup(engine, key, kind)? {
            bump(&self.counters.hits);
            return Ok(loaded);
        }
        // Single flight: one compile per key in this process. The first
        // caller (the leader) compiles and stores; the others wait for its
        // result, artifact or error, and do not compile again.
        let (flight, leader) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            match inflight.get(key) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(Flight::default());
                    inflight.insert(*key, flight.clone());
                    (flight, true)
                }
            }
        };
        if !leader {
            return match flight.wait() {
                Ok(artifact) => {
                    bump(&self.counters.hits);
                    Ok(Loaded::Bytes(artifact.to_vec()))
                }
                Err(e) => Err(format_err!("{e}")),
            };
        }
        // Whatever happens below, a panic included, the waiters are
        // answered and the slot is freed.
        let mut landing = Landing {
            store: self,
            key,
            flight: &flight,
            result: None,
        };
        if let Some(loaded) = self.lookup(engine, key, kind)? {
            bump(&self.counters.hits);
            landing.result = loaded.bytes().map(|b| Ok(Arc::from(b)));
            return Ok(loaded);
        }
        bump(&self.counters.misses);
        bump(&self.counters.compiles);
        let compiled = {
            let _compile = tracing::info_span!("compile").entered();
            compile()
        };
        if let Ok(artifact) = &compiled
            && let Err(e) = self.put(key, artifact)
        {
            bump(&self.counters.store_errors);
            tracing::warn!(error = %format!("{e:#}"), "could not store the compiled artifact; continuing without the store");
        }
        landing.result = Some(match &compiled {
            Ok(artifact) => Ok(Arc::from(&artifact[..])),
            Err(e) => Err(format!("{e:#}")),
        });
        compiled.map(Loaded::Bytes)
    }

    /// Finds a usable artifact for `key`: local tier, then remote. Entries
    /// that fail a check are evicted and counted; backend errors are logged.
    /// The only error is a caller's: asking for a module under a component's
    /// key, or the reverse.
    fn lookup(&self, engine: &Engine, key: &Key, kind: Kind) -> Result<Option<Loaded>> {
        let path = key.artifact_path();
        if let Some(local) = &self.local {
            match self.read_checked(local, key, &path, true) {
                Ok(Some((checked, used))) => {
                    // The artifact's kind is read only when wasmtime refuses
                    // it (reading it from a file parses the symbol table):
                    // a module asked for under a component's key is the
                    // caller's mistake, not a bad entry.
                    let found = |checked: &Loaded| match checked {
                        Loaded::Open(file, _) => Engine::detect_precompiled_file(fd_path(file))
                            .ok()
                            .flatten(),
                        Loaded::Bytes(bytes) => Engine::detect_precompiled(bytes),
                        _ => None,
                    };
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
                            check_kind(key, kind, again.as_ref().and_then(found))?;
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

    /// Read-through: writes a checked remote hit into the local tier (raw,
    /// so that it can be memory-mapped) on a thread of its own, so that its
    /// `fsync`s stay off the hit path. The write is atomic: a crash loses
    /// the copy, never tears it. [`ArtifactStore::flush`] (and dropping the
    /// store) waits for the copies.
    fn copy_to_local(&self, key: &Key, artifact: Vec<u8>) {
        let Some(local) = &self.local else {
            return;
        };
        let (local, key, config) = (local.clone(), *key, self.config.clone());
        let counters = self.counters.clone();
        let copy = move || {
            if let Err(e) = write_entry(&config, &local, &key, &artifact, false) {
                bump(&counters.store_errors);
                tracing::warn!(error = %format!("{e:#}"), "could not copy a remote hit into the local tier");
            }
        };
        let mut copies = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        copies.retain(|c| !c.is_finished());
        match std::thread::Builder::new()
            .name("cwasm-store-copy".into())
            .spawn(copy)
        {
            Ok(handle) => copies.push(handle),
            Err(e) => {
                bump(&self.counters.store_errors);
                tracing::warn!(error = %e, "could not start a thread to copy a remote hit into the local tier");
            }
        }
    }

    /// Waits until every copy of a remote hit into the local tier is
    /// written (or has failed, which is logged and counted in
    /// [`Stats::store_errors`]). Dropping the store waits too.
    pub fn flush(&self) {
        let copies =
            std::mem::take(&mut *self.copies.lock().unwrap_or_else(PoisonError::into_inner));
        for copy in copies {
            let _ = copy.join();
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

    /// Reads and checks `key`'s artifact in the local tier. With
    /// `prefer_file` and no HMAC key, checks the open file in place (reading
    /// only its section table and engine section) so that the same open
    /// file can be memory-mapped; otherwise reads and checks the bytes.
    /// Either way the check and the load use the same open file: a rename
    /// in between changes nothing.
    fn read_checked(
        &self,
        local: &LocalDir,
        key: &Key,
        path: &str,
        prefer_file: bool,
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
                bump(&self.counters.store_errors);
                tracing::warn!(error = %format!("{e:#}"), "store read failed; treating as a miss");
                return Ok(None);
            }
        };
        // A private entry's tag was verified when it entered the tier, and
        // only this user can have changed it since (docs/store.md).
        let verify =
            self.config.hmac_key.is_some() && (!private || self.config.reverify_private_entries);
        if prefer_file && !verify {
            return match Engine::detect_serialization_compatibility_hash_file(fd_path(&file)) {
                Err(e) => Err(Rejected(format!("unreadable: {e:#}"))),
                Ok(found) => {
                    check_stamp(key, found)?;
                    Ok(Some((Loaded::Open(file, len), used)))
                }
            };
        }
        let bytes =
            read_all(&file, len, limit).map_err(|e| Rejected(format!("unreadable: {e}")))?;
        check_stamp(key, Engine::detect_serialization_compatibility_hash(&bytes))?;
        if verify {
            self.check_tag(local, key, false, &bytes)?;
        }
        // The bytes that were verified are the ones to load: re-opening the
        // file would let a writer swap it after the check.
        Ok(Some((Loaded::Bytes(bytes), used)))
    }

    /// An entry left in place and treated as a miss.
    fn skip(&self, key: &Key, reason: &str) {
        bump(&self.counters.store_errors);
        tracing::warn!(engine = %key.engine, wasm = %key.wasm, reason, "not reading a stored artifact; treating it as a miss");
    }

    fn read_remote(&self, remote: &dyn Backend, key: &Key) -> Result<Option<Vec<u8>>, Rejected> {
        let limit = self.config.max_artifact_size;
        let raw_path = key.artifact_path();
        let zst_path = format!("{raw_path}.zst");
        let mut paths = [raw_path, zst_path];
        if self.config.compress_remote {
            paths.reverse();
        }
        for path in &paths {
            let compressed = path.ends_with(".zst");
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
                    bump(&self.counters.store_errors);
                    tracing::warn!(error = %format!("{e:#}"), "remote read failed; treating as a miss");
                    return Ok(None);
                }
            };
            // The tag covers the stored bytes: nothing unauthenticated is
            // decompressed.
            self.check_tag(remote, key, compressed, &stored)?;
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

    fn check_tag(
        &self,
        backend: &dyn Backend,
        key: &Key,
        compressed: bool,
        stored: &[u8],
    ) -> Result<(), Rejected> {
        let Some(secret) = &self.config.hmac_key else {
            return Ok(());
        };
        let tag = match backend.read_limited(&key.tag_path(), 64) {
            Ok(Fetched::Bytes(tag)) => tag,
            Ok(Fetched::Missing) => return Err(Rejected("it has no HMAC tag".into())),
            Ok(Fetched::TooLarge(_) | Fetched::NotAnObject(_)) => {
                return Err(Rejected("its HMAC tag is not a tag".into()));
            }
            Err(e) => return Err(Rejected(format!("its HMAC tag is unreadable: {e:#}"))),
        };
        let mut mac = hmac_for(secret, key, compressed);
        mac.update(stored);
        mac.verify_slice(&tag)
            .map_err(|_| Rejected("its HMAC tag does not verify".into()))
    }

    fn reject(&self, backend: &dyn Backend, key: &Key, reason: &str) {
        bump(&self.counters.rejected);
        tracing::warn!(store = %backend.describe(), engine = %key.engine, wasm = %key.wasm, reason, "rejected a stored artifact; evicting it");
        for path in [
            key.artifact_path(),
            format!("{}.zst", key.artifact_path()),
            key.tag_path(),
        ] {
            if let Err(e) = backend.delete(&path) {
                bump(&self.counters.store_errors);
                tracing::warn!(error = %format!("{e:#}"), "could not evict a rejected artifact");
            }
        }
    }

    /// The verified artifact stored under `key`, from the local tier or the
    /// remote one, or `None`. Rejected entries are evicted.
    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let path = key.artifact_path();
        if let Some(local) = &self.local {
            match self.read_checked(local, key, &path, false) {
                Ok(Some((Loaded::Bytes(bytes), used))) => {
                    bump(&self.counters.hits);
                    if used_long_ago(used) {
                        let _ = local.touch(&path);
                    }
                    return Ok(Some(bytes));
                }
                Ok(_) => {}
                Err(Rejected(reason)) => self.reject(local, key, &reason),
            }
        }
        if let Some(remote) = self.remote.as_deref() {
            match self.read_remote(remote, key) {
                Ok(Some(bytes)) => {
                    bump(&self.counters.hits);
                    self.copy_to_local(key, bytes.clone());
                    return Ok(Some(bytes));
                }
                Ok(None) => {}
                Err(Rejected(reason)) => self.reject(remote, key, &reason),
            }
        }
        bump(&self.counters.misses);
        Ok(None)
    }

    /// Stores `artifact` under `key`, in every tier. The artifact's own
    /// engine stamp must match the key: the store never files an artifact
    /// under an engine it was not compiled by.
    pub fn put(&self, key: &Key, artifact: &[u8]) -> Result<()> {
        let found = Engine::detect_serialization_compatibility_hash(artifact)
            .context("not a wasmtime artifact")?;
        if found != key.engine.0 {
            bail!(
                "the artifact was compiled by engine {}, not {}",
                Digest(found),
                key.engine
            );
        }
        let mut result = Ok(());
        if let Some(local) = &self.local {
            result = write_entry(&self.config, local, key, artifact, false);
            if result.is_ok() {
                self.maybe_gc(local);
            }
        }
        if let Some(remote) = self.remote.as_deref() {
            let written = write_entry(
                &self.config,
                remote,
                key,
                artifact,
                self.config.compress_remote,
            );
            result = result.and(written);
        }
        result
    }

    /// Whether an artifact is stored under `key` (not checked).
    pub fn contains(&self, key: &Key) -> Result<bool> {
        for backend in self.backends() {
            if backend
                .list(&format!("{}/{}.cwasm", key.engine, key.wasm))?
                .iter()
                .any(|l| l.path.ends_with(".cwasm") || l.path.ends_with(".cwasm.zst"))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes `key`'s artifact (and tag) from every tier.
    pub fn remove(&self, key: &Key) -> Result<()> {
        for backend in self.backends() {
            for path in [
                key.artifact_path(),
                key.tag_path(),
                format!("{}.zst", key.artifact_path()),
            ] {
                backend.delete(&path)?;
            }
        }
        Ok(())
    }

    /// Every artifact of the primary tier (local if there is one), by key.
    pub fn list(&self) -> Result<Vec<Entry>> {
        Ok(entries(self.primary().list("")?))
    }

    /// A summary per engine-hash prefix of the primary tier.
    pub fn engines(&self) -> Result<Vec<EngineSummary>> {
        let primary = self.primary();
        let mut by_engine: BTreeMap<Digest, EngineSummary> = BTreeMap::new();
        for listed in primary.list("")? {
            let Some((engine, _)) = listed.path.split_once('/') else {
                continue;
            };
            let Ok(engine) = engine.parse::<Digest>() else {
                continue;
            };
            let summary = by_engine.entry(engine).or_insert_with(|| EngineSummary {
                engine,
                entries: 0,
                bytes: 0,
                descriptor: None,
            });
            summary.bytes += listed.size;
            if is_artifact(&listed.path) {
                summary.entries += 1;
            }
        }
        for summary in by_engine.values_mut() {
            summary.descriptor = primary
                .read(&format!("{}/{DESCRIPTOR}", summary.engine))
                .ok()
                .flatten()
                .and_then(|json| serde_json::from_slice(&json).ok());
        }
        Ok(by_engine.into_values().collect())
    }

    /// Deletes every engine prefix not in `keep`, from every tier: the way
    /// to retire a wasmtime generation. Returns the number of objects deleted.
    pub fn retain(&self, keep: &[Digest]) -> Result<usize> {
        let mut deleted = 0;
        for backend in self.backends() {
            for listed in backend.list("")? {
                let engine = listed.path.split('/').next().unwrap_or_default();
                if engine.parse::<Digest>().is_ok_and(|e| !keep.contains(&e)) {
                    backend.delete(&listed.path)?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Checks every entry of the primary tier: engine stamp against key and,
    /// with a key configured, the HMAC tag. Returns the bad entries with the
    /// reason; deletes nothing.
    pub fn verify(&self) -> Result<Vec<(Key, String)>> {
        let primary = self.primary();
        let mut bad = Vec::new();
        for entry in self.list()? {
            let key = entry.key;
            let result = match &self.local {
                Some(local) => self
                    .read_checked(local, &key, &key.artifact_path(), false)
                    .map(drop),
                None => self.read_remote(primary, &key).map(drop),
            };
            if let Err(Rejected(reason)) = result {
                bad.push((key, reason));
            }
        }
        Ok(bad)
    }

    /// Objects of the primary tier that are not part of the layout (not an
    /// entry in canonical lowercase-hex form, its `.zst` or `.hmac`, or an
    /// `engine.json`): lookups ignore them; `verify` users may want to know.
    pub fn strays(&self) -> Result<Vec<String>> {
        Ok(self
            .primary()
            .list("")?
            .into_iter()
            .map(|l| l.path)
            .filter(|path| {
                let entry = path.strip_suffix(".hmac").unwrap_or(path);
                !(is_artifact(entry)
                    || path
                        .strip_suffix(&format!("/{DESCRIPTOR}"))
                        .is_some_and(|engine| {
                            engine
                                .parse::<Digest>()
                                .is_ok_and(|d| d.to_string() == engine)
                        }))
            })
            .collect())
    }

    /// Applies the size and count soft limits to the primary tier: when
    /// either is exceeded, deletes least recently used artifacts until both
    /// are under their `*-limit-percent-if-deleting` share. With `dry_run`,
    /// reports what it would delete.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport> {
        self.gc_with(dry_run, true)
    }

    /// `gc`, waiting for another process's `gc` to finish (`wait`) or
    /// returning at once if one is running. Two never run at once on one
    /// local tier.
    fn gc_with(&self, dry_run: bool, wait: bool) -> Result<GcReport> {
        let primary = self.primary();
        let mut _lock = None;
        let mut temporary_bytes = 0;
        if let Some(local) = &self.local {
            if !dry_run {
                match local.lock_gc(wait)? {
                    Some(lock) => _lock = Some(lock),
                    None => {
                        return Ok(GcReport {
                            skipped_busy: true,
                            ..GcReport::default()
                        });
                    }
                }
                local.remove_stale_temporaries()?;
            }
            // Writes in progress take room too.
            temporary_bytes = local.temporaries()?.iter().map(|t| t.size).sum();
        }
        let listed = primary.list("")?;
        let mut report = GcReport::default();
        let stored: std::collections::HashSet<&str> = listed
            .iter()
            .filter(|l| is_artifact(&l.path))
            .map(|l| l.path.strip_suffix(".zst").unwrap_or(&l.path))
            .collect();
        for tag in listed.iter().filter(|l| {
            l.path
                .strip_suffix(".hmac")
                .is_some_and(|a| !stored.contains(a))
                && l.last_used.elapsed().unwrap_or(Duration::ZERO) > ORPHAN_AGE
        }) {
            if !dry_run {
                primary.delete(&tag.path)?;
            }
            report.orphan_tags += 1;
        }
        let tag_sizes: HashMap<&str, u64> = listed
            .iter()
            .filter_map(|l| Some((l.path.strip_suffix(".hmac")?, l.size)))
            .collect();
        let mut artifacts: Vec<(&Listed, u64)> = listed
            .iter()
            .filter(|l| is_artifact(&l.path))
            .map(|l| {
                (
                    l,
                    l.size + tag_sizes.get(l.path.as_str()).copied().unwrap_or(0),
                )
            })
            .collect();
        let c = &self.config.cache;
        report.entries_before = artifacts.len() as u64;
        report.bytes_before = artifacts.iter().map(|(_, s)| s).sum::<u64>() + temporary_bytes;
        if let Some(local) = &self.local
            && !dry_run
        {
            report.empty_prefixes = local.remove_empty_prefixes()? as u64;
        }
        if report.entries_before <= c.file_count_soft_limit()
            && report.bytes_before <= c.files_total_size_soft_limit()
        {
            return Ok(report);
        }
        let count_target =
            c.file_count_soft_limit() * u64::from(c.file_count_limit_percent_if_deleting()) / 100;
        let size_target = ((u128::from(c.files_total_size_soft_limit())
            * u128::from(c.files_total_size_limit_percent_if_deleting()))
            / 100) as u64;
        artifacts.sort_by_key(|(l, _)| l.last_used);
        let (mut count, mut bytes) = (report.entries_before, report.bytes_before);
        for (listed, size) in artifacts {
            if count <= count_target && bytes <= size_target {
                break;
            }
            let Some(key) = key_of(&listed.path) else {
                continue;
            };
            if !dry_run {
                primary.delete(&listed.path)?;
                primary.delete(&key.tag_path())?;
                bump(&self.counters.evictions);
            }
            count -= 1;
            bytes -= size;
            report.bytes_freed += size;
            report.deleted.push(key);
        }
        tracing::info!(
            deleted = report.deleted.len(),
            bytes = report.bytes_freed,
            dry_run,
            "store gc"
        );
        Ok(report)
    }

    /// Runs `gc` if `cleanup-interval` has passed since the last one (across
    /// processes: the time is kept in a stamp file).
    fn maybe_gc(&self, local: &LocalDir) {
        let stamp = local.root().join(GC_STAMP);
        // `symlink_metadata`: a planted link says nothing about our stamp.
        let due = match std::fs::symlink_metadata(&stamp).and_then(|m| m.modified()) {
            Ok(at) => {
                at.elapsed().unwrap_or(Duration::ZERO) >= self.config.cache.cleanup_interval()
            }
            Err(_) => true,
        };
        if !due {
            return;
        }
        let _ = local.write(GC_STAMP, b"");
        if let Err(e) = self.gc_with(false, false) {
            bump(&self.counters.store_errors);
            tracing::warn!(error = %format!("{e:#}"), "store gc failed");
        }
    }

    fn primary(&self) -> &dyn Backend {
        match (&self.local, &self.remote) {
            (Some(local), _) => local,
            (None, Some(remote)) => remote.as_ref(),
            (None, None) => unreachable!("checked in ArtifactStore::new"),
        }
    }

    fn backends(&self) -> impl Iterator<Item = &dyn Backend> {
        self.local
            .iter()
            .map(|l| l as &dyn Backend)
            .chain(self.remote.as_deref())
    }
}

impl Drop for ArtifactStore {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Writes `artifact` (raw, or zstd-compressed with `compress`) and, with a
/// key configured, its tag under `key`.
fn write_entry(
    config: &StoreConfig,
    backend: &dyn Backend,
    key: &Key,
    artifact: &[u8],
    compress: bool,
) -> Result<()> {
    if let Some(descriptor) = describe(key, artifact) {
        let json = serde_json::to_vec_pretty(&descriptor)?;
        backend.write_new(&format!("{}/{DESCRIPTOR}", key.engine), &json)?;
    }
    let packed;
    let (stored, path) = if compress {
        let level = config.cache.baseline_compression_level();
        packed = zstd::encode_all(artifact, level).context("zstd compression failed")?;
        (&packed[..], format!("{}.zst", key.artifact_path()))
    } else {
        (artifact, key.artifact_path())
    };
    // The tag first: an artifact is never visible without its tag.
    if let Some(secret) = &config.hmac_key {
        let mut mac = hmac_for(secret, key, compress);
        mac.update(stored);
        backend.write(&key.tag_path(), &mac.finalize().into_bytes())?;
    }
    backend.write(&path, stored)
}

/// Whether an entry last recorded as used at `used` should be touched.
fn used_long_ago(used: SystemTime) -> bool {
    match SystemTime::now().duration_since(used) {
        Ok(ago) => ago >= TOUCH_INTERVAL,
        // Recorded in the future (a clock set back): record now.
        Err(_) => true,
    }
}

/// `path` opened for reading, and its stamp.
fn open_stamped(path: &Path) -> Result<(std::fs::File, FileStamp)> {
    let opened = || format!("failed to read {}", path.display());
    let file = std::fs::File::open(path).with_context(opened)?;
    let (stamp, _) = FileStamp::of(&file).with_context(opened)?;
    Ok((file, stamp))
}

/// Why an entry was refused.
struct Rejected(String);

/// One compile in progress, and what its waiters are given.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<[u8]>, String>>>,
    done: std::sync::Condvar,
}

impl Flight {
    fn wait(&self) -> Result<Arc<[u8]>, String> {
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = &*result {
                return result.clone();
            }
            result = self
                .done
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The leader's side of a `Flight`: on drop (a return or a panic), hands
/// its result to the waiters and frees the key's slot.
struct Landing<'a> {
    store: &'a ArtifactStore,
    key: &'a Key,
    flight: &'a Flight,
    result: Option<Result<Arc<[u8]>, String>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(if std::thread::panicking() {
                "the thread compiling this module panicked".to_string()
            } else {
                "the store could not load or compile this module".to_string()
            })
        });
        *self
            .flight
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.flight.done.notify_all();
        self.store
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.key);
    }
}

/// An artifact ready for wasmtime: a checked open file or checked bytes.
enum Loaded {
    Open(std::fs::File, u64),
    Bytes(Vec<u8>),
    Module(Module),
    Component(Component),
}

impl Loaded {
    /// Deserializes into `kind`, so failures surface inside `lookup`.
    fn probe(self, engine: &Engine, kind: Kind, limit: u64) -> Result<Loaded> {
        // SAFETY: every `Loaded::Open`/`Loaded::Bytes` is either an artifact
        // `engine` just compiled, or one whose engine section hashes to
        // `engine.serialization_compatibility_hash()` (and, with a key
        // configured, whose HMAC tag verified, or which is a private entry
        // whose tag verified when it entered the local tier), read from the
        // same open file that was checked.
        Ok(match (self, kind) {
            (Loaded::Open(f, _), Kind::Module) => {
                Loaded::Module(unsafe { Module::deserialize_open_file(engine, f)? })
            }
            (Loaded::Open(f, len), Kind::Component) => {
                Loaded::deserialize(engine, kind, &read_all(&f, len, limit)?)?
            }
            (Loaded::Bytes(b), kind) => Loaded::deserialize(engine, kind, &b)?,
            (done, _) => done,
        })
    }

    /// Deserializes checked bytes (see `probe`'s safety note) into `kind`.
    fn deserialize(engine: &Engine, kind: Kind, bytes: &[u8]) -> Result<Loaded> {
        // SAFETY: as in `probe`: `bytes` were compiled by `engine`, or
        // their engine section hashes to its hash (and their tag verified).
        Ok(match kind {
            Kind::Module => Loaded::Module(unsafe { Module::deserialize(engine, bytes)? }),
            Kind::Component => Loaded::Component(unsafe { Component::deserialize(engine, bytes)? }),
        })
    }

    /// The artifact's bytes, for waiters of a single flight (a memory-mapped
    /// hit is read once more for them).
    fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Loaded::Bytes(b) => Some(b.clone()),
            Loaded::Module(m) => m.serialize().ok(),
            Loaded::Component(c) => c.serialize().ok(),
            Loaded::Open(..) => None,
        }
    }

    /// A second handle on the same checked artifact, for reading its kind
    /// after wasmtime refused it.
    fn try_clone(&self) -> Option<Loaded> {
        match self {
            Loaded::Open(f, len) => Some(Loaded::Open(f.try_clone().ok()?, *len)),
            Loaded::Bytes(b) => Some(Loaded::Bytes(b.clone())),
            _ => None,
        }
    }

    fn into_module(self, engine: &Engine) -> Result<Module> {
        match self.probe(engine, Kind::Module, u64::MAX)? {
            Loaded::Module(m) => Ok(m),
            _ => Err(format_err!(
                "the stored artifact is a component, not a module"
            )),
        }
    }

    fn into_component(self, engine: &Engine) -> Result<Component> {
        match self.probe(engine, Kind::Component, u64::MAX)? {
            Loaded::Component(c) => Ok(c),
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
fn hmac_for(secret: &[u8], key: &Key, compressed: bool) -> Hmac<sha2::Sha256> {
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

fn is_artifact(path: &str) -> bool {
    key_of(path).is_some()
}

fn key_of(path: &str) -> Option<Key> {
    Key::from_artifact_path(path.strip_suffix(".zst").unwrap_or(path))
}

fn entries(listed: Vec<Listed>) -> Vec<Entry> {
    listed
        .into_iter()
        .filter_map(|l| {
            Some(Entry {
                key: key_of(&l.path)?,
                size: l.size,
                last_used: l
                    .last_used
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            })
        })
        .collect()
}

/// The descriptor for `key`'s prefix, read from the artifact's own engine
/// section.
fn describe(key: &Key, artifact: &[u8]) -> Option<EngineDescriptor> {
    let info = crate::inspect::inspect(artifact).ok()?;
    Some(EngineDescriptor {
        engine: key.engine.to_string(),
        wasmtime_version: info.version,
        target: info.target,
        first_written: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}
