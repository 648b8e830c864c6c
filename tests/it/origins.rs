//! Origins as an operator runs them: names that follow DNS, connection limits and the queue in
//! front of them, idle connections closed, HTTP/2 by configuration or ALPN, resets retried
//! (never for a POST), and the per-server metrics that show all of it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::dns_server::{DnsServer, Record, TYPE_AAAA};
use crate::harness::*;

/// An origin that counts its connections and requests, can hold requests until released
/// (`/hold/...`), and answers with its name.
struct Backend {
    addr: SocketAddr,
    state: Arc<State>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    accepted: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    versions: Mutex<Vec<Version>>,
    /// The server name each TLS client sent.
    sni: Mutex<Vec<Option<String>>>,
    closed: Notify,
    arrived: Notify,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, name, None)
    }

    fn serve(listener: TcpListener, name: &'static str, tls: Option<rustls::ServerConfig>) -> Self {
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let (release, gate) = watch::channel(false);
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, gate, acceptor) = (shared.clone(), gate.clone(), acceptor.clone());
                tokio::spawn(async move {
                    state.accepted.fetch_add(1, Ordering::SeqCst);
                    let open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
                    state.max_open.fetch_max(open, Ordering::SeqCst);
                    let service = {
                        let state = state.clone();
                        service_fn(move |request| {
                            answer(request, name, state.clone(), gate.clone())
                        })
                    };
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                                state.sni.lock().expect("sni").push(sni);
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                    }
                    state.open.fetch_sub(1, Ordering::SeqCst);
                    state.closed.notify_waiters();
                });
            }
        });
        Self {
            addr,
            state,
            release,
            task,
        }
    }

    fn url(&self, host: &str) -> String {
        format!("http://{host}:{}", self.addr.port())
    }

    /// Let every held request (and every later one) answer.
    fn release(&self) {
        let _ = self.release.send(true);
    }

    fn versions(&self) -> Vec<Version> {
        self.state.versions.lock().expect("versions").clone()
    }

    fn requests(&self) -> usize {
        self.versions().len()
    }

    /// Wait (bounded) until this backend has received `n` requests in all.
    async fn wait_requests(&self, n: usize) {
        let wait = async {
            loop {
                let arrived = self.state.arrived.notified();
                if self.requests() >= n {
                    return;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap_or_else(|_| panic!("backend saw {} requests, not {n}", self.requests()));
    }
}

async fn answer(
    request: Request<Incoming>,
    name: &'static str,
    state: Arc<State>,
    mut gate: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
    state
        .versions
        .lock()
        .expect("versions")
        .push(request.version());
    state.arrived.notify_waiters();
    let path = request.uri().path().to_owned();
    if path.starts_with("/hold") {
        let _ = gate.wait_for(|open| *open).await;
    } else if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A large body for held requests shows a drained connection delivers all of it.
    let body = if path.starts_with("/hold") {
        name.repeat(100_000)
    } else {
        name.to_owned()
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(Response::builder()
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}

fn config(servers: &[String], origin_extra: &str, extra: &str) -> String {
    long_form_config(servers, origin_extra, extra)
}

/// Backend "O" on 127.0.0.1, its URL, and a node whose one origin server it is, with
/// `origin_extra` in `[site.origin]`.
async fn behind_one_backend(origin_extra: &str) -> (Backend, String, Node) {
    let origin = Backend::start("O").await;
    let server = origin.url("127.0.0.1");
    let node = Node::start(&config(std::slice::from_ref(&server), origin_extra, "")).await;
    (origin, server, node)
}

fn server_metric(name: &str, server: &str, more: &str) -> String {
    format!("outpost_{name}{{site=\"test\",server=\"{server}\"{more}}}")
}

/// Bind `ip:port`, for a second origin on another loopback address with the same port.
async fn bind_same_port(ip: &str, port: u16) -> Option<TcpListener> {
    TcpListener::bind(format!("{ip}:{port}")).await.ok()
}

/// Two origins on one port, at 127.0.0.1 ("A") and 127.0.0.2 ("B").
async fn two_addresses() -> (Backend, Backend) {
    for _ in 0..20 {
        let a = Backend::start("A").await;
        if let Some(listener) = bind_same_port("127.0.0.2", a.addr.port()).await {
            return (a, Backend::serve(listener, "B", None));
        }
    }
    panic!("cannot bind 127.0.0.2 next to 127.0.0.1 (the loopback /8 is needed)");
}

#[tokio::test]
async fn an_origin_name_follows_dns_and_a_removed_address_is_drained() {
    // Two origins on one port, on two loopback addresses; DNS names one at a time.
    let (a, _b) = two_addresses().await;
    let dns = DnsServer::start(1).await;
    dns.set(
        "origin.test",
        vec![Record::A("127.0.0.1".parse().expect("ip"))],
    );
    let server = a.url("origin.test");
    let dns_table = format!(
        "[dns]\nservers = [\"{}\"]\nmin_ttl = \"1s\"\nmax_ttl = \"1s\"\n",
        dns.addr
    );
    let node = Node::start(&config(std::slice::from_ref(&server), "", &dns_table)).await;
    let first = get(&node, "/x").await;
    assert_eq!((first.status.as_u16(), first.text()), (200, "A".into()));
    assert_eq!(
        a.state.open.load(Ordering::SeqCst),
        1,
        "the connection is pooled"
    );

    // A long response is under way on A when DNS moves the name to B.
    let held = tokio::spawn({
        let http = node.http;
        async move {
            send(
                http,
                Method::GET,
                "/hold/1",
                "example.test",
                &[],
                Bytes::new(),
            )
            .await
        }
    });
    a.wait_requests(2).await;
    dns.set(
        "origin.test",
        vec![Record::A("127.0.0.2".parse().expect("ip"))],
    );
    eventually("traffic to move to B", || async {
        let response = get(&node, "/x").await;
        assert_eq!(response.status, 200, "{}", response.cache_status());
        response.text() == "B"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(get(&node, "/x").await.text(), "B", "traffic follows DNS");
    }
    // The drained address finishes what it started, every byte of it.
    a.release();
    let held = held.await.expect("held request");
    assert_eq!(held.status, 200);
    assert_eq!(held.body.len(), 100_000);
    assert!(held.body.iter().all(|&c| c == b'A'));
    // Its pool went with it: the connections to A close once their requests are done.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let closed = a.state.closed.notified();
            if a.state.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    })
    .await
    .expect("connections to the removed address closed");

    let authority = server.trim_start_matches("http://");
    let refreshes = server_metric("origin_dns_refreshes_total", authority, "");
    assert!(node.metric(&refreshes).await >= 2.0);
    let addresses = server_metric("origin_server_addresses", authority, "");
    assert_eq!(node.metric(&addresses).await, 1.0);

    // DNS breaks: the last good address stays in use, and the failure is counted.
    dns.set("origin.test", vec![]);
    let failures = server_metric("origin_dns_failures_total", authority, "");
    eventually("a failed DNS refresh is counted", || async {
        node.metric(&failures).await >= 1.0
    })
    .await;
    assert_eq!(get(&node, "/x").await.text(), "B");
    node.stop().await;
}

#[tokio::test]
async fn max_connections_bounds_the_connections_and_the_rest_wait_their_turn() {
    let (origin, server, node) = behind_one_backend("max_connections = 4").await;
    let started = Instant::now();
    let responses = futures_util::future::join_all((0..24).map(|i| {
        let node = &node;
        async move { get(node, &format!("/slow/{i}")).await }
    }))
    .await;
    let took = started.elapsed();
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.cache_status());
    }
    assert_eq!(origin.requests(), 24);
    assert_eq!(origin.state.max_open.load(Ordering::SeqCst), 4);
    assert_eq!(
        origin.state.accepted.load(Ordering::SeqCst),
        4,
        "kept alive"
    );
    assert_eq!(origin.state.max_in_flight.load(Ordering::SeqCst), 4);
    // 24 requests of 100 ms, 4 at a time: 6 rounds.
    assert!(took >= Duration::from_millis(590), "{took:?}");

    let authority = server.trim_start_matches("http://");
    let open = server_metric("origin_server_connections", authority, ",state=\"open\"");
    let idle = server_metric("origin_server_connections", authority, ",state=\"idle\"");
    assert_eq!(node.metric(&open).await, 4.0);
    eventually("every connection idle again", || async {
        node.metric(&idle).await == 4.0
    })
    .await;
    let requests = server_metric("origin_server_requests_total", authority, "");
    assert_eq!(node.metric(&requests).await, 24.0);
    let latency = server_metric(
        "origin_server_response_duration_seconds_count",
        authority,
        "",
    );
    assert_eq!(node.metric(&latency).await, 24.0);
    node.stop().await;
}

/// An origin behind `max_connections = 1`, `queue = 1`; and the queue gauge's sample name.
async fn one_slot_and_one_queued() -> (Backend, Node, String) {
    let extra = "max_connections = 1\nqueue = 1\nqueue_timeout = \"10s\"";
    let (origin, server, node) = behind_one_backend(extra).await;
    let authority = server.trim_start_matches("http://");
    let queued = server_metric("origin_server_queued_requests", authority, "");
    (origin, node, queued)
}

#[tokio::test]
async fn a_full_queue_or_a_long_wait_answers_503_origin_busy() {
    let (origin, node, queued) = one_slot_and_one_queued().await;
    let http = node.http;
    let spawn = |path: &'static str| {
        tokio::spawn(async move {
            send(http, Method::GET, path, "example.test", &[], Bytes::new()).await
        })
    };
    let first = spawn("/hold/1");
    origin.wait_requests(1).await;
    let second = spawn("/hold/2");
    eventually("the second request waits in the queue", || async {
        node.metric(&queued).await == 1.0
    })
    .await;
    let started = Instant::now();
    let third = get(&node, "/hold/3").await;
    assert_eq!(third.status, 503, "{}", third.cache_status());
    assert!(
        third.cache_status().contains("detail=origin-busy"),
        "{}",
        third.cache_status()
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once"
    );
    origin.release();
    assert_eq!(first.await.expect("first").status, 200);
    assert_eq!(second.await.expect("second").status, 200);
    assert_eq!(
        origin.requests(),
        2,
        "the refused request never reached the origin"
    );
    assert_eq!(origin.state.max_open.load(Ordering::SeqCst), 1);
    let authority = origin.url("127.0.0.1").replace("http://", "");
    let overload = server_metric(
        "origin_server_errors_total",
        &authority,
        ",kind=\"overload\"",
    );
    assert_eq!(node.metric(&overload).await, 1.0);
    node.stop().await;

    // A queued request waits at most queue_timeout.
    let extra = "max_connections = 1\nqueue = 8\nqueue_timeout = \"300ms\"";
    let (origin, _, node) = behind_one_backend(extra).await;
    let http = node.http;
    let held = tokio::spawn(async move {
        send(
            http,
            Method::GET,
            "/hold/1",
            "example.test",
            &[],
            Bytes::new(),
        )
        .await
    });
    origin.wait_requests(1).await;
    let started = Instant::now();
    let waited = get(&node, "/hold/2").await;
    let took = started.elapsed();
    assert_eq!(waited.status, 503, "{}", waited.cache_status());
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    origin.release();
    assert_eq!(held.await.expect("held").status, 200);
    node.stop().await;
}

