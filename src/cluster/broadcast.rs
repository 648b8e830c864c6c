//! A purge or an invalidation taken here, sent to every node that may hold what it names:
//! this cluster's members, the shield tier (each shield node passes it to its own members:
//! `?cascade`, under the signature) and every node of every other region
//! (`[cluster.regions]`). Each answers for itself; the record's identity makes a repeat a
//! no-op, so a node reached twice (a region's node that is also a shield) applies it once.
//!
//! A node that does not answer in time may still be serving: [`broadcast`] then waits,
//! before it returns, until that node's purge lease must have run out (the lease after the
//! last node that did confirm), so that once the purge has been answered no node serves the
//! purged version from its cache without asking the origin; it applies the purge when its
//! log is next compared with anyone's. A node that refuses the connection is not running,
//! and a node that starts compares its log before it serves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::peer::{CASCADE, ExchangeError, PURGE_PATH, Peer};
use super::purge_log::PurgeRecord;
use super::{Cluster, Group};

/// Where a node that a record was sent to belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A member of this cluster.
    Member,
    Remote(Group),
}

/// One node's answer to a record.
pub(crate) struct Delivery {
    pub(crate) reach: Reach,
    pub(crate) peer: Arc<Peer>,
    /// Its JSON answer, or why there is none.
    pub(crate) answer: Result<serde_json::Value, String>,
    /// No answer in time: it may be alive and did not apply the record.
    pub(crate) timed_out: bool,
}

/// Send `record` to every other node at once and wait up to `timeout` for each answer; with
/// `wait_lease`, then wait out the lease of any node that may be alive and did not confirm.
pub(crate) async fn broadcast(
    cluster: &Cluster,
    record: &PurgeRecord,
    timeout: Duration,
    wait_lease: bool,
) -> Vec<Delivery> {
    // A record of strings always serializes.
    let body = Bytes::from(serde_json::to_vec(record).unwrap_or_default());
    let view = cluster.view_full();
    let members = view
        .peers
        .values()
        .map(|peer| (Reach::Member, peer.clone()));
    let remotes = cluster
        .remotes
        .iter()
        .map(|remote| (Reach::Remote(remote.group.clone()), remote.peer.clone()));
    let sends = members.chain(remotes).map(|(reach, peer)| {
        let body = body.clone();
        async move {
            let query = (reach == Reach::Remote(Group::Shield)).then_some(CASCADE);
            let answer = cluster
                .send(peer.addr, Method::POST, PURGE_PATH, query, body, timeout)
                .await;
            (reach, peer, answer, Instant::now())
        }
    });
    let mut last_confirmed = None;
    let mut unconfirmed_alive = false;
    let mut deliveries = Vec::new();
    for (reach, peer, answer, at) in futures_util::future::join_all(sends).await {
        let timed_out = matches!(answer, Err(ExchangeError::TimedOut));
        let answer = match answer {
            Ok((StatusCode::OK, bytes)) => {
                serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
            }
            Ok((status, bytes)) => Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            )),
            Err(e) => Err(e.to_string()),
        };
        match &answer {
            Ok(value) => {
                last_confirmed = Some(at);
                // A shield that passed it on and heard nothing from some of its members.
                if value["unconfirmed"].as_u64().unwrap_or(0) > 0 {
                    unconfirmed_alive = true;
                }
            }
            Err(_) if timed_out => unconfirmed_alive = true,
            Err(_) => {}
        }
        deliveries.push(Delivery {
            reach,
            peer,
            answer,
            timed_out,
        });
    }
    if wait_lease && unconfirmed_alive {
        let from = last_confirmed.unwrap_or_else(Instant::now);
        let until = from + cluster.purges.lease();
        tracing::warn!(
            lease_ms = cluster.purges.lease().as_millis() as u64,
            "a node did not confirm a purge in time: waiting out its purge lease"
        );
        tokio::time::sleep_until(until.into()).await;
    }
    deliveries
}

/// Send `record` to this cluster's members only (a shield passing on a cascaded purge) and
/// wait up to `timeout` for each; how many answered 200, and how many did not in time.
pub(crate) async fn to_members(
    cluster: &Cluster,
    record_body: &Bytes,
    timeout: Duration,
) -> (Vec<serde_json::Value>, u64) {
    let view = cluster.view_full();
    let sends = view.peers.values().map(|peer| {
        cluster.send(
            peer.addr,
            Method::POST,
            PURGE_PATH,
            None,
            record_body.clone(),
            timeout,
        )
    });
    let mut answers = Vec::new();
    let mut unconfirmed = 0;
    for answer in futures_util::future::join_all(sends).await {
        match answer {
            Ok((StatusCode::OK, bytes)) => {
                answers.push(serde_json::from_slice(&bytes).unwrap_or_default());
            }
            Err(ExchangeError::TimedOut) => unconfirmed += 1,
            _ => {}
        }
    }
    (answers, unconfirmed)
}
