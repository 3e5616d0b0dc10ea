//! Crash safety across processes: writer processes are killed (SIGKILL)
//! at random points while writing large entries, in a loop, while this
//! process keeps reading the same keys. No reader ever gets a torn entry:
//! every read is either a miss or the complete artifact.

use cwasm_store::{ArtifactStore, Digest, Key};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;

const CHILD_ENV: &str = "CWASM_CRASH_CHILD_DIR";
const ROUNDS: u32 = 24;

/// A module with a `len`-byte data segment, so writes take long enough to
/// be interrupted.
fn big_wasm(len: usize, fill: u8) -> Vec<u8> {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    let leb = |out: &mut Vec<u8>, mut v: u64| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    let mut memory = vec![1, 0];
    leb(&mut memory, (len as u64).div_ceil(65536) + 1);
    wasm.push(5);
    leb(&mut wasm, memory.len() as u64);
    wasm.extend(&memory);
    let mut data = vec![1, 0, 0x41, 0, 0x0b];
    leb(&mut data, len as u64);
    data.extend(std::iter::repeat_n(fill, len));
    wasm.push(11);
    leb(&mut wasm, data.len() as u64);
    wasm.extend(&data);
    wasm
}

/// The child: `put` the prepared artifacts over and over until killed.
#[test]
fn writer_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let store = ArtifactStore::open(dir.join("store")).unwrap();
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(dir.join("inputs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (engine, wasm) = name.split_once('-').unwrap();
        let key = Key {
            engine: engine.parse::<Digest>().unwrap(),
            wasm: wasm.parse::<Digest>().unwrap(),
        };
        inputs.push((key, std::fs::read(&path).unwrap()));
    }
    loop {
        for (key, artifact) in &inputs {
            store.put(key, artifact).unwrap();
        }
    }
}

#[test]
fn killed_writers_never_leave_torn_entries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    std::fs::create_dir_all(dir.path().join("inputs")).unwrap();
    let mut expected = Vec::new();
    for (i, len) in [(1u8, 8 << 20), (2, 12 << 20), (3, 256 << 10)] {
        let wasm = big_wasm(len, i);
        let key = Key::new(&engine, &wasm).unwrap();
        let artifact = engine.precompile_module(&wasm).unwrap();
        std::fs::write(
            dir.path()
                .join("inputs")
                .join(format!("{}-{}", key.engine, key.wasm)),
            &artifact,
        )
        .unwrap();
        expected.push((key, artifact));
    }
    let expected = Arc::new(expected);
    let store = Arc::new(ArtifactStore::open(dir.path().join("store")).unwrap());

    // Readers: every read must be a miss or the whole artifact.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, complete) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, expected, stop) = (store.clone(), expected.clone(), stop.clone());
            let root = dir.path().join("store");
            let (reads, complete) = (reads.clone(), complete.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (key, artifact) in expected.iter() {
                        reads.fetch_add(1, Ordering::Relaxed);
                        // The file itself, as any other program sees it.
                        let file = root.join(key.artifact_path());
                        if let Ok(got) = std::fs::read(&file) {
                            assert!(
                                got == *artifact,
                                "torn file: {} of {} bytes",
                                got.len(),
                                artifact.len()
                            );
                        }
                        // And through the store.
                        if let Some(got) = store.get(key).unwrap() {
                            assert!(
                                got == *artifact,
                                "torn entry: {} of {} bytes",
                                got.len(),
                                artifact.len()
                            );
                            complete.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(20 + rng % 120));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer was not killed"
        );
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader saw a torn entry");
    }
    // After the dust settles: what is stored is whole, and the store's own
    // check agrees.
    for (key, artifact) in expected.iter() {
        if let Some(got) = store.get(key).unwrap() {
            assert!(got == *artifact);
        }
    }
    assert!(store.verify().unwrap().is_empty());
    // Atomic writes mean the store never even saw a partial file to reject.
    assert_eq!(store.stats().rejected, 0, "{:?}", store.stats());
    let leftovers = walk_tmp(&dir.path().join("store"));
    println!(
        "{} reads ({} complete hits, 0 torn); {} temporary files left by killed writers",
        reads.load(Ordering::Relaxed),
        complete.load(Ordering::Relaxed),
        leftovers
    );
    assert!(
        complete.load(Ordering::Relaxed) > 0,
        "the writers never completed an entry"
    );
}

fn walk_tmp(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_tmp(&p)
            } else {
                usize::from(e.file_name().to_string_lossy().starts_with(".tmp-"))
            }
        })
        .sum()
}
