//! Phase 4, fill: the task that fetches one response from the origin for every subscriber of
//! a [`Fill`](crate::storage::coalesce::Fill), streams it to them, and stores it when allowed.
//!
//! The task belongs to no client (it is spawned), so a client that disconnects does not cancel
//! it; it always ends by publishing a final state, so no subscriber can hang.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;

use super::Proxy;
use super::headers::{append_list, strip_hop_by_hop};
use super::request::Site;
use super::route::Upstream;
use super::store::{self, OriginHead};
use crate::cache::chunk::{self, CHUNK_HEADER, ChunkMap, ChunkRequest};
use crate::cache::conditional::{head_describes, selects};
use crate::cache::content_length;
use crate::cache::control::RequestDirectives;
use crate::cache::freshness;
use crate::cache::status::NoCacheReason;
use crate::cache::vary::{SecondaryKey, secondary_key};
use crate::cluster::hop::{FETCHED_HEADER, fetched_value};
use crate::cluster::peer::{PROBE_PATH, PeerError, Reads};
use crate::cluster::purge_log::Verdict;
use crate::error::ProxyError;
use crate::observability::metrics::Discard;
use crate::origin::{OriginRequest, UpstreamBody};
use crate::storage::Entry;
use crate::storage::budget::Reservation;
use crate::storage::coalesce::{Publisher, Share};

/// How far (bytes) the slowest reader may lag behind a fill that is not being stored before
/// the fill stops reading from the origin.
const PASS_WINDOW: usize = 1 << 20;
/// ... when it is a chunk passed on to the response that reads it (a node reading another's
/// chunks): that response holds what it reads ahead within the node's read-ahead budget, and
/// a window here too is a second buffer per response, outside any budget. 50 slow clients
/// of one object through a non-owner: its RSS grew 121-141 MiB with 1 MiB here, 57-85 MiB
/// with 64 KiB (three runs each).
const CHUNK_PASS_WINDOW: usize = 64 << 10;

/// Why a fill that was not storing stopped: its readers were gone.
const READERS_LEFT: &str = "every reader left or stopped reading";

/// What subscribers learn when the origin's response head arrives.
#[derive(Debug)]
pub(crate) struct FillHead {
    pub(crate) status: StatusCode,
    /// The origin's headers, hop-by-hop fields removed.
    pub(crate) headers: HeaderMap,
    /// `Vary` fields and the leader's values for them: a follower whose values differ must
    /// not take this response.
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) secondary: SecondaryKey,
    /// Whether the response will be stored if its body completes.
    pub(crate) storing: bool,
    pub(crate) ttl: i64,
    pub(crate) age: u64,
    pub(crate) not_stored: Option<NoCacheReason>,
    pub(crate) content_length: Option<u64>,
    /// The origin's `Set-Cookie` fields, kept out of `headers`: they go to the client whose
    /// request fetched the response, never to others sharing it or to the store.
    pub(crate) set_cookie: Vec<HeaderValue>,
    /// Another Outpost node answered (the owner, a shield, a previous owner): its error
    /// already says what its cache decided.
    pub(crate) from_node: bool,
}

pub(crate) struct FillJob {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) site: Arc<Site>,
    pub(crate) key: String,
    pub(crate) request: OriginRequest,
    /// The leading client's request headers (secondary key and §3.5 storability).
    pub(crate) request_headers: HeaderMap,
    pub(crate) request_cc: RequestDirectives,
    /// The stored entry being revalidated, if any.
    pub(crate) stale: Option<Arc<Entry>>,
    /// Registered in the in-flight map (a shared fill) rather than private to one client.
    pub(crate) registered: bool,
    /// Where the response is asked for, decided by the route phase.
    pub(crate) upstream: Upstream,
    /// The chunk this fill is for (`key` is the chunk's), asked with `Range` and `If-Range`.
    pub(crate) chunk: Option<ChunkRequest>,
    /// This node reads the chunks itself: the object's owner may answer with its manifest.
    pub(crate) offer_manifest: bool,
    /// How a node's answer is read (the leading request's choice).
    pub(crate) reads: Reads,
}

