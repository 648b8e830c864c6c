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
    let horizon = cluster.purges.horizon_ms();
    let (digest, _) = cluster.purges.digest(horizon);
    format!(
        "since={horizon}&count={}&xor={}&state={state}",
        digest.count, digest.xor
    )
}

/// On a signed probe from a node whose log is complete since `since` with that digest: if
/// this log reaches as far back and holds the same records since then, it is complete too,
/// and this node's lease is renewed (from now: the probe left just before).
pub(crate) fn compare_probe(cluster: &Cluster, since: u64, count: u64, xor: u64) {
    let started = cluster.purges.sync_started();
    let (ours, horizon) = cluster.purges.digest(since);
    if horizon <= since && ours.count == count && ours.xor == xor {
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

/// Compare this node's log with `peer`'s `summary` (its digest since its horizon),
/// fetching what is missing: afterwards this node holds every record the peer holds, so its
/// log is complete as far back as the peer's is (or, after a time out of touch, from where
/// the peer's log begins, if that is later than when it lost touch).
async fn compare(cluster: &Cluster, peer: &Peer, summary: Summary, started: SyncStart) {
    let purges = &cluster.purges;
    let metrics = &cluster.metrics.purges;
    let (ours, _) = purges.digest(summary.since);
    if ours.count == summary.count && ours.xor == summary.xor {
        purges.synced(started, summary.horizon);
        metrics.exchange("same");
        return;
    }
    match exchange(cluster, peer, summary.since).await {
        Ok((records, horizon)) => {
            // Every page is in: the horizon moves first, so records older than the old one
            // are logged; then they are applied, then the lease runs.
            purges.prepare_merge(horizon);
            if !records.is_empty() && !cluster.apply(records).await {
                metrics.exchange("failed");
                return;
            }
            purges.synced(started, horizon);
            metrics.exchange("caught_up");
        }
        Err(why) => {
            metrics.exchange("failed");
            tracing::debug!(peer = %peer.id.0, %why, "purge log exchange failed");
        }
    }
}

/// Most bytes of records one exchange collects (several times what a log may hold).
const MAX_EXCHANGE_BYTES: u64 = MAX_PAGES as u64 * PAGE_BYTES;

/// The records `peer` holds since `since` that this node lacks, every page of them, and the
/// peer's horizon.
async fn exchange(
    cluster: &Cluster,
    peer: &Peer,
    since: u64,
) -> Result<(Vec<PurgeRecord>, u64), String> {
    let query = format!("since={since}");
    let mut have: std::collections::HashSet<u64> =
        cluster.purges.ids_since(since).into_iter().collect();
    let mut records = Vec::new();
    let mut bytes = 0;
    for _ in 0..MAX_PAGES {
        let body = Have {
            have: have.iter().copied().collect(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
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
        for record in page.records {
            bytes += record.weight();
            have.insert(record.id());
            records.push(record);
        }
        if bytes > MAX_EXCHANGE_BYTES {
            return Err("more records than a log holds".to_owned());
        }
        if !page.more {
            return Ok((records, page.horizon));
        }
    }
    Err("more pages than a log holds".to_owned())
}
