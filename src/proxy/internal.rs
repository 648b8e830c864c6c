//! What a node answers other nodes on the http listener (only when it is in a cluster),
//! under `/_outpost/`, before any site lookup:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET  | `/_outpost/peer` | the probe: name and state; signed, also the purge log's digest (and whether a request for `?key=` is being worked on here) |
//! | POST | `/_outpost/purge` | a purge or invalidation record another node took (`?cascade`: a shield passes it on to its members) |
//! | POST | `/_outpost/purges` | the purge records the asker lacks |
//! | POST | `/_outpost/replica` | store an entry another node pushed here as one of its key's holders |
//!
//! Everything but an unsigned probe must be a signed message ([`crate::cluster::message`]):
//! method, path, query, body and time under the MAC, refused outside five minutes. What a
//! repeat of a valid message can do is nothing new: a purge's identity is remembered, a push
//! carries the time its object was fetched (a purge since refuses it), and probes and log
//! requests change nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::Proxy;
use crate::cluster::Cluster;
use crate::cluster::hop::{HOP_HEADER, Hop};
use crate::cluster::message::{Message, Refused, SIGNATURE, Signed};
use crate::cluster::peer::{CASCADE, PROBE_PATH, PURGE_LOG_PATH, PURGE_PATH, REPLICA_PATH};
use crate::cluster::purge_log::{PurgeRecord, Verdict};
use crate::cluster::sync::{Have, PAGE_BYTES, Page, Summary};
use crate::observability::metrics::PurgeSource;
use crate::service::ClientBody;
use crate::service::{ProxyBody, json};
use crate::storage::snapshot;

pub(crate) const PREFIX: &str = "/_outpost/";

/// Largest purge record or log request accepted (10,000 URLs fit several times over).
const MAX_PURGE_BODY: usize = 8 << 20;
/// How long a message's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shield waits for its members when it passes a purge on.
const CASCADE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most variants a pushed entry's key keeps here (the pusher applied its site's bound).
const PUSHED_MAX_VARIANTS: usize = 1024;

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
    let path = parts.uri.path();
    if parts.method == Method::GET && path == PROBE_PATH && !parts.headers.contains_key(SIGNATURE) {
        // Unsigned: a health check (a load balancer, an operator), answered with no more
        // than the node's name and state.
        return probe(proxy, cluster, &parts, None);
    }
    let limit = if path == REPLICA_PATH {
        // One entry: a whole object or a chunk, with its head.
        usize::try_from(proxy.whole_max.max(proxy.chunk_size))
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20)
    } else {
        MAX_PURGE_BODY
    };
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let message = Message {
        method: &parts.method,
        path,
        query: parts.uri.query(),
        body: &body,
    };
    let signed = match cluster
        .secret
        .verify_message(&parts.headers, message, SystemTime::now())
    {
        Ok(signed) => signed,
        Err(refused) => return refuse(proxy, &refused),
    };
    cluster.purges.clock.observe_ms(signed.at_ms);
    match (&parts.method, path) {
        (&Method::GET, PROBE_PATH) => probe(proxy, cluster, &parts, Some(&signed)),
        (&Method::POST, PURGE_PATH) => purge(proxy, cluster, &parts, body).await,
        (&Method::POST, PURGE_LOG_PATH) => purge_log(cluster, &parts, &body),
        (&Method::POST, REPLICA_PATH) => replica(proxy, &body).await,
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": "not found" }),
        ),
    }
}

/// A message refused: counted by reason, answered 403.
fn refuse(proxy: &Proxy, refused: &Refused) -> Response<ProxyBody> {
    let reason = match refused {
        Refused::Missing => "unsigned",
        Refused::Malformed => "malformed",
        Refused::OutOfWindow(_) => "out_of_window",
        Refused::BadMac => "bad_mac",
    };
    proxy.metrics.purges.refused(reason);
    json(
        StatusCode::FORBIDDEN,
        &serde_json::json!({ "error": refused.to_string() }),
    )
}

fn bad_request(proxy: &Proxy, error: &str) -> Response<ProxyBody> {
    proxy.metrics.purges.refused("invalid");
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": error }),
    )
}

/// The whole body, at most `limit` bytes and [`BODY_TIMEOUT`].
async fn read_body(body: ClientBody, limit: usize) -> Result<Bytes, Response<ProxyBody>> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &serde_json::json!({ "error": "body too large or broken" }),
        )),
        Err(_) => Err(json(
            StatusCode::REQUEST_TIMEOUT,
            &serde_json::json!({ "error": "body too slow" }),
        )),
    }
}