/// With `replicas > 1`, the other live nodes that hold the key: what this node stores of a
/// fill is pushed to them ([`crate::cluster::replicate`]).
pub(crate) struct Holders {
    cluster: Arc<crate::cluster::Cluster>,
    peers: Vec<Arc<crate::cluster::peer::Peer>>,
}

impl Holders {
    /// For a fill that stores its response here as the key's first holder (not one that asks
    /// the owner: that one is the owner's to push). `key` is the object's, or a chunk's.
    pub(crate) fn of(
        cluster: Option<&Arc<crate::cluster::Cluster>>,
        key: &str,
        upstream: &Upstream,
    ) -> Option<Self> {
        let cluster = cluster.filter(|c| c.replicas > 1)?;
        if upstream.is_owner() {
            return None;
        }
        let peers = cluster.other_holders(crate::hash::key(key));
        (!peers.is_empty()).then(|| Self {
            cluster: cluster.clone(),
            peers,
        })
    }

    /// Push `entry`, stored here under `key`, to each holder.
    fn push(&self, key: &str, entry: &Arc<Entry>) {
        crate::cluster::replicate::push(&self.cluster, self.peers.clone(), key, entry.clone());
    }
}

impl FillJob {
    fn leave(&self, publisher: &Publisher<FillHead>) {
        if self.registered {
            self.proxy.inflight.leave(&self.key, publisher.fill());
        }
    }

    /// Store `entry`, unless a purge came while the fill was in flight: the purge wins, what
    /// came is served and nothing stored. Whether it was stored.
    async fn keep(
        &self,
        publisher: &Publisher<FillHead>,
        request_time: SystemTime,
        entry: &Arc<Entry>,
    ) -> bool {
        let store = &self.proxy.store;
        if publisher.fill().discarded() || store.tag_purged_since(request_time, &entry.tags) {
            self.site.metrics.discarded(Discard::Purged);
            return false;
        }
        store
            .insert(&self.key, entry.clone(), self.site.policy.max_variants)
            .await;
        self.push_to_holders(entry);
        true
    }

    /// Push what this node stored to the key's other holders, if it stored it as the key's
    /// first holder (from the origin or the shield, or in place of an owner that failed):
    /// decided by where the fill went in the end.
    fn push_to_holders(&self, entry: &Arc<Entry>) {
        let cluster = self.proxy.cluster.as_ref();
        if let Some(holders) = Holders::of(cluster, &self.key, &self.upstream) {
            holders.push(&self.key, entry);
        }
    }

    /// From now on the key is not shared: new requests skip coalescing for a while.
    fn stop_sharing(&self, publisher: &Publisher<FillHead>) {
        self.proxy.store.mark_uncacheable(&self.key);
        self.leave(publisher);
    }

