//! A site's caching policy: the choices RFC 9111 leaves to the cache, made per site by the
//! operator and applied to every response of that site.
//!
//! - which field carries the directives Outpost obeys (RFC 9213 targeted fields: the site's own
//!   field, then `CDN-Cache-Control`; `Surrogate-Control` when enabled), and which of those
//!   fields stop here instead of going on to clients;
//! - lifetimes for origins that say nothing: status defaults (negative caching) and the
//!   stale grace windows of RFC 5861, never overriding what the origin did say;
//! - whether responses that set cookies may be stored (without their cookies);
//! - how many `Vary` variants one URL may hold, and which request fields the site adds to
//!   every cache key (they act as an implicit `Vary`, so a URL purge still removes them all).
//!
//! Pure: [`Policy::directives`] turns a response head into the [`ResponseDirectives`] the
//! rest of the cache reads, so the RFC 9111 code in `freshness`/`storable` never needs to know
//! which field or default a value came from.

use http::header::{self, HeaderMap, HeaderName};
use http::{HeaderValue, StatusCode};

use crate::cache::control::ResponseDirectives;
use crate::cache::freshness::HeuristicPolicy;
use crate::cache::storable::SetCookie;
use crate::cache::targeted;
use crate::cache::vary::{Vary, parse_vary};

/// RFC 9213 §3.
pub(crate) const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// Edge Architecture Specification 1.0 (W3C note), as CDNs implement it.
pub(crate) const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
/// The default tag field (Fastly's and Varnish's convention).
pub(crate) const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
/// Request field Outpost sets itself to carry the site's extra key material (listed request
/// headers and cookies); a client's value is always replaced, and the origin never sees it.
pub(crate) const KEY_FIELD: HeaderName = HeaderName::from_static("outpost-cache-key");

/// Most tags one response can carry, and the longest tag kept; the rest are ignored so a
/// hostile origin cannot make one entry's index arbitrarily large.
const MAX_TAGS: usize = 256;
const MAX_TAG_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct Policy {
    /// The site's own targeted field (e.g. `Outpost-Cache-Control`), highest precedence.
    pub(crate) own_field: Option<HeaderName>,
    /// Honour `CDN-Cache-Control` (RFC 9213 §3).
    pub(crate) cdn_cache_control: bool,
    /// Honour `Surrogate-Control` `max-age` and `no-store` over `Cache-Control`.
    pub(crate) surrogate_control: bool,
    pub(crate) heuristic: HeuristicPolicy,
    /// Lifetime (seconds) by status for responses without explicit freshness.
    pub(crate) status_ttl: Vec<(StatusCode, u64)>,
    /// Grace windows (seconds) for responses that do not set their own.
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
    /// Most staleness (seconds) served when the origin cannot be reached (RFC 9111 §4.2.4).
    pub(crate) stale_when_disconnected: Option<u64>,
    pub(crate) set_cookie: SetCookie,
    pub(crate) max_variants: usize,
    /// Response field listing the entry's tags (space-separated).
    pub(crate) tag_header: HeaderName,
    /// Request fields added to every key of the site (kept sorted); `KEY_FIELD` when the site
    /// keys on request headers or cookies.
    pub(crate) key_fields: Vec<HeaderName>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            own_field: None,
            cdn_cache_control: true,
            surrogate_control: false,
            heuristic: HeuristicPolicy::default(),
            status_ttl: Vec::new(),
            stale_while_revalidate: None,
            stale_if_error: None,
            stale_when_disconnected: None,
            set_cookie: SetCookie::Refuse,
            max_variants: 16,
            tag_header: SURROGATE_KEY,
            key_fields: Vec::new(),
        }
    }
}

