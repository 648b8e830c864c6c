//! Talking to a site's origin servers: pooled keep-alive connections over HTTP or HTTPS,
//! connect and first-byte timeouts, round robin over the servers in rotation with one retry
//! on another server when a connection could not be made (only for requests without a body,
//! which are safe to resend), and passive health ([`health`]): a failing server leaves
//! rotation, and with every server out a request fails at once (503, or stale content where
//! allowed) instead of waiting out a timeout.

pub mod health;
mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};
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

use crate::config::{OriginConfig, OriginServer};
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

/// One origin server and what real requests have shown of its health.
struct Server {
    config: OriginServer,
    health: health::Health,
    metrics: OriginServerMetrics,
}

pub struct Origin {
    servers: Vec<Server>,
    next: AtomicUsize,
    client: Client<HttpsConnector<HttpConnector>, OriginBody>,
    first_byte_timeout: Duration,
    metrics: SiteMetrics,
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
        Ok(Self {
            servers: config
                .servers
                .iter()
                .map(|server| Server {
                    config: server.clone(),
                    health: health::Health::default(),
                    metrics: all.origin_server(site, server.authority.as_str()),
                })
                .collect(),
            next: AtomicUsize::new(0),
            client,
            first_byte_timeout: config.first_byte_timeout,
            metrics,
        })
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
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let attempts = if body.is_some() { 1 } else { 2 };
        let now = now_ms();
        let count = self.servers.len();
        // Servers in rotation, round robin from this request's turn.
        let order = (0..count)
            .map(|i| &self.servers[(start + i) % count])
            .filter(|server| server.health.available(now));
        let mut body = body;
        let mut last = None;
        for server in order.take(attempts) {
            let body = match body.take() {
                Some(incoming) => Either::Right(incoming),
                None => Either::Left(Empty::new()),
            };
            match self.send_to(&server.config, request, body).await {
                // A gateway error says the server (or what is behind it) is in trouble; a 500
                // is usually one broken page, and must not take a whole site out.
                Ok(response) if matches!(response.status().as_u16(), 502..=504) => {
                    self.failed(server);
                    return Ok(response);
                }
                Ok(response) => {
                    if server.health.success() {
                        tracing::info!(origin = %server.config.authority, "origin server back in rotation");
                        server.metrics.up.set(1);
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
            server.metrics.up.set(0);
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
