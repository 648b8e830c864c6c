//! Talking to a site's origin servers.
//!
//! - [`resolve`]: a server given by name follows DNS (every A/AAAA address, on the records'
//!   TTL, in the background); an address that leaves DNS is drained.
//! - [`pool`]: per address, pooled keep-alive connections over HTTP/1.1 or HTTP/2, plain or
//!   TLS; `max_connections` per server with a bounded queue in front (then 503).
//! - [`health`]: a failing server leaves rotation (passive: connect failures, resets,
//!   timeouts, broken responses, and the statuses a site opts into; active probes where
//!   configured). An origin that answers, with any status, is reachable. With every server
//!   out, the origin is in *panic mode*: requests go to all of them again, round-robin, as
//!   Envoy's panic threshold and nginx's lone server do, because a guess of dead is worse than
//!   a try: health must never be what takes a site down.
//! - [`OriginFailure`] (kept in `error/`, below the metrics that count it): why a request to
//!   a server failed, classified once for the error, the metrics, passive health and retries.
//! - Here: the balance policy across servers in rotation, timeouts, and retries on another
//!   server of requests without a body that failed before the origin could act on them,
//!   within a budget.

pub(crate) mod health;
mod pool;
mod resolve;
mod tls;
pub(crate) mod upload;

pub(crate) use crate::error::OriginFailure;
pub(crate) use pool::UpstreamBody;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use rustls::pki_types::ServerName;

use crate::config::{Balance, DnsConfig, HealthCheck, OriginConfig, OriginServer};
use crate::error::ProxyError;
use crate::observability::metrics::{Metrics, OriginOutcome, OriginServerMetrics, SiteMetrics};

/// Milliseconds on a monotonic clock (since the first call), for [`health`].
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A fill sends no body; a passed-through method sends the client's, buffered or streamed
/// ([`upload`]).
pub(crate) type OriginBody = Either<Empty<Bytes>, upload::RequestBody>;

