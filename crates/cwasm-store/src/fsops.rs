//! The local tier's file operations, which never leave the store's root.
//!
//! Someone who can write to the store directory can plant symbolic links,
//! FIFOs, devices or huge files where entries are expected, or swap an
//! engine directory for a link to somewhere else. So every operation here
//! works relative to a directory descriptor, never through a path string:
//!
//! - the root is opened once; engine directories are opened from it with
//!   `O_NOFOLLOW | O_DIRECTORY`, so a symbolic link there is refused, not
//!   followed, and a swap after that cannot redirect anything;
//! - entries are opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO opens at once
//!   instead of blocking) and checked with `fstat` on the open descriptor:
//!   only regular files within the size limit are read;
//! - writes create a temporary file exclusively (`O_CREAT | O_EXCL`, which
//!   refuses an existing file or link) under a random name, `fsync` it and
//!   rename it into place within the same directory descriptor, then `fsync`
//!   the directory.
//!
//! Ownership and modes are never taken as provenance: a keyed store verifies
//! every entry it loads, whoever owns it (`checks.rs`, "The rule of a keyed
//! store").

use crate::layout::TMP_PREFIX;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, fstat, fsync, mkdirat, openat, renameat};
use rustix::io::Errno;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One name in a directory of the store ([`Root::list`]).
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) name: String,
    pub(crate) kind: FileType,
    /// What it costs the disk: its allocated blocks, but never more than
    /// its length. A sparse file (a planted 1 PiB `.tmp-x`, say) counts
    /// what it occupies, not what it claims.
    pub(crate) size: u64,
    pub(crate) modified: SystemTime,
}

impl Listing {
    #[allow(clippy::unnecessary_cast)]
    fn of(name: &str, stat: &rustix::fs::Stat) -> Listing {
        let len = u64::try_from(stat.st_size).unwrap_or(0);
        let blocks = u64::try_from(stat.st_blocks).unwrap_or(0);
        Listing {
            name: name.to_string(),
            kind: FileType::from_raw_mode(stat.st_mode),
            size: len.min(blocks.saturating_mul(512)),
            modified: modified(stat),
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
}

/// When `stat`'s file was last modified.
fn modified(stat: &rustix::fs::Stat) -> SystemTime {
    UNIX_EPOCH
        + Duration::new(
            u64::try_from(stat.st_mtime).unwrap_or(0),
            u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
        )
}

/// What opening an entry found.
pub(crate) enum Opened {
    /// No such entry.
    Missing,
    /// A regular file of `len` bytes, open for reading, its modification
    /// time, and its identity.
    File(File, u64, std::time::SystemTime, FileId),
    /// Something that is not an entry: a symbolic link, a FIFO, a device, a
    /// directory. Never read.
    NotAFile(String),
    /// A regular file of this many bytes, over the limit. Never read.
    TooLarge(u64),
}

/// A file's identity (device and inode): what a rejection compares before
/// it deletes a name, so that it deletes the file it checked and not one
/// renamed into place meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    // `st_dev` and `st_ino` are `u64` on Linux, other widths elsewhere.
    #[allow(clippy::unnecessary_cast)]
    fn of(stat: &rustix::fs::Stat) -> FileId {
        FileId {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
        }
    }
}

/// The store's root directory, open.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    fd: Arc<OwnedFd>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// How many times a write creates its directory again after a concurrent
/// `gc` removed it (each time, the directory was empty: a race, not a
/// fault).
const WRITE_ATTEMPTS: u32 = 1000;

/// A name no other writer can predict: 64 bits from the standard library's
/// randomly seeded hasher, plus a counter.
fn random_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{TMP_PREFIX}{:016x}", hasher.finish())
}

