//! RFC 9111 core behaviour through real nodes: storability, freshness order, Age, Vary,
//! revalidation, invalidation, purge, HEAD, Range (single, multipart, `If-Range`) and client
//! conditionals.
//!
//! Every case runs five times from the one table below: on one node, and through a node of a
//! cluster that holds no copy of the object, with one, two and three holders per object and
//! with `replicate = "all"` (`topology`). What the client sees and what the origin is asked
//! must be the same every way.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::harness::*;
use crate::topology::{Ctx, both_ways};

both_ways! {
    miss_then_hit_carries_age_and_cache_status,
    age_includes_upstream_age,
    unstorable_responses_are_not_stored,
    authorization_allows_storing_with_public,
    freshness_prefers_s_maxage_then_max_age_then_expires,
    expires_in_any_http_date_format_and_anything_else_is_already_expired,
    heuristic_freshness_only_for_heuristically_cacheable_statuses,
    vary_keeps_one_variant_per_selected_header,
    vary_star_never_matches,
    equivalent_accept_encodings_share_a_variant,
    stale_entry_is_revalidated_and_a_304_merged,
    revalidation_by_last_modified,
    a_304_for_another_representation_is_not_applied,
    client_conditionals_get_304_from_the_cache,
    request_directives_bound_what_the_cache_may_serve,
    response_directives_as_rfc_9111_reads_them,
    date_is_added_when_the_origin_sends_none,
    unsafe_methods_invalidate_the_target_uri,
    failed_unsafe_method_does_not_invalidate,
    unsafe_methods_invalidate_same_origin_location_and_content_location,
    a_purge_removes_every_stored_copy,
    head_is_answered_from_a_stored_get,
    head_miss_fills_with_get,
    a_head_passed_to_the_origin_freshens_the_stored_get with "[site.cache]\nhead_to_origin = true\n",
    single_ranges_are_cut_from_the_object,
    multiple_ranges_are_answered_multipart_byteranges,
    if_range_serves_the_range_only_for_the_same_representation,
    a_206_from_the_origin_is_passed_through,
}

/// The `ttl=` of a `Cache-Status` member.
fn ttl(member: &str) -> i64 {
    member
        .rsplit("ttl=")
        .next()
        .and_then(|rest| rest.split(';').next())
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no ttl in {member:?}"))
}

async fn miss_then_hit_carries_age_and_cache_status(t: Ctx) {
    t.origin_answers(|_, _| Reply::ok("hello").cache("max-age=60"));
    let miss = t.get("/a").await;
    assert_eq!(miss.text(), "hello");
    assert!(
        t.holder(&miss)
            .starts_with("fwd=uri-miss; fwd-status=200; stored; ttl="),
        "{}",
        miss.cache_status()
    );
    let hit = t.get("/a").await;
    assert_eq!(hit.text(), "hello");
    assert!(
        t.holder(&hit).starts_with("hit; ttl="),
        "{}",
        hit.cache_status()
    );
    assert!(
        hit.header("age").parse::<u64>().is_ok(),
        "Age on every cached response"
    );
    let via: Vec<String> = t
        .caches("/a")
        .await
        .iter()
        .map(|name| format!("1.1 {name}"))
        .collect();
    assert_eq!(hit.header("via"), via.join(", "));
    assert_eq!(t.origin.count("/a"), 1);
}

async fn age_includes_upstream_age(t: Ctx) {
    // RFC 9111 §4.2.3: corrected_age_value = age_value + response_delay.
    t.origin_answers(|_, _| Reply::ok("x").cache("max-age=600").header("age", "100"));
    t.get("/aged").await;
    let hit = t.get("/aged").await;
    let age: u64 = hit.header("age").parse().expect("Age");
    assert!((100..110).contains(&age), "Age {age}");
    let ttl = ttl(&t.holder(&hit));
    assert!((490..=500).contains(&ttl), "ttl {ttl}");
    assert_eq!(t.origin.total(), 1);
}

