//! A store of precompiled wasmtime artifacts, keyed on
//! `(SHA-256 of the wasm, Engine::serialization_compatibility_hash())`.
//!
//! Artifacts of many wasmtime versions, configurations and hosts live side by
//! side, each reused wherever it is compatible:
//!
//! ```text
//! <root>/<engine-hex>/<wasm-hex>.cwasm
//! ```
//!
//! one prefix per engine hash, beside a descriptor, optional compressed
//! copies and tags (the full layout, numbered, is the module
//! documentation of `src/layout.rs`; docs/store.md summarises it).
//!
//! Retiring a wasmtime generation is one prefix delete
//! ([`ArtifactStore::retain`]), and a listing says what each prefix is for.
//!
//! A fleet of different CPUs shares one prefix when its engines compile for
//! one [`CpuProfile`] (a target and the CPU features every machine has, from
//! [`HostInfo::detect`] on each kind of machine and [`CpuProfile::baseline`])
//! instead of detecting each host's own features.
//!
//! Before anything is handed to wasmtime's `unsafe` deserialization, the
//! candidate must be a regular file (or object) within
//! [`StoreConfig::max_artifact_size`], its own engine section is read
//! ([`Engine::detect_serialization_compatibility_hash`]) and must equal the
//! key's engine hash, and, with a key configured, its tag must verify; the
//! check and the load use the same memory (a sealed copy, with a key) or the
//! same open file (without). Entries proven bad
//! are evicted, counted, logged and compiled again; anything else (too large,
//! a backend failure, a host lacking a CPU feature) is a miss that leaves
//! shared entries alone.
//!
//! # Threat model
//!
//! With a key, someone who can write to the store's directory or
//! bucket but lacks the key can cause misses and recompiles, never a load of
//! bytes whose tag did not verify, a hang, unbounded memory, or a read or
//! write outside the store's root. Every hit is verified, whoever owns the
//! file: it is copied into sealed memory that can no longer change, its tag
//! is checked there, and wasmtime loads that same memory. Without a key, the checks guard against
//! misfiled and damaged artifacts only: the directory must then be writable
//! by trusted users only. With [`StoreConfig::trusted_keys`], the same holds
//! with public keys: a hit loads only bytes whose statement a trusted key
//! signed for this lookup ([`SigningKey`] on the build farm,
//! [`TrustedKey`] on hosts; `src/attest.rs`). docs/store.md has the
//! details.
//!
//! ```no_run
//! use cwasm_store::ArtifactStore;
//! use wasmtime::Engine;
//!
//! # fn main() -> wasmtime::Result<()> {
//! let engine = Engine::default();
//! let store = ArtifactStore::open("/var/cache/my-app/cwasm")?;
//! let wasm = std::fs::read("app.wasm")?;
//! // Compiles on the first call, loads the stored artifact (mmap) afterwards.
//! let module = store.get_or_compile_module(&engine, &wasm)?;
//! # let _ = module;
//! # Ok(())
//! # }
//! ```
//!
//! [`Engine::detect_serialization_compatibility_hash`]: wasmtime::Engine::detect_serialization_compatibility_hash

mod admin;
mod attest;
mod backend;
mod checks;
mod config;
mod digest;
mod eviction;
#[cfg(feature = "compile")]
mod flight;
mod fsops;
mod inspect;
mod layout;
#[cfg(feature = "compile")]
mod profile;
mod remembered;
mod sealed;
mod stats;
mod store;
mod tag;

pub use admin::{EngineSummary, Entry};
pub use attest::{
    MAX_STATEMENT_LEN, PAYLOAD_TYPE, PREDICATE_TYPE, Producer, Provenance, STATEMENT_TYPE,
    SigningKey, TrustedKey, read_statement,
};
pub use backend::{
    Backend, Fetched, Listed, LocalDir, ObjectStoreBackend, OciBackend, RemoteOptions, Streamed,
    shown_location,
};
pub use config::StoreConfig;
pub use digest::{Digest, Key};
pub use inspect::{ArtifactInfo, FlagSetting, inspect};
pub use layout::EngineDescriptor;
#[cfg(feature = "compile")]
pub use profile::{CpuProfile, HostInfo};
/// The version requirements of [`StoreConfig::refused_producers`].
pub use semver;

/// What the OCI backend ([`OciBackend`]) writes into a registry: the
/// `artifactType` of each kind of manifest and the annotations a registry
/// lists with them (see `backend/oci.rs` for the mapping).
pub mod oci {
    pub use crate::backend::oci::{
        ARTIFACT_TYPE, ENGINE, ENGINE_FILE_TYPE, MAX_MANIFEST, MAX_UNANNOTATED, PATH, PRODUCER,
        REFERRERS_FRESH, REINDEX_AFTER, STATEMENT_TYPE, TAG_TYPE, TARGET,
    };
}
pub use stats::Stats;
pub use store::{ArtifactStore, GcReport, Verdict};
/// wasmtime's own `[cache]` settings, which [`StoreConfig::cache`] holds.
pub use wasmtime::CacheConfig;

/// The crate's modules form layers: no module names another that names it,
/// directly or through others (`ARCHITECTURE.md` draws them). A module's
/// edges are the `crate::<module>` paths in its files (a directory module's
/// files count as one), comments left out.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Each top-level module and the modules it names.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                for inner in std::fs::read_dir(&path).unwrap() {
                    files.push(inner.unwrap().path());
                }
            } else {
                files.push(path);
            }
        }
        for file in files {
            let relative = file.strip_prefix(&src).unwrap();
            let first = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_str()
                .unwrap();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let edges = graph.entry(module.clone()).or_default();
            let mut rest = code.as_str();
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group[..group.find('}').unwrap()]
                        .split(',')
                        .map(|n| n.trim().split("::").next().unwrap())
                        .collect()
                } else {
                    vec![
                        rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                            .unwrap(),
                    ]
                };
                for name in names {
                    if !name.is_empty() && name != module {
                        edges.insert(name.to_string());
                    }
                }
            }
        }
        graph
    }

    #[test]
    fn no_module_names_a_module_that_names_it() {
        let graph = graph();
        // Kahn's algorithm: peel off the modules that name no module left.
        let mut left = graph.clone();
        let mut layers = Vec::new();
        while !left.is_empty() {
            let bottom: Vec<String> = left
                .iter()
                .filter(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
                .map(|(m, _)| m.clone())
                .collect();
            assert!(
                !bottom.is_empty(),
                "a cycle among these modules: {:#?}",
                left
            );
            for m in &bottom {
                left.remove(m);
            }
            layers.push(bottom);
        }
        for (n, layer) in layers.iter().enumerate() {
            println!("layer {n}: {}", layer.join(", "));
        }
        // The layering ARCHITECTURE.md describes.
        let below = |a: &str, b: &str| {
            let at = |m: &str| {
                layers
                    .iter()
                    .position(|l| l.iter().any(|x| x == m))
                    .unwrap()
            };
            at(a) < at(b)
        };
        assert!(below("layout", "backend"));
        assert!(below("backend", "checks"));
        assert!(below("checks", "store"));
        assert!(below("store", "admin"));
    }
}
