//! Byte-range requests served from a stored full response (RFC 9110 §14).
//!
//! Serving the whole representation is always a correct answer to a Range
//! request (§14.2), so anything unusual — other units, malformed syntax,
//! suspiciously many ranges — degrades to `Full` instead of an error. Only a
//! well-formed but impossible range becomes 416.
//!
//! Several ranges are answered with one `multipart/byteranges` body
//! (§14.6). The requested spans are sorted and merged first: §14.2 allows
//! it, and it means a request can never make us send more bytes than the
//! representation holds (the overlapping-range amplification attack).

use bytes::Bytes;
use http::HeaderValue;

/// RFC 9110 §14.2 lets a server ignore a Range "with many small ranges";
/// past this many members we do, which bounds the work and the part-header
/// overhead one request can cause.
pub(crate) const MAX_RANGES: usize = 32;

/// How to answer a GET that may carry a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// 200 with the whole representation.
    Full,
    /// 206 with bytes `start..=end_inclusive` (already clamped to the length).
    Partial { start: u64, end_inclusive: u64 },
    /// 206 `multipart/byteranges` (RFC 9110 §14.6) with two or more spans,
    /// each within the length, ascending, neither overlapping nor adjacent.
    Multi(Vec<ByteSpan>),
    /// 416 Range Not Satisfiable (RFC 9110 §15.5.17).
    Unsatisfiable,
}

/// Bytes `start..=end_inclusive` of a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSpan {
    pub(crate) start: u64,
    pub(crate) end_inclusive: u64,
}

/// Interprets `Range` for a representation of `len` bytes.
pub(crate) fn parse_range(header: Option<&HeaderValue>, len: u64) -> RangeRequest {
    let Some(specs) = header.and_then(byte_range_set) else {
        // RFC 9110 §14.2: a server MAY ignore Range; doing so for anything we
        // do not handle is always correct.
        return RangeRequest::Full;
    };
    resolve_all(&specs, len)
}

/// A syntactically valid single range-spec (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// first-pos "-" [ last-pos ]
    Int { first: u64, last: Option<u64> },
    /// "-" suffix-length
    Suffix(u64),
}

/// `bytes=<range-set>` with 1..=MAX_RANGES members, or `None` for anything
/// else (other units, an invalid member, too many members).
fn byte_range_set(value: &HeaderValue) -> Option<Vec<Spec>> {
    let value = value.to_str().ok()?;
    let (unit, set) = value.split_once('=')?;
    // RFC 9110 §14.1: range units are case-insensitive.
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // RFC 9110 §5.6.1: empty list elements don't count.
    for member in set.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        // RFC 9110 §14.2: many small ranges may be ignored; stop counting
        // (and parsing) as soon as we know we will.
        if specs.len() == MAX_RANGES {
            return None;
        }
        // RFC 9110 §14.1.1: one invalid range-spec makes the whole
        // ranges-specifier invalid, and §14.2 lets us ignore it.
        specs.push(parse_spec(member)?);
    }
    (!specs.is_empty()).then_some(specs)
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

/// RFC 9110 §14.1.2: satisfiability of the whole set, then merging.
fn resolve_all(specs: &[Spec], len: u64) -> RangeRequest {
    let Some(last_byte) = len.checked_sub(1) else {
        // RFC 9110 §14.1.1: with zero length only a non-zero suffix is
        // satisfiable, and its answer is the (empty) whole representation.
        return if specs.iter().any(|s| matches!(s, Spec::Suffix(n) if *n > 0)) {
            RangeRequest::Full
        } else {
            RangeRequest::Unsatisfiable
        };
    };
    // RFC 9110 §14.1.2: the set is satisfiable if any member is; the
    // unsatisfiable members are simply not sent.
    let mut spans: Vec<ByteSpan> = specs
        .iter()
        .filter_map(|&spec| resolve(spec, len, last_byte))
        .collect();
    // RFC 9110 §14.2: a server MAY coalesce ranges and send them in any
    // order; ascending, merged spans also cap the answer at `len` bytes.
    spans.sort_unstable_by_key(|s| s.start);
    let mut merged: Vec<ByteSpan> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            // Overlapping or adjacent (next start ≤ previous end + 1).
            Some(prev) if span.start <= prev.end_inclusive.saturating_add(1) => {
                prev.end_inclusive = prev.end_inclusive.max(span.end_inclusive);
            }
            _ => merged.push(span),
        }
    }
    match merged.as_slice() {
        [] => RangeRequest::Unsatisfiable,
        [one] => RangeRequest::Partial {
            start: one.start,
            end_inclusive: one.end_inclusive,
        },
        _ => RangeRequest::Multi(merged),
    }
}

