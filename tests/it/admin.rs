//! The admin listener: health, readiness, metrics and purge.

use bytes::Bytes;

use crate::harness::*;
use crate::util::{self, admin_get, must_sample, purge};

const HITS: &str = r#"outpost_requests_total{site="test",cache="hit"}"#;
const MISSES: &str = r#"outpost_requests_total{site="test",cache="miss"}"#;
const ORIGIN_RESPONSES: &str = r#"outpost_origin_requests_total{site="test",outcome="response"}"#;

/// GET `path` and wait until its response is stored (the fill stores after the body is sent).
async fn fill(node: &Node, path: &str, headers: &[(&str, &str)]) -> Resp {
    let before = node.metric("outpost_cache_bytes").await;
    let response = get_with(node, path, headers).await;
    assert_eq!(response.status, 200, "{path}: {}", response.cache_status());
    assert!(
        response.cache_status().contains("stored"),
        "{path}: {}",
        response.cache_status()
    );
    eventually("the fill is stored", || async {
        node.metric("outpost_cache_bytes").await > before
    })
    .await;
    response
}

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let health = admin_get(node.admin, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ok\n");
    let ready = admin_get(node.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.text(), "ready\n");
    node.stop().await;
}

#[tokio::test]
async fn metrics_page_passes_promtool_check() {
    let Some(promtool) = util::promtool() else {
        return;
    };
    let origin = Origin::start(|seen, _| match seen.path.as_str() {
        "/fail" => Reply::ok("boom").status(500),
        _ => Reply::ok("body").cache("max-age=60"),
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    // A miss, a hit, a pass and a purge so that labelled series and histograms have samples.
    fill(&node, "/a", &[]).await;
    assert!(get(&node, "/a").await.cache_status().contains("hit"));
    assert_eq!(get(&node, "/fail").await.status, 500);
    assert_eq!(
        purge(
            node.admin,
            Some("secret"),
            r#"{"urls":["http://example.test/a"]}"#
        )
        .await
        .status,
        200
    );
    let page = admin_get(node.admin, "/metrics", &[]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        page.header("content-type")
    );
    let text = page.text();
    // The page has the series the check is about, so promtool really looks at them.
    assert!(must_sample(&text, HITS) >= 1.0);
    assert!(text.contains("outpost_origin_response_duration_seconds_bucket{"));
    let (code, output) = util::promtool_check(&promtool, &text);
    assert_eq!(
        code,
        Some(0),
        "promtool check metrics failed:\n{output}\n--- page ---\n{text}"
    );
    node.stop().await;
}

#[tokio::test]
async fn metrics_negotiate_openmetrics_by_accept() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    get(&node, "/a").await;
    let accept = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let open = admin_get(node.admin, "/metrics", &[("accept", accept)]).await;
    assert_eq!(open.status, 200);
    assert!(
        open.header("content-type")
            .starts_with("application/openmetrics-text"),
        "{}",
        open.header("content-type")
    );
    let text = open.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE outpost_requests counter"),
        "OpenMetrics names the counter family without _total:\n{text}"
    );
    assert_eq!(must_sample(&text, MISSES), 1.0);

    let classic = admin_get(node.admin, "/metrics", &[("accept", "text/plain")]).await;
    assert!(
        classic.header("content-type").starts_with("text/plain"),
        "{}",
        classic.header("content-type")
    );
    assert!(!classic.text().contains("# EOF"), "{}", classic.text());
    node.stop().await;
}

