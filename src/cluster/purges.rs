//! The node's purge state: its [`Log`], its hybrid clock, and its **lease**: how long it may
//! still serve what it holds without asking the origin.
//!
//! A purge reaches most nodes as a message; one that was down, stopped or cut off misses it.
//! Such a node cannot tell it missed anything, so it stops trusting its cache instead: it
//! serves a stored object without asking the origin only while its purge log has been
//! compared with another node's (and found complete) within `purge_lease`. Out of touch for
//! longer, every hit is revalidated with the origin (a conditional request: a 304 is cheap)
//! until a comparison brings the log up to date, which applies the purges it lacked.
//!
//! A node that took a purge and could not reach some node waits, before it answers, until
//! that node's lease must have run out ([`Purges::lease`] after the last node confirmed): so
//! once `POST /purge` has answered, a node either applied the purge or no longer serves
//! from its cache without the origin. Nodes with no one to compare with (no peers, regions
//! or shields) hold no lease: they serve as they always did.
//!
//! One per process (it outlives reloads, which may replace the cluster and the proxy).

use crate::locks::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::clock::Clock;
use super::message::unix_ms;
use super::purge_log::{Digest, Inserted, Log, Matcher, PurgeRecord, Verdict};
use crate::config::{DEFAULT_PURGE_LOG_MEMORY, DEFAULT_PURGE_LOG_WINDOW};
use crate::observability::metrics::Metrics;

pub(crate) struct Purges {
    log: Mutex<Log>,
    pub(crate) clock: Clock,
    /// The newest logged purge (milliseconds): a copy fetched after it needs no look at the
    /// log, which is what almost every store is.
    newest_ms: AtomicU64,
    /// Mirror of the log's horizon, read on every hit.
    horizon_ms: AtomicU64,
    /// Monotonic milliseconds ([`mono_ms`]) when the last comparison that found the log
    /// complete was sent; 0: never.
    synced_mono: AtomicU64,
    /// The same moment on the wall clock (saved with the snapshot: where a restarted node
    /// lost touch).
    synced_wall: AtomicU64,
    /// Whether this node has anyone to compare its log with; without, it holds no lease.
    partners: AtomicBool,
    lease_ms: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Milliseconds on a monotonic clock since its first use (never 0).
fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// The log as the snapshot keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Saved {
    pub(crate) horizon_ms: u64,
    /// When the node last found its log complete (wall clock, ms; 0: never).
    pub(crate) synced_ms: u64,
    pub(crate) records: Vec<PurgeRecord>,
}

impl Purges {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        let now = unix_ms(SystemTime::now());
        let window = u64::try_from(DEFAULT_PURGE_LOG_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let purges = Arc::new(Self {
            log: Mutex::new(Log::new(now, window, DEFAULT_PURGE_LOG_MEMORY)),
            clock: Clock::default(),
            newest_ms: AtomicU64::new(0),
            horizon_ms: AtomicU64::new(now),
            synced_mono: AtomicU64::new(0),
            synced_wall: AtomicU64::new(0),
            partners: AtomicBool::new(false),
            lease_ms: AtomicU64::new(5000),
            metrics,
        });
        purges.publish(&lock(&purges.log));
        purges
    }

