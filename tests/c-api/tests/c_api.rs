//! The C API's new functions from C: `main.c`, compiled with the system C
//! compiler (`cc`) against the headers of the patched `wasmtime-c-api-impl`
//! and this package's static library, compiles a module, hashes the
//! engine, detects the hash in the artifact, checks the artifact against
//! its engine and another, and loads and calls it. The hash it prints is
//! checked against the Rust API's.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The static library cargo built for this package with this test: beside
/// this test's binary (`target/<profile>/deps/`), named with the same kind
/// of hash suffix; the newest, if other builds left older ones.
fn static_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let newest = std::fs::read_dir(deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("libcwasm_c_api_test-") && name.ends_with(".a")
        })
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap());
    newest.unwrap_or_else(|| panic!("no libcwasm_c_api_test-*.a in {}", deps.display()))
}

fn run_c_program() -> String {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("c-api-test");
    let include = env!("WASMTIME_C_API_INCLUDE");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("main.c");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&source)
        .arg(format!("-I{include}"))
        .arg(static_library())
        // What a Rust static library needs from the system on Linux.
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-lc"])
        .status()
        .expect("running cc (the system C compiler)");
    assert!(status.success(), "compiling main.c failed");
    let out = Command::new(&exe).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "main.c failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_c_api_hashes_detects_checks_and_loads() {
    let out = run_c_program();
    let lines: Vec<&str> = out.lines().collect();
    let hash: String = wasmtime::Engine::default()
        .serialization_compatibility_hash()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(lines[0], format!("hash {hash}"), "{out}");
    assert_eq!(lines[1], format!("detected {hash}"), "{out}");
    assert_eq!(lines[2], "detected in the wasm: none", "{out}");
    assert_eq!(lines[3], "check: ok", "{out}");
    assert!(
        lines[4].starts_with("check by a fuel engine: refused: ") && lines[4].contains("fuel"),
        "{out}"
    );
    assert_eq!(
        lines[5], "check of the wasm: refused: not a precompiled Wasmtime artifact",
        "{out}"
    );
    assert_eq!(lines[6], "answer() = 42", "{out}");
    assert_eq!(lines.len(), 7, "{out}");
}
