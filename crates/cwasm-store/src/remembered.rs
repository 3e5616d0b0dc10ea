//! Digests of wasm files, remembered by what `fstat` says of the file, so
//! that a repeated lookup of an unchanged file does not hash it again.
//!
//! A file is taken to be unchanged while its device, inode, size,
//! modification time and status-change time all stay the same. The
//! status-change time (`ctime`) is the one no unprivileged writer can set
//! back: any write, truncation, rename onto the name's inode or `chmod`
//! moves it to the current time.
//!
//! Two catches. First, a file system whose times say nothing about its
//! contents: a read-only image (squashfs, erofs, iso9660) carries the times
//! it was built with, so two reproducible images that differ in one byte of
//! a same-size file, mounted in turn at one place from one loop device,
//! show the same device, inode, size and times. So files on image and FUSE
//! file systems are never remembered; the stamp also holds the mount's
//! identity (Linux's unique mount id, which no later mount of the same boot
//! reuses) and the boot's (`/proc/sys/kernel/random/boot_id`, since the
//! unique ids start over at each boot); and where the kernel has no unique
//! mount id (before 6.8), files on loop devices (any file system image) are
//! not remembered either.
//!
//! Second, the clock's granularity. Filesystems stamp times from a
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

/// The largest saved file read: [`CAPACITY`] entries of JSON.
const MAX_SAVED: u64 = 4 << 20;

/// `open` flags, from rustix's constants.
mod libc_flags {
    use rustix::fs::OFlags;
    pub(super) const NOFOLLOW: i32 = OFlags::NOFOLLOW.bits() as i32;
    pub(super) const NONBLOCK: i32 = OFlags::NONBLOCK.bits() as i32;
}

/// Whether a file (or, with `dir`, a directory) of owner `uid` and mode
/// `mode` can be changed by this user or root only: owned by one of them,
/// and writable by neither group nor others, or, for a directory, sticky
/// (as `/tmp` is: others may add names, but not replace ours).
fn safe_owner(uid: u32, mode: u32, dir: bool) -> bool {
    let owner = uid == 0 || uid == rustix::process::geteuid().as_raw();
    owner && (mode & 0o022 == 0 || (dir && mode & 0o1000 != 0))
}

/// What `fstat` says of a file, as far as its contents go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// The mount the file was seen through.
    #[serde(default)]
    mount: Option<u64>,
    /// The boot it was seen in (saved stamps of earlier versions have none,
    /// and match no file where the kernel says which boot this is).
    #[serde(default)]
    boot: Option<u128>,
}

impl FileStamp {
    /// The stamp of the open `file`: all a lookup needs to find a
    /// remembered digest.
    pub(crate) fn current(file: &File) -> std::io::Result<FileStamp> {
        Ok(FileStamp::read(file)?.0)
    }

    /// The stamp of the open `file`, and whether its digest may be
    /// remembered: it has settled (its last change is at least [`SETTLED`]
    /// before now) on a file system whose times can be trusted.
    pub(crate) fn of(file: &File) -> std::io::Result<(FileStamp, bool)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (stamp, unique) = FileStamp::read(file)?;
        // An image mounted from a loop device can be swapped for another
        // with the same stamp; only a unique mount id tells them apart.
        let rememberable = stamp.settled_at(now)
            && (unique || !on_loop_device(stamp.dev))
            && !times_untrusted(file);
        Ok((stamp, rememberable))
    }

    /// The stamp, and whether its mount id is unique.
    fn read(file: &File) -> std::io::Result<(FileStamp, bool)> {
        let m = file.metadata()?;
        let (mount, unique) = mount_of(file);
        let stamp = FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mount,
            boot: boot_id(),
        };
        Ok((stamp, unique))
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