type Case = (
    &'static str,
    Reply,
    &'static [(&'static str, &'static str)],
    &'static str,
);
type Route = (&'static str, u16, Vec<(&'static str, String)>);

async fn unstorable_responses_are_not_stored(t: Ctx) {
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
    t.origin_answers(move |seen, _| {
        let (_, status, headers) = routes
            .iter()
            .find(|(p, _, _)| *p == seen.path)
            .expect("route");
        let mut reply = Reply::ok("x").status(*status);
        reply.headers = headers.clone();
        reply
    });
    for (path, _, headers, detail) in &cases {
        let first = t.get_with(path, headers).await;
        let holder = t.holder(&first);
        assert!(
            !holder.contains("stored"),
            "{path}: {}",
            first.cache_status()
        );
        if !detail.is_empty() {
            assert!(
                holder.contains(&format!("detail={detail}")),
                "{path}: {}",
                first.cache_status()
            );
        }
        if *path == "/cookie" {
            assert_eq!(
                first.header("set-cookie"),
                "a=b",
                "to the client that asked"
            );
        }
        t.get_with(path, headers).await;
        assert_eq!(
            t.origin.count(path),
            2,
            "{path} must reach the origin every time"
        );
    }
}

async fn authorization_allows_storing_with_public(t: Ctx) {
    // RFC 9111 §3.5: public, s-maxage or must-revalidate make it storable.
    t.origin_answers(|_, _| Reply::ok("shared").cache("public, max-age=60"));
    t.get_with("/p", &[("authorization", "Bearer a")]).await;
    let hit = t.get("/p").await;
    assert!(t.holder(&hit).starts_with("hit"), "{}", hit.cache_status());
    assert_eq!(hit.text(), "shared");
    assert_eq!(t.origin.count("/p"), 1);
}

async fn freshness_prefers_s_maxage_then_max_age_then_expires(t: Ctx) {
    t.origin_answers(|seen, _| match seen.path.as_str() {
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
    });
    for path in ["/s", "/m", "/e", "/i"] {
        t.get(path).await;
        let again = t.get(path).await;
        assert_eq!(again.text(), &path[1..], "{path}");
    }
    assert_eq!(t.origin.count("/s"), 2);
    assert_eq!(t.origin.count("/m"), 1);
    assert_eq!(t.origin.count("/e"), 1);
    assert_eq!(t.origin.count("/i"), 2);
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

async fn expires_in_any_http_date_format_and_anything_else_is_already_expired(t: Ctx) {
    let future = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    let (rfc850, asctime) = obsolete_forms(&future);
    t.origin_answers(move |seen, _| {
        let expires = match seen.path.as_str() {
            "/imf" => future.clone(),
            "/rfc850" => rfc850.clone(),
            "/asctime" => asctime.clone(),
            "/minus-one" => "-1".to_owned(),
            "/utc" => future.replace("GMT", "UTC"),
            _ => "soon".to_owned(),
        };
        Reply::ok("e").header("expires", expires)
    });
    let cases = [
        ("/imf", 1),
        ("/rfc850", 1),
        ("/asctime", 1),
        ("/minus-one", 2),
        ("/utc", 2),
        ("/soon", 2),
    ];
    for (path, fetches) in cases {
        t.get(path).await;
        let second = t.get(path).await;
        assert_eq!(t.origin.count(path), fetches, "{path}");
        assert_eq!(t.holder(&second).starts_with("hit"), fetches == 1, "{path}");
    }
}

async fn heuristic_freshness_only_for_heuristically_cacheable_statuses(t: Ctx) {
    let lm =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(100 * 86400));
    t.origin_answers(move |seen, _| match seen.path.as_str() {
        "/ok" => Reply::ok("ok").header("last-modified", lm.clone()),
        _ => Reply::ok("created")
            .status(201)
            .header("last-modified", lm.clone()),
    });
    for path in ["/ok", "/created"] {
        t.get(path).await;
        t.get(path).await;
    }
    assert_eq!(
        t.origin.count("/ok"),
        1,
        "200 with Last-Modified is heuristically fresh"
    );
    assert_eq!(
        t.origin.count("/created"),
        2,
        "201 is not heuristically cacheable"
    );
    let hit = t.get("/ok").await;
    // 10 % of 100 days, capped at one day.
    let ttl = ttl(&t.holder(&hit));
    assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");
}

