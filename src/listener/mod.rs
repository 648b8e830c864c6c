//! Accept loops for the client-facing listeners (and the admin one): plain TCP or TLS, HTTP/1.1
//! and HTTP/2 on each (h2 by ALPN on TLS, by prior knowledge on cleartext), a connection limit,
//! header-read timeouts against slowloris, and a graceful drain on shutdown.

pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::uri::Scheme;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::ListenConfig;
use crate::proxy::body::ProxyBody;
use crate::proxy::request::ClientInfo;

/// Something that answers requests: the proxy, or the admin API.
pub trait Handler: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: ClientInfo,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}

/// Per-connection protocol settings, from `[listen]`.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl From<&ListenConfig> for ConnSettings {
    fn from(c: &ListenConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
        }
    }
}

/// hyper refuses buffers smaller than this.
const MIN_BUF: usize = 8192;

fn builder(settings: &ConnSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer the header read timeout silently does nothing.
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(MIN_BUF))
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

/// Everything an accept loop needs besides its socket.
pub struct Acceptor<H> {
    pub handler: Arc<H>,
    pub tls: Option<TlsAcceptor>,
    pub settings: Arc<ConnSettings>,
    /// One permit per open connection: the limit, and the drain's way to know when every
    /// connection has closed.
    pub connections: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
}

impl<H> Clone for Acceptor<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            tls: self.tls.clone(),
            settings: self.settings.clone(),
            connections: self.connections.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

pub fn tls_acceptor(config: Arc<ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

/// Accept until shutdown is signalled. Connections are served on their own tasks.
pub async fn accept_loop<H: Handler>(listener: TcpListener, acceptor: Acceptor<H>) {
    let mut shutdown = acceptor.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => return,
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
        let Ok(permit) = acceptor.connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor.tls.clone() {
                None => serve(stream, peer, Scheme::HTTP, &acceptor).await,
                Some(tls) => {
                    let timeout = acceptor.settings.header_read_timeout;
                    match tokio::time::timeout(timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve(stream, peer, Scheme::HTTPS, &acceptor).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve<IO, H>(io: IO, peer: SocketAddr, scheme: Scheme, acceptor: &Acceptor<H>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let client = ClientInfo { addr: peer, scheme };
    let handler = acceptor.handler.clone();
    let served = Arc::new(AtomicBool::new(false));
    let first_request = served.clone();
    let service = service_fn(move |request| {
        first_request.store(true, Ordering::Relaxed);
        let handler = handler.clone();
        let client = client.clone();
        async move { Ok::<_, Infallible>(handler.call(request, client).await) }
    });
    let builder = builder(&acceptor.settings);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut shutdown = acceptor.shutdown.clone();
    // hyper's header timeout starts once it knows the protocol; a client that sends nothing
    // (or half an HTTP/2 preface) would otherwise hold a connection slot forever.
    let silent = async {
        tokio::time::sleep(acceptor.settings.header_read_timeout).await;
        if served.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = silent => tracing::debug!(%peer, "no request before the header timeout; closing"),
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

/// Resolves when shutdown is signalled (or its sender is gone, which means the same).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
