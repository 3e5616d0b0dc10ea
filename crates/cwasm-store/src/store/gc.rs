//! Eviction around its policy (`eviction.rs`): the `gc` lock, listing,
//! orphan tags and statements, writers' temporaries, and the deletions; run
//! by `gc` and by the `put` that finds it due.

use super::ArtifactStore;
use crate::backend::{Backend, Listed, LocalDir};
use crate::digest::Key;
use crate::eviction::{Candidate, Limits, victims};
use crate::layout::{GC_STAMP, STATEMENT_SUFFIX, TAG_SUFFIX, ZSTD_SUFFIX, is_artifact, key_of};
use crate::stats::bump;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use wasmtime::Result;

/// A tag without its artifact is a write in progress (tags are written
/// first) until it is this old.
const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// How long a `gc` that waits (`ArtifactStore::gc`, `cwasm gc`) waits for
/// another process's to finish before it fails. One `gc` deletes files for
/// far less than this; a lock held longer is stuck or hostile.
pub(crate) const GC_LOCK_WAIT: Duration = Duration::from_secs(15);

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
                let other = key.object_path(!compressed);
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
        // Read without following links: a planted link says nothing about
        // our stamp.
        let due = match local.gc_stamp() {
            // A stamp dated in the future (a clock set back, or a planted
            // stamp) would put off every gc until then: due now.
            Ok(Some(at)) => !at
                .elapsed()
                .is_ok_and(|ago| ago < self.config.cache.cleanup_interval()),
            Ok(None) | Err(_) => true,
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
