//! Connections to one origin server: one pooled client per address the server's name
//! resolves to, `max_connections` on requests in flight to the server and on connections
//! open to each address, and a bounded queue in front.
//!
//! Why one client per address: hyper's pool keys connections by the URI's authority, which
//! cannot be the address: over HTTP/2 it is the `:authority`, which must match `Host` (see
//! [`Endpoint::keys_by_host`]). So each address gets its own client whose connector ignores
//! the URI's host and dials that address. When an address leaves DNS its client is dropped
//! from the list: the requests on it finish, and its idle connections close with the last
//! reference, so the address is drained, never cut mid-request.
//!
//! Why two bounds: a request holds a [`Slot`] from before it is sent until its response body
//! ends, so at most `max_connections` requests (HTTP/1.1: connections in use) are in flight
//! to the server. hyper may still start a connection for a request that then takes one
//! another request just released; the connector's semaphore, per address, keeps the
//! connections open to an address within `max_connections` too (such a connection waits for
//! a free slot, in the background). It is per address so that idle connections to one
//! address never keep a request from connecting to another. Health probes use a client of
//! their own, outside both bounds.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::OriginBody;
use crate::config::{H2_STREAMS_PER_CONNECTION, Http2, OriginConfig};
use crate::error::ProxyError;
use crate::observability::metrics::OriginServerMetrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client for one address.
pub(crate) type AddressClient = Client<Limited, OriginBody>;

/// One address of a server, with its pool.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// Replaced once when ALPN first says HTTP/1.1 (see [`Pool::settle`]).
    client: ArcSwap<AddressClient>,
    /// Health probes: their own connection, outside the limit, so a probe neither waits
    /// behind requests nor takes a connection from them.
    pub(crate) probe: AddressClient,
    /// What its connections speak, once known: [`UNKNOWN`], [`HTTP1`] or [`HTTP2`].
    speaks: Arc<AtomicU8>,
    /// Open connections to this address (`max_connections` each): a bound per address, so
    /// idle connections to one address never block connecting to another.
    connections: Arc<Semaphore>,
    /// Set when the first connection learned HTTP/1.1 after starting keyed by host.
    rekey: Arc<AtomicBool>,
}

const UNKNOWN: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

impl Endpoint {
    /// Whether requests must carry their own host as the URI's authority. HTTP/2 needs it
    /// (`:authority` must match `Host`), which gives each host its own connection. Over
    /// HTTP/1.1 the authority is only hyper's pool key: one shared by every host keeps a
    /// wildcard site's many hosts from each pinning idle connections.
    pub(crate) fn keys_by_host(&self) -> bool {
        self.speaks.load(Ordering::Relaxed) != HTTP1
    }

    pub(crate) fn client(&self) -> Arc<AddressClient> {
        self.client.load_full()
    }
}

/// What every endpoint of a server is built from.
struct Template {
    tls: rustls::ClientConfig,
    sni: rustls::pki_types::ServerName<'static>,
    http2: Http2,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    queue_timeout: Duration,
    max_connections: usize,
    /// An `https` server: ALPN may pick HTTP/2.
    tls_capable: bool,
}

/// The connections of one origin server.
pub(crate) struct Pool {
    template: Template,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Signalled when the first addresses arrive.
    resolved: Notify,
    next: AtomicUsize,
    /// Requests in flight (held until the response body ends).
    requests: Arc<Semaphore>,
    queued: AtomicUsize,
    queue: usize,
    usage: Arc<Usage>,
}

/// Open connections and requests holding one, for the open/idle gauges. The gauges move by
/// deltas: after a reload the old pool (draining) and the new one share them.
struct Usage {
    counts: Mutex<(i64, i64)>,
    metrics: OriginServerMetrics,
}

impl Usage {
    fn adjust(&self, open: i64, busy: i64) {
        // A poisoned lock only means a panic elsewhere mid-update; the counts stay usable.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let idle_before = (counts.0 - counts.1).max(0);
        counts.0 += open;
        counts.1 += busy;
        self.metrics.open.inc_by(open);
        self.metrics
            .idle
            .inc_by((counts.0 - counts.1).max(0) - idle_before);
    }
}

