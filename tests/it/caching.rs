//! RFC 9111 core behaviour through a real node: storability, freshness order, Age, Vary,
//! revalidation, invalidation, HEAD, Range and client conditionals.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::harness::*;

async fn node_for(origin: &Origin) -> Node {
    Node::start(&site_config(&origin.url(), "")).await
}

#[tokio::test]
async fn miss_then_hit_carries_age_and_cache_status() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let node = node_for(&origin).await;
    let miss = get(&node, "/a").await;
    assert_eq!(miss.text(), "hello");
    assert!(
        miss.cache_status()
            .starts_with("edge-test; fwd=uri-miss; fwd-status=200; stored; ttl="),
        "{}",
        miss.cache_status()
    );
    let hit = get(&node, "/a").await;
    assert_eq!(hit.text(), "hello");
    assert!(
        hit.cache_status().starts_with("edge-test; hit; ttl="),
        "{}",
        hit.cache_status()
    );
    assert!(
        hit.header("age").parse::<u64>().is_ok(),
        "Age on every cached response"
    );
    assert_eq!(hit.header("via"), "1.1 edge-test");
    assert_eq!(origin.count("/a"), 1);
}

#[tokio::test]
async fn age_includes_upstream_age() {
    // RFC 9111 §4.2.3: corrected_age_value = age_value + response_delay.
    let origin =
        Origin::start(|_, _| Reply::ok("x").cache("max-age=600").header("age", "100")).await;
    let node = node_for(&origin).await;
    get(&node, "/aged").await;
    let hit = get(&node, "/aged").await;
    let age: u64 = hit.header("age").parse().expect("Age");
    assert!((100..110).contains(&age), "Age {age}");
    let ttl = hit
        .cache_status()
        .rsplit("ttl=")
        .next()
        .unwrap_or("")
        .parse::<i64>()
        .expect("ttl");
    assert!((490..=500).contains(&ttl), "ttl {ttl}");
}

type Case = (
    &'static str,
    Reply,
    &'static [(&'static str, &'static str)],
    &'static str,
);
type Route = (&'static str, u16, Vec<(&'static str, String)>);

#[tokio::test]
async fn unstorable_responses_are_not_stored() {
    // (path, origin reply, request headers, expected Cache-Status detail)
    let cases: [Case; 6] = [
        (
            "/no-store",
            Reply::ok("x").cache("no-store, max-age=60"),
            &[],
            "no-store",
        ),
        (
            "/private",
            Reply::ok("x").cache("private, max-age=60"),
            &[],
            "private",
        ),
        (
            "/auth",
            Reply::ok("x").cache("max-age=60"),
            &[("authorization", "Bearer u1")],
            "authorization",
        ),
        (
            "/cookie",
            Reply::ok("x")
                .cache("max-age=60")
                .header("set-cookie", "a=b"),
            &[],
            "set-cookie",
        ),
        ("/nothing", Reply::ok("x").status(500), &[], ""),
        (
            "/vary-star",
            Reply::ok("x").cache("max-age=60").header("vary", "*"),
            &[],
            "",
        ),
    ];
    let routes: Vec<Route> = cases
        .iter()
        .map(|(p, r, _, _)| (*p, r.status, r.headers.clone()))
        .collect();
    let origin = Origin::start(move |seen, _| {
        let (_, status, headers) = routes
            .iter()
            .find(|(p, _, _)| *p == seen.path)
            .expect("route");
        let mut reply = Reply::ok("x").status(*status);
        reply.headers = headers.clone();
        reply
    })
    .await;
    let node = node_for(&origin).await;
    for (path, _, headers, detail) in &cases {
        let first = get_with(&node, path, headers).await;
        assert!(
            !first.cache_status().contains("stored"),
            "{path}: {}",
            first.cache_status()
        );
        if !detail.is_empty() {
            assert!(
                first.cache_status().contains(&format!("detail={detail}")),
                "{path}: {}",
                first.cache_status()
            );
        }
        get_with(&node, path, headers).await;
        assert_eq!(
            origin.count(path),
            2,
            "{path} must reach the origin every time"
        );
    }
}

