//! Per-site caching policy: RFC 9213 targeted fields and `Surrogate-Control`, defaults for
//! origins that say nothing (status TTLs, stale grace), cookies, variant bounds, cache-key
//! rules, tags and soft purges, and must-revalidate when the origin fails.

use std::time::Duration;

use futures_util::future::join_all;

use crate::harness::*;
use crate::util::purge;

/// One site in front of `origin` with `site_tables` (e.g. `[site.cache]` lines) after it.
fn site_with(origin: &Origin, site_tables: &str) -> String {
    format!("{}{site_tables}\n", site_config(&origin.url(), ""))
}

async fn node_with(origin: &Origin, site_tables: &str) -> Node {
    Node::start(&site_with(origin, site_tables)).await
}

#[tokio::test]
async fn cdn_cache_control_overrides_cache_control_and_goes_on_downstream() {
    let origin = Origin::start(|_, _| {
        Reply::ok("cdn")
            .cache("private, no-store")
            .header("cdn-cache-control", "max-age=600")
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/c").await;
    let hit = get(&node, "/c").await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(
        origin.count("/c"),
        1,
        "RFC 9213 §2.1: Cache-Control is ignored"
    );
    assert_eq!(hit.header("cache-control"), "private, no-store");
    assert_eq!(hit.header("cdn-cache-control"), "max-age=600");

    // Turned off for a site: CDN-Cache-Control is not for this node.
    let off = node_with(&origin, "[site.cache]\ncdn_cache_control = false").await;
    get(&off, "/off").await;
    get(&off, "/off").await;
    assert_eq!(origin.count("/off"), 2);
}

#[tokio::test]
async fn a_cdn_cache_control_that_is_no_valid_dictionary_leaves_cache_control_in_charge() {
    // (path, Cache-Control, CDN-Cache-Control, origin fetches for two GETs)
    let cases: &[(&str, &str, &str, usize)] = &[
        // RFC 9213 §2.1: max-age must be an Integer; the field is ignored as a whole.
        ("/string", "max-age=0", "max-age=\"600\"", 2),
        ("/decimal", "no-store", "max-age=600.0", 2),
        ("/token", "no-store", "max-age=sixty", 2),
        ("/negative", "no-store", "max-age=-600", 2),
        ("/trailing-comma", "no-store", "max-age=600,", 2),
        ("/typed-flag", "no-store", "max-age=600, no-store=\"x\"", 2),
        // Valid: it replaces Cache-Control, unknown members and parameters are ignored.
        ("/valid", "no-store", "max-age=600", 1),
        (
            "/valid-ext",
            "no-store",
            "max-age=600;p=1, x-ext=(a \"b\"), y=?0",
            1,
        ),
    ];
    let table: Vec<(String, String, String)> = cases
        .iter()
        .map(|(p, cc, cdn, _)| ((*p).to_owned(), (*cc).to_owned(), (*cdn).to_owned()))
        .collect();
    let origin = Origin::start(move |seen, _| {
        let (_, cc, cdn) = table
            .iter()
            .find(|(p, ..)| *p == seen.path)
            .expect("a path of the table");
        Reply::ok("body")
            .cache(cc)
            .header("cdn-cache-control", cdn.clone())
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    for (path, _, cdn, fetches) in cases {
        get(&node, path).await;
        let second = get(&node, path).await;
        assert_eq!(second.status, 200, "{path}");
        assert_eq!(origin.count(path), *fetches, "{path}: {cdn}");
        assert_eq!(
            second.cache_status().contains("hit"),
            *fetches == 1,
            "{path}: {}",
            second.cache_status()
        );
    }
}

#[tokio::test]
async fn the_sites_own_targeted_field_comes_first_and_stops_here() {
    let origin = Origin::start(|_, _| {
        Reply::ok("own")
            .cache("no-store")
            .header("cdn-cache-control", "no-store")
            .header("outpost-cache-control", "max-age=600")
    })
    .await;
    let node = node_with(
        &origin,
        "[site.cache]\ntargeted_field = \"Outpost-Cache-Control\"",
    )
    .await;
    let miss = get(&node, "/o").await;
    let hit = get(&node, "/o").await;
    assert_eq!(origin.count("/o"), 1);
    for r in [&miss, &hit] {
        assert_eq!(r.header("outpost-cache-control"), "", "ours: not forwarded");
        assert_eq!(r.header("cdn-cache-control"), "no-store", "forwarded");
    }
}

#[tokio::test]
async fn surrogate_control_when_enabled() {
    let origin = Origin::start(|_, _| {
        Reply::ok("s")
            .cache("max-age=0")
            .header("surrogate-control", "max-age=600")
    })
    .await;
    let on = node_with(&origin, "[site.cache]\nsurrogate_control = true").await;
    get(&on, "/s").await;
    let hit = get(&on, "/s").await;
    assert_eq!(origin.count("/s"), 1);
    assert_eq!(
        hit.header("surrogate-control"),
        "",
        "consumed by the surrogate"
    );
    assert_eq!(hit.header("cache-control"), "max-age=0");

    let off = Node::start(&site_config(&origin.url(), "")).await;
    get(&off, "/t").await;
    let passed = get(&off, "/t").await;
    assert_eq!(origin.count("/t"), 2, "not honoured unless enabled");
    assert_eq!(passed.header("surrogate-control"), "max-age=600");
}

#[tokio::test]
async fn status_ttls_cache_errors_without_overriding_the_origin() {
    let origin = Origin::start(|seen, _| match seen.path.as_str() {
        "/missing" => Reply::ok("not here").status(404),
        "/explicit" => Reply::ok("not here").status(404).cache("max-age=0"),
        "/nostore" => Reply::ok("not here").status(404).cache("no-store"),
        _ => Reply::ok("down").status(503),
    })
    .await;
    let node = node_with(
        &origin,
        "[site.cache.status_ttl]\n404 = \"30s\"\n503 = \"2s\"",
    )
    .await;
    for path in ["/missing", "/explicit", "/nostore", "/down"] {
        let first = get(&node, path).await;
        let second = get(&node, path).await;
        assert_eq!(first.status, second.status, "{path}");
    }
    assert_eq!(origin.count("/missing"), 1, "404 stored for 30s");
    assert_eq!(origin.count("/down"), 1, "503 stored for 2s");
    assert_eq!(
        origin.count("/explicit"),
        2,
        "max-age=0 wins over the default"
    );
    assert_eq!(
        origin.count("/nostore"),
        2,
        "no-store wins over the default"
    );
    let hit = get(&node, "/missing").await;
    let ttl: i64 = hit
        .cache_status()
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.trim().parse().ok())
        .expect("ttl in Cache-Status");
    assert!((28..=30).contains(&ttl), "{}", hit.cache_status());
}

#[tokio::test]
async fn grace_defaults_serve_stale_for_origins_that_send_no_directive() {
    let origin = Origin::start(|seen, n| match (seen.path.as_str(), n) {
        (_, 1) => Reply::ok("old")
            .cache("max-age=60")
            .header("age", "100")
            .header("etag", "\"v1\""),
        ("/swr", _) => Reply::ok("new")
            .cache("max-age=600")
            .delay(Duration::from_millis(300)),
        _ => Reply::ok("broken").status(503),
    })
    .await;
    let node = node_with(
        &origin,
        "[site.cache]\nserve_stale_while_revalidate = \"1h\"\nserve_stale_if_error = \"1h\"",
    )
    .await;
    get(&node, "/swr").await;
    let stale = get(&node, "/swr").await;
    assert_eq!(stale.text(), "old");
    assert!(
        stale
            .cache_status()
            .contains("detail=stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    eventually("the background renewal lands", || async {
        get(&node, "/swr").await.text() == "new"
    })
    .await;

    get(&node, "/sie").await;
    // With swr granted by the site too, the first stale request renews in the background;
    // ask with max-age=0 so this one must go to the origin, fail, and fall back.
    let fallback = get_with(&node, "/sie", &[("cache-control", "max-age=0")]).await;
    assert_eq!(
        (fallback.status.as_u16(), fallback.text().as_str()),
        (200, "old")
    );
    assert!(
        fallback.cache_status().contains("detail=stale-if-error"),
        "{}",
        fallback.cache_status()
    );
}

#[tokio::test]
async fn must_revalidate_gives_504_when_the_origin_is_unreachable() {
    // An origin that answers one request, closes, and stops listening: the next connection
    // attempt is refused.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (answered_tx, answered) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.expect("accept");
        drop(listener);
        let mut buf = vec![0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let response = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\
             cache-control: max-age=1, must-revalidate, stale-if-error=600\r\nage: 5\r\n\r\nstrict";
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        let _ = answered_tx.send(());
    });
    let node = Node::start(&site_config(&format!("http://{addr}"), "")).await;
    let first = get(&node, "/m").await;
    assert_eq!(first.text(), "strict");
    answered.await.expect("origin answered");
    let r = get(&node, "/m").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.cache_status().contains("detail=must-revalidate"),
        "{}",
        r.cache_status()
    );
}

#[tokio::test]
async fn set_cookie_responses_are_stored_without_cookies_only_when_the_site_opts_in() {
    let origin = Origin::start(|_, n| {
        Reply::ok("personal")
            .cache("max-age=600")
            .header("set-cookie", format!("sid={n}"))
            .delay(Duration::from_millis(200))
    })
    .await;
    let default = Node::start(&site_config(&origin.url(), "")).await;
    get(&default, "/d").await;
    get(&default, "/d").await;
    assert_eq!(origin.count("/d"), 2, "not stored by default");

    let node = node_with(&origin, "[site.cache]\nstore_set_cookie = true").await;
    let burst = join_all((0..8).map(|_| get(&node, "/c"))).await;
    assert_eq!(origin.count("/c"), 1, "one fill for the burst");
    let with_cookie = burst.iter().filter(|r| !r.header("set-cookie").is_empty());
    assert_eq!(
        with_cookie.count(),
        1,
        "only the client whose request fetched it gets the cookie"
    );
    let hit = get(&node, "/c").await;
    assert!(hit.cache_status().contains("hit"));
    assert_eq!(
        hit.header("set-cookie"),
        "",
        "a stored response never replays it"
    );
}

#[tokio::test]
async fn variants_per_url_are_bounded_per_site() {
    let origin = Origin::start(|seen, _| {
        Reply::ok(seen.header("x-v"))
            .cache("max-age=600")
            .header("vary", "X-V")
    })
    .await;
    let node = node_with(&origin, "[site.cache]\nmax_variants = 2").await;
    for v in ["1", "2", "3"] {
        get_with(&node, "/v", &[("x-v", v)]).await;
    }
    for v in ["2", "3"] {
        let r = get_with(&node, "/v", &[("x-v", v)]).await;
        assert!(
            r.cache_status().contains("hit"),
            "{v}: {}",
            r.cache_status()
        );
    }
    let oldest = get_with(&node, "/v", &[("x-v", "1")]).await;
    assert!(
        oldest.cache_status().contains("fwd=vary-miss"),
        "{}",
        oldest.cache_status()
    );
    assert_eq!(origin.count("/v"), 4);
}

#[tokio::test]
async fn purge_by_tag_removes_every_tagged_entry_and_only_those() {
    let origin = Origin::start(|seen, _| {
        let tags = match seen.path.as_str() {
            "/1" => "product-1 shoes",
            "/2" => "shoes",
            _ => "hats",
        };
        Reply::ok(seen.path.clone())
            .cache("max-age=600")
            .header("surrogate-key", tags)
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    for path in ["/1", "/2", "/3"] {
        let r = get(&node, path).await;
        assert_eq!(r.header("surrogate-key"), "", "tags stay at the edge");
    }
    let done = purge(node.admin, Some("secret"), r#"{"tags":["shoes"]}"#).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let json: serde_json::Value = serde_json::from_slice(&done.body).expect("json");
    assert_eq!(json["tags"][0]["purged"], 2, "{json}");
    for (path, hit) in [("/1", false), ("/2", false), ("/3", true)] {
        let r = get(&node, path).await;
        assert_eq!(
            r.cache_status().contains("hit"),
            hit,
            "{path}: {}",
            r.cache_status()
        );
    }
    // Entries stored after the purge are not affected by it.
    let refilled = get(&node, "/1").await;
    assert!(
        refilled.cache_status().contains("hit"),
        "{}",
        refilled.cache_status()
    );
    assert_eq!(origin.count("/1"), 2);
    let empty = purge(node.admin, Some("secret"), r#"{"soft":true}"#).await;
    assert_eq!(empty.status, 400);
}

#[tokio::test]
async fn soft_purge_marks_stale_so_stale_while_revalidate_still_serves() {
    let origin = Origin::start(|seen, n| {
        Reply::ok(format!("v{n}"))
            .cache("max-age=600, stale-while-revalidate=60")
            .header("surrogate-key", "news")
            .header("etag", format!("\"{}{n}\"", seen.path))
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/a").await;
    get(&node, "/b").await;
    let by_url = purge(
        node.admin,
        Some("secret"),
        r#"{"urls":["http://example.test/a"],"soft":true}"#,
    )
    .await;
    assert_eq!(by_url.status, 200, "{}", by_url.text());
    let by_tag = purge(
        node.admin,
        Some("secret"),
        r#"{"tags":["news"],"soft":true}"#,
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&by_tag.body).expect("json");
    assert_eq!(json["purged"], 2, "{json}");
    for path in ["/a", "/b"] {
        let stale = get(&node, path).await;
        assert_eq!(stale.text(), "v1", "{path}: served stale at once");
        assert!(
            stale
                .cache_status()
                .contains("detail=stale-while-revalidate")
                && stale.cache_status().contains("ttl=-"),
            "{path}: {}",
            stale.cache_status()
        );
    }
    eventually("both renewed", || async {
        get(&node, "/a").await.text() == "v2" && get(&node, "/b").await.text() == "v2"
    })
    .await;
    assert!(origin.last("/a").header("if-none-match").contains("/a1"));
}

#[tokio::test]
async fn cache_key_rules_drop_and_sort_query_parameters() {
    let origin = Origin::start(|seen, _| Reply::ok(seen.path.clone()).cache("max-age=600")).await;
    let node = node_with(
        &origin,
        "[site.cache_key]\ndrop_query = [\"utm_source\", \"fbclid\"]\nsort_query = true",
    )
    .await;
    let first = get(&node, "/p?id=1&utm_source=mail").await;
    assert_eq!(
        first.text(),
        "/p?id=1&utm_source=mail",
        "the origin sees the full URL"
    );
    for path in ["/p?id=1", "/p?fbclid=x&id=1", "/p?id=1&utm_source=web"] {
        let r = get(&node, path).await;
        assert!(
            r.cache_status().contains("hit"),
            "{path}: {}",
            r.cache_status()
        );
    }
    get(&node, "/q?b=2&a=1").await;
    let sorted = get(&node, "/q?a=1&b=2").await;
    assert!(
        sorted.cache_status().contains("hit"),
        "{}",
        sorted.cache_status()
    );
    get(&node, "/p?id=2").await;
    assert_eq!(origin.total(), 3);
}

#[tokio::test]
async fn cache_key_rules_add_request_headers_and_cookies() {
    let origin = Origin::start(|seen, _| {
        Reply::ok(format!(
            "{}|{}|{}",
            seen.header("x-device"),
            seen.header("cookie"),
            seen.header("outpost-cache-key")
        ))
        .cache("max-age=600")
    })
    .await;
    let node = node_with(
        &origin,
        "[site.cache_key]\nheaders = [\"X-Device\"]\ncookies = [\"lang\"]",
    )
    .await;
    let mobile_fr = [("x-device", "mobile"), ("cookie", "sid=1; lang=fr")];
    let first = get_with(&node, "/k", &mobile_fr).await;
    assert_eq!(
        first.text(),
        "mobile|sid=1; lang=fr|",
        "the key field never reaches the origin"
    );
    let cases: [(&[(&str, &str)], bool); 5] = [
        (
            &[("x-device", "mobile"), ("cookie", "lang=fr; sid=2")],
            true,
        ),
        (&[("x-device", "mobile"), ("cookie", "lang=en")], false),
        (&[("x-device", "desktop"), ("cookie", "lang=fr")], false),
        (&[("cookie", "lang=fr")], false),
        // A client cannot pick another client's variant through the internal field.
        (
            &[("outpost-cache-key", "forged"), ("x-device", "tv")],
            false,
        ),
    ];
    for (headers, hit) in cases {
        let r = get_with(&node, "/k", headers).await;
        assert_eq!(
            r.cache_status().contains("hit"),
            hit,
            "{headers:?}: {}",
            r.cache_status()
        );
    }
    let done = purge(
        node.admin,
        Some("secret"),
        r#"{"urls":["http://example.test/k"]}"#,
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&done.body).expect("json");
    assert_eq!(
        json["purged"], 5,
        "a URL purge removes every key variant: {json}"
    );
}
