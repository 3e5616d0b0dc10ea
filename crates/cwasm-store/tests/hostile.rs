//! The store under attack: someone who can write to its directory (or
//! bucket) plants things where entries are expected. Each test asserts the
//! outcome (a miss, a refusal, an error), a time bound, and, where the
//! attack is about size, a bound on the process's peak memory.
//!
//! The tests of this file run one at a time (`serial`), so that the peak
//! memory of one is not charged to another.

mod common;

use common::{call, due_at_every_put, peak_memory, wasm, zstd_bomb_frame};
use cwasm_store::{ArtifactStore, Backend, CacheConfig, Key, Listed, LocalDir, StoreConfig};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::{Config, Engine, Result};

/// How long any lookup may take here, attacks included (compiling the test
/// modules takes milliseconds).
const TIME_BOUND: Duration = Duration::from_secs(20);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` in a thread and fails if it takes longer than `TIME_BOUND`
/// (a hang fails the test instead of blocking the suite).
fn within_bound<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let out = rx
        .recv_timeout(TIME_BOUND)
        .unwrap_or_else(|_| panic!("{what}: no answer within {TIME_BOUND:?}"));
    eprintln!("{what}: {:?}", start.elapsed());
    out
}

fn hit_or_compile(store: ArtifactStore, n: i32) -> (ArtifactStore, i32) {
    let engine = Engine::default();
    let m = store.get_or_compile_module(&engine, &wasm(n)).unwrap();
    let answer = call(&engine, &m);
    (store, answer)
}

fn key(n: i32) -> Key {
    Key::new(&Engine::default(), &wasm(n)).unwrap()
}

fn engine_dir(root: &Path, n: i32) -> std::path::PathBuf {
    root.join(key(n).engine.to_string())
}

#[test]
fn a_fifo_entry_is_a_miss_not_a_hang() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    std::fs::create_dir_all(engine_dir(dir.path(), 1))?;
    let fifo = dir.path().join(key(1).artifact_path());
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()?
            .success()
    );

    let (store, bad) = within_bound("verify with a FIFO entry", move || {
        let bad = store.verify().unwrap();
        (store, bad)
    });
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].1.contains("not a regular file"), "{bad:?}");
    let (store, answer) = within_bound("lookup of a FIFO entry", move || hit_or_compile(store, 1));
    assert_eq!(answer, 1);
    assert_eq!(store.stats().rejected, 1);
    // The FIFO was replaced by the real artifact.
    assert!(std::fs::symlink_metadata(&fifo)?.is_file());
    Ok(())
}

#[test]
fn a_symlinked_entry_is_refused_and_its_target_untouched() -> Result<()> {
    let _serial = serial();
    let (dir, outside) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // The target is a valid artifact for this engine and key, but of other
    // code: following the link would load it.
    let planted = Engine::default().precompile_module(&wasm(666))?;
    let target = outside.path().join("planted.cwasm");
    std::fs::write(&target, &planted)?;
    std::fs::create_dir_all(engine_dir(dir.path(), 2))?;
    std::os::unix::fs::symlink(&target, dir.path().join(key(2).artifact_path()))?;

    let store = ArtifactStore::open(dir.path())?;
    let (store, answer) = within_bound("lookup of a symlinked entry", move || {
        hit_or_compile(store, 2)
    });
    assert_eq!(answer, 2, "the planted code was loaded");
    assert_eq!(store.stats().rejected, 1);
    assert_eq!(
        std::fs::read(&target)?,
        planted,
        "the link's target was written"
    );
    let entry = dir.path().join(key(2).artifact_path());
    assert!(
        std::fs::symlink_metadata(&entry)?.is_file(),
        "the link is still there"
    );
    Ok(())
}

#[test]
fn a_symlinked_engine_directory_is_neither_read_nor_written() -> Result<()> {
    let _serial = serial();
    let (dir, outside) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let planted = Engine::default().precompile_module(&wasm(666))?;
    let wasm_file = format!("{}.cwasm", key(3).wasm);
    std::fs::write(outside.path().join(&wasm_file), &planted)?;
    std::os::unix::fs::symlink(outside.path(), engine_dir(dir.path(), 3))?;

    let store = ArtifactStore::open(dir.path())?;
    let (store, answer) = within_bound("lookup under a symlinked directory", move || {
        hit_or_compile(store, 3)
    });
    assert_eq!(answer, 3, "the planted code was loaded");
    assert!(store.stats().store_errors > 0);
    // Nothing was written through the link.
    let mut names: Vec<_> = std::fs::read_dir(outside.path())?
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, [std::ffi::OsString::from(&wasm_file)]);
    assert_eq!(std::fs::read(outside.path().join(&wasm_file))?, planted);
    Ok(())
}

#[test]
fn a_planted_gc_stamp_link_is_not_followed() -> Result<()> {
    let _serial = serial();
    let (dir, outside) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious")?;
    std::os::unix::fs::symlink(&victim, dir.path().join(".gc-stamp"))?;
    // Eviction is due at every `put`, so the stamp is written.
    let config = StoreConfig {
        cache: due_at_every_put(),
        ..StoreConfig::default()
    };
    let store = ArtifactStore::new(Some(LocalDir::new(dir.path())?), None, config)?;
    let (_, answer) = within_bound("put beside a planted stamp", move || {
        hit_or_compile(store, 4)
    });
    assert_eq!(answer, 4);
    assert_eq!(std::fs::read(&victim)?, b"precious");
    Ok(())
}

#[test]
fn a_huge_entry_is_not_read() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(engine_dir(dir.path(), 5))?;
    // 4 GiB, sparse: costs no disk, but reading it would cost the memory.
    let huge = dir.path().join(key(5).artifact_path());
    std::fs::File::create(&huge)?.set_len(4 << 30)?;
    let config = StoreConfig {
        max_artifact_size: 64 << 20,
        ..StoreConfig::default()
    };
    let store = ArtifactStore::new(Some(LocalDir::new(dir.path())?), None, config)?;
    let before = peak_memory();
    let (store, answer) = within_bound("lookup of a 4 GiB entry", move || hit_or_compile(store, 5));
    assert_eq!(answer, 5);
    let grew = peak_memory().saturating_sub(before);
    assert!(grew < 64 << 20, "peak memory grew by {grew} bytes");
    // Too large is not proven bad: it is a miss, and no one's entry is
    // deleted for it (the compiled artifact then replaced it by rename).
    assert_eq!(store.stats().rejected, 0);
    Ok(())
}

#[test]
fn uppercase_names_are_not_entries() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let k = key(6);
    let artifact = Engine::default().precompile_module(&wasm(6))?;
    let upper = dir.path().join(k.engine.to_string().to_uppercase());
    std::fs::create_dir_all(&upper)?;
    std::fs::write(
        upper.join(format!("{}.cwasm", k.wasm.to_string().to_uppercase())),
        artifact,
    )?;
    let store = ArtifactStore::open(dir.path())?;
    assert!(store.list()?.is_empty());
    assert!(store.engines()?.is_empty(), "not a prefix");
    assert!(store.verify()?.is_empty());
    // ... but `verify`'s caller is told about it.
    assert_eq!(store.strays()?.len(), 1, "{:?}", store.strays()?);
    // Not a prefix either: retiring every generation leaves it alone.
    store.retain(&[])?;
    assert_eq!(std::fs::read_dir(&upper)?.count(), 1);
    Ok(())
}

#[test]
fn gc_waits_for_another_gc_and_puts_do_not() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        cache: due_at_every_put(),
        ..StoreConfig::default()
    };
    let store = std::sync::Arc::new(ArtifactStore::new(
        Some(LocalDir::new(dir.path())?),
        None,
        config,
    )?);
    // Another process's gc holds the lock.
    let lock = std::fs::File::create(dir.path().join(".gc-lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    // A put (whose gc is due) does not wait for it.
    let s = store.clone();
    within_bound("a put while another gc runs", move || {
        hit_or_compile_shared(&s, 13)
    });
    // An explicit gc does, until the other one is done.
    let (tx, rx) = std::sync::mpsc::channel();
    let s = store.clone();
    std::thread::spawn(move || tx.send(s.gc(false).map_err(|e| e.to_string())));
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "gc did not wait"
    );
    drop(lock);
    let report = rx
        .recv_timeout(TIME_BOUND)
        .expect("gc ran once the lock was free");
    assert!(report.is_ok_and(|r| !r.skipped_busy));
    Ok(())
}

fn hit_or_compile_shared(store: &ArtifactStore, n: i32) -> i32 {
    let engine = Engine::default();
    call(
        &engine,
        &store.get_or_compile_module(&engine, &wasm(n)).unwrap(),
    )
}

#[test]
fn gc_collects_old_orphan_tags_and_empty_prefixes() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let (store, _) = hit_or_compile(store, 14);
    let k = key(14);
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    // A tag whose artifact is gone, two hours old, and a fresh one (which
    // may be a write in progress: tags are written first).
    let old_tag = dir
        .path()
        .join(format!("{}/{}.cwasm.hmac", k.engine, "0".repeat(64)));
    let new_tag = dir
        .path()
        .join(format!("{}/{}.cwasm.hmac", k.engine, "1".repeat(64)));
    for tag in [&old_tag, &new_tag] {
        std::fs::write(tag, [0u8; 32])?;
    }
    std::fs::File::options()
        .write(true)
        .open(&old_tag)?
        .set_modified(two_hours_ago)?;
    // An engine prefix with nothing in it.
    let empty = dir.path().join("2".repeat(64));
    std::fs::create_dir(&empty)?;
    // A crashed writer's temporary file in the root (a `.gc-stamp` write).
    let dead_tmp = dir.path().join(".tmp-0123456789abcdef");
    // Old files that are not the store's: not a tag's name, not a prefix.
    let not_a_tag = dir.path().join(format!("{}/notes.hmac", k.engine));
    let not_a_prefix = dir.path().join("notes");
    std::fs::create_dir(&not_a_prefix)?;
    let not_a_descriptor = not_a_prefix.join("engine.json");
    for file in [&dead_tmp, &not_a_tag, &not_a_descriptor] {
        std::fs::write(file, b"x")?;
    }
    for file in [&old_tag, &dead_tmp, &not_a_tag, &not_a_descriptor] {
        std::fs::File::options()
            .write(true)
            .open(file)?
            .set_modified(two_hours_ago)?;
    }
    let report = store.gc(false)?;
    assert_eq!(
        (report.orphan_tags, report.empty_prefixes),
        (1, 1),
        "{report:?}"
    );
    assert!(!old_tag.exists() && new_tag.exists() && !empty.exists());
    assert!(!dead_tmp.exists(), "a stale temporary file in the root");
    assert!(not_a_tag.exists() && not_a_descriptor.exists());
    assert!(
        dir.path().join(k.artifact_path()).exists(),
        "an entry was collected"
    );
    Ok(())
}

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

/// An object store in memory, where the attacker plants objects.
#[derive(Debug, Default)]
struct Bucket(Mutex<HashMap<String, Vec<u8>>>);

impl Backend for Bucket {
    fn describe(&self) -> String {
        "mem://bucket".into()
    }
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.0.lock().unwrap().get(path).cloned())
    }
    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.0.lock().unwrap().insert(path.into(), bytes.to_vec());
        Ok(())
    }
    fn delete(&self, path: &str) -> Result<()> {
        self.0.lock().unwrap().remove(path);
        Ok(())
    }
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let map = self.0.lock().unwrap();
        Ok(map
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(p, b)| Listed {
                path: p.clone(),
                size: b.len() as u64,
                last_used: SystemTime::now(),
            })
            .collect())
    }
}

#[test]
fn a_zstd_bomb_is_never_inflated_past_the_limit() -> Result<()> {
    let _serial = serial();
    let bomb = zstd_bomb_frame();
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    for hmac_key in [None, Some(vec![9u8; 32])] {
        let bucket = Bucket::default();
        bucket.write(&format!("{}.zst", key(8).artifact_path()), &bomb)?;
        let config = StoreConfig {
            compress_remote: true,
            max_artifact_size: 16 << 20,
            hmac_key: hmac_key.clone(),
            ..StoreConfig::default()
        };
        let store = ArtifactStore::new(None, Some(Box::new(bucket)), config)?;
        let before = peak_memory();
        let (store, answer) =
            within_bound("lookup of a zstd bomb", move || hit_or_compile(store, 8));
        assert_eq!(answer, 8);
        let grew = peak_memory().saturating_sub(before);
        assert!(grew < 48 << 20, "peak memory grew by {grew} bytes");
        if hmac_key.is_some() {
            // With a key the bomb has no valid tag: refused before anything
            // is decompressed, and evicted.
            assert_eq!(store.stats().rejected, 1);
        }
    }
    Ok(())
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

#[test]
fn waiters_get_the_leaders_error() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(ArtifactStore::open(dir.path()).unwrap());
    // Invalid: the function returns nothing but declares an i32.
    let bad = b"(module (func (result i32)))".to_vec();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let errors = within_bound("8 callers of a module that does not compile", move || {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, bad, barrier) = (store.clone(), bad.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store
                        .get_or_compile_module(&Engine::default(), &bad)
                        .map(drop)
                        .map_err(|e| (format!("{e:#}"), e.chain().count()))
                        .unwrap_err()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (e, _) in &errors {
        assert!(e.contains("type mismatch") || e.contains("expected"), "{e}");
    }
    // The leader's and the waiters' errors are the same chain, not one
    // flattened message.
    assert!(errors[0].1 >= 2, "{errors:?}");
    assert!(errors.iter().all(|e| *e == errors[0]), "{errors:?}");
}

/// A bucket whose first write announces itself, waits, then panics.
#[derive(Debug)]
struct PanicsOnFirstWrite {
    inside: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Backend for PanicsOnFirstWrite {
    fn describe(&self) -> String {
        "mem://panics".into()
    }
    fn read(&self, _: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn write(&self, _: &str, _: &[u8]) -> Result<()> {
        let first = self.inside.lock().unwrap().take();
        if let Some(tx) = first {
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            panic!("injected panic in the leader");
        }
        Ok(())
    }
    fn delete(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn list(&self, _: &str) -> Result<Vec<Listed>> {
        Ok(Vec::new())
    }
}

#[test]
fn a_panicking_leader_frees_its_waiters() {
    let _serial = serial();
    let (tx, rx) = std::sync::mpsc::channel();
    let backend = PanicsOnFirstWrite {
        inside: Mutex::new(Some(tx)),
    };
    let store = std::sync::Arc::new(
        ArtifactStore::new(None, Some(Box::new(backend)), StoreConfig::default()).unwrap(),
    );
    let leader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let _ = store.get_or_compile_module(&Engine::default(), &wasm(12));
        })
    };
    rx.recv().unwrap();
    let waiter = within_bound("a waiter of a leader that panics", move || {
        let r = store
            .get_or_compile_module(&Engine::default(), &wasm(12))
            .map(drop)
            .map_err(|e| e.to_string());
        (store, r)
    });
    assert!(leader.join().is_err(), "the leader was meant to panic");
    let (store, result) = waiter;
    assert!(
        result.as_ref().is_err_and(|e| e.contains("panicked")),
        "{result:?}"
    );
    // The slot is free: the next caller compiles (and this time stores).
    let (_, answer) = within_bound("after the panic", move || {
        let store = std::sync::Arc::try_unwrap(store).unwrap();
        hit_or_compile(store, 12)
    });
    assert_eq!(answer, 12);
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

/// Anyone who can open `.gc-lock` can `flock` it (no write permission
/// needed), and used to be able to stop every gc of the store. The lock's
/// mode now lets only the store's writers open it (0600 here; 0660 in a
/// group-writable root: the modes are checked, not tried as another user),
/// an older 0644 lock is narrowed, and a waiting gc gives up after a
/// bounded time with a clear error instead of blocking forever.
#[test]
fn a_held_gc_lock_stops_no_one_for_ever() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let lock_path = dir.path().join(".gc-lock");
    // An older version's lock, readable by everyone.
    std::fs::write(&lock_path, b"")?;
    std::fs::set_permissions(&lock_path, std::fs::Permissions::from_mode(0o644))?;
    let store = ArtifactStore::open(dir.path())?;
    store.gc(false)?;
    let mode = std::fs::metadata(&lock_path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "others can still open the lock: {mode:o}");
    // A group-shared root gives the group the lock too, and others nothing.
    let shared = tempfile::tempdir()?;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o2770))?;
    ArtifactStore::open(shared.path())?.gc(false)?;
    let mode = std::fs::metadata(shared.path().join(".gc-lock"))?
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "{mode:o}");

    // Someone holds it (a writer: only writers can open it now).
    let holder = std::fs::File::open(&lock_path)?;
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive)?;
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(store.gc(false).map_err(|e| format!("{e:#}"))));
    let result = rx
        .recv_timeout(Duration::from_secs(40))
        .expect("a waiting gc gave up within its bound");
    let error = result.expect_err("gc ran while another held the lock");
    assert!(error.contains("held the store's `.gc-lock`"), "{error}");
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

/// A `.gc-stamp` dated in the future (a clock set back, or planted) used to
/// put off every gc until that date: it is due at once.
#[test]
fn a_gc_stamp_in_the_future_is_due() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cache = CacheConfig::new();
    cache.with_file_count_soft_limit(2);
    let config = StoreConfig {
        cache,
        ..StoreConfig::default()
    };
    let store = ArtifactStore::new(Some(LocalDir::new(dir.path())?), None, config)?;
    let engine = Engine::default();
    // The first put runs gc and stamps the store now; the next ones, within
    // the default hour, do not.
    for n in 1..=4 {
        store.get_or_compile_module(&engine, &wasm(n))?;
    }
    assert_eq!(store.stats().evictions, 0);
    let stamp = std::fs::File::options()
        .write(true)
        .open(dir.path().join(".gc-stamp"))?;
    stamp.set_modified(SystemTime::now() + Duration::from_secs(10 * 365 * 86_400))?;
    store.get_or_compile_module(&engine, &wasm(5))?;
    assert!(store.stats().evictions > 0, "{:?}", store.stats());
    Ok(())
}

/// gc counted apparent sizes: a sparse 1 TiB `.tmp-` file, or sparse fake
/// artifacts in an engine directory of one's own, made every gc delete every
/// real entry. It counts allocated blocks now.
#[test]
fn sparse_files_do_not_make_gc_evict_everything() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let engine = Engine::default();
    for n in 1..=3 {
        store.get_or_compile_module(&engine, &wasm(n))?;
    }
    let huge = 1u64 << 40;
    std::fs::File::create(dir.path().join(".tmp-planted"))?.set_len(huge)?;
    let fake_engine = "ab".repeat(32);
    std::fs::create_dir(dir.path().join(&fake_engine))?;
    for i in 0..3 {
        let name = format!("{fake_engine}/{}.cwasm", format!("{i:02x}").repeat(32));
        std::fs::File::create(dir.path().join(name))?.set_len(huge)?;
    }
    let report = store.gc(false)?;
    assert!(
        report
            .deleted
            .iter()
            .all(|k| k.engine.to_string() == fake_engine),
        "{report:?}"
    );
    for n in 1..=3 {
        assert!(
            dir.path().join(key(n).artifact_path()).exists(),
            "entry {n} was evicted"
        );
    }
    Ok(())
}

/// A backend that lists what it is told to, for sizes no file system has.
#[derive(Debug)]
struct Listing(Vec<Listed>);

impl Backend for Listing {
    fn describe(&self) -> String {
        "listing".into()
    }
    fn read(&self, _: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn write(&self, _: &str, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn delete(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        Ok(self
            .0
            .iter()
            .filter(|l| l.path.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// Three objects of 2^63 - 1 bytes used to overflow gc's sums (a panic in
/// debug builds, a wrapped total in release ones). The sums saturate now.
#[test]
fn gc_sums_do_not_overflow() -> Result<()> {
    let listed = (1..=3)
        .map(|n| Listed {
            path: key(n).artifact_path(),
            size: i64::MAX as u64,
            last_used: SystemTime::now(),
        })
        .collect();
    let store = ArtifactStore::new(
        None,
        Some(Box::new(Listing(listed))),
        StoreConfig::default(),
    )?;
    let report = store.gc(true)?;
    assert_eq!(report.bytes_before, u64::MAX);
    assert!(!report.deleted.is_empty(), "{report:?}");
    assert!(store.engines()?.iter().all(|e| e.bytes == u64::MAX));
    Ok(())
}

/// A rejection deletes what was checked and nothing else: a planted,
/// damaged `.zst` object used to take the good raw object beside it with
/// it.
#[test]
fn rejecting_one_form_keeps_the_other() -> Result<()> {
    let remote = tempfile::tempdir()?;
    let engine = Engine::default();
    let writer = ArtifactStore::new(
        None,
        Some(Box::new(LocalDir::new(remote.path())?)),
        StoreConfig::default(),
    )?;
    writer.get_or_compile_module(&engine, &wasm(6))?;
    let raw = remote.path().join(key(6).artifact_path());
    let zst = remote
        .path()
        .join(format!("{}.zst", key(6).artifact_path()));
    std::fs::write(&zst, b"not zstd at all")?;
    let reader = ArtifactStore::new(
        None,
        Some(Box::new(LocalDir::new(remote.path())?)),
        StoreConfig {
            compress_remote: true,
            ..StoreConfig::default()
        },
    )?;
    let m = reader.get_or_compile_module(&engine, &wasm(6))?;
    assert_eq!(call(&engine, &m), 6);
    assert_eq!(reader.stats().rejected, 1);
    assert!(raw.exists(), "the raw object, never checked, was deleted");
    Ok(())
}

/// Set for `unreadable_child`: the store it opens.
const UNREADABLE_CHILD_ENV: &str = "CWASM_UNREADABLE_CHILD";

/// A directory under the root that this user may not read (another
/// user's, in a shared root) used to make every listing, `gc`, `verify` and
/// `retain` fail. They skip it now, and `gc` names it. The store's user
/// must be someone the directory shuts out, so the work runs in a child as
/// `nobody` (root reads everything).
#[test]
fn an_unreadable_directory_stops_nothing() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root, to run the store as another user");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let root = dir.path().join("store");
    std::fs::create_dir(&root)?;
    let locked = root.join("ab".repeat(32));
    std::fs::create_dir(&locked)?;
    std::fs::write(locked.join(format!("{}.cwasm", "cd".repeat(32))), b"x")?;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::chown(&root, Some(65534), Some(65534))?;
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe()?)
        .args([
            "--ignored",
            "--exact",
            "unreadable_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(UNREADABLE_CHILD_ENV, &root)
        .status();
    let Ok(status) = status else {
        eprintln!("skipped: no setpriv");
        return Ok(());
    };
    assert!(status.success(), "the child, as nobody, failed: {status}");
    // What the child could not read is still there.
    assert!(locked.join(format!("{}.cwasm", "cd".repeat(32))).exists());
    Ok(())
}

/// The body of `an_unreadable_directory_stops_nothing`, run as `nobody`.
#[test]
#[ignore = "run by an_unreadable_directory_stops_nothing, as another user"]
fn unreadable_child() -> Result<()> {
    let Some(root) = std::env::var_os(UNREADABLE_CHILD_ENV) else {
        return Ok(());
    };
    let root = std::path::PathBuf::from(root);
    let locked = "ab".repeat(32);
    assert!(
        std::fs::read_dir(root.join(&locked)).is_err(),
        "this child can read the locked directory: not another user?"
    );
    let mut cache = CacheConfig::new();
    cache.with_file_count_soft_limit(1);
    let config = StoreConfig {
        cache,
        ..StoreConfig::default()
    };
    let store = ArtifactStore::new(Some(LocalDir::new(&root)?), None, config)?;
    let engine = Engine::default();
    for n in 1..=3 {
        store.get_or_compile_module(&engine, &wasm(n))?;
    }
    assert!(!store.list()?.is_empty());
    assert_eq!(store.engines()?.len(), 1);
    assert!(store.verify()?.is_empty());
    let report = store.gc(false)?;
    assert_eq!(report.unreadable, [locked]);
    assert!(!report.deleted.is_empty(), "{report:?}");
    store.retain(&[key(1).engine])?;
    println!("unreadable child: ok");
    Ok(())
}

/// Two ext4 images, unmounted and detached on drop.
struct Images {
    dir: tempfile::TempDir,
    device: Option<String>,
}

impl Images {
    fn run(cmd: &mut std::process::Command) -> bool {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Builds `img1` and `img2`, each holding `app.wat` with the given
    /// text, with identical inode numbers and times: reproducible builds
    /// of two versions. `None` where this machine cannot (not root, no
    /// `mkfs.ext4`/`debugfs`).
    fn build(v1: &[u8], v2: &[u8]) -> Option<Images> {
        let dir = tempfile::tempdir().ok()?;
        std::fs::create_dir(dir.path().join("mnt")).ok()?;
        for (i, text) in [(1, v1), (2, v2)] {
            let src = dir.path().join(format!("src{i}"));
            std::fs::create_dir(&src).ok()?;
            std::fs::write(src.join("app.wat"), text).ok()?;
            let img = dir.path().join(format!("img{i}"));
            if !Images::run(
                std::process::Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-d"])
                    .arg(&src)
                    .arg(&img)
                    .arg("1M"),
            ) {
                return None;
            }
            for field in ["ctime", "mtime", "atime", "crtime"] {
                for (name, value) in [
                    (field.to_string(), "20200101000000"),
                    (format!("{field}_extra"), "0"),
                ] {
                    let request = format!("set_inode_field /app.wat {name} {value}");
                    if !Images::run(
                        std::process::Command::new("debugfs")
                            .args(["-w", "-R", &request])
                            .arg(&img),
                    ) {
                        return None;
                    }
                }
            }
        }
        Some(Images { dir, device: None })
    }

    /// Mounts image `i` (read-only) at `mnt`, through the same loop device
    /// every time.
    fn mount(&mut self, i: u32) -> Option<std::path::PathBuf> {
        let img = self.dir.path().join(format!("img{i}"));
        let mnt = self.dir.path().join("mnt");
        let device = match &self.device {
            Some(device) => {
                Images::run(std::process::Command::new("umount").arg(&mnt));
                Images::run(std::process::Command::new("losetup").args(["-d", device]));
                if !Images::run(std::process::Command::new("losetup").arg(device).arg(&img)) {
                    return None;
                }
                device.clone()
            }
            None => {
                let out = std::process::Command::new("losetup")
                    .args(["--show", "-f"])
                    .arg(&img)
                    .output()
                    .ok()?;
                if !out.status.success() {
                    return None;
                }
                String::from_utf8(out.stdout).ok()?.trim().to_string()
            }
        };
        self.device = Some(device.clone());
        Images::run(
            std::process::Command::new("mount")
                .args(["-o", "ro", &device])
                .arg(&mnt),
        )
        .then_some(mnt)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        Images::run(std::process::Command::new("umount").arg(self.dir.path().join("mnt")));
        if let Some(device) = &self.device {
            Images::run(std::process::Command::new("losetup").args(["-d", device]));
        }
    }
}

/// Two reproducible images of one application, differing in one byte of a
/// same-size file and mounted in turn at one place from one loop device,
/// show the same device, inode, size and times. A remembered digest used to
/// map the second image's file to the first one's artifact; the mount's
/// identity now tells them apart.
#[test]
fn a_remembered_digest_does_not_outlive_its_mount() -> Result<()> {
    let v1 = wasm(1);
    let v2 = wasm(2);
    assert_eq!(v1.len(), v2.len());
    let Some(mut images) = Images::build(&v1, &v2) else {
        eprintln!("skipped: cannot build ext4 images here (needs root, mkfs.ext4, debugfs)");
        return Ok(());
    };
    let Some(mnt) = images.mount(1) else {
        eprintln!("skipped: cannot mount a loop device here");
        return Ok(());
    };
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(store_dir.path())?;
    let engine = Engine::default();
    let app = mnt.join("app.wat");
    let before = std::fs::metadata(&app)?;
    assert_eq!(
        call(&engine, &store.get_or_compile_module_file(&engine, &app)?),
        1
    );
    assert_eq!(
        call(&engine, &store.get_or_compile_module_file(&engine, &app)?),
        1
    );
    assert_eq!(
        store.stats().files_hashed,
        1,
        "the settled file was not remembered"
    );
    let mnt = images
        .mount(2)
        .expect("the second image mounts where the first did");
    let after = std::fs::metadata(&app)?;
    {
        use std::os::unix::fs::MetadataExt;
        let stamp = |m: &std::fs::Metadata| {
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        };
        assert_eq!(
            stamp(&before),
            stamp(&after),
            "the images do not look alike"
        );
    }
    assert_eq!(std::fs::read(mnt.join("app.wat"))?, v2);
    let m = store.get_or_compile_module_file(&engine, &app)?;
    assert_eq!(
        call(&engine, &m),
        2,
        "the second image's file ran the first one's artifact"
    );
    Ok(())
}

/// The saved digests are checked before a byte of them is read, up the
/// whole path: a FIFO planted in their place is refused, not waited on,
/// and a directory above the file's parent that others can write (without
/// the sticky bit) is refused too.
#[test]
fn saved_digests_are_checked_before_they_are_read() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let store = ArtifactStore::open(dir.path().join("store"))?;
    let fifo = dir.path().join("digests.json");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )?;
    let error = within_bound("loading digests from a FIFO", move || {
        let store = store;
        store
            .load_remembered_digests(&fifo)
            .map_err(|e| format!("{e:#}"))
    })
    .expect_err("a FIFO was read as digests");
    assert!(error.contains("not a regular file"), "{error}");

    let store = ArtifactStore::open(dir.path().join("store"))?;
    let open = dir.path().join("open");
    let file = open.join("inner").join("digests.json");
    std::fs::create_dir_all(file.parent().unwrap())?;
    store.save_remembered_digests(&file)?;
    assert_eq!(store.load_remembered_digests(&file)?, 0);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))?;
    let error = store
        .load_remembered_digests(&file)
        .expect_err("a writable grandparent was trusted");
    assert!(
        format!("{error:#}").contains("writable by other users"),
        "{error:#}"
    );
    Ok(())
}

/// The system's shared memory (memfds and tmpfs), in bytes.
fn shmem() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = meminfo.lines().find(|l| l.starts_with("Shmem:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// With the default settings (a 1 GiB size limit), a 4 GiB zstd bomb in
/// an unkeyed bucket costs time, bounded by the limit, and no memory: its
/// size is counted by inflating into nothing before anything is held.
/// Before, it was inflated into sealed memory up to the limit: 1 GiB of
/// shared memory per lookup (and `cwasm compile` runs one per core).
#[test]
fn a_zstd_bomb_costs_no_memory_with_default_settings() -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let _serial = serial();
    let bomb = zstd_bomb_frame().repeat(16);
    let bucket = Bucket::default();
    bucket.write(&format!("{}.zst", key(23).artifact_path()), &bomb)?;
    let config = StoreConfig {
        compress_remote: true,
        ..StoreConfig::default()
    };
    assert_eq!(
        config.max_artifact_size,
        StoreConfig::DEFAULT_MAX_ARTIFACT_SIZE
    );
    let store = ArtifactStore::new(None, Some(Box::new(bucket)), config)?;
    let (heap_before, shmem_before) = (peak_memory(), shmem());
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let most = std::sync::Arc::new(AtomicU64::new(shmem_before));
    let sampler = {
        let (done, most) = (done.clone(), most.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(shmem(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let (store, answer) = within_bound("lookup of a 4 GiB bomb", move || hit_or_compile(store, 23));
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(answer, 23);
    let heap = peak_memory().saturating_sub(heap_before);
    let shared = most.load(Ordering::Relaxed).saturating_sub(shmem_before);
    eprintln!(
        "4 GiB bomb: {:?}, peak heap +{heap}, shared memory +{shared}",
        start.elapsed()
    );
    assert!(heap < 64 << 20, "peak memory grew by {heap} bytes");
    assert!(shared < 64 << 20, "shared memory grew by {shared} bytes");
    // Too large is a miss that leaves the object alone.
    assert_eq!(store.stats().rejected, 0);
    Ok(())
}

/// `engine.json` is informational and anyone who can write the store can
/// replace it: `ls` (`engines`) reads at most 64 KiB of it. A planted
/// 4 GiB (sparse) descriptor used to be read whole.
#[test]
fn a_huge_descriptor_is_not_read() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let engine = Engine::default();
    store.get_or_compile_module(&engine, &wasm(24))?;
    let descriptor = dir
        .path()
        .join(key(24).engine.to_string())
        .join("engine.json");
    std::fs::remove_file(&descriptor)?;
    std::fs::File::create(&descriptor)?.set_len(4 << 30)?;
    let before = peak_memory();
    let engines = within_bound("listing engines", move || store.engines().unwrap());
    let grew = peak_memory().saturating_sub(before);
    assert_eq!(engines.len(), 1);
    assert!(engines[0].descriptor.is_none());
    assert!(grew < 64 << 20, "peak memory grew by {grew} bytes");
    Ok(())
}

/// A compressed object whose window is larger than the store inflates
/// (32 MiB: zstd's ultra levels, written elsewhere) is valid zstd this host
/// will not hold: a miss that leaves it in place, not a damaged entry.
#[test]
fn an_object_with_a_huge_zstd_window_is_kept() -> Result<()> {
    use std::io::Write;
    let engine = Engine::default();
    let artifact = engine.precompile_module(&wasm(25))?;
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
    encoder.window_log(27)?;
    encoder.write_all(&artifact)?;
    let packed = encoder.finish()?;
    let bucket = Bucket::default();
    let path = format!("{}.zst", key(25).artifact_path());
    bucket.write(&path, &packed)?;
    let store = ArtifactStore::new(
        None,
        Some(Box::new(bucket)),
        StoreConfig {
            compress_remote: true,
            ..StoreConfig::default()
        },
    )?;
    let (store, answer) = within_bound("a huge window", move || hit_or_compile(store, 25));
    assert_eq!(answer, 25);
    assert_eq!(store.stats().rejected, 0, "{:?}", store.stats());
    Ok(())
}

/// A name that is not UTF-8 is not the store's, and must not stand for
/// another: `.tmp-\xff`, stale, used to be converted lossily to
/// `.tmp-\u{fffd}`, and gc then deleted that file instead: a write in
/// progress of another process.
#[test]
fn a_name_that_is_not_utf8_stands_for_no_other() -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let stale = dir.path().join(std::ffi::OsStr::from_bytes(b".tmp-\xff"));
    std::fs::write(&stale, b"stale")?;
    std::fs::File::options()
        .write(true)
        .open(&stale)?
        .set_modified(SystemTime::now() - Duration::from_secs(3 * 3600))?;
    let in_progress = dir.path().join(".tmp-\u{fffd}");
    std::fs::write(&in_progress, b"a write in progress")?;
    store.gc(false)?;
    assert!(
        in_progress.exists(),
        "gc deleted another file for a non-UTF-8 name"
    );
    Ok(())
}

/// Set for `stamp_child`: the store it opens.
const STAMP_CHILD_ENV: &str = "CWASM_STAMP_CHILD";

/// An unkeyed hit reads the entry's stamp through the descriptor it holds,
/// never by opening a path again: it works where `/proc` is not mounted
/// (before, every hit there was a miss that compiled again). On macOS and
/// the BSDs, the path it re-opened (`/dev/fd/N`) shared the descriptor's
/// offset and could misread the entry. Runs in a child whose mount
/// namespace has no `/proc`.
#[test]
fn an_unkeyed_hit_opens_no_path_again() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root, for a mount namespace without /proc");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let script = format!(
        "umount -l /proc && exec '{}' --ignored --exact stamp_child --nocapture --test-threads=1",
        exe.display()
    );
    let status = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env(STAMP_CHILD_ENV, dir.path())
        .status();
    let Ok(status) = status else {
        eprintln!("skipped: no unshare");
        return Ok(());
    };
    assert!(status.success(), "the child without /proc failed: {status}");
    Ok(())
}

/// The body of `an_unkeyed_hit_opens_no_path_again`, without `/proc`.
#[test]
#[ignore = "run by an_unkeyed_hit_opens_no_path_again, without /proc"]
fn stamp_child() -> Result<()> {
    let Some(root) = std::env::var_os(STAMP_CHILD_ENV) else {
        return Ok(());
    };
    assert!(
        !Path::new("/proc/self/fd").exists(),
        "/proc is still mounted in this child"
    );
    let engine = Engine::default();
    ArtifactStore::open(&root)?.get_or_compile_module(&engine, &wasm(26))?;
    let store = ArtifactStore::open(&root)?;
    let m = store.get_or_compile_module(&engine, &wasm(26))?;
    assert_eq!(call(&engine, &m), 26);
    let stats = store.stats();
    assert_eq!(
        (stats.hits, stats.compiles, stats.store_errors),
        (1, 0, 0),
        "{stats:?}"
    );
    println!("stamp child: ok");
    Ok(())
}
