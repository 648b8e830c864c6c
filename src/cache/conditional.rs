//! Validators and conditional requests (RFC 9110 §8.8.3, §13.1; RFC 9111
//! §4.3).
//!
//! Two directions: answering a client's conditional GET from the cache with
//! 304 (saving the body transfer at the edge), and revalidating a stored
//! response with the origin, then folding the origin's 304 into the entry.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::cache::control::trim_ows;
use crate::cache::date::http_date;

/// An entity-tag split into weakness and opaque-tag body (RFC 9110 §8.8.3).
/// `W/` is case-sensitive; etagc excludes DQUOTE, whitespace and controls.
fn parse_etag(s: &str) -> Option<(bool, &str)> {
    let s = s.trim_matches([' ', '\t']);
    let (weak, rest) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let opaque = rest.strip_prefix('"')?.strip_suffix('"')?;
    // RFC 9110 §8.8.3: etagc = %x21 / %x23-7E / obs-text
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80;
    opaque.bytes().all(etagc).then_some((weak, opaque))
}

/// RFC 9110 §8.8.3.2 strong comparison: both strong, same opaque tag.
pub(crate) fn strong_etag_eq(a: &str, b: &str) -> bool {
    matches!((parse_etag(a), parse_etag(b)), (Some((false, x)), Some((false, y))) if x == y)
}

/// RFC 9110 §8.8.3.2 weak comparison: same opaque tag, weakness ignored.
pub(crate) fn weak_etag_eq(a: &str, b: &str) -> bool {
    matches!((parse_etag(a), parse_etag(b)), (Some((_, x)), Some((_, y))) if x == y)
}

/// Members of an entity-tag list. Commas are legal inside an opaque tag, so
/// the split respects quotes instead of cutting at every comma.
fn etag_list(s: &str) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    s.split(move |c| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        c == ',' && !in_quotes
    })
    .map(|m| m.trim_matches([' ', '\t']))
    .filter(|m| !m.is_empty())
}

/// Should the stored response answer this request with 304 Not Modified? `now` places the
/// two-digit years of RFC 850 dates (see `cache::date`).
pub(crate) fn not_modified(
    method: &Method,
    request_headers: &HeaderMap,
    stored_headers: &HeaderMap,
    now: SystemTime,
) -> bool {
    // RFC 9110 §13.1.2, §13.1.3: a failed precondition means 304 only for
    // GET and HEAD (other methods get 412, not a cache answer).
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    // RFC 9110 §13.1.3, §13.2.2: If-Modified-Since is ignored whenever
    // If-None-Match is present, even if unparsable.
    if request_headers.contains_key(header::IF_NONE_MATCH) {
        return none_match_hit(request_headers, stored_headers);
    }
    modified_since_hit(request_headers, stored_headers, now)
}

/// RFC 9110 §13.1.2 / RFC 9111 §4.3.2: any listed tag weakly matching the
/// stored ETag, or `*` (a stored representation exists), makes it 304.
fn none_match_hit(request_headers: &HeaderMap, stored_headers: &HeaderMap) -> bool {
    let stored = stored_headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok());
    request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(etag_list)
        .any(|tag| tag == "*" || stored.is_some_and(|s| weak_etag_eq(tag, s)))
}

/// RFC 9110 §13.1.3 / RFC 9111 §4.3.2: 304 when the stored Last-Modified
/// (or, lacking a valid one, its Date) is not after the client's date.
/// Several lines or an invalid date → the field is ignored.
fn modified_since_hit(
    request_headers: &HeaderMap,
    stored_headers: &HeaderMap,
    now: SystemTime,
) -> bool {
    let mut lines = request_headers.get_all(header::IF_MODIFIED_SINCE).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return false;
    };
    let Some(since) = http_date(line, now) else {
        return false;
    };
    let stored = stored_date(stored_headers, header::LAST_MODIFIED, now)
        .or_else(|| stored_date(stored_headers, header::DATE, now));
    stored.is_some_and(|last_modified| last_modified <= since)
}

fn stored_date(
    stored_headers: &HeaderMap,
    name: HeaderName,
    now: SystemTime,
) -> Option<SystemTime> {
    http_date(stored_headers.get(name)?, now)
}

