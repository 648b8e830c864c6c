//! Content codings applied at the edge: which coding a request gets, whether a response may
//! be transformed, and the validator of the transformed body.
//!
//! Pure, like the rest of `cache`: the compression phase asks these questions and acts on
//! the answers. The rules are RFC 9110's:
//!
//! * §12.5.3 `Accept-Encoding`: the coding with the highest weight among those the site
//!   offers; ties go to the operator's order. `*` weighs every coding not listed; a coding
//!   listed with `q=0` (or with a weight that does not parse) is refused. Identity stays
//!   acceptable unless refused, but only an explicit `identity;q=` outweighs a coding:
//!   browsers list the codings they want and leave identity implied.
//! * §7.7 `no-transform`, and a response already encoded (`Content-Encoding` other than
//!   identity), are passed as they are: a proxy never encodes twice.
//! * §8.8.3: the encoded body is other bytes than the origin's, so its entity tag is made
//!   weak and suffixed with the coding (`W/"abc-br"`): a client's `If-None-Match` for one
//!   body never matches the other, and an `If-Range` (strong comparison) never matches it,
//!   so a range of one variant is never taken for a range of the other.

use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::cache::control::trim_ows;

/// A coding the edge can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    pub(crate) const ALL: [Self; 3] = [Self::Br, Self::Zstd, Self::Gzip];

    /// Its place in [`Coding::ALL`], for tables indexed by coding.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Br => 0,
            Self::Zstd => 1,
            Self::Gzip => 2,
        }
    }

    /// The coding's token in `Content-Encoding` and in the configuration.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }

    /// A token of `Accept-Encoding` (case-insensitive; `x-gzip` is gzip, §8.4.1.3).
    pub(crate) fn parse(token: &[u8]) -> Option<Self> {
        if token.eq_ignore_ascii_case(b"x-gzip") {
            return Some(Self::Gzip);
        }
        Self::ALL
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.token().as_bytes()))
    }
}

/// A weight in thousandths (RFC 9110 §12.4.2 `qvalue`), or `None` when malformed.
fn weight(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (v.get(..i)?, v.get(i + 1..)?),
        None => (v, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// What one `Accept-Encoding` said about a coding, `*` and identity, as weights.
#[derive(Debug, Default)]
struct Weights {
    codings: [Option<u16>; 3],
    any: Option<u16>,
    identity: Option<u16>,
}

impl Weights {
    fn of(request: &HeaderMap) -> Self {
        let mut w = Self::default();
        let members = request
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .flat_map(|line| line.as_bytes().split(|&b| b == b','));
        for member in members {
            let mut parts = member.split(|&b| b == b';');
            let name = trim_ows(parts.next().unwrap_or_default());
            // No weight is q=1; a parameter other than a well-formed q refuses the member.
            let mut q = Some(1000);
            for param in parts {
                let param = trim_ows(param);
                q = match param.split_first() {
                    Some((b'q' | b'Q', rest)) => rest
                        .split_first()
                        .filter(|(eq, _)| **eq == b'=')
                        .and_then(|(_, v)| weight(trim_ows(v))),
                    _ => None,
                };
            }
            let q = q.unwrap_or(0);
            // Listed twice: the lower weight (refusal wins, as in the Vary key).
            let slot = if name == b"*" {
                &mut w.any
            } else if name.eq_ignore_ascii_case(b"identity") {
                &mut w.identity
            } else if let Some(c) = Coding::parse(name) {
                let i = Coding::ALL.iter().position(|x| *x == c).unwrap_or(0);
                &mut w.codings[i]
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |old| old.min(q)));
        }
        w
    }

    fn coding(&self, c: Coding) -> u16 {
        self.codings[c.index()].or(self.any).unwrap_or(0)
    }
}

/// The coding to answer `request` in, among those `offered` (in the operator's order), or
/// `None` for identity. A request without `Accept-Encoding` gets identity: RFC 9110 allows
/// any coding then, but a client that says nothing may not decode one.
pub(crate) fn negotiate(request: &HeaderMap, offered: &[Coding]) -> Option<Coding> {
    let weights = Weights::of(request);
    let mut best: Option<(Coding, u16)> = None;
    for &c in offered {
        let q = weights.coding(c);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((c, q));
        }
    }
    let (coding, q) = best?;
    match weights.identity {
        Some(identity) if identity > q => None,
        _ => Some(coding),
    }
}

