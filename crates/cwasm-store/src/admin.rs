//! What operators do with a store: list, verify, retire generations, and
//! evict (`gc`, with wasmtime's `[cache]` limits).

use crate::attest::{self, Producer};
use crate::backend::{Backend, Fetched, Listed, LocalDir};
use crate::digest::{Digest, Key};
use crate::entry::{
    DESCRIPTOR, GC_STAMP, ReadFor, SECTION, STATEMENT_SUFFIX, TAG_SUFFIX, ZSTD_SUFFIX, is_artifact,
    key_of, prefix_engine,
};
use crate::eviction::{Candidate, Limits, victims};
use crate::stats::bump;
use crate::store::ArtifactStore;
use crate::store::remove_entry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::Result;

/// A tag without its artifact is a write in progress (tags are written
/// first) until it is this old.
const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// How long a `gc` that waits (`ArtifactStore::gc`, `cwasm gc`) waits for
/// another process's to finish before it fails. One `gc` deletes files for
/// far less than this; a lock held longer is stuck or hostile.
pub(crate) const GC_LOCK_WAIT: Duration = Duration::from_secs(15);

/// The largest `engine.json` read: a descriptor is a few hundred bytes.
const MAX_DESCRIPTOR: u64 = 64 << 10;

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
    /// How many of its entries each producer made (the wasmtime version
    /// their statements name; `unknown` for entries without one).
    pub producers: BTreeMap<String, u64>,
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
    /// Tags and statements without an artifact, older than an hour,
    /// deleted (or that would be).
    pub orphan_tags: u64,
    /// Empty engine prefixes removed (local tier).
    pub empty_prefixes: u64,
    /// Whether another process's `gc` held the lock, so this one did nothing
    /// (only when it was started by a `put`).
    pub skipped_busy: bool,
    /// Directories under the local tier's root this process may not read
    /// (another user's, in a shared root): skipped, not counted, not
    /// evicted from.
    pub unreadable: Vec<String>,
}

