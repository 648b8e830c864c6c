//! Freshness lifetime, age and the reuse decision (RFC 9111 §4.2, §4.2.4).
//!
//! The proxy records `request_time` / `response_time` when it talks to the
//! origin and passes `now` on every lookup; this module turns those instants
//! and the stored headers into "fresh / stale / revalidate" answers. All
//! arithmetic saturates: a hostile `Age` or `Date` can skew one entry's
//! freshness but never panic the process.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};

use crate::cache::control::{
    DELTA_SECONDS_MAX, MaxStale, RequestDirectives, ResponseDirectives, delta_seconds,
};
use crate::cache::date::http_date;

/// How generous heuristic freshness is (RFC 9111 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeuristicPolicy {
    /// Share of the time since Last-Modified, in percent.
    pub(crate) fraction_percent: u32,
    /// Upper bound of any heuristic lifetime.
    pub(crate) max: Duration,
}

impl Default for HeuristicPolicy {
    /// RFC 9111 §4.2.2 suggests "no more than some fraction" of the interval
    /// since Last-Modified, "typical setting of this fraction might be 10%";
    /// a one-day cap keeps ancient files from being cached for months.
    fn default() -> Self {
        Self {
            fraction_percent: 10,
            max: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// RFC 9111 §4.2.3 `date_value`; a missing or invalid Date is replaced by
/// the time we received the response (RFC 9110 §6.6.1 lets a recipient add
/// one, and that is the value it would add).
fn date_value(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
    headers
        .get(header::DATE)
        .and_then(|d| http_date(d, response_time))
        .unwrap_or(response_time)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// RFC 9111 §1.2.2: lifetimes beyond 2^31 s are clamped there.
fn clamp(d: Duration) -> Duration {
    d.min(secs(DELTA_SECONDS_MAX))
}

/// Freshness lifetime of a response as seen by a shared cache
/// (RFC 9111 §4.2.1), `Duration::ZERO` when nothing grants freshness.
pub(crate) fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &ResponseDirectives,
    response_time: SystemTime,
    heuristic: HeuristicPolicy,
) -> Duration {
    // RFC 9111 §4.2.1: a shared cache uses s-maxage first, then max-age.
    if let Some(s) = cc.s_maxage.or(cc.max_age) {
        return secs(s);
    }
    let date = date_value(headers, response_time);
    // RFC 9111 §4.2.1, §5.3: with duplicates the first Expires is used; an
    // invalid one (notably "0") means "already expired". RFC 9213 §2.1: a
    // targeted field replaces Cache-Control and Expires together.
    if let Some(expires) = headers.get(header::EXPIRES).filter(|_| !cc.targeted) {
        return http_date(expires, response_time)
            .and_then(|e| e.duration_since(date).ok())
            .map_or(Duration::ZERO, clamp);
    }
    // The site's default for this status (negative caching): only when the
    // origin gave no explicit lifetime, so it never overrides one.
    if let Some(ttl) = cc.default_ttl {
        return secs(ttl);
    }
    // RFC 9111 §4.2.2: heuristics only without explicit expiry, and only for
    // heuristically cacheable statuses or explicitly `public` responses.
    if is_heuristically_cacheable(status) || cc.public {
        return heuristic_lifetime(headers, date, response_time, heuristic);
    }
    Duration::ZERO
}

/// RFC 9111 §4.2.2: a fraction of (Date − Last-Modified), capped.
fn heuristic_lifetime(
    headers: &HeaderMap,
    date: SystemTime,
    response_time: SystemTime,
    policy: HeuristicPolicy,
) -> Duration {
    let last_modified = headers.get(header::LAST_MODIFIED);
    let Some(last_modified) = last_modified.and_then(|lm| http_date(lm, response_time)) else {
        return Duration::ZERO;
    };
    // A Last-Modified in the future of Date gives no evidence of stability.
    let stable = date.duration_since(last_modified).unwrap_or_default();
    let share = u128::from(stable.as_secs()) * u128::from(policy.fraction_percent) / 100;
    let share = secs(u64::try_from(share).unwrap_or(u64::MAX));
    clamp(share.min(policy.max))
}

/// RFC 9111 §5.1: Age is delta-seconds; of a list the first member counts,
/// and an invalid value is ignored (read as 0).
fn age_value(headers: &HeaderMap) -> Duration {
    let first = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.split(',').next())
        .and_then(|s| delta_seconds(s.trim_matches([' ', '\t'])));
    first.map_or(Duration::ZERO, secs)
}

/// RFC 9111 §4.2.3 `corrected_initial_age`, never negative, saturating.
pub(crate) fn corrected_initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let date = date_value(headers, response_time);
    // RFC 9111 §4.2.3: apparent_age = max(0, response_time - date_value)
    let apparent_age = response_time.duration_since(date).unwrap_or_default();
    // RFC 9111 §4.2.3: response_delay = response_time - request_time
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    let corrected_age_value = age_value(headers).saturating_add(response_delay);
    apparent_age.max(corrected_age_value)
}

/// RFC 9111 §4.2.3: current_age = corrected_initial_age + resident_time.
/// A clock that went backwards counts as zero resident time.
pub(crate) fn current_age(
    corrected_initial_age: Duration,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let resident_time = now.duration_since(response_time).unwrap_or_default();
    corrected_initial_age.saturating_add(resident_time)
}

/// RFC 9110 §15.1: status codes defined as heuristically cacheable.
pub(crate) fn is_heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether a stored response is fresh (RFC 9111 §4.2), with the margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh { remaining: Duration },
    Stale { by: Duration },
}

