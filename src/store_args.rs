//! The options every command that opens a store takes.

use clap::Args;
use cwasm_store::{ArtifactStore, SigningKey, StoreConfig, TrustedKey};
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
    /// Sign the statement of every entry written with this Ed25519 key
    /// (PKCS#8 PEM, as `cwasm keygen` or `openssl genpkey -algorithm
    /// ed25519` writes it).
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// Load (and pass `verify`) only entries whose statement this public
    /// key (PEM) signed for them. Repeat for several keys. A store opened
    /// with trusted keys and no --sign-key writes nothing.
    #[arg(long = "trusted-key", value_name = "FILE")]
    trusted_keys: Vec<PathBuf>,
    /// Refuse entries whose producer's wasmtime version matches this
    /// requirement (`<48.0.8`, `=48.0.7`), or that name no producer: a miss
    /// that compiles again. Repeat for several.
    #[arg(long = "refuse-produced-by", value_name = "REQ")]
    refused_producers: Vec<cwasm_store::semver::VersionReq>,
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
        config.signing_key = self.sign_key.as_deref().map(SigningKey::read).transpose()?;
        config.trusted_keys = self
            .trusted_keys
            .iter()
            .map(|path| TrustedKey::read(path))
            .collect::<Result<_>>()?;
        config.refused_producers = self.refused_producers.clone();
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