impl Root {
    /// Opens (creating it if needed) the directory `path`. The root itself
    /// may be a symbolic link: it is the operator's choice, not an entry.
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(Root { fd: Arc::new(fd) })
    }

    /// The directory holding `path`'s last component, and that component.
    /// `path` is `name` or `dir/name`, already validated by the caller.
    fn parent(&self, path: &str, create: bool) -> io::Result<Option<(Dir, String)>> {
        match path.split_once('/') {
            None => Ok(Some((Dir::Root(self.fd.clone()), path.to_string()))),
            Some((dir, name)) => {
                if create {
                    match mkdirat(&*self.fd, dir, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io(e)),
                    }
                }
                match openat(&*self.fd, dir, DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => Ok(Some((Dir::Sub(fd), name.to_string()))),
                    Err(Errno::NOENT) => Ok(None),
                    Err(Errno::LOOP | Errno::NOTDIR) => Err(io::Error::other(format!(
                        "`{dir}` in the store is not a directory (a symbolic link?); refusing it"
                    ))),
                    Err(e) => Err(io(e)),
                }
            }
        }
    }

    /// Opens the entry `path` for reading if it is a regular file of at
    /// most `limit` bytes.
    pub(crate) fn open_entry(&self, path: &str, limit: u64) -> io::Result<Opened> {
        let Some((dir, name)) = self.parent(path, false)? else {
            return Ok(Opened::Missing);
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match openat(dir.fd(), name.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Opened::Missing),
            Err(Errno::LOOP) => return Ok(Opened::NotAFile("it is a symbolic link".into())),
            Err(e) => return Err(io(e)),
        };
        let stat = fstat(&fd).map_err(io)?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::RegularFile {
            return Ok(Opened::NotAFile(format!(
                "it is not a regular file ({kind:?})"
            )));
        }
        let len = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        if len > limit {
            return Ok(Opened::TooLarge(len));
        }
        let modified = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                u64::try_from(stat.st_mtime).unwrap_or(0),
                u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
            );
        Ok(Opened::File(
            File::from(fd),
            len,
            modified,
            FileId::of(&stat),
        ))
    }

    /// The bytes of the small file `path` (`dir/name`), or `None` if it is
    /// missing, not a regular file, or larger than `limit`: one `openat2`
    /// that resolves beneath the root and follows no link on the way, an
    /// `fstat`, a `read`. For the files read many at a time (the engine
    /// sections of `store/reuse.rs`), where `open_entry`'s two opens would
    /// dominate. Falls back to `open_entry` where `openat2` is missing.
    pub(crate) fn read_small(&self, path: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        use rustix::fs::{ResolveFlags, openat2};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let file = match openat2(&*self.fd, path, flags, Mode::empty(), resolve) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT | Errno::LOOP | Errno::XDEV | Errno::NOTDIR) => return Ok(None),
            Err(Errno::NOSYS | Errno::PERM) => {
                return match self.open_entry(path, limit)? {
                    Opened::File(file, len, ..) => read_all(&file, len, limit).map(Some),
                    _ => Ok(None),
                };
            }
            Err(e) => return Err(io(e)),
        };
        let stat = fstat(&file).map_err(io)?;
        let len = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile || len > limit {
            return Ok(None);
        }
        read_all(&file, len, limit).map(Some)
    }

    /// The names in the root directory that are directories (or whose type
    /// the file system does not say), read through the held descriptor.
    pub(crate) fn top_dirs(&self) -> io::Result<Vec<String>> {
        let mut dir = rustix::fs::Dir::read_from(&*self.fd).map_err(io)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(io)?;
            if matches!(entry.file_type(), FileType::Directory | FileType::Unknown)
                && let Ok(name) = entry.file_name().to_str()
            {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// What the directory `dir` of the store holds (`""`: the root), read
    /// through the held descriptor: each name that is UTF-8, with what
    /// `fstatat` says of it without following links. `None` if `dir` does
    /// not exist; a directory this process may not read is an error of
    /// kind `PermissionDenied`. A name deleted meanwhile is left out.
    pub(crate) fn list(&self, dir: &str) -> io::Result<Option<Vec<Listing>>> {
        Ok(self.list_counted(dir)?.map(|(listed, _)| listed))
    }

    /// [`Root::list`], and how many names the directory holds in all
    /// (those that are not UTF-8 included).
    pub(crate) fn list_counted(&self, dir: &str) -> io::Result<Option<(Vec<Listing>, usize)>> {
        let fd = if dir.is_empty() {
            rustix::io::dup(&*self.fd).map_err(io)?
        } else {
            match openat(&*self.fd, dir, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(io(e)),
            }
        };
        let mut names = rustix::fs::Dir::read_from(&fd).map_err(io)?;
        let mut out = Vec::new();
        let mut all = 0;
        while let Some(entry) = names.read() {
            let entry = entry.map_err(io)?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            all += 1;
            // Not the store's (its names are ASCII), and a lossy
            // conversion could name another file.
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            let stat = match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io(e)),
            };
            out.push(Listing::of(name, &stat));
        }
        Ok(Some((out, all)))
    }

    /// When the file `name` in the root was last modified, without
    /// following a link; `None` if it is missing.
    pub(crate) fn modified(&self, name: &str) -> io::Result<Option<SystemTime>> {
        match rustix::fs::statat(&*self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(modified(&stat))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Replaces `path` atomically with `bytes`.
    pub(crate) fn write(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Another process's `gc` removes an engine directory while it is
        // empty, which it is between our `mkdirat` and our temporary file:
        // then create it again. Once the temporary file is in it, it is not
        // empty and stays.
        let mut vanished = 0;
        let (dir, name, tmp, fd) = loop {
            let Some((dir, name)) = self.parent(path, true)? else {
                vanished += 1;
                if vanished > WRITE_ATTEMPTS {
                    return Err(io::Error::other("the directory vanished while writing"));
                }
                std::thread::yield_now();
                continue;
            };
            let tmp = random_name();
            match openat(dir.fd(), tmp.as_str(), flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => break (dir, name, tmp, fd),
                // Someone planted this name: pick another.
                Err(Errno::EXIST) => continue,
                // The directory was removed after we opened it.
                Err(Errno::NOENT) if vanished < WRITE_ATTEMPTS => {
                    vanished += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(io(e)),
            }
        };
        let result = (|| {
            let mut file = File::from(fd);
            file.write_all(bytes)?;
            file.sync_all()?;
            renameat(dir.fd(), tmp.as_str(), dir.fd(), name.as_str()).map_err(io)?;
            fsync(dir.fd()).map_err(io)
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(dir.fd(), tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Removes `path` (a symbolic link is removed, not followed). A missing
    /// entry is not an error.
    pub(crate) fn delete(&self, path: &str) -> io::Result<()> {
        let Some((dir, name)) = self.parent(path, false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(dir.fd(), name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    /// Removes `path` if it is still what was checked: the regular file
    /// `id` (`Some`), or something that is not a regular file (`None`: a
    /// symbolic link, a FIFO). Returns whether it removed it. The name is
    /// compared and then removed, so a rename into place in the microseconds
    /// between the two can still lose; a writer's rename after the removal
    /// is never undone.
    pub(crate) fn delete_checked(&self, path: &str, id: Option<FileId>) -> io::Result<bool> {
        let Some((dir, name)) = self.parent(path, false)? else {
            return Ok(false);
        };
        let stat = match rustix::fs::statat(dir.fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        let regular = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile;
        let same = match id {
            Some(id) => regular && FileId::of(&stat) == id,
            None => !regular,
        };
        if !same {
            return Ok(false);
        }
        match rustix::fs::unlinkat(dir.fd(), name.as_str(), AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io(e)),
        }
    }

    /// Sets `path`'s modification time to now, if it is a regular file.
    pub(crate) fn touch(&self, path: &str) -> io::Result<()> {
        match self.open_entry(path, u64::MAX)? {
            Opened::File(file, ..) => {
                let now = rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                };
                let times = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_OMIT,
                    },
                    last_modification: now,
                };
                rustix::fs::futimens(&file, &times).map_err(io)
            }
            Opened::Missing | Opened::NotAFile(_) | Opened::TooLarge(_) => Ok(()),
        }
    }
}

enum Dir {
    Root(Arc<OwnedFd>),
    Sub(OwnedFd),
}

impl Dir {
    fn fd(&self) -> &OwnedFd {
        match self {
            Dir::Root(fd) => fd,
            Dir::Sub(fd) => fd,
        }
    }
}

impl Root {
    /// Takes the exclusive lock on the file `name` in the root (created if
    /// needed, never through a symbolic link). With `wait`, tries for that
    /// long and then fails; otherwise returns `None` at once if another
    /// process holds it. The lock is released when the returned file is
    /// closed.
    ///
    /// `flock` needs only an open file, not write permission: so that only
    /// the store's writers can take the lock (and stop every other gc), the
    /// file is readable by its owner only, or by its group too where the
    /// root is group-writable (a store shared by a group). A lock file this
    /// user created with a wider mode (earlier versions: 0644) is narrowed.
    pub(crate) fn lock(&self, name: &str, wait: Option<Duration>) -> io::Result<Option<File>> {
        use rustix::fs::{FlockOperation, flock};
        let shared = fstat(&*self.fd).map_err(io)?.st_mode & 0o020 != 0;
        let mode = if shared { 0o660 } else { 0o600 };
        let flags = OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match openat(
            &*self.fd,
            name,
            flags | OFlags::RDWR,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => fd,
            // A group member whose umask took the group's write bit when
            // another member created it: reading is enough for `flock`.
            Err(Errno::ACCESS) => {
                openat(&*self.fd, name, flags | OFlags::RDONLY, Mode::empty()).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        let stat = fstat(&fd).map_err(io)?;
        if stat.st_uid == rustix::process::geteuid().as_raw() && stat.st_mode & 0o777 != mode {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io)?;
        }
        let deadline = wait.map(|wait| std::time::Instant::now() + wait);
        loop {
            match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(File::from(fd))),
                Err(Errno::INTR) => {}
                Err(Errno::WOULDBLOCK) => match deadline {
                    None => return Ok(None),
                    Some(deadline) if std::time::Instant::now() >= deadline => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "another process has held the store's `{name}` for more than {:?}",
                                wait.unwrap_or_default()
                            ),
                        ));
                    }
                    Some(_) => std::thread::sleep(Duration::from_millis(50)),
                },
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Removes the directory `name` if it is empty (and not a link).
    pub(crate) fn remove_empty_dir(&self, name: &str) -> io::Result<bool> {
        match rustix::fs::unlinkat(&*self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT | Errno::NOTDIR) => Ok(false),
            Err(e) => Err(io(e)),
        }
    }
}

/// Reads all of `file`, which `fstat` said has `len` bytes, reading at most
/// `limit` bytes even if it grew since.
pub(crate) fn read_all(file: &File, len: u64, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(len.min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other(format!(
            "grew past the limit of {limit} bytes while being read"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rejection deletes the file it checked, not one renamed into place
    /// since; a name checked as a non-file is deleted only while it still
    /// is not a regular file.
    #[test]
    fn delete_checked_deletes_only_what_was_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.write("p/entry", b"bad").unwrap();
        let Opened::File(_, _, _, checked) = root.open_entry("p/entry", 100).unwrap() else {
            panic!("not opened");
        };
        // A writer renames a good entry into place after the check.
        root.write("p/entry", b"good").unwrap();
        assert!(!root.delete_checked("p/entry", Some(checked)).unwrap());
        assert_eq!(std::fs::read(dir.path().join("p/entry")).unwrap(), b"good");
        let Opened::File(_, _, _, now) = root.open_entry("p/entry", 100).unwrap() else {
            panic!("not opened");
        };
        assert!(root.delete_checked("p/entry", Some(now)).unwrap());
        assert!(!dir.path().join("p/entry").exists());
        // A planted link is removed; a file there now is not.
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("p/link")).unwrap();
        assert!(root.delete_checked("p/link", None).unwrap());
        root.write("p/link", b"good").unwrap();
        assert!(!root.delete_checked("p/link", None).unwrap());
        assert!(dir.path().join("p/link").exists());
        assert!(!root.delete_checked("p/missing", None).unwrap());
    }

    /// A writer racing `gc`s that remove its engine directory while it is
    /// empty still writes: the directory is created again. (Before, the
    /// write failed with "the directory vanished" or ENOENT.)
    #[test]
    fn writes_survive_a_concurrent_removal_of_their_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let remover = {
            let (root, done) = (Root::open(dir.path()).unwrap(), done.clone());
            std::thread::spawn(move || {
                // As often as every `gc` of a busy store together could,
                // and far more often than any one does (once per run).
                while !done.load(Ordering::Relaxed) {
                    let _ = root.remove_empty_dir("prefix");
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
        };
        for i in 0..300 {
            let path = format!("prefix/entry-{i}");
            root.write(&path, b"x").unwrap();
            root.delete(&path).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        remover.join().unwrap();
    }
}
