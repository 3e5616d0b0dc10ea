//! Tells the shared test files (`../roundtrip.rs`, `../stability.rs`,
//! `../common`) that they are built against the 36 LTS line, so they leave
//! out the `Config` settings that line does not have.

fn main() {
    println!("cargo::rustc-cfg=wasmtime_lts36");
}
