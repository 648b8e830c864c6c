//! Serving an object stored in chunks (see [`crate::cache::chunk`]): the stored manifest
//! says what the response is (status, headers, which bytes, as [`respond`] decides it for a
//! whole entry), and the bytes come from the chunks, each asked for as its own request through
//! the usual phases, so each is looked up, coalesced, routed to its owner on the ring and
//! filled from the origin with `Range` and `If-Range` like any other key.
//!
//! Chunks are read in order, several ahead of the one being sent (up to [`READ_AHEAD`] and
//! [`READ_AHEAD_BYTES`], within the node's read-ahead budget): a cold chunk costs round trips
//! to its owner and the origin, and one at a time they would set the pace. Each chunk's body
//! is sent frame by frame as it comes, never copied into one buffer; the one being sent to a
//! client that reads slowly holds only a small window, the rest waiting in the sockets. The
//! first chunk's head is checked before the response's head goes out: a representation that
//! changed since the manifest was stored is found while the answer can still be the new one
//! (the manifest is dropped and the request fetched again). A change found later cuts the
//! body short, an error the client sees, never bytes of two versions in one response.
//!
//! A node that does not own the object reads the chunks itself: the owner answers it with
//! the manifest ([`crate::proxy::request::Manifest`]), so each chunk crosses one hop (its
//! owner to the node the client asked), not two.

use crate::locks::lock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Version};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

use super::Proxy;
use super::fill::FillHead;
use super::outcome::{Outcome, Served};
use super::request::{Manifest, RequestContext, Site};
use super::respond;
use crate::cache::chunk::{self, ChunkMap, ChunkRequest, Mismatch};
use crate::cache::control::RequestDirectives;
use crate::cache::range::Piece;
use crate::cluster::hop::Hops;
use crate::cluster::peer::Reads;
use crate::error::ProxyError;
use crate::service::{ClientInfo, ProxyBody};
use crate::storage::Entry;
use crate::storage::budget::Reservation;
use crate::storage::coalesce::Subscriber;
use crate::storage::snapshot;

/// Why a chunked object could not be served from its manifest.
pub(super) enum Failure {
    /// The representation changed (or its origin ignores `Range`): the manifest is gone;
    /// fetch the object again.
    Restart,
    Error(ProxyError),
}

/// Serve `entry`, a manifest stored here, for `ctx`; to a node that reads the chunks itself,
/// the manifest.
pub(super) async fn serve(
    proxy: &Arc<Proxy>,
    ctx: &RequestContext,
    entry: &Entry,
    now: SystemTime,
    outcome: Outcome,
) -> Result<Served, Failure> {
    if ctx.manifest == Manifest::Answer && entry.chunks.is_some() {
        let age = entry.current_age(now).as_secs();
        let mut record = Vec::new();
        snapshot::encode(&ctx.key, entry, &mut record);
        let record = Bytes::from(record);
        return Ok(respond::manifest(
            &proxy.node,
            entry,
            ctx,
            record,
            outcome,
            age,
        ));
    }
    serve_chunks(proxy, ctx, entry, now, outcome, Holder::Here).await
}

/// Largest manifest read from another node: a head and a chunk map, a few KiB.
const MAX_MANIFEST: usize = 1 << 20;

/// Serve an object whose owner, another node, answered with its manifest (`head`, the
/// record in `body`): this node reads the chunks from their owners, so each crosses one hop.
/// `Restart` when the answer is not a manifest this node can serve from; the object is then
/// asked for again as bytes.
pub(super) async fn from_owner(
    proxy: &Arc<Proxy>,
    ctx: &RequestContext,
    head: &FillHead,
    mut body: Subscriber<FillHead>,
    outcome: Outcome,
) -> Result<Served, Failure> {
    let mut record = Vec::new();
    while let Some(piece) = body.next_chunk().await {
        let piece = piece.map_err(|_| Failure::Restart)?;
        if record.len() + piece.len() > MAX_MANIFEST {
            return Err(Failure::Restart);
        }
        record.extend_from_slice(&piece);
    }
    let entry = match snapshot::decode(&record) {
        Ok((key, entry)) if key == ctx.key && entry.chunks.is_some() => entry,
        _ => return Err(Failure::Restart),
    };
    // As the owner answered it: its Cache-Status member and Via come first.
    let entry = entry.answered_through(&head.headers);
    let now = SystemTime::now();
    serve_chunks(proxy, ctx, &entry, now, outcome, Holder::Owner).await
}

/// Where the manifest being served is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Here,
    /// On the object's owner, another node: a change found in the chunks must reach it.
    Owner,
}

