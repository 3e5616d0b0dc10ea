//! Crash safety across processes: writer processes are killed (SIGKILL)
//! at random points while writing large entries, in a loop, while this
//! process keeps reading the same keys. No reader ever gets a torn entry:
//! every read is either a miss or the complete artifact.

mod common;

use common::KillOnDrop;
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
    use wasm_encoder::{ConstExpr, DataSection, MemorySection, MemoryType, Module};
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: (len as u64).div_ceil(65536) + 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(0), std::iter::repeat_n(fill, len));
    let mut module = Module::new();
    module.section(&memories).section(&data);
    module.finish()
}

/// The child: `put` the prepared artifacts over and over until killed,
/// saying `ready` once every artifact has been written completely.
#[test]
#[ignore = "the child process of `killed_writers_never_leave_torn_entries`, which runs it"]
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
    let mut first = true;
    loop {
        for (key, artifact) in &inputs {
            store.put(key, artifact).unwrap();
        }
        if std::mem::take(&mut first) {
            use std::io::Write;
            let mut out = std::io::stdout();
            writeln!(out, "ready").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn killed_writers_never_leave_torn_entries() {
    let dir = tempfile::tempdir().unwrap();
    let expected = Arc::new(inputs(dir.path()));
    let store = Arc::new(ArtifactStore::open(dir.path().join("store")).unwrap());
    let readers = Readers::start(&store, &expected, &dir.path().join("store"));
    kill_writers(dir.path());
    let (reads, complete) = readers.stop();
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
        "{reads} reads ({complete} complete hits, 0 torn); {leftovers} temporary files left by killed writers"
    );
    assert!(complete > 0, "the writers never completed an entry");
}

/// The entries the writers write (8 MB, 12 MB and 256 KB of wasm), as
/// files in `dir/inputs` for them, and their keys and artifacts.
fn inputs(dir: &std::path::Path) -> Vec<(Key, Vec<u8>)> {
    let engine = Engine::default();
    std::fs::create_dir_all(dir.join("inputs")).unwrap();
    let mut expected = Vec::new();
    for (i, len) in [(1u8, 8 << 20), (2, 12 << 20), (3, 256 << 10)] {
        let wasm = big_wasm(len, i);
        let key = Key::new(&engine, &wasm).unwrap();
        let artifact = engine.precompile_module(&wasm).unwrap();
        std::fs::write(
            dir.join("inputs")
                .join(format!("{}-{}", key.engine, key.wasm)),
            &artifact,
        )
        .unwrap();
        expected.push((key, artifact));
    }
    expected
}

/// Two threads reading every entry in a loop, as a file (as any other
/// program sees it) and through the store: every read must be a miss or
/// the whole artifact.
struct Readers {
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    complete: Arc<AtomicU64>,
}

impl Readers {
    fn start(
        store: &Arc<ArtifactStore>,
        expected: &Arc<Vec<(Key, Vec<u8>)>>,
        root: &std::path::Path,
    ) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let (reads, complete) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let threads = (0..2)
            .map(|_| {
                let (store, expected, stop) = (store.clone(), expected.clone(), stop.clone());
                let root = root.to_path_buf();
                let (reads, complete) = (reads.clone(), complete.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for (key, artifact) in expected.iter() {
                            reads.fetch_add(1, Ordering::Relaxed);
                            if let Ok(got) = std::fs::read(root.join(key.artifact_path())) {
                                assert!(
                                    got == *artifact,
                                    "torn file: {} of {} bytes",
                                    got.len(),
                                    artifact.len()
                                );
                            }
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
        Readers {
            threads,
            stop,
            reads,
            complete,
        }
    }

    /// Stops the readers; fails if one saw a torn entry. Returns the reads
    /// and the complete hits.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for r in self.threads {
            r.join().expect("a reader saw a torn entry");
        }
        (
            self.reads.load(Ordering::Relaxed),
            self.complete.load(Ordering::Relaxed),
        )
    }
}

/// Starts `ROUNDS` writer processes (at most for a minute), each killed
/// once it has written every entry completely (so the readers' checks have
/// something to check whatever the timing), then at a varying point of its
/// next writes.
fn kill_writers(dir: &std::path::Path) {
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..ROUNDS {
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // (The test harness prints its own text first, on the same line.)
        let out = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let ready =
            std::io::BufRead::lines(out).any(|l| l.is_ok_and(|l| l.trim_end().ends_with("ready")));
        assert!(
            ready,
            "round {round}: the writer failed before writing every entry"
        );
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 40));
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer was not killed"
        );
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
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
