//! The OCI backend against two real registries, which `cargo xtask test`
//! starts on loopback:
//!
//! * distribution 2.8 (`CWASM_TEST_OCI_REGISTRY`), which has no referrers
//!   API: the tests exercise the spec's fallback (the referrers tag schema)
//!   and check that the native endpoint is indeed absent;
//! * go-containerregistry's registry (`CWASM_TEST_OCI_REFERRERS_REGISTRY`),
//!   which has it: the same tests go through the native listing, and check
//!   that no fallback index is written. Its listing (0.20) leaves out the
//!   manifests' annotations and gives the config's media type as the
//!   artifact type, as some registries do; the backend reads such
//!   referrers' manifests instead.
//!
//! Every test runs on both (`distribution::` and `ggcr::`). Without the
//! registries they say so and pass, unless `CWASM_REQUIRE_SERVERS` is set.

mod common;

use common::{call, peak_memory, wasm};
use cwasm_store::{ArtifactStore, Backend, Digest, Key, LocalDir, OciBackend, StoreConfig};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use wasmtime::{Engine, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// distribution 2.8: the referrers tag schema.
    Distribution,
    /// go-containerregistry: the referrers API.
    Ggcr,
}

/// A registry to test against.
struct Registry {
    kind: Kind,
    /// `ip:port`.
    address: String,
}

impl Registry {
    /// The registry of `kind` that `cargo xtask test` started, if any.
    fn get(kind: Kind) -> Option<Registry> {
        let var = match kind {
            Kind::Distribution => "CWASM_TEST_OCI_REGISTRY",
            Kind::Ggcr => "CWASM_TEST_OCI_REFERRERS_REGISTRY",
        };
        let address = common::server(var, &format!("{kind:?} registry"))?;
        Some(Registry { kind, address })
    }

    /// A fresh repository for each call.
    fn repository(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "cwasm/test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn has_referrers_api(&self) -> bool {
        self.kind == Kind::Ggcr
    }
}

