//! `range`: `Range` parsing (RFC 9110 §14) and the `multipart/byteranges` body built from it.
//!
//! Input: 2 bytes (big-endian) of body length, 8 bytes of a second, huge length, then the
//! `Range` value up to the first newline, then big-endian `u16` pairs used as raw spans.

use bytes::Bytes;
use http::HeaderValue;

use crate::cache::range::{self, ByteSpan, MAX_RANGES, RangeRequest};

pub fn range(data: &[u8]) {
    let Some((small, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Some((big, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let (value, raw_spans) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let header = HeaderValue::from_bytes(value).ok();
    let len = u16::from_be_bytes(*small);
    let body: Bytes = (0..len).map(|i| (i % 251) as u8).collect();

    let answer = range::parse_range(header.as_ref(), u64::from(len));
    check_answer(&answer, u64::from(len));
    match &answer {
        RangeRequest::Partial {
            start,
            end_inclusive,
        } => {
            let (Ok(start), Ok(end)) = (usize::try_from(*start), usize::try_from(*end_inclusive))
            else {
                panic!("span beyond usize");
            };
            assert_eq!(body.slice(start..=end).len(), end - start + 1);
        }
        RangeRequest::Multi(spans) => check_multipart(spans, &body, true),
        RangeRequest::Full | RangeRequest::Unsatisfiable => {}
    }

    let huge = u64::from_be_bytes(*big);
    check_answer(&range::parse_range(header.as_ref(), huge), huge);

    // Spans that did not come from `parse_range` are clamped or skipped, never a panic.
    let spans: Vec<ByteSpan> = raw_spans
        .chunks_exact(4)
        .take(MAX_RANGES)
        .map(|c| ByteSpan {
            start: u64::from(u16::from_be_bytes([c[0], c[1]])),
            end_inclusive: u64::from(u16::from_be_bytes([c[2], c[3]])),
        })
        .collect();
    check_multipart(&spans, &body, false);
}

/// Every byte named lies within the representation; several spans are ascending, disjoint,
/// not adjacent (so merged), and together no longer than it.
fn check_answer(answer: &RangeRequest, len: u64) {
    match answer {
        RangeRequest::Partial {
            start,
            end_inclusive,
        } => {
            assert!(
                start <= end_inclusive && *end_inclusive < len,
                "{answer:?} of {len}"
            );
        }
        RangeRequest::Multi(spans) => {
            assert!(spans.len() >= 2 && spans.len() <= MAX_RANGES, "{answer:?}");
            let mut total: u64 = 0;
            for (i, s) in spans.iter().enumerate() {
                assert!(
                    s.start <= s.end_inclusive && s.end_inclusive < len,
                    "{s:?} of {len}"
                );
                if let Some(prev) = i.checked_sub(1).map(|p| spans[p]) {
                    assert!(s.start > prev.end_inclusive + 1, "{prev:?} then {s:?}");
                }
                total += s.end_inclusive - s.start + 1;
            }
            assert!(total <= len, "{total} bytes of {len}");
        }
        RangeRequest::Full | RangeRequest::Unsatisfiable => {}
    }
}

/// The body is `--B` parts `\r\n--B--\r\n`; each part's Content-Range lies within the body
/// and its payload is exactly those bytes. `exact`: spans came from `parse_range`, so every
/// one of them is a part, in order.
fn check_multipart(spans: &[ByteSpan], body: &Bytes, exact: bool) {
    let boundary = range::boundary(0x0123_4567_89ab_cdef);
    let content_type = HeaderValue::from_static("text/plain");
    let (chunks, total) = range::multipart_byteranges(spans, body, Some(&content_type), &boundary);
    assert_eq!(total, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
    let (close, parts) = chunks.split_last().expect("a close delimiter");
    assert_eq!(parts.len() % 2, 0, "head and payload per part");
    if exact {
        assert_eq!(parts.len(), spans.len() * 2);
    }
    let want_close = if parts.is_empty() {
        format!("--{boundary}--\r\n")
    } else {
        format!("\r\n--{boundary}--\r\n")
    };
    assert_eq!(close[..], *want_close.as_bytes());
    for (i, part) in parts.chunks_exact(2).enumerate() {
        let head = std::str::from_utf8(&part[0]).expect("ASCII part head");
        let lead = if i == 0 { "" } else { "\r\n" };
        let opening = format!("{lead}--{boundary}\r\nContent-Type: text/plain\r\n");
        assert!(head.starts_with(&opening), "{head:?}");
        let range = head
            .strip_prefix(&opening)
            .and_then(|h| h.strip_prefix("Content-Range: bytes "))
            .and_then(|h| h.strip_suffix("\r\n\r\n"))
            .unwrap_or_else(|| panic!("{head:?}"));
        let (first, rest) = range.split_once('-').expect("first-last");
        let (last, len) = rest.split_once('/').expect("/length");
        let parse = |s: &str| s.parse::<usize>().unwrap_or_else(|_| panic!("{head:?}"));
        let (first, last, len) = (parse(first), parse(last), parse(len));
        assert_eq!(len, body.len());
        assert!(first <= last && last < len, "{head:?}");
        assert_eq!(part[1], body.slice(first..=last), "{head:?}");
        if exact {
            assert_eq!(
                (first as u64, last as u64),
                (spans[i].start, spans[i].end_inclusive)
            );
        }
    }
}
