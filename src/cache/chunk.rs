//! Large objects as chunks (RFC 9110 §14, RFC 9111 §3.3): which responses are stored as a
//! manifest plus fixed-size chunks, how a chunk is named and asked for, and whether an
//! upstream's answer to a chunk request belongs to the stored representation.
//!
//! Each chunk is an entry of its own, keyed by the URL, its byte span, the representation's
//! length and its validator, so the ring spreads one large object over every node, and two
//! versions of an object can never share a chunk: the validator is part of every chunk's key
//! and is sent as `If-Range` with every chunk request, so an origin whose representation
//! changed answers 200 (the new whole), which [`check`] refuses, never a 206 of new bytes
//! that would be stitched to old ones.
//!
//! Pure: no I/O, `now` passed in.

use std::time::SystemTime;

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::cache::conditional::if_range_holds;
use crate::cache::content_length;

/// On a hop between nodes: the chunk this request is for, `start-end/total` (end inclusive).
/// Only honoured on a verified hop; the chunk's validator travels as `If-Range`.
///
/// On a hop for a whole object, `manifest`: the asking node reads the chunks itself, so an
/// object stored in chunks is answered with its manifest ([`MANIFEST`]) rather than with
/// bytes the owner would first fetch from the chunks' owners. The answer carries the same
/// value.
pub(crate) const CHUNK_HEADER: HeaderName = HeaderName::from_static("outpost-chunk");

/// [`CHUNK_HEADER`]'s value asking for, and marking, a manifest.
pub(crate) const MANIFEST: HeaderValue = HeaderValue::from_static("manifest");

/// Whether `headers` (a hop's request or answer) say [`MANIFEST`].
pub(crate) fn is_manifest(headers: &HeaderMap) -> bool {
    headers.get(CHUNK_HEADER) == Some(&MANIFEST)
}

/// The chunk layout of one stored representation: `total` bytes in chunks of `size`, all
/// from the representation `validator` names (a strong `ETag`, else a strong `Last-Modified`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkMap {
    pub(crate) total: u64,
    pub(crate) size: u64,
    pub(crate) validator: HeaderValue,
}

/// Bytes `start..=end` of a `total`-byte representation, of the one `validator` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkRequest {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) total: u64,
    pub(crate) validator: HeaderValue,
}

/// Why an upstream's answer to a chunk request cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Another representation: a 200 or 206 with another validator or length.
    Changed,
    /// The same representation, whole: the upstream ignores `Range`.
    Ignored,
    /// The bytes asked for, without the validator that says which representation they are
    /// of (a 206 without the `ETag` its 200 had): the upstream's ranges cannot be trusted to
    /// stitch, so the object is not kept in chunks, as when `Range` is ignored.
    Unvalidated,
    /// A client error (404, 410, 412, 416, ...): the representation the manifest names is
    /// no longer there to be read in ranges.
    Gone,
    /// A 206 of other bytes than asked for, or a server error.
    Wrong,
}

impl ChunkMap {
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.total.div_ceil(self.size)
    }

    /// The chunk holding byte `offset` (which is below `total`).
    pub(crate) fn index_of(&self, offset: u64) -> u64 {
        offset / self.size
    }

    /// Chunk `index` as a request (`index < count()`).
    pub(crate) fn request(&self, index: u64) -> ChunkRequest {
        let start = index * self.size;
        ChunkRequest {
            start,
            end: (start + self.size).min(self.total) - 1,
            total: self.total,
            validator: self.validator.clone(),
        }
    }
}

impl ChunkRequest {
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// `Range` for the upstream.
    pub(crate) fn range(&self) -> HeaderValue {
        value(&format!("bytes={}-{}", self.start, self.end))
    }

    /// [`CHUNK_HEADER`]'s value.
    pub(crate) fn marker(&self) -> HeaderValue {
        value(&format!("{}-{}/{}", self.start, self.end, self.total))
    }

