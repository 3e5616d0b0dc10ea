//! Soak: 8 processes share one store directory, each doing a random mix of
//! lookups, puts, `gc`, `retain` and `verify`, while this process kills one
//! of them with SIGKILL every few milliseconds and starts another, at least
//! 200 times, without an HMAC key and then with one.
//!
//! Bounded in kills (200 per mode) and in time (90 s per mode). It asserts:
//! no wrong load (a module answering for another), no entry ever rejected
//! (nothing torn is ever seen), no `verify` finding, and every entry a
//! process reported as written is still there and intact at the end.

mod common;

use common::{KillOnDrop, call, due_at_every_put, wasm};
use cwasm_store::{ArtifactStore, Key, LocalDir, StoreConfig};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wasmtime::Engine;

const CHILD_ENV: &str = "CWASM_SOAK_CHILD_DIR";
const PROCESSES: usize = 8;
const KILLS: u32 = 200;
const TIME_BOUND: Duration = Duration::from_secs(90);
const MODULES: i32 = 12;
const KEY: &[u8] = b"soak test key, thirty-two bytes!";

fn open(dir: &Path, keyed: bool) -> ArtifactStore {
    let config = StoreConfig {
        // Eviction is due at every put (so `gc` runs all the time) but the
        // limits are never reached: nothing may disappear.
        cache: due_at_every_put(),
        hmac_key: keyed.then(|| KEY.to_vec()),
        ..StoreConfig::default()
    };
    ArtifactStore::new(
        Some(LocalDir::new(dir.join("store")).unwrap()),
        None,
        config,
    )
    .unwrap()
}

/// The child: random operations until killed, one line per event.
#[test]
#[ignore = "a child process of the soak tests, which run it"]
fn soak_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let keyed = std::env::var_os("CWASM_SOAK_KEYED").is_some();
    let mut seed: u64 = std::env::var("CWASM_SOAK_SEED").unwrap().parse().unwrap();
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let store = open(&dir, keyed);
    let engine = Engine::default();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("log"))
        .unwrap();
    let artifacts: Vec<Vec<u8>> = (0..MODULES)
        .map(|n| std::fs::read(dir.join(format!("artifact-{n}"))).unwrap())
        .collect();
    let mut say = |line: String| log.write_all(format!("{line}\n").as_bytes()).unwrap();
    loop {
        let n = (next() % MODULES as u64) as i32;
        let op = next() % 10;
        match op {
            0..=4 => {
                let m = store.get_or_compile_module(&engine, &wasm(n)).unwrap();
                let got = call(&engine, &m);
                if got != n {
                    say(format!("WRONG {n} {got}"));
                }
            }
            5 | 6 => {
                let key = Key::new(&engine, &wasm(n)).unwrap();
                store.put(&key, &artifacts[n as usize]).unwrap();
                say(format!("COMMITTED {n}"));
            }
            7 => {
                store.gc(false).unwrap();
            }
            8 => {
                let keep = Key::new(&engine, &wasm(n)).unwrap().engine;
                store.retain(&[keep]).unwrap();
            }
            _ => {
                for (key, reason) in store.verify().unwrap() {
                    say(format!("BAD {}/{}: {reason}", key.engine, key.wasm));
                }
            }
        }
        if store.stats().rejected > 0 {
            say(format!("REJECTED {:?}", store.stats()));
        }
        say("OP".into());
    }
}

fn spawn(dir: &Path, keyed: bool, seed: u64) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "soak_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, dir)
    .env("CWASM_SOAK_SEED", seed.to_string())
    .stdout(Stdio::null())
    // Kept, so that a child that panics says why (see `soak`).
    .stderr(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("children.stderr"))
            .unwrap(),
    );
    if keyed {
        cmd.env("CWASM_SOAK_KEYED", "1");
    }
    cmd.spawn().unwrap()
}

fn soak(keyed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    for n in 0..MODULES {
        let artifact = engine.precompile_module(&wasm(n)).unwrap();
        std::fs::write(dir.path().join(format!("artifact-{n}")), artifact).unwrap();
    }
    std::fs::write(dir.path().join("log"), b"").unwrap();

    let start = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Killed when dropped: on a failure too, so no child outlives the test.
    let mut children: Vec<KillOnDrop> = (0..PROCESSES)
        .map(|_| KillOnDrop(spawn(dir.path(), keyed, next() | 1)))
        .collect();
    let mut kills = 0;
    while kills < KILLS && start.elapsed() < TIME_BOUND {
        std::thread::sleep(Duration::from_millis(10 + next() % 50));
        let i = (next() % PROCESSES as u64) as usize;
        if let Ok(Some(status)) = children[i].0.try_wait() {
            let stderr = std::fs::read_to_string(dir.path().join("children.stderr"));
            let stderr = stderr.unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            panic!(
                "a child exited by itself ({status}); the end of the children's stderr:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        children[i].0.kill().unwrap();
        children[i].0.wait().unwrap();
        kills += 1;
        children[i] = KillOnDrop(spawn(dir.path(), keyed, next() | 1));
    }
    drop(children);

    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let ops = log.lines().filter(|l| *l == "OP").count();
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("WRONG") || l.starts_with("BAD") || l.starts_with("REJECTED"))
        .collect();
    let committed: std::collections::BTreeSet<i32> = log
        .lines()
        .filter_map(|l| l.strip_prefix("COMMITTED ")?.parse().ok())
        .collect();
    eprintln!(
        "keyed={keyed}: {kills} kills, {ops} operations, {} keys committed, {:?}",
        committed.len(),
        start.elapsed()
    );
    assert!(kills >= KILLS, "only {kills} kills within {TIME_BOUND:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(ops >= 200, "only {ops} operations completed");
    assert!(!committed.is_empty());

    // Nothing committed was lost, and every entry verifies.
    let store = open(dir.path(), keyed);
    assert_eq!(store.verify().unwrap(), []);
    for n in committed {
        let key = Key::new(&engine, &wasm(n)).unwrap();
        let stored = store.get(&key).unwrap();
        assert!(stored.is_some(), "entry {n} was committed and is gone");
    }
    assert_eq!(store.stats().rejected, 0);
}

/// Both modes, one after the other (at once they would share two cores
/// between 16 processes).
#[test]
fn killed_processes_lose_nothing_and_load_nothing_wrong() {
    if std::env::var_os(CHILD_ENV).is_none() {
        soak(false);
        soak(true);
    }
}
