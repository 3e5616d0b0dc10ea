//! Tells `Producer::current()` (src/attest.rs) what this build is: the
//! wasmtime version this crate pins in its own `Cargo.toml` (an exact `=`
//! requirement, so the version built against), and the patch series of
//! that wasmtime line in the workspace's `patches/` (its number of patches
//! and a checksum of their text), or `unknown series` outside it.

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let manifest = Path::new(&manifest_dir).join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
    let version =
        pinned_wasmtime(&text).expect("Cargo.toml pins wasmtime with `version = \"=X.Y.Z\"`");
    println!("cargo:rustc-env=CWASM_WASMTIME_VERSION={version}");
    let major = version.split('.').next().unwrap_or_default();
    let patches = Path::new(&manifest_dir).join("../../patches").join(major);
    println!("cargo:rerun-if-changed={}", patches.display());
    println!("cargo:rustc-env=CWASM_SERIES={}", series(&patches));
}

/// The `X.Y.Z` of the `wasmtime = { version = "=X.Y.Z", ... }` line.
fn pinned_wasmtime(manifest: &str) -> Option<&str> {
    manifest.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("wasmtime = ")?;
        let start = rest.find("version = \"=")? + "version = \"=".len();
        let len = rest[start..].find('"')?;
        Some(&rest[start..start + len])
    })
}

/// `serialization-compatibility-hash series, N patches, fnv1a:<hex>`: the
/// patches `series` lists, in order, checksummed (an identity, not a
/// security measure: the statement that carries it is what is signed).
fn series(dir: &Path) -> String {
    let Ok(list) = std::fs::read_to_string(dir.join("series")) else {
        return "unknown series".into();
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut count = 0;
    for name in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let Ok(text) = std::fs::read(dir.join(name)) else {
            return "unknown series".into();
        };
        for byte in text {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        count += 1;
    }
    format!("serialization-compatibility-hash series, {count} patches, fnv1a:{hash:016x}")
}
