//! Memory that can no longer change: where a keyed store authenticates an
//! artifact, and from which wasmtime then loads it without another copy.
//!
//! A check is worth only as much as the guarantee that the bytes loaded are
//! the bytes checked. A file in the store can be rewritten in place by
//! anyone who can write to it, at any time, and a memory-mapped file shows
//! every such write; so a keyed lookup first copies the entry into a
//! *sealed* `memfd` (Linux): an anonymous file that only this process holds,
//! filled in the kernel (`sendfile`, no copy through user space), then
//! sealed with `F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`,
//! after which no one, this process included, can change its bytes or its
//! size. The tag and the engine stamp are checked over a read-only mapping
//! of the sealed file, and wasmtime maps the same file
//! (`Module::deserialize_open_file`): one copy, one hash pass, no re-read.
//!
//! Where memfds are missing (another OS, an old kernel, a sandbox that
//! forbids executable memfds through `vm.memfd_noexec = 2`), [`Sealed`]
//! holds a private heap buffer instead: as sound (no one else can write
//! it), but wasmtime copies it once more into executable memory
//! (`Module::deserialize`).
//!
//! This module also maps an open file read-only ([`with_mapping`]), to read
//! an unkeyed entry's stamp through the descriptor the store holds.

use std::fs::File;
use std::io::{self, Read, Write};

/// Bytes that can no longer change: a sealed memfd and its read-only
/// mapping, or a heap buffer no one else can reach.
pub(crate) struct Sealed(Inner);

enum Inner {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Memfd(File, memfd::Map),
    Heap(Vec<u8>),
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("len", &self.bytes().len())
            .field("memfd", &self.file().is_some())
            .finish()
    }
}

impl Sealed {
    /// A sealed copy of the first `len` bytes of `file` (fewer if it
    /// shrank meanwhile; what was copied is what is checked).
    pub(crate) fn copy_of(file: &File, len: u64) -> io::Result<Sealed> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(memfd) = memfd::create()? {
            memfd::fill_from(&memfd, file, len)?;
            return memfd::seal(memfd);
        }
        Sealed::private_copy_of(file, len)
    }

    /// A copy of the first `len` bytes of `file` in a private heap buffer:
    /// as unchangeable as a sealed memfd (no one else can write it), but
    /// not something wasmtime can map. For bytes that are read rather than
    /// loaded (`get`, `verify`), and where there are no memfds.
    pub(crate) fn private_copy_of(file: &File, len: u64) -> io::Result<Sealed> {
        let mut bytes = Vec::new();
        // A lack of memory is an error (a miss), not an abort.
        bytes
            .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        file.take(len).read_to_end(&mut bytes)?;
        Ok(Sealed(Inner::Heap(bytes)))
    }

    /// The bytes as a vector: moved out of a heap buffer, copied out of a
    /// memfd.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self.0 {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Inner::Memfd(_, map) => map.bytes().to_vec(),
            Inner::Heap(bytes) => bytes,
        }
    }

    /// A writer whose bytes become a [`Sealed`] with [`SealedWriter::seal`].
    /// `hint` is the expected length, if known.
    pub(crate) fn writer(hint: u64) -> io::Result<SealedWriter> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(memfd) = memfd::create()? {
            return Ok(SealedWriter(WriterInner::Memfd(memfd, 0)));
        }
        let capacity = usize::try_from(hint.min(64 << 20)).unwrap_or(0);
        Ok(SealedWriter(WriterInner::Heap(Vec::with_capacity(
            capacity,
        ))))
    }

    /// The bytes, which cannot change for as long as `self` lives.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.0 {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Inner::Memfd(_, map) => map.bytes(),
            Inner::Heap(bytes) => bytes,
        }
    }

    /// The sealed file, for wasmtime to map in place, if the bytes are in
    /// one.
    pub(crate) fn file(&self) -> Option<&File> {
        match &self.0 {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Inner::Memfd(file, _) => Some(file),
            Inner::Heap(_) => None,
        }
    }
}

/// Collects bytes for a [`Sealed`]: streamed network bodies and
/// decompressed artifacts are written here as they arrive.
pub(crate) struct SealedWriter(WriterInner);

enum WriterInner {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Memfd(File, u64),
    Heap(Vec<u8>),
}

