//! wasmtime's C API (the registry's `wasmtime-c-api-impl`, with the series
//! of `patches/c-api-48/`) as a static library, as upstream's
//! `wasmtime-c-api` artifact crate builds it: `tests/c_api.rs` compiles
//! `main.c` against it with the system C compiler.

pub use wasmtime_c_api::*;
