//! The options every command that opens a store takes.

use clap::Args;
use cwasm_store::{ArtifactStore, StoreConfig};
use std::path::PathBuf;
use wasmtime::Result;
use wasmtime::error::Context;

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Directory or object store URL of the store.
    #[arg(long)]
    pub store: Option<String>,
    /// A wasmtime cache config file (`[cache]` TOML, as `wasmtime -C
    /// cache-config=FILE` takes): limits, and the directory when --store is
    /// not given.
    #[arg(long, value_name = "FILE")]
    cache_config: Option<PathBuf>,
    /// File holding the key for entry tags (keyed BLAKE3; HMAC-SHA-256 tags
    /// of earlier versions are still accepted). With a key, every hit is
    /// verified before it runs.
    #[arg(long)]
    hmac_key_file: Option<PathBuf>,
    /// Compress artifacts with zstd in object stores.
    #[arg(long)]
    compress: bool,
}

impl StoreArgs {
    pub fn open(&self) -> Result<ArtifactStore> {
        self.open_with(|_| {})
    }

    /// Like [`StoreArgs::open`], with `adjust` applied to the configuration.
    pub fn open_with(&self, adjust: impl FnOnce(&mut StoreConfig)) -> Result<ArtifactStore> {
        let (mut config, directory) = match &self.cache_config {
            Some(path) => StoreConfig::from_cache_file(path)?,
            None => (StoreConfig::default(), None),
        };
        config.hmac_key = match &self.hmac_key_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("failed to read the store key {}", path.display()))?,
            ),
            None => None,
        };
        config.compress_remote = self.compress;
        adjust(&mut config);
        let location = match (&self.store, directory) {
            (Some(store), _) => store.clone(),
            (None, Some(dir)) => dir.display().to_string(),
            (None, None) => default_store()?.display().to_string(),
        };
        ArtifactStore::open_location(&location, config).with_context(|| {
            format!(
                "failed to open the store at {}",
                cwasm_store::shown_location(&location)
            )
        })
    }
}

/// `cwasm` in the platform's cache directory, found as wasmtime's own cache
/// finds its directory (`directories-next`): `$XDG_CACHE_HOME` (when
/// absolute) or `~/.cache` on Linux, `~/Library/Caches` on macOS, the local
/// application data folder on Windows.
pub fn default_store() -> Result<PathBuf> {
    let dirs = directories_next::BaseDirs::new()
        .context("no home directory to find a cache directory in: pass --store")?;
    Ok(dirs.cache_dir().join("cwasm"))
}
