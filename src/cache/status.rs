//! Why a response was or was not served from / stored in the cache, rendered
//! as an RFC 9211 `Cache-Status` list member.
//!
//! Operators debug a CDN by reading this header, so every refusal to cache
//! has a named reason, and the rendering is strict Structured Fields
//! (RFC 8941) whatever the names and details contain.

use std::fmt::Write as _;

use http::HeaderValue;

/// RFC 9211 §2.2 `fwd` values used by Outpost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// The cache was configured not to handle this request.
    Bypass,
    /// The request method is not cacheable.
    Method,
    /// No stored response for the URI.
    UriMiss,
    /// Stored responses exist, but none for this request's Vary values.
    VaryMiss,
    /// A miss for another or unknown reason.
    Miss,
    /// The request's own directives (no-cache, max-age…) forced a forward.
    Request,
    /// The stored response was stale and had to be revalidated.
    Stale,
}

impl Fwd {
    /// The RFC 9211 §2.2 token.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

/// Why a response was not stored; rendered in the RFC 9211 §2.8 `detail`
/// parameter, which is free for implementation-specific tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NoCacheReason {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    VaryStar,
    /// Varies on Accept-Encoding in a content coding Outpost does not know.
    Encoding,
    SetCookie,
    NoFreshness,
    TooLarge,
    /// Fetched from the owner node, and not kept as a replica here.
    NotOwner,
    /// The store is full and the key was not asked for before.
    NotAdmitted,
}

impl NoCacheReason {
    /// Kebab-case token, valid as an sf-token (RFC 8941 §3.3.4).
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            NoCacheReason::Method => "method",
            NoCacheReason::Status => "status",
            NoCacheReason::NoStore => "no-store",
            NoCacheReason::Private => "private",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::VaryStar => "vary-star",
            NoCacheReason::Encoding => "unknown-encoding",
            NoCacheReason::SetCookie => "set-cookie",
            NoCacheReason::NoFreshness => "no-freshness",
            NoCacheReason::TooLarge => "too-large",
            NoCacheReason::NotOwner => "not-owner",
            NoCacheReason::NotAdmitted => "not-admitted",
        }
    }
}

/// One Cache-Status list member (RFC 9211 §2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CacheStatus {
    pub(crate) hit: bool,
    pub(crate) fwd: Option<Fwd>,
    pub(crate) fwd_status: Option<u16>,
    pub(crate) stored: bool,
    pub(crate) collapsed: bool,
    pub(crate) ttl: Option<i64>,
    pub(crate) key: Option<String>,
    pub(crate) detail: Option<String>,
}

/// RFC 8941 §3.3.1: sf-integer has at most 15 digits.
const SF_INTEGER_MAX: i64 = 999_999_999_999_999;

impl CacheStatus {
    /// Renders `<name>; hit; ttl=12` or
    /// `<name>; fwd=uri-miss; fwd-status=200; stored; ttl=60; collapsed; key="…"; detail=…`
    /// Parameter order is fixed (RFC 8941 parameters are unordered for
    /// meaning) so logs and tests can compare strings.
    pub(crate) fn render(&self, name: &str) -> String {
        let mut out = token_or_string(name);
        // RFC 9211 §2.1–§2.6; boolean true parameters are bare keys
        // (RFC 8941 §4.1.1.2).
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            let _ = write!(out, "; fwd={}", fwd.as_str());
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, "; ttl={}", ttl.clamp(-SF_INTEGER_MAX, SF_INTEGER_MAX));
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        // RFC 9211 §2.7: key is always a String.
        if let Some(key) = &self.key {
            let _ = write!(out, "; key={}", sf_string(key));
        }
        // RFC 9211 §2.8: detail is a String or a Token.
        if let Some(detail) = &self.detail {
            let _ = write!(out, "; detail={}", token_or_string(detail));
        }
        out
    }
}

