//! The rule of a keyed store: every byte wasmtime executes was
//! authenticated by the key, in this process, after it could no longer
//! change. No exception for owners or modes: each test keeps the store in a
//! private directory (0700, this user's), where the store once trusted
//! entries without checking their tags, and plants code that no key vouched
//! for, by each way such an entry really arrives.

mod common;

use common::{call, wasm};
use cwasm_store::{ArtifactStore, Backend, Key, LocalDir, StoreConfig};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{Engine, Result};

const SECRET: &[u8] = b"the fleet's key, sixteen bytes or more";
/// What the planted module answers; the real one answers 4.
const PLANTED: i32 = 666;

fn config(key: Option<&[u8]>) -> StoreConfig {
    StoreConfig {
        hmac_key: key.map(<[u8]>::to_vec),
        ..StoreConfig::default()
    }
}

fn keyed(root: &Path) -> ArtifactStore {
    ArtifactStore::new(
        Some(LocalDir::new(root).unwrap()),
        None,
        config(Some(SECRET)),
    )
    .unwrap()
}

/// A directory only this user can enter, holding the store at `store`.
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Makes every file and directory under `root` this user's and writable by
/// no one else: what the store used to call a private entry.
fn make_private(root: &Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            make_private(&path);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn run(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?}: {status}");
}

/// A store holding, under the key of `wasm(4)`, the artifact of
/// `wasm(PLANTED)` with a junk tag: what someone without the key can write
/// into a shared store. A good entry (`wasm(5)`) sits beside it.
fn shared_store_with_a_plant(engine: &Engine, root: &Path) -> Result<Key> {
    keyed(root).get_or_compile_module(engine, &wasm(5))?;
    let key = Key::new(engine, &wasm(4))?;
    let planted = engine.precompile_module(&wasm(PLANTED))?;
    let unkeyed = ArtifactStore::new(Some(LocalDir::new(root)?), None, config(None))?;
    unkeyed.put(&key, &planted)?;
    let mut junk = vec![3u8];
    junk.extend_from_slice(&[0x5a; 32]);
    std::fs::write(root.join(key.tag_path()), junk)?;
    Ok(key)
}

/// The keyed lookup of `wasm(4)` in `root` compiles the real module instead
/// of running the plant, rejects the plant, and keeps the good entry.
fn refuses_the_plant(engine: &Engine, root: &Path, how: &str) -> Result<()> {
    let store = keyed(root);
    let m = store.get_or_compile_module(engine, &wasm(4))?;
    assert_eq!(call(engine, &m), 4, "{how}: the planted module ran");
    let stats = store.stats();
    assert_eq!((stats.rejected, stats.compiles), (1, 1), "{how}: {stats:?}");
    // Nothing good was deleted: the good entry still hits, and the real
    // module, now stored with a tag, hits too.
    let m = store.get_or_compile_module(engine, &wasm(5))?;
    assert_eq!(call(engine, &m), 5);
    let m = store.get_or_compile_module(engine, &wasm(4))?;
    assert_eq!(call(engine, &m), 4);
    assert_eq!(store.stats().compiles, 1, "{how}: {:?}", store.stats());
    Ok(())
}

/// Copied by the user out of a shared store (`cp -r`, or a tar archive, as
/// a CI cache is restored) into a private directory: the copies are this
/// user's, 0600/0700, and still carry code no key vouched for.
#[test]
fn a_plant_copied_into_a_private_directory_never_runs() -> Result<()> {
    let engine = Engine::default();
    let shared = tempfile::tempdir()?;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o770))?;
    shared_store_with_a_plant(&engine, &shared.path().join("store"))?;

    let by_cp = private_dir();
    run(Command::new("cp")
        .arg("-r")
        .arg(shared.path().join("store"))
        .arg(by_cp.path().join("store")));
    make_private(&by_cp.path().join("store"));
    refuses_the_plant(&engine, &by_cp.path().join("store"), "cp -r")?;

    let archive = shared.path().join("cache.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(shared.path().join("store"))
        .arg("."));
    let by_tar = private_dir();
    std::fs::create_dir(by_tar.path().join("store"))?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(by_tar.path().join("store")));
    make_private(&by_tar.path().join("store"));
    refuses_the_plant(&engine, &by_tar.path().join("store"), "tar")?;
    Ok(())
}

