//! Rewriting the file paths inside `git format-patch` mails.
//!
//! `patches/` is written against upstream's layout (`crates/wasmtime/src/...`,
//! `crates/wasmtime/Cargo.toml`) so that reviewers can `git am` it onto an
//! upstream checkout. The fork, however, is a git repository whose root *is*
//! the registry package, where upstream's manifest is kept as
//! `Cargo.toml.orig` (the `Cargo.toml` beside it is cargo's normalized copy).
//! These functions map one layout onto the other, touching only the lines of a
//! patch that name files: `diff --git`, `---`/`+++`, rename/copy headers and
//! the diffstat. Hunk bodies are tracked by their line counts, so content lines
//! that happen to look like headers are never rewritten.

use anyhow::{Context, Result, bail};

/// Where upstream keeps the `wasmtime` crate; other packages are elsewhere
/// (`Line::upstream_dir`).
#[cfg(test)]
const UPSTREAM_DIR: &str = "crates/wasmtime/";
/// Upstream's manifest as the registry package stores it.
const ORIG_MANIFEST: &str = "Cargo.toml.orig";

/// Maps an upstream path (`crates/wasmtime/src/lib.rs`) to the fork's layout
/// (`src/lib.rs`, with `Cargo.toml` as `Cargo.toml.orig`).
/// `upstream_dir` is where upstream keeps the package the fork is made of
/// (`crates/wasmtime/`).
pub fn upstream_to_fork(upstream_dir: &str, path: &str) -> Result<String> {
    let Some(rel) = path.strip_prefix(upstream_dir) else {
        bail!(
            "`{path}` is outside `{upstream_dir}`: the fork is that one crate only, \
             so a patch for it may only touch files under `{upstream_dir}`"
        );
    };
    Ok(if rel == "Cargo.toml" {
        ORIG_MANIFEST.to_string()
    } else {
        rel.to_string()
    })
}

/// The inverse of [`upstream_to_fork`].
pub fn fork_to_upstream(upstream_dir: &str, path: &str) -> Result<String> {
    if path == "Cargo.toml" {
        bail!(
            "a commit in the fork changes the normalized `Cargo.toml`; change upstream's \
             manifest, `{ORIG_MANIFEST}`, instead (xtask regenerates the normalized copy)"
        );
    }
    let rel = if path == ORIG_MANIFEST {
        "Cargo.toml"
    } else {
        path
    };
    Ok(format!("{upstream_dir}{rel}"))
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// The mail headers and commit message, up to the `---` line.
    Message,
    /// Between `---` and the first `diff --git`: the diffstat.
    Stat,
    /// A file's extended headers, before its first hunk.
    FileHeader,
    /// Inside a hunk, with this many old and new lines still to come.
    Hunk { old: u64, new: u64 },
    /// After a hunk: another hunk, another file, or the signature.
    BetweenHunks,
    /// The `-- ` signature and anything after it.
    Trailer,
}

/// Rewrites every file path in the format-patch mail `text` with `map`.
///
/// `context` names the patch in errors.
pub fn rewrite_paths(
    text: &str,
    context: &str,
    map: impl Fn(&str) -> Result<String>,
) -> Result<String> {
    let map = |p: &str| map(p).with_context(|| format!("in patch `{context}`"));
    let mut out: Vec<String> = Vec::new();
    let mut stat_lines: Vec<(usize, String, String)> = Vec::new();
    let mut state = State::Message;
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let at = || format!("patch `{context}`, line {}", lineno + 1);
        if let Some(rest) = body.strip_prefix("diff --git ") {
            if matches!(state, State::Hunk { .. }) {
                bail!("{}: a new file starts inside a hunk", at());
            }
            if state != State::Trailer {
                state = State::FileHeader;
                let (a, b) = split_diff_git(rest).with_context(at)?;
                out.push(format!("diff --git a/{} b/{}\n", map(a)?, map(b)?));
                continue;
            }
        }
        let rewritten = match state {
            State::Message => {
                if body == "---" {
                    state = State::Stat;
                }
                None
            }
            State::Stat => {
                if let Some((name, rest)) = body.strip_prefix(' ').and_then(|l| l.split_once(" | "))
                {
                    let name = name.trim_end();
                    let renamed = match name.split_once(" => ") {
                        Some((from, to)) => format!("{} => {}", map(from)?, map(to)?),
                        None => map(name)?,
                    };
                    stat_lines.push((out.len(), renamed, rest.to_string()));
                }
                None
            }
            State::FileHeader => {
                if body.starts_with("GIT binary patch") || body.starts_with("Binary files ") {
                    bail!("{}: binary patches are not supported", at());
                }
                if let Some(h) = parse_hunk_header(body) {
                    state = h;
                    None
                } else {
                    rewrite_header(body, &map)?
                }
            }
            State::Hunk { mut old, mut new } => {
                match body.as_bytes().first() {
                    Some(b' ') | None => {
                        old = old.checked_sub(1).with_context(at)?;
                        new = new.checked_sub(1).with_context(at)?;
                    }
                    Some(b'-') => old = old.checked_sub(1).with_context(at)?,
                    Some(b'+') => new = new.checked_sub(1).with_context(at)?,
                    Some(b'\\') => {}
                    Some(_) => bail!("{}: unexpected line inside a hunk", at()),
                }
                state = if old == 0 && new == 0 {
                    State::BetweenHunks
                } else {
                    State::Hunk { old, new }
                };
                None
            }
            State::BetweenHunks => {
                if let Some(h) = parse_hunk_header(body) {
                    state = h;
                } else if body == "-- " {
                    state = State::Trailer;
                } else if body.starts_with('\\') {
                    // "\ No newline at end of file" after a hunk's last line.
                } else if !body.is_empty() {
                    bail!("{}: expected a hunk, a file or the end", at());
                }
                None
            }
            State::Trailer => None,
        };
        out.push(rewritten.unwrap_or_else(|| line.to_string()));
    }
    if matches!(state, State::Hunk { .. }) {
        bail!("patch `{context}` ends inside a hunk: it is truncated");
    }
    realign_stat(&mut out, &stat_lines);
    Ok(out.concat())
}

