//! The OCI backend against a real registry (distribution 2.8, which
//! `cargo xtask test` starts on loopback and names in
//! `CWASM_TEST_OCI_REGISTRY`). Distribution 2.8 has no referrers API, so
//! these tests exercise the spec's fallback (the referrers tag schema) and
//! check that the native endpoint is indeed absent. Without the registry
//! they say so and pass, unless `CWASM_REQUIRE_SERVERS` is set.

mod common;

use common::{call, peak_memory, wasm};
use cwasm_store::{ArtifactStore, Backend, Digest, Key, LocalDir, OciBackend, StoreConfig};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use wasmtime::{Engine, Result};

/// The registry, and a fresh repository in it for each call.
fn repository() -> Option<(String, String)> {
    static N: AtomicU32 = AtomicU32::new(0);
    match std::env::var("CWASM_TEST_OCI_REGISTRY") {
        Ok(registry) => Some((
            registry,
            format!(
                "cwasm/test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        )),
        Err(_) if std::env::var_os("CWASM_REQUIRE_SERVERS").is_some() => {
            panic!("CWASM_REQUIRE_SERVERS is set but CWASM_TEST_OCI_REGISTRY is not")
        }
        Err(_) => {
            eprintln!("skipped: no registry (run `cargo xtask test`)");
            None
        }
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
/// digest.
fn push_wasm(registry: &str, repo: &str, tag: &str, wasm: &[u8]) -> String {
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

fn open(url: &str, config: StoreConfig) -> Result<ArtifactStore> {
    ArtifactStore::new(None, Some(Box::new(OciBackend::open(url)?)), config)
}

/// The issue's scenario: a wasm image in the registry; one host compiles
/// through the OCI backend, another loads with no compile. The entry is a
/// referrer of the wasm's manifest, listed in the fallback index with its
/// artifact type and annotations.
#[test]
fn compile_on_one_host_load_on_another() -> Result<()> {
    let Some((registry, repo)) = repository() else {
        return Ok(());
    };
    let engine = Engine::default();
    let subject = push_wasm(&registry, &repo, "v1", &wasm(7));

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

    // Distribution 2.8 has no referrers API ...
    let native = format!("http://{registry}/v2/{repo}/referrers/{subject}");
    let status = block_on(reqwest::get(&native)).unwrap().status();
    assert_eq!(
        status.as_u16(),
        404,
        "the registry has the referrers API now"
    );
    // ... so the writer kept the fallback index, which lists the artifact.
    let fallback = manifest(&registry, &repo, &format!(":{}", subject.replace(':', "-")))
        .expect("the referrers tag schema's index");
    let key = Key::new(&engine, &wasm(7))?;
    let entries = fallback["manifests"].as_array().unwrap();
    let artifact = entries
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
    let digest = artifact["digest"].as_str().unwrap();
    let pushed = manifest(&registry, &repo, &format!("@{digest}")).unwrap();
    assert_eq!(pushed["subject"]["digest"], subject.as_str());
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
#[test]
fn signatures_are_referrers_too() -> Result<()> {
    let Some((registry, repo)) = repository() else {
        return Ok(());
    };
    let engine = Engine::default();
    let subject = push_wasm(&registry, &repo, "v1", &wasm(8));
    let key = cwasm_store::SigningKey::generate()?;
    let url = format!("oci://{registry}/{repo}:v1");
    let farm = StoreConfig {
        signing_key: Some(key.clone()),
        hmac_key: Some(b"fleet key, 32 bytes long, ok!!!".to_vec()),
        ..StoreConfig::default()
    };
    open(&url, farm)?.get_or_compile_module(&engine, &wasm(8))?;
    let fallback = manifest(&registry, &repo, &format!(":{}", subject.replace(':', "-"))).unwrap();
    let types: Vec<&str> = fallback["manifests"]
        .as_array()
        .unwrap()
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
#[test]
fn a_planted_referrer_is_rejected_and_evicted() -> Result<()> {
    let Some((registry, repo)) = repository() else {
        return Ok(());
    };
    let engine = Engine::default();
    push_wasm(&registry, &repo, "v1", &wasm(9));
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
#[test]
fn a_wasm_without_an_image_compiles_and_says_why_it_was_not_kept() -> Result<()> {
    let Some((registry, repo)) = repository() else {
        return Ok(());
    };
    let engine = Engine::default();
    push_wasm(&registry, &repo, "v1", &wasm(10));
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
#[test]
fn local_tier_in_front_of_the_registry() -> Result<()> {
    let Some((registry, repo)) = repository() else {
        return Ok(());
    };
    let engine = Engine::default();
    push_wasm(&registry, &repo, "v2", &wasm(12));
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
#[test]
fn faults_on_the_wire_cost_a_bounded_time_and_fall_back_to_compiling() -> Result<()> {
    let Some((registry, repo)) = repository() else {
        return Ok(());
    };
    let engine = Engine::default();
    push_wasm(&registry, &repo, "v1", &wasm(13));
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
    if repository().is_none() {
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
