//! Single flight under failure: the leader's error reaches every waiter, and
//! a panicking leader frees them.

use super::*;

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
