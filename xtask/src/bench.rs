//! `cargo xtask bench`: instruction counts (cachegrind) that resolve 0.1%,
//! then the criterion benchmarks, then one summary with every ratio.
//!
//! The pristine-vs-fork comparison is built apples to apples: two generated
//! workspaces under `target/bench-pair/{pristine,fork}` that differ only in
//! the contents of their `wasmtime` directory (the registry package as is,
//! or `crates/wasmtime`), with the same manifests (so the same features and
//! profile), the same lockfile, the same bench sources, and the same cargo
//! command run in each. [`Pair::check`] proves it before anything is
//! measured, and the summary says so.

use crate::cmd::{cargo, output, run};
use crate::fork;
use crate::lines::{self, Role};
use crate::servers::{Server, Servers};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Alternating pristine/fork rounds of the criterion precompile comparison.
const PRECOMPILE_ROUNDS: usize = 3;

/// Each count is taken this many times: the spread is the resolution.
const REPEATS: usize = 2;

pub fn bench(root: &Path, quick: bool) -> Result<()> {
    let mut summary = String::new();
    crate::run::ensure_workspace_forks(root)?;
    ensure_valgrind()?;
    let pair = Pair::prepare(root)?;
    writeln!(summary, "{}", pair.check()?)?;

    // 1. Instruction counts, pristine vs fork.
    writeln!(
        summary,
        "\n## Instructions per operation, pristine {} vs fork (cachegrind)\n\n\
         | operation | pristine | fork | fork / pristine |\n|---|---|---|---|",
        lines::with_role(Role::Fork).version
    )?;
    let pristine_counts = pair.pristine.build_counts(root)?;
    let fork_counts = pair.fork.build_counts(root)?;
    for (op, lo, hi) in [
        ("precompile", 1, 3),
        // Its setup compiles: many loads, so that the setup's own variation
        // (hash seeds) is spread thin.
        ("deserialize", 1, 101),
        ("upstream-hash", 1, 1001),
    ] {
        let p = per_op(&pristine_counts, &[op], lo, hi)?;
        let f = per_op(&fork_counts, &[op], lo, hi)?;
        writeln!(
            summary,
            "| `{op}` | {} | {} | **{}** |",
            p.show(),
            f.show(),
            f.ratio(&p)
        )?;
    }

    // 2. Instruction counts of the fork's own paths, against their floors.
    let store_counts = build_example(root, root, "cwasm-benches", "store_counts")?;
    let work = root.join("target/bench-store-counts");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    run(Command::new(&store_counts).arg("prepare").arg(&work))?;
    let dir = work.to_string_lossy().into_owned();
    let mut counts = BTreeMap::new();
    for (op, lo, hi) in [
        ("engine", 1, 3),
        ("hash-cold", 1, 3),
        ("hash-warm", 1, 10001),
        ("upstream-hash", 1, 1001),
        ("detect", 1, 101),
        ("detect-file", 1, 101),
        ("deserialize-file", 1, 5),
        ("hit", 1, 5),
        ("hit-digest", 1, 5),
        ("hit-file", 1, 5),
        ("hit-keyed", 1, 5),
        ("hit-keyed-digest", 1, 5),
        ("hit-signed-digest", 1, 5),
        ("hit-subset-digest", 1, 5),
        ("wasmtime-cache-hit", 1, 5),
    ] {
        counts.insert(op, per_op(&store_counts, &[op, &dir], lo, hi)?);
    }
    let cold = counts["hash-cold"].minus(&counts["engine"]);
    writeln!(
        summary,
        "\n## Instructions per operation, the fork's paths (cachegrind; 10 MB artifact)\n\n\
         Under valgrind SHA-256 runs without SHA-NI (valgrind does not emulate it), so\n\
         every path that hashes the wasm or the artifact counts several times the\n\
         instructions it runs natively; the wall-clock table below is the native cost.\n\n\
         | operation | instructions | ratio |\n|---|---|---|"
    )?;
    let floor = &counts["deserialize-file"];
    let unkeyed = &counts["hit"];
    let signed_extra = counts["hit-signed-digest"].minus(&counts["hit-keyed-digest"]);
    let rows: [(&str, &Estimate, String); 15] = [
        (
            "hash, cold (first call on a fresh engine)",
            &cold,
            String::new(),
        ),
        ("hash, warm", &counts["hash-warm"], String::new()),
        (
            "upstream `precompile_compatibility_hash` + `DefaultHasher`",
            &counts["upstream-hash"],
            format!("cold hash / this: {}", cold.ratio(&counts["upstream-hash"])),
        ),
        (
            "reader: `detect_…(bytes)`",
            &counts["detect"],
            String::new(),
        ),
        (
            "reader: `detect_…_file(path)`",
            &counts["detect-file"],
            String::new(),
        ),
        ("`Module::deserialize_file`", floor, "1 (the floor)".into()),
        (
            "hit, unkeyed, hashing the wasm",
            unkeyed,
            format!("{} × the floor", unkeyed.ratio(floor)),
        ),
        (
            "hit, unkeyed, digest supplied",
            &counts["hit-digest"],
            format!("{} × the floor", counts["hit-digest"].ratio(floor)),
        ),
        (
            "hit, `get_or_compile_module_file` (digest remembered)",
            &counts["hit-file"],
            format!("{} × the floor", counts["hit-file"].ratio(floor)),
        ),
        (
            "hit, keyed (sealed copy, tag verified), hashing the wasm",
            &counts["hit-keyed"],
            format!("{} × unkeyed", counts["hit-keyed"].ratio(unkeyed)),
        ),
        (
            "hit, keyed (sealed copy, tag verified), digest supplied",
            &counts["hit-keyed-digest"],
            format!(
                "{} × unkeyed, digest supplied",
                counts["hit-keyed-digest"].ratio(&counts["hit-digest"])
            ),
        ),
        (
            "hit, signed (sealed copy, statement verified with the farm's public key), digest supplied",
            &counts["hit-signed-digest"],
            format!(
                "{} × keyed, digest supplied",
                counts["hit-signed-digest"].ratio(&counts["hit-keyed-digest"])
            ),
        ),
        (
            "signed hit − keyed hit (the statement and one Ed25519 verification)",
            &signed_extra,
            String::new(),
        ),
        (
            "hit, another engine's artifact (CPU subset), digest supplied",
            &counts["hit-subset-digest"],
            format!(
                "{} × unkeyed, digest supplied (target: ≈ 1)",
                counts["hit-subset-digest"].ratio(&counts["hit-digest"])
            ),
        ),
        (
            "hit in wasmtime's `Config::cache`",
            &counts["wasmtime-cache-hit"],
            format!(
                "{} × our unkeyed hit",
                counts["wasmtime-cache-hit"].ratio(unkeyed)
            ),
        ),
    ];
    for (what, estimate, ratio) in rows {
        writeln!(summary, "| {what} | {} | {ratio} |", estimate.show())?;
    }

    // 3. Criterion (wall clock): the precompile pair, alternating, then the
    //    fork's own benches.
    let criterion_home = root.join("target/criterion");
    let criterion_args: &[&str] = if quick { &["--quick"] } else { &[] };
    let mut ratios = Vec::new();
    for _ in 0..PRECOMPILE_ROUNDS {
        for (side, baseline) in [
            (&pair.pristine, "--save-baseline"),
            (&pair.fork, "--baseline"),
        ] {
            let mut cmd = side.cargo(root);
            cmd.env("CRITERION_HOME", &criterion_home)
                .args(["bench", "--locked", "--bench", "precompile", "--"])
                .args([baseline, "pristine"])
                .args(criterion_args);
            run(&mut cmd)?;
        }
        ratios.push(baseline_ratio(&criterion_home.join("precompile_module"))?);
    }
    let servers = Servers::start(root, &[Server::S3, Server::Registry, Server::Ggcr])?;
    for bench in ["store", "hash", "reader", "sha256", "baseline"] {
        let mut cmd = cargo();
        // Errors capture a backtrace when RUST_BACKTRACE is set, which
        // costs tens of microseconds each; hosts seldom set it, and the
        // engine choice builds one error per refused engine.
        cmd.current_dir(root)
            .env_remove("RUST_BACKTRACE")
            .env("CRITERION_HOME", &criterion_home)
            .envs(servers.env())
            .args(["bench", "--locked", "-p", "cwasm-benches", "--bench", bench])
            .arg("--")
            .args(criterion_args);
        run(&mut cmd)?;
    }
    drop(servers);
    match run(Command::new("openssl").args(["speed", "-evp", "sha256", "-seconds", "2"])) {
        Ok(()) => {}
        Err(e) => eprintln!("note: no `openssl speed` reference: {e:#}"),
    }

    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    ratios.sort_by(f64::total_cmp);
    writeln!(
        summary,
        "\n## Wall clock (criterion means; this machine drifts 10%+)\n\n\
         `precompile_module`, fork / pristine, alternating rounds: {}; median {:.3}\n",
        shown.join(", "),
        ratios[ratios.len() / 2]
    )?;
    writeln!(summary, "{}", wall_clock_ratios(&criterion_home)?)?;
    let path = root.join("target/bench-summary.md");
    std::fs::write(&path, &summary)?;
    println!("\n{summary}");
    println!(
        "(also in {}; criterion's reports: {})",
        path.display(),
        criterion_home.display()
    );
    Ok(())
}