    /// The `Content-Range` a matching 206 carries.
    pub(crate) fn content_range(&self) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, self.total)
    }

    /// The request a peer's [`CHUNK_HEADER`] and `If-Range` name; `None` unless both are
    /// well formed and the span lies within the total.
    pub(crate) fn from_hop(marker: &HeaderValue, if_range: Option<&HeaderValue>) -> Option<Self> {
        let text = marker.to_str().ok()?;
        let (span, total) = text.split_once('/')?;
        let (start, end) = span.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(start) && digits(end) && digits(total)) {
            return None;
        }
        let (start, end, total) = (start.parse().ok()?, end.parse().ok()?, total.parse().ok()?);
        let validator = if_range?.clone();
        (start <= end && end < total).then_some(Self {
            start,
            end,
            total,
            validator,
        })
    }

    /// The chunk's cache key: the object's key, the span, the length and the validator.
    /// `\u{1}` cannot occur in a URL key, so no URL's key is ever a chunk's. The validator is
    /// hex-encoded: a field value may hold bytes that are not UTF-8 (obs-text), and two tags
    /// that differ only there must not name one chunk.
    pub(crate) fn key(&self, url_key: &str) -> String {
        let validator = crate::hex::encode(self.validator.as_bytes());
        format!(
            "{url_key}{SEPARATOR}{}-{}/{}{SEPARATOR}{validator}",
            self.start, self.end, self.total
        )
    }
}

const SEPARATOR: char = '\u{1}';

/// The URL key a chunk key belongs to; `None` for a URL's own key.
pub(crate) fn url_of_chunk(key: &str) -> Option<&str> {
    key.split_once(SEPARATOR).map(|(url, _)| url)
}

/// The prefix every chunk key of `url_key` starts with.
pub(crate) fn chunk_prefix(url_key: &str) -> String {
    format!("{url_key}{SEPARATOR}")
}

/// The validator chunks of this response are asked with: a strong `ETag`, else a
/// `Last-Modified` that is a strong validator (RFC 9110 §13.1.5: `If-Range` only works with
/// those). What the origin's own `If-Range` evaluation will accept, checked the same way.
pub(crate) fn validator(headers: &HeaderMap, now: SystemTime) -> Option<HeaderValue> {
    [header::ETAG, header::LAST_MODIFIED]
        .into_iter()
        .filter_map(|name| headers.get(name))
        .find(|candidate| {
            let mut request = HeaderMap::new();
            request.insert(header::IF_RANGE, (*candidate).clone());
            if_range_holds(&request, headers, now)
        })
        .cloned()
}

/// Whether a storable 200 of `length` bytes is stored as chunks of `size`, and their map: a
/// known length above `above` (and one chunk) and within `max_object`, no `Vary` (one
/// representation per URL, so a chunk key needs no variant), a strong validator, no
/// `Accept-Ranges: none`, and not already partial.
pub(crate) fn plan(
    status: StatusCode,
    headers: &HeaderMap,
    varies: bool,
    (size, above): (u64, u64),
    max_object: u64,
    now: SystemTime,
) -> Option<ChunkMap> {
    let total = content_length(headers)?;
    let no_ranges = headers
        .get_all(header::ACCEPT_RANGES)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"none"));
    if status != StatusCode::OK
        || total <= size.max(above)
        || total > max_object
        || varies
        || no_ranges
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return None;
    }
    Some(ChunkMap {
        total,
        size,
        validator: validator(headers, now)?,
    })
}

/// Whether an upstream's answer to `request` is that chunk of that representation: a 206 with
/// exactly its `Content-Range` and its validator.
pub(crate) fn check(
    request: &ChunkRequest,
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<(), Mismatch> {
    let mut condition = HeaderMap::new();
    condition.insert(header::IF_RANGE, request.validator.clone());
    let same = if_range_holds(&condition, headers, now);
    match status {
        StatusCode::PARTIAL_CONTENT => {
            let range = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok());
            let total = range
                .and_then(|r| r.rsplit_once('/'))
                .map(|(_, t)| t.trim());
            let exact = range.map(str::trim) == Some(request.content_range().as_str());
            if !same && exact && lacks_validator(&request.validator, headers) {
                Err(Mismatch::Unvalidated)
            } else if !same || total != Some(request.total.to_string().as_str()) {
                Err(Mismatch::Changed)
            } else if range.map(str::trim) != Some(request.content_range().as_str()) {
                Err(Mismatch::Wrong)
            } else {
                Ok(())
            }
        }
        StatusCode::OK if same && content_length(headers) == Some(request.total) => {
            Err(Mismatch::Ignored)
        }
        StatusCode::OK => Err(Mismatch::Changed),
        s if s.is_client_error() => Err(Mismatch::Gone),
        _ => Err(Mismatch::Wrong),
    }
}

/// Whether `headers` carry no field of `validator`'s kind: no `ETag` for an entity-tag, no
/// `Last-Modified` for a date.
fn lacks_validator(validator: &HeaderValue, headers: &HeaderMap) -> bool {
    let entity_tag = validator.as_bytes().first().is_some_and(|b| *b == b'"')
        || validator.as_bytes().starts_with(b"W/");
    let field = if entity_tag {
        header::ETAG
    } else {
        header::LAST_MODIFIED
    };
    !headers.contains_key(field)
}