/// RFC 8941 §3.3.4: token = ( ALPHA / "*" ) *( tchar / ":" / "/" ).
fn is_sf_token(s: &str) -> bool {
    let mut bytes = s.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*');
    first_ok && bytes.all(|b| is_tchar(b) || b == b':' || b == b'/')
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token_or_string(s: &str) -> String {
    if is_sf_token(s) {
        s.to_owned()
    } else {
        sf_string(s)
    }
}

/// RFC 8941 §3.3.3 / §4.1.6: printable ASCII only, `"` and `\` escaped;
/// anything else is dropped rather than failing the whole header.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 9211 §2: each cache appends its member, so the list reads from the
/// origin-most cache to the one closest to the user. An unreadable
/// (non-visible-ASCII) upstream value cannot be a valid sf-list and is
/// replaced by ours.
pub(crate) fn append(existing: Option<&HeaderValue>, ours: &str) -> String {
    match existing.and_then(|v| v.to_str().ok()).map(str::trim) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ours}"),
        _ => ours.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwd_tokens() {
        let cases = [
            (Fwd::Bypass, "bypass"),
            (Fwd::Method, "method"),
            (Fwd::UriMiss, "uri-miss"),
            (Fwd::VaryMiss, "vary-miss"),
            (Fwd::Miss, "miss"),
            (Fwd::Request, "request"),
            (Fwd::Stale, "stale"),
        ];
        for (fwd, want) in cases {
            assert_eq!(fwd.as_str(), want);
        }
    }

    #[test]
    fn reason_tokens_are_sf_tokens() {
        use NoCacheReason::*;
        let cases = [
            (Method, "method"),
            (Status, "status"),
            (NoStore, "no-store"),
            (Private, "private"),
            (Authorization, "authorization"),
            (VaryStar, "vary-star"),
            (Encoding, "unknown-encoding"),
            (NotOwner, "not-owner"),
            (SetCookie, "set-cookie"),
            (NoFreshness, "no-freshness"),
            (TooLarge, "too-large"),
        ];
        for (reason, want) in cases {
            assert_eq!(reason.as_str(), want);
            assert!(is_sf_token(reason.as_str()));
        }
    }

    #[test]
    fn render_table() {
        let cases: &[(CacheStatus, &str, &str)] = &[
            (CacheStatus::default(), "Outpost", "Outpost"),
            (
                CacheStatus {
                    hit: true,
                    ttl: Some(12),
                    ..Default::default()
                },
                "Outpost",
                "Outpost; hit; ttl=12",
            ),
            (
                CacheStatus {
                    fwd: Some(Fwd::UriMiss),
                    fwd_status: Some(200),
                    stored: true,
                    ttl: Some(60),
                    collapsed: true,
                    detail: Some("x y".into()),
                    ..Default::default()
                },
                "edge-1",
                "edge-1; fwd=uri-miss; fwd-status=200; stored; ttl=60; collapsed; detail=\"x y\"",
            ),
            (
                CacheStatus {
                    fwd: Some(Fwd::Stale),
                    ttl: Some(-5),
                    detail: Some(NoCacheReason::NoStore.as_str().into()),
                    ..Default::default()
                },
                "*cdn:pop/1",
                "*cdn:pop/1; fwd=stale; ttl=-5; detail=no-store",
            ),
            (
                CacheStatus {
                    key: Some("GET /a\"b\\c".into()),
                    ..Default::default()
                },
                "o",
                "o; key=\"GET /a\\\"b\\\\c\"",
            ),
            (
                CacheStatus {
                    ttl: Some(i64::MIN),
                    ..Default::default()
                },
                "o",
                "o; ttl=-999999999999999",
            ),
            (
                CacheStatus {
                    ttl: Some(i64::MAX),
                    ..Default::default()
                },
                "o",
                "o; ttl=999999999999999",
            ),
            (
                CacheStatus {
                    detail: Some("a\r\n\u{7f}é\"b".into()),
                    ..Default::default()
                },
                "o",
                "o; detail=\"a\\\"b\"",
            ),
            (CacheStatus::default(), "my cache", "\"my cache\""),
            (CacheStatus::default(), "1cache", "\"1cache\""),
            (CacheStatus::default(), "", "\"\""),
            (CacheStatus::default(), "a\"b\\", "\"a\\\"b\\\\\""),
            (CacheStatus::default(), "ca\u{0}ché", "\"cach\""),
        ];
        for (status, name, want) in cases {
            assert_eq!(status.render(name), *want, "{status:?}");
        }
    }

    #[test]
    fn sf_token_table() {
        let cases = [
            ("a", true),
            ("*", true),
            ("A:b/c", true),
            ("x-y_z.1~", true),
            ("", false),
            ("1a", false),
            ("-a", false),
            ("a b", false),
            ("a\"", false),
            ("a,b", false),
            ("a;b", false),
            ("é", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_sf_token(s), want, "{s:?}");
        }
    }

    #[test]
    fn append_table() {
        let cases: &[(Option<&[u8]>, &str)] = &[
            (None, "ours"),
            (Some(b""), "ours"),
            (Some(b"   "), "ours"),
            (Some(b"Origin; fwd=miss"), "Origin; fwd=miss, ours"),
            (Some(b" a, b "), "a, b, ours"),
            (Some(b"caf\xe9"), "ours"),
        ];
        for (existing, want) in cases {
            let value = existing.map(|b| HeaderValue::from_bytes(b).unwrap());
            assert_eq!(append(value.as_ref(), "ours"), *want, "{existing:?}");
        }
    }
}