/// RFC 9110 §13.1.5: with `If-Range`, a range is served only if the validator matches the
/// stored representation strongly; otherwise the whole representation is sent, so a client
/// resuming a download never splices bytes of two versions. True without `If-Range`.
pub(crate) fn if_range_holds(request: &HeaderMap, stored: &HeaderMap, now: SystemTime) -> bool {
    let Some(condition) = request.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(text) = condition.to_str().map(|t| t.trim_matches([' ', '\t'])) else {
        return false;
    };
    // "A valid entity-tag can be distinguished from a valid HTTP-date by examining the first
    // three characters for a DQUOTE."
    if text.bytes().take(3).any(|b| b == b'"') {
        let etag = stored.get(header::ETAG).and_then(|v| v.to_str().ok());
        return etag.is_some_and(|etag| strong_etag_eq(text, etag));
    }
    // A date must exactly match Last-Modified and be a strong validator (§8.8.2.2): for a
    // cache, at least one second before the stored response's Date.
    let (Some(since), Some(last_modified), Some(date)) = (
        http_date(condition, now),
        stored_date(stored, header::LAST_MODIFIED, now),
        stored_date(stored, header::DATE, now),
    ) else {
        return false;
    };
    since == last_modified
        && date
            .duration_since(since)
            .is_ok_and(|d| d >= Duration::from_secs(1))
}

/// RFC 9111 §4.3.1: preconditions for revalidating a stored response — its
/// ETag in If-None-Match, its Last-Modified in If-Modified-Since. Invalid
/// validators are not sent: the origin could not match them either.
pub(crate) fn validators(
    stored_headers: &HeaderMap,
    now: SystemTime,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(etag) = stored_headers.get(header::ETAG)
        && etag.to_str().ok().and_then(parse_etag).is_some()
    {
        out.push((header::IF_NONE_MATCH, etag.clone()));
    }
    if let Some(lm) = stored_headers.get(header::LAST_MODIFIED)
        && http_date(lm, now).is_some()
    {
        out.push((header::IF_MODIFIED_SINCE, lm.clone()));
    }
    out
}

