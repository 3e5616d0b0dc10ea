//! The store itself: `ArtifactStore`, its lookups (`get_or_compile_*`, by
//! bytes or by file) and its writes. Built on the checks (`checks.rs`),
//! which read, check and load one entry; `admin.rs` (listing, verifying,
//! retiring) is built on it.
//!
//! - `lookup.rs`: the tiers in order, and the checker they use;
//! - `reuse.rs`: other engines' artifacts this engine accepts;
//! - `gc.rs`: eviction around its policy (`eviction.rs`).

mod gc;
mod lookup;
mod reuse;

pub use gc::GcReport;
pub(crate) use reuse::Choices;
pub use reuse::Verdict;

use crate::attest::{self, TrustedKey};
use crate::backend::Fetched;
use crate::backend::{self, Backend, LocalDir, Opens};
#[cfg(feature = "compile")]
use crate::checks::{CheckedArtifact, Kind};
use crate::checks::{ReadFor, ZSTD_WINDOW_LOG_MAX};
use crate::config::StoreConfig;
use crate::digest::{Digest, Key};
#[cfg(feature = "compile")]
use crate::flight::{ErrorChain, Flight, FlightGuard, Inflight};
use crate::inspect::engine_section;
use crate::layout::{EngineDescriptor, describe, descriptor_path, is_artifact, section_path};
use crate::remembered::{FileStamp, Remembered};
use crate::sealed::Sealed;
use crate::stats::{Counters, Stats, bump};
use crate::tag;
#[cfg(feature = "compile")]
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use wasmtime::error::Context;
use wasmtime::{Engine, Result, bail};
#[cfg(feature = "compile")]
use wasmtime::{Module, component::Component};

/// A hit records its time of use (the entry's modification time, which
/// eviction reads) only if the recorded one is older than this: a hot entry
/// costs no extra `open` and `futimens` per hit.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// A store of precompiled artifacts; see the crate documentation.
///
/// Cheap to share between threads (`&ArtifactStore` is all the API needs),
/// and safe to share between processes: every write is atomic, and every
/// read is checked before it reaches wasmtime.
pub struct ArtifactStore {
    pub(crate) local: Option<LocalDir>,
    pub(crate) remote: Option<Arc<dyn Backend>>,
    pub(crate) config: StoreConfig,
    pub(crate) counters: Arc<Counters>,
    #[cfg(feature = "compile")]
    pub(crate) inflight: Inflight,
    /// Copies of remote hits being written into the local tier.
    copies: Mutex<Vec<std::thread::JoinHandle<()>>>,
    remembered: Remembered,
    /// Which other engines' artifacts each engine accepts (`reuse.rs`).
    pub(crate) choices: Choices,
    /// The keys whose signatures lookups accept (`StoreConfig::trust`).
    pub(crate) trust: Vec<TrustedKey>,
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
        match backend::open(location)? {
            Opens::Local(local) => ArtifactStore::new(Some(local), None, config),
            Opens::Remote(remote) => ArtifactStore::new(None, Some(remote), config),
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
            trust: config.trust(),
            local,
            remote: remote.map(Arc::from),
            config,
            counters: Arc::default(),
            #[cfg(feature = "compile")]
            inflight: Mutex::new(HashMap::new()),
            copies: Mutex::new(Vec::new()),
            remembered: Remembered::default(),
            choices: Choices::default(),
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
            refused: get(&c.refused),
            store_errors: get(&c.store_errors),
            files_hashed: get(&c.files_hashed),
            reused: get(&c.reused),
            last_reused_engine: *c
                .last_reused_engine
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    #[cfg(feature = "compile")]
    /// Loads the module `wasm` compiled by `engine` from the store, or
    /// compiles it and stores the artifact. Store failures never fail this
    /// call: they are logged, counted, and the module is compiled.
    pub fn get_or_compile_module(&self, engine: &Engine, wasm: &[u8]) -> Result<Module> {
        self.get_or_compile_module_with_digest(engine, wasm, Digest::of(wasm))
    }

    #[cfg(feature = "compile")]
    /// Like [`ArtifactStore::get_or_compile_module`], with the wasm's digest
    /// supplied by the caller (say, an OCI layer digest) instead of computed.
    ///
    /// The digest is trusted, not checked: that is what saves hashing the
    /// wasm. With a wrong one, the artifact compiled from `wasm` is stored
    /// (and, with a key, tagged: the tag vouches for the artifact under
    /// that key, not for the key) under another wasm's digest, and every
    /// later lookup of that digest loads this module. Pass only digests
    /// computed over these very bytes (a registry client that verified the
    /// layer, an index you wrote). Where that is not certain, use
    /// [`ArtifactStore::get_or_compile_module`], which computes the digest
    /// (the checked form, at the cost of one SHA-256 pass), or
    /// [`ArtifactStore::get_or_compile_module_with_checked_digest`].
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
        // Safe: a `CheckedArtifact` is compiled or checked (checks.rs).
        .and_then(|loaded| loaded.into_module(engine))
    }

