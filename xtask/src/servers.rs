//! The real servers the remote backends are tested against, each installed
//! from a package registry into `target/` on first use and started on a
//! free loopback port for the duration of the tests (or benchmarks):
//!
//! | server | what it stands for | installed from |
//! |---|---|---|
//! | moto | S3 | the Python package registry |
//! | gcp-storage-emulator | Google Cloud Storage | the Python package registry |
//! | Azurite | Azure Blob Storage | the npm registry |
//! | distribution (`docker-registry`) | an OCI registry without the referrers API | the Debian archive |
//! | go-containerregistry's registry | an OCI registry with the referrers API | the Debian archive (Go source, built here with Debian's Go) |
//!
//! [`Servers::env`] is how the tests find them: a URL per backend, the
//! client settings each needs, and `CWASM_REQUIRE_SERVERS=1`, so that a
//! test that finds no server fails instead of skipping.

use crate::tools::pip_install;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const MOTO: &str = "moto[server]==5.2.5";
const GCS_EMULATOR: &str = "gcp-storage-emulator==2026.7.19";
const AZURITE: &str = "azurite@3.35.0";
/// distribution 2.8, Debian's `docker-registry`: the OCI distribution API
/// without the referrers API (so clients use the referrers tag schema).
const REGISTRY: &str = "docker-registry=2.8.2+ds1-1";
/// go-containerregistry's registry (`pkg/registry`, what `crane registry
/// serve` runs), which has the OCI 1.1 referrers API (switched on below).
/// Debian ships it only as Go source, and only from trixie on: it is
/// fetched from that suite of the archive this machine's apt already uses,
/// with the Go toolchain of the same suite, and built here.
const GGCR: &str = "golang-github-google-go-containerregistry-dev=0.20.1+ds1-1";
const GGCR_GO: [&str; 2] = ["golang-1.24-go", "golang-1.24-src"];
const GGCR_SUITE: &str = "trixie";
/// The registry's `main`: the package's handler on a given address, with
/// the referrers API on; prints nothing, logs each request.
const GGCR_MAIN: &str = r#"package main

import (
	"log"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	handler := registry.New(registry.WithReferrersSupport(true))
	log.Fatal(http.ListenAndServe(os.Args[1], handler))
}
"#;
/// The bucket (S3, GCS) or container (Azure) the tests use.
const BUCKET: &str = "cwasm-test";
/// The GCS emulator's bucket: `object_store` percent-encodes the whole
/// path, and the emulator does not decode a bucket name (`cwasm%2Dtest`).
const GCS_BUCKET: &str = "cwasmtest";
/// Azurite's well-known development account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A server to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Server {
    S3,
    Gcs,
    Azure,
    /// distribution 2.8: no referrers API.
    Registry,
    /// go-containerregistry's registry: the referrers API.
    Ggcr,
}

impl Server {
    pub(crate) const ALL: [Server; 5] = [
        Server::S3,
        Server::Gcs,
        Server::Azure,
        Server::Registry,
        Server::Ggcr,
    ];
}

/// Running servers; dropping this stops them.
pub(crate) struct Servers {
    children: Vec<Child>,
    env: Vec<(String, String)>,
}

impl Servers {
    /// Installs what is missing (in parallel: each is a download), then
    /// starts `which` and waits until each answers.
    pub(crate) fn start(root: &Path, which: &[Server]) -> Result<Servers> {
        std::fs::create_dir_all(root.join("target"))?;
        std::thread::scope(|s| {
            let installs: Vec<_> = which
                .iter()
                .map(|&server| s.spawn(move || install(root, server)))
                .collect();
            installs
                .into_iter()
                .try_for_each(|i| i.join().unwrap_or_else(|_| bail!("an install panicked")))
        })?;
        let mut servers = Servers {
            children: Vec::new(),
            env: vec![("CWASM_REQUIRE_SERVERS".into(), "1".into())],
        };
        for &server in which {
            let port = free_port()?;
            let (child, env) = match server {
                Server::S3 => start_moto(root, port)?,
                Server::Gcs => start_gcs(root, port)?,
                Server::Azure => start_azurite(root, port)?,
                Server::Registry => start_registry(root, port)?,
                Server::Ggcr => start_ggcr(root, port)?,
            };
            servers.children.push(child);
            servers
                .env
                .extend(env.into_iter().map(|(k, v)| (k.to_string(), v)));
        }
        Ok(servers)
    }