/// One member against a non-empty representation; `None` = unsatisfiable.
fn resolve(spec: Spec, len: u64, last_byte: u64) -> Option<ByteSpan> {
    match spec {
        // RFC 9110 §14.1.2: suffix-length 0 is unsatisfiable; a suffix longer
        // than the representation selects all of it.
        Spec::Suffix(0) => None,
        Spec::Suffix(n) => Some(ByteSpan {
            start: len.saturating_sub(n),
            end_inclusive: last_byte,
        }),
        // RFC 9110 §14.1.2: first-pos must be below the length; last-pos
        // beyond it (or absent) means "to the end".
        Spec::Int { first, .. } if first >= len => None,
        Spec::Int { first, last } => Some(ByteSpan {
            start: first,
            end_inclusive: last.map_or(last_byte, |l| l.min(last_byte)),
        }),
    }
}

/// A `multipart/byteranges` boundary (RFC 2046 §5.1.1: 1..70 `bchars`):
/// `outpost-` and the seed as 16 hex digits. Only a seed the client cannot
/// guess makes the boundary unlikely to occur in a (possibly
/// attacker-supplied) stored body, so pass a random one per response.
pub(crate) fn boundary(seed: u64) -> String {
    format!("outpost-{seed:016x}")
}

/// One piece of a ranged answer: bytes of its own (multipart delimiters and part headers) or a
/// span of the representation, cut from the body when its bytes are at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(Bytes),
    Span(ByteSpan),
}

/// The pieces of the `multipart/byteranges` body (RFC 9110 §14.6) for `spans` of a
/// representation of `len` bytes, in order, plus its total length (for Content-Length).
///
/// Each part is a small header followed by its span. The first delimiter has no leading CRLF
/// (the body starts `--BOUNDARY`, as in the §14.6 example; RFC 2046 §5.1.1 allows either);
/// every later one is `\r\n--BOUNDARY`, and the body ends with `\r\n--BOUNDARY--\r\n`. The
/// response's own Content-Type must be `multipart/byteranges; boundary=BOUNDARY`.
///
/// Spans come from [`parse_range`] and so lie within `len`, ascending; any that do not are
/// clamped, skipped when they start past the end, and sorted and merged, rather than
/// panicking, so a [`RangeCutter`] can always cut them in one pass. If no span survives
/// there are no parts and the result is only the close delimiter, which the caller should not
/// send.
pub(crate) fn multipart_plan(
    spans: &[ByteSpan],
    len: u64,
    content_type: Option<&HeaderValue>,
    boundary: &str,
) -> (Vec<Piece>, u64) {
    let mut pieces = Vec::with_capacity(spans.len() * 2 + 1);
    for (i, span) in within(spans, len).into_iter().enumerate() {
        let mut head = Vec::with_capacity(96 + boundary.len());
        if i > 0 {
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"--");
        head.extend_from_slice(boundary.as_bytes());
        head.extend_from_slice(b"\r\n");
        // RFC 9110 §14.6: each part carries the representation's Content-Type (when it has
        // one) and its own Content-Range.
        if let Some(ct) = content_type {
            head.extend_from_slice(b"Content-Type: ");
            head.extend_from_slice(ct.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        let (start, end) = (span.start, span.end_inclusive);
        head.extend_from_slice(
            format!("Content-Range: bytes {start}-{end}/{len}\r\n\r\n").as_bytes(),
        );
        pieces.push(Piece::Literal(Bytes::from(head)));
        pieces.push(Piece::Span(span));
    }
    let close = if pieces.is_empty() { "" } else { "\r\n" };
    pieces.push(Piece::Literal(Bytes::from(format!(
        "{close}--{boundary}--\r\n"
    ))));
    let total = pieces.iter().map(Piece::len).fold(0, u64::saturating_add);
    (pieces, total)
}

impl Piece {
    /// Bytes it adds to the answer.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Piece::Literal(bytes) => bytes.len() as u64,
            Piece::Span(span) => span.end_inclusive - span.start + 1,
        }
    }
}