/// Splits `a/X b/Y` (the rest of a `diff --git` line) into `X` and `Y`.
fn split_diff_git(rest: &str) -> Result<(&str, &str)> {
    let rest = rest
        .strip_prefix("a/")
        .context("`diff --git` line without `a/` prefix")?;
    // Paths may contain spaces in principle; ours never do, and git quotes
    // such paths, which we reject.
    let (a, b) = rest
        .split_once(" b/")
        .context("`diff --git` line without ` b/` path")?;
    if a.starts_with('"') || b.starts_with('"') {
        bail!("quoted paths are not supported");
    }
    Ok((a, b))
}

fn rewrite_header(body: &str, map: &impl Fn(&str) -> Result<String>) -> Result<Option<String>> {
    const PREFIXES: [&str; 6] = [
        "--- a/",
        "+++ b/",
        "rename from ",
        "rename to ",
        "copy from ",
        "copy to ",
    ];
    for prefix in PREFIXES {
        if let Some(path) = body.strip_prefix(prefix) {
            return Ok(Some(format!("{prefix}{}\n", map(path)?)));
        }
    }
    Ok(None)
}

/// Parses `@@ -a[,b] +c[,d] @@...` into the number of old and new lines.
fn parse_hunk_header(line: &str) -> Option<State> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    let count = |range: &str| -> Option<u64> {
        match range.split_once(',') {
            Some((_, n)) => n.parse().ok(),
            None => range.parse::<u64>().ok().map(|_| 1),
        }
    };
    let (old, new) = (count(old)?, count(new)?);
    Some(if old == 0 && new == 0 {
        State::BetweenHunks
    } else {
        State::Hunk { old, new }
    })
}

/// Rewrites the diffstat lines recorded in `stat` with their names padded to
/// one width again, as git prints them.
fn realign_stat(out: &mut [String], stat: &[(usize, String, String)]) {
    let width = stat.iter().map(|(_, n, _)| n.len()).max().unwrap_or(0);
    for (idx, name, rest) in stat {
        out[*idx] = format!(" {name:<width$} | {rest}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: A <a@example.com>
Subject: [PATCH] Do a thing

Body mentions --- a/crates/wasmtime/nothing.rs and is left alone.
---
 crates/wasmtime/Cargo.toml | 1 +
 crates/wasmtime/src/x.rs   | 3 ++-
 2 files changed, 3 insertions(+), 1 deletion(-)

diff --git a/crates/wasmtime/Cargo.toml b/crates/wasmtime/Cargo.toml
index 1111111..2222222 100644
--- a/crates/wasmtime/Cargo.toml
+++ b/crates/wasmtime/Cargo.toml
@@ -1,2 +1,3 @@
 [dependencies]
+sha2 = { workspace = true }
 postcard = { workspace = true }
diff --git a/crates/wasmtime/src/x.rs b/crates/wasmtime/src/x.rs
index 3333333..4444444 100644
--- a/crates/wasmtime/src/x.rs
+++ b/crates/wasmtime/src/x.rs
@@ -1,2 +1,2 @@
--- a/looks/like/a/header
-old
+new
+++ b/also/content
-- 
2.47.3
";

    #[test]
    fn round_trips_between_layouts() {
        let fork = rewrite_paths(UPSTREAM, "t", |p| upstream_to_fork(UPSTREAM_DIR, p)).unwrap();
        assert!(fork.contains("diff --git a/Cargo.toml.orig b/Cargo.toml.orig\n"));
        assert!(fork.contains("--- a/src/x.rs\n+++ b/src/x.rs\n"));
        // Hunk content that looks like a header is content, not a header.
        assert!(fork.contains("\n--- a/looks/like/a/header\n"));
        assert!(fork.contains("\n+++ b/also/content\n"));
        assert!(fork.contains("--- a/crates/wasmtime/nothing.rs and is left alone"));
        // The diffstat is re-padded to the longest name.
        assert!(fork.contains("\n Cargo.toml.orig | 1 +\n src/x.rs        | 3 ++-\n"));

        let back = rewrite_paths(&fork, "t", |p| fork_to_upstream(UPSTREAM_DIR, p)).unwrap();
        assert_eq!(back, UPSTREAM);
    }

    #[test]
    fn rejects_paths_outside_the_crate() {
        let other = UPSTREAM.replace("crates/wasmtime/src/x.rs", "crates/environ/src/x.rs");
        let err = rewrite_paths(&other, "0001-x.patch", |p| {
            upstream_to_fork(UPSTREAM_DIR, p)
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("0001-x.patch"), "{msg}");
        assert!(msg.contains("crates/environ/src/x.rs"), "{msg}");
    }

    #[test]
    fn rejects_truncated_patches() {
        let cut = &UPSTREAM[..UPSTREAM.find("+new").unwrap()];
        let err = rewrite_paths(cut, "t", |p| upstream_to_fork(UPSTREAM_DIR, p)).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"));
    }

    #[test]
    fn refuses_edits_to_the_normalized_manifest() {
        assert!(fork_to_upstream(UPSTREAM_DIR, "Cargo.toml").is_err());
        assert_eq!(
            fork_to_upstream(UPSTREAM_DIR, "Cargo.toml.orig").unwrap(),
            "crates/wasmtime/Cargo.toml"
        );
    }
}
