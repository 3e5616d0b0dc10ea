//! A build farm signs, hosts verify: a host that holds only the farm's
//! public key loads an artifact only if the farm signed a statement for
//! this very lookup and these very bytes, and a producer policy refuses
//! artifacts of a revoked wasmtime release. Each refusal is a miss that
//! compiles (the host's module answers what its own wasm says, never what
//! planted bytes say) and deletes nothing.

mod common;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use common::{call, wasm};
use cwasm_store::{
    ArtifactStore, Backend, Key, LocalDir, SigningKey, StoreConfig, TrustedKey, semver,
};
use std::path::Path;
use wasmtime::{Config, Engine, Result};

/// The farm's store: it signs what it writes.
fn farm(root: &Path, key: &SigningKey) -> ArtifactStore {
    let config = StoreConfig {
        signing_key: Some(key.clone()),
        ..StoreConfig::default()
    };
    ArtifactStore::new(Some(LocalDir::new(root).unwrap()), None, config).unwrap()
}

/// A host's store: it holds only the farm's public key, as a PEM file
/// would give it.
fn host(root: &Path, farm: &SigningKey, refused: &[&str]) -> ArtifactStore {
    let public = TrustedKey::from_pem(&farm.public_key().to_pem()).unwrap();
    let config = StoreConfig {
        trusted_keys: vec![public],
        refused_producers: refused
            .iter()
            .map(|r| semver::VersionReq::parse(r).unwrap())
            .collect(),
        ..StoreConfig::default()
    };
    ArtifactStore::new(Some(LocalDir::new(root).unwrap()), None, config).unwrap()
}

/// Everything under `root`: each path with its bytes (regular files up to
/// 64 MiB), or its kind and size: what "nothing deleted, nothing written"
/// compares.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                walk(&path, root, out);
            } else if meta.is_file() && meta.len() <= 64 << 20 {
                out.push((name, std::fs::read(&path).unwrap()));
            } else {
                let shown = format!("{:?} {}", meta.file_type(), meta.len());
                out.push((name, shown.into_bytes()));
            }
        }
    }
    let mut all = Vec::new();
    walk(root, root, &mut all);
    all.sort();
    all
}

struct Fleet {
    dir: tempfile::TempDir,
    farm_key: SigningKey,
    engine: Engine,
    one: Key,
    two: Key,
}

/// A farm that has compiled and signed wasm 1 and wasm 2.
fn fleet() -> Result<Fleet> {
    let dir = tempfile::tempdir()?;
    let farm_key = SigningKey::generate()?;
    let engine = Engine::default();
    let store = farm(dir.path(), &farm_key);
    store.get_or_compile_module(&engine, &wasm(1))?;
    store.get_or_compile_module(&engine, &wasm(2))?;
    Ok(Fleet {
        one: Key::new(&engine, &wasm(1))?,
        two: Key::new(&engine, &wasm(2))?,
        dir,
        farm_key,
        engine,
    })
}

impl Fleet {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn local(&self) -> LocalDir {
        LocalDir::new(self.root()).unwrap()
    }

    /// A host looks wasm 1 up: it must be refused, compiled, answer 1, and
    /// leave the store exactly as it was.
    fn assert_refused(&self, refused: &[&str]) -> Result<()> {
        let before = snapshot(self.root());
        let host = host(self.root(), &self.farm_key, refused);
        let module = host.get_or_compile_module(&self.engine, &wasm(1))?;
        assert_eq!(call(&self.engine, &module), 1, "the host ran planted bytes");
        let stats = host.stats();
        assert_eq!((stats.hits, stats.compiles), (0, 1), "{stats:?}");
        assert!(stats.refused >= 1, "{stats:?}");
        assert_eq!(stats.rejected, 0, "{stats:?}");
        assert_eq!(snapshot(self.root()), before, "the host changed the store");
        Ok(())
    }
}

