//! Serving an object stored in chunks (see [`crate::cache::chunk`]): the stored manifest
//! says what the response is (status, headers, which bytes, as [`respond`] decides it for a
//! whole entry), and the bytes come from the chunks, each asked for as its own request through
//! the usual phases, so each is looked up, coalesced, routed to its owner on the ring and
//! filled from the origin with `Range` and `If-Range` like any other key.
//!
//! Chunks are read in order, several ahead of the one being sent (up to [`READ_AHEAD`] and
//! [`READ_AHEAD_BYTES`]): a cold chunk costs round trips to its owner and the origin, and
//! one at a time they would set the pace. The first is read before the response head goes
//! out: a representation that changed since the manifest was stored is found while the
//! answer can still be the new one (the manifest is dropped and the request fetched again). A change found later cuts the body short, an error the client sees, never
//! bytes of two versions in one response.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Version};
use http_body_util::{BodyExt, Limited};
use tokio::task::JoinHandle;

use super::Proxy;
use super::outcome::{Outcome, Served};
use super::request::{RequestContext, Site};
use super::respond;
use crate::cache::chunk::{self, ChunkMap, ChunkRequest, Mismatch};
use crate::cache::control::RequestDirectives;
use crate::cache::range::Piece;
use crate::cluster::hop::Hops;
use crate::error::ProxyError;
use crate::service::{ClientInfo, ProxyBody};
use crate::storage::Entry;
use crate::storage::budget::Reservation;

/// Why a chunked object could not be served from its manifest.
pub(super) enum Failure {
    /// The representation changed (or its origin ignores `Range`): the manifest is gone;
    /// fetch the object again.
    Restart,
    Error(ProxyError),
}

/// Serve `entry`, a manifest, for `ctx`.
pub(super) async fn serve(
    proxy: &Arc<Proxy>,
    ctx: &RequestContext,
    entry: &Entry,
    now: SystemTime,
    outcome: Outcome,
) -> Result<Served, Failure> {
    let Some(map) = entry.chunks.clone() else {
        return Err(Failure::Error(ProxyError::Internal("entry is not chunked")));
    };
    let age = entry.current_age(now).as_secs();
    let (code, headers, pieces) = respond::plan_chunked(entry, ctx, now);
    let Some(pieces) = pieces else {
        return Ok(respond::chunked(
            &proxy.node,
            code,
            headers,
            ProxyBody::Empty,
            outcome,
            age,
        ));
    };
    let len = pieces.iter().map(Piece::len).sum();
    let mut reader = Reader {
        proxy: proxy.clone(),
        base: Arc::new(Base::of(ctx)),
        segments: Segments::new(map, pieces),
        current: None,
        ahead: VecDeque::new(),
    };
    if let Some(first) = reader.next_indices(u64::MAX, 1).first().copied()
        && let Err(e) = reader.chunk(first).await
    {
        return Err(reader.failed(e).await);
    }
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next().await? {
            Ok(bytes) => Some((Ok(bytes), Some(reader))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = ProxyBody::Stream {
        chunks: Box::pin(chunks),
        len: Some(len),
    };
    Ok(respond::chunked(
        &proxy.node,
        code,
        headers,
        body,
        outcome,
        age,
    ))
}

/// One piece of the body: bytes of its own (a multipart part header), or bytes
/// `from..to` of chunk `index`.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(Bytes),
    Chunk { index: u64, from: usize, to: usize },
}

/// The body's pieces as slices of chunks, in order, made as they are needed: a range over
/// a large object covers many chunks, and a list of them all would cost memory per request
/// in proportion to the object. Cloning it is cheap (a cursor), which is how the read-ahead
/// looks at what comes next.
#[derive(Clone)]
struct Segments {
    map: ChunkMap,
    pieces: Arc<[Piece]>,
    /// The piece the next segment comes from.
    piece: usize,
    /// Within a span, the offset of its next byte (`None`: the span's start).
    at: Option<u64>,
}

impl Segments {
    fn new(map: ChunkMap, pieces: Vec<Piece>) -> Self {
        Self {
            map,
            pieces: pieces.into(),
            piece: 0,
            at: None,
        }
    }
}

impl Iterator for Segments {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        loop {
            let span = match self.pieces.get(self.piece)? {
                Piece::Literal(bytes) => {
                    self.piece += 1;
                    return Some(Segment::Literal(bytes.clone()));
                }
                Piece::Span(span) => span,
            };
            let end = span.end_inclusive.min(self.map.total.saturating_sub(1));
            let at = self.at.unwrap_or(span.start);
            if at > end {
                self.piece += 1;
                self.at = None;
                continue;
            }
            let index = self.map.index_of(at);
            let chunk = self.map.request(index);
            let to = chunk.end.min(end);
            self.at = Some(to + 1);
            // Offsets within one chunk, which is at most 64 MiB.
            return Some(Segment::Chunk {
                index,
                from: usize::try_from(at - chunk.start).unwrap_or(usize::MAX),
                to: usize::try_from(to - chunk.start + 1).unwrap_or(usize::MAX),
            });
        }
    }
}

