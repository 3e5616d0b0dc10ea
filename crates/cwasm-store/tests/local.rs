//! The store on a real local directory: layout, hits and misses, checks
//! before `unsafe`, HMAC, eviction, retention, single flight, and failures
//! that must not fail the caller.

mod common;

use common::{call, wasm};
use cwasm_store::{ArtifactStore, Backend, Digest, Key, Listed, LocalDir, StoreConfig};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wasmtime::{Config, Engine, OptLevel, Result, Store, bail};

const COMPONENT: &str = r#"(component
  (core module $m (func (export "answer") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func (export "answer") (result s32) (canon lift (core func $i "answer"))))"#;

fn other_engine() -> Engine {
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::None);
    Engine::new(&config).unwrap()
}

#[test]
fn miss_then_hit_with_the_documented_layout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let engine = Engine::default();
    let m = store.get_or_compile_module(&engine, &wasm(1))?;
    assert_eq!(call(&engine, &m), 1);
    assert_eq!((store.stats().misses, store.stats().compiles), (1, 1));

    let key = Key::new(&engine, &wasm(1))?;
    let file = dir.path().join(key.artifact_path());
    assert!(file.exists(), "{}", file.display());
    assert_eq!(
        Engine::detect_serialization_compatibility_hash_file(&file)?,
        Some(key.engine.0)
    );
    let descriptor: serde_json::Value = serde_json::from_slice(&std::fs::read(
        dir.path().join(key.engine.to_string()).join("engine.json"),
    )?)?;
    assert_eq!(descriptor["wasmtime_version"], "48");
    assert_eq!(descriptor["engine"], key.engine.to_string());
    assert!(descriptor["target"].as_str().unwrap().starts_with("x86_64"));

    // A second store on the same directory (another process, say) hits.
    let again = ArtifactStore::open(dir.path())?;
    let m = again.get_or_compile_module(&engine, &wasm(1))?;
    assert_eq!(call(&engine, &m), 1);
    assert_eq!((again.stats().hits, again.stats().compiles), (1, 0));
    Ok(())
}

#[test]
fn components_and_caller_supplied_digests() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let engine = Engine::default();
    let layer = Digest::from_oci(
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    )?;
    for _ in 0..2 {
        let c = store.get_or_compile_component_with_digest(&engine, COMPONENT.as_bytes(), layer)?;
        let mut s = Store::new(&engine, ());
        let linker = wasmtime::component::Linker::new(&engine);
        let instance = linker.instantiate(&mut s, &c)?;
        let f = instance.get_typed_func::<(), (i32,)>(&mut s, "answer")?;
        assert_eq!(f.call(&mut s, ())?.0, 7);
    }
    assert_eq!((store.stats().compiles, store.stats().hits), (1, 1));
    let key = Key::with_wasm_digest(&engine, layer)?;
    assert!(store.contains(&key)?);
    // A module asked for under a component's key is a clean error, and the
    // component stays stored.
    let err = store
        .get_or_compile_module_with_digest(&engine, &wasm(1), layer)
        .unwrap_err();
    assert!(format!("{err:#}").contains("is a component"), "{err:#}");
    assert!(store.contains(&key)?);
    assert_eq!(store.stats().rejected, 0);
    Ok(())
}

#[test]
fn engines_share_one_store_by_prefix() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let (a, b) = (Engine::default(), other_engine());
    store.get_or_compile_module(&a, &wasm(1))?;
    store.get_or_compile_module(&a, &wasm(2))?;
    store.get_or_compile_module(&b, &wasm(1))?;
    let engines = store.engines()?;
    assert_eq!(engines.len(), 2);
    let of = |e: &Engine| {
        let d = Digest(e.serialization_compatibility_hash().unwrap());
        engines.iter().find(|s| s.engine == d).unwrap().clone()
    };
    assert_eq!(of(&a).entries, 2);
    assert_eq!(of(&b).entries, 1);
    assert!(of(&a).descriptor.is_some());
    assert_eq!(store.list()?.len(), 3);

    // Retiring engine `b` is one prefix delete.
    store.retain(&[Digest(a.serialization_compatibility_hash()?)])?;
    assert_eq!(store.engines()?.len(), 1);
    assert!(
        !dir.path()
            .join(of(&b).engine.to_string())
            .join("engine.json")
            .exists()
    );
    assert_eq!(store.list()?.len(), 2);

    let key = Key::new(&a, &wasm(2))?;
    store.remove(&key)?;
    assert!(!store.contains(&key)?);
    assert!(store.get(&key)?.is_none());
    Ok(())
}

