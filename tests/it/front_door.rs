//! The hardened front door: request smuggling vectors refused with 400 before anything
//! reaches an origin, request body limits, the connection limit (the admin API still
//! reachable), and a drain that closes idle keep-alive and HTTP/2 connections at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::util::{admin_get, raw_exchange};

#[tokio::test]
async fn request_smuggling_vectors_are_refused_with_400() {
    let origin = Origin::start(|_, _| Reply::ok("reached")).await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let vectors: [(&str, &[u8]); 5] = [
        (
            "two different Content-Length",
            b"POST /a HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "obsolete line folding",
            b"GET /a HTTP/1.1\r\nHost: example.test\r\nX-Folded: a\r\n  b\r\n\r\n",
        ),
        (
            "bad chunk size",
            b"POST /a HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            b"POST /a HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "Content-Length with a sign",
            b"POST /a HTTP/1.1\r\nHost: example.test\r\nContent-Length: +5\r\n\r\nhello",
        ),
    ];
    for (what, raw) in vectors {
        let r = raw_exchange(node.http, raw).await;
        assert_eq!(r.status, 400, "{what}: {}", r.head);
    }
    assert_eq!(origin.total(), 0, "nothing reached the origin");
    // And the node still serves.
    assert_eq!(get(&node, "/a").await.text(), "reached");
}

/// Transfer-Encoding with Content-Length: the HTTP/1 parser would read the body by
/// Transfer-Encoding alone and drop Content-Length; the node refuses the request instead
/// (RFC 9112 §6.1 allows either, with the connection closed after). The classic CL.TE desync
/// cannot smuggle a second request, to this node or through it to the origin.
#[tokio::test]
async fn transfer_encoding_with_content_length_cannot_smuggle_a_request() {
    let origin = Origin::start(|_, _| Reply::ok("reached")).await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let attack = b"POST /a HTTP/1.1\r\nHost: example.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n";
    let r = raw_exchange(node.http, attack).await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(
        r.header("connection").as_deref(),
        Some("close"),
        "{}",
        r.head
    );
    let status = r.header("cache-status").unwrap_or_default();
    assert!(status.contains("detail=ambiguous-framing"), "{}", r.head);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("HTTP/1.1"),
        "a second response came back: {text}"
    );
    assert_eq!(origin.total(), 0, "{:?}", origin.requests());
}

#[tokio::test]
async fn request_bodies_over_the_site_limit_get_413() {
    let origin = Origin::start(|seen, _| Reply::ok(format!("{} bytes", seen.body.len()))).await;
    let toml = format!(
        "{}max_request_body = \"1KiB\"\n",
        site_config(&origin.url(), "")
    );
    let node = Node::start(&toml).await;
    let small = send(
        node.http,
        Method::POST,
        "/up",
        "example.test",
        &[],
        Bytes::from(vec![b'x'; 1000]),
    )
    .await;
    assert_eq!(small.text(), "1000 bytes");
    let announced = send(
        node.http,
        Method::POST,
        "/up",
        "example.test",
        &[],
        Bytes::from(vec![b'x'; 2000]),
    )
    .await;
    assert_eq!(announced.status, 413);
    assert_eq!(origin.count("/up"), 1, "refused before anything was sent");
    // Chunked, so the size shows only while it streams.
    let chunk = format!("{:x}\r\n{}\r\n", 1500, "y".repeat(1500));
    let raw = format!(
        "POST /up HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}0\r\n\r\n"
    );
    let streamed = raw_exchange(node.http, raw.as_bytes()).await;
    assert_eq!(streamed.status, 413, "{}", streamed.head);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_admin_stays_reachable() {
    let origin = Origin::start(|_, _| Reply::ok("ok")).await;
    let toml = site_config(&origin.url(), "[listen]\nmax_connections = 2");
    let node = Node::start(&toml).await;
    let request = b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(node.http).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // The third is closed without a response.
    let mut third = TcpStream::connect(node.http).await.expect("connect");
    let _ = third.write_all(request).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "got {:?}", String::from_utf8_lossy(&buf[..n]));
    assert_eq!(admin_get(node.admin, "/healthz", &[]).await.status, 200);
    let metrics = node.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("outpost_connections_refused_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // A slot frees when a held connection goes.
    drop(held.pop());
    eventually("a new connection is served", || async {
        try_send(
            node.http,
            Method::GET,
            "/a",
            "example.test",
            &[],
            Bytes::new(),
        )
        .await
        .is_ok_and(|r| r.status == 200)
    })
    .await;
}

#[tokio::test]
async fn a_drain_closes_idle_keep_alive_and_h2_connections_at_once() {
    let origin = Origin::start(|_, _| Reply::ok("ok").cache("max-age=60")).await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    // An idle HTTP/1.1 keep-alive connection.
    let mut h1 = TcpStream::connect(node.http).await.expect("connect");
    h1.write_all(b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = h1.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // An idle HTTP/2 connection (prior knowledge) with one finished stream.
    let h2 = get_h2c(node.http, "/a", "example.test").await;
    assert_eq!(h2.status, 200);

    let started = Instant::now();
    node.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle connections held the drain for {:?}",
        started.elapsed()
    );
    let closed = tokio::time::timeout(Duration::from_secs(2), h1.read(&mut buf))
        .await
        .expect("the idle h1 connection was closed");
    assert_eq!(closed.unwrap_or(0), 0);
}
