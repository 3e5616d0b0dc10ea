//! Shared by this repository's tests, and built twice: against the fork, and
//! (by `cargo xtask test`) against pristine wasmtime as the `cwasm-oracle`
//! binary, so that the two can be compared on the same configurations.
//!
//! Nothing here may use the fork's additions to wasmtime.

pub mod probes;
pub mod settings;

/// The wasmtime this crate was built against (the fork, or pristine for the
/// oracle binary), so that the binary needs no dependency of its own.
pub use wasmtime;

use probes::Probe;
use settings::Variant;
use wasmtime::Result;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context;
use wasmtime::{Config, Engine, Instance, Module, Store};

/// The label of the unmodified configuration, `Config::new()`.
pub const DEFAULT: &str = "default";

/// `Config::new()` with `variant` applied (none: the default).
pub fn config(variant: Option<&Variant>) -> Result<Config> {
    let mut config = Config::new();
    if let Some(variant) = variant {
        (variant.apply)(&mut config).with_context(|| format!("applying `{}`", variant.label))?;
    }
    Ok(config)
}

/// Every configuration the oracle compares: the default first, then each
/// variant of each setting.
pub fn labelled_variants() -> Vec<(String, Option<Variant>)> {
    let mut all = vec![(DEFAULT.to_string(), None)];
    for setting in settings::settings() {
        for variant in setting.variants {
            all.push((variant.label.clone(), Some(variant)));
        }
    }
    all
}

/// The artifact of `probe` precompiled by `engine`.
pub fn precompile(engine: &Engine, probe: &Probe) -> Result<Vec<u8>> {
    if probe.component {
        engine.precompile_component(probe.wat.as_bytes())
    } else {
        engine.precompile_module(probe.wat.as_bytes())
    }
}

/// Loads `artifact`, an artifact of `probe`, into `engine` and returns what
/// its `run` export returns.
///
/// # Safety
///
/// As `Module::deserialize`: `artifact` must come from a wasmtime engine
/// (the check of its engine section is what this is used to test).
pub unsafe fn run(engine: &Engine, probe: &Probe, artifact: &[u8]) -> Result<i32> {
    let mut store = Store::new(engine, ());
    store.set_fuel(u64::MAX).ok();
    store.set_epoch_deadline(u64::MAX);
    if probe.component {
        // SAFETY: forwarded to the caller.
        let component = unsafe { Component::deserialize(engine, artifact)? };
        let instance = Linker::new(engine).instantiate(&mut store, &component)?;
        let run = instance.get_typed_func::<(), (i32,)>(&mut store, "run")?;
        Ok(run.call(&mut store, ())?.0)
    } else {
        // SAFETY: forwarded to the caller.
        let module = unsafe { Module::deserialize(engine, artifact)? };
        let instance = Instance::new(&mut store, &module, &[])?;
        let run = instance.get_typed_func::<(), i32>(&mut store, "run")?;
        run.call(&mut store, ())
    }
}

/// The probe called `name`.
pub fn probe(name: &str) -> Result<&'static Probe> {
    probes::PROBES
        .iter()
        .find(|p| p.name == name)
        .with_context(|| format!("no probe `{name}`"))
}
