//! Helpers shared by the store's integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use cwasm_store::CacheConfig;
use std::time::Duration;
use wasmtime::{Engine, Instance, Module, Store};

/// A module whose export `answer` returns `n`.
pub fn wasm(n: i32) -> Vec<u8> {
    format!("(module (func (export \"answer\") (result i32) i32.const {n}))").into_bytes()
}

/// Instantiates `module` and calls its `answer`.
pub fn call(engine: &Engine, module: &Module) -> i32 {
    let mut store = Store::new(engine, ());
    let instance = Instance::new(&mut store, module, &[]).unwrap();
    let f = instance
        .get_typed_func::<(), i32>(&mut store, "answer")
        .unwrap();
    f.call(&mut store, ()).unwrap()
}

/// The process's peak resident memory so far, in bytes (Linux's `VmHWM`).
pub fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// 256 MiB of zeros as one zstd frame: a few kilobytes.
pub fn zstd_bomb_frame() -> Vec<u8> {
    use std::io::Write;
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.finish().unwrap()
}

/// wasmtime's default cache settings, but with eviction due at every put.
pub fn due_at_every_put() -> CacheConfig {
    let mut cache = CacheConfig::new();
    cache.with_cleanup_interval(Duration::ZERO);
    cache
}

/// A child process that is killed (and reaped) when this is dropped, so a
/// failing test never leaves its children running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the proxy does to each connection.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Accepts, then closes at once.
    Drop,
    /// Accepts and reads, but never answers.
    Stall,
    /// Forwards the request, and only the first 100 bytes of the answer.
    Truncate,
}

/// A TCP proxy on loopback in front of a server, injecting `fault`.
/// Returns its address; it lives until the process ends.
pub fn faulty_proxy(upstream: std::net::SocketAddr, fault: Fault) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            std::thread::spawn(move || match fault {
                Fault::Drop => drop(client),
                Fault::Stall => {
                    let mut buf = [0; 4096];
                    let _ = client.set_read_timeout(Some(std::time::Duration::from_secs(60)));
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                }
                Fault::Truncate => {
                    let Ok(mut server) = std::net::TcpStream::connect(upstream) else {
                        return;
                    };
                    let _ = client.set_read_timeout(Some(std::time::Duration::from_millis(300)));
                    let mut request = Vec::new();
                    let mut buf = [0; 65536];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        request.extend_from_slice(&buf[..n]);
                    }
                    let _ = server.write_all(&request);
                    let mut answer = [0; 100];
                    let n = server.read(&mut answer).unwrap_or(0);
                    let _ = client.write_all(&answer[..n]);
                }
            });
        }
    });
    addr
}

/// The time limits of the fault tests: 3 s a call, then 60 s skipped.
pub fn fault_options() -> cwasm_store::RemoteOptions {
    cwasm_store::RemoteOptions {
        timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        skip_after_failure: Duration::from_secs(60),
    }
}

/// For each fault, three lookups of `wasm(n)` through the store
/// `behind(proxy address)` makes (with [`fault_options`]), a proxy injecting
/// the fault in front of `upstream`: all compile; the timeout bounds the
/// first, and the skip makes the others free.
pub fn faults_cost_a_bounded_time(
    engine: &Engine,
    n: i32,
    upstream: std::net::SocketAddr,
    behind: impl Fn(std::net::SocketAddr) -> wasmtime::Result<cwasm_store::ArtifactStore>,
) -> wasmtime::Result<()> {
    for fault in [Fault::Drop, Fault::Stall, Fault::Truncate] {
        let store = behind(faulty_proxy(upstream, fault))?;
        for round in 0..3 {
            let start = std::time::Instant::now();
            let m = store.get_or_compile_module(engine, &wasm(n))?;
            assert_eq!(call(engine, &m), n);
            let took = start.elapsed();
            eprintln!("{fault:?}, lookup {round}: {took:?}");
            let bound = if round == 0 { 10 } else { 1 };
            assert!(took < Duration::from_secs(bound), "{fault:?}: {took:?}");
        }
        assert_eq!(store.stats().compiles, 3, "{fault:?}: {:?}", store.stats());
    }
    Ok(())
}

/// The server a test needs, from the variable `cargo xtask test` sets
/// (`var`): its value, or `None` (and a note) when it is not set, unless
/// `CWASM_REQUIRE_SERVERS` is set, which makes that a failure.
pub fn server(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) => Some(value),
        Err(_) if std::env::var_os("CWASM_REQUIRE_SERVERS").is_some() => {
            panic!("CWASM_REQUIRE_SERVERS is set but {var} is not")
        }
        Err(_) => {
            eprintln!("skipped: no {what} (run `cargo xtask test`)");
            None
        }
    }
}