/// valgrind, from Debian's packages if it is missing.
fn ensure_valgrind() -> Result<()> {
    if Command::new("valgrind").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("valgrind is missing: installing it from Debian's packages");
    let sudo = |args: &[&str]| {
        let mut cmd = if output(Command::new("id").arg("-u"))?.trim() == "0" {
            Command::new(args[0])
        } else {
            let mut c = Command::new("sudo");
            c.arg(args[0]);
            c
        };
        cmd.args(&args[1..]);
        run(&mut cmd)
    };
    sudo(&["apt-get", "update", "-q"])?;
    sudo(&["apt-get", "install", "-y", "-q", "valgrind"])
        .context("installing valgrind (needed for the instruction counts)")
}

/// An instruction count per operation: the mean over the repeats, and the
/// smallest and largest of them.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    mean: f64,
    min: f64,
    max: f64,
}

impl Estimate {
    fn show(&self) -> String {
        let spread = (self.max - self.min) / 2.0 / self.mean.abs().max(1.0);
        format!("{} (±{:.4}%)", thousands(self.mean), spread * 100.0)
    }

    /// `self / other`, with the interval the spreads allow.
    fn ratio(&self, other: &Estimate) -> String {
        let mid = self.mean / other.mean;
        let lo = self.min / other.max;
        let hi = self.max / other.min;
        format!("{mid:.4} [{lo:.4}, {hi:.4}]")
    }

