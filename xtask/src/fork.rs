//! `cargo xtask fork` and `cargo xtask export-patches`.
//!
//! The series is kept for each wasmtime release line its users run (see
//! [`LINES`](crate::lines::LINES)), each in `patches/<line>/`. A line's fork is upstream wasmtime's
//! registry package with `patches/<line>/series` applied by `git am`, kept as
//! a small git repository of its own:
//!
//! 1. commit `upstream` (tagged): the package exactly as cargo downloaded it,
//!    checksum pinned by `xtask/upstream/Cargo.lock`;
//! 2. one commit per patch, in `series` order;
//! 3. not committed: cargo's normalized `Cargo.toml` gains the dependencies the
//!    series adds to upstream's manifest (`Cargo.toml.orig`). It is marked
//!    `skip-worktree`, so `git status` stays clean and `export-patches` never
//!    sees it.
//!
//! The fork is built in a temporary directory and renamed into place, so an
//! interrupted or failed run never leaves a half-patched crate behind. A stamp
//! (`.xtask-fork`, excluded from the fork's git) records what the fork was made
//! from and the commit it ended at, so a second run is a no-op, a changed
//! `patches/` is noticed, and local work in the fork is never overwritten
//! without `--force`.

use crate::cmd::{cargo, output};
use crate::lines::Line;
use crate::patchfile::{self, upstream_to_fork};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the way a fork is assembled changes, so existing forks are
/// regenerated.
const FORK_FORMAT: &str = "xtask-fork-v2";

const STAMP_FILE: &str = ".xtask-fork";
pub(crate) const BASE_TAG: &str = "upstream";

/// Deterministic identity and dates for the commits xtask makes, so the same
/// inputs give the same fork commit ids everywhere.
const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "xtask"),
    ("GIT_AUTHOR_EMAIL", "xtask@localhost"),
    ("GIT_COMMITTER_NAME", "xtask"),
    ("GIT_COMMITTER_EMAIL", "xtask@localhost"),
    ("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z"),
    ("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z"),
];

pub struct ForkOptions {
    pub line: &'static Line,
    pub out: Option<PathBuf>,
    pub force: bool,
}

/// A patch of the series: its file name and its text, as in `patches/`.
pub struct Patch {
    pub name: String,
    pub text: String,
}

/// Makes (or confirms) the fork and returns its directory.
pub fn fork(root: &Path, opts: &ForkOptions) -> Result<PathBuf> {
    let line = opts.line;
    let dest = match &opts.out {
        Some(out) => absolute(out)?,
        None => root.join(line.fork_dir),
    };
    let series = read_series(root, line)?;
    let upstream = locate_upstream(root, line)?;
    let stamp = stamp_of(line, &upstream, &series);

    if dest.exists() {
        match fork_state(&dest)? {
            ForkState::Current(recorded) if recorded == stamp => {
                eprintln!(
                    "fork at {} is up to date ({} {} + {} patches)",
                    dest.display(),
                    line.package,
                    line.version,
                    series.len()
                );
                return Ok(dest);
            }
            ForkState::Current(_) => {
                eprintln!(
                    "patches/{} or the upstream pin changed: regenerating the fork",
                    line.name
                )
            }
            state if opts.force => {
                eprintln!(
                    "--force: discarding the fork at {} ({state})",
                    dest.display()
                )
            }
            state => bail!(
                "{} {state}.\nKeep that work with `cargo xtask export-patches --line {}` (it \
                 rewrites patches/{} from the fork's commits), or discard it with \
                 `cargo xtask fork --line {} --force`.",
                dest.display(),
                line.name,
                line.name,
                line.name
            ),
        }
    }

    let parent = dest.parent().context("fork directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let file_name = dest.file_name().context("fork directory has no name")?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    remove_dir_if_exists(&tmp)?;
    let result = build_fork(&tmp, line, &upstream, &series, &stamp);
    if let Err(e) = result {
        // Leave nothing half-made behind; the error says what failed.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    remove_dir_if_exists(&dest)?;
    fs::rename(&tmp, &dest)
        .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))?;
    eprintln!(
        "forked {} {} + {} patches into {}",
        line.package,
        line.version,
        series.len(),
        dest.display()
    );
    Ok(dest)
}

/// The lines an embedder adds to use a fork at `dir`.
pub fn patch_snippet(line: &Line, dir: &Path) -> String {
    format!(
        "[patch.crates-io]\n{} = {{ path = \"{}\" }}\n",
        line.package,
        dir.display()
    )
}