async fn vary_keeps_one_variant_per_selected_header(t: Ctx) {
    t.origin_answers(|seen, _| {
        let lang = seen.header("accept-language");
        Reply::ok(format!("lang={lang}"))
            .cache("max-age=60")
            .header("vary", "Accept-Language")
    });
    let en = t.get_with("/v", &[("accept-language", "en")]).await;
    let fr = t.get_with("/v", &[("accept-language", "fr")]).await;
    assert!(
        t.holder(&fr).starts_with("fwd=vary-miss"),
        "{}",
        fr.cache_status()
    );
    let en2 = t.get_with("/v", &[("accept-language", "en")]).await;
    let fr2 = t.get_with("/v", &[("accept-language", "fr")]).await;
    assert_eq!(
        (en.text().as_str(), en2.text().as_str()),
        ("lang=en", "lang=en")
    );
    assert_eq!(
        (fr.text().as_str(), fr2.text().as_str()),
        ("lang=fr", "lang=fr")
    );
    assert!(t.holder(&en2).starts_with("hit") && t.holder(&fr2).starts_with("hit"));
    assert_eq!(fr2.header("vary"), "Accept-Language");
    assert_eq!(t.origin.count("/v"), 2);
}

async fn vary_star_never_matches(t: Ctx) {
    t.origin_answers(|_, _| Reply::ok("x").cache("max-age=60").header("vary", "*"));
    t.get("/star").await;
    t.get("/star").await;
    assert_eq!(t.origin.count("/star"), 2);
}

async fn equivalent_accept_encodings_share_a_variant(t: Ctx) {
    t.origin_answers(|seen, _| {
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
    });
    t.get_with("/ae", &[("accept-encoding", "gzip, deflate, br")])
        .await;
    for same in [
        "br,gzip , deflate",
        "BR;q=1.0, gzip;q=0.5, deflate",
        "deflate, x-gzip, br, foo",
    ] {
        let r = t.get_with("/ae", &[("accept-encoding", same)]).await;
        assert!(
            t.holder(&r).starts_with("hit"),
            "{same}: {}",
            r.cache_status()
        );
        assert_eq!(r.text(), "gz");
        assert_eq!(r.header("content-encoding"), "gzip");
    }
    let refused = t
        .get_with("/ae", &[("accept-encoding", "gzip;q=0, identity")])
        .await;
    assert_eq!(refused.text(), "plain", "gzip;q=0 is another set");
    assert_eq!(t.origin.count("/ae"), 2);
    // A coding Outpost does not know cannot be keyed safely: not stored.
    t.get_with("/odd", &[("accept-encoding", "x-custom")]).await;
    let again = t.get_with("/odd", &[("accept-encoding", "x-custom")]).await;
    assert!(
        t.holder(&again).contains("detail=unknown-encoding"),
        "{}",
        again.cache_status()
    );
    assert_eq!(t.origin.count("/odd"), 2);
}

async fn stale_entry_is_revalidated_and_a_304_merged(t: Ctx) {
    t.origin_answers(|seen, n| {
        if n == 1 {
            return Reply::ok("body-v1")
                .cache("max-age=0")
                .header("etag", "\"v1\"")
                .header("x-version", "1");
        }
        assert_eq!(seen.header("if-none-match"), "\"v1\"");
        Reply::ok(Bytes::new())
            .status(304)
            .cache("max-age=60")
            .header("etag", "\"v1\"")
            .header("x-version", "2")
    });
    t.get("/r").await;
    let revalidated = t.get("/r").await;
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
        t.holder(&revalidated)
            .starts_with("fwd=stale; fwd-status=304; stored; ttl="),
        "{}",
        revalidated.cache_status()
    );
    let hit = t.get("/r").await;
    assert!(t.holder(&hit).starts_with("hit"), "{}", hit.cache_status());
    assert_eq!(hit.header("x-version"), "2");
    assert_eq!(hit.text(), "body-v1");
    assert_eq!(t.origin.count("/r"), 2);
}

