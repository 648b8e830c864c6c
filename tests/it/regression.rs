//! Regression tests, each named after the bug it pins (found in review of the request path).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn cookie(seen: &Seen) -> String {
    seen.header("cookie")
}

/// Concurrent clients with distinct cookies; every one must get the body made for its own.
async fn burst_with_cookies(node: Arc<Node>, path: &'static str, n: usize) {
    let mut clients = Vec::new();
    for i in 0..n {
        let node = node.clone();
        clients.push(tokio::spawn(async move {
            let cookie = format!("user={i}");
            let r = get_with(&node, path, &[("cookie", &cookie)]).await;
            (cookie, r.text())
        }));
    }
    for c in clients {
        let (sent, got) = c.await.expect("client");
        assert_eq!(got, sent, "a client received another client's response");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_response_goes_only_to_the_client_whose_request_fetched_it() {
    let origin = Origin::start(|seen, _| {
        Reply::ok(cookie(seen))
            .cache("private")
            .header("set-cookie", format!("s={}", cookie(seen)))
            .delay(Duration::from_millis(200))
    })
    .await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    burst_with_cookies(node, "/me", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_but_not_fresh_response_is_not_shared_with_waiters() {
    // No Cache-Control, no Last-Modified: storable (200 is heuristically cacheable) but with
    // no freshness, so it may not answer any other request without validation.
    let origin =
        Origin::start(|seen, _| Reply::ok(cookie(seen)).delay(Duration::from_millis(200))).await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    burst_with_cookies(node.clone(), "/account", 20).await;
    let origin = Origin::start(|seen, _| {
        Reply::ok(cookie(seen))
            .cache("no-cache, max-age=60")
            .delay(Duration::from_millis(200))
    })
    .await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    burst_with_cookies(node, "/no-cache", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidated_variant_is_not_given_to_a_waiter_of_another_variant() {
    let origin = Origin::start(|seen, n| {
        let lang = seen.header("accept-language");
        let reply = if n <= 2 {
            Reply::ok(lang.clone())
        } else {
            Reply::ok(Bytes::new())
                .status(304)
                .delay(Duration::from_millis(300))
        };
        reply
            .cache("max-age=0")
            .header("vary", "accept-language")
            .header("etag", format!("\"{lang}\""))
    })
    .await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    get_with(&node, "/v", &[("accept-language", "en")]).await;
    get_with(&node, "/v", &[("accept-language", "fr")]).await;
    let leader = {
        let node = node.clone();
        tokio::spawn(async move { get_with(&node, "/v", &[("accept-language", "en")]).await })
    };
    eventually("the revalidation to reach the origin", || async {
        origin.count("/v") >= 3
    })
    .await;
    let follower = get_with(&node, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(follower.text(), "fr");
    assert_eq!(leader.await.expect("leader").text(), "en");
}

#[tokio::test]
async fn a_304_bringing_set_cookie_is_not_stored() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            Reply::ok("page").cache("max-age=0").header("etag", "\"p\"")
        } else {
            Reply::ok(Bytes::new())
                .status(304)
                .cache("max-age=60")
                .header("etag", "\"p\"")
                .header("set-cookie", format!("session={n}"))
        }
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/p").await;
    let second = get(&node, "/p").await;
    assert_eq!(
        second.header("set-cookie"),
        "session=2",
        "the revalidating client gets its own cookie"
    );
    let third = get(&node, "/p").await;
    assert_ne!(
        third.header("set-cookie"),
        "session=2",
        "another client's cookie was replayed from the cache"
    );
    assert_eq!(origin.count("/p"), 3);
}

#[tokio::test]
async fn fields_named_by_private_are_not_served_from_the_cache() {
    let origin = Origin::start(|_, _| {
        Reply::ok("doc")
            .cache("max-age=60, private=\"x-user\"")
            .header("x-user", "alice")
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let first = get(&node, "/doc").await;
    assert_eq!(first.header("x-user"), "alice");
    let hit = get(&node, "/doc").await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(
        hit.header("x-user"),
        "",
        "private field served to another client"
    );
}

#[tokio::test]
async fn if_range_with_another_validator_gets_the_whole_representation() {
    let origin = Origin::start(|_, _| {
        Reply::ok("0123456789")
            .cache("max-age=60")
            .header("etag", "\"v2\"")
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/file").await;
    let stale_resume = get_with(
        &node,
        "/file",
        &[("range", "bytes=5-"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_eq!(
        (stale_resume.status.as_u16(), stale_resume.text().as_str()),
        (200, "0123456789")
    );
    let resume = get_with(
        &node,
        "/file",
        &[("range", "bytes=5-"), ("if-range", "\"v2\"")],
    )
    .await;
    assert_eq!(
        (resume.status.as_u16(), resume.text().as_str()),
        (206, "56789")
    );
}

#[tokio::test]
async fn a_get_with_content_length_does_not_stall_the_fill() {
    let origin = Origin::fixed("fast", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let started = Instant::now();
    let r = send(
        node.http,
        Method::GET,
        "/cl",
        "example.test",
        &[],
        Bytes::from_static(b"abcd"),
    )
    .await;
    assert_eq!(r.text(), "fast");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        origin.last("/cl").headers.get("content-length").is_none(),
        "fill forwarded the client's Content-Length"
    );
}

#[tokio::test]
async fn a_purge_during_a_fill_keeps_the_fill_from_storing() {
    let origin = Origin::start(|_, _| {
        Reply::ok("old")
            .cache("max-age=600")
            .delay(Duration::from_millis(400))
    })
    .await;
    let node = Arc::new(Node::start(&site_config(&origin.url(), "")).await);
    let filling = {
        let node = node.clone();
        tokio::spawn(async move { get(&node, "/doc").await })
    };
    eventually("the fill to reach the origin", || async {
        origin.count("/doc") == 1
    })
    .await;
    let purge = send(
        node.admin,
        Method::POST,
        "/purge",
        "admin",
        &[("authorization", "Bearer secret")],
        Bytes::from_static(br#"{"urls": ["http://example.test/doc"]}"#),
    )
    .await;
    assert_eq!(purge.status, 200);
    assert_eq!(filling.await.expect("fill").text(), "old");
    let after = get_with(&node, "/doc", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(
        after.status, 504,
        "the purged content was stored by the fill in flight"
    );
}

#[tokio::test]
async fn another_port_in_host_does_not_share_the_cache() {
    let origin = Origin::start(|seen, _| {
        let host = seen.header("host");
        Reply::ok(format!("https://{host}/elsewhere")).cache("max-age=60")
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let poisoned = send(
        node.http,
        Method::GET,
        "/r",
        "example.test:1337",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(poisoned.text(), "https://example.test:1337/elsewhere");
    let normal = get(&node, "/r").await;
    assert_eq!(normal.text(), "https://example.test/elsewhere");
    let bad = send(
        node.http,
        Method::GET,
        "/r",
        "example.test:1\",for=6.6.6.6",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn error_bodies_do_not_reveal_the_origin() {
    let closed = closed_port().await;
    let node = Node::start(&site_config(&format!("http://{closed}"), "")).await;
    let r = get(&node, "/x").await;
    assert_eq!(r.status, 502);
    assert!(!r.text().contains(&closed.to_string()), "{}", r.text());
    assert!(!r.text().contains("127.0.0.1"), "{}", r.text());
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(
        &origin.url(),
        "[listen]\nheader_read_timeout = \"300ms\"",
    ))
    .await;
    for opening in [&b""[..], &b"PRI "[..]] {
        let mut stream = tokio::net::TcpStream::connect(node.http)
            .await
            .expect("connect");
        stream.write_all(opening).await.expect("write");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "connection left open: {read:?}"
        );
    }
}