#[tokio::test]
async fn authorization_allows_storing_with_public() {
    // RFC 9111 §3.5: public, s-maxage or must-revalidate make it storable.
    let origin = Origin::fixed("shared", "public, max-age=60").await;
    let node = node_for(&origin).await;
    get_with(&node, "/p", &[("authorization", "Bearer a")]).await;
    let hit = get(&node, "/p").await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(origin.count("/p"), 1);
}

#[tokio::test]
async fn freshness_prefers_s_maxage_then_max_age_then_expires() {
    let origin = Origin::start(|seen, _| match seen.path.as_str() {
        // s-maxage=0 wins over max-age=600: stale at once.
        "/s" => Reply::ok("s").cache("s-maxage=0, max-age=600"),
        // max-age=600 wins over an Expires in the past.
        "/m" => Reply::ok("m")
            .cache("max-age=600")
            .header("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        // Expires in the future with no max-age.
        "/e" => Reply::ok("e").header(
            "expires",
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600)),
        ),
        // Invalid Expires means already expired.
        _ => Reply::ok("i").header("expires", "0"),
    })
    .await;
    let node = node_for(&origin).await;
    for path in ["/s", "/m", "/e", "/i"] {
        get(&node, path).await;
        get(&node, path).await;
    }
    assert_eq!(origin.count("/s"), 2);
    assert_eq!(origin.count("/m"), 1);
    assert_eq!(origin.count("/e"), 1);
    assert_eq!(origin.count("/i"), 2);
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) in the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and the asctime form (`Sun Nov  6 08:49:37 1994`).
fn obsolete_forms(imf: &str) -> (String, String) {
    let days = [
        ("Mon", "Monday"),
        ("Tue", "Tuesday"),
        ("Wed", "Wednesday"),
        ("Thu", "Thursday"),
        ("Fri", "Friday"),
        ("Sat", "Saturday"),
        ("Sun", "Sunday"),
    ];
    let long = days.iter().find(|(d, _)| imf.starts_with(d)).unwrap().1;
    let (day, month, year, time) = (&imf[5..7], &imf[8..11], &imf[12..16], &imf[17..25]);
    let rfc850 = format!("{long}, {day}-{month}-{} {time} GMT", &year[2..]);
    let day = day
        .strip_prefix('0')
        .map_or(day.to_owned(), |d| format!(" {d}"));
    let asctime = format!("{} {month} {day} {time} {year}", &imf[..3]);
    (rfc850, asctime)
}

#[tokio::test]
async fn expires_in_any_http_date_format_and_anything_else_is_already_expired() {
    let future = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    let (rfc850, asctime) = obsolete_forms(&future);
    let origin = Origin::start(move |seen, _| {
        let expires = match seen.path.as_str() {
            "/imf" => future.clone(),
            "/rfc850" => rfc850.clone(),
            "/asctime" => asctime.clone(),
            "/minus-one" => "-1".to_owned(),
            "/utc" => future.replace("GMT", "UTC"),
            _ => "soon".to_owned(),
        };
        Reply::ok("e").header("expires", expires)
    })
    .await;
    let node = node_for(&origin).await;
    let cases = [
        ("/imf", 1),
        ("/rfc850", 1),
        ("/asctime", 1),
        ("/minus-one", 2),
        ("/utc", 2),
        ("/soon", 2),
    ];
    for (path, fetches) in cases {
        get(&node, path).await;
        let second = get(&node, path).await;
        assert_eq!(origin.count(path), fetches, "{path}");
        assert_eq!(
            second.cache_status().contains("hit"),
            fetches == 1,
            "{path}"
        );
    }
}