/// RFC 9111 §4.2: fresh iff freshness_lifetime > current_age; at equality
/// the response is stale by zero.
pub(crate) fn freshness(lifetime: Duration, current_age: Duration) -> Freshness {
    match lifetime.checked_sub(current_age) {
        Some(remaining) if !remaining.is_zero() => Freshness::Fresh { remaining },
        _ => Freshness::Stale {
            by: current_age.saturating_sub(lifetime),
        },
    }
}

impl Freshness {
    /// Remaining freshness in whole seconds, negative when stale — the
    /// RFC 9211 §2.4 `ttl`. This is floor(lifetime − age), so a response
    /// stale by any fraction of a second already reports −1.
    pub fn ttl_secs(&self) -> i64 {
        match *self {
            Freshness::Fresh { remaining } => {
                i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX)
            }
            Freshness::Stale { by } => {
                let whole = by
                    .as_secs()
                    .saturating_add(u64::from(by.subsec_nanos() > 0));
                i64::try_from(whole).map_or(-i64::MAX, |w| -w)
            }
        }
    }
}

/// What a cache may do with a stored response for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Serve it as is (RFC 9111 §4.2).
    Fresh,
    /// Serve it although stale, because the client allowed it (§4.2.4).
    ServeStale,
    /// Validate with the origin first (§4.3).
    Revalidate,
}

/// RFC 9111 §4, §4.2.4, §5.2.1, §5.2.2: may the stored response be reused
/// for this request without contacting the origin?
pub(crate) fn reuse(
    freshness: Freshness,
    current_age: Duration,
    req: &RequestDirectives,
    resp: &ResponseDirectives,
) -> Reuse {
    // RFC 9111 §5.2.1.4 (request) and §5.2.2.4 (unqualified response
    // no-cache): always validate first.
    if req.no_cache || unqualified_no_cache(resp) {
        return Reuse::Revalidate;
    }
    // RFC 9111 §5.2.1.1: the client refuses anything older than max-age.
    if req.max_age.is_some_and(|m| current_age > secs(m)) {
        return Reuse::Revalidate;
    }
    // RFC 9111 §5.2.1.3: it must stay fresh for at least min-fresh; a stale
    // response has no freshness left.
    let remaining = match freshness {
        Freshness::Fresh { remaining } => remaining,
        Freshness::Stale { .. } => Duration::ZERO,
    };
    if req.min_fresh.is_some_and(|m| remaining < secs(m)) {
        return Reuse::Revalidate;
    }
    match freshness {
        Freshness::Fresh { .. } => Reuse::Fresh,
        Freshness::Stale { by } => stale_reuse(by, req, resp),
    }
}

