//! What a node answers its peers on the http listener (only when it is in a cluster): probes,
//! and purges and invalidations fanned out by another node. Paths under `/_outpost/`, before
//! any site lookup.

use std::time::{Duration, SystemTime};

use crate::service::ClientBody;
use http::header;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::Proxy;
use super::purge::{Invalidation, PurgeRequest};
use crate::cluster::Cluster;
use crate::cluster::hop::{HOP_HEADER, Hop};
use crate::cluster::peer::{CASCADE, INVALIDATE_PATH, PROBE_PATH, PURGE_MAC, PURGE_PATH};
use crate::service::{ProxyBody, json};

pub(crate) const PREFIX: &str = "/_outpost/";

/// Largest fanned-out purge or invalidation body accepted.
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
    body: ClientBody,
) -> Response<ProxyBody> {
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, PROBE_PATH) => {
            let ready = proxy.ready.load(std::sync::atomic::Ordering::Relaxed);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let about = serde_json::json!({
                "name": cluster.name,
                "advertise": cluster.me.0,
                "draining": !ready,
            });
            json(status, &about)
        }
        (&Method::POST, PURGE_PATH) => match signed_body(cluster, &parts, body).await {
            Ok(body) => match serde_json::from_slice::<PurgeRequest>(&body) {
                Ok(request) if cascades(&parts) => {
                    // From a node this one shields: its whole cluster purges.
                    let (mut here, members) = tokio::join!(
                        proxy.apply_purge(&request),
                        cluster.fan_out(PURGE_PATH, &body, CASCADE_TIMEOUT)
                    );
                    let mut total = here["purged"].as_u64().unwrap_or(0);
                    for (_, answer) in members {
                        if let Ok((StatusCode::OK, bytes)) = answer {
                            let value: serde_json::Value =
                                serde_json::from_slice(&bytes).unwrap_or_default();
                            total += value["purged"].as_u64().unwrap_or(0);
                        }
                    }
                    here["purged"] = total.into();
                    json(StatusCode::OK, &here)
                }
                Ok(request) => json(StatusCode::OK, &proxy.apply_purge(&request).await),
                Err(e) => bad_request(&e.to_string()),
            },
            Err(refused) => refused,
        },
        (&Method::POST, INVALIDATE_PATH) => match signed_body(cluster, &parts, body).await {
            Ok(body) => match serde_json::from_slice::<Invalidation>(&body) {
                Ok(invalidation) => {
                    let n = proxy.apply_invalidation(&invalidation).await;
                    if cascades(&parts) {
                        // From a node this one shields: its whole cluster drops the keys.
                        cluster
                            .fan_out(INVALIDATE_PATH, &body, CASCADE_TIMEOUT)
                            .await;
                    }
                    json(StatusCode::OK, &serde_json::json!({ "invalidated": n }))
                }
                Err(e) => bad_request(&e.to_string()),
            },
            Err(refused) => refused,
        },
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": "not found" }),
        ),
    }
}

/// The body of a purge or invalidation another member fanned out (applied here only, never
/// fanned out further), if its MAC verifies with the cluster secret.
async fn signed_body(
    cluster: &Cluster,
    parts: &Parts,
    body: ClientBody,
) -> Result<bytes::Bytes, Response<ProxyBody>> {
    let body = match tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(body, MAX_PURGE_BODY).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => return Err(bad_request("body")),
    };
    let mac = parts
        .headers
        .get(PURGE_MAC)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !cluster.secret.verify_mac(&body, mac) {
        let error = serde_json::json!({ "error": "bad or missing purge MAC" });
        return Err(json(StatusCode::FORBIDDEN, &error));
    }
    Ok(body)
}

/// How long a shield node waits for its members when it passes a purge or an invalidation
/// on.
const CASCADE_TIMEOUT: Duration = Duration::from_secs(2);

/// `?cascade`: sent by a node this one is a shield for, so it goes to this node's members
/// too (a plain fanned-out request stays on the node it reaches).
fn cascades(parts: &Parts) -> bool {
    parts.uri.query() == Some(CASCADE)
}

fn bad_request(error: &str) -> Response<ProxyBody> {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": error }),
    )
}
