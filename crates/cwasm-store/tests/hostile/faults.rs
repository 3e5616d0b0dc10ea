//! Faults that are not the entry's: hosts that cannot run or map an artifact,
//! dead buckets, unreadable tags, a caller's tokio runtime, bad settings,
//! credentials. Misses that delete nothing, and clear errors.

use super::*;

#[test]
fn a_host_that_cannot_run_an_entry_leaves_it_for_the_others() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let (store, _) = hit_or_compile(store, 7);
    let entry = dir.path().join(key(7).artifact_path());
    let stored = std::fs::read(&entry)?;

    // A host that claims none of the CPU features this one has: the same
    // hash (detection does not reach artifacts), but it refuses the code.
    let mut config = Config::new();
    unsafe { config.detect_host_feature(|_| Some(false)) };
    let weak = Engine::new(&config)?;
    assert_eq!(
        weak.serialization_compatibility_hash()?,
        Engine::default().serialization_compatibility_hash()?
    );
    let result = within_bound("lookup on a weaker host", move || {
        let r = store.get_or_compile_module(&weak, &wasm(7)).map(drop);
        (store, r)
    });
    let (store, outcome) = result;
    // This host cannot run code compiled for itself either; what matters is
    // that the fleet's entry is still there, unchanged.
    eprintln!("weak host: {outcome:?}");
    assert_eq!(store.stats().rejected, 0);
    assert_eq!(std::fs::read(&entry)?, stored);
    Ok(())
}

#[test]
fn short_hmac_keys_and_overflowing_limits_are_errors_naming_the_setting() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let open = |config: StoreConfig| {
        ArtifactStore::new(Some(LocalDir::new(dir.path()).unwrap()), None, config)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    };
    let short = open(StoreConfig {
        hmac_key: Some(b"short".to_vec()),
        ..StoreConfig::default()
    });
    assert!(
        short.as_ref().is_err_and(|e| e.contains("hmac_key")),
        "{short:?}"
    );
    let huge = open(StoreConfig {
        cache: {
            let mut cache = CacheConfig::new();
            cache.with_file_count_soft_limit(u64::MAX);
            cache
        },
        ..StoreConfig::default()
    });
    assert!(
        huge.as_ref()
            .is_err_and(|e| e.contains("file-count-soft-limit")),
        "{huge:?}"
    );
    let ok = open(StoreConfig {
        hmac_key: Some(vec![7; 16]),
        ..StoreConfig::default()
    });
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn a_dead_bucket_costs_a_bounded_time_then_is_skipped() -> Result<()> {
    let _serial = serial();
    let options = cwasm_store::RemoteOptions {
        timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        skip_after_failure: Duration::from_secs(60),
    };
    // Nothing listens on port 9 (discard) here: connections are refused.
    let remote = cwasm_store::ObjectStoreBackend::open_with("http://127.0.0.1:9/bucket", options)?;
    let store = ArtifactStore::new(None, Some(Box::new(remote)), StoreConfig::default())?;
    let start = Instant::now();
    let (store, answer) = within_bound("first lookup, dead bucket", move || {
        hit_or_compile(store, 9)
    });
    assert_eq!(answer, 9);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    // Skipped now: the next lookups do not wait for it at all.
    let start = Instant::now();
    let (store, answer) = within_bound("lookup while skipped", move || hit_or_compile(store, 10));
    assert_eq!(answer, 10);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(store.stats().store_errors >= 2);
    Ok(())
}

#[test]
fn the_store_works_inside_a_tokio_runtime() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let remote = cwasm_store::ObjectStoreBackend::open("http://127.0.0.1:9/bucket")?;
    let store = ArtifactStore::new(
        Some(LocalDir::new(dir.path())?),
        Some(Box::new(remote)),
        StoreConfig::default(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = within_bound("a lookup from async code", move || {
        runtime.block_on(async {
            let engine = Engine::default();
            let m = store.get_or_compile_module(&engine, &wasm(11)).unwrap();
            call(&engine, &m)
        })
    });
    assert_eq!(answer, 11);
    Ok(())
}

#[test]
fn credentials_in_store_urls_are_not_shown() -> Result<()> {
    let _serial = serial();
    let remote = cwasm_store::ObjectStoreBackend::open(
        "http://alice:hunter2@127.0.0.1:9/bucket?sig=s3cr3tsig",
    )?;
    let shown = remote.describe();
    let error = format!("{:#}", remote.read("x/y.cwasm").unwrap_err());
    let debug = format!("{remote:?}");
    for text in [&shown, &error, &debug] {
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3tsig"),
            "{text}"
        );
    }
    assert!(shown.contains("127.0.0.1:9/bucket"), "{shown}");
    Ok(())
}

