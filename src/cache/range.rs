//! Single byte-range requests served from a stored full response
//! (RFC 9110 §14).
//!
//! Serving the whole representation is always a correct answer to a Range
//! request (§14.2), so anything unusual — other units, multiple ranges,
//! malformed syntax — degrades to `Full` instead of an error. Only a
//! well-formed but impossible range becomes 416.

use http::HeaderValue;

/// How to answer a GET that may carry a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// 200 with the whole representation.
    Full,
    /// 206 with bytes `start..=end_inclusive` (already clamped to the length).
    Partial { start: u64, end_inclusive: u64 },
    /// 416 Range Not Satisfiable (RFC 9110 §15.5.17).
    Unsatisfiable,
}

/// Interprets `Range` for a representation of `len` bytes.
pub fn parse_range(header: Option<&HeaderValue>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(single_byte_range) else {
        // RFC 9110 §14.2: a server MAY ignore Range; doing so for anything we
        // do not handle is always correct.
        return RangeRequest::Full;
    };
    resolve(spec, len)
}

/// A syntactically valid single range-spec (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// first-pos "-" [ last-pos ]
    Int { first: u64, last: Option<u64> },
    /// "-" suffix-length
    Suffix(u64),
}

/// `bytes=<one range-spec>`, or `None` for anything else.
fn single_byte_range(value: &HeaderValue) -> Option<Spec> {
    let value = value.to_str().ok()?;
    let (unit, set) = value.split_once('=')?;
    // RFC 9110 §14.1: range units are case-insensitive.
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    // RFC 9110 §5.6.1: empty list elements don't count; more than one real
    // range is a multipart answer, which Outpost does not produce.
    let mut members = set.split(',').map(str::trim).filter(|m| !m.is_empty());
    let (Some(member), None) = (members.next(), members.next()) else {
        return None;
    };
    parse_spec(member)
}

fn parse_spec(member: &str) -> Option<Spec> {
    let (first, last) = member.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return digits(last).map(Spec::Suffix);
    }
    let first = digits(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(digits(last)?)
    };
    // RFC 9110 §14.1.1: last-pos < first-pos makes the range-spec invalid.
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(Spec::Int { first, last })
}

/// 1*DIGIT, saturating at u64::MAX (a position that large is past any
/// representation, which is the correct reading).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// RFC 9110 §14.1.2: satisfiability and clamping against the length.
fn resolve(spec: Spec, len: u64) -> RangeRequest {
    let Some(last_byte) = len.checked_sub(1) else {
        // RFC 9110 §14.1.1: with zero length only a non-zero suffix is
        // satisfiable, and its answer is the (empty) whole representation.
        return match spec {
            Spec::Suffix(n) if n > 0 => RangeRequest::Full,
            _ => RangeRequest::Unsatisfiable,
        };
    };
    match spec {
        // RFC 9110 §14.1.2: suffix-length 0 is unsatisfiable; a suffix longer
        // than the representation selects all of it.
        Spec::Suffix(0) => RangeRequest::Unsatisfiable,
        Spec::Suffix(n) => RangeRequest::Partial {
            start: len.saturating_sub(n),
            end_inclusive: last_byte,
        },
        // RFC 9110 §14.1.2: first-pos must be below the length; last-pos
        // beyond it (or absent) means "to the end".
        Spec::Int { first, .. } if first >= len => RangeRequest::Unsatisfiable,
        Spec::Int { first, last } => RangeRequest::Partial {
            start: first,
            end_inclusive: last.map_or(last_byte, |l| l.min(last_byte)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    fn p(start: u64, end_inclusive: u64) -> RangeRequest {
        Partial {
            start,
            end_inclusive,
        }
    }

    #[test]
    fn parse_range_table() {
        let cases: &[(Option<&[u8]>, u64, RangeRequest)] = &[
            (None, 100, Full),
            (Some(b"bytes=0-9"), 100, p(0, 9)),
            (Some(b"bytes=0-0"), 100, p(0, 0)),
            (Some(b"bytes=10-"), 100, p(10, 99)),
            (Some(b"bytes=-10"), 100, p(90, 99)),
            (Some(b"bytes=-100"), 100, p(0, 99)),
            (Some(b"bytes=-1000"), 100, p(0, 99)),
            (Some(b"bytes=50-1000"), 100, p(50, 99)),
            (Some(b"bytes=99-99"), 100, p(99, 99)),
            (Some(b"bytes=100-"), 100, Unsatisfiable),
            (Some(b"bytes=100-200"), 100, Unsatisfiable),
            (Some(b"bytes=-0"), 100, Unsatisfiable),
            (Some(b"bytes=-000"), 100, Unsatisfiable),
            (Some(b"BYTES=0-9"), 100, p(0, 9)),
            (Some(b" bytes = 0 - 9 "), 100, p(0, 9)),
            (Some(b"bytes=\t5-6\t"), 100, p(5, 6)),
            (Some(b"bytes=0-9,"), 100, p(0, 9)),
            (Some(b"bytes=, 0-9"), 100, p(0, 9)),
            (Some(b"bytes=0-9, 20-29"), 100, Full),
            (Some(b"bytes=0-9,0-9"), 100, Full),
            (Some(b"items=0-9"), 100, Full),
            (Some(b"bytes 0-9"), 100, Full),
            (Some(b"bytes="), 100, Full),
            (Some(b"bytes=,"), 100, Full),
            (Some(b"bytes=-"), 100, Full),
            (Some(b"bytes=--5"), 100, Full),
            (Some(b"bytes=5"), 100, Full),
            (Some(b"bytes=9-0"), 100, Full),
            (Some(b"bytes=a-b"), 100, Full),
            (Some(b"bytes=+1-2"), 100, Full),
            (Some(b"bytes=1-2-3"), 100, Full),
            (Some(b"bytes=0x1-2"), 100, Full),
            (Some(b"bytes=\xff-1"), 100, Full),
            (Some(b"bytes==0-1"), 100, Full),
            (Some(b""), 100, Full),
            // Huge numbers saturate instead of overflowing.
            (Some(b"bytes=99999999999999999999999-"), 100, Unsatisfiable),
            (Some(b"bytes=0-99999999999999999999999"), 100, p(0, 99)),
            (Some(b"bytes=-99999999999999999999999"), 100, p(0, 99)),
            (Some(b"bytes=0-"), u64::MAX, p(0, u64::MAX - 1)),
            (Some(b"bytes=-1"), u64::MAX, p(u64::MAX - 1, u64::MAX - 1)),
            // Zero-length representations.
            (Some(b"bytes=0-"), 0, Unsatisfiable),
            (Some(b"bytes=0-0"), 0, Unsatisfiable),
            (Some(b"bytes=-0"), 0, Unsatisfiable),
            (Some(b"bytes=-5"), 0, Full),
            (None, 0, Full),
            (Some(b"bytes=0-0"), 1, p(0, 0)),
        ];
        for (raw, len, want) in cases {
            let value = raw.map(|b| HeaderValue::from_bytes(b).unwrap());
            assert_eq!(
                parse_range(value.as_ref(), *len),
                *want,
                "{raw:?} len={len}"
            );
        }
    }

    #[test]
    fn digits_table() {
        let cases = [
            ("0", Some(0)),
            ("0010", Some(10)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", Some(u64::MAX)),
            ("", None),
            ("-1", None),
            ("1 2", None),
        ];
        for (s, want) in cases {
            assert_eq!(digits(s), want, "{s:?}");
        }
    }
}
