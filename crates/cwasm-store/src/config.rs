//! Store configuration. Limits come from wasmtime's own `[cache]` TOML
//! format, read by wasmtime's own code (`wasmtime::CacheConfig`), so an
//! existing wasmtime cache configuration file works unchanged and is checked
//! exactly as wasmtime checks it.
//!
//! Of the `[cache]` keys, the store uses `directory` (through
//! [`StoreConfig::from_cache_file`]), `file-count-soft-limit`,
//! `files-total-size-soft-limit`, the two `*-limit-percent-if-deleting`,
//! `cleanup-interval` and `baseline-compression-level` (for compressed
//! remote objects). The others are accepted and checked by wasmtime, and
//! unused: there is no background worker here.

use crate::attest::{Producer, SigningKey, TrustedKey};
use std::path::{Path, PathBuf};
use wasmtime::error::Context;
use wasmtime::{CacheConfig, Result, bail};

/// The store's full configuration: wasmtime's cache settings plus what
/// wasmtime's cache has no notion of. Its `Debug` output never shows the
/// key.
#[derive(Clone)]
pub struct StoreConfig {
    /// Eviction limits and the compression level, in wasmtime's `[cache]`
    /// terms. Its `directory` is not used: the store's location is given to
    /// [`ArtifactStore::new`](crate::ArtifactStore::new) or
    /// [`ArtifactStore::open_location`](crate::ArtifactStore::open_location)
    /// (see [`StoreConfig::from_cache_file`] for a file's `directory`).
    pub cache: CacheConfig,
    /// Key for entry authentication, at least
    /// [`StoreConfig::MIN_HMAC_KEY_LEN`] bytes. With a key, every byte
    /// wasmtime executes was authenticated by the key, in this process,
    /// after it could no longer change: each hit is copied into sealed
    /// memory and its tag verified there (docs/store.md). Tags are keyed
    /// BLAKE3 (v3); HMAC-SHA-256 tags of earlier stores (v2) are still
    /// accepted. The field keeps its name for compatibility.
    pub hmac_key: Option<Vec<u8>>,
    /// Write tags as versions before v3 did: v2 (HMAC-SHA-256) instead of
    /// v3 (keyed BLAKE3, about five times faster to verify), and a
    /// compressed object's tag at the raw one's path instead of its own.
    /// Both are always read. Set this only while a store is shared with
    /// versions of this crate that read only those (they reject, and
    /// delete, entries tagged otherwise); off by default.
    pub write_v2_tags: bool,
    /// Compress artifacts with zstd when writing them to a remote backend
    /// (the local tier keeps them raw, so they can be memory-mapped).
    pub compress_remote: bool,
    /// The largest artifact the store reads, in bytes: larger local files,
    /// remote objects and decompressed objects are not read (a miss; they
    /// are left in place). Defaults to [`StoreConfig::DEFAULT_MAX_ARTIFACT_SIZE`].
    pub max_artifact_size: u64,
    /// On a miss under its own engine hash, a compiling engine loads an
    /// artifact of its own engine built for fewer CPU features, if the
    /// store holds one (the one with the most features), instead of
    /// compiling: a host with AVX2 uses a fleet's `x86-64-v2` artifacts.
    /// wasmtime still checks that this host has every feature the artifact
    /// uses. On by default; it governs `ArtifactStore::load_module` on a
    /// compiling engine too (an engine without a compiler always reuses).
    pub reuse_cpu_subsets: bool,
    /// The build farm's key: the statement of every entry this store
    /// writes (layout 10 in `layout.rs`, `attest.rs`) is signed with it.
    /// Its public half is trusted too when [`StoreConfig::trusted_keys`]
    /// are set.
    pub signing_key: Option<SigningKey>,
    /// With keys here, a hit loads only an artifact whose statement is
    /// signed by one of them and vouches for this very lookup: its wasm
    /// digest, engine hash and bytes (checked in sealed memory, as a keyed
    /// store checks its tags). Anything else is a miss that leaves the entry
    /// in place (other hosts may trust other keys), counted in
    /// [`Stats::refused`](crate::Stats::refused). A store with keys and no
    /// [`StoreConfig::signing_key`] writes nothing: it could not sign what
    /// it compiled, so no host (itself included) would load it.
    pub trusted_keys: Vec<TrustedKey>,
    /// Producers whose artifacts are not loaded: an entry whose statement
    /// names a wasmtime version matching one of these (`<48.0.8`, after a
    /// patch release fixes a miscompilation), or that has no statement to
    /// tell, is a miss that compiles again (and, where this store writes,
    /// replaces it). Unsigned statements are believed as written: set
    /// [`StoreConfig::trusted_keys`] too where writers are not trusted.
    pub refused_producers: Vec<semver::VersionReq>,
    /// What this store records as the producer of what it writes; defaults
    /// to [`Producer::current`]. `cwasm compile` adds the CPU profile.
    pub producer: Producer,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self
            .hmac_key
            .as_ref()
            .map(|k| format!("<{} bytes, not shown>", k.len()));
        f.debug_struct("StoreConfig")
            .field("cache", &self.cache)
            .field("hmac_key", &key)
            .field("write_v2_tags", &self.write_v2_tags)
            .field("compress_remote", &self.compress_remote)
            .field("max_artifact_size", &self.max_artifact_size)
            .field("reuse_cpu_subsets", &self.reuse_cpu_subsets)
            .field("signing_key", &self.signing_key)
            .field("trusted_keys", &self.trusted_keys)
            .field("refused_producers", &self.refused_producers)
            .field("producer", &self.producer)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            cache: CacheConfig::default(),
            hmac_key: None,
            write_v2_tags: false,
            compress_remote: false,
            max_artifact_size: StoreConfig::DEFAULT_MAX_ARTIFACT_SIZE,
            reuse_cpu_subsets: true,
            signing_key: None,
            trusted_keys: Vec::new(),
            refused_producers: Vec::new(),
            producer: Producer::current(),
        }
    }
}

