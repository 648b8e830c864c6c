//! Phase 6, respond: turn a stored entry, a fill in progress, an origin pass-through or an
//! error into the response the client gets, with `Age`, `Cache-Status` (RFC 9211) and `Via`.
//!
//! Client conditionals and `Range` are answered here, from the stored representation or from
//! a fill's as it arrives (on a miss, and through a peer hop from the owner's object); a hit
//! clones the entry's headers and a `Bytes` handle, never the body.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use http_body::Body as _;
use http_body_util::BodyExt;

use crate::origin::UpstreamBody;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use super::fill::FillHead;
use super::headers::{append_list, strip_hop_by_hop};
use super::outcome::{Outcome, Served};
use super::request::RequestContext;
use crate::cache::conditional::{if_range_holds, not_modified};
use crate::cache::policy::Policy;
use crate::cache::range::{
    ByteSpan, Piece, RangeCutter, RangeRequest, boundary, multipart_plan, parse_range,
};
use crate::cache::status::{Fwd, append};
use crate::error::ProxyError;
use crate::service::ProxyBody;
use crate::storage::Entry;
use crate::storage::coalesce::Subscriber;

const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// This node as responses name it.
pub struct Node {
    pub(crate) name: String,
    /// `1.1 <name>`, built once: most responses carry no upstream `Via`, and then this is
    /// inserted as is (a reference-count bump, no formatting).
    via: HeaderValue,
}

impl Node {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            via: header_value(&format!("1.1 {name}")),
        }
    }
}

/// Serve a stored entry: 304 for a matching client conditional, 206/416 for `Range`,
/// headers only for HEAD.
pub fn from_entry(
    node: &Node,
    entry: &Entry,
    ctx: &RequestContext,
    now: SystemTime,
    outcome: Outcome,
) -> Served {
    let mut headers = entry.headers.clone();
    for_receiver(entry, ctx, &mut headers);
    let age = entry.current_age(now).as_secs();
    // RFC 9110 §13.2.1: preconditions apply to successful responses only.
    let conditional = entry.status.is_success();
    let matched = conditional && not_modified(&ctx.method, &ctx.headers, &entry.headers, now);
    let (code, body) = if matched {
        headers.remove(header::CONTENT_LENGTH);
        (StatusCode::NOT_MODIFIED, ProxyBody::Empty)
    } else if entry.status == StatusCode::OK {
        ranged(entry, ctx, &mut headers, now)
    } else if ctx.method == Method::HEAD {
        (entry.status, ProxyBody::Empty)
    } else {
        (entry.status, ProxyBody::full(entry.body.clone()))
    };
    finish(node, code, headers, body, outcome, Some(age))
}

/// A stored entry's headers as the receiver needs them: a client does not get the site's
/// own targeted fields; another node asking (a hop) gets them, and the entry's tags in the
/// site's tag field, so a copy it keeps is stored and purged as this one is.
fn for_receiver(entry: &Entry, ctx: &RequestContext, headers: &mut HeaderMap) {
    if !ctx.hops.any() {
        ctx.site.policy.strip_targeted(headers);
        return;
    }
    if !entry.tags.is_empty() {
        let tags: Vec<&str> = entry.tags.iter().map(|t| &**t).collect();
        if let Ok(value) = HeaderValue::from_str(&tags.join(" ")) {
            headers.insert(ctx.site.policy.tag_header.clone(), value);
        }
    }
}

/// What to send of a representation stored in chunks, decided as [`from_entry`] decides it
/// for a whole one: the status, the headers, and the pieces of the representation that make
/// the body (`None`: no body; 304, HEAD, 416).
pub(crate) fn plan_chunked(
    entry: &Entry,
    ctx: &RequestContext,
    now: SystemTime,
) -> (StatusCode, HeaderMap, Option<Vec<Piece>>) {
    let mut headers = entry.headers.clone();
    for_receiver(entry, ctx, &mut headers);
    if not_modified(&ctx.method, &ctx.headers, &entry.headers, now) {
        headers.remove(header::CONTENT_LENGTH);
        return (StatusCode::NOT_MODIFIED, headers, None);
    }
    let total = entry.len();
    match cut(ctx, &entry.headers, total, &mut headers, now) {
        None if ctx.method == Method::HEAD || total == 0 => (StatusCode::OK, headers, None),
        None => {
            let whole = ByteSpan {
                start: 0,
                end_inclusive: total - 1,
            };
            (StatusCode::OK, headers, Some(vec![Piece::Span(whole)]))
        }
        Some((code, pieces)) if pieces.is_empty() => (code, headers, None),
        Some((code, pieces)) => (code, headers, Some(pieces)),
    }
}