/// A bucket whose tags cannot be read while `fail` is set (a network blip),
/// and which records every delete.
#[derive(Debug)]
struct FlakyTags {
    bucket: std::sync::Arc<Bucket>,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    deleted: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Backend for FlakyTags {
    fn describe(&self) -> String {
        "mem://flaky".into()
    }
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        if path.ends_with(".hmac") && self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            wasmtime::bail!("connection reset by peer");
        }
        self.bucket.read(path)
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.bucket.write(path, bytes)
    }
    fn delete(&self, path: &str) -> Result<()> {
        self.deleted.lock().unwrap().push(path.into());
        self.bucket.delete(path)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.bucket.list(prefix)
    }
}

/// Only a check that proves an entry bad deletes it: a tag that cannot be
/// read right now is a miss, and the entry is there for the next lookup.
#[test]
fn an_unreadable_tag_is_a_miss_that_keeps_the_entry() -> Result<()> {
    let _serial = serial();
    let (fail, deleted) = (std::sync::Arc::default(), std::sync::Arc::default());
    let backend = FlakyTags {
        bucket: std::sync::Arc::default(),
        fail: std::sync::Arc::clone(&fail),
        deleted: std::sync::Arc::clone(&deleted),
    };
    let config = StoreConfig {
        hmac_key: Some(vec![7; 32]),
        ..StoreConfig::default()
    };
    let store = ArtifactStore::new(None, Some(Box::new(backend)), config)?;
    let (store, _) = hit_or_compile(store, 15);
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let (store, answer) = hit_or_compile(store, 15);
    assert_eq!(answer, 15);
    let stats = store.stats();
    assert_eq!((stats.hits, stats.rejected), (0, 0), "{stats:?}");
    assert!(stats.store_errors >= 1, "{stats:?}");
    assert!(deleted.lock().unwrap().is_empty(), "{:?}", deleted);
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let (store, _) = hit_or_compile(store, 15);
    assert_eq!(store.stats().hits, 1);
    Ok(())
}

/// A `noexec` tmpfs, unmounted on drop; `None` where this process may not
/// mount (not root, or no `CAP_SYS_ADMIN`).
struct NoexecMount(tempfile::TempDir);

impl NoexecMount {
    fn new() -> Option<NoexecMount> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(NoexecMount(dir))
    }
}

impl Drop for NoexecMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// A host that may not map the stored file executable (a `noexec` mount;
/// SELinux gives the same error) cannot load an unkeyed hit: that is the
/// host's refusal, a miss that deletes nothing (before, the entry was
/// rejected and deleted as damaged, for every host sharing it). A keyed
/// store loads from its sealed copy, which is not on the mount: a hit.
#[test]
fn a_host_that_cannot_map_code_deletes_nothing() -> Result<()> {
    let Some(mount) = NoexecMount::new() else {
        eprintln!("skipped: cannot mount a noexec tmpfs here (needs root)");
        return Ok(());
    };
    let engine = Engine::default();
    let root = mount.0.path().join("store");
    ArtifactStore::open(&root)?.get_or_compile_module(&engine, &wasm(3))?;
    let path = root.join(key(3).artifact_path());
    for _ in 0..2 {
        let store = ArtifactStore::open(&root)?;
        let m = store.get_or_compile_module(&engine, &wasm(3))?;
        assert_eq!(call(&engine, &m), 3);
        let stats = store.stats();
        assert_eq!(stats.rejected, 0, "{stats:?}");
        assert!(stats.store_errors >= 1, "{stats:?}");
        assert!(path.exists(), "the good entry was deleted");
    }
    let keyed_config = StoreConfig {
        hmac_key: Some(b"sixteen bytes or more, a key".to_vec()),
        ..StoreConfig::default()
    };
    let keyed_root = mount.0.path().join("keyed");
    let keyed = || {
        ArtifactStore::new(
            Some(LocalDir::new(&keyed_root).unwrap()),
            None,
            keyed_config.clone(),
        )
        .unwrap()
    };
    keyed().get_or_compile_module(&engine, &wasm(3))?;
    let store = keyed();
    let m = store.get_or_compile_module(&engine, &wasm(3))?;
    assert_eq!(call(&engine, &m), 3);
    assert_eq!((store.stats().hits, store.stats().rejected), (1, 0));
    Ok(())
}
