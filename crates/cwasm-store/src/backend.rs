//! Where entries are kept: a local directory, or an object store.
//!
//! Backends deal in opaque objects named by `/`-separated relative paths;
//! the store decides what the objects mean. Every write is atomic: a reader
//! sees the old object, the new one, or none, never a part.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use wasmtime::error::Context;
use wasmtime::{Result, bail, format_err};

/// An object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Path relative to the backend's root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last used (local directories record reads) or
    /// written (object stores).
    pub last_used: SystemTime,
}

/// Storage for the store's objects.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// A short description for logs and listings (`/var/cache/x`, `s3://b/p`).
    fn describe(&self) -> String;
    /// The object's bytes, or `None` if there is no such object.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces the object atomically.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// Writes the object only if it does not exist yet (best effort on
    /// backends without conditional writes).
    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<()> {
        if self.read(path)?.is_none() {
            self.write(path, bytes)?;
        }
        Ok(())
    }
    /// Deletes the object; deleting a missing object is not an error.
    fn delete(&self, path: &str) -> Result<()>;
    /// Every object whose path starts with `prefix` (`""` for all).
    fn list(&self, prefix: &str) -> Result<Vec<Listed>>;
    /// A file holding exactly the object's bytes, for memory-mapping, if
    /// this backend has one.
    fn local_file(&self, path: &str) -> Option<PathBuf> {
        let _ = path;
        None
    }
    /// Records that the object was used (for least-recently-used eviction).
    fn touch(&self, path: &str) -> Result<()> {
        let _ = path;
        Ok(())
    }
}

/// A directory on a local (or network) file system.
///
/// Writes go to a temporary file in the destination directory, are flushed
/// with `fsync`, and renamed over the destination, and the directory is
/// synced: readers never see a partial file, and a crash leaves at most a
/// stray temporary file (named `.tmp-*`, removed by eviction after an hour).
/// Reads refresh the file's modification time, which eviction uses as the
/// time of last use.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Temporary files older than this are debris of crashed writers.
const STALE_TMP: Duration = Duration::from_secs(60 * 60);

