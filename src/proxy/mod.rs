//! The request path, as named phases run in order (DESIGN.md draws the same flow):
//!
//! 1. [`request`] — site by host (unknown: refused), cache key, request directives;
//! 2. [`lookup`] — the matching stored variant: fresh hit, revalidate, or miss;
//! 3. [`route`] — where a fill goes: the origin, the key's owner one hop away, or the shield tier;
//! 4. [`fill`] — one origin fetch per key at a time, streamed to every waiting client;
//! 5. [`store`] — storability, freshness and age, the immutable entry;
//! 6. [`respond`] — conditionals, ranges, HEAD, `Age`, `Cache-Status`, `Via`; errors mapped
//!    to HTTP in one place. Every response leaves with its [`outcome`], which [`Proxy::handle`]
//!    counts and logs.
//!
//! Beside the phases: `pass` forwards methods other than GET and HEAD with their bodies
//! streamed (a successful unsafe one invalidates the stored responses for its URI here and on
//! every peer, RFC 9111 §4.4); [`purge`] removes what the admin API or a peer asks; `internal`
//! answers peers' probes and fanned-out purges and invalidations under `/_outpost/`.

mod chunked;
pub mod compress;
pub(crate) mod fill;
pub(crate) mod headers;
mod internal;
pub mod lookup;
pub mod outcome;
mod pass;
pub(crate) mod purge;
pub mod request;
pub mod respond;
pub(crate) mod route;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use crate::service::ClientBody;
use arc_swap::ArcSwap;
use http::uri::Scheme;
use http::{Method, Request, Response};

use crate::cache::chunk::{self, CHUNK_HEADER, ChunkRequest};
use crate::cache::conditional::validators;
use crate::cache::freshness::{
    HeuristicPolicy, may_serve_stale_if_error, may_serve_stale_when_disconnected,
};
use crate::cache::status::Fwd;
use crate::cache::vary::secondary_key;
use crate::cluster::Cluster;
use crate::cluster::hop::{FETCHED_HEADER, HOP_HEADER, Hops, fetched_value};
use crate::cluster::purges::Purges;
use crate::config::Config;
use crate::error::ProxyError;
use crate::observability::access::{self, AccessLog};
use crate::observability::metrics::Metrics;
use crate::origin::{OriginRequest, OriginSetupError};
use crate::service::{ClientInfo, Handler, ProxyBody};
use crate::storage::budget::FillBudget;
use crate::storage::coalesce::{self, Fill, Inflight, Join, Publisher, Subscriber};
use crate::storage::{Entry, Store};
use fill::{FillHead, FillJob};
use lookup::Lookup;
use outcome::{Outcome, Served};
use request::{Forward, Manifest, RequestContext, Sites};
use respond::Node;

/// What the client-facing listeners call: the current [`Proxy`], replaced whole by a reload.
/// A request keeps the proxy it started with until it ends.
pub(crate) struct Front {
    current: ArcSwap<Proxy>,
}

impl Front {
    pub(crate) fn new(proxy: Proxy) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(proxy),
        })
    }

    pub(crate) fn proxy(&self) -> Arc<Proxy> {
        self.current.load_full()
    }

    pub(crate) fn replace(&self, proxy: Proxy) {
        self.current.store(Arc::new(proxy));
    }
}

impl Handler for Front {
    fn call(
        self: Arc<Self>,
        request: Request<ClientBody>,
        client: ClientInfo,
    ) -> impl std::future::Future<Output = Response<ProxyBody>> + Send {
        self.current.load_full().handle(request, client)
    }
}

pub(crate) struct Proxy {
    node: Node,
    /// `None`: a single node owning every key.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// False while draining: peers' probes are answered 503 so they stop routing here.
    pub(crate) ready: Arc<AtomicBool>,
    access: Arc<AccessLog>,
    sites: Sites,
    store: Arc<Store>,
    inflight: Inflight<FillHead>,
    metrics: Arc<Metrics>,
    max_object: u64,
    /// The largest object stored whole (`cache.whole_max()`).
    whole_max: u64,
    chunk_size: u64,
    /// Objects longer than this are stored in chunks (`cache.chunk_threshold()`).
    chunk_threshold: u64,
    /// Bytes fills may hold while buffering bodies to store (a quarter of the cache memory,
    /// at least one object stored whole).
    fill_budget: Arc<FillBudget>,
    /// What request bodies read before their origin request may hold, all together.
    upload_budget: Arc<FillBudget>,
    /// What chunks read ahead of the one being sent may hold, all responses together.
    read_ahead_budget: Arc<FillBudget>,
    region: Option<String>,
    /// The purge log and lease: whether what is stored may be served without the origin.
    pub(crate) purges: Arc<Purges>,
    /// Where stored bodies are compressed (the node's, outliving reloads).
    compress_pool: Arc<compress::pool::Pool>,
    /// Responses to requests no site serves (an unknown host) or that were refused before a
    /// site was known (ambiguous framing): counted as site `unknown`.
    unknown_site: crate::observability::metrics::SiteMetrics,
}

