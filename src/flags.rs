//! Engine options: exactly the `wasmtime` CLI's (`-O`, `-C`, `-D`, `-W`,
//! `--target`, `--config`; the `wasmtime-cli-flags` crate `wasmtime compile`
//! uses), so `cwasm compile` builds the engine `wasmtime compile` builds for
//! the same options. On top of them, cwasm's own: `--profile` and `--cpu`
//! (a fleet's CPU baseline) and `--module-version`.

use clap::Args;
use cwasm_store::CpuProfile;
use wasmtime::error::Context;
use wasmtime::{Config, Engine, ModuleVersionStrategy, Result, bail};
use wasmtime_cli_flags::CommonOptions;

#[derive(Args, Clone)]
pub struct EngineFlags {
    #[command(flatten)]
    common: CommonOptions,
    /// Compile for the target and CPU features of a profile file (TOML or
    /// JSON, as `cwasm baseline --write` or `cwasm host --json` makes), so
    /// that every machine of a fleet gets the same engine hash. `-C
    /// cranelift-<setting>` options apply on top of it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cpu", "target"])]
    profile: Option<std::path::PathBuf>,
    /// Compile for a named CPU baseline: x86-64-v1 to x86-64-v4,
    /// aarch64-v8.0, aarch64-v8.1, aarch64-v8.3. `-C cranelift-<setting>`
    /// options apply on top of it.
    #[arg(long, value_name = "PRESET", conflicts_with = "target")]
    cpu: Option<String>,
    /// Version recorded in artifacts: `wasmtime` (default: wasmtime's major
    /// version), `none`, or `custom:<string>`.
    #[arg(long, value_name = "wasmtime|none|custom:STRING")]
    module_version: Option<String>,
}

impl EngineFlags {
    /// The CPU profile the options name, for the statements of what they
    /// compile: the `--cpu` preset, or the `--profile` file's name.
    pub fn profile_name(&self) -> Option<String> {
        match (&self.cpu, &self.profile) {
            (Some(cpu), _) => Some(cpu.clone()),
            (None, Some(file)) => Some(file.file_name()?.to_string_lossy().into_owned()),
            (None, None) => None,
        }
    }
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
    /// The `Config` the options describe. Errors carry [`InvalidOptions`].
    pub fn config(&self) -> Result<Config> {
        self.build().context(InvalidOptions)
    }

    fn build(&self) -> Result<Config> {
        let mut common = self.common.clone();
        // As `wasmtime compile` builds its config (this build has no logging:
        // `-D logging` is refused there, not ignored).
        common.init_logging()?;
        let mut c = common.config(None)?;
        // wasmtime's own cache is compiled out here, and `config` ignores
        // this option then: say where the store's config file goes.
        if common.codegen.cache_config.is_some() {
            bail!(
                "`-C cache-config` configures wasmtime's own cache, which cwasm does not \
                 use; give a `[cache]` file to `--cache-config` instead"
            );
        }
        let profile = match (&self.profile, &self.cpu) {
            (Some(path), _) => Some(CpuProfile::from_file(path)?),
            (None, Some(name)) => Some(CpuProfile::preset(name)?),
            (None, None) => None,
        };
        if let Some(profile) = profile {
            profile.apply(&mut c)?;
            // The profile replaced the CPU settings; explicit
            // `-C cranelift-*` options win over it, as documented.
            for (name, value) in &common.codegen.cranelift {
                let name = name.replace('-', "_");
                // SAFETY: as for the wasmtime CLI's `-C cranelift-*`, which
                // `common.config` already applied once: the operator vouches
                // for the setting, and wasmtime checks CPU features when
                // loading.
                unsafe {
                    match value {
                        Some(value) => c.cranelift_flag_set(&name, value),
                        None => c.cranelift_flag_enable(&name),
                    };
                }
            }
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

    /// The engine the options describe.
    pub fn engine(&self) -> Result<Engine> {
        Engine::new(&self.config()?)
    }
}
