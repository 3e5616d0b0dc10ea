//! What operators do with a store, on top of it: list, verify, retire
//! generations and a release's artifacts. (Eviction, which a `put` can
//! start, is the store's own: `store/gc.rs`.)

use crate::attest::{self, Producer};
use crate::backend::{Backend, Fetched, Listed};
use crate::checks::ReadFor;
use crate::digest::{Digest, Key};
use crate::layout::{
    DESCRIPTOR, EngineDescriptor, MAX_DESCRIPTOR, SECTION, STATEMENT_SUFFIX, TAG_SUFFIX,
    descriptor_path, is_artifact, key_of, prefix_engine,
};
use crate::stats::bump;
use crate::store::ArtifactStore;
use crate::store::remove_entry;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::UNIX_EPOCH;
use wasmtime::Result;

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

impl ArtifactStore {
    /// Every artifact of the primary tier (local if there is one), by key.
    pub fn list(&self) -> Result<Vec<Entry>> {
        Ok(entries(self.primary().list("")?))
    }

    /// A summary per engine-hash prefix of the primary tier, with its
    /// entries counted by producer (which reads every entry's statement:
    /// one small read per entry, one request each on an object store).
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
            summary.descriptor =
                match primary.read_limited(&descriptor_path(summary.engine), MAX_DESCRIPTOR) {
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
                    .then(|| backend.read_limited(&key.statement_path(), attest::MAX_STATEMENT_LEN))
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
                    .checker()
                    .read_checked(local, &key, &key.artifact_path(), ReadFor::Bytes)
                    .map(drop),
                None => self.checker().read_remote(primary, &key).map(drop),
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