/// `spans` clamped to a representation of `len` bytes, ascending and merged.
fn within(spans: &[ByteSpan], len: u64) -> Vec<ByteSpan> {
    let Some(last_byte) = len.checked_sub(1) else {
        // An empty body has no byte any span could name.
        return Vec::new();
    };
    let mut kept: Vec<ByteSpan> = spans
        .iter()
        .filter(|s| s.start <= last_byte && s.start <= s.end_inclusive)
        .map(|s| ByteSpan {
            start: s.start,
            end_inclusive: s.end_inclusive.min(last_byte),
        })
        .collect();
    kept.sort_unstable_by_key(|s| s.start);
    let mut merged: Vec<ByteSpan> = Vec::with_capacity(kept.len());
    for span in kept {
        match merged.last_mut() {
            Some(prev) if span.start <= prev.end_inclusive => {
                prev.end_inclusive = prev.end_inclusive.max(span.end_inclusive);
            }
            _ => merged.push(span),
        }
    }
    merged
}

/// The `multipart/byteranges` body of `spans` cut from a whole `body`, as chunks to send in
/// order, plus its total length: [`multipart_plan`] fed to a [`RangeCutter`] at once, as a
/// stored entry is (the fuzz target and the tests check the layout through it).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn multipart_byteranges(
    spans: &[ByteSpan],
    body: &Bytes,
    content_type: Option<&HeaderValue>,
    boundary: &str,
) -> (Vec<Bytes>, u64) {
    let (pieces, total) = multipart_plan(spans, body.len() as u64, content_type, boundary);
    (RangeCutter::new(pieces).feed(body), total)
}

/// Cuts the pieces of a ranged answer out of a body read in order, one chunk at a time,
/// without copying: a span comes out as slices of the chunks it falls in, so a range of an
/// object still arriving from upstream is sent as its bytes arrive, and a range of a stored
/// body is the one chunk fed.
///
/// Spans must be ascending and apart (as [`parse_range`] and [`multipart_plan`] give them); a
/// span whose bytes have gone by already is skipped, never a panic.
#[derive(Debug)]
pub(crate) struct RangeCutter {
    pieces: std::collections::VecDeque<Piece>,
    /// Bytes of the body fed so far.
    offset: u64,
}

impl RangeCutter {
    pub(crate) fn new(pieces: Vec<Piece>) -> Self {
        Self {
            pieces: pieces.into(),
            offset: 0,
        }
    }

    /// What of the answer is ready once `chunk`, the next bytes of the body, is known.
    pub(crate) fn feed(&mut self, chunk: &Bytes) -> Vec<Bytes> {
        let chunk_start = self.offset;
        let chunk_end = chunk_start + chunk.len() as u64;
        self.offset = chunk_end;
        let mut ready = Vec::new();
        while let Some(piece) = self.pieces.front_mut() {
            match piece {
                Piece::Literal(bytes) => {
                    ready.push(std::mem::take(bytes));
                    self.pieces.pop_front();
                }
                Piece::Span(span) if span.start >= chunk_end => break,
                Piece::Span(span) if span.end_inclusive < chunk_start => {
                    self.pieces.pop_front();
                }
                Piece::Span(span) => {
                    // Both ends lie within the chunk now, so the casts cannot truncate.
                    let from = (span.start.max(chunk_start) - chunk_start) as usize;
                    let to = (span.end_inclusive.min(chunk_end - 1) - chunk_start) as usize;
                    ready.push(chunk.slice(from..=to));
                    if span.end_inclusive < chunk_end {
                        self.pieces.pop_front();
                    } else {
                        span.start = chunk_end;
                        break;
                    }
                }
            }
        }
        ready
    }