#[tokio::test]
async fn heuristic_freshness_only_for_heuristically_cacheable_statuses() {
    let last_modified =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(100 * 86400));
    let lm = last_modified.clone();
    let origin = Origin::start(move |seen, _| match seen.path.as_str() {
        "/ok" => Reply::ok("ok").header("last-modified", lm.clone()),
        _ => Reply::ok("created")
            .status(201)
            .header("last-modified", lm.clone()),
    })
    .await;
    let node = node_for(&origin).await;
    for path in ["/ok", "/created"] {
        get(&node, path).await;
        get(&node, path).await;
    }
    assert_eq!(
        origin.count("/ok"),
        1,
        "200 with Last-Modified is heuristically fresh"
    );
    assert_eq!(
        origin.count("/created"),
        2,
        "201 is not heuristically cacheable"
    );
    let hit = get(&node, "/ok").await;
    // 10 % of 100 days, capped at one day.
    let ttl: i64 = hit
        .cache_status()
        .rsplit("ttl=")
        .next()
        .unwrap_or("")
        .parse()
        .expect("ttl");
    assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn vary_keeps_one_variant_per_selected_header() {
    let origin = Origin::start(|seen, _| {
        let lang = seen.header("accept-language");
        Reply::ok(format!("lang={lang}"))
            .cache("max-age=60")
            .header("vary", "Accept-Language")
    })
    .await;
    let node = node_for(&origin).await;
    let en = get_with(&node, "/v", &[("accept-language", "en")]).await;
    let fr = get_with(&node, "/v", &[("accept-language", "fr")]).await;
    assert!(
        fr.cache_status().contains("fwd=vary-miss"),
        "{}",
        fr.cache_status()
    );
    let en2 = get_with(&node, "/v", &[("accept-language", "en")]).await;
    let fr2 = get_with(&node, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(
        (en.text().as_str(), en2.text().as_str()),
        ("lang=en", "lang=en")
    );
    assert_eq!(
        (fr.text().as_str(), fr2.text().as_str()),
        ("lang=fr", "lang=fr")
    );
    assert!(en2.cache_status().contains("hit") && fr2.cache_status().contains("hit"));
    assert_eq!(origin.count("/v"), 2);
}

#[tokio::test]
async fn vary_star_never_matches() {
    let origin = Origin::fixed("x", "max-age=60").await;
    let _ = origin;
    let origin = Origin::start(|_, _| Reply::ok("x").cache("max-age=60").header("vary", "*")).await;
    let node = node_for(&origin).await;
    get(&node, "/star").await;
    get(&node, "/star").await;
    assert_eq!(origin.count("/star"), 2);
}

#[tokio::test]
async fn stale_entry_is_revalidated_and_a_304_merged() {
    let origin = Origin::start(|seen, n| {
        if n == 1 {
            return Reply::ok("body-v1")
                .cache("max-age=0")
                .header("etag", "\"v1\"")
                .header("x-version", "1");
        }
        assert_eq!(
            seen.headers
                .get("if-none-match")
                .map(|v| v.to_str().unwrap_or("")),
            Some("\"v1\"")
        );
        Reply::ok(Bytes::new())
            .status(304)
            .cache("max-age=60")
            .header("etag", "\"v1\"")
            .header("x-version", "2")
    })
    .await;
    let node = node_for(&origin).await;
    get(&node, "/r").await;
    let revalidated = get(&node, "/r").await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(
        revalidated.text(),
        "body-v1",
        "body kept from the stored entry"
    );
    assert_eq!(
        revalidated.header("x-version"),
        "2",
        "304 headers merged (RFC 9111 §4.3.4)"
    );
    assert!(
        revalidated
            .cache_status()
            .contains("fwd=stale; fwd-status=304"),
        "{}",
        revalidated.cache_status()
    );
    let hit = get(&node, "/r").await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(hit.header("x-version"), "2");
    assert_eq!(hit.text(), "body-v1");
    assert_eq!(origin.count("/r"), 2);
}

#[tokio::test]
async fn revalidation_by_last_modified() {
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    let origin = Origin::start(move |seen, n| {
        if n == 1 {
            return Reply::ok("lm-body")
                .cache("max-age=0")
                .header("last-modified", lm);
        }
        assert_eq!(
            seen.headers
                .get("if-modified-since")
                .map(|v| v.to_str().unwrap_or("")),
            Some(lm)
        );
        Reply::ok(Bytes::new()).status(304).cache("max-age=60")
    })
    .await;
    let node = node_for(&origin).await;
    get(&node, "/lm").await;
    let second = get(&node, "/lm").await;
    assert_eq!(second.text(), "lm-body");
    assert!(second.cache_status().contains("fwd-status=304"));
}

#[tokio::test]
async fn unsafe_method_invalidates_the_target_uri() {
    let origin = Origin::start(|seen, _| match seen.method {
        Method::GET => Reply::ok("doc").cache("max-age=600"),
        _ => Reply::ok("updated"),
    })
    .await;
    let node = node_for(&origin).await;
    get(&node, "/doc").await;
    assert!(get(&node, "/doc").await.cache_status().contains("hit"));
    let post = send(
        node.http,
        Method::POST,
        "/doc",
        "example.test",
        &[],
        Bytes::from_static(b"change"),
    )
    .await;
    assert_eq!(post.status, 200);
    assert_eq!(origin.last("/doc").body, Bytes::from_static(b"change"));
    let after = get(&node, "/doc").await;
    assert!(
        after.cache_status().contains("fwd=uri-miss"),
        "{}",
        after.cache_status()
    );
    assert_eq!(
        origin
            .requests()
            .iter()
            .filter(|s| s.method == Method::GET)
            .count(),
        2
    );
}

#[tokio::test]
async fn failed_unsafe_method_does_not_invalidate() {
    let origin = Origin::start(|seen, _| match seen.method {
        Method::GET => Reply::ok("doc").cache("max-age=600"),
        _ => Reply::ok("no").status(500),
    })
    .await;
    let node = node_for(&origin).await;
    get(&node, "/keep").await;
    send(
        node.http,
        Method::DELETE,
        "/keep",
        "example.test",
        &[],
        Bytes::new(),
    )
    .await;
    assert!(get(&node, "/keep").await.cache_status().contains("hit"));
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let origin = Origin::fixed("0123456789", "max-age=60").await;
    let node = node_for(&origin).await;
    get(&node, "/h").await;
    let head = send(
        node.http,
        Method::HEAD,
        "/h",
        "example.test",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "10");
    assert!(head.cache_status().contains("hit"));
    assert_eq!(origin.total(), 1);
}

#[tokio::test]
async fn head_miss_fills_with_get() {
    let origin = Origin::fixed("0123456789", "max-age=60").await;
    let node = node_for(&origin).await;
    let head = send(
        node.http,
        Method::HEAD,
        "/hm",
        "example.test",
        &[],
        Bytes::new(),
    )
    .await;
    assert!(head.body.is_empty());
    assert_eq!(origin.last("/hm").method, Method::GET);
    eventually("the GET fill to be stored", || async {
        get(&node, "/hm").await.cache_status().contains("hit")
    })
    .await;
    assert_eq!(origin.count("/hm"), 1);
}

#[tokio::test]
async fn single_ranges_are_answered_from_the_cache() {
    let origin = Origin::fixed("0123456789", "max-age=60").await;
    let node = node_for(&origin).await;
    get(&node, "/range").await;
    let cases = [
        ("bytes=2-5", 206, "2345", "bytes 2-5/10"),
        ("bytes=7-", 206, "789", "bytes 7-9/10"),
        ("bytes=-3", 206, "789", "bytes 7-9/10"),
        ("bytes=5-100", 206, "56789", "bytes 5-9/10"),
        ("bytes=20-30", 416, "", "bytes */10"),
        // Overlapping ranges are coalesced into one (RFC 9110 §14.2).
        ("bytes=0-3,2-5", 206, "012345", "bytes 0-5/10"),
        ("items=0-1", 200, "0123456789", ""),
    ];
    for (range, status, body, content_range) in cases {
        let r = get_with(&node, "/range", &[("range", range)]).await;
        assert_eq!(r.status.as_u16(), status, "{range}");
        assert_eq!(r.text(), body, "{range}");
        assert_eq!(r.header("content-range"), content_range, "{range}");
    }
    assert_eq!(origin.count("/range"), 1);
}

#[tokio::test]
async fn client_conditionals_get_304_from_the_cache() {
    let origin = Origin::start(|_, _| {
        Reply::ok("tagged")
            .cache("max-age=60")
            .header("etag", "\"abc\"")
            .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")
    })
    .await;
    let node = node_for(&origin).await;
    get(&node, "/c").await;
    let cases: [(&str, &str, u16); 9] = [
        ("if-none-match", "\"abc\"", 304),
        ("if-none-match", "W/\"abc\"", 304),
        ("if-none-match", "\"other\"", 200),
        ("if-modified-since", "Tue, 02 Jan 2024 00:00:00 GMT", 304),
        ("if-modified-since", "Sun, 31 Dec 2023 00:00:00 GMT", 200),
        // RFC 9110 §5.6.7: the obsolete formats too.
        ("if-modified-since", "Tuesday, 02-Jan-24 00:00:00 GMT", 304),
        ("if-modified-since", "Sunday, 31-Dec-23 00:00:00 GMT", 200),
        ("if-modified-since", "Tue Jan  2 00:00:00 2024", 304),
        ("if-modified-since", "Sun Dec 31 00:00:00 2023", 200),
    ];
    for (name, value, status) in cases {
        let r = get_with(&node, "/c", &[(name, value)]).await;
        assert_eq!(r.status.as_u16(), status, "{name}: {value}");
        assert_eq!(r.body.is_empty(), status == 304);
    }
    // If-Range with the Last-Modified date, in any format, resumes; another date does not.
    let ranges = [
        ("Mon, 01 Jan 2024 00:00:00 GMT", 206),
        ("Monday, 01-Jan-24 00:00:00 GMT", 206),
        ("Mon Jan  1 00:00:00 2024", 206),
        ("Tue Jan  2 00:00:00 2024", 200),
        ("\"abc\"", 206),
        ("garbage", 200),
    ];
    for (condition, status) in ranges {
        let r = get_with(
            &node,
            "/c",
            &[("range", "bytes=2-"), ("if-range", condition)],
        )
        .await;
        assert_eq!(r.status.as_u16(), status, "if-range: {condition}");
        let body = if status == 206 { "gged" } else { "tagged" };
        assert_eq!(r.text(), body, "if-range: {condition}");
    }
    assert_eq!(origin.count("/c"), 1);
}

#[tokio::test]
async fn request_no_cache_revalidates_and_only_if_cached_never_reaches_origin() {
    let origin =
        Origin::start(|_, _| Reply::ok("v").cache("max-age=60").header("etag", "\"e\"")).await;
    let node = node_for(&origin).await;
    let nothing = get_with(&node, "/oic", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(nothing.status, 504);
    assert_eq!(origin.total(), 0);
    get(&node, "/oic").await;
    let forced = get_with(&node, "/oic", &[("cache-control", "no-cache")]).await;
    assert!(
        forced.cache_status().contains("fwd=request"),
        "{}",
        forced.cache_status()
    );
    assert_eq!(origin.count("/oic"), 2);
    let cached = get_with(&node, "/oic", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(cached.status, 200);
}

#[tokio::test]
async fn date_is_added_when_the_origin_sends_none() {
    let origin = Origin::fixed("d", "max-age=60").await;
    let node = node_for(&origin).await;
    get(&node, "/date").await;
    let hit = get(&node, "/date").await;
    assert!(
        httpdate::parse_http_date(hit.header("date")).is_ok(),
        "Date: {:?}",
        hit.header("date")
    );
}

#[tokio::test]
async fn multiple_ranges_are_answered_multipart_byteranges() {
    let origin = Origin::start(|_, _| {
        Reply::ok("0123456789")
            .cache("max-age=60")
            .header("content-type", "text/plain")
    })
    .await;
    let node = node_for(&origin).await;
    get(&node, "/m").await;
    let r = get_with(&node, "/m", &[("range", "bytes=0-1, 7-")]).await;
    assert_eq!(r.status, 206);
    let content_type = r.header("content-type").to_owned();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    assert_eq!(r.header("content-range"), "", "only the parts carry one");
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let body = r.text();
    let parts: Vec<&str> = body
        .split(&format!("--{boundary}"))
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "--")
        .collect();
    assert_eq!(parts.len(), 2, "{body}");
    for (part, (range, bytes)) in parts
        .iter()
        .zip([("bytes 0-1/10", "01"), ("bytes 7-9/10", "789")])
    {
        assert!(part.contains(&format!("Content-Range: {range}")), "{part}");
        assert!(part.contains("Content-Type: text/plain"), "{part}");
        assert!(part.ends_with(bytes), "{part}");
    }
    // A flood of tiny ranges is ignored: the whole representation, once.
    let many = (0..40)
        .map(|i| format!("{}-{}", i % 10, i % 10))
        .collect::<Vec<_>>()
        .join(",");
    let flood = get_with(&node, "/m", &[("range", &format!("bytes={many}"))]).await;
    assert_eq!(
        (flood.status.as_u16(), flood.text().as_str()),
        (200, "0123456789")
    );
    assert_eq!(origin.count("/m"), 1);
}

#[tokio::test]
async fn a_206_from_the_origin_is_passed_through() {
    let origin = Origin::start(|seen, _| match seen.header("range").as_str() {
        "" => Reply::ok("0123456789").cache("no-store"),
        _ => Reply::ok("2345")
            .status(206)
            .header("content-range", "bytes 2-5/10"),
    })
    .await;
    let node = node_for(&origin).await;
    // Not storable: the key is fetched privately from now on, so a Range goes to the origin.
    get(&node, "/p").await;
    let r = get_with(&node, "/p", &[("range", "bytes=2-5")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "2345");
    assert_eq!(r.header("content-range"), "bytes 2-5/10");
    assert_eq!(origin.last("/p").header("range"), "bytes=2-5");
    // Never stored: the next plain GET goes to the origin again and gets the whole thing.
    let full = get(&node, "/p").await;
    assert_eq!(
        (full.status.as_u16(), full.text().as_str()),
        (200, "0123456789")
    );
    assert_eq!(origin.count("/p"), 3);
}

#[tokio::test]
async fn equivalent_accept_encodings_share_a_variant() {
    let origin = Origin::start(|seen, _| {
        let accept = seen.header("accept-encoding");
        let gzip = accept.contains("gzip") && !accept.contains("gzip;q=0");
        let reply = Reply::ok(if gzip { "gz" } else { "plain" })
            .cache("max-age=60")
            .header("vary", "Accept-Encoding");
        if seen.path == "/odd" {
            reply.header("content-encoding", "x-custom")
        } else if gzip {
            reply.header("content-encoding", "gzip")
        } else {
            reply
        }
    })
    .await;
    let node = node_for(&origin).await;
    get_with(&node, "/ae", &[("accept-encoding", "gzip, deflate, br")]).await;
    for same in [
        "br,gzip , deflate",
        "BR;q=1.0, gzip;q=0.5, deflate",
        "deflate, x-gzip, br, foo",
    ] {
        let r = get_with(&node, "/ae", &[("accept-encoding", same)]).await;
        assert!(
            r.cache_status().contains("hit"),
            "{same}: {}",
            r.cache_status()
        );
        assert_eq!(r.text(), "gz");
    }
    let refused = get_with(&node, "/ae", &[("accept-encoding", "gzip;q=0, identity")]).await;
    assert_eq!(refused.text(), "plain", "gzip;q=0 is another set");
    assert_eq!(origin.count("/ae"), 2);
    // A coding Outpost does not know cannot be keyed safely: not stored.
    get_with(&node, "/odd", &[("accept-encoding", "x-custom")]).await;
    let again = get_with(&node, "/odd", &[("accept-encoding", "x-custom")]).await;
    assert!(
        again.cache_status().contains("detail=unknown-encoding"),
        "{}",
        again.cache_status()
    );
}

#[tokio::test]
async fn unsafe_methods_invalidate_same_origin_location_and_content_location() {
    let origin = Origin::start(|seen, _| match (seen.method.clone(), seen.path.as_str()) {
        (Method::GET, _) => Reply::ok(seen.path.clone()).cache("max-age=600"),
        (_, "/items") => Reply::ok("created")
            .status(201)
            .header("location", "/items/7")
            .header("content-location", "http://example.test/items/list?page=1"),
        _ => Reply::ok("moved")
            .status(303)
            .header("location", "http://elsewhere.test/items/8"),
    })
    .await;
    let node = node_for(&origin).await;
    for path in ["/items/7", "/items/list?page=1", "/items/8"] {
        get(&node, path).await;
    }
    let post = |path: &'static str| {
        send(
            node.http,
            Method::POST,
            path,
            "example.test",
            &[],
            Bytes::from_static(b"x"),
        )
    };
    assert_eq!(post("/items").await.status, 201);
    assert_eq!(post("/other").await.status, 303);
    for (path, invalidated) in [
        ("/items/7", true),
        ("/items/list?page=1", true),
        ("/items/8", false),
    ] {
        let r = get(&node, path).await;
        assert_eq!(
            r.cache_status().contains("fwd=uri-miss"),
            invalidated,
            "{path}: {}",
            r.cache_status()
        );
    }
}

/// Whether a response came from the cache without asking the origin.
fn served_from_cache(r: &Resp) -> bool {
    r.cache_status().contains("; hit")
}

#[tokio::test]
async fn request_directives_bound_what_the_cache_may_serve() {
    // Every stored response is 50 s old: fresh with 50 s left (/fresh-*), or stale by 10 s
    // (/stale-*).
    let origin = Origin::start(|seen, _| {
        let cc = if seen.path.starts_with("/stale") {
            "max-age=40"
        } else {
            "max-age=100"
        };
        // With a validator, so the store keeps stale entries for revalidation.
        Reply::ok("v")
            .cache(cc)
            .header("age", "50")
            .header("etag", "\"e\"")
    })
    .await;
    let node = node_for(&origin).await;
    // RFC 9111 §5.2.1.1-§5.2.1.3: (path, request Cache-Control, served from cache).
    let cases = [
        ("/fresh-max-age-low", "max-age=30", false),
        ("/fresh-max-age-high", "max-age=60", true),
        ("/fresh-min-fresh-high", "min-fresh=60", false),
        ("/fresh-min-fresh-low", "min-fresh=10", true),
        ("/stale-max-stale-low", "max-stale=5", false),
        ("/stale-max-stale-high", "max-stale=20", true),
        ("/stale-max-stale-any", "max-stale", true),
        ("/stale-none", "", false),
        ("/fresh-no-cache", "no-cache", false),
    ];
    for (path, cc, cached) in cases {
        get(&node, path).await;
        let r = get_with(&node, path, &[("cache-control", cc)]).await;
        assert_eq!(
            served_from_cache(&r),
            cached,
            "{path} {cc}: {}",
            r.cache_status()
        );
        assert_eq!(origin.count(path), if cached { 1 } else { 2 }, "{path}");
    }
    // §5.2.1.5: nothing of a no-store request is stored.
    get_with(&node, "/no-store", &[("cache-control", "no-store")]).await;
    assert!(!served_from_cache(&get(&node, "/no-store").await));
    assert_eq!(origin.count("/no-store"), 2);
}

#[tokio::test]
async fn response_directives_as_rfc_9111_reads_them() {
    let origin = Origin::start(|seen, n| {
        let path = seen.path.as_str();
        if n > 1 && path.starts_with("/strict") {
            return Reply::ok("down").status(503);
        }
        let reply = |cc: &str| Reply::ok("v").cache(cc).header("etag", "\"e\"");
        match path {
            "/strict-proxy-revalidate" => reply("max-age=1, proxy-revalidate").header("age", "5"),
            "/strict-s-maxage" => reply("s-maxage=1").header("age", "5"),
            "/no-cache" => reply("no-cache, max-age=600"),
            "/no-cache-fields" => {
                reply("no-cache=\"x-secret\", max-age=600").header("x-secret", "s")
            }
            "/must-understand" => reply("must-understand, no-store, max-age=600"),
            "/must-understand-299" => reply("must-understand, no-store, max-age=600").status(299),
            "/unknown" => reply("max-age=600, foo=bar, baz"),
            "/duplicate" => reply("max-age=600, max-age=0"),
            "/quoted" => reply("max-age=\"600\""),
            "/public-immutable" => reply("public, immutable, max-age=600"),
            "/no-transform" => reply("no-transform, max-age=600"),
            _ => Reply::ok("v").status(404),
        }
    })
    .await;
    let node = node_for(&origin).await;
    // (path, status of the second response, served from cache)
    let cases = [
        // §5.2.2.8, §5.2.2.10: never stale, and a failed revalidation is a 504.
        ("/strict-proxy-revalidate", 504, false),
        ("/strict-s-maxage", 504, false),
        // §5.2.2.4: stored, but revalidated on every use.
        ("/no-cache", 200, false),
        // §5.2.2.4 qualified: reused without the named field.
        ("/no-cache-fields", 200, true),
        // §5.2.2.3: must-understand with an understood status overrides no-store...
        ("/must-understand", 200, true),
        // ...and with a status Outpost does not know, nothing is stored.
        ("/must-understand-299", 299, false),
        // §5.2.3: unknown directives are ignored.
        ("/unknown", 200, true),
        // §4.2.1: conflicting duplicates read most restrictively.
        ("/duplicate", 200, false),
        // §5.2: a quoted value is the same value.
        ("/quoted", 200, true),
        ("/public-immutable", 200, true),
        ("/no-transform", 200, true),
    ];
    for (path, status, cached) in cases {
        get(&node, path).await;
        let r = get(&node, path).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {}", r.cache_status());
        assert_eq!(
            served_from_cache(&r),
            cached,
            "{path}: {}",
            r.cache_status()
        );
        if path == "/no-cache-fields" {
            assert_eq!(
                r.header("x-secret"),
                "",
                "named field not served from the cache"
            );
        }
    }
}

#[tokio::test]
async fn a_304_for_another_representation_is_not_applied() {
    let origin = Origin::start(|seen, n| match (n, seen.header("if-none-match").as_str()) {
        (1, _) => Reply::ok("one")
            .cache("max-age=1")
            .header("age", "5")
            .header("etag", "\"v1\""),
        // A confused origin: answers the conditional with another entity tag.
        (_, "\"v1\"") => Reply::ok("").status(304).header("etag", "\"v9\""),
        _ => Reply::ok("two")
            .cache("max-age=600")
            .header("etag", "\"v2\""),
    })
    .await;
    let node = node_for(&origin).await;
    get(&node, "/r").await;
    let r = get(&node, "/r").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "two"));
    let requests = origin.requests();
    assert_eq!(requests.len(), 3, "stored, conditional, then unconditional");
    assert_eq!(requests[2].header("if-none-match"), "");
    assert_eq!(
        get(&node, "/r").await.text(),
        "two",
        "the full response was stored"
    );
}
