//! Talking to a site's origin servers: pooled keep-alive connections over HTTP or HTTPS,
//! connect and first-byte timeouts, round robin over the servers in rotation with one retry
//! on another server when a connection could not be made (only for requests without a body,
//! which are safe to resend), and passive health ([`health`]): a failing server leaves
//! rotation, and with every server out a request fails at once (503, or stale content where
//! allowed) instead of waiting out a timeout.

pub mod health;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{Either, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::cluster::ring::{self, Ring};
use crate::config::{Balance, HealthCheck, OriginConfig, OriginServer};
use crate::error::ProxyError;
use crate::observability::metrics::{Metrics, OriginOutcome, OriginServerMetrics, SiteMetrics};

/// Milliseconds on a monotonic clock (since the first call), for [`health`].
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A fill sends no body; a passed-through method streams the client's, up to the site's
/// `max_request_body`.
pub type OriginBody = Either<Empty<Bytes>, Limited<Incoming>>;

/// What to ask an origin, independent of which server answers.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginSetupError {
    #[error("origin TLS: {0}")]
    Tls(String),
}

/// One origin server and what requests and probes have shown of its health.
struct Server {
    config: OriginServer,
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

pub struct Origin {
    servers: Vec<Arc<Server>>,
    next: AtomicUsize,
    client: Client<HttpsConnector<HttpConnector>, OriginBody>,
    first_byte_timeout: Duration,
    metrics: SiteMetrics,
    balance: Balance,
    retries: u32,
    budget: health::RetryBudget,
    /// Active health probes, stopped with the origin (a reload replaces it).
    probes: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(probes) = &self.probes {
            probes.abort();
        }
    }
}