macro_rules! on_every_registry {
    ($($test:ident),* $(,)?) => {
        mod distribution {
            $(#[test] fn $test() -> super::Result<()> { super::run(super::Kind::Distribution, super::$test) })*
        }
        mod ggcr {
            $(#[test] fn $test() -> super::Result<()> { super::run(super::Kind::Ggcr, super::$test) })*
        }
    };
}

on_every_registry!(
    compile_on_one_host_load_on_another,
    signatures_are_referrers_too,
    a_planted_referrer_is_rejected_and_evicted,
    a_wasm_without_an_image_compiles_and_says_why_it_was_not_kept,
    local_tier_in_front_of_the_registry,
    faults_on_the_wire_cost_a_bounded_time_and_fall_back_to_compiling,
);

fn run(kind: Kind, test: fn(&Registry) -> Result<()>) -> Result<()> {
    match Registry::get(kind) {
        Some(registry) => test(&registry),
        None => Ok(()),
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

/// Pushes `wasm` as an image (the wasm OCI artifact layout: a
/// `application/vnd.wasm.config.v0+json` config and one `application/wasm`
/// layer) under `tag`, as a wasm toolchain would; returns the manifest's
/// digest. On distribution, with the OCI client (code the backend's own
/// push does not share); on go-containerregistry's registry, whose blob
/// uploads that client refuses (it wants a `Location` header in the `201`),
/// with `OciBackend::push_wasm_image`.
fn push_wasm(r: &Registry, repo: &str, tag: &str, wasm: &[u8]) -> String {
    let registry = &r.address;
    if r.kind == Kind::Ggcr {
        let backend = OciBackend::open(&format!("oci://{registry}/{repo}")).unwrap();
        return backend.push_wasm_image(tag, wasm).unwrap();
    }
    let reference = Reference::with_tag(registry.into(), repo.into(), tag.into());
    let layers = [ImageLayer::new(
        wasm.to_vec(),
        "application/wasm".into(),
        None,
    )];
    let config = Config::new(
        br#"{"architecture":"wasm","os":"wasip1"}"#.to_vec(),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    block_on(client().push(&reference, &layers, config, &RegistryAuth::Anonymous, None)).unwrap();
    block_on(client().fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)).unwrap()
}

/// What the registry holds under `tag`, as JSON (`None` if nothing).
fn manifest(registry: &str, repo: &str, reference: &str) -> Option<Value> {
    let r: Reference = format!("{registry}/{repo}{reference}").parse().unwrap();
    let accept = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
    ];
    block_on(client().pull_manifest_raw(&r, &RegistryAuth::Anonymous, &accept))
        .ok()
        .map(|(bytes, _)| serde_json::from_slice(&bytes).unwrap())
}

/// The manifests of `subject`'s referrers, found the way a client of this
/// registry finds them: on distribution 2.8, whose referrers endpoint is
/// absent, through the referrers tag schema's index, which must carry each
/// manifest's artifact type and annotations; on a registry with the
/// referrers API, through that API, with no fallback index written.
fn referrers(r: &Registry, repo: &str, subject: &str) -> Vec<Value> {
    let registry = &r.address;
    let native = format!("http://{registry}/v2/{repo}/referrers/{subject}");
    let response = block_on(reqwest::get(&native)).unwrap();
    let status = response.status().as_u16();
    let fallback = manifest(registry, repo, &format!(":{}", subject.replace(':', "-")));
    let index: Value = if r.has_referrers_api() {
        assert_eq!(status, 200, "{native}");
        assert!(
            fallback.is_none(),
            "a fallback index on a registry with the referrers API: {fallback:?}"
        );
        serde_json::from_slice(&block_on(response.bytes()).unwrap()).unwrap()
    } else {
        assert_eq!(status, 404, "the registry has the referrers API now");
        fallback.expect("the referrers tag schema's index")
    };
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|listed| {
            let digest = listed["digest"].as_str().unwrap();
            let manifest = manifest(registry, repo, &format!("@{digest}")).unwrap();
            if !r.has_referrers_api() {
                assert_eq!(listed["artifactType"], manifest["artifactType"]);
                assert_eq!(listed["annotations"], manifest["annotations"]);
            }
            manifest
        })
        .collect()
}

fn open(url: &str, config: StoreConfig) -> Result<ArtifactStore> {
    ArtifactStore::new(None, Some(Box::new(OciBackend::open(url)?)), config)
}

/// The issue's scenario: a wasm image in the registry; one host compiles
/// through the OCI backend, another loads with no compile. The entry is a
/// referrer of the wasm's manifest, with its artifact type and
/// annotations.
fn compile_on_one_host_load_on_another(r: &Registry) -> Result<()> {
    let (registry, repo) = (&r.address, r.repository());
    let engine = Engine::default();
    let subject = push_wasm(r, &repo, "v1", &wasm(7));

    let farm = open(
        &format!("oci://{registry}/{repo}:v1"),
        StoreConfig::default(),
    )?;
    let m = farm.get_or_compile_module(&engine, &wasm(7))?;
    assert_eq!(call(&engine, &m), 7);
    assert_eq!(
        (farm.stats().compiles, farm.stats().store_errors),
        (1, 0),
        "{:?}",
        farm.stats()
    );

    // Another host, knowing only the repository and the wasm's digest.
    let host = open(&format!("oci://{registry}/{repo}"), StoreConfig::default())?;
    let m = host.get_or_compile_module_with_digest(&engine, &wasm(7), Digest::of(&wasm(7)))?;
    assert_eq!(call(&engine, &m), 7);
    let stats = host.stats();
    assert_eq!(
        (stats.hits, stats.compiles, stats.rejected),
        (1, 0, 0),
        "{stats:?}"
    );

    // And one that names the image by digest, as a runtime that pulled it
    // does: nothing to resolve before the referrers listing.
    let pinned = open(
        &format!("oci://{registry}/{repo}@{subject}"),
        StoreConfig::default(),
    )?;
    let m = pinned.get_or_compile_module_with_digest(&engine, &wasm(7), Digest::of(&wasm(7)))?;
    assert_eq!(call(&engine, &m), 7);
    let stats = pinned.stats();
    assert_eq!(
        (stats.hits, stats.compiles, stats.rejected),
        (1, 0, 0),
        "{stats:?}"
    );

    // The entry is a referrer of the wasm's image, listed the way this
    // registry lists referrers, with its artifact type and annotations.
    let key = Key::new(&engine, &wasm(7))?;
    let listed = referrers(r, &repo, &subject);
    let artifact = listed
        .iter()
        .find(|m| m["annotations"]["dev.cwasm.path"] == key.artifact_path().as_str())
        .expect("the artifact among the referrers");
    assert_eq!(artifact["artifactType"], cwasm_store::oci::ARTIFACT_TYPE);
    let a = &artifact["annotations"];
    assert_eq!(a["dev.cwasm.engine"], key.engine.to_string().as_str());
    assert_eq!(a["dev.cwasm.target"], target_lexicon_host());
    assert!(
        a["dev.cwasm.producer"]
            .as_str()
            .unwrap()
            .starts_with("cwasm-store")
    );
    // The manifest itself names the wasm's image as its subject.
    assert_eq!(artifact["subject"]["digest"], subject.as_str());
    // A listing gives every object's size and time, the engine files'
    // (manifests under tags) too.
    let listed =
        OciBackend::open(&format!("oci://{registry}/{repo}"))?.list(&format!("{}/", key.engine))?;
    assert!(
        listed.iter().any(|l| l.path.ends_with("engine.section")),
        "{listed:?}"
    );
    for l in &listed {
        assert!(l.size > 0, "{l:?}");
        assert!(l.last_used > std::time::SystemTime::UNIX_EPOCH, "{l:?}");
    }
    // And the layer is the artifact, byte for byte.
    let stored = OciBackend::open(&format!("oci://{registry}/{repo}"))?
        .read(&key.artifact_path())?
        .unwrap();
    assert_eq!(stored, engine.precompile_module(&wasm(7))?);
    Ok(())
}

fn target_lexicon_host() -> String {
    let engine = Engine::default();
    let artifact = engine.precompile_module(&wasm(0)).unwrap();
    cwasm_store::inspect(&artifact).unwrap().target
}

/// A signed entry: the statement is another referrer of the wasm's image;
/// a host holding only the public key loads it, and one holding another
/// key refuses it and compiles.
fn signatures_are_referrers_too(r: &Registry) -> Result<()> {
    let (registry, repo) = (&r.address, r.repository());
    let engine = Engine::default();
    let subject = push_wasm(r, &repo, "v1", &wasm(8));
    let key = cwasm_store::SigningKey::generate()?;
    let url = format!("oci://{registry}/{repo}:v1");
    let farm = StoreConfig {
        signing_key: Some(key.clone()),
        hmac_key: Some(b"fleet key, 32 bytes long, ok!!!".to_vec()),
        ..StoreConfig::default()
    };
    open(&url, farm)?.get_or_compile_module(&engine, &wasm(8))?;
    let listed = referrers(r, &repo, &subject);
    let types: Vec<&str> = listed
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    for kind in [
        cwasm_store::oci::ARTIFACT_TYPE,
        cwasm_store::oci::TAG_TYPE,
        cwasm_store::oci::STATEMENT_TYPE,
    ] {
        assert!(types.contains(&kind), "{kind} not in {types:?}");
    }

    let trusting = StoreConfig {
        trusted_keys: vec![key.public_key().clone()],
        hmac_key: Some(b"fleet key, 32 bytes long, ok!!!".to_vec()),
        ..StoreConfig::default()
    };
    let host = open(&url, trusting)?;
    let m = host.get_or_compile_module(&engine, &wasm(8))?;
    assert_eq!(call(&engine, &m), 8);
    assert_eq!(
        (host.stats().hits, host.stats().compiles),
        (1, 0),
        "{:?}",
        host.stats()
    );

    let stranger = StoreConfig {
        trusted_keys: vec![cwasm_store::SigningKey::generate()?.public_key().clone()],
        hmac_key: Some(b"fleet key, 32 bytes long, ok!!!".to_vec()),
        ..StoreConfig::default()
    };
    let host = open(&url, stranger)?;
    let m = host.get_or_compile_module(&engine, &wasm(8))?;
    assert_eq!(call(&engine, &m), 8);
    assert_eq!(
        (host.stats().hits, host.stats().compiles),
        (0, 1),
        "{:?}",
        host.stats()
    );
    Ok(())
}

/// A referrer planted by someone with push access (another engine's
/// artifact under this engine's path) is rejected, deleted from the
/// registry and its fallback index, and replaced by a compile.
fn a_planted_referrer_is_rejected_and_evicted(r: &Registry) -> Result<()> {
    let (registry, repo) = (&r.address, r.repository());
    let engine = Engine::default();
    push_wasm(r, &repo, "v1", &wasm(9));
    let url = format!("oci://{registry}/{repo}:v1");
    let mut config = wasmtime::Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    let other = Engine::new(&config)?;
    let key = Key::new(&engine, &wasm(9))?;
    let attacker = OciBackend::open(&url)?;
    attacker.write(&key.artifact_path(), &other.precompile_module(&wasm(9))?)?;

    let store = open(&url, StoreConfig::default())?;
    let m = store.get_or_compile_module(&engine, &wasm(9))?;
    assert_eq!(call(&engine, &m), 9);
    let stats = store.stats();
    assert_eq!((stats.rejected, stats.compiles), (1, 1), "{stats:?}");
    // What is there now is this engine's own artifact.
    let now = OciBackend::open(&url)?.read(&key.artifact_path())?.unwrap();
    assert_eq!(
        Engine::detect_serialization_compatibility_hash(&now),
        Some(key.engine.0)
    );
    Ok(())
}

/// A wasm no image of the repository holds: a miss, a compile, and a
/// write error counted (nothing to attach the entry to), never a failure
/// of the lookup.
fn a_wasm_without_an_image_compiles_and_says_why_it_was_not_kept(r: &Registry) -> Result<()> {
    let (registry, repo) = (&r.address, r.repository());
    let engine = Engine::default();
    push_wasm(r, &repo, "v1", &wasm(10));
    let store = open(&format!("oci://{registry}/{repo}"), StoreConfig::default())?;
    let m = store.get_or_compile_module(&engine, &wasm(11))?;
    assert_eq!(call(&engine, &m), 11);
    assert_eq!(store.stats().compiles, 1);
    let err = OciBackend::open(&format!("oci://{registry}/{repo}"))?
        .write(&Key::new(&engine, &wasm(11))?.artifact_path(), b"x")
        .unwrap_err();
    assert!(format!("{err:#}").contains("push the wasm"), "{err:#}");
    // And it pushed nothing: no orphan blob for every compile of such a
    // wasm.
    let blob = format!("sha256:{}", Digest::of(b"x"));
    let reference = Reference::with_tag(registry.clone(), repo.clone(), "v1".into());
    assert!(!block_on(client().blob_exists(&reference, &blob)).unwrap());
    Ok(())
}

/// A local tier in front of the registry: the hit is copied into it, and
/// the next lookup is local.
fn local_tier_in_front_of_the_registry(r: &Registry) -> Result<()> {
    let (registry, repo) = (&r.address, r.repository());
    let engine = Engine::default();
    push_wasm(r, &repo, "v2", &wasm(12));
    let url = format!("oci://{registry}/{repo}:v2");
    open(&url, StoreConfig::default())?.get_or_compile_module(&engine, &wasm(12))?;
    let dir = tempfile::tempdir()?;
    let host = ArtifactStore::new(
        Some(LocalDir::new(dir.path())?),
        Some(Box::new(OciBackend::open(&url)?)),
        StoreConfig::default(),
    )?;
    host.get_or_compile_module(&engine, &wasm(12))?;
    host.flush();
    assert_eq!((host.stats().hits, host.stats().compiles), (1, 0));
    let key = Key::new(&engine, &wasm(12))?;
    assert!(dir.path().join(key.artifact_path()).exists());
    Ok(())
}

/// A registry behind a proxy that drops, stalls or truncates: the first
/// lookup costs the time limit, the next ones nothing (the backend skips
/// the registry after a failure), every one compiles, and the entry is
/// intact behind a healthy connection.
fn faults_on_the_wire_cost_a_bounded_time_and_fall_back_to_compiling(r: &Registry) -> Result<()> {
    let (registry, repo) = (&r.address, r.repository());
    let engine = Engine::default();
    push_wasm(r, &repo, "v1", &wasm(13));
    open(
        &format!("oci://{registry}/{repo}:v1"),
        StoreConfig::default(),
    )?
    .get_or_compile_module(&engine, &wasm(13))?;
    let upstream = registry
        .parse()
        .expect("CWASM_TEST_OCI_REGISTRY is ip:port");
    common::faults_cost_a_bounded_time(&engine, 13, upstream, |proxy| {
        let url = format!("oci://{proxy}/{repo}:v1");
        let backend = OciBackend::open_with(&url, common::fault_options())?;
        ArtifactStore::new(None, Some(Box::new(backend)), StoreConfig::default())
    })?;
    let healthy = open(
        &format!("oci://{registry}/{repo}:v1"),
        StoreConfig::default(),
    )?;
    healthy.get_or_compile_module(&engine, &wasm(13))?;
    assert_eq!((healthy.stats().hits, healthy.stats().rejected), (1, 0));
    Ok(())
}

/// A registry serving a 256 MiB referrers index (distribution refuses
/// manifests over 4 MiB, so the hostile registry here is a loopback server
/// answering every request with one): the lookup reads at most
/// `MAX_MANIFEST` of it, refuses it and compiles; memory grows by far less
/// than the index.
#[test]
fn a_huge_referrers_index_is_refused_unread() -> Result<()> {
    if Registry::get(Kind::Distribution).is_none() {
        return Ok(());
    }
    let engine = Engine::default();
    let registry = hostile_registry(256 << 20);
    let subject = format!("sha256:{}", "ab".repeat(32));
    let store = open(
        &format!("oci://{registry}/app@{subject}"),
        StoreConfig::default(),
    )?;
    let before = peak_memory();
    let start = std::time::Instant::now();
    let m = store.get_or_compile_module(&engine, &wasm(14))?;
    assert_eq!(call(&engine, &m), 14);
    let grew = peak_memory().saturating_sub(before);
    eprintln!(
        "256 MiB referrers index: {:?}, peak memory +{grew}",
        start.elapsed()
    );
    assert_eq!(store.stats().compiles, 1);
    assert!(grew < 64 << 20, "peak memory grew by {grew} bytes");
    Ok(())
}

/// A loopback server answering every request with an image index of
/// `size` bytes, written as it goes; returns its address.
fn hostile_registry(size: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let start = br#"{"schemaVersion":2,"manifests":[],"annotations":{"x":""#;
                let _ = write!(
                    client,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\n\
                     Content-Length: {size}\r\n\r\n"
                );
                let _ = client.write_all(start);
                let chunk = vec![b'a'; 1 << 20];
                let mut sent = start.len();
                while sent < size {
                    let n = chunk.len().min(size - sent);
                    if client.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    address
}

/// A registry whose referrers listing (2,000 image manifests, no artifact
/// types, no annotations, as a registry that leaves them out would list
/// foreign referrers) names manifests that are all gone, first among them
/// three names that are no digest: the lookup never asks for those, reads
/// at most `MAX_UNANNOTATED` of the rest, then compiles (and, finding no image
/// to attach the entry to, keeps nothing).
#[test]
fn a_listing_without_annotations_costs_a_bounded_number_of_reads() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    if Registry::get(Kind::Distribution).is_none() {
        return Ok(());
    }
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let listing: Vec<Value> = (0..2000u32)
        .map(|i| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", Digest::of(&i.to_le_bytes())),
                "size": 500,
            })
        })
        .collect();
    // And names that are no digest, which must not be asked for at all
    // (a manifest asked for by tag or path could not be checked).
    let mut listing = listing;
    for name in ["latest", "sha256:../../other/manifests/latest", "SHA256:AB"] {
        listing.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": name,
            "size": 500,
        }));
    }
    listing.rotate_right(3);
    let listing = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": listing,
    }))?;
    let strays = Arc::new(AtomicUsize::new(0));
    let stray = strays.clone();
    let subject = format!("sha256:{}", "cd".repeat(32));
    let image = subject.clone();
    let registry = fake_registry(move |path| {
        if path.contains("/referrers/") {
            (200, listing.clone())
        } else if path.contains("/manifests/") && !path.ends_with(&image) {
            if !path.contains("/manifests/sha256:") || path.contains("..") {
                stray.fetch_add(1, Ordering::Relaxed);
            }
            counted.fetch_add(1, Ordering::Relaxed);
            (404, Vec::new())
        } else {
            (200, b"{}".to_vec())
        }
    });
    let engine = Engine::default();
    let store = open(
        &format!("oci://{registry}/app@{subject}"),
        StoreConfig::default(),
    )?;
    let m = store.get_or_compile_module(&engine, &wasm(15))?;
    assert_eq!(call(&engine, &m), 15);
    assert_eq!(store.stats().compiles, 1);
    assert_eq!(
        strays.load(Ordering::Relaxed),
        0,
        "a name that is no digest was asked for"
    );
    let reads = reads.load(Ordering::Relaxed);
    assert!(
        (1..=cwasm_store::oci::MAX_UNANNOTATED).contains(&reads),
        "{reads} manifests read"
    );
    Ok(())
}

