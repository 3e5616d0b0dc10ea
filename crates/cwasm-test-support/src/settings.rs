//! Every public setter of wasmtime's `Config`, classified by what it does to
//! precompiled artifacts, with the values the differential oracle tries.
//!
//! `tests/oracle.rs` checks this table two ways: against the fork's source
//! (every `pub fn` of `impl Config` must be listed, so a rebase cannot add
//! an unclassified setter), and against what wasmtime does (for every
//! variant: the compatibility hash, upstream's
//! `precompile_compatibility_hash`, and the artifacts of the probes).
//! docs/compatibility.md's table is [`compatibility_table`], checked by this
//! module's unit test.

#![allow(
    deprecated,
    reason = "deprecated setters are still public, so the oracle still checks them"
)]

use std::sync::{Arc, Mutex};
use wasmtime::Result;
use wasmtime::{
    Cache, CacheConfig, CacheStore, Collector, Config, Inlining, ModuleVersionStrategy,
    OperatorCost, OptLevel, PoolingAllocationConfig, ProfilingStrategy, RRConfig,
    RegallocAlgorithm, Strategy, WasmBacktraceDetails, WasmFeatures,
};

/// What a setting does to precompiled artifacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Changes the compiled code of at least one probe, and the engine
    /// section (so the compatibility hash) records it.
    Compiled,
    /// Recorded in the engine section (so the hash changes), though the
    /// probes' compiled code is the same: the hash is stricter than needed.
    Pessimistic,
    /// Reaches neither the engine section nor the compiled code: engines
    /// that differ only here share artifacts.
    Runtime,
    /// Not a setting the oracle can vary; `reason` says why.
    NotApplicable,
}

/// One value of a setting, applied on top of `Config::new()`.
pub struct Variant {
    /// The setter and its value, e.g. `wmemcheck=true`; also a file name.
    pub label: String,
    /// Applies the value.
    pub apply: fn(&mut Config) -> Result<()>,
}

/// One public `Config` setter.
pub struct Setting {
    /// The method's name.
    pub name: &'static str,
    /// Its class, as established by the oracle (or `reason`).
    pub class: Class,
    /// Why, where the oracle cannot establish it by itself.
    pub reason: &'static str,
    /// The values tried.
    pub variants: Vec<Variant>,
}

macro_rules! variant {
    ($label:expr, |$c:ident| $body:expr) => {
        Variant {
            label: $label.to_string(),
            apply: |$c: &mut Config| -> Result<()> {
                #[allow(unused_unsafe, reason = "some setters are unsafe")]
                unsafe {
                    $body;
                }
                Ok(())
            },
        }
    };
}

/// A setter taking a `bool`, tried with both values (one is the default).
macro_rules! boolean {
    ($name:ident, $class:ident) => {
        Setting {
            name: stringify!($name),
            class: Class::$class,
            reason: "",
            variants: vec![
                variant!(concat!(stringify!($name), "=true"), |c| c.$name(true)),
                variant!(concat!(stringify!($name), "=false"), |c| c.$name(false)),
            ],
        }
    };
}

/// A setter tried with the given values.
macro_rules! values {
    ($name:ident, $class:ident, $($label:literal => |$c:ident| $body:expr),+ $(,)?) => {
        Setting {
            name: stringify!($name),
            class: Class::$class,
            reason: "",
            variants: vec![$(variant!(concat!(stringify!($name), "=", $label), |$c| $body)),+],
        }
    };
}

fn not_applicable(name: &'static str, reason: &'static str) -> Setting {
    Setting {
        name,
        class: Class::NotApplicable,
        reason,
        variants: Vec::new(),
    }
}

/// An in-memory store for incremental compilation.
#[derive(Debug, Default)]
struct MemoryCacheStore(Mutex<std::collections::HashMap<Vec<u8>, Vec<u8>>>);

impl CacheStore for MemoryCacheStore {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let map = self.0.lock().ok()?;
        map.get(key).cloned().map(std::borrow::Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        match self.0.lock() {
            Ok(mut map) => {
                map.insert(key.to_vec(), value);
                true
            }
            Err(_) => false,
        }
    }
}

fn no_host_features(_: &str) -> Option<bool> {
    Some(false)
}

fn scratch_dir(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cwasm-oracle-{what}-{}", std::process::id()))
}