    /// What the tests read to find the servers.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `cargo xtask servers`: every server, until interrupted.
pub(crate) fn serve(root: &Path) -> Result<()> {
    let servers = Servers::start(root, &Server::ALL)?;
    println!("# The servers are up; in another shell:");
    for (key, value) in servers.env() {
        println!("export {key}='{value}'");
    }
    println!("# Ctrl-C stops them.");
    loop {
        std::thread::park();
    }
}

fn install(root: &Path, server: Server) -> Result<()> {
    match server {
        Server::S3 if !moto(root).exists() => pip_install(&root.join("target/moto-venv"), MOTO),
        Server::Gcs if !gcs_emulator(root).exists() => {
            pip_install(&root.join("target/gcs-venv"), GCS_EMULATOR)
        }
        Server::Azure if !azurite(root).exists() => {
            let prefix = root.join("target/azurite");
            crate::cmd::run(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                    .arg(&prefix)
                    .arg(AZURITE),
            )
            .context("installing Azurite from the npm registry (needs npm)")
        }
        Server::Registry if !registry(root).exists() => install_registry(root),
        Server::Ggcr if !ggcr(root).exists() => install_ggcr(root),
        _ => Ok(()),
    }
}

fn moto(root: &Path) -> PathBuf {
    root.join("target/moto-venv/bin/moto_server")
}

fn gcs_emulator(root: &Path) -> PathBuf {
    root.join("target/gcs-venv/bin/gcp-storage-emulator")
}

fn azurite(root: &Path) -> PathBuf {
    root.join("target/azurite/node_modules/.bin/azurite-blob")
}

fn registry(root: &Path) -> PathBuf {
    root.join("target/registry/pkg/usr/bin/docker-registry")
}

/// The Debian package, downloaded (not installed: no root needed) and
/// unpacked into `target/registry/pkg`; the binary is static.
fn install_registry(root: &Path) -> Result<()> {
    let dir = root.join("target/registry");
    std::fs::create_dir_all(&dir)?;
    crate::cmd::run(
        Command::new("apt-get")
            .current_dir(&dir)
            .args(["download", REGISTRY]),
    )
    .context("downloading the registry from the Debian archive (needs apt-get)")?;
    let deb = std::fs::read_dir(&dir)?
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    crate::cmd::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(dir.join("pkg")),
    )?;
    std::fs::remove_file(deb)?;
    Ok(())
}

fn ggcr(root: &Path) -> PathBuf {
    root.join("target/ggcr/registry")
}

/// Downloads the registry's source and a Go toolchain from the
/// [`GGCR_SUITE`] suite (apt's own state untouched: a private sources
/// list, package lists and cache under `target/ggcr/apt`), unpacks them,
/// and builds [`GGCR_MAIN`] against the source, offline (GOPATH mode, no
/// module proxy).
fn install_ggcr(root: &Path) -> Result<()> {
    let dir = root.join("target/ggcr");
    let _ = std::fs::remove_dir_all(&dir);
    let apt = dir.join("apt");
    for sub in ["lists/partial", "archives/partial", "parts"] {
        std::fs::create_dir_all(apt.join(sub))?;
    }
    let sources = apt.join("sources.list");
    std::fs::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {GGCR_SUITE} main\n",
            debian_archive()?
        ),
    )?;
    let apt_get = |args: &[&str]| -> Result<()> {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(&apt)
            .args(["-q", "-o", "APT::Sandbox::User=root"]);
        for (key, value) in [
            ("Dir::Etc::SourceList", sources.clone()),
            ("Dir::Etc::SourceParts", apt.join("parts")),
            ("Dir::State::Lists", apt.join("lists")),
            ("Dir::Cache", apt.clone()),
            ("Dir::State::status", PathBuf::from("/dev/null")),
        ] {
            cmd.arg("-o").arg(format!("{key}={}", value.display()));
        }
        crate::cmd::run(cmd.args(args))
    };
    apt_get(&["update"]).context("reading the Debian archive's package lists")?;
    apt_get(&["download", GGCR, GGCR_GO[0], GGCR_GO[1]])
        .context("downloading go-containerregistry and Go from the Debian archive")?;
    let pkg = dir.join("pkg");
    for deb in std::fs::read_dir(&apt)? {
        let deb = deb?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            crate::cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&pkg))?;
        }
    }
    let goroot = std::fs::read_dir(pkg.join("usr/lib"))?
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.join("bin/go").exists())
        .context("the Go package has no bin/go")?;
    let gopath = dir.join("gopath");
    let main = gopath.join("src/cwasm-ggcr-registry");
    std::fs::create_dir_all(&main)?;
    std::fs::write(main.join("main.go"), GGCR_MAIN)?;
    std::os::unix::fs::symlink(
        pkg.join("usr/share/gocode/src/github.com"),
        gopath.join("src/github.com"),
    )?;
    crate::cmd::run(
        Command::new(goroot.join("bin/go"))
            .args(["build", "-o"])
            .arg(ggcr(root))
            .arg("cwasm-ggcr-registry")
            .env("GOROOT", &goroot)
            .env("GOPATH", &gopath)
            .env("GOCACHE", dir.join("gocache"))
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOENV", "off")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOTELEMETRY", "off")
            .env("CGO_ENABLED", "0"),
    )
    .context("building go-containerregistry's registry")?;
    // Only the binary is needed from now on.
    for sub in ["apt", "pkg", "gopath", "gocache"] {
        std::fs::remove_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// The Debian archive this machine's apt reads its main suite from (as
/// apt itself reports it): the same archive, another suite.
fn debian_archive() -> Result<String> {
    let targets = crate::cmd::output(Command::new("apt-get").args([
        "indextargets",
        "--format",
        "$(REPO_URI) $(RELEASE) $(IDENTIFIER)",
    ]))?;
    targets
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?, words.next()?))
        })
        .find(|(uri, release, id)| {
            *id == "Packages" && !release.contains('-') && !uri.contains("security")
        })
        .map(|(uri, _, _)| uri.to_string())
        .context("apt lists no Debian archive (`apt-get indextargets`); run `apt-get update`")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `cmd` with its output in `target/<name>.log`.
