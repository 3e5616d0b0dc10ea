//! OCI registries: a store's objects kept next to the wasm they were
//! compiled from, as OCI artifacts (`oci://registry/repository`).
//!
//! runwasi, wasmCloud and others ship wasm as OCI images. This backend
//! keeps each entry of the store (its artifact, tag and statement) as an
//! artifact manifest whose `subject` is the manifest of the image holding
//! the wasm, so that the registry lists it among that image's referrers
//! (OCI distribution 1.1). Where the registry has no referrers API, the
//! spec's fallback is used: an image index under the tag
//! `sha256-<subject hex>`, updated by the writer.
//!
//! The mapping, from the store's names (`layout.rs`) to the registry:
//!
//! 1. An entry's object, `<engine>/<wasm>.cwasm[.zst][.hmac]` or
//!    `.cwasm.intoto.json`: a manifest with one layer (the object's bytes),
//!    the empty config, the subject above, an `artifactType` per kind
//!    ([`ARTIFACT_TYPE`], [`TAG_TYPE`], [`STATEMENT_TYPE`]) and annotations:
//!    the store path ([`PATH`]), the engine hash, the wasm digest, the
//!    layer's digest and size, the producer, the time, and for a raw
//!    artifact its target. A lookup lists the subject's referrers once
//!    (reused for [`REFERRERS_FRESH`], so that an entry's tag, statement
//!    and artifact cost one listing) and fetches the layer by digest. A
//!    listing that leaves out the manifests' annotations (the spec asks
//!    for them; go-containerregistry's registry omits them, and gives the
//!    config's media type as the artifact type) costs a read of each
//!    referrer manifest that may be ours, at most [`MAX_UNANNOTATED`] per
//!    listing, each remembered (by digest) for the life of the process.
//! 2. A prefix's `engine.json` and `engine.section`: a manifest without a
//!    subject under the tag `cwasm-<engine>.<name>`.
//!
//! The subject of a wasm digest is found in the image the URL names
//! (`oci://registry/repository:tag` or `@sha256:...`), or, for a URL
//! naming only the repository, in the images of every tag of it (listed
//! once, again at most every [`REINDEX_AFTER`]). A wasm that no image of
//! the repository holds is a miss, and writing its entry is an error.
//!
//! Nothing the registry says is trusted: the store checks every object it
//! reads exactly as it does an object store's (stamp, tag, signature, size
//! limit, time limit), and reads manifests, referrer indexes and tag lists
//! itself, under [`MAX_MANIFEST`] (the OCI client would read them whole).
//! It pushes blobs and manifests itself too: the OCI client's push refuses
//! a `201` without a `Location` header, which go-containerregistry's
//! registry sends, and panics on it when the manifest is pushed by digest.
//! Blobs are streamed with its own requests as well, the SHA-256 checked as
//! they arrive. The OCI client runs the auth flow and asks whether a blob
//! exists; tokens are shared by every backend of the process.

use super::remote::Bounded;
use super::{Backend, Fetched, Listed, Streamed};
use crate::digest::Digest;
use crate::layout::{
    ARTIFACT_SUFFIX, DESCRIPTOR, SECTION, STATEMENT_SUFFIX, TAG_SUFFIX, ZSTD_SUFFIX, prefix_engine,
};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::error::Context;
use wasmtime::{Result, bail, format_err};

/// `artifactType` of a precompiled artifact's manifest (raw or zstd).
pub const ARTIFACT_TYPE: &str = "application/vnd.cwasm.precompiled.v1";
/// `artifactType` of an entry's keyed tag.
pub const TAG_TYPE: &str = "application/vnd.cwasm.tag.v1";
/// `artifactType` of an entry's statement (a DSSE envelope).
pub const STATEMENT_TYPE: &str = "application/vnd.cwasm.statement.v1";
/// `artifactType` of a prefix's descriptor or engine section.
pub const ENGINE_FILE_TYPE: &str = "application/vnd.cwasm.engine-file.v1";
/// The annotation naming the store path a manifest holds.
pub const PATH: &str = "dev.cwasm.path";
/// The annotation with the engine hash (64 hex digits).
pub const ENGINE: &str = "dev.cwasm.engine";
/// The annotation with the compilation target (raw artifacts).
pub const TARGET: &str = "dev.cwasm.target";
/// The annotation naming what wrote the manifest.
pub const PRODUCER: &str = "dev.cwasm.producer";
const WASM: &str = "dev.cwasm.wasm";
const LAYER: &str = "dev.cwasm.layer";
const SIZE: &str = "dev.cwasm.size";
const CREATED: &str = "org.opencontainers.image.created";

/// How long one listing of a subject's referrers is reused.
pub const REFERRERS_FRESH: Duration = Duration::from_secs(2);
/// How often a repository's tags may be listed again to find a wasm.
pub const REINDEX_AFTER: Duration = Duration::from_secs(60);

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The largest manifest, referrers index or tag list read.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// How long a registry token is used before the auth flow runs again.
const TOKEN_FRESH: Duration = Duration::from_secs(60);
/// What every backend of the process shares: bearer tokens (or that none
/// is needed), by repository, operation and credentials, so that a fresh
/// backend does not run the auth flow again within [`TOKEN_FRESH`]...
static TOKENS: Mutex<BTreeMap<String, (Instant, Option<String>)>> = Mutex::new(BTreeMap::new());
/// ... the repositories whose registry answered 404 to the referrers API,
/// and when: for [`REINDEX_AFTER`], listings go straight to the referrers
/// tag schema's index ...
static WITHOUT_REFERRERS_API: Mutex<BTreeMap<String, Instant>> = Mutex::new(BTreeMap::new());
/// ... and the referrers read from their manifests (for listings without
/// annotations), by manifest digest (what a digest names never changes);
/// `None` for a manifest that is not one of ours.
static MANIFESTS: Mutex<BTreeMap<String, Option<Referrer>>> = Mutex::new(BTreeMap::new());
/// The most entries each keeps (it starts over when full).
const MAX_SHARED: usize = 1024;

