//! Which extra URIs an unsafe request invalidates (RFC 9111 §4.4).
//!
//! After a successful unsafe request a cache MAY also invalidate the URIs in
//! the response's `Location` and `Content-Location`, but MUST NOT do so when
//! they are on another origin: otherwise any origin could evict (deny
//! service to) another origin's entries by naming them. So this module only
//! answers "is this reference same-origin, and if so which path-and-query
//! does it name?"; anything doubtful answers `None`, which merely skips an
//! optional invalidation.

use http::uri::PathAndQuery;

/// Longer references are not worth resolving (and are not what a sane
/// origin sends in `Location` / `Content-Location`).
pub(crate) const MAX_REFERENCE_LEN: usize = 8 * 1024;

/// The path-and-query (no fragment) named by `reference` — the raw value of
/// a response's `Location` or `Content-Location` — resolved against the
/// request `scheme://host[:port]request_path`, if it is on the same origin
/// (RFC 6454 §4: scheme, host, port). Otherwise, or if `reference` is not a
/// valid URI-reference (RFC 3986 §4.1), `None`.
///
/// `host` is compared ASCII-case-insensitively with one trailing dot
/// ignored (RFC 3986 §6.2.2.1; RFC 1034 §3.1 absolute names); a missing or
/// empty port is the scheme's default (RFC 9110 §4.2.1, §4.2.2; RFC 3986
/// §6.2.3), so `http://h:80/` and `http://h/` are the same origin.
/// References with userinfo are refused (RFC 9110 §4.2.4 forbids sending
/// it), as are percent-encoded hosts, which we would have to decode to
/// compare. Leading/trailing SP and HTAB are not part of a field value
/// (RFC 9110 §5.5) and are trimmed; any other whitespace or control byte
/// makes the reference invalid.
pub(crate) fn same_origin_target(
    scheme: &str,
    host: &str,
    port: Option<u16>,
    request_path: &str,
    reference: &[u8],
) -> Option<PathAndQuery> {
    if reference.len() > MAX_REFERENCE_LEN {
        return None;
    }
    let reference = std::str::from_utf8(trim_ows(reference)).ok()?;
    if !valid_chars(reference) {
        return None;
    }
    let default_port = default_port(scheme)?;
    let r = Reference::split(reference)?;
    let (base_path, base_query) = match request_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (request_path, None),
    };
    // Only origin-form request targets (RFC 9112 §3.2.1) have a directory
    // to resolve against.
    if !(base_path.is_empty() || base_path.starts_with('/')) {
        return None;
    }

    // RFC 3986 §5.2.2: a scheme or authority in the reference replaces the
    // base's, which is only acceptable when it names the same origin.
    if let Some(ref_scheme) = r.scheme
        && !ref_scheme.eq_ignore_ascii_case(scheme)
    {
        return None;
    }
    let (path, query) = match r.authority {
        Some(authority) => {
            let (ref_host, ref_port) = parse_authority(authority)?;
            let same_host = strip_dot(ref_host).eq_ignore_ascii_case(strip_dot(host));
            if !same_host || ref_port.unwrap_or(default_port) != port.unwrap_or(default_port) {
                return None;
            }
            (remove_dot_segments(r.path), r.query)
        }
        // RFC 3986 §5.2.2 "T.scheme = R.scheme" without an authority: the
        // target has no host at all (`http:/x`), which is no origin.
        None if r.scheme.is_some() => return None,
        None if r.path.is_empty() => (base_path.to_owned(), r.query.or(base_query)),
        None if r.path.starts_with('/') => (remove_dot_segments(r.path), r.query),
        None => (remove_dot_segments(&merge(base_path, r.path)), r.query),
    };
    // RFC 9110 §4.2.3: an empty path is equivalent to "/".
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    PathAndQuery::try_from(target).ok()
}

