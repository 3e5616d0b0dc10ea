//! Engine configuration flags, spelled as the `wasmtime` CLI spells them
//! where the two overlap (`--target`, `-O opt-level=2`, `-W threads=n`,
//! `-C cranelift-<setting>=<value>`, `-D debug-info`), so habits transfer.

use clap::Args;
use cwasm_store::CpuProfile;
use wasmtime::error::Context;
use wasmtime::{Config, Engine, ModuleVersionStrategy, OptLevel, Result, bail};

#[derive(Args, Clone, Debug, Default)]
pub struct EngineFlags {
    /// Compile for this target triple (e.g. aarch64-unknown-linux-gnu,
    /// pulley64). Naming a target turns host CPU feature detection off.
    #[arg(long, conflicts_with_all = ["profile", "cpu"])]
    target: Option<String>,
    /// Compile for the target and CPU features of a profile file (TOML or
    /// JSON, as `cwasm baseline --write` or `cwasm host --json` makes), so
    /// that every machine of a fleet gets the same engine hash.
    #[arg(long, value_name = "FILE", conflicts_with = "cpu")]
    profile: Option<std::path::PathBuf>,
    /// Compile for a named CPU baseline: x86-64-v1 to x86-64-v4,
    /// aarch64-v8.0, aarch64-v8.1, aarch64-v8.3.
    #[arg(long, value_name = "PRESET")]
    cpu: Option<String>,
    /// Optimization and memory options, KEY[=VAL][,...]: opt-level=0|1|2|s,
    /// memory-reservation=N, memory-guard-size=N,
    /// memory-reservation-for-growth=N, memory-may-move=y|n,
    /// signals-based-traps=y|n, table-lazy-init=y|n, memory-init-cow=y|n.
    #[arg(short = 'O', long = "optimize", value_name = "KEY[=VAL[,..]]")]
    optimize: Vec<String>,
    /// Code generation options, KEY[=VAL][,...]: cranelift-<setting>[=<value>]
    /// (any Cranelift setting, e.g. cranelift-has-avx=true; applied after
    /// --profile and --cpu),
    /// native-unwind-info=y|n, cranelift-debug-verifier=y|n,
    /// nan-canonicalization=y|n.
    #[arg(short = 'C', long = "codegen", value_name = "KEY[=VAL[,..]]")]
    codegen: Vec<String>,
    /// Debug options, KEY[=VAL][,...]: debug-info=y|n, address-map=y|n.
    #[arg(short = 'D', long = "debug", value_name = "KEY[=VAL[,..]]")]
    debug: Vec<String>,
    /// WebAssembly features and interruption, KEY[=VAL][,...]: threads, simd,
    /// relaxed-simd, bulk-memory, multi-value, multi-memory, memory64,
    /// tail-call, extended-const, reference-types, function-references, gc,
    /// exceptions, wide-arithmetic, custom-page-sizes, component-model,
    /// branch-hinting (each =y|n), relaxed-simd-deterministic=y|n, fuel=N,
    /// epoch-interruption=y|n.
    #[arg(short = 'W', long = "wasm", value_name = "KEY[=VAL[,..]]")]
    wasm: Vec<String>,
    /// Version recorded in artifacts: `wasmtime` (default: wasmtime's major
    /// version), `none`, or `custom:<string>`.
    #[arg(long, value_name = "wasmtime|none|custom:STRING")]
    module_version: Option<String>,
}

fn pairs(values: &[String]) -> impl Iterator<Item = (&str, Option<&str>)> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (s.trim(), None),
        })
}

fn yes(key: &str, value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("y" | "yes" | "true") => Ok(true),
        Some("n" | "no" | "false") => Ok(false),
        Some(other) => bail!("`{key}` takes y or n, not `{other}`"),
    }
}

fn number(key: &str, value: Option<&str>) -> Result<u64> {
    let Some(value) = value else {
        bail!("`{key}` needs a value: {key}=N")
    };
    let (digits, mul) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (value, 1),
        Some((at, _)) => {
            let mul: u64 = match &value[at..] {
                "K" | "KiB" => 1 << 10,
                "M" | "MiB" => 1 << 20,
                "G" | "GiB" => 1 << 30,
                unit => bail!("`{key}`: unknown unit `{unit}` (use K, M or G)"),
            };
            (&value[..at], mul)
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| wasmtime::format_err!("`{key}`: `{value}` is not a number"))
}

/// The context of every error in the engine options: `cwasm` exits with
/// status 2 for them, as for clap's own usage errors.
#[derive(Debug)]
pub struct InvalidOptions;

impl std::fmt::Display for InvalidOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid engine options")
    }
}

impl EngineFlags {
    /// The `Config` the flags describe, on top of `Config::new()`. Errors
    /// carry [`InvalidOptions`].
    pub fn config(&self) -> Result<Config> {
        self.build().context(InvalidOptions)
    }

