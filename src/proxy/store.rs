//! Phase 5, store: decide whether an origin response may be stored (RFC 9111 §3), compute its
//! freshness and age once, and build the immutable [`Entry`].

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::cache::chunk::ChunkMap;
use crate::cache::conditional::merge_304;
use crate::cache::control::{RequestDirectives, ResponseDirectives};
use crate::cache::freshness;
use crate::cache::policy::Policy;
use crate::cache::status::NoCacheReason;
use crate::cache::storable::{SetCookie, storable};
use crate::cache::vary::secondary_key;
use crate::cluster::hop::{FETCHED_HEADER, take_fetched};
use crate::storage::{Entry, EntryParts};

/// The origin's response head as the fill sees it, with when it was asked and answered.
pub struct OriginHead<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

pub(crate) fn storability(
    request_headers: &HeaderMap,
    request_cc: &RequestDirectives,
    head: &OriginHead<'_>,
    response_cc: &ResponseDirectives,
    policy: &Policy,
) -> Result<(), NoCacheReason> {
    // What is stored is a GET's response: fills that may store fetch with GET (a HEAD miss is
    // filled by a GET, RFC 9111 §4.3.5 allows answering HEAD from it); a HEAD passed to the
    // origin stores nothing and is checked here only for the response it freshens.
    storable(
        &Method::GET,
        request_headers,
        request_cc,
        head.status,
        head.headers,
        response_cc,
        policy.set_cookie,
    )
}

/// May a response fetched for one client be handed to others waiting on the same fill? Only
/// a fresh one that the cache could reuse without asking the origin: storable (or too large
/// to store), with freshness left, and with no `no-cache` or `private` restriction, qualified
/// or not (RFC 9111 §5.2.2.4, §5.2.2.7). Anything else goes to its own client only.
pub(crate) fn shareable(
    not_stored: Option<NoCacheReason>,
    ttl: i64,
    cc: &ResponseDirectives,
) -> bool {
    not_stored.is_none_or(|r| {
        matches!(
            r,
            NoCacheReason::TooLarge | NoCacheReason::NotOwner | NoCacheReason::NotAdmitted
        )
    }) && ttl > 0
        && !cc.no_cache
        && !cc.private
}

/// Fields a stored response must not carry to other clients: those named by `private="..."`
/// (RFC 9111 §5.2.2.7) and, since Outpost does not revalidate per field, `no-cache="..."`
/// (§5.2.2.4).
fn strip_restricted_fields(headers: &mut HeaderMap, cc: &ResponseDirectives) {
    for name in cc.private_fields.iter().chain(&cc.no_cache_fields) {
        headers.remove(name.as_str());
    }
}

/// Build the entry for a storable response whose whole body is `body`. `headers` carry no
/// `Set-Cookie` (the fill keeps those for its leading client), and are the node's own, not
/// hyper's slices of a read buffer ([`detached`]: a fill detaches its upstream's head as it
/// arrives).
pub fn build_entry(
    head: &OriginHead<'_>,
    headers: HeaderMap,
    body: Bytes,
    request_headers: &HeaderMap,
    policy: &Policy,
    replica: bool,
) -> Entry {
    let directives = policy.directives(head.status, &headers);
    let corrected_initial_age =
        freshness::corrected_initial_age(&headers, head.request_time, head.response_time);
    let lifetime = freshness::freshness_lifetime(
        head.status,
        &headers,
        &directives,
        head.response_time,
        policy.heuristic,
    );
    let vary = policy.vary_fields(&headers);
    let secondary = secondary_key(&vary, request_headers);
    let tags = policy.tags(&headers);
    let mut headers = headers;
    let fetched = take_fetched(&mut headers, head.response_time, head.request_time);
    let mut headers = stored_headers(headers, head.response_time, body.len() as u64);
    strip_restricted_fields(&mut headers, &directives);
    headers.remove(&policy.tag_header);
    if replica {
        // The owner's Cache-Status described its answer to this node's fetch; a hit on the
        // replica is this node's alone.
        headers.remove(CACHE_STATUS);
    }
    if head.status == StatusCode::OK {
        // Stored 200s answer ranges (RFC 9110 §14.3); said once here, not on every hit.
        headers
            .entry(header::ACCEPT_RANGES)
            .or_insert(HeaderValue::from_static("bytes"));
    }
    Entry::new(EntryParts {
        status: head.status,
        has_validators: has_validators(&headers),
        tags,
        replica,
        chunks: None,
        headers,
        body,
        vary,
        secondary,
        response_time: head.response_time,
        fetched,
        corrected_initial_age,
        lifetime,
        directives,
    })
}