/// The components of a URI-reference (RFC 3986 Appendix B, validated).
#[derive(Debug, PartialEq, Eq)]
struct Reference<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> Reference<'a> {
    /// RFC 3986 §4.1: `URI / relative-ref`; the fragment is dropped.
    fn split(s: &'a str) -> Option<Self> {
        // The fragment is everything after the first '#'; it may not
        // contain another one (RFC 3986 §3.5).
        let s = match s.split_once('#') {
            Some((rest, fragment)) if !fragment.contains('#') => rest,
            Some(_) => return None,
            None => s,
        };
        // RFC 3986 §3.1: a scheme is the part before the first ':' if that
        // precedes any '/', '?' or '#'; a relative path's first segment may
        // not contain ':' (§4.2), so otherwise it is invalid.
        let first_delim = s.find(['/', '?']).unwrap_or(s.len());
        let (scheme, rest) = match s.get(..first_delim).and_then(|head| head.find(':')) {
            Some(colon) => {
                let scheme = s.get(..colon)?;
                if !valid_scheme(scheme) {
                    return None;
                }
                (Some(scheme), s.get(colon + 1..)?)
            }
            None => (None, s),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find('/').unwrap_or(after.len());
                (Some(after.get(..end)?), after.get(end..)?)
            }
            None => (None, rest),
        };
        // '[' and ']' are only allowed around an IP-literal host (§3.2.2).
        if path.contains(['[', ']']) || query.is_some_and(|q| q.contains(['[', ']'])) {
            return None;
        }
        Some(Reference {
            scheme,
            authority,
            path,
            query,
        })
    }
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn valid_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Every byte is a URI character (RFC 3986 §2: unreserved, reserved, or a
/// `%` followed by two hex digits). Rejects whitespace, controls, non-ASCII
/// and the excluded `"<>\^`{|}`.
fn valid_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&c);
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// `[ userinfo "@" ] host [ ":" port ]` (RFC 3986 §3.2) → (host, port);
/// `None` for userinfo, an invalid host or an invalid port.
fn parse_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        // IP-literal (§3.2.2): the host ends at the matching ']'.
        let close = authority.find(']')?;
        let host = authority.get(..=close)?;
        let inner = host.get(1..close)?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'))
        {
            return None;
        }
        match authority.get(close + 1..)? {
            "" => (host, None),
            rest => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    // reg-name / IPv4address (§3.2.2); `%` would need decoding to compare,
    // and an empty host is no origin (RFC 9110 §4.2.1).
    if host.is_empty() || (host.contains(['%', '[', ']', ':']) && !host.starts_with('[')) {
        return None;
    }
    // RFC 3986 §3.2.3: `port = *DIGIT`, empty means the default.
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

/// `example.com.` and `example.com` name the same host.
fn strip_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// RFC 3986 §5.2.3 with a base that has an authority: the base path up to
/// and including its last '/', then the reference (an empty base path
/// counts as "/").
fn merge(base_path: &str, reference: &str) -> String {
    let dir = base_path
        .rfind('/')
        .and_then(|i| base_path.get(..=i))
        .unwrap_or("/");
    format!("{dir}{reference}")
}

/// RFC 3986 §5.2.4 `remove_dot_segments`. Percent-encoded dots (`%2E`) are
/// not dot segments (§6.2.2.3 would only treat them so after decoding).
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            // A.
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            // B.
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            // C.: replace the prefix with "/" and drop the last output segment.
            input = if input == "/.." { "/" } else { &input[3..] };
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        } else if input == "." || input == ".." {
            // D.
            input = "";
        } else {
            // E.: move the first segment (with its leading '/', if any).
            let skip = usize::from(input.starts_with('/'));
            let end = input
                .get(skip..)
                .and_then(|s| s.find('/'))
                .map_or(input.len(), |i| i + skip);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (reference, expected path-and-query) against
    /// `https://example.com/a/b/c?q=1` (default port).
    const BASE: (&str, &str, Option<u16>, &str) = ("https", "example.com", None, "/a/b/c?q=1");

    fn target(reference: &[u8]) -> Option<String> {
        let (scheme, host, port, path) = BASE;
        same_origin_target(scheme, host, port, path, reference).map(|pq| pq.as_str().to_owned())
    }

    #[test]
    fn same_origin_references_resolve() {
        let cases: &[(&[u8], &str)] = &[
            // Absolute path.
            (b"/x", "/x"),
            (b"/x?y=1", "/x?y=1"),
            (b"/x/../y", "/y"),
            (b"/./x/./y/.", "/x/y/"),
            (b"/../../x", "/x"),
            (b"/x#frag", "/x"),
            (b"/x?#", "/x?"),
            // Relative path against the base directory /a/b/.
            (b"x", "/a/b/x"),
            (b"x/y?z", "/a/b/x/y?z"),
            (b"./x", "/a/b/x"),
            (b"../x", "/a/x"),
            (b"../../x", "/x"),
            (b"../../../../x", "/x"),
            (b".", "/a/b/"),
            (b"..", "/a/"),
            (b"x/..", "/a/b/"),
            (b"%2E%2E/x", "/a/b/%2E%2E/x"),
            (b"./x:y", "/a/b/x:y"),
            // Query only, empty, fragment only.
            (b"?z=2", "/a/b/c?z=2"),
            (b"?", "/a/b/c?"),
            (b"", "/a/b/c?q=1"),
            (b"#f", "/a/b/c?q=1"),
            // Network path and absolute URI on the same origin.
            (b"//example.com/x", "/x"),
            (b"//example.com", "/"),
            (b"//example.com?q", "/?q"),
            (b"//EXAMPLE.com./x/../y", "/y"),
            (b"//example.com:443/x", "/x"),
            (b"//example.com:/x", "/x"),
            (b"https://example.com/x?y#z", "/x?y"),
            (b"HTTPS://Example.COM/x", "/x"),
            (b"https://example.com:443", "/"),
            (b"https://example.com.:0443/p", "/p"),
            // Surrounding OWS is not part of the value.
            (b"  /x\t", "/x"),
            // Reserved characters pass through untouched.
            (
                b"/a%20b/c;p=1?x=%41&y=!$'()*+,;=:@/?",
                "/a%20b/c;p=1?x=%41&y=!$'()*+,;=:@/?",
            ),
        ];
        for (reference, want) in cases {
            assert_eq!(
                target(reference).as_deref(),
                Some(*want),
                "{:?}",
                String::from_utf8_lossy(reference)
            );
        }
    }

    #[test]
    fn cross_origin_and_invalid_references_are_refused() {
        let long = [b"/".as_slice(), &[b'a'; MAX_REFERENCE_LEN]].concat();
        let cases: &[&[u8]] = &[
            // Other host / scheme / port.
            b"https://other.com/x",
            b"//other.com/x",
            b"https://example.com.evil/x",
            b"https://sub.example.com/x",
            b"http://example.com/x",
            b"ftp://example.com/x",
            b"mailto:a@example.com",
            b"https://example.com:8443/x",
            b"//example.com:80/x",
            b"https://[::1]/x",
            b"https://127.0.0.1/x",
            // No host at all.
            b"https:/x",
            b"https:x",
            b"https:",
            b"https:///x",
            b"//",
            b"//:443/x",
            // Userinfo, percent-encoded or malformed hosts and ports.
            b"https://user@example.com/x",
            b"https://@example.com/x",
            b"https://ex%61mple.com/x",
            b"https://example.com:99999/x",
            b"https://example.com:-1/x",
            b"https://example.com:44 3/x",
            b"https://example.com:443:443/x",
            b"https://[example.com]/x",
            b"https://[::1/x",
            b"https://[]/x",
            b"https://[::1]x/y",
            // Not URI references.
            b"/x y",
            b"/x\ty",
            b"/x\ry",
            b"/x\ny",
            b"/x\0",
            b"/x\x7f",
            b"/\xc3\xa9",
            b"/\xff",
            b"/x<y>",
            b"/x\"",
            b"/x\\y",
            b"/{x}",
            b"/x|y",
            b"/x^y",
            b"/x`y",
            b"/x%",
            b"/x%4",
            b"/x%zz",
            b"/x#a#b",
            b"/x[1]",
            b"/x?[1]",
            b"1http://example.com/x",
            b"a_b:c",
            b":x",
            &long,
        ];
        for reference in cases {
            assert_eq!(
                target(reference),
                None,
                "{:?}",
                String::from_utf8_lossy(reference)
            );
        }
        // Exactly at the limit is still accepted.
        let at_limit = [b"/".as_slice(), &[b'a'; MAX_REFERENCE_LEN - 1]].concat();
        assert!(target(&at_limit).is_some());
    }

    #[test]
    fn origin_comparison_table() {
        type Case<'a> = (&'a str, &'a str, Option<u16>, &'a [u8], Option<&'a str>);
        let cases: &[Case] = &[
            (
                "http",
                "example.com",
                None,
                b"http://example.com:80/x",
                Some("/x"),
            ),
            (
                "http",
                "example.com",
                Some(80),
                b"http://example.com/x",
                Some("/x"),
            ),
            ("http", "example.com", Some(80), b"/x", Some("/x")),
            (
                "http",
                "example.com",
                Some(8080),
                b"http://example.com:8080/x",
                Some("/x"),
            ),
            (
                "http",
                "example.com",
                Some(8080),
                b"//example.com:8080/x",
                Some("/x"),
            ),
            (
                "http",
                "example.com",
                Some(8080),
                b"http://example.com/x",
                None,
            ),
            (
                "http",
                "example.com",
                None,
                b"http://example.com:8080/x",
                None,
            ),
            ("http", "example.com", None, b"https://example.com/x", None),
            (
                "http",
                "example.com",
                Some(443),
                b"https://example.com/x",
                None,
            ),
            (
                "https",
                "example.com",
                Some(80),
                b"http://example.com/x",
                None,
            ),
            (
                "http",
                "example.com.",
                None,
                b"http://example.com/x",
                Some("/x"),
            ),
            ("http", "[::1]", None, b"http://[::1]/x", Some("/x")),
            (
                "http",
                "[::1]",
                Some(8080),
                b"http://[::1]:8080/x",
                Some("/x"),
            ),
            ("http", "[::1]", None, b"http://[::2]/x", None),
            ("http", "[fe80::a]", None, b"http://[FE80::A]/x", Some("/x")),
            ("http", "10.0.0.1", None, b"//10.0.0.1/x", Some("/x")),
            ("http", "10.0.0.1", None, b"//10.0.0.2/x", None),
            // Only http(s) requests have an origin we know how to compare.
            ("ftp", "example.com", None, b"/x", None),
            ("", "example.com", None, b"/x", None),
            (
                "HTTP",
                "example.com",
                None,
                b"http://example.com/x",
                Some("/x"),
            ),
        ];
        for (scheme, host, port, reference, want) in cases {
            let got = same_origin_target(scheme, host, *port, "/", reference);
            assert_eq!(
                got.as_ref().map(PathAndQuery::as_str),
                *want,
                "{scheme} {host} {port:?} {:?}",
                String::from_utf8_lossy(reference)
            );
        }
    }

    #[test]
    fn base_paths_table() {
        let cases: &[(&str, &[u8], Option<&str>)] = &[
            ("/", b"x", Some("/x")),
            ("", b"x", Some("/x")),
            ("", b"", Some("/")),
            ("", b"?q", Some("/?q")),
            ("/a", b"x", Some("/x")),
            ("/a/", b"x", Some("/a/x")),
            ("/a/?q=/z/", b"x", Some("/a/x")),
            ("/a?q", b"", Some("/a?q")),
            ("/a?q", b"?", Some("/a?")),
            ("/a/b", b"../../..", Some("/")),
            ("*", b"x", None),
            ("a/b", b"x", None),
        ];
        for (base, reference, want) in cases {
            let got = same_origin_target("http", "h", None, base, reference);
            assert_eq!(
                got.as_ref().map(PathAndQuery::as_str),
                *want,
                "{base:?} {:?}",
                String::from_utf8_lossy(reference)
            );
        }
    }

    #[test]
    fn remove_dot_segments_rfc_examples() {
        // RFC 3986 §5.2.4 and §5.4 examples.
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            ("mid/content=5/../6", "mid/6"),
            ("/a/b/c/../../../g", "/g"),
            ("/.", "/"),
            ("/..", "/"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/g.", "/g."),
            ("/.g", "/.g"),
            ("/g..", "/g.."),
            ("/..g", "/..g"),
            ("/a/./g/.", "/a/g/"),
            ("/a//../g", "/a/g"),
            ("", ""),
            ("..", ""),
            ("../", ""),
        ];
        for (input, want) in cases {
            assert_eq!(remove_dot_segments(input), want, "{input:?}");
        }
    }

    #[test]
    fn rfc3986_normal_examples() {
        // RFC 3986 §5.4.1/§5.4.2 with base http://a/b/c/d;p?q (same-origin
        // ones only; fragments stripped).
        let cases: &[(&[u8], &str)] = &[
            (b"g", "/b/c/g"),
            (b"./g", "/b/c/g"),
            (b"g/", "/b/c/g/"),
            (b"/g", "/g"),
            (b"?y", "/b/c/d;p?y"),
            (b"g?y", "/b/c/g?y"),
            (b"#s", "/b/c/d;p?q"),
            (b"g#s", "/b/c/g"),
            (b"g?y#s", "/b/c/g?y"),
            (b";x", "/b/c/;x"),
            (b"g;x", "/b/c/g;x"),
            (b"g;x?y#s", "/b/c/g;x?y"),
            (b"", "/b/c/d;p?q"),
            (b".", "/b/c/"),
            (b"./", "/b/c/"),
            (b"..", "/b/"),
            (b"../", "/b/"),
            (b"../g", "/b/g"),
            (b"../..", "/"),
            (b"../../", "/"),
            (b"../../g", "/g"),
            (b"../../../g", "/g"),
            (b"../../../../g", "/g"),
            (b"/./g", "/g"),
            (b"/../g", "/g"),
            (b"g.", "/b/c/g."),
            (b".g", "/b/c/.g"),
            (b"g..", "/b/c/g.."),
            (b"..g", "/b/c/..g"),
            (b"./../g", "/b/g"),
            (b"./g/.", "/b/c/g/"),
            (b"g/./h", "/b/c/g/h"),
            (b"g/../h", "/b/c/h"),
            (b"g;x=1/./y", "/b/c/g;x=1/y"),
            (b"g;x=1/../y", "/b/c/y"),
            (b"g?y/./x", "/b/c/g?y/./x"),
            (b"g?y/../x", "/b/c/g?y/../x"),
            (b"g#s/./x", "/b/c/g"),
            (b"http:g", "-"),
            (b"g:h", "-"),
            (b"//g", "-"),
        ];
        for (reference, want) in cases {
            let got = same_origin_target("http", "a", None, "/b/c/d;p?q", reference);
            let want = (*want != "-").then_some(*want);
            assert_eq!(
                got.as_ref().map(PathAndQuery::as_str),
                want,
                "{:?}",
                String::from_utf8_lossy(reference)
            );
        }
    }

    use crate::cache::fuzz::Rng;

    #[test]
    fn random_references_never_panic() {
        const FRAGMENTS: &[&[u8]] = &[
            b"/",
            b"//",
            b".",
            b"..",
            b"?",
            b"#",
            b":",
            b"@",
            b"[",
            b"]",
            b"%",
            b"%2",
            b"%2e",
            b"a",
            b"example.com",
            b"https:",
            b"http:",
            b"443",
            b" ",
            b"\xff",
            b"\xc3\xa9",
            b"\0",
        ];
        let bases = ["/", "", "/a/b", "/a/../b?x", "*", "?q", "/%"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut raw = Vec::new();
            for _ in 0..rng.next(16) {
                raw.extend_from_slice(FRAGMENTS[rng.next(FRAGMENTS.len())]);
            }
            let base = bases[rng.next(bases.len())];
            let port = [None, Some(0), Some(80), Some(443), Some(u16::MAX)][rng.next(5)];
            let scheme = ["http", "https", "x"][rng.next(3)];
            if let Some(pq) = same_origin_target(scheme, "example.com", port, base, &raw) {
                assert!(pq.path().starts_with('/'), "{raw:?} -> {pq}");
                assert!(!pq.as_str().contains('#'), "{raw:?} -> {pq}");
            }
        }
    }
}
