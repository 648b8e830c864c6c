//! Helpers for the ops tests that the shared harness does not have: the real `outpost` binary
//! as a child process, temporary config files, raw TCP exchanges, metric parsing, promtool and
//! an HTTPS origin.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{self, Resp};

pub const BIN: &str = env!("CARGO_BIN_EXE_outpost");

// ---------------------------------------------------------------------------------------------
// Files and ports

/// A file under the system temp dir with a name no other test (or run) uses; removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(stem: &str, contents: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "outpost-ops-{}-{}-{nanos}-{stem}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).expect("write temp config");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn shown(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory under the system temp dir (not created), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "outpost-dir-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    // The kernel may hand out a port it just handed out once the probe socket is closed:
    // two calls for one node's listeners then named the same port. None is given twice.
    static GIVEN: Mutex<std::collections::BTreeSet<u16>> =
        Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..10_000 {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind for a free port");
        let port = listener.local_addr().expect("addr").port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
    panic!("every free port was handed out once already");
}

/// A loopback port that was free for both UDP and TCP a moment ago (DNS servers bind both).
pub fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// Text a child wrote so far on one stream, read by a background thread.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    pub fn text(&self) -> String {
        self.0.lock().expect("captured").clone()
    }

    fn spawn_reader(&self, mut from: impl Read + Send + 'static) {
        let into = self.0.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .expect("captured")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
}

/// An `outpost` child process, killed (by its pid) if the test ends before it exits.
pub struct Outpost {
    child: Child,
    pub stdout: Captured,
    pub stderr: Captured,
    exited: Option<ExitStatus>,
}

impl Outpost {
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stdout = Captured::default();
        let stderr = Captured::default();
        stdout.spawn_reader(child.stdout.take().expect("stdout"));
        stderr.spawn_reader(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status if the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Panics (with the child's stderr) if the process has already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_exit() {
            panic!(
                "outpost exited early with {status}\nstdout:\n{}\nstderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            );
        }
    }

    /// `kill -TERM <pid>`.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// `kill -<signal> <pid>` (`STOP`, `CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// `kill -KILL <pid>`: gone at once, no drain.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }

    /// Wait (polling, bounded) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "outpost did not exit within {limit:?}\nstderr:\n{}",
                self.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident set size in bytes, from `/proc/<pid>/status`.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in:\n{status}"));
        kib * 1024
    }
}

impl Drop for Outpost {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `outpost ARGS` to completion: (exit code, stdout, stderr).
pub fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Wait until a plain GET to `addr` for `host` gets an HTTP response, and return it.
pub async fn wait_answering(child: &mut Outpost, addr: SocketAddr, path: &str, host: &str) -> Resp {
    let start = Instant::now();
    loop {
        child.assert_running();
        let attempt = harness::try_send(addr, Method::GET, path, host, &[], Bytes::new());
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
            return response;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "outpost never answered on {addr}\nstderr:\n{}",
            child.stderr.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Admin and metrics

/// `POST /purge` on an admin address.
pub async fn purge(admin: SocketAddr, token: Option<&str>, body: &str) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    harness::send(
        admin,
        Method::POST,
        "/purge",
        "admin",
        &headers,
        Bytes::from(body.to_owned()),
    )
    .await
}

pub async fn admin_get(admin: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    harness::send(admin, Method::GET, path, "admin", headers, Bytes::new()).await
}

/// Value of the sample named exactly `sample` (name plus label set) in a text exposition.
pub fn sample(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    })
}

