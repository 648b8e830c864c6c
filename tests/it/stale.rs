//! RFC 5861: serving stale content while it is renewed, and instead of origin errors.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::harness::*;

/// `Age: 100` with `max-age=60`: stale as soon as it is stored.
fn already_stale(body: &'static str, cache_control: &'static str) -> Reply {
    Reply::ok(body)
        .cache(cache_control)
        .header("age", "100")
        .header("etag", "\"v1\"")
}

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_renews_in_the_background() {
    let origin = Origin::start(|_, n| match n {
        1 => already_stale("old", "max-age=60, stale-while-revalidate=600"),
        _ => Reply::ok("new")
            .cache("max-age=600")
            .header("etag", "\"v2\"")
            .delay(Duration::from_millis(800)),
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/swr").await;
    let started = Instant::now();
    let stale = get(&node, "/swr").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited for the origin: {:?}",
        started.elapsed()
    );
    assert_eq!(stale.text(), "old");
    assert!(
        stale.cache_status().contains("hit")
            && stale
                .cache_status()
                .contains("detail=stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    assert!(
        stale.cache_status().contains("ttl=-"),
        "negative ttl when stale: {}",
        stale.cache_status()
    );
    eventually("the background fill to store the new response", || async {
        get(&node, "/swr").await.text() == "new"
    })
    .await;
    assert_eq!(
        origin.count("/swr"),
        2,
        "one background fill, however many stale hits"
    );
}

#[tokio::test]
async fn stale_if_error_serves_the_stored_response_on_origin_5xx() {
    let origin = Origin::start(|_, n| match n {
        1 => already_stale("good", "max-age=60, stale-if-error=600"),
        _ => Reply::ok("broken").status(500),
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/sie").await;
    let r = get(&node, "/sie").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "good"));
    assert!(
        r.cache_status().contains("fwd-status=500")
            && r.cache_status().contains("detail=stale-if-error"),
        "{}",
        r.cache_status()
    );
}

#[tokio::test]
async fn stale_if_error_serves_the_stored_response_on_origin_timeout() {
    let origin = Origin::start(|_, n| match n {
        1 => already_stale("good", "max-age=60, stale-if-error=600"),
        _ => Reply::ok("late").delay(Duration::from_secs(3)),
    })
    .await;
    let toml = format!(
        "[node]\nname = \"edge-test\"\n[[site]]\nhosts = [\"example.test\"]\n[site.origin]\nservers = [\"{}\"]\nfirst_byte_timeout = \"300ms\"\n",
        origin.url()
    );
    let node = Node::start(&toml).await;
    get(&node, "/t").await;
    let r = get(&node, "/t").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "good"));
}

#[tokio::test]
async fn stale_if_error_from_the_request_and_must_revalidate_overriding_it() {
    let origin = Origin::start(|seen, n| match (seen.path.as_str(), n) {
        ("/req", 1) => already_stale("good", "max-age=60"),
        ("/strict", 1) => already_stale("good", "max-age=60, stale-if-error=600, must-revalidate"),
        _ => Reply::ok(Bytes::from_static(b"broken")).status(503),
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/req").await;
    let asked = get_with(&node, "/req", &[("cache-control", "stale-if-error=600")]).await;
    assert_eq!(
        asked.text(),
        "good",
        "the request's stale-if-error counts (RFC 5861 §4)"
    );
    get(&node, "/strict").await;
    let strict = get(&node, "/strict").await;
    assert_eq!(
        strict.status, 504,
        "must-revalidate forbids serving stale: a gateway timeout (RFC 9111 §5.2.2.2)"
    );
    assert!(
        strict.cache_status().contains("fwd-status=503")
            && strict.cache_status().contains("detail=must-revalidate"),
        "{}",
        strict.cache_status()
    );
}