impl Policy {
    /// The directives Outpost obeys for this response.
    ///
    /// RFC 9213 §2.2: the first field of the target list (the site's own field, then
    /// `CDN-Cache-Control`) with a valid, non-empty value replaces `Cache-Control` and
    /// `Expires`; a field that fails to parse as a Dictionary, or has a known directive of
    /// the wrong type, counts as absent (§2.1). Without one, `Cache-Control` applies, with `Surrogate-Control`'s `max-age`
    /// and `no-store` over it when the site enables that field.
    pub(crate) fn directives(&self, status: StatusCode, headers: &HeaderMap) -> ResponseDirectives {
        let mut d = self
            .targeted(headers)
            .unwrap_or_else(|| self.cache_control(headers));
        let explicit = d.s_maxage.is_some()
            || d.max_age.is_some()
            || (!d.targeted && headers.contains_key(header::EXPIRES));
        if !explicit {
            d.default_ttl = self
                .status_ttl
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, ttl)| *ttl);
        }
        if d.stale_while_revalidate.is_none() {
            d.stale_while_revalidate = self.stale_while_revalidate;
        }
        if d.stale_if_error.is_none() {
            d.stale_if_error = self.stale_if_error;
        }
        d.stale_when_disconnected = self.stale_when_disconnected;
        d
    }

    fn targeted(&self, headers: &HeaderMap) -> Option<ResponseDirectives> {
        let cdn = self.cdn_cache_control.then_some(CDN_CACHE_CONTROL);
        self.own_field
            .iter()
            .cloned()
            .chain(cdn)
            .find_map(|name| targeted::parse(headers.get_all(&name)))
    }

    fn cache_control(&self, headers: &HeaderMap) -> ResponseDirectives {
        let mut d = ResponseDirectives::parse(headers);
        if self.surrogate_control && headers.contains_key(&SURROGATE_CONTROL) {
            let s = ResponseDirectives::parse_lines(headers.get_all(&SURROGATE_CONTROL));
            if let Some(max_age) = s.max_age {
                // It replaces the whole lifetime, Expires included.
                d.max_age = Some(max_age);
                d.s_maxage = None;
                d.targeted = true;
            }
            d.no_store |= s.no_store;
        }
        d
    }

    /// Fields that stop at this node: the site's own targeted field, `Surrogate-Control` when
    /// the site uses it, and the tag field. `CDN-Cache-Control` goes on: a CDN further down
    /// may be one of its targets too.
    pub(crate) fn strip_downstream(&self, headers: &mut HeaderMap) {
        self.strip_targeted(headers);
        headers.remove(&self.tag_header);
    }

    /// The targeted fields of [`strip_downstream`](Self::strip_downstream) only: stored
    /// entries keep them (a 304 may update them) but not the tag field, which is read into
    /// the entry once. Costs nothing on a hit unless the site uses such a field.
    pub(crate) fn strip_targeted(&self, headers: &mut HeaderMap) {
        if let Some(own) = &self.own_field {
            headers.remove(own);
        }
        if self.surrogate_control {
            headers.remove(&SURROGATE_CONTROL);
        }
    }

    /// The request fields that select a stored variant: the response's `Vary` plus the
    /// site's key fields, sorted and deduplicated.
    pub(crate) fn vary_fields(&self, headers: &HeaderMap) -> Vec<HeaderName> {
        let mut fields = match parse_vary(headers) {
            Vary::Fields(fields) => fields,
            // `Vary: *` is never stored; nothing selects it.
            Vary::None | Vary::Any => Vec::new(),
        };
        if !self.key_fields.is_empty() {
            fields.extend(self.key_fields.iter().cloned());
            fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            fields.dedup();
        }
        fields
    }

    /// Tags of a response: the members of every line of the tag field, split on whitespace
    /// (and commas, which some origins use), deduplicated.
    pub(crate) fn tags(&self, headers: &HeaderMap) -> Box<[Box<str>]> {
        let mut tags: Vec<Box<str>> = Vec::new();
        for line in headers.get_all(&self.tag_header) {
            let Ok(line) = line.to_str() else { continue };
            for tag in line.split([' ', '\t', ',']).filter(|t| !t.is_empty()) {
                if tags.len() == MAX_TAGS {
                    break;
                }
                if tag.len() <= MAX_TAG_LEN && !tags.iter().any(|t| &**t == tag) {
                    tags.push(tag.into());
                }
            }
        }
        tags.into_boxed_slice()
    }
}