enum ChunkError {
    Mismatch(Mismatch),
    Failed(ProxyError),
}

type ChunkFetch = Pin<Box<dyn Future<Output = Result<Bytes, ChunkError>> + Send>>;

/// Chunks read ahead of the one being sent, at most: several requests in flight hide each
/// one's round trip (to the owner, to the origin) when the object is cold.
const READ_AHEAD: usize = 8;
/// Bytes read ahead per response, at most (one chunk at least, however large).
const READ_AHEAD_BYTES: u64 = 16 << 20;
/// What every response together may hold of chunks read ahead: an eighth of the cache's
/// memory, and one response's read-ahead at least. A response past it reads as it sends.
pub(super) fn read_ahead_budget(memory: u64) -> u64 {
    (memory / 8).max(READ_AHEAD_BYTES)
}

/// Segments looked at for the next chunks to read: a multipart answer may cut many parts
/// from one chunk, and looking further would cost more than it saves.
const LOOK_AHEAD: usize = 64;

/// A chunk being read ahead, and the bytes it holds of the node's read-ahead budget.
struct Ahead {
    index: u64,
    task: JoinHandle<Result<Bytes, ChunkError>>,
    _held: Reservation,
}

struct Reader {
    proxy: Arc<Proxy>,
    base: Arc<Base>,
    /// What is left of the body (and the object's chunk map).
    segments: Segments,
    /// The chunk last read (a multipart answer may cut several pieces from one).
    current: Option<(u64, Bytes)>,
    /// The next chunks, being read, in the order they are needed.
    ahead: VecDeque<Ahead>,
}

impl Drop for Reader {
    /// A client gone, or a response cut short: the chunks read for it are not waited for
    /// (their fills run on and store them; only this response's wait and bytes go).
    fn drop(&mut self) {
        for ahead in &self.ahead {
            ahead.task.abort();
        }
    }
}

impl Reader {
    /// The next chunks the remaining segments need other than `besides`, at most `n`.
    fn next_indices(&self, besides: u64, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        for s in self.segments.clone().take(LOOK_AHEAD) {
            if let Segment::Chunk { index, .. } = s
                && index != besides
                && !out.contains(&index)
            {
                if out.len() == n {
                    break;
                }
                out.push(index);
            }
        }
        out
    }

    async fn next(&mut self) -> Option<Result<Bytes, ProxyError>> {
        let (index, from, to) = match self.segments.next()? {
            Segment::Literal(bytes) => return Some(Ok(bytes)),
            Segment::Chunk { index, from, to } => (index, from, to),
        };
        Some(match self.chunk(index).await {
            // `fetch` checked the chunk's length, which the segment lies within.
            Ok(bytes) if to <= bytes.len() && from < to => Ok(bytes.slice(from..to)),
            Ok(_) => Err(ProxyError::Internal("chunk shorter than its span")),
            Err(e) => match self.failed(e).await {
                Failure::Error(e) => Err(e),
                Failure::Restart => Err(ProxyError::OriginBody(
                    "the representation changed while it was served from chunks".to_owned(),
                )),
            },
        })
    }

