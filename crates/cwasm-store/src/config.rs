//! Store configuration, read from wasmtime's own `[cache]` TOML format so
//! that an existing wasmtime cache configuration file works unchanged.
//!
//! Every key wasmtime accepts is accepted, with wasmtime's units:
//!
//! | key | unit | used here for |
//! |---|---|---|
//! | `directory` | path | the local store directory |
//! | `file-count-soft-limit` | count, SI prefix (`K`, `M`, ...) | eviction |
//! | `files-total-size-soft-limit` | bytes, SI or binary prefix (`512Mi`, `1G`) | eviction |
//! | `file-count-limit-percent-if-deleting` | `NN%` | eviction target |
//! | `files-total-size-limit-percent-if-deleting` | `NN%` | eviction target |
//! | `cleanup-interval` | duration: `30s`, `10m`, `1h`, `1d` | how often puts trigger eviction |
//! | `baseline-compression-level` | zstd level 0..=21 | compressing remote objects |
//! | `worker-event-queue-size`, `optimized-compression-level`, `optimized-compression-usage-counter-threshold`, `optimizing-compression-task-timeout`, `allowed-clock-drift-for-files-from-future` | as wasmtime | validated, otherwise unused (no background worker here) |
//!
//! Unknown keys, and keys outside `[cache]`, are rejected with the key's name,
//! as wasmtime rejects them. Two checks of wasmtime's are not made here: it
//! also refuses an `optimized-compression-level` below the baseline one, and a
//! relative `directory` (wasmtime-internal-cache 48.0.8, `src/config.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::error::Context;
use wasmtime::{Result, bail, format_err};

/// The settings of wasmtime's `[cache]` table, with wasmtime's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfig {
    /// `directory`: where the local store lives.
    pub directory: Option<PathBuf>,
    /// `file-count-soft-limit` (default 65536).
    pub file_count_soft_limit: u64,
    /// `files-total-size-soft-limit` in bytes (default 512 MiB).
    pub files_total_size_soft_limit: u64,
    /// `file-count-limit-percent-if-deleting` (default 70).
    pub file_count_limit_percent_if_deleting: u8,
    /// `files-total-size-limit-percent-if-deleting` (default 70).
    pub files_total_size_limit_percent_if_deleting: u8,
    /// `cleanup-interval` (default 1 hour).
    pub cleanup_interval: Duration,
    /// `baseline-compression-level` (default 3, zstd's default).
    pub baseline_compression_level: i32,
    /// `worker-event-queue-size` (default 16; unused here).
    pub worker_event_queue_size: u64,
    /// `optimized-compression-level` (default 20; unused here).
    pub optimized_compression_level: i32,
    /// `optimized-compression-usage-counter-threshold` (default 256; unused here).
    pub optimized_compression_usage_counter_threshold: u64,
    /// `optimizing-compression-task-timeout` (default 30 minutes; unused here).
    pub optimizing_compression_task_timeout: Duration,
    /// `allowed-clock-drift-for-files-from-future` (default 1 day; unused here).
    pub allowed_clock_drift_for_files_from_future: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            directory: None,
            file_count_soft_limit: 0x10_000,
            files_total_size_soft_limit: 512 << 20,
            file_count_limit_percent_if_deleting: 70,
            files_total_size_limit_percent_if_deleting: 70,
            cleanup_interval: Duration::from_secs(60 * 60),
            baseline_compression_level: 3,
            worker_event_queue_size: 0x10,
            optimized_compression_level: 20,
            optimized_compression_usage_counter_threshold: 0x100,
            optimizing_compression_task_timeout: Duration::from_secs(30 * 60),
            allowed_clock_drift_for_files_from_future: Duration::from_secs(60 * 60 * 24),
        }
    }
}

impl CacheConfig {
    /// Reads a wasmtime cache configuration file.
    pub fn from_file(path: &Path) -> Result<CacheConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read cache config {}", path.display()))?;
        CacheConfig::from_toml(&text)
            .with_context(|| format!("invalid cache config {}", path.display()))
    }

    /// Parses the text of a wasmtime cache configuration file.
    pub fn from_toml(text: &str) -> Result<CacheConfig> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| format_err!("{e}"))?;
        let mut config = CacheConfig::default();
        for key in doc.keys() {
            if key != "cache" {
                bail!("unknown top-level key `{key}`: only the `[cache]` table is allowed");
            }
        }
        let Some(cache) = doc.get("cache") else {
            bail!("missing the `[cache]` table");
        };
        let cache = cache
            .as_table()
            .context("`cache` must be a table (`[cache]`)")?;
        for (key, value) in cache {
            let v = || value_text(key, value);
            match key.as_str() {
                "directory" => {
                    let dir = value
                        .as_str()
                        .with_context(|| format!("`directory` must be a string, got {value}"))?;
                    config.directory = Some(PathBuf::from(dir));
                }
                "file-count-soft-limit" => config.file_count_soft_limit = si(key, &v()?)?,
                "files-total-size-soft-limit" => {
                    config.files_total_size_soft_limit = disk_space(key, &v()?)?
                }
                "file-count-limit-percent-if-deleting" => {
                    config.file_count_limit_percent_if_deleting = percent(key, &v()?)?
                }
                "files-total-size-limit-percent-if-deleting" => {
                    config.files_total_size_limit_percent_if_deleting = percent(key, &v()?)?
                }
                "cleanup-interval" => config.cleanup_interval = duration(key, &v()?)?,
                "baseline-compression-level" => {
                    config.baseline_compression_level = zstd_level(key, value)?
                }
                "optimized-compression-level" => {
                    config.optimized_compression_level = zstd_level(key, value)?
                }
                "worker-event-queue-size" => config.worker_event_queue_size = si(key, &v()?)?,
                "optimized-compression-usage-counter-threshold" => {
                    config.optimized_compression_usage_counter_threshold = si(key, &v()?)?
                }
                "optimizing-compression-task-timeout" => {
                    config.optimizing_compression_task_timeout = duration(key, &v()?)?
                }
                "allowed-clock-drift-for-files-from-future" => {
                    config.allowed_clock_drift_for_files_from_future = duration(key, &v()?)?
                }
                other => bail!("unknown key `{other}` in `[cache]`"),
            }
        }
        Ok(config)
    }
}

