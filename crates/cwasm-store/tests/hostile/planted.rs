//! Names, links and FIFOs planted where entries, directories and stamps are
//! expected: never followed, never a hang, never another entry.

use super::*;

#[test]
fn a_fifo_entry_is_a_miss_not_a_hang() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    std::fs::create_dir_all(engine_dir(dir.path(), 1))?;
    let fifo = dir.path().join(key(1).artifact_path());
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()?
            .success()
    );

    let (store, bad) = within_bound("verify with a FIFO entry", move || {
        let bad = store.verify().unwrap();
        (store, bad)
    });
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].1.contains("not a regular file"), "{bad:?}");
    let (store, answer) = within_bound("lookup of a FIFO entry", move || hit_or_compile(store, 1));
    assert_eq!(answer, 1);
    assert_eq!(store.stats().rejected, 1);
    // The FIFO was replaced by the real artifact.
    assert!(std::fs::symlink_metadata(&fifo)?.is_file());
    Ok(())
}

#[test]
fn a_symlinked_entry_is_refused_and_its_target_untouched() -> Result<()> {
    let _serial = serial();
    let (dir, outside) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // The target is a valid artifact for this engine and key, but of other
    // code: following the link would load it.
    let planted = Engine::default().precompile_module(&wasm(666))?;
    let target = outside.path().join("planted.cwasm");
    std::fs::write(&target, &planted)?;
    std::fs::create_dir_all(engine_dir(dir.path(), 2))?;
    std::os::unix::fs::symlink(&target, dir.path().join(key(2).artifact_path()))?;

    let store = ArtifactStore::open(dir.path())?;
    let (store, answer) = within_bound("lookup of a symlinked entry", move || {
        hit_or_compile(store, 2)
    });
    assert_eq!(answer, 2, "the planted code was loaded");
    assert_eq!(store.stats().rejected, 1);
    assert_eq!(
        std::fs::read(&target)?,
        planted,
        "the link's target was written"
    );
    let entry = dir.path().join(key(2).artifact_path());
    assert!(
        std::fs::symlink_metadata(&entry)?.is_file(),
        "the link is still there"
    );
    Ok(())
}

#[test]
fn a_symlinked_engine_directory_is_neither_read_nor_written() -> Result<()> {
    let _serial = serial();
    let (dir, outside) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let planted = Engine::default().precompile_module(&wasm(666))?;
    let wasm_file = format!("{}.cwasm", key(3).wasm);
    std::fs::write(outside.path().join(&wasm_file), &planted)?;
    std::os::unix::fs::symlink(outside.path(), engine_dir(dir.path(), 3))?;

    let store = ArtifactStore::open(dir.path())?;
    let (store, answer) = within_bound("lookup under a symlinked directory", move || {
        hit_or_compile(store, 3)
    });
    assert_eq!(answer, 3, "the planted code was loaded");
    assert!(store.stats().store_errors > 0);
    // Nothing was written through the link.
    let mut names: Vec<_> = std::fs::read_dir(outside.path())?
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, [std::ffi::OsString::from(&wasm_file)]);
    assert_eq!(std::fs::read(outside.path().join(&wasm_file))?, planted);
    Ok(())
}

#[test]
fn a_planted_gc_stamp_link_is_not_followed() -> Result<()> {
    let _serial = serial();
    let (dir, outside) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious")?;
    std::os::unix::fs::symlink(&victim, dir.path().join(".gc-stamp"))?;
    // Eviction is due at every `put`, so the stamp is written.
    let config = StoreConfig {
        cache: due_at_every_put(),
        ..StoreConfig::default()
    };
    let store = ArtifactStore::new(Some(LocalDir::new(dir.path())?), None, config)?;
    let (_, answer) = within_bound("put beside a planted stamp", move || {
        hit_or_compile(store, 4)
    });
    assert_eq!(answer, 4);
    assert_eq!(std::fs::read(&victim)?, b"precious");
    Ok(())
}

#[test]
fn uppercase_names_are_not_entries() -> Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let k = key(6);
    let artifact = Engine::default().precompile_module(&wasm(6))?;
    let upper = dir.path().join(k.engine.to_string().to_uppercase());
    std::fs::create_dir_all(&upper)?;
    std::fs::write(
        upper.join(format!("{}.cwasm", k.wasm.to_string().to_uppercase())),
        artifact,
    )?;
    let store = ArtifactStore::open(dir.path())?;
    assert!(store.list()?.is_empty());
    assert!(store.engines()?.is_empty(), "not a prefix");
    assert!(store.verify()?.is_empty());
    // ... but `verify`'s caller is told about it.
    assert_eq!(store.strays()?.len(), 1, "{:?}", store.strays()?);
    // Not a prefix either: retiring every generation leaves it alone.
    store.retain(&[])?;
    assert_eq!(std::fs::read_dir(&upper)?.count(), 1);
    Ok(())
}

