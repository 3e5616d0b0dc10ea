//! Digests of wasm files, remembered by what `fstat` says of the file, so
//! that a repeated lookup of an unchanged file does not hash it again.
//!
//! A file is taken to be unchanged while its device, inode, size,
//! modification time and status-change time all stay the same. The
//! status-change time (`ctime`) is the one no unprivileged writer can set
//! back: any write, truncation, rename onto the name's inode or `chmod`
//! moves it to the current time.
//!
//! The catch is the clock's granularity. Filesystems stamp times from a
//! coarse clock (a few milliseconds on Linux, whole seconds on some), so a
//! file rewritten in place with the same size within one tick of its
//! previous change keeps all five values. Like git's "racily clean" index
//! entries, a digest is therefore remembered only for a file whose last
//! change is at least [`SETTLED`] older than the moment it was examined: any
//! later change then gets a later time stamp. A file that changed more
//! recently is hashed on every call until it settles.
//!
//! The memory lives in the `ArtifactStore`; a program that runs once per
//! lookup (the `cwasm` CLI) saves it to a file only its user can write and
//! loads it again next time.

use crate::digest::Digest;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime::error::Context;
use wasmtime::{Result, bail};

/// How much older than "now" a file's last change must be for its digest
/// to be remembered: more than the coarsest time stamps in common use (one
/// second; two on FAT).
pub(crate) const SETTLED: Duration = Duration::from_secs(3);

/// At most this many files are remembered; past it, the memory starts over.
const CAPACITY: usize = 4096;

/// What `fstat` says of a file, as far as its contents go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of the open `file`, and whether it has settled (its last
    /// change is at least [`SETTLED`] before now).
    pub(crate) fn of(file: &File) -> std::io::Result<(FileStamp, bool)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let m = file.metadata()?;
        let stamp = FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        };
        Ok((stamp, stamp.settled_at(now)))
    }

    /// Whether both times are at least [`SETTLED`] before `now` (a duration
    /// since the Unix epoch).
    fn settled_at(&self, now: Duration) -> bool {
        let latest = self.mtime.max(self.ctime);
        let Ok(secs) = u64::try_from(latest.0) else {
            // Before 1970: settled, whatever the clock says.
            return true;
        };
        let changed = Duration::new(secs, u32::try_from(latest.1).unwrap_or(0));
        now.checked_sub(SETTLED)
            .is_some_and(|limit| changed < limit)
    }
}

/// The remembered digests.
#[derive(Default)]
pub(crate) struct Remembered {
    digests: Mutex<HashMap<FileStamp, Digest>>,
}

impl Remembered {
    /// The digest remembered for a file with this stamp.
    pub(crate) fn get(&self, stamp: &FileStamp) -> Option<Digest> {
        let digests = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
        digests.get(stamp).copied()
    }

    /// Remembers `digest` for a file with this (settled) stamp.
    pub(crate) fn remember(&self, stamp: FileStamp, digest: Digest) {
        let mut digests = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
        if digests.len() >= CAPACITY {
            digests.clear();
        }
        digests.insert(stamp, digest);
    }

    /// Adds the digests saved in `file` by [`Remembered::save`]. The file
    /// and its directory must be writable by this user only: a digest
    /// planted there would make a lookup load another module's artifact.
    pub(crate) fn load(&self, file: &Path) -> Result<usize> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", file.display())),
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        for path in [file, dir] {
            let m = std::fs::metadata(path)?;
            if !crate::fsops::only_ours_by(m.uid(), m.mode()) {
                bail!(
                    "not using the remembered digests in {}: {} is writable by other users",
                    file.display(),
                    path.display()
                );
            }
        }
        let saved: Vec<(FileStamp, Digest)> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a file of remembered digests", file.display()))?;
        let n = saved.len();
        for (stamp, digest) in saved {
            self.remember(stamp, digest);
        }
        Ok(n)
    }

    /// Writes every remembered digest to `file` (atomically, readable and
    /// writable by this user only).
    pub(crate) fn save(&self, file: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let saved: Vec<(FileStamp, Digest)> = {
            let digests = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
            digests.iter().map(|(s, d)| (*s, *d)).collect()
        };
        let json = serde_json::to_vec(&saved)?;
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            out.write_all(&json)?;
            out.sync_all()?;
            std::fs::rename(&tmp, file)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.with_context(|| format!("failed to write {}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed_at(secs: i64, nsec: i64) -> FileStamp {
        FileStamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: (secs, nsec),
            ctime: (secs, nsec),
        }
    }

    #[test]
    fn only_files_changed_well_before_now_have_settled() {
        let now = Duration::from_secs(1_000_000);
        // Changed this very tick, or within the margin: not settled.
        assert!(!changed_at(1_000_000, 0).settled_at(now));
        assert!(!changed_at(999_998, 0).settled_at(now));
        assert!(!changed_at(999_997, 1).settled_at(now));
        // Changed more than the margin ago: settled.
        assert!(changed_at(999_996, 999_999_999).settled_at(now));
        assert!(changed_at(0, 0).settled_at(now));
        // A time stamp in the future (a clock set back): not settled.
        assert!(!changed_at(2_000_000, 0).settled_at(now));
        // Either time counts: a recent ctime with an old mtime (a rewrite
        // that restored the mtime with `touch -d`) is not settled.
        let mut restored = changed_at(0, 0);
        restored.ctime = (999_999, 0);
        assert!(!restored.settled_at(now));
    }
}