fn shared<T>(memory: &'static Mutex<T>) -> std::sync::MutexGuard<'static, T> {
    memory.lock().unwrap_or_else(|e| e.into_inner())
}

/// The most referrers of one subject whose manifests are read because the
/// listing left out their annotations.
pub const MAX_UNANNOTATED: usize = 64;
/// The most tags listed while looking for a wasm.
const MAX_TAGS: usize = 10_000;

/// A store in an OCI registry: `oci://registry/repository[:tag|@digest]`.
///
/// Credentials come from `CWASM_OCI_USERNAME` and `CWASM_OCI_PASSWORD`
/// (anonymous without them). A loopback registry is spoken to over plain
/// HTTP, any other over HTTPS (`CWASM_OCI_PLAIN_HTTP=1` forces HTTP). Calls
/// are bounded and skipped after a failure as [`RemoteOptions`] says.
///
/// [`RemoteOptions`]: super::RemoteOptions
pub struct OciBackend {
    shown: String,
    registry: String,
    repository: String,
    named: Option<Named>,
    client: Client,
    http: reqwest::Client,
    plain_http: bool,
    auth: RegistryAuth,
    bounded: Bounded,
    state: Mutex<State>,
}

enum Named {
    Tag(String),
    Digest(String),
}

/// A manifest a referrer points at.
#[derive(Clone, Debug)]
struct Subject {
    media_type: String,
    digest: String,
    size: i64,
}

/// One of a subject's referrers that holds a store object.
#[derive(Clone, Debug)]
struct Referrer {
    digest: String,
    path: String,
    layer: String,
    size: u64,
    created: String,
}

impl Referrer {
    /// The referrer a listing describes, if its annotations say which
    /// store object it holds.
    fn from_annotations(digest: &str, a: &Value) -> Option<Referrer> {
        let text = |key: &str| Some(a[key].as_str()?.to_string());
        Some(Referrer {
            digest: digest.to_string(),
            path: text(PATH)?,
            layer: text(LAYER)?,
            size: text(SIZE)?.parse().ok()?,
            created: text(CREATED).unwrap_or_default(),
        })
    }

    /// The referrer the manifest `bytes` (of digest `digest`) is, if it is
    /// one of this backend's: its layer from the manifest itself.
    fn from_manifest(digest: &str, bytes: &[u8]) -> Option<Referrer> {
        let manifest: Value = serde_json::from_slice(bytes).ok()?;
        let kind = manifest["artifactType"].as_str()?;
        if ![ARTIFACT_TYPE, TAG_TYPE, STATEMENT_TYPE].contains(&kind) {
            return None;
        }
        let layer = &manifest["layers"][0];
        let a = &manifest["annotations"];
        Some(Referrer {
            digest: digest.to_string(),
            path: a[PATH].as_str()?.to_string(),
            layer: layer["digest"].as_str()?.to_string(),
            size: layer["size"].as_u64()?,
            created: a[CREATED].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
fn is_sha256(digest: &str) -> bool {
    Digest::from_oci(digest).is_ok_and(|d| digest == format!("sha256:{d}"))
}

/// Whether a listed referrer without annotations may be one of this
/// backend's: an image manifest whose artifact type is one of ours, or
/// missing, or the empty config's (which a registry reporting the config's
/// media type gives for every artifact).
fn may_be_ours(m: &Value) -> bool {
    let media_type = m["mediaType"].as_str().unwrap_or(MANIFEST);
    let kind = m["artifactType"].as_str().unwrap_or(EMPTY);
    media_type == MANIFEST && [ARTIFACT_TYPE, TAG_TYPE, STATEMENT_TYPE, EMPTY].contains(&kind)
}

#[derive(Default)]
struct State {
    subjects: HashMap<Digest, Subject>,
    named_indexed: bool,
    indexed_at: Option<Instant>,
    referrers: HashMap<String, (Instant, Arc<Vec<Referrer>>)>,
}

/// Where a store path lives in the registry.
enum Place {
    /// A referrer of the image holding this wasm.
    Entry {
        wasm: Digest,
        artifact_type: &'static str,
        media_type: &'static str,
    },
    /// A manifest under this tag.
    Tagged(String),
}

impl std::fmt::Debug for OciBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciBackend")
            .field("url", &self.shown)
            .finish()
    }
}

impl OciBackend {
    /// Opens `oci://registry/repository[:tag|@sha256:...]`.
    pub fn open(url: &str) -> Result<OciBackend> {
        OciBackend::open_with(url, super::RemoteOptions::default())
    }

    /// Like [`OciBackend::open`], with other time limits.
    pub fn open_with(url: &str, options: super::RemoteOptions) -> Result<OciBackend> {
        let rest = url
            .strip_prefix("oci://")
            .with_context(|| format!("`{url}` is not an oci:// URL"))?;
        let (registry, path) = rest
            .split_once('/')
            .with_context(|| format!("`{url}` names no repository (oci://registry/repository)"))?;
        let (path, named) = match path.split_once('@') {
            Some((repo, digest)) => {
                Digest::from_oci(digest).with_context(|| format!("in `{url}`"))?;
                (repo, Some(Named::Digest(digest.to_string())))
            }
            None => match path.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, Some(Named::Tag(tag.into()))),
                _ => (path, None),
            },
        };
        if registry.is_empty() || path.is_empty() || path.contains("//") {
            bail!("`{url}` is not oci://registry/repository[:tag|@digest]");
        }
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        let plain_http = matches!(host, "127.0.0.1" | "localhost" | "[::1]")
            || std::env::var("CWASM_OCI_PLAIN_HTTP").is_ok_and(|v| v == "1");
        let client = Client::new(ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(options.connect_timeout),
            read_timeout: Some(options.timeout),
            ..ClientConfig::default()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .build()
            .context("failed to make an HTTP client")?;
        let auth = match (
            std::env::var("CWASM_OCI_USERNAME"),
            std::env::var("CWASM_OCI_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        let shown = format!("oci://{rest}");
        Ok(OciBackend {
            bounded: Bounded::new(shown.clone(), options, Vec::new())?,
            shown,
            registry: registry.to_string(),
            repository: path.to_string(),
            named,
            client,
            http,
            plain_http,
            auth,
            state: Mutex::new(State::default()),
        })
    }

    /// The tag the URL names, if it names one.
    pub fn tag(&self) -> Option<&str> {
        match &self.named {
            Some(Named::Tag(tag)) => Some(tag),
            _ => None,
        }
    }

    /// Pushes `wasm` as an image under `tag` (the wasm OCI artifact
    /// layout: a `application/vnd.wasm.config.v0+json` config and one
    /// `application/wasm` layer), as a wasm toolchain would, and returns
    /// the manifest's digest: the subject its entries will refer to.
    pub fn push_wasm_image(&self, tag: &str, wasm: &[u8]) -> Result<String> {
        let config = br#"{"architecture":"wasm","os":"wasip1"}"#;
        let blob = |bytes: &[u8], media_type: &str| {
            json!({
                "mediaType": media_type,
                "digest": format!("sha256:{}", Digest::of(bytes)),
                "size": bytes.len(),
            })
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": blob(config, WASM_CONFIG),
            "layers": [blob(wasm, WASM_LAYER)],
        }))?;
        self.bounded.run(async {
            for bytes in [&config[..], wasm] {
                self.push_blob(bytes, &format!("sha256:{}", Digest::of(bytes)))
                    .await?;
            }
            let digest = format!("sha256:{}", Digest::of(&manifest));
            self.push_manifest(tag, manifest, MANIFEST).await?;
            Ok(digest)
        })
    }

    /// The bytes of the blob `digest`: what a plain registry client would
    /// do to fetch an artifact whose digest it knows (the floor an OCI hit
    /// is compared with in `cargo xtask bench`).
    pub fn read_blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        match self
            .bounded
            .run(self.stream_layer(digest, None, limit, &mut out))?
        {
            Streamed::Written(_) => Ok(out),
            Streamed::Missing => bail!("{}@{digest}: no such blob", self.shown),
            Streamed::TooLarge(_) => bail!("{}@{digest} is over {limit} bytes", self.shown),
            Streamed::NotAnObject(what) => bail!("{what}"),
        }
    }

    /// The digest of the layer holding `path`'s object, if there is one.
    pub fn layer_of(&self, path: &str) -> Result<Option<String>> {
        self.bounded.run(async {
            let Place::Entry { wasm, .. } = place(path)? else {
                bail!("`{path}` is not an entry's object");
            };
            let Some(subject) = self.subject_digest(wasm).await? else {
                return Ok(None);
            };
            Ok(self.find(&subject, path, true).await?.map(|r| r.layer))
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn by_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    fn by_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_string(),
        )
    }

    /// The manifest of the image holding `wasm`, if the repository (or the
    /// image the URL names) has one.
    async fn subject_of(&self, wasm: Digest) -> Result<Option<Subject>> {
        if let Some(subject) = self.state().subjects.get(&wasm) {
            return Ok(Some(subject.clone()));
        }
        self.refresh_index().await?;
        Ok(self.state().subjects.get(&wasm).cloned())
    }

    /// The digest of the manifest whose referrers hold `wasm`'s entries:
    /// the image the URL names by digest, with nothing to fetch (each
    /// referrer's store path names its wasm, and a lookup matches the
    /// path), else the image found holding the wasm. Writing needs the
    /// whole descriptor, and that the image holds the wasm:
    /// `subject_of`.
    async fn subject_digest(&self, wasm: Digest) -> Result<Option<String>> {
        if let Some(Named::Digest(digest)) = &self.named {
            return Ok(Some(digest.clone()));
        }
        Ok(self.subject_of(wasm).await?.map(|s| s.digest))
    }

    /// Reads the image the URL names (once), or the image of every tag of
    /// the repository (at most every [`REINDEX_AFTER`]), into the index of
    /// wasm digests to subjects.
    async fn refresh_index(&self) -> Result<()> {
        match &self.named {
            Some(named) => {
                if self.state().named_indexed {
                    return Ok(());
                }
                let reference = match named {
                    Named::Tag(tag) => tag,
                    Named::Digest(digest) => digest,
                };
                match self
                    .pull_manifest(reference, &[MANIFEST, DOCKER_MANIFEST])
                    .await?
                {
                    Some((bytes, digest)) => self.index(&bytes, &digest),
                    None => bail!("{}: no such image", self.shown),
                }
                self.state().named_indexed = true;
            }
            None => {
                let due = self
                    .state()
                    .indexed_at
                    .is_none_or(|at| at.elapsed() >= REINDEX_AFTER);
                if due {
                    self.index_repository().await?;
                    self.state().indexed_at = Some(Instant::now());
                }
            }
        }
        Ok(())
    }

    /// Records the layers of a manifest as wasm it holds.
    fn index(&self, bytes: &[u8], digest: &str) {
        let Ok(manifest) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        let subject = Subject {
            media_type: manifest["mediaType"]
                .as_str()
                .unwrap_or(MANIFEST)
                .to_string(),
            digest: digest.to_string(),
            size: bytes.len() as i64,
        };
        let mut state = self.state();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            if let Some(Ok(wasm)) = layer["digest"].as_str().map(Digest::from_oci) {
                state
                    .subjects
                    .entry(wasm)
                    .or_insert_with(|| subject.clone());
            }
        }
    }

    /// Indexes the image of every tag of the repository but this backend's
    /// own and the referrers fallback's.
    async fn index_repository(&self) -> Result<()> {
        for tag in self.tags().await? {
            if tag.starts_with("cwasm-") || tag.starts_with("sha256-") {
                continue;
            }
            if let Some((bytes, digest)) = self
                .pull_manifest(&tag, &[MANIFEST, DOCKER_MANIFEST])
                .await?
            {
                self.index(&bytes, &digest);
            }
        }
        Ok(())
    }

    async fn tags(&self) -> Result<Vec<String>> {
        let mut tags: Vec<String> = Vec::new();
        loop {
            let mut query = "tags/list?n=1000".to_string();
            if let Some(last) = tags.last() {
                query += &format!("&last={last}");
            }
            let page = match self.get_bounded(&query, "application/json").await? {
                Some(bytes) => serde_json::from_slice::<Value>(&bytes)
                    .with_context(|| format!("{}: the tag list is not JSON", self.shown))?,
                None => Value::Null,
            };
            let page: Vec<String> = page["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| Some(t.as_str()?.to_string()))
                .collect();
            let full = page.len() >= 1000;
            tags.extend(page);
            if !full || tags.len() >= MAX_TAGS {
                return Ok(tags);
            }
        }
    }

    /// A manifest (by tag or digest) and its digest, or `None` if there is
    /// none. A manifest asked for by digest must have it.
    async fn pull_manifest(
        &self,
        reference: &str,
        accept: &[&str],
    ) -> Result<Option<(Vec<u8>, String)>> {
        let Some(bytes) = self
            .get_bounded(&format!("manifests/{reference}"), &accept.join(", "))
            .await?
        else {
            return Ok(None);
        };
        let digest = format!("sha256:{}", Digest::of(&bytes));
        if reference.starts_with("sha256:") && reference != digest {
            bail!(
                "{}@{reference}: the registry sent a manifest of digest {digest}",
                self.shown
            );
        }
        Ok(Some((bytes, digest)))
    }

    /// A request to `/v2/<repository>/<rest>` with the credentials `op`
    /// needs: the bearer token of the OCI client's auth flow (kept for
    /// [`TOKEN_FRESH`]), or the user name and password.
    async fn request(
        &self,
        method: reqwest::Method,
        rest: &str,
        op: RegistryOperation,
    ) -> Result<reqwest::RequestBuilder> {
        let url = format!("{}/v2/{}/{rest}", self.base_url(), self.repository);
        self.authorized(method, url, op).await
    }

    /// A request to `url`, which must be on the registry's host, with the
    /// credentials `op` needs.
    async fn authorized(
        &self,
        method: reqwest::Method,
        url: String,
        op: RegistryOperation,
    ) -> Result<reqwest::RequestBuilder> {
        let key = self.token_key(op);
        let kept = shared(&TOKENS)
            .get(&key)
            .filter(|(at, _)| at.elapsed() < TOKEN_FRESH)
            .cloned();
        let token = match kept {
            Some((_, token)) => token,
            None => {
                let token = self
                    .client
                    .auth(&self.by_tag("latest"), &self.auth, op)
                    .await
                    .map_err(|e| format_err!("failed to authenticate to {}: {e}", self.shown))?;
                let mut tokens = shared(&TOKENS);
                if tokens.len() >= MAX_SHARED {
                    tokens.clear();
                }
                tokens.insert(key, (Instant::now(), token.clone()));
                token
            }
        };
        let request = self.http.request(method, url);
        Ok(match (&token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            _ => request,
        })
    }

    /// What a token is shared under: the repository, the operation, and
    /// the credentials (a password only as its hash).
    fn token_key(&self, op: RegistryOperation) -> String {
        let credentials = match &self.auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Basic(user, password) => {
                format!("basic {user} {}", Digest::of(password.as_bytes()))
            }
            RegistryAuth::Bearer(token) => format!("bearer {}", Digest::of(token.as_bytes())),
        };
        format!("{} {op:?} {credentials}", self.repository_key())
    }

    /// `registry/repository`, as the process-wide memories key it.
    fn repository_key(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `http[s]://registry`.
    fn base_url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }

    /// Pushes `blob`, of digest `digest`: an upload started with a POST,
    /// finished with one PUT of the bytes (the OCI client's push insists
    /// on a `Location` header in the registry's `201`, which
    /// go-containerregistry's registry never sends; the digest names the
    /// blob anyway). Credentials go only to the registry's own host: an
    /// upload URL elsewhere (a storage service's) is sent none.
    async fn push_blob(&self, blob: &[u8], digest: &str) -> Result<()> {
        let what = format!("{}@{digest}", self.shown);
        let started = self
            .request(
                reqwest::Method::POST,
                "blobs/uploads/",
                RegistryOperation::Push,
            )
            .await?
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(|e| format_err!("failed to push {what}: {e}"))?;
        if started.status().as_u16() != 202 {
            bail!(
                "failed to push {what}: HTTP {} to starting an upload",
                started.status().as_u16()
            );
        }
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .with_context(|| format!("failed to push {what}: the upload has no Location"))?;
        let base = self.base_url();
        let (url, own_host) = if location.starts_with('/') {
            (format!("{base}{location}"), true)
        } else {
            let own = location.starts_with(&format!("{base}/"));
            (location.to_string(), own)
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}digest={digest}");
        let request = if own_host {
            self.authorized(reqwest::Method::PUT, url, RegistryOperation::Push)
                .await?
        } else {
            self.http.put(url)
        };
        let done = request
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .map_err(|e| format_err!("failed to push {what}: {e}"))?;
        match done.status().as_u16() {
            200..=299 => Ok(()),
            status => bail!("failed to push {what}: HTTP {status}"),
        }
    }

    /// `GET /v2/<repository>/<rest>` of a manifest, an index or a tag list:
    /// its body, of at most [`MAX_MANIFEST`] bytes (a larger one is an
    /// error, and is not read past the limit), or `None` on 404. The OCI
    /// client reads these whole; a hostile registry could send gigabytes.
    async fn get_bounded(&self, rest: &str, accept: &str) -> Result<Option<Vec<u8>>> {
        let what = format!("{}/{rest}", self.shown);
        let mut response = self
            .request(reqwest::Method::GET, rest, RegistryOperation::Pull)
            .await?
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| format_err!("failed to read {what}: {e}"))?;
        match response.status().as_u16() {
            404 => return Ok(None),
            200..=299 => {}
            status => bail!("failed to read {what}: HTTP {status}"),
        }
        let over = |n: u64| format_err!("{what}: over {MAX_MANIFEST} bytes ({n} or more): refused");
        if let Some(n) = response.content_length().filter(|n| *n > MAX_MANIFEST) {
            return Err(over(n));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format_err!("failed to read {what}: {e}"))?
        {
            let n = (body.len() + chunk.len()) as u64;
            if n > MAX_MANIFEST {
                return Err(over(n));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    /// The referrers of `subject` that hold store objects; a listing at
    /// most [`REFERRERS_FRESH`] old unless `fresh`.
    async fn referrers(&self, subject: &str, fresh: bool) -> Result<Arc<Vec<Referrer>>> {
        if !fresh
            && let Some((at, listed)) = self.state().referrers.get(subject)
            && at.elapsed() < REFERRERS_FRESH
        {
            return Ok(listed.clone());
        }
        // The referrers API, or where it is missing (404), the referrers
        // tag schema's index; neither is an empty listing.
        // A registry found without the API is not asked again for a while
        // (by any backend of the process).
        let fallback = format!("manifests/{}", subject.replace(':', "-"));
        let repository = self.repository_key();
        let without_api = shared(&WITHOUT_REFERRERS_API)
            .get(&repository)
            .is_some_and(|at| at.elapsed() < REINDEX_AFTER);
        let native = match without_api {
            true => None,
            false => {
                self.get_bounded(&format!("referrers/{subject}"), INDEX)
                    .await?
            }
        };
        let index = match native {
            Some(index) => Some(index),
            None => {
                if !without_api {
                    let mut known = shared(&WITHOUT_REFERRERS_API);
                    if known.len() >= MAX_SHARED {
                        known.clear();
                    }
                    known.insert(repository, Instant::now());
                }
                self.get_bounded(&fallback, INDEX).await?
            }
        };
        let index: Value = match index {
            Some(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{}: the referrers of {subject} are not an index",
                    self.shown
                )
            })?,
            None => Value::Null,
        };
        let mut listed = Vec::new();
        let mut unannotated = Vec::new();
        for m in index["manifests"].as_array().into_iter().flatten() {
            // Only a canonical digest names a manifest: anything else
            // (a tag, a path) would be asked for unchecked.
            let Some(digest) = m["digest"].as_str().filter(|d| is_sha256(d)) else {
                continue;
            };
            match Referrer::from_annotations(digest, &m["annotations"]) {
                Some(r) => listed.push(r),
                None if may_be_ours(m) => unannotated.push(digest.to_string()),
                None => {}
            }
        }
        // A listing without the manifests' annotations (the spec wants
        // them; not every registry gives them): the manifests say.
        for digest in unannotated.into_iter().take(MAX_UNANNOTATED) {
            let known = shared(&MANIFESTS).get(&digest).cloned();
            let read = match known {
                Some(read) => read,
                None => match self.pull_manifest(&digest, &[MANIFEST]).await? {
                    Some((bytes, _)) => {
                        let read = Referrer::from_manifest(&digest, &bytes);
                        let mut known = shared(&MANIFESTS);
                        if known.len() >= MAX_SHARED {
                            known.clear();
                        }
                        known.insert(digest, read.clone());
                        read
                    }
                    // Gone since the listing.
                    None => None,
                },
            };
            listed.extend(read);
        }
        let listed = Arc::new(listed);
        self.state()
            .referrers
            .insert(subject.to_string(), (Instant::now(), listed.clone()));
        Ok(listed)
    }

    /// The newest referrer of `subject` holding `path`.
    async fn find(&self, subject: &str, path: &str, fresh: bool) -> Result<Option<Referrer>> {
        Ok(self
            .referrers(subject, fresh)
            .await?
            .iter()
            .filter(|r| r.path == path)
            .max_by(|a, b| a.created.cmp(&b.created))
            .cloned())
    }

    /// Streams the blob `digest` (of `size` bytes, if known) to `out`,
    /// within `limit`, checking its digest as it goes. With the backend's
    /// own request (the OCI client runs its auth flow again for every
    /// pull from an anonymous registry: a round trip per hit).
    async fn stream_layer(
        &self,
        digest: &str,
        size: Option<u64>,
        limit: u64,
        out: &mut (dyn io::Write + Send),
    ) -> Result<Streamed> {
        use sha2::Digest as _;
        if let Some(size) = size
            && size > limit
        {
            return Ok(Streamed::TooLarge(size));
        }
        let what = format!("{}@{digest}", self.shown);
        let expected = Digest::from_oci(digest).with_context(|| format!("reading {what}"))?;
        let mut response = self
            .request(
                reqwest::Method::GET,
                &format!("blobs/{digest}"),
                RegistryOperation::Pull,
            )
            .await?
            .send()
            .await
            .map_err(|e| format_err!("failed to read {what}: {e}"))?;
        match response.status().as_u16() {
            404 => return Ok(Streamed::Missing),
            200..=299 => {}
            status => bail!("failed to read {what}: HTTP {status}"),
        }
        if let Some(n) = response.content_length().filter(|n| *n > limit) {
            return Ok(Streamed::TooLarge(n));
        }
        let mut hasher = sha2::Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format_err!("failed to read {what}: {e}"))?
        {
            written += chunk.len() as u64;
            if written > limit {
                return Ok(Streamed::TooLarge(written));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .context("failed to hold a fetched object")?;
        }
        if let Some(size) = size
            && written != size
        {
            bail!("{what}: {written} bytes where the manifest says {size}");
        }
        if Digest(hasher.finalize().into()) != expected {
            bail!("{what}: the registry sent bytes of another digest");
        }
        Ok(Streamed::Written(written))
    }

    async fn read_async(
        &self,
        path: &str,
        limit: u64,
        out: &mut (dyn io::Write + Send),
    ) -> Result<Streamed> {
        match place(path)? {
            Place::Entry { wasm, .. } => {
                let Some(subject) = self.subject_digest(wasm).await? else {
                    return Ok(Streamed::Missing);
                };
                match self.find(&subject, path, false).await? {
                    Some(r) => self.stream_layer(&r.layer, Some(r.size), limit, out).await,
                    None => Ok(Streamed::Missing),
                }
            }
            Place::Tagged(tag) => {
                let Some((bytes, _)) = self.pull_manifest(&tag, &[MANIFEST]).await? else {
                    return Ok(Streamed::Missing);
                };
                let manifest: Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}:{tag} is not a manifest", self.shown))?;
                let layer = &manifest["layers"][0];
                let (Some(digest), Some(size)) = (layer["digest"].as_str(), layer["size"].as_u64())
                else {
                    return Ok(Streamed::NotAnObject(format!(
                        "{}:{tag} has no layer",
                        self.shown
                    )));
                };
                self.stream_layer(digest, Some(size), limit, out).await
            }
        }
    }

    /// Pushes `bytes` as a blob, and the empty config.
    async fn push_layer(&self, bytes: &[u8]) -> Result<String> {
        let digest = format!("sha256:{}", Digest::of(bytes));
        let reference = self.by_digest(&digest);
        for (blob, digest) in [(&b"{}"[..], EMPTY_DIGEST), (bytes, &digest[..])] {
            let exists = self
                .client
                .blob_exists(&reference, digest)
                .await
                .unwrap_or(false);
            if !exists {
                self.push_blob(blob, digest).await?;
            }
        }
        Ok(digest)
    }

    /// A manifest of one layer, as bytes, and its digest.
    fn manifest(
        layer: (&str, &str, usize),
        artifact_type: &str,
        subject: Option<&Subject>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(Vec<u8>, String)> {
        let (media_type, digest, size) = layer;
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [{"mediaType": media_type, "digest": digest, "size": size}],
            "annotations": annotations,
        });
        if let Some(s) = subject {
            manifest["subject"] =
                json!({"mediaType": s.media_type, "digest": s.digest, "size": s.size});
        }
        let bytes = serde_json::to_vec(&manifest)?;
        let digest = format!("sha256:{}", Digest::of(&bytes));
        Ok((bytes, digest))
    }

    /// `PUT /v2/<repository>/manifests/<reference>` (not the OCI client's
    /// push: on a registry that answers without a `Location` header, as
    /// go-containerregistry's does, it panics when the reference is a
    /// digest).
    async fn push_manifest(&self, reference: &str, bytes: Vec<u8>, media_type: &str) -> Result<()> {
        let what = format!("{}/manifests/{reference}", self.shown);
        let response = self
            .request(
                reqwest::Method::PUT,
                &format!("manifests/{reference}"),
                RegistryOperation::Push,
            )
            .await?
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| format_err!("failed to push {what}: {e}"))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status => bail!("failed to push {what}: HTTP {status}"),
        }
    }

    async fn write_async(&self, path: &str, bytes: &[u8]) -> Result<()> {
        // Where it goes first, so that a write that cannot be kept (no such
        // name, no image to attach it to) pushes nothing.
        let place = place(path)?;
        let mut annotations = BTreeMap::new();
        annotations.insert(PATH.to_string(), path.to_string());
        annotations.insert(SIZE.to_string(), bytes.len().to_string());
        annotations.insert(
            PRODUCER.to_string(),
            concat!("cwasm-store ", env!("CARGO_PKG_VERSION")).to_string(),
        );
        annotations.insert(
            CREATED.to_string(),
            humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        );
        if let Some((engine, _)) = path.split_once('/') {
            annotations.insert(ENGINE.to_string(), engine.to_string());
        }
        match place {
            Place::Tagged(tag) => {
                let layer = self.push_layer(bytes).await?;
                annotations.insert(LAYER.to_string(), layer.clone());
                let (manifest, _) = Self::manifest(
                    (EMPTY_LAYER_FILE, &layer, bytes.len()),
                    ENGINE_FILE_TYPE,
                    None,
                    &annotations,
                )?;
                self.push_manifest(&tag, manifest, MANIFEST).await
            }
            Place::Entry {
                wasm,
                artifact_type,
                media_type,
            } => {
                let subject = self.subject_of(wasm).await?.with_context(|| {
                    format!(
                        "{} holds no image with the wasm sha256:{wasm}: push the wasm as an \
                         OCI image to the repository first",
                        self.shown
                    )
                })?;
                let layer = self.push_layer(bytes).await?;
                annotations.insert(LAYER.to_string(), layer.clone());
                annotations.insert(WASM.to_string(), format!("sha256:{wasm}"));
                if media_type == RAW_LAYER
                    && let Ok(info) = crate::inspect::inspect(bytes)
                {
                    annotations.insert(TARGET.to_string(), info.target);
                }
                let (manifest, digest) = Self::manifest(
                    (media_type, &layer, bytes.len()),
                    artifact_type,
                    Some(&subject),
                    &annotations,
                )?;
                let size = manifest.len();
                self.push_manifest(&digest, manifest, MANIFEST).await?;
                // A registry with the referrers API lists it now; one
                // without it needs the fallback index updated.
                let listed = self.referrers(&subject.digest, true).await?;
                if !listed.iter().any(|r| r.digest == digest) {
                    let entry = json!({
                        "mediaType": MANIFEST,
                        "digest": digest,
                        "size": size,
                        "artifactType": artifact_type,
                        "annotations": annotations,
                    });
                    self.update_fallback(&subject.digest, |manifests| manifests.push(entry))
                        .await?;
                    self.state().referrers.remove(&subject.digest);
                }
                Ok(())
            }
        }
    }

    /// Rewrites the referrers tag schema's index of `subject`.
    async fn update_fallback(
        &self,
        subject: &str,
        change: impl FnOnce(&mut Vec<Value>),
    ) -> Result<()> {
        let tag = subject.replace(':', "-");
        let mut index = match self.pull_manifest(&tag, &[INDEX]).await? {
            Some((bytes, _)) => serde_json::from_slice::<Value>(&bytes)
                .with_context(|| format!("{}:{tag} is not an image index", self.shown))?,
            None => json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": []}),
        };
        let mut manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        change(&mut manifests);
        index["manifests"] = Value::Array(manifests);
        self.push_manifest(&tag, serde_json::to_vec(&index)?, INDEX)
            .await
    }

    /// `DELETE /v2/<repository>/manifests/<digest>` (the OCI client has
    /// no call for it).
    async fn delete_manifest(&self, digest: &str) -> Result<()> {
        let response = self
            .request(
                reqwest::Method::DELETE,
                &format!("manifests/{digest}"),
                RegistryOperation::Push,
            )
            .await?
            .send()
            .await
            .map_err(|e| format_err!("failed to delete {}@{digest}: {e}", self.shown))?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            status => bail!("failed to delete {}@{digest}: HTTP {status}", self.shown),
        }
    }

    async fn delete_async(&self, path: &str) -> Result<()> {
        match place(path)? {
            Place::Tagged(tag) => match self.pull_manifest(&tag, &[MANIFEST]).await? {
                Some((_, digest)) => self.delete_manifest(&digest).await,
                None => Ok(()),
            },
            Place::Entry { wasm, .. } => {
                let Some(subject) = self.subject_digest(wasm).await? else {
                    return Ok(());
                };
                let gone: Vec<String> = self
                    .referrers(&subject, true)
                    .await?
                    .iter()
                    .filter(|r| r.path == path)
                    .map(|r| r.digest.clone())
                    .collect();
                for digest in &gone {
                    self.delete_manifest(digest).await?;
                }
                let listed = self.referrers(&subject, true).await?;
                if listed.iter().any(|r| gone.contains(&r.digest)) {
                    self.update_fallback(&subject, |manifests| {
                        manifests.retain(|m| {
                            !m["digest"]
                                .as_str()
                                .is_some_and(|d| gone.iter().any(|g| g == d))
                        })
                    })
                    .await?;
                }
                self.state().referrers.remove(&subject);
                Ok(())
            }
        }
    }

    async fn list_async(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.refresh_index().await?;
        let mut subjects: Vec<String> = self
            .state()
            .subjects
            .values()
            .map(|s| s.digest.clone())
            .collect();
        subjects.sort();
        subjects.dedup();
        let mut out: BTreeMap<String, Listed> = BTreeMap::new();
        for subject in subjects {
            for r in self.referrers(&subject, true).await?.iter() {
                if r.path.starts_with(prefix) {
                    let last_used =
                        humantime::parse_rfc3339(&r.created).unwrap_or(SystemTime::UNIX_EPOCH);
                    out.insert(
                        r.path.clone(),
                        Listed {
                            path: r.path.clone(),
                            size: r.size,
                            last_used,
                        },
                    );
                }
            }
        }
        for tag in self.tags().await? {
            if let Some(path) = tag_path(&tag)
                && path.starts_with(prefix)
            {
                // The size and time its manifest's annotations give (one
                // manifest read per engine file; a listing is no hot path).
                let Some((bytes, _)) = self.pull_manifest(&tag, &[MANIFEST]).await? else {
                    continue;
                };
                let manifest: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let a = &manifest["annotations"];
                let size = manifest["layers"][0]["size"].as_u64().unwrap_or(0);
                let last_used = a[CREATED]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.entry(path.clone()).or_insert(Listed {
                    path,
                    size,
                    last_used,
                });
            }
        }
        Ok(out.into_values().collect())
    }
}