/// The stamp check before `unsafe`: an entry whose engine section does not
/// hash to the key's engine hash is never deserialized; it is evicted,
/// counted, and compiled again.
#[test]
fn wrong_or_corrupt_entries_are_evicted_and_recompiled() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let (a, b) = (Engine::default(), other_engine());
    let key_a = Key::new(&a, &wasm(3))?;
    let path = dir.path().join(key_a.artifact_path());
    std::fs::create_dir_all(path.parent().unwrap())?;

    // An artifact of engine `b` filed under engine `a`'s hash.
    std::fs::write(&path, b.precompile_module(&wasm(3))?)?;
    let m = store.get_or_compile_module(&a, &wasm(3))?;
    assert_eq!(call(&a, &m), 3);
    assert_eq!(store.stats().rejected, 1);
    assert_eq!(store.stats().compiles, 1);
    // Replaced by a good one.
    assert_eq!(
        Engine::detect_serialization_compatibility_hash_file(&path)?,
        Some(key_a.engine.0)
    );

    // Garbage and truncation.
    for bad in [b"garbage".to_vec(), std::fs::read(&path)?[..100].to_vec()] {
        std::fs::write(&path, bad)?;
        let m = store.get_or_compile_module(&a, &wasm(3))?;
        assert_eq!(call(&a, &m), 3);
    }
    assert_eq!(store.stats().rejected, 3);

    // `put` refuses to file an artifact under another engine.
    let err = store
        .put(&key_a, &b.precompile_module(&wasm(3))?)
        .unwrap_err();
    assert!(format!("{err:#}").contains("compiled by engine"), "{err:#}");

    // `verify` reports bad entries without deleting them.
    std::fs::write(&path, b"garbage")?;
    let bad = store.verify()?;
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, key_a);
    assert!(path.exists());
    Ok(())
}

/// With a key, only entries whose tag verifies are loaded: a writer without
/// the key cannot plant native code. The directory is shared
/// (group-writable), as it is when someone else can write to it.
#[test]
fn hmac_keeps_out_planted_entries() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770))?;
    let engine = Engine::default();
    let keyed = |secret: &[u8]| {
        ArtifactStore::new(
            Some(LocalDir::new(dir.path()).unwrap()),
            None,
            StoreConfig {
                hmac_key: Some(secret.to_vec()),
                ..StoreConfig::default()
            },
        )
        .unwrap()
    };
    let store = keyed(b"secret, sixteen bytes or more");
    store.get_or_compile_module(&engine, &wasm(4))?;
    let key = Key::new(&engine, &wasm(4))?;
    assert!(dir.path().join(key.tag_path()).exists());
    let again = keyed(b"secret, sixteen bytes or more");
    again.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!((again.stats().hits, again.stats().rejected), (1, 0));

    // An attacker without the key plants an entry (a valid artifact for this
    // engine, but of other code) with no tag, then with a made-up tag.
    let planted = engine.precompile_module(&wasm(666))?;
    let path = dir.path().join(key.artifact_path());
    std::fs::write(&path, &planted)?;
    std::fs::remove_file(dir.path().join(key.tag_path()))?;
    let m = again.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    std::fs::write(&path, &planted)?;
    std::fs::write(dir.path().join(key.tag_path()), [0u8; 32])?;
    let m = again.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    // A store with another key rejects entries tagged with this one.
    let m = keyed(b"another secret, sixteen or more").get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    assert_eq!(again.stats().rejected, 2);
    // And a tag moved onto another key's artifact does not verify either.
    let other_key = Key::new(&engine, &wasm(5))?;
    let store = keyed(b"secret, sixteen bytes or more");
    store.get_or_compile_module(&engine, &wasm(5))?;
    std::fs::copy(
        dir.path().join(key.tag_path()),
        dir.path().join(other_key.tag_path()),
    )?;
    std::fs::copy(&path, dir.path().join(other_key.artifact_path()))?;
    let m = store.get_or_compile_module(&engine, &wasm(5))?;
    assert_eq!(call(&engine, &m), 5);
    assert_eq!(store.stats().rejected, 1);
    Ok(())
}