/// Written by an unkeyed run of the same user before the key was set: no
/// tag at all, in a private directory.
#[test]
fn an_entry_from_before_the_key_never_runs_unverified() -> Result<()> {
    let engine = Engine::default();
    let dir = private_dir();
    let root = dir.path().join("store");
    let key = shared_store_with_a_plant(&engine, &root)?;
    std::fs::remove_file(root.join(key.tag_path()))?;
    make_private(&root);
    refuses_the_plant(&engine, &root, "no tag")
}

/// Copied from a remote tier into the private local tier by an unkeyed
/// store (which loads what it finds: that is what unkeyed means), then read
/// by a keyed store.
#[test]
fn a_plant_an_unkeyed_store_copied_from_the_remote_never_runs() -> Result<()> {
    let engine = Engine::default();
    let remote_dir = tempfile::tempdir()?;
    let key = shared_store_with_a_plant(&engine, remote_dir.path())?;
    let dir = private_dir();
    let local = dir.path().join("store");
    let unkeyed = ArtifactStore::new(
        Some(LocalDir::new(&local)?),
        Some(Box::new(LocalDir::new(remote_dir.path())?)),
        config(None),
    )?;
    let m = unkeyed.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(
        call(&engine, &m),
        PLANTED,
        "unkeyed stores load what they find"
    );
    unkeyed.flush();
    drop(unkeyed);
    assert!(local.join(key.artifact_path()).exists());
    make_private(&local);
    // The good entry is not in this local tier: put it there, keyed.
    keyed(&local).get_or_compile_module(&engine, &wasm(5))?;
    refuses_the_plant(&engine, &local, "copied from the remote")
}

/// A writer that rewrites the entry in place, over and over (`pwrite`, the
/// file keeps its name, inode, owner and mode), while keyed lookups run:
/// whatever it writes, and whenever, its bytes never run. The planted
/// artifact has the same length as the real one (the two modules differ in
/// one constant), so that the file is a whole, well-stamped artifact
/// between any two writes.
#[test]
fn an_entry_rewritten_in_place_during_lookups_never_runs() -> Result<()> {
    let engine = Engine::default();
    let dir = private_dir();
    let root = dir.path().join("store");
    let store = keyed(&root);
    store.get_or_compile_module(&engine, &wasm(4))?;
    let key = Key::new(&engine, &wasm(4))?;
    let path = root.join(key.artifact_path());
    let real = std::fs::read(&path)?;
    let planted = engine.precompile_module(&wasm(PLANTED))?;
    assert_eq!(
        planted.len(),
        real.len(),
        "the two artifacts differ in length"
    );
    make_private(&root);

    let done = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (lookups, planted_ran) = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                // Open by name each time: a rejected entry is deleted and
                // written anew.
                if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let _ = file.write_all_at(&planted, 0);
                    let _ = file.set_len(planted.len() as u64);
                    std::thread::sleep(Duration::from_micros(300));
                    let _ = file.write_all_at(&real, 0);
                    let _ = file.set_len(real.len() as u64);
                }
                std::thread::sleep(Duration::from_micros(300));
            }
        });
        let mut lookups = 0;
        let mut planted_ran = 0;
        while lookups < 200 && Instant::now() < deadline {
            let m = store.get_or_compile_module(&engine, &wasm(4)).unwrap();
            if call(&engine, &m) != 4 {
                planted_ran += 1;
            }
            lookups += 1;
        }
        done.store(true, Ordering::Relaxed);
        (lookups, planted_ran)
    });
    assert_eq!(
        planted_ran, 0,
        "the planted module ran in {planted_ran} of {lookups} lookups"
    );
    assert!(lookups >= 20, "only {lookups} lookups in 20 s");
    // Some lookups hit (the real bytes verified); how many were refused
    // depends on the timing, and is not asserted.
    let stats = store.stats();
    assert!(stats.hits > 0, "{stats:?}");
    Ok(())
}

