//! HTTP/3 listeners: a quinn endpoint per `listen.quic` address, hyperium's h3 on each
//! connection, and every request handed to the same [`Handler`] the TCP listeners call, so
//! the request path (route, lookup, fill, respond) is shared, not copied.
//!
//! What differs from TCP is only the framing: the request body is the stream's receiving
//! half ([`ClientBody::H3`]), the response is written as HEADERS and DATA frames. Limits
//! mirror h2's: 256 concurrent request streams, the same header-section size and count, the
//! keep-alive idle timeout as QUIC's idle timeout, the connection limit shared with TCP. A
//! drain sends GOAWAY, lets the streams in flight finish and then closes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::Scheme;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::BodyExt;
use quinn::crypto::rustls::QuicServerConfig;

use super::{Acceptor, ConnSettings, stopped};
use crate::service::{ClientBody, ClientInfo, Handler, ProxyBody, text};

/// As on h2 (`max_concurrent_streams`).
const MAX_STREAMS: u32 = 256;

/// h3's request streams, as quinn carries them.
type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type H3Send = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

#[derive(Debug, thiserror::Error)]
pub enum QuicSetupError {
    #[error("QUIC needs a TLS 1.3 cipher suite: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("listen.idle_timeout is too long for QUIC")]
    IdleTimeout,
    #[error("cannot listen on {0} (UDP): {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// quinn's server configuration: the QUIC certificates (`tls::quic_server_config`) and the
/// transport limits of `[listen]`.
pub(crate) fn server_config(
    tls: Arc<rustls::ServerConfig>,
    settings: &ConnSettings,
) -> Result<quinn::ServerConfig, QuicSetupError> {
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_STREAMS.into());
    let idle = quinn::IdleTimeout::try_from(settings.idle_timeout)
        .map_err(|_| QuicSetupError::IdleTimeout)?;
    transport.max_idle_timeout(Some(idle));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// An endpoint on `socket`, answering with `config` (or refusing every connection without).
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    config: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, std::io::Error> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        config,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accept QUIC connections until shutdown (or this listener's stop). Afterwards the endpoint
/// refuses new connections; those open carry on until they close.
pub(crate) async fn accept_loop<H: Handler>(endpoint: quinn::Endpoint, acceptor: Acceptor<H>) {
    let mut shutdown = acceptor.shutdown.clone();
    let mut accepting = acceptor.accepting.clone();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = stopped(&mut shutdown) => break,
            () = stopped(&mut accepting) => break,
        };
        let Some(incoming) = incoming else { break };
        let metrics = acceptor.metrics.clone();
        let Some(slot) = acceptor.per_client.take(incoming.remote_address().ip()) else {
            tracing::debug!(peer = %incoming.remote_address(), "connection limit of this client address reached; refusing");
            incoming.refuse();
            if let Some(m) = &metrics {
                m.front.connections_refused.inc();
                m.front.client_limit_refusals.inc();
            }
            continue;
        };
        let Ok(permit) = acceptor.connections.clone().try_acquire_owned() else {
            tracing::debug!(peer = %incoming.remote_address(), "connection limit reached; refusing");
            incoming.refuse();
            if let Some(m) = &metrics {
                m.front.connections_refused.inc();
            }
            continue;
        };
        if let Some(m) = &metrics {
            m.front.connections_accepted.inc();
            m.front.connections_open.inc();
        }
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            serve(incoming, &acceptor).await;
            if let Some(m) = &acceptor.metrics {
                m.front.connections_open.dec();
            }
            drop(permit);
            drop(slot);
        });
    }
    endpoint.set_server_config(None);
}

async fn serve<H: Handler>(incoming: quinn::Incoming, acceptor: &Acceptor<H>) {
    let peer = incoming.remote_address();
    let settings = acceptor.settings.load_full();
    let handshake = tokio::time::timeout(settings.header_read_timeout, incoming).await;
    if let Some(m) = &acceptor.metrics {
        m.front.tls_handshakes.inc();
        if !matches!(handshake, Ok(Ok(_))) {
            m.front.tls_handshake_failures.inc();
        }
    }
    let quic = match handshake {
        Ok(Ok(quic)) => quic,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "QUIC handshake failed"),
        Err(_) => return tracing::debug!(%peer, "QUIC handshake timed out"),
    };
    let built = h3::server::builder()
        .max_field_section_size(settings.max_header_bytes as u64)
        .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await;
    let mut conn = match built {
        Ok(conn) => conn,
        Err(e) => return tracing::debug!(%peer, error = %e, "HTTP/3 setup failed"),
    };
    let client = ClientInfo {
        addr: peer,
        scheme: Scheme::HTTPS,
    };
    let mut shutdown = acceptor.shutdown.clone();
    let mut draining = false;
    // Requests in flight on this connection; the idle clock runs only while there are none.
    let in_flight = Arc::new(InFlight::default());
    // PINGs keep a QUIC connection open, not its slot: with no request in flight, a
    // connection that sent none within `header_read_timeout` of its handshake, or none for
    // `idle_timeout` since its last one ended, is closed (as TCP closes an idle keep-alive).
    let mut served_any = false;
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let limit = if served_any {
            settings.idle_timeout
        } else {
            settings.header_read_timeout
        };
        let idle = in_flight.count() == 0;
        let accepted = tokio::select! {
            accepted = conn.accept() => accepted,
            () = tokio::time::sleep_until(idle_since + limit), if idle && !draining => {
                tracing::debug!(%peer, served_any, "HTTP/3 connection idle; closing");
                let no_error = quinn::VarInt::from_u64(h3::error::Code::H3_NO_ERROR.value());
                quic.close(no_error.unwrap_or_default(), b"idle");
                break;
            }
            () = in_flight.idle.notified(), if !idle => {
                idle_since = tokio::time::Instant::now();
                continue;
            }
            () = stopped(&mut shutdown), if !draining => {
                // GOAWAY: no new requests; `accept` ends once those in flight are done.
                draining = true;
                if let Err(e) = conn.shutdown(0).await {
                    tracing::debug!(%peer, error = %e, "HTTP/3 GOAWAY failed");
                    break;
                }
                continue;
            }
        };
        match accepted {
            Ok(Some(resolver)) => {
                served_any = true;
                let handler = acceptor.handler.clone();
                let client = client.clone();
                let settings = settings.clone();
                let working = in_flight.start();
                tokio::spawn(async move {
                    request(resolver, handler, client, &settings).await;
                    drop(working);
                });
            }
            Ok(None) => {
                // Every response is written; closing now could cut what quinn has not sent
                // yet, so the client (told by GOAWAY) closes, or the header timeout passes.
                let _ = tokio::time::timeout(settings.header_read_timeout, quic.closed()).await;
                break;
            }
            Err(e) => {
                if !e.is_h3_no_error() {
                    tracing::debug!(%peer, error = %e, "HTTP/3 connection ended with an error");
                }
                break;
            }
        }
    }
}

