//! HTTP/3 on `listen.quic`, with hyperium's h3 client over quinn: the same request path as
//! TCP (miss, hit, range, purge, a POST body), `Alt-Svc` on TLS responses, certificates by
//! SNI, a drain that lets a request in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode, Version};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::harness::*;
use crate::util::purge;

fn config(origin: &str, quic: SocketAddr) -> String {
    format!(
        r#"
[node]
name = "edge-test"
[admin]
token = "secret"
[listen]
quic = ["{quic}"]
[[tls.certificates]]
cert = "alpha.pem"
key = "alpha.key"
[[tls.certificates]]
cert = "beta.pem"
key = "beta.key"
[[site]]
hosts = ["alpha.test", "beta.test"]
origin = ["{origin}"]
"#
    )
}

fn udp() -> (std::net::UdpSocket, SocketAddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

/// An HTTP/3 connection to the node, trusting the test CA.
struct H3 {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    endpoint: quinn::Endpoint,
    peer_cert: CertificateDer<'static>,
    driver: tokio::task::JoinHandle<()>,
    quic: quinn::Connection,
}

/// A QUIC client endpoint trusting the test CA, offering `h3`; with `ping`, its connections
/// send a PING that often (QUIC keep-alive) whatever they do.
fn client_endpoint(ping: Option<Duration>) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixtures().join("tls/ca.pem")).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(ping);
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    endpoint
}

impl H3 {
    async fn connect(addr: SocketAddr, sni: &str) -> Self {
        Self::connect_pinging(addr, sni, None).await
    }

    async fn connect_pinging(addr: SocketAddr, sni: &str, ping: Option<Duration>) -> Self {
        let endpoint = client_endpoint(ping);
        let conn = endpoint
            .connect(addr, sni)
            .expect("connect")
            .await
            .expect("QUIC handshake");
        let peer_cert = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .expect("peer certificates")[0]
            .clone();
        let quic = conn.clone();
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .expect("h3 client");
        let driver = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Self {
            send,
            endpoint,
            peer_cert,
            driver,
            quic,
        }
    }

    async fn request(
        &mut self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let mut stream = self
            .send
            .send_request(req.body(()).expect("request"))
            .await
            .expect("send request");
        if !body.is_empty() {
            stream
                .send_data(Bytes::copy_from_slice(body))
                .await
                .expect("send body");
        }
        stream.finish().await.expect("finish");
        let response = stream.recv_response().await.expect("response head");
        let mut read = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.expect("response body") {
            read.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        let (parts, ()) = response.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: read.freeze(),
            version: parts.version,
        }
    }

    async fn get(&mut self, uri: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, uri, headers, b"").await
    }

    async fn close(self) {
        drop(self.send);
        self.endpoint.close(0u32.into(), b"done");
        self.driver.abort();
    }
}

#[tokio::test]
async fn http3_serves_a_miss_a_hit_a_range_and_a_purge() {
    let origin = Origin::fixed("0123456789", "max-age=60").await;
    let (socket, quic) = udp();
    let node = Node::start_quic(&config(&origin.url(), quic), socket).await;
    let mut h3 = H3::connect(quic, "alpha.test").await;

    let miss = h3.get("https://alpha.test/a", &[]).await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(miss.version, Version::HTTP_3);
    assert_eq!(miss.text(), "0123456789");
    assert!(
        miss.cache_status().contains("fwd=uri-miss"),
        "{}",
        miss.cache_status()
    );
    assert_eq!(origin.last("/a").header("via"), "3 edge-test");

    let hit = h3.get("https://alpha.test/a", &[]).await;
    assert_eq!(hit.text(), "0123456789");
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());

    let range = h3
        .get("https://alpha.test/a", &[("range", "bytes=2-5")])
        .await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.text(), "2345");
    assert_eq!(range.header("content-range"), "bytes 2-5/10");
    assert_eq!(
        origin.count("/a"),
        1,
        "the hit and the range came from the cache"
    );

    let purged = purge(
        node.admin,
        Some("secret"),
        r#"{"urls":["https://alpha.test/a"]}"#,
    )
    .await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    let after = h3.get("https://alpha.test/a", &[]).await;
    assert_eq!(after.text(), "0123456789");
    assert!(
        after.cache_status().contains("fwd=uri-miss"),
        "{}",
        after.cache_status()
    );
    assert_eq!(origin.count("/a"), 2, "the purge removed the object");
    assert_eq!(
        node.metric("outpost_connections_accepted_total").await,
        1.0,
        "one QUIC connection"
    );
    h3.close().await;
    node.stop().await;
}

#[tokio::test]
async fn an_http3_post_body_reaches_the_origin_whole() {
    let origin = Origin::start(|seen, _| Reply::ok(format!("got {} bytes", seen.body.len()))).await;
    let (socket, quic) = udp();
    let node = Node::start_quic(&config(&origin.url(), quic), socket).await;
    let mut h3 = H3::connect(quic, "beta.test").await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = h3
        .request(
            Method::POST,
            "https://beta.test/upload",
            &[("content-length", &body.len().to_string())],
            &body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "got 200000 bytes");
    assert_eq!(origin.last("/upload").body, Bytes::from(body));
    h3.close().await;
    node.stop().await;
}

