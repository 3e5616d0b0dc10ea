//! The version table: every wasmtime line the repository keeps a series
//! for, with its registry release and where its fork goes. Everything else
//! (the forks, the tests of each line, the benches' pristine build, the
//! help text) reads versions and lines from here, so a new line is a row
//! here plus `patches/<line>/` (and its pin in `xtask/upstream/`).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// What the repository uses a line for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The fork the workspace builds on (`[patch.crates-io]` of the root).
    Fork,
    /// The long-term-support line, tested in `tests/lts36`.
    Lts,
    /// wasmtime's C API at the fork's release (`tests/c-api`).
    CApi,
}

/// A registry package at one wasmtime release, with the series kept for it:
/// a wasmtime release line, or the C API of one.
pub struct Line {
    /// What `--line` takes, and the directory under `patches/`.
    pub name: &'static str,
    /// What the repository uses the line for.
    pub role: Role,
    /// The registry package the fork is made from.
    pub package: &'static str,
    /// Where upstream's repository keeps that package, which is where the
    /// patches of `patches/<name>/` point.
    pub upstream_dir: &'static str,
    /// The registry release the fork is made from, checksum pinned by
    /// `xtask/upstream/Cargo.lock`.
    pub version: &'static str,
    /// Where `cargo xtask fork` puts the fork, relative to the root: the
    /// directory the workspace that tests this line patches wasmtime with.
    pub fork_dir: &'static str,
    /// Upstream's workspace pins for dependencies that the series adds to
    /// `crates/wasmtime/Cargo.toml` as `{ workspace = true }`.
    ///
    /// The registry package's `Cargo.toml` is normalized: workspace
    /// inheritance is already resolved. A dependency the series adds must
    /// therefore be spelled out there too. These are copied from upstream's
    /// root `Cargo.toml` at the base release; keep them equal to it when
    /// rebasing.
    pub workspace_pins: &'static [(&'static str, &'static str)],
}

/// The lines, the default first: 48 is the fork this repository builds on;
/// 36 is the long-term-support line. (Upstream `main`, where review happens,
/// has its own series in `patches/main/`, applied to a git checkout by
/// `cargo xtask upstream-check` rather than to a registry package.)
pub const LINES: &[Line] = &[
    Line {
        name: "48",
        role: Role::Fork,
        package: "wasmtime",
        upstream_dir: "crates/wasmtime/",
        version: "48.0.8",
        fork_dir: "crates/wasmtime",
        workspace_pins: &[("sha2", "version = \"0.10.2\"\ndefault-features = false")],
    },
    Line {
        name: "36",
        role: Role::Lts,
        package: "wasmtime",
        upstream_dir: "crates/wasmtime/",
        version: "36.0.20",
        fork_dir: "tests/lts36/wasmtime",
        // The 36 series declares `sha2` in place, as 36's crates do.
        workspace_pins: &[],
    },
    Line {
        name: "c-api-48",
        role: Role::CApi,
        package: "wasmtime-c-api-impl",
        upstream_dir: "crates/c-api/",
        version: "48.0.8",
        fork_dir: "crates/wasmtime-c-api",
        workspace_pins: &[],
    },
];

/// The line `cargo xtask fork` uses without `--line`.
pub fn default_line() -> &'static Line {
    &LINES[0]
}

/// The line named `name` (`48`, `36`).
pub fn line(name: &str) -> Result<&'static Line> {
    LINES.iter().find(|l| l.name == name).with_context(|| {
        let names: Vec<&str> = LINES.iter().map(|l| l.name).collect();
        format!(
            "unknown line `{name}`: the series is kept for {}",
            names.join(", ")
        )
    })
}

impl Line {
    pub fn patches_dir(&self, root: &Path) -> PathBuf {
        root.join("patches").join(self.name)
    }
}

/// The line with `role` (each role has exactly one).
pub fn with_role(role: Role) -> &'static Line {
    LINES
        .iter()
        .find(|l| l.role == role)
        .expect("every role has a line (a unit test checks)")
}

/// The lines `--line` takes, for help texts: `48 (wasmtime 48.0.8), ...`.
pub fn help() -> String {
    let lines: Vec<String> = LINES
        .iter()
        .map(|l| {
            format!(
                "{} ({} {}, into {})",
                l.name, l.package, l.version, l.fork_dir
            )
        })
        .collect();
    format!("The line: {}", lines.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// `name = "<package>"` followed by `version = "<version>"`.
    fn pinned(lock: &str, package: &str, version: &str) -> bool {
        lock.contains(&format!("name = \"{package}\"\nversion = \"{version}\""))
    }

    #[test]
    fn every_role_has_one_line_and_names_are_unique() {
        for role in [Role::Fork, Role::Lts, Role::CApi] {
            assert_eq!(
                LINES.iter().filter(|l| l.role == role).count(),
                1,
                "{role:?}"
            );
        }
        for (i, a) in LINES.iter().enumerate() {
            assert!(
                LINES[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
        assert_eq!(default_line().role, Role::Fork);
        assert!(line("no-such-line").is_err());
    }

    /// Each line's release is the one `xtask/upstream` downloads (its lock
    /// pins the checksum), and the one the workspace that builds the line
    /// requires exactly.
    #[test]
    fn the_table_is_what_the_manifests_pin() {
        let root = root();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        let lock = read("xtask/upstream/Cargo.lock");
        for l in LINES {
            assert!(
                pinned(&lock, l.package, l.version),
                "xtask/upstream pins no {} {}",
                l.package,
                l.version
            );
        }
        let exact = |manifest: &str, l: &Line| {
            let text = read(manifest);
            assert!(
                text.contains(&format!("\"={}\"", l.version)),
                "{manifest} does not pin {} ={}",
                l.package,
                l.version
            );
        };
        let fork = with_role(Role::Fork);
        exact("Cargo.toml", fork);
        exact("crates/cwasm-store/Cargo.toml", fork);
        exact("tests/lts36/Cargo.toml", with_role(Role::Lts));
        let c_api = with_role(Role::CApi);
        exact("tests/c-api/Cargo.toml", c_api);
        assert_eq!(
            c_api.version, fork.version,
            "the C API is the fork's release"
        );
    }

    /// Each line's series exists and names only files that are there.
    #[test]
    fn every_line_has_a_readable_series() {
        for l in LINES {
            let series = crate::fork::read_series_in(&l.patches_dir(&root())).unwrap();
            assert!(!series.is_empty(), "patches/{} is empty", l.name);
        }
    }
}