/// The requests in flight on one connection, and a wake-up when the last one ends.
#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request in flight; dropped when it ends.
struct Working(Arc<InFlight>);

impl InFlight {
    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    fn start(self: &Arc<Self>) -> Working {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Working(self.clone())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            // A permit is kept if the connection is not waiting yet: it wakes at once.
            self.0.idle.notify_one();
        }
    }
}

/// One request stream: read the head, call the handler, write the response.
async fn request<H: Handler>(
    resolver: Resolver,
    handler: Arc<H>,
    client: ClientInfo,
    settings: &ConnSettings,
) {
    let peer = client.addr;
    let resolved =
        tokio::time::timeout(settings.header_read_timeout, resolver.resolve_request()).await;
    let (head, stream) = match resolved {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "HTTP/3 request refused"),
        Err(_) => return tracing::debug!(%peer, "HTTP/3 request head timed out"),
    };
    if let Some(field) = connection_specific(head.headers()) {
        // RFC 9114 §4.2: a malformed request, a stream error, never a response.
        tracing::debug!(%peer, %field, "HTTP/3 request with a connection-specific field refused");
        let mut stream = stream;
        stream.stop_sending(h3::error::Code::H3_MESSAGE_ERROR);
        stream.stop_stream(h3::error::Code::H3_MESSAGE_ERROR);
        return;
    }
    let (mut send, recv) = stream.split();
    let response = if head.headers().len() > settings.max_headers {
        text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields\n",
        )
    } else {
        let request = head.map(|()| ClientBody::H3(Box::new(recv)));
        handler.call(request, client).await
    };
    if let Err(e) = respond(&mut send, response).await {
        tracing::debug!(%peer, error = %e, "HTTP/3 response not delivered");
    }
}

/// Write `response` on the stream: the head (without the connection-specific fields HTTP/3
/// forbids, RFC 9114 §4.2), the body's data, its trailers, the end of the stream.
async fn respond(
    send: &mut H3Send,
    response: Response<ProxyBody>,
) -> Result<(), h3::error::StreamError> {
    let (mut parts, mut body) = response.into_parts();
    strip_connection_fields(&mut parts.headers);
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => send.send_data(data).await?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        send.send_trailers(trailers).await?;
                        return Ok(());
                    }
                }
            },
            Err(e) => {
                // The body broke mid-way (an origin that died): the client must see a reset,
                // not a short body that looks complete.
                tracing::debug!(error = %e, "response body failed; resetting the HTTP/3 stream");
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return Ok(());
            }
        }
    }
    send.finish().await
}

/// The first field of a request head that HTTP/3 forbids (RFC 9114 §4.2): the
/// connection-specific ones, and `TE` with any value but `trailers`.
fn connection_specific(headers: &HeaderMap) -> Option<&'static str> {
    const FORBIDDEN: [&str; 5] = [
        "connection",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
        "proxy-connection",
    ];
    if let Some(name) = FORBIDDEN.into_iter().find(|n| headers.contains_key(*n)) {
        return Some(name);
    }
    let te_ok = headers
        .get_all(header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    (!te_ok).then_some("te")
}

fn strip_connection_fields(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_connection_specific_fields_are_malformed() {
        let with = |name: &str, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, "*/*".parse().unwrap());
            headers.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            connection_specific(&headers)
        };
        assert_eq!(with("connection", "close"), Some("connection"));
        assert_eq!(
            with("transfer-encoding", "chunked"),
            Some("transfer-encoding")
        );
        assert_eq!(with("keep-alive", "5"), Some("keep-alive"));
        assert_eq!(with("upgrade", "h2c"), Some("upgrade"));
        assert_eq!(with("te", "gzip"), Some("te"));
        assert_eq!(with("te", "trailers"), None);
        assert_eq!(with("x-other", "1"), None);
    }

    #[test]
    fn connection_specific_fields_are_not_sent_over_http3() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "close".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        strip_connection_fields(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
}