fn spawn(root: &Path, name: &str, cmd: &mut Command) -> Result<Child> {
    let log = std::fs::File::create(root.join(format!("target/{name}.log")))?;
    cmd.stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))
}

/// Retries `ready` until it succeeds, for at most a minute.
fn wait_for(name: &str, mut ready: impl FnMut() -> Result<()>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ready() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| {
                    format!("{name} did not come up within 60 s (see target/{name}.log)")
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// One HTTP/1.1 request on loopback; the status line and the rest.
fn http(port: u16, request: &str) -> Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{request}Host: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

type Env = Vec<(&'static str, String)>;

fn start_moto(root: &Path, port: u16) -> Result<(Child, Env)> {
    let child = spawn(
        root,
        "moto",
        Command::new(moto(root)).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
    )?;
    // `PUT /<bucket>`: moto accepts unsigned requests.
    wait_for("moto", || {
        let response = http(port, &format!("PUT /{BUCKET} HTTP/1.1\r\n"))?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("creating the test bucket failed: {response}");
        }
        Ok(())
    })?;
    eprintln!("S3 (moto) on 127.0.0.1:{port}, bucket `{BUCKET}`");
    Ok((
        child,
        vec![
            ("CWASM_TEST_S3_URL", format!("s3://{BUCKET}")),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ],
    ))
}

fn start_gcs(root: &Path, port: u16) -> Result<(Child, Env)> {
    let child = spawn(
        root,
        "gcs-emulator",
        Command::new(gcs_emulator(root))
            .args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--in-memory", "--default-bucket", GCS_BUCKET]),
    )?;
    wait_for("gcs-emulator", || {
        let response = http(
            port,
            &format!("GET /storage/v1/b/{GCS_BUCKET} HTTP/1.1\r\n"),
        )?;
        if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
            bail!("the test bucket is not there: {response}");
        }
        Ok(())
    })?;
    let port = gcs_proxy(port)?;
    eprintln!("GCS (gcp-storage-emulator) on 127.0.0.1:{port}, bucket `{GCS_BUCKET}`");
    Ok((
        child,
        vec![
            ("CWASM_TEST_GCS_URL", format!("gs://{GCS_BUCKET}")),
            // How `object_store` is pointed at an emulator: a service
            // account with a base URL and no OAuth.
            (
                "GOOGLE_SERVICE_ACCOUNT_KEY",
                serde_json::json!({
                    "gcs_base_url": format!("http://127.0.0.1:{port}"),
                    "disable_oauth": true,
                    "client_email": "",
                    "private_key": "",
                    "private_key_id": "",
                })
                .to_string(),
            ),
        ],
    ))
}

/// gcp-storage-emulator lacks parts of GCS's XML API that
/// `object_store` needs: it answers the listing (`GET /<bucket>?list-type=2`)
/// with 501, as it does a `DELETE`, and its answers have no `ETag` or
/// `Last-Modified`. This proxy in front of it answers the listing from the
/// emulator's JSON listing, sends a `DELETE` to the JSON API's path, adds the
/// two headers, and forwards everything else unchanged, so that reads,
/// writes and deletes are the emulator's own.
/// Returns the proxy's port; it lives as long as this process.
fn gcs_proxy(emulator: u16) -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                if let Err(e) = proxy_one(client, emulator) {
                    eprintln!("GCS listing proxy: {e:#}");
                }
            });
        }
    });
    Ok(port)
}