impl ArtifactStore {
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
            let Some(engine) = prefix_engine(engine) else {
                continue;
            };
            let summary = by_engine.entry(engine).or_insert_with(|| EngineSummary {
                engine,
                entries: 0,
                bytes: 0,
                descriptor: None,
                producers: BTreeMap::new(),
            });
            summary.bytes = summary.bytes.saturating_add(listed.size);
            if is_artifact(&listed.path) {
                summary.entries += 1;
            }
        }
        for (key, producer) in self.producers_in(primary)? {
            if let Some(summary) = by_engine.get_mut(&key.engine) {
                let version = producer.map_or_else(|| "unknown".into(), |p| p.wasmtime);
                *summary.producers.entry(version).or_default() += 1;
            }
        }
        for summary in by_engine.values_mut() {
            summary.descriptor = match primary
                .read_limited(&format!("{}/{DESCRIPTOR}", summary.engine), MAX_DESCRIPTOR)
            {
                Ok(Fetched::Bytes(json)) => serde_json::from_slice(&json).ok(),
                _ => None,
            };
        }
        Ok(by_engine.into_values().collect())
    }

    /// Deletes every engine prefix not in `keep`, from every tier: the way
    /// to retire a wasmtime generation. Returns the number of objects deleted.
    pub fn retain(&self, keep: &[Digest]) -> Result<usize> {
        let mut deleted = 0;
        for backend in self.backends() {
            for listed in backend.list("")? {
                let prefix = listed.path.split('/').next().unwrap_or_default();
                if prefix_engine(prefix).is_some_and(|e| !keep.contains(&e)) {
                    backend.delete(&listed.path)?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Every entry of `backend` with the producer its statement names
    /// (unverified: for listings), or `None` without a readable one.
    fn producers_in(&self, backend: &dyn Backend) -> Result<Vec<(Key, Option<Producer>)>> {
        let listed = backend.list("")?;
        let statements: HashSet<&str> = listed
            .iter()
            .filter_map(|l| l.path.strip_suffix(STATEMENT_SUFFIX))
            .collect();
        let mut keys: Vec<Key> = listed.iter().filter_map(|l| key_of(&l.path)).collect();
        keys.dedup();
        Ok(keys
            .into_iter()
            .map(|key| {
                let producer = statements
                    .contains(key.artifact_path().as_str())
                    .then(|| backend.read_limited(&key.statement_path(), attest::MAX_LEN))
                    .and_then(|read| match read {
                        Ok(Fetched::Bytes(envelope)) => attest::claimed_producer(&envelope),
                        _ => None,
                    });
                (key, producer)
            })
            .collect())
    }

    /// Every entry of the primary tier with its producer, as its statement
    /// names it (not verified: see [`ArtifactStore::verify`]), or `None`
    /// if it has no readable statement (written before statements were).
    pub fn producers(&self) -> Result<Vec<(Key, Option<Producer>)>> {
        self.producers_in(self.primary())
    }

    /// Deletes, from every tier, the entries whose statement names a
    /// producer whose wasmtime version matches `requirement` (`<48.0.8`):
    /// the artifacts of a release found to miscompile. Entries without a
    /// statement are not matched (their producer is unknown; a store with
    /// [`StoreConfig::refused_producers`](crate::StoreConfig) refuses
    /// them at load). Returns the keys deleted (or that would be, with
    /// `dry_run`).
    pub fn remove_produced_by(
        &self,
        requirement: &semver::VersionReq,
        dry_run: bool,
    ) -> Result<Vec<Key>> {
        let mut removed = Vec::new();
        for backend in self.backends() {
            for (key, producer) in self.producers_in(backend)? {
                if !producer.is_some_and(|p| p.matches(requirement)) {
                    continue;
                }
                if !dry_run {
                    remove_entry(backend, &key)?;
                    bump(&self.counters.evictions);
                }
                if !removed.contains(&key) {
                    removed.push(key);
                }
            }
        }
        Ok(removed)
    }

    /// Checks every entry of the primary tier: engine stamp against key and,
    /// with a key configured, the tag; with trusted keys or refused
    /// producers, the statement. Returns the bad entries with the reason;
    /// deletes nothing.
    pub fn verify(&self) -> Result<Vec<(Key, String)>> {
        let primary = self.primary();
        let mut bad = Vec::new();
        for entry in self.list()? {
            let key = entry.key;
            let result = match &self.local {
                Some(local) => self
                    .read_checked(local, &key, &key.artifact_path(), ReadFor::Bytes)
                    .map(drop),
                None => self.read_remote(primary, &key).map(drop),
            };
            if let Err(rejected) = result {
                bad.push((key, rejected.reason));
            }
        }
        Ok(bad)
    }

    /// Objects of the primary tier that are not part of the layout (not an
    /// entry in canonical lowercase-hex form, its `.zst` or `.hmac`, or an
    /// `engine.json` or `engine.section`): lookups ignore them; `verify` users may want to know.
    pub fn strays(&self) -> Result<Vec<String>> {
        Ok(self
            .primary()
            .list("")?
            .into_iter()
            .map(|l| l.path)
            .filter(|path| {
                let entry = path
                    .strip_suffix(TAG_SUFFIX)
                    .or_else(|| path.strip_suffix(STATEMENT_SUFFIX))
                    .unwrap_or(path);
                let prefix_file = |name: &str| {
                    path.strip_suffix(&format!("/{name}"))
                        .is_some_and(|prefix| prefix_engine(prefix).is_some())
                };
                !(is_artifact(entry) || prefix_file(DESCRIPTOR) || prefix_file(SECTION))
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

    /// `gc`, waiting (at most [`GC_LOCK_WAIT`]) for another process's `gc`
    /// to finish (`wait`) or returning at once if one is running. Two never
    /// run at once on one local tier.
    fn gc_with(&self, dry_run: bool, wait: bool) -> Result<GcReport> {
        let primary = self.primary();
        let mut _lock = None;
        let mut temporary_bytes = 0;
        if let Some(local) = &self.local {
            if !dry_run {
                match local.lock_gc(wait.then_some(GC_LOCK_WAIT))? {
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
            temporary_bytes = local
                .temporaries()?
                .iter()
                .fold(0u64, |sum, t| sum.saturating_add(t.size));
        }
        let listed = primary.list("")?;
        let mut report = GcReport::default();
        if let Some(local) = &self.local {
            report.unreadable = local.unreadable_dirs()?;
        }
        let stored: std::collections::HashSet<&str> = listed
            .iter()
            .filter(|l| is_artifact(&l.path))
            .map(|l| l.path.as_str())
            .collect();
        // A tag's artifact is the path without `.hmac`; a raw tag may also
        // be the tag of a compressed object written before separate tags.
        let orphan = |artifact: &str| {
            is_artifact(artifact)
                && !stored.contains(artifact)
                && (artifact.ends_with(ZSTD_SUFFIX)
                    || !stored.contains(format!("{artifact}{ZSTD_SUFFIX}").as_str()))
        };
        // A statement is one for both forms.
        for tag in listed.iter().filter(|l| {
            (l.path.strip_suffix(TAG_SUFFIX).is_some_and(orphan)
                || l.path
                    .strip_suffix(STATEMENT_SUFFIX)
                    .is_some_and(|raw| !raw.ends_with(ZSTD_SUFFIX) && orphan(raw)))
                && l.last_used.elapsed().unwrap_or(Duration::ZERO) > ORPHAN_AGE
        }) {
            if !dry_run {
                primary.delete(&tag.path)?;
            }
            report.orphan_tags += 1;
        }
        let tag_sizes: HashMap<&str, u64> = listed
            .iter()
            .filter_map(|l| Some((l.path.strip_suffix(TAG_SUFFIX)?, l.size)))
            .collect();
        let artifacts: Vec<&Listed> = listed.iter().filter(|l| is_artifact(&l.path)).collect();
        let candidates: Vec<Candidate> = artifacts
            .iter()
            .map(|l| Candidate {
                size: l
                    .size
                    .saturating_add(tag_sizes.get(l.path.as_str()).copied().unwrap_or(0)),
                last_used: l.last_used,
            })
            .collect();
        let chosen = victims(
            &candidates,
            temporary_bytes,
            &Limits::of(&self.config.cache),
        );
        report.entries_before = chosen.count_before;
        report.bytes_before = chosen.bytes_before;
        if let Some(local) = &self.local
            && !dry_run
        {
            report.empty_prefixes = local.remove_empty_prefixes()? as u64;
        }
        if !chosen.over {
            return Ok(report);
        }
        for i in chosen.chosen {
            let listed = artifacts[i];
            let Some(key) = key_of(&listed.path) else {
                continue;
            };
            if !dry_run {
                let compressed = listed.path.ends_with(ZSTD_SUFFIX);
                primary.delete(&listed.path)?;
                primary.delete(&key.tag_path_for(compressed))?;
                // The statement goes with the last form of the entry.
                let other = format!(
                    "{}{}",
                    key.artifact_path(),
                    if compressed { "" } else { ZSTD_SUFFIX }
                );
                if !stored.contains(other.as_str()) {
                    primary.delete(&key.statement_path())?;
                }
                bump(&self.counters.evictions);
            }
            report.bytes_freed = report.bytes_freed.saturating_add(candidates[i].size);
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
    pub(crate) fn maybe_gc(&self, local: &LocalDir) {
        let stamp = local.root().join(GC_STAMP);
        // `symlink_metadata`: a planted link says nothing about our stamp.
        let due = match std::fs::symlink_metadata(&stamp).and_then(|m| m.modified()) {
            // A stamp dated in the future (a clock set back, or a planted
            // stamp) would put off every gc until then: due now.
            Ok(at) => !at
                .elapsed()
                .is_ok_and(|ago| ago < self.config.cache.cleanup_interval()),
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
