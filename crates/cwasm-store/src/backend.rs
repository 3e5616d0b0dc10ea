//! Where entries are kept: a local directory, or an object store.
//!
//! Backends deal in opaque objects named by `/`-separated relative paths;
//! the store decides what the objects mean. Every write is atomic: a reader
//! sees the old object, the new one, or none, never a part.

use crate::digest::Digest;
use crate::entry::{DESCRIPTOR, GC_LOCK, SECTION, TMP_PREFIX, prefix_engine};
use crate::fsops::{FileId, Opened, Root, read_all};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// What [`Backend::read_limited`] found.
#[derive(Debug)]
pub enum Fetched {
    /// No such object.
    Missing,
    /// Its bytes.
    Bytes(Vec<u8>),
    /// An object of this many bytes, over the limit: not read.
    TooLarge(u64),
    /// Something that is not an object (a symbolic link, a FIFO, a
    /// directory): not read.
    NotAnObject(String),
}

/// What [`Backend::read_to`] found.
#[derive(Debug)]
pub enum Streamed {
    /// No such object.
    Missing,
    /// The object, this many bytes of it, was written out.
    Written(u64),
    /// An object of (at least) this many bytes, over the limit: not read
    /// past the limit (what was written out is to be discarded).
    TooLarge(u64),
    /// Something that is not an object: not read.
    NotAnObject(String),
}

/// Storage for the store's objects.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// A short description for logs and listings (`/var/cache/x`, `s3://b/p`).
    fn describe(&self) -> String;
    /// The object's bytes, or `None` if there is no such object.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Like [`Backend::read`], but never reads (or holds in memory) more than
    /// `limit` bytes, and reports objects that are not plain data.
    ///
    /// The default reads the whole object first; the backends of this crate
    /// check the size before reading.
    fn read_limited(&self, path: &str, limit: u64) -> Result<Fetched> {
        Ok(match self.read(path)? {
            None => Fetched::Missing,
            Some(bytes) if bytes.len() as u64 > limit => Fetched::TooLarge(bytes.len() as u64),
            Some(bytes) => Fetched::Bytes(bytes),
        })
    }
    /// Like [`Backend::read_limited`], but writes the object's bytes to
    /// `out` as they arrive instead of collecting them, so that a large
    /// object is held in one place only (the store streams artifacts into
    /// the memory they are checked and loaded from).
    ///
    /// The default reads the object with [`Backend::read_limited`], then
    /// writes it out; [`ObjectStoreBackend`] streams.
    fn read_to(
        &self,
        path: &str,
        limit: u64,
        out: &mut (dyn io::Write + Send),
    ) -> Result<Streamed> {
        Ok(match self.read_limited(path, limit)? {
            Fetched::Missing => Streamed::Missing,
            Fetched::TooLarge(len) => Streamed::TooLarge(len),
            Fetched::NotAnObject(what) => Streamed::NotAnObject(what),
            Fetched::Bytes(bytes) => {
                out.write_all(&bytes)
                    .context("failed to hold a fetched object")?;
                Streamed::Written(bytes.len() as u64)
            }
        })
    }
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
    /// The engine prefixes (`<engine-hex>/`) the backend holds, in no
    /// particular order.
    ///
    /// The default lists every object; the backends of this crate list only
    /// the top level.
    fn engines(&self) -> Result<Vec<Digest>> {
        let mut engines: Vec<Digest> = self
            .list("")?
            .iter()
            .filter_map(|l| prefix_engine(l.path.split_once('/')?.0))
            .collect();
        engines.sort();
        engines.dedup();
        Ok(engines)
    }
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
/// Writes go to a temporary file in the destination directory, created
/// exclusively under a random name, are flushed with `fsync`, and renamed
/// over the destination, and the directory is synced: readers never see a
/// partial file, and a crash leaves at most a stray temporary file (named
/// `.tmp-*`, removed by eviction after an hour). Hits refresh the file's
/// modification time, which eviction uses as the time of last use (at most
/// once a minute per entry).
///
/// Nothing is ever read or written outside the root, whatever someone with
/// write access to it plants there: engine directories and entries that are
/// symbolic links are refused rather than followed, and only regular files
/// are read (see the `fsops` module).
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
    fs: Root,
}

/// What a local file costs the disk, for eviction: its allocated blocks,
/// but never more than its length. A sparse file (a planted 1 PiB
/// `.tmp-x`, say) counts what it occupies, not what it claims.
fn stored_size(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.len().min(meta.blocks().saturating_mul(512))
}

