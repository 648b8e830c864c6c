//! Per-site cache-key rules: which parts of the query and which request
//! headers and cookies select a stored response.
//!
//! RFC 9111 §2 keys responses on the target URI (plus Vary, §4.1); sites
//! routinely add tracking parameters that do not change the response, or
//! vary on a header or cookie without saying so. These rules let an
//! operator widen or narrow the key. Narrowing is where cache poisoning
//! lives: anything left out of the key must be something the origin
//! ignores. So every ambiguity below is resolved towards keeping input in
//! the key (costing at worst a duplicate entry), never towards dropping it.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, header};

/// What the query contributes to the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum QueryRule {
    /// The whole query as sent.
    #[default]
    Keep,
    /// No query at all.
    Ignore,
    /// Every parameter except those named (exact, case-sensitive names).
    Drop(Vec<String>),
    /// Only the parameters named (matched loosely, see [`KeyRules::query`]).
    Only(Vec<String>),
}

/// One site's cache-key rules; `Default` is the plain RFC 9111 key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyRules {
    pub(crate) query: QueryRule,
    /// Stable-sort parameters by name, so `?b=1&a=2` and `?a=2&b=1` share a
    /// key while repeated names keep their relative order.
    pub(crate) sort_query: bool,
    /// Request headers added to the key.
    pub(crate) headers: Vec<HeaderName>,
    /// Request cookies added to the key (names are case-sensitive, RFC 6265
    /// §5.4 compares them exactly).
    pub(crate) cookies: Vec<String>,
}