/// Two ext4 images, unmounted and detached on drop.
struct Images {
    dir: tempfile::TempDir,
    device: Option<String>,
}

impl Images {
    fn run(cmd: &mut std::process::Command) -> bool {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Builds `img1` and `img2`, each holding `app.wat` with the given
    /// text, with identical inode numbers and times: reproducible builds
    /// of two versions. `None` where this machine cannot (not root, no
    /// `mkfs.ext4`/`debugfs`).
    fn build(v1: &[u8], v2: &[u8]) -> Option<Images> {
        let dir = tempfile::tempdir().ok()?;
        std::fs::create_dir(dir.path().join("mnt")).ok()?;
        for (i, text) in [(1, v1), (2, v2)] {
            let src = dir.path().join(format!("src{i}"));
            std::fs::create_dir(&src).ok()?;
            std::fs::write(src.join("app.wat"), text).ok()?;
            let img = dir.path().join(format!("img{i}"));
            if !Images::run(
                std::process::Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-d"])
                    .arg(&src)
                    .arg(&img)
                    .arg("1M"),
            ) {
                return None;
            }
            for field in ["ctime", "mtime", "atime", "crtime"] {
                for (name, value) in [
                    (field.to_string(), "20200101000000"),
                    (format!("{field}_extra"), "0"),
                ] {
                    let request = format!("set_inode_field /app.wat {name} {value}");
                    if !Images::run(
                        std::process::Command::new("debugfs")
                            .args(["-w", "-R", &request])
                            .arg(&img),
                    ) {
                        return None;
                    }
                }
            }
        }
        Some(Images { dir, device: None })
    }

    /// Mounts image `i` (read-only) at `mnt`, through the same loop device
    /// every time.
    fn mount(&mut self, i: u32) -> Option<std::path::PathBuf> {
        let img = self.dir.path().join(format!("img{i}"));
        let mnt = self.dir.path().join("mnt");
        let device = match &self.device {
            Some(device) => {
                Images::run(std::process::Command::new("umount").arg(&mnt));
                Images::run(std::process::Command::new("losetup").args(["-d", device]));
                if !Images::run(std::process::Command::new("losetup").arg(device).arg(&img)) {
                    return None;
                }
                device.clone()
            }
            None => {
                let out = std::process::Command::new("losetup")
                    .args(["--show", "-f"])
                    .arg(&img)
                    .output()
                    .ok()?;
                if !out.status.success() {
                    return None;
                }
                String::from_utf8(out.stdout).ok()?.trim().to_string()
            }
        };
        self.device = Some(device.clone());
        Images::run(
            std::process::Command::new("mount")
                .args(["-o", "ro", &device])
                .arg(&mnt),
        )
        .then_some(mnt)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        Images::run(std::process::Command::new("umount").arg(self.dir.path().join("mnt")));
        if let Some(device) = &self.device {
            Images::run(std::process::Command::new("losetup").args(["-d", device]));
        }
    }
}

/// Two reproducible images of one application, differing in one byte of a
/// same-size file and mounted in turn at one place from one loop device,
/// show the same device, inode, size and times. A remembered digest used to
/// map the second image's file to the first one's artifact; the mount's
/// identity now tells them apart.
#[test]
fn a_remembered_digest_does_not_outlive_its_mount() -> Result<()> {
    let v1 = wasm(1);
    let v2 = wasm(2);
    assert_eq!(v1.len(), v2.len());
    let Some(mut images) = Images::build(&v1, &v2) else {
        eprintln!("skipped: cannot build ext4 images here (needs root, mkfs.ext4, debugfs)");
        return Ok(());
    };
    let Some(mnt) = images.mount(1) else {
        eprintln!("skipped: cannot mount a loop device here");
        return Ok(());
    };
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(store_dir.path())?;
    let engine = Engine::default();
    let app = mnt.join("app.wat");
    let before = std::fs::metadata(&app)?;
    assert_eq!(
        call(&engine, &store.get_or_compile_module_file(&engine, &app)?),
        1
    );
    assert_eq!(
        call(&engine, &store.get_or_compile_module_file(&engine, &app)?),
        1
    );
    assert_eq!(
        store.stats().files_hashed,
        1,
        "the settled file was not remembered"
    );
    let mnt = images
        .mount(2)
        .expect("the second image mounts where the first did");
    let after = std::fs::metadata(&app)?;
    {
        use std::os::unix::fs::MetadataExt;
        let stamp = |m: &std::fs::Metadata| {
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        };
        assert_eq!(
            stamp(&before),
            stamp(&after),
            "the images do not look alike"
        );
    }
    assert_eq!(std::fs::read(mnt.join("app.wat"))?, v2);
    let m = store.get_or_compile_module_file(&engine, &app)?;
    assert_eq!(
        call(&engine, &m),
        2,
        "the second image's file ran the first one's artifact"
    );
    Ok(())
}

/// The saved digests are checked before a byte of them is read, up the
/// whole path: a FIFO planted in their place is refused, not waited on,
/// and a directory above the file's parent that others can write (without
/// the sticky bit) is refused too.
#[test]
fn saved_digests_are_checked_before_they_are_read() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let store = ArtifactStore::open(dir.path().join("store"))?;
    let fifo = dir.path().join("digests.json");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )?;
    let error = within_bound("loading digests from a FIFO", move || {
        let store = store;
        store
            .load_remembered_digests(&fifo)
            .map_err(|e| format!("{e:#}"))
    })
    .expect_err("a FIFO was read as digests");
    assert!(error.contains("not a regular file"), "{error}");

    let store = ArtifactStore::open(dir.path().join("store"))?;
    let open = dir.path().join("open");
    let file = open.join("inner").join("digests.json");
    std::fs::create_dir_all(file.parent().unwrap())?;
    store.save_remembered_digests(&file)?;
    assert_eq!(store.load_remembered_digests(&file)?, 0);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))?;
    let error = store
        .load_remembered_digests(&file)
        .expect_err("a writable grandparent was trusted");
    assert!(
        format!("{error:#}").contains("writable by other users"),
        "{error:#}"
    );
    Ok(())
}

