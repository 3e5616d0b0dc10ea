//! Helpers shared by the integration tests: the configuration matrix, and
//! reading an artifact's engine section *without* wasmtime's own reader.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod pinned;

use object::{Object, ObjectSection};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, Module, ModuleVersionStrategy, OptLevel, Result, Store};

/// The name of the section every wasmtime artifact records its engine in.
pub const ENGINE_SECTION: &str = ".wasmtime.engine";

/// A core module with one export, `answer`, returning 42.
pub const MODULE_WAT: &str = r#"(module
  (memory 1)
  (func (export "answer") (result i32) i32.const 42))"#;

/// A component exporting `answer: func() -> s32`, returning 42.
pub const COMPONENT_WAT: &str = r#"(component
  (core module $m (func (export "answer") (result i32) i32.const 42))
  (core instance $i (instantiate $m))
  (func (export "answer") (result s32) (canon lift (core func $i "answer"))))"#;

/// The engine section of `artifact`, found with the `object` crate.
pub fn engine_section(artifact: &[u8]) -> Vec<u8> {
    let file = object::File::parse(artifact).expect("artifact parses as an object file");
    let section = file
        .section_by_name(ENGINE_SECTION)
        .expect("artifact has an engine section");
    section.data().expect("engine section is readable").to_vec()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a knob's engine compiles for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// This host: artifacts can be loaded and run here.
    Host,
    /// Another architecture: artifacts can only be inspected.
    Cross,
}

/// One configuration of the matrix: a name, how to set it on a `Config`,
/// and what it is expected to do to artifacts.
pub struct Knob {
    pub name: &'static str,
    pub apply: fn(&mut Config) -> Result<()>,
    pub target: Target,
    /// Whether setting this knob changes the engine section (and so the
    /// hash). The knobs with `false` are the runtime-only settings listed in
    /// docs/compatibility.md.
    pub reaches_artifact: bool,
}

macro_rules! knob {
    ($name:literal, $target:ident, $reaches:literal, |$c:ident| $body:expr) => {
        Knob {
            name: $name,
            apply: |$c: &mut Config| -> Result<()> {
                $body;
                Ok(())
            },
            target: Target::$target,
            reaches_artifact: $reaches,
        }
    };
}