/// Media types worth compressing: `type/subtype`, `type/*`, or `type/*+suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaPattern {
    kind: String,
    subtype: Subtype,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subtype {
    Any,
    Exact(String),
    Suffix(String),
}

impl MediaPattern {
    /// A pattern as written in the configuration, or `None` when it is not one.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (kind, subtype) = text.trim().split_once('/')?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        let subtype = match subtype {
            "*" => Subtype::Any,
            s => match s.strip_prefix("*+") {
                Some(suffix) if token(suffix) => Subtype::Suffix(suffix.to_ascii_lowercase()),
                Some(_) => return None,
                None if token(s) => Subtype::Exact(s.to_ascii_lowercase()),
                None => return None,
            },
        };
        token(kind).then(|| Self {
            kind: kind.to_ascii_lowercase(),
            subtype,
        })
    }

    /// Whether a `Content-Type` value (parameters ignored) is of this pattern.
    fn matches(&self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let Some((kind, subtype)) = essence.split_once('/') else {
            return false;
        };
        kind.eq_ignore_ascii_case(&self.kind)
            && match &self.subtype {
                Subtype::Any => true,
                Subtype::Exact(s) => subtype.eq_ignore_ascii_case(s),
                Subtype::Suffix(s) => subtype
                    .rsplit_once('+')
                    .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case(s)),
            }
    }
}

/// The types compressed when the site names none: text, JSON, JavaScript, SVG, XML, wasm.
pub(crate) const DEFAULT_TYPES: [&str; 9] = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
    "application/manifest+json",
];

/// A site's rules for which responses are compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    /// The codings offered, in the operator's order of preference.
    pub(crate) codings: Vec<Coding>,
    pub(crate) types: Vec<MediaPattern>,
    /// Bodies shorter than this gain less than the coding's framing costs.
    pub(crate) min_size: u64,
    /// Bodies longer than this are served as they are (`compress_max_size`).
    pub(crate) max_size: u64,
    pub(crate) levels: Levels,
}

/// Compression levels, one per coding. An object is compressed once and served many times,
/// so the defaults lean to the ratio more than to the speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Levels {
    /// 0-11.
    pub(crate) br: u32,
    /// 1-19 (zstd's fast negative levels are not offered).
    pub(crate) zstd: i32,
    /// 1-9.
    pub(crate) gzip: u32,
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            br: 6,
            zstd: 6,
            gzip: 6,
        }
    }
}

/// The types patterns of [`DEFAULT_TYPES`].
pub(crate) fn default_types() -> Vec<MediaPattern> {
    DEFAULT_TYPES
        .iter()
        .filter_map(|t| MediaPattern::parse(t))
        .collect()
}

/// Why a response is passed as the origin sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Untouched {
    /// Not a 200: a range, a redirect or an error page is not worth it.
    Status,
    /// Already encoded by the origin.
    Encoded,
    /// `Cache-Control: no-transform` (RFC 9110 §7.7).
    NoTransform,
    /// A type not in `compress_types`, or none.
    Type,
    /// Shorter than `compress_min_size`.
    Small,
    /// Longer than `compress_max_size`.
    Large,
}

