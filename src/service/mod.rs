//! What every server side of the node shares: the [`Handler`] trait the accept loops call,
//! who the client is ([`ClientInfo`]), the one response body type ([`ProxyBody`]) and small
//! response builders.
//!
//! It sits below `listener`, `proxy` and `admin`, so none of them imports another for this
//! plumbing: the listener knows only handlers, the proxy and the admin API are handlers.

pub(crate) mod body;
mod client_body;

pub(crate) use body::ProxyBody;
pub(crate) use client_body::ClientBody;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::Scheme;
use http::{Request, Response, StatusCode};

/// Something that answers requests: the proxy, or the admin API.
pub(crate) trait Handler: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        request: Request<ClientBody>,
        client: ClientInfo,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}

/// Marks a request whose head carried both `Transfer-Encoding` and `Content-Length`
/// (RFC 9112 §6.1). hyper frames it by Transfer-Encoding and drops Content-Length from the
/// head, so only the listener, which sees the bytes, can tell; the proxy refuses it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AmbiguousFraming;

/// Where a request came from.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    pub scheme: Scheme,
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    with_type(status, ProxyBody::text(body), "text/plain; charset=utf-8")
}

/// A JSON answer (the admin API's, and the cluster's internal endpoints').
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let body = ProxyBody::full(Bytes::from(value.to_string()));
    with_type(status, body, "application/json")
}

fn with_type(
    status: StatusCode,
    body: ProxyBody,
    content_type: &'static str,
) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
