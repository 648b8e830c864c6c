//! `Cache-Control` parsing (RFC 9111 §5.2) for requests and responses.
//!
//! Header values are attacker-controlled, so the parser works on raw bytes,
//! never fails and never panics: anything it cannot understand is ignored or,
//! where ignoring would make caching *more* permissive, read in the most
//! restrictive way the RFC allows.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// RFC 9111 §1.2.2: a delta-seconds value too large to represent, or an
/// overflowing calculation, is taken as 2^31 seconds.
pub(crate) const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// Directives of a response's `Cache-Control` fields (RFC 9111 §5.2.2,
/// RFC 5861 for the two `stale-*` extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResponseDirectives {
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) no_store: bool,
    /// True for both the bare and the qualified form; the bare form wins
    /// (see `no_cache_fields`).
    pub(crate) no_cache: bool,
    /// Lowercase field names of a qualified `no-cache="a, b"` (§5.2.2.4).
    /// Empty when any bare `no-cache` is present, because the unqualified
    /// directive is the more restrictive one (§4.2.1): `no_cache` with empty
    /// fields therefore always means "revalidate every time".
    pub(crate) no_cache_fields: Vec<String>,
    pub(crate) private: bool,
    /// Lowercase field names of a qualified `private="a"` (§5.2.2.7); empty
    /// when a bare `private` is present, for the same reason as above.
    pub(crate) private_fields: Vec<String>,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) must_understand: bool,
    pub(crate) no_transform: bool,
    pub(crate) immutable: bool,
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
    /// The directives came from a targeted field (RFC 9213 §2.1): `Expires` is ignored.
    pub(crate) targeted: bool,
    /// The site's lifetime for this status when the response gives none (negative caching);
    /// explicit freshness always wins (see `cache::policy`).
    pub(crate) default_ttl: Option<u64>,
    /// The site's most staleness when the origin cannot be reached (RFC 9111 §4.2.4), in
    /// seconds; not a directive (see `cache::policy`).
    pub(crate) stale_when_disconnected: Option<u64>,
}

/// Request `max-stale` (RFC 9111 §5.2.1.2): with no value any staleness is
/// acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaxStale {
    Any,
    Seconds(u64),
}