    /// Ask the upstream the route phase chose. A node that cannot be reached has been
    /// ejected by the time this returns; the route's fallback (the shield tier, then the
    /// origin) is asked instead.
    async fn send(&mut self) -> Result<Response<UpstreamBody>, ProxyError> {
        // When this request was asked, on the clock purges are stamped with: at or after
        // every purge this node had taken or heard of.
        let asked = self.proxy.purges.now();
        while let Some(hop) = self.upstream.node_hop() {
            let cluster = &hop.to.cluster;
            let signed = cluster.secret.sign_hops(
                &cluster.me.0,
                hop.to.https,
                hop.hops,
                &self.request.method,
                &hop.to.target,
                SystemTime::now(),
            );
            // The other node has its own first-byte timeout towards its upstream: give it the
            // time to answer with its own error first.
            let handoff = matches!(self.upstream, Upstream::Handoff(_));
            let timeout = if handoff {
                // It answers from memory or not at all.
                cluster.peer_timeout * 2
            } else {
                self.site.origin.first_byte_timeout() + Duration::from_secs(1)
            };
            let mut request = std::borrow::Cow::Borrowed(&self.request);
            if let Some(chunk) = &self.chunk {
                request
                    .to_mut()
                    .headers
                    .insert(CHUNK_HEADER, chunk.marker());
            } else if self.offer_manifest
                && matches!(self.upstream, Upstream::Owner(_) | Upstream::Handoff(_))
            {
                request
                    .to_mut()
                    .headers
                    .insert(CHUNK_HEADER, chunk::MANIFEST);
            }
            if handoff {
                // Only what it holds: a miss there is answered at once (504), not fetched.
                append_list(
                    &mut request.to_mut().headers,
                    header::CACHE_CONTROL,
                    "only-if-cached",
                );
            }
            let key_hash = crate::hash::key(&self.key);
            let check = || {
                let query = format!("key={key_hash:016x}");
                let headers =
                    cluster.signed_headers(&http::Method::GET, PROBE_PATH, Some(&query), b"");
                (format!("{PROBE_PATH}?{query}"), headers)
            };
            let answer = cluster
                .client
                .reading(self.reads)
                .forward(
                    &hop.peer,
                    &request,
                    signed,
                    cluster.peer_timeout,
                    timeout,
                    &check,
                )
                .await;
            match answer {
                Ok(response) if self.purged_since(&response, asked) => {
                    // The node missed a purge that names what it answered with: the origin
                    // has the version the purge left.
                    tracing::info!(node = %hop.peer.id.0, key = %self.key, "a node answered with a purged version; asking the origin");
                    drop(response);
                    self.upstream = Upstream::Origin;
                }
                Ok(response) if handoff => {
                    let hit = response.status() != StatusCode::GATEWAY_TIMEOUT;
                    cluster.count_handoff(hit);
                    if hit {
                        return Ok(response.map(UpstreamBody::from));
                    }
                    // Not held there (or not usable): the usual way.
                    drop(response);
                    self.upstream.unreachable();
                }
                Ok(response) => return Ok(response.map(UpstreamBody::from)),
                Err(PeerError::Timeout) if !handoff => return Err(ProxyError::timeout()),
                Err(PeerError::Timeout) => {
                    // The previous owner is only a shortcut: slow, it is skipped.
                    cluster.count_handoff(false);
                    self.upstream.unreachable();
                }
                Err(PeerError::Unreachable(why) | PeerError::Stalled(why)) => {
                    tracing::debug!(node = %hop.peer.id.0, %why, "node unreachable or stalled; asking the next upstream");
                    self.upstream.unreachable();
                }
            }
        }
        let mut response = self.site.origin.send(&self.request, None).await?;
        // Only another node says when its copy was fetched, or sends a manifest.
        response.headers_mut().remove(FETCHED_HEADER);
        response.headers_mut().remove(CHUNK_HEADER);
        Ok(response)
    }

    /// Whether another node's answer is a copy fetched before a purge this node holds that
    /// names it (the node missed that purge: down, stopped or cut off when it was taken),
    /// taken before this request was `asked` (a purge that came while the other node was
    /// fetching for it concerns the requests after it, not this one).
    fn purged_since(&self, response: &Response<hyper::body::Incoming>, asked: u64) -> bool {
        if !response.status().is_success() {
            return false;
        }
        let headers = response.headers();
        let now = SystemTime::now();
        // Its own time if it says; else what its Age says (a fresh miss there: now).
        let age = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let by_age = now
            .checked_sub(Duration::from_secs(age))
            .unwrap_or(std::time::UNIX_EPOCH);
        let fetched = crate::cluster::hop::fetched_of(headers).map_or(by_age, |t| t.min(now));
        if !self.proxy.purges.any_since(fetched) {
            return false;
        }
        let tags = self.site.policy.tags(headers);
        matches!(
            self.proxy
                .purges
                .verdict_for_request(&self.key, &tags, fetched, asked),
            Verdict::Purged | Verdict::Stale(_)
        )
    }
}

