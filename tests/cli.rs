//! The `cwasm` binary, driven as an operator would: real files, a real
//! store directory, exit codes and JSON.

mod cli_support;
mod common;

use cli_support::{cwasm, json, stdout, walk};
use common::{MODULE_WAT, hex};
use wasmtime::{Config, Engine, OptLevel};

#[test]
fn hash_matches_the_library() {
    let default = hex(&Engine::default()
        .serialization_compatibility_hash()
        .unwrap());
    assert_eq!(stdout(cwasm().arg("hash")).trim(), default);

    let mut config = Config::new();
    config.target("aarch64-unknown-linux-gnu").unwrap();
    config.cranelift_opt_level(OptLevel::None);
    config.wasm_threads(false).consume_fuel(true);
    unsafe {
        config.cranelift_flag_enable("has_lse");
    }
    let expected = hex(&Engine::new(&config)
        .unwrap()
        .serialization_compatibility_hash()
        .unwrap());
    let out = json(cwasm().args([
        "hash",
        "--target",
        "aarch64-unknown-linux-gnu",
        "-O",
        "opt-level=0",
        "-W",
        "threads=n,fuel=1000",
        "-C",
        "cranelift-has-lse",
        "--json",
    ]));
    assert_eq!(out["engine_hash"], expected);
    assert_eq!(out["target"], "aarch64-unknown-linux-gnu");
    assert_eq!(out["version"], "48");
}

#[test]
fn bad_flags_are_usage_errors() {
    cwasm()
        .args(["hash", "-O", "opt-level=9"])
        .assert()
        .failure()
        .code(2)
        .stderr(predicates::str::contains("opt-level"));
    cwasm()
        .args(["hash", "-W", "bogus"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "unknown -W / --wasm option: bogus",
        ));
    cwasm().args(["hash", "--nope"]).assert().code(2);
    // Sizes are plain numbers, as the `wasmtime` CLI takes them (the
    // hand-written options this replaced also took K, M and G).
    cwasm()
        .args(["hash", "-O", "memory-reservation=1M"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("memory-reservation"));
    // Options of `wasmtime compile` that this build cannot honour are
    // refused, not silently ignored.
    cwasm()
        .args(["hash", "-C", "cache-config=cache.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--cache-config"));
    cwasm()
        .args(["hash", "-D", "logging=y"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("logging"));
}

/// The engine options are the `wasmtime` CLI's own (`wasmtime-cli-flags`):
/// for the same options `cwasm hash` gives the engine `wasmtime compile`
/// builds, which takes `CommonOptions::config(None)` as it is.
#[test]
fn engine_options_build_the_engine_wasmtime_compile_builds() {
    use clap::Parser;
    use wasmtime_cli_flags::CommonOptions;
    for options in [
        &[][..],
        &[
            "-O",
            "opt-level=s,memory-reservation=1048576,memory-may-move=n",
        ],
        &[
            "-C",
            "cranelift-has-avx=false,native-unwind-info=n",
            "-D",
            "debug-info",
        ],
        &[
            "-W",
            "nan-canonicalization,gc,function-references,exceptions=y,fuel=10",
        ],
        &["-W", "epoch-interruption", "-O", "signals-based-traps=n"],
        &[
            "--target",
            "aarch64-unknown-linux-gnu",
            "-C",
            "cranelift-has-lse",
        ],
        &["--target", "pulley64", "-W", "threads=n"],
    ] {
        let mut common = CommonOptions::try_parse_from(
            std::iter::once("wasmtime").chain(options.iter().copied()),
        )
        .unwrap();
        let engine = Engine::new(&common.config(None).unwrap()).unwrap();
        let expected = hex(&engine.serialization_compatibility_hash().unwrap());
        let ours = stdout(cwasm().arg("hash").args(options));
        assert_eq!(ours.trim(), expected, "{options:?}");
    }
}

/// `--profile` and `--cpu` set the target and CPU settings; explicit `-C
/// cranelift-*` options still win over them.
#[test]
fn cranelift_options_apply_on_top_of_a_cpu_preset() {
    let preset = stdout(cwasm().args(["hash", "--cpu", "x86-64-v2"]));
    let with_avx = stdout(cwasm().args(["hash", "--cpu", "x86-64-v2", "-C", "cranelift-has-avx"]));
    let avx_off = stdout(cwasm().args([
        "hash",
        "--cpu",
        "x86-64-v3",
        "-C",
        "cranelift-has-avx=false",
    ]));
    let v3 = stdout(cwasm().args(["hash", "--cpu", "x86-64-v3"]));
    assert_ne!(preset, with_avx);
    assert_ne!(v3, avx_off);
    let profile = cwasm_store::CpuProfile::preset("x86-64-v2").unwrap();
    let mut config = profile.config().unwrap();
    unsafe {
        config.cranelift_flag_enable("has_avx");
    }
    let expected = hex(&Engine::new(&config)
        .unwrap()
        .serialization_compatibility_hash()
        .unwrap());
    assert_eq!(with_avx.trim(), expected);
}

/// A `--cache-config` file that names no `directory` keeps the store in
/// cwasm's own cache directory (wasmtime would pick its own, whose cleanup
/// deletes files it does not recognise).
#[test]
fn a_cache_config_without_a_directory_keeps_cwasms_directory() {
    let cache = tempfile::tempdir().unwrap();
    let config = cache.path().join("cache.toml");
    std::fs::write(&config, "[cache]\ncleanup-interval = \"1d\"\n").unwrap();
    let out = stdout(
        cwasm()
            .arg("demo")
            .arg("--cache-config")
            .arg(&config)
            .env("XDG_CACHE_HOME", cache.path()),
    );
    assert!(out.contains("called `answer`: 42"), "{out}");
    let prefixes = std::fs::read_dir(cache.path().join("cwasm"))
        .unwrap()
        .count();
    assert!(prefixes >= 1, "the store is in $XDG_CACHE_HOME/cwasm");
    // What wasmtime rejects is rejected, naming the file.
    std::fs::write(&config, "[cache]\nfile-count-soft-limit = 4\n").unwrap();
    cwasm()
        .arg("ls")
        .arg("--cache-config")
        .arg(&config)
        .env("XDG_CACHE_HOME", cache.path())
        .assert()
        .code(1)
        .stderr(predicates::str::contains("cache.toml"));
}

#[test]
fn inspect_artifacts_and_non_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let path = dir.path().join("m.cwasm");
    std::fs::write(
        &path,
        engine.precompile_module(MODULE_WAT.as_bytes()).unwrap(),
    )
    .unwrap();
    let out = json(cwasm().arg("inspect").arg(&path).arg("--json"));
    assert_eq!(out["kind"], "module");
    assert_eq!(
        out["engine_hash"],
        hex(&engine.serialization_compatibility_hash().unwrap())
    );
    assert_eq!(out["version"], "48");
    assert!(out["isa_flags"].as_array().unwrap().len() > 3);
    let text = stdout(cwasm().arg("inspect").arg(&path));
    assert!(text.contains("kind:         module"), "{text}");

    let wasm = dir.path().join("m.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    let out = cwasm().arg("inspect").arg(&wasm).assert().code(1);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a wasmtime artifact"), "{err}");
}