/// A module loaded by a keyed hit runs the bytes that were verified, not
/// the file: rewriting the entry in place after the load changes nothing
/// (the module was loaded from a sealed copy). Deterministic: on a store
/// that maps the entry file itself, the pages a module has not written
/// show the file's new bytes.
#[test]
fn a_loaded_module_does_not_follow_its_file() -> Result<()> {
    let engine = Engine::default();
    let dir = private_dir();
    let root = dir.path().join("store");
    keyed(&root).get_or_compile_module(&engine, &wasm(4))?;
    make_private(&root);
    let store = keyed(&root);
    let m = store.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!((store.stats().hits, store.stats().compiles), (1, 0));
    let key = Key::new(&engine, &wasm(4))?;
    let planted = engine.precompile_module(&wasm(PLANTED))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join(key.artifact_path()))?;
    file.write_all_at(&planted, 0)?;
    file.set_len(planted.len() as u64)?;
    drop(file);
    assert_eq!(call(&engine, &m), 4, "the module followed its file");
    Ok(())
}

/// Components take the same path: a keyed hit verifies a sealed copy and
/// loads it (through `/proc/thread-self/fd`, which names the memfd), and a
/// planted component never runs.
#[test]
fn keyed_component_hits_are_verified_too() -> Result<()> {
    const COMPONENT: &str = r#"(component
      (core module $m (func (export "answer") (result i32) i32.const 7))
      (core instance $i (instantiate $m))
      (func (export "answer") (result s32) (canon lift (core func $i "answer"))))"#;
    let answer = |engine: &Engine, c: &wasmtime::component::Component| -> i32 {
        let mut store = wasmtime::Store::new(engine, ());
        let linker = wasmtime::component::Linker::<()>::new(engine);
        let instance = linker.instantiate(&mut store, c).unwrap();
        let f = instance
            .get_typed_func::<(), (i32,)>(&mut store, "answer")
            .unwrap();
        f.call(&mut store, ()).unwrap().0
    };
    let engine = Engine::default();
    let dir = private_dir();
    let root = dir.path().join("store");
    keyed(&root).get_or_compile_component(&engine, COMPONENT.as_bytes())?;
    let store = keyed(&root);
    let c = store.get_or_compile_component(&engine, COMPONENT.as_bytes())?;
    assert_eq!(answer(&engine, &c), 7);
    assert_eq!((store.stats().hits, store.stats().compiles), (1, 0));
    // A planted component under the same key, with the old tag: refused.
    let key = Key::new(&engine, COMPONENT.as_bytes())?;
    let planted = engine
        .precompile_component(COMPONENT.replace("i32.const 7", "i32.const 666").as_bytes())?;
    std::fs::write(root.join(key.artifact_path()), &planted)?;
    make_private(&root);
    let store = keyed(&root);
    let c = store.get_or_compile_component(&engine, COMPONENT.as_bytes())?;
    assert_eq!(answer(&engine, &c), 7, "the planted component ran");
    assert_eq!((store.stats().rejected, store.stats().compiles), (1, 1));
    Ok(())
}

/// A compressed remote object is verified as stored, inflated into sealed
/// memory, loaded, and copied raw (with a tag of its own) into the local
/// tier.
#[test]
fn a_keyed_compressed_remote_hit_loads_and_is_copied() -> Result<()> {
    let engine = Engine::default();
    let remote = tempfile::tempdir()?;
    let writer = ArtifactStore::new(
        None,
        Some(Box::new(LocalDir::new(remote.path())?)),
        StoreConfig {
            compress_remote: true,
            ..config(Some(SECRET))
        },
    )?;
    writer.get_or_compile_module(&engine, &wasm(4))?;
    let key = Key::new(&engine, &wasm(4))?;
    assert!(
        remote
            .path()
            .join(format!("{}.zst", key.artifact_path()))
            .exists()
    );
    assert!(!remote.path().join(key.artifact_path()).exists());
    let local = tempfile::tempdir()?;
    let reader = ArtifactStore::new(
        Some(LocalDir::new(local.path())?),
        Some(Box::new(LocalDir::new(remote.path())?)),
        StoreConfig {
            compress_remote: true,
            ..config(Some(SECRET))
        },
    )?;
    let m = reader.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    assert_eq!((reader.stats().hits, reader.stats().compiles), (1, 0));
    reader.flush();
    let again = keyed(local.path());
    let m = again.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    assert_eq!((again.stats().hits, again.stats().rejected), (1, 0));
    Ok(())
}

