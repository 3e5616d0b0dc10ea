//! Artifacts of other engines that this engine accepts: lookups for hosts
//! that cannot compute their own engine hash (wasmtime built without a
//! compiler), and reuse across CPU features.
//!
//! Every prefix keeps its engine's section (layout 9, `engine.section`),
//! whose SHA-256 is the prefix's name, so it needs no tag. For a wasm
//! digest, the store lists the engines it holds, reads their sections
//! (never an artifact), asks wasmtime whether this engine would load each
//! one (`Engine::check_compatible_engine_section`), and looks the wasm up
//! under each accepted engine in turn, best first. The lookup itself is the
//! ordinary one under that engine's key: every check of `checks.rs` applies,
//! the tag (with a key) and the stamp included, and the stamp ties the
//! artifact to the section that was accepted.
//!
//! # Which engines qualify
//!
//! - **A host without a compiler** takes every engine whose section
//!   wasmtime accepts: what `Module::deserialize` would load, it may load.
//! - **A compiling host** takes only engines that are its own except for
//!   CPU features, of which they have a subset (the same wasmtime, target,
//!   Cranelift settings, tunables and wasm features). wasmtime alone would
//!   also accept artifacts compiled at another optimization level or
//!   without Spectre mitigations, which a host that can compile would
//!   rather compile itself.
//!
//! Among those that qualify, the one with the most CPU features is tried
//! first (ties broken by engine hash, so every host chooses alike).
//!
//! # What is cached
//!
//! For the life of the store, per engine: each stored engine's verdict
//! (sections never change: a different section is a different prefix),
//! and for each wasm digest the engine that served it, tried first next
//! time. A new engine in the store is seen at the next lookup that is not
//! answered by a remembered choice.

use super::ArtifactStore;
use crate::backend::{Backend, Fetched};
use crate::checks::{CheckedArtifact, Kind};
use crate::digest::{Digest, Key};
use crate::inspect::SectionParts;
use crate::layout::section_path;
use crate::stats::bump;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use wasmtime::component::Component;
use wasmtime::{Engine, EngineWeak, Module, Result};

/// The largest engine section read: wasmtime's are about a kilobyte.
const MAX_SECTION: u64 = 64 << 10;

/// What this engine makes of a stored engine's section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It would load the stored engine's artifacts, which have this many
    /// CPU features (ISA settings that are on).
    Accepted {
        /// The stored engine's CPU features.
        cpu_features: usize,
    },
    /// It would not, for this reason.
    Refused(String),
}

/// The per-process memory of the choices (see the module documentation).
#[derive(Default)]
pub(crate) struct Choices {
    engines: Mutex<Vec<PerEngine>>,
}

struct PerEngine {
    engine: EngineWeak,
    /// The section this engine writes, if it can compile, and its hash.
    own: Option<(Vec<u8>, Digest)>,
    verdicts: HashMap<Digest, Judged>,
    /// The engine that served each wasm digest; at most [`MAX_CHOICES`].
    chosen: HashMap<Digest, Digest>,
}

/// How many choices are remembered per engine (about 64 bytes each); the
/// memory starts over when full.
const MAX_CHOICES: usize = 4096;

/// What an engine makes of a stored engine.
#[derive(Clone)]
struct Judged {
    /// wasmtime's answer.
    verdict: Verdict,
    /// Whether the stored engine is this (compiling) engine with a subset
    /// of its CPU features.
    cpu_subset: bool,
}

impl Choices {
    /// Runs `f` on what is remembered for `engine`.
    fn with<T>(&self, engine: &Engine, f: impl FnOnce(&mut PerEngine) -> T) -> T {
        let mut engines = self.engines.lock().unwrap_or_else(PoisonError::into_inner);
        engines.retain(|e| e.engine.upgrade().is_some());
        let i = match engines
            .iter()
            .position(|e| e.engine.upgrade().is_some_and(|e| Engine::same(&e, engine)))
        {
            Some(i) => i,
            None => {
                engines.push(PerEngine {
                    engine: engine.weak(),
                    own: own_section(engine).map(|s| {
                        let hash = Digest::of(&s);
                        (s, hash)
                    }),
                    verdicts: HashMap::new(),
                    chosen: HashMap::new(),
                });
                engines.len() - 1
            }
        };
        f(&mut engines[i])
    }
}

