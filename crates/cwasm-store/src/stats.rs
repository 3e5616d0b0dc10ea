//! The store's counters ([`Stats`]).

use crate::digest::Digest;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Entries refused by this store's policy and left in place, as other
    /// hosts may accept them: a statement not signed by a trusted key, or
    /// not for this lookup, or naming a refused producer (or none).
    pub refused: u64,
    /// Backend operations that failed (and were worked around).
    pub store_errors: u64,
    /// Wasm files hashed by the `*_file` lookups (an unchanged file is
    /// hashed once, then its digest is remembered).
    pub files_hashed: u64,
    /// Hits answered by another engine's artifact that this engine accepts
    /// (a host without a compiler, or a CPU-feature subset); counted in
    /// `hits` too.
    pub reused: u64,
    /// The engine whose artifact answered the latest of those hits.
    pub last_reused_engine: Option<Digest>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) compiles: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) files_hashed: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) last_reused_engine: Mutex<Option<Digest>>,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
