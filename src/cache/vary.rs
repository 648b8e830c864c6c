//! Secondary cache keys from `Vary` (RFC 9111 §4.1).
//!
//! A stored response may only answer requests whose Vary-selected fields
//! match the request that produced it. Normalising those values here means
//! equivalent requests share one variant instead of fragmenting the cache.

use http::{HeaderMap, HeaderName, header};

use crate::cache::control::trim_ows;

/// The parsed `Vary` of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// No (usable) Vary: one variant per URI.
    None,
    /// `Vary: *` — the response never matches a later request (§4.1).
    Any,
    /// Request fields that select the variant: lowercase, deduplicated,
    /// sorted so that `Vary: a, b` and `Vary: b, a` produce the same key.
    Fields(Vec<HeaderName>),
}

/// Parses every `Vary` line (RFC 9110 §12.5.5: `*` / #field-name).
/// A `*` anywhere wins; names that are not valid field names are skipped.
pub fn parse_vary(response_headers: &HeaderMap) -> Vary {
    let mut fields: Vec<HeaderName> = Vec::new();
    for line in response_headers.get_all(header::VARY) {
        for member in line.as_bytes().split(|&b| b == b',') {
            let member = trim_ows(member);
            if member == b"*" {
                return Vary::Any;
            }
            // HeaderName::from_bytes lowercases; empty/invalid names fail.
            if let Ok(name) = HeaderName::from_bytes(member) {
                fields.push(name);
            }
        }
    }
    if fields.is_empty() {
        return Vary::None;
    }
    fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    fields.dedup();
    Vary::Fields(fields)
}

/// The request's values of the Vary-selected fields, one per field, in the
/// order of `fields`. `None` = the field is absent, which differs from an
/// empty value (RFC 9111 §4.1: absent fields match only absent fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SecondaryKey(pub Vec<Option<String>>);

/// Builds the secondary key of a request for the given Vary fields.
pub fn secondary_key(fields: &[HeaderName], request_headers: &HeaderMap) -> SecondaryKey {
    SecondaryKey(
        fields
            .iter()
            .map(|name| field_value(name, request_headers))
            .collect(),
    )
}

/// RFC 9111 §4.1: values match after combining lines (RFC 9110 §5.3, joined
/// with ", ") and removing whitespace where the syntax allows it; we
/// collapse whitespace runs and trim. Non-UTF-8 bytes are converted lossily
/// so such values still compare (equal bytes → equal strings).
fn field_value(name: &HeaderName, headers: &HeaderMap) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let joined = lines
        .map(|v| collapse_whitespace(&String::from_utf8_lossy(v.as_bytes())))
        .collect::<Vec<_>>()
        .join(", ");
    Some(collapse_whitespace(&joined))
}

/// Runs of SP / HTAB become one space; leading and trailing ones go.
fn collapse_whitespace(s: &str) -> String {
    s.split([' ', '\t'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Header (name, raw value) lines of one test case.
    type Pairs<'a> = &'a [(&'static str, &'a [u8])];

    fn hm(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn names(list: &[&'static str]) -> Vary {
        Vary::Fields(list.iter().map(|n| HeaderName::from_static(n)).collect())
    }

    #[test]
    fn parse_vary_table() {
        let cases: &[(&[&[u8]], Vary)] = &[
            (&[], Vary::None),
            (&[b""], Vary::None),
            (&[b" , ,"], Vary::None),
            (&[b"*"], Vary::Any),
            (&[b" * "], Vary::Any),
            (&[b"accept", b"*"], Vary::Any),
            (&[b"Accept-Encoding, *"], Vary::Any),
            (&[b"**"], names(&["**"])),
            (&[b"Accept-Encoding"], names(&["accept-encoding"])),
            (
                &[b"ACCEPT-ENCODING,accept-encoding"],
                names(&["accept-encoding"]),
            ),
            (
                &[b"origin, Accept", b"accept\t,  origin"],
                names(&["accept", "origin"]),
            ),
            (&[b"b, a"], names(&["a", "b"])),
            (&[b"bad name, x-ok, (evil)"], names(&["x-ok"])),
            (&[b"\xff, accept"], names(&["accept"])),
        ];
        for (lines, want) in cases {
            let h = hm(&lines.iter().map(|l| ("vary", *l)).collect::<Vec<_>>());
            assert_eq!(parse_vary(&h), *want, "{lines:?}");
        }
    }

    #[test]
    fn secondary_key_table() {
        let ae = [header::ACCEPT_ENCODING];
        let s = |v: &str| Some(v.to_owned());
        let cases: &[(Pairs, Option<String>)] = &[
            (&[], None),
            (&[("accept-encoding", b"")], s("")),
            (&[("accept-encoding", b"   ")], s("")),
            (&[("accept-encoding", b"gzip")], s("gzip")),
            (&[("accept-encoding", b"  gzip,   br ")], s("gzip, br")),
            (&[("accept-encoding", b"gzip,\t\tbr")], s("gzip, br")),
            (
                &[("accept-encoding", b"gzip"), ("accept-encoding", b"br")],
                s("gzip, br"),
            ),
            (
                &[("accept-encoding", b"gzip "), ("accept-encoding", b" br")],
                s("gzip, br"),
            ),
            (&[("accept-encoding", b"\xffgzip")], s("\u{fffd}gzip")),
            (&[("accept", b"gzip")], None),
        ];
        for (pairs, want) in cases {
            let key = secondary_key(&ae, &hm(pairs));
            assert_eq!(key, SecondaryKey(vec![want.clone()]), "{pairs:?}");
        }
    }

    #[test]
    fn equivalent_requests_share_a_key() {
        let fields = [header::ACCEPT_ENCODING, header::ACCEPT_LANGUAGE];
        let a = hm(&[("accept-encoding", b"gzip, br"), ("accept-language", b"en")]);
        let b = hm(&[
            ("Accept-Language", b"  en "),
            ("accept-encoding", b"gzip"),
            ("accept-encoding", b"br"),
        ]);
        assert_eq!(secondary_key(&fields, &a), secondary_key(&fields, &b));
        let c = hm(&[("accept-encoding", b"gzip, br")]);
        assert_ne!(secondary_key(&fields, &a), secondary_key(&fields, &c));
        let d = hm(&[("accept-encoding", b"gzip, br"), ("accept-language", b"")]);
        assert_ne!(secondary_key(&fields, &c), secondary_key(&fields, &d));
        assert_eq!(secondary_key(&[], &a), SecondaryKey::default());
    }

    #[test]
    fn distinct_invalid_bytes_may_collide_but_never_panic() {
        let f = [header::USER_AGENT];
        let a = hm(&[("user-agent", b"\xff")]);
        let b = hm(&[("user-agent", b"\xfe")]);
        // Lossy conversion maps both to U+FFFD: acceptable, both are garbage.
        assert_eq!(secondary_key(&f, &a), secondary_key(&f, &b));
    }
}
