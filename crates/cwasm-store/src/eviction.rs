//! The eviction policy, as a pure function of what is stored and the limits:
//! which entries `gc` deletes. Locking, listing, orphan tags, temporaries and
//! the deletions themselves are `admin.rs`'s.
//!
//! The policy is wasmtime's own cache's (`[cache]` in its TOML, read by
//! wasmtime's `CacheConfig`): nothing is deleted while both the entry count
//! and the total size are within their soft limits; once either is over,
//! least recently used entries are deleted until both are within their
//! `*-limit-percent-if-deleting` share of the soft limits.

use std::time::SystemTime;
use wasmtime::CacheConfig;

/// The limits of one `gc` run, from wasmtime's `[cache]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Entries allowed before anything is deleted.
    pub(crate) count_soft: u64,
    /// Bytes allowed before anything is deleted.
    pub(crate) size_soft: u64,
    /// Entries left once deleting.
    pub(crate) count_target: u64,
    /// Bytes left once deleting.
    pub(crate) size_target: u64,
}

impl Limits {
    pub(crate) fn of(cache: &CacheConfig) -> Limits {
        Limits {
            count_soft: cache.file_count_soft_limit(),
            size_soft: cache.files_total_size_soft_limit(),
            count_target: cache
                .file_count_soft_limit()
                .saturating_mul(u64::from(cache.file_count_limit_percent_if_deleting()))
                / 100,
            size_target: (u128::from(cache.files_total_size_soft_limit())
                * u128::from(cache.files_total_size_limit_percent_if_deleting())
                / 100)
                .min(u128::from(u64::MAX)) as u64,
        }
    }
}

/// One stored entry, as eviction sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    /// Its bytes: the artifact and its tag.
    pub(crate) size: u64,
    /// When it was last used.
    pub(crate) last_used: SystemTime,
}

/// What one run of the policy decides.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Victims {
    /// Entries before.
    pub(crate) count_before: u64,
    /// Bytes before, `other_bytes` included.
    pub(crate) bytes_before: u64,
    /// Whether either soft limit was exceeded (and so deleting began).
    pub(crate) over: bool,
    /// Indices into the candidates, least recently used first.
    pub(crate) chosen: Vec<usize>,
    /// Their bytes.
    pub(crate) bytes_freed: u64,
}

/// The entries of `candidates` to delete under `limits`, least recently
/// used first; `other_bytes` (writes in progress) count towards the size
/// but cannot be deleted. Sums saturate: sizes come from listings that
/// others can plant in. Entries used at the same time go in the order given.
pub(crate) fn victims(candidates: &[Candidate], other_bytes: u64, limits: &Limits) -> Victims {
    let count_before = candidates.len() as u64;
    let bytes_before = candidates
        .iter()
        .fold(other_bytes, |sum, c| sum.saturating_add(c.size));
    let mut out = Victims {
        count_before,
        bytes_before,
        ..Victims::default()
    };
    out.over = count_before > limits.count_soft || bytes_before > limits.size_soft;
    if !out.over {
        return out;
    }
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| candidates[i].last_used);
    let (mut count, mut bytes) = (count_before, bytes_before);
    for i in order {
        if count <= limits.count_target && bytes <= limits.size_target {
            break;
        }
        count = count.saturating_sub(1);
        bytes = bytes.saturating_sub(candidates[i].size);
        out.bytes_freed = out.bytes_freed.saturating_add(candidates[i].size);
        out.chosen.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn limits(count_soft: u64, size_soft: u64, count_target: u64, size_target: u64) -> Limits {
        Limits {
            count_soft,
            size_soft,
            count_target,
            size_target,
        }
    }

    /// Entries of `sizes`, the first used longest ago.
    fn entries(sizes: &[u64]) -> Vec<Candidate> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Candidate {
                size,
                last_used: UNIX_EPOCH + Duration::from_secs(i as u64),
            })
            .collect()
    }

    #[test]
    fn nothing_goes_within_the_soft_limits() {
        let v = victims(&entries(&[10, 10, 10]), 5, &limits(3, 35, 0, 0));
        assert_eq!((v.count_before, v.bytes_before, v.over), (3, 35, false));
        assert!(v.chosen.is_empty());
    }

    #[test]
    fn over_the_count_the_least_recently_used_go_down_to_the_target() {
        let mut e = entries(&[1, 2, 3, 4, 5]);
        // Listed out of order: the order is by use, not by listing.
        e.swap(0, 4);
        let v = victims(&e, 0, &limits(4, u64::MAX, 2, u64::MAX));
        assert_eq!(v.chosen, [4, 1, 2]);
        assert_eq!(v.bytes_freed, 1 + 2 + 3);
        assert!(v.over);
    }

    #[test]
    fn over_the_size_entries_go_until_both_targets_hold() {
        // 100 bytes over a 90-byte soft limit; down to 50 bytes.
        let v = victims(&entries(&[40, 30, 20, 10]), 0, &limits(10, 90, 10, 50));
        assert_eq!(v.chosen, [0, 1]);
        assert_eq!(v.bytes_freed, 70);
        // Writes in progress count, but are not deleted.
        let v = victims(&entries(&[40, 30, 20, 10]), 25, &limits(10, 90, 10, 50));
        assert_eq!(v.chosen, [0, 1, 2]);
        assert_eq!(v.bytes_before, 125);
    }

    #[test]
    fn planted_sizes_saturate_instead_of_overflowing() {
        let v = victims(
            &entries(&[u64::MAX, u64::MAX, 1]),
            u64::MAX,
            &limits(10, 100, 10, 50),
        );
        assert_eq!(v.bytes_before, u64::MAX);
        // The saturated total minus the first entry is zero: it alone goes.
        assert_eq!(v.chosen, [0]);
        assert_eq!(v.bytes_freed, u64::MAX);
    }

    #[test]
    fn the_limits_are_wasmtimes_percentages() {
        let mut cache = CacheConfig::new();
        cache
            .with_file_count_soft_limit(1000)
            .with_file_count_limit_percent_if_deleting(70)
            .with_files_total_size_soft_limit(u64::MAX)
            .with_files_total_size_limit_percent_if_deleting(50);
        let l = Limits::of(&cache);
        assert_eq!((l.count_soft, l.count_target), (1000, 700));
        assert_eq!((l.size_soft, l.size_target), (u64::MAX, u64::MAX / 2));
        // Percentages wasmtime's own parser refuses still give a number.
        cache.with_files_total_size_limit_percent_if_deleting(200);
        assert_eq!(Limits::of(&cache).size_target, u64::MAX);
    }
}