/// Fields a 304 must not copy into the stored response: framing that
/// describes the 304 message itself (RFC 9111 §3.2 excludes Content-Length;
/// Content-Range likewise describes a message, not the stored body), and
/// hop-by-hop / proxy-specific fields that are never stored (§3.1, RFC 9110
/// §7.6.1).
const NOT_UPDATED: &[&str] = &[
    "connection",
    "content-length",
    "content-range",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// RFC 9111 §4.3.4, §3.2: the stored headers updated by a 304 — each field
/// of the 304 replaces every stored line of that name, except the fields
/// above and any the 304's Connection header lists (RFC 9110 §7.6.1).
/// RFC 9111 §4.3.4: does a 304 select this stored response? A strong entity tag must match
/// strongly, a weak one weakly; without an entity tag, a `Last-Modified` must be the stored
/// one. A 304 without validators selects it (Outpost only ever revalidates one response at a
/// time, with that response's own validators).
pub(crate) fn selects(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    let text = |h: &HeaderMap, name| {
        h.get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::trim)
            .map(str::to_owned)
    };
    if let Some(etag) = text(not_modified, header::ETAG) {
        let Some(ours) = text(stored, header::ETAG) else {
            return false;
        };
        return if etag.starts_with("W/") {
            weak_etag_eq(&etag, &ours)
        } else {
            strong_etag_eq(&etag, &ours)
        };
    }
    match (
        text(not_modified, header::LAST_MODIFIED),
        text(stored, header::LAST_MODIFIED),
    ) {
        (Some(theirs), Some(ours)) => theirs == ours,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// RFC 9111 §4.3.5: does a 200 to HEAD describe this stored response, so that its fields may
/// freshen it as a 304's would? Every validator it carries must match the stored one (an
/// `ETag` as for a 304, a `Last-Modified` exactly), it must carry at least one (without, it
/// could describe any representation), and a `Content-Length` it carries must be the stored
/// body's length.
pub(crate) fn head_describes(stored: &HeaderMap, stored_len: u64, head: &HeaderMap) -> bool {
    let etag = head.get(header::ETAG);
    let last_modified = head.get(header::LAST_MODIFIED);
    if etag.is_none() && last_modified.is_none() {
        return false;
    }
    let same_date = last_modified.is_none_or(|theirs| {
        stored
            .get(header::LAST_MODIFIED)
            .is_some_and(|ours| ours.as_bytes().trim_ascii() == theirs.as_bytes().trim_ascii())
    });
    let same_length = head.get(header::CONTENT_LENGTH).is_none_or(|length| {
        length
            .to_str()
            .ok()
            .and_then(|l| l.trim().parse::<u64>().ok())
            == Some(stored_len)
    });
    // With an entity tag, `selects` compares it and ignores the date, checked above.
    selects(stored, head) && same_date && same_length
}

pub(crate) fn merge_304(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(not_modified);
    let mut merged = stored.clone();
    for name in not_modified.keys() {
        if NOT_UPDATED.contains(&name.as_str()) || listed.contains(name) {
            continue;
        }
        merged.remove(name);
        for value in not_modified.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

/// Field names listed in Connection (RFC 9110 §7.6.1), invalid ones dropped.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(trim_ows(name)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_util::{Pairs, hm};

    #[test]
    fn etag_comparison_table() {
        // RFC 9110 §8.8.3.2 table plus malformed tags.
        let cases = [
            (r#"W/"1""#, r#"W/"1""#, false, true),
            (r#"W/"1""#, r#"W/"2""#, false, false),
            (r#"W/"1""#, r#""1""#, false, true),
            (r#""1""#, r#""1""#, true, true),
            (r#""1""#, r#""2""#, false, false),
            (r#" "a b" "#, r#""a b""#, false, false),
            (r#""""#, r#""""#, true, true),
            (r#""a,b""#, r#""a,b""#, true, true),
            ("abc", "abc", false, false),
            (r#"w/"1""#, r#""1""#, false, false),
            (r#"W/1"#, r#"W/1"#, false, false),
            (r#"""#, r#"""#, false, false),
            (r#""a"b""#, r#""a"b""#, false, false),
            (r#""é""#, r#""é""#, true, true),
            ("", "", false, false),
            ("*", "*", false, false),
        ];
        for (a, b, strong, weak) in cases {
            assert_eq!(strong_etag_eq(a, b), strong, "strong {a:?} {b:?}");
            assert_eq!(weak_etag_eq(a, b), weak, "weak {a:?} {b:?}");
            assert_eq!(weak_etag_eq(b, a), weak, "weak symmetric {a:?} {b:?}");
        }
    }

    #[test]
    fn etag_list_respects_quotes() {
        let got: Vec<_> = etag_list(r#" "a,b", W/"c" ,, *,"d"#).collect();
        assert_eq!(got, [r#""a,b""#, r#"W/"c""#, "*", r#""d"#]);
    }

    /// A clock for the RFC 850 window: 2025-01-01.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600)
    }

    const LM: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";
    /// LM in the two obsolete formats (RFC 9110 §5.6.7).
    const LM_850: &[u8] = b"Sunday, 06-Nov-94 08:49:37 GMT";
    const LM_ASCTIME: &[u8] = b"Sun Nov  6 08:49:37 1994";
    /// A second after LM, in each format.
    const AFTER: &[u8] = b"Sun, 06 Nov 1994 08:49:38 GMT";
    const AFTER_850: &[u8] = b"Sunday, 06-Nov-94 08:49:38 GMT";
    const AFTER_ASCTIME: &[u8] = b"Sun Nov  6 08:49:38 1994";
    const BEFORE_ASCTIME: &[u8] = b"Sun Nov  6 08:49:36 1994";
    const EARLIER: &[u8] = b"Sat, 05 Nov 1994 08:49:37 GMT";
    const LATER: &[u8] = b"Mon, 07 Nov 1994 08:49:37 GMT";

    #[test]
    fn not_modified_table() {
        let stored_full: &[(&str, &[u8])] = &[("etag", b"W/\"v1\""), ("last-modified", LM)];
        let stored_date: &[(&str, &[u8])] = &[("date", LM)];
        let stored_none: &[(&str, &[u8])] = &[];
        let cases: &[(Method, Pairs, Pairs, bool)] = &[
            (
                Method::GET,
                &[("if-none-match", b"\"v1\"")],
                stored_full,
                true,
            ),
            (
                Method::HEAD,
                &[("if-none-match", b"W/\"v1\"")],
                stored_full,
                true,
            ),
            (
                Method::GET,
                &[("if-none-match", b"\"v2\", \"v1\"")],
                stored_full,
                true,
            ),
            (
                Method::GET,
                &[("if-none-match", b"\"v2\""), ("if-none-match", b"\"v1\"")],
                stored_full,
                true,
            ),
            (
                Method::GET,
                &[("if-none-match", b"\"v2\"")],
                stored_full,
                false,
            ),
            (Method::GET, &[("if-none-match", b"*")], stored_full, true),
            (Method::GET, &[("if-none-match", b"*")], stored_none, true),
            (
                Method::GET,
                &[("if-none-match", b"\"v1\"")],
                stored_none,
                false,
            ),
            (Method::POST, &[("if-none-match", b"*")], stored_full, false),
            (
                Method::PUT,
                &[("if-modified-since", LATER)],
                stored_full,
                false,
            ),
            // If-None-Match present (even garbage) → IMS ignored.
            (
                Method::GET,
                &[("if-none-match", b"\"v2\""), ("if-modified-since", LATER)],
                stored_full,
                false,
            ),
            (
                Method::GET,
                &[("if-none-match", b"garbage"), ("if-modified-since", LATER)],
                stored_full,
                false,
            ),
            (
                Method::GET,
                &[("if-none-match", b"\xff"), ("if-modified-since", LATER)],
                stored_full,
                false,
            ),
            (Method::GET, &[("if-modified-since", LM)], stored_full, true),
            (
                Method::GET,
                &[("if-modified-since", LATER)],
                stored_full,
                true,
            ),
            (
                Method::GET,
                &[("if-modified-since", EARLIER)],
                stored_full,
                false,
            ),
            (
                Method::HEAD,
                &[("if-modified-since", LM)],
                stored_date,
                true,
            ),
            (
                Method::GET,
                &[("if-modified-since", EARLIER)],
                stored_date,
                false,
            ),
            (
                Method::GET,
                &[("if-modified-since", LATER)],
                stored_none,
                false,
            ),
            (
                Method::GET,
                &[("if-modified-since", b"yesterday")],
                stored_full,
                false,
            ),
            (
                Method::GET,
                &[("if-modified-since", b"\xff")],
                stored_full,
                false,
            ),
            (
                Method::GET,
                &[("if-modified-since", LATER), ("if-modified-since", LATER)],
                stored_full,
                false,
            ),
            (Method::GET, &[], stored_full, false),
        ];
        for (method, req, stored, want) in cases {
            let got = not_modified(method, &hm(req), &hm(stored), now());
            assert_eq!(got, *want, "{method} {req:?} {stored:?}");
        }
    }

    #[test]
    fn if_modified_since_reads_every_date_format() {
        // (If-Modified-Since, stored Last-Modified, 304?)
        let cases: &[(&[u8], &[u8], bool)] = &[
            (LM_850, LM, true),
            (LM_ASCTIME, LM, true),
            (LM, LM_850, true),
            (LM, LM_ASCTIME, true),
            (LM_850, LM_ASCTIME, true),
            (AFTER_850, LM, true),
            (AFTER_ASCTIME, LM_850, true),
            (BEFORE_ASCTIME, LM, false),
            (LM, AFTER_850, false),
            (LM_ASCTIME, AFTER_ASCTIME, false),
            // Not dates: the field is ignored (no 304).
            (b"0", LM, false),
            (b"Sunday, 06-Nov-1994 08:49:37 GMT", LM, false),
            (b"Monday, 06-Nov-94 08:49:37 GMT", LM, false),
            // An invalid Last-Modified falls back to the stored Date (absent here).
            (AFTER, b"Sunday, 06-Nov-94 08:49:37 UTC", false),
        ];
        for (since, last_modified, want) in cases {
            let req = hm(&[("if-modified-since", since)]);
            let stored = hm(&[("last-modified", last_modified)]);
            assert_eq!(
                not_modified(&Method::GET, &req, &stored, now()),
                *want,
                "{:?} vs {:?}",
                String::from_utf8_lossy(since),
                String::from_utf8_lossy(last_modified)
            );
        }
        // The stored Date, when it is the fallback, in an obsolete format too.
        let stored = hm(&[("date", LM_ASCTIME)]);
        let req = hm(&[("if-modified-since", LM_850)]);
        assert!(not_modified(&Method::GET, &req, &stored, now()));
    }

    #[test]
    fn if_range_table() {
        let date_after: &[u8] = b"Sun, 06 Nov 1994 08:49:38 GMT";
        let stored: Pairs = &[
            ("etag", b"\"v1\""),
            ("last-modified", LM),
            ("date", date_after),
        ];
        let stored_850: Pairs = &[("last-modified", LM_850), ("date", AFTER_ASCTIME)];
        let weak_stored: Pairs = &[("etag", b"W/\"v1\"")];
        // Last-Modified less than a second before Date is weak (RFC 9110 §8.8.2.2).
        let same_second: Pairs = &[("last-modified", LM), ("date", LM)];
        let no_date: Pairs = &[("last-modified", LM)];
        // (If-Range, stored, range served?)
        let cases: &[(Option<&[u8]>, Pairs, bool)] = &[
            (None, stored, true),
            (None, &[], true),
            (Some(b"\"v1\""), stored, true),
            (Some(b" \"v1\" "), stored, true),
            (Some(b"\"v2\""), stored, false),
            // Strong comparison: a weak tag on either side never matches.
            (Some(b"W/\"v1\""), stored, false),
            (Some(b"\"v1\""), weak_stored, false),
            (Some(b"\"v1\""), &[], false),
            // Dates, in all three formats, against Last-Modified in either.
            (Some(LM), stored, true),
            (Some(LM_850), stored, true),
            (Some(LM_ASCTIME), stored, true),
            (Some(LM), stored_850, true),
            (Some(LM_ASCTIME), stored_850, true),
            // "Exactly matches": a later or earlier date does not.
            (Some(AFTER), stored, false),
            (Some(BEFORE_ASCTIME), stored, false),
            (Some(LM), same_second, false),
            (Some(LM), no_date, false),
            (Some(LM), &[("etag", b"\"v1\"")], false),
            // Neither a tag nor a date.
            (Some(b"v1"), stored, false),
            (Some(b"0"), stored, false),
            (Some(b""), stored, false),
            (Some(b"\xff"), stored, false),
            (Some(b"Sunday, 06-Nov-94 08:49:37"), stored, false),
        ];
        for (condition, stored, want) in cases {
            let req = match condition {
                Some(c) => hm(&[("if-range", c)]),
                None => HeaderMap::new(),
            };
            assert_eq!(
                if_range_holds(&req, &hm(stored), now()),
                *want,
                "{:?} vs {stored:?}",
                condition.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn invalid_last_modified_falls_back_to_date() {
        let stored = hm(&[("last-modified", b"bogus"), ("date", EARLIER)]);
        let req = hm(&[("if-modified-since", LM)]);
        assert!(not_modified(&Method::GET, &req, &stored, now()));
    }

    #[test]
    fn validators_table() {
        type Expected<'a> = &'a [(HeaderName, &'a [u8])];
        let cases: &[(Pairs, Expected)] = &[
            (&[], &[]),
            (&[("etag", b"\"x\"")], &[(header::IF_NONE_MATCH, b"\"x\"")]),
            (
                &[("etag", b"W/\"x\"")],
                &[(header::IF_NONE_MATCH, b"W/\"x\"")],
            ),
            (&[("etag", b"x")], &[]),
            (&[("etag", b"\"\xff\"")], &[]),
            (&[("last-modified", LM)], &[(header::IF_MODIFIED_SINCE, LM)]),
            (&[("last-modified", b"0")], &[]),
            (
                &[("last-modified", LM_850)],
                &[(header::IF_MODIFIED_SINCE, LM_850)],
            ),
            (
                &[("last-modified", LM_ASCTIME)],
                &[(header::IF_MODIFIED_SINCE, LM_ASCTIME)],
            ),
            (&[("last-modified", b"Sunday, 06-Nov-94 08:49:37")], &[]),
            (
                &[("last-modified", LM), ("etag", b"\"x\"")],
                &[
                    (header::IF_NONE_MATCH, b"\"x\""),
                    (header::IF_MODIFIED_SINCE, LM),
                ],
            ),
            (&[("date", LM)], &[]),
        ];
        for (stored, want) in cases {
            let got = validators(&hm(stored), now());
            let want: Vec<_> = want
                .iter()
                .map(|(n, v)| (n.clone(), HeaderValue::from_bytes(v).unwrap()))
                .collect();
            assert_eq!(got, want, "{stored:?}");
        }
    }

    #[test]
    fn merge_304_replaces_end_to_end_fields() {
        let stored = hm(&[
            ("content-type", b"text/html"),
            ("content-length", b"1234"),
            ("etag", b"\"v1\""),
            ("cache-control", b"max-age=10"),
            ("x-multi", b"a"),
            ("x-multi", b"b"),
            ("x-keep", b"kept"),
        ]);
        let nm = hm(&[
            ("cache-control", b"max-age=60"),
            ("etag", b"\"v1\""),
            ("date", LM),
            ("content-length", b"0"),
            ("transfer-encoding", b"chunked"),
            ("connection", b"keep-alive, X-Hop, \xff"),
            ("keep-alive", b"timeout=5"),
            ("x-hop", b"1"),
            ("content-range", b"bytes 0-1/2"),
            ("x-multi", b"c"),
            ("x-multi", b"d"),
        ]);
        let merged = merge_304(&stored, &nm);
        let get =
            |n: &str| -> Vec<&[u8]> { merged.get_all(n).iter().map(|v| v.as_bytes()).collect() };
        let cases: &[(&str, &[&[u8]])] = &[
            ("content-type", &[b"text/html"]),
            ("content-length", &[b"1234"]),
            ("cache-control", &[b"max-age=60"]),
            ("etag", &[b"\"v1\""]),
            ("date", &[LM]),
            ("x-multi", &[b"c", b"d"]),
            ("x-keep", &[b"kept"]),
            ("transfer-encoding", &[]),
            ("connection", &[]),
            ("keep-alive", &[]),
            ("x-hop", &[]),
            ("content-range", &[]),
        ];
        for (name, want) in cases {
            assert_eq!(get(name), *want, "{name}");
        }
        // The stored map is untouched.
        assert_eq!(stored.get("cache-control").unwrap(), "max-age=10");
    }

    #[test]
    fn a_304_selects_only_the_response_it_validates() {
        let stored = hm(&[
            ("etag", b"\"v1\""),
            ("last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT"),
        ]);
        let cases: &[(Pairs, bool)] = &[
            (&[], true),
            (&[("etag", b"\"v1\"")], true),
            (&[("etag", b"W/\"v1\"")], true),
            (&[("etag", b"\"v2\"")], false),
            (&[("etag", b"W/\"v2\"")], false),
            (&[("last-modified", b"Mon, 01 Jan 2024 00:00:00 GMT")], true),
            (
                &[("last-modified", b"Tue, 02 Jan 2024 00:00:00 GMT")],
                false,
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(selects(&stored, &hm(headers)), *want, "{headers:?}");
        }
        let weak = hm(&[("etag", b"W/\"v1\"")]);
        assert!(
            !selects(&weak, &hm(&[("etag", b"\"v1\"")])),
            "strong vs weak"
        );
        assert!(selects(&weak, &hm(&[("etag", b"W/\"v1\"")])));
        assert!(!selects(&HeaderMap::new(), &hm(&[("etag", b"\"v1\"")])));
    }

    #[test]
    fn a_head_response_describes_only_the_stored_response_it_validates() {
        let lm: &[u8] = b"Mon, 01 Jan 2024 00:00:00 GMT";
        let stored = hm(&[("etag", b"\"v1\""), ("last-modified", lm)]);
        let cases: &[(Pairs, u64, bool)] = &[
            (&[("etag", b"\"v1\"")], 10, true),
            (&[("etag", b"\"v1\""), ("content-length", b"10")], 10, true),
            (&[("etag", b"\"v1\""), ("last-modified", lm)], 10, true),
            (
                &[("last-modified", lm), ("content-length", b" 10 ")],
                10,
                true,
            ),
            // Another representation, or the same one at another length.
            (&[("etag", b"\"v2\"")], 10, false),
            (&[("etag", b"\"v1\""), ("content-length", b"11")], 10, false),
            (&[("etag", b"\"v1\""), ("content-length", b"x")], 10, false),
            (
                &[
                    ("etag", b"\"v1\""),
                    ("last-modified", b"Tue, 02 Jan 2024 00:00:00 GMT"),
                ],
                10,
                false,
            ),
            (
                &[("last-modified", b"Tue, 02 Jan 2024 00:00:00 GMT")],
                10,
                false,
            ),
            // No validator: nothing says which representation it describes.
            (&[], 10, false),
            (&[("content-length", b"10")], 10, false),
        ];
        for (headers, len, want) in cases {
            assert_eq!(
                head_describes(&stored, *len, &hm(headers)),
                *want,
                "{headers:?} len={len}"
            );
        }
        let no_date = hm(&[("etag", b"\"v1\"")]);
        assert!(!head_describes(&no_date, 10, &hm(&[("last-modified", lm)])));
    }

    #[test]
    fn merge_304_with_empty_inputs() {
        let stored = hm(&[("etag", b"\"a\"")]);
        assert_eq!(merge_304(&stored, &HeaderMap::new()), stored);
        let nm = hm(&[("etag", b"\"b\"")]);
        assert_eq!(merge_304(&HeaderMap::new(), &nm), nm);
    }
}