    fn minus(&self, other: &Estimate) -> Estimate {
        Estimate {
            mean: self.mean - other.mean,
            min: self.min - other.max,
            max: self.max - other.min,
        }
    }
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.round());
    let (sign, digits) = digits
        .strip_prefix('-')
        .map_or(("", digits.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Instructions of one operation of `exe args...`: the count at `hi`
/// repetitions minus the count at `lo`, over `hi - lo`, taken [`REPEATS`]
/// times.
fn per_op(exe: &Path, args: &[&str], lo: u64, hi: u64) -> Result<Estimate> {
    let mut each = Vec::new();
    for _ in 0..REPEATS {
        let at = |n: u64| count(exe, args, n);
        each.push((at(hi)? as f64 - at(lo)? as f64) / (hi - lo) as f64);
    }
    let mean = each.iter().sum::<f64>() / each.len() as f64;
    let min = each.iter().copied().fold(f64::INFINITY, f64::min);
    let max = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    eprintln!("{} {}: {}", exe.display(), args.join(" "), thousands(mean));
    Ok(Estimate { mean, min, max })
}

/// Instructions `exe args... n` executes in all its threads (cachegrind's
/// `I refs`).
fn count(exe: &Path, args: &[&str], n: u64) -> Result<u64> {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
    ])
    .arg(exe)
    .args(args)
    .arg(n.to_string());
    let out = cmd
        .output()
        .with_context(|| format!("failed to start valgrind on {}", exe.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{} {} {n} failed under valgrind:\n{stderr}",
            exe.display(),
            args.join(" ")
        );
    }
    let refs = stderr
        .lines()
        .find_map(|l| l.split_once("I   refs:"))
        .with_context(|| format!("no `I refs` in cachegrind's output:\n{stderr}"))?
        .1;
    refs.trim()
        .replace(',', "")
        .parse()
        .with_context(|| format!("cachegrind's `I refs` is not a number: {refs}"))
}

