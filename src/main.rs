//! `cwasm`: see README.md.
fn main() {
    let _ = wasmtime::Engine::default();
}