    /// Apply the configuration's bounds and lease; `partners`: whether the node has peers,
    /// regions or shields to compare its log with.
    pub(crate) fn configure(&self, window: Duration, memory: u64, lease: Duration, partners: bool) {
        let mut log = lock(&self.log);
        log.set_bounds(millis(window), memory);
        log.prune(unix_ms(SystemTime::now()));
        self.lease_ms.store(millis(lease), Ordering::Relaxed);
        self.partners.store(partners, Ordering::Relaxed);
        self.publish(&log);
        drop(log);
        self.observe_lease();
    }

    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.load(Ordering::Relaxed))
    }

    /// A new purge's time on this node's clock.
    pub(crate) fn stamp(&self) -> u64 {
        self.clock.now()
    }

    /// The clock now: at or after every purge this node has taken or heard of.
    pub(crate) fn now(&self) -> u64 {
        self.clock.read()
    }

    /// Log `record`, whose effect here is `matcher`. New (or older than the horizon): the
    /// caller applies it. Known: it was applied before.
    pub(crate) fn insert(&self, record: PurgeRecord, matcher: Matcher) -> Inserted {
        self.clock.observe_ms(record.at_ms());
        let mut log = lock(&self.log);
        let (inserted, dropped) = log.insert(record, matcher, self.clock.now_ms());
        self.metrics.purges.log_dropped.inc_by(dropped as u64);
        self.publish(&log);
        inserted
    }

    /// Drop what the window no longer covers (each probe round).
    pub(crate) fn prune(&self) {
        let mut log = lock(&self.log);
        log.prune(self.clock.now_ms());
        self.publish(&log);
    }

    fn publish(&self, log: &Log) {
        self.newest_ms
            .store(log.newest_ms().unwrap_or(0), Ordering::Relaxed);
        self.horizon_ms.store(log.horizon_ms(), Ordering::Relaxed);
        self.metrics.purges.set_log(log.len(), log.bytes());
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        lock(&self.log).contains(id)
    }

    /// What a copy of `key` fetched at `fetched` (arriving from another node, a snapshot or
    /// a hop's answer) must become.
    pub(crate) fn verdict(&self, key: &str, tags: &[Box<str>], fetched: SystemTime) -> Verdict {
        let fetched_ms = unix_ms(fetched);
        if fetched_ms > self.newest_ms.load(Ordering::Relaxed)
            && fetched_ms >= self.horizon_ms.load(Ordering::Relaxed)
        {
            return Verdict::Keep;
        }
        lock(&self.log).verdict(key, tags, fetched_ms)
    }

    /// [`Self::verdict`] for a copy answering a request asked at `asked` (a reading of
    /// [`Self::now`] when it was sent): a purge taken after the request was asked does not
    /// name the copy answering it (the request came first; the copy is not kept).
    pub(crate) fn verdict_for_request(
        &self,
        key: &str,
        tags: &[Box<str>],
        fetched: SystemTime,
        asked: u64,
    ) -> Verdict {
        lock(&self.log).verdict_until(key, tags, unix_ms(fetched), super::clock::millis(asked))
    }

    /// Whether any purge was logged at or after `fetched` (one atomic load; when not, no
    /// copy fetched then can be named by one).
    pub(crate) fn any_since(&self, fetched: SystemTime) -> bool {
        unix_ms(fetched) <= self.newest_ms.load(Ordering::Relaxed)
    }

    /// Whether a stored object fetched at `fetched` may be served without asking the origin:
    /// the lease holds and the log reaches back to the fetch. Two atomic loads; on every hit.
    pub(crate) fn trusted(&self, fetched: SystemTime) -> bool {
        if !self.partners.load(Ordering::Relaxed) {
            // Every purge this node can be told of comes to it directly.
            return true;
        }
        self.lease_holds() && unix_ms(fetched) >= self.horizon_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn lease_holds(&self) -> bool {
        if !self.partners.load(Ordering::Relaxed) {
            return true;
        }
        let synced = self.synced_mono.load(Ordering::Relaxed);
        synced != 0 && mono_ms().saturating_sub(synced) < self.lease_ms.load(Ordering::Relaxed)
    }

    /// A moment to renew the lease from, taken when a comparison is sent.
    pub(crate) fn sync_started(&self) -> SyncStart {
        SyncStart {
            mono: mono_ms(),
            wall: unix_ms(SystemTime::now()),
        }
    }

    /// A comparison sent at `started` found this log complete with a peer whose log reaches
    /// back to `peer_horizon_ms`: the lease runs from `started`, and the horizon moves.
    pub(crate) fn synced(&self, started: SyncStart, peer_horizon_ms: u64) {
        let was_held = self.lease_holds();
        let mut log = lock(&self.log);
        let lost = self.synced_wall.load(Ordering::Relaxed);
        let lost = (!was_held).then_some(lost);
        log.merged_horizon(peer_horizon_ms, lost);
        self.publish(&log);
        drop(log);
        if self.synced_mono.fetch_max(started.mono, Ordering::Relaxed) < started.mono {
            self.synced_wall.store(started.wall, Ordering::Relaxed);
        }
        self.metrics.purges.lease.set(i64::from(self.lease_holds()));
    }

    /// Count the lease's state for the metrics page.
    pub(crate) fn observe_lease(&self) {
        self.metrics.purges.lease.set(i64::from(self.lease_holds()));
    }

    /// The digest of the logged records since `since_ms` (exactly: below the horizon the log
    /// holds nothing, so another log that reaches further back differs), and the horizon.
    pub(crate) fn digest(&self, since_ms: u64) -> (Digest, u64) {
        let log = lock(&self.log);
        (log.digest_since(since_ms), log.horizon_ms())
    }

    /// Before records fetched from a peer whose log reaches back to `peer_horizon_ms` are
    /// applied: the horizon they will make true (see [`Log::merged_horizon`]), so that those
    /// older than the current one are logged, not only applied.
    pub(crate) fn prepare_merge(&self, peer_horizon_ms: u64) {
        let lost = (!self.lease_holds()).then(|| self.synced_wall.load(Ordering::Relaxed));
        let mut log = lock(&self.log);
        log.merged_horizon(peer_horizon_ms, lost);
        self.publish(&log);
    }

    pub(crate) fn horizon_ms(&self) -> u64 {
        self.horizon_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn ids_since(&self, since_ms: u64) -> Vec<u64> {
        lock(&self.log).ids_since(since_ms)
    }

    /// The records since `since_ms` that `have` lacks, up to about `max_bytes`.
    pub(crate) fn missing(
        &self,
        since_ms: u64,
        have: &std::collections::HashSet<u64>,
        max_bytes: u64,
    ) -> (Vec<Arc<PurgeRecord>>, bool) {
        lock(&self.log).missing(since_ms, have, max_bytes)
    }

    pub(crate) fn saved(&self) -> Saved {
        let log = lock(&self.log);
        Saved {
            horizon_ms: log.horizon_ms(),
            synced_ms: self.synced_wall.load(Ordering::Relaxed),
            records: log.records().iter().map(|r| (**r).clone()).collect(),
        }
    }

    /// Start from a snapshot's log: its horizon and when it was last in touch (the records
    /// come back through [`Purges::insert`], each with its matcher).
    pub(crate) fn restore(&self, horizon_ms: u64, synced_ms: u64) {
        let mut log = lock(&self.log);
        // Complete since the snapshot's horizon, up to when it was written; the gap since is
        // closed by the first comparison (see `synced`).
        log.merged_horizon(horizon_ms, None);
        self.synced_wall.store(synced_ms, Ordering::Relaxed);
        self.publish(&log);
    }
}

/// When a comparison of purge logs was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncStart {
    mono: u64,
    wall: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