/// A store with two engine generations: three modules and a component
/// compiled by the default engine, and one module by an `opt-level=0` one.
struct TwoGenerations {
    dir: tempfile::TempDir,
    store: String,
    /// The default engine's hash: its prefix holds four entries.
    default_hash: String,
}

fn two_generations() -> TwoGenerations {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").to_str().unwrap().to_string();
    let mut files = Vec::new();
    for i in 0..3 {
        let f = dir.path().join(format!("m{i}.wat"));
        std::fs::write(
            &f,
            format!("(module (func (export \"f\") (result i32) i32.const {i}))"),
        )
        .unwrap();
        files.push(f);
    }
    let c = dir.path().join("c.wat");
    std::fs::write(&c, "(component)").unwrap();
    files.push(c);

    let out = json(
        cwasm()
            .arg("compile")
            .args(&files)
            .args(["--store", &store, "--json"]),
    );
    let out = out.as_array().unwrap();
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|r| r["error"].is_null()), "{out:?}");
    assert_eq!(out.iter().filter(|r| r["kind"] == "component").count(), 1);
    // Plain lines without a terminal.
    let text = stdout(
        cwasm()
            .arg("compile")
            .args(&files[..1])
            .args(["--store", &store]),
    );
    assert!(text.starts_with("compiled "), "{text}");
    // A second engine generation.
    cwasm()
        .arg("compile")
        .args(&files[..1])
        .args(["--store", &store, "-O", "opt-level=0"])
        .assert()
        .success();
    let default_hash = hex(&Engine::default()
        .serialization_compatibility_hash()
        .unwrap());
    TwoGenerations {
        dir,
        store,
        default_hash,
    }
}

