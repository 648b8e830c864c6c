//! Phase 6, respond: turn a stored entry, a fill in progress, an origin pass-through or an
//! error into the response the client gets, with `Age`, `Cache-Status` (RFC 9211) and `Via`.
//!
//! Client conditionals and `Range` are answered here from the stored representation; a hit
//! clones the entry's headers and a `Bytes` handle, never the body.

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
use crate::cache::range::{RangeRequest, boundary, multipart_byteranges, parse_range};
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
    ctx.site.policy.strip_targeted(&mut headers);
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

/// RFC 9110 §14: one range from a stored full response; anything we do not handle is
/// answered with the whole representation, which is always allowed.
fn ranged(
    entry: &Entry,
    ctx: &RequestContext,
    headers: &mut HeaderMap,
    now: SystemTime,
) -> (StatusCode, ProxyBody) {
    let head = ctx.method == Method::HEAD;
    let len = entry.body.len() as u64;
    let range = if ctx.method == Method::GET && if_range_holds(&ctx.headers, &entry.headers, now) {
        parse_range(ctx.headers.get(header::RANGE), len)
    } else {
        RangeRequest::Full
    };
    match range {
        RangeRequest::Full if head => (StatusCode::OK, ProxyBody::Empty),
        RangeRequest::Full => (StatusCode::OK, ProxyBody::full(entry.body.clone())),
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
            // Bounds were checked by parse_range against `len`, so the slice cannot panic.
            let body = entry.body.slice(start as usize..=end_inclusive as usize);
            (StatusCode::PARTIAL_CONTENT, ProxyBody::full(body))
        }
        RangeRequest::Multi(spans) => {
            // RFC 9110 §14.6: one part per range, each with its own Content-Range; the parts
            // are slices of the stored body, only the small part headers are new.
            let boundary = boundary(rand_seed());
            let (parts, len) = multipart_byteranges(
                &spans,
                &entry.body,
                entry.headers.get(header::CONTENT_TYPE),
                &boundary,
            );
            let content_type = format!("multipart/byteranges; boundary={boundary}");
            headers.insert(header::CONTENT_TYPE, header_value(&content_type));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let body = if head {
                ProxyBody::Empty
            } else {
                ProxyBody::Parts(parts.into())
            };
            (StatusCode::PARTIAL_CONTENT, body)
        }
        RangeRequest::Unsatisfiable => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{len}")),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            (StatusCode::RANGE_NOT_SATISFIABLE, ProxyBody::Empty)
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
    ctx.site.policy.strip_downstream(&mut headers);
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