#[tokio::test]
async fn http3_chooses_the_certificate_by_sni() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let (socket, quic) = udp();
    let node = Node::start_quic(&config(&origin.url(), quic), socket).await;
    for name in ["alpha", "beta"] {
        let h3 = H3::connect(quic, &format!("{name}.test")).await;
        let expected =
            CertificateDer::from_pem_file(fixtures().join(format!("tls/{name}.pem"))).expect("pem");
        assert_eq!(
            h3.peer_cert, expected,
            "{name}.test gets its own certificate"
        );
        h3.close().await;
    }
    node.stop().await;
}

#[tokio::test]
async fn tls_responses_advertise_http3_with_alt_svc() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let (socket, quic) = udp();
    let node = Node::start_quic(&config(&origin.url(), quic), socket).await;
    let https = node.https.expect("https listener");
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null", "--resolve"])
        .arg(format!("alpha.test:{}:127.0.0.1", https.port()))
        .arg(format!("https://alpha.test:{}/a", https.port()))
        .output()
        .await
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let expected = format!("alt-svc: h3=\":{}\"; ma=86400", quic.port());
    assert!(head.contains(&expected), "{head}");
    // Cleartext responses do not advertise it (RFC 7838 alternatives are for https origins).
    let plain = send(
        node.http,
        Method::GET,
        "/a",
        "alpha.test",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(plain.header("alt-svc"), "");
    node.stop().await;
}

#[tokio::test]
async fn a_drain_lets_an_http3_request_in_flight_finish() {
    let origin =
        Origin::start(|_, _| Reply::ok("slow but whole").delay(Duration::from_millis(400))).await;
    let (socket, quic) = udp();
    let node = Node::start_quic(&config(&origin.url(), quic), socket).await;
    let mut h3 = H3::connect(quic, "alpha.test").await;
    let in_flight = tokio::spawn(async move {
        let r = h3.get("https://alpha.test/slow", &[]).await;
        h3.close().await;
        r
    });
    eventually("the request reached the origin", || async {
        origin.count("/slow") == 1
    })
    .await;
    node.stop().await;
    let r = in_flight.await.expect("request task");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "slow but whole");
}

