//! Origins that fail in every way an origin can, and what crosses the proxy towards and from
//! a healthy one (forwarding headers, hop-by-hop hygiene, request bodies, HTTPS).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::harness::*;
use crate::util::{self, CutOrigin, TlsOrigin, raw_exchange};

/// A config whose site uses the long `[site.origin]` form; `origin_extra` are more keys there.
fn long_form(servers: &[String], origin_extra: &str) -> String {
    long_form_config(servers, origin_extra, "")
}

fn assert_error(response: &Resp, status: u16, detail: &str) {
    assert_eq!(
        response.status,
        status,
        "{} {}",
        response.cache_status(),
        response.text()
    );
    let cache_status = response.cache_status();
    assert!(
        cache_status.starts_with("edge-test; fwd=uri-miss;"),
        "{cache_status}"
    );
    assert!(
        cache_status.ends_with(&format!("detail={detail}")),
        "{cache_status}"
    );
    assert_eq!(response.header("cache-control"), "no-store");
}

#[tokio::test]
async fn connection_refused_is_502_origin_connect_quickly() {
    let closed = url_of(closed_port().await);
    let node = Node::start(&site_config(&closed, "")).await;
    let started = Instant::now();
    let response = get(&node, "/x").await;
    let took = started.elapsed();
    assert_error(&response, 502, "origin-connect");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(
        node.metric(r#"outpost_origin_requests_total{site="test",outcome="connect_error"}"#)
            .await,
        1.0
    );
    assert_eq!(
        node.metric(r#"outpost_requests_total{site="test",cache="error"}"#)
            .await,
        1.0
    );
    node.stop().await;
}

fn url_of(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}

#[tokio::test]
async fn garbage_from_origin_is_502_origin_protocol() {
    let garbage = raw_origin(b"garbage\r\n\r\n").await;
    let node = Node::start(&site_config(&url_of(garbage), "")).await;
    let response = get(&node, "/x").await;
    assert_error(&response, 502, "origin-protocol");
    assert_eq!(
        node.metric(r#"outpost_origin_requests_total{site="test",outcome="protocol_error"}"#)
            .await,
        1.0
    );
    node.stop().await;
}

#[tokio::test]
async fn first_byte_timeout_is_504_origin_timeout() {
    let origin = Origin::start(|_, _| {
        Reply::ok("too late")
            .cache("max-age=60")
            .delay(Duration::from_secs(2))
    })
    .await;
    let node = Node::start(&long_form(
        &[origin.url()],
        "connect_timeout = \"1s\"\nfirst_byte_timeout = \"300ms\"",
    ))
    .await;
    let started = Instant::now();
    let response = get(&node, "/slow").await;
    let took = started.elapsed();
    assert_error(&response, 504, "origin-timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    assert_eq!(origin.count("/slow"), 1, "a timed-out GET is not retried");
    assert_eq!(
        node.metric(r#"outpost_origin_requests_total{site="test",outcome="timeout"}"#)
            .await,
        1.0
    );
    node.stop().await;
}

/// An origin response announcing 10 000 bytes (storable) that stops after 1 000.
fn cut_response(chunked: bool) -> Vec<u8> {
    let mut response = if chunked {
        b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n"
            .to_vec()
    } else {
        b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: 10000\r\n\r\n".to_vec()
    };
    response.extend_from_slice(&[b'p'; 1000]);
    if chunked {
        response.extend_from_slice(b"\r\n");
    }
    response
}

/// GET /broken twice. `check` judges each result; as nothing partial may be stored, every
/// attempt must reach the origin and the cache must stay empty.
async fn broken_twice(
    node: &Node,
    origin_count: impl Fn() -> usize,
    check: impl Fn(usize, &Result<Resp, Error>),
) {
    for attempt in 1..=2 {
        let result = try_send(
            node.http,
            Method::GET,
            "/broken",
            "example.test",
            &[],
            Bytes::new(),
        )
        .await;
        check(attempt, &result);
        assert_eq!(
            origin_count(),
            attempt,
            "attempt {attempt}: the partial body was stored"
        );
    }
    let text = node.metrics().await;
    assert_eq!(
        util::must_sample(&text, "outpost_cache_entries"),
        0.0,
        "{text}"
    );
}

#[tokio::test]
async fn origin_breaking_mid_body_aborts_the_transfer_and_is_not_stored() {
    let origin = CutOrigin::start(cut_response(false)).await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    broken_twice(
        &node,
        || origin.count(),
        |attempt, result| {
            // The head went out as a 200 before the body broke, so the client must learn of the
            // failure as an aborted transfer, never as a response that looks complete.
            if let Ok(response) = result {
                panic!(
                    "attempt {attempt}: a complete response: {} with {} bytes, {}",
                    response.status,
                    response.body.len(),
                    response.cache_status()
                );
            }
        },
    )
    .await;
    node.stop().await;
}

#[tokio::test]
async fn origin_breaking_mid_body_is_seen_short_on_the_wire() {
    for chunked in [false, true] {
        let origin = CutOrigin::start(cut_response(chunked)).await;
        let node = Node::start(&site_config(&origin.url(), "")).await;
        let response = raw_exchange(
            node.http,
            b"GET /broken HTTP/1.1\r\nHost: example.test\r\n\r\n",
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.head);
        // Cache-Status went out before the body broke: it says what the fill meant to do, and
        // the discarded fill is counted.
        let status = response.header("cache-status").unwrap_or_default();
        assert!(status.contains("; stored"), "{}", response.head);
        let discarded = r#"outpost_fills_discarded_total{site="test",reason="body-failed"}"#;
        eventually("the discarded fill is counted", || async {
            node.metric(discarded).await == 1.0
        })
        .await;
        if chunked {
            let te = response.header("transfer-encoding").unwrap_or_default();
            assert!(te.contains("chunked"), "{}", response.head);
            assert!(
                !response.body.ends_with(b"0\r\n\r\n"),
                "a chunked body cut short must not end with the last chunk"
            );
        } else {
            let length = response.header("content-length");
            assert_eq!(length.as_deref(), Some("10000"), "{}", response.head);
            assert_eq!(response.body.len(), 1000, "{}", response.head);
        }
        node.stop().await;
    }
}

#[tokio::test]
async fn origin_body_error_is_never_a_complete_response_and_not_stored() {
    // The harness origin fails its body right after the first chunk; depending on what the
    // origin's HTTP stack flushed, the node sees a broken head (502) or a broken body (an
    // aborted transfer). Either way nothing looks complete and nothing is stored.
    const LEN: u64 = 10_000;
    let origin = Origin::start(|_, _| {
        Reply::ok("")
            .cache("max-age=600")
            .header("content-length", LEN.to_string())
            .body(ReplyBody::Broken {
                first: Bytes::from(vec![b'p'; 1000]),
                len: LEN,
            })
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    broken_twice(
        &node,
        || origin.count("/broken"),
        |attempt, result| {
            if let Ok(response) = result {
                assert_eq!(response.status, 502, "attempt {attempt}: {response:?}");
                let cache_status = response.cache_status();
                assert!(
                    cache_status.contains("detail=origin-"),
                    "attempt {attempt}: {cache_status}"
                );
            }
        },
    )
    .await;
    node.stop().await;
}

#[tokio::test]
async fn origin_500_without_cache_headers_is_passed_through_and_not_stored() {
    let origin = Origin::start(|_, n| Reply::ok(format!("broken #{n}")).status(500)).await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    for n in 1..=2 {
        let response = get(&node, "/err").await;
        assert_eq!(response.status, 500);
        assert_eq!(response.text(), format!("broken #{n}"));
        let cache_status = response.cache_status();
        assert!(
            cache_status.contains("fwd-status=500") && !cache_status.contains("stored"),
            "{cache_status}"
        );
        assert_eq!(origin.count("/err"), n);
    }
    let text = node.metrics().await;
    assert_eq!(
        util::must_sample(&text, "outpost_cache_entries"),
        0.0,
        "{text}"
    );
    node.stop().await;
}

#[tokio::test]
async fn get_is_retried_on_the_next_server_when_one_refuses() {
    let origin = Origin::start(|seen, _| Reply::ok(format!("served {}", seen.path))).await;
    let closed = url_of(closed_port().await);
    let node = Node::start(&long_form(
        &[closed, origin.url()],
        "connect_timeout = \"1s\"",
    ))
    .await;
    // Uncacheable responses and distinct paths: every request goes to an origin server.
    for i in 0..6 {
        let path = format!("/r{i}");
        let response = get(&node, &path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.cache_status());
        assert_eq!(response.text(), format!("served {path}"));
    }
    assert_eq!(origin.total(), 6);
    let text = node.metrics().await;
    let refused = util::must_sample(
        &text,
        r#"outpost_origin_requests_total{site="test",outcome="connect_error"}"#,
    );
    assert!(
        refused >= 1.0,
        "round robin must have tried the closed server: {text}"
    );
    node.stop().await;
}

#[tokio::test]
async fn forwarding_headers_are_added_and_client_hop_by_hop_headers_removed() {
    let origin = Origin::fixed("ok", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let request = b"GET /hop HTTP/1.1\r\n\
        Host: example.test\r\n\
        Connection: x-foo, close\r\n\
        x-foo: 1\r\n\
        x-kept: 2\r\n\
        Keep-Alive: timeout=5\r\n\
        TE: trailers\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
        \r\n";
    let response = raw_exchange(node.http, request).await;
    assert_eq!(response.status, 200, "{}", response.head);
    let seen = origin.last("/hop");
    let header = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    assert_eq!(header("host").as_deref(), Some("example.test"));
    assert_eq!(header("via").as_deref(), Some("1.1 edge-test"));
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    let forwarded = header("forwarded").unwrap_or_default();
    assert!(forwarded.contains("for=127.0.0.1"), "{forwarded}");
    assert!(forwarded.contains("host="), "{forwarded}");
    assert!(forwarded.contains("example.test"), "{forwarded}");
    assert_eq!(header("x-kept").as_deref(), Some("2"));
    for gone in ["x-foo", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(header(gone), None, "{gone} reached the origin: {seen:?}");
    }
    let connection = header("connection").unwrap_or_default();
    assert!(!connection.contains("x-foo"), "{connection}");
    node.stop().await;
}

#[tokio::test]
async fn existing_forwarding_headers_are_appended_to() {
    let origin = Origin::fixed("ok", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let response = get_with(
        &node,
        "/chain",
        &[("via", "1.1 upstream"), ("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = origin.last("/chain");
    assert_eq!(seen.headers["via"], "1.1 upstream, 1.1 edge-test");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    node.stop().await;
}

#[tokio::test]
async fn origin_hop_by_hop_headers_do_not_reach_the_client() {
    let origin = Origin::start(|_, _| {
        Reply::ok("hop")
            .cache("max-age=60")
            .header("connection", "x-bar")
            .header("x-bar", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept")
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let miss = get(&node, "/hop").await;
    assert!(miss.cache_status().contains("stored"), "{:?}", miss.headers);
    eventually("the response is stored", || async {
        node.metric("outpost_cache_entries").await == 1.0
    })
    .await;
    let hit = get(&node, "/hop").await;
    assert!(hit.cache_status().contains("hit"), "{:?}", hit.headers);
    for response in [&miss, &hit] {
        assert_eq!(response.text(), "hop");
        assert_eq!(response.header("x-end-to-end"), "kept");
        assert!(
            !response.headers.contains_key("x-bar"),
            "{:?}",
            response.headers
        );
        assert!(
            !response.headers.contains_key("keep-alive"),
            "{:?}",
            response.headers
        );
        assert!(
            !response.header("connection").contains("x-bar"),
            "{:?}",
            response.headers
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn post_body_is_streamed_to_the_origin_intact() {
    let origin = Origin::start(|seen, _| {
        Reply::ok(seen.body.clone())
            .status(201)
            .header("x-got", seen.body.len().to_string())
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    // 1 MiB that is not one repeated byte, so reordering or truncation would show.
    let body: Bytes = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect::<Vec<u8>>()
        .into();
    let response = send(
        node.http,
        Method::POST,
        "/upload",
        "example.test",
        &[("content-type", "application/octet-stream")],
        body.clone(),
    )
    .await;
    assert_eq!(response.status, 201);
    assert_eq!(response.header("x-got"), (1 << 20).to_string());
    assert!(response.body == body, "the echoed body differs");
    let cache_status = response.cache_status();
    assert!(
        cache_status.starts_with("edge-test; fwd=method; fwd-status=201"),
        "{cache_status}"
    );
    let seen = origin.last("/upload");
    assert_eq!(seen.method, Method::POST);
    assert!(seen.body == body, "the origin got a different body");
    assert_eq!(seen.headers["content-length"], (1 << 20).to_string());
    node.stop().await;
}

#[tokio::test]
async fn https_origin_with_the_site_ca_is_trusted() {
    let origin = TlsOrigin::start("over tls").await;
    let server = format!("https://127.0.0.1:{}", origin.addr.port());
    let node = Node::start(&long_form(&[server], "tls = { ca = \"ca.pem\" }")).await;
    let miss = get(&node, "/s").await;
    assert_eq!(miss.status, 200, "{} {}", miss.cache_status(), miss.text());
    assert_eq!(miss.text(), "over tls");
    assert_eq!(origin.count(), 1);
    node.stop().await;
}

#[tokio::test]
async fn https_origin_without_the_ca_is_502() {
    let origin = TlsOrigin::start("over tls").await;
    let server = format!("https://127.0.0.1:{}", origin.addr.port());
    let node = Node::start(&long_form(&[server], "")).await;
    let response = get(&node, "/s").await;
    assert_eq!(response.status, 502, "{}", response.cache_status());
    let cache_status = response.cache_status();
    assert!(
        cache_status.contains("detail=origin-tls"),
        "the reason is the origin's certificate: {cache_status}"
    );
    assert!(
        !response.text().contains("localhost") && !response.text().contains("127.0.0.1"),
        "certificate names stay in the log: {}",
        response.text()
    );
    assert_eq!(
        origin.count(),
        0,
        "no request was sent over the untrusted TLS"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_failing_server_leaves_rotation_and_stops_costing_requests() {
    let origin = Origin::start(|seen, _| Reply::ok(format!("served {}", seen.path))).await;
    let closed_addr = closed_port().await;
    let node = Node::start(&long_form(
        &[url_of(closed_addr), origin.url()],
        "connect_timeout = \"1s\"",
    ))
    .await;
    for i in 0..30 {
        let path = format!("/e{i}");
        let r = get(&node, &path).await;
        assert_eq!(r.text(), format!("served {path}"));
    }
    let text = node.metrics().await;
    let refused = util::must_sample(
        &text,
        r#"outpost_origin_requests_total{site="test",outcome="connect_error"}"#,
    );
    // Round robin would have tried the dead server on every other request (15 times); out of
    // rotation after 3 failures, it is tried again only after its backoff.
    assert!(
        refused <= 4.0,
        "the dead server kept costing requests: {refused}"
    );
    let server = format!("server=\"{closed_addr}\"");
    let sample = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&server))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(sample("outpost_origin_server_up"), Some(0.0), "{text}");
    assert_eq!(
        sample("outpost_origin_ejections_total"),
        Some(1.0),
        "{text}"
    );
    node.stop().await;
}

#[tokio::test]
async fn with_every_server_out_of_rotation_requests_still_go_to_it_and_stale_if_error_serves() {
    let addr = util::answers_once(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\ncache-control: max-age=1, stale-if-error=600\r\nage: 5\r\netag: \"s\"\r\n\r\nstale",
        util::Then::Hang,
    )
    .await;
    let node = Node::start(&long_form(
        &[url_of(addr)],
        "first_byte_timeout = \"300ms\"",
    ))
    .await;
    assert_eq!(get(&node, "/s").await.text(), "stale");
    // Three timeouts take the only server out of rotation.
    for i in 0..3 {
        let r = get(&node, &format!("/t{i}")).await;
        assert_eq!(r.status, 504, "{}", r.cache_status());
    }
    // Panic mode: the server is still asked (and times out again), never skipped with a 503.
    let down = get(&node, "/u").await;
    assert_error(&down, 504, "origin-timeout");
    let stale = get(&node, "/s").await;
    assert_eq!(stale.text(), "stale");
    assert!(
        stale.cache_status().contains("detail=stale-if-error"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(
        node.metric(r#"outpost_origin_panic{site="test"}"#).await,
        1.0
    );
    assert_eq!(
        node.metric(r#"outpost_origin_panic_requests_total{site="test"}"#)
            .await,
        2.0
    );
    node.stop().await;
}

/// What a [`scripted_origin`] does with one connection.
#[derive(Clone, Copy)]
enum Act {
    /// `503` with `x-from: origin`.
    Unavailable,
    /// Read the request, close without a byte.
    Close,
    /// `200` with the path as the body.
    Serve,
}

/// A single-server origin that acts out `script` one connection at a time (each answer
/// closes its connection), then serves normally; counts connections.
async fn scripted_origin(
    script: Vec<Act>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let turn = count.fetch_add(1, Ordering::SeqCst);
            let act = script.get(turn).copied().unwrap_or(Act::Serve);
            tokio::spawn(async move {
                let Some(head) = util::read_head(&mut stream).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split(' ').nth(1).unwrap_or("?").to_owned();
                let response = match act {
                    Act::Close => return,
                    Act::Unavailable => "HTTP/1.1 503 Service Unavailable\r\nx-from: origin\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy".to_owned(),
                    Act::Serve => format!(
                        "HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{path}",
                        path.len()
                    ),
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_flaky_lone_origin_never_becomes_outpost_503s() {
    let mut script = vec![Act::Unavailable; 5];
    script.extend([Act::Close; 3]);
    let (addr, connections) = scripted_origin(script).await;
    let node = Node::start(&long_form(&[url_of(addr)], "retries = 0")).await;
    for i in 0..5 {
        let r = get(&node, &format!("/a{i}")).await;
        assert_eq!(r.status, 503, "{}", r.cache_status());
        assert_eq!(
            r.header("x-from"),
            "origin",
            "the origin's own 503, passed on"
        );
        assert_eq!(r.text(), "busy");
    }
    // Answers are not failures: still in rotation.
    assert_eq!(
        node.metric(&format!(
            r#"outpost_origin_server_up{{site="test",server="{addr}"}}"#
        ))
        .await,
        1.0
    );
    for i in 0..3 {
        let r = get(&node, &format!("/b{i}")).await;
        assert_error(&r, 502, "origin-reset");
    }
    // Three resets took the only server out; panic mode still sends to it, and its answer
    // brings it back.
    let r = get(&node, "/c").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "/c"),
        "{}",
        r.cache_status()
    );
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 9);
    let text = node.metrics().await;
    let server = format!(r#"{{site="test",server="{addr}"}}"#);
    assert_eq!(
        util::must_sample(&text, &format!("outpost_origin_ejections_total{server}")),
        1.0
    );
    assert_eq!(
        util::must_sample(&text, &format!("outpost_origin_server_up{server}")),
        1.0
    );
    assert_eq!(
        util::must_sample(&text, r#"outpost_origin_panic{site="test"}"#),
        0.0,
        "panic mode ends with the answer"
    );
    assert_eq!(
        util::must_sample(&text, r#"outpost_origin_panic_requests_total{site="test"}"#),
        1.0
    );
    let r = get(&node, "/d").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "/d"));
    node.stop().await;
}

#[tokio::test]
async fn passive_statuses_opt_into_counting_gateway_errors() {
    let (addr, connections) = scripted_origin(vec![Act::Unavailable; 4]).await;
    let node = Node::start(&long_form(
        &[url_of(addr)],
        "health = { passive_statuses = [502, 503, 504] }",
    ))
    .await;
    for i in 0..4 {
        let r = get(&node, &format!("/a{i}")).await;
        assert_eq!(r.header("x-from"), "origin", "{}", r.cache_status());
    }
    let text = node.metrics().await;
    let server = format!(r#"{{site="test",server="{addr}"}}"#);
    assert_eq!(
        util::must_sample(&text, &format!("outpost_origin_ejections_total{server}")),
        2.0,
        "out after three 503s, and again after the trial in panic mode"
    );
    assert_eq!(
        util::must_sample(&text, r#"outpost_origin_panic{site="test"}"#),
        1.0
    );
    let r = get(&node, "/b").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "/b"));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 5);
    node.stop().await;
}

/// `outpost_origin_server_up` of one server.
fn server_up(text: &str, server: std::net::SocketAddr) -> Option<f64> {
    let server = format!("server=\"{server}\"");
    text.lines()
        .find(|l| l.starts_with("outpost_origin_server_up") && l.contains(&server))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn active_health_probes_take_a_server_out_and_bring_it_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sick = Arc::new(AtomicBool::new(true));
    let flag = sick.clone();
    let a = Origin::start(move |seen, _| match seen.path.as_str() {
        "/health" if flag.load(Ordering::Relaxed) => Reply::ok("sick").status(500),
        _ => Reply::ok("a").cache("no-store"),
    })
    .await;
    let b = Origin::start(|_, _| Reply::ok("b").cache("no-store")).await;
    let node = Node::start(&long_form(
        &[a.url(), b.url()],
        "health = { path = \"/health\", interval = \"50ms\", timeout = \"200ms\", rise = 2, fall = 2 }",
    ))
    .await;
    eventually("a out of rotation", || async {
        server_up(&node.metrics().await, a.addr) == Some(0.0)
    })
    .await;
    let before = a.requests().iter().filter(|s| s.path != "/health").count();
    for i in 0..10 {
        assert_eq!(get(&node, &format!("/p{i}")).await.text(), "b");
    }
    let after = a.requests().iter().filter(|s| s.path != "/health").count();
    assert_eq!(after, before, "no traffic to a server out of rotation");
    sick.store(false, Ordering::Relaxed);
    eventually("a back in rotation", || async {
        server_up(&node.metrics().await, a.addr) == Some(1.0)
    })
    .await;
    let served: Vec<String> = futures_util::future::join_all((0..10).map(|i| {
        let node = &node;
        async move { get(node, &format!("/q{i}")).await.text() }
    }))
    .await;
    assert!(served.iter().any(|s| s == "a"), "{served:?}");
    node.stop().await;
}

#[tokio::test]
async fn balance_by_hash_sends_each_object_to_one_server() {
    let a = Origin::start(|_, _| Reply::ok("a").cache("no-store")).await;
    let b = Origin::start(|_, _| Reply::ok("b").cache("no-store")).await;
    let node = Node::start(&long_form(&[a.url(), b.url()], "balance = \"hash\"")).await;
    let mut servers = std::collections::HashSet::new();
    for i in 0..20 {
        let path = format!("/obj{i}");
        let first = get(&node, &path).await.text();
        for _ in 0..3 {
            assert_eq!(get(&node, &path).await.text(), first, "{path} moved");
        }
        servers.insert(first);
    }
    assert_eq!(servers.len(), 2, "20 objects all on one server");
    node.stop().await;
}

#[tokio::test]
async fn retries_zero_never_resends() {
    let origin = Origin::start(|seen, _| Reply::ok(format!("served {}", seen.path))).await;
    let closed = url_of(closed_port().await);
    let node = Node::start(&long_form(&[closed, origin.url()], "retries = 0")).await;
    let statuses: Vec<u16> = futures_util::future::join_all((0..2).map(|i| {
        let node = &node;
        async move { get(node, &format!("/n{i}")).await.status.as_u16() }
    }))
    .await;
    // Round robin sends one of the two to the closed server, and nothing retries it.
    assert!(statuses.contains(&502), "{statuses:?}");
    node.stop().await;
}

#[tokio::test]
async fn conflicting_content_lengths_from_the_origin_are_its_protocol_error_every_time() {
    let origin = CutOrigin::start(
        b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"
            .to_vec(),
    )
    .await;
    let node = Node::start(&site_config(&url_of(origin.addr), "")).await;
    // Past the three failures that take the lone server out: panic mode still asks it, and
    // each answer is the origin's protocol error, never 503 origin-down, never stored.
    for _ in 0..5 {
        let r = get(&node, "/dup").await;
        assert_error(&r, 502, "origin-protocol");
    }
    assert_eq!(origin.count(), 5);
    node.stop().await;
}