impl Pool {
    pub(crate) fn new(
        config: &OriginConfig,
        https: bool,
        tls: rustls::ClientConfig,
        sni: rustls::pki_types::ServerName<'static>,
        metrics: OriginServerMetrics,
    ) -> Self {
        let in_flight = match config.http2 {
            Http2::Always => config
                .max_connections
                .saturating_mul(H2_STREAMS_PER_CONNECTION),
            Http2::Auto | Http2::Never => config.max_connections,
        };
        Self {
            template: Template {
                tls,
                sni,
                http2: config.http2,
                connect_timeout: config.connect_timeout,
                idle_timeout: config.idle_timeout,
                max_idle: config.max_idle_per_server,
                queue_timeout: config.queue_timeout,
                max_connections: config.max_connections,
                tls_capable: https,
            },
            endpoints: ArcSwap::from_pointee(Vec::new()),
            resolved: Notify::new(),
            next: AtomicUsize::new(0),
            requests: Arc::new(Semaphore::new(in_flight.min(Semaphore::MAX_PERMITS))),
            queued: AtomicUsize::new(0),
            queue: config.queue,
            usage: Arc::new(Usage {
                counts: Mutex::new((0, 0)),
                metrics,
            }),
        }
    }

    /// Follow a new address list: addresses kept keep their pools, new ones get one, and
    /// removed ones drain (see the module doc).
    pub(crate) fn set_addresses(&self, addrs: &[SocketAddr]) {
        let current = self.endpoints.load();
        let next: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|&addr| match current.iter().find(|e| e.addr == addr) {
                Some(kept) => Arc::clone(kept),
                None => Arc::new(self.endpoint_for(addr)),
            })
            .collect();
        self.usage.metrics.addresses.set(next.len() as i64);
        self.endpoints.store(Arc::new(next));
        self.resolved.notify_waiters();
    }

    fn endpoint_for(&self, addr: SocketAddr) -> Endpoint {
        let speaks = Arc::new(AtomicU8::new(match self.template.http2 {
            Http2::Never => HTTP1,
            Http2::Always => HTTP2,
            Http2::Auto if !self.template.tls_capable => HTTP1,
            Http2::Auto => UNKNOWN,
        }));
        let connections = Arc::new(Semaphore::new(
            self.template.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        let rekey = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            slots: Arc::clone(&connections),
            usage: Arc::clone(&self.usage),
            speaks: Arc::clone(&speaks),
            rekey: Arc::clone(&rekey),
        };
        Endpoint {
            addr,
            client: ArcSwap::from_pointee(self.client(addr, Some(limits))),
            probe: self.client(addr, None),
            speaks,
            connections,
            rekey,
        }
    }

    /// After the first connection to an address said HTTP/1.1 (ALPN), requests stop keying
    /// connections by host; the connections opened while that was unknown would sit idle
    /// under keys no request uses, holding connection slots. A fresh client drops them
    /// (those carrying requests finish first).
    pub(crate) fn settle(&self, endpoint: &Endpoint) {
        if endpoint.rekey.swap(false, Ordering::Relaxed) {
            let limits = Limits {
                slots: Arc::clone(&endpoint.connections),
                usage: Arc::clone(&self.usage),
                speaks: Arc::clone(&endpoint.speaks),
                rekey: Arc::clone(&endpoint.rekey),
            };
            endpoint
                .client
                .store(Arc::new(self.client(endpoint.addr, Some(limits))));
        }
    }

    /// A client for `addr`; with `limits`, its connections count against the address's
    /// `max_connections` and in the gauges (probes go without).
    fn client(&self, addr: SocketAddr, limits: Option<Limits>) -> AddressClient {
        let t = &self.template;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(t.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let fixed = FixedAddress { addr, inner: http };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(t.tls.clone())
            .https_or_http()
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(t.sni.clone()));
        // hyper-rustls offers ALPN from the versions enabled here.
        let https = match t.http2 {
            Http2::Never => builder.enable_http1().wrap_connector(fixed),
            Http2::Always => builder.enable_http2().wrap_connector(fixed),
            Http2::Auto => builder.enable_all_versions().wrap_connector(fixed),
        };
        let limited = Limited {
            inner: https,
            wait: t.queue_timeout,
            limits,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(t.idle_timeout)
            .pool_max_idle_per_host(t.max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        if t.http2 == Http2::Always {
            // Over cleartext this is HTTP/2 with prior knowledge (h2c).
            builder.http2_only(true);
        }
        builder.build(limited)
    }

    /// The next address in turn; waits (up to the connect timeout) for the first resolution.
    pub(crate) async fn endpoint(&self) -> Option<Arc<Endpoint>> {
        if let Some(endpoint) = self.endpoint_now() {
            return Some(endpoint);
        }
        let resolved = self.resolved.notified();
        tokio::pin!(resolved);
        resolved.as_mut().enable();
        if let Some(endpoint) = self.endpoint_now() {
            return Some(endpoint);
        }
        let _ = tokio::time::timeout(self.template.connect_timeout, resolved).await;
        self.endpoint_now()
    }

    pub(crate) fn addresses(&self) -> usize {
        self.endpoints.load().len()
    }

    pub(crate) fn endpoint_now(&self) -> Option<Arc<Endpoint>> {
        let list = self.endpoints.load();
        if list.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(Arc::clone(&list[turn % list.len()]))
    }

    /// A request slot: at once, after waiting in the queue, or an overload error when the queue
    /// is full or the wait exceeds `queue_timeout`.
    pub(crate) async fn admit(&self) -> Result<Slot, ProxyError> {
        let permit = match Arc::clone(&self.requests).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Leaves the queue when dropped: also when the client goes away meanwhile.
                let (_queued, waiting) = Queued::join(self);
                if waiting >= self.queue {
                    return Err(ProxyError::busy());
                }
                let acquired = tokio::time::timeout(
                    self.template.queue_timeout,
                    Arc::clone(&self.requests).acquire_owned(),
                )
                .await;
                match acquired {
                    Ok(Ok(permit)) => permit,
                    // Timed out, or (never) closed.
                    _ => return Err(ProxyError::busy()),
                }
            }
        };
        self.usage.adjust(0, 1);
        Ok(Slot {
            _permit: permit,
            usage: Arc::clone(&self.usage),
        })
    }
}