/// Directives of a request's `Cache-Control` fields (RFC 9111 §5.2.1), with
/// `Pragma: no-cache` folded in (§5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    pub(crate) max_age: Option<u64>,
    pub(crate) max_stale: Option<MaxStale>,
    pub(crate) min_fresh: Option<u64>,
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
    pub(crate) only_if_cached: bool,
    pub(crate) stale_if_error: Option<u64>,
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` line of a response. Unknown directives
    /// are ignored (RFC 9111 §5.2.3).
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        Self::parse_lines(headers.get_all(header::CACHE_CONTROL))
    }

    /// Parses the lines of one Cache-Control-like field (`Cache-Control`, or
    /// `Surrogate-Control`, whose members use the same names and values). Targeted fields
    /// are Structured Fields with their own strict parser (`cache::targeted`).
    pub(crate) fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut d = Self::default();
        let mut bare = Bare::default();
        for dir in directives(lines) {
            d.apply(&dir, &mut bare);
        }
        // RFC 9111 §4.2.1: conflicting directives → honour the most
        // restrictive; the unqualified form covers every field.
        if bare.no_cache {
            d.no_cache_fields.clear();
        }
        if bare.private {
            d.private_fields.clear();
        }
        d
    }

    fn apply(&mut self, dir: &Directive, bare: &mut Bare) {
        let value = dir.value.as_deref();
        match dir.name.as_str() {
            // RFC 9111 §5.2.2.1 / §5.2.2.10; an invalid value means stale
            // (§4.2.1), duplicates keep the smallest (most restrictive, §4.2.1).
            "max-age" => keep_min(&mut self.max_age, delta_or_zero(value)),
            "s-maxage" => keep_min(&mut self.s_maxage, delta_or_zero(value)),
            // RFC 9111 §5.2.2.5
            "no-store" => self.no_store = true,
            // RFC 9111 §5.2.2.4
            "no-cache" => {
                self.no_cache = true;
                match value {
                    Some(v) => push_fields(&mut self.no_cache_fields, v),
                    None => bare.no_cache = true,
                }
            }
            // RFC 9111 §5.2.2.7
            "private" => {
                self.private = true;
                match value {
                    Some(v) => push_fields(&mut self.private_fields, v),
                    None => bare.private = true,
                }
            }
            // RFC 9111 §5.2.2.9, §5.2.2.2, §5.2.2.8, §5.2.2.3, §5.2.2.6
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "no-transform" => self.no_transform = true,
            // RFC 8246 §2
            "immutable" => self.immutable = true,
            // RFC 5861 §3, §4: an invalid value grants nothing (ignored).
            "stale-while-revalidate" => keep_first(&mut self.stale_while_revalidate, value),
            "stale-if-error" => keep_first(&mut self.stale_if_error, value),
            // RFC 9111 §5.2.3: unknown extensions are ignored.
            _ => {}
        }
    }
}

/// Which of the qualifiable directives appeared at least once unqualified.
#[derive(Default)]
struct Bare {
    no_cache: bool,
    private: bool,
}

impl RequestDirectives {
    /// Parses every `Cache-Control` line of a request; `Pragma: no-cache`
    /// counts only when the request has no `Cache-Control` at all (§5.4).
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        for dir in directives(headers.get_all(header::CACHE_CONTROL)) {
            d.apply(&dir);
        }
        // RFC 9111 §5.4: Pragma is ignored when Cache-Control is present.
        if !headers.contains_key(header::CACHE_CONTROL) {
            d.no_cache = directives(headers.get_all(header::PRAGMA)).any(|p| p.name == "no-cache");
        }
        d
    }

    fn apply(&mut self, dir: &Directive) {
        let value = dir.value.as_deref();
        match dir.name.as_str() {
            // RFC 9111 §5.2.1.1: an invalid value is read as 0 (the most
            // restrictive reading, §4.2.1); duplicates keep the smallest.
            "max-age" => keep_min(&mut self.max_age, delta_or_zero(value)),
            // RFC 9111 §5.2.1.2: no value = any staleness; an invalid value
            // grants nothing; the first valid occurrence is used (§4.2.1).
            "max-stale" if self.max_stale.is_none() => {
                self.max_stale = match value {
                    None => Some(MaxStale::Any),
                    Some(v) => delta_seconds(v).map(MaxStale::Seconds),
                }
            }
            // RFC 9111 §5.2.1.3
            "min-fresh" => keep_first(&mut self.min_fresh, value),
            // RFC 9111 §5.2.1.4, §5.2.1.5, §5.2.1.7
            "no-cache" => self.no_cache = true,
            "no-store" => self.no_store = true,
            "only-if-cached" => self.only_if_cached = true,
            // RFC 5861 §4
            "stale-if-error" => keep_first(&mut self.stale_if_error, value),
            // RFC 9111 §5.2.3: unknown extensions are ignored.
            _ => {}
        }
    }
}

/// One `name[=value]` list member: name ASCII-lowercased, value unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

/// All members of every line of a list-valued field (RFC 9110 §5.6.1), in
/// order. Empty members are skipped, as the list rule requires.
pub(crate) fn directives<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
) -> impl Iterator<Item = Directive> {
    let mut out = Vec::new();
    for line in lines {
        parse_line(line.as_bytes(), &mut out);
    }
    out.into_iter()
}

/// RFC 9111 §5.2: `cache-directive = token [ "=" ( token / quoted-string ) ]`,
/// names case-insensitive. Lenient where leniency cannot loosen caching:
/// whitespace around `=` is accepted, a malformed member only affects itself.
fn parse_line(input: &[u8], out: &mut Vec<Directive>) {
    let mut pos = 0;
    while pos < input.len() {
        pos = skip_while(input, pos, |b| is_ows(b) || b == b',');
        let start = pos;
        pos = skip_while(input, pos, |b| b != b'=' && b != b',');
        let name = trim_ows(input.get(start..pos).unwrap_or_default());
        let mut value = None;
        if input.get(pos) == Some(&b'=') {
            let (v, next) = parse_value(input, pos + 1);
            value = Some(v);
            pos = next;
        }
        // Garbage after a value (e.g. after a closing quote) is dropped.
        pos = skip_while(input, pos, |b| b != b',');
        if !name.is_empty() {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            out.push(Directive { name, value });
        }
    }
}

/// token / quoted-string (RFC 9110 §5.6.2, §5.6.4); returns the value and
/// the position after it.
fn parse_value(input: &[u8], pos: usize) -> (String, usize) {
    let pos = skip_while(input, pos, is_ows);
    if input.get(pos) == Some(&b'"') {
        return parse_quoted(input, pos + 1);
    }
    let end = skip_while(input, pos, |b| b != b',');
    let raw = trim_ows(input.get(pos..end).unwrap_or_default());
    (String::from_utf8_lossy(raw).into_owned(), end)
}

/// Body of a quoted-string, `\` escaping the next byte (RFC 9110 §5.6.4).
/// An unterminated string runs to the end of the line.
fn parse_quoted(input: &[u8], mut pos: usize) -> (String, usize) {
    let mut buf = Vec::new();
    while let Some(&b) = input.get(pos) {
        match (b, input.get(pos + 1)) {
            (b'"', _) => return (String::from_utf8_lossy(&buf).into_owned(), pos + 1),
            (b'\\', Some(&escaped)) => {
                buf.push(escaped);
                pos += 2;
            }
            _ => {
                buf.push(b);
                pos += 1;
            }
        }
    }
    (String::from_utf8_lossy(&buf).into_owned(), pos)
}

fn skip_while(input: &[u8], mut pos: usize, pred: impl Fn(u8) -> bool) -> usize {
    while input.get(pos).is_some_and(|&b| pred(b)) {
        pos += 1;
    }
    pos
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_ows(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_ows(*last)
    {
        s = rest;
    }
    s
}

/// delta-seconds = 1*DIGIT (RFC 9111 §1.2.2), saturating at 2^31.
/// Signs, fractions and empty values are invalid (`None`).
pub(crate) fn delta_seconds(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = value.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    Some(n.min(DELTA_SECONDS_MAX))
}

/// RFC 9111 §4.2.1: an invalid (or missing) freshness value is read as 0,
/// i.e. already stale.
fn delta_or_zero(value: Option<&str>) -> u64 {
    value.and_then(delta_seconds).unwrap_or(0)
}

fn keep_min(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.map_or(v, |old| old.min(v)));
}

/// First valid occurrence wins (RFC 9111 §4.2.1); invalid values are ignored.
fn keep_first(slot: &mut Option<u64>, value: Option<&str>) {
    if slot.is_none() {
        *slot = value.and_then(delta_seconds);
    }
}

/// Field names of a qualified `no-cache` / `private` (RFC 9111 §5.2.2.4,
/// §5.2.2.7), lowercased and deduplicated; invalid names are dropped.
pub(crate) fn push_fields(fields: &mut Vec<String>, value: &str) {
    for raw in value.split(',') {
        let Ok(name) = HeaderName::from_bytes(trim_ows(raw.as_bytes())) else {
            continue;
        };
        let name = name.as_str().to_owned();
        if !fields.contains(&name) {
            fields.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw field lines of one test case.
    type Lines<'a> = &'a [&'a [u8]];

    fn headers(name: &'static str, lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(name, HeaderValue::from_bytes(line).unwrap());
        }
        h
    }

    fn resp(lines: &[&[u8]]) -> ResponseDirectives {
        ResponseDirectives::parse(&headers("cache-control", lines))
    }

    fn req(lines: &[&[u8]]) -> RequestDirectives {
        RequestDirectives::parse(&headers("cache-control", lines))
    }

    #[test]
    fn response_max_age_and_s_maxage() {
        let cases: &[(Lines, Option<u64>, Option<u64>)] = &[
            (&[b"max-age=60"], Some(60), None),
            (&[b"MAX-AGE=60"], Some(60), None),
            (&[b"max-age=\"60\""], Some(60), None),
            (&[b"  max-age = 60  "], Some(60), None),
            (&[b"max-age=-1"], Some(0), None),
            (&[b"max-age=abc"], Some(0), None),
            (&[b"max-age="], Some(0), None),
            (&[b"max-age"], Some(0), None),
            (&[b"max-age=1.5"], Some(0), None),
            (&[b"max-age=+5"], Some(0), None),
            (&[b"max-age=\" 60\""], Some(0), None),
            (
                &[b"max-age=99999999999999999999999999"],
                Some(1 << 31),
                None,
            ),
            (&[b"max-age=2147483648"], Some(1 << 31), None),
            (&[b"max-age=2147483647"], Some(2147483647), None),
            (&[b"max-age=60, max-age=10"], Some(10), None),
            (&[b"max-age=10", b"max-age=60"], Some(10), None),
            (&[b"max-age=60, max-age=bad"], Some(0), None),
            (&[b"s-maxage=30, max-age=60"], Some(60), Some(30)),
            (&[b"s-maxage=30,s-maxage=5"], None, Some(5)),
            (&[b"smaxage=30"], None, None),
            (&[b"max-age=60 garbage"], Some(0), None),
            (&[b"max-age=\"60\"garbage"], Some(60), None),
            (&[b""], None, None),
            (&[b",,, ,"], None, None),
        ];
        for (lines, max_age, s_maxage) in cases {
            let d = resp(lines);
            assert_eq!(d.max_age, *max_age, "{lines:?}");
            assert_eq!(d.s_maxage, *s_maxage, "{lines:?}");
        }
    }

    #[test]
    fn response_flags() {
        let all = resp(&[
            b"public, no-store, must-revalidate",
            b"Proxy-Revalidate,MUST-UNDERSTAND , no-transform,immutable",
        ]);
        assert!(all.public && all.no_store && all.must_revalidate);
        assert!(all.proxy_revalidate && all.must_understand);
        assert!(all.no_transform && all.immutable);
        assert!(!all.private && !all.no_cache);

        let none = resp(&[b"publicx, no-storey, x-must-revalidate=1"]);
        assert_eq!(none, ResponseDirectives::default());
        // A flag with a (meaningless) value still counts.
        assert!(resp(&[b"no-store=1"]).no_store);
    }

    #[test]
    fn response_qualified_no_cache_and_private() {
        let cases: &[(Lines, bool, &[&str])] = &[
            (&[b"no-cache"], true, &[]),
            (
                &[b"no-cache=\"Set-Cookie, X-Foo\""],
                true,
                &["set-cookie", "x-foo"],
            ),
            (&[b"no-cache=set-cookie"], true, &["set-cookie"]),
            (&[b"no-cache=\"a\", no-cache=\"b, a\""], true, &["a", "b"]),
            (&[b"no-cache=\"a\", no-cache"], true, &[]),
            (&[b"no-cache", b"no-cache=\"a\""], true, &[]),
            (&[b"no-cache=\"\""], true, &[]),
            (&[b"no-cache=\"bad name, ok\""], true, &["ok"]),
            (&[b"no-cache=\"a,"], true, &["a"]),
            (&[b"max-age=5"], false, &[]),
        ];
        for (lines, flag, fields) in cases {
            let d = resp(lines);
            assert_eq!(d.no_cache, *flag, "{lines:?}");
            assert_eq!(d.no_cache_fields, *fields, "{lines:?}");
        }
        let p = resp(&[b"private=\"Authorization\""]);
        assert!(p.private);
        assert_eq!(p.private_fields, ["authorization"]);
        let p = resp(&[b"private=\"x\", private"]);
        assert!(p.private && p.private_fields.is_empty());
    }

    #[test]
    fn response_stale_extensions() {
        let cases: &[(&[u8], Option<u64>, Option<u64>)] = &[
            (b"stale-while-revalidate=30", Some(30), None),
            (b"stale-if-error=600", None, Some(600)),
            (b"stale-while-revalidate=bad", None, None),
            (b"stale-while-revalidate", None, None),
            (b"stale-while-revalidate=-3", None, None),
            (
                b"stale-while-revalidate=1, stale-while-revalidate=2",
                Some(1),
                None,
            ),
            (
                b"stale-while-revalidate=x, stale-while-revalidate=2",
                Some(2),
                None,
            ),
            (
                b"stale-if-error=\"99999999999999999999\"",
                None,
                Some(1 << 31),
            ),
        ];
        for (line, swr, sie) in cases {
            let d = resp(&[line]);
            assert_eq!(d.stale_while_revalidate, *swr, "{line:?}");
            assert_eq!(d.stale_if_error, *sie, "{line:?}");
        }
    }

    #[test]
    fn quoted_strings_keep_commas_and_escapes() {
        let d = resp(&[b"foo=\"a, max-age=1, \\\"b\\\"\", max-age=7"]);
        assert_eq!(d.max_age, Some(7));
        let dirs: Vec<_> = directives(&[HeaderValue::from_static(r#"x="a\"b", y="c\\", z"#)])
            .map(|d| (d.name, d.value))
            .collect();
        assert_eq!(
            dirs,
            [
                ("x".into(), Some("a\"b".into())),
                ("y".into(), Some("c\\".into())),
                ("z".into(), None)
            ]
        );
        // Unterminated quoted string swallows the rest of the line.
        let d = resp(&[b"no-cache=\"a, max-age=5"]);
        assert_eq!(d.max_age, None);
        assert_eq!(d.no_cache_fields, ["a"]);
        // Trailing backslash inside an unterminated string.
        assert!(resp(&[b"x=\"\\"]).max_age.is_none());
    }

    #[test]
    fn nasty_bytes_never_panic() {
        let lines: &[&[u8]] = &[
            b"\xff\xfe max-age=\xff",
            b"=",
            b"==,==",
            b"\"",
            b"\\",
            b"max-age=\"\xff\"",
            b"no-cache=\"\xff\xfe\"",
            b"\x80max-age=3",
            b"max-age\t=\t9",
        ];
        for line in lines {
            let _ = resp(&[line]);
            let _ = req(&[line]);
        }
        assert_eq!(resp(&[b"max-age=\xff"]).max_age, Some(0));
        assert_eq!(resp(&[b"max-age\t=\t9"]).max_age, Some(9));
        assert!(resp(&[b"no-cache=\"\xff\xfe\""]).no_cache_fields.is_empty());
    }

    #[test]
    fn request_directives() {
        let cases: &[(&[u8], RequestDirectives)] = &[
            (
                b"max-age=0",
                RequestDirectives {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (
                b"max-age=bad",
                RequestDirectives {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (
                b"max-age=9, max-age=3",
                RequestDirectives {
                    max_age: Some(3),
                    ..Default::default()
                },
            ),
            (
                b"max-stale",
                RequestDirectives {
                    max_stale: Some(MaxStale::Any),
                    ..Default::default()
                },
            ),
            (
                b"max-stale=30",
                RequestDirectives {
                    max_stale: Some(MaxStale::Seconds(30)),
                    ..Default::default()
                },
            ),
            (b"max-stale=-1", RequestDirectives::default()),
            (
                b"max-stale=5, max-stale",
                RequestDirectives {
                    max_stale: Some(MaxStale::Seconds(5)),
                    ..Default::default()
                },
            ),
            (
                b"min-fresh=10",
                RequestDirectives {
                    min_fresh: Some(10),
                    ..Default::default()
                },
            ),
            (b"min-fresh=x", RequestDirectives::default()),
            (
                b"NO-CACHE",
                RequestDirectives {
                    no_cache: true,
                    ..Default::default()
                },
            ),
            (
                b"no-store",
                RequestDirectives {
                    no_store: true,
                    ..Default::default()
                },
            ),
            (
                b"only-if-cached",
                RequestDirectives {
                    only_if_cached: true,
                    ..Default::default()
                },
            ),
            (
                b"stale-if-error=60",
                RequestDirectives {
                    stale_if_error: Some(60),
                    ..Default::default()
                },
            ),
            (b"s-maxage=5, public, private", RequestDirectives::default()),
        ];
        for (line, want) in cases {
            assert_eq!(req(&[line]), *want, "{line:?}");
        }
    }

    #[test]
    fn pragma_only_without_cache_control() {
        let mut h = headers("pragma", &[b"No-Cache"]);
        assert!(RequestDirectives::parse(&h).no_cache);
        h.append("pragma", HeaderValue::from_static("x-foo"));
        assert!(RequestDirectives::parse(&h).no_cache);
        assert!(!RequestDirectives::parse(&headers("pragma", &[b"no-cachex"])).no_cache);
        assert!(!RequestDirectives::parse(&headers("pragma", &[b"\xff"])).no_cache);
        // §5.4: any Cache-Control, even one without no-cache, overrides Pragma.
        h.append("cache-control", HeaderValue::from_static("max-age=5"));
        assert!(!RequestDirectives::parse(&h).no_cache);
        let mut h = headers("pragma", &[b"no-cache"]);
        h.append("cache-control", HeaderValue::from_static(""));
        assert!(!RequestDirectives::parse(&h).no_cache);
    }

    #[test]
    fn delta_seconds_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("007", Some(7)),
            ("2147483648", Some(1 << 31)),
            ("18446744073709551616", Some(1 << 31)),
            ("", None),
            (" 1", None),
            ("1 ", None),
            ("-0", None),
            ("1e3", None),
            ("١", None),
        ];
        for (s, want) in cases {
            assert_eq!(delta_seconds(s), *want, "{s:?}");
        }
    }

    #[test]
    fn trim_ows_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"  ", b""),
            (b"\t a \t", b"a"),
            (b"a b", b"a b"),
        ];
        for (input, want) in cases {
            assert_eq!(trim_ows(input), *want);
        }
    }
}