/// The answer to a node that reads a chunked object's chunks itself: the stored manifest as a
/// snapshot record (`record`), under the entry's head as a hop gets it (so that node decides
/// what it may share as it would for the object) and [`crate::cache::chunk::MANIFEST`].
pub(crate) fn manifest(
    node: &Node,
    entry: &Entry,
    ctx: &RequestContext,
    record: bytes::Bytes,
    outcome: Outcome,
    age: u64,
) -> Served {
    let mut headers = entry.headers.clone();
    for_receiver(entry, ctx, &mut headers);
    headers.remove(header::CONTENT_RANGE);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(record.len()));
    headers.insert(
        crate::cache::chunk::CHUNK_HEADER,
        crate::cache::chunk::MANIFEST,
    );
    finish(
        node,
        StatusCode::OK,
        headers,
        ProxyBody::full(record),
        outcome,
        Some(age),
    )
}

/// The response for a chunked object [`plan_chunked`] planned, its body read from chunks.
pub(crate) fn chunked(
    node: &Node,
    code: StatusCode,
    headers: HeaderMap,
    body: ProxyBody,
    outcome: Outcome,
    age: u64,
) -> Served {
    finish(node, code, headers, body, outcome, Some(age))
}

/// A stored 200 for a GET that may carry `Range` (RFC 9110 §14), HEAD without its body.
fn ranged(
    entry: &Entry,
    ctx: &RequestContext,
    headers: &mut HeaderMap,
    now: SystemTime,
) -> (StatusCode, ProxyBody) {
    let len = entry.body.len() as u64;
    match cut(ctx, &entry.headers, len, headers, now) {
        None if ctx.method == Method::HEAD => (StatusCode::OK, ProxyBody::Empty),
        None => (StatusCode::OK, ProxyBody::full(entry.body.clone())),
        // The whole body is at hand: every piece is cut from it at once.
        Some((code, pieces)) => {
            let parts = RangeCutter::new(pieces).feed(&entry.body);
            (code, ProxyBody::Parts(parts.into()))
        }
    }
}

/// RFC 9110 §14: how a GET with `Range` is answered from a full (200) representation of
/// `len` bytes whose headers are `stored`: `None` for the whole representation, which is
/// always allowed and what anything we do not handle gets; otherwise the status (206 or
/// 416) and the pieces of the body, with Content-Range, Content-Length and, for several
/// ranges, Content-Type set in `headers`.
fn cut(
    ctx: &RequestContext,
    stored: &HeaderMap,
    len: u64,
    headers: &mut HeaderMap,
    now: SystemTime,
) -> Option<(StatusCode, Vec<Piece>)> {
    if ctx.method != Method::GET || !if_range_holds(&ctx.headers, stored, now) {
        return None;
    }
    match parse_range(ctx.headers.get(header::RANGE), len) {
        RangeRequest::Full => None,
        RangeRequest::Partial {
            start,
            end_inclusive,
        } => {
            let content_range = format!("bytes {start}-{end_inclusive}/{len}");
            headers.insert(header::CONTENT_RANGE, header_value(&content_range));
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(end_inclusive - start + 1),
            );
            let span = ByteSpan {
                start,
                end_inclusive,
            };
            Some((StatusCode::PARTIAL_CONTENT, vec![Piece::Span(span)]))
        }
        RangeRequest::Multi(spans) => {
            // RFC 9110 §14.6: one part per range, each with its own Content-Range; the parts
            // are slices of the body, only the small part headers are new.
            let boundary = boundary(rand_seed());
            let (pieces, total) =
                multipart_plan(&spans, len, stored.get(header::CONTENT_TYPE), &boundary);
            let content_type = format!("multipart/byteranges; boundary={boundary}");
            headers.insert(header::CONTENT_TYPE, header_value(&content_type));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
            Some((StatusCode::PARTIAL_CONTENT, pieces))
        }
        RangeRequest::Unsatisfiable => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{len}")),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            Some((StatusCode::RANGE_NOT_SATISFIABLE, Vec::new()))
        }
    }
}

/// A boundary a stored body cannot predict (and so cannot fake parts with): the hasher's
/// per-process random keys, mixed with a counter.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Stream a fill to this client.
pub(crate) fn from_fill(
    node: &Node,
    head: &FillHead,
    reader: Subscriber<FillHead>,
    ctx: &RequestContext,
    outcome: Outcome,
) -> Served {
    let mut headers = head.headers.clone();
    if !ctx.hops.any() {
        // Another node asking keeps the fields a copy is stored with, as this node did.
        ctx.site.policy.strip_downstream(&mut headers);
    }
    if reader.is_leader() {
        for cookie in &head.set_cookie {
            headers.append(header::SET_COOKIE, cookie.clone());
        }
    }
    let matched = head.status == StatusCode::OK
        && not_modified(&ctx.method, &ctx.headers, &head.headers, SystemTime::now());
    let (code, body) = if matched {
        headers.remove(header::CONTENT_LENGTH);
        (StatusCode::NOT_MODIFIED, ProxyBody::Empty)
    } else if ctx.method == Method::HEAD {
        (head.status, ProxyBody::Empty)
    } else if let Some((code, pieces)) = fill_cut(head, ctx, &mut headers) {
        (code, cut_stream(reader, pieces))
    } else {
        let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
            reader.next_chunk().await.map(|chunk| (chunk, reader))
        });
        let body = ProxyBody::Stream {
            chunks: Box::pin(chunks),
            len: head.content_length,
        };
        (head.status, body)
    };
    finish(node, code, headers, body, outcome, Some(head.age))
}