impl StoreConfig {
    /// 1 GiB: several times the largest artifacts seen in practice.
    pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 1 << 30;
    /// HMAC keys shorter than this (128 bits) are refused.
    pub const MIN_HMAC_KEY_LEN: usize = 16;

    /// Whether lookups read and check each entry's statement.
    pub(crate) fn checks_statements(&self) -> bool {
        !self.trusted_keys.is_empty() || !self.refused_producers.is_empty()
    }

    /// The keys whose signatures a lookup accepts: the trusted keys and,
    /// when there are any, the store's own signing key.
    pub(crate) fn trust(&self) -> Vec<TrustedKey> {
        let mut trust = self.trusted_keys.clone();
        if let Some(own) = &self.signing_key
            && !trust.is_empty()
            && !trust.contains(own.public_key())
        {
            trust.push(own.public_key().clone());
        }
        trust
    }

    /// Whether this store writes entries: not when it verifies signatures
    /// it cannot make.
    pub(crate) fn writes(&self) -> bool {
        self.trusted_keys.is_empty() || self.signing_key.is_some()
    }

    /// Reads a wasmtime cache configuration file with wasmtime's own
    /// [`CacheConfig::from_file`], and returns the store configuration it
    /// gives and the `directory` the file names, if it names one.
    ///
    /// wasmtime fills a missing `directory` with wasmtime's own cache
    /// directory (and creates it). The store must not live there (wasmtime's
    /// cleanup deletes files it does not recognise), so that directory is not
    /// returned: without one, the caller picks the store's location (`cwasm`
    /// uses `cwasm` in the platform's cache directory).
    ///
    /// ```no_run
    /// use cwasm_store::{ArtifactStore, LocalDir, StoreConfig};
    /// # fn main() -> wasmtime::Result<()> {
    /// let (config, directory) = StoreConfig::from_cache_file("cache.toml".as_ref())?;
    /// let directory = directory.unwrap_or_else(|| "/var/cache/my-app/cwasm".into());
    /// let store = ArtifactStore::new(Some(LocalDir::new(directory)?), None, config)?;
    /// # Ok(()) }
    /// ```
    pub fn from_cache_file(path: &Path) -> Result<(StoreConfig, Option<PathBuf>)> {
        let named = names_a_directory(path)?;
        let cache = CacheConfig::from_file(Some(path))
            .with_context(|| format!("invalid cache config {}", path.display()))?;
        let directory = if named {
            cache.directory().cloned()
        } else {
            None
        };
        let config = StoreConfig {
            cache,
            ..StoreConfig::default()
        };
        Ok((config, directory))
    }

    /// Checks the settings that could make the store unsafe or its
    /// arithmetic overflow; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        if let Some(key) = &self.hmac_key
            && key.len() < StoreConfig::MIN_HMAC_KEY_LEN
        {
            bail!(
                "`hmac_key` has {} bytes; it needs at least {} (generate one with \
                 `head -c 32 /dev/urandom > cwasm.key`)",
                key.len(),
                StoreConfig::MIN_HMAC_KEY_LEN
            );
        }
        if self.max_artifact_size == 0 {
            bail!("`max_artifact_size` must be more than 0");
        }
        let c = &self.cache;
        for (name, limit, percent) in [
            (
                "file-count-soft-limit",
                c.file_count_soft_limit(),
                c.file_count_limit_percent_if_deleting(),
            ),
            (
                "files-total-size-soft-limit",
                c.files_total_size_soft_limit(),
                c.files_total_size_limit_percent_if_deleting(),
            ),
        ] {
            if limit.checked_mul(u64::from(percent)).is_none() {
                bail!("`{name}` = {limit} is too large: it overflows when applying its percentage");
            }
        }
        Ok(())
    }
}

/// Whether the `[cache]` table of the file at `path` sets `directory`. The
/// rest of the file is left to wasmtime, which reports its errors; a file
/// that is not TOML names no directory here.
fn names_a_directory(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config file: {}", path.display()))?;
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(false);
    };
    Ok(doc
        .get("cache")
        .and_then(|cache| cache.get("directory"))
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_key() {
        let config = StoreConfig {
            hmac_key: Some(b"do not print this key, ever!".to_vec()),
            ..StoreConfig::default()
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("do not print"), "{shown}");
        assert!(!shown.contains("100, 111, 32"), "{shown}");
        assert!(shown.contains("<28 bytes, not shown>"), "{shown}");
    }
}