/// The store's full configuration: the cache settings plus what wasmtime's
/// cache has no notion of.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Limits and the local directory, in wasmtime's `[cache]` terms.
    pub cache: CacheConfig,
    /// Key for HMAC-SHA-256 entry authentication, at least
    /// [`StoreConfig::MIN_HMAC_KEY_LEN`] bytes. With a key, entries
    /// without a valid tag are never loaded.
    pub hmac_key: Option<Vec<u8>>,
    /// Compress artifacts with zstd when writing them to a remote backend
    /// (the local tier keeps them raw, so they can be memory-mapped).
    pub compress_remote: bool,
    /// The largest artifact the store reads, in bytes: larger local files,
    /// remote objects and decompressed objects are not read (a miss; they
    /// are left in place). Defaults to [`StoreConfig::DEFAULT_MAX_ARTIFACT_SIZE`].
    pub max_artifact_size: u64,
    /// With an HMAC key, verify the tag of every local hit, even of a
    /// *private* entry (one that the file, its directory and the root say
    /// only this user can have written; see docs/store.md). Off by default:
    /// a private entry's tag was verified when it entered the tier, and
    /// only this user (or root) can have changed it since.
    pub reverify_private_entries: bool,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            cache: CacheConfig::default(),
            hmac_key: None,
            compress_remote: false,
            max_artifact_size: StoreConfig::DEFAULT_MAX_ARTIFACT_SIZE,
            reverify_private_entries: false,
        }
    }
}

impl StoreConfig {
    /// 1 GiB: several times the largest artifacts seen in practice.
    pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 1 << 30;
    /// HMAC keys shorter than this (128 bits) are refused.
    pub const MIN_HMAC_KEY_LEN: usize = 16;

    /// Checks the settings that could make the store unsafe or its
    /// arithmetic overflow; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        if let Some(key) = &self.hmac_key
            && key.len() < StoreConfig::MIN_HMAC_KEY_LEN
        {
            bail!(
                "`hmac_key` has {} bytes; it needs at least {} (generate one with \
                 `head -c 32 /dev/urandom > cwasm.key`)",
                key.len(),
                StoreConfig::MIN_HMAC_KEY_LEN
            );
        }
        if self.max_artifact_size == 0 {
            bail!("`max_artifact_size` must be more than 0");
        }
        let c = &self.cache;
        for (name, limit, percent) in [
            (
                "file-count-soft-limit",
                c.file_count_soft_limit,
                c.file_count_limit_percent_if_deleting,
            ),
            (
                "files-total-size-soft-limit",
                c.files_total_size_soft_limit,
                c.files_total_size_limit_percent_if_deleting,
            ),
        ] {
            if limit.checked_mul(u64::from(percent)).is_none() {
                bail!("`{name}` = {limit} is too large: it overflows when applying its percentage");
            }
        }
        Ok(())
    }
}

/// wasmtime writes the limits and durations as strings (`"512Mi"`) and the
/// compression levels as integers; a bare integer is accepted for plain
/// counts too.
fn value_text(key: &str, value: &toml::Value) -> Result<String> {
    match value {
        toml::Value::String(s) => Ok(s.trim().to_string()),
        toml::Value::Integer(i) if *i >= 0 => Ok(i.to_string()),
        other => bail!("`{key}` must be a string such as \"512Mi\", got {other}"),
    }
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(at);
    (num, unit.trim())
}

fn number(key: &str, text: &str, num: &str) -> Result<u64> {
    num.parse::<u64>()
        .with_context(|| format!("`{key}`: `{text}` does not start with a number"))
}

fn si(key: &str, text: &str) -> Result<u64> {
    let (num, unit) = split_unit(text);
    let n = number(key, text, num)?;
    let mul: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        _ => bail!("`{key}`: unknown unit `{unit}` in `{text}` (use K, M, G, T or P)"),
    };
    n.checked_mul(mul)
        .with_context(|| format!("`{key}`: `{text}` is too large"))
}

