//! Passes on where `wasmtime-c-api-impl`'s build script installed the C
//! headers (its `conf.h` is generated for the features it was built with).

fn main() {
    let include = std::env::var("DEP_WASMTIME_C_API_INCLUDE")
        .expect("wasmtime-c-api-impl declares `links = \"wasmtime-c-api\"` and exports `include`");
    println!("cargo:rustc-env=WASMTIME_C_API_INCLUDE={include}");
}