    /// Chunk `index`, and the next ones started, as far as this response's read-ahead and
    /// the node's read-ahead budget allow.
    async fn chunk(&mut self, index: u64) -> Result<Bytes, ChunkError> {
        if let Some((at, bytes)) = &self.current
            && *at == index
        {
            return Ok(bytes.clone());
        }
        // Reads started for chunks passed over (not needed after all) run on and store them.
        let started = self.ahead.iter().position(|a| a.index == index);
        let bytes = match started.and_then(|i| self.ahead.remove(i)) {
            Some(ahead) => {
                ahead
                    .task
                    .await
                    .unwrap_or(Err(ChunkError::Failed(ProxyError::Internal(
                        "chunk read failed",
                    ))))
            }
            None => {
                fetch(
                    self.proxy.clone(),
                    self.base.clone(),
                    self.segments.map.request(index),
                )
                .await
            }
        }?;
        self.current = Some((index, bytes.clone()));
        let depth = usize::try_from(READ_AHEAD_BYTES / self.segments.map.size.max(1))
            .unwrap_or(1)
            .clamp(1, READ_AHEAD);
        for next in self.next_indices(index, depth) {
            if self.ahead.iter().any(|a| a.index == next) {
                continue;
            }
            let request = self.segments.map.request(next);
            let mut held = Reservation::new(self.proxy.read_ahead_budget.clone());
            if !held.grow(request.len()) {
                // The node reads ahead for many responses already: this one reads as it sends.
                break;
            }
            let task = fetch(self.proxy.clone(), self.base.clone(), request);
            self.ahead.push_back(Ahead {
                index: next,
                task: tokio::spawn(task),
                _held: held,
            });
        }
        Ok(bytes)
    }

    /// Count the failure; a changed or refused representation, or an origin that ignores
    /// `Range`, loses its manifest.
    async fn failed(&self, error: ChunkError) -> Failure {
        let metrics = &self.proxy.metrics.store;
        let store = &self.proxy.store;
        match error {
            ChunkError::Mismatch(Mismatch::Gone) => {
                metrics.chunk_fetch("gone");
                tracing::info!(key = %self.base.url_key, "a chunk was refused; fetching the object again");
                store.purge(&self.base.url_key).await;
                Failure::Restart
            }
            ChunkError::Mismatch(Mismatch::Changed) => {
                metrics.chunk_fetch("changed");
                tracing::info!(key = %self.base.url_key, "object changed while served from chunks; fetching it again");
                store.purge(&self.base.url_key).await;
                Failure::Restart
            }
            ChunkError::Mismatch(Mismatch::Ignored) => {
                metrics.chunk_fetch("ignored");
                tracing::info!(key = %self.base.url_key, "origin ignores Range; not storing the object in chunks");
                store.mark_unchunkable(&self.base.url_key);
                store.purge(&self.base.url_key).await;
                Failure::Restart
            }
            ChunkError::Mismatch(Mismatch::Wrong) => {
                metrics.chunk_fetch("failed");
                Failure::Error(ProxyError::OriginBody(
                    "a chunk was answered with other bytes or an error".to_owned(),
                ))
            }
            ChunkError::Failed(e) => {
                metrics.chunk_fetch("failed");
                Failure::Error(e)
            }
        }
    }
}