/// Every knob of the matrix, each applied alone on top of `Config::new()`.
pub fn knobs() -> Vec<Knob> {
    vec![
        // Optimisation levels. `Speed` is the default.
        knob!("opt-level=none", Host, true, |c| c
            .cranelift_opt_level(OptLevel::None)),
        knob!("opt-level=speed", Host, false, |c| c
            .cranelift_opt_level(OptLevel::Speed)),
        knob!("opt-level=speed-and-size", Host, true, |c| c
            .cranelift_opt_level(OptLevel::SpeedAndSize)),
        // WebAssembly proposals, each toggled away from its default.
        knob!("wasm-threads=off", Host, true, |c| c.wasm_threads(false)),
        knob!("wasm-simd=off", Host, true, |c| c
            .wasm_relaxed_simd(false)
            .wasm_simd(false)),
        knob!("wasm-relaxed-simd=off", Host, true, |c| c
            .wasm_relaxed_simd(false)),
        knob!("wasm-relaxed-simd-deterministic", Host, true, |c| c
            .relaxed_simd_deterministic(true)),
        knob!("wasm-bulk-memory=off", Host, true, |c| c
            .wasm_bulk_memory(false)
            .wasm_reference_types(false)
            .wasm_function_references(false)
            .wasm_gc(false)
            .wasm_exceptions(false)),
        knob!("wasm-multi-value=off", Host, true, |c| c
            .wasm_multi_value(false)),
        knob!("wasm-multi-memory=off", Host, true, |c| c
            .wasm_multi_memory(false)),
        knob!("wasm-memory64=off", Host, true, |c| c.wasm_memory64(false)),
        knob!("wasm-tail-call=off", Host, true, |c| c
            .wasm_tail_call(false)),
        knob!("wasm-extended-const=off", Host, true, |c| c
            .wasm_extended_const(false)),
        knob!("wasm-reference-types=off", Host, true, |c| c
            .wasm_reference_types(false)
            .wasm_function_references(false)
            .wasm_gc(false)
            .wasm_exceptions(false)),
        #[cfg(not(wasmtime_lts36))]
        knob!("wasm-function-references=off", Host, true, |c| c
            .wasm_gc(false)
            .wasm_function_references(false)),
        #[cfg(not(wasmtime_lts36))]
        knob!("wasm-gc=off", Host, true, |c| c.wasm_gc(false)),
        #[cfg(not(wasmtime_lts36))]
        knob!("wasm-exceptions=off", Host, true, |c| c
            .wasm_exceptions(false)),
        // The 36 LTS line has these three off by default.
        #[cfg(wasmtime_lts36)]
        knob!("wasm-function-references=on", Host, true, |c| c
            .wasm_function_references(true)),
        #[cfg(wasmtime_lts36)]
        knob!("wasm-gc=on", Host, true, |c| c
            .wasm_function_references(true)
            .wasm_gc(true)),
        #[cfg(wasmtime_lts36)]
        knob!("wasm-exceptions=on", Host, true, |c| c
            .wasm_exceptions(true)),
        knob!("wasm-wide-arithmetic=on", Host, true, |c| c
            .wasm_wide_arithmetic(true)),
        knob!("wasm-custom-page-sizes=on", Host, true, |c| c
            .wasm_custom_page_sizes(true)),
        // Not in the 36 LTS line.
        #[cfg(not(wasmtime_lts36))]
        knob!("wasm-branch-hinting=on", Host, true, |c| c
            .wasm_branch_hinting(true)),
        knob!("wasm-component-model=off", Host, true, |c| c
            .wasm_component_model(false)),
        // Memory tunables.
        knob!("memory-reservation=16MiB", Host, true, |c| c
            .memory_reservation(16 << 20)),
        knob!("memory-guard-size=0", Host, true, |c| c
            .memory_guard_size(0)),
        knob!("memory-may-move=off", Host, true, |c| c
            .memory_may_move(false)),
        knob!("memory-reservation-for-growth=0", Host, true, |c| c
            .memory_reservation_for_growth(0)),
        knob!("guard-before-linear-memory=off", Host, true, |c| c
            .guard_before_linear_memory(false)),
        knob!("signals-based-traps=off", Host, true, |c| c
            .signals_based_traps(false)),
        knob!("table-lazy-init=off", Host, true, |c| c
            .table_lazy_init(false)),
        knob!("memory-init-cow=off", Host, true, |c| c
            .memory_init_cow(false)),
        // Garbage collection and inlining.
        knob!("collector=null", Host, true, |c| c
            .collector(wasmtime::Collector::Null)),
        // Not in the 36 LTS line.
        #[cfg(not(wasmtime_lts36))]
        knob!("gc-heap-reservation=1MiB", Host, true, |c| c
            .gc_heap_reservation(1 << 20)),
        #[cfg(not(wasmtime_lts36))]
        knob!("compiler-inlining", Host, true, |c| c
            .compiler_inlining(wasmtime::Inlining::Yes)),
        // The 36 LTS line takes a `bool`.
        #[cfg(wasmtime_lts36)]
        knob!("compiler-inlining", Host, true, |c| c
            .compiler_inlining(true)),
        // Interruption.
        knob!("consume-fuel", Host, true, |c| c.consume_fuel(true)),
        knob!("epoch-interruption", Host, true, |c| c
            .epoch_interruption(true)),
        // Debugging and metadata.
        knob!("debug-info", Host, true, |c| c.debug_info(true)),
        knob!("generate-address-map=off", Host, true, |c| c
            .generate_address_map(false)),
        knob!("native-unwind-info=off", Host, true, |c| c
            .signals_based_traps(false)
            .native_unwind_info(false)),
        // Module version strategies. `WasmtimeVersion` is the default.
        knob!("module-version=wasmtime", Host, false, |c| c
            .module_version(ModuleVersionStrategy::WasmtimeVersion)?),
        knob!("module-version=custom", Host, true, |c| c.module_version(
            ModuleVersionStrategy::Custom("my-build-7".into())
        )?),
        knob!("module-version=none", Host, true, |c| c
            .module_version(ModuleVersionStrategy::None)?),
        // Cranelift settings.
        knob!("cranelift-nan-canonicalization", Host, true, |c| c
            .cranelift_nan_canonicalization(true)),
        knob!(
            "cranelift-flag-set regalloc_checker",
            Host,
            true,
            |c| unsafe { c.cranelift_flag_set("regalloc_checker", "true") }
        ),
        knob!(
            "cranelift-flag-enable enable_heap_access_spectre_mitigation=off",
            Host,
            true,
            |c| unsafe { c.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false") }
        ),
        knob!("cranelift-debug-verifier", Host, true, |c| c
            .cranelift_debug_verifier(true)),
        // Settings that only matter at run time: the section, and so the
        // hash, must not change.
        knob!("max-wasm-stack=256KiB", Host, false, |c| c
            .max_wasm_stack(256 << 10)),
        knob!("parallel-compilation=off", Host, false, |c| c
            .parallel_compilation(false)),
        // Not in the 36 LTS line.
        #[cfg(not(wasmtime_lts36))]
        knob!("wasm-backtrace-max-frames=4", Host, false, |c| c
            .wasm_backtrace_max_frames(core::num::NonZeroUsize::new(4))),
        knob!("coredump-on-trap", Host, false, |c| c
            .coredump_on_trap(true)),
        knob!("async-stack-size=4MiB", Host, false, |c| c
            .async_stack_size(4 << 20)),
        knob!("pooling-allocator", Host, false, |c| {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_memories(4)
                .total_tables(4)
                .total_core_instances(4);
            pool.total_component_instances(4).total_stacks(4);
            c.allocation_strategy(pool)
        }),
        // Cross targets, with a target-specific feature enabled.
        knob!("target=aarch64", Cross, true, |c| c
            .target("aarch64-unknown-linux-gnu")?),
        knob!("target=aarch64+lse", Cross, true, |c| {
            c.target("aarch64-unknown-linux-gnu")?;
            unsafe { c.cranelift_flag_enable("has_lse") }
        }),
        knob!("target=riscv64gc", Cross, true, |c| c
            .target("riscv64gc-unknown-linux-gnu")?),
        knob!("target=riscv64gc+zba", Cross, true, |c| {
            c.target("riscv64gc-unknown-linux-gnu")?;
            unsafe { c.cranelift_flag_enable("has_zba") }
        }),
        knob!("target=s390x", Cross, true, |c| c
            .target("s390x-unknown-linux-gnu")?),
        knob!("target=s390x+mie3", Cross, true, |c| {
            c.target("s390x-unknown-linux-gnu")?;
            unsafe { c.cranelift_flag_enable("has_mie3") }
        }),
        knob!("target=pulley64", Host, true, |c| c.target("pulley64")?),
        knob!("target=x86_64 pinned", Host, true, |c| {
            c.target("x86_64-unknown-linux-gnu")?;
            unsafe { c.cranelift_flag_enable("has_sse41") }
        }),
    ]
}

/// The configuration `Config::new()` with `knob` applied.
pub fn config_with(knob: &Knob) -> Config {
    let mut config = Config::new();
    (knob.apply)(&mut config).unwrap_or_else(|e| panic!("knob `{}`: {e:#}", knob.name));
    config
}

/// What checking one engine found.
pub struct Checked {
    pub hash: [u8; 32],
    pub section: Vec<u8>,
    pub module: Vec<u8>,
    pub component: Option<Vec<u8>>,
}

/// Precompiles a module and (where the engine supports them) a component
/// with `engine`, and asserts that for both artifacts the SHA-256 of the
/// engine section, found independently of wasmtime, equals both
/// `serialization_compatibility_hash()` and the artifact reader.
pub fn check_round_trip(engine: &Engine, what: &str) -> Checked {
    let hash = engine
        .serialization_compatibility_hash()
        .unwrap_or_else(|e| panic!("{what}: hash: {e:#}"));
    let module = engine
        .precompile_module(MODULE_WAT.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: precompile_module: {e:#}"));
    let section = engine_section(&module);
    let component = if supports_components(engine) {
        Some(
            engine
                .precompile_component(COMPONENT_WAT.as_bytes())
                .unwrap_or_else(|e| panic!("{what}: precompile_component: {e:#}")),
        )
    } else {
        None
    };
    for (kind, artifact) in [("module", Some(&module)), ("component", component.as_ref())] {
        let Some(artifact) = artifact else { continue };
        assert_eq!(
            sha256(&engine_section(artifact)),
            hash,
            "{what}: {kind}: SHA-256 of the artifact's section differs from the engine's hash"
        );
        assert_eq!(
            Engine::detect_serialization_compatibility_hash(artifact),
            Some(hash),
            "{what}: {kind}: the artifact reader disagrees with the engine's hash"
        );
    }
    Checked {
        hash,
        section,
        module,
        component,
    }
}

/// Whether `engine` can compile components (the component model proposal
/// can be switched off).
///
/// Asked with a component that has a core module: wasmtime 36.0.20 panics
/// compiling one without any when `debug_info` is on
/// (`debug/transform/simulate.rs` of wasmtime-internal-cranelift unwraps the
/// first module), an upstream bug the series does not touch.
pub fn supports_components(engine: &Engine) -> bool {
    engine
        .precompile_component(COMPONENT_WAT.as_bytes())
        .is_ok()
}

/// Loads `artifact` (a module) into `engine` and calls `answer`.
pub fn run_module(engine: &Engine, artifact: &[u8]) -> Result<i32> {
    // SAFETY: the artifacts in these tests are produced by wasmtime itself.
    let module = unsafe { Module::deserialize(engine, artifact)? };
    let mut store = Store::new(engine, ());
    store.set_fuel(u64::MAX).ok();
    store.set_epoch_deadline(u64::MAX);
    let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
    let answer = instance.get_typed_func::<(), i32>(&mut store, "answer")?;
    answer.call(&mut store, ())
}

/// Loads `artifact` (a component) into `engine` and calls `answer`.
pub fn run_component(engine: &Engine, artifact: &[u8]) -> Result<i32> {
    // SAFETY: the artifacts in these tests are produced by wasmtime itself.
    let component = unsafe { Component::deserialize(engine, artifact)? };
    let mut store = Store::new(engine, ());
    store.set_fuel(u64::MAX).ok();
    store.set_epoch_deadline(u64::MAX);
    let linker = wasmtime::component::Linker::new(engine);
    let instance = linker.instantiate(&mut store, &component)?;
    let answer = instance.get_typed_func::<(), (i32,)>(&mut store, "answer")?;
    Ok(answer.call(&mut store, ())?.0)
}
