//! The hardened front door: request smuggling vectors refused with 400 before anything
//! reaches an origin, request body limits, buffering and minimum rate, the connection limit
//! (the admin API still reachable), and a drain that closes idle keep-alive and HTTP/2
//! connections at once.

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

/// One site in front of `origin` whose origin has two connection slots and a 200 ms queue,
/// with `site_extra` as more site keys.
fn two_slots(origin: &str, site_extra: &str) -> String {
    format!(
        "[node]\nname = \"edge-test\"\n[[site]]\nname = \"test\"\nhosts = [\"example.test\"]\n\
         {site_extra}\n[site.origin]\nservers = [\"{origin}\"]\nmax_connections = 2\n\
         queue_timeout = \"200ms\"\n"
    )
}

/// A POST of `length` bytes whose head and first `sent` bytes are written, and no more yet.
async fn upload_started(node: &Node, path: &str, length: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(node.http).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: example.test\r\nContent-Length: {length}\r\n\
         Connection: close\r\n\r\n{}",
        "x".repeat(sent)
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

/// Slow uploads (two clients, as many as the origin has connections) must not take the
/// origin's connections while their bodies trickle in: with bodies buffered, every miss is
/// served meanwhile and the origin is asked for the uploads only once they are whole. With
/// `request_buffering = 0` they stream, hold both connections, and misses queue into 503:
/// the case that shows the test can fail.
#[tokio::test]
async fn slow_uploads_hold_no_origin_connection_while_their_bodies_arrive() {
    let origin = Origin::start(|seen, _| match seen.method {
        Method::POST => Reply::ok(format!("{} bytes", seen.body.len())),
        _ => Reply::ok("page").cache("max-age=60"),
    })
    .await;
    // (site keys, status of each miss meanwhile, origin requests sent meanwhile)
    let cases = [("", 200, 4.0), ("request_buffering = 0", 503, 2.0)];
    for (n, (site, miss_status, sent)) in cases.into_iter().enumerate() {
        let node = Node::start(&two_slots(&origin.url(), site)).await;
        let mut uploads = Vec::new();
        for i in 0..2 {
            uploads.push(upload_started(&node, &format!("/up/{n}/{i}"), 10, 5).await);
        }
        let server = origin.addr.to_string();
        let requests =
            format!("outpost_origin_server_requests_total{{site=\"test\",server=\"{server}\"}}");
        if miss_status == 503 {
            // Streamed: both uploads hold an origin connection before the misses come.
            eventually("both uploads sent on", || async {
                node.metric(&requests).await == 2.0
            })
            .await;
        }
        for j in 0..4 {
            let r = get(&node, &format!("/miss/{n}/{j}")).await;
            assert_eq!(r.status, miss_status, "{site}: {}", r.cache_status());
        }
        assert_eq!(node.metric(&requests).await, sent, "{site}");
        for mut upload in uploads {
            upload.write_all(b"yyyyy").await.expect("rest of the body");
            let (got, closed) =
                crate::util::read_until_closed(&mut upload, Duration::from_secs(5)).await;
            assert!(closed, "{site}");
            let r = crate::util::parse_raw(&got);
            assert_eq!(
                (r.status, r.body.as_slice()),
                (200, &b"10 bytes"[..]),
                "{site}"
            );
        }
        node.stop().await;
    }
}

/// A body that stalls, or trickles in below `request_body_min_rate`, is cut off with 408 and
/// the connection closed, whether it was being buffered (the origin never asked) or streamed
/// (the origin request abandoned). A body that keeps pace is unaffected.
#[tokio::test]
async fn bodies_below_the_minimum_rate_get_408_and_the_connection_closes() {
    let origin = Origin::start(|seen, _| Reply::ok(format!("{} bytes", seen.body.len()))).await;
    let site = "request_buffering = \"1KiB\"\nrequest_body_timeout = \"300ms\"\n\
                request_body_min_rate = \"1KiB\"";
    let node = Node::start(&two_slots(&origin.url(), site)).await;
    // (path, Content-Length, bytes per write, pause between writes)
    let cases = [
        ("/stalled", 100, 10, Duration::from_secs(30)),
        ("/trickled", 100, 1, Duration::from_millis(100)),
        ("/streamed-stalled", 5000, 1500, Duration::from_secs(30)),
        ("/streamed-trickled", 5000, 1, Duration::from_millis(100)),
    ];
    for (path, length, step, pause) in cases {
        let stream = upload_started(&node, path, length, 0).await;
        let started = Instant::now();
        let (mut reader, mut writer) = stream.into_split();
        let write = async {
            let mut sent = 0;
            while sent < length {
                if writer.write_all(&vec![b'x'; step]).await.is_err() {
                    break;
                }
                sent += step;
                tokio::time::sleep(pause).await;
            }
        };
        let read = async {
            let mut got = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut got)).await;
            got
        };
        let got = tokio::select! {
            got = read => got,
            () = write => panic!("{path}: the whole body was sent"),
        };
        let took = started.elapsed();
        let r = crate::util::parse_raw(&got);
        assert_eq!(r.status, 408, "{path}: {}", r.head);
        let head = r.head.to_ascii_lowercase();
        assert!(head.contains("connection: close"), "{path}: {head}");
        assert!(head.contains("detail=body-too-slow"), "{path}: {head}");
        assert!(
            took < Duration::from_secs(2),
            "{path}: cut off after {took:?}"
        );
        assert_eq!(
            origin.count(path),
            0,
            "{path}: no whole body reached the origin"
        );
    }
    // Keeping pace: 10 KiB in 1 KiB writes every 100 ms (10 KiB/s).
    let mut stream = upload_started(&node, "/paced", 10 * 1024, 0).await;
    for _ in 0..10 {
        stream.write_all(&[b'x'; 1024]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (got, _) = crate::util::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let r = crate::util::parse_raw(&got);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"10240 bytes"[..]));
}

/// A body within `request_buffering` reaches the origin whole, with a Content-Length even if
/// the client sent it chunked; a larger one streams through chunked, every byte intact.
#[tokio::test]
async fn buffered_bodies_are_sent_with_their_length_and_larger_ones_stream() {
    let origin = Origin::start(|seen, _| {
        let framing = match seen.header("content-length").as_str() {
            "" => format!("chunked={}", seen.header("transfer-encoding")),
            length => format!("length={length}"),
        };
        Reply::ok(format!("{framing} {}", seen.body.len()))
    })
    .await;
    let site = "request_buffering = \"4KiB\"";
    let node = Node::start(&two_slots(&origin.url(), site)).await;
    for (path, size, framing) in [
        ("/small", 3000, "length=3000"),
        ("/large", 9000, "chunked=chunked"),
    ] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in body.chunks(1000) {
            raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            raw.extend_from_slice(chunk);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let r = raw_exchange(node.http, &raw).await;
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            format!("{framing} {size}")
        );
        assert_eq!(
            origin.last(path).body,
            Bytes::from(body),
            "{path}: every byte"
        );
    }
}