pub(crate) fn build_fork(
    tmp: &Path,
    line: &Line,
    upstream: &Upstream,
    series: &[Patch],
    stamp: &str,
) -> Result<()> {
    copy_dir(&upstream.dir, tmp)?;
    // Cargo's marker that the registry unpacked the package; not part of it.
    let _ = fs::remove_file(tmp.join(".cargo-ok"));

    git(tmp, &["init", "--quiet", "--initial-branch=main"])?;
    fs::write(tmp.join(".git/info/exclude"), format!("/{STAMP_FILE}\n"))?;
    git(tmp, &["add", "--all"])?;
    let subject = format!(
        "{} {} from the package registry\n\nsha256 of the .crate: {}",
        line.package, line.version, upstream.checksum
    );
    git(tmp, &["commit", "--quiet", "--no-verify", "-m", &subject])?;
    git(tmp, &["tag", BASE_TAG])?;

    let mbox_dir = tmp.join(".git/xtask-patches");
    fs::create_dir_all(&mbox_dir)?;
    for patch in series {
        let text = patchfile::rewrite_paths(&patch.text, &patch.name, |p| {
            upstream_to_fork(line.upstream_dir, p)
        })?;
        let path = mbox_dir.join(&patch.name);
        fs::write(&path, text)?;
        if let Some(report) = git_am(tmp, &path)? {
            bail!(
                "patch `patches/{}/{}` does not apply to {} {}:\n{report}",
                line.name,
                patch.name,
                line.package,
                line.version,
            );
        }
    }
    fs::remove_dir_all(&mbox_dir)?;

    sync_normalized_manifest(tmp, line)?;
    write_stamp(tmp, stamp)
}

/// Writes the stamp: what the fork was made from, and the commit it ended at.
pub(crate) fn write_stamp(dir: &Path, stamp: &str) -> Result<()> {
    let head = git_output(dir, &["rev-parse", "HEAD"])?;
    fs::write(dir.join(STAMP_FILE), format!("{stamp}\n{}\n", head.trim()))
        .context("writing the fork stamp")
}

pub(crate) enum ForkState {
    /// Made by xtask from the inputs with this stamp, and untouched since.
    Current(String),
    NotAFork,
    Dirty,
    NewCommits,
}

impl std::fmt::Display for ForkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForkState::Current(_) => "is a fork made by xtask",
            ForkState::NotAFork => "exists but was not made by `cargo xtask fork`",
            ForkState::Dirty => "has uncommitted changes",
            ForkState::NewCommits => "has commits that are not in patches/<line>/",
        })
    }
}

pub(crate) fn fork_state(dir: &Path) -> Result<ForkState> {
    let Ok(stamp) = fs::read_to_string(dir.join(STAMP_FILE)) else {
        return Ok(ForkState::NotAFork);
    };
    if !dir.join(".git").exists() {
        return Ok(ForkState::NotAFork);
    }
    let mut lines = stamp.lines();
    let (Some(inputs), Some(head)) = (lines.next(), lines.next()) else {
        return Ok(ForkState::NotAFork);
    };
    if !git_output(dir, &["status", "--porcelain"])?
        .trim()
        .is_empty()
    {
        return Ok(ForkState::Dirty);
    }
    if git_output(dir, &["rev-parse", "HEAD"])?.trim() != head {
        return Ok(ForkState::NewCommits);
    }
    Ok(ForkState::Current(inputs.to_string()))
}

/// The patches `patches/<dir>/series` names, in order.
pub fn read_series_in(dir: &Path) -> Result<Vec<Patch>> {
    let series = fs::read_to_string(dir.join("series"))
        .with_context(|| format!("reading {}", dir.join("series").display()))?;
    series
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|name| {
            let text = fs::read_to_string(dir.join(name)).with_context(|| {
                format!(
                    "{}/series names `{name}`, which cannot be read",
                    dir.display()
                )
            })?;
            Ok(Patch {
                name: name.to_string(),
                text,
            })
        })
        .collect()
}

pub(crate) fn read_series(root: &Path, line: &Line) -> Result<Vec<Patch>> {
    read_series_in(&line.patches_dir(root))
}

/// The downloaded upstream package.
pub(crate) struct Upstream {
    pub(crate) dir: PathBuf,
    pub(crate) checksum: String,
}