async fn revalidation_by_last_modified(t: Ctx) {
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    t.origin_answers(move |seen, n| {
        if n == 1 {
            return Reply::ok("lm-body")
                .cache("max-age=0")
                .header("last-modified", lm);
        }
        assert_eq!(seen.header("if-modified-since"), lm);
        Reply::ok(Bytes::new()).status(304).cache("max-age=60")
    });
    t.get("/lm").await;
    let second = t.get("/lm").await;
    assert_eq!(second.text(), "lm-body");
    assert!(t.holder(&second).contains("fwd-status=304"));
    assert_eq!(t.origin.count("/lm"), 2);
}

async fn a_304_for_another_representation_is_not_applied(t: Ctx) {
    t.origin_answers(|seen, n| match (n, seen.header("if-none-match").as_str()) {
        (1, _) => Reply::ok("one")
            .cache("max-age=1")
            .header("age", "5")
            .header("etag", "\"v1\""),
        // A confused origin: answers the conditional with another entity tag.
        (_, "\"v1\"") => Reply::ok("").status(304).header("etag", "\"v9\""),
        _ => Reply::ok("two")
            .cache("max-age=600")
            .header("etag", "\"v2\""),
    });
    t.get("/r").await;
    let r = t.get("/r").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "two"));
    let requests = t.origin.requests();
    assert_eq!(requests.len(), 3, "stored, conditional, then unconditional");
    assert_eq!(requests[2].header("if-none-match"), "");
    assert_eq!(
        t.get("/r").await.text(),
        "two",
        "the full response was stored"
    );
    assert_eq!(t.origin.total(), 3);
}

async fn client_conditionals_get_304_from_the_cache(t: Ctx) {
    t.origin_answers(|_, _| {
        Reply::ok("tagged")
            .cache("max-age=60")
            .header("etag", "\"abc\"")
            .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")
    });
    t.get("/c").await;
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
        let r = t.get_with("/c", &[(name, value)]).await;
        assert_eq!(r.status.as_u16(), status, "{name}: {value}");
        assert_eq!(r.body.is_empty(), status == 304);
        assert_eq!(r.header("etag"), "\"abc\"", "{name}: {value}");
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
        let r = t
            .get_with("/c", &[("range", "bytes=2-"), ("if-range", condition)])
            .await;
        assert_eq!(r.status.as_u16(), status, "if-range: {condition}");
        let body = if status == 206 { "gged" } else { "tagged" };
        assert_eq!(r.text(), body, "if-range: {condition}");
    }
    assert_eq!(t.origin.count("/c"), 1);
}

/// Whether a response came from the cache holding it without asking the origin.
fn served_from_cache(t: &Ctx, r: &Resp) -> bool {
    t.holder(r).starts_with("hit")
}

async fn request_directives_bound_what_the_cache_may_serve(t: Ctx) {
    // Every stored response is 50 s old: fresh with 50 s left (/fresh-*), or stale by 10 s
    // (/stale-*).
    t.origin_answers(|seen, _| {
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
    });
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
        t.get(path).await;
        let r = t.get_with(path, &[("cache-control", cc)]).await;
        assert_eq!(
            served_from_cache(&t, &r),
            cached,
            "{path} {cc}: {}",
            r.cache_status()
        );
        assert_eq!(t.origin.count(path), if cached { 1 } else { 2 }, "{path}");
    }
    // §5.2.1.5: nothing of a no-store request is stored.
    t.get_with("/no-store", &[("cache-control", "no-store")])
        .await;
    assert!(!served_from_cache(&t, &t.get("/no-store").await));
    assert_eq!(t.origin.count("/no-store"), 2);
}