/// `get_or_compile_module_file` remembers a file's digest once the file has
/// settled, and hashes a changed file again: a same-size rewrite in place
/// within the same second included.
#[test]
fn file_lookups_hash_a_file_again_whenever_it_changed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path().join("store"))?;
    let engine = Engine::default();
    let file = dir.path().join("app.wat");
    let answer = |store: &ArtifactStore| {
        let m = store.get_or_compile_module_file(&engine, &file).unwrap();
        (call(&engine, &m), store.stats().files_hashed)
    };
    std::fs::write(&file, wasm(1))?;
    assert_eq!(answer(&store), (1, 1));
    // Rewritten in place, same size, at once (same inode; likely the same
    // time stamps): hashed again, because the file had not settled.
    std::fs::write(&file, wasm(2))?;
    assert_eq!(std::fs::read(&file)?.len(), wasm(1).len());
    assert_eq!(answer(&store), (2, 2));
    assert_eq!(answer(&store), (2, 3));
    // Settled: hashed once more, then remembered.
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(answer(&store), (2, 4));
    assert_eq!(answer(&store), (2, 4));
    assert_eq!(store.stats().compiles, 2);
    // Any change afterwards is seen: in place, same size...
    std::fs::write(&file, wasm(3))?;
    assert_eq!(answer(&store), (3, 5));
    // ...or another file renamed over it.
    let next = dir.path().join("next.wat");
    std::fs::write(&next, wasm(5))?;
    std::fs::rename(&next, &file)?;
    assert_eq!(answer(&store), (5, 6));
    // A missing file is an error naming it.
    let missing = store.get_or_compile_module_file(&engine, dir.path().join("nope.wasm"));
    assert!(format!("{:#}", missing.unwrap_err()).contains("nope.wasm"));
    Ok(())
}

/// A store in `dir`, configured by a wasmtime cache config file with the
/// `[cache]` settings `settings` and `directory = dir`.
fn limited(dir: &std::path::Path, settings: &str) -> ArtifactStore {
    let file = tempfile::NamedTempFile::new().unwrap();
    let text = format!("[cache]\ndirectory = '{}'\n{settings}", dir.display());
    std::fs::write(file.path(), text).unwrap();
    let (config, named) = StoreConfig::from_cache_file(file.path()).unwrap();
    let named = named.expect("the file names its directory");
    assert_eq!(named, dir.canonicalize().unwrap());
    ArtifactStore::new(Some(LocalDir::new(named).unwrap()), None, config).unwrap()
}

fn set_last_use(dir: &std::path::Path, key: &Key, ago: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join(key.artifact_path()))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(ago))
        .unwrap();
}

/// Count soft limit, LRU by last use, down to the percentage target; a hit
/// refreshes last use.
#[test]
fn eviction_by_count_is_least_recently_used_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = limited(
        dir.path(),
        "file-count-soft-limit = \"4\"\nfile-count-limit-percent-if-deleting = \"50%\"\n\
         cleanup-interval = \"1d\"",
    );
    let engine = Engine::default();
    let keys: Vec<Key> = (0..6)
        .map(|i| Key::new(&engine, &wasm(i)).unwrap())
        .collect();
    for i in 0..6 {
        store.get_or_compile_module(&engine, &wasm(i))?;
        set_last_use(dir.path(), &keys[i as usize], 1000 - i as u64 * 100);
    }
    // Entry 0 is the oldest, but is used now.
    store.get_or_compile_module(&engine, &wasm(0))?;
    let report = store.gc(true)?;
    assert_eq!(report.entries_before, 6);
    assert_eq!(report.deleted, vec![keys[1], keys[2], keys[3], keys[4]]);
    assert_eq!(store.list()?.len(), 6, "a dry run deletes nothing");
    let report = store.gc(false)?;
    assert_eq!(report.deleted.len(), 4);
    let left: Vec<Key> = store.list()?.into_iter().map(|e| e.key).collect();
    assert_eq!(left, {
        let mut k = vec![keys[0], keys[5]];
        k.sort();
        k
    });
    assert_eq!(store.stats().evictions, 4);
    Ok(())
}

