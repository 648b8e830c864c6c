//! Secondary cache keys from `Vary` (RFC 9111 §4.1).
//!
//! A stored response may only answer requests whose Vary-selected fields
//! match the request that produced it. Normalising those values here means
//! equivalent requests share one variant instead of fragmenting the cache.
//!
//! `Accept-Encoding` gets a semantic normal form: browsers send a dozen
//! spellings of "gzip, deflate, br, zstd", and keying on the raw text would
//! store one copy of every compressed variant per spelling. Two requests
//! share a key only when they accept exactly the same set of the codings we
//! know, so any stored response for one is acceptable to the other.

use http::{HeaderMap, HeaderName, header};

use crate::cache::control::trim_ows;

/// The parsed `Vary` of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vary {
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
pub(crate) fn parse_vary(response_headers: &HeaderMap) -> Vary {
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
pub(crate) struct SecondaryKey(pub Vec<Option<String>>);

/// Builds the secondary key of a request for the given Vary fields.
pub(crate) fn secondary_key(fields: &[HeaderName], request_headers: &HeaderMap) -> SecondaryKey {
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
/// `Accept-Encoding` is reduced further, to the set of codings it accepts.
fn field_value(name: &HeaderName, headers: &HeaderMap) -> Option<String> {
    if name == header::ACCEPT_ENCODING {
        return accept_encoding_key(headers);
    }
    joined_value(name, headers)
}

/// All lines of `name`, whitespace-collapsed and joined with ", ".
fn joined_value(name: &HeaderName, headers: &HeaderMap) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let joined = lines
        .map(|v| collapse_whitespace(&String::from_utf8_lossy(v.as_bytes())))
        .collect::<Vec<_>>()
        .join(", ");
    Some(collapse_whitespace(&joined))
}

/// The content codings we recognise in `Accept-Encoding`, in key order
/// (RFC 9110 §8.4.1; `x-gzip` / `x-compress` are aliases, §8.4.1.1,
/// §8.4.1.3). `.1` is the "explicitly refused" token used next to `*`.
const CODINGS: [(&str, &str); 5] = [
    ("br", "-br"),
    ("compress", "-compress"),
    ("deflate", "-deflate"),
    ("gzip", "-gzip"),
    ("zstd", "-zstd"),
];

/// Whether every coding of a response's `Content-Encoding` is one the `Accept-Encoding` key
/// knows (or identity): only such a response may be stored under that key, since requests
/// differing only in unknown codings share it.
pub(crate) fn known_content_encoding(response_headers: &HeaderMap) -> bool {
    response_headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .filter(|c| !c.is_empty())
        .all(|c| c.eq_ignore_ascii_case(b"identity") || coding_index(c).is_some())
}

/// Index into `CODINGS` of a (case-insensitive) coding name.
fn coding_index(name: &[u8]) -> Option<usize> {
    let canonical: &[u8] = if name.eq_ignore_ascii_case(b"x-gzip") {
        b"gzip"
    } else if name.eq_ignore_ascii_case(b"x-compress") {
        b"compress"
    } else {
        name
    };
    CODINGS
        .iter()
        .position(|(c, _)| canonical.eq_ignore_ascii_case(c.as_bytes()))
}

/// The set of codings an `Accept-Encoding` request accepts, as a key
/// (RFC 9111 §4.1 allows normalising "in a way that is known to have
/// identical semantics"). Sorted, `,`-joined tokens:
///
/// * each known coding with q > 0 (RFC 9110 §12.5.3); q=0 and unknown
///   codings are left out — so a stored response must only be keyed this
///   way if its Content-Encoding is identity or a known coding;
/// * `*` (q > 0) accepts every coding, so it replaces the listed ones and is
///   followed by `-c` for each known coding explicitly refused with q=0
///   (`*` only covers codings "not explicitly listed");
/// * `identity` is acceptable by default and is left out, but refusing it
///   (`identity;q=0`, or `*;q=0` with no `identity` entry) adds `-identity`.
///
/// When a coding is listed more than once, a q=0 anywhere wins (refusal is
/// the reading under which we never hand out an unacceptable coding).
/// A recognised coding with an unparseable weight or extra parameters has
/// no defined meaning, so that request keeps its exact text (prefixed `?`,
/// which no normal form starts with) instead of joining a shared variant.
fn accept_encoding_key(headers: &HeaderMap) -> Option<String> {
    let lines = headers.get_all(header::ACCEPT_ENCODING);
    lines.iter().next()?;
    let mut accepts = Accepts::default();
    let members = lines
        .iter()
        .flat_map(|l| l.as_bytes().split(|&b| b == b','));
    for member in members {
        if !accepts.add(member) {
            return Some(format!(
                "?{}",
                joined_value(&header::ACCEPT_ENCODING, headers)?
            ));
        }
    }
    Some(accepts.key())
}

/// What an `Accept-Encoding` said about each coding.
#[derive(Debug, Default)]
struct Accepts {
    /// Bit i = `CODINGS[i]` listed with q > 0.
    accepted: u8,
    /// Bit i = `CODINGS[i]` listed with q = 0.
    refused: u8,
    /// `*`: `Some(acceptable)` when listed.
    any: Option<bool>,
    /// `identity`: `Some(acceptable)` when listed.
    identity: Option<bool>,
}

impl Accepts {
    /// One list member `coding *( OWS ";" OWS param )` (RFC 9110 §12.5.3,
    /// §12.4.2). Returns false when a recognised coding has a malformed
    /// weight; unknown codings and empty members are ignored.
    fn add(&mut self, member: &[u8]) -> bool {
        let mut parts = member.split(|&b| b == b';');
        let coding = trim_ows(parts.next().unwrap_or_default());
        let index = coding_index(coding);
        let slot = if coding == b"*" {
            Some(&mut self.any)
        } else if coding.eq_ignore_ascii_case(b"identity") {
            Some(&mut self.identity)
        } else {
            None
        };
        if index.is_none() && slot.is_none() {
            return true;
        }
        // RFC 9110 §12.4.2: no weight means q=1.
        let mut acceptable = true;
        for param in parts {
            let Some((name, value)) = split_once(param, b'=') else {
                return false;
            };
            // RFC 9110 §5.6.6: parameter names are case-insensitive.
            if !trim_ows(name).eq_ignore_ascii_case(b"q") {
                return false;
            }
            let Some(q_positive) = qvalue(trim_ows(value)) else {
                return false;
            };
            acceptable &= q_positive;
        }
        match (index, slot) {
            (Some(i), _) if acceptable => self.accepted |= 1 << i,
            (Some(i), _) => self.refused |= 1 << i,
            (None, Some(slot)) => *slot = Some(slot.unwrap_or(true) && acceptable),
            (None, None) => {}
        }
        true
    }

    fn key(&self) -> String {
        let mut tokens: Vec<&str> = Vec::new();
        for (i, (name, refused_name)) in CODINGS.iter().enumerate() {
            let refused = self.refused & (1 << i) != 0;
            if self.any == Some(true) {
                if refused {
                    tokens.push(refused_name);
                }
            } else if self.accepted & (1 << i) != 0 && !refused {
                tokens.push(name);
            }
        }
        if self.any == Some(true) {
            tokens.push("*");
        }
        // RFC 9110 §12.5.3: identity is acceptable unless refused itself, or
        // refused through `*;q=0` without a more specific entry.
        if self.identity == Some(false) || (self.identity.is_none() && self.any == Some(false)) {
            tokens.push("-identity");
        }
        tokens.sort_unstable();
        tokens.join(",")
    }
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// RFC 9110 §12.4.2 `qvalue`; `Some(q > 0)`, or `None` when malformed.
fn qvalue(v: &[u8]) -> Option<bool> {
    match v {
        [b'0'] => Some(false),
        [b'0', b'.', frac @ ..] if frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit) => {
            Some(frac.iter().any(|&d| d != b'0'))
        }
        [b'1'] => Some(true),
        [b'1', b'.', frac @ ..] if frac.len() <= 3 && frac.iter().all(|&d| d == b'0') => Some(true),
        _ => None,
    }
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
    use crate::cache::test_util::{Pairs, hm};
    use http::HeaderValue;

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
        let al = [header::ACCEPT_LANGUAGE];
        let s = |v: &str| Some(v.to_owned());
        let cases: &[(Pairs, Option<String>)] = &[
            (&[], None),
            (&[("accept-language", b"")], s("")),
            (&[("accept-language", b"   ")], s("")),
            (&[("accept-language", b"en")], s("en")),
            (&[("accept-language", b"  en,   de ")], s("en, de")),
            (&[("accept-language", b"en,\t\tde")], s("en, de")),
            (
                &[("accept-language", b"en"), ("accept-language", b"de")],
                s("en, de"),
            ),
            (
                &[("accept-language", b"en "), ("accept-language", b" de")],
                s("en, de"),
            ),
            (&[("accept-language", b"\xffen")], s("\u{fffd}en")),
            (&[("accept", b"en")], None),
        ];
        for (pairs, want) in cases {
            let key = secondary_key(&al, &hm(pairs));
            assert_eq!(key, SecondaryKey(vec![want.clone()]), "{pairs:?}");
        }
    }

    fn ae_key(lines: &[&[u8]]) -> Option<String> {
        let h = hm(&lines
            .iter()
            .map(|l| ("accept-encoding", *l))
            .collect::<Vec<_>>());
        let key = secondary_key(&[header::ACCEPT_ENCODING], &h);
        key.0.into_iter().next().flatten()
    }

    #[test]
    fn accept_encoding_table() {
        let cases: &[(&[&[u8]], Option<&str>)] = &[
            (&[], None),
            (&[b""], Some("")),
            (&[b" , ,"], Some("")),
            (&[b"gzip"], Some("gzip")),
            (&[b"gzip, deflate, br"], Some("br,deflate,gzip")),
            (&[b"br,gzip , deflate"], Some("br,deflate,gzip")),
            (&[b"BR;q=1.0, gzip;q=0.5, deflate"], Some("br,deflate,gzip")),
            (&[b"gzip", b"deflate", b"br"], Some("br,deflate,gzip")),
            (&[b" gzip \t;\t Q = 0.5 ,br ; q=1"], Some("br,gzip")),
            (&[b"gzip, deflate, br, zstd"], Some("br,deflate,gzip,zstd")),
            (&[b"x-gzip, X-Compress"], Some("compress,gzip")),
            (&[b"gzip, x-gzip, GZIP"], Some("gzip")),
            // q=0, identity, unknown codings all drop out.
            (&[b"gzip;q=0"], Some("")),
            (&[b"identity"], Some("")),
            (&[b"identity;q=0.5"], Some("")),
            (&[b"sdch, gzip, foo;bar=baz, \xff"], Some("gzip")),
            (&[b"gzip;q=0.000, br;q=0.001"], Some("br")),
            // q=0 anywhere wins over a positive duplicate.
            (&[b"gzip, gzip;q=0"], Some("")),
            (&[b"gzip;q=0", b"x-gzip"], Some("")),
            // `*` subsumes listed codings; explicit refusals stay visible.
            (&[b"*"], Some("*")),
            (&[b"gzip, *"], Some("*")),
            (&[b"*;q=0.1, br"], Some("*")),
            (&[b"*, br;q=0"], Some("*,-br")),
            (&[b"br;q=0, *, zstd;q=0"], Some("*,-br,-zstd")),
            (&[b"*;q=0"], Some("-identity")),
            (&[b"gzip, *;q=0"], Some("-identity,gzip")),
            (&[b"gzip, *;q=0, identity"], Some("gzip")),
            (&[b"identity;q=0"], Some("-identity")),
            (&[b"*, identity;q=0"], Some("*,-identity")),
            (&[b"*, *;q=0"], Some("-identity")),
            // A recognised coding with a malformed weight keeps its text.
            (&[b"gzip;q=2"], Some("?gzip;q=2")),
            (&[b"gzip;q=0.5000"], Some("?gzip;q=0.5000")),
            (&[b"gzip;q="], Some("?gzip;q=")),
            (&[b"gzip;q"], Some("?gzip;q")),
            (&[b"gzip;level=1"], Some("?gzip;level=1")),
            (&[b"br, gzip;"], Some("?br, gzip;")),
            (&[b"*;q=-1"], Some("?*;q=-1")),
            (&[b"gzip;q=1.", b" br"], Some("br,gzip")),
            (&[b"gzip;q=0.", b" br"], Some("br")),
        ];
        for (lines, want) in cases {
            assert_eq!(ae_key(lines).as_deref(), *want, "{lines:?}");
        }
    }

    #[test]
    fn accept_encoding_equivalence_classes() {
        let classes: &[&[&[u8]]] = &[
            &[
                b"gzip, deflate, br",
                b"br,gzip , deflate",
                b"BR;q=1.0, gzip;q=0.5, deflate",
            ],
            &[
                b"gzip;q=0",
                b"identity",
                b"",
                b"sdch",
                b"identity, *;q=0, identity;q=1",
            ],
            &[b"*", b"gzip, *", b"*, br;q=0.5, gzip"],
        ];
        let keys: Vec<Option<String>> = classes
            .iter()
            .map(|class| {
                let first = ae_key(&[class[0]]);
                for member in *class {
                    assert_eq!(ae_key(&[member]), first, "{member:?}");
                }
                first
            })
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
            assert_ne!(*a, None);
        }
    }

    #[test]
    fn qvalue_table() {
        let cases: &[(&[u8], Option<bool>)] = &[
            (b"0", Some(false)),
            (b"0.", Some(false)),
            (b"0.000", Some(false)),
            (b"0.001", Some(true)),
            (b"0.5", Some(true)),
            (b"1", Some(true)),
            (b"1.", Some(true)),
            (b"1.000", Some(true)),
            (b"1.001", None),
            (b"0.0000", None),
            (b"2", None),
            (b".5", None),
            (b"", None),
            (b"0.a", None),
            (b"-0", None),
        ];
        for (v, want) in cases {
            assert_eq!(qvalue(v), *want, "{v:?}");
        }
    }

    use crate::cache::fuzz::Rng;

    #[test]
    fn random_accept_encoding_never_panics() {
        const FRAGMENTS: &[&[u8]] = &[
            b"gzip",
            b"BR",
            b"x-gzip",
            b"*",
            b"identity",
            b"foo",
            b";",
            b",",
            b"q",
            b"Q",
            b"=",
            b"0",
            b"1",
            b".",
            b"5",
            b" ",
            b"\t",
            b"\xff",
            b"\"",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut h = HeaderMap::new();
            for _ in 0..rng.next(3) {
                let mut raw = Vec::new();
                for _ in 0..rng.next(16) {
                    raw.extend_from_slice(FRAGMENTS[rng.next(FRAGMENTS.len())]);
                }
                h.append(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_bytes(&raw).unwrap(),
                );
            }
            let key = secondary_key(&[header::ACCEPT_ENCODING, header::VARY], &h);
            let Some(Some(k)) = key.0.first() else {
                assert!(h.is_empty());
                continue;
            };
            // A normal form is a sorted set of known tokens.
            if !k.starts_with('?') && !k.is_empty() {
                let tokens: Vec<&str> = k.split(',').collect();
                assert!(
                    tokens.is_sorted() && tokens.windows(2).all(|w| w[0] != w[1]),
                    "{k}"
                );
            }
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