impl TwoGenerations {
    /// How many engine prefixes `ls` lists.
    fn generations(&self) -> usize {
        json(cwasm().args(["ls", "--store", &self.store, "--json"]))
            .as_array()
            .unwrap()
            .len()
    }
}

#[test]
fn compile_and_ls_show_each_generation() {
    let store = two_generations();
    let ls = json(cwasm().args(["ls", "--store", &store.store, "--json"]));
    let ls = ls.as_array().unwrap();
    assert_eq!(ls.len(), 2);
    let ours = ls
        .iter()
        .find(|e| e["engine"] == store.default_hash.as_str())
        .unwrap();
    assert_eq!(ours["entries"], 4);
    assert_eq!(ours["descriptor"]["wasmtime_version"], "48");
    assert!(stdout(cwasm().args(["ls", "--store", &store.store])).contains("wasmtime 48"));
}

/// `verify`: clean, then one corrupted entry gives exit 3 and names it.
#[test]
fn verify_names_a_bad_entry_and_exits_3() {
    let store = two_generations();
    cwasm()
        .args(["verify", "--store", &store.store])
        .assert()
        .code(0);
    let victim = std::fs::read_dir(store.dir.path().join("store").join(&store.default_hash))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    std::fs::write(&victim, b"not an artifact").unwrap();
    let out = cwasm()
        .args(["verify", "--store", &store.store])
        .assert()
        .code(3);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let stem = victim.file_stem().unwrap().to_str().unwrap();
    assert!(
        text.contains(stem) && text.contains("5 entries checked, 1 bad, 0 stray objects"),
        "{text}"
    );
}

/// `gc --keep` retires the other generations (a dry run first), then `gc`
/// applies the limits of a wasmtime cache config file.
#[test]
fn gc_retires_generations_and_applies_cache_limits() {
    let store = two_generations();
    let (dir, hash) = (&store.dir, &store.default_hash);
    let text = stdout(cwasm().args(["gc", "--store", &store.store, "--dry-run", "--keep", hash]));
    assert!(text.contains("would drop engine"), "{text}");
    assert_eq!(store.generations(), 2);
    cwasm()
        .args(["gc", "--store", &store.store, "--keep", hash])
        .assert()
        .success();
    assert_eq!(store.generations(), 1);

    let config = dir.path().join("cache.toml");
    std::fs::write(
        &config,
        "[cache]\nfile-count-soft-limit = \"2\"\nfile-count-limit-percent-if-deleting = \"50%\"\n",
    )
    .unwrap();
    let out = json(
        cwasm()
            .args(["gc", "--store", &store.store, "--json", "--cache-config"])
            .arg(&config)
            // wasmtime fills a file's missing `directory` with its own cache
            // directory, and creates it: keep that out of the real one.
            .env("XDG_CACHE_HOME", dir.path()),
    );
    assert_eq!(
        out["limits"]["deleted"].as_array().unwrap().len(),
        3,
        "{out}"
    );
    let ls = json(cwasm().args(["ls", "--store", &store.store, "--json"]));
    assert_eq!(ls[0]["entries"], 1);
}

#[test]
fn demo_uses_the_cache_directory_and_hits_the_second_time() {
    let cache = tempfile::tempdir().unwrap();
    let run = || stdout(cwasm().arg("demo").env("XDG_CACHE_HOME", cache.path()));
    let first = run();
    assert!(first.contains("called `answer`: 42"), "{first}");
    assert!(first.contains("1 compile(s)"), "{first}");
    let second = run();
    assert!(second.contains("0 compile(s)"), "{second}");
    let hash = hex(&Engine::default()
        .serialization_compatibility_hash()
        .unwrap());
    assert!(
        cache
            .path()
            .join("cwasm")
            .join(&hash)
            .join("engine.json")
            .exists()
    );
}