#[test]
fn eviction_by_size_runs_on_put_after_the_cleanup_interval() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::default();
    let one = engine.precompile_module(&wasm(0))?.len() as u64;
    // Room for about three artifacts; delete down to 40%.
    let store = limited(
        dir.path(),
        &format!(
            "files-total-size-soft-limit = \"{}\"\n\
             files-total-size-limit-percent-if-deleting = \"40%\"\ncleanup-interval = \"0s\"",
            one * 3 + one / 2
        ),
    );
    for i in 0..5 {
        store.get_or_compile_module(&engine, &wasm(i))?;
        let key = Key::new(&engine, &wasm(i))?;
        set_last_use(dir.path(), &key, 1000 - i as u64 * 100);
    }
    let total: u64 = store.list()?.iter().map(|e| e.size).sum();
    assert!(total <= one * 3 + one / 2, "{total} bytes left");
    assert!(store.stats().evictions >= 2);
    Ok(())
}

#[test]
fn single_flight_compiles_once_per_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(ArtifactStore::open(dir.path())?);
    let engine = Engine::default();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, engine) = (store.clone(), engine.clone());
            std::thread::spawn(move || {
                let m = store.get_or_compile_module(&engine, &wasm(9)).unwrap();
                call(&engine, &m)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 9);
    }
    let stats = store.stats();
    assert_eq!(stats.compiles, 1, "{stats:?}");
    assert_eq!(stats.hits, 7, "{stats:?}");
    Ok(())
}

/// A backend whose every operation fails, standing in for a read-only or
/// full disk.
#[derive(Debug)]
struct Broken;

impl Backend for Broken {
    fn describe(&self) -> String {
        "broken".into()
    }
    fn read(&self, _: &str) -> Result<Option<Vec<u8>>> {
        bail!("I/O error (injected)")
    }
    fn write(&self, _: &str, _: &[u8]) -> Result<()> {
        bail!("No space left on device (injected)")
    }
    fn delete(&self, _: &str) -> Result<()> {
        bail!("Read-only file system (injected)")
    }
    fn list(&self, _: &str) -> Result<Vec<Listed>> {
        bail!("I/O error (injected)")
    }
}

#[test]
fn a_failing_store_never_fails_the_caller() -> Result<()> {
    let engine = Engine::default();
    let store = ArtifactStore::new(None, Some(Box::new(Broken)), StoreConfig::default())?;
    for _ in 0..2 {
        let m = store.get_or_compile_module(&engine, &wasm(8))?;
        assert_eq!(call(&engine, &m), 8);
    }
    let stats = store.stats();
    assert_eq!(stats.compiles, 2);
    assert!(stats.store_errors >= 2, "{stats:?}");

    // A real object store that is down: nothing listens on this port.
    let down = ArtifactStore::new(
        None,
        Some(Box::new(cwasm_store::ObjectStoreBackend::open(
            "http://127.0.0.1:9/store",
        )?)),
        StoreConfig::default(),
    )?;
    let m = down.get_or_compile_module(&engine, &wasm(8))?;
    assert_eq!(call(&engine, &m), 8);
    assert!(down.stats().store_errors >= 1);

    // A directory that cannot exist is reported when opening the store.
    let file = tempfile::NamedTempFile::new()?;
    let err = ArtifactStore::open(file.path().join("sub")).unwrap_err();
    assert!(format!("{err:#}").contains("failed to create"), "{err:#}");
    Ok(())
}