/// A name that is not UTF-8 is not the store's, and must not stand for
/// another: `.tmp-\xff`, stale, used to be converted lossily to
/// `.tmp-\u{fffd}`, and gc then deleted that file instead: a write in
/// progress of another process.
#[test]
fn a_name_that_is_not_utf8_stands_for_no_other() -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir()?;
    let store = ArtifactStore::open(dir.path())?;
    let stale = dir.path().join(std::ffi::OsStr::from_bytes(b".tmp-\xff"));
    std::fs::write(&stale, b"stale")?;
    std::fs::File::options()
        .write(true)
        .open(&stale)?
        .set_modified(SystemTime::now() - Duration::from_secs(3 * 3600))?;
    let in_progress = dir.path().join(".tmp-\u{fffd}");
    std::fs::write(&in_progress, b"a write in progress")?;
    store.gc(false)?;
    assert!(
        in_progress.exists(),
        "gc deleted another file for a non-UTF-8 name"
    );
    Ok(())
}

/// Set for `stamp_child`: the store it opens.
const STAMP_CHILD_ENV: &str = "CWASM_STAMP_CHILD";

/// An unkeyed hit reads the entry's stamp through the descriptor it holds,
/// never by opening a path again: it works where `/proc` is not mounted
/// (before, every hit there was a miss that compiled again). On macOS and
/// the BSDs, the path it re-opened (`/dev/fd/N`) shared the descriptor's
/// offset and could misread the entry. Runs in a child whose mount
/// namespace has no `/proc`.
#[test]
fn an_unkeyed_hit_opens_no_path_again() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root, for a mount namespace without /proc");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let script = format!(
        "umount -l /proc && exec '{}' --ignored --exact planted::stamp_child --nocapture --test-threads=1",
        exe.display()
    );
    let status = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env(STAMP_CHILD_ENV, dir.path())
        .status();
    let Ok(status) = status else {
        eprintln!("skipped: no unshare");
        return Ok(());
    };
    assert!(status.success(), "the child without /proc failed: {status}");
    Ok(())
}

/// The body of `an_unkeyed_hit_opens_no_path_again`, without `/proc`.
#[test]
#[ignore = "run by an_unkeyed_hit_opens_no_path_again, without /proc"]
fn stamp_child() -> Result<()> {
    let Some(root) = std::env::var_os(STAMP_CHILD_ENV) else {
        return Ok(());
    };
    assert!(
        !Path::new("/proc/self/fd").exists(),
        "/proc is still mounted in this child"
    );
    let engine = Engine::default();
    ArtifactStore::open(&root)?.get_or_compile_module(&engine, &wasm(26))?;
    let store = ArtifactStore::open(&root)?;
    let m = store.get_or_compile_module(&engine, &wasm(26))?;
    assert_eq!(call(&engine, &m), 26);
    let stats = store.stats();
    assert_eq!(
        (stats.hits, stats.compiles, stats.store_errors),
        (1, 0, 0),
        "{stats:?}"
    );
    println!("stamp child: ok");
    Ok(())
}