/// Whether a stored response of `len` bytes may be compressed under `rules`.
pub(crate) fn compressible(
    status: StatusCode,
    headers: &HeaderMap,
    no_transform: bool,
    rules: &Rules,
    len: u64,
) -> Result<(), Untouched> {
    if status != StatusCode::OK {
        return Err(Untouched::Status);
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(Untouched::Encoded);
    }
    if no_transform {
        return Err(Untouched::NoTransform);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(|t| rules.types.iter().any(|p| p.matches(t))) {
        return Err(Untouched::Type);
    }
    if len < rules.min_size {
        return Err(Untouched::Small);
    }
    if len > rules.max_size {
        return Err(Untouched::Large);
    }
    Ok(())
}

/// The entity tag of the body encoded in `coding`: weak (§8.8.3: other bytes than the
/// origin's), and suffixed with the coding, so that a client holding the identity body
/// (`If-None-Match: "abc"`) is never told its copy is the encoded one, and a client holding
/// the encoded one (`W/"abc-br"`) gets its 304.
pub(crate) fn encoded_etag(etag: &HeaderValue, coding: Coding) -> HeaderValue {
    let bytes = etag.as_bytes();
    let opaque = bytes.strip_prefix(b"W/").unwrap_or(bytes);
    let mut tag = Vec::with_capacity(opaque.len() + 8);
    tag.extend_from_slice(b"W/");
    match opaque.strip_suffix(b"\"") {
        Some(open) if open.starts_with(b"\"") => {
            tag.extend_from_slice(open);
            tag.push(b'-');
            tag.extend_from_slice(coding.token().as_bytes());
            tag.push(b'"');
        }
        // Not an entity tag: kept, only weakened.
        _ => tag.extend_from_slice(opaque),
    }
    // Visible characters of the origin's value around ours: still a valid value.
    HeaderValue::from_bytes(&tag).unwrap_or_else(|_| etag.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    const OFFERED: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    #[test]
    fn negotiation_table() {
        use Coding::*;
        let cases: &[(&str, Option<Coding>)] = &[
            ("gzip, deflate, br, zstd", Some(Br)),
            ("gzip, deflate", Some(Gzip)),
            ("x-gzip", Some(Gzip)),
            ("GZIP", Some(Gzip)),
            ("gzip;q=1.0, br;q=0.5", Some(Gzip)),
            ("br;q=0.5, zstd;q=0.9, gzip;q=0.9", Some(Zstd)),
            ("br;q=0, gzip", Some(Gzip)),
            ("br;q=0, zstd;q=0, gzip;q=0", None),
            ("*", Some(Br)),
            ("*;q=0.5, gzip", Some(Gzip)),
            ("*, br;q=0", Some(Zstd)),
            ("*;q=0", None),
            ("identity", None),
            ("identity;q=1, gzip;q=0.5", None),
            ("identity;q=0.5, gzip", Some(Gzip)),
            // Implied identity does not outweigh a listed coding.
            ("gzip;q=0.5", Some(Gzip)),
            ("deflate, compress", None),
            // Malformed weights refuse the member, listing twice takes the lower.
            ("br;q=2, gzip", Some(Gzip)),
            ("br;level=5, gzip", Some(Gzip)),
            ("br;q=.5, gzip", Some(Gzip)),
            ("br, br;q=0, gzip", Some(Gzip)),
            ("br ; q=0.8 , gzip ; q=0.7", Some(Br)),
            // RFC 9110 §12.4.2: no whitespace around `=`.
            ("br;q = 0.8, gzip;q=0.7", Some(Gzip)),
            ("", None),
            (",,,", None),
        ];
        for (value, want) in cases {
            assert_eq!(negotiate(&accept(value), &OFFERED), *want, "{value:?}");
        }
        assert_eq!(negotiate(&HeaderMap::new(), &OFFERED), None, "no field");
        assert_eq!(
            negotiate(&accept("br, gzip"), &[Gzip, Br]),
            Some(Gzip),
            "a tie goes to the operator's order"
        );
        assert_eq!(negotiate(&accept("br"), &[Gzip]), None, "not offered");
    }

    #[test]
    fn weights() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"0", Some(0)),
            (b"0.", Some(0)),
            (b"0.5", Some(500)),
            (b"0.05", Some(50)),
            (b"0.001", Some(1)),
            (b"1", Some(1000)),
            (b"1.000", Some(1000)),
            (b"1.001", None),
            (b"0.0000", None),
            (b"2", None),
            (b".5", None),
            (b"", None),
            (b"0.a", None),
        ];
        for (v, want) in cases {
            assert_eq!(weight(v), *want, "{v:?}");
        }
    }

    fn rules() -> Rules {
        Rules {
            codings: OFFERED.to_vec(),
            types: default_types(),
            min_size: 1024,
            max_size: 16 << 20,
            levels: Levels::default(),
        }
    }

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn what_is_compressed() {
        let r = rules();
        let ok = StatusCode::OK;
        let html = head(&[("content-type", "text/html; charset=utf-8")]);
        assert_eq!(compressible(ok, &html, false, &r, 4096), Ok(()));
        for t in [
            "application/json",
            "application/ld+json",
            "Application/JSON",
            "image/svg+xml",
            "application/atom+xml",
            "text/css",
            "application/wasm",
        ] {
            let h = head(&[("content-type", t)]);
            assert_eq!(compressible(ok, &h, false, &r, 4096), Ok(()), "{t}");
        }
        for t in ["image/png", "video/mp4", "application/octet-stream", "text"] {
            let h = head(&[("content-type", t)]);
            let got = compressible(ok, &h, false, &r, 4096);
            assert_eq!(got, Err(Untouched::Type), "{t}");
        }
        let none = HeaderMap::new();
        assert_eq!(
            compressible(ok, &none, false, &r, 4096),
            Err(Untouched::Type)
        );
        assert_eq!(
            compressible(ok, &html, false, &r, 1023),
            Err(Untouched::Small)
        );
        assert_eq!(
            compressible(ok, &html, true, &r, 4096),
            Err(Untouched::NoTransform)
        );
        let partial = StatusCode::PARTIAL_CONTENT;
        assert_eq!(
            compressible(partial, &html, false, &r, 4096),
            Err(Untouched::Status)
        );
        let gz = head(&[("content-type", "text/html"), ("content-encoding", "gzip")]);
        assert_eq!(
            compressible(ok, &gz, false, &r, 4096),
            Err(Untouched::Encoded)
        );
        let identity = head(&[
            ("content-type", "text/html"),
            ("content-encoding", "identity"),
        ]);
        assert_eq!(compressible(ok, &identity, false, &r, 4096), Ok(()));
    }

    #[test]
    fn media_patterns() {
        assert!(MediaPattern::parse("text/*").is_some());
        assert!(MediaPattern::parse("application/*+json").is_some());
        for bad in ["text", "/json", "text/", "text/a b", "*/*+", "te xt/html"] {
            assert_eq!(MediaPattern::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_default_type_parses() {
        assert_eq!(default_types().len(), DEFAULT_TYPES.len());
    }

    #[test]
    fn encoded_etags_are_weak() {
        let strong = HeaderValue::from_static("\"abc\"");
        assert_eq!(encoded_etag(&strong, Coding::Br), "W/\"abc-br\"");
        let weak = HeaderValue::from_static("W/\"abc\"");
        assert_eq!(encoded_etag(&weak, Coding::Gzip), "W/\"abc-gzip\"");
        let odd = HeaderValue::from_static("abc");
        assert_eq!(encoded_etag(&odd, Coding::Zstd), "W/abc");
    }

    proptest! {
        /// Whatever the field says, the answer is a coding the site offers and the request
        /// did not refuse.
        #[test]
        fn negotiation_never_answers_a_refused_coding(value in "[ -~]{0,64}") {
            let Ok(v) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, v);
            if let Some(c) = negotiate(&h, &[Coding::Gzip]) {
                prop_assert_eq!(c, Coding::Gzip);
                prop_assert!(Weights::of(&h).coding(c) > 0);
            }
        }
    }
}
