//! Programs the tests need that a fresh machine may lack, installed from
//! the Python package registry into `target/` on first use: cmake (for the
//! C API's build script) and moto's S3 server (started on loopback).

use crate::cmd::run;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// `cmake` on this process's `PATH` (so every cargo command below finds
/// it): `wasmtime-c-api-impl`'s build script runs it to install the C
/// headers. The system's if it has one, else one installed from the Python
/// package registry into `target/tools-venv` on first use.
pub(crate) fn provide_cmake(root: &Path) -> Result<()> {
    if Command::new("cmake").arg("--version").output().is_ok() {
        return Ok(());
    }
    let venv = root.join("target/tools-venv");
    let bin = venv.join("bin");
    if !bin.join("cmake").exists() {
        pip_install(&venv, CMAKE)?;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&path));
    // SAFETY: xtask is single-threaded here; no other thread reads the
    // environment.
    unsafe { std::env::set_var("PATH", std::env::join_paths(dirs)?) };
    Ok(())
}

/// Installs `package` from the Python package registry into the virtual
/// environment `venv`, made first.
fn pip_install(venv: &Path, package: &str) -> Result<()> {
    run(Command::new("python3").arg("-m").arg("venv").arg(venv)).with_context(|| {
        format!("creating a Python virtual environment for {package} (needs python3)")
    })?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        package,
    ]))
    .with_context(|| format!("installing {package} from the Python package registry"))
}

/// The cmake the C API's build script gets where the system has none.
const CMAKE: &str = "cmake==3.31.6";

/// moto's S3 server, installed from the Python package registry into
/// `target/moto-venv` on first use and started on a free loopback port for
/// the duration of the tests.
pub(crate) struct S3Server {
    child: std::process::Child,
    port: u16,
}

const MOTO: &str = "moto[server]==5.2.5";
const TEST_BUCKET: &str = "cwasm-test";

impl S3Server {
    pub(crate) fn start(root: &Path) -> Result<S3Server> {
        let venv = root.join("target/moto-venv");
        let server = venv.join("bin/moto_server");
        if !server.exists() {
            pip_install(&venv, MOTO)?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(root.join("target/moto.log"))?;
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting moto_server")?;
        let server = S3Server { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match server.create_bucket() {
                Ok(()) => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(e).context("moto did not come up within 60s (see target/moto.log)");
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
        eprintln!("S3 (moto) listening on 127.0.0.1:{port}, bucket `{TEST_BUCKET}`");
        Ok(server)
    }

    /// `PUT /<bucket>`: moto accepts unsigned requests.
    fn create_bucket(&self) -> Result<()> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        write!(
            stream,
            "PUT /{TEST_BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("creating the test bucket failed: {response}");
        }
        Ok(())
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("CWASM_TEST_S3_URL", format!("s3://{TEST_BUCKET}")),
            ("CWASM_REQUIRE_S3", "1".into()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