async fn response_directives_as_rfc_9111_reads_them(t: Ctx) {
    t.origin_answers(|seen, n| {
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
    });
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
        t.get(path).await;
        let r = t.get(path).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {}", r.cache_status());
        assert_eq!(
            served_from_cache(&t, &r),
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
        let asked = if cached { 1 } else { 2 };
        assert_eq!(t.origin.count(path), asked, "{path}");
    }
}

async fn date_is_added_when_the_origin_sends_none(t: Ctx) {
    t.origin_answers(|_, _| Reply::ok("d").cache("max-age=60"));
    t.get("/date").await;
    let hit = t.get("/date").await;
    assert!(
        httpdate::parse_http_date(hit.header("date")).is_ok(),
        "Date: {:?}",
        hit.header("date")
    );
    assert_eq!(t.origin.total(), 1);
}

/// RFC 9111 §4.4: each unsafe method with a non-error response invalidates the stored
/// response for its URI, on every node that holds it.
async fn unsafe_methods_invalidate_the_target_uri(t: Ctx) {
    t.origin_answers(|seen, _| match seen.method {
        Method::GET => Reply::ok(format!("doc {}", seen.path)).cache("max-age=600"),
        _ => Reply::ok("updated").status(if seen.method == Method::DELETE {
            204
        } else {
            200
        }),
    });
    for (method, path) in [
        (Method::POST, "/doc-post"),
        (Method::PUT, "/doc-put"),
        (Method::DELETE, "/doc-delete"),
        (Method::PATCH, "/doc-patch"),
    ] {
        t.get(path).await;
        assert!(t.holder(&t.get(path).await).starts_with("hit"), "{path}");
        let changed = t
            .send(method.clone(), path, &[], Bytes::from_static(b"change"))
            .await;
        assert!(
            changed.status.is_success(),
            "{method} {path}: {}",
            changed.status
        );
        assert_eq!(t.origin.last(path).body, Bytes::from_static(b"change"));
        let after = t.get(path).await;
        assert!(
            t.holder(&after).starts_with("fwd=uri-miss"),
            "{method} {path}: {}",
            after.cache_status()
        );
        assert_eq!(after.text(), format!("doc {path}"));
        assert_eq!(t.count(Method::GET, path), 2, "{method} {path}");
    }
}

async fn failed_unsafe_method_does_not_invalidate(t: Ctx) {
    t.origin_answers(|seen, _| match seen.method {
        Method::GET => Reply::ok("doc").cache("max-age=600"),
        _ => Reply::ok("no").status(500),
    });
    t.get("/keep").await;
    let failed = t.send(Method::DELETE, "/keep", &[], Bytes::new()).await;
    assert_eq!(failed.status, 500);
    assert!(t.holder(&t.get("/keep").await).starts_with("hit"));
    assert_eq!(t.count(Method::GET, "/keep"), 1);
}

async fn unsafe_methods_invalidate_same_origin_location_and_content_location(t: Ctx) {
    t.origin_answers(|seen, _| match (seen.method.clone(), seen.path.as_str()) {
        (Method::GET, _) => Reply::ok(seen.path.clone()).cache("max-age=600"),
        (_, "/items") => Reply::ok("created")
            .status(201)
            .header("location", "/items/7")
            .header("content-location", "http://example.test/items/list?page=1"),
        _ => Reply::ok("moved")
            .status(303)
            .header("location", "http://elsewhere.test/items/8"),
    });
    let paths = ["/items/7", "/items/list?page=1", "/items/8"];
    for path in paths {
        t.get(path).await;
        assert!(t.holder(&t.get(path).await).starts_with("hit"), "{path}");
    }
    let post = |path: &'static str| t.send(Method::POST, path, &[], Bytes::from_static(b"x"));
    assert_eq!(post("/items").await.status, 201);
    assert_eq!(post("/other").await.status, 303);
    for (path, invalidated) in [
        ("/items/7", true),
        ("/items/list?page=1", true),
        ("/items/8", false),
    ] {
        let r = t.get(path).await;
        assert_eq!(
            t.holder(&r).starts_with("fwd=uri-miss"),
            invalidated,
            "{path}: {}",
            r.cache_status()
        );
        assert_eq!(t.count(Method::GET, path), 1 + usize::from(invalidated));
    }
}