/// The value of `name` in a query (`a=1&b=2`).
fn query_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The probe's answer. Signed by a member: that member is up (or leaving, as it says), and
/// the answer carries the purge log's digest since the asker's horizon and, for `?key=`,
/// whether a request for that key from another node is being worked on here.
fn probe(
    proxy: &Proxy,
    cluster: &Cluster,
    parts: &Parts,
    signed: Option<&Signed>,
) -> Response<ProxyBody> {
    let ready = proxy.ready.load(std::sync::atomic::Ordering::Relaxed);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    cluster.probed();
    let mut about = serde_json::json!({
        "name": cluster.name,
        "advertise": cluster.me.0,
        "draining": !ready,
    });
    let Some(signed) = signed else {
        return json(status, &about);
    };
    let view = cluster.view();
    if let Some(peer) = view
        .peers
        .get(&crate::cluster::ring::NodeId(signed.from.clone()))
    {
        peer.heard_from(query_value(parts, "state") == Some("draining"));
    }
    let number = |name| query_value(parts, name).and_then(|v| v.parse::<u64>().ok());
    if let (Some(since), Some(count), Some(xor)) = (number("since"), number("count"), number("xor"))
    {
        crate::cluster::sync::compare_probe(cluster, since, count, xor);
    }
    // This log since its own horizon: the asker compares what it holds over the same span.
    let horizon = cluster.purges.horizon_ms();
    let (digest, _) = cluster.purges.digest(horizon);
    about["purges"] = serde_json::to_value(Summary {
        since: horizon,
        count: digest.count,
        xor: digest.xor,
        horizon,
    })
    .unwrap_or_default();
    if let Some(key) = query_value(parts, "key").and_then(|k| u64::from_str_radix(k, 16).ok()) {
        about["working"] = cluster.progress.working_on(key).into();
    }
    json(status, &about)
}

/// A purge or invalidation record another node took: applied here once (a known identity is
/// a no-op) and, with `?cascade` (a shield), passed on to this node's members.
async fn purge(
    proxy: &Proxy,
    cluster: &Cluster,
    parts: &Parts,
    body: Bytes,
) -> Response<ProxyBody> {
    let record: PurgeRecord = match serde_json::from_slice(&body) {
        Ok(record) => record,
        Err(e) => return bad_request(proxy, &e.to_string()),
    };
    if let Err(e) = super::purge::check_record(&record) {
        return bad_request(proxy, &e);
    }
    let known = cluster.purges.contains(record.id());
    let mut here = proxy.take_record(record, PurgeSource::Message).await;
    if parts.uri.query() == Some(CASCADE) && !known {
        // From a node this one shields: its whole cluster purges.
        let (members, unconfirmed) =
            crate::cluster::broadcast::to_members(cluster, &body, CASCADE_TIMEOUT).await;
        let mut total = here["purged"].as_u64().unwrap_or(0);
        for answer in &members {
            total += answer["purged"].as_u64().unwrap_or(0);
        }
        here["purged"] = total.into();
        here["members"] = members.into();
        here["unconfirmed"] = unconfirmed.into();
    }
    json(StatusCode::OK, &here)
}

/// The records the asker lacks since `?since=`, a page at a time.
fn purge_log(cluster: &Cluster, parts: &Parts, body: &[u8]) -> Response<ProxyBody> {
    let since = query_value(parts, "since")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let have: Have = match serde_json::from_slice(body) {
        Ok(have) => have,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": e.to_string() }),
            );
        }
    };
    let have: HashSet<u64> = have.have.into_iter().collect();
    let (records, more) = cluster.purges.missing(since, &have, PAGE_BYTES);
    let page = Page {
        records: records.iter().map(|r| (**r).clone()).collect(),
        more,
        horizon: cluster.purges.horizon_ms(),
    };
    json(
        StatusCode::OK,
        &serde_json::to_value(&page).unwrap_or_default(),
    )
}

/// An entry another node stored and pushed here: stored as its replica, unless a purge since
/// it was fetched names it (409).
async fn replica(proxy: &Proxy, body: &[u8]) -> Response<ProxyBody> {
    let metrics = &proxy.metrics.purges;
    let Ok((key, entry)) = snapshot::decode(body) else {
        metrics.received("invalid");
        return bad_request(proxy, "not an entry record");
    };
    let entry = match proxy.purges.verdict(&key, &entry.tags, entry.fetched) {
        Verdict::Purged => {
            metrics.received("purged");
            return json(
                StatusCode::CONFLICT,
                &serde_json::json!({ "stored": false, "why": "purged since it was fetched" }),
            );
        }
        verdict => {
            let entry = entry.into_replica();
            if let Verdict::Stale(at_ms) = verdict {
                entry.mark_stale(SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms));
            }
            Arc::new(entry)
        }
    };
    proxy.store().insert(&key, entry, PUSHED_MAX_VARIANTS).await;
    metrics.received("stored");
    json(StatusCode::OK, &serde_json::json!({ "stored": true }))
}