/// What to ask an origin, independent of which server answers.
#[derive(Debug, Clone)]
pub(crate) struct OriginRequest {
    pub(crate) method: Method,
    pub(crate) path_and_query: PathAndQuery,
    pub(crate) headers: HeaderMap,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginSetupError {
    #[error("origin TLS: {0}")]
    Tls(String),
    #[error("origin DNS: {0}")]
    Dns(#[from] crate::dns::DiscoveryError),
}

/// One origin server and what requests and probes have shown of its health.
struct Server {
    config: OriginServer,
    pool: pool::Pool,
    /// Passive: failures of real requests.
    health: health::Health,
    /// Active: the last probes (always true without `health`).
    probed_up: AtomicBool,
    in_flight: AtomicUsize,
    /// For `balance = "hash"`.
    hash: u64,
    metrics: OriginServerMetrics,
}

impl Server {
    fn in_rotation(&self, now_ms: u64) -> bool {
        self.health.available(now_ms) && self.probed_up.load(Ordering::Relaxed)
    }

    fn update_up(&self) {
        let up = self.health.is_up() && self.probed_up.load(Ordering::Relaxed);
        self.metrics.up.set(i64::from(up));
    }
}

pub(crate) struct Origin {
    servers: Vec<Arc<Server>>,
    next: AtomicUsize,
    first_byte_timeout: Duration,
    metrics: SiteMetrics,
    balance: Balance,
    retries: u32,
    budget: health::RetryBudget,
    /// Statuses that count as passive failures (none by default).
    passive_statuses: Vec<http::StatusCode>,
    /// Every server is out of rotation (for the log line once per episode and the gauge).
    panicking: AtomicBool,
    /// Health probes and DNS followers, stopped with the origin (a reload replaces it).
    _tasks: Tasks,
}

/// Background tasks stopped when dropped, also when setting up an origin fails half-way.
#[derive(Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Counts one request in `in_flight` (for `least_requests`) until dropped, also when the
/// request is cancelled.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The name a server's certificate is checked against: `tls.sni`, or the URL's host.
fn server_name(
    config: &OriginConfig,
    server: &OriginServer,
) -> Result<ServerName<'static>, OriginSetupError> {
    let name = config
        .tls
        .sni
        .clone()
        .unwrap_or_else(|| host_of(server).to_owned());
    ServerName::try_from(name.clone())
        .map_err(|e| OriginSetupError::Tls(format!("server name {name:?}: {e}")))
}

/// The host of a server URL, without an IPv6 literal's brackets.
fn host_of(server: &OriginServer) -> &str {
    let host = server.authority.host();
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl Origin {
    /// Must run inside the tokio runtime (servers given by name are resolved by a task).
    pub(crate) fn new(
        config: &OriginConfig,
        dns: &DnsConfig,
        site: &str,
        all: &Metrics,
    ) -> Result<Self, OriginSetupError> {
        let metrics = all.site(site);
        let tls = tls::client_config(&config.tls)?;
        let mut tasks = Tasks::default();
        let mut servers = Vec::with_capacity(config.servers.len());
        for server in &config.servers {
            let server_metrics = all.origin_server(site, server.authority.as_str());
            let pool = pool::Pool::new(
                config,
                server.scheme == Scheme::HTTPS,
                tls.clone(),
                server_name(config, server)?,
                server_metrics.clone(),
            );
            let server = Arc::new(Server {
                config: server.clone(),
                pool,
                health: health::Health::default(),
                probed_up: AtomicBool::new(true),
                in_flight: AtomicUsize::new(0),
                hash: crate::hash::key(server.authority.as_str()),
                metrics: server_metrics,
            });
            tasks.0.extend(resolve::follow(&server, dns)?);
            servers.push(server);
        }
        if let Some(check) = config.health.clone() {
            tasks
                .0
                .push(tokio::spawn(probe_forever(servers.clone(), check)));
        }
        Ok(Self {
            servers,
            next: AtomicUsize::new(0),
            first_byte_timeout: config.first_byte_timeout,
            metrics,
            balance: config.balance,
            retries: config.retries,
            budget: health::RetryBudget::default(),
            passive_statuses: config.passive_statuses.clone(),
            panicking: AtomicBool::new(false),
            _tasks: tasks,
        })
    }

    /// The servers in rotation, in the order this request tries them; all of them in panic
    /// mode (none in rotation).
    fn order(&self, request: &OriginRequest, now_ms: u64) -> Vec<&Arc<Server>> {
        let count = self.servers.len();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let start = match self.balance {
            // A multiplicative hash of the turn spreads starts without shared RNG state.
            Balance::Random => (turn as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) as usize >> 7,
            _ => turn,
        };
        let all = (0..count).map(|i| &self.servers[(start + i) % count]);
        let mut order: Vec<&Arc<Server>> = all
            .clone()
            .filter(|server| server.in_rotation(now_ms))
            .collect();
        self.set_panic(order.is_empty() && count > 0);
        if order.is_empty() {
            self.metrics.origin_panic_requests.inc();
            order = all.collect();
        }
        match self.balance {
            Balance::RoundRobin | Balance::Random => {}
            // Stable: ties keep the round-robin order.
            Balance::LeastRequests => {
                order.sort_by_key(|server| server.in_flight.load(Ordering::Relaxed));
            }
            Balance::Hash => {
                let host = request
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default();
                let key = crate::hash::key(&format!("{host}{}", request.path_and_query));
                order.sort_by_key(|server| std::cmp::Reverse(crate::hash::mix(key ^ server.hash)));
            }
        }
        // A lone server with several addresses: a retry goes to its next address.
        if order.len() == 1 && order[0].pool.addresses() > 1 {
            order.push(order[0]);
        }
        order
    }

    /// Enter or leave panic mode: said once per episode, in the log and the gauge.
    fn set_panic(&self, panic: bool) {
        if self.panicking.load(Ordering::Relaxed) == panic
            || self.panicking.swap(panic, Ordering::Relaxed) == panic
        {
            return;
        }
        self.metrics.origin_panic.set(i64::from(panic));
        if panic {
            tracing::warn!(
                servers = self.servers.len(),
                "every origin server is out of rotation: panic mode, sending to all of them"
            );
        } else {
            tracing::info!("an origin server is back in rotation: panic mode over");
        }
    }

    /// Longest wait for the response head, and between two chunks of a body.
    pub(crate) fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }

    /// Send `request` and wait for the response head. A request with a body is sent once; one
    /// without is retried on the next server if it failed before the origin could act on it
    /// (no connection, reset before a response, no free connection).
    pub(crate) async fn send(
        &self,
        request: &OriginRequest,
        body: Option<upload::RequestBody>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let attempts = if body.is_some() {
            1
        } else {
            1 + self.retries as usize
        };
        self.budget.deposit();
        let order = self.order(request, now_ms());
        let mut body = body;
        let mut last = None;
        let mut busy: Option<&Arc<Server>> = None;
        for (attempt, server) in order.into_iter().take(attempts).enumerate() {
            // A server that just had no free slot has none now either.
            if busy.is_some_and(|b| Arc::ptr_eq(b, server)) {
                continue;
            }
            // Retries spend a budget refilled by requests (about one in ten), so a failing
            // origin never sees a storm of them.
            if attempt > 0 && !self.budget.withdraw() {
                break;
            }
            let slot = match server.pool.admit().await {
                Ok(slot) => slot,
                // The server is busy, not failing: no mark against its health.
                Err(e) => {
                    server.metrics.error(OriginFailure::Overload);
                    busy = Some(server);
                    last = Some(e);
                    continue;
                }
            };
            let body = match body.take() {
                Some(incoming) => Either::Right(incoming),
                None => Either::Left(Empty::new()),
            };
            let counted = InFlight::enter(&server.in_flight);
            let sent = self.send_to(server, request, body).await;
            drop(counted);
            match sent {
                // The server answered: reachable, whatever the status, unless the site opted
                // into counting this one (a gateway error may mean what is behind it died).
                Ok(response) if self.passive_statuses.contains(&response.status()) => {
                    self.failed(server);
                    return Ok(response.map(|b| UpstreamBody::with_slot(b, slot)));
                }
                Ok(response) => {
                    if server.health.success() {
                        tracing::info!(origin = %server.config.authority, "origin server back in rotation");
                        server.update_up();
                        if server.in_rotation(now_ms()) {
                            self.set_panic(false);
                        }
                    }
                    return Ok(response.map(|b| UpstreamBody::with_slot(b, slot)));
                }
                Err(e) => {
                    // Only the origin's failures count against it: not a busy server, not a
                    // broken client body.
                    if e.origin_failure()
                        .is_some_and(OriginFailure::counts_against_health)
                    {
                        self.failed(server);
                    }
                    if !e.retryable() {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        // Only without servers (panic mode sends to all of them), or every try failed.
        Err(last.unwrap_or(ProxyError::OriginDown))
    }

    fn failed(&self, server: &Server) {
        if let health::Failure::Ejected(ms) = server.health.failure(now_ms()) {
            tracing::warn!(origin = %server.config.authority, backoff_ms = ms, "origin server out of rotation");
            server.update_up();
            server.metrics.ejections.inc();
        }
    }

    /// One attempt on one server. Each failure is classified here, once: its metrics and
    /// its error, and so (in [`Self::send`]) passive health and the retry, follow from it.
    async fn send_to(
        &self,
        server: &Server,
        request: &OriginRequest,
        body: OriginBody,
    ) -> Result<Response<Incoming>, ProxyError> {
        let Some(endpoint) = server.pool.endpoint().await else {
            server.metrics.requests.inc();
            let why = format!("no address for {} (DNS)", server.config.authority);
            tracing::warn!(origin = %server.config.authority, "origin request failed: {why}");
            return Err(self.count_failure(server, OriginFailure::Connect, why));
        };
        // The URI's authority is hyper's pool key, and HTTP/2's `:authority`.
        let host = request
            .headers
            .get(http::header::HOST)
            .filter(|_| endpoint.keys_by_host())
            .and_then(|h| Authority::try_from(h.as_bytes()).ok());
        let authority = host.unwrap_or_else(|| server.config.authority.clone());
        let uri = origin_uri(&server.config.scheme, authority, &request.path_and_query)?;
        let mut outgoing = Request::new(body);
        *outgoing.method_mut() = request.method.clone();
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = request.headers.clone();
        let started = Instant::now();
        server.metrics.requests.inc();
        let result =
            tokio::time::timeout(self.first_byte_timeout, endpoint.client().request(outgoing))
                .await;
        server.pool.settle(&endpoint);
        let (failure, why) = match result {
            Ok(Ok(response)) => {
                let elapsed = started.elapsed().as_secs_f64();
                self.metrics.origin(OriginOutcome::Response);
                self.metrics.origin_duration.observe(elapsed);
                server.metrics.duration.observe(elapsed);
                return Ok(response);
            }
            // The client's request body failed (cut, bad framing, over the limit, too slow):
            // its error.
            Ok(Err(e)) if is_client_body(&e) => return Err(upload::client_body_error(&e)),
            Ok(Err(e)) => (classify(&e), error_chain(&e)),
            Err(_) => (OriginFailure::Timeout, String::new()),
        };
        let error = self.count_failure(server, failure, why);
        tracing::warn!(origin = %server.config.authority, address = %endpoint.addr, error = %error, "origin request failed");
        Err(error)
    }

    /// Count a failed request against the server (its `kind`) and the site (its outcome),
    /// and make its error.
    fn count_failure(&self, server: &Server, failure: OriginFailure, why: String) -> ProxyError {
        server.metrics.error(failure);
        self.metrics.origin(OriginOutcome::of(failure));
        ProxyError::Origin(failure, why)
    }
}

/// Which failure an error of the client is (a timeout is the caller's to see: never one).
fn classify(e: &hyper_util::client::legacy::Error) -> OriginFailure {
    if find::<pool::NoFreeConnection>(e) {
        OriginFailure::Overload
    } else if e.is_connect() && is_tls_failure(e) {
        OriginFailure::Tls
    } else if e.is_connect() {
        OriginFailure::Connect
    } else if is_reset(e) {
        OriginFailure::Reset
    } else {
        OriginFailure::Protocol
    }
}

/// Whether hyper failed on our side of the request: the body we were streaming (the
/// client's) broke.
fn is_client_body(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether an error of type `T` is in the chain (also inside `io::Error`s, whose `source()`
/// skips the error they wrap: hence `get_ref`).
fn find<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<T>().is_some() {
        return true;
    }
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| find::<T>(inner));
    wrapped || e.source().is_some_and(find::<T>)
}

/// The connection closed or was reset before a response head: the origin may not have seen
/// the request at all, so a request without a body can go elsewhere.
fn is_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(hyper) = s.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn origin_uri(
    scheme: &Scheme,
    authority: Authority,
    path_and_query: &PathAndQuery,
) -> Result<Uri, ProxyError> {
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority)
        .path_and_query(path_and_query.clone())
        .build()
        .map_err(|_| ProxyError::Internal("cannot build origin URI"))
}

/// Whether a connect error came from the TLS handshake (a rustls error).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    find::<rustls::Error>(e)
}

/// "outer: inner: innermost" — hyper's errors hide the useful part (refused, reset, bad
/// certificate) in their sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Active health: probe every server each `interval`; `fall` failed probes in a row take it
/// out of rotation, `rise` good ones bring it back. Runs until the origin is dropped.
async fn probe_forever(servers: Vec<Arc<Server>>, check: HealthCheck) {
    let mut streaks = vec![(0u32, 0u32); servers.len()];
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probes = servers.iter().map(|server| {
            let check = &check;
            async move {
                let endpoint = server.pool.endpoint_now()?;
                let authority = server.config.authority.clone();
                let Ok(uri) = origin_uri(&server.config.scheme, authority, &check.path) else {
                    return Some(false);
                };
                let mut probe = Request::new(Either::Left(Empty::new()));
                *probe.uri_mut() = uri;
                let answered =
                    tokio::time::timeout(check.timeout, endpoint.probe.request(probe)).await;
                Some(matches!(answered, Ok(Ok(r)) if r.status().is_success() || r.status().is_redirection()))
            }
        });
        let results = futures_util::future::join_all(probes).await;
        for ((server, ok), (good, bad)) in servers.iter().zip(results).zip(streaks.iter_mut()) {
            let Some(ok) = ok else { continue };
            let up = server.probed_up.load(Ordering::Relaxed);
            if ok {
                (*good, *bad) = (good.saturating_add(1), 0);
                if !up && *good >= check.rise {
                    tracing::info!(origin = %server.config.authority, "health probes pass; back in rotation");
                    server.probed_up.store(true, Ordering::Relaxed);
                }
            } else {
                (*good, *bad) = (0, bad.saturating_add(1));
                if up && *bad >= check.fall {
                    tracing::warn!(origin = %server.config.authority, "health probes fail; out of rotation");
                    server.probed_up.store(false, Ordering::Relaxed);
                    server.metrics.ejections.inc();
                }
            }
            server.update_up();
        }
    }
}