impl Origin {
    pub fn new(config: &OriginConfig, site: &str, all: &Metrics) -> Result<Self, OriginSetupError> {
        let metrics = all.site(site);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(&config.tls)?)
            .https_or_http();
        let builder = match &config.tls.sni {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| OriginSetupError::Tls(format!("tls.sni {name:?}: {e}")))?;
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.idle_timeout)
            .pool_max_idle_per_host(config.max_idle_per_server)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .map(|server| {
                Arc::new(Server {
                    config: server.clone(),
                    health: health::Health::default(),
                    probed_up: AtomicBool::new(true),
                    in_flight: AtomicUsize::new(0),
                    hash: Ring::key_hash(server.authority.as_str()),
                    metrics: all.origin_server(site, server.authority.as_str()),
                })
            })
            .collect();
        let probes = config
            .health
            .clone()
            .map(|check| tokio::spawn(probe_forever(servers.clone(), client.clone(), check)));
        Ok(Self {
            servers,
            next: AtomicUsize::new(0),
            client,
            first_byte_timeout: config.first_byte_timeout,
            metrics,
            balance: config.balance,
            retries: config.retries,
            budget: health::RetryBudget::default(),
            probes,
        })
    }

    /// The servers in rotation, in the order this request tries them.
    fn order(&self, request: &OriginRequest, now_ms: u64) -> Vec<&Arc<Server>> {
        let count = self.servers.len();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let start = match self.balance {
            // A multiplicative hash of the turn spreads starts without shared RNG state.
            Balance::Random => (turn as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) as usize >> 7,
            _ => turn,
        };
        let mut order: Vec<&Arc<Server>> = (0..count)
            .map(|i| &self.servers[(start + i) % count])
            .filter(|server| server.in_rotation(now_ms))
            .collect();
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
                let key = Ring::key_hash(&format!("{host}{}", request.path_and_query));
                order.sort_by_key(|server| std::cmp::Reverse(ring::mix(key ^ server.hash)));
            }
        }
        order
    }

    /// Longest wait for the response head, and between two chunks of a body.
    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }

    /// Send `request` and wait for the response head. A request with a body is sent once; one
    /// without is retried once on the next server if no connection could be made.
    pub async fn send(
        &self,
        request: &OriginRequest,
        body: Option<Limited<Incoming>>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let attempts = if body.is_some() {
            1
        } else {
            1 + self.retries as usize
        };
        self.budget.deposit();
        let order = self.order(request, now_ms());
        let mut body = body;
        let mut last = None;
        for (attempt, server) in order.into_iter().take(attempts).enumerate() {
            // Retries spend a budget refilled by requests (about one in ten), so a failing
            // origin never sees a storm of them.
            if attempt > 0 && !self.budget.withdraw() {
                break;
            }
            let body = match body.take() {
                Some(incoming) => Either::Right(incoming),
                None => Either::Left(Empty::new()),
            };
            server.in_flight.fetch_add(1, Ordering::Relaxed);
            let sent = self.send_to(&server.config, request, body).await;
            server.in_flight.fetch_sub(1, Ordering::Relaxed);
            match sent {
                // A gateway error says the server (or what is behind it) is in trouble; a 500
                // is usually one broken page, and must not take a whole site out.
                Ok(response) if matches!(response.status().as_u16(), 502..=504) => {
                    self.failed(server);
                    return Ok(response);
                }
                Ok(response) => {
                    if server.health.success() {
                        tracing::info!(origin = %server.config.authority, "origin server back in rotation");
                        server.update_up();
                    }
                    return Ok(response);
                }
                Err(e) => {
                    self.failed(server);
                    if !e.retryable() {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        // Every server is out of rotation: fail now rather than wait on a dead one.
        Err(last.unwrap_or(ProxyError::OriginDown))
    }

    fn failed(&self, server: &Server) {
        if let health::Failure::Ejected(ms) = server.health.failure(now_ms()) {
            tracing::warn!(origin = %server.config.authority, backoff_ms = ms, "origin server out of rotation");
            server.update_up();
            server.metrics.ejections.inc();
        }
    }

    async fn send_to(
        &self,
        server: &OriginServer,
        request: &OriginRequest,
        body: OriginBody,
    ) -> Result<Response<Incoming>, ProxyError> {
        let uri = origin_uri(&server.scheme, server, &request.path_and_query)?;
        let mut outgoing = Request::new(body);
        *outgoing.method_mut() = request.method.clone();
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = request.headers.clone();
        let started = Instant::now();
        let result =
            tokio::time::timeout(self.first_byte_timeout, self.client.request(outgoing)).await;
        let (outcome, result) = match result {
            Err(_) => (OriginOutcome::Timeout, Err(ProxyError::OriginTimeout)),
            Ok(Ok(response)) => (OriginOutcome::Response, Ok(response)),
            Ok(Err(e)) if e.is_connect() && is_tls_failure(&e) => (
                OriginOutcome::Connect,
                Err(ProxyError::OriginTls(error_chain(&e))),
            ),
            Ok(Err(e)) if e.is_connect() => (
                OriginOutcome::Connect,
                Err(ProxyError::OriginConnect(error_chain(&e))),
            ),
            Ok(Err(e)) => (
                OriginOutcome::Protocol,
                Err(ProxyError::OriginProtocol(error_chain(&e))),
            ),
        };
        self.metrics.origin(outcome);
        if outcome == OriginOutcome::Response {
            self.metrics
                .origin_duration
                .observe(started.elapsed().as_secs_f64());
        } else if let Err(e) = &result {
            tracing::warn!(origin = %server.authority, error = %e, "origin request failed");
        }
        result
    }
}

fn origin_uri(
    scheme: &Scheme,
    server: &OriginServer,
    path_and_query: &PathAndQuery,
) -> Result<Uri, ProxyError> {
    Uri::builder()
        .scheme(scheme.clone())
        .authority(server.authority.clone())
        .path_and_query(path_and_query.clone())
        .build()
        .map_err(|_| ProxyError::Internal("cannot build origin URI"))
}

/// Whether a connect error came from the TLS handshake (a rustls error, which the connector
/// wraps in `io::Error`s, whose `source()` skips the error they wrap: hence `get_ref`).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| is_tls_failure(inner));
    wrapped || e.source().is_some_and(is_tls_failure)
}

/// "outer: inner: innermost" — hyper's errors hide the useful part (refused, reset, bad
/// certificate) in their sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
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
async fn probe_forever(
    servers: Vec<Arc<Server>>,
    client: Client<HttpsConnector<HttpConnector>, OriginBody>,
    check: HealthCheck,
) {
    let mut streaks = vec![(0u32, 0u32); servers.len()];
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probes = servers.iter().map(|server| {
            let client = client.clone();
            let check = &check;
            async move {
                let Ok(uri) = origin_uri(&server.config.scheme, &server.config, &check.path) else {
                    return false;
                };
                let mut probe = Request::new(Either::Left(Empty::new()));
                *probe.uri_mut() = uri;
                let answered = tokio::time::timeout(check.timeout, client.request(probe)).await;
                matches!(answered, Ok(Ok(r)) if r.status().is_success() || r.status().is_redirection())
            }
        });
        let results = futures_util::future::join_all(probes).await;
        for ((server, ok), (good, bad)) in servers.iter().zip(results).zip(streaks.iter_mut()) {
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