impl LocalDir {
    /// A backend rooted at `root`, created if needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalDir> {
        let root = root.into();
        fs::create_dir_all(&root)
            .with_context(|| format!("failed to create store directory {}", root.display()))?;
        Ok(LocalDir { root })
    }

    /// The directory this backend stores into.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, path: &str) -> Result<PathBuf> {
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("invalid object path `{path}`");
        }
        Ok(self.root.join(path))
    }

    /// Appends the objects of directory `dir` whose paths start with
    /// `prefix` to `out`, skipping writers' temporary files.
    fn list_dir(&self, dir: &str, prefix: &str, out: &mut Vec<Listed>) -> Result<()> {
        let path = self.file(dir)?;
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("failed to list {}", path.display())),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{dir}/{name}");
            if name.starts_with(".tmp-") || !path.starts_with(prefix) {
                continue;
            }
            // Deleted by a concurrent eviction since `read_dir`: skip.
            let Ok(meta) = entry.metadata() else { continue };
            out.push(Listed {
                path,
                size: meta.len(),
                last_used: meta.modified()?,
            });
        }
        Ok(())
    }

    /// Removes temporary files left by writers that died mid-write.
    pub fn remove_stale_temporaries(&self) -> Result<usize> {
        let mut removed = 0;
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?.path();
            if !dir.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                let age = entry
                    .metadata()?
                    .modified()?
                    .elapsed()
                    .unwrap_or(Duration::ZERO);
                if age > STALE_TMP && fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl Backend for LocalDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let file = self.file(path)?;
        match fs::read(&file) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", file.display())),
        }
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let file = self.file(path)?;
        let dir = file.parent().context("object path has no directory")?;
        fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &file)?;
            // Make the rename itself durable.
            File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.with_context(|| format!("failed to write {}", file.display()))
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<()> {
        if !self.file(path)?.exists() {
            self.write(path, bytes)?;
        }
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        let file = self.file(path)?;
        match fs::remove_file(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to delete {}", file.display())),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        // A prefix inside one engine directory reads only that directory.
        if let Some((dir, _)) = prefix.split_once('/') {
            self.list_dir(dir, prefix, &mut out)?;
        } else {
            let top = match fs::read_dir(&self.root) {
                Ok(top) => top,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e).context("failed to list the store"),
            };
            for dir in top {
                let dir = dir?;
                if dir.file_type()?.is_dir() {
                    self.list_dir(&dir.file_name().to_string_lossy(), prefix, &mut out)?;
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn local_file(&self, path: &str) -> Option<PathBuf> {
        self.file(path).ok()
    }

    fn touch(&self, path: &str) -> Result<()> {
        let file = self.file(path)?;
        File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .with_context(|| format!("failed to touch {}", file.display()))
    }
}

/// An object store: S3 or any S3-compatible server, GCS, Azure, or HTTP
/// (WebDAV), through the `object_store` crate.
///
/// Calls block the calling thread on a private single-threaded tokio
/// runtime, so the backend is simple to use from sync code. (Do not call it
/// from inside an async runtime's worker thread; use `spawn_blocking`.)
pub struct ObjectStoreBackend {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("url", &self.url)
            .finish()
    }
}

impl ObjectStoreBackend {
    /// Opens `url` (`s3://bucket/prefix`, `gs://...`, `az://...`,
    /// `http(s)://...`). Credentials, region and endpoint come from the usual
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`, ...).
    pub fn open(url: &str) -> Result<ObjectStoreBackend> {
        let parsed = url::Url::parse(url).with_context(|| format!("invalid store URL `{url}`"))?;
        let options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let (store, prefix) = object_store::parse_url_opts(&parsed, options)
            .map_err(|e| format_err!("cannot open `{url}`: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the object store's runtime")?;
        Ok(ObjectStoreBackend {
            url: url.to_string(),
            store: Arc::from(store),
            prefix,
            runtime,
        })
    }

    fn object(&self, path: &str) -> ObjectPath {
        let mut parts: Vec<_> = self.prefix.parts().collect();
        parts.extend(path.split('/').map(Into::into));
        ObjectPath::from_iter(parts)
    }

    fn relative(&self, path: &ObjectPath) -> Option<String> {
        let rel: Vec<_> = path.prefix_match(&self.prefix)?.collect();
        Some(rel.iter().map(|p| p.as_ref()).collect::<Vec<_>>().join("/"))
    }
}

impl Backend for ObjectStoreBackend {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let object = self.object(path);
        self.runtime.block_on(async {
            match self.store.get(&object).await {
                Ok(got) => match got.bytes().await {
                    Ok(bytes) => Ok(Some(bytes.to_vec())),
                    Err(e) => Err(format_err!("failed to read {}/{path}: {e}", self.url)),
                },
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(format_err!("failed to read {}/{path}: {e}", self.url)),
            }
        })
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        // A single PUT: object stores make it visible atomically.
        let object = self.object(path);
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put(&object, payload))
            .map(drop)
            .map_err(|e| format_err!("failed to write {}/{path}: {e}", self.url))
    }

    fn delete(&self, path: &str) -> Result<()> {
        let object = self.object(path);
        match self.runtime.block_on(self.store.delete(&object)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format_err!("failed to delete {}/{path}: {e}", self.url)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        use futures_util::TryStreamExt;
        // List under the deepest directory the prefix names, not the store.
        let under = match prefix.rsplit_once('/') {
            Some((dir, _)) => self.object(dir),
            None => self.prefix.clone(),
        };
        let all: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&under)).try_collect())
            .map_err(|e| format_err!("failed to list {}: {e}", self.url))?;
        let mut out: Vec<Listed> = all
            .into_iter()
            .filter_map(|meta| {
                let path = self.relative(&meta.location)?;
                path.starts_with(prefix).then(|| Listed {
                    path,
                    size: meta.size,
                    last_used: meta.last_modified.into(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}