/// RFC 9111 §4.2.4: a stale response only with the client's max-stale, and
/// never against must-revalidate (§5.2.2.2), proxy-revalidate (§5.2.2.8) or
/// s-maxage (§5.2.2.10, which implies proxy-revalidate for shared caches).
fn stale_reuse(by: Duration, req: &RequestDirectives, resp: &ResponseDirectives) -> Reuse {
    if resp.must_revalidate || resp.proxy_revalidate || resp.s_maxage.is_some() {
        return Reuse::Revalidate;
    }
    // RFC 9111 §5.2.1.2: stale by no more than N seconds, or any.
    match req.max_stale {
        Some(MaxStale::Any) => Reuse::ServeStale,
        Some(MaxStale::Seconds(n)) if by <= secs(n) => Reuse::ServeStale,
        _ => Reuse::Revalidate,
    }
}

fn unqualified_no_cache(resp: &ResponseDirectives) -> bool {
    // control.rs clears the field list whenever a bare no-cache is present.
    resp.no_cache && resp.no_cache_fields.is_empty()
}

/// RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8: directives that forbid serving stale
/// even when an extension would allow it.
fn stale_forbidden(resp: &ResponseDirectives) -> bool {
    unqualified_no_cache(resp) || resp.must_revalidate || resp.proxy_revalidate
}

/// RFC 5861 §3: may this stale response be served while the proxy
/// revalidates it in the background?
///
/// Choice: an explicit `stale-while-revalidate` overrides the proxy-revalidate
/// semantics that s-maxage implies (§5.2.2.10) — `s-maxage=60,
/// stale-while-revalidate=30` is the origin asking for exactly this — but not
/// an explicit must-revalidate / proxy-revalidate / no-cache (§4.2.4). The
/// client's own no-cache, max-age and min-fresh still win (§5.2.1).
pub(crate) fn may_serve_stale_while_revalidate(
    freshness: Freshness,
    current_age: Duration,
    req: &RequestDirectives,
    resp: &ResponseDirectives,
) -> bool {
    let Freshness::Stale { by } = freshness else {
        return false;
    };
    let client_objects = req.no_cache
        || req.max_age.is_some_and(|m| current_age > secs(m))
        || req.min_fresh.is_some_and(|m| m > 0);
    !client_objects
        && !stale_forbidden(resp)
        && resp.stale_while_revalidate.is_some_and(|w| by <= secs(w))
}

/// RFC 5861 §4: may this stale response be served because the origin failed
/// (5xx, unreachable)? Either the request's or the response's
/// `stale-if-error` grants it (RFC 9111 §4.2.4 "permitted by the client or
/// origin server"); the larger window applies. Like above, s-maxage alone
/// does not forbid it, must-revalidate does (§5.2.2.2 requires an error).
pub(crate) fn may_serve_stale_if_error(
    freshness: Freshness,
    req: &RequestDirectives,
    resp: &ResponseDirectives,
) -> bool {
    let Freshness::Stale { by } = freshness else {
        return false;
    };
    let window = req.stale_if_error.max(resp.stale_if_error);
    !stale_forbidden(resp) && window.is_some_and(|w| by <= secs(w))
}

/// RFC 9111 §4.2.4: may this stale response be served because the origin cannot be reached
/// at all (refused, reset, timed out), though nothing granted stale content? Only within
/// the site's window, and never where the origin forbade it: `must-revalidate`,
/// `proxy-revalidate`, `no-cache`, or `s-maxage` (which implies proxy-revalidate for shared
/// caches, §5.2.2.10).
pub(crate) fn may_serve_stale_when_disconnected(
    freshness: Freshness,
    resp: &ResponseDirectives,
) -> bool {
    let Freshness::Stale { by } = freshness else {
        return false;
    };
    disconnected_window(resp).is_some_and(|w| by <= secs(w))
}

