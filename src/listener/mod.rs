//! Accept loops for the client-facing listeners (and the admin one): plain TCP or TLS, HTTP/1.1
//! and HTTP/2 on each (h2 by ALPN on TLS, by prior knowledge on cleartext), a connection limit,
//! header-read timeouts against slowloris, a watch on HTTP/1.1 framing (`framing`, for the
//! request-smuggling shape hyper hides), and a graceful drain on shutdown.

mod coalesce;
pub mod framing;
pub(crate) mod per_client;
pub(crate) mod quic;
pub(crate) mod tls;
mod watched;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::uri::Scheme;

use http::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::ListenConfig;
use crate::observability::metrics::Metrics;
use crate::service::{AmbiguousFraming, ClientBody, ClientInfo, Handler};
use coalesce::Coalesced;
use framing::Framing;
use watched::Watched;

/// Per-connection protocol settings, from `[listen]`.
#[derive(Debug, Clone)]
pub(crate) struct ConnSettings {
    pub(crate) header_read_timeout: Duration,
    /// Keep-alive connections with no request for this long are closed.
    pub(crate) idle_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    /// `Alt-Svc` for responses on TLS connections while QUIC listeners run (RFC 7838,
    /// RFC 9114 §3.1.1): `h3` on the first QUIC port.
    pub(crate) alt_svc: Option<HeaderValue>,
}

/// How long clients may remember the `h3` alternative.
const ALT_SVC_MAX_AGE: u32 = 86_400;

impl From<&ListenConfig> for ConnSettings {
    fn from(c: &ListenConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            idle_timeout: c.idle_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            alt_svc: c.quic.first().and_then(|addr| {
                let value = format!("h3=\":{}\"; ma={ALT_SVC_MAX_AGE}", addr.port());
                HeaderValue::from_str(&value).ok()
            }),
        }
    }
}

/// hyper refuses buffers smaller than this.
const MIN_BUF: usize = 8192;

/// hyper's read buffer, which bounds a request head.
fn max_buf(settings: &ConnSettings) -> usize {
    settings.max_header_bytes.max(MIN_BUF)
}