fn disk_space(key: &str, text: &str) -> Result<u64> {
    let (num, unit) = split_unit(text);
    let n = number(key, text, num)?;
    let mul: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        "T" => 1_000_000_000_000,
        "Ti" => 1 << 40,
        "P" => 1_000_000_000_000_000,
        "Pi" => 1 << 50,
        _ => bail!("`{key}`: unknown unit `{unit}` in `{text}` (use K, Ki, M, Mi, G, Gi, ...)"),
    };
    n.checked_mul(mul)
        .with_context(|| format!("`{key}`: `{text}` is too large"))
}

fn percent(key: &str, text: &str) -> Result<u8> {
    let (num, unit) = split_unit(text);
    if unit != "%" {
        bail!("`{key}`: `{text}` must be a percentage such as \"70%\"");
    }
    let n = number(key, text, num)?;
    if n > 100 {
        bail!("`{key}`: `{text}` is more than 100%");
    }
    Ok(n as u8)
}

fn duration(key: &str, text: &str) -> Result<Duration> {
    let (num, unit) = split_unit(text);
    let n = number(key, text, num)?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(60 * 60),
        "d" => n.checked_mul(60 * 60 * 24),
        _ => bail!("`{key}`: `{text}` needs a unit: s, m, h or d"),
    };
    secs.map(Duration::from_secs)
        .with_context(|| format!("`{key}`: `{text}` is too long"))
}

fn zstd_level(key: &str, value: &toml::Value) -> Result<i32> {
    let level = value
        .as_integer()
        .with_context(|| format!("`{key}` must be an integer, got {value}"))?;
    if !(0..=21).contains(&level) {
        bail!("`{key}`: {level} is not a zstd level (0 to 21)");
    }
    Ok(level as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtime_config_files_work_unchanged() {
        let config = CacheConfig::from_toml(
            r#"
            [cache]
            directory = "/tmp/cache"
            worker-event-queue-size = "16"
            baseline-compression-level = 3
            optimized-compression-level = 20
            optimized-compression-usage-counter-threshold = "256"
            cleanup-interval = "1h"
            optimizing-compression-task-timeout = "30m"
            allowed-clock-drift-for-files-from-future = "1d"
            file-count-soft-limit = "65536"
            files-total-size-soft-limit = "512Mi"
            file-count-limit-percent-if-deleting = "70%"
            files-total-size-limit-percent-if-deleting = "70%"
            "#,
        )
        .unwrap();
        assert_eq!(
            config,
            CacheConfig {
                directory: Some("/tmp/cache".into()),
                ..CacheConfig::default()
            }
        );
        // wasmtime's generated default file: just the table.
        assert_eq!(
            CacheConfig::from_toml("[cache]\n").unwrap(),
            CacheConfig::default()
        );
    }

    #[test]
    fn units() {
        let c = CacheConfig::from_toml(
            "[cache]\nfiles-total-size-soft-limit = \"2Gi\"\nfile-count-soft-limit = \"3K\"\n\
             cleanup-interval = \"45s\"\nfile-count-limit-percent-if-deleting = \"10%\"",
        )
        .unwrap();
        assert_eq!(c.files_total_size_soft_limit, 2 << 30);
        assert_eq!(c.file_count_soft_limit, 3000);
        assert_eq!(c.cleanup_interval, Duration::from_secs(45));
        assert_eq!(c.file_count_limit_percent_if_deleting, 10);
        let c = CacheConfig::from_toml("[cache]\nfiles-total-size-soft-limit = \"1M\"").unwrap();
        assert_eq!(c.files_total_size_soft_limit, 1_000_000);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, needle) in [
            ("[cache]\nbogus = 1", "unknown key `bogus`"),
            ("[other]\n", "unknown top-level key `other`"),
            ("x = 1\n[cache]\n", "unknown top-level key `x`"),
            ("", "missing the `[cache]` table"),
            (
                "[cache]\nfile-count-soft-limit = \"12Q\"",
                "file-count-soft-limit",
            ),
            (
                "[cache]\nfiles-total-size-soft-limit = \"1Xi\"",
                "unknown unit `Xi`",
            ),
            ("[cache]\ncleanup-interval = \"10\"", "needs a unit"),
            (
                "[cache]\nfile-count-limit-percent-if-deleting = \"170%\"",
                "more than 100%",
            ),
            (
                "[cache]\nfile-count-limit-percent-if-deleting = \"70\"",
                "percentage",
            ),
            (
                "[cache]\nbaseline-compression-level = 99",
                "not a zstd level",
            ),
            (
                "[cache]\nfile-count-soft-limit = \"99999999999999999999\"",
                "number",
            ),
            (
                "[cache]\nfile-count-soft-limit = \"99999999999P\"",
                "too large",
            ),
            ("[cache]\ndirectory = 3", "`directory` must be a string"),
            ("[cache", "TOML"),
        ] {
            let err = CacheConfig::from_toml(text).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }
}
