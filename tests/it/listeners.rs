//! The front door: HTTP/1.1 and h2c on the plain listener; TLS with certificates chosen by SNI
//! and ALPN `h2` / `http/1.1`; sites chosen by host, unknown hosts refused.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::*;

fn tls_config() -> String {
    r#"
[node]
name = "edge-test"
[[tls.certificates]]
cert = "alpha.pem"
key = "alpha.key"
[[tls.certificates]]
cert = "beta.pem"
key = "beta.key"
[[site]]
hosts = ["alpha.test", "*.alpha.test", "beta.test"]
origin = ["ORIGIN"]
"#
    .to_owned()
}

/// Connect with TLS (test CA trusted), optional SNI, the given ALPN list; returns the
/// negotiated ALPN, the leaf certificate served and the stream.
async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> (
    Option<Vec<u8>>,
    CertificateDer<'static>,
    tokio_rustls::client::TlsStream<TcpStream>,
) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixtures().join("tls/ca.pem")).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (_, session) = stream.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = session.peer_certificates().expect("peer certs")[0]
        .clone()
        .into_owned();
    (alpn, leaf, stream)
}

fn fixture_cert(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(fixtures().join(format!("tls/{name}.pem"))).expect("fixture cert")
}

async fn h1_over(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> Resp {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("req");
    collect(sender.send_request(req).await.expect("h1 response"))
        .await
        .expect("body")
}

async fn h2_over(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    authority: &str,
    path: &str,
) -> Resp {
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("https://{authority}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("req");
    collect(sender.send_request(req).await.expect("h2 response"))
        .await
        .expect("body")
}

#[tokio::test]
async fn http1_and_h2c_on_the_plain_listener() {
    let origin = Origin::fixed("plain", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let h1 = get(&node, "/p").await;
    assert_eq!(
        (h1.version, h1.text().as_str()),
        (Version::HTTP_11, "plain")
    );
    let h2 = get_h2c(node.http, "/p", "example.test").await;
    assert_eq!(h2.version, Version::HTTP_2);
    assert_eq!(h2.text(), "plain");
    assert!(
        h2.cache_status().contains("hit"),
        "h2 request used the cache: {}",
        h2.cache_status()
    );
}

#[tokio::test]
async fn tls_chooses_the_certificate_by_sni() {
    let origin = Origin::fixed("secure", "max-age=60").await;
    let node = Node::start_tls(&tls_config().replace("ORIGIN", &origin.url()), true).await;
    let https = node.https.expect("https listener");
    let cases = [
        ("alpha.test", "alpha"),
        ("www.alpha.test", "alpha"),
        ("beta.test", "beta"),
    ];
    for (sni, cert) in cases {
        let (_, leaf, stream) = tls_connect(https, sni, &[b"http/1.1"]).await;
        assert_eq!(leaf, fixture_cert(cert), "SNI {sni}");
        let r = h1_over(stream, sni, "/s").await;
        assert_eq!(r.text(), "secure", "SNI {sni}");
    }
}

#[tokio::test]
async fn tls_negotiates_h2_and_http11_by_alpn() {
    let origin = Origin::fixed("alpn", "max-age=60").await;
    let node = Node::start_tls(&tls_config().replace("ORIGIN", &origin.url()), true).await;
    let https = node.https.expect("https listener");
    let (alpn, _, stream) = tls_connect(https, "alpha.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let r = h2_over(stream, "alpha.test", "/a").await;
    assert_eq!((r.version, r.text().as_str()), (Version::HTTP_2, "alpn"));
    let (alpn, _, stream) = tls_connect(https, "alpha.test", &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let r = h1_over(stream, "alpha.test", "/a").await;
    assert_eq!((r.version, r.text().as_str()), (Version::HTTP_11, "alpn"));
    assert!(r.cache_status().contains("hit"));
}

#[tokio::test]
async fn curl_over_tls_h2() {
    let origin = Origin::fixed("curl", "max-age=60").await;
    let node = Node::start_tls(&tls_config().replace("ORIGIN", &origin.url()), true).await;
    let https = node.https.expect("https listener");
    let output = tokio::process::Command::new("curl")
        .args(["-s", "--http2", "--cacert"])
        .arg(fixtures().join("tls/ca.pem"))
        .args([
            "--resolve",
            &format!("beta.test:{}:127.0.0.1", https.port()),
        ])
        .args([
            "-w",
            "\n%{http_version}",
            &format!("https://beta.test:{}/c", https.port()),
        ])
        .output()
        .await
        .expect("curl (install curl to run the tests)");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "curl\n2");
}

#[tokio::test]
async fn sites_are_chosen_by_exact_and_wildcard_host() {
    let origin = Origin::start(|seen, _| {
        let host = seen.header("host");
        Reply::ok(host).cache("max-age=60")
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let hosts = [
        "example.test",
        "EXAMPLE.test",
        "a.wild.test",
        "a.b.wild.test",
        "example.test:8080",
    ];
    for (i, host) in hosts.into_iter().enumerate() {
        let r = send(
            node.http,
            Method::GET,
            &format!("/host/{i}"),
            host,
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.text(), host, "the origin sees the client's Host");
    }
    // Host case and port do not split the cache.
    let again = send(
        node.http,
        Method::GET,
        "/host/0",
        "Example.Test:80",
        &[],
        Bytes::new(),
    )
    .await;
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
}

#[tokio::test]
async fn unknown_hosts_are_refused_without_contacting_the_origin() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    for host in ["other.test", "wild.test", "example.test.evil", "127.0.0.1"] {
        let r = send(node.http, Method::GET, "/", host, &[], Bytes::new()).await;
        assert_eq!(r.status, 421, "{host}");
        assert!(
            r.cache_status().contains("detail=unknown-host"),
            "{}",
            r.cache_status()
        );
    }
    let h2 = get_h2c(node.http, "/", "elsewhere.test").await;
    assert_eq!(h2.status, 421);
    assert_eq!(origin.total(), 0, "never an open proxy");
}

#[tokio::test]
async fn a_request_that_loops_back_is_refused() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let r = get_with(&node, "/loop", &[("via", "1.1 edge-test")]).await;
    assert_eq!(r.status, 508);
    assert_eq!(origin.total(), 0);
}

async fn exchange_then_wait_for_close(node: &Node, path: &str) -> (String, Result<usize, String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(node.http)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: example.test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the (small, Content-Length framed) body has arrived.
    while !String::from_utf8_lossy(&response).ends_with("body") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before the response: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    let after =
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await;
    let after = match after {
        Ok(Ok(n)) => Ok(n),
        // A reset is a close too.
        Ok(Err(_)) => Ok(0),
        Err(_) => Err("still open after 5 s".to_owned()),
    };
    (String::from_utf8_lossy(&response).into_owned(), after)
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let origin = Origin::fixed("body", "max-age=60").await;
    let node = Node::start(&site_config(
        &origin.url(),
        "[listen]\nidle_timeout = \"300ms\"",
    ))
    .await;
    let (response, after) = exchange_then_wait_for_close(&node, "/idle").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        matches!(after, Ok(0)),
        "idle connection not closed: {after:?}"
    );
}

#[tokio::test]
async fn a_slow_response_is_not_cut_by_idle_timeout() {
    let origin = Origin::start(|_, _| {
        Reply::ok("body")
            .cache("max-age=60")
            .delay(std::time::Duration::from_millis(1200))
    })
    .await;
    let node = Node::start(&site_config(
        &origin.url(),
        "[listen]\nidle_timeout = \"200ms\"",
    ))
    .await;
    let (response, _) = exchange_then_wait_for_close(&node, "/slow").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn a_reload_swaps_the_certificates_for_new_connections() {
    let origin = Origin::fixed("secure", "max-age=60").await;
    let dir = fixtures().join("tls");
    let https = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = https.local_addr().expect("addr");
    let config_with = |cert: &str| {
        format!(
            "[node]\nname = \"edge-test\"\n[listen]\nhttps = [\"{addr}\"]\n[[tls.certificates]]\ncert = \"{d}/{cert}.pem\"\nkey = \"{d}/{cert}.key\"\n[[site]]\nhosts = [\"alpha.test\", \"beta.test\"]\norigin = [\"{o}\"]\n",
            d = dir.display(),
            o = origin.url()
        )
    };
    let file = crate::util::TempFile::new("tls-reload", &config_with("alpha"));
    let config = outpost::config::Config::load(file.path()).expect("config");
    let listeners = outpost::Listeners {
        http: Vec::new(),
        https: vec![https],
        quic: Vec::new(),
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
    let (_, leaf, stream) = tls_connect(addr, "alpha.test", &[b"http/1.1"]).await;
    assert_eq!(leaf, fixture_cert("alpha"));
    // A connection opened before the reload keeps working after it.
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);

    std::fs::write(file.path(), config_with("beta")).expect("rewrite");
    reload.send(()).await.expect("reload");
    eventually("the new certificate is served", || async {
        // Until the reload lands the handshake fails verification (a panic in the task).
        let attempt =
            tokio::spawn(async move { tls_connect(addr, "beta.test", &[b"http/1.1"]).await.1 });
        attempt.await.is_ok_and(|leaf| leaf == fixture_cert("beta"))
    })
    .await;
    let request = http::Request::builder()
        .uri("/s")
        .header("host", "alpha.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let r = collect(sender.send_request(request).await.expect("old connection"))
        .await
        .expect("body");
    assert_eq!(r.text(), "secure");
    let _ = stop.send(());
    node.await.expect("join").expect("node run");
}

/// The body the origin sends for `/mix/<n>`: large for every fourth, so small responses
/// written together and large ones written from their own memory share one connection.
fn mixed_body(path: &str) -> Bytes {
    let n: usize = path.trim_start_matches("/mix/").parse().unwrap_or(0);
    let len = if n.is_multiple_of(4) {
        200_000 + n
    } else {
        100 + n
    };
    (0..len).map(|i| (i * 31 + n) as u8).collect()
}

#[tokio::test]
async fn concurrent_h2_streams_over_tls_each_get_their_own_bytes() {
    let origin =
        Origin::start(|seen, _| Reply::ok(mixed_body(&seen.path)).cache("max-age=60")).await;
    let node = Node::start_tls(&tls_config().replace("ORIGIN", &origin.url()), true).await;
    let https = node.https.expect("https listener");
    let (alpn, _, stream) = tls_connect(https, "alpha.test", &[b"h2"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    // Twice: misses streamed from the origin, then hits from the store.
    for round in ["miss", "hit"] {
        let requests = (0..64).map(|n| {
            let mut sender = sender.clone();
            async move {
                let req = Request::builder()
                    .uri(format!("https://alpha.test/mix/{n}"))
                    .body(Full::new(Bytes::new()))
                    .expect("req");
                let r = collect(sender.send_request(req).await.expect("h2 response"))
                    .await
                    .expect("body");
                (n, r)
            }
        });
        for (n, r) in futures_util::future::join_all(requests).await {
            assert_eq!(r.status, 200, "{round} /mix/{n}");
            assert!(
                r.body == mixed_body(&format!("/mix/{n}")),
                "{round} /mix/{n}: {} bytes, not the origin's",
                r.body.len()
            );
        }
    }
    assert_eq!(
        origin.total(),
        64,
        "the second round was served from the store"
    );
}