/// `--store s3://...` against the S3 server `cargo xtask test` starts.
#[test]
fn object_store_urls() {
    let Ok(bucket) = std::env::var("CWASM_TEST_S3_URL") else {
        assert!(
            std::env::var_os("CWASM_REQUIRE_SERVERS").is_none(),
            "CWASM_REQUIRE_SERVERS is set but CWASM_TEST_S3_URL is not"
        );
        eprintln!("skipped: no S3 server (run `cargo xtask test`)");
        return;
    };
    let url = format!("{bucket}/cli-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.wat");
    std::fs::write(&f, MODULE_WAT).unwrap();
    cwasm()
        .arg("compile")
        .arg(&f)
        .args(["--store", &url, "--compress"])
        .assert()
        .success();
    let ls = json(cwasm().args(["ls", "--store", &url, "--json"]));
    assert_eq!(ls[0]["entries"], 1, "{ls}");
    cwasm().args(["verify", "--store", &url]).assert().code(0);
    cwasm()
        .args(["gc", "--store", &url, "--keep"])
        .arg("0".repeat(64))
        .assert()
        .success();
    let ls = json(cwasm().args(["ls", "--store", &url, "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 0, "{ls}");
}

/// `cwasm push`, then `--store oci://...`, against the registry `cargo xtask
/// test` starts: the artifact is attached to the pushed image, listed and
/// verified through the repository.
#[test]
fn oci_store_urls() {
    let Ok(registry) = std::env::var("CWASM_TEST_OCI_REGISTRY") else {
        assert!(
            std::env::var_os("CWASM_REQUIRE_SERVERS").is_none(),
            "CWASM_REQUIRE_SERVERS is set but CWASM_TEST_OCI_REGISTRY is not"
        );
        eprintln!("skipped: no registry (run `cargo xtask test`)");
        return;
    };
    let repository = format!("oci://{registry}/cli/app-{}", std::process::id());
    let image = format!("{repository}:v1");
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("m.wat");
    std::fs::write(&text, MODULE_WAT).unwrap();
    let binary = dir.path().join("m.wasm");
    std::fs::write(&binary, wat::parse_str(MODULE_WAT).unwrap()).unwrap();
    cwasm()
        .args(["push", &image])
        .arg(&text)
        .assert()
        .failure()
        .stderr(predicates::str::contains("not a binary wasm"));
    cwasm()
        .args(["push", &image])
        .arg(&binary)
        .assert()
        .success()
        .stdout(predicates::str::starts_with("sha256:"));
    cwasm()
        .arg("compile")
        .arg(&binary)
        .args(["--store", &repository])
        .assert()
        .success();
    let ls = json(cwasm().args(["ls", "--store", &image, "--json"]));
    assert_eq!(ls[0]["entries"], 1, "{ls}");
    cwasm().args(["verify", "--store", &image]).assert().code(0);
}

/// `cwasm ... | head -1`: when the reader goes away the tool ends quietly (by
/// SIGPIPE, as other Unix tools do), not with a panic and a backtrace.
#[test]
#[cfg(unix)]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    // Closed before the tool starts, so its first write finds no reader.
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwasm"))
        .arg("host")
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    const SIGPIPE: i32 = 13;
    assert_eq!(
        out.status.signal(),
        Some(SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}

/// `compile --json` lists the files in the order they were given, whatever
/// order the parallel compiles finish in.
#[test]
fn compile_json_keeps_the_order_of_the_files() {
    let dir = tempfile::tempdir().unwrap();
    // Different sizes, so that the compiles finish in another order.
    let files: Vec<_> = [40, 1, 25, 3, 10, 2, 30, 5]
        .iter()
        .enumerate()
        .map(|(i, funcs)| {
            let body = "(func (result i32) i32.const 7)".repeat(*funcs);
            let path = dir.path().join(format!("m{i}.wat"));
            std::fs::write(&path, format!("(module {body})")).unwrap();
            path
        })
        .collect();
    let out = json(
        cwasm()
            .arg("compile")
            .args(&files)
            .arg("--store")
            .arg(dir.path().join("store"))
            .arg("--json"),
    );
    let listed: Vec<String> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap().to_string())
        .collect();
    let given: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    assert_eq!(listed, given);
}

/// `cwasm compile` remembers the digests of settled files across runs, in
/// the user's cache directory, and never trusts them for a changed file or
/// from a file other users can write.
#[test]
fn compile_remembers_digests_of_unchanged_files_across_runs() {
    use sha2::Digest as _;
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("app.wat");
    let compile = || -> serde_json::Value {
        let out = stdout(
            cwasm()
                .env("XDG_CACHE_HOME", cache.path())
                .args(["compile", "--json", "--store"])
                .arg(&store)
                .arg(&file),
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    };
    let sha = |bytes: &[u8]| format!("{:x}", sha2::Sha256::digest(bytes));
    std::fs::write(
        &file,
        "(module (func (export \"answer\") (result i32) i32.const 1))",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3200));
    assert_eq!(compile()["wasm"], sha(&std::fs::read(&file).unwrap()));
    let remembered = cache.path().join("cwasm-remembered-digests.json");
    let text = std::fs::read_to_string(&remembered).unwrap();
    assert!(
        text.contains(&sha(&std::fs::read(&file).unwrap())),
        "{text}"
    );
    // Rewritten in place with the same size: a new digest, not the old one.
    std::fs::write(
        &file,
        "(module (func (export \"answer\") (result i32) i32.const 2))",
    )
    .unwrap();
    assert_eq!(compile()["wasm"], sha(&std::fs::read(&file).unwrap()));
    // A file other users can write is not used, and says so.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&remembered, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = cwasm()
        .env("XDG_CACHE_HOME", cache.path())
        .args(["compile", "--store"])
        .arg(&store)
        .arg(&file)
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8(out).unwrap();
    assert!(stderr.contains("writable by other users"), "{stderr}");
}

/// What the CLI prints never carries a store URL's credentials or query
/// (SAS tokens, signatures), nor the control characters of names and
/// messages others chose (a directory named with an escape sequence).
#[test]
fn credentials_and_escape_sequences_never_reach_the_terminal() {
    let output = cwasm()
        .args([
            "ls",
            "--store",
            "nosuch://someone:hunter2@host/p?sig=s3cr3t",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for secret in ["hunter2", "s3cr3t", "someone"] {
        assert!(!stderr.contains(secret), "{secret} shown: {stderr}");
    }
    assert!(
        stderr.contains("<redacted>") || stderr.contains("<credentials>"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("store\u{1b}]0;owned\u{7}\u{1b}[2J");
    std::fs::write(&hostile, b"a file where a directory should be").unwrap();
    let output = cwasm()
        .arg("ls")
        .arg("--store")
        .arg(&hostile)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains('\u{1b}'),
        "an escape sequence reached the terminal: {stderr:?}"
    );
    assert!(stderr.contains("\\u{1b}"), "{stderr:?}");
}

/// A build farm's keys (`cwasm keygen`: `farm` and `rogue`) and a store
/// holding one module the farm compiled for `x86-64-v1` and signed.
struct Farm {
    dir: tempfile::TempDir,
    /// The entry's artifact, and its statement beside it.
    entry: std::path::PathBuf,
    statement: std::path::PathBuf,
}

impl Farm {
    fn new() -> Farm {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.wat"), MODULE_WAT).unwrap();
        for name in ["farm", "rogue"] {
            cwasm()
                .arg("keygen")
                .arg(dir.path().join(name))
                .assert()
                .success();
        }
        let mut farm = Farm {
            dir,
            entry: Default::default(),
            statement: Default::default(),
        };
        cwasm()
            .arg("compile")
            .arg(farm.path("m.wat"))
            .args(["--store", &farm.store(), "--cpu", "x86-64-v1", "--sign-key"])
            .arg(farm.path("farm.key"))
            .assert()
            .success();
        farm.entry = walk(&farm.path("store"))
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .unwrap();
        farm.statement = farm.entry.with_extension("cwasm.intoto.json");
        farm
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> String {
        self.path("store").to_str().unwrap().to_string()
    }

    /// `openssl args...`, run in the farm's directory.
    fn openssl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs")
    }

    /// `cwasm verify` of the store with `key` trusted: its exit status.
    fn verify(&self, store: &str, key: &str) -> i32 {
        let out = cwasm()
            .args(["verify", "--store", store, "--trusted-key"])
            .arg(self.path(key))
            .output()
            .unwrap();
        out.status.code().unwrap()
    }
}

/// `cwasm keygen` writes a private key only its user may read, never over
/// another, and OpenSSL, which we did not write, reads it and derives the
/// same public key.
#[test]
fn keygen_writes_keys_openssl_reads() {
    use std::os::unix::fs::PermissionsExt;
    let farm = Farm::new();
    let mode = std::fs::metadata(farm.path("farm.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    cwasm()
        .arg("keygen")
        .arg(farm.path("farm"))
        .assert()
        .failure();
    let derived = farm.openssl(&["pkey", "-in", "farm.key", "-pubout"]);
    assert!(derived.status.success());
    assert_eq!(
        String::from_utf8(derived.stdout).unwrap(),
        std::fs::read_to_string(farm.path("farm.pub")).unwrap()
    );
}

/// The statement is a DSSE envelope of an in-toto statement whose subject
/// is the artifact's SHA-256, and OpenSSL verifies its signature over
/// DSSE's pre-authentication encoding (spelled out here from the spec) with
/// the farm's public key, and no other, and not over a changed message.
#[test]
fn openssl_verifies_the_statement_of_a_signed_entry() {
    use base64::Engine as _;
    use base64::prelude::BASE64_STANDARD;
    let farm = Farm::new();
    let artifact = std::fs::read(&farm.entry).unwrap();
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&farm.statement).unwrap()).unwrap();
    let payload_type = "application/vnd.in-toto+json";
    assert_eq!(envelope["payloadType"], payload_type);
    let payload = BASE64_STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        hex(&common::sha256(&artifact)).as_str()
    );
    assert_eq!(statement["predicate"]["producer"]["profile"], "x86-64-v1");
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(&payload);
    let sig = BASE64_STANDARD
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    std::fs::write(farm.path("pae.bin"), &pae).unwrap();
    std::fs::write(farm.path("sig.bin"), &sig).unwrap();
    let verify = |key: &str| {
        farm.openssl(&[
            "pkeyutl", "-verify", "-pubin", "-inkey", key, "-rawin", "-in", "pae.bin", "-sigfile",
            "sig.bin",
        ])
        .status
        .success()
    };
    assert!(verify("farm.pub"), "OpenSSL rejects the farm's signature");
    assert!(!verify("rogue.pub"));
    pae[20] ^= 1;
    std::fs::write(farm.path("pae.bin"), &pae).unwrap();
    assert!(!verify("farm.pub"), "OpenSSL accepts a changed message");
}

/// Hosts verify with the farm's public key (`verify`, `inspect`), and
/// refuse another's; keys OpenSSL made sign and verify too.
#[test]
fn hosts_verify_with_the_farms_public_key_only() {
    let farm = Farm::new();
    assert_eq!(farm.verify(&farm.store(), "farm.pub"), 0);
    let out = cwasm()
        .args(["verify", "--store", &farm.store(), "--trusted-key"])
        .arg(farm.path("rogue.pub"))
        .assert()
        .code(3);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("no signature by a trusted key"), "{text}");
    let shown = json(
        cwasm()
            .arg("inspect")
            .arg(&farm.entry)
            .arg("--trusted-key")
            .arg(farm.path("farm.pub"))
            .arg("--json"),
    );
    assert_eq!(
        shown["statement"]["provenance"]["producer"]["wasmtime"],
        "48.0.8"
    );
    assert!(shown["statement"]["verified_by"].is_string(), "{shown}");
    cwasm()
        .arg("inspect")
        .arg(&farm.entry)
        .arg("--trusted-key")
        .arg(farm.path("rogue.pub"))
        .assert()
        .failure();

    let genpkey = farm.openssl(&["genpkey", "-algorithm", "ed25519", "-out", "o.key"]);
    assert!(genpkey.status.success());
    let pubout = farm.openssl(&["pkey", "-in", "o.key", "-pubout", "-out", "o.pub"]);
    assert!(pubout.status.success());
    let other = farm.path("other");
    let other = other.to_str().unwrap();
    cwasm()
        .arg("compile")
        .arg(farm.path("m.wat"))
        .args(["--store", other, "--sign-key"])
        .arg(farm.path("o.key"))
        .assert()
        .success();
    assert_eq!(farm.verify(other, "o.pub"), 0);
    assert_eq!(farm.verify(other, "farm.pub"), 3);
}

/// Provenance: `ls` counts entries by producer, and `gc --produced-by`
/// removes a release's entries, statements included.
#[test]
fn gc_removes_the_entries_of_a_release() {
    let farm = Farm::new();
    let store = farm.store();
    assert!(stdout(cwasm().args(["ls", "--store", &store])).contains("1 by 48.0.8"));
    let gc = |req: &str| stdout(cwasm().args(["gc", "--store", &store, "--produced-by", req]));
    assert!(gc("<48.0.8").contains("removed 0 entries"));
    assert!(gc("<49").contains("removed 1 entries"));
    assert!(!farm.entry.exists() && !farm.statement.exists());
}