#[tokio::test]
async fn idle_origin_connections_close_after_idle_timeout() {
    let (origin, server, node) = behind_one_backend("idle_timeout = \"300ms\"").await;
    assert_eq!(get(&node, "/x").await.status, 200);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let closed = origin.state.closed.notified();
            if origin.state.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    })
    .await
    .expect("the idle connection was closed");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before idle_timeout"
    );
    let authority = server.trim_start_matches("http://");
    let open = server_metric("origin_server_connections", authority, ",state=\"open\"");
    eventually("no connection open", || async {
        node.metric(&open).await == 0.0
    })
    .await;
    // The next request opens a new one.
    assert_eq!(get(&node, "/y").await.status, 200);
    assert_eq!(origin.state.accepted.load(Ordering::SeqCst), 2);
    node.stop().await;
}

#[tokio::test]
async fn http2_always_multiplexes_requests_over_one_cleartext_connection() {
    let (origin, _, node) = behind_one_backend("http2 = \"always\"").await;
    let responses = futures_util::future::join_all((0..20).map(|i| {
        let node = &node;
        async move { get(node, &format!("/slow/{i}")).await }
    }))
    .await;
    assert!(responses.iter().all(|r| r.status == 200));
    assert_eq!(origin.versions(), vec![Version::HTTP_2; 20]);
    assert_eq!(origin.state.accepted.load(Ordering::SeqCst), 1);
    assert!(
        origin.state.max_in_flight.load(Ordering::SeqCst) > 1,
        "multiplexed"
    );
    node.stop().await;
}

