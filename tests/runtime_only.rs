//! The runtime-only example (examples/runtime-only) end to end: `cwasm
//! compile --profile` on a compiling machine, then a host whose wasmtime was
//! built without a compiler loads the artifact from the store by wasm digest
//! and calls it.
//!
//! The host must be built on its own (`cargo build -p cwasm-runtime-host`),
//! since a workspace build would give it the workspace's wasmtime features,
//! Cranelift included; `cargo xtask test` builds it so, checks that its
//! dependency tree has no compiler, and passes its path in
//! `CWASM_RUNTIME_HOST`.

#![cfg(target_arch = "x86_64")]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

const PROFILE: &str = "examples/runtime-only/profile.toml";
const WASM: &str = "examples/hello.wat";

/// The runtime-only host binary, or `None` (the test is skipped) when run
/// outside `cargo xtask test`, which requires it.
fn runtime_host() -> Option<PathBuf> {
    match std::env::var_os("CWASM_RUNTIME_HOST") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("CWASM_REQUIRE_RUNTIME_HOST").is_some() => {
            panic!("CWASM_RUNTIME_HOST is not set: `cargo xtask test` builds the host")
        }
        None => {
            eprintln!("skipped: CWASM_RUNTIME_HOST is not set (cargo xtask test sets it)");
            None
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles the example with `cwasm compile --profile profile` into
/// `store`, and returns the engine hash it printed.
fn compile(store: &Path, profile: &Path) -> String {
    let out = Command::cargo_bin("cwasm")
        .unwrap()
        .current_dir(root())
        .args(["compile", "--json", "--profile"])
        .arg(profile)
        .arg("--store")
        .arg(store)
        .arg(WASM)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    json.pointer("/0/engine")
        .and_then(|e| e.as_str())
        .unwrap_or_else(|| panic!("no engine hash in {json}"))
        .to_string()
}

/// Runs the host on `store`: its exit code, stdout and stderr.
fn run_host(host: &Path, store: &Path) -> (i32, String, String) {
    let out = std::process::Command::new(host)
        .current_dir(root())
        .arg(store)
        .arg(WASM)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_host_without_a_compiler_loads_what_the_profile_compiled() {
    let Some(host) = runtime_host() else { return };
    let store = tempfile::tempdir().unwrap();
    let engine = compile(store.path(), &root().join(PROFILE));
    let (code, stdout, stderr) = run_host(&host, store.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("engine {engine}\nanswer() = 42\n"));
}

/// Each wasmtime feature the host lacks must be turned off on the compiling
/// side: naming it in `host_features` anyway (as if the host had it) makes
/// an artifact the host refuses, and says why. And without a profile, a
/// default engine's artifact is refused for its GC support.
#[test]
fn a_host_without_a_compiler_refuses_what_it_lacks() {
    let Some(host) = runtime_host() else { return };
    let profile = std::fs::read_to_string(root().join(PROFILE)).unwrap();
    let cases = [
        ("gc", "GC is disabled in the host"),
        ("threads", "`threads` but it is not enabled for the host"),
        ("component-model-async", "concurrency support"),
    ];
    for (feature, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let claimed = dir.path().join("profile.toml");
        let edited = profile.replace("\"std\"]", &format!("\"std\", \"{feature}\"]"));
        assert_ne!(
            edited, profile,
            "the example profile's host_features changed"
        );
        std::fs::write(&claimed, edited).unwrap();
        let store = dir.path().join("store");
        let engine = compile(&store, &claimed);
        let (code, stdout, stderr) = run_host(&host, &store);
        assert_eq!(code, 2, "{feature}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("{engine}: refused: ")) && stderr.contains(reason),
            "{feature}: {stderr}"
        );
    }

    let store = tempfile::tempdir().unwrap();
    Command::cargo_bin("cwasm")
        .unwrap()
        .current_dir(root())
        .args(["compile", "--store"])
        .arg(store.path())
        .arg(WASM)
        .assert()
        .success();
    let (code, _, stderr) = run_host(&host, store.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("GC is disabled in the host"), "{stderr}");
}

/// Two builds of wasmtime 48.0.8 number the runtime builtins alike: this
/// test's (the workspace's features: `gc`, `threads`, Cranelift...) and the
/// runtime-only host's (none of those). `wasmtime-environ` numbers every
/// builtin its list declares, whatever `cfg` the entry carries, so a
/// builtin of a feature a build lacks still has its number, and the ones
/// after it keep theirs (docs/design.md, "What the section cannot see").
#[test]
fn builtin_numbering_does_not_depend_on_features() {
    use wasmtime_environ::BuiltinFunctionIndex as B;
    let Some(host) = runtime_host() else { return };
    let manifest =
        std::fs::read_to_string(root().join("examples/runtime-only/Cargo.toml")).unwrap();
    let host_wasmtime = manifest
        .lines()
        .find(|l| l.starts_with("wasmtime = "))
        .unwrap();
    assert!(
        !host_wasmtime.contains("\"gc\"") && !host_wasmtime.contains("\"threads\""),
        "{host_wasmtime}"
    );
    let ours = format!(
        "len={} floor_f32={} gc_alloc_raw={} memory_atomic_wait32={}",
        B::len(),
        B::floor_f32().index(),
        B::gc_alloc_raw().index(),
        B::memory_atomic_wait32().index()
    );
    let out = Command::new(host).arg("--builtins").assert().success();
    let theirs = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(theirs.trim(), ours);
}