const RAW_LAYER: &str = ARTIFACT_TYPE;
const ZSTD_LAYER: &str = "application/vnd.cwasm.precompiled.v1+zstd";
const TAG_LAYER: &str = "application/vnd.cwasm.tag.v1";
const STATEMENT_LAYER: &str = "application/vnd.dsse.envelope.v1+json";
const EMPTY_LAYER_FILE: &str = "application/octet-stream";
const WASM_LAYER: &str = "application/wasm";
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// Where `path` (a store name, `layout.rs`) lives in the registry.
fn place(path: &str) -> Result<Place> {
    let bad = || format_err!("`{path}` is not a name an OCI store holds");
    let (engine, name) = path.split_once('/').ok_or_else(bad)?;
    prefix_engine(engine).ok_or_else(bad)?;
    if name == DESCRIPTOR || name == SECTION {
        return Ok(Place::Tagged(format!("cwasm-{engine}.{name}")));
    }
    let (wasm, suffix) = name.split_at_checked(64).ok_or_else(bad)?;
    let wasm: Digest = wasm.parse().map_err(|_| bad())?;
    let raw = ARTIFACT_SUFFIX;
    let (artifact_type, media_type) = match suffix.strip_prefix(raw).ok_or_else(bad)? {
        "" => (ARTIFACT_TYPE, RAW_LAYER),
        s if s == ZSTD_SUFFIX => (ARTIFACT_TYPE, ZSTD_LAYER),
        s if s == TAG_SUFFIX || s == format!("{ZSTD_SUFFIX}{TAG_SUFFIX}") => (TAG_TYPE, TAG_LAYER),
        s if s == STATEMENT_SUFFIX => (STATEMENT_TYPE, STATEMENT_LAYER),
        _ => return Err(bad()),
    };
    Ok(Place::Entry {
        wasm,
        artifact_type,
        media_type,
    })
}