fn value(text: &str) -> HeaderValue {
    // Digits, `-`, `/`, `=` and letters only.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const MIB: u64 = 1 << 20;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn tags_that_differ_only_in_bytes_outside_utf8_name_different_chunks() {
        let chunk = |tag: &[u8]| ChunkRequest {
            start: 0,
            end: 9,
            total: 20,
            validator: HeaderValue::from_bytes(tag).unwrap(),
        };
        let (a, b) = (chunk(b"\"v\xff\""), chunk(b"\"v\xfe\""));
        assert_ne!(a.key("k"), b.key("k"));
        assert_eq!(url_of_chunk(&a.key("k")), Some("k"));
        assert!(a.key("k").starts_with(&chunk_prefix("k")));
    }

    fn big(extra: &[(&str, &str)]) -> HeaderMap {
        let mut fields = vec![("content-length", "67108864")];
        fields.extend_from_slice(extra);
        headers(&fields)
    }

    #[test]
    fn plan_needs_a_length_above_one_chunk_a_strong_validator_and_no_vary() {
        let ok =
            |h: &HeaderMap, varies| plan(StatusCode::OK, h, varies, (MIB, MIB), 1 << 40, now());
        let map = ok(&big(&[("etag", "\"v1\"")]), false).expect("chunked");
        assert_eq!(
            (map.total, map.count(), map.validator.to_str().unwrap()),
            (64 * MIB, 64, "\"v1\"")
        );
        // Weak ETags cannot be asked with If-Range.
        assert_eq!(ok(&big(&[("etag", "W/\"v1\"")]), false), None);
        assert_eq!(ok(&big(&[]), false), None);
        assert_eq!(ok(&big(&[("etag", "\"v1\"")]), true), None);
        assert_eq!(
            ok(
                &big(&[("etag", "\"v1\""), ("accept-ranges", "none")]),
                false
            ),
            None
        );
        assert_eq!(
            ok(
                &headers(&[("etag", "\"v1\""), ("content-length", "1048576")]),
                false
            ),
            None
        );
        assert_eq!(
            ok(&headers(&[("etag", "\"v1\"")]), false),
            None,
            "no length"
        );
        let small_max = plan(
            StatusCode::OK,
            &big(&[("etag", "\"v\"")]),
            false,
            (MIB, MIB),
            MIB * 8,
            now(),
        );
        assert_eq!(small_max, None);
        let partial = plan(
            StatusCode::PARTIAL_CONTENT,
            &big(&[("etag", "\"v\"")]),
            false,
            (MIB, MIB),
            1 << 40,
            now(),
        );
        assert_eq!(partial, None);
        // Up to `above`, stored whole however many chunks it would make.
        let above = plan(
            StatusCode::OK,
            &big(&[("etag", "\"v\"")]),
            false,
            (MIB, 64 * MIB),
            1 << 40,
            now(),
        );
        assert_eq!(above, None);
    }

    #[test]
    fn last_modified_counts_only_when_strong() {
        let lm = "Thu, 01 Jan 2026 00:00:00 GMT";
        let strong = big(&[
            ("last-modified", lm),
            ("date", "Thu, 01 Jan 2026 00:00:05 GMT"),
        ]);
        let map =
            plan(StatusCode::OK, &strong, false, (MIB, MIB), 1 << 40, now()).expect("chunked");
        assert_eq!(map.validator.to_str().unwrap(), lm);
        let weak = big(&[("last-modified", lm), ("date", lm)]);
        assert_eq!(
            plan(StatusCode::OK, &weak, false, (MIB, MIB), 1 << 40, now()),
            None
        );
    }

    /// Three chunks of 1 MiB of the representation `validator` names.
    fn three_chunks(validator: &'static str) -> ChunkMap {
        ChunkMap {
            total: 3 * MIB,
            size: MIB,
            validator: HeaderValue::from_static(validator),
        }
    }

    #[test]
    fn chunks_cover_the_representation_exactly() {
        let map = ChunkMap {
            total: 5 * MIB + 7,
            size: MIB,
            validator: HeaderValue::from_static("\"v\""),
        };
        assert_eq!(map.count(), 6);
        let last = map.request(5);
        assert_eq!(
            (last.start, last.end, last.len()),
            (5 * MIB, 5 * MIB + 6, 7)
        );
        let covered: u64 = (0..map.count()).map(|i| map.request(i).len()).sum();
        assert_eq!(covered, map.total);
        assert_eq!(map.index_of(MIB - 1), 0);
        assert_eq!(map.index_of(MIB), 1);
        assert_eq!(map.request(1).range(), "bytes=1048576-2097151");
        assert_eq!(
            map.request(1).content_range(),
            "bytes 1048576-2097151/5242887"
        );
    }

    #[test]
    fn a_hop_marker_round_trips_and_junk_is_refused() {
        let map = three_chunks("\"v\"");
        let request = map.request(2);
        let back = ChunkRequest::from_hop(&request.marker(), Some(&request.validator));
        assert_eq!(back, Some(request.clone()));
        let bad = |m: &'static str| {
            ChunkRequest::from_hop(&HeaderValue::from_static(m), Some(&request.validator))
        };
        for junk in [
            "", "1-2", "2-1/10", "0-10/10", "a-1/5", "-1-2/5", "0-1/+5", "0-1/5/6",
        ] {
            assert_eq!(bad(junk), None, "{junk}");
        }
        assert_eq!(ChunkRequest::from_hop(&request.marker(), None), None);
    }

    #[test]
    fn chunk_keys_differ_by_span_and_validator_and_name_their_url() {
        let v1 = three_chunks("\"v1\"");
        let v2 = ChunkMap {
            validator: HeaderValue::from_static("\"v2\""),
            ..v1.clone()
        };
        let url = "https://example.com/big.bin";
        let keys = [
            v1.request(0).key(url),
            v1.request(1).key(url),
            v2.request(0).key(url),
        ];
        assert!(keys[0] != keys[1] && keys[0] != keys[2]);
        assert!(
            keys.iter()
                .all(|k| url_of_chunk(k) == Some(url) && k.starts_with(&chunk_prefix(url)))
        );
        assert_eq!(url_of_chunk(url), None);
    }

    #[test]
    fn check_accepts_only_the_exact_span_of_the_same_representation() {
        let map = three_chunks("\"v1\"");
        let request = map.request(1);
        let range = request.content_range();
        let partial = |etag: &str, range: &str| {
            check(
                &request,
                StatusCode::PARTIAL_CONTENT,
                &headers(&[("etag", etag), ("content-range", range)]),
                now(),
            )
        };
        assert_eq!(partial("\"v1\"", &range), Ok(()));
        assert_eq!(partial("\"v2\"", &range), Err(Mismatch::Changed));
        assert_eq!(
            partial("\"v1\"", "bytes 1048576-2097151/9999999"),
            Err(Mismatch::Changed)
        );
        assert_eq!(
            partial("\"v1\"", "bytes 0-1048575/3145728"),
            Err(Mismatch::Wrong)
        );
        let whole = |etag: &str| {
            check(
                &request,
                StatusCode::OK,
                &headers(&[("etag", etag), ("content-length", "3145728")]),
                now(),
            )
        };
        assert_eq!(whole("\"v1\""), Err(Mismatch::Ignored));
        assert_eq!(whole("\"v2\""), Err(Mismatch::Changed));
        assert_eq!(
            check(&request, StatusCode::BAD_GATEWAY, &HeaderMap::new(), now()),
            Err(Mismatch::Wrong)
        );
        for refused in [StatusCode::NOT_FOUND, StatusCode::RANGE_NOT_SATISFIABLE] {
            assert_eq!(
                check(&request, refused, &HeaderMap::new(), now()),
                Err(Mismatch::Gone)
            );
        }
    }

    #[test]
    fn a_206_without_its_validator_cannot_be_stitched() {
        let map = three_chunks("\"v1\"");
        let request = map.request(1);
        let range = request.content_range();
        let answer = |fields: &[(&str, &str)]| {
            check(
                &request,
                StatusCode::PARTIAL_CONTENT,
                &headers(fields),
                now(),
            )
        };
        assert_eq!(
            answer(&[("content-range", &range)]),
            Err(Mismatch::Unvalidated)
        );
        // A date is no entity-tag: still not the validator the manifest holds.
        assert_eq!(
            answer(&[
                ("content-range", &range),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")
            ]),
            Err(Mismatch::Unvalidated)
        );
        // Other bytes, or another tag, are what they were.
        assert_eq!(
            answer(&[("content-range", "bytes 0-1048575/3145728")]),
            Err(Mismatch::Changed)
        );
        assert_eq!(
            answer(&[("content-range", &range), ("etag", "\"v2\"")]),
            Err(Mismatch::Changed)
        );
    }
}
