//! RFC 5861: serving stale content while it is renewed, and instead of origin errors. The
//! table's cases run on one node and through every cluster placement (`topology`).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::harness::*;
use crate::topology::{Ctx, both_ways};

both_ways! {
    stale_while_revalidate_serves_at_once_and_renews_in_the_background,
    stale_if_error_serves_the_stored_response_on_origin_5xx,
    stale_if_error_from_the_request_and_must_revalidate_overriding_it,
}

/// `Age: 100` with `max-age=60`: stale as soon as it is stored.
fn already_stale(body: &'static str, cache_control: &'static str) -> Reply {
    Reply::ok(body)
        .cache(cache_control)
        .header("age", "100")
        .header("etag", "\"v1\"")
}

async fn stale_while_revalidate_serves_at_once_and_renews_in_the_background(t: Ctx) {
    t.origin_answers(|_, n| match n {
        1 => already_stale("old", "max-age=60, stale-while-revalidate=600"),
        _ => Reply::ok("new")
            .cache("max-age=600")
            .header("etag", "\"v2\"")
            .delay(Duration::from_millis(800)),
    });
    t.get("/swr").await;
    let started = Instant::now();
    let stale = t.get("/swr").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited for the origin: {:?}",
        started.elapsed()
    );
    assert_eq!(stale.text(), "old");
    let holder = t.holder(&stale);
    assert!(
        holder.starts_with("hit; ttl=-") && holder.ends_with("detail=stale-while-revalidate"),
        "negative ttl when stale: {}",
        stale.cache_status()
    );
    eventually("the background fill to store the new response", || async {
        t.get("/swr").await.text() == "new"
    })
    .await;
    assert_eq!(
        t.origin.count("/swr"),
        2,
        "one background fill, however many stale hits"
    );
}

async fn stale_if_error_serves_the_stored_response_on_origin_5xx(t: Ctx) {
    t.origin_answers(|_, n| match n {
        1 => already_stale("good", "max-age=60, stale-if-error=600"),
        _ => Reply::ok("broken").status(500),
    });
    t.get("/sie").await;
    let r = t.get("/sie").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "good"));
    assert_eq!(r.header("etag"), "\"v1\"");
    assert!(
        t.holder(&r).starts_with("fwd=stale; fwd-status=500; ttl=-")
            && t.holder(&r).ends_with("detail=stale-if-error"),
        "{}",
        r.cache_status()
    );
    assert_eq!(t.origin.count("/sie"), 2);
}

async fn stale_if_error_from_the_request_and_must_revalidate_overriding_it(t: Ctx) {
    t.origin_answers(|seen, n| match (seen.path.as_str(), n) {
        ("/req", 1) => already_stale("good", "max-age=60"),
        ("/strict", 1) => already_stale("good", "max-age=60, stale-if-error=600, must-revalidate"),
        _ => Reply::ok(Bytes::from_static(b"broken")).status(503),
    });
    t.get("/req").await;
    let asked = t
        .get_with("/req", &[("cache-control", "stale-if-error=600")])
        .await;
    assert_eq!(
        asked.text(),
        "good",
        "the request's stale-if-error counts (RFC 5861 §4)"
    );
    t.get("/strict").await;
    let strict = t.get("/strict").await;
    assert_eq!(
        strict.status, 504,
        "must-revalidate forbids serving stale: a gateway timeout (RFC 9111 §5.2.2.2)"
    );
    assert!(
        t.holder(&strict).starts_with("fwd=stale; fwd-status=503")
            && t.holder(&strict).ends_with("detail=must-revalidate"),
        "{}",
        strict.cache_status()
    );
    assert_eq!((t.origin.count("/req"), t.origin.count("/strict")), (2, 2));
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

/// A node whose one site is `origin`, with `cache` as its `[site.cache]` table and a
/// 300 ms first-byte timeout.
fn disconnected_config(origin: &str, cache: &str) -> String {
    format!(
        "[node]\nname = \"edge-test\"\n[[site]]\nname = \"test\"\nhosts = [\"example.test\"]\n\
         [site.origin]\nservers = [\"{origin}\"]\nfirst_byte_timeout = \"300ms\"\n\
         [site.cache]\n{cache}\n"
    )
}

/// Store `/d` with `cache_control` and `Age: 100`, make the origin unreachable (`then`), and
/// ask again.
async fn after_disconnect(cache_control: &str, cache: &str, then: crate::util::Then) -> Resp {
    let first: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\
             cache-control: {cache_control}\r\nage: 100\r\n\r\ngood"
        )
        .into_boxed_str(),
    );
    let addr = crate::util::answers_once(first, then).await;
    let node = Node::start(&disconnected_config(&format!("http://{addr}"), cache)).await;
    let stored = get(&node, "/d").await;
    assert_eq!(stored.text(), "good", "{}", stored.cache_status());
    let again = get(&node, "/d").await;
    node.stop().await;
    again
}