/// A keyed remote hit (the object streamed into sealed memory) loads, and
/// its copy in the local tier carries a tag that verifies: the next hit is
/// local.
#[test]
fn a_keyed_remote_hit_is_copied_with_its_tag() -> Result<()> {
    let engine = Engine::default();
    let remote = tempfile::tempdir()?;
    keyed(remote.path()).get_or_compile_module(&engine, &wasm(4))?;
    let local = tempfile::tempdir()?;
    let store = ArtifactStore::new(
        Some(LocalDir::new(local.path())?),
        Some(Box::new(LocalDir::new(remote.path())?)),
        config(Some(SECRET)),
    )?;
    let m = store.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    store.flush();
    let key = Key::new(&engine, &wasm(4))?;
    assert!(local.path().join(key.tag_path()).exists());
    let again = keyed(local.path());
    let m = again.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    let stats = again.stats();
    assert_eq!((stats.hits, stats.rejected, stats.compiles), (1, 0, 0));
    // The remote object with a wrong tag is refused (and compiled again).
    LocalDir::new(remote.path())?.write(&key.tag_path(), &[3; 33])?;
    let fresh = tempfile::tempdir()?;
    let store = ArtifactStore::new(
        Some(LocalDir::new(fresh.path())?),
        Some(Box::new(LocalDir::new(remote.path())?)),
        config(Some(SECRET)),
    )?;
    let m = store.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    assert_eq!((store.stats().rejected, store.stats().compiles), (1, 1));
    Ok(())
}

/// A raw and a compressed copy of one entry, put by two hosts (one with
/// `compress_remote`), each keep a tag of their own, and both verify.
/// Before, the two forms shared one tag path: the second writer's tag
/// replaced the first's, and the first form was then rejected, and
/// deleted, as unverifiable. A compressed object whose tag is still at the
/// shared path (written before separate tags) verifies too.
#[test]
fn both_forms_keep_their_own_tags() -> Result<()> {
    let engine = Engine::default();
    let remote = tempfile::tempdir()?;
    let bucket = || -> Result<Option<Box<dyn Backend>>> {
        Ok(Some(Box::new(LocalDir::new(remote.path())?)))
    };
    let compressed = |on: bool| StoreConfig {
        compress_remote: on,
        ..config(Some(SECRET))
    };
    let key = Key::new(&engine, &wasm(4))?;
    let artifact = engine.precompile_module(&wasm(4))?;
    ArtifactStore::new(None, bucket()?, compressed(false))?.put(&key, &artifact)?;
    ArtifactStore::new(None, bucket()?, compressed(true))?.put(&key, &artifact)?;
    for on in [false, true, false] {
        let reader = ArtifactStore::new(None, bucket()?, compressed(on))?;
        let m = reader.get_or_compile_module(&engine, &wasm(4))?;
        assert_eq!(call(&engine, &m), 4);
        let stats = reader.stats();
        assert_eq!(
            (stats.hits, stats.rejected, stats.compiles),
            (1, 0, 0),
            "compressed: {on}"
        );
    }
    // The earlier layout: the compressed object's tag at the raw one's path.
    let zst_tag = remote
        .path()
        .join(format!("{}.zst.hmac", key.artifact_path()));
    std::fs::remove_file(remote.path().join(key.artifact_path()))?;
    std::fs::rename(&zst_tag, remote.path().join(key.tag_path()))?;
    let reader = ArtifactStore::new(None, bucket()?, compressed(true))?;
    let m = reader.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    assert_eq!((reader.stats().hits, reader.stats().rejected), (1, 0));
    Ok(())
}

/// `write_v2_tags` writes tags as stores before v3 did, where they look for
/// them: 32-byte HMAC tags, a compressed object's at the raw one's path.
#[test]
fn v2_tags_are_where_older_readers_look() -> Result<()> {
    let engine = Engine::default();
    let remote = tempfile::tempdir()?;
    let key = Key::new(&engine, &wasm(4))?;
    let store = ArtifactStore::new(
        None,
        Some(Box::new(LocalDir::new(remote.path())?)),
        StoreConfig {
            compress_remote: true,
            write_v2_tags: true,
            ..config(Some(SECRET))
        },
    )?;
    store.put(&key, &engine.precompile_module(&wasm(4))?)?;
    assert_eq!(std::fs::read(remote.path().join(key.tag_path()))?.len(), 32);
    assert!(
        !remote
            .path()
            .join(format!("{}.zst.hmac", key.artifact_path()))
            .exists()
    );
    let m = store.get_or_compile_module(&engine, &wasm(4))?;
    assert_eq!(call(&engine, &m), 4);
    assert_eq!((store.stats().hits, store.stats().rejected), (1, 0));
    Ok(())
}