/// Builds the example `name` of `package` in the workspace `dir`, release
/// profile, and returns its executable.
fn build_example(root: &Path, dir: &Path, package: &str, name: &str) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .args([
            "build",
            "--locked",
            "--release",
            "-p",
            package,
            "--example",
            name,
        ])
        .args(["--message-format", "json-render-diagnostics"]);
    executable(&mut cmd, name)
}

/// Runs a cargo build that prints JSON messages and returns the path of
/// the executable named `name`.
fn executable(cmd: &mut Command, name: &str) -> Result<PathBuf> {
    let stdout = output(cmd)?;
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == name
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo built no executable `{name}`")
}

/// One side of the pristine/fork pair: a generated workspace.
struct Side {
    name: &'static str,
    dir: PathBuf,
}

impl Side {
    /// The one cargo invocation both sides use: the workspace's own
    /// directory, one shared target directory.
    fn cargo(&self, root: &Path) -> Command {
        let mut cmd = cargo();
        cmd.current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", root.join("target/bench-pair/target"));
        cmd
    }

    fn build_counts(&self, root: &Path) -> Result<PathBuf> {
        let mut cmd = self.cargo(root);
        cmd.args(["build", "--locked", "--release", "--example", "pair_counts"])
            .args(["--message-format", "json-render-diagnostics"]);
        let built = executable(&mut cmd, "pair_counts")
            .with_context(|| format!("building the {} side's pair_counts", self.name))?;
        // Both sides build into one target directory, where the second
        // build's example replaces the first's: keep a copy per side.
        let kept = root
            .join("target/bench-pair")
            .join(format!("pair_counts-{}", self.name));
        std::fs::copy(&built, &kept)?;
        Ok(kept)
    }
}

struct Pair {
    pristine: Side,
    fork: Side,
}

