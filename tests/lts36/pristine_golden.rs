//! Built by `cargo xtask test` against *pristine* wasmtime 36.0.20 (the
//! registry package, without the series). For each pinned configuration of
//! the golden vectors it prints the SHA-256 of the engine section of an
//! artifact that pristine wasmtime compiles, found with the `object` crate,
//! in the golden file's format. xtask compares the output with
//! `tests/lts36/tests/golden/hashes.txt`: the fork's hashes must be the
//! digests of the sections pristine wasmtime writes.

#[path = "../common/pinned.rs"]
mod pinned;

use object::{Object, ObjectSection};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn main() {
    let mut hashes = BTreeMap::new();
    for (name, config) in pinned::pinned() {
        let engine = wasmtime::Engine::new(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let artifact = engine
            .precompile_module(b"(module)")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let file = object::File::parse(&*artifact).expect("an artifact is an object file");
        let section = file
            .section_by_name(".wasmtime.engine")
            .expect("an artifact has an engine section")
            .data()
            .expect("the engine section is readable");
        let hash: String = Sha256::digest(section)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        hashes.insert(name, hash);
    }
    for (name, hash) in hashes {
        println!("{hash}  {name}");
    }
}