pub(crate) async fn run(mut job: FillJob, publisher: Publisher<FillHead>) {
    let gauge = &job.proxy.metrics.store.fills_in_flight.clone();
    gauge.inc();
    let mut request_time = SystemTime::now();
    let mut sent = job.send().await;
    if let (Ok(response), Some(stale)) = (&sent, &job.stale)
        && response.status() == StatusCode::NOT_MODIFIED
        && !selects(&stale.headers, response.headers())
    {
        // RFC 9111 §4.3.4: a 304 for another representation than the stored one cannot
        // freshen it; ask again without conditions.
        // Let go of the 304 (and its connection slot) before asking again.
        drop(std::mem::replace(&mut sent, Err(ProxyError::OriginDown)));
        job.request.headers.remove(header::IF_NONE_MATCH);
        job.request.headers.remove(header::IF_MODIFIED_SINCE);
        request_time = SystemTime::now();
        // The same upstream again: an owner answered for its own copy.
        sent = job.send().await;
    }
    match sent {
        Ok(response) => {
            let response_time = SystemTime::now();
            let (parts, body) = response.into_parts();
            // hyper's header values are slices of the connection's read buffer, which also
            // holds the body's first bytes: kept for the whole fill, they would keep that
            // buffer (up to ~400 KiB) alive as long as the slowest client reads.
            let headers = store::detached(parts.headers);
            let head = OriginHead {
                status: parts.status,
                headers: &headers,
                request_time,
                response_time,
            };
            respond_with(&job, publisher, &head, body).await;
        }
        Err(e) => {
            job.leave(&publisher);
            publisher.fail(e);
        }
    }
    gauge.dec();
}

async fn respond_with(
    job: &FillJob,
    publisher: Publisher<FillHead>,
    head: &OriginHead<'_>,
    body: UpstreamBody,
) {
    let mut headers = head.headers.clone();
    strip_hop_by_hop(&mut headers);
    if head.status == StatusCode::NOT_MODIFIED
        && let Some(stale) = &job.stale
        && selects(&stale.headers, &headers)
    {
        // A 304 has no body: free its connection slot before the store work.
        drop(body);
        revalidated(job, publisher, head, stale, &headers).await;
        return;
    }
    let set_cookie = match headers.remove(header::SET_COOKIE) {
        None => Vec::new(),
        Some(first) => {
            let mut all = vec![first];
            all.extend(
                head.headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .skip(1)
                    .cloned(),
            );
            all
        }
    };
    let head_request = job.request.method == Method::HEAD;
    if head_request {
        freshen_from_head(job, &publisher, head, &headers).await;
    }
    let (fill_head, share, chunks) = fill_head(job, head, headers.clone(), set_cookie);
    if let Some(map) = chunks {
        // Fetched chunk by chunk instead, each by its owner: the whole body is not read.
        drop(body);
        store_manifest(job, publisher, head, headers, map, share).await;
        return;
    }
    let storing = fill_head.storing;
    // Streamed through and shared, but later requests ask again as usual (without skipping
    // coalescing, as for a response that cannot be stored).
    let not_owner = matches!(
        fill_head.not_stored,
        Some(NoCacheReason::NotOwner | NoCacheReason::NotAdmitted)
    );
    publisher.head(fill_head, share);
    if not_owner || head_request {
        // Streamed through from the owner, or a HEAD: later requests ask again (a HEAD says
        // nothing about whether the GET response may be stored).
        job.leave(&publisher);
        publisher.start_trimming();
    } else if !storing {
        job.stop_sharing(&publisher);
        publisher.start_trimming();
    }
    stream_body(job, publisher, head, headers, body, storing).await;
}

/// A representation to be stored in chunks: its manifest is stored, and every subscriber
/// serves it from the chunks (fetched as it streams).
async fn store_manifest(
    job: &FillJob,
    publisher: Publisher<FillHead>,
    head: &OriginHead<'_>,
    mut headers: HeaderMap,
    map: ChunkMap,
    share: Share,
) {
    if matches!(job.upstream, Upstream::Shield(_) | Upstream::Handoff(_)) {
        headers.remove("cache-status");
    }
    let policy = &job.site.policy;
    let entry = Arc::new(store::build_manifest(
        head,
        headers,
        map,
        &job.request_headers,
        policy,
    ));
    if job.keep(&publisher, head.request_time, &entry).await {
        job.proxy.metrics.store.chunked_objects.inc();
    }
    job.leave(&publisher);
    publisher.entry(entry, share);
}

