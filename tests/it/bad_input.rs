//! Hostile or broken client input over raw TCP: every case is refused with the right status,
//! the origin never hears of it, and the node keeps serving.

use std::time::Duration;

use crate::harness::*;
use crate::util::{RawResponse, raw_exchange};

/// A node whose origin answers everything with "fine"; `extra` goes into the config.
async fn node_with(extra: &str) -> (Origin, Node) {
    let origin = Origin::fixed("fine", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), extra)).await;
    (origin, node)
}

/// A normal request still works afterwards.
async fn still_serves(node: &Node, origin: &Origin) {
    let before = origin.total();
    let ok = get(node, "/after").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "fine");
    assert_eq!(origin.total(), before + 1);
}

fn request_with_headers(headers: &str) -> Vec<u8> {
    format!("GET /h HTTP/1.1\r\nHost: example.test\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

fn assert_refused(response: &RawResponse, status: u16) {
    assert_eq!(response.status, status, "{}", response.head);
}

#[tokio::test]
async fn malformed_request_line_is_400() {
    let (origin, node) = node_with("").await;
    for line in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: example.test\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: example.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost example.test\r\n\r\n",
    ] {
        let response = raw_exchange(node.http, line).await;
        assert_eq!(
            response.status,
            400,
            "{:?} -> {}",
            String::from_utf8_lossy(line),
            response.head
        );
    }
    assert_eq!(origin.total(), 0);
    still_serves(&node, &origin).await;
    node.stop().await;
}

#[tokio::test]
async fn header_block_over_max_header_bytes_is_431() {
    let (origin, node) = node_with("[listen]\nmax_header_bytes = \"8KiB\"\n").await;
    // 32 KiB of headers, in 64 fields of 512 bytes.
    let value = "v".repeat(500);
    let headers: String = (0..64)
        .map(|i| format!("x-big-{i:02}: {value}\r\n"))
        .collect();
    let response = raw_exchange(node.http, &request_with_headers(&headers)).await;
    assert_refused(&response, 431);
    assert_eq!(origin.total(), 0);
    // Just under the limit is fine.
    let small: String = (0..8)
        .map(|i| format!("x-big-{i:02}: {value}\r\n"))
        .collect();
    let response = raw_exchange(node.http, &request_with_headers(&small)).await;
    assert_eq!(response.status, 200, "{}", response.head);
    still_serves(&node, &origin).await;
    node.stop().await;
}

#[tokio::test]
async fn more_headers_than_max_headers_is_431() {
    let (origin, node) = node_with("[listen]\nmax_headers = 20\n").await;
    // hyper reports too many fields as "too large": 431 Request Header Fields Too Large.
    let many: String = (0..40).map(|i| format!("x-n-{i}: {i}\r\n")).collect();
    let response = raw_exchange(node.http, &request_with_headers(&many)).await;
    assert_refused(&response, 431);
    assert_eq!(origin.total(), 0);
    // Within the limit (Host, Connection and 10 more) is fine.
    let few: String = (0..10).map(|i| format!("x-n-{i}: {i}\r\n")).collect();
    let response = raw_exchange(node.http, &request_with_headers(&few)).await;
    assert_eq!(response.status, 200, "{}", response.head);
    still_serves(&node, &origin).await;
    node.stop().await;
}

#[tokio::test]
async fn http11_request_without_host_is_400() {
    let (origin, node) = node_with("").await;
    let response = raw_exchange(
        node.http,
        b"GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_refused(&response, 400);
    let status = response.header("cache-status").unwrap_or_default();
    assert!(status.contains("detail=missing-host"), "{}", response.head);
    assert_eq!(origin.total(), 0);
    still_serves(&node, &origin).await;
    node.stop().await;
}

#[tokio::test]
async fn unknown_host_is_421_and_never_reaches_the_origin() {
    let (origin, node) = node_with("").await;
    for host in [
        "other.test",
        "wild.test",
        "example.test.evil",
        "127.0.0.1",
        "xexample.test",
    ] {
        let request = format!("GET /secret HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(node.http, request.as_bytes()).await;
        assert_refused(&response, 421);
        let status = response.header("cache-status").unwrap_or_default();
        assert!(status.contains("detail=unknown-host"), "{}", response.head);
    }
    // An absolute-form target naming another host is refused the same way (the open-proxy
    // case), whatever the Host header says.
    let request =
        b"GET http://other.test/secret HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    let response = raw_exchange(node.http, request).await;
    assert_refused(&response, 421);
    assert_eq!(origin.total(), 0, "{:?}", origin.requests());
    // A subdomain of the wildcard is served.
    let wild = send(
        node.http,
        http::Method::GET,
        "/w",
        "a.b.wild.test",
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(wild.status, 200);
    still_serves(&node, &origin).await;
    node.stop().await;
}

#[tokio::test]
async fn node_survives_a_barrage_of_bad_input() {
    let (origin, node) =
        node_with("[listen]\nmax_header_bytes = \"8KiB\"\nmax_headers = 20\n").await;
    let big = format!("x-big: {}\r\n", "v".repeat(16 << 10));
    let many: String = (0..40).map(|i| format!("x-n-{i}: {i}\r\n")).collect();
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        b"GARBAGE\r\n\r\n".to_vec(),
        request_with_headers(&big),
        request_with_headers(&many),
        b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        // A truncated head, then the client goes away.
        b"GET / HTTP/1.1\r\nHost: exa".to_vec(),
    ];
    for round in 0..3 {
        for input in &inputs {
            let mut stream = tokio::net::TcpStream::connect(node.http)
                .await
                .expect("connect");
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, input).await;
            drop(stream);
        }
        let ok = get(&node, &format!("/round-{round}")).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.text(), "fine");
    }
    assert_eq!(origin.total(), 3, "{:?}", origin.requests());
    still_serves(&node, &origin).await;
    node.stop().await;
}

/// Write `request` and read until the server closes the connection, which it must do within
/// 5 s; every response received, as raw bytes.
async fn exchange_until_closed(node: &Node, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(node.http)
        .await
        .expect("connect");
    let _ = stream.write_all(request).await;
    let (got, closed) = crate::util::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(closed, "connection still open after {got:?}");
    got
}

/// Status codes of the responses in `raw`, in order.
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn transfer_encoding_with_content_length_is_400_and_closes_the_connection() {
    let (origin, node) = node_with("").await;
    // RFC 9112 §6.1: the framing is ambiguous whichever field comes first; what follows the
    // chunked body would be a second, smuggled request to a server that believed the length.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n";
    let heads = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 0\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ];
    for head in heads {
        for method in ["POST", "GET"] {
            let request = format!(
                "{method} /s HTTP/1.1\r\nHost: example.test\r\n{head}\r\n0\r\n\r\n{smuggled}"
            );
            let raw = exchange_until_closed(&node, request.as_bytes()).await;
            assert_eq!(statuses(&raw), [400], "{method} {head:?}: {raw}");
            let response = crate::util::parse_raw(raw.as_bytes());
            assert_eq!(
                response.header("connection").as_deref(),
                Some("close"),
                "{raw}"
            );
        }
    }
    // Later on a keep-alive connection: the requests before it are answered, then the 400.
    let request = format!(
        "GET /first HTTP/1.1\r\nHost: example.test\r\n\r\n\
         POST /s HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc\
         POST /s HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nxyz\r\n0\r\n\r\n\
         POST /s HTTP/1.1\r\nHost: example.test\r\n{}\r\n0\r\n\r\n{smuggled}",
        heads[0]
    );
    let raw = exchange_until_closed(&node, request.as_bytes()).await;
    assert_eq!(statuses(&raw), [200, 200, 200, 400], "{raw}");
    assert_eq!(origin.count("/first"), 1);
    assert_eq!(origin.count("/s"), 2, "{:?}", origin.requests());
    assert_eq!(origin.count("/smuggled"), 0);
    still_serves(&node, &origin).await;
    node.stop().await;
}