/// One request: a listing answered here, anything else forwarded.
fn proxy_one(mut client: std::net::TcpStream, emulator: u16) -> Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let target = head.split(' ').nth(1).unwrap_or("");
    if head.starts_with("GET ")
        && let Some((bucket, query)) = target.trim_start_matches('/').split_once('?')
        && query.split('&').any(|q| q == "list-type=2")
    {
        let body = list_as_xml(emulator, bucket, query)?;
        write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    // Deleting through the XML API is 501 too: ask the JSON API (the object
    // name is already percent-encoded whole, as the JSON API wants it).
    if head.starts_with("DELETE /")
        && let Some((bucket, object)) = target.trim_start_matches('/').split_once('/')
        && !object.contains('?')
    {
        let line = format!("DELETE /storage/v1/b/{bucket}/o/{object} ");
        let old_line = format!("DELETE {target} ");
        let rewritten = head.replacen(&old_line, &line, 1);
        request.splice(..head_end, rewritten.into_bytes());
    }
    let mut server = std::net::TcpStream::connect(("127.0.0.1", emulator))?;
    server.write_all(&request)?;
    // The emulator answers HTTP/1.0 and closes: read until it does.
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    let head_end = request.len() - length.min(request.len());
    // Its answers have no `ETag` and no `Last-Modified`, which
    // `object_store` requires (GCS sends both): add them. The `ETag` is the
    // MD5 the emulator reports in `X-Goog-Hash` (GCS's for a plain object),
    // or for an upload the SHA-256 of its body.
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        let headers = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        let mut added = String::new();
        if !headers.contains("\r\netag:") {
            use sha2::Digest as _;
            let md5 = String::from_utf8_lossy(&response[..end])
                .split("\r\n")
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("x-goog-hash")
                        .then(|| v.split(',').find_map(|h| h.trim().strip_prefix("md5=")))?
                        .map(str::to_string)
                });
            let tag =
                md5.unwrap_or_else(|| format!("{:x}", sha2::Sha256::digest(&request[head_end..])));
            added += &format!("\r\nETag: \"{tag}\"");
        }
        if !headers.contains("\r\nlast-modified:") {
            added += &format!("\r\nLast-Modified: {}", rfc1123_now());
        }
        response.splice(end..end, added.into_bytes());
    }
    client.write_all(&response)?;
    Ok(())
}