/// A 304 freshened the stale entry (RFC 9111 §4.3.4). The merged response is checked again:
/// the 304 may have brought `Set-Cookie`, `private` or `no-store` with it.
async fn revalidated(
    job: &FillJob,
    publisher: Publisher<FillHead>,
    head: &OriginHead<'_>,
    stale: &Entry,
    headers: &HeaderMap,
) {
    let (entry, storable) = store_refreshed(job, &publisher, head, stale, headers).await;
    let ttl = entry.freshness(SystemTime::now()).ttl_secs();
    let share = if store::shareable(storable.err(), ttl, &entry.directives) {
        Share::All
    } else {
        Share::One
    };
    job.leave(&publisher);
    // Another node answered the revalidation: the caches it names handled this response
    // too (RFC 9211), before this one.
    let upstream_status = headers
        .get("cache-status")
        .filter(|_| job.upstream.node_hop().is_some());
    let entry = match upstream_status {
        Some(status) => Arc::new(entry.answered_with_status(status.clone())),
        None => entry,
    };
    publisher.entry(entry, share);
}

/// The stored response freshened by a 304's (or a describing HEAD's) fields, checked for
/// storability again (RFC 9111 §3.2, §4.3.4): stored in place of the stale one, or, no longer
/// storable, the stale one removed.
async fn store_refreshed(
    job: &FillJob,
    publisher: &Publisher<FillHead>,
    head: &OriginHead<'_>,
    stale: &Entry,
    headers: &HeaderMap,
) -> (Arc<Entry>, Result<(), NoCacheReason>) {
    let policy = &job.site.policy;
    let entry = Arc::new(store::refreshed(stale, head, headers, policy));
    let merged = OriginHead {
        status: entry.status,
        headers: &entry.headers,
        ..*head
    };
    let storable = store::storability(
        &job.request_headers,
        &job.request_cc,
        &merged,
        &entry.directives,
        policy,
    );
    if storable.is_ok() && !publisher.fill().discarded() {
        job.proxy
            .store
            .insert(&job.key, entry.clone(), policy.max_variants)
            .await;
        // The holders' copies are freshened too (a stale one would ask the origin again).
        job.push_to_holders(&entry);
    } else {
        job.proxy.store.purge(&job.key).await;
    }
    (entry, storable)
}

/// RFC 9111 §4.3.5: a 200 to a HEAD passed to the origin freshens the stored response it
/// describes (the one being revalidated: same validators, same length) as a 304 would, merged
/// and checked again like one; a stored response it does not describe is stale from now on.
async fn freshen_from_head(
    job: &FillJob,
    publisher: &Publisher<FillHead>,
    head: &OriginHead<'_>,
    headers: &HeaderMap,
) {
    let Some(stale) = &job.stale else {
        return;
    };
    if head.status != StatusCode::OK {
        return;
    }
    if !head_describes(&stale.headers, stale.len(), headers) {
        stale.mark_stale(SystemTime::now());
        return;
    }
    // Stored or removed; the HEAD's own response goes to its client either way.
    let _ = store_refreshed(job, publisher, head, stale, headers).await;
}