#[test]
fn a_host_with_only_the_public_key_loads_what_the_farm_signed() -> Result<()> {
    let fleet = fleet()?;
    let before = snapshot(fleet.root());
    let host = host(fleet.root(), &fleet.farm_key, &["<48.0.8"]);
    for (n, key) in [(1, fleet.one), (2, fleet.two)] {
        let module = host.get_or_compile_module(&fleet.engine, &wasm(n))?;
        assert_eq!(call(&fleet.engine, &module), n);
        assert!(host.get(&key)?.is_some());
    }
    let stats = host.stats();
    assert_eq!(
        (stats.hits, stats.compiles, stats.refused),
        (4, 0, 0),
        "{stats:?}"
    );
    assert!(host.verify()?.is_empty());
    assert_eq!(snapshot(fleet.root()), before);
    // The host cannot sign, so it writes nothing.
    assert!(
        host.put(&fleet.one, &host.get(&fleet.one)?.unwrap())
            .is_err()
    );
    Ok(())
}

#[test]
fn a_missing_or_unsigned_statement_is_refused() -> Result<()> {
    let fleet = fleet()?;
    fleet.local().delete(&fleet.one.statement_path())?;
    fleet.assert_refused(&[])?;
    // An unsigned statement, as a store without a signing key writes.
    let unsigned = ArtifactStore::open(fleet.root())?;
    unsigned.put(&fleet.one, &unsigned.get(&fleet.one)?.unwrap())?;
    fleet.assert_refused(&[])
}

#[test]
fn a_tampered_statement_is_refused() -> Result<()> {
    let fleet = fleet()?;
    let path = fleet.one.statement_path();
    let envelope: serde_json::Value = serde_json::from_slice(&fleet.local().read(&path)?.unwrap())?;
    // The farm's signature over a statement that says something else.
    let payload = BASE64_STANDARD.decode(envelope["payload"].as_str().unwrap())?;
    let mut statement: serde_json::Value = serde_json::from_slice(&payload)?;
    statement["predicate"]["producer"]["wasmtime"] = "48.0.9".into();
    let mut tampered = envelope.clone();
    tampered["payload"] = BASE64_STANDARD
        .encode(serde_json::to_vec(&statement)?)
        .into();
    fleet
        .local()
        .write(&path, &serde_json::to_vec(&tampered)?)?;
    fleet.assert_refused(&[])?;
    // The signature itself changed.
    let mut tampered = envelope;
    let mut sig = BASE64_STANDARD.decode(tampered["signatures"][0]["sig"].as_str().unwrap())?;
    sig[10] ^= 1;
    tampered["signatures"][0]["sig"] = BASE64_STANDARD.encode(sig).into();
    fleet
        .local()
        .write(&path, &serde_json::to_vec(&tampered)?)?;
    fleet.assert_refused(&[])?;
    // Not a statement at all.
    fleet.local().write(&path, b"{\"payloadType\": 1}")?;
    fleet.assert_refused(&[])
}

#[test]
fn a_swapped_artifact_is_refused() -> Result<()> {
    let fleet = fleet()?;
    let local = fleet.local();
    // wasm 2's artifact, of the same engine, under wasm 1's key and its
    // (genuine) statement: the stamp matches, the digest does not.
    let other = local.read(&fleet.two.artifact_path())?.unwrap();
    local.write(&fleet.one.artifact_path(), &other)?;
    fleet.assert_refused(&[])
}

#[test]
fn a_statement_for_another_wasm_or_engine_is_refused() -> Result<()> {
    let fleet = fleet()?;
    let local = fleet.local();
    // wasm 2's signed statement and artifact, both genuine, under wasm 1's
    // key.
    for path in [Key::artifact_path, Key::statement_path] {
        let bytes = local.read(&path(&fleet.two))?.unwrap();
        local.write(&path(&fleet.one), &bytes)?;
    }
    fleet.assert_refused(&[])?;

    // Another engine's signed statement and artifact for wasm 1.
    let fleet = self::fleet()?;
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    let other_engine = Engine::new(&config)?;
    let other = farm(fleet.root(), &fleet.farm_key);
    other.get_or_compile_module(&other_engine, &wasm(1))?;
    let other_key = Key::new(&other_engine, &wasm(1))?;
    assert_ne!(other_key, fleet.one);
    let local = fleet.local();
    let statement = local.read(&other_key.statement_path())?.unwrap();
    local.write(&fleet.one.statement_path(), &statement)?;
    fleet.assert_refused(&[])
}

#[test]
fn an_unknown_signer_is_refused() -> Result<()> {
    let fleet = fleet()?;
    // Someone else's key signs wasm 1's entry, over the farm's.
    let rogue = farm(fleet.root(), &SigningKey::generate()?);
    let artifact = rogue.get(&fleet.one)?.unwrap();
    rogue.put(&fleet.one, &artifact)?;
    fleet.assert_refused(&[])
}