/// A range of a full response still arriving (a miss here, or the owner's object through a
/// peer hop): the fill fetches the whole representation, so it can be stored, and the range
/// is cut from it as it streams, exactly as from a stored entry. Only with a known length:
/// without one, the whole representation is the answer.
fn fill_cut(
    head: &FillHead,
    ctx: &RequestContext,
    headers: &mut HeaderMap,
) -> Option<(StatusCode, Vec<Piece>)> {
    if head.status != StatusCode::OK || !ctx.headers.contains_key(header::RANGE) {
        return None;
    }
    cut(
        ctx,
        &head.headers,
        head.content_length?,
        headers,
        SystemTime::now(),
    )
}

/// The pieces of a ranged answer cut from the fill's chunks as they come. The reader is let
/// go as soon as the last range is complete (the fill goes on for its other readers and the
/// store); a body that ends before it is an error, never a short answer.
fn cut_stream(reader: Subscriber<FillHead>, pieces: Vec<Piece>) -> ProxyBody {
    let len = pieces.iter().map(Piece::len).sum();
    if pieces.is_empty() {
        return ProxyBody::Empty;
    }
    let state = Some((reader, RangeCutter::new(pieces), VecDeque::new()));
    let chunks = futures_util::stream::unfold(state, |state| async move {
        let (mut reader, mut cutter, mut ready) = state?;
        loop {
            if let Some(bytes) = ready.pop_front() {
                return Some((Ok(bytes), Some((reader, cutter, ready))));
            }
            if cutter.is_done() {
                return None;
            }
            match reader.next_chunk().await {
                Some(Ok(chunk)) => ready.extend(cutter.feed(&chunk)),
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    let short = ProxyError::Internal("body ended before its ranges");
                    return Some((Err(short), None));
                }
            }
        }
    });
    ProxyBody::Stream {
        chunks: Box::pin(chunks),
        len: Some(len),
    }
}

/// A response passed through untouched but for hop-by-hop fields (methods we do not cache).
/// The body is streamed; an origin that stalls for `idle` mid-body aborts it.
pub(crate) fn pass(
    node: &Node,
    response: Response<UpstreamBody>,
    idle: Duration,
    policy: &Policy,
) -> Served {
    let (parts, body) = response.into_parts();
    let len = body.size_hint().exact();
    let chunks = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        loop {
            return match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => Some((Err(ProxyError::timeout()), None)),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(ProxyError::OriginBody(e.to_string())), None)),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Some((Ok(data), Some(body))),
                    Err(_) => continue,
                },
            };
        }
    });
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    policy.strip_downstream(&mut headers);
    let outcome = Outcome::passed(parts.status.as_u16());
    let body = ProxyBody::Stream {
        chunks: Box::pin(chunks),
        len,
    };
    finish(node, parts.status, headers, body, outcome, None)
}

/// The one place errors become responses: status from the error, its reason in
/// `Cache-Status; detail`.
pub(crate) fn error(node: &Node, error: &ProxyError, fwd: Option<Fwd>) -> Served {
    error_after(node, error, fwd, None)
}

/// [`error`] after the origin answered `fwd_status` (RFC 9211 §2.3).
pub(crate) fn error_after(
    node: &Node,
    error: &ProxyError,
    fwd: Option<Fwd>,
    fwd_status: Option<u16>,
) -> Served {
    let outcome = Outcome::error(error, fwd, fwd_status);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if error.closes_connection() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let code = error.status();
    // Only the status and the detail token: the error itself can name origin addresses and
    // certificate names, which go to the log, never to clients.
    tracing::debug!(%error, fault = ?error.fault(), status = code.as_u16(), "request failed");
    let text = format!(
        "{} {} ({})\n",
        code.as_u16(),
        code.canonical_reason().unwrap_or(""),
        error.detail()
    );
    finish(
        node,
        code,
        headers,
        ProxyBody::full(text.into()),
        outcome,
        None,
    )
}

fn finish(
    node: &Node,
    code: StatusCode,
    mut headers: HeaderMap,
    body: ProxyBody,
    outcome: Outcome,
    age: Option<u64>,
) -> Served {
    if let Some(age) = age {
        headers.insert(header::AGE, HeaderValue::from(age));
    }
    let ours = outcome.cache_status().render(&node.name);
    let cache_status = match headers.get(&CACHE_STATUS) {
        None => ours,
        upstream => append(upstream, &ours),
    };
    headers.insert(CACHE_STATUS, owned_header_value(cache_status));
    match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        None => {
            headers.insert(header::VIA, node.via.clone());
        }
        Some(_) => {
            let ours = node.via.to_str().unwrap_or_default().to_owned();
            append_list(&mut headers, header::VIA, &ours);
        }
    }
    let mut response = Response::new(body);
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    Served { response, outcome }
}

/// Like [`header_value`] for a `String` we own: validated in place, not copied.
fn owned_header_value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Values we format ourselves are visible ASCII; anything else degrades to empty rather than
/// failing the response.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