async fn a_purge_removes_every_stored_copy(t: Ctx) {
    t.origin_answers(|seen, n| {
        Reply::ok(format!("{} v{n}", seen.path))
            .cache("max-age=600")
            .header("surrogate-key", "tagged")
    });
    for path in ["/by-url", "/by-tag"] {
        t.get(path).await;
        assert!(t.holder(&t.get(path).await).starts_with("hit"), "{path}");
    }
    let url = t
        .purge("/by-url", r#"{"urls":["http://example.test/by-url"]}"#)
        .await;
    assert_eq!(url.status, 200, "{}", url.text());
    let tag = t.purge("/by-tag", r#"{"tags":["tagged"]}"#).await;
    assert_eq!(tag.status, 200, "{}", tag.text());
    for path in ["/by-url", "/by-tag"] {
        let r = t.get(path).await;
        assert_eq!(r.text(), format!("{path} v2"), "{}", r.cache_status());
        assert!(t.holder(&r).starts_with("fwd=uri-miss"), "{path}");
        assert_eq!(t.origin.count(path), 2, "{path}");
    }
}

async fn head_is_answered_from_a_stored_get(t: Ctx) {
    t.origin_answers(|_, _| Reply::ok("0123456789").cache("max-age=60"));
    t.get("/h").await;
    let head = t.head("/h").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "10");
    assert!(
        t.holder(&head).starts_with("hit"),
        "{}",
        head.cache_status()
    );
    assert_eq!(t.origin.total(), 1);
}

async fn head_miss_fills_with_get(t: Ctx) {
    t.origin_answers(|_, _| Reply::ok("0123456789").cache("max-age=60"));
    let head = t.head("/hm").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(t.origin.last("/hm").method, Method::GET);
    eventually("the GET fill to be stored", || async {
        t.holder(&t.get("/hm").await).starts_with("hit")
    })
    .await;
    assert_eq!(t.origin.count("/hm"), 1);
}

/// RFC 9111 §4.3.5, where the site passes HEAD to the origin: a 200 to HEAD that describes
/// the stored response (same entity tag, same length) freshens it as a 304 would; one that
/// does not leaves it stale; and a HEAD response is never stored in place of a GET's.
async fn a_head_passed_to_the_origin_freshens_the_stored_get(t: Ctx) {
    t.origin_answers(|seen, _| {
        if seen.method == Method::HEAD {
            let etag = if seen.path == "/changed" {
                "\"v2\""
            } else {
                "\"v1\""
            };
            return Reply::ok("0123456789")
                .cache("max-age=600")
                .header("etag", etag)
                .header("x-version", "2");
        }
        // Stale as soon as it is stored.
        Reply::ok("0123456789")
            .cache("max-age=60")
            .header("age", "100")
            .header("etag", "\"v1\"")
            .header("x-version", "1")
    });
    for path in ["/same", "/changed"] {
        t.get(path).await;
        let head = t.head(path).await;
        assert_eq!(head.status, 200, "{path}");
        assert!(head.body.is_empty(), "{path}");
        assert_eq!(head.header("x-version"), "2", "{path}");
        assert_eq!(head.header("content-length"), "10", "{path}");
        assert!(
            t.holder(&head).starts_with("fwd=stale; fwd-status=200"),
            "{path}: {}",
            head.cache_status()
        );
        assert_eq!(t.origin.last(path).method, Method::HEAD, "{path}");
    }
    // Freshened: the stored body with the HEAD response's fields and freshness.
    let hit = t.get("/same").await;
    assert!(
        t.holder(&hit).starts_with("hit; ttl="),
        "{}",
        hit.cache_status()
    );
    assert!(ttl(&t.holder(&hit)) > 500, "{}", hit.cache_status());
    assert_eq!(
        (hit.text().as_str(), hit.header("x-version")),
        ("0123456789", "2")
    );
    assert_eq!(t.count(Method::GET, "/same"), 1);
    // Another representation: the stored one is stale and the next GET revalidates it.
    let changed = t.get("/changed").await;
    assert!(
        t.holder(&changed).starts_with("fwd=stale"),
        "{}",
        changed.cache_status()
    );
    assert_eq!(t.count(Method::GET, "/changed"), 2);
    // A HEAD miss asks with HEAD and stores nothing: the GET after it is a miss.
    let miss = t.head("/head-miss").await;
    assert_eq!((miss.status.as_u16(), miss.header("x-version")), (200, "2"));
    let get = t.get("/head-miss").await;
    assert!(
        t.holder(&get)
            .starts_with("fwd=uri-miss; fwd-status=200; stored"),
        "{}",
        get.cache_status()
    );
    assert_eq!(get.text(), "0123456789");
    assert_eq!(t.count(Method::HEAD, "/head-miss"), 1);
    assert_eq!(t.count(Method::GET, "/head-miss"), 1);
}

/// RFC 9110 §14: a range is cut from the whole object, on the miss that fetches (and stores)
/// it as on later hits.
async fn single_ranges_are_cut_from_the_object(t: Ctx) {
    t.origin_answers(|_, _| Reply::ok("0123456789").cache("max-age=60"));
    let miss = t.get_with("/range", &[("range", "bytes=0-4")]).await;
    assert_eq!(miss.status, 206, "{}", miss.cache_status());
    assert_eq!(miss.text(), "01234");
    assert_eq!(miss.header("content-range"), "bytes 0-4/10");
    assert_eq!(miss.header("content-length"), "5");
    assert!(
        t.holder(&miss)
            .starts_with("fwd=uri-miss; fwd-status=200; stored"),
        "{}",
        miss.cache_status()
    );
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
        let r = t.get_with("/range", &[("range", range)]).await;
        assert_eq!(r.status.as_u16(), status, "{range}: {}", r.cache_status());
        assert_eq!(r.text(), body, "{range}");
        assert_eq!(r.header("content-range"), content_range, "{range}");
        assert_eq!(
            r.header("content-length"),
            body.len().to_string(),
            "{range}"
        );
        assert!(
            t.holder(&r).starts_with("hit"),
            "{range}: {}",
            r.cache_status()
        );
    }
    // The whole object was stored from the ranged miss.
    let full = t.get("/range").await;
    assert_eq!(
        (full.status.as_u16(), full.text().as_str()),
        (200, "0123456789")
    );
    assert_eq!(t.origin.count("/range"), 1);
    assert_eq!(t.origin.last("/range").header("range"), "");
    // A range no byte satisfies, on a miss too.
    let unsatisfiable = t.get_with("/range-416", &[("range", "bytes=10-")]).await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), "bytes */10");
    assert!(unsatisfiable.body.is_empty());
}

