//! Lookups across the tiers: the local tier first, then the remote one,
//! each entry read and checked by `checks.rs`.

use super::{ArtifactStore, used_long_ago};
use crate::backend::Backend;
use crate::checks::{Checked, CheckedArtifact, Checker, Kind, ReadFor, check_kind};
use crate::digest::Key;
use wasmtime::{Engine, Result};

impl ArtifactStore {
    /// The checks, over this store's configuration and tiers.
    pub(crate) fn checker(&self) -> Checker<'_> {
        Checker {
            config: &self.config,
            counters: &self.counters,
            trust: &self.trust,
            local: self.local.as_ref(),
        }
    }

    /// Finds a usable artifact for `key`: local tier, then remote. Entries
    /// that fail a check are evicted and counted; backend errors are logged.
    /// The only error is a caller's: asking for a module under a component's
    /// key, or the reverse.
    pub(crate) fn lookup(
        &self,
        engine: &Engine,
        key: &Key,
        kind: Kind,
    ) -> Result<Option<CheckedArtifact>> {
        let checker = self.checker();
        let path = key.artifact_path();
        if let Some(local) = &self.local {
            match checker.read_checked(local, key, &path, ReadFor::Load) {
                Ok(Some((checked, used, id))) => {
                    let again = checked.try_clone();
                    match checked.probe(engine, kind) {
                        Ok(loaded) => {
                            if used_long_ago(used)
                                && let Err(e) = local.touch(&path)
                            {
                                tracing::debug!(error = %format!("{e:#}"), "could not record last use");
                            }
                            return Ok(Some(loaded));
                        }
                        Err(e) => {
                            check_kind(
                                key,
                                kind,
                                again.as_ref().and_then(CheckedArtifact::precompiled),
                            )?;
                            checker.refused_by_wasmtime(local, key, &e, Checked::Local(Some(id)));
                        }
                    }
                }
                Ok(None) => {}
                Err(rejected) => checker.reject(local, key, &rejected),
            }
        }
        let Some(remote) = self.remote.as_deref() else {
            return Ok(None);
        };
        let hit = match checker.read_remote(remote, key) {
            Ok(Some(hit)) => hit,
            Ok(None) => return Ok(None),
            Err(rejected) => {
                checker.reject(remote, key, &rejected);
                return Ok(None);
            }
        };
        check_kind(key, kind, Engine::detect_precompiled(hit.artifact.bytes()))?;
        // The sealed memory that was checked is loaded in place; the local
        // tier's copy is written from it, off the hit path.
        match hit.checked().probe(engine, kind) {
            Ok(loaded) => {
                self.copy_to_local(key, hit.artifact, hit.statement);
                Ok(Some(loaded))
            }
            Err(e) => {
                checker.refused_by_wasmtime(remote, key, &e, Checked::Remote(hit.path));
                Ok(None)
            }
        }
    }
}
