//! Remote tiers: S3, GCS, Azure and HTTP through the `object_store` crate.

use super::{Backend, Fetched, Listed, Streamed};
use crate::digest::Digest;
use crate::layout::prefix_engine;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::error::Context;
use wasmtime::{Result, bail, format_err};

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
    bounded: Bounded,
}

/// A remote backend's calls: run on a private runtime, within the time
/// limit, skipped for a while after a failure, with secrets removed from
/// their errors.
pub(crate) struct Bounded {
    /// The location as shown, for errors.
    url: String,
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
        Ok(ObjectStoreBackend {
            bounded: Bounded::new(shown.clone(), remote, secrets)?,
            url: shown,
            store: Arc::from(store),
            prefix,
        })
    }

    fn run<T: Send>(&self, call: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
        self.bounded.run(call)
    }
}

impl Bounded {
    pub(crate) fn new(
        url: String,
        options: RemoteOptions,
        secrets: Vec<String>,
    ) -> Result<Bounded> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the remote backend's runtime")?;
        Ok(Bounded {
            url,
            runtime,
            options,
            down_until: std::sync::Mutex::new(None),
            secrets,
        })
    }

    /// Runs `call` on the backend's runtime within the time limit, unless
    /// the bucket failed recently; a failure starts a skip period.
    pub(crate) fn run<T: Send>(
        &self,
        call: impl std::future::Future<Output = Result<T>> + Send,
    ) -> Result<T> {
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
}

impl ObjectStoreBackend {
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
        super::collect(self, path, limit)
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