#[tokio::test]
async fn an_unreachable_origin_gets_stale_content_where_nothing_forbids_it() {
    use crate::util::Then::{Hang, Refuse};
    // (response Cache-Control, [site.cache], how the origin is gone, status, Cache-Status end).
    // Where stale is forbidden and the response has no validators, the store does not even
    // keep it past its lifetime: a miss, and the origin's failure.
    let cases = [
        ("max-age=1", "", Refuse, 200, "detail=stale-disconnected"),
        ("max-age=1", "", Hang, 200, "detail=stale-disconnected"),
        (
            "max-age=1",
            "serve_stale_when_disconnected = \"100s\"",
            Refuse,
            200,
            "detail=stale-disconnected",
        ),
        (
            "max-age=1",
            "serve_stale_when_disconnected = \"60s\"",
            Refuse,
            502,
            "detail=origin-connect",
        ),
        (
            "max-age=1",
            "serve_stale_when_disconnected = \"0s\"",
            Refuse,
            502,
            "detail=origin-connect",
        ),
        (
            "max-age=1, must-revalidate",
            "",
            Refuse,
            502,
            "detail=origin-connect",
        ),
        (
            "max-age=1, proxy-revalidate",
            "",
            Refuse,
            502,
            "detail=origin-connect",
        ),
        ("s-maxage=1", "", Refuse, 502, "detail=origin-connect"),
        (
            "max-age=60, no-cache",
            "",
            Refuse,
            502,
            "detail=origin-connect",
        ),
    ];
    for (cache_control, cache, then, status, cache_status) in cases {
        let r = after_disconnect(cache_control, cache, then).await;
        let what = format!("{cache_control} / {cache} / {then:?}: {}", r.cache_status());
        assert_eq!(r.status, status, "{what}");
        assert!(r.cache_status().ends_with(cache_status), "{what}");
        if status == 200 {
            assert_eq!(r.text(), "good", "{what}");
            assert!(
                r.cache_status().starts_with("edge-test; fwd=stale;"),
                "{what}"
            );
            assert!(
                !r.cache_status().contains("fwd-status"),
                "no response came: {what}"
            );
            assert!(r.cache_status().contains("; ttl=-"), "{what}");
            let age: u64 = r.header("age").parse().expect("Age");
            assert!((100..110).contains(&age), "Age stays true: {age}, {what}");
        }
    }
}

#[tokio::test]
async fn an_origin_that_answers_5xx_is_not_disconnected() {
    let origin = Origin::start(|_, n| match n {
        1 => already_stale("good", "max-age=60"),
        _ => Reply::ok("from origin").status(503),
    })
    .await;
    let node = Node::start(&disconnected_config(&origin.url(), "")).await;
    get(&node, "/a").await;
    let r = get(&node, "/a").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (503, "from origin"));
    assert!(
        r.cache_status().contains("fwd-status=503"),
        "{}",
        r.cache_status()
    );
    assert_eq!(
        node.metric(r#"outpost_requests_total{site="test",cache="stale"}"#)
            .await,
        0.0
    );
    node.stop().await;
}