fn tls_backend_config() -> rustls::ServerConfig {
    tls_backend_config_with(&[b"h2", b"http/1.1"])
}

fn tls_backend_config_with(alpn: &[&[u8]]) -> rustls::ServerConfig {
    let tls = fixtures().join("tls");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls.join("origin.pem"))
        .expect("origin.pem")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(tls.join("origin.key")).expect("origin.key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[tokio::test]
async fn over_tls_alpn_picks_http2_unless_the_site_says_never() {
    for (setting, expected) in [
        ("", Version::HTTP_2),
        ("http2 = \"auto\"", Version::HTTP_2),
        ("http2 = \"always\"", Version::HTTP_2),
        ("http2 = \"never\"", Version::HTTP_11),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = Backend::serve(listener, "T", Some(tls_backend_config()));
        let server = format!("https://127.0.0.1:{}", origin.addr.port());
        let extra = format!("{setting}\ntls = {{ ca = \"ca.pem\" }}");
        let node = Node::start(&config(&[server], &extra, "")).await;
        let responses = futures_util::future::join_all((0..4).map(|i| {
            let node = &node;
            async move { get(node, &format!("/slow/{i}")).await }
        }))
        .await;
        for response in &responses {
            assert_eq!(
                response.status,
                200,
                "{setting}: {}",
                response.cache_status()
            );
            assert_eq!(response.text(), "T");
        }
        assert_eq!(origin.versions(), vec![expected; 4], "{setting}");
        node.stop().await;
    }
}

/// Accepts connections, reads a request, and closes without answering.
async fn resetting_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if stream.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                drop(stream);
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_reset_before_the_response_is_retried_elsewhere_but_never_for_a_post() {
    let (resetting, seen) = resetting_origin().await;
    let good = Backend::start("G").await;
    let servers = [format!("http://{resetting}"), good.url("127.0.0.1")];
    let node = Node::start(&config(&servers, "balance = \"round_robin\"", "")).await;
    // Round robin starts at the resetting server for one of two requests.
    for path in ["/a", "/b"] {
        let response = get(&node, path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.cache_status());
        assert_eq!(response.text(), "G");
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "one GET met the reset and was retried"
    );
    let reset = server_metric(
        "origin_server_errors_total",
        &resetting.to_string(),
        ",kind=\"reset\"",
    );
    assert_eq!(node.metric(&reset).await, 1.0);

    // A POST is sent once: the one that meets the reset fails.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let response = send(
            node.http,
            Method::POST,
            "/form",
            "example.test",
            &[],
            Bytes::from_static(b"field=1"),
        )
        .await;
        statuses.push((response.status.as_u16(), response.cache_status().to_owned()));
    }
    statuses.sort();
    assert_eq!(statuses[0].0, 200, "{statuses:?}");
    assert_eq!(statuses[1].0, 502, "{statuses:?}");
    assert!(
        statuses[1].1.contains("detail=origin-reset"),
        "{statuses:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(good.requests(), 3);
    node.stop().await;
}