impl ArtifactStore {
    /// Every engine the store holds (in any tier), with what `engine` makes
    /// of it: whether it would load that engine's artifacts, and if not,
    /// why. Reads each engine's section, never an artifact; the answers
    /// are remembered for the life of the store.
    ///
    /// This is wasmtime's verdict alone: a compiling host's lookups reuse
    /// fewer of them (only its own engine with fewer CPU features; see
    /// [`ArtifactStore::load_module`]).
    pub fn engine_verdicts(&self, engine: &Engine) -> Result<Vec<(Digest, Verdict)>> {
        Ok(self
            .stored_engines()
            .into_iter()
            .map(|stored| (stored, self.judge(engine, stored).verdict))
            .collect())
    }

    /// Loads the module whose wasm has the SHA-256 `wasm_digest`, compiled
    /// by any stored engine whose artifacts `engine` accepts, or `None`.
    /// Nothing is compiled: this is the lookup of a host that cannot
    /// compile (wasmtime built without Cranelift or Winch), which cannot
    /// compute its engine hash either.
    ///
    /// A host that can compile looks under its own engine hash first, then
    /// reuses only artifacts of its own engine built for fewer CPU
    /// features. The module documentation of `src/store/reuse.rs` says which
    /// engines qualify and in what order; [`Stats::reused`] counts the hits
    /// answered by another engine, and [`Stats::last_reused_engine`] names
    /// the latest.
    ///
    /// [`Stats::reused`]: crate::Stats::reused
    /// [`Stats::last_reused_engine`]: crate::Stats::last_reused_engine
    pub fn load_module(&self, engine: &Engine, wasm_digest: Digest) -> Result<Option<Module>> {
        match self.load(engine, wasm_digest, Kind::Module)? {
            Some(loaded) => Ok(Some(loaded.into_module(engine)?)),
            None => Ok(None),
        }
    }

    /// Like [`ArtifactStore::load_module`], for components.
    pub fn load_component(
        &self,
        engine: &Engine,
        wasm_digest: Digest,
    ) -> Result<Option<Component>> {
        match self.load(engine, wasm_digest, Kind::Component)? {
            Some(loaded) => Ok(Some(loaded.into_component(engine)?)),
            None => Ok(None),
        }
    }

    fn load(&self, engine: &Engine, wasm: Digest, kind: Kind) -> Result<Option<CheckedArtifact>> {
        let own = self.choices.with(engine, |e| e.own.as_ref().map(|o| o.1));
        if let Some(own) = own {
            let key = Key { engine: own, wasm };
            if let Some(loaded) = self.lookup(engine, &key, kind)? {
                bump(&self.counters.hits);
                return Ok(Some(loaded));
            }
        }
        // A compiling engine reuses only if the configuration lets it.
        let found = if own.is_none() || self.config.reuse_cpu_subsets {
            self.lookup_reused(engine, wasm, kind)?
        } else {
            None
        };
        if found.is_none() {
            bump(&self.counters.misses);
        }
        Ok(found)
    }