async fn serve_chunks(
    proxy: &Arc<Proxy>,
    ctx: &RequestContext,
    entry: &Entry,
    now: SystemTime,
    outcome: Outcome,
    holder: Holder,
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
        holder,
        segments: Segments::new(map, pieces),
        current: None,
        ahead: VecDeque::new(),
        open: None,
    };
    // The first chunk's head is checked before the response's goes out, and before any
    // other chunk is asked for: a representation that changed since the manifest was stored
    // (or an origin that ignores ranges) is found while the answer can still be the new one,
    // at the cost of one request.
    if let Some(first) = reader.next_indices(u64::MAX, 1).first().copied() {
        reader.make_current(first);
        if let Err(e) = reader.checked().await {
            return Err(reader.failed(e).await);
        }
        reader.read_ahead(first);
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

/// A chunk as it arrives: its body's frames, kept as they came (no copy into one buffer), so
/// the response sends them while the rest is still on its way. It holds at most `window`
/// bytes the response has not taken: a chunk read ahead holds all of it (its bytes are
/// reserved), the chunk being sent to a slow client only a little, the rest waiting in the
/// sockets behind it.
struct Arriving {
    state: std::sync::Mutex<ArrivingState>,
    changed: tokio::sync::Notify,
}

struct ArrivingState {
    /// Its head was checked: it is a part of the representation being served.
    checked: bool,
    /// The frames from offset `front` on (those before were taken and dropped).
    frames: VecDeque<Bytes>,
    front: usize,
    /// The offset past the last frame: every byte that came.
    len: usize,
    window: usize,
    /// How it ended; the error is taken by the response that meets it.
    end: Option<Result<(), ChunkError>>,
}

/// What the chunk being sent holds while it waits for its client, when the node's read-ahead
/// budget has room: more bytes per wake-up for a fast client.
const WINDOW: usize = 256 << 10;
/// ... and when it has none: a slow client still gets its bytes, a frame or two at a time.
const MIN_WINDOW: usize = 64 << 10;

/// Bytes of a chunk being sent, or why there are none.
enum Taken {
    Bytes(Bytes),
    /// The bytes asked for were taken and dropped (a multipart answer went back within the
    /// chunk): the chunk must be read again.
    Behind,
    Failed(ChunkError),
}

impl Arriving {
    fn new(window: usize) -> Self {
        Self {
            state: std::sync::Mutex::new(ArrivingState {
                checked: false,
                frames: VecDeque::new(),
                front: 0,
                len: 0,
                window,
                end: None,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut ArrivingState)) {
        f(&mut lock(&self.state));
        self.changed.notify_waiters();
    }

    /// Wait until `ready` says something of the state.
    async fn wait<T>(&self, mut ready: impl FnMut(&mut ArrivingState) -> Option<T>) -> T {
        loop {
            // Registered before the state is read: an update in between still wakes it.
            let notified = self.changed.notified();
            if let Some(out) = ready(&mut lock(&self.state)) {
                return out;
            }
            notified.await;
        }
    }

    /// One more frame; with `more` to come, returns once the window has room for them.
    async fn push(&self, frame: Bytes, more: bool) {
        self.update(|state| {
            state.len += frame.len();
            state.frames.push_back(frame);
        });
        if more {
            self.wait(|state| (state.len - state.front < state.window).then_some(()))
                .await;
        }
    }

    /// The bytes from offset `at`, up to `to`, that have come (one frame's worth), once some
    /// have; those before `at` are dropped, which makes room for more.
    async fn take(&self, at: usize, to: usize) -> Taken {
        loop {
            let notified = self.changed.notified();
            let (taken, freed) = {
                let mut state = lock(&self.state);
                let freed = state.drop_before(at);
                (state.take(at, to), freed)
            };
            if freed {
                self.changed.notify_waiters();
            }
            if let Some(taken) = taken {
                return taken;
            }
            notified.await;
        }
    }
}

impl ArrivingState {
    /// Drop the frames that end at or before `at`; whether any went.
    fn drop_before(&mut self, at: usize) -> bool {
        let mut freed = false;
        while let Some(frame) = self.frames.front() {
            if self.front + frame.len() > at {
                break;
            }
            self.front += frame.len();
            self.frames.pop_front();
            freed = true;
        }
        freed
    }

    fn take(&mut self, at: usize, to: usize) -> Option<Taken> {
        if at < self.front {
            return Some(Taken::Behind);
        }
        let mut offset = self.front;
        for frame in &self.frames {
            if at < offset + frame.len() {
                let until = (to - offset).min(frame.len());
                return Some(Taken::Bytes(frame.slice(at - offset..until)));
            }
            offset += frame.len();
        }
        match &self.end {
            Some(Err(_)) => match self.end.take() {
                Some(Err(e)) => Some(Taken::Failed(e)),
                _ => None,
            },
            Some(Ok(())) => Some(Taken::Failed(ChunkError::Failed(ProxyError::Internal(
                "chunk shorter than its span",
            )))),
            None => None,
        }
    }
}

/// A chunk being read: its frames, the task reading it, and the bytes it holds of the node's
/// read-ahead budget.
struct Reading {
    index: u64,
    arriving: Arc<Arriving>,
    task: JoinHandle<()>,
    _held: Reservation,
}

impl Drop for Reading {
    /// A client gone, a response cut short, a chunk passed over or read again: its read is
    /// not waited for (the chunk's fill runs on and stores it; only this response's wait and
    /// bytes go).
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Reader {
    proxy: Arc<Proxy>,
    base: Arc<Base>,
    holder: Holder,
    /// What is left of the body (and the object's chunk map).
    segments: Segments,
    /// The chunk being sent (a multipart answer may cut several pieces from one).
    current: Option<Reading>,
    /// The next chunks, being read, in the order they are needed.
    ahead: VecDeque<Reading>,
    /// The segment being sent: its chunk, the offset of its next byte, and its end.
    open: Option<(u64, usize, usize)>,
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

    /// Start reading `index`, holding `held` of the budget: all of it read ahead (from
    /// another node in large frames), a window of it when it is sent as it comes (in small
    /// ones: a slow client holds a few frames of it at each step, outside the budget).
    fn read(&self, index: u64, held: Reservation, window: usize, reads: Reads) -> Reading {
        let arriving = Arc::new(Arriving::new(window));
        let request = self.segments.map.request(index);
        let task = tokio::spawn(fetch(
            self.proxy.clone(),
            self.base.clone(),
            request,
            reads,
            arriving.clone(),
        ));
        Reading {
            index,
            arriving,
            task,
            _held: held,
        }
    }

    /// Read `index` to send as it comes: a window from the budget, or the least one.
    fn read_now(&self, index: u64) -> Reading {
        let mut held = Reservation::new(self.proxy.read_ahead_budget.clone());
        let window = if held.grow(WINDOW as u64) {
            WINDOW
        } else {
            MIN_WINDOW
        };
        self.read(index, held, window, Reads::Small)
    }

    /// Make `index` the chunk being sent, and read ahead of it.
    fn start(&mut self, index: u64) {
        self.make_current(index);
        self.read_ahead(index);
    }

    /// Make `index` the chunk being sent: read already, or now.
    fn make_current(&mut self, index: u64) {
        if self.current.as_ref().is_none_or(|c| c.index != index) {
            // Reads started for chunks passed over (not needed after all) stay until the
            // response ends; their fills store those chunks either way.
            let reading = match self.ahead.iter().position(|a| a.index == index) {
                Some(i) => self.ahead.remove(i),
                None => None,
            };
            let reading = reading.unwrap_or_else(|| self.read_now(index));
            self.current = Some(reading);
        }
    }

    /// Start reading the chunks after `index`, as far as this response's read-ahead and the
    /// node's read-ahead budget allow: before waiting for `index`, so their round trips
    /// overlap its.
    fn read_ahead(&mut self, index: u64) {
        let depth = usize::try_from(READ_AHEAD_BYTES / self.segments.map.size.max(1))
            .unwrap_or(1)
            .clamp(1, READ_AHEAD);
        for next in self.next_indices(index, depth) {
            if self.ahead.iter().any(|a| a.index == next) {
                continue;
            }
            let len = self.segments.map.request(next).len();
            let mut held = Reservation::new(self.proxy.read_ahead_budget.clone());
            if !held.grow(len) {
                // The node reads ahead for many responses already: this one reads as it sends.
                break;
            }
            let window = usize::try_from(len).unwrap_or(usize::MAX);
            let reading = self.read(next, held, window, Reads::Large);
            self.ahead.push_back(reading);
        }
    }

    /// Wait until the chunk being sent is known to belong to the representation.
    async fn checked(&mut self) -> Result<(), ChunkError> {
        let Some(current) = &self.current else {
            return Ok(());
        };
        current
            .arriving
            .wait(|state| match &state.end {
                Some(Err(_)) => state.end.take(),
                _ if state.checked || state.end.is_some() => Some(Ok(())),
                _ => None,
            })
            .await
    }

    async fn next(&mut self) -> Option<Result<Bytes, ProxyError>> {
        loop {
            if let Some((index, at, to)) = self.open {
                let bytes = match self.bytes(index, at, to).await {
                    Ok(bytes) => bytes,
                    Err(e) => return Some(Err(self.failed_mid_body(e).await)),
                };
                let at = at + bytes.len();
                self.open = (at < to).then_some((index, at, to));
                return Some(Ok(bytes));
            }
            match self.segments.next()? {
                Segment::Literal(bytes) => return Some(Ok(bytes)),
                Segment::Chunk { index, from, to } if from < to => {
                    self.start(index);
                    self.open = Some((index, from, to));
                }
                Segment::Chunk { .. } => {}
            }
        }
    }

    /// Bytes from offset `at` of the chunk being sent, up to `to`: as many as have come in
    /// one frame, once some have.
    async fn bytes(&mut self, index: u64, at: usize, to: usize) -> Result<Bytes, ChunkError> {
        loop {
            let Some(current) = &self.current else {
                return Err(ChunkError::Failed(ProxyError::Internal(
                    "no chunk being read",
                )));
            };
            match current.arriving.take(at, to).await {
                Taken::Bytes(bytes) => return Ok(bytes),
                Taken::Failed(e) => return Err(e),
                Taken::Behind => {
                    let again = self.read_now(index);
                    self.current = Some(again);
                }
            }
        }
    }

    /// A failure once the head went out: the body ends short (an error the client sees),
    /// never with bytes of two versions.
    async fn failed_mid_body(&self, error: ChunkError) -> ProxyError {
        match self.failed(error).await {
            Failure::Error(e) => e,
            Failure::Restart => ProxyError::OriginBody(
                "the representation changed while it was served from chunks".to_owned(),
            ),
        }
    }

    /// The manifest no longer describes the object: removed here, or, held by the object's
    /// owner, everywhere (as an unsafe method's invalidation is), so its next request fetches
    /// the object again rather than find the chunks changed once more.
    async fn drop_manifest(&self) {
        match self.holder {
            Holder::Here => {
                self.proxy.store.purge(&self.base.url_key).await;
            }
            Holder::Owner => {
                Box::pin(
                    self.proxy
                        .invalidate_everywhere(vec![self.base.url_key.clone()]),
                )
                .await;
            }
        }
    }

    /// Count the failure; a changed or refused representation, or an origin that ignores
    /// `Range`, loses its manifest.
    async fn failed(&self, error: ChunkError) -> Failure {
        let metrics = &self.proxy.metrics.store;
        match error {
            ChunkError::Mismatch(Mismatch::Gone) => {
                metrics.chunk_fetch("gone");
                tracing::info!(key = %self.base.url_key, "a chunk was refused; fetching the object again");
                self.drop_manifest().await;
                Failure::Restart
            }
            ChunkError::Mismatch(Mismatch::Changed) => {
                metrics.chunk_fetch("changed");
                tracing::info!(key = %self.base.url_key, "object changed while served from chunks; fetching it again");
                self.drop_manifest().await;
                Failure::Restart
            }
            ChunkError::Mismatch(why @ (Mismatch::Ignored | Mismatch::Unvalidated)) => {
                metrics.chunk_fetch("ignored");
                let what = match why {
                    Mismatch::Ignored => "origin ignores Range",
                    _ => "origin answers ranges without the validator its whole response had",
                };
                tracing::info!(key = %self.base.url_key, "{what}; not storing the object in chunks");
                self.proxy.store.mark_unchunkable(&self.base.url_key);
                self.drop_manifest().await;
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

/// Read one chunk through the request path into `arriving`, frame by frame as its body
/// comes; no more than the chunk's length is read (a longer body is an error, not memory).
async fn fetch(
    proxy: Arc<Proxy>,
    base: Arc<Base>,
    request: ChunkRequest,
    reads: Reads,
    arriving: Arc<Arriving>,
) {
    let result = async {
        let ctx = base.context(&request, reads);
        // Boxed: the request path may serve chunked objects.
        let served = Box::pin(proxy.cacheable(ctx)).await;
        let (parts, mut body) = served.response.into_parts();
        chunk::check(&request, parts.status, &parts.headers, SystemTime::now())
            .map_err(ChunkError::Mismatch)?;
        arriving.update(|state| state.checked = true);
        let limit = usize::try_from(request.len()).unwrap_or(usize::MAX);
        let mut got = 0usize;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ChunkError::Failed(ProxyError::OriginBody(e.to_string())))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            got += data.len();
            if got > limit {
                let long = "a chunk's body was longer than its length".to_owned();
                return Err(ChunkError::Failed(ProxyError::OriginBody(long)));
            }
            if got == limit {
                // Counted before its last bytes go on: whoever saw them sees it counted.
                proxy.metrics.store.chunk_fetch("ok");
            }
            if !data.is_empty() {
                arriving.push(data, got < limit).await;
            }
        }
        if got != limit {
            let short = "a chunk's body was not its length".to_owned();
            return Err(ChunkError::Failed(ProxyError::OriginBody(short)));
        }
        Ok(())
    }
    .await;
    arriving.update(|state| state.end = Some(result));
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

    fn context(&self, request: &ChunkRequest, reads: Reads) -> RequestContext {
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
            manifest: Manifest::No,
            reads,
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