/// What the access log keeps of a request, taken before the request is served (shared
/// bytes, cloned without copying).
struct Seen {
    method: Method,
    host: http::HeaderValue,
    path: http::uri::PathAndQuery,
    user_agent: Option<http::HeaderValue>,
    referer: Option<http::HeaderValue>,
}

/// What every proxy of one node shares: a reload builds a new proxy with the same.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) metrics: Arc<Metrics>,
    /// False while draining.
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) access: Arc<AccessLog>,
    pub(crate) purges: Arc<Purges>,
    pub(crate) compress_pool: Arc<CompressPool>,
}

impl Proxy {
    pub(crate) fn new(
        config: &Config,
        store: Arc<Store>,
        cluster: Option<Arc<Cluster>>,
        shared: Shared,
    ) -> Result<Self, OriginSetupError> {
        let Shared {
            metrics,
            ready,
            access,
            purges,
            compress_pool,
        } = shared;
        let sites = Sites::build_in(
            &config.sites,
            HeuristicPolicy {
                fraction_percent: config.cache.heuristic_fraction,
                max: config.cache.heuristic_max,
            },
            &config.dns,
            &metrics,
            cluster.as_ref(),
        )?;
        metrics
            .membership
            .set_node(&config.node.name, config.node.region.as_deref());
        let unknown_site = metrics.site("unknown");
        Ok(Self {
            node: Node::new(&config.node.name),
            cluster,
            ready,
            access,
            sites,
            store,
            inflight: Inflight::default(),
            metrics,
            max_object: config.cache.max_object,
            whole_max: config.cache.whole_max(),
            chunk_size: config.cache.chunk_size,
            chunk_threshold: config.cache.chunk_threshold(),
            fill_budget: FillBudget::new((config.cache.memory / 4).max(config.cache.whole_max())),
            upload_budget: FillBudget::new(upload_budget(config)),
            read_ahead_budget: FillBudget::new(chunked::read_ahead_budget(config.cache.memory)),
            region: config.node.region.clone(),
            purges,
            compress_pool,
            unknown_site,
        })
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Serve one client request.
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<ClientBody>,
        client: ClientInfo,
    ) -> Response<ProxyBody> {
        let started = std::time::Instant::now();
        let (mut parts, body) = request.into_parts();
        if let Err(e) = request::check_framing(&parts) {
            let seen = self.seen_refused(&parts);
            let served = respond::error(&self.node, &e, None);
            return self.account(
                &self.unknown_site,
                "unknown",
                seen,
                &client,
                served,
                started,
            );
        }
        let mut client = client;
        let mut hops = Hops::default();
        let mut chunk = None;
        let marker = parts.headers.remove(&CHUNK_HEADER);
        let mut asks_manifest = false;
        if let Some(cluster) = &self.cluster {
            if parts.uri.path().starts_with(internal::PREFIX) {
                return Box::pin(internal::handle(&self, cluster, parts, body)).await;
            }
            // A request from another node has taken the hops it says (the route phase allows no
            // second of either kind); one whose hop does not verify is an ordinary client
            // request.
            if let Some(hop) = internal::verify_hop(cluster, &parts) {
                hops = hop.hops;
                asks_manifest = marker.as_ref() == Some(&chunk::MANIFEST);
                // A node serving an object in chunks asks for one of them.
                chunk = marker.and_then(|m| {
                    ChunkRequest::from_hop(&m, parts.headers.get(http::header::IF_RANGE))
                });
                client.scheme = if hop.https {
                    Scheme::HTTPS
                } else {
                    Scheme::HTTP
                };
            }
            parts.headers.remove(&HOP_HEADER);
        }
        let mut ctx = match request::prepare(&self.sites, parts, &client, &self.node.name, hops) {
            Ok(ctx) => ctx,
            Err(refused) => {
                // A refusal (an unknown host, say) is counted and logged like any response.
                let seen = self.seen_refused(&refused.parts);
                let served = respond::error(&self.node, &refused.error, None);
                return self.account(
                    &self.unknown_site,
                    "unknown",
                    seen,
                    &client,
                    served,
                    started,
                );
            }
        };
        if hops.any() {
            // Another node reads the chunks only if it said so, and only across a peer hop.
            ctx.manifest = if asks_manifest && hops.peer && ctx.method == Method::GET {
                Manifest::Answer
            } else {
                Manifest::No
            };
        }
        if let Some(chunk) = chunk
            && ctx.method == Method::GET
        {
            ctx.key = chunk.key(&ctx.key);
            ctx.chunk = Some(chunk);
            ctx.manifest = Manifest::No;
        }
        // Another node waits on this request: it may ask whether it is being worked on.
        let _working = match &self.cluster {
            Some(cluster) if hops.any() => Some(cluster.progress.start(crate::hash::key(&ctx.key))),
            _ => None,
        };
        let site = ctx.site.clone();
        // Only what the access log needs, and only when it is wanted.
        let seen = self.access.wanted().then(|| Seen {
            method: ctx.method.clone(),
            host: ctx.authority.clone(),
            path: ctx.path_and_query.clone(),
            user_agent: ctx.headers.get(http::header::USER_AGENT).cloned(),
            referer: ctx.headers.get(http::header::REFERER).cloned(),
        });
        let mut served = match ctx.method {
            Method::GET | Method::HEAD => self.cacheable(ctx).await,
            _ => Box::pin(self.clone().pass(ctx, body)).await,
        };
        if !hops.any() {
            // When another node's copy was fetched is for nodes; a client's answer that came
            // through one (passed on, not stored here) does not say it.
            served.response.headers_mut().remove(FETCHED_HEADER);
        }
        self.account(&site.metrics, &site.name, seen, &client, served, started)
    }

