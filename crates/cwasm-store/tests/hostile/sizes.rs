//! Size as the attack: huge entries and descriptors, zstd bombs, sparse
//! files, sums that could overflow. Each is bounded in time and in peak
//! memory.

use super::*;

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