#[test]
fn a_revoked_producer_is_refused_and_recompiled_where_the_store_writes() -> Result<()> {
    let fleet = fleet()?;
    fleet.assert_refused(&["<99.0.0"])?;
    fleet.assert_refused(&["=48.0.8"])?;
    // Without a statement, the producer is unknown: refused too.
    let unsigned_dir = tempfile::tempdir()?;
    let policy = |refused: &str| StoreConfig {
        refused_producers: vec![semver::VersionReq::parse(refused).unwrap()],
        ..StoreConfig::default()
    };
    let plain = ArtifactStore::open(unsigned_dir.path())?;
    plain.get_or_compile_module(&fleet.engine, &wasm(1))?;
    LocalDir::new(unsigned_dir.path())?.delete(&fleet.one.statement_path())?;
    let refusing = ArtifactStore::new(
        Some(LocalDir::new(unsigned_dir.path())?),
        None,
        policy("<48.0.8"),
    )?;
    refusing.get_or_compile_module(&fleet.engine, &wasm(1))?;
    let stats = refusing.stats();
    assert_eq!((stats.hits, stats.compiles), (0, 1), "{stats:?}");
    assert!(stats.refused >= 1, "{stats:?}");
    // That store writes: the compile replaced the entry, with a statement
    // naming this producer, which the policy accepts from then on.
    refusing.get_or_compile_module(&fleet.engine, &wasm(1))?;
    let stats = refusing.stats();
    assert_eq!((stats.hits, stats.compiles), (1, 1), "{stats:?}");
    Ok(())
}

#[test]
fn signatures_travel_from_the_object_store_into_the_local_tier() -> Result<()> {
    let farm_key = SigningKey::generate()?;
    let engine = Engine::default();
    let remote_dir = tempfile::tempdir()?;
    // The farm writes to the shared tier only.
    let config = StoreConfig {
        signing_key: Some(farm_key.clone()),
        ..StoreConfig::default()
    };
    let remote = || -> Box<dyn Backend> { Box::new(LocalDir::new(remote_dir.path()).unwrap()) };
    ArtifactStore::new(None, Some(remote()), config)?.get_or_compile_module(&engine, &wasm(7))?;
    // A host reads through its own local tier, holding the public key only.
    let local_dir = tempfile::tempdir()?;
    let trusted = StoreConfig {
        trusted_keys: vec![farm_key.public_key().clone()],
        ..StoreConfig::default()
    };
    let host = ArtifactStore::new(
        Some(LocalDir::new(local_dir.path())?),
        Some(remote()),
        trusted.clone(),
    )?;
    let module = host.get_or_compile_module(&engine, &wasm(7))?;
    assert_eq!(call(&engine, &module), 7);
    host.flush();
    let key = Key::new(&engine, &wasm(7))?;
    let statement = |dir: &Path| {
        LocalDir::new(dir)
            .unwrap()
            .read(&key.statement_path())
            .unwrap()
    };
    assert_eq!(statement(local_dir.path()), statement(remote_dir.path()));
    assert!(statement(local_dir.path()).is_some());
    // The local copy verifies on its own, with the remote gone.
    let alone = ArtifactStore::new(Some(LocalDir::new(local_dir.path())?), None, trusted)?;
    let module = alone.get_or_compile_module(&engine, &wasm(7))?;
    assert_eq!(call(&engine, &module), 7);
    assert_eq!(alone.stats().hits, 1);
    Ok(())
}

#[test]
fn producers_are_listed_and_a_release_is_removed_by_version() -> Result<()> {
    let fleet = fleet()?;
    let store = ArtifactStore::open(fleet.root())?;
    let producers = store.producers()?;
    assert_eq!(producers.len(), 2);
    assert!(
        producers
            .iter()
            .all(|(_, p)| p.as_ref().unwrap().wasmtime == "48.0.8")
    );
    let engines = store.engines()?;
    assert_eq!(engines[0].producers.get("48.0.8"), Some(&2));
    // An entry without a statement has no known producer: never matched.
    fleet.local().delete(&fleet.two.statement_path())?;
    let none = semver::VersionReq::parse("<48.0.8")?;
    assert!(store.remove_produced_by(&none, false)?.is_empty());
    let all = semver::VersionReq::parse("<99.0.0")?;
    let before = snapshot(fleet.root());
    assert_eq!(store.remove_produced_by(&all, true)?, vec![fleet.one]);
    assert_eq!(snapshot(fleet.root()), before, "a dry run deleted");
    assert_eq!(store.remove_produced_by(&all, false)?, vec![fleet.one]);
    let left: Vec<Key> = store.list()?.into_iter().map(|e| e.key).collect();
    assert_eq!(left, vec![fleet.two]);
    assert!(fleet.local().read(&fleet.one.statement_path())?.is_none());
    Ok(())
}