/// Like [`sample`], panicking with the page when the sample is missing.
pub fn must_sample(text: &str, name: &str) -> f64 {
    sample(text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// The path of `promtool`, or `None` (with a note) when it is missing outside CI. In CI a
/// missing promtool fails the test.
pub fn promtool() -> Option<PathBuf> {
    tool("promtool")
}

/// The path of an installed program (on PATH, or in the sbin directories where Debian puts
/// daemons such as dnsmasq), or `None` (with a note) when it is missing outside CI. In CI
/// (`CI` set) a missing program fails the test: `.ci/run` installs it.
pub fn tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    match dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("{name} is required in CI (CI is set) but is not installed")
        }
        None => {
            // Straight to stderr, past the test harness's capture (which takes the print
            // macros only): a skipped test is seen in `cargo test`'s output.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {} needs `{name}`, not installed (Debian package: {}; .ci/run installs it)",
                std::thread::current().name().unwrap_or("a test"),
                package_of(name)
            );
            None
        }
    }
}

/// The Debian package a test tool comes from.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "promtool" => "prometheus",
        "dnsmasq" => "dnsmasq-base",
        "pdns_server" | "pdnsutil" => "pdns-server, pdns-backend-bind",
        "dig" => "bind9-dnsutils",
        "tmux" => "tmux",
        "curl" => "curl",
        _ => "see .ci/run",
    }
}

/// Pipe `text` into `promtool check metrics`: (exit code, combined output).
pub fn promtool_check(promtool: &Path, text: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let mut shown = String::from_utf8_lossy(&out.stdout).into_owned();
    shown.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), shown)
}

// ---------------------------------------------------------------------------------------------
// Raw TCP

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Status line and header lines, as received.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Value of the first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Write `request` on a fresh connection and read until the server closes it (or 10 s pass),
/// then parse the first response. A reset after the response arrived is tolerated: servers
/// that refuse a request with unread input in their buffers close with RST.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may refuse (and close) before it has read everything.
    let _ = stream.write_all(request).await;
    let (got, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    parse_raw(&got)
}

pub fn parse_raw(got: &[u8]) -> RawResponse {
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(got)
            )
        });
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    RawResponse {
        status,
        head,
        body: got[end + 4..].to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTPS origin

/// An HTTPS origin on loopback with the test `origin.pem` (valid for 127.0.0.1) that answers
/// every request with `body` and `Cache-Control: max-age=60`, counting requests.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsOrigin {
    pub async fn start(body: &'static str) -> Self {
        let tls = harness::fixtures().join("tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls.join("origin.pem"))
                .expect("origin.pem")
                .collect::<Result<_, _>>()
                .expect("origin.pem certs");
        let key = PrivateKeyDer::from_pem_file(tls.join("origin.key")).expect("origin.key");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |_req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let mut response = Response::new(Full::new(Bytes::from(body)));
                            response.headers_mut().insert(
                                http::header::CACHE_CONTROL,
                                http::HeaderValue::from_static("max-age=60"),
                            );
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw origins

/// Read from `stream` until a request head is in (`None` if it closes first); the bytes read.
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// Read from `stream` until the peer closes it (a reset after an answer counts as closed),
/// at most `within`: what arrived, and whether it closed in time.
pub async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, read).await.is_ok();
    (got, closed)
}

/// What [`answers_once`] does after its first answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Accept connections and never answer.
    Hang,
    /// Stop listening: connections are refused.
    Refuse,
}

/// An origin that answers its first request with `first` (which should close the
/// connection), then hangs or refuses.
pub async fn answers_once(first: &'static str, then: Then) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut first = Some(first);
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            match first.take() {
                Some(response) => {
                    let _ = stream.write_all(response.as_bytes()).await;
                    if then == Then::Refuse {
                        // The listener goes with the task: the port refuses from now on.
                        return;
                    }
                }
                None => held.push(stream),
            }
        }
    });
    addr
}

/// A TCP origin that reads each request head, answers with fixed bytes (typically a head and
/// part of the body it announces) and closes the connection, counting requests.
pub struct CutOrigin {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CutOrigin {
    pub async fn start(response: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let response = Arc::new(response);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                let response = response.clone();
                tokio::spawn(async move {
                    if read_head(&mut stream).await.is_none() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(&response).await;
                    let _ = stream.flush().await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
