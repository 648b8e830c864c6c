//! Node-to-node messages: purges and the purge log, its exchanges and the lease, replica
//! pushes sent and received, and signed messages refused.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Registrar, names};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// How a purge record reached this node: the `source` label of `outpost_purges_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PurgeSource {
    /// `POST /purge` or an unsafe method here.
    Here,
    /// Sent by the node that took it.
    Message,
    /// Found missing when purge logs were compared.
    Exchange,
    /// A record already applied (a repeat or a replay): nothing done.
    Known,
}

impl PurgeSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Here => "here",
            Self::Message => "message",
            Self::Exchange => "exchange",
            Self::Known => "known",
        }
    }
}

/// The node-wide handles (the `purges` field of [`super::Metrics`]).
pub(crate) struct Purges {
    taken: Family<SourceLabel, Counter>,
    log_records: Gauge,
    log_bytes: Gauge,
    pub(crate) log_dropped: Counter,
    /// 1 while this node serves what it holds without asking the origin.
    pub(crate) lease: Gauge,
    exchanges: Family<ResultLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    pushes: Family<ResultLabel, Counter>,
    pub(crate) push_bytes: Counter,
    received: Family<ResultLabel, Counter>,
}

impl Purges {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            taken: reg.register(
                names::PURGES,
                "Purges and invalidations taken, by how they came (here, message, exchange; known: a repeat, nothing done)",
                Family::default(),
            ),
            log_records: reg.register(
                names::PURGE_LOG_RECORDS,
                "Purges in the purge log",
                Gauge::default(),
            ),
            log_bytes: reg.register(
                names::PURGE_LOG_BYTES,
                "Bytes the purge log holds (bounded by purge_log_memory)",
                Gauge::default(),
            ),
            log_dropped: reg.register(
                names::PURGE_LOG_DROPPED,
                "Purges dropped from the log before the end of its window, for purge_log_memory",
                Counter::default(),
            ),
            lease: reg.register(
                names::PURGE_LEASE,
                "1 while this node's purge log was found complete within purge_lease (it serves without asking the origin), else 0",
                Gauge::default(),
            ),
            exchanges: reg.register(
                names::PURGE_EXCHANGES,
                "Comparisons of purge logs with another node, by result (same, caught_up, failed)",
                Family::default(),
            ),
            refused: reg.register(
                names::MESSAGES_REFUSED,
                "Node-to-node messages refused, by reason (unsigned, malformed, out_of_window, bad_mac, invalid)",
                Family::default(),
            ),
            pushes: reg.register(
                names::REPLICA_PUSHES,
                "Stored entries pushed to the key's other holders, by result (stored, refused, failed, skipped: over push_memory)",
                Family::default(),
            ),
            push_bytes: reg.register(
                names::REPLICA_PUSH_BYTES,
                "Bytes of replica pushes sent",
                Counter::default(),
            ),
            received: reg.register(
                names::REPLICAS_RECEIVED,
                "Replica pushes received, by result (stored, purged: fetched before a purge, invalid)",
                Family::default(),
            ),
        }
    }

    pub(crate) fn taken(&self, source: PurgeSource) {
        let source = source.as_str();
        self.taken.get_or_create(&SourceLabel { source }).inc();
    }

    pub(crate) fn set_log(&self, records: usize, bytes: u64) {
        self.log_records
            .set(i64::try_from(records).unwrap_or(i64::MAX));
        self.log_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn exchange(&self, result: &'static str) {
        self.exchanges.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn push(&self, result: &'static str) {
        self.pushes.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn received(&self, result: &'static str) {
        self.received.get_or_create(&ResultLabel { result }).inc();
    }
}