/// What a fresh backend asks a registry without the referrers API, once
/// another backend of the process has asked: only the fallback index (no
/// auth probe, no referrers API call), each time.
#[test]
fn fresh_backends_share_the_token_and_the_missing_referrers_api() -> Result<()> {
    use std::sync::{Arc, Mutex};
    if Registry::get(Kind::Distribution).is_none() {
        return Ok(());
    }
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    let registry = fake_registry(move |path| {
        log.lock().unwrap().push(path.to_string());
        match path {
            "/v2/" => (200, b"{}".to_vec()),
            _ => (404, Vec::new()),
        }
    });
    let engine = Engine::default();
    let path = Key::new(&engine, &wasm(16))?.artifact_path();
    let subject = format!("sha256:{}", "ef".repeat(32));
    let url = format!("oci://{registry}/app@{subject}");
    for _ in 0..3 {
        assert!(OciBackend::open(&url)?.read(&path)?.is_none());
    }
    let asked = asked.lock().unwrap();
    let count = |what: &str| asked.iter().filter(|p| p.contains(what)).count();
    assert_eq!(count("/referrers/"), 1, "{asked:#?}");
    assert_eq!(count("/manifests/sha256-"), 3, "{asked:#?}");
    assert!(count("/v2/") - count("/v2/app/") <= 1, "{asked:#?}");
    Ok(())
}

/// A loopback server answering each request with `respond(path)`: a status
/// and a JSON body. Returns its address.
fn fake_registry(
    respond: impl Fn(&str) -> (u16, Vec<u8>) + Send + Sync + 'static,
) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let respond = respond.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    // The rest of the head; requests here have no body.
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header == "\r\n" {
                            break;
                        }
                    }
                    let (status, body) = respond(&path);
                    let out = reader.get_mut();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}