/// Replace any client-sent [`KEY_FIELD`] with the site's key material for this request.
pub(crate) fn set_key_field(headers: &mut HeaderMap, extra: Option<String>) {
    headers.remove(&KEY_FIELD);
    if let Some(extra) = extra {
        let value = HeaderValue::from_str(&extra).unwrap_or_else(|_| {
            // Not visible ASCII (a cookie with raw UTF-8, say): hex keeps it exact and valid.
            let hex = crate::hex::encode(extra.as_bytes());
            HeaderValue::from_str(&hex).unwrap_or_else(|_| HeaderValue::from_static(""))
        });
        headers.insert(KEY_FIELD, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_util::hm;

    fn own() -> Policy {
        Policy {
            own_field: Some(HeaderName::from_static("outpost-cache-control")),
            ..Policy::default()
        }
    }

    #[test]
    fn targeted_fields_in_precedence_order() {
        let ok = StatusCode::OK;
        // (policy, headers, max_age, s_maxage, private, targeted)
        let cases: Vec<(Policy, HeaderMap, Option<u64>, bool, bool)> = vec![
            // Plain Cache-Control.
            (
                Policy::default(),
                hm(&[("cache-control", b"max-age=10, private")]),
                Some(10),
                true,
                false,
            ),
            // RFC 9213 §2.1: CDN-Cache-Control replaces Cache-Control entirely.
            (
                Policy::default(),
                hm(&[
                    ("cache-control", b"private, max-age=10"),
                    ("cdn-cache-control", b"max-age=600"),
                ]),
                Some(600),
                false,
                true,
            ),
            // An empty or invalid targeted field is ignored.
            (
                Policy::default(),
                hm(&[
                    ("cache-control", b"max-age=10"),
                    ("cdn-cache-control", b" , "),
                ]),
                Some(10),
                false,
                false,
            ),
            // RFC 9213 §2.1: a known directive of the wrong type voids the whole field, and
            // Cache-Control applies (its `private` too).
            (
                Policy::default(),
                hm(&[
                    ("cache-control", b"private, max-age=10"),
                    ("cdn-cache-control", b"max-age=\"600\""),
                ]),
                Some(10),
                true,
                false,
            ),
            (
                Policy::default(),
                hm(&[
                    ("cache-control", b"max-age=10"),
                    ("cdn-cache-control", b"max-age=600, no-store=\"x\""),
                ]),
                Some(10),
                false,
                false,
            ),
            // An invalid own field passes the turn to CDN-Cache-Control, not Cache-Control.
            (
                own(),
                hm(&[
                    ("cache-control", b"max-age=10"),
                    ("cdn-cache-control", b"max-age=600"),
                    ("outpost-cache-control", b"max-age=1.5"),
                ]),
                Some(600),
                false,
                true,
            ),
            // Turned off: CDN-Cache-Control is not ours.
            (
                Policy {
                    cdn_cache_control: false,
                    ..Policy::default()
                },
                hm(&[
                    ("cache-control", b"max-age=10"),
                    ("cdn-cache-control", b"max-age=600"),
                ]),
                Some(10),
                false,
                false,
            ),
            // The site's own field comes first in the target list.
            (
                own(),
                hm(&[
                    ("cdn-cache-control", b"max-age=600"),
                    ("outpost-cache-control", b"max-age=5"),
                ]),
                Some(5),
                false,
                true,
            ),
        ];
        for (i, (policy, headers, max_age, private, targeted)) in cases.into_iter().enumerate() {
            let d = policy.directives(ok, &headers);
            assert_eq!(d.max_age, max_age, "case {i}");
            assert_eq!(d.private, private, "case {i}");
            assert_eq!(d.targeted, targeted, "case {i}");
        }
    }

    #[test]
    fn surrogate_control_only_when_enabled() {
        let headers = hm(&[
            ("cache-control", b"s-maxage=10, public"),
            ("surrogate-control", b"max-age=300"),
        ]);
        let off = Policy::default().directives(StatusCode::OK, &headers);
        assert_eq!((off.s_maxage, off.max_age), (Some(10), None));
        let on = Policy {
            surrogate_control: true,
            ..Policy::default()
        };
        let d = on.directives(StatusCode::OK, &headers);
        assert_eq!((d.s_maxage, d.max_age, d.public), (None, Some(300), true));
        let no_store = hm(&[
            ("cache-control", b"max-age=60"),
            ("surrogate-control", b"no-store"),
        ]);
        assert!(on.directives(StatusCode::OK, &no_store).no_store);
    }

    #[test]
    fn status_defaults_never_override_explicit_freshness() {
        let policy = Policy {
            status_ttl: vec![(StatusCode::NOT_FOUND, 30), (StatusCode::OK, 7)],
            ..Policy::default()
        };
        let nf = StatusCode::NOT_FOUND;
        assert_eq!(
            policy.directives(nf, &HeaderMap::new()).default_ttl,
            Some(30)
        );
        let explicit = [
            hm(&[("cache-control", b"max-age=5")]),
            hm(&[("cache-control", b"s-maxage=5")]),
            hm(&[("expires", b"0")]),
        ];
        for headers in explicit {
            assert_eq!(
                policy.directives(nf, &headers).default_ttl,
                None,
                "{headers:?}"
            );
        }
        // Expires is ignored next to a targeted field, so the default applies.
        let targeted = hm(&[("expires", b"0"), ("cdn-cache-control", b"public")]);
        assert_eq!(policy.directives(nf, &targeted).default_ttl, Some(30));
        assert_eq!(
            policy
                .directives(StatusCode::GONE, &HeaderMap::new())
                .default_ttl,
            None
        );
    }

    #[test]
    fn grace_defaults_fill_only_what_the_origin_left_out() {
        let policy = Policy {
            stale_while_revalidate: Some(30),
            stale_if_error: Some(600),
            ..Policy::default()
        };
        let d = policy.directives(StatusCode::OK, &hm(&[("cache-control", b"max-age=1")]));
        assert_eq!(
            (d.stale_while_revalidate, d.stale_if_error),
            (Some(30), Some(600))
        );
        let own = hm(&[("cache-control", b"max-age=1, stale-while-revalidate=2")]);
        let d = policy.directives(StatusCode::OK, &own);
        assert_eq!(
            (d.stale_while_revalidate, d.stale_if_error),
            (Some(2), Some(600))
        );
    }

    #[test]
    fn downstream_fields() {
        let mut h = hm(&[
            ("cdn-cache-control", b"max-age=1"),
            ("outpost-cache-control", b"max-age=1"),
            ("surrogate-control", b"max-age=1"),
            ("surrogate-key", b"a b"),
        ]);
        own().strip_downstream(&mut h);
        assert!(h.contains_key("cdn-cache-control"));
        assert!(
            h.contains_key("surrogate-control"),
            "not ours unless enabled"
        );
        assert!(!h.contains_key("outpost-cache-control"));
        assert!(!h.contains_key("surrogate-key"));
    }

    #[test]
    fn tags_are_split_and_deduplicated() {
        let h = hm(&[
            ("surrogate-key", b"  product-1 all\tcat:shoes "),
            ("surrogate-key", b"all,product-2"),
        ]);
        let tags = Policy::default().tags(&h);
        let tags: Vec<&str> = tags.iter().map(|t| &**t).collect();
        assert_eq!(tags, ["product-1", "all", "cat:shoes", "product-2"]);
        let many = "t ".repeat(10) + &(0..1000).map(|i| format!("x{i} ")).collect::<String>();
        let h = hm(&[("surrogate-key", many.as_bytes())]);
        assert_eq!(Policy::default().tags(&h).len(), MAX_TAGS);
    }

    #[test]
    fn key_fields_join_the_vary_list() {
        let policy = Policy {
            key_fields: vec![KEY_FIELD],
            ..Policy::default()
        };
        let h = hm(&[("vary", b"Accept-Encoding, outpost-cache-key")]);
        let names: Vec<String> = policy
            .vary_fields(&h)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["accept-encoding", "outpost-cache-key"]);
        assert_eq!(policy.vary_fields(&HeaderMap::new()), vec![KEY_FIELD]);
    }

    #[test]
    fn a_client_cannot_choose_its_key_field() {
        let mut h = hm(&[("outpost-cache-key", b"forged")]);
        set_key_field(&mut h, None);
        assert!(!h.contains_key(&KEY_FIELD));
        set_key_field(&mut h, Some("lang=fr".into()));
        assert_eq!(h.get(&KEY_FIELD).unwrap(), "lang=fr");
        set_key_field(&mut h, Some("lang=\u{e9}\n".into()));
        assert_eq!(h.get(&KEY_FIELD).unwrap(), "6c616e673dc3a90a");
    }
}
