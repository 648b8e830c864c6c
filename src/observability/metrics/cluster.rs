//! Cluster: members, requests forwarded to the owner peer (one hop), peer health, hits on
//! replicas, and invalidations peers did not confirm.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{Registrar, latency_histogram, names};

/// Outcome of one request to a peer: the `outcome` label of `outpost_peer_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerOutcome {
    Response,
    /// Refused, reset or closed before a response: the peer is ejected.
    Unreachable,
    Timeout,
}

impl PeerOutcome {
    const ALL: [PeerOutcome; 3] = [Self::Response, Self::Unreachable, Self::Timeout];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Response => "response",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerRequestLabels {
    peer: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// Handles for one peer, resolved when it joins.
#[derive(Clone, Debug)]
pub(crate) struct PeerMetrics {
    requests: [Counter; PeerOutcome::ALL.len()],
    pub(crate) duration: Histogram,
    pub(crate) ejections: Counter,
    pub(crate) up: Gauge,
    /// Invalidations after an unsafe method that the peer did not confirm in time.
    pub(crate) invalidations_failed: Counter,
}

impl PeerMetrics {
    pub(crate) fn request(&self, outcome: PeerOutcome) {
        self.requests[outcome as usize].inc();
    }
}

/// The node-wide cluster handles (public fields of [`super::Metrics`]).
pub(crate) struct Membership {
    pub(crate) cluster_members: Gauge,
    pub(crate) replica_hits: Counter,
}

impl Membership {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            cluster_members: reg.register(
                names::CLUSTER_MEMBERS,
                "Members of the cluster, this node included",
                Gauge::default(),
            ),
            replica_hits: reg.register(
                names::REPLICA_HITS,
                "Hits on replicas of objects another node owns",
                Counter::default(),
            ),
        }
    }
}

/// The per-peer families.
pub(super) struct PeerFamilies {
    requests: Family<PeerRequestLabels, Counter>,
    duration: Family<PeerLabel, Histogram>,
    ejections: Family<PeerLabel, Counter>,
    up: Family<PeerLabel, Gauge>,
    invalidations_failed: Family<PeerLabel, Counter>,
}

impl PeerFamilies {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            requests: reg.register(
                names::PEER_REQUESTS,
                "Requests forwarded to the owner peer by peer and outcome",
                Family::default(),
            ),
            duration: reg.register(
                names::PEER_DURATION,
                "Time from forwarding a request to a peer to its response headers (one hop)",
                Family::new_with_constructor(latency_histogram as fn() -> _),
            ),
            ejections: reg.register(
                names::PEER_EJECTIONS,
                "Times a peer was ejected (refused, reset or failed a probe)",
                Family::default(),
            ),
            up: reg.register(
                names::PEER_UP,
                "1 while a peer is live, 0 while it is ejected",
                Family::default(),
            ),
            invalidations_failed: reg.register(
                names::PEER_INVALIDATIONS_FAILED,
                "Invalidations after unsafe methods a peer did not confirm in time (its stored copy may outlive the change)",
                Family::default(),
            ),
        }
    }

    pub(super) fn peer(&self, peer: &str) -> PeerMetrics {
        let requests = PeerOutcome::ALL.map(|o| {
            self.requests.get_or_create_owned(&PeerRequestLabels {
                peer: peer.to_owned(),
                outcome: o.as_str(),
            })
        });
        let label = PeerLabel {
            peer: peer.to_owned(),
        };
        PeerMetrics {
            requests,
            duration: self.duration.get_or_create_owned(&label),
            ejections: self.ejections.get_or_create_owned(&label),
            up: self.up.get_or_create_owned(&label),
            invalidations_failed: self.invalidations_failed.get_or_create_owned(&label),
        }
    }

    /// Drop a peer's series (see [`super::Metrics::remove_peer`]).
    pub(super) fn remove(&self, peer: &str) {
        for outcome in PeerOutcome::ALL {
            self.requests.remove(&PeerRequestLabels {
                peer: peer.to_owned(),
                outcome: outcome.as_str(),
            });
        }
        let label = PeerLabel {
            peer: peer.to_owned(),
        };
        self.duration.remove(&label);
        self.ejections.remove(&label);
        self.up.remove(&label);
        self.invalidations_failed.remove(&label);
    }
}
