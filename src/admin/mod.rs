//! The admin listener, separate from client traffic. Endpoints:
//!
//! | method | path       | auth   | what |
//! |--------|------------|--------|------|
//! | GET    | `/metrics` | none   | Prometheus metrics: OpenMetrics if the scraper accepts it, else text 0.0.4 |
//! | GET    | `/healthz` | none   | 200 while the process runs |
//! | GET    | `/readyz`  | none   | 200 when serving, 503 while draining |
//! | POST   | `/purge`   | bearer | `{"urls": [..], "tags": [..], "soft": false}`: remove (or, soft, mark stale) every variant of each URL and every entry with each tag |
//!
//! Mutations need `Authorization: Bearer <[admin] token>`; without a configured token they are
//! refused, so an admin port exposed by mistake cannot wipe the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::listener::Handler;
use crate::observability::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::body::ProxyBody;
use crate::proxy::request::ClientInfo;
use crate::storage::PurgeMode;

/// Largest purge request body accepted.
const MAX_PURGE_BODY: usize = 1 << 20;

pub struct Admin {
    pub proxy: Arc<Proxy>,
    pub metrics: Arc<Metrics>,
    pub token: Option<String>,
    /// False once the node drains: `/readyz` turns 503 so load balancers stop sending.
    pub ready: Arc<AtomicBool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// Mark stale instead of removing (revalidation and stale serving can still use them).
    #[serde(default)]
    soft: bool,
}

impl Handler for Admin {
    async fn call(
        self: Arc<Self>,
        request: Request<Incoming>,
        _client: ClientInfo,
    ) -> Response<ProxyBody> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => self.metrics_page(&request).await,
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") if self.ready.load(Ordering::Relaxed) => {
                text(StatusCode::OK, "ready\n")
            }
            (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            (&Method::POST, "/purge") => match self.authorize(&request) {
                Ok(()) => self.purge(request).await,
                Err(refusal) => refusal.response(),
            },
            (_, "/metrics" | "/healthz" | "/readyz" | "/purge") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

impl Admin {
    async fn metrics_page(&self, request: &Request<Incoming>) -> Response<ProxyBody> {
        let store = self.proxy.store();
        store.run_pending_tasks().await;
        self.metrics.cache_bytes.set(gauge(store.weighted_size()));
        self.metrics.cache_entries.set(gauge(store.entry_count()));
        let openmetrics = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        let (body, content_type) = if openmetrics {
            (
                self.metrics.encode_openmetrics(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                self.metrics.encode_prometheus(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }

    fn authorize(&self, request: &Request<Incoming>) -> Result<(), Refusal> {
        let Some(token) = self.token.as_deref() else {
            return Err(Refusal::NoToken);
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if constant_time_eq(p.trim().as_bytes(), token.as_bytes()) => Ok(()),
            _ => Err(Refusal::BadToken),
        }
    }

    async fn purge(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let body = match Limited::new(request.into_body(), MAX_PURGE_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "purge body too large or broken\n",
                );
            }
        };
        let purge: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": e.to_string() }),
                );
            }
        };
        if purge.urls.is_empty() && purge.tags.is_empty() {
            let error = "give \"urls\" or \"tags\" (a list each) to purge";
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": error }),
            );
        }
        let mode = if purge.soft {
            PurgeMode::Soft
        } else {
            PurgeMode::Hard
        };
        let mut urls = Vec::with_capacity(purge.urls.len());
        let mut total = 0;
        for url in &purge.urls {
            match self.proxy.purge_url(url, mode).await {
                Ok(n) => {
                    total += n;
                    urls.push(serde_json::json!({ "url": url, "purged": n > 0 }));
                }
                Err(e) => urls.push(serde_json::json!({ "url": url, "error": e.to_string() })),
            }
        }
        let mut tags = Vec::with_capacity(purge.tags.len());
        for tag in &purge.tags {
            let n = self.proxy.purge_tag(tag, mode).await;
            total += n;
            tags.push(serde_json::json!({ "tag": tag, "purged": n }));
        }
        json(
            StatusCode::OK,
            &serde_json::json!({ "purged": total, "soft": purge.soft, "urls": urls, "tags": tags }),
        )
    }
}

/// Why a mutation was refused.
enum Refusal {
    NoToken,
    BadToken,
}

impl Refusal {
    fn response(self) -> Response<ProxyBody> {
        match self {
            Self::NoToken => text(
                StatusCode::FORBIDDEN,
                "mutations are disabled: no [admin] token is configured\n",
            ),
            Self::BadToken => {
                let mut response =
                    text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
        }
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Compare secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