/// A request waiting for a slot.
struct Queued<'a>(&'a Pool);

impl<'a> Queued<'a> {
    /// Joins the queue; also returns how many were waiting before.
    fn join(pool: &'a Pool) -> (Self, usize) {
        let waiting = pool.queued.fetch_add(1, Ordering::Relaxed);
        pool.usage.metrics.queued.inc();
        (Self(pool), waiting)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
        self.0.usage.metrics.queued.dec();
    }
}

/// A request's place among the server's `max_connections`, released when its response body
/// ends (or is dropped).
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    usage: Arc<Usage>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.usage.adjust(0, -1);
    }
}

/// No connection slot came free within the queue timeout.
#[derive(Debug, thiserror::Error)]
#[error("no free connection within {0:?} (max_connections reached)")]
pub(crate) struct NoFreeConnection(Duration);

/// Dials one address whatever the URI's host (see the module doc).
#[derive(Clone)]
pub(crate) struct FixedAddress {
    addr: SocketAddr,
    inner: HttpConnector,
}

impl tower_service::Service<Uri> for FixedAddress {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.addr.to_string())
            .path_and_query("/")
            .build();
        // A socket address always makes a valid authority.
        self.inner.call(uri.unwrap_or_default())
    }
}

/// The TLS-or-plain connector of one address; with [`Limits`], holding a connection slot
/// per connection.
#[derive(Clone)]
pub(crate) struct Limited {
    inner: HttpsConnector<FixedAddress>,
    wait: Duration,
    limits: Option<Limits>,
}

#[derive(Clone)]
struct Limits {
    slots: Arc<Semaphore>,
    usage: Arc<Usage>,
    speaks: Arc<AtomicU8>,
    rekey: Arc<AtomicBool>,
}

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

impl tower_service::Service<Uri> for Limited {
    type Response = Counted<Stream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let (wait, limits) = (self.wait, self.limits.clone());
        Box::pin(async move {
            let Some(limits) = limits else {
                let io = inner.call(uri).await?;
                return Ok(Counted {
                    io,
                    _slot: None,
                    usage: None,
                });
            };
            let slot = tokio::time::timeout(wait, limits.slots.acquire_owned())
                .await
                .map_err(|_| NoFreeConnection(wait))?
                .map_err(|_| NoFreeConnection(wait))?;
            let io = inner.call(uri).await?;
            let learned = if io.connected().is_negotiated_h2() {
                HTTP2
            } else {
                HTTP1
            };
            let first = limits.speaks.compare_exchange(
                UNKNOWN,
                learned,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if first.is_ok() && learned == HTTP1 {
                limits.rekey.store(true, Ordering::Relaxed);
            }
            limits.usage.adjust(1, 0);
            Ok(Counted {
                io,
                _slot: Some(slot),
                usage: Some(limits.usage),
            })
        })
    }
}