/// The mount `file` is on, and whether that id is unique (never reused by a
/// later mount: Linux 6.8's `STATX_MNT_ID_UNIQUE`) rather than recyclable.
#[cfg(target_os = "linux")]
fn mount_of(file: &File) -> (Option<u64>, bool) {
    use rustix::fs::{AtFlags, StatxFlags};
    const MNT_ID_UNIQUE: u32 = 0x4000;
    let want = StatxFlags::MNT_ID | StatxFlags::from_bits_retain(MNT_ID_UNIQUE);
    match rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, want) {
        Ok(x) if x.stx_mask & MNT_ID_UNIQUE != 0 => (Some(x.stx_mnt_id), true),
        Ok(x) if x.stx_mask & StatxFlags::MNT_ID.bits() != 0 => (Some(x.stx_mnt_id), false),
        _ => (None, false),
    }
}

#[cfg(not(target_os = "linux"))]
fn mount_of(_: &File) -> (Option<u64>, bool) {
    (None, false)
}

/// This boot's identity, read once.
fn boot_id() -> Option<u128> {
    static BOOT: std::sync::OnceLock<Option<u128>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        u128::from_str_radix(&text.trim().replace('-', ""), 16).ok()
    })
}

/// Whether the device `dev` is a loop device (Linux's block major 7).
fn on_loop_device(dev: u64) -> bool {
    cfg!(target_os = "linux") && rustix::fs::major(dev) == 7
}

/// Whether `file` is on a file system whose times need not change with its
/// contents: read-only images (built anywhere, with any times) and FUSE
/// (whatever the daemon says).
#[cfg(target_os = "linux")]
fn times_untrusted(file: &File) -> bool {
    const UNTRUSTED: [u64; 8] = [
        0x7371_7368, // squashfs
        0xE0F5_E1E2, // erofs
        0x9660,      // iso9660
        0x28CD_3D45, // cramfs
        0x453D_CD28, // cramfs, other byte order
        0x7275,      // romfs
        0x1501_3346, // udf
        0x6573_5546, // fuse
    ];
    rustix::fs::fstatfs(file).map_or(true, |fs| UNTRUSTED.contains(&(fs.f_type as u64)))
}

#[cfg(not(target_os = "linux"))]
fn times_untrusted(_: &File) -> bool {
    false
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
    /// and every directory above it must be changeable by this user (or
    /// root) only: a digest planted there would make a lookup load another
    /// module's artifact. Checked before a byte is read: the file is opened
    /// without following a link or blocking (a planted FIFO is refused, not
    /// waited on) and must be a regular file of a bounded size.
    pub(crate) fn load(&self, file: &Path) -> Result<usize> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags::NOFOLLOW | libc_flags::NONBLOCK)
            .open(file);
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("failed to open {}", file.display())),
        };
        let m = opened.metadata()?;
        if !m.file_type().is_file() {
            bail!("not using {}: it is not a regular file", file.display());
        }
        if !safe_owner(m.uid(), m.mode(), false) {
            bail!(
                "not using the remembered digests in {}: it is writable by other users",
                file.display()
            );
        }
        // The directories as they are, links resolved: a link in the path
        // into a directory others can write is refused like the directory.
        let parent = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let parent = std::fs::canonicalize(parent)
            .with_context(|| format!("failed to check {}", parent.display()))?;
        for dir in parent.ancestors() {
            let d = std::fs::metadata(dir)
                .with_context(|| format!("failed to check {}", dir.display()))?;
            if !safe_owner(d.uid(), d.mode(), true) {
                bail!(
                    "not using the remembered digests in {}: {} is writable by other users",
                    file.display(),
                    dir.display()
                );
            }
        }
        if m.len() > MAX_SAVED {
            bail!(
                "not using {}: {} bytes is not a file of remembered digests",
                file.display(),
                m.len()
            );
        }
        let mut text = String::new();
        opened
            .take(MAX_SAVED)
            .read_to_string(&mut text)
            .with_context(|| format!("failed to read {}", file.display()))?;
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
            mount: None,
            boot: None,
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