fn builder(settings: &ConnSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer the header read timeout silently does nothing.
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(max_buf(settings))
        .max_headers(settings.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid-reset (CVE-2023-44487) style floods.
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

/// Everything an accept loop needs besides its socket. TLS certificates and connection
/// settings are read per connection, so a reload changes them for the next connection.
pub(crate) struct Acceptor<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) tls: Option<Arc<ArcSwapOption<ServerConfig>>>,
    pub(crate) settings: Arc<ArcSwap<ConnSettings>>,
    /// One permit per open connection: the limit, and the drain's way to know when every
    /// connection has closed.
    pub(crate) connections: Arc<Semaphore>,
    /// The limit per client address, shared by every listener of the node.
    pub(crate) per_client: Arc<per_client::PerClient>,
    /// The node drains: stop accepting, finish and close every connection.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// This listener alone stops accepting (a reload removed it); its connections carry on.
    pub(crate) accepting: watch::Receiver<bool>,
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl<H> Clone for Acceptor<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            tls: self.tls.clone(),
            settings: self.settings.clone(),
            connections: self.connections.clone(),
            per_client: self.per_client.clone(),
            shutdown: self.shutdown.clone(),
            accepting: self.accepting.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Accept until shutdown (or this listener's stop) is signalled. Connections are served on
/// their own tasks.
pub(crate) async fn accept_loop<H: Handler>(listener: TcpListener, acceptor: Acceptor<H>) {
    let mut shutdown = acceptor.shutdown.clone();
    let mut accepting = acceptor.accepting.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => return,
            () = stopped(&mut accepting) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = acceptor.metrics.clone();
        let Some(slot) = acceptor.per_client.take(peer.ip()) else {
            tracing::debug!(%peer, "connection limit of this client address reached; closing");
            if let Some(m) = &metrics {
                m.front.connections_refused.inc();
                m.front.client_limit_refusals.inc();
            }
            continue;
        };
        let Ok(permit) = acceptor.connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing");
            if let Some(m) = &metrics {
                m.front.connections_refused.inc();
            }
            continue;
        };
        if let Some(m) = &metrics {
            m.front.connections_accepted.inc();
            m.front.connections_open.inc();
        }
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor.tls.as_ref().map(|tls| tls.load_full()) {
                // Cleartext h2 (prior knowledge) is for tests and trusted hops; it is written
                // as HTTP/1.1 is.
                None => serve(stream, peer, Scheme::HTTP, false, &acceptor).await,
                // An https listener whose certificates a reload removed: nothing to offer.
                Some(None) => tracing::debug!(%peer, "no TLS certificate configured; closing"),
                Some(Some(config)) => {
                    let tls = TlsAcceptor::from(config);
                    let timeout = acceptor.settings.load().header_read_timeout;
                    let handshake = tokio::time::timeout(timeout, tls.accept(stream)).await;
                    let ok = matches!(handshake, Ok(Ok(_)));
                    if let Some(m) = &metrics {
                        m.front.tls_handshakes.inc();
                        if !ok {
                            m.front.tls_handshake_failures.inc();
                        }
                    }
                    match handshake {
                        Ok(Ok(stream)) => {
                            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            serve(stream, peer, Scheme::HTTPS, h2, &acceptor).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            if let Some(m) = &metrics {
                m.front.connections_open.dec();
            }
            drop(permit);
            drop(slot);
        });
    }
}

/// `h2`: the connection speaks HTTP/2 (by ALPN), whose responses are written together.
async fn serve<IO, H>(io: IO, peer: SocketAddr, scheme: Scheme, h2: bool, acceptor: &Acceptor<H>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let client = ClientInfo {
        addr: peer,
        scheme: scheme.clone(),
    };
    let handler = acceptor.handler.clone();
    let activity = Arc::new(Activity::default());
    let tracker = activity.clone();
    let settings = acceptor.settings.load_full();
    // RFC 9112 §6.1: hyper hides a head with both Transfer-Encoding and Content-Length (it
    // drops the latter); the bytes show it, and the request is marked for the handler.
    let ambiguous = Arc::new(AtomicU64::new(0));
    let framing = Framing::new(max_buf(&settings), settings.max_headers);
    let io = Watched::new(Coalesced::new(io, h2), framing, ambiguous.clone());
    let alt_svc = (scheme == Scheme::HTTPS)
        .then(|| settings.alt_svc.clone())
        .flatten();
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let mut request = request.map(ClientBody::from);
        let (in_flight, number) = InFlight::start(tracker.clone());
        if ambiguous.load(Ordering::Relaxed) == number
            && request.headers().contains_key(header::TRANSFER_ENCODING)
        {
            request.extensions_mut().insert(AmbiguousFraming);
        }
        let handler = handler.clone();
        let client = client.clone();
        let alt_svc = alt_svc.clone();
        // Boxed: hyper spawns each h2 stream as a task holding this future, and tokio copies a
        // task's future on spawn and on completion; a box makes those copies a pointer's.
        // Measured on h2+TLS hits, 96k against 92k req/s unboxed; HTTP/1.1 the same either way.
        Box::pin(async move {
            let mut response = handler.call(request, client).await;
            if let Some(value) = alt_svc {
                response.headers_mut().insert(header::ALT_SVC, value);
            }
            drop(in_flight);
            Ok::<_, Infallible>(response)
        })
    });
    let builder = builder(&settings);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut shutdown = acceptor.shutdown.clone();
    tokio::select! {
        quiet = watchdog(&activity, settings.header_read_timeout, settings.idle_timeout) => match quiet {
            // hyper's own header timeout starts once it knows the protocol; a client that
            // sends nothing (or half an HTTP/2 preface) would otherwise keep its slot forever.
            Quiet::BeforeFirstRequest => tracing::debug!(%peer, "no request before the header timeout; closing"),
            Quiet::Idle => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(settings.header_read_timeout, conn.as_mut()).await;
            }
        },
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut shutdown) => {
            // Finish in-flight requests, then close (GOAWAY on h2, no keep-alive on h1).
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Requests of one connection, for the idle watchdog.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Requests started so far: a change means the connection was not idle.
    started: AtomicU64,
    /// Signalled by the first request (a stored permit if nobody waits yet).
    first_request: Notify,
}

/// One request being handled; dropping it (even on cancellation) ends it.
struct InFlight(Arc<Activity>);

impl InFlight {
    /// The request and its number on the connection (1-based).
    fn start(activity: Arc<Activity>) -> (Self, u64) {
        let earlier = activity.started.fetch_add(1, Ordering::Relaxed);
        if earlier == 0 {
            activity.first_request.notify_one();
        }
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        (Self(activity), earlier + 1)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Quiet {
    BeforeFirstRequest,
    Idle,
}

/// Resolves when the connection has been quiet too long: no first request within `first`, or
/// later no request started and none in flight for a whole `idle` period (so an idle
/// connection closes between `idle` and twice `idle` after its last request). A response still
/// streaming its body is finished by the graceful shutdown that follows.
async fn watchdog(activity: &Activity, first: Duration, idle: Duration) -> Quiet {
    let first_request = tokio::time::timeout(first, activity.first_request.notified()).await;
    if first_request.is_err() {
        return Quiet::BeforeFirstRequest;
    }
    let mut seen = activity.started.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(idle).await;
        let now = activity.started.load(Ordering::Relaxed);
        if now == seen && activity.in_flight.load(Ordering::Relaxed) == 0 {
            return Quiet::Idle;
        }
        seen = now;
    }
}

/// Resolves when shutdown is signalled (or its sender is gone, which means the same).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