/// The parts of a `multipart/byteranges` body: (Content-Range, Content-Type, data).
fn multipart(r: &Resp) -> Vec<(String, String, String)> {
    let content_type = r.header("content-type").to_owned();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    assert_eq!(r.header("content-range"), "", "only the parts carry one");
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let body = r.text();
    assert!(
        body.ends_with(&format!("\r\n--{boundary}--\r\n")),
        "{body:?}"
    );
    body.split(&format!("--{boundary}"))
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "--")
        .map(|part| {
            let (head, data) = part.split_once("\r\n\r\n").unwrap_or((part, ""));
            let field = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field("Content-Range: "),
                field("Content-Type: "),
                data.to_owned(),
            )
        })
        .collect()
}

async fn multiple_ranges_are_answered_multipart_byteranges(t: Ctx) {
    t.origin_answers(|_, _| {
        Reply::ok("0123456789")
            .cache("max-age=60")
            .header("content-type", "text/plain")
    });
    let want = [
        (
            "bytes 0-1/10".to_owned(),
            "text/plain".to_owned(),
            "01".to_owned(),
        ),
        (
            "bytes 7-9/10".to_owned(),
            "text/plain".to_owned(),
            "789".to_owned(),
        ),
    ];
    // On the miss that fetches the object, then from the stored object.
    for n in 1..=2 {
        let r = t.get_with("/m", &[("range", "bytes=0-1, 7-")]).await;
        assert_eq!(r.status, 206, "request {n}");
        assert_eq!(multipart(&r), want, "request {n}");
    }
    // A flood of tiny ranges is ignored: the whole representation, once.
    let many = (0..40)
        .map(|i| format!("{}-{}", i % 10, i % 10))
        .collect::<Vec<_>>()
        .join(",");
    let flood = t
        .get_with("/m", &[("range", &format!("bytes={many}"))])
        .await;
    assert_eq!(
        (flood.status.as_u16(), flood.text().as_str()),
        (200, "0123456789")
    );
    assert_eq!(t.origin.count("/m"), 1);
}

