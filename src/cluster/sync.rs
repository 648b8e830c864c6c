//! Purge logs compared on every probe, so a node that missed a purge (down, stopped, cut
//! off, its fan-out timed out, a region unreachable) applies it within one probe interval of
//! hearing from any node again.
//!
//! ```text
//!   A ── GET /_outpost/peer?since=<A's horizon>&state=ready   (signed) ──▶ B
//!   A ◀── { ..., "purges": { since, count, xor, horizon } } ─────────────── B
//!   same digest as A's since then: A's lease is renewed (from when the probe left)
//!   otherwise:
//!   A ── POST /_outpost/purges?since=S  { "have": [ids] }      (signed) ──▶ B
//!   A ◀── { "records": [ what A lacks ], "more": false, "horizon" } ─────── B
//!   A applies them (through the proxy), then its lease is renewed
//! ```
//!
//! B learns what A has that it lacks the same way, on its own probe of A.

use std::time::Duration;

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::peer::{PROBE_PATH, PURGE_LOG_PATH, Peer};
use super::purge_log::PurgeRecord;
use super::purges::SyncStart;

/// What a probe's answer says of the answering node's purge log.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// The time the digest counts from: the asker's horizon, or the answerer's if later.
    pub(crate) since: u64,
    pub(crate) count: u64,
    pub(crate) xor: u64,
    /// Since when the answerer's log is complete.
    pub(crate) horizon: u64,
}

/// The body of an exchange: the identities the asker holds since `since`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Have {
    pub(crate) have: Vec<u64>,
}

/// The answer to an exchange: what the asker lacks, oldest first.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    pub(crate) records: Vec<PurgeRecord>,
    /// More records follow: ask again.
    pub(crate) more: bool,
    pub(crate) horizon: u64,
}

/// Most bytes of records in one page.
pub(crate) const PAGE_BYTES: u64 = 4 << 20;
/// Most pages one exchange takes (a log of `purge_log_memory` fits in far fewer).
const MAX_PAGES: usize = 64;
/// How long one page may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The query of a signed probe: this node's horizon and its log's digest since then, and
/// whether it is serving or leaving. The probed node compares that digest with its own too,
/// so one probe can renew both nodes' leases.
pub(crate) fn probe_query(cluster: &Cluster) -> String {
    let state = if cluster.is_ready() {
        "ready"
    } else {
        "draining"
    };
    let (since, digest, _) = cluster.purges.digest(0);
    format!(
        "since={since}&count={}&xor={}&state={state}",
        digest.count, digest.xor
    )
}

/// On a signed probe from another node: if its digest (in `query`) matches this node's log
/// since its horizon, this node's lease is renewed too (from now: the probe left just
/// before).
pub(crate) fn compare_probe(cluster: &Cluster, since: u64, count: u64, xor: u64) {
    let started = cluster.purges.sync_started();
    let (ours_since, ours, _) = cluster.purges.digest(since);
    if ours_since == since && ours.count == count && ours.xor == xor {
        cluster.purges.synced(started, since);
    }
}

/// Probe `peer` (a member, or a node of a remote group) with a signed probe, and compare
/// purge logs with its answer. Its health follows the probe as always.
pub(crate) async fn probe(cluster: &Cluster, peer: &Peer, timeout: Duration) {
    let started = cluster.purges.sync_started();
    let query = probe_query(cluster);
    let headers = cluster.signed_headers(&Method::GET, PROBE_PATH, Some(&query), b"");
    let target = format!("{PROBE_PATH}?{query}");
    let Some(body) = cluster
        .client
        .probe_with(peer, timeout, &target, headers)
        .await
    else {
        return;
    };
    let summary = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::from_value::<Summary>(v["purges"].clone()).ok());
    if let Some(summary) = summary {
        compare(cluster, peer, summary, started).await;
    }
}

/// Compare this node's log with `peer`'s `summary`, fetching what is missing.
async fn compare(cluster: &Cluster, peer: &Peer, summary: Summary, started: SyncStart) {
    let purges = &cluster.purges;
    let metrics = &cluster.metrics.purges;
    let (since, ours, _) = purges.digest(summary.since);
    if since == summary.since && ours.count == summary.count && ours.xor == summary.xor {
        purges.synced(started, summary.horizon);
        metrics.exchange("same");
        return;
    }
    match exchange(cluster, peer, since).await {
        Ok(horizon) => {
            purges.synced(started, horizon);
            metrics.exchange("caught_up");
        }
        Err(why) => {
            metrics.exchange("failed");
            tracing::debug!(peer = %peer.id.0, %why, "purge log exchange failed");
        }
    }
}

/// Fetch and apply the records `peer` holds since `since` that this node lacks; the peer's
/// horizon.
async fn exchange(cluster: &Cluster, peer: &Peer, since: u64) -> Result<u64, String> {
    let query = format!("since={since}");
    for _ in 0..MAX_PAGES {
        let have = Have {
            have: cluster.purges.ids_since(since),
        };
        let body = serde_json::to_vec(&have).map_err(|e| e.to_string())?;
        let (status, answer) = cluster
            .send(
                peer.addr,
                Method::POST,
                PURGE_LOG_PATH,
                Some(&query),
                body.into(),
                EXCHANGE_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
        if status != StatusCode::OK {
            return Err(format!("answered {status}"));
        }
        let page: Page = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
        if !page.records.is_empty() && !cluster.apply(page.records).await {
            return Err("the node is stopping".to_owned());
        }
        if !page.more {
            return Ok(page.horizon);
        }
    }
    Err("more pages than a log holds".to_owned())
}