#[tokio::test]
async fn quic_listeners_need_certificates() {
    let toml = "[listen]\nquic = [\"127.0.0.1:4433\"]\n[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://127.0.0.1:1\"]\n";
    let err = outpost::config::Config::parse(toml, "test.toml", &fixtures())
        .expect_err("quic without certificates");
    assert!(
        err.to_string()
            .contains("QUIC listeners need at least one [[tls.certificates]]"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reload_swaps_the_quic_certificates_and_open_connections_carry_on() {
    let origin = Origin::fixed("secure", "max-age=60").await;
    let dir = fixtures().join("tls");
    let (socket, quic) = udp();
    let config_with = |cert: &str| {
        format!(
            "[node]\nname = \"edge-test\"\n[listen]\nhttp = []\nquic = [\"{quic}\"]\n[[tls.certificates]]\ncert = \"{d}/{cert}.pem\"\nkey = \"{d}/{cert}.key\"\n[[site]]\nhosts = [\"alpha.test\", \"beta.test\"]\norigin = [\"{o}\"]\n",
            d = dir.display(),
            o = origin.url()
        )
    };
    let file = crate::util::TempFile::new("quic-reload", &config_with("alpha"));
    let config = outpost::config::Config::load(file.path()).expect("config");
    let listeners = outpost::Listeners {
        http: Vec::new(),
        https: Vec::new(),
        quic: vec![socket],
        admin: None,
    };
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let path = file.path().to_path_buf();
    let node = tokio::spawn(async move {
        outpost::run_with_reloads(
            config,
            listeners,
            async {
                let _ = stopped.await;
            },
            Some(path),
            reloads,
        )
        .await
    });
    let mut before = H3::connect(quic, "alpha.test").await;
    let alpha = CertificateDer::from_pem_file(dir.join("alpha.pem")).expect("pem");
    assert_eq!(before.peer_cert, alpha);

    std::fs::write(file.path(), config_with("beta")).expect("rewrite");
    reload.send(()).await.expect("reload");
    let beta = CertificateDer::from_pem_file(dir.join("beta.pem")).expect("pem");
    eventually("the new certificate is served over QUIC", || async {
        // Until the reload lands the handshake fails verification (a panic in the task).
        let attempt = tokio::spawn(async move {
            let h3 = H3::connect(quic, "beta.test").await;
            let cert = h3.peer_cert.clone();
            h3.close().await;
            cert
        });
        attempt.await.is_ok_and(|cert| cert == beta)
    })
    .await;
    let r = before.get("https://alpha.test/s", &[]).await;
    assert_eq!(
        r.text(),
        "secure",
        "a connection from before the reload still serves"
    );
    before.close().await;
    let _ = stop.send(());
    node.await.expect("join").expect("node run");
}

/// Whether a TCP connection to `addr` is closed with no answer to a request.
async fn closed_without_answer(addr: SocketAddr) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream
        .write_all(b"GET /a HTTP/1.1\r\nhost: alpha.test\r\nconnection: close\r\n\r\n")
        .await;
    let (got, closed) = crate::util::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    closed && got.is_empty()
}

/// A node with TCP and QUIC listeners and small limits: `max_connections`, a 1 s header
/// timeout, a 2 s idle timeout.
async fn limited(origin: &Origin, extra: &str) -> (Node, SocketAddr) {
    let (socket, quic) = udp();
    let toml = config(&origin.url(), quic).replace(
        "[listen]\n",
        &format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\n{extra}\n"
        ),
    );
    (Node::start_quic(&toml, socket).await, quic)
}

/// QUIC connections that never send a request hold their slot no longer than
/// `header_read_timeout`, however often they PING, and one idle after its request no longer
/// than `idle_timeout`: a flood of them takes every slot only for that long, and TCP clients
/// are served again after it.
#[tokio::test]
async fn idle_quic_connections_give_their_slots_back_whatever_they_ping() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let (node, quic) = limited(&origin, "max_connections = 8").await;
    let ping = Some(Duration::from_millis(200));
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(H3::connect_pinging(quic, "alpha.test", ping).await);
    }
    assert_eq!(node.metric("outpost_connections_open").await, 8.0);
    // Every slot taken: a TCP client is turned away.
    assert!(
        closed_without_answer(node.http).await,
        "served while every slot was taken"
    );
    let started = std::time::Instant::now();
    for c in &flood {
        tokio::time::timeout(Duration::from_secs(5), c.quic.closed())
            .await
            .expect("closed by the node");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "closed after {took:?}");
    wait_until("every slot back", Duration::from_secs(5), || async {
        node.metric("outpost_connections_open").await == 0.0
    })
    .await;
    let served = send(
        node.http,
        Method::GET,
        "/a",
        "alpha.test",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(served.text(), "hello");
    // After a request: closed once idle for idle_timeout, PINGs or not.
    let mut used = H3::connect_pinging(quic, "alpha.test", ping).await;
    assert_eq!(used.get("https://alpha.test/a", &[]).await.text(), "hello");
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(6), used.quic.closed())
        .await
        .expect("closed once idle");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    for c in flood {
        c.close().await;
    }
}

/// One client address holds at most `max_connections_per_client` connections, TCP and QUIC
/// together; other addresses (here, the limit's slots given back) are served.
#[tokio::test]
async fn one_client_address_cannot_take_every_connection() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let (node, quic) = limited(&origin, "max_connections_per_client = 3").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(H3::connect(quic, "alpha.test").await);
    }
    let tcp = tokio::net::TcpStream::connect(node.http)
        .await
        .expect("tcp");
    wait_until("three connections", Duration::from_secs(5), || async {
        node.metric("outpost_connections_open").await == 3.0
    })
    .await;
    // A fourth, over TCP: closed at once.
    assert!(closed_without_answer(node.http).await);
    // And over QUIC: refused.
    let endpoint = client_endpoint(None);
    let attempt = endpoint.connect(quic, "alpha.test").expect("connect").await;
    assert!(attempt.is_err(), "a fourth QUIC connection was accepted");
    assert_eq!(
        node.metric("outpost_client_limit_refusals_total").await,
        2.0
    );
    drop(tcp);
    for c in held {
        c.close().await;
    }
    wait_until("slots back", Duration::from_secs(5), || async {
        node.metric("outpost_connections_open").await == 0.0
    })
    .await;
    let served = send(
        node.http,
        Method::GET,
        "/a",
        "alpha.test",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(served.text(), "hello");
}

/// RFC 9114 §4.2: a request carrying a connection-specific field is malformed: the stream
/// is reset, no response is sent, and the connection serves the next request.
#[tokio::test]
async fn an_http3_request_with_connection_specific_fields_is_a_stream_error() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let (node, quic) = limited(&origin, "").await;
    let mut h3 = H3::connect(quic, "alpha.test").await;
    for (name, value) in [("connection", "close"), ("te", "gzip"), ("keep-alive", "5")] {
        let req = Request::builder()
            .uri("https://alpha.test/a")
            .header(name, value)
            .body(())
            .expect("request");
        let mut stream = h3.send.send_request(req).await.expect("send request");
        let _ = stream.finish().await;
        assert!(
            stream.recv_response().await.is_err(),
            "{name}: a response to a malformed request"
        );
    }
    assert_eq!(h3.get("https://alpha.test/a", &[]).await.text(), "hello");
    assert_eq!(origin.total(), 1);
    h3.close().await;
    node.stop().await;
}
