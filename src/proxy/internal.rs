//! What a node answers its peers on the http listener (only when it is in a cluster): probes
//! and purges fanned out by another node. Paths under `/_outpost/`, before any site lookup.

use std::time::{Duration, SystemTime};

use http::header;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::Proxy;
use super::purge::PurgeRequest;
use crate::cluster::Cluster;
use crate::cluster::hop::{HOP_HEADER, Hop};
use crate::cluster::peer::{PROBE_PATH, PURGE_MAC, PURGE_PATH};
use crate::service::{ProxyBody, json};

pub(crate) const PREFIX: &str = "/_outpost/";

/// Largest fanned-out purge body accepted.
const MAX_PURGE_BODY: usize = 1 << 20;

/// The hop of a request, if it carries one that verifies (for this method, host and path).
pub(crate) fn verify_hop(cluster: &Cluster, parts: &Parts) -> Option<Hop> {
    if !parts.headers.contains_key(&HOP_HEADER) {
        return None;
    }
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => parts.headers.get(header::HOST)?.to_str().ok()?,
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = format!("{authority}{path}");
    cluster
        .secret
        .verify(&parts.headers, &parts.method, &target, SystemTime::now())
}

pub(crate) async fn handle(
    proxy: &Proxy,
    cluster: &Cluster,
    parts: Parts,
    body: Incoming,
) -> Response<ProxyBody> {
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, PROBE_PATH) => {
            let ready = proxy.ready.load(std::sync::atomic::Ordering::Relaxed);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let about = serde_json::json!({ "name": cluster.name, "advertise": cluster.me.0 });
            json(status, &about)
        }
        (&Method::POST, PURGE_PATH) => purge(proxy, cluster, &parts, body).await,
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": "not found" }),
        ),
    }
}

/// A purge another member received on its admin API: applied here only (no further fan-out),
/// if the body's MAC verifies with the cluster secret.
async fn purge(
    proxy: &Proxy,
    cluster: &Cluster,
    parts: &Parts,
    body: Incoming,
) -> Response<ProxyBody> {
    let body = match tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(body, MAX_PURGE_BODY).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": "body" }),
            );
        }
    };
    let mac = parts
        .headers
        .get(PURGE_MAC)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !cluster.secret.verify_mac(&body, mac) {
        let error = serde_json::json!({ "error": "bad or missing purge MAC" });
        return json(StatusCode::FORBIDDEN, &error);
    }
    match serde_json::from_slice::<PurgeRequest>(&body) {
        Ok(request) => json(StatusCode::OK, &proxy.apply_purge(&request).await),
        Err(e) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": e.to_string() }),
        ),
    }
}