/// What subscribers learn from the response head, and who may use the response; and, for a
/// representation to be stored in chunks, their map.
fn fill_head(
    job: &FillJob,
    head: &OriginHead<'_>,
    mut headers: HeaderMap,
    set_cookie: Vec<HeaderValue>,
) -> (FillHead, Share, Option<ChunkMap>) {
    if !headers.contains_key(FETCHED_HEADER) {
        // Fetched from the origin now: a node this fill answers learns exactly when (not
        // from `Age`, whole seconds that count the origin's delay), so it can tell a purge
        // taken after the fetch from one before it. Clients never see it.
        headers.insert(FETCHED_HEADER, fetched_value(head.request_time));
    }
    let policy = &job.site.policy;
    let cc = policy.directives(head.status, &headers);
    let length = content_length(&headers);
    let storable = match &job.chunk {
        None => store::storability(&job.request_headers, &job.request_cc, head, &cc, policy),
        // A chunk's 206 is judged as the 200 it is part of (RFC 9111 §3.3); any other answer
        // to a chunk request is passed back, unstored, to the node that checks it.
        Some(chunk) => match chunk::check(chunk, head.status, &headers, head.response_time) {
            Ok(()) => {
                let whole = OriginHead {
                    status: StatusCode::OK,
                    ..*head
                };
                store::storability(&job.request_headers, &job.request_cc, &whole, &cc, policy)
            }
            Err(_) => Err(NoCacheReason::Status),
        },
    };
    let vary = policy.vary_fields(&headers);
    let proxy = &job.proxy;
    let chunks = match storable {
        // A request with credentials is answered whole: its chunks' requests, shared by
        // every client, go without them, and would be refused.
        Ok(())
            if job.chunk.is_none()
                && job.request.method == Method::GET
                && !job.request_headers.contains_key(header::AUTHORIZATION) =>
        {
            let unchunkable = proxy.store.is_unchunkable(&job.key);
            let now = head.response_time;
            let varies = !vary.is_empty();
            (!unchunkable)
                .then(|| {
                    chunk::plan(
                        head.status,
                        &headers,
                        varies,
                        (proxy.chunk_size, proxy.chunk_threshold),
                        proxy.max_object,
                        now,
                    )
                })
                .flatten()
        }
        _ => None,
    };
    // A client's range passed on (to the owner, or by a private fill): only a whole 200 may
    // stand for the object; a 206 or a 416 answers that range alone.
    let ranged = job.chunk.is_none() && job.request.headers.contains_key(header::RANGE);
    let not_stored = match storable {
        // A HEAD response has no body to store; it freshened the stored GET response, if any.
        _ if job.request.method == Method::HEAD => Some(NoCacheReason::Method),
        // The owner's manifest, for this node to read the chunks from their owners: the
        // object is the owner's.
        _ if job.offer_manifest && chunk::is_manifest(&headers) => Some(NoCacheReason::NotOwner),
        Ok(()) if ranged && head.status != StatusCode::OK => Some(NoCacheReason::Status),
        // A client's range, answered by the owner from its object.
        Err(NoCacheReason::Status)
            if head.status == StatusCode::PARTIAL_CONTENT
                && job.chunk.is_none()
                && !job.upstream.stores_here() =>
        {
            Some(NoCacheReason::NotOwner)
        }
        Err(reason) => Some(reason),
        Ok(()) if length.is_some_and(|l| l > proxy.max_object) => Some(NoCacheReason::TooLarge),
        Ok(()) if !job.upstream.stores_here() => Some(NoCacheReason::NotOwner),
        // Its chunks are kept by their owners, never a copy of the whole here.
        Ok(()) if chunks.is_some() && job.upstream.is_owner() => Some(NoCacheReason::NotOwner),
        Ok(()) if chunks.is_none() && length.is_some_and(|l| l > proxy.whole_max) => {
            Some(NoCacheReason::TooLarge)
        }
        // A chunk, a manifest or a revalidated object was admitted with its object.
        Ok(())
            if job.chunk.is_none()
                && chunks.is_none()
                && job.stale.is_none()
                && !proxy.store.admits(&job.key, length.unwrap_or(0)) =>
        {
            Some(NoCacheReason::NotAdmitted)
        }
        Ok(()) => None,
    };
    let chunks = chunks.filter(|_| not_stored.is_none());
    let age = freshness::corrected_initial_age(&headers, head.request_time, head.response_time);
    let lifetime = freshness::freshness_lifetime(
        head.status,
        &headers,
        &cc,
        head.response_time,
        policy.heuristic,
    );
    let ttl = freshness::freshness(lifetime, age).ttl_secs();
    let share = if store::shareable(not_stored, ttl, &cc) {
        Share::All
    } else {
        Share::One
    };
    let fill_head = FillHead {
        status: head.status,
        secondary: secondary_key(&vary, &job.request_headers),
        vary,
        storing: not_stored.is_none(),
        ttl,
        age: age.as_secs(),
        not_stored,
        content_length: length,
        headers,
        set_cookie,
        from_node: job.upstream.node_hop().is_some(),
    };
    (fill_head, share, chunks)
}