    fn build(&self) -> Result<Config> {
        let mut c = Config::new();
        if let Some(target) = &self.target {
            c.target(target)?;
        }
        if let Some(path) = &self.profile {
            CpuProfile::from_file(path)?.apply(&mut c)?;
        }
        if let Some(name) = &self.cpu {
            CpuProfile::preset(name)?.apply(&mut c)?;
        }
        for (key, value) in pairs(&self.optimize) {
            match key {
                "opt-level" => {
                    c.cranelift_opt_level(match value {
                        Some("0") => OptLevel::None,
                        Some("1" | "2") => OptLevel::Speed,
                        Some("s") => OptLevel::SpeedAndSize,
                        other => bail!("`opt-level` takes 0, 1, 2 or s, not {other:?}"),
                    });
                }
                "memory-reservation" => {
                    c.memory_reservation(number(key, value)?);
                }
                "memory-guard-size" => {
                    c.memory_guard_size(number(key, value)?);
                }
                "memory-reservation-for-growth" => {
                    c.memory_reservation_for_growth(number(key, value)?);
                }
                "memory-may-move" => {
                    c.memory_may_move(yes(key, value)?);
                }
                "signals-based-traps" => {
                    c.signals_based_traps(yes(key, value)?);
                }
                "table-lazy-init" => {
                    c.table_lazy_init(yes(key, value)?);
                }
                "memory-init-cow" => {
                    c.memory_init_cow(yes(key, value)?);
                }
                _ => bail!("unknown -O option `{key}`"),
            }
        }
        for (key, value) in pairs(&self.codegen) {
            match key {
                "native-unwind-info" => {
                    c.native_unwind_info(yes(key, value)?);
                }
                "cranelift-debug-verifier" => {
                    c.cranelift_debug_verifier(yes(key, value)?);
                }
                "nan-canonicalization" => {
                    c.cranelift_nan_canonicalization(yes(key, value)?);
                }
                _ => {
                    let Some(setting) = key.strip_prefix("cranelift-") else {
                        bail!("unknown -C option `{key}`");
                    };
                    let setting = setting.replace('-', "_");
                    // SAFETY: as for the wasmtime CLI's `-C cranelift-*`:
                    // the operator vouches for the setting. Hashing and
                    // compiling are safe; running is what the setting affects,
                    // and wasmtime checks CPU features when loading.
                    unsafe {
                        match value {
                            None => c.cranelift_flag_enable(&setting),
                            Some(v) => c.cranelift_flag_set(&setting, v),
                        };
                    }
                }
            }
        }
        for (key, value) in pairs(&self.debug) {
            match key {
                "debug-info" => {
                    c.debug_info(yes(key, value)?);
                }
                "address-map" => {
                    c.generate_address_map(yes(key, value)?);
                }
                _ => bail!("unknown -D option `{key}`"),
            }
        }
        for (key, value) in pairs(&self.wasm) {
            let on = || yes(key, value);
            match key {
                "threads" => c.wasm_threads(on()?),
                "simd" => c.wasm_simd(on()?),
                "relaxed-simd" => c.wasm_relaxed_simd(on()?),
                "relaxed-simd-deterministic" => c.relaxed_simd_deterministic(on()?),
                "bulk-memory" => c.wasm_bulk_memory(on()?),
                "multi-value" => c.wasm_multi_value(on()?),
                "multi-memory" => c.wasm_multi_memory(on()?),
                "memory64" => c.wasm_memory64(on()?),
                "tail-call" => c.wasm_tail_call(on()?),
                "extended-const" => c.wasm_extended_const(on()?),
                "reference-types" => c.wasm_reference_types(on()?),
                "function-references" => c.wasm_function_references(on()?),
                "gc" => c.wasm_gc(on()?),
                "exceptions" => c.wasm_exceptions(on()?),
                "wide-arithmetic" => c.wasm_wide_arithmetic(on()?),
                "custom-page-sizes" => c.wasm_custom_page_sizes(on()?),
                "component-model" => c.wasm_component_model(on()?),
                "branch-hinting" => c.wasm_branch_hinting(on()?),
                "epoch-interruption" => c.epoch_interruption(on()?),
                // As in the wasmtime CLI, `fuel=N` turns fuel metering on; the
                // amount is a store setting and does not reach artifacts.
                "fuel" => {
                    number(key, value)?;
                    c.consume_fuel(true)
                }
                _ => bail!("unknown -W option `{key}`"),
            };
        }
        if let Some(version) = &self.module_version {
            c.module_version(match version.as_str() {
                "wasmtime" => ModuleVersionStrategy::WasmtimeVersion,
                "none" => ModuleVersionStrategy::None,
                other => match other.strip_prefix("custom:") {
                    Some(custom) => ModuleVersionStrategy::Custom(custom.to_string()),
                    None => bail!(
                        "`--module-version` takes wasmtime, none or custom:<string>, not `{other}`"
                    ),
                },
            })?;
        }
        Ok(c)
    }

    /// The engine the flags describe.
    pub fn engine(&self) -> Result<Engine> {
        Engine::new(&self.config()?)
    }
}
