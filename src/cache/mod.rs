//! The cache policy of Outpost: RFC 9111 (HTTP Caching), with the RFC 5861
//! stale-content directives parsed and RFC 9211 `Cache-Status` rendering.
//!
//! Everything here is pure — no I/O, no clock reads, `now` is always passed
//! in — so every rule can be unit-tested without sockets and the async proxy
//! only has to ask questions and act on the answers.

pub(crate) mod chunk;
pub(crate) mod conditional;
pub(crate) mod control;
pub(crate) mod date;
pub(crate) mod encoding;
pub mod freshness;
#[cfg(test)]
mod fuzz;
pub(crate) mod invalidation;
pub(crate) mod key;
pub mod policy;
pub(crate) mod range;
pub(crate) mod status;
pub(crate) mod storable;
pub(crate) mod targeted;
#[cfg(test)]
mod test_util;
pub(crate) mod vary;

pub(crate) use freshness::Freshness;

/// `Content-Length` of a response head, if present and valid.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    //! Whole-module robustness: random attacker-style headers through every
    //! public function. The per-file tables pin behaviour; this only pins
    //! "never panics".

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

    use super::*;
    use control::{RequestDirectives, ResponseDirectives};
    use freshness::HeuristicPolicy;
    use status::CacheStatus;
    use vary::Vary;

    const FRAGMENTS: &[&[u8]] = &[
        b"max-age",
        b"s-maxage",
        b"no-cache",
        b"no-store",
        b"private",
        b"public",
        b"must-revalidate",
        b"must-understand",
        b"max-stale",
        b"min-fresh",
        b"stale-while-revalidate",
        b"stale-if-error",
        b"bytes",
        b"W/",
        b"*",
        b"=",
        b"\"",
        b"\\",
        b",",
        b";",
        b" ",
        b"\t",
        b"-",
        b"0",
        b"7",
        b"99999999999999999999999",
        b"\xff",
        b"\xc3\xa9",
        b"a",
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Fri, 31 Dec 9999 23:59:59 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Thursday, 01-Jan-70 00:00:00 GMT",
        b"Sun Nov  6 08:49:37 1994",
    ];

    const NAMES: &[&str] = &[
        "cache-control",
        "pragma",
        "expires",
        "date",
        "last-modified",
        "age",
        "vary",
        "etag",
        "if-none-match",
        "if-modified-since",
        "if-range",
        "range",
        "authorization",
        "set-cookie",
        "connection",
        "content-length",
        "accept-encoding",
    ];

    use crate::cache::fuzz::Rng;

    impl Rng {
        fn value(&mut self) -> HeaderValue {
            let mut bytes = Vec::new();
            for _ in 0..self.next(8) {
                bytes.extend_from_slice(FRAGMENTS[self.next(FRAGMENTS.len())]);
            }
            HeaderValue::from_bytes(&bytes).unwrap()
        }

        fn headers(&mut self) -> HeaderMap {
            let mut h = HeaderMap::new();
            for _ in 0..self.next(12) {
                let name = HeaderName::from_static(NAMES[self.next(NAMES.len())]);
                h.append(name, self.value());
            }
            h
        }

        fn time(&mut self) -> SystemTime {
            let secs = [0, 1, 784_111_777, 1_700_000_000, 1 << 40][self.next(5)];
            UNIX_EPOCH + Duration::from_secs(secs)
        }
    }

    #[test]
    fn random_headers_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let statuses = [100, 200, 204, 206, 299, 304, 404, 500, 999];
        for _ in 0..20_000 {
            let (req, resp, other) = (rng.headers(), rng.headers(), rng.headers());
            let status = StatusCode::from_u16(statuses[rng.next(statuses.len())]).unwrap();
            let (t1, t2, now) = (rng.time(), rng.time(), rng.time());
            let rcc = RequestDirectives::parse(&req);
            let scc = ResponseDirectives::parse(&resp);
            let _ = targeted::parse(resp.get_all("cache-control"));
            let policy = HeuristicPolicy {
                fraction_percent: u32::MAX,
                max: Duration::MAX,
            };
            let life = freshness::freshness_lifetime(status, &resp, &scc, t2, policy);
            let cia = freshness::corrected_initial_age(&resp, t1, t2);
            let age = freshness::current_age(cia, t2, now);
            let f = freshness::freshness(life, age);
            let _ = f.ttl_secs();
            let _ = freshness::reuse(f, age, &rcc, &scc);
            let _ = freshness::may_serve_stale_while_revalidate(f, age, &rcc, &scc);
            let _ = freshness::may_serve_stale_if_error(f, &rcc, &scc);
            let _ = storable::storable(
                &Method::GET,
                &req,
                &rcc,
                status,
                &resp,
                &scc,
                storable::SetCookie::StoreWithout,
            );
            if let Vary::Fields(fields) = vary::parse_vary(&resp) {
                let _ = vary::secondary_key(&fields, &req);
            }
            let _ = conditional::not_modified(&Method::GET, &req, &resp, now);
            let _ = conditional::if_range_holds(&req, &resp, now);
            let _ = conditional::validators(&resp, now);
            let _ = conditional::merge_304(&resp, &other);
            let _ = range::parse_range(req.get("range"), [0, 1, 100, u64::MAX][rng.next(4)]);
            let name = String::from_utf8_lossy(rng.value().as_bytes()).into_owned();
            let cs = CacheStatus {
                detail: Some(name.clone()),
                ttl: Some(f.ttl_secs()),
                ..Default::default()
            };
            let rendered = status::append(resp.get("etag"), &cs.render(&name));
            assert!(HeaderValue::from_str(&rendered).is_ok(), "{rendered:?}");
        }
    }
}
