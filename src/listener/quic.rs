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
    loop {
        let accepted = tokio::select! {
            accepted = conn.accept() => accepted,
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
                let handler = acceptor.handler.clone();
                let client = client.clone();
                let settings = settings.clone();
                tokio::spawn(async move { request(resolver, handler, client, &settings).await });
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