/// Every public setter of `Config`, in the order of wasmtime's `config.rs`.
pub fn settings() -> Vec<Setting> {
    vec![
        not_applicable("new", "the constructor: every variant starts from it"),
        not_applicable(
            "enable_compiler",
            "without a compiler an engine produces no artifacts, and \
             `serialization_compatibility_hash` is an error (tested in roundtrip.rs)",
        ),
        values!(target, Compiled,
            "aarch64" => |c| c.target("aarch64-unknown-linux-gnu")?,
            "pulley64" => |c| c.target("pulley64")?,
            "x86_64" => |c| c.target("x86_64-unknown-linux-gnu")?,
        ),
        values!(enable_incremental_compilation, Runtime,
            "memory" => |c| c.enable_incremental_compilation(Arc::new(MemoryCacheStore::default()))?,
        ),
        boolean!(async_support, Runtime),
        boolean!(debug_info, Compiled),
        boolean!(debug_symbols, Compiled),
        boolean!(guest_debug, Compiled),
        boolean!(wasm_backtrace, Runtime),
        values!(wasm_backtrace_details, Compiled,
            "enable" => |c| c.wasm_backtrace_details(WasmBacktraceDetails::Enable),
            "disable" => |c| c.wasm_backtrace_details(WasmBacktraceDetails::Disable),
        ),
        values!(wasm_backtrace_max_frames, Runtime,
            "1" => |c| c.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(1)),
            "none" => |c| c.wasm_backtrace_max_frames(None),
        ),
        boolean!(native_unwind_info, Compiled),
        boolean!(consume_fuel, Compiled),
        values!(operator_cost, Compiled,
            "fuel+call=5" => |c| {
                let mut cost = OperatorCost::new();
                cost.Call = 5;
                c.consume_fuel(true).operator_cost(cost)
            },
        ),
        boolean!(epoch_interruption, Compiled),
        not_applicable(
            "gc_zeal_alloc_counter",
            "exists only in wasmtime builds with `cfg(gc_zeal)`, a GC debugging aid; \
             the value is a `Tunables` field, so the engine section records it",
        ),
        values!(max_wasm_stack, Runtime, "64KiB" => |c| c.max_wasm_stack(64 << 10)),
        values!(async_stack_size, Runtime, "4MiB" => |c| c.async_stack_size(4 << 20)),
        boolean!(async_stack_zeroing, Runtime),
        values!(wasm_features, Compiled,
            "-SIMD-RELAXED_SIMD" => |c| c.wasm_features(WasmFeatures::SIMD | WasmFeatures::RELAXED_SIMD, false),
            "+WIDE_ARITHMETIC" => |c| c.wasm_features(WasmFeatures::WIDE_ARITHMETIC, true),
        ),
        boolean!(wasm_tail_call, Compiled),
        boolean!(wasm_branch_hinting, Pessimistic),
        boolean!(wasm_custom_page_sizes, Pessimistic),
        boolean!(wasm_threads, Compiled),
        boolean!(wasm_shared_everything_threads, Pessimistic),
        values!(wasm_reference_types, Compiled,
            "false" => |c| c.wasm_gc(false).wasm_function_references(false).wasm_exceptions(false)
                .wasm_stack_switching(false).wasm_reference_types(false),
        ),
        values!(wasm_function_references, Compiled,
            "false" => |c| c.wasm_gc(false).wasm_stack_switching(false).wasm_function_references(false),
        ),
        boolean!(wasm_wide_arithmetic, Pessimistic),
        boolean!(wasm_gc, Compiled),
        values!(wasm_simd, Compiled,
            "false" => |c| c.wasm_relaxed_simd(false).wasm_simd(false),
        ),
        boolean!(wasm_relaxed_simd, Compiled),
        boolean!(relaxed_simd_deterministic, Compiled),
        boolean!(wasm_bulk_memory, Compiled),
        boolean!(wasm_multi_value, Pessimistic),
        boolean!(wasm_multi_memory, Pessimistic),
        boolean!(wasm_memory64, Pessimistic),
        boolean!(wasm_extended_const, Pessimistic),
        boolean!(wasm_stack_switching, Pessimistic),
        boolean!(wasm_component_model, Compiled),
        boolean!(wasm_component_model_async, Pessimistic),
        boolean!(wasm_component_model_more_async_builtins, Pessimistic),
        boolean!(wasm_component_model_async_stackful, Pessimistic),
        boolean!(wasm_component_model_threading, Pessimistic),
        boolean!(wasm_component_model_error_context, Pessimistic),
        boolean!(wasm_component_model_gc, Pessimistic),
        boolean!(wasm_component_model_map, Pessimistic),
        boolean!(wasm_component_model_memory64, Pessimistic),
        boolean!(wasm_component_model_fixed_length_lists, Pessimistic),
        boolean!(wasm_component_model_implements, Pessimistic),
        boolean!(wasm_exceptions, Pessimistic),
        boolean!(wasm_legacy_exceptions, Runtime),
        values!(strategy, Compiled,
            "winch" => |c| c.strategy(Strategy::Winch),
            "cranelift" => |c| c.strategy(Strategy::Cranelift),
        ),
        values!(collector, Compiled,
            "null" => |c| c.collector(Collector::Null),
            "drc" => |c| c.collector(Collector::DeferredReferenceCounting),
        ),
        values!(gc_heap_initial_size, Pessimistic, "1MiB" => |c| c.gc_heap_initial_size(1 << 20)),
        values!(profiler, Runtime, "perfmap" => |c| c.profiler(ProfilingStrategy::PerfMap)),
        boolean!(cranelift_debug_verifier, Pessimistic),
        boolean!(cranelift_wasmtime_debug_checks, Compiled),
        values!(cranelift_opt_level, Compiled,
            "none" => |c| c.cranelift_opt_level(OptLevel::None),
            "speed_and_size" => |c| c.cranelift_opt_level(OptLevel::SpeedAndSize),
        ),
        values!(cranelift_regalloc_algorithm, Compiled,
            "single_pass" => |c| c.cranelift_regalloc_algorithm(RegallocAlgorithm::SinglePass),
        ),
        boolean!(cranelift_nan_canonicalization, Compiled),
        values!(cranelift_flag_enable, Pessimistic,
            "enable_llvm_abi_extensions" => |c| c.cranelift_flag_enable("enable_llvm_abi_extensions"),
            "has_sse41" => |c| c.cranelift_flag_enable("has_sse41"),
        ),
        values!(cranelift_flag_set, Compiled,
            "opt_level=none" => |c| c.cranelift_flag_set("opt_level", "none"),
            // Settings that Wasmtime's Cranelift backend interprets itself.
            "wasmtime_debug_checks=false" => |c| c.cranelift_flag_set("wasmtime_debug_checks", "false"),
            "wasmtime_linkopt_padding_between_functions=64" =>
                |c| c.cranelift_flag_set("wasmtime_linkopt_padding_between_functions", "64"),
            "wasmtime_linkopt_force_jump_veneer=true" =>
                |c| c.cranelift_flag_set("wasmtime_linkopt_force_jump_veneer", "true"),
            "wasmtime_inlining_small_callee_size=7" => |c| c
                .compiler_inlining(Inlining::Yes)
                .cranelift_flag_set("wasmtime_inlining_small_callee_size", "7"),
        ),
        values!(cache, Runtime,
            "dir" => |c| {
                let mut config = CacheConfig::new();
                config.with_directory(scratch_dir("cache"));
                c.cache(Some(Cache::new(config)?))
            },
        ),
        not_applicable(
            "with_host_memory",
            "a `MemoryCreator` is called when a module is instantiated, never while \
             compiling; `Tunables` and the compiler are built without it",
        ),
        not_applicable(
            "with_host_stack",
            "a `StackCreator` is called when an async fiber stack is allocated, never \
             while compiling",
        ),
        not_applicable(
            "with_custom_code_memory",
            "a `CustomCodeMemory` publishes code at load time; its alignment is applied \
             when an artifact is loaded, never while compiling",
        ),
        values!(allocation_strategy, Runtime,
            "pooling" => |c| {
                let mut pool = PoolingAllocationConfig::new();
                pool.total_memories(4).total_tables(4).total_core_instances(4);
                pool.total_component_instances(4).total_stacks(4).total_gc_heaps(4);
                c.allocation_strategy(pool)
            },
        ),
        values!(memory_reservation, Compiled, "1MiB" => |c| c.memory_reservation(1 << 20)),
        boolean!(memory_may_move, Pessimistic),
        values!(memory_guard_size, Compiled, "0" => |c| c.memory_guard_size(0)),
        values!(memory_reservation_for_growth, Pessimistic,
            "0" => |c| c.memory_reservation_for_growth(0),
        ),
        values!(gc_heap_reservation, Compiled, "1MiB" => |c| c.gc_heap_reservation(1 << 20)),
        values!(gc_heap_guard_size, Compiled, "0" => |c| c.gc_heap_guard_size(0)),
        values!(gc_heap_reservation_for_growth, Pessimistic,
            "0" => |c| c.gc_heap_reservation_for_growth(0),
        ),
        boolean!(gc_heap_may_move, Pessimistic),
        boolean!(guard_before_linear_memory, Pessimistic),
        boolean!(table_lazy_init, Compiled),
        values!(module_version, Pessimistic,
            "custom" => |c| c.module_version(ModuleVersionStrategy::Custom("oracle".into()))?,
            "none" => |c| c.module_version(ModuleVersionStrategy::None)?,
        ),
        boolean!(parallel_compilation, Runtime),
        boolean!(generate_address_map, Compiled),
        boolean!(memory_init_cow, Compiled),
        boolean!(force_memory_init_memfd, Runtime),
        boolean!(coredump_on_trap, Runtime),
        boolean!(wmemcheck, Compiled),
        values!(memory_guaranteed_dense_image_size, Compiled,
            "0" => |c| c.memory_guaranteed_dense_image_size(0),
        ),
        values!(compiler_inlining, Compiled,
            "yes" => |c| c.compiler_inlining(Inlining::Yes),
            "no" => |c| c.compiler_inlining(Inlining::No),
        ),
        boolean!(debug_adapter_modules, Pessimistic),
        values!(emit_clif, Runtime, "dir" => |c| {
            let dir = scratch_dir("clif");
            std::fs::create_dir_all(&dir)?;
            c.emit_clif(&dir)
        }),
        boolean!(macos_use_mach_ports, Runtime),
        values!(detect_host_feature, Runtime, "none" => |c| c.detect_host_feature(no_host_features)),
        boolean!(signals_based_traps, Compiled),
        values!(gc_support, Compiled,
            "false" => |c| c.wasm_gc(false).wasm_function_references(false).wasm_exceptions(false)
                .wasm_stack_switching(false).wasm_reference_types(false).gc_support(false),
        ),
        boolean!(x86_float_abi_ok, Runtime),
        boolean!(shared_memory, Runtime),
        boolean!(concurrency_support, Compiled),
        values!(rr, Compiled, "recording" => |c| c.rr(RRConfig::Recording)),
        boolean!(metadata_for_internal_asserts, Compiled),
        boolean!(metadata_for_gc_heap_corruption, Compiled),
    ]
}

