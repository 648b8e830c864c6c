//! `cache_control`: directive parsing for requests and responses, and the site policy that
//! picks the targeted field (RFC 9111 §5.2, RFC 9213).

use http::{HeaderName, StatusCode, header};

use crate::cache::control::{DELTA_SECONDS_MAX, MaxStale, RequestDirectives, ResponseDirectives};
use crate::cache::policy::Policy;

/// A site with every field Outpost can obey: its own, CDN-Cache-Control, Surrogate-Control.
fn policy() -> Policy {
    Policy {
        own_field: Some(HeaderName::from_static("outpost-cache-control")),
        surrogate_control: true,
        status_ttl: vec![(StatusCode::OK, 60)],
        ..Policy::default()
    }
}

/// Header block, main field `Cache-Control`.
pub fn cache_control(data: &[u8]) {
    let headers = super::header_block(data, &header::CACHE_CONTROL);
    // A directive (or field) can only be set by input that names it.
    let lower = data.to_ascii_lowercase();
    let named = |word: &str| lower.windows(word.len()).any(|w| w == word.as_bytes());

    let request = RequestDirectives::parse(&headers);
    check_request(&request, &named);
    assert_eq!(request, RequestDirectives::parse(&headers), "deterministic");

    let response = ResponseDirectives::parse(&headers);
    check_response(&response, &named);
    assert!(!response.targeted, "Cache-Control is not a targeted field");

    let cdn = ResponseDirectives::parse_lines(headers.get_all("cdn-cache-control"));
    check_response(&cdn, &named);

    let obeyed = policy().directives(StatusCode::OK, &headers);
    check_response(&obeyed, &named);
    if obeyed.targeted {
        assert!(
            named("outpost-cache-control")
                || named("cdn-cache-control")
                || named("surrogate-control"),
            "targeted without a targeted field"
        );
    }
    // RFC 9111 §4.2.1: the status default never overrides an explicit lifetime.
    if obeyed.default_ttl.is_some() {
        assert!(obeyed.max_age.is_none() && obeyed.s_maxage.is_none());
    }
}

fn check_request(d: &RequestDirectives, named: &impl Fn(&str) -> bool) {
    for v in [d.max_age, d.min_fresh, d.stale_if_error]
        .into_iter()
        .flatten()
    {
        assert!(v <= DELTA_SECONDS_MAX, "{v} above 2^31");
    }
    if let Some(MaxStale::Seconds(v)) = d.max_stale {
        assert!(v <= DELTA_SECONDS_MAX);
    }
    let flags = [
        (d.no_cache, "no-cache"),
        (d.no_store, "no-store"),
        (d.only_if_cached, "only-if-cached"),
        (d.max_age.is_some(), "max-age"),
        (d.max_stale.is_some(), "max-stale"),
        (d.min_fresh.is_some(), "min-fresh"),
    ];
    for (set, name) in flags {
        assert!(!set || named(name), "{name} set without being named");
    }
}

fn check_response(d: &ResponseDirectives, named: &impl Fn(&str) -> bool) {
    let values = [
        d.max_age,
        d.s_maxage,
        d.stale_while_revalidate,
        d.stale_if_error,
    ];
    for v in values.into_iter().flatten() {
        assert!(v <= DELTA_SECONDS_MAX, "{v} above 2^31");
    }
    let flags = [
        (d.no_store, "no-store"),
        (d.no_cache, "no-cache"),
        (d.private, "private"),
        (d.public, "public"),
        (d.must_revalidate, "must-revalidate"),
        (d.proxy_revalidate, "proxy-revalidate"),
        (d.must_understand, "must-understand"),
        (d.no_transform, "no-transform"),
        (d.immutable, "immutable"),
        (d.s_maxage.is_some(), "s-maxage"),
    ];
    for (set, name) in flags {
        assert!(!set || named(name), "{name} set without being named");
    }
    // Qualified field lists are lowercase header names, each once, and only with the flag.
    for (flag, fields) in [
        (d.no_cache, &d.no_cache_fields),
        (d.private, &d.private_fields),
    ] {
        assert!(flag || fields.is_empty());
        for (i, f) in fields.iter().enumerate() {
            assert!(HeaderName::from_bytes(f.as_bytes()).is_ok_and(|n| n.as_str() == f));
            assert!(!fields[..i].contains(f), "{f} twice");
        }
    }
}
