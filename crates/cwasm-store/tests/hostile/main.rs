//! The store under attack: someone who can write to its directory (or
//! bucket) plants things where entries are expected. Each test asserts the
//! outcome (a miss, a refusal, an error), a time bound, and, where the
//! attack is about size, a bound on the process's peak memory.
//!
//! One file per class of attack (the modules below). The tests run one at
//! a time (`serial`), so that the peak memory of one is not charged to
//! another.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod gc;
mod planted;
mod single_flight;
mod sizes;

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

pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` in a thread and fails if it takes longer than `TIME_BOUND`
/// (a hang fails the test instead of blocking the suite).
pub(crate) fn within_bound<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
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

pub(crate) fn hit_or_compile(store: ArtifactStore, n: i32) -> (ArtifactStore, i32) {
    let engine = Engine::default();
    let m = store.get_or_compile_module(&engine, &wasm(n)).unwrap();
    let answer = call(&engine, &m);
    (store, answer)
}

pub(crate) fn key(n: i32) -> Key {
    Key::new(&Engine::default(), &wasm(n)).unwrap()
}

pub(crate) fn engine_dir(root: &Path, n: i32) -> std::path::PathBuf {
    root.join(key(n).engine.to_string())
}

/// An object store in memory, where the attacker plants objects.
#[derive(Debug, Default)]
pub(crate) struct Bucket(Mutex<HashMap<String, Vec<u8>>>);

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
