//! The store's `tracing` spans and warnings, recorded by a minimal
//! subscriber: a span per lookup, one per compile, and a warning naming the
//! reason when an entry is rejected.

mod common;

use common::wasm;
use cwasm_store::{ArtifactStore, Key};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use wasmtime::{Config, Engine, OptLevel};

#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<String>>>,
    warnings: Arc<Mutex<Vec<String>>>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        let mut spans = self.spans.lock().unwrap();
        spans.push(format!("{} {}", span.metadata().name(), fields.0));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.warnings.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn spans_and_warnings() {
    let recorder = Recorder::default();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let key = Key::new(&engine, &wasm(1)).unwrap();
    tracing::subscriber::with_default(recorder.clone(), || {
        let store = ArtifactStore::open(dir.path()).unwrap();
        store.get_or_compile_module(&engine, &wasm(1)).unwrap(); // miss
        store.get_or_compile_module(&engine, &wasm(1)).unwrap(); // hit
        // Another engine's artifact under this key: rejected.
        let mut config = Config::new();
        config.cranelift_opt_level(OptLevel::None);
        let other = Engine::new(&config).unwrap();
        std::fs::write(
            dir.path().join(key.artifact_path()),
            other.precompile_module(&wasm(1)).unwrap(),
        )
        .unwrap();
        store.get_or_compile_module(&engine, &wasm(1)).unwrap();
        assert_eq!(store.stats().rejected, 1);
    });
    let spans = recorder.spans.lock().unwrap();
    let lookups = spans
        .iter()
        .filter(|s| s.starts_with("cwasm_store.get_or_compile"))
        .count();
    assert_eq!(lookups, 3, "{spans:#?}");
    assert!(
        spans.iter().any(|s| s.contains(&key.wasm.to_string())),
        "spans carry the key: {spans:#?}"
    );
    assert_eq!(
        spans.iter().filter(|s| s.starts_with("compile ")).count(),
        2,
        "{spans:#?}"
    );
    let warnings = recorder.warnings.lock().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("rejected a stored artifact") && w.contains("engine stamp")),
        "{warnings:#?}"
    );
}