impl KeyRules {
    /// The query to use in the cache key (without `?`), or `None` for no
    /// query; borrowed when unchanged.
    ///
    /// Parameters are the `&`-separated members of the query; a name is the
    /// raw text before the first `=` (the whole member if there is none).
    /// With `Keep` and no sorting the query is returned exactly as sent
    /// (`Some("")` for a bare `?`). Any other rule rewrites it: empty
    /// members are dropped (the WHATWG form-urlencoded parser skips them)
    /// and an empty result is `None`, so `/p?utm_source=x`, `/p?` and `/p`
    /// share a key.
    ///
    /// Matching is deliberately asymmetric, erring towards a bigger key:
    /// * `Drop` removes a parameter only when its raw name equals a listed
    ///   name byte for byte: `utm%5Fsource` or `UTM_SOURCE` stay in the key,
    ///   since some origin might read them as something else.
    /// * `Only` keeps a parameter when any name a common server framework
    ///   could read from it matches a listed name: after percent-decoding
    ///   and `+` → space (form-urlencoded), ASCII case folding (ASP.NET),
    ///   `.`/space → `_` and a trailing `[...]` cut (PHP), and also for each
    ///   `;`-separated piece (legacy `;` separators). Otherwise
    ///   `?i%64=evil` would share the key of `/p` while the origin read
    ///   `id=evil` — a poisoned entry.
    pub(crate) fn query<'a>(&self, query: Option<&'a str>) -> Option<Cow<'a, str>> {
        let query = query?;
        match &self.query {
            QueryRule::Ignore => return None,
            QueryRule::Keep if !self.sort_query => return Some(Cow::Borrowed(query)),
            _ => {}
        }
        let mut changed = false;
        let mut params: Vec<&str> = Vec::new();
        for param in query.split('&') {
            if param.is_empty() || !self.keeps(param) {
                changed = true;
            } else {
                params.push(param);
            }
        }
        if self.sort_query && !params.is_sorted_by_key(|p| param_name(p)) {
            // `sort_by_key` is stable: equal names keep their order.
            params.sort_by_key(|p| param_name(p));
            changed = true;
        }
        if params.is_empty() {
            None
        } else if changed {
            Some(Cow::Owned(params.join("&")))
        } else {
            Some(Cow::Borrowed(query))
        }
    }

    fn keeps(&self, param: &str) -> bool {
        match &self.query {
            QueryRule::Keep => true,
            QueryRule::Ignore => false,
            QueryRule::Drop(names) => !names.iter().any(|n| n == param_name(param)),
            QueryRule::Only(names) => param.split(';').any(|piece| {
                let read = loose_name(param_name(piece).as_bytes());
                names.iter().any(|n| loose_name(n.as_bytes()) == read)
            }),
        }
    }

    /// Extra key material from the listed request headers and cookies, or
    /// `None` when the rules list none (so the common case costs nothing).
    /// Absent and empty values differ; header names are case-insensitive
    /// (`HeaderName` is lowercase), cookie names case-sensitive (RFC 6265
    /// §5.4). Two different inputs never produce the same string.
    ///
    /// Format: one item per listed header, then per listed cookie, in rule
    /// order: `&h:NAME` / `&c:NAME`, then `~` when absent or `=VALUE` per
    /// value. Names and values are escaped (every byte outside `!`..`~`,
    /// and `%&=~` themselves, become `%XX`), so `&`, `=` and `~` only ever
    /// delimit and the string decodes back to exactly one input.
    ///
    /// A header's lines are joined with ", " (RFC 9110 §5.3), exactly as
    /// sent otherwise. Cookies come from every `Cookie` line (HTTP/2 splits
    /// them, RFC 9113 §8.2.3), as `;`-separated `name=value` pairs with
    /// surrounding whitespace trimmed (RFC 6265 §5.4, §4.2.1); pairs
    /// without `=` are skipped. Every occurrence of a listed cookie name is
    /// keyed, in order: for the normal single occurrence that is the same
    /// as "first one wins", and with duplicates (`a=1; a=2`) the key
    /// differs from both single-cookie keys, so an origin that takes the
    /// last occurrence cannot be used to poison the entry of the first.
    pub(crate) fn extra(&self, headers: &HeaderMap) -> Option<String> {
        if self.headers.is_empty() && self.cookies.is_empty() {
            return None;
        }
        let mut out = String::new();
        for name in &self.headers {
            out.push_str("&h:");
            escape_into(name.as_str().as_bytes(), &mut out);
            let mut lines = headers.get_all(name).iter();
            match lines.next() {
                None => out.push('~'),
                Some(first) => {
                    out.push('=');
                    escape_into(first.as_bytes(), &mut out);
                    for line in lines {
                        escape_into(b", ", &mut out);
                        escape_into(line.as_bytes(), &mut out);
                    }
                }
            }
        }
        let jar = if self.cookies.is_empty() {
            Vec::new()
        } else {
            cookie_pairs(headers)
        };
        for name in &self.cookies {
            out.push_str("&c:");
            escape_into(name.as_bytes(), &mut out);
            let mut found = false;
            for (_, value) in jar.iter().filter(|(n, _)| *n == name.as_bytes()) {
                found = true;
                out.push('=');
                escape_into(value, &mut out);
            }
            if !found {
                out.push('~');
            }
        }
        Some(out)
    }
}

/// The raw name of a `name[=value]` parameter.
fn param_name(param: &str) -> &str {
    param.split_once('=').map_or(param, |(name, _)| name)
}

/// Every name a mainstream framework might read from a raw parameter name,
/// folded into one form (see [`KeyRules::query`]): percent-decoded with
/// `+` as space, cut at the first `[`, ASCII-lowercased, `.` and space as
/// `_`. A malformed `%` escape stays literal.
fn loose_name(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let decoded = match (b, raw.get(i + 1..i + 3)) {
            (b'%', Some(&[h, l])) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                i += 2;
                hex_value(h) << 4 | hex_value(l)
            }
            (b'+', _) => b' ',
            _ => b,
        };
        i += 1;
        match decoded.to_ascii_lowercase() {
            b'[' => break,
            b'.' | b' ' => out.push(b'_'),
            other => out.push(other),
        }
    }
    out
}

fn hex_value(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        b'a'..=b'f' => h - b'a' + 10,
        b'A'..=b'F' => h - b'A' + 10,
        _ => 0,
    }
}

