//! Where entries are kept: a local directory, or an object store.
//!
//! Backends deal in opaque objects named by `/`-separated relative paths;
//! the store decides what the objects mean (`layout.rs`). Every write is
//! atomic: a reader sees the old object, the new one, or none, never a
//! part.
//!
//! - `local.rs`: [`LocalDir`], a directory, every file-system call through
//!   `fsops.rs` (relative to the root's descriptor);
//! - `remote.rs`: [`ObjectStoreBackend`], S3, GCS, Azure and HTTP
//!   through the `object_store` crate;
//! - `oci.rs`: [`OciBackend`], an OCI registry, the entries attached to
//!   the wasm's image as referrers;
//! - [`SCHEMES`]: which backend a location's URL scheme opens. A new kind of
//!   backend is one file here and one row there.

mod local;
pub(crate) mod oci;
mod remote;

use crate::digest::Digest;
use crate::layout::prefix_engine;
pub use local::LocalDir;
pub use oci::OciBackend;
pub use remote::{ObjectStoreBackend, RemoteOptions, shown_location};
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;
use wasmtime::Result;
use wasmtime::error::Context;

/// How a location opens: a local directory, or an object store.
pub(crate) enum Opens {
    /// A directory (the store's local tier).
    Local(LocalDir),
    /// A remote backend.
    Remote(Box<dyn Backend>),
}

/// Opens a location of one URL scheme.
type Opener = fn(&str) -> Result<Opens>;

/// URL schemes and the backend each opens; a location without `://` is a
/// directory.
pub(crate) const SCHEMES: &[(&str, Opener)] = &[
    ("file", |location| {
        let dir = location.strip_prefix("file://").unwrap_or(location);
        Ok(Opens::Local(LocalDir::new(dir)?))
    }),
    ("s3", open_object_store),
    ("s3a", open_object_store),
    ("gs", open_object_store),
    ("az", open_object_store),
    ("adl", open_object_store),
    ("azure", open_object_store),
    ("abfs", open_object_store),
    ("abfss", open_object_store),
    ("oci", |location| {
        Ok(Opens::Remote(Box::new(OciBackend::open(location)?)))
    }),
    ("http", open_object_store),
    ("https", open_object_store),
];

fn open_object_store(url: &str) -> Result<Opens> {
    Ok(Opens::Remote(Box::new(ObjectStoreBackend::open(url)?)))
}

/// Opens `location`: a directory path, or a URL whose scheme [`SCHEMES`]
/// lists.
pub(crate) fn open(location: &str) -> Result<Opens> {
    let Some((scheme, _)) = location.split_once("://") else {
        return Ok(Opens::Local(LocalDir::new(location)?));
    };
    match SCHEMES.iter().find(|(s, _)| s.eq_ignore_ascii_case(scheme)) {
        Some((_, open)) => open(location),
        None => wasmtime::bail!(
            "no backend for `{}://` (known: {})",
            shown_location(scheme),
            SCHEMES
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

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

/// [`Backend::read_limited`] for a backend that streams: its
/// [`Backend::read_to`] into memory.
pub(crate) fn collect(backend: &dyn Backend, path: &str, limit: u64) -> Result<Fetched> {
    let mut bytes = Vec::new();
    Ok(match backend.read_to(path, limit, &mut bytes)? {
        Streamed::Missing => Fetched::Missing,
        Streamed::Written(_) => Fetched::Bytes(bytes),
        Streamed::TooLarge(len) => Fetched::TooLarge(len),
        Streamed::NotAnObject(what) => Fetched::NotAnObject(what),
    })
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