/// An open connection, counted until it closes (probes' are not).
pub(crate) struct Counted<T> {
    io: T,
    _slot: Option<OwnedSemaphorePermit>,
    usage: Option<Arc<Usage>>,
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        if let Some(usage) = &self.usage {
            usage.adjust(-1, 0);
        }
    }
}

impl<T: Connection> Connection for Counted<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// A response body from an origin server or an owner peer. An origin's holds the request's
/// [`Slot`] until the body ends.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    slot: Option<Slot>,
}

impl UpstreamBody {
    pub(crate) fn with_slot(inner: Incoming, slot: Slot) -> Self {
        Self {
            inner,
            slot: Some(slot),
        }
    }
}

impl From<Incoming> for UpstreamBody {
    fn from(inner: Incoming) -> Self {
        Self { inner, slot: None }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || this.inner.is_end_stream() {
            this.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::observability::metrics::Metrics;

    fn pool(extra: &str) -> Pool {
        let text = format!(
            "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://origin.test:80\"]\n{extra}\n"
        );
        let config = Config::parse(&text, "t.toml", std::path::Path::new(".")).expect("config");
        let origin = &config.sites[0].origin;
        let tls = super::super::tls::client_config(&origin.tls).expect("tls");
        let name = rustls::pki_types::ServerName::try_from("origin.test").expect("name");
        Pool::new(
            origin,
            false,
            tls,
            name,
            Metrics::new().origin_server("a", "origin.test:80"),
        )
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("addr")
    }

    #[test]
    fn addresses_that_stay_keep_their_pool_and_new_ones_get_one() {
        let pool = pool("");
        assert!(pool.endpoint_now().is_none());
        pool.set_addresses(&[addr("10.0.0.1:80"), addr("10.0.0.2:80")]);
        let before = pool.endpoints.load_full();
        pool.set_addresses(&[addr("10.0.0.2:80"), addr("10.0.0.3:80")]);
        let after = pool.endpoints.load_full();
        assert!(
            Arc::ptr_eq(&before[1], &after[0]),
            "10.0.0.2 kept its client"
        );
        assert_eq!(after[1].addr, addr("10.0.0.3:80"));
        assert_eq!(pool.addresses(), 2);
        // Turns alternate between the addresses.
        let picks: Vec<SocketAddr> = (0..4)
            .filter_map(|_| pool.endpoint_now().map(|e| e.addr))
            .collect();
        assert_eq!(picks[0], picks[2]);
        assert_ne!(picks[0], picks[1]);
    }

    #[tokio::test]
    async fn requests_beyond_max_connections_queue_then_get_503() {
        let pool = pool("max_connections = 2\nqueue = 1\nqueue_timeout = \"50ms\"");
        let first = pool.admit().await.expect("slot 1");
        let _second = pool.admit().await.expect("slot 2");
        // Full: one may wait, and it times out.
        assert_eq!(pool.admit().await.err(), Some(ProxyError::busy()));
        assert_eq!(pool.requests.available_permits(), 0);
        // A freed slot goes to the one waiting.
        let waiting = pool.admit();
        drop(first);
        assert!(waiting.await.is_ok());
    }

    #[test]
    fn idle_is_open_minus_busy_never_negative() {
        let pool = pool("");
        // Another pool on the same gauges (a reload's old one, draining).
        let draining = Usage {
            counts: Mutex::new((0, 0)),
            metrics: pool.usage.metrics.clone(),
        };
        draining.adjust(3, 1);
        draining.adjust(-3, -1);
        let metrics = &pool.usage.metrics;
        pool.usage.adjust(0, 1);
        assert_eq!((metrics.open.get(), metrics.idle.get()), (0, 0));
        pool.usage.adjust(2, 0);
        assert_eq!((metrics.open.get(), metrics.idle.get()), (2, 1));
        pool.usage.adjust(0, -1);
        assert_eq!((metrics.open.get(), metrics.idle.get()), (2, 2));
    }
}