#[test]
fn opens_from_a_wasmtime_cache_config_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config_file = dir.path().join("config.toml");
    std::fs::write(
        &config_file,
        format!(
            "[cache]\ndirectory = '{}'\nfiles-total-size-soft-limit = \"512Mi\"\n",
            dir.path().join("store").display()
        ),
    )?;
    let (config, named) = StoreConfig::from_cache_file(&config_file)?;
    let named = named.expect("the file names a directory");
    let store = ArtifactStore::new(Some(LocalDir::new(named)?), None, config)?;
    store.get_or_compile_module(&Engine::default(), &wasm(1))?;
    let prefixes = std::fs::read_dir(dir.path().join("store"))?
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
        .count();
    assert_eq!(prefixes, 1, "one engine prefix");
    Ok(())
}

/// The `[cache]` file is read and checked by wasmtime's own
/// `CacheConfig::from_file`: what wasmtime refuses, the store refuses (the
/// hand-written reader this replaced accepted the first three).
#[test]
fn cache_files_are_checked_as_wasmtime_checks_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("config.toml");
    let store = dir.path().join("store");
    let read = |settings: &str| {
        let text = format!("[cache]\ndirectory = '{}'\n{settings}", store.display());
        std::fs::write(&file, text).unwrap();
        StoreConfig::from_cache_file(&file).map(|(config, _)| config)
    };
    for bad in [
        "file-count-soft-limit = 65536",
        "optimized-compression-level = 1\nbaseline-compression-level = 3",
        "files-total-size-limit-percent-if-deleting = \"170%\"",
        "bogus = 1",
        "cleanup-interval = \"10\"",
    ] {
        assert!(read(bad).is_err(), "accepted {bad:?}");
    }
    std::fs::write(&file, "[cache]\ndirectory = 'relative/store'\n")?;
    let relative = StoreConfig::from_cache_file(&file).unwrap_err();
    assert!(format!("{relative:#}").contains("absolute"), "{relative:#}");
    // wasmtime's units, as `wasmtime` reads them.
    let config = read(
        "files-total-size-soft-limit = \"2Gi\"\nfile-count-soft-limit = \"3K\"\n\
         cleanup-interval = \"45s\"\nfile-count-limit-percent-if-deleting = \"10%\"",
    )?;
    assert_eq!(config.cache.files_total_size_soft_limit(), 2 << 30);
    assert_eq!(config.cache.file_count_soft_limit(), 3000);
    assert_eq!(config.cache.cleanup_interval(), Duration::from_secs(45));
    assert_eq!(config.cache.file_count_limit_percent_if_deleting(), 10);
    Ok(())
}

/// A digest supplied by the caller is trusted: a wrong one files the
/// artifact under another wasm's key (documented). The checked variants
/// refuse a digest that is not the wasm's, before any lookup or write.
#[test]
fn checked_digests_refuse_a_digest_of_other_bytes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let engine = Engine::default();
    let wrong = Digest::of(&wasm(2));
    let error = store
        .get_or_compile_module_with_checked_digest(&engine, &wasm(1), wrong)
        .expect_err("a digest of other bytes was accepted");
    assert!(
        format!("{error:#}").contains("not the digest supplied"),
        "{error:#}"
    );
    assert_eq!(store.stats().compiles, 0);
    assert!(store.list()?.is_empty());
    let error = store
        .get_or_compile_component_with_checked_digest(&engine, COMPONENT.as_bytes(), wrong)
        .expect_err("a digest of other bytes was accepted");
    assert!(
        format!("{error:#}").contains("not the digest supplied"),
        "{error:#}"
    );
    // The right digest works as the unchecked variant does.
    let m =
        store.get_or_compile_module_with_checked_digest(&engine, &wasm(1), Digest::of(&wasm(1)))?;
    assert_eq!(call(&engine, &m), 1);
    // The unchecked variant, given the wrong digest, files wasm 1 under
    // wasm 2's key: what its documentation warns of.
    store.get_or_compile_module_with_digest(&engine, &wasm(1), wrong)?;
    let m = store.get_or_compile_module(&engine, &wasm(2))?;
    assert_eq!(call(&engine, &m), 1, "the documented hazard");
    Ok(())
}
