//! `http_date`: HTTP-date parsing (RFC 9110 §5.6.7) and the ages and lifetimes the cache
//! computes from `Date`, `Expires`, `Last-Modified` and `Age` (RFC 9111 §4.2).
//!
//! Input: a date value up to the first newline, then a header block (main field `Date`).

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderValue, Method, StatusCode, header};

use crate::cache::control::{DELTA_SECONDS_MAX, ResponseDirectives};
use crate::cache::freshness::{self, HeuristicPolicy};
use crate::cache::{conditional, date};

pub fn http_date(data: &[u8]) {
    let (value, block) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[data.len()..]),
    };
    if let Ok(value) = HeaderValue::from_bytes(value) {
        check_date(&value);
    }

    let headers = super::header_block(block, &header::DATE);
    for name in [header::DATE, header::EXPIRES, header::LAST_MODIFIED] {
        for value in headers.get_all(name) {
            check_date(value);
        }
    }
    let max = Duration::from_secs(DELTA_SECONDS_MAX);
    let cc = ResponseDirectives::parse(&headers);
    let t = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let times = [t(0), t(784_111_777), t(1_700_000_000), t(253_402_300_799)];
    let policies = [
        HeuristicPolicy::default(),
        HeuristicPolicy {
            fraction_percent: u32::MAX,
            max: Duration::MAX,
        },
    ];
    for (i, &response_time) in times.iter().enumerate() {
        let request_time = times[(i + 1) % times.len()];
        for status in [
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            for policy in policies {
                let life =
                    freshness::freshness_lifetime(status, &headers, &cc, response_time, policy);
                // RFC 9111 §1.2.2: lifetimes are capped at 2^31 s.
                assert!(life <= max, "lifetime {life:?}");
            }
        }
        let initial = freshness::corrected_initial_age(&headers, request_time, response_time);
        for now in times {
            let age = freshness::current_age(initial, response_time, now);
            assert!(age >= initial, "age went down");
            let _ = freshness::freshness(max, age).ttl_secs();
        }
    }
    // The same block as a conditional request against itself (If-Modified-Since, ETags).
    let _ = conditional::not_modified(&Method::GET, &headers, &headers, NOW());
    let _ = conditional::validators(&headers, NOW());
}

/// The "now" two-digit RFC 850 years are read against (RFC 9110 §5.6.7: at most 50 years
/// ahead).
#[allow(non_snake_case)]
fn NOW() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A parsed date formats and parses back to itself, at whole seconds.
fn check_date(value: &HeaderValue) {
    let Some(parsed) = date::http_date(value, NOW()) else {
        return;
    };
    let since = parsed
        .duration_since(UNIX_EPOCH)
        .expect("no date before 1970");
    assert_eq!(since.subsec_nanos(), 0);
    let formatted = httpdate::fmt_http_date(parsed);
    let again = HeaderValue::from_str(&formatted).expect("formatted date is a header value");
    assert_eq!(
        date::http_date(&again, NOW()),
        Some(parsed),
        "{value:?} → {formatted}"
    );
}