/// The manifest of a representation stored as chunks (see [`crate::cache::chunk`]): the
/// entry [`build_entry`] makes of its head, with no body and the whole length.
pub(crate) fn build_manifest(
    head: &OriginHead<'_>,
    headers: HeaderMap,
    map: ChunkMap,
    request_headers: &HeaderMap,
    policy: &Policy,
) -> Entry {
    let entry = build_entry(head, headers, Bytes::new(), request_headers, policy, false);
    let mut parts = entry.into_parts();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(map.total));
    parts.chunks = Some(map);
    Entry::new(parts)
}

/// RFC 9111 §4.3.4: a 304 freshens the stored response: its fields replace the stored ones,
/// the body stays, and age and freshness restart from the 304.
pub(crate) fn refreshed(
    stale: &Entry,
    head: &OriginHead<'_>,
    not_modified: &HeaderMap,
    policy: &Policy,
) -> Entry {
    let mut merged = merge_304(&stale.headers, not_modified);
    // The 304 confirmed the stored representation when it was asked for (or, from another
    // node, when that node last had it confirmed).
    let mut confirmed = not_modified.clone();
    let fetched = take_fetched(&mut confirmed, head.response_time, head.request_time);
    merged.remove(FETCHED_HEADER);
    // A 304's Cache-Status describes how an upstream cache answered the revalidation, not
    // the stored representation: the stored one stays.
    match stale.headers.get(CACHE_STATUS) {
        Some(ours) => merged.insert(CACHE_STATUS, ours.clone()),
        None => merged.remove(CACHE_STATUS),
    };
    // A site that stores responses setting cookies stores them without (and the 304's go
    // nowhere: it answered Outpost's conditional request, not a client's). Otherwise they stay
    // and make the merged response unstorable.
    if policy.set_cookie == SetCookie::StoreWithout {
        merged.remove(header::SET_COOKIE);
    }
    let directives = policy.directives(stale.status, &merged);
    let corrected_initial_age =
        freshness::corrected_initial_age(not_modified, head.request_time, head.response_time);
    let lifetime = freshness::freshness_lifetime(
        stale.status,
        &merged,
        &directives,
        head.response_time,
        policy.heuristic,
    );
    // Tags as the 304 restates them, or as stored.
    let tags = if merged.contains_key(&policy.tag_header) {
        policy.tags(&merged)
    } else {
        stale.tags.clone()
    };
    let mut headers = stored_headers(merged, head.response_time, stale.len());
    strip_restricted_fields(&mut headers, &directives);
    headers.remove(&policy.tag_header);
    Entry::new(EntryParts {
        status: stale.status,
        has_validators: has_validators(&headers),
        tags,
        replica: stale.replica,
        chunks: stale.chunks.clone(),
        headers,
        body: stale.body.clone(),
        vary: stale.vary.clone(),
        secondary: stale.secondary.clone(),
        response_time: head.response_time,
        fetched,
        corrected_initial_age,
        lifetime,
        directives,
    })
}

const CACHE_STATUS: &str = "cache-status";

/// Stored headers carry no `Age` (computed per hit), always a `Date` (RFC 9110 §6.6.1: a
/// cache adds one if the origin did not), and a `Content-Length` that is the body's.
fn stored_headers(mut headers: HeaderMap, response_time: SystemTime, len: u64) -> HeaderMap {
    headers.remove(header::AGE);
    if !headers.contains_key(header::DATE) {
        let date = httpdate::fmt_http_date(response_time);
        if let Ok(v) = HeaderValue::from_str(&date) {
            headers.insert(header::DATE, v);
        }
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers
}

/// hyper parses header values as slices of the connection's read buffer (up to ~400 KiB).
/// Kept as they are, by an entry or by a fill while a slow client reads its body, they would
/// keep a whole buffer alive that no budget sees, so the values are copied into allocations
/// of their own.
pub(crate) fn detached(headers: HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in &headers {
        let mut owned = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        copy.append(name.clone(), owned);
    }
    copy
}

fn has_validators(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED)
}