impl SealedWriter {
    /// Seals what was written: from here on it cannot change.
    pub(crate) fn seal(self) -> io::Result<Sealed> {
        match self.0 {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            WriterInner::Memfd(file, _) => memfd::seal(file),
            WriterInner::Heap(bytes) => Ok(Sealed(Inner::Heap(bytes))),
        }
    }
}

impl Write for SealedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            WriterInner::Memfd(file, n) => {
                let written = file.write(buf)?;
                *n += written as u64;
                Ok(written)
            }
            WriterInner::Heap(bytes) => {
                bytes
                    .try_reserve(buf.len())
                    .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
                bytes.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` over a read-only mapping of the first `len` bytes of `file`
/// (the descriptor the caller holds: no path is opened again).
///
/// Like any mapping of a file others can write, this shows their writes,
/// and a truncation while `f` reads is a `SIGBUS`. It is for reading an
/// unkeyed entry's stamp just before wasmtime maps the same file the same
/// way (`Module::deserialize_open_file`), which has the same exposure: an
/// unkeyed store must be writable by trusted users only.
#[cfg(unix)]
pub(crate) fn with_mapping<T>(file: &File, len: u64, f: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large to map"))?;
    if len == 0 {
        return Ok(f(&[]));
    }
    Ok(f(Mapping::of(file, len)?.bytes()))
}

/// A read-only mapping, unmapped on drop.
#[cfg(unix)]
struct Mapping(*mut u8, usize);

#[cfg(unix)]
impl Mapping {
    /// A read-only private mapping of the first `len` (more than 0) bytes
    /// of `file`. Private: kernels before 6.7 refuse a shared mapping of a
    /// write-sealed memfd, even a read-only one.
    fn of(file: &File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh read-only mapping of `len` bytes, unmapped by
        // `Mapping`'s drop; nothing else refers to its address.
        let map = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::PRIVATE,
                file,
                0,
            )
        }
        .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
        Ok(Mapping(map.cast(), len))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `self.0` maps `self.1` readable bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.0, self.1) }
    }
}

#[cfg(unix)]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping `Mapping::of` made, unmapped once; no borrow of it outlives `self`.
        unsafe {
            let _ = rustix::mm::munmap(self.0.cast(), self.1);
        }
    }
}

// SAFETY: the mapping is read-only and owned: sharing or moving it between
// threads is sharing or moving a `&[u8]`/`Box<[u8]>`.
#[cfg(unix)]
unsafe impl Send for Mapping {}
// SAFETY: as above.
#[cfg(unix)]
unsafe impl Sync for Mapping {}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod memfd {
    use super::{Inner, Mapping, Sealed};
    use rustix::fs::{MemfdFlags, SealFlags};
    use rustix::io::Errno;
    use std::fs::File;
    use std::io;

    fn io(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.raw_os_error())
    }

    /// A sealed memfd's read-only mapping (or none, for an empty one).
    pub(super) struct Map(Option<Mapping>);

    impl Map {
        pub(super) fn bytes(&self) -> &[u8] {
            self.0.as_ref().map_or(&[], Mapping::bytes)
        }
    }

    /// A new, empty memfd that can be sealed and later mapped executable,
    /// or `None` where this kernel (or its policy) has none: the caller
    /// falls back to the heap. Its pages are allocated as it is written, so
    /// a lack of memory is a write error, never a fault after sealing.
    pub(super) fn create() -> io::Result<Option<File>> {
        let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        // Kernels since 6.3 want executable memfds asked for (`MFD_EXEC`);
        // older ones do not know the flag (EINVAL) and make every memfd
        // executable.
        let fd = match rustix::fs::memfd_create("cwasm-artifact", base | MemfdFlags::EXEC) {
            Ok(fd) => fd,
            Err(Errno::INVAL) => match rustix::fs::memfd_create("cwasm-artifact", base) {
                Ok(fd) => fd,
                Err(_) => return Ok(None),
            },
            // No memfds (ENOSYS), or executable ones forbidden (EACCES,
            // `vm.memfd_noexec = 2`), or a seccomp filter (EPERM).
            Err(_) => return Ok(None),
        };
        Ok(Some(File::from(fd)))
    }

    /// Copies the first `len` bytes of `file` into `memfd`: in the kernel
    /// (`sendfile`), or through a buffer where the file's file system
    /// cannot do that.
    pub(super) fn fill_from(memfd: &File, file: &File, len: u64) -> io::Result<()> {
        let mut offset = 0u64;
        while offset < len {
            let chunk = usize::try_from(len - offset)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            let mut from = offset;
            match rustix::fs::sendfile(memfd, file, Some(&mut from), chunk) {
                // The file shrank: what was copied is what is checked.
                Ok(0) => return Ok(()),
                Ok(n) => offset += n as u64,
                Err(Errno::INTR | Errno::AGAIN) => continue,
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => break,
                Err(e) => return Err(io(e)),
            }
        }
        if offset < len {
            use std::io::Write;
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0; 256 << 10];
            let mut out = memfd;
            while offset < len {
                let want = buf
                    .len()
                    .min(usize::try_from(len - offset).unwrap_or(usize::MAX));
                let n = match file.read_at(&mut buf[..want], offset) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                out.write_all(&buf[..n])?;
                offset += n as u64;
            }
        }
        Ok(())
    }

    /// Seals `memfd` against every change (its bytes, its size, its seals)
    /// and maps it read-only.
    pub(super) fn seal(memfd: File) -> io::Result<Sealed> {
        let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
        rustix::fs::fcntl_add_seals(&memfd, seals).map_err(io)?;
        // The length is read after sealing: it can no longer change.
        let len = usize::try_from(rustix::fs::fstat(&memfd).map_err(io)?.st_size)
            .map_err(|_| io::Error::other("a sealed copy of negative length"))?;
        // The bytes and the size can no longer change.
        let map = if len == 0 {
            None
        } else {
            Some(Mapping::of(&memfd, len)?)
        };
        Ok(Sealed(Inner::Memfd(memfd, Map(map))))
    }

    /// Whether `file` is a memfd sealed against writes and size changes.
    #[cfg(test)]
    pub(super) fn is_sealed(file: &File) -> bool {
        let want = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
        rustix::fs::fcntl_get_seals(file).is_ok_and(|s| s.contains(want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, file)
    }

    /// The copy keeps the bytes it copied, whatever is written to the file
    /// afterwards, and the sealed file refuses every write.
    #[test]
    fn a_sealed_copy_does_not_follow_the_file() {
        let (_dir, file) = file_with(b"checked bytes");
        let sealed = Sealed::copy_of(&file, 13).unwrap();
        file.write_all_at(b"planted", 0).unwrap();
        file.set_len(3).unwrap();
        assert_eq!(sealed.bytes(), b"checked bytes");
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let memfd = sealed.file().expect("this kernel has memfds");
            assert!(memfd::is_sealed(memfd));
            let mut writable = memfd.try_clone().unwrap();
            assert!(writable.write_all(b"x").is_err());
            assert!(memfd.write_all_at(b"x", 0).is_err());
            assert!(memfd.set_len(1).is_err());
            assert!(memfd.set_len(100).is_err());
            let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(memfd));
            // Opening it again for writing is allowed; writing is not.
            if let Ok(mut again) = std::fs::OpenOptions::new().write(true).open(path) {
                assert!(again.write_all(b"x").is_err());
            }
        }
    }

    /// A file that shrank before the copy gives the shorter copy.
    #[test]
    fn a_file_that_shrank_gives_what_was_there() {
        let (_dir, file) = file_with(b"0123456789");
        file.set_len(4).unwrap();
        assert_eq!(Sealed::copy_of(&file, 10).unwrap().bytes(), b"0123");
        assert_eq!(Sealed::copy_of(&file, 0).unwrap().bytes(), b"");
    }

    #[test]
    fn streamed_bytes_are_sealed() {
        let mut writer = Sealed::writer(3).unwrap();
        writer.write_all(b"abc").unwrap();
        writer.write_all(b"def").unwrap();
        let sealed = writer.seal().unwrap();
        assert_eq!(sealed.bytes(), b"abcdef");
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert!(sealed.file().is_some_and(memfd::is_sealed));
    }

    #[test]
    fn a_mapping_reads_the_held_descriptor() {
        let (dir, file) = file_with(b"through the descriptor");
        // Another file at the same name changes nothing.
        std::fs::remove_file(dir.path().join("entry")).unwrap();
        std::fs::write(dir.path().join("entry"), b"other").unwrap();
        let got = with_mapping(&file, 22, |b| b.to_vec()).unwrap();
        assert_eq!(got, b"through the descriptor");
    }
}