    #[cfg(feature = "compile")]
    /// Like [`ArtifactStore::get_or_compile_module_with_digest`], but fails
    /// (before any lookup) if `wasm_digest` is not the SHA-256 of `wasm`:
    /// for digests from elsewhere that should be of these bytes, such as a
    /// manifest's, where a mismatch is an error to report rather than a
    /// key to trust.
    pub fn get_or_compile_module_with_checked_digest(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_digest: Digest,
    ) -> Result<Module> {
        check_digest(wasm, wasm_digest)?;
        self.get_or_compile_module_with_digest(engine, wasm, wasm_digest)
    }

    #[cfg(feature = "compile")]
    /// Like [`ArtifactStore::get_or_compile_module`], for components.
    pub fn get_or_compile_component(&self, engine: &Engine, wasm: &[u8]) -> Result<Component> {
        self.get_or_compile_component_with_digest(engine, wasm, Digest::of(wasm))
    }

    #[cfg(feature = "compile")]
    /// Like [`ArtifactStore::get_or_compile_component`], with the wasm's
    /// digest supplied by the caller: trusted, not checked, as for
    /// [`ArtifactStore::get_or_compile_module_with_digest`] (whose
    /// documentation says what a wrong digest does).
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

    #[cfg(feature = "compile")]
    /// Like [`ArtifactStore::get_or_compile_component_with_digest`], but
    /// fails if `wasm_digest` is not the SHA-256 of `wasm` (as
    /// [`ArtifactStore::get_or_compile_module_with_checked_digest`]).
    pub fn get_or_compile_component_with_checked_digest(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_digest: Digest,
    ) -> Result<Component> {
        check_digest(wasm, wasm_digest)?;
        self.get_or_compile_component_with_digest(engine, wasm, wasm_digest)
    }

    #[cfg(feature = "compile")]
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

    #[cfg(feature = "compile")]
    /// Like [`ArtifactStore::get_or_compile_module_file`], for components.
    pub fn get_or_compile_component_file(
        &self,
        engine: &Engine,
        path: impl AsRef<Path>,
    ) -> Result<Component> {
        self.get_or_compile_file(engine, path.as_ref(), Kind::Component)?
            .into_component(engine)
    }