/// Read one chunk through the request path (boxed: the path may serve chunked objects).
fn fetch(proxy: Arc<Proxy>, base: Arc<Base>, request: ChunkRequest) -> ChunkFetch {
    Box::pin(async move {
        let ctx = base.context(&request);
        let served = proxy.cacheable(ctx).await;
        let (parts, body) = served.response.into_parts();
        chunk::check(&request, parts.status, &parts.headers, SystemTime::now())
            .map_err(ChunkError::Mismatch)?;
        // No more than the chunk's length is read: a longer body is an error, not memory.
        let limit = usize::try_from(request.len()).unwrap_or(usize::MAX);
        let bytes = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| ChunkError::Failed(ProxyError::OriginBody(e.to_string())))?
            .to_bytes();
        if bytes.len() as u64 != request.len() {
            let short = "a chunk's body was not its length".to_owned();
            return Err(ChunkError::Failed(ProxyError::OriginBody(short)));
        }
        proxy.metrics.store.chunk_fetch("ok");
        Ok(bytes)
    })
}

/// What a chunk's request takes from the client's.
struct Base {
    site: Arc<Site>,
    version: Version,
    url_key: String,
    authority: http::HeaderValue,
    path_and_query: http::uri::PathAndQuery,
    /// The client's fields but those about the whole response: chunks are shared.
    headers: HeaderMap,
    client: ClientInfo,
    /// A chunk is a new request from this node (at most one peer hop of its own); a shield
    /// hop already taken stays taken.
    hops: Hops,
}

/// Fields of the client's request a chunk's request leaves out: its ranges, conditionals
/// and directives are the whole response's (answered from the manifest), and chunks are
/// shared by every client.
const NOT_FOR_CHUNKS: [header::HeaderName; 9] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::AUTHORIZATION,
];

impl Base {
    fn of(ctx: &RequestContext) -> Self {
        let mut headers = ctx.headers.clone();
        for name in &NOT_FOR_CHUNKS {
            headers.remove(name);
        }
        Self {
            site: ctx.site.clone(),
            version: ctx.version,
            url_key: ctx.key.clone(),
            authority: ctx.authority.clone(),
            path_and_query: ctx.path_and_query.clone(),
            headers,
            client: ctx.client.clone(),
            hops: Hops {
                peer: false,
                shield: ctx.hops.shield,
            },
        }
    }

    fn context(&self, request: &ChunkRequest) -> RequestContext {
        RequestContext {
            site: self.site.clone(),
            method: Method::GET,
            version: self.version,
            key: request.key(&self.url_key),
            authority: self.authority.clone(),
            path_and_query: self.path_and_query.clone(),
            headers: self.headers.clone(),
            directives: RequestDirectives::default(),
            client: self.client.clone(),
            hops: self.hops,
            chunk: Some(request.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::cache::range::ByteSpan;

    fn map() -> ChunkMap {
        ChunkMap {
            total: 10,
            size: 4,
            validator: HeaderValue::from_static("\"v\""),
        }
    }

    fn span(start: u64, end_inclusive: u64) -> Piece {
        Piece::Span(ByteSpan {
            start,
            end_inclusive,
        })
    }

    fn chunk(index: u64, from: usize, to: usize) -> Segment {
        Segment::Chunk { index, from, to }
    }

    fn segments(map: &ChunkMap, pieces: &[Piece]) -> Vec<Segment> {
        Segments::new(map.clone(), pieces.to_vec()).collect()
    }

    #[test]
    fn spans_become_slices_of_the_chunks_they_cover() {
        assert_eq!(
            segments(&map(), &[span(0, 9)]),
            [chunk(0, 0, 4), chunk(1, 0, 4), chunk(2, 0, 2)]
        );
        assert_eq!(segments(&map(), &[span(5, 6)]), [chunk(1, 1, 3)]);
        assert_eq!(
            segments(&map(), &[span(3, 4)]),
            [chunk(0, 3, 4), chunk(1, 0, 1)]
        );
        let part = Bytes::from_static(b"--b\r\n");
        let multipart = [Piece::Literal(part.clone()), span(9, 9), span(0, 0)];
        assert_eq!(
            segments(&map(), &multipart),
            [Segment::Literal(part), chunk(2, 1, 2), chunk(0, 0, 1)]
        );
        // Clamped to the representation, never past it.
        assert_eq!(segments(&map(), &[span(8, 99)]), [chunk(2, 0, 2)]);
    }
}