    /// Whether every piece has been cut: the rest of the body is not needed.
    pub(crate) fn is_done(&self) -> bool {
        self.pieces.is_empty()
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

    fn s(start: u64, end_inclusive: u64) -> ByteSpan {
        ByteSpan {
            start,
            end_inclusive,
        }
    }

    fn m(spans: &[(u64, u64)]) -> RangeRequest {
        Multi(spans.iter().map(|&(a, b)| s(a, b)).collect())
    }

    fn many(n: usize) -> Vec<u8> {
        let members: Vec<String> = (0..n).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        format!("bytes={}", members.join(",")).into_bytes()
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
        check(cases);
    }

    #[test]
    fn parse_multiple_ranges_table() {
        let m32 = many(32);
        let m33 = many(33);
        let all32: Vec<(u64, u64)> = (0..32).map(|i| (i * 2, i * 2)).collect();
        let cases: &[(Option<&[u8]>, u64, RangeRequest)] = &[
            (Some(b"bytes=0-9, 20-29"), 100, m(&[(0, 9), (20, 29)])),
            (Some(b"bytes=20-29,0-9"), 100, m(&[(0, 9), (20, 29)])),
            (Some(b"bytes=0-9,,\t,20-29,"), 100, m(&[(0, 9), (20, 29)])),
            (Some(b"bytes=0-9,-10"), 100, m(&[(0, 9), (90, 99)])),
            (
                Some(b"bytes=0-0,2-2,4-"),
                100,
                m(&[(0, 0), (2, 2), (4, 99)]),
            ),
            // Duplicates, overlaps and adjacency coalesce (§14.2).
            (Some(b"bytes=0-9,0-9"), 100, p(0, 9)),
            (Some(b"bytes=0-9,5-14"), 100, p(0, 14)),
            (Some(b"bytes=0-9,10-19"), 100, p(0, 19)),
            (Some(b"bytes=0-9,11-19"), 100, m(&[(0, 9), (11, 19)])),
            (Some(b"bytes=10-19,0-50"), 100, p(0, 50)),
            (Some(b"bytes=0-,0-,0-,0-"), 100, p(0, 99)),
            (Some(b"bytes=-1,98-,0-0"), 100, m(&[(0, 0), (98, 99)])),
            (
                Some(b"bytes=50-60,0-9,55-70,9-10"),
                100,
                m(&[(0, 10), (50, 70)]),
            ),
            // Unsatisfiable members are dropped; all of them → 416.
            (Some(b"bytes=0-9,200-300"), 100, p(0, 9)),
            (Some(b"bytes=200-300,-0,5-"), 100, p(5, 99)),
            (Some(b"bytes=200-300,-0"), 100, Unsatisfiable),
            // One invalid member invalidates the whole header.
            (Some(b"bytes=0-9,x"), 100, Full),
            (Some(b"bytes=0-9,9-0"), 100, Full),
            (Some(b"bytes=0-9,20-29,-"), 100, Full),
            (Some(b"bytes=0-9;20-29"), 100, Full),
            // Too many ranges are ignored (§14.2).
            (
                Some(&m32),
                100,
                Multi(all32.iter().map(|&(a, b)| s(a, b)).collect()),
            ),
            (Some(&m33), 100, Full),
            (Some(&m33), 0, Full),
            // Zero length keeps the single-range rules.
            (Some(b"bytes=0-0,-5"), 0, Full),
            (Some(b"bytes=0-0,1-"), 0, Unsatisfiable),
            (Some(b"bytes=-0,-0"), 0, Unsatisfiable),
            // Extremes.
            (
                Some(b"bytes=0-0,18446744073709551614-"),
                u64::MAX,
                m(&[(0, 0), (u64::MAX - 1, u64::MAX - 1)]),
            ),
            (Some(b"bytes=0-99999999999999999999999,5-6"), 100, p(0, 99)),
        ];
        check(cases);
    }

    fn check(cases: &[(Option<&[u8]>, u64, RangeRequest)]) {
        for (raw, len, want) in cases {
            let value = raw.map(|b| HeaderValue::from_bytes(b).unwrap());
            assert_eq!(
                parse_range(value.as_ref(), *len),
                *want,
                "{:?} len={len}",
                raw.map(String::from_utf8_lossy)
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

    #[test]
    fn boundary_is_valid_bchars() {
        for seed in [0, 1, 0xdead_beef, u64::MAX] {
            let b = boundary(seed);
            assert!((1..=70).contains(&b.len()), "{b}");
            // RFC 2046 §5.1.1 bcharsnospace ⊇ ALPHA / DIGIT / "-".
            assert!(
                b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'),
                "{b}"
            );
            // Usable unquoted as a media-type parameter value (a token).
            assert!(HeaderValue::from_str(&format!("multipart/byteranges; boundary={b}")).is_ok());
        }
        assert_eq!(boundary(0xab), "outpost-00000000000000ab");
        assert_ne!(boundary(1), boundary(2));
    }

    /// Parses a multipart/byteranges body back into (headers, data) parts,
    /// checking the delimiter framing on the way.
    fn split_parts(raw: &[u8], boundary: &str) -> Vec<(Vec<String>, Vec<u8>)> {
        let delim = format!("--{boundary}");
        let close = format!("\r\n--{boundary}--\r\n");
        assert!(raw.starts_with(delim.as_bytes()), "no opening delimiter");
        assert!(raw.ends_with(close.as_bytes()), "no close delimiter");
        let inner = &raw[delim.len()..raw.len() - close.len()];
        let sep = format!("\r\n--{boundary}");
        let mut parts = Vec::new();
        let mut rest = inner;
        loop {
            let (part, next) = match find(rest, sep.as_bytes()) {
                Some(i) => (&rest[..i], Some(&rest[i + sep.len()..])),
                None => (rest, None),
            };
            let part = part.strip_prefix(b"\r\n").expect("CRLF after delimiter");
            let h_end = find(part, b"\r\n\r\n").expect("end of part headers");
            let headers = String::from_utf8(part[..h_end].to_vec())
                .unwrap()
                .split("\r\n")
                .map(str::to_owned)
                .collect();
            parts.push((headers, part[h_end + 4..].to_vec()));
            match next {
                Some(n) => rest = n,
                None => return parts,
            }
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn concat(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn multipart_round_trips() {
        let body = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<u8>>());
        let ct = HeaderValue::from_static("text/plain; charset=utf-8");
        let b = boundary(42);
        let cases: &[(&[u8], Option<&HeaderValue>)] = &[
            (b"bytes=0-9,20-29", Some(&ct)),
            (b"bytes=-5,0-0,500-599", None),
            (b"bytes=0-0,2-2,4-4,6-6,8-8,990-", Some(&ct)),
        ];
        for (range, ct) in cases {
            let RangeRequest::Multi(spans) =
                parse_range(Some(&HeaderValue::from_bytes(range).unwrap()), 1000)
            else {
                panic!("{range:?} not multi");
            };
            let (chunks, total) = multipart_byteranges(&spans, &body, *ct, &b);
            let raw = concat(&chunks);
            assert_eq!(raw.len() as u64, total);
            let parts = split_parts(&raw, &b);
            assert_eq!(parts.len(), spans.len(), "{range:?}");
            for ((headers, data), span) in parts.iter().zip(&spans) {
                let (a, e) = (span.start as usize, span.end_inclusive as usize);
                let mut want = Vec::new();
                if let Some(ct) = ct {
                    want.push(format!("Content-Type: {}", ct.to_str().unwrap()));
                }
                want.push(format!("Content-Range: bytes {a}-{e}/1000"));
                assert_eq!(*headers, want, "{range:?}");
                assert_eq!(data.as_slice(), &body[a..=e], "{range:?}");
            }
        }
    }

    #[test]
    fn multipart_is_zero_copy() {
        let body = Bytes::from(vec![7u8; 64]);
        let (chunks, _) = multipart_byteranges(&[s(0, 3), s(10, 20)], &body, None, "b");
        let base = body.as_ptr() as usize;
        let data: Vec<_> = chunks.iter().filter(|c| c.len() > 3 && c[0] == 7).collect();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0].as_ptr() as usize, base);
        assert_eq!(data[1].as_ptr() as usize, base + 10);
    }

    #[test]
    fn multipart_exact_bytes() {
        let body = Bytes::from_static(b"0123456789");
        let ct = HeaderValue::from_static("text/plain");
        let (chunks, total) = multipart_byteranges(&[s(0, 1), s(8, 9)], &body, Some(&ct), "B");
        let want: &[u8] =
            b"--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
            \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\
            \r\n--B--\r\n";
        assert_eq!(concat(&chunks), want);
        assert_eq!(total, want.len() as u64);
    }

    #[test]
    fn multipart_clamps_or_skips_bad_spans() {
        let body = Bytes::from_static(b"0123456789");
        let cases: &[(&[ByteSpan], &[u8])] = &[
            (
                &[s(5, 100), s(10, 12), s(u64::MAX, u64::MAX), s(3, 1)],
                b"--b\r\nContent-Range: bytes 5-9/10\r\n\r\n56789\r\n--b--\r\n",
            ),
            (&[s(20, 30)], b"--b--\r\n"),
            (&[], b"--b--\r\n"),
        ];
        for (spans, want) in cases {
            let (chunks, total) = multipart_byteranges(spans, &body, None, "b");
            assert_eq!(concat(&chunks), *want, "{spans:?}");
            assert_eq!(total, want.len() as u64);
        }
        let (chunks, _) = multipart_byteranges(&[s(0, 0)], &Bytes::new(), None, "b");
        assert_eq!(concat(&chunks), b"--b--\r\n");
    }

    #[test]
    fn a_cutter_gives_the_same_bytes_however_the_body_is_chunked() {
        let body = Bytes::from((0..=255u8).cycle().take(300).collect::<Vec<u8>>());
        let ct = HeaderValue::from_static("text/plain");
        let plans: Vec<Vec<Piece>> = vec![
            vec![Piece::Span(s(0, 0))],
            vec![Piece::Span(s(17, 250))],
            vec![Piece::Span(s(299, 299))],
            multipart_plan(&[s(0, 9), s(100, 100), s(250, 299)], 300, Some(&ct), "b").0,
        ];
        for pieces in plans {
            let (want, _) = {
                let mut whole = RangeCutter::new(pieces.clone());
                (concat(&whole.feed(&body)), whole.is_done())
            };
            for size in [1, 2, 7, 64, 299, 300] {
                let mut cutter = RangeCutter::new(pieces.clone());
                let mut got = Vec::new();
                let mut chunks = 0;
                for chunk in body.chunks(size) {
                    got.extend(concat(&cutter.feed(&body.slice_ref(chunk))));
                    chunks += 1;
                    if cutter.is_done() {
                        break;
                    }
                }
                assert!(cutter.is_done(), "{pieces:?} in chunks of {size}");
                assert_eq!(got, want, "{pieces:?} in chunks of {size}");
                // Done as soon as the last span is complete: the rest is never read.
                let last = pieces.iter().rev().find_map(|p| match p {
                    Piece::Span(span) => Some(span.end_inclusive as usize),
                    Piece::Literal(_) => None,
                });
                assert_eq!(chunks, last.map_or(1, |end| end / size + 1), "{size}");
            }
        }
    }

    #[test]
    fn a_cutter_skips_spans_gone_by_and_waits_for_ones_to_come() {
        let mut cutter = RangeCutter::new(vec![
            Piece::Span(s(5, 6)),
            Piece::Literal(Bytes::from_static(b"|")),
            Piece::Span(s(2, 3)),
            Piece::Span(s(8, 9)),
        ]);
        assert!(cutter.feed(&Bytes::from_static(b"0123")).is_empty());
        assert_eq!(concat(&cutter.feed(&Bytes::new())), b"");
        assert_eq!(concat(&cutter.feed(&Bytes::from_static(b"4567"))), b"56|");
        assert!(!cutter.is_done());
        assert_eq!(concat(&cutter.feed(&Bytes::from_static(b"89"))), b"89");
        assert!(cutter.is_done());
    }

    use crate::cache::fuzz::Rng;

    #[test]
    fn random_ranges_never_panic_and_keep_invariants() {
        const FRAGMENTS: &[&[u8]] = &[
            b"bytes=",
            b"0",
            b"1",
            b"9",
            b"-",
            b",",
            b" ",
            b"\t",
            b"=",
            b"\xff",
            b"18446744073709551615",
            b"99999999999999999999",
            b"5-",
            b"-5",
            b"0-0",
            b"x",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut raw = Vec::new();
            for _ in 0..rng.next(48) {
                raw.extend_from_slice(FRAGMENTS[rng.next(FRAGMENTS.len())]);
            }
            let value = HeaderValue::from_bytes(&raw).unwrap();
            let len = [0, 1, 2, 10, 1000, u64::MAX][rng.next(6)];
            let spans = match parse_range(Some(&value), len) {
                Full | Unsatisfiable => continue,
                Partial {
                    start,
                    end_inclusive,
                } => vec![s(start, end_inclusive)],
                Multi(spans) => {
                    assert!((2..=MAX_RANGES).contains(&spans.len()), "{raw:?}");
                    spans
                }
            };
            for w in spans.windows(2) {
                assert!(w[0].end_inclusive.saturating_add(1) < w[1].start, "{raw:?}");
            }
            for span in &spans {
                assert!(span.start <= span.end_inclusive && span.end_inclusive < len);
            }
            if len <= 1000 {
                let body = Bytes::from(vec![b'a'; len as usize]);
                let (chunks, total) = multipart_byteranges(&spans, &body, None, "b");
                assert_eq!(concat(&chunks).len() as u64, total);
            }
        }
        // Arbitrary spans against arbitrary bodies.
        let edges = [0, 1, 2, 9, 10, 11, u64::MAX - 1, u64::MAX];
        for _ in 0..5_000 {
            let body = Bytes::from(vec![0u8; rng.next(12)]);
            let spans: Vec<ByteSpan> = (0..rng.next(5))
                .map(|_| s(edges[rng.next(edges.len())], edges[rng.next(edges.len())]))
                .collect();
            let (chunks, total) = multipart_byteranges(&spans, &body, None, "b");
            assert_eq!(concat(&chunks).len() as u64, total);
        }
    }
}