/// The XML API's `ListBucketResult` for `query`, from the JSON API.
fn list_as_xml(emulator: u16, bucket: &str, query: &str) -> Result<String> {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|q| q.strip_prefix(name)?.strip_prefix('='))
            .map(percent_decode)
            .unwrap_or_default()
    };
    let (prefix, delimiter) = (param("prefix"), param("delimiter"));
    let response = http(
        emulator,
        &format!(
            "GET /storage/v1/b/{bucket}/o?prefix={}&delimiter={} HTTP/1.1\r\n",
            percent_encode(&prefix),
            percent_encode(&delimiter)
        ),
    )?;
    let (status, json) = response
        .split_once("\r\n\r\n")
        .context("no body in the JSON listing")?;
    if !status.contains(" 200 ") {
        bail!("the JSON listing failed: {status}");
    }
    let listing: serde_json::Value = serde_json::from_str(json)?;
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>{}</Name>\
         <Prefix>{}</Prefix><IsTruncated>false</IsTruncated>",
        escape(bucket),
        escape(&prefix)
    );
    for item in listing["items"].as_array().into_iter().flatten() {
        xml += &format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><Size>{}</Size></Contents>",
            escape(item["name"].as_str().unwrap_or_default()),
            item["updated"].as_str().unwrap_or_default(),
            item["size"].as_str().unwrap_or("0"),
        );
    }
    for prefix in listing["prefixes"].as_array().into_iter().flatten() {
        xml += &format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            escape(prefix.as_str().unwrap_or_default())
        );
    }
    xml += "</ListBucketResult>";
    Ok(xml)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn start_azurite(root: &Path, port: u16) -> Result<(Child, Env)> {
    let data = root.join("target/azurite-data");
    let _ = std::fs::remove_dir_all(&data);
    let child = spawn(
        root,
        "azurite",
        Command::new(azurite(root))
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&data)
            .args(["--silent", "--skipApiVersionCheck"]),
    )?;
    wait_for("azurite", || {
        let response = http(port, &create_container_request())?;
        // 201 Created; 409 if an earlier attempt created it.
        if !response.starts_with("HTTP/1.1 201") && !response.starts_with("HTTP/1.1 409") {
            bail!("creating the test container failed: {response}");
        }
        Ok(())
    })?;
    eprintln!("Azure (Azurite) on 127.0.0.1:{port}, container `{BUCKET}`");
    Ok((
        child,
        vec![
            ("CWASM_TEST_AZURE_URL", format!("az://{BUCKET}")),
            ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT.into()),
            ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY.into()),
            // Path-style, as Azurite serves it; the endpoint (not the
            // client's emulator switch) so that tests can point a client
            // at a proxy in front of it.
            (
                "AZURE_STORAGE_ENDPOINT",
                format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
            ),
            ("AZURE_ALLOW_HTTP", "true".into()),
        ],
    ))
}

/// `PUT /<account>/<container>?restype=container`, signed with the
/// account's shared key (Azurite has no unauthenticated mode).
fn create_container_request() -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let date = rfc1123_now();
    let version = "2021-08-06";
    // Verb, eleven empty standard headers, the x-ms headers in order, then
    // the resource (path-style: the account twice).
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
         /{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{BUCKET}\nrestype:container"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(AZURITE_KEY)
        .expect("the well-known key is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(to_sign.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    format!(
        "PUT /{AZURITE_ACCOUNT}/{BUCKET}?restype=container HTTP/1.1\r\n\
         x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
         Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n"
    )
}

/// Now, as an HTTP date.
fn rfc1123_now() -> String {
    rfc1123(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Seconds since the epoch as an HTTP date (`Fri, 04 Dec 2026 22:53:41 GMT`).
fn rfc1123(secs: u64) -> String {
    let (days, rest) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn start_registry(root: &Path, port: u16) -> Result<(Child, Env)> {
    let dir = root.join("target/registry");
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  \
             addr: 127.0.0.1:{port}\n",
            data.display()
        ),
    )?;
    let child = spawn(
        root,
        "registry",
        Command::new(registry(root)).arg("serve").arg(&config),
    )?;
    wait_for_registry("registry", port)?;
    eprintln!("OCI registry (distribution 2.8) on 127.0.0.1:{port}");
    Ok((
        child,
        vec![("CWASM_TEST_OCI_REGISTRY", format!("127.0.0.1:{port}"))],
    ))
}

/// Waits until the registry on `port` answers `GET /v2/` with 200.
fn wait_for_registry(name: &str, port: u16) -> Result<()> {
    wait_for(name, || {
        let response = http(port, "GET /v2/ HTTP/1.1\r\n")?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("/v2/ answered {response}");
        }
        Ok(())
    })
}

fn start_ggcr(root: &Path, port: u16) -> Result<(Child, Env)> {
    let child = spawn(
        root,
        "ggcr",
        Command::new(ggcr(root)).arg(format!("127.0.0.1:{port}")),
    )?;
    wait_for_registry("ggcr", port)?;
    eprintln!("OCI registry with the referrers API (go-containerregistry) on 127.0.0.1:{port}");
    Ok((
        child,
        vec![(
            "CWASM_TEST_OCI_REFERRERS_REGISTRY",
            format!("127.0.0.1:{port}"),
        )],
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_coding() {
        use super::{percent_decode, percent_encode};
        assert_eq!(percent_decode("run%2D1%2Fa+b%zz"), "run-1/a b%zz");
        assert_eq!(percent_encode("run-1/a b"), "run-1%2Fa%20b");
    }

    #[test]
    fn http_dates() {
        use super::rfc1123;
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc1123(951_825_600), "Tue, 29 Feb 2000 12:00:00 GMT");
        assert_eq!(rfc1123(1_796_424_821), "Fri, 04 Dec 2026 22:53:41 GMT");
    }
}
