//! The local tier: a directory, through `fsops.rs`.

use super::{Backend, Fetched, Listed};
use crate::digest::Digest;
use crate::fsops::{FileId, Listing, Opened, Root, read_all};
use crate::layout::{DESCRIPTOR, GC_LOCK, GC_STAMP, SECTION, TMP_PREFIX, prefix_engine};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmtime::error::Context;
use wasmtime::{Result, bail};

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

    /// What the directory `dir` holds (`""`: the root); a directory this
    /// process may not read (someone else's, in a shared root) is skipped
    /// with a warning, as if empty: it must not stop every listing, `gc`
    /// and `verify` of the store ([`LocalDir::unreadable_dirs`] names
    /// them).
    fn list_names(&self, dir: &str) -> Result<Vec<Listing>> {
        match self.fs.list(dir) {
            Ok(names) => Ok(names.unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!(dir = %self.root.join(dir).display(), "cannot read a directory of the store; skipping it");
                Ok(Vec::new())
            }
            Err(e) => {
                Err(e).with_context(|| format!("failed to list {}", self.root.join(dir).display()))
            }
        }
    }

    /// The names of the directories directly under the root.
    fn dirs(&self) -> Result<Vec<String>> {
        Ok(self
            .list_names("")?
            .into_iter()
            .filter(Listing::is_dir)
            .map(|l| l.name)
            .collect())
    }

    /// Appends the objects of directory `dir` whose paths start with
    /// `prefix` to `out`, skipping writers' temporary files.
    fn list_dir(&self, dir: &str, prefix: &str, out: &mut Vec<Listed>) -> Result<()> {
        self.check_path(dir)?;
        for listing in self.list_names(dir)? {
            let path = format!("{dir}/{}", listing.name);
            if listing.name.starts_with(TMP_PREFIX) || !path.starts_with(prefix) {
                continue;
            }
            out.push(Listed {
                path,
                size: listing.size,
                last_used: listing.modified,
            });
        }
        Ok(())
    }

    /// The directories directly under the root that this process may not
    /// read: listings, `gc` and `verify` skip them (and `gc` reports them).
    pub fn unreadable_dirs(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for dir in self.dirs()? {
            if let Err(e) = self.fs.list(&dir)
                && e.kind() == io::ErrorKind::PermissionDenied
            {
                out.push(dir);
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
        for name in self.dirs()? {
            if prefix_engine(&name).is_none() {
                continue;
            }
            let Ok(Some((names, all))) = self.fs.list_counted(&name) else {
                continue;
            };
            // A prefix that holds only what describes it (the descriptor,
            // the engine section), written over an hour ago, is empty. A
            // name that is not UTF-8 is not the store's, and keeps the
            // directory.
            let old = |l: &Listing| l.modified.elapsed().unwrap_or(Duration::ZERO) > STALE_TMP;
            if all != names.len()
                || !names
                    .iter()
                    .all(|l| (l.name == DESCRIPTOR || l.name == SECTION) && old(l))
            {
                continue;
            }
            for l in &names {
                self.delete(&format!("{name}/{}", l.name))?;
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
        let dirs =
            std::iter::once(String::new()).chain(self.dirs()?.into_iter().map(|d| format!("{d}/")));
        for dir in dirs {
            let names = match self.fs.list(dir.trim_end_matches('/')) {
                Ok(names) => names.unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(e) => return Err(e.into()),
            };
            for l in names {
                if l.name.starts_with(TMP_PREFIX) && l.kind == rustix::fs::FileType::RegularFile {
                    out.push(Listed {
                        path: format!("{dir}{}", l.name),
                        size: l.size,
                        last_used: l.modified,
                    });
                }
            }
        }
        Ok(out)
    }

    /// When eviction last ran (layout 7's modification time), if it has.
    pub(crate) fn gc_stamp(&self) -> Result<Option<SystemTime>> {
        self.fs
            .modified(GC_STAMP)
            .with_context(|| format!("failed to read {}", self.root.join(GC_STAMP).display()))
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
            for dir in self.dirs()? {
                self.list_dir(&dir, prefix, &mut out)?;
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