/// The file-name-safe form of a variant's label.
pub fn file_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The table of docs/compatibility.md, made from [`settings`]: one row per
/// setter, its class, and the values the oracle tries (or why none).
pub fn compatibility_table() -> String {
    let mut out = String::from(
        "| `Config::` setter | class | values the oracle tried (or why none) |\n|---|---|---|\n",
    );
    for setting in settings() {
        let tried = if setting.variants.is_empty() {
            setting.reason.to_string()
        } else {
            let values: Vec<String> = setting
                .variants
                .iter()
                .map(|v| {
                    let value = v
                        .label
                        .split_once('=')
                        .map_or(&*v.label, |(_, value)| value);
                    format!("`{value}`")
                })
                .collect();
            values.join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {:?} | {tried} |\n",
            setting.name, setting.class
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    /// docs/compatibility.md's table is [`super::compatibility_table`]: the
    /// doc cannot miss a setter, or give one another class than the oracle
    /// checks.
    #[test]
    fn the_documented_table_is_the_oracles() {
        let doc = include_str!("../../../docs/compatibility.md");
        let start = doc
            .find("| `Config::` setter |")
            .expect("docs/compatibility.md has the table");
        let table: String = doc[start..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .map(|l| format!("{l}\n"))
            .collect();
        let expected = super::compatibility_table();
        assert!(
            table == expected,
            "docs/compatibility.md's table is not settings()'s; replace it with:\n\n{expected}"
        );
    }
}