/// The manifest of both workspaces: the same text, so the same features and
/// profile.
const WORKSPACE_MANIFEST: &str = "\
# Generated by `cargo xtask bench`; the same text on both sides.
[workspace]
members = [\"wasmtime\", \"pair\"]
resolver = \"3\"

[patch.crates-io]
wasmtime = { path = \"wasmtime\" }
";

impl Pair {
    fn prepare(root: &Path) -> Result<Pair> {
        let base = root.join("target/bench-pair");
        let line = lines::with_role(Role::Fork);
        let pristine = Side {
            name: "pristine",
            dir: base.join("pristine"),
        };
        let fork_side = Side {
            name: "fork",
            dir: base.join("fork"),
        };
        let sources = [
            fork::upstream_dir(root, line)?,
            root.join("crates/wasmtime"),
        ];
        // The sides resolve offline from the repository's lockfile, which
        // needs every package it names on disk, those of other platforms
        // included (a fresh machine has only what its builds used).
        run(cargo().current_dir(root).args(["fetch", "--locked"]))
            .context("fetching the lockfile's packages")?;
        for (side, source) in [&pristine, &fork_side].into_iter().zip(sources) {
            sync_dir(&source, &side.dir.join("wasmtime"))?;
            // Both copies become workspace members the same way.
            let manifest = side.dir.join("wasmtime/Cargo.toml");
            let text = std::fs::read_to_string(&manifest)?;
            let stripped = fork::as_member_manifest(&text);
            if stripped != text {
                std::fs::write(&manifest, stripped)?;
            }
            write_if_changed(&side.dir.join("Cargo.toml"), WORKSPACE_MANIFEST)?;
            write_if_changed(&side.dir.join("pair/Cargo.toml"), &pair_manifest(root))?;
            // One lockfile: both start from the repository's, and resolve
            // only what differs (the series' own dependency of wasmtime).
            std::fs::copy(root.join("Cargo.lock"), side.dir.join("Cargo.lock"))?;
            let mut resolve = side.cargo(root);
            resolve
                .args(["metadata", "--offline", "--format-version=1"])
                .stdout(std::process::Stdio::null());
            run(&mut resolve).with_context(|| format!("resolving the {} side", side.name))?;
        }
        Ok(Pair {
            pristine,
            fork: fork_side,
        })
    }

    /// Proves the two sides differ only in wasmtime's own source: equal
    /// manifests, equal lockfiles but for wasmtime's dependency list, and
    /// equal resolved features.
    fn check(&self) -> Result<String> {
        let mut report = String::from("## Apples to apples\n\n");
        for file in ["Cargo.toml", "pair/Cargo.toml"] {
            let [p, f] = [&self.pristine, &self.fork]
                .map(|s| std::fs::read_to_string(s.dir.join(file)).unwrap_or_default());
            if p != f || p.is_empty() {
                bail!("the two sides' {file} differ");
            }
        }
        writeln!(
            report,
            "- manifests: identical (one feature set, one profile); one cargo command per step, run in each"
        )?;
        let [p, f] = [&self.pristine, &self.fork].map(|s| lock_packages(&s.dir.join("Cargo.lock")));
        let (p, f) = (p?, f?);
        let mut differ: Vec<String> = Vec::new();
        for name in p.keys().chain(f.keys()) {
            if p.get(name) != f.get(name) && !differ.contains(name) {
                differ.push(name.clone());
            }
        }
        if differ.iter().any(|d| !d.starts_with("wasmtime ")) {
            bail!("the two sides' lockfiles differ beyond wasmtime itself: {differ:?}");
        }
        let wasmtime = format!("wasmtime {}", lines::with_role(Role::Fork).version);
        let extra: Vec<&String> = match (p.get(&wasmtime), f.get(&wasmtime)) {
            (Some(p), Some(f)) => f.iter().filter(|d| !p.contains(d)).collect(),
            _ => bail!("no {wasmtime} in the pair's lockfiles"),
        };
        writeln!(
            report,
            "- lockfiles: the same {} packages at the same versions; they differ only in \
             wasmtime's own dependency list (the fork adds {extra:?})",
            p.len()
        )?;
        Ok(report)
    }
}

/// `name version` -> its sorted dependency list, for every package of a
/// lockfile.
fn lock_packages(lock: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let text =
        std::fs::read_to_string(lock).with_context(|| format!("reading {}", lock.display()))?;
    let value: toml::Value = toml::from_str(&text)?;
    let mut out = BTreeMap::new();
    for package in value["package"]
        .as_array()
        .context("a lockfile without packages")?
    {
        let name = format!(
            "{} {}",
            package["name"].as_str().unwrap_or_default(),
            package["version"].as_str().unwrap_or_default()
        );
        let mut deps: Vec<String> = package
            .get("dependencies")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        deps.sort();
        out.insert(name, deps);
    }
    Ok(out)
}

/// The bench package of both sides: `benches/precompile.rs` and
/// `benches/pair_counts.rs`, against the side's `wasmtime`.
fn pair_manifest(root: &Path) -> String {
    let benches = root.join("benches");
    format!(
        "[package]\nname = \"cwasm-pair\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
         publish = false\nautobenches = false\nautoexamples = false\n\n[dev-dependencies]\n\
         criterion = {{ version = \"0.8\", default-features = false, features = [\"cargo_bench_support\"] }}\n\
         wasm-encoder = \"0.263\"\nwasmtime = {{ path = \"../wasmtime\" }}\nwat = \"1\"\n\n\
         [[bench]]\nname = \"precompile\"\npath = \"{}\"\nharness = false\n\n\
         [[example]]\nname = \"pair_counts\"\npath = \"{}\"\n",
        benches.join("precompile.rs").display(),
        benches.join("pair_counts.rs").display()
    )
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// Makes `to` a copy of `from`, rewriting only files whose bytes differ (so
/// that cargo rebuilds only what changed) and removing extra files.
fn sync_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        seen.insert(entry.file_name());
        if entry.file_type()?.is_dir() {
            sync_dir(&src, &dst)?;
        } else {
            let bytes = std::fs::read(&src)?;
            if std::fs::read(&dst).ok().as_deref() != Some(&bytes[..]) {
                std::fs::write(&dst, &bytes)?;
            }
        }
    }
    for entry in std::fs::read_dir(to)? {
        let entry = entry?;
        if !seen.contains(&entry.file_name()) {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// Mean time of the latest run (the fork's, in criterion's `new`) over the
/// `pristine` baseline, for the single benchmark in criterion's `group`
/// directory.
fn baseline_ratio(group: &Path) -> Result<f64> {
    let mean = |baseline: &str| -> Result<f64> {
        for entry in std::fs::read_dir(group)? {
            let path = entry?.path().join(baseline).join("estimates.json");
            if path.exists() {
                return estimate(&path);
            }
        }
        bail!("no `{baseline}` estimates under {}", group.display())
    };
    Ok(mean("new")? / mean("pristine")?)
}

fn estimate(path: &Path) -> Result<f64> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    json["mean"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no mean in {}", path.display()))
}

/// Every criterion mean under `home`, by "group/function".
fn criterion_means(home: &Path) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for group in std::fs::read_dir(home)? {
        let group = group?.path();
        if !group.is_dir() {
            continue;
        }
        for bench in std::fs::read_dir(&group)? {
            let new = bench?.path().join("new");
            let (Ok(info), true) = (
                std::fs::read_to_string(new.join("benchmark.json")),
                new.join("estimates.json").exists(),
            ) else {
                continue;
            };
            let info: serde_json::Value = serde_json::from_str(&info)?;
            if let (Some(g), Some(f)) = (info["group_id"].as_str(), info["function_id"].as_str()) {
                out.insert(format!("{g}/{f}"), estimate(&new.join("estimates.json"))?);
            }
        }
    }
    Ok(out)
}

/// The hit paths' targets, from the criterion means of `benches/store.rs`.
fn wall_clock_ratios(home: &Path) -> Result<String> {
    let means = criterion_means(home)?;
    let get = |id: &str| {
        means
            .get(id)
            .copied()
            .with_context(|| format!("no criterion result for `{id}`"))
    };
    let floor = get("store hit/Module::deserialize_file alone")?;
    let unkeyed = get("store hit/unkeyed: get_or_compile_module")?;
    let keyed = get("store hit/keyed: get_or_compile_module")?;
    let keyed_digest = get("store hit/keyed: get_or_compile_module_with_digest")?;
    let verify_floor = get("store hit/floor: read + keyed BLAKE3 of the artifact")?;
    let file = get("store hit/unkeyed: get_or_compile_module_file")?;
    let digest = get("store hit/unkeyed: get_or_compile_module_with_digest")?;
    let wasmtime = get("store hit/wasmtime Config::cache: Module::new")?;
    let signed_digest = get("store hit/signed: get_or_compile_module_with_digest")?;
    let signed_extra = get("store hit/signed extra: read the statement + verify its signature")?;
    let ms = |s: f64| format!("{:.3} ms", s / 1e6);
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut out = String::from("| what | mean | ratio | target |\n|---|---|---|---|\n");
    let mut row = |what: &str, mean: f64, ratio: String, target: String| {
        writeln!(out, "| {what} | {} | {ratio} | {target} |", ms(mean))
    };
    row(
        "`Module::deserialize_file` (10 MB artifact)",
        floor,
        "1".into(),
        String::new(),
    )?;
    row(
        "hit, `get_or_compile_module_file` (digest remembered)",
        file,
        format!("{:.3} × deserialize_file", file / floor),
        format!("≤ 1.05: {}", verdict(file / floor <= 1.05)),
    )?;
    row(
        "hit, digest supplied",
        digest,
        format!("{:.3} × deserialize_file", digest / floor),
        String::new(),
    )?;
    row(
        "hit, unkeyed (hashes the wasm)",
        unkeyed,
        format!("{:.3} × deserialize_file", unkeyed / floor),
        String::new(),
    )?;
    row(
        "hit, keyed, every hit verified (hashes the wasm)",
        keyed,
        format!("{:.3} × unkeyed", keyed / unkeyed),
        format!("≤ 2.5: {}", verdict(keyed / unkeyed <= 2.5)),
    )?;
    row(
        "hit, keyed, every hit verified, digest supplied",
        keyed_digest,
        format!("{:.3} × unkeyed, digest supplied", keyed_digest / digest),
        String::new(),
    )?;
    row(
        "hit, signed (statement verified with the farm's public key), digest supplied",
        signed_digest,
        format!(
            "{:.3} × keyed, digest supplied ({:+.0} µs; wall clock, drifts)",
            signed_digest / keyed_digest,
            (signed_digest - keyed_digest) / 1e3
        ),
        String::new(),
    )?;
    row(
        "what a signed hit does more than a keyed one: read the statement, verify its signature",
        signed_extra,
        format!("{:.1} µs", signed_extra / 1e3),
        format!("≤ 100 µs: {}", verdict(signed_extra <= 100e3)),
    )?;
    row(
        "a verified hit's floor: unkeyed hit + read and keyed BLAKE3 of the artifact",
        unkeyed + verify_floor,
        format!(
            "{:.3} × unkeyed; keyed hit / floor {:.3}",
            (unkeyed + verify_floor) / unkeyed,
            keyed / (unkeyed + verify_floor)
        ),
        String::new(),
    )?;
    row(
        "hit in wasmtime's `Config::cache`",
        wasmtime,
        format!(
            "{:.2} × ours unkeyed, {:.2} × ours keyed",
            wasmtime / unkeyed,
            wasmtime / keyed
        ),
        format!(
            "≥ 3 both: {}",
            verdict(wasmtime / unkeyed >= 3.0 && wasmtime / keyed >= 3.0)
        ),
    )?;
    let choose = get("choose engine/16 stored engines, nothing remembered")?;
    let choose_warm = get("choose engine/16 stored engines, verdicts remembered")?;
    row(
        "choosing among 16 stored engines, a process's first lookup (lists, reads 16 sections, 16 checks)",
        choose,
        format!("{:.1} µs", choose / 1e3),
        format!("≤ 50 µs: {}", verdict(choose <= 50e3)),
    )?;
    row(
        "choosing among 16 stored engines, later lookups (lists; verdicts remembered)",
        choose_warm,
        format!("{:.1} µs", choose_warm / 1e3),
        format!("≤ 50 µs: {}", verdict(choose_warm <= 50e3)),
    )?;
    for (group, registry) in [
        ("oci hit", "distribution 2.8: referrers tag schema"),
        (
            "oci hit, referrers API",
            "go-containerregistry: referrers API",
        ),
    ] {
        if let (Ok(blob), Ok(hit)) = (
            get(&format!("{group}/raw blob GET")),
            get(&format!(
                "{group}/cold local tier: get_or_compile_module_with_digest"
            )),
        ) {
            row(
                &format!("raw blob GET ({registry}, on loopback)"),
                blob,
                "1".into(),
                String::new(),
            )?;
            if let Ok(read) = get(&format!("{group}/backend read: listing + blob")) {
                row(
                    &format!("its backend's share: listing + blob into a buffer ({registry})"),
                    read,
                    format!("{:.3} × the GET", read / blob),
                    String::new(),
                )?;
            }
            row(
                &format!("OCI hit, cold local tier, digest supplied ({registry})"),
                hit,
                format!("{:.3} × the GET", hit / blob),
                format!("≤ 1.3: {}", verdict(hit / blob <= 1.3)),
            )?;
        }
    }
    if let (Ok(get_raw), Ok(cold), Ok(cold_hash)) = (
        get("remote hit/raw object GET"),
        get("remote hit/cold local tier: get_or_compile_module_with_digest"),
        get("remote hit/cold local tier: get_or_compile_module"),
    ) {
        row(
            "raw object GET (moto on loopback)",
            get_raw,
            "1".into(),
            String::new(),
        )?;
        row(
            "remote hit, cold local tier, digest supplied",
            cold,
            format!("{:.3} × the GET", cold / get_raw),
            format!("≤ 1.2: {}", verdict(cold / get_raw <= 1.2)),
        )?;
        row(
            "remote hit, cold local tier, hashing the wasm",
            cold_hash,
            format!("{:.3} × the GET", cold_hash / get_raw),
            String::new(),
        )?;
    }
    Ok(out)
}