/// The statement is read like a tag: a FIFO does not hang the lookup, a
/// symbolic link is not followed (even to the genuine statement), and a
/// huge file is not read. Each is a refusal within a time and memory bound.
#[test]
fn a_hostile_statement_is_refused_in_bounded_time_and_memory() -> Result<()> {
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};
    let fleet = fleet()?;
    let path = fleet.root().join(fleet.one.statement_path());
    let genuine = fleet.root().join("genuine.json");
    std::fs::rename(&path, &genuine)?;
    let before = common::peak_memory();
    let plant = |how: &dyn Fn(&Path)| -> Result<()> {
        let _ = std::fs::remove_file(&path);
        how(&path);
        let started = Instant::now();
        fleet.assert_refused(&[])?;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        Ok(())
    };
    plant(&|p| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap()
    })?;
    plant(&|p| symlink(&genuine, p).unwrap())?;
    plant(&|p| {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(1 << 30).unwrap();
    })?;
    let grew = common::peak_memory().saturating_sub(before);
    assert!(grew < 64 << 20, "peak memory grew by {grew} bytes");
    Ok(())
}

/// A store may have both a key and trusted keys: then a hit needs both a
/// valid tag and a trusted signature. A bad tag is proof the entry is bad
/// (deleted, as in any keyed store); a missing signature is a refusal.
#[test]
fn a_keyed_and_signed_store_needs_both() -> Result<()> {
    const SECRET: &[u8] = b"the fleet's key, sixteen bytes or more";
    let dir = tempfile::tempdir()?;
    let engine = Engine::default();
    let farm_key = SigningKey::generate()?;
    let both = |signing: Option<SigningKey>| StoreConfig {
        hmac_key: Some(SECRET.to_vec()),
        signing_key: signing,
        trusted_keys: vec![farm_key.public_key().clone()],
        ..StoreConfig::default()
    };
    let open = |config| ArtifactStore::new(Some(LocalDir::new(dir.path()).unwrap()), None, config);
    open(both(Some(farm_key.clone())))?.get_or_compile_module(&engine, &wasm(5))?;
    let key = Key::new(&engine, &wasm(5))?;
    let host = open(both(None))?;
    assert_eq!(
        call(&engine, &host.get_or_compile_module(&engine, &wasm(5))?),
        5
    );
    assert_eq!((host.stats().hits, host.stats().compiles), (1, 0));

    // A statement without a signature (as a store without a signing key
    // writes it), the tag intact: refused, kept.
    let elsewhere = tempfile::tempdir()?;
    ArtifactStore::open(elsewhere.path())?.get_or_compile_module(&engine, &wasm(5))?;
    let statement = LocalDir::new(elsewhere.path())?
        .read(&key.statement_path())?
        .unwrap();
    LocalDir::new(dir.path())?.write(&key.statement_path(), &statement)?;
    let host = open(both(None))?;
    assert_eq!(
        call(&engine, &host.get_or_compile_module(&engine, &wasm(5))?),
        5
    );
    let stats = host.stats();
    assert_eq!((stats.compiles, stats.rejected), (1, 0), "{stats:?}");
    assert!(stats.refused >= 1);
    assert!(dir.path().join(key.artifact_path()).exists());

    // A tag that does not verify: the entry is proven bad, and deleted.
    LocalDir::new(dir.path())?.write(&key.tag_path(), &[3; 33])?;
    let host = open(both(None))?;
    assert_eq!(
        call(&engine, &host.get_or_compile_module(&engine, &wasm(5))?),
        5
    );
    assert_eq!(host.stats().rejected, 1, "{:?}", host.stats());
    assert!(!dir.path().join(key.artifact_path()).exists());
    Ok(())
}