/// RFC 9110 §13.1.5: a range only of the representation the client has (a strong validator
/// that matches); otherwise the whole of the current one.
async fn if_range_serves_the_range_only_for_the_same_representation(t: Ctx) {
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    t.origin_answers(move |_, _| {
        Reply::ok("0123456789")
            .cache("max-age=60")
            .header("etag", "\"v2\"")
            .header("last-modified", lm)
    });
    let cases = [
        ("\"v2\"", 206, "234"),
        ("\"v1\"", 200, "0123456789"),
        ("W/\"v2\"", 200, "0123456789"),
        (lm, 206, "234"),
        ("Sun, 31 Dec 2023 00:00:00 GMT", 200, "0123456789"),
    ];
    // The first asks on the miss, the others of the stored object.
    for (if_range, status, body) in cases {
        let r = t
            .get_with("/ir", &[("range", "bytes=2-4"), ("if-range", if_range)])
            .await;
        assert_eq!(r.status.as_u16(), status, "If-Range: {if_range}");
        assert_eq!(r.text(), body, "If-Range: {if_range}");
        assert_eq!(r.header("etag"), "\"v2\"");
    }
    // On a miss, a mismatching If-Range gets the whole object too.
    let miss = t
        .get_with(
            "/ir-miss",
            &[("range", "bytes=2-4"), ("if-range", "\"v1\"")],
        )
        .await;
    assert_eq!(
        (miss.status.as_u16(), miss.text().as_str()),
        (200, "0123456789")
    );
    assert_eq!(t.origin.count("/ir"), 1);
    assert_eq!(t.origin.last("/ir").header("if-range"), "");
}

async fn a_206_from_the_origin_is_passed_through(t: Ctx) {
    t.origin_answers(|seen, _| match seen.header("range").as_str() {
        "" => Reply::ok("0123456789").cache("no-store"),
        _ => Reply::ok("2345")
            .status(206)
            .header("content-range", "bytes 2-5/10"),
    });
    // Not storable: the key is fetched privately from now on, so a Range goes to the origin.
    t.get("/p").await;
    let r = t.get_with("/p", &[("range", "bytes=2-5")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "2345");
    assert_eq!(r.header("content-range"), "bytes 2-5/10");
    assert_eq!(t.origin.last("/p").header("range"), "bytes=2-5");
    // Never stored: the next plain GET goes to the origin again and gets the whole thing.
    let full = t.get("/p").await;
    assert_eq!(
        (full.status.as_u16(), full.text().as_str()),
        (200, "0123456789")
    );
    assert_eq!(t.origin.count("/p"), 3);
}

/// Only on one node: through a non-owner, `only-if-cached` is answered by the edge, which
/// holds nothing, without asking the owner.
#[tokio::test]
async fn request_no_cache_revalidates_and_only_if_cached_never_reaches_origin() {
    let origin =
        Origin::start(|_, _| Reply::ok("v").cache("max-age=60").header("etag", "\"e\"")).await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
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
