//! Driving the `cwasm` binary, for `tests/cli.rs` and `tests/fleet.rs`.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// The `cwasm` binary this package builds.
pub fn cwasm() -> Command {
    Command::cargo_bin("cwasm").unwrap()
}

/// What `cmd` prints, which must succeed.
pub fn stdout(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

/// What `cmd` prints, as JSON.
pub fn json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&stdout(cmd)).unwrap()
}

/// Writes `value` to `path` as JSON (a host or profile file).
pub fn write_json(path: &Path, value: &impl serde::Serialize) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