/// The store path a `cwasm-<engine>.<name>` tag holds.
fn tag_path(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("cwasm-")?;
    let (engine, name) = (rest.get(..64)?, rest.get(65..)?);
    prefix_engine(engine)?;
    (name == DESCRIPTOR || name == SECTION).then(|| format!("{engine}/{name}"))
}

impl Backend for OciBackend {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(match self.read_limited(path, u64::MAX)? {
            Fetched::Bytes(bytes) => Some(bytes),
            Fetched::Missing => None,
            Fetched::TooLarge(_) => unreachable!("no limit"),
            Fetched::NotAnObject(what) => bail!("{what}"),
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
        self.bounded.run(self.read_async(path, limit, out))
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.bounded.run(self.write_async(path, bytes))
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.bounded.run(async {
            let exists = match place(path)? {
                Place::Tagged(tag) => self.pull_manifest(&tag, &[MANIFEST]).await?.is_some(),
                Place::Entry { wasm, .. } => match self.subject_digest(wasm).await? {
                    Some(subject) => self.find(&subject, path, true).await?.is_some(),
                    None => false,
                },
            };
            if !exists {
                self.write_async(path, bytes).await?;
            }
            Ok(())
        })
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.bounded.run(self.delete_async(path))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.bounded.run(self.list_async(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let b = OciBackend::open("oci://127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(
            (&b.registry[..], &b.repository[..]),
            ("127.0.0.1:5000", "team/app")
        );
        assert!(matches!(&b.named, Some(Named::Tag(t)) if t == "v1"));
        assert!(b.plain_http);
        let digest = format!("sha256:{}", "ab".repeat(32));
        let b = OciBackend::open(&format!("oci://registry.test/app@{digest}")).unwrap();
        assert!(matches!(&b.named, Some(Named::Digest(d)) if *d == digest));
        assert!(!b.plain_http);
        let b = OciBackend::open("oci://localhost:5000/app").unwrap();
        assert!(b.named.is_none());
        for bad in [
            "oci://registry",
            "oci:///app",
            "oci://r/app@sha256:12",
            "s3://b/p",
        ] {
            assert!(OciBackend::open(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn places() {
        let (e, w) = ("e".repeat(64), "a".repeat(64));
        assert!(
            matches!(place(&format!("{e}/engine.json")), Ok(Place::Tagged(t)) if t == format!("cwasm-{e}.engine.json"))
        );
        assert_eq!(
            tag_path(&format!("cwasm-{e}.engine.section")),
            Some(format!("{e}/engine.section"))
        );
        for (suffix, kind) in [
            (".cwasm", ARTIFACT_TYPE),
            (".cwasm.zst", ARTIFACT_TYPE),
            (".cwasm.hmac", TAG_TYPE),
            (".cwasm.zst.hmac", TAG_TYPE),
            (".cwasm.intoto.json", STATEMENT_TYPE),
        ] {
            match place(&format!("{e}/{w}{suffix}")) {
                Ok(Place::Entry { artifact_type, .. }) => assert_eq!(artifact_type, kind),
                _ => panic!("{suffix}"),
            }
        }
        for bad in [
            ".gc-stamp".to_string(),
            format!("{e}/{w}.wasm"),
            format!("{e}/x"),
            format!("zz/{w}.cwasm"),
        ] {
            assert!(place(&bad).is_err(), "{bad}");
        }
    }
}