#[tokio::test]
async fn metrics_reflect_traffic() {
    let body = "a body of some length, stored once and served twice from memory";
    let origin = Origin::fixed(body, "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let miss = fill(&node, "/m", &[]).await;
    assert_eq!(miss.text(), body);
    for _ in 0..2 {
        let hit = get(&node, "/m").await;
        assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
        assert_eq!(hit.text(), body);
    }
    assert_eq!(origin.count("/m"), 1);
    let text = node.metrics().await;
    assert_eq!(must_sample(&text, HITS), 2.0, "{text}");
    assert_eq!(must_sample(&text, MISSES), 1.0, "{text}");
    assert_eq!(must_sample(&text, ORIGIN_RESPONSES), 1.0, "{text}");
    assert_eq!(must_sample(&text, "outpost_cache_entries"), 1.0, "{text}");
    let bytes = must_sample(&text, "outpost_cache_bytes");
    let len = body.len() as f64;
    // The weight counts the body plus headers and a fixed overhead, nothing like a copy more.
    assert!(
        bytes > len && bytes < len + 4096.0,
        "cache_bytes {bytes} for a {len}-byte body"
    );
    node.stop().await;
}

#[tokio::test]
async fn purge_without_token_is_401_with_www_authenticate() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    fill(&node, "/p", &[]).await;
    let refused = purge(node.admin, None, r#"{"urls":["http://example.test/p"]}"#).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), "Bearer");
    // Nothing was removed.
    assert!(get(&node, "/p").await.cache_status().contains("hit"));
    assert_eq!(origin.count("/p"), 1);
    node.stop().await;
}

#[tokio::test]
async fn purge_with_wrong_token_is_401() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    fill(&node, "/p", &[]).await;
    for token in ["wrong", "secre", "secret2", ""] {
        let refused = purge(
            node.admin,
            Some(token),
            r#"{"urls":["http://example.test/p"]}"#,
        )
        .await;
        assert_eq!(refused.status, 401, "token {token:?}");
        assert_eq!(refused.header("www-authenticate"), "Bearer");
    }
    // A scheme other than Bearer does not count either.
    let basic = send(
        node.admin,
        http::Method::POST,
        "/purge",
        "admin",
        &[("authorization", "Basic secret")],
        Bytes::from_static(br#"{"urls":["http://example.test/p"]}"#),
    )
    .await;
    assert_eq!(basic.status, 401);
    assert!(get(&node, "/p").await.cache_status().contains("hit"));
    assert_eq!(origin.count("/p"), 1);
    node.stop().await;
}

#[tokio::test]
async fn purge_without_configured_token_is_403() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let toml = format!(
        r#"
[node]
name = "edge-test"
[[site]]
name = "test"
hosts = ["example.test"]
origin = ["{}"]
"#,
        origin.url()
    );
    let node = Node::start(&toml).await;
    fill(&node, "/p", &[]).await;
    // With no token configured, even a request carrying one is refused.
    for token in [None, Some("secret")] {
        let refused = purge(node.admin, token, r#"{"urls":["http://example.test/p"]}"#).await;
        assert_eq!(refused.status, 403, "token {token:?}: {}", refused.text());
    }
    assert!(get(&node, "/p").await.cache_status().contains("hit"));
    assert_eq!(origin.count("/p"), 1);
    node.stop().await;
}

#[tokio::test]
async fn purge_with_token_removes_entry_and_next_get_misses() {
    let origin = Origin::fixed("purge me", "max-age=600").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    fill(&node, "/p", &[]).await;
    fill(&node, "/keep", &[]).await;
    assert!(get(&node, "/p").await.cache_status().contains("hit"));
    let done = purge(
        node.admin,
        Some("secret"),
        r#"{"urls":["http://example.test/p"]}"#,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.header("content-type"), "application/json");
    let json: serde_json::Value = serde_json::from_slice(&done.body).expect("purge JSON");
    assert_eq!(json["purged"], 1, "{json}");
    assert_eq!(json["urls"][0]["url"], "http://example.test/p", "{json}");
    assert_eq!(json["urls"][0]["purged"], true, "{json}");

    let again = get(&node, "/p").await;
    assert!(
        again.cache_status().contains("fwd=uri-miss"),
        "{}",
        again.cache_status()
    );
    assert_eq!(again.text(), "purge me");
    assert_eq!(origin.count("/p"), 2);
    // Other URLs stay.
    assert!(get(&node, "/keep").await.cache_status().contains("hit"));
    assert_eq!(
        node.metric("outpost_purged_objects_total").await,
        1.0,
        "{}",
        node.metrics().await
    );
    node.stop().await;
}

#[tokio::test]
async fn purge_of_nothing_stored_reports_zero() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let done = purge(
        node.admin,
        Some("secret"),
        r#"{"urls":["http://example.test/never", "not a url"]}"#,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let json: serde_json::Value = serde_json::from_slice(&done.body).expect("purge JSON");
    assert_eq!(json["purged"], 0, "{json}");
    assert_eq!(json["urls"][0]["purged"], false, "{json}");
    assert!(json["urls"][1]["error"].is_string(), "{json}");
    node.stop().await;
}

#[tokio::test]
async fn purge_removes_every_variant() {
    let origin = Origin::start(|seen, _| {
        let encoding = Some(seen.header("accept-encoding"))
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "identity".to_owned());
        Reply::ok(format!("encoded as {encoding}"))
            .cache("max-age=600")
            .header("vary", "Accept-Encoding")
    })
    .await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let gzip = [("accept-encoding", "gzip")];
    assert_eq!(fill(&node, "/v", &gzip).await.text(), "encoded as gzip");
    assert_eq!(fill(&node, "/v", &[]).await.text(), "encoded as identity");
    // Both variants are stored side by side.
    let hit_gzip = get_with(&node, "/v", &gzip).await;
    assert!(hit_gzip.cache_status().contains("hit"));
    assert_eq!(hit_gzip.text(), "encoded as gzip");
    let hit_plain = get(&node, "/v").await;
    assert!(hit_plain.cache_status().contains("hit"));
    assert_eq!(hit_plain.text(), "encoded as identity");
    assert_eq!(origin.count("/v"), 2);

    let done = purge(
        node.admin,
        Some("secret"),
        r#"{"urls":["http://example.test/v"]}"#,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let json: serde_json::Value = serde_json::from_slice(&done.body).expect("purge JSON");
    assert_eq!(json["purged"], 2, "both variants of the URL: {json}");

    let miss_gzip = get_with(&node, "/v", &gzip).await;
    assert!(
        miss_gzip.cache_status().contains("fwd=uri-miss"),
        "{}",
        miss_gzip.cache_status()
    );
    assert_eq!(miss_gzip.text(), "encoded as gzip");
    let miss_plain = get(&node, "/v").await;
    assert!(
        miss_plain.cache_status().contains("fwd="),
        "{}",
        miss_plain.cache_status()
    );
    assert_eq!(miss_plain.text(), "encoded as identity");
    assert_eq!(origin.count("/v"), 4);
    node.stop().await;
}

#[tokio::test]
async fn purge_with_malformed_json_is_400() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    fill(&node, "/p", &[]).await;
    for body in [
        "{not json",
        "",
        r#"{"url": ["http://example.test/p"]}"#,
        r#"{"urls": "http://example.test/p"}"#,
    ] {
        let refused = purge(node.admin, Some("secret"), body).await;
        assert_eq!(refused.status, 400, "body {body:?}: {}", refused.text());
        assert_eq!(refused.header("content-type"), "application/json");
        let json: serde_json::Value = serde_json::from_slice(&refused.body).expect("error JSON");
        assert!(json["error"].is_string(), "{json}");
    }
    assert!(get(&node, "/p").await.cache_status().contains("hit"));
    node.stop().await;
}

#[tokio::test]
async fn unknown_admin_path_is_404() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    for path in ["/", "/nope", "/metrics/extra", "/purge/all"] {
        let r = admin_get(node.admin, path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
    }
    // A known path with the wrong method is 405, not 404.
    let r = admin_get(node.admin, "/purge", &[]).await;
    assert_eq!(r.status, 405);
    node.stop().await;
}