    /// What the access log needs of a request refused before its site was known.
    fn seen_refused(&self, parts: &http::request::Parts) -> Option<Seen> {
        self.access.wanted().then(|| Seen {
            method: parts.method.clone(),
            host: request::request_authority(parts)
                .unwrap_or_else(|| http::HeaderValue::from_static("")),
            path: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            user_agent: parts.headers.get(http::header::USER_AGENT).cloned(),
            referer: parts.headers.get(http::header::REFERER).cloned(),
        })
    }

    /// Count a response in its site's metrics and log it (when the log is wanted).
    fn account(
        &self,
        metrics: &crate::observability::metrics::SiteMetrics,
        site: &str,
        seen: Option<Seen>,
        client: &ClientInfo,
        served: Served,
        started: std::time::Instant,
    ) -> Response<ProxyBody> {
        let Served { response, outcome } = served;
        metrics.request(outcome.result());
        let length = http_body::Body::size_hint(response.body()).exact();
        let elapsed = started.elapsed();
        metrics.response(response.status(), elapsed.as_secs_f64(), length);
        if let Some(seen) = seen {
            self.access.record(&access::Entry {
                client: client.addr,
                method: &seen.method,
                host: seen.host.to_str().unwrap_or_default(),
                path: seen.path.as_str(),
                status: response.status(),
                bytes: length,
                // The whole header: the members of the caches before this one too.
                cache_status: response
                    .headers()
                    .get("cache-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
                cache: outcome.result().as_str(),
                upstream: outcome.upstream(),
                site,
                started: SystemTime::now() - elapsed,
                duration: elapsed,
                user_agent: seen.user_agent.as_ref(),
                referer: seen.referer.as_ref(),
            });
        }
        response
    }

    async fn cacheable(self: &Arc<Self>, ctx: RequestContext) -> Served {
        let now = SystemTime::now();
        self.store.record_request(&ctx.key);
        let variants = self.store.get(&ctx.key).await;
        let lookup = lookup::decide(variants.as_deref(), &ctx.headers, &ctx.directives, now);
        let lookup = self.unless_untrusted(lookup);
        match lookup {
            Lookup::Hit { entry, freshness } => {
                entry.touch();
                if entry.replica {
                    self.metrics.membership.replica_hits.inc();
                }
                let outcome = Outcome::hit(freshness.ttl_secs());
                self.serve_stored(ctx, &entry, now, outcome).await
            }
            // Another node asking for what this one holds (a hand-off) gets a copy it can
            // use as it is, or a 504: never one that needs renewing.
            Lookup::StaleWhileRevalidate { .. }
                if ctx.directives.only_if_cached && ctx.hops.any() =>
            {
                respond::error(&self.node, &ProxyError::NotCached, Some(Fwd::Stale))
            }
            Lookup::StaleWhileRevalidate { entry, freshness } => {
                entry.touch();
                self.revalidate_in_background(&ctx, entry.clone());
                let outcome = Outcome::stale_while_revalidate(freshness.ttl_secs());
                self.serve_stored(ctx, &entry, now, outcome).await
            }
            // RFC 9111 §5.2.1.7: only-if-cached never goes to the origin.
            Lookup::Revalidate { fwd, .. } | Lookup::Miss { fwd }
                if ctx.directives.only_if_cached =>
            {
                respond::error(&self.node, &ProxyError::NotCached, Some(fwd))
            }
            Lookup::Revalidate { entry, fwd } => {
                Box::pin(self.clone().fetch(ctx, fwd, Some(entry))).await
            }
            Lookup::Miss { fwd } => Box::pin(self.clone().fetch(ctx, fwd, None)).await,
        }
    }

    /// A hit on an entry this node may not serve without the origin (its purge lease ran out,
    /// or the entry is older than what its purge log covers) is a revalidation: a purge this
    /// node missed may name it (see `cluster::purges`).
    fn unless_untrusted(&self, lookup: Lookup) -> Lookup {
        match lookup {
            Lookup::Hit { entry, .. } | Lookup::StaleWhileRevalidate { entry, .. }
                if !self.purges.trusted(entry.fetched) =>
            {
                Lookup::Revalidate {
                    entry,
                    fwd: Fwd::Stale,
                }
            }
            other => other,
        }
    }

    /// A stored entry, found by the lookup: served from its body, or from its chunks. An
    /// object whose chunks say it changed is fetched again.
    async fn serve_stored(
        self: &Arc<Self>,
        ctx: RequestContext,
        entry: &Arc<Entry>,
        now: SystemTime,
        outcome: Outcome,
    ) -> Served {
        let hop = ctx.hops.any();
        let mut served = if entry.chunks.is_none() {
            self.serve_whole(&ctx, entry, now, outcome).await
        } else {
            match Box::pin(chunked::serve(self, &ctx, entry, now, outcome)).await {
                Ok(served) => served,
                Err(chunked::Failure::Restart) => {
                    return Box::pin(self.clone().fetch(ctx, Fwd::Miss, None)).await;
                }
                Err(chunked::Failure::Error(e)) => return respond::error(&self.node, &e, None),
            }
        };
        if hop {
            // The asking node keeps the time this node's copy was fetched, not its own.
            served
                .response
                .headers_mut()
                .insert(FETCHED_HEADER, fetched_value(entry.fetched));
        }
        served
    }

    /// A whole stored entry, in the form the compress phase chooses for the request.
    async fn serve_whole(
        &self,
        ctx: &RequestContext,
        entry: &Arc<Entry>,
        now: SystemTime,
        outcome: Outcome,
    ) -> Served {
        match compress::choose(self, ctx, entry).await {
            compress::Form::AsStored => respond::from_entry(&self.node, entry, ctx, now, outcome),
            compress::Form::Identity => {
                let mut served = respond::from_entry(&self.node, entry, ctx, now, outcome);
                compress::add_vary(served.response.headers_mut());
                served
            }
            compress::Form::Encoded(form, coding) => {
                self.metrics.store.compressed_response(coding.token());
                respond::from_entry(&self.node, &form, ctx, now, outcome)
            }
        }
    }

    /// Get the response from the origin through a fill: joined with others' when it can be
    /// shared, private otherwise.
    async fn fetch(
        self: Arc<Self>,
        mut ctx: RequestContext,
        fwd: Fwd,
        stale: Option<Arc<Entry>>,
    ) -> Served {
        let mut private = ctx.is_private()
            || self.store.is_uncacheable(&ctx.key)
            || fill_method(&ctx) == Method::HEAD
            || self.range_to_owner(&ctx);
        let mut stale = stale;
        let mut restarted = false;
        loop {
            let (subscriber, collapsed) = self.subscribe(&ctx, stale.clone(), private);
            let Some(subscriber) = subscriber else {
                return respond::error(
                    &self.node,
                    &ProxyError::Internal("no subscriber"),
                    Some(fwd),
                );
            };
            match subscriber.outcome().await {
                coalesce::Outcome::Stream(head, reader) => {
                    let foreign_variant = collapsed
                        && !head.vary.is_empty()
                        && secondary_key(&head.vary, &ctx.headers) != head.secondary;
                    if foreign_variant {
                        private = true;
                        continue;
                    }
                    if ctx.manifest == Manifest::Offer
                        && head.from_node
                        && chunk::is_manifest(&head.headers)
                    {
                        let outcome = Outcome::fetched(fwd, &head, collapsed);
                        match Box::pin(chunked::from_owner(&self, &ctx, &head, reader, outcome))
                            .await
                        {
                            Ok(served) => return served,
                            // Asked again, by this request alone, for the bytes: the owner
                            // then reads the chunks itself.
                            Err(chunked::Failure::Restart) => {
                                ctx.manifest = Manifest::No;
                                private = true;
                                continue;
                            }
                            Err(chunked::Failure::Error(e)) => {
                                return respond::error(&self.node, &e, Some(fwd));
                            }
                        }
                    }
                    if head.status.is_server_error() {
                        let code = Some(head.status.as_u16());
                        if let Some(response) =
                            self.stale_if_error(&ctx, &stale, fwd, code, collapsed)
                        {
                            return response;
                        }
                        // A node's 5xx is already its cache's answer (its own 504 for a
                        // response that must be revalidated): passed on as it is.
                        if !head.from_node
                            && let Some(response) = self.must_revalidate(&stale, fwd, code)
                        {
                            return response;
                        }
                    }
                    let outcome = Outcome::fetched(fwd, &head, collapsed);
                    let varies = compress::fill_varies(&ctx, &head);
                    let mut served = respond::from_fill(&self.node, &head, reader, &ctx, outcome);
                    if varies && !ctx.hops.any() {
                        // Another node asking keeps the origin's bytes, as this one does.
                        served = compress::encode_miss(&self, &ctx, served);
                    }
                    if varies {
                        compress::add_vary(served.response.headers_mut());
                    }
                    return served;
                }
                coalesce::Outcome::Entry(entry) => {
                    let foreign_variant = collapsed
                        && !entry.vary.is_empty()
                        && secondary_key(&entry.vary, &ctx.headers) != entry.secondary;
                    if foreign_variant {
                        private = true;
                        continue;
                    }
                    let now = SystemTime::now();
                    let ttl = entry.freshness(now).ttl_secs();
                    if entry.chunks.is_none() {
                        let outcome = Outcome::revalidated(fwd, collapsed, ttl);
                        return self.serve_whole(&ctx, &entry, now, outcome).await;
                    }
                    // A manifest: stored from the origin's 200 head, or freshened by a 304.
                    let outcome = match stale {
                        Some(_) => Outcome::revalidated(fwd, collapsed, ttl),
                        None => Outcome::chunked(fwd, collapsed, ttl),
                    };
                    match chunked::serve(&self, &ctx, &entry, now, outcome).await {
                        Ok(served) => return served,
                        // Once: a representation changing under every fetch is an error.
                        Err(chunked::Failure::Restart) if !restarted => {
                            restarted = true;
                            stale = None;
                            continue;
                        }
                        Err(chunked::Failure::Restart) => {
                            let changed = "the representation changed on every read".to_owned();
                            let e = ProxyError::OriginBody(changed);
                            return respond::error(&self.node, &e, Some(fwd));
                        }
                        Err(chunked::Failure::Error(e)) => {
                            return respond::error(&self.node, &e, Some(fwd));
                        }
                    }
                }
                coalesce::Outcome::Failed(e) => {
                    if let Some(response) = self.stale_if_error(&ctx, &stale, fwd, None, collapsed)
                    {
                        return response;
                    }
                    if e.is_disconnected()
                        && let Some(response) =
                            self.stale_disconnected(&ctx, &stale, fwd, collapsed)
                    {
                        return response;
                    }
                    if let Some(response) = self.must_revalidate(&stale, fwd, None) {
                        return response;
                    }
                    return respond::error(&self.node, &e, Some(fwd));
                }
                coalesce::Outcome::Released => private = true,
            }
        }
    }

    /// A client's range through a node that does not own the object: the range goes to the
    /// owner, who answers it from its object (or its chunks) without sending the whole.
    fn range_to_owner(&self, ctx: &RequestContext) -> bool {
        ctx.chunk.is_none()
            && ctx.headers.contains_key(http::header::RANGE)
            && route::owned_elsewhere(self.cluster.as_ref(), ctx)
    }

    /// A stale entry that may stand in for a failing origin: not an object in chunks (its
    /// chunks may be gone with the origin), and not one a purge this node may have missed
    /// could name (the purge lease ran out).
    fn servable_stale<'e>(&self, stale: &'e Option<Arc<Entry>>) -> Option<&'e Arc<Entry>> {
        stale
            .as_ref()
            .filter(|e| e.chunks.is_none() && self.purges.trusted(e.fetched))
    }

    /// RFC 5861 §4: the stored response instead of an origin failure (5xx, timeout, refused
    /// connection), when `stale-if-error` in the response or the request allows it.
    fn stale_if_error(
        &self,
        ctx: &RequestContext,
        stale: &Option<Arc<Entry>>,
        fwd: Fwd,
        fwd_status: Option<u16>,
        collapsed: bool,
    ) -> Option<Served> {
        let entry = self.servable_stale(stale)?;
        let now = SystemTime::now();
        let freshness = entry.freshness(now);
        if !may_serve_stale_if_error(freshness, &ctx.directives, &entry.directives) {
            return None;
        }
        let outcome = Outcome::stale_if_error(fwd, fwd_status, collapsed, freshness.ttl_secs());
        Some(self.stale_identity(ctx, entry, now, outcome))
    }

    /// RFC 9111 §4.2.4: the stored response when the origin cannot be reached at all, within
    /// the site's `serve_stale_when_disconnected`, unless the origin forbade stale content.
    fn stale_disconnected(
        &self,
        ctx: &RequestContext,
        stale: &Option<Arc<Entry>>,
        fwd: Fwd,
        collapsed: bool,
    ) -> Option<Served> {
        let entry = self.servable_stale(stale)?;
        let now = SystemTime::now();
        let freshness = entry.freshness(now);
        if !may_serve_stale_when_disconnected(freshness, &entry.directives) {
            return None;
        }
        let outcome = Outcome::stale_disconnected(fwd, collapsed, freshness.ttl_secs());
        Some(self.stale_identity(ctx, entry, now, outcome))
    }

    /// A stale entry served in place of an origin failure: as stored (no compression while
    /// the origin is failing), saying it varies if other answers of it may be encoded.
    fn stale_identity(
        &self,
        ctx: &RequestContext,
        entry: &Entry,
        now: SystemTime,
        outcome: Outcome,
    ) -> Served {
        let mut served = respond::from_entry(&self.node, entry, ctx, now, outcome);
        if compress::stored_varies(ctx, entry) {
            compress::add_vary(served.response.headers_mut());
        }
        served
    }

    /// RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10: a stale response that must be revalidated,
    /// and revalidation failed (5xx, unreachable): 504, never the stale response and never
    /// the origin's error page in its place.
    fn must_revalidate(
        &self,
        stale: &Option<Arc<Entry>>,
        fwd: Fwd,
        fwd_status: Option<u16>,
    ) -> Option<Served> {
        let entry = stale.as_ref()?;
        let d = &entry.directives;
        let strict = d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some();
        let stale_now = matches!(
            entry.freshness(SystemTime::now()),
            crate::cache::Freshness::Stale { .. }
        );
        if !strict || !stale_now {
            return None;
        }
        let error = ProxyError::MustRevalidate;
        Some(respond::error_after(
            &self.node,
            &error,
            Some(fwd),
            fwd_status,
        ))
    }

    /// RFC 5861 §3: renew a stale entry just served, in a fill that belongs to no client. If a
    /// fill for the key is already under way, that one renews it.
    fn revalidate_in_background(self: &Arc<Self>, ctx: &RequestContext, entry: Arc<Entry>) {
        if let Join::Leader(fill, leader) = self.inflight.join(&ctx.key) {
            // Leave the leader's place at once: the response answers this client's request,
            // so a later client joining the fill must never be handed a response that may
            // only go to the leader.
            drop(leader);
            self.spawn_fill(ctx, Some(entry), fill, true);
        }
    }

    /// Subscribe to a fill for this request, starting one if needed. Returns whether the
    /// request joined a fill started by another (`collapsed`, RFC 9211 §2.6).
    fn subscribe(
        self: &Arc<Self>,
        ctx: &RequestContext,
        stale: Option<Arc<Entry>>,
        private: bool,
    ) -> (Option<Subscriber<FillHead>>, bool) {
        if private {
            let fill = Fill::detached();
            let subscriber = fill.subscribe();
            self.spawn_fill(ctx, stale, fill, false);
            return (subscriber, false);
        }
        match self.inflight.join(&ctx.key) {
            Join::Leader(fill, subscriber) => {
                self.spawn_fill(ctx, stale, fill, true);
                (subscriber, false)
            }
            Join::Follower(fill) => match fill.subscribe() {
                Some(subscriber) => {
                    self.metrics.store.coalesced.inc();
                    (Some(subscriber), true)
                }
                // Too late to read it from the start: fetch alone.
                None => self.subscribe(ctx, stale, true),
            },
        }
    }

    fn spawn_fill(
        self: &Arc<Self>,
        ctx: &RequestContext,
        stale: Option<Arc<Entry>>,
        fill: Arc<Fill<FillHead>>,
        registered: bool,
    ) {
        let mut upstream = route::route(self.cluster.as_ref(), ctx);
        if stale.is_some() && matches!(upstream, route::Upstream::Handoff(_)) {
            // A hand-off is for what this node lacks: a copy it holds is renewed where it
            // came from, never from another node's copy, no fresher than its own.
            upstream.unreachable();
        }
        let forward = if registered {
            Forward::SharedFill
        } else {
            Forward::PrivateFill
        };
        let mut headers = request::origin_headers(ctx, &self.node.name, forward);
        if let Some(stale) = &stale {
            headers.extend(validators(&stale.headers, SystemTime::now()));
        }
        if let Some(chunk) = &ctx.chunk {
            headers.insert(http::header::RANGE, chunk.range());
            headers.insert(http::header::IF_RANGE, chunk.validator.clone());
        }
        let job = FillJob {
            proxy: self.clone(),
            site: ctx.site.clone(),
            key: ctx.key.clone(),
            request: OriginRequest {
                // A shared fill (a background revalidation too) may be joined by GETs.
                method: if registered {
                    Method::GET
                } else {
                    fill_method(ctx)
                },
                path_and_query: ctx.path_and_query.clone(),
                headers,
            },
            request_headers: ctx.headers.clone(),
            request_cc: ctx.directives.clone(),
            stale,
            registered,
            upstream,
            chunk: ctx.chunk.clone(),
            reads: ctx.reads,
            offer_manifest: ctx.manifest == Manifest::Offer,
        };
        tokio::spawn(fill::run(job, Publisher::new(fill)));
    }

    /// `[node] region`, if set.
    pub(crate) fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The sites, for the admin pages.
    pub(crate) fn sites(&self) -> &[Arc<request::Site>] {
        self.sites.all()
    }

    pub(crate) fn node_name(&self) -> &str {
        &self.node.name
    }
}

/// The pool stored bodies are compressed on, sized for this machine (one per node).
pub(crate) type CompressPool = compress::pool::Pool;

pub(crate) fn compress_pool() -> Arc<CompressPool> {
    CompressPool::for_this_machine()
}

/// The method a fill asks with: GET, whose response can be stored and answers HEAD too (RFC
/// 9111 §4.3.5), or HEAD where the site passes HEAD to the origin. A HEAD fill is private to
/// its client: its response has no body for GET requests to share.
fn fill_method(ctx: &RequestContext) -> Method {
    if ctx.method == Method::HEAD && ctx.site.head_to_origin {
        Method::HEAD
    } else {
        Method::GET
    }
}

/// The bytes all buffered request bodies may hold: an eighth of the cache's memory, and at
/// least one body of the largest site buffer. Past it, bodies stream.
fn upload_budget(config: &Config) -> u64 {
    let largest = config.sites.iter().map(|s| s.request_buffering).max();
    (config.cache.memory / 8).max(largest.unwrap_or(0))
}