/// Temporary files older than this are debris of crashed writers.
const STALE_TMP: Duration = Duration::from_secs(60 * 60);

impl LocalDir {
    /// A backend rooted at `root`, created if needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalDir> {
        let root = root.into();
        let fs = Root::open(&root).with_context(|| {
            format!(
                "failed to create or open store directory {}",
                root.display()
            )
        })?;
        Ok(LocalDir { root, fs })
    }

    /// Opens the entry `path` if it is a regular file of at most `limit`
    /// bytes. The checks and every later use go through the same open file.
    pub(crate) fn open_entry(&self, path: &str, limit: u64) -> Result<Opened> {
        self.check_path(path)?;
        self.fs
            .open_entry(path, limit)
            .with_context(|| format!("failed to open {}", self.root.join(path).display()))
    }

    /// The small file `path` (`Root::read_small`): `None` if it is missing,
    /// not a regular file, or larger than `limit`.
    pub(crate) fn read_small(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.check_path(path)?;
        self.fs
            .read_small(path, limit)
            .with_context(|| format!("failed to read {}", self.root.join(path).display()))
    }

    /// Removes the entry `path` if it is still the file `id` (or, with
    /// `None`, still not a regular file); see `Root::delete_checked`.
    pub(crate) fn delete_checked(&self, path: &str, id: Option<FileId>) -> Result<bool> {
        self.check_path(path)?;
        self.fs
            .delete_checked(path, id)
            .with_context(|| format!("failed to delete {}", self.root.join(path).display()))
    }

    fn check_path(&self, path: &str) -> Result<()> {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() > 2
            || parts
                .iter()
                .any(|c| c.is_empty() || *c == "." || *c == "..")
        {
            bail!("invalid object path `{path}`");
        }
        Ok(())
    }

    /// The directory this backend stores into.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, path: &str) -> Result<PathBuf> {
        self.check_path(path)?;
        Ok(self.root.join(path))
    }

    /// Appends the objects of directory `dir` whose paths start with
    /// `prefix` to `out`, skipping writers' temporary files. A directory
    /// this process may not read (someone else's, in a shared root) is
    /// skipped with a warning: it must not stop every listing, `gc` and
    /// `verify` of the store ([`LocalDir::unreadable_dirs`] names them).
    fn list_dir(&self, dir: &str, prefix: &str, out: &mut Vec<Listed>) -> Result<()> {
        let path = self.file(dir)?;
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!(dir = %path.display(), "cannot read a directory of the store; skipping it");
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("failed to list {}", path.display())),
        };
        for entry in entries {
            let entry = entry?;
            // Not the store's (its names are ASCII), and a lossy
            // conversion could name another file.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = format!("{dir}/{name}");
            if name.starts_with(TMP_PREFIX) || !path.starts_with(prefix) {
                continue;
            }
            // Deleted by a concurrent eviction since `read_dir`: skip.
            let Ok(meta) = entry.metadata() else { continue };
            out.push(Listed {
                path,
                size: stored_size(&meta),
                last_used: meta.modified()?,
            });
        }
        Ok(())
    }

    /// The directories directly under the root that this process may not
    /// read: listings, `gc` and `verify` skip them (and `gc` reports them).
    pub fn unreadable_dirs(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            if let Err(e) = fs::read_dir(dir.path())
                && e.kind() == io::ErrorKind::PermissionDenied
            {
                out.push(dir.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Takes the store's `gc` lock, trying for at most `wait` (`None`: not
    /// at all): `None` if another process holds it and `wait` is `None`.
    pub(crate) fn lock_gc(&self, wait: Option<Duration>) -> Result<Option<std::fs::File>> {
        self.fs
            .lock(GC_LOCK, wait)
            .with_context(|| format!("failed to lock {}", self.root.join(GC_LOCK).display()))
    }

    /// Removes engine directories that hold nothing but, possibly, an
    /// `engine.json` written more than `STALE_TMP` ago. Returns how many.
    pub(crate) fn remove_empty_prefixes(&self) -> Result<usize> {
        let mut removed = 0;
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            let Ok(name) = dir.file_name().into_string() else {
                continue;
            };
            if prefix_engine(&name).is_none() {
                continue;
            }
            // A name that is not UTF-8 is not the store's, and keeps the
            // directory.
            let Ok(names) = fs::read_dir(dir.path()) else {
                continue;
            };
            let names: Vec<String> = names
                .filter_map(|e| {
                    let name = e.ok()?.file_name();
                    Some(name.into_string().unwrap_or_default())
                })
                .collect();
            // A prefix that holds only what describes it (the descriptor,
            // the engine section), written over an hour ago, is empty.
            let old = |name: &String| {
                fs::symlink_metadata(dir.path().join(name))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or(Duration::ZERO) > STALE_TMP)
            };
            if !names
                .iter()
                .all(|n| (n == DESCRIPTOR || n == SECTION) && old(n))
            {
                continue;
            }
            for n in &names {
                self.delete(&format!("{name}/{n}"))?;
            }
            if self.fs.remove_empty_dir(&name)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The writers' temporary files (in the root, for the gc stamp, and in
    /// the engine prefixes), by path, with their sizes.
    pub(crate) fn temporaries(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if dir.file_type()?.is_dir()
                && let Ok(name) = dir.file_name().into_string()
            {
                dirs.push(format!("{name}/"));
            }
        }
        for dir in dirs {
            let entries = match fs::read_dir(self.root.join(&dir)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in entries {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if name.starts_with(TMP_PREFIX) && meta.is_file() {
                    out.push(Listed {
                        path: format!("{dir}{name}"),
                        size: stored_size(&meta),
                        last_used: meta.modified()?,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Removes temporary files left by writers that died mid-write.
    pub fn remove_stale_temporaries(&self) -> Result<usize> {
        let mut removed = 0;
        for tmp in self.temporaries()? {
            let age = tmp.last_used.elapsed().unwrap_or(Duration::ZERO);
            if age > STALE_TMP && self.delete(&tmp.path).is_ok() {
                removed += 1;
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
        match self.read_limited(path, u64::MAX)? {
            Fetched::Missing => Ok(None),
            Fetched::Bytes(bytes) => Ok(Some(bytes)),
            Fetched::TooLarge(_) => unreachable!("no limit"),
            Fetched::NotAnObject(what) => {
                bail!("{}: {what}", self.root.join(path).display())
            }
        }
    }

    fn read_limited(&self, path: &str, limit: u64) -> Result<Fetched> {
        Ok(match self.open_entry(path, limit)? {
            Opened::Missing => Fetched::Missing,
            Opened::NotAFile(what) => Fetched::NotAnObject(what),
            Opened::TooLarge(len) => Fetched::TooLarge(len),
            Opened::File(file, len, ..) => {
                Fetched::Bytes(read_all(&file, len, limit).with_context(|| {
                    format!("failed to read {}", self.root.join(path).display())
                })?)
            }
        })
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.check_path(path)?;
        self.fs
            .write(path, bytes)
            .with_context(|| format!("failed to write {}", self.root.join(path).display()))
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<()> {
        if let Opened::Missing = self.open_entry(path, u64::MAX)? {
            self.write(path, bytes)?;
        }
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.check_path(path)?;
        self.fs
            .delete(path)
            .with_context(|| format!("failed to delete {}", self.root.join(path).display()))
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
                if dir.file_type()?.is_dir()
                    && let Ok(name) = dir.file_name().into_string()
                {
                    self.list_dir(&name, prefix, &mut out)?;
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn engines(&self) -> Result<Vec<Digest>> {
        let names = self
            .fs
            .top_dirs()
            .with_context(|| format!("failed to list {}", self.root.display()))?;
        Ok(names.iter().filter_map(|n| prefix_engine(n)).collect())
    }

    fn local_file(&self, path: &str) -> Option<PathBuf> {
        self.file(path).ok()
    }

    fn touch(&self, path: &str) -> Result<()> {
        self.check_path(path)?;
        self.fs
            .touch(path)
            .with_context(|| format!("failed to touch {}", self.root.join(path).display()))
    }
}

/// An object store: S3 or any S3-compatible server, GCS, Azure, or HTTP
/// (WebDAV), through the `object_store` crate.
///
/// Calls block the calling thread on a private single-threaded tokio
/// runtime, so the backend is simple to use from sync code; called from
/// inside another tokio runtime, they run on a scoped thread of their own
/// (better: call the store from `spawn_blocking`).
///
/// Every call is bounded by [`RemoteOptions::timeout`], and a failed call
/// makes the backend skip the bucket for [`RemoteOptions::skip_after_failure`]:
/// a dead bucket costs one bounded wait, then nothing, instead of every
/// lookup waiting out the client's retries.
pub struct ObjectStoreBackend {
    /// The URL without credentials or query, for logs and errors.
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
    options: RemoteOptions,
    down_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// The URL's user name, password and query values: removed from every
    /// error (the client's own messages include the full URL).
    secrets: Vec<String>,
}

/// How long the object store may take, and how to treat one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    /// The most one call (a read, a write, a listing) may take, the
    /// client's retries included: this is the retry budget, in time rather
    /// than in attempts. Default: 30 s.
    pub timeout: Duration,
    /// The most connecting may take. Default: 2 s.
    pub connect_timeout: Duration,
    /// After a call fails or times out, calls fail at once for this long.
    /// Default: 30 s.
    pub skip_after_failure: Duration,
}

impl Default for RemoteOptions {
    fn default() -> RemoteOptions {
        RemoteOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            skip_after_failure: Duration::from_secs(30),
        }
    }
}

/// A store location (a directory, or an object store URL) as it may be
/// shown: a URL without user name, password or query (where SAS tokens and
/// signatures live); a path as it is.
pub fn shown_location(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(url) if location.contains("://") => redact(&url),
        _ => location.to_string(),
    }
}

/// `url` without user name, password or query (where SAS tokens and
/// signatures live), for anything that is shown.
pub(crate) fn redact(url: &url::Url) -> String {
    let mut shown = url.clone();
    let had_credentials = !shown.username().is_empty() || shown.password().is_some();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    let mut text = shown.to_string();
    if had_credentials {
        text = text.replacen("://", "://<credentials>@", 1);
    }
    if had_query {
        text.push_str("?<redacted>");
    }
    text
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
        ObjectStoreBackend::open_with(url, RemoteOptions::default())
    }

    /// Like [`ObjectStoreBackend::open`], with other time limits.
    pub fn open_with(url: &str, remote: RemoteOptions) -> Result<ObjectStoreBackend> {
        ObjectStoreBackend::open_with_settings(url, remote, &[])
    }

    /// Like [`ObjectStoreBackend::open_with`], with `object_store` settings
    /// (such as `aws_endpoint`) that take precedence over the environment.
    pub fn open_with_settings(
        url: &str,
        remote: RemoteOptions,
        settings: &[(&str, &str)],
    ) -> Result<ObjectStoreBackend> {
        // Not `url` itself in messages: it may carry credentials.
        let parsed = url::Url::parse(url).map_err(|e| format_err!("invalid store URL: {e}"))?;
        let shown = redact(&parsed);
        let mut options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        options.retain(|(k, _)| !settings.iter().any(|(s, _)| s.eq_ignore_ascii_case(k)));
        options.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        options.push((
            "connect_timeout".into(),
            format!("{}ms", remote.connect_timeout.as_millis()),
        ));
        options.push((
            "timeout".into(),
            format!("{}ms", remote.timeout.as_millis()),
        ));
        let mut secrets: Vec<String> = parsed.query_pairs().map(|(_, v)| v.into_owned()).collect();
        secrets.extend(parsed.query().map(str::to_string));
        secrets.extend(parsed.password().map(str::to_string));
        secrets.push(parsed.username().to_string());
        secrets.retain(|s| !s.is_empty());
        // Longest first, so that a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|e| {
            // The client's message quotes the URL whole.
            let mut text = e.to_string().replace(url, &shown);
            for secret in &secrets {
                text = text.replace(secret.as_str(), "<redacted>");
            }
            format_err!("cannot open `{shown}`: {text}")
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the object store's runtime")?;
        Ok(ObjectStoreBackend {
            secrets,
            url: shown,
            store: Arc::from(store),
            prefix,
            runtime,
            options: remote,
            down_until: std::sync::Mutex::new(None),
        })
    }

    /// Runs `call` on the backend's runtime within the time limit, unless
    /// the bucket failed recently; a failure starts a skip period.
    fn run<T: Send>(&self, call: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
        let lock = || self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = *lock() {
            let now = std::time::Instant::now();
            if now < until {
                bail!(
                    "{} failed recently; skipping it for another {:?}",
                    self.url,
                    until - now
                );
            }
        }
        let timeout = self.options.timeout;
        let bounded = async {
            match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(format_err!(
                    "{} did not answer within {timeout:?}",
                    self.url
                )),
            }
        };
        let result = if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking inside a runtime's thread panics: use a thread that
            // belongs to no runtime.
            std::thread::scope(|s| {
                s.spawn(|| self.runtime.block_on(bounded))
                    .join()
                    .unwrap_or_else(|_| Err(format_err!("the object store call panicked")))
            })
        } else {
            self.runtime.block_on(bounded)
        };
        *lock() = match &result {
            Ok(_) => None,
            Err(_) => Some(std::time::Instant::now() + self.options.skip_after_failure),
        };
        result.map_err(|e| {
            let mut text = format!("{e:#}");
            for secret in &self.secrets {
                text = text.replace(secret.as_str(), "<redacted>");
            }
            format_err!("{text}")
        })
    }

    /// Whether the object exists (a HEAD: nothing of it is read).
    fn exists(&self, path: &str) -> Result<bool> {
        let object = self.object(path);
        self.run(async {
            match self.store.head(&object).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(format_err!("failed to look up {}/{path}: {e}", self.url)),
            }
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
        self.run(async {
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

    fn read_limited(&self, path: &str, limit: u64) -> Result<Fetched> {
        let mut bytes = Vec::new();
        Ok(match self.read_to(path, limit, &mut bytes)? {
            Streamed::Missing => Fetched::Missing,
            Streamed::Written(_) => Fetched::Bytes(bytes),
            Streamed::TooLarge(len) => Fetched::TooLarge(len),
            Streamed::NotAnObject(what) => Fetched::NotAnObject(what),
        })
    }

    fn read_to(
        &self,
        path: &str,
        limit: u64,
        out: &mut (dyn io::Write + Send),
    ) -> Result<Streamed> {
        use futures_util::TryStreamExt;
        let object = self.object(path);
        let failed =
            |e: object_store::Error| format_err!("failed to read {}/{path}: {e}", self.url);
        self.run(async {
            let got = match self.store.get(&object).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(Streamed::Missing),
                Err(e) => return Err(failed(e)),
            };
            // As in `read_limited`: the announced size first, then the
            // count, in case the server lied.
            if got.meta.size > limit {
                return Ok(Streamed::TooLarge(got.meta.size));
            }
            let got_size = got.meta.size;
            let mut written = 0u64;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.try_next().await.map_err(failed)? {
                written += chunk.len() as u64;
                if written > limit {
                    return Ok(Streamed::TooLarge(written));
                }
                out.write_all(&chunk)
                    .context("failed to hold a fetched object")?;
            }
            // A body cut short is the network's fault, not the object's:
            // an error (a miss), not a damaged entry.
            if written < got_size {
                bail!(
                    "{}/{path}: the body ended after {written} of {got_size} bytes",
                    self.url
                );
            }
            Ok(Streamed::Written(written))
        })
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        // A single PUT: object stores make it visible atomically.
        let object = self.object(path);
        let payload = PutPayload::from(bytes.to_vec());
        self.run(async {
            self.store
                .put(&object, payload)
                .await
                .map(drop)
                .map_err(|e| format_err!("failed to write {}/{path}: {e}", self.url))
        })
    }

    /// A conditional PUT (`If-None-Match: *`): of two hosts writing at
    /// once, exactly one creates the object. Falls back to a GET then a PUT
    /// on stores without conditional writes.
    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<()> {
        use object_store::{PutMode, PutOptions};
        let object = self.object(path);
        let payload = PutPayload::from(bytes.to_vec());
        let created = self.run(async {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self.store.put_opts(&object, payload, opts).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(true),
                Err(
                    object_store::Error::NotImplemented { .. }
                    | object_store::Error::NotSupported { .. },
                ) => Ok(false),
                Err(e) => Err(format_err!("failed to write {}/{path}: {e}", self.url)),
            }
        })?;
        if !created && !self.exists(path)? {
            self.write(path, bytes)?;
        }
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        let object = self.object(path);
        self.run(async {
            match self.store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(format_err!("failed to delete {}/{path}: {e}", self.url)),
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        use futures_util::TryStreamExt;
        // List under the deepest directory the prefix names, not the store.
        let under = match prefix.rsplit_once('/') {
            Some((dir, _)) => self.object(dir),
            None => self.prefix.clone(),
        };
        let all: Vec<object_store::ObjectMeta> = self.run(async {
            self.store
                .list(Some(&under))
                .try_collect()
                .await
                .map_err(|e| format_err!("failed to list {}: {e}", self.url))
        })?;
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

    fn engines(&self) -> Result<Vec<Digest>> {
        let listed = self.run(async {
            self.store
                .list_with_delimiter(Some(&self.prefix))
                .await
                .map_err(|e| format_err!("failed to list {}: {e}", self.url))
        })?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| prefix_engine(&self.relative(p)?))
            .collect())
    }
}