async fn stream_body(
    job: &FillJob,
    publisher: Publisher<FillHead>,
    head: &OriginHead<'_>,
    headers: HeaderMap,
    mut body: UpstreamBody,
    mut storing: bool,
) {
    // What the response's Cache-Status said, before any byte of the body came.
    let claimed = storing;
    let idle = job.site.origin.first_byte_timeout();
    let mut reservation = Reservation::new(job.proxy.fill_budget.clone());
    let mut kept: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    let window = if job.chunk.is_some() {
        CHUNK_PASS_WINDOW
    } else {
        PASS_WINDOW
    };
    let result = loop {
        let data = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => break Err(ProxyError::timeout()),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(ProxyError::OriginBody(e.to_string())),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        total += data.len() as u64;
        job.site.metrics.origin_bytes.inc_by(data.len() as u64);
        if storing && (total > job.proxy.whole_max || !reservation.grow(data.len() as u64)) {
            // A body without Content-Length outgrew what is stored whole, or the node holds too much in
            // fills already: stream it through instead of buffering it.
            storing = false;
            reservation = Reservation::new(job.proxy.fill_budget.clone());
            kept = Vec::new();
            job.stop_sharing(&publisher);
            publisher.start_trimming();
        }
        if storing {
            kept.push(data.clone());
        }
        publisher.push(data);
        if !storing && !publisher.wait_for_readers(window, idle).await {
            break Err(ProxyError::Internal(READERS_LEFT));
        }
    };
    if let (Ok(()), true) = (&result, storing) {
        let policy = &job.site.policy;
        let mut headers = headers;
        if matches!(job.upstream, Upstream::Shield(_) | Upstream::Handoff(_)) {
            // The other node's Cache-Status described its answer to this fill; a hit here is
            // this node's alone.
            headers.remove("cache-status");
        }
        let entry = store::build_entry(
            head,
            headers,
            concat(kept, total),
            &job.request_headers,
            policy,
            job.upstream.is_owner(),
        );
        publisher.rebase(&entry.body);
        let entry = Arc::new(entry);
        job.keep(&publisher, head.request_time, &entry).await;
    } else if let Err(ProxyError::Internal(READERS_LEFT)) = &result {
        // Clients leave: not the origin's failure, and nothing was being stored.
        tracing::debug!(key = %job.key, "every client left or stopped reading; the origin's body is no longer read");
    } else if let Err(e) = &result {
        // The head went out saying `stored` (Cache-Status is sent before the body): counted
        // and logged, so that the claim can be checked.
        if claimed {
            job.site.metrics.discarded(Discard::BodyFailed);
        }
        tracing::warn!(key = %job.key, error = %e, "origin body failed; not stored");
    } else if claimed {
        job.site.metrics.discarded(Discard::TooLarge);
    }
    job.leave(&publisher);
    publisher.finish(result);
}

/// One contiguous, exactly sized body for the entry. Always a copy, made once per fill: a
/// chunk from hyper is a slice of its read buffer, and keeping it would pin that whole buffer
/// for as long as the entry lives, unseen by the weigher. Hits never copy it again.
fn concat(chunks: Vec<Bytes>, total: u64) -> Bytes {
    let mut body = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
    for chunk in chunks {
        body.extend_from_slice(&chunk);
    }
    body.freeze()
}
