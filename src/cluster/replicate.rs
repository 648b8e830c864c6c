//! Replication is a copy, not a request: the node that stored an entry (a fill from the
//! origin or the shield, a 304 that freshened it, a chunk, a manifest) pushes the stored
//! entry itself to the key's other holders, as the snapshot records it (status, stored
//! headers, body or chunk, variant, the times behind `Age` and freshness, when it was
//! fetched). The holder stores it as it is and answers with a status. A push never becomes
//! a request, so it can never reach an origin, a shield or another holder, and never changes
//! what a client sees or what `Cache-Status` says.
//!
//! Bounded: pushes in flight hold at most `push_memory` bytes, all together; a push that
//! does not fit is skipped and counted (the holder then fills on its first request, as
//! without replicas), never queued. Pushes run in their own tasks: a holder that is down or
//! slow costs the request that stored the entry nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

use super::Cluster;
use super::peer::{Peer, REPLICA_PATH};
use crate::storage::Entry;
use crate::storage::budget::Reservation;
use crate::storage::snapshot;

/// How long a holder may take to store a push (a large chunk crosses a slow link).
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Push `entry`, stored here under `key`, to `holders`.
pub(crate) fn push(cluster: &Arc<Cluster>, holders: Vec<Arc<Peer>>, key: &str, entry: Arc<Entry>) {
    if holders.is_empty() {
        return;
    }
    let metrics = &cluster.metrics.purges;
    // The encoded record is the body plus its head: reserve what it will hold.
    let mut held = Reservation::new(cluster.push_budget.clone());
    if !held.grow(entry.weight()) {
        for _ in &holders {
            metrics.push("skipped");
        }
        return;
    }
    let cluster = cluster.clone();
    let key = key.to_owned();
    tokio::spawn(async move {
        let mut payload = Vec::new();
        snapshot::encode(&key, &entry, &mut payload);
        drop(entry);
        let payload = Bytes::from(payload);
        let sends = holders.iter().map(|peer| {
            cluster.send(
                peer.addr,
                Method::POST,
                REPLICA_PATH,
                None,
                payload.clone(),
                PUSH_TIMEOUT,
            )
        });
        let metrics = &cluster.metrics.purges;
        for (peer, answer) in holders
            .iter()
            .zip(futures_util::future::join_all(sends).await)
        {
            let result = match &answer {
                Ok((StatusCode::OK, _)) => "stored",
                Ok((StatusCode::CONFLICT, _)) => "refused",
                _ => "failed",
            };
            if result != "failed" {
                metrics.push_bytes.inc_by(payload.len() as u64);
            } else {
                tracing::debug!(node = %peer.id.0, ?answer, "replica push failed");
            }
            metrics.push(result);
        }
        drop(held);
    });
}
