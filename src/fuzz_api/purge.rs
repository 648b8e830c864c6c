//! `purge`: a `POST /purge` body (also what peers receive in the fan-out), the cache keys of
//! its URLs, and the same-origin check that guards invalidation by `Location` (RFC 9111 §4.4).
//!
//! Input: the body. Its bytes are also tried as a `Location` value.

use http::Uri;

use crate::cache::invalidation::same_origin_target;
use crate::cache::key::{KeyRules, QueryRule};
use crate::proxy::purge::{PurgeRequest, url_keys};

/// The base the references are resolved against.
const BASE: (&str, &str, Option<u16>, &str) = ("https", "example.com", None, "/a/b/c?q=1");

pub fn purge(data: &[u8]) {
    check_reference(data);
    let Ok(request) = serde_json::from_slice::<PurgeRequest>(data) else {
        return;
    };
    let text = serde_json::to_vec(&request).expect("a parsed request serialises");
    let again: PurgeRequest = serde_json::from_slice(&text).expect("its serialisation parses");
    assert_eq!(
        (&again.urls, &again.tags, again.soft),
        (&request.urls, &request.tags, request.soft)
    );
    let rules = KeyRules {
        query: QueryRule::Only(vec!["id".into(), "page".into()]),
        sort_query: true,
        ..KeyRules::default()
    };
    for url in request.urls.iter().take(64) {
        check_reference(url.as_bytes());
        check_keys(url, None);
        check_keys(url, Some(&rules));
    }
}

/// Both keys of an accepted URL are URLs of the two schemes, and purging by the first key
/// (as an operator copies it from a log) names the same entry. (Not the second: the first
/// has lost a port that is the default of its scheme only.)
fn check_keys(url: &str, rules: Option<&KeyRules>) {
    let Ok([own, other]) = url_keys(url, |_| rules) else {
        return;
    };
    let https = url
        .parse::<Uri>()
        .ok()
        .and_then(|u| u.scheme_str().map(|s| s == "https"));
    let (own_scheme, other_scheme) = if https == Some(true) {
        ("https://", "http://")
    } else {
        ("http://", "https://")
    };
    assert!(
        own.starts_with(own_scheme) && other.starts_with(other_scheme),
        "{url:?}: {own:?}, {other:?}"
    );
    let [again, _] =
        url_keys(&own, |_| rules).unwrap_or_else(|e| panic!("{url:?}: key {own:?}: {e}"));
    assert_eq!(again, own, "{url:?}");
}

/// A resolved reference is an absolute path without dot segments, on the base's origin.
fn check_reference(reference: &[u8]) {
    let (scheme, host, port, path) = BASE;
    let Some(target) = same_origin_target(scheme, host, port, path, reference) else {
        return;
    };
    let resolved = target.path();
    assert!(resolved.starts_with('/'), "{reference:?} → {target}");
    let dots = resolved.split('/').any(|s| s == "." || s == "..");
    assert!(!dots, "{reference:?} → {target} keeps a dot segment");
    // The `http` parser, as a second opinion on where an absolute URI points. (Only with a
    // scheme: it reads a bare `..` or `a.b` as an authority, not as a relative reference.)
    let text = String::from_utf8_lossy(reference);
    if let Ok(uri) = text.trim_matches([' ', '\t']).parse::<Uri>()
        && uri.scheme().is_some()
        && let Some(authority) = uri.authority()
    {
        let named = authority.host().trim_end_matches('.');
        assert!(
            named.eq_ignore_ascii_case(host),
            "{reference:?} → {target} on {authority}"
        );
    }
}