    #[cfg(feature = "compile")]
    fn get_or_compile_file(
        &self,
        engine: &Engine,
        path: &Path,
        kind: Kind,
    ) -> Result<CheckedArtifact> {
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

    #[cfg(feature = "compile")]
    fn get_or_compile(
        &self,
        engine: &Engine,
        key: &Key,
        kind: Kind,
        compile: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<CheckedArtifact> {
        let span = tracing::info_span!("cwasm_store.get_or_compile", engine = %key.engine, wasm = %key.wasm, ?kind);
        let _enter = span.enter();
        if let Some(loaded) = self.lookup(engine, key, kind)? {
            bump(&self.counters.hits);
            return Ok(loaded);
        }
        // Another engine's artifact this one may reuse (`reuse.rs`): its
        // own, for fewer CPU features. A hit is counted there.
        if self.config.reuse_cpu_subsets
            && let Some(loaded) = self.lookup_reused(engine, key.wasm, kind)?
        {
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
                    Ok(CheckedArtifact::compiled(artifact.to_vec()))
                }
                Err(chain) => Err(chain.to_error()),
            };
        }
        // Whatever happens below, a panic included, the waiters are
        // answered and the slot is freed.
        let mut landing = FlightGuard {
            inflight: &self.inflight,
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
            && self.config.writes()
            && let Err(e) = self.put(key, artifact)
        {
            bump(&self.counters.store_errors);
            tracing::warn!(error = %format!("{e:#}"), "could not store the compiled artifact; continuing without the store");
        }
        landing.result = Some(match &compiled {
            Ok(artifact) => Ok(Arc::from(&artifact[..])),
            Err(e) => Err(ErrorChain::of(e)),
        });
        compiled.map(CheckedArtifact::compiled)
    }

    /// Read-through: writes a checked remote hit into the local tier (raw,
    /// so that it can be memory-mapped) on a thread of its own, from the
    /// sealed memory it was checked (and is loaded) in, so that its hashing
    /// and `fsync`s stay off the hit path. The write is atomic: a crash
    /// loses the copy, never tears it. [`ArtifactStore::flush`] (and
    /// dropping the store) waits for the copies.
    /// The remote entry's statement goes with it, verbatim (its signature
    /// is the producer's): `statement` if the lookup read it, else read
    /// from the remote tier here; none if it has none.
    pub(crate) fn copy_to_local(
        &self,
        key: &Key,
        artifact: Arc<Sealed>,
        statement: Option<Vec<u8>>,
    ) {
        let Some(local) = &self.local else {
            return;
        };
        let (local, key, config) = (local.clone(), *key, self.config.clone());
        let remote = self.remote.clone();
        let counters = self.counters.clone();
        let copy = move || {
            let statement = statement.or_else(|| {
                match remote?.read_limited(&key.statement_path(), attest::MAX_STATEMENT_LEN) {
                    Ok(Fetched::Bytes(statement)) => Some(statement),
                    _ => None,
                }
            });
            let statement = Statement::Copied(statement.as_deref());
            let descriptor = describe(&key, artifact.bytes());
            let bytes = artifact.bytes();
            if let Err(e) = write_entry(
                &config,
                &local,
                &key,
                bytes,
                descriptor.as_ref(),
                false,
                statement,
            ) {
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

    /// The verified artifact stored under `key`, from the local tier or the
    /// remote one, or `None`. Rejected entries are evicted.
    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let path = key.artifact_path();
        if let Some(local) = &self.local {
            match self
                .checker()
                .read_checked(local, key, &path, ReadFor::Bytes)
            {
                Ok(Some((checked, used, _))) => {
                    // Read for its bytes, a hit is the checked bytes.
                    if let Some(bytes) = checked.into_bytes() {
                        bump(&self.counters.hits);
                        if used_long_ago(used) {
                            let _ = local.touch(&path);
                        }
                        return Ok(Some(bytes));
                    }
                }
                Ok(None) => {}
                Err(rejected) => self.checker().reject(local, key, &rejected),
            }
        }
        if let Some(remote) = self.remote.as_deref() {
            match self.checker().read_remote(remote, key) {
                Ok(Some(hit)) => {
                    bump(&self.counters.hits);
                    let bytes = hit.artifact.bytes().to_vec();
                    self.copy_to_local(key, hit.artifact, hit.statement);
                    return Ok(Some(bytes));
                }
                Ok(None) => {}
                Err(rejected) => self.checker().reject(remote, key, &rejected),
            }
        }
        bump(&self.counters.misses);
        Ok(None)
    }

    /// Stores `artifact` under `key`, in every tier, with its statement
    /// (signed with [`StoreConfig::signing_key`], if set). The artifact's
    /// own engine stamp must match the key: the store never files an
    /// artifact under an engine it was not compiled by. A store that
    /// verifies signatures but has no signing key refuses: no host would
    /// load what it wrote.
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
        if !self.config.writes() {
            bail!(
                "this store verifies signatures (`trusted_keys`) and has no `signing_key`: \
                 what it wrote would not verify"
            );
        }
        // Read from the artifact's section once, for every tier.
        let descriptor = describe(key, artifact);
        let target = descriptor.as_ref().map_or("", |d| d.target.as_str());
        let envelope = attest::envelope(
            key,
            artifact,
            &self.config.producer,
            target,
            self.config.signing_key.as_ref(),
        )?;
        let statement = Statement::Made(&envelope);
        let mut result = Ok(());
        if let Some(local) = &self.local {
            result = write_entry(
                &self.config,
                local,
                key,
                artifact,
                descriptor.as_ref(),
                false,
                statement,
            );
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
                descriptor.as_ref(),
                self.config.compress_remote,
                statement,
            );
            result = result.and(written);
        }
        result
    }

    /// Whether an artifact is stored under `key` (not checked).
    pub fn contains(&self, key: &Key) -> Result<bool> {
        for backend in self.backends() {
            if backend
                .list(&key.artifact_path())?
                .iter()
                .any(|l| is_artifact(&l.path))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes `key`'s artifact (both forms, their tags and the statement)
    /// from every tier.
    pub fn remove(&self, key: &Key) -> Result<()> {
        for backend in self.backends() {
            remove_entry(backend, key)?;
        }
        Ok(())
    }

    pub(crate) fn primary(&self) -> &dyn Backend {
        match (&self.local, &self.remote) {
            (Some(local), _) => local,
            (None, Some(remote)) => remote.as_ref(),
            (None, None) => unreachable!("checked in ArtifactStore::new"),
        }
    }

    pub(crate) fn backends(&self) -> impl Iterator<Item = &dyn Backend> {
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

/// Deletes every object of `key`'s entry from `backend`.
pub(crate) fn remove_entry(backend: &dyn Backend, key: &Key) -> Result<()> {
    for path in [
        key.artifact_path(),
        key.tag_path(),
        key.compressed_path(),
        key.tag_path_for(true),
        key.statement_path(),
    ] {
        backend.delete(&path)?;
    }
    Ok(())
}

/// An entry's statement, as [`write_entry`] writes it.
#[derive(Clone, Copy)]
pub(crate) enum Statement<'a> {
    /// Made (and signed) for this write.
    Made(&'a [u8]),
    /// Another tier's, copied with its artifact (if it had one).
    Copied(Option<&'a [u8]>),
}

/// Writes `artifact` (raw, or zstd-compressed with `compress`), its
/// statement and, with a key configured, its tag under `key`; and the
/// prefix's `descriptor` (read from the artifact by the caller) and engine
/// section, if the prefix has none yet.
pub(crate) fn write_entry(
    config: &StoreConfig,
    backend: &dyn Backend,
    key: &Key,
    artifact: &[u8],
    descriptor: Option<&EngineDescriptor>,
    compress: bool,
    statement: Statement<'_>,
) -> Result<()> {
    if let Some(descriptor) = descriptor {
        let json = serde_json::to_vec_pretty(descriptor)?;
        backend.write_new(&descriptor_path(key.engine), &json)?;
    }
    // The section hashes to the key's engine (checked by `put`), so it is
    // what the prefix's name says.
    if let Some(section) = engine_section(artifact) {
        backend.write_new(&section_path(key.engine), section)?;
    }
    let packed;
    let (stored, path) = if compress {
        packed = zstd_compress(artifact, config.cache.baseline_compression_level())
            .context("zstd compression failed")?;
        (&packed[..], key.compressed_path())
    } else {
        (artifact, key.artifact_path())
    };
    // The statement and the tag first: an artifact is never visible
    // without them.
    match statement {
        Statement::Made(envelope) | Statement::Copied(Some(envelope)) => {
            backend.write(&key.statement_path(), envelope)?;
        }
        Statement::Copied(None) => {}
    }
    if let Some(secret) = &config.hmac_key {
        let tag = tag::tag(secret, key, compress, stored, config.write_v2_tags);
        // With v2 tags (older readers share the store), the compressed
        // object's tag goes where they look for it: the shared path.
        let path = if config.write_v2_tags {
            key.tag_path()
        } else {
            key.tag_path_for(compress)
        };
        backend.write(&path, &tag)?;
    }
    backend.write(&path, stored)
}

#[cfg(feature = "compile")]
/// Fails unless `digest` is the SHA-256 of `wasm`.
fn check_digest(wasm: &[u8], digest: Digest) -> Result<()> {
    let actual = Digest::of(wasm);
    if actual != digest {
        bail!("the wasm's SHA-256 is {actual}, not the digest supplied ({digest})");
    }
    Ok(())
}

/// `artifact` as one zstd frame that declares its size (so that a reader
/// knows it before inflating), with a window readers accept
/// ([`ZSTD_WINDOW_LOG_MAX`]: levels above 19 would ask for more).
fn zstd_compress(artifact: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    if level > 19 {
        compressor.set_parameter(zstd::zstd_safe::CParameter::WindowLog(ZSTD_WINDOW_LOG_MAX))?;
    }
    compressor.compress(artifact)
}

/// Whether an entry last recorded as used at `used` should be touched.
pub(crate) fn used_long_ago(used: SystemTime) -> bool {
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
    let stamp = FileStamp::current(&file).with_context(opened)?;
    Ok((file, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compressed objects are one frame that declares its size, so that a
    /// reader knows what it will hold before inflating anything, and they
    /// inflate under the readers' window cap at every level (the cap itself
    /// only bites on inputs over 32 MiB, which this does not build).
    #[test]
    fn compressed_objects_declare_their_size() {
        use zstd::zstd_safe;
        let artifact: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for level in [1, 3, 19, 22] {
            let packed = zstd_compress(&artifact, level).unwrap();
            assert_eq!(
                zstd_safe::find_frame_compressed_size(&packed),
                Ok(packed.len())
            );
            assert_eq!(
                zstd_safe::get_frame_content_size(&packed).ok(),
                Some(Some(artifact.len() as u64))
            );
            let mut decoder = zstd::stream::read::Decoder::new(&packed[..]).unwrap();
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).unwrap();
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut decoder, &mut out).unwrap();
            assert_eq!(out, artifact, "level {level}");
        }
    }
}