/// `name=value` pairs of every `Cookie` line, in order, as raw bytes with
/// surrounding SP/HTAB trimmed (RFC 6265 §5.4; RFC 6265bis §5.7 trims the
/// same way).
fn cookie_pairs(headers: &HeaderMap) -> Vec<(&[u8], &[u8])> {
    let mut pairs = Vec::new();
    for line in headers.get_all(header::COOKIE) {
        for pair in line.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (name, value) = pair.split_at(eq);
            let value = value.get(1..).unwrap_or_default();
            pairs.push((trim_ows(name), trim_ows(value)));
        }
    }
    pairs
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Appends `bytes` with every byte outside `!`..=`~`, and the delimiters
/// `%&=~`, written as `%XX`: injective, and never produces a delimiter.
fn escape_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if (b'!'..=b'~').contains(&b) && !matches!(b, b'%' | b'&' | b'=' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_util::{Pairs, hm};
    use http::HeaderValue;
    use std::collections::HashMap;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn rules(query: QueryRule, sort_query: bool) -> KeyRules {
        KeyRules {
            query,
            sort_query,
            ..KeyRules::default()
        }
    }

    #[test]
    fn query_table() {
        let keep = rules(QueryRule::Keep, false);
        let sort = rules(QueryRule::Keep, true);
        let ignore = rules(QueryRule::Ignore, true);
        let drop = rules(
            QueryRule::Drop(strings(&["utm_source", "fbclid", "a b"])),
            false,
        );
        let drop_sorted = rules(QueryRule::Drop(strings(&["utm_source"])), true);
        let only = rules(QueryRule::Only(strings(&["id", "page", "a_b"])), false);
        let only_sorted = rules(QueryRule::Only(strings(&["id", "page"])), true);
        let cases: &[(&KeyRules, Option<&str>, Option<&str>)] = &[
            (&keep, None, None),
            (&keep, Some(""), Some("")),
            (&keep, Some("b=1&a=2&&"), Some("b=1&a=2&&")),
            (&sort, None, None),
            (&sort, Some(""), None),
            (&sort, Some("b=1&a=2"), Some("a=2&b=1")),
            (&sort, Some("a=2&b=1"), Some("a=2&b=1")),
            (&sort, Some("b=1&a=2&b=0&a=1"), Some("a=2&a=1&b=1&b=0")),
            (&sort, Some("a&a=&a=1"), Some("a&a=&a=1")),
            (&sort, Some("b&&a"), Some("a&b")),
            (&sort, Some("%62=1&a=2"), Some("%62=1&a=2")),
            (&ignore, Some("a=1"), None),
            (&ignore, None, None),
            (&drop, Some("utm_source=x"), None),
            (&drop, Some("utm_source=x&fbclid=y&utm_source"), None),
            (&drop, Some("id=1&utm_source=x"), Some("id=1")),
            (
                &drop,
                Some("utm_source=x&id=1&fbclid=2&b=3"),
                Some("id=1&b=3"),
            ),
            (&drop, Some("id=1&b=3"), Some("id=1&b=3")),
            (&drop, Some("id=1&&b=3"), Some("id=1&b=3")),
            (
                &drop,
                Some("UTM_SOURCE=x&utm%5Fsource=y"),
                Some("UTM_SOURCE=x&utm%5Fsource=y"),
            ),
            (
                &drop,
                Some("utm_source2=x&xutm_source=y"),
                Some("utm_source2=x&xutm_source=y"),
            ),
            (&drop, Some("a b=1&a+b=2&a%20b=3"), Some("a+b=2&a%20b=3")),
            (&drop, Some("utm_source=a=b"), None),
            (&drop_sorted, Some("z=1&utm_source=x&a=2"), Some("a=2&z=1")),
            (&only, Some("id=1&utm_source=x"), Some("id=1")),
            (&only, Some("utm_source=x"), None),
            (
                &only,
                Some("page=2&id=1&x=3&id=0"),
                Some("page=2&id=1&id=0"),
            ),
            (&only, Some("id"), Some("id")),
            (&only, Some("idx=1&xid=1"), None),
            // Loose matching keeps every spelling an origin may read as a
            // listed name.
            (
                &only,
                Some("i%64=1&ID=2&Id%5B%5D=3"),
                Some("i%64=1&ID=2&Id%5B%5D=3"),
            ),
            (&only, Some("id[]=1&id[x]=2"), Some("id[]=1&id[x]=2")),
            (
                &only,
                Some("a.b=1&a+b=2&a%20b=3&A_B=4"),
                Some("a.b=1&a+b=2&a%20b=3&A_B=4"),
            ),
            (&only, Some("x=1;id=2&y=3"), Some("x=1;id=2")),
            (&only, Some("i%6=1&%=2&%zz"), None),
            (&only_sorted, Some("page=2&x=1&id=1"), Some("id=1&page=2")),
            (&only_sorted, Some("id=1&page=2"), Some("id=1&page=2")),
        ];
        for (rules, input, want) in cases {
            assert_eq!(
                rules.query(*input).as_deref(),
                *want,
                "{:?} {input:?}",
                rules.query
            );
        }
    }

    #[test]
    fn query_borrows_when_unchanged() {
        let cases: &[(KeyRules, &str, bool)] = &[
            (rules(QueryRule::Keep, false), "b=1&a=2", true),
            (rules(QueryRule::Keep, true), "a=1&b=2", true),
            (rules(QueryRule::Keep, true), "b=1&a=2", false),
            (rules(QueryRule::Drop(strings(&["x"])), false), "a=1", true),
            (
                rules(QueryRule::Drop(strings(&["x"])), false),
                "a=1&x=1",
                false,
            ),
            (
                rules(QueryRule::Only(strings(&["a"])), false),
                "a=1&a=2",
                true,
            ),
            (
                rules(QueryRule::Only(strings(&["a"])), false),
                "a=1&&a=2",
                false,
            ),
        ];
        for (rules, input, borrowed) in cases {
            let got = rules.query(Some(input));
            assert_eq!(
                matches!(got, Some(Cow::Borrowed(_))),
                *borrowed,
                "{input:?} {got:?}"
            );
        }
    }

    #[test]
    fn extra_table() {
        let none = KeyRules::default();
        let hdr = KeyRules {
            headers: vec![header::ACCEPT_LANGUAGE, HeaderName::from_static("x-a&b~c")],
            ..KeyRules::default()
        };
        let ck = KeyRules {
            cookies: strings(&["lang", "Sess", "a=b"]),
            ..KeyRules::default()
        };
        let cases: &[(&KeyRules, Pairs, Option<&str>)] = &[
            (&none, &[("cookie", b"lang=en")], None),
            (&hdr, &[], Some("&h:accept-language~&h:x-a%26b%7Ec~")),
            (
                &hdr,
                &[("Accept-Language", b"")],
                Some("&h:accept-language=&h:x-a%26b%7Ec~"),
            ),
            (
                &hdr,
                &[("accept-language", b"en, de"), ("x-a&b~c", b"1")],
                Some("&h:accept-language=en,%20de&h:x-a%26b%7Ec=1"),
            ),
            (
                &hdr,
                &[("accept-language", b"en"), ("accept-language", b"de")],
                Some("&h:accept-language=en,%20de&h:x-a%26b%7Ec~"),
            ),
            (
                &hdr,
                &[("accept-language", b"a&h:x=~%\xff\t")],
                Some("&h:accept-language=a%26h:x%3D%7E%25%FF%09&h:x-a%26b%7Ec~"),
            ),
            (&ck, &[], Some("&c:lang~&c:Sess~&c:a%3Db~")),
            (
                &ck,
                &[("cookie", b"lang=en; sess=1; Sess=2")],
                Some("&c:lang=en&c:Sess=2&c:a%3Db~"),
            ),
            (
                &ck,
                &[("cookie", b"lang=; Sess"), ("cookie", b" Sess = x y ;")],
                Some("&c:lang=&c:Sess=x%20y&c:a%3Db~"),
            ),
            (
                &ck,
                &[("cookie", b"lang=en"), ("cookie", b"lang=de")],
                Some("&c:lang=en=de&c:Sess~&c:a%3Db~"),
            ),
            (
                &ck,
                &[("cookie", b"lang=\"en\"; LANG=fr; lang2=x; a=b=c")],
                Some("&c:lang=\"en\"&c:Sess~&c:a%3Db~"),
            ),
            (
                &ck,
                &[("cookie", b";;=;lang=a=b;\xff=1")],
                Some("&c:lang=a%3Db&c:Sess~&c:a%3Db~"),
            ),
        ];
        for (rules, pairs, want) in cases {
            assert_eq!(rules.extra(&hm(pairs)).as_deref(), *want, "{pairs:?}");
        }
    }

    /// What `extra` must distinguish: per listed header its joined value
    /// (or absence), per listed cookie its values in order.
    type Meaning = (Vec<Option<Vec<u8>>>, Vec<Vec<Vec<u8>>>);

    fn meaning(rules: &KeyRules, h: &HeaderMap) -> Meaning {
        let headers = rules
            .headers
            .iter()
            .map(|n| {
                let lines: Vec<&[u8]> = h.get_all(n).iter().map(HeaderValue::as_bytes).collect();
                (!lines.is_empty()).then(|| lines.join(b", ".as_slice()))
            })
            .collect();
        let jar = cookie_pairs(h);
        let cookies = rules
            .cookies
            .iter()
            .map(|c| {
                jar.iter()
                    .filter(|(n, _)| *n == c.as_bytes())
                    .map(|(_, v)| v.to_vec())
                    .collect()
            })
            .collect();
        (headers, cookies)
    }

    use crate::cache::fuzz::Rng;
    #[test]
    fn random_inputs_never_panic_and_extra_is_unambiguous() {
        const FRAGMENTS: &[&[u8]] = &[
            b"a", b"b", b"=", b";", b"&", b"~", b"%", b"%26", b"%3D", b" ", b"\t", b",", b", ",
            b"\xff", b"\"", b"h:", b"c:", b"lang", b"x",
        ];
        const NAMES: &[&str] = &["accept-language", "x-a", "cookie"];
        let rules = KeyRules {
            headers: vec![header::ACCEPT_LANGUAGE, HeaderName::from_static("x-a")],
            cookies: strings(&["lang", "a", "a=b", "x;"]),
            ..KeyRules::default()
        };
        let query_rules = [
            rules.clone(),
            KeyRules {
                query: QueryRule::Drop(strings(&["a", "b=", ""])),
                sort_query: true,
                ..KeyRules::default()
            },
            rules_only(),
        ];
        let mut seen: HashMap<String, Meaning> = HashMap::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut h = HeaderMap::new();
            for _ in 0..rng.next(5) {
                let value = rng.bytes(FRAGMENTS, 6);
                let name = NAMES[rng.next(NAMES.len())];
                h.append(name, HeaderValue::from_bytes(&value).unwrap());
            }
            let key = rules.extra(&h).unwrap();
            let m = meaning(&rules, &h);
            if let Some(prev) = seen.insert(key.clone(), m.clone()) {
                assert_eq!(prev, m, "collision on {key:?}");
            }
            let q = String::from_utf8_lossy(&rng.bytes(FRAGMENTS, 8)).into_owned();
            for r in &query_rules {
                let verbatim = r.query == QueryRule::Keep && !r.sort_query;
                if let Some(out) = r.query(Some(&q)) {
                    assert!(!out.is_empty() || verbatim, "{q:?}");
                    assert!(!out.contains("&&") || verbatim, "{q:?}");
                }
            }
        }
    }

    fn rules_only() -> KeyRules {
        KeyRules {
            query: QueryRule::Only(strings(&["a", "%", "[", ""])),
            ..KeyRules::default()
        }
    }

    #[test]
    fn loose_name_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"id", b"id"),
            (b"ID", b"id"),
            (b"i%64", b"id"),
            (b"i%4", b"i%4"),
            (b"%", b"%"),
            (b"%%41", b"%a"),
            (b"a+b", b"a_b"),
            (b"a.b", b"a_b"),
            (b"a%20b", b"a_b"),
            (b"id[]", b"id"),
            (b"id%5B0%5D", b"id"),
            (b"%FF", b"\xff"),
            (b"", b""),
        ];
        for (raw, want) in cases {
            assert_eq!(loose_name(raw), *want, "{raw:?}");
        }
    }
}