#[tokio::test]
async fn a_refused_aaaa_query_keeps_the_a_addresses() {
    let dns = DnsServer::start(1).await;
    dns.set(
        "origin.test",
        vec![Record::A("127.0.0.1".parse().expect("ip"))],
    );
    dns.refuse(TYPE_AAAA);
    by_name_through(dns.addr, "by name").await;
}

/// An origin by name resolved through the DNS server at `dns`: answered, and refreshes keep
/// succeeding on the A answer alone.
async fn by_name_through(dns: SocketAddr, body: &'static str) {
    let origin = Backend::start(body).await;
    let server = format!("http://origin.test:{}", origin.addr.port());
    let dns_table = format!("[dns]\nservers = [\"{dns}\"]\nmin_ttl = \"1s\"\nmax_ttl = \"1s\"\n");
    let node = Node::start(&config(std::slice::from_ref(&server), "", &dns_table)).await;
    let answered = get(&node, "/a").await;
    assert_eq!(answered.status, 200, "{}", answered.cache_status());
    assert_eq!(answered.text(), body);
    let refreshes = server_metric("origin_dns_refreshes_total", &server[7..], "");
    wait_until("a second DNS refresh", Duration::from_secs(10), || async {
        node.metric(&refreshes).await >= 2.0
    })
    .await;
    let failures = server_metric("origin_dns_failures_total", &server[7..], "");
    assert_eq!(node.metric(&failures).await, 0.0);
    assert_eq!(get(&node, "/b").await.text(), body);
    node.stop().await;
}