    /// Looks `wasm` up under the engines `engine` may reuse, best first (the
    /// remembered choice before them). A hit is counted.
    pub(crate) fn lookup_reused(
        &self,
        engine: &Engine,
        wasm: Digest,
        kind: Kind,
    ) -> Result<Option<CheckedArtifact>> {
        let (own, chosen) = self.choices.with(engine, |e| {
            (e.own.as_ref().map(|o| o.1), e.chosen.get(&wasm).copied())
        });
        if let Some(stored) = chosen {
            if let Some(loaded) = self.lookup_served(engine, stored, wasm, kind)? {
                return Ok(Some(loaded));
            }
            self.choices.with(engine, |e| e.chosen.remove(&wasm));
        }
        let mut candidates = Vec::new();
        for stored in self.stored_engines() {
            if Some(stored) == own || Some(stored) == chosen {
                continue;
            }
            let judged = self.judge(engine, stored);
            let Verdict::Accepted { cpu_features } = judged.verdict else {
                continue;
            };
            // A compiling host reuses only its own engine built for fewer
            // CPU features.
            if own.is_some() && !judged.cpu_subset {
                continue;
            }
            candidates.push((cpu_features, stored));
        }
        // Most CPU features first; then by hash, so that hosts agree.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, stored) in candidates {
            if let Some(loaded) = self.lookup_served(engine, stored, wasm, kind)? {
                self.choices.with(engine, |e| {
                    if e.chosen.len() >= MAX_CHOICES {
                        e.chosen.clear();
                    }
                    e.chosen.insert(wasm, stored)
                });
                return Ok(Some(loaded));
            }
        }
        Ok(None)
    }

    /// The ordinary lookup of `wasm` under `stored`'s key; a hit is counted
    /// as served by `stored`.
    fn lookup_served(
        &self,
        engine: &Engine,
        stored: Digest,
        wasm: Digest,
        kind: Kind,
    ) -> Result<Option<CheckedArtifact>> {
        let key = Key {
            engine: stored,
            wasm,
        };
        let found = self.lookup(engine, &key, kind)?;
        if found.is_some() {
            self.served(stored);
        }
        Ok(found)
    }

    fn served(&self, stored: Digest) {
        bump(&self.counters.hits);
        bump(&self.counters.reused);
        *self
            .counters
            .last_reused_engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(stored);
    }

    /// The engines every tier holds, each once. A tier that cannot be
    /// listed is logged and counted, and contributes none.
    fn stored_engines(&self) -> Vec<Digest> {
        let mut all = Vec::new();
        for backend in self.backends() {
            match backend.engines() {
                Ok(engines) => all.extend(engines),
                Err(e) => self
                    .checker()
                    .store_error("could not list the store's engines", &e),
            }
        }
        all.sort();
        all.dedup();
        all
    }

    /// What `engine` makes of `stored`, remembered (unless its section
    /// could not be read, which may be a passing failure).
    fn judge(&self, engine: &Engine, stored: Digest) -> Judged {
        if let Some(judged) = self
            .choices
            .with(engine, |e| e.verdicts.get(&stored).cloned())
        {
            return judged;
        }
        let Some(section) = self.section(stored) else {
            return Judged {
                verdict: Verdict::Refused("no readable engine section".into()),
                cpu_subset: false,
            };
        };
        // Only a section wasmtime accepts is taken apart (for its CPU
        // features, and to compare it with this engine's own).
        let (verdict, theirs) = match engine.check_compatible_engine_section(&section) {
            Ok(()) => {
                let theirs = SectionParts::of(&section);
                let cpu_features = theirs.as_ref().map_or(0, |p| p.isa_on.len());
                (Verdict::Accepted { cpu_features }, theirs)
            }
            Err(e) => (Verdict::Refused(format!("{e:#}")), None),
        };
        self.choices.with(engine, |e| {
            let own = e.own.as_ref().and_then(|o| SectionParts::of(&o.0));
            let cpu_subset = match (&theirs, own) {
                (Some(theirs), Some(own)) => theirs.is_cpu_subset_of(&own),
                _ => false,
            };
            let judged = Judged {
                verdict,
                cpu_subset,
            };
            e.verdicts.insert(stored, judged.clone());
            judged
        })
    }

    /// `stored`'s engine section, from the first tier that has one whose
    /// SHA-256 is `stored` (any other is not that engine's, and ignored).
    fn section(&self, stored: Digest) -> Option<Vec<u8>> {
        let path = section_path(stored);
        // The local tier with one `openat2` beneath its root...
        if let Some(local) = &self.local {
            let read = local.read_small(&path, MAX_SECTION);
            if let Some(section) = self.section_of(local, stored, &path, read) {
                return Some(section);
            }
        }
        // ...and a remote one, only if the local one has no such section,
        // with a bounded GET.
        let remote = self.remote.as_deref()?;
        let read = remote
            .read_limited(&path, MAX_SECTION)
            .map(|fetched| match fetched {
                Fetched::Bytes(bytes) => Some(bytes),
                _ => None,
            });
        self.section_of(remote, stored, &path, read)
    }

    /// `read`, the file `path` of `tier`, if it is `stored`'s section.
    fn section_of(
        &self,
        tier: &dyn Backend,
        stored: Digest,
        path: &str,
        read: Result<Option<Vec<u8>>>,
    ) -> Option<Vec<u8>> {
        match read {
            Ok(Some(section)) if Digest::of(&section) == stored => Some(section),
            Ok(Some(_)) => {
                tracing::warn!(store = %tier.describe(), path, "ignoring an engine section that does not match its prefix");
                None
            }
            Ok(None) => None,
            Err(e) => {
                self.checker()
                    .store_error("could not read an engine section", &e);
                None
            }
        }
    }
}

/// The section `engine` writes, if it can compile.
fn own_section(engine: &Engine) -> Option<Vec<u8>> {
    #[cfg(feature = "compile")]
    if let Ok(section) = engine.serialization_engine_section() {
        return Some(section);
    }
    let _ = engine;
    None
}