/// Asks cargo to download the pinned package (checking its checksum against
/// `xtask/upstream/Cargo.lock`) and returns where cargo unpacked it.
pub(crate) fn locate_upstream(root: &Path, line: &Line) -> Result<Upstream> {
    let version = line.version;
    let manifest = root.join("xtask/upstream/Cargo.toml");
    let host = host_triple()?;
    let json = output(
        cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--filter-platform",
            ])
            .arg(&host)
            .arg("--manifest-path")
            .arg(&manifest),
    )
    .context("downloading the pinned wasmtime package")?;
    let meta: serde_json::Value = serde_json::from_str(&json).context("parsing cargo metadata")?;
    let package = meta["packages"]
        .as_array()
        .context("cargo metadata has no packages")?
        .iter()
        .find(|p| p["name"] == line.package && p["version"] == version)
        .with_context(|| format!("cargo metadata does not list {} {version}", line.package))?;
    let manifest_path = package["manifest_path"]
        .as_str()
        .context("wasmtime package has no manifest path")?;
    let dir = Path::new(manifest_path)
        .parent()
        .context("manifest path has no parent")?
        .to_path_buf();

    let lock = fs::read_to_string(root.join("xtask/upstream/Cargo.lock"))?;
    let lock: toml::Value = toml::from_str(&lock).context("parsing xtask/upstream/Cargo.lock")?;
    let checksum = lock["package"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["name"].as_str() == Some(line.package) && p["version"].as_str() == Some(version)
        })
        .and_then(|p| p.get("checksum")?.as_str())
        .with_context(|| {
            format!(
                "xtask/upstream/Cargo.lock pins no checksum for {} {version}",
                line.package
            )
        })?
        .to_string();
    Ok(Upstream { dir, checksum })
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let vv = output(Command::new(rustc).arg("-vV"))?;
    vv.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` printed no host")
}

pub(crate) fn stamp_of(line: &Line, upstream: &Upstream, series: &[Patch]) -> String {
    let mut h = Sha256::new();
    for part in [FORK_FORMAT, line.package, line.version, &upstream.checksum] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (name, pin) in line.workspace_pins {
        h.update(format!("{name}={pin}\0"));
    }
    for p in series {
        h.update(p.name.as_bytes());
        h.update([0]);
        h.update(p.text.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes the two edits the normalized `Cargo.toml` needs:
///
/// * every `[dependencies]` entry of upstream's manifest (`Cargo.toml.orig`)
///   that it lacks is added, resolving `workspace = true` through the line's
///   [`Line::workspace_pins`];
/// * its `resolver` key is dropped: the fork is a member of our workspace,
///   whose root sets the resolver, and cargo warns about the key on every
///   command otherwise.
pub(crate) fn sync_normalized_manifest(dir: &Path, line: &Line) -> Result<()> {
    let orig_path = dir.join("Cargo.toml.orig");
    let norm_path = dir.join("Cargo.toml");
    let orig: toml::Table = toml::from_str(&fs::read_to_string(&orig_path)?)
        .context("parsing the fork's Cargo.toml.orig")?;
    let git_norm = git_output(dir, &["show", "HEAD:Cargo.toml"])?;
    let norm: toml::Table = toml::from_str(&git_norm).context("parsing the fork's Cargo.toml")?;
    let have = norm
        .get("dependencies")
        .and_then(|d| d.as_table())
        .context("normalized Cargo.toml has no [dependencies]")?;
    let want = orig
        .get("dependencies")
        .and_then(|d| d.as_table())
        .context("Cargo.toml.orig has no [dependencies]")?;

    let mut text = as_member_manifest(&git_norm);
    for (name, spec) in want {
        if have.contains_key(name) {
            continue;
        }
        let spec = spec
            .as_table()
            .with_context(|| format!("dependency `{name}` in Cargo.toml.orig is not a table"))?;
        let mut table = format!("[dependencies.{name}]\n");
        if spec.get("workspace").and_then(|v| v.as_bool()) == Some(true) {
            let Some((_, pin)) = line.workspace_pins.iter().find(|(n, _)| n == name) else {
                bail!(
                    "the series adds workspace dependency `{name}`: add upstream's pin for it \
                     to the `workspace_pins` of line {} in xtask/src/fork.rs",
                    line.name
                );
            };
            table.push_str(pin);
            table.push('\n');
        }
        for (key, value) in spec {
            if key != "workspace" {
                table.push_str(&format!("{key} = {value}\n"));
            }
        }
        table.push('\n');
        // Keep cargo's alphabetical order of `[dependencies.*]` tables.
        let at = text
            .match_indices("\n[dependencies.")
            .map(|(i, _)| i + 1)
            .find(|&i| text[i + "[dependencies.".len()..].split(']').next() > Some(name.as_str()))
            .or_else(|| text.find("\n[dev-dependencies").map(|i| i + 1))
            .context("cannot find where to add a dependency in the normalized Cargo.toml")?;
        text.insert_str(at, &table);
    }
    if text != git_norm {
        fs::write(&norm_path, &text)?;
        git(dir, &["update-index", "--skip-worktree", "Cargo.toml"])?;
    }
    Ok(())
}

/// `git` in `dir`, committing with xtask's fixed identity and dates.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).envs(GIT_ENV.iter().copied());
    cmd
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<()> {
    output(git_command(dir).args(args)).map(drop)
}

/// Applies the patch `mbox` to the repository `dir` with `git am`. Returns
/// git's report when it does not apply (the `git am` is left in progress).
pub fn git_am(dir: &Path, mbox: &Path) -> Result<Option<String>> {
    let out = git_command(dir)
        // No "run git am --continue" hints: callers say what to do.
        .args(["-c", "advice.mergeConflict=false", "am", "--quiet"])
        .arg("--committer-date-is-author-date")
        .arg(mbox)
        .output()
        .context("failed to run `git am`")?;
    Ok((!out.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }))
}

pub(crate) fn git_output(dir: &Path, args: &[&str]) -> Result<String> {
    output(Command::new("git").current_dir(dir).args(args))
}

/// The registry package's manifest declares `resolver = "2"` for itself;
/// as a member of another workspace it may not, so it is dropped.
pub fn as_member_manifest(manifest: &str) -> String {
    manifest.replacen("\nresolver = \"2\"\n", "\n", 1)
}

pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// Where cargo unpacked the pinned, unpatched upstream package of `line`.
pub fn upstream_dir(root: &Path, line: &Line) -> Result<PathBuf> {
    Ok(locate_upstream(root, line)?.dir)
}