#[tokio::test]
async fn transfer_codings_other_than_one_final_chunked_are_refused() {
    let (origin, node) = node_with("").await;
    // (Transfer-Encoding lines, status)
    let cases: &[(&[&str], u16)] = &[
        // RFC 9112 §6.3: chunked must be the final coding of a request, or its length is
        // unknown.
        (&["gzip"], 400),
        (&["chunked, gzip"], 400),
        (&["chunked", "gzip"], 400),
        (&["identity"], 400),
        // RFC 9112 §6.1: a coding this server does not implement.
        (&["gzip, chunked"], 501),
        (&["gzip", "chunked"], 501),
        // RFC 9112 §7: chunked at most once.
        (&["chunked, chunked"], 400),
        (&["chunked", "chunked"], 400),
    ];
    for (lines, status) in cases {
        let fields: String = lines
            .iter()
            .map(|l| format!("Transfer-Encoding: {l}\r\n"))
            .collect();
        let request =
            format!("POST /te HTTP/1.1\r\nHost: example.test\r\n{fields}\r\n3\r\nabc\r\n0\r\n\r\n");
        let raw = exchange_until_closed(&node, request.as_bytes()).await;
        assert_eq!(statuses(&raw), [*status], "{lines:?}: {raw}");
    }
    // HTTP/1.0 has no transfer codings (RFC 9112 §6.1).
    let raw = exchange_until_closed(
        &node,
        b"POST /te HTTP/1.0\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400 "), "{raw}");
    // A plain chunked upload is fine.
    let raw = exchange_until_closed(
        &node,
        b"POST /te HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(origin.count("/te"), 1, "{:?}", origin.requests());
    assert_eq!(origin.last("/te").body, "abc");
    still_serves(&node, &origin).await;
    node.stop().await;
}