/// Whether a DNS server at `addr` answers an A query for `name` (any rcode) within 200 ms.
async fn dns_answers(addr: SocketAddr, name: &str) -> bool {
    let Ok(socket) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return false;
    };
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    if socket.send_to(&query, addr).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    let answer = tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await;
    matches!(answer, Ok(Ok(n)) if n >= 12 && buf[..2] == [0x12, 0x34])
}

/// dnsmasq serving a hosts file with no upstream answers A and refuses AAAA: the A
/// addresses must carry the origin.
#[tokio::test]
async fn a_real_dnsmasq_that_refuses_aaaa_still_gives_the_a_addresses() {
    let Some(dnsmasq) = crate::util::tool("dnsmasq") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("outpost-dnsmasq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 origin.test\n").expect("hosts file");
    // dnsmasq binds UDP and TCP; another test may take the port in between, and then it
    // exits at once: start it again on another port.
    let mut started = None;
    for _ in 0..5 {
        let port = crate::util::free_udp_and_tcp_port();
        let mut command = tokio::process::Command::new(&dnsmasq);
        if is_root() {
            // It would drop to `nobody`, who may not read the hosts file.
            command.arg("--user=root");
        }
        let mut child = command
            .arg("--keep-in-foreground")
            .args([
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--pid-file=",
            ])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .args(["--listen-address=127.0.0.1", &format!("--port={port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start dnsmasq");
        let dns_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let up = tokio::time::Instant::now();
        while up.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if dns_answers(dns_addr, "origin.test").await {
                started = Some((child, dns_addr));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if started.is_some() {
            break;
        }
    }
    let (mut child, dns_addr) = started.expect("dnsmasq answers (5 tries)");
    by_name_through(dns_addr, "via dnsmasq").await;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the tests run as root (dnsmasq then must be told to stay root).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn an_https_origin_by_name_gets_sni_and_is_verified_against_it() {
    let dns = DnsServer::start(60).await;
    dns.set(
        "origin.test",
        vec![Record::A("127.0.0.1".parse().expect("ip"))],
    );
    let dns_table = format!("[dns]\nservers = [\"{}\"]\n", dns.addr);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = Backend::serve(listener, "T", Some(tls_backend_config()));
    let server = format!("https://origin.test:{}", origin.addr.port());

    // The certificate names localhost, not origin.test: refused, with the reason.
    let node = Node::start(&config(
        std::slice::from_ref(&server),
        "tls = { ca = \"ca.pem\" }",
        &dns_table,
    ))
    .await;
    let refused = get(&node, "/a").await;
    assert_eq!(refused.status, 502);
    assert!(
        refused.cache_status().contains("detail=origin-tls"),
        "{}",
        refused.cache_status()
    );
    assert_eq!(origin.requests(), 0);
    node.stop().await;

    // tls.sni names what the certificate is for: sent and verified.
    let node = Node::start(&config(
        std::slice::from_ref(&server),
        "tls = { ca = \"ca.pem\", sni = \"localhost\" }",
        &dns_table,
    ))
    .await;
    let answered = get(&node, "/a").await;
    assert_eq!(answered.status, 200, "{}", answered.cache_status());
    assert_eq!(answered.text(), "T");
    let sni = origin.state.sni.lock().expect("sni").clone();
    assert_eq!(sni.last(), Some(&Some("localhost".to_owned())));
    let authority = server.trim_start_matches("https://");
    let tls_errors = server_metric("origin_server_errors_total", authority, ",kind=\"tls\"");
    assert_eq!(
        node.metric(&tls_errors).await,
        0.0,
        "a new node starts at zero"
    );
    node.stop().await;
}

#[tokio::test]
async fn the_hosts_of_a_wildcard_site_share_http1_connections() {
    let origin = Backend::start("O").await;
    let text = format!(
        "[node]\nname = \"edge-test\"\n[[site]]\nname = \"test\"\nhosts = [\"*.wild.test\"]\n\
         [site.origin]\nservers = [\"{}\"]\nmax_connections = 1\nqueue_timeout = \"1s\"\n",
        origin.url("127.0.0.1")
    );
    let node = Node::start(&text).await;
    for host in ["a.wild.test", "b.wild.test", "c.wild.test", "d.wild.test"] {
        let response = send(node.http, Method::GET, "/x", host, &[], Bytes::new()).await;
        assert_eq!(response.status, 200, "{host}: {}", response.cache_status());
    }
    // One connection carried every host: none waited for another host's idle connection.
    assert_eq!(origin.state.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(origin.requests(), 4);
    node.stop().await;
}

#[tokio::test]
async fn idle_connections_to_one_address_never_block_another() {
    let (a, b) = two_addresses().await;
    let dns = DnsServer::start(60).await;
    let both = ["127.0.0.1", "127.0.0.2"].map(|ip| Record::A(ip.parse().expect("ip")));
    dns.set("origin.test", both.to_vec());
    let dns_table = format!("[dns]\nservers = [\"{}\"]\n", dns.addr);
    let extra = "max_connections = 1\nqueue_timeout = \"1s\"";
    let node = Node::start(&config(&[a.url("origin.test")], extra, &dns_table)).await;
    let mut seen = Vec::new();
    for i in 0..4 {
        let response = get(&node, &format!("/{i}")).await;
        assert_eq!(response.status, 200, "{}", response.cache_status());
        seen.push(response.text());
    }
    seen.sort();
    assert_eq!(
        seen,
        ["A", "A", "B", "B"],
        "requests alternate between the addresses"
    );
    assert_eq!(a.state.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(b.state.accepted.load(Ordering::SeqCst), 1);
    node.stop().await;
}

#[tokio::test]
async fn an_https_origin_that_answers_alpn_with_http1_shares_connections_across_hosts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = Backend::serve(listener, "T", Some(tls_backend_config_with(&[b"http/1.1"])));
    let text = format!(
        "[node]\nname = \"edge-test\"\n[[site]]\nname = \"test\"\nhosts = [\"*.wild.test\"]\n\
         [site.origin]\nservers = [\"https://127.0.0.1:{}\"]\nmax_connections = 2\n\
         queue_timeout = \"1s\"\ntls = {{ ca = \"ca.pem\" }}\n",
        origin.addr.port()
    );
    let node = Node::start(&text).await;
    let http = node.http;
    let get_host = |host: &'static str| async move {
        send(http, Method::GET, "/slow/x", host, &[], Bytes::new()).await
    };
    // Before ALPN has answered, two hosts at once: two connections keyed by host.
    let (first, second) = tokio::join!(get_host("a.wild.test"), get_host("b.wild.test"));
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    // Then HTTP/1.1 is known: those connections go, and every host shares what replaces them.
    for host in ["c.wild.test", "d.wild.test", "e.wild.test"] {
        let response = get_host(host).await;
        assert_eq!(response.status, 200, "{host}: {}", response.cache_status());
    }
    assert_eq!(origin.versions(), vec![Version::HTTP_11; 5]);
    assert!(origin.state.accepted.load(Ordering::SeqCst) <= 3);
    node.stop().await;
}

#[tokio::test]
async fn a_client_leaving_the_queue_frees_its_place() {
    let (origin, node, queued) = one_slot_and_one_queued().await;
    let http = node.http;
    let post = |path: &'static str| {
        tokio::spawn(async move {
            try_send(
                http,
                Method::POST,
                path,
                "example.test",
                &[],
                Bytes::from_static(b"x"),
            )
            .await
        })
    };
    let first = post("/hold/1");
    origin.wait_requests(1).await;
    let leaving = post("/hold/2");
    eventually("the second POST is queued", || async {
        node.metric(&queued).await == 1.0
    })
    .await;
    leaving.abort();
    eventually("the queue is empty again", || async {
        node.metric(&queued).await == 0.0
    })
    .await;
    // The place it left is free: the next request waits there instead of a 503.
    let third = post("/hold/3");
    eventually("the third POST is queued", || async {
        node.metric(&queued).await == 1.0
    })
    .await;
    origin.release();
    let first = first.await.expect("first").expect("first response");
    let third = third.await.expect("third").expect("third response");
    assert_eq!((first.status.as_u16(), third.status.as_u16()), (200, 200));
    node.stop().await;
}