/// The staleness (seconds) [`may_serve_stale_when_disconnected`] allows this response, if
/// any: also how long past its lifetime the store keeps it.
pub(crate) fn disconnected_window(resp: &ResponseDirectives) -> Option<u64> {
    let allowed = !stale_forbidden(resp) && resp.s_maxage.is_none();
    resp.stale_when_disconnected.filter(|_| allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_util::{Pairs, hm};
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + secs(1_700_000_000 + s)
    }

    fn date(s: u64) -> String {
        httpdate::fmt_http_date(t(s))
    }

    fn lifetime(status: u16, pairs: Pairs) -> u64 {
        let h = hm(pairs);
        let cc = ResponseDirectives::parse(&h);
        let status = StatusCode::from_u16(status).unwrap();
        freshness_lifetime(status, &h, &cc, t(1000), HeuristicPolicy::default()).as_secs()
    }

    #[test]
    fn lifetime_precedence() {
        let d = date(1000);
        let exp = date(1300);
        let lm = date(0);
        let cases: &[(u16, Pairs, u64)] = &[
            (200, &[("cache-control", b"s-maxage=5, max-age=50")], 5),
            (
                200,
                &[
                    ("cache-control", b"max-age=50"),
                    ("expires", exp.as_bytes()),
                ],
                50,
            ),
            (
                200,
                &[("date", d.as_bytes()), ("expires", exp.as_bytes())],
                300,
            ),
            // Expires without Date: response_time (t(1000)) is the date.
            (200, &[("expires", exp.as_bytes())], 300),
            (200, &[("date", d.as_bytes()), ("expires", b"0")], 0),
            (200, &[("date", d.as_bytes()), ("expires", b"\xff\xfe")], 0),
            (
                200,
                &[("date", d.as_bytes()), ("expires", lm.as_bytes())],
                0,
            ),
            // Invalid Expires beats a Last-Modified heuristic.
            (
                200,
                &[("expires", b"soon"), ("last-modified", lm.as_bytes())],
                0,
            ),
            // Heuristic: 10 % of 1000 s.
            (
                200,
                &[("date", d.as_bytes()), ("last-modified", lm.as_bytes())],
                100,
            ),
            (
                404,
                &[("date", d.as_bytes()), ("last-modified", lm.as_bytes())],
                100,
            ),
            (
                302,
                &[("date", d.as_bytes()), ("last-modified", lm.as_bytes())],
                0,
            ),
            (
                302,
                &[
                    ("cache-control", b"public"),
                    ("date", d.as_bytes()),
                    ("last-modified", lm.as_bytes()),
                ],
                100,
            ),
            (200, &[("date", d.as_bytes())], 0),
            (
                200,
                &[("date", d.as_bytes()), ("last-modified", b"yesterday")],
                0,
            ),
            // Last-Modified after Date.
            (
                200,
                &[("date", lm.as_bytes()), ("last-modified", d.as_bytes())],
                0,
            ),
            (
                200,
                &[
                    ("cache-control", b"max-age=bogus"),
                    ("expires", exp.as_bytes()),
                ],
                0,
            ),
            (200, &[("cache-control", b"max-age=99999999999")], 1 << 31),
            (500, &[("cache-control", b"max-age=10")], 10),
        ];
        for (status, pairs, want) in cases {
            assert_eq!(lifetime(*status, pairs), *want, "{status} {pairs:?}");
        }
    }

    #[test]
    fn dates_in_every_format() {
        // t(1000), t(1300) and t(0) in IMF-fixdate, RFC 850 and asctime (RFC 9110 §5.6.7).
        let dates: [[&[u8]; 3]; 3] = [
            [
                b"Tue, 14 Nov 2023 22:30:00 GMT",
                b"Tuesday, 14-Nov-23 22:30:00 GMT",
                b"Tue Nov 14 22:30:00 2023",
            ],
            [
                b"Tue, 14 Nov 2023 22:35:00 GMT",
                b"Tuesday, 14-Nov-23 22:35:00 GMT",
                b"Tue Nov 14 22:35:00 2023",
            ],
            [
                b"Tue, 14 Nov 2023 22:13:20 GMT",
                b"Tuesday, 14-Nov-23 22:13:20 GMT",
                b"Tue Nov 14 22:13:20 2023",
            ],
        ];
        let [now, expires, last_modified] = dates;
        for d in now {
            for e in expires {
                let pairs: Pairs = &[("date", d), ("expires", e)];
                assert_eq!(lifetime(200, pairs), 300, "{pairs:?}");
            }
            for lm in last_modified {
                let pairs: Pairs = &[("date", d), ("last-modified", lm)];
                assert_eq!(lifetime(200, pairs), 100, "{pairs:?}");
            }
            // The Date's age: received 10 s after it was sent.
            let age = corrected_initial_age(&hm(&[("date", d)]), t(1010), t(1010));
            assert_eq!(age, secs(10), "{d:?}");
        }
        // RFC 9111 §5.3: anything but an HTTP-date in Expires means already expired, even
        // where the heuristic would have given 100 s.
        for bad in [
            &b"0"[..],
            b"-1",
            b"",
            b"garbage",
            b"1700001300",
            b"Tue, 14 Nov 2023 22:35:00 UTC",
            b"Tue, 14-Nov-23 22:35:00 GMT",
            b"Tuesday, 14-Nov-2023 22:35:00 GMT",
            b"Wednesday, 14-Nov-23 22:35:00 GMT",
            b"Tue Nov 14 22:35:00 23",
            b"Thursday, 01-Jan-70 00:00:00 GMT",
        ] {
            let pairs: Pairs = &[
                ("date", now[0]),
                ("expires", bad),
                ("last-modified", last_modified[0]),
            ];
            assert_eq!(
                lifetime(200, pairs),
                0,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn heuristic_is_capped_and_saturates() {
        let h = hm(&[("last-modified", b"Thu, 01 Jan 1970 00:00:00 GMT")]);
        let cc = ResponseDirectives::default();
        let ok = StatusCode::OK;
        let got = freshness_lifetime(ok, &h, &cc, t(0), HeuristicPolicy::default());
        assert_eq!(got, secs(86_400));
        let huge = HeuristicPolicy {
            fraction_percent: u32::MAX,
            max: Duration::MAX,
        };
        assert_eq!(freshness_lifetime(ok, &h, &cc, t(0), huge), secs(1 << 31));
        let none = HeuristicPolicy {
            fraction_percent: 0,
            max: Duration::MAX,
        };
        assert_eq!(freshness_lifetime(ok, &h, &cc, t(0), none), Duration::ZERO);
        let far = hm(&[("expires", b"Fri, 31 Dec 9999 23:59:59 GMT")]);
        let got = freshness_lifetime(ok, &far, &cc, t(0), none);
        assert_eq!(got, secs(1 << 31));
    }

    #[test]
    fn corrected_initial_age_table() {
        let d = date(100);
        // (headers, request_time, response_time, expected secs)
        let cases: &[(Pairs, u64, u64, u64)] = &[
            (&[("date", d.as_bytes())], 100, 100, 0),
            (&[("date", d.as_bytes())], 100, 130, 30),
            (&[("date", d.as_bytes()), ("age", b"50")], 100, 110, 60),
            (&[("date", d.as_bytes()), ("age", b"5")], 100, 140, 45),
            (&[("date", d.as_bytes()), ("age", b"5")], 139, 140, 40),
            (&[("age", b"20")], 100, 103, 23),
            (&[("age", b"20, 90")], 100, 100, 20),
            (&[("age", b"20"), ("age", b"90")], 100, 100, 20),
            (&[("age", b"-20")], 100, 100, 0),
            (&[("age", b"abc")], 100, 102, 2),
            (&[("age", b"\xff")], 100, 100, 0),
            (&[("age", b" 7 ")], 100, 100, 7),
            (&[("age", b"99999999999999999999999")], 100, 100, 1 << 31),
            // Date in the future of response_time: apparent age 0.
            (&[("date", d.as_bytes())], 0, 50, 50),
            (&[("date", b"garbage")], 10, 60, 50),
            // Request after response (clock skew): no delay.
            (&[], 200, 100, 0),
        ];
        for (pairs, rq, rs, want) in cases {
            let got = corrected_initial_age(&hm(pairs), t(*rq), t(*rs));
            assert_eq!(got, secs(*want), "{pairs:?}");
        }
    }

    #[test]
    fn current_age_table() {
        let cases: &[(Duration, SystemTime, SystemTime, Duration)] = &[
            (secs(10), t(100), t(150), secs(60)),
            (secs(10), t(100), t(50), secs(10)),
            (Duration::MAX, t(0), t(100), Duration::MAX),
            (Duration::ZERO, UNIX_EPOCH, t(0), secs(1_700_000_000)),
        ];
        for (cia, rs, now, want) in cases {
            assert_eq!(current_age(*cia, *rs, *now), *want);
        }
    }

    #[test]
    fn heuristically_cacheable_codes() {
        for code in 100..=999 {
            let status = StatusCode::from_u16(code).unwrap();
            let want = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501].contains(&code);
            assert_eq!(is_heuristically_cacheable(status), want, "{code}");
        }
    }

    #[test]
    fn freshness_and_ttl() {
        let ms = Duration::from_millis;
        let cases: &[(Duration, Duration, Freshness, i64)] = &[
            (
                secs(60),
                secs(10),
                Freshness::Fresh {
                    remaining: secs(50),
                },
                50,
            ),
            (
                secs(60),
                secs(60),
                Freshness::Stale { by: Duration::ZERO },
                0,
            ),
            (secs(60), secs(75), Freshness::Stale { by: secs(15) }, -15),
            (
                Duration::ZERO,
                Duration::ZERO,
                Freshness::Stale { by: Duration::ZERO },
                0,
            ),
            (
                ms(1500),
                ms(1000),
                Freshness::Fresh { remaining: ms(500) },
                0,
            ),
            (ms(1000), ms(1500), Freshness::Stale { by: ms(500) }, -1),
            (
                Duration::MAX,
                Duration::ZERO,
                Freshness::Fresh {
                    remaining: Duration::MAX,
                },
                i64::MAX,
            ),
            (
                Duration::ZERO,
                Duration::MAX,
                Freshness::Stale { by: Duration::MAX },
                -i64::MAX,
            ),
        ];
        for (lifetime, age, want, ttl) in cases {
            let got = freshness(*lifetime, *age);
            assert_eq!(got, *want, "{lifetime:?} {age:?}");
            assert_eq!(got.ttl_secs(), *ttl, "{lifetime:?} {age:?}");
        }
    }

    fn rq(cc: &str) -> RequestDirectives {
        RequestDirectives::parse(&hm(&[("cache-control", cc.as_bytes())]))
    }

    fn rs(cc: &str) -> ResponseDirectives {
        ResponseDirectives::parse(&hm(&[("cache-control", cc.as_bytes())]))
    }

    #[test]
    fn reuse_table() {
        use Reuse::*;
        let fresh = Freshness::Fresh {
            remaining: secs(30),
        };
        let stale = Freshness::Stale { by: secs(10) };
        // (freshness, current_age, request cc, response cc, expected)
        let cases: &[(Freshness, u64, &str, &str, Reuse)] = &[
            (fresh, 30, "", "max-age=60", Fresh),
            (fresh, 30, "no-cache", "max-age=60", Revalidate),
            (fresh, 30, "", "max-age=60, no-cache", Revalidate),
            (fresh, 30, "", "max-age=60, no-cache=\"set-cookie\"", Fresh),
            (fresh, 30, "max-age=30", "max-age=60", Fresh),
            (fresh, 30, "max-age=29", "max-age=60", Revalidate),
            (fresh, 30, "max-age=0", "max-age=60", Revalidate),
            (fresh, 30, "min-fresh=30", "max-age=60", Fresh),
            (fresh, 30, "min-fresh=31", "max-age=60", Revalidate),
            (stale, 70, "", "max-age=60", Revalidate),
            (stale, 70, "max-stale", "max-age=60", ServeStale),
            (stale, 70, "max-stale=10", "max-age=60", ServeStale),
            (stale, 70, "max-stale=9", "max-age=60", Revalidate),
            (stale, 70, "max-stale=bad", "max-age=60", Revalidate),
            (
                stale,
                70,
                "max-stale",
                "max-age=60, must-revalidate",
                Revalidate,
            ),
            (
                stale,
                70,
                "max-stale",
                "max-age=60, proxy-revalidate",
                Revalidate,
            ),
            (stale, 70, "max-stale", "s-maxage=60", Revalidate),
            (stale, 70, "max-stale", "max-age=60, no-cache", Revalidate),
            (stale, 70, "max-stale, max-age=69", "max-age=60", Revalidate),
            (
                stale,
                70,
                "max-stale, min-fresh=1",
                "max-age=60",
                Revalidate,
            ),
            (
                stale,
                70,
                "max-stale, min-fresh=0",
                "max-age=60",
                ServeStale,
            ),
            (
                stale,
                70,
                "max-stale",
                "max-age=60, stale-while-revalidate=99",
                ServeStale,
            ),
        ];
        for (f, age, req_cc, resp_cc, want) in cases {
            let got = reuse(*f, secs(*age), &rq(req_cc), &rs(resp_cc));
            assert_eq!(got, *want, "req {req_cc:?} resp {resp_cc:?}");
        }
    }

    #[test]
    fn stale_while_revalidate_table() {
        let fresh = Freshness::Fresh { remaining: secs(1) };
        let stale = Freshness::Stale { by: secs(10) };
        let cases: &[(Freshness, &str, &str, bool)] = &[
            (stale, "", "max-age=60, stale-while-revalidate=10", true),
            (stale, "", "max-age=60, stale-while-revalidate=9", false),
            (stale, "", "s-maxage=60, stale-while-revalidate=30", true),
            (stale, "", "max-age=60", false),
            (fresh, "", "max-age=60, stale-while-revalidate=30", false),
            (
                stale,
                "",
                "max-age=60, stale-while-revalidate=30, must-revalidate",
                false,
            ),
            (
                stale,
                "",
                "max-age=60, stale-while-revalidate=30, proxy-revalidate",
                false,
            ),
            (
                stale,
                "",
                "max-age=60, stale-while-revalidate=30, no-cache",
                false,
            ),
            (
                stale,
                "no-cache",
                "max-age=60, stale-while-revalidate=30",
                false,
            ),
            (
                stale,
                "max-age=5",
                "max-age=60, stale-while-revalidate=30",
                false,
            ),
            (
                stale,
                "min-fresh=5",
                "max-age=60, stale-while-revalidate=30",
                false,
            ),
        ];
        for (f, req_cc, resp_cc, want) in cases {
            let got = may_serve_stale_while_revalidate(*f, secs(70), &rq(req_cc), &rs(resp_cc));
            assert_eq!(got, *want, "req {req_cc:?} resp {resp_cc:?}");
        }
    }

    #[test]
    fn stale_if_error_table() {
        let fresh = Freshness::Fresh { remaining: secs(1) };
        let stale = Freshness::Stale { by: secs(100) };
        let cases: &[(Freshness, &str, &str, bool)] = &[
            (stale, "", "max-age=1, stale-if-error=100", true),
            (stale, "", "max-age=1, stale-if-error=99", false),
            (stale, "stale-if-error=100", "max-age=1", true),
            (
                stale,
                "stale-if-error=1",
                "max-age=1, stale-if-error=300",
                true,
            ),
            (stale, "", "max-age=1", false),
            (stale, "", "s-maxage=1, stale-if-error=300", true),
            (
                stale,
                "",
                "max-age=1, stale-if-error=300, must-revalidate",
                false,
            ),
            (stale, "stale-if-error=300", "max-age=1, no-cache", false),
            (fresh, "", "max-age=1, stale-if-error=300", false),
        ];
        for (f, req_cc, resp_cc, want) in cases {
            let got = may_serve_stale_if_error(*f, &rq(req_cc), &rs(resp_cc));
            assert_eq!(got, *want, "req {req_cc:?} resp {resp_cc:?}");
        }
    }

    #[test]
    fn stale_when_disconnected_table() {
        let fresh = Freshness::Fresh { remaining: secs(1) };
        let stale = Freshness::Stale { by: secs(100) };
        // (freshness, response Cache-Control, the site's window, allowed)
        let cases: &[(Freshness, &str, Option<u64>, bool)] = &[
            (stale, "max-age=1", Some(100), true),
            (stale, "max-age=1", Some(99), false),
            (stale, "max-age=1", None, false),
            (fresh, "max-age=1", Some(100), false),
            (stale, "max-age=1, must-revalidate", Some(86_400), false),
            (stale, "max-age=1, proxy-revalidate", Some(86_400), false),
            (stale, "s-maxage=1", Some(86_400), false),
            (stale, "max-age=1, no-cache", Some(86_400), false),
            (
                stale,
                "max-age=1, no-cache=\"set-cookie\"",
                Some(86_400),
                true,
            ),
        ];
        for (f, resp_cc, window, want) in cases {
            let mut d = rs(resp_cc);
            d.stale_when_disconnected = *window;
            assert_eq!(
                may_serve_stale_when_disconnected(*f, &d),
                *want,
                "{resp_cc:?} {window:?}"
            );
        }
    }
}
