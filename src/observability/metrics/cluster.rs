//! Cluster: members, requests forwarded to the owner peer (one hop), peer health, hits on
//! replicas, and invalidations peers did not confirm.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{Registrar, SiteLabel, latency_histogram, names};

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
    /// Handles counted nowhere: a node of another region, asked for its purge log only.
    pub(crate) fn detached() -> Self {
        Self {
            requests: PeerOutcome::ALL.map(|_| Counter::default()),
            duration: latency_histogram(),
            ejections: Counter::default(),
            up: Gauge::default(),
            invalidations_failed: Counter::default(),
        }
    }

    pub(crate) fn request(&self, outcome: PeerOutcome) {
        self.requests[outcome as usize].inc();
    }
}

/// The node-wide cluster handles (public fields of [`super::Metrics`]).
pub(crate) struct Membership {
    pub(crate) cluster_members: Gauge,
    pub(crate) replica_hits: Counter,
    /// Requests that would have taken a second peer or shield hop, sent to the origin.
    pub(crate) hop_limit: Counter,
    node_info: Family<NodeInfoLabels, Gauge>,
    handoffs: Family<HandoffLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandoffLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeInfoLabels {
    name: String,
    region: String,
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
            hop_limit: reg.register(
                names::HOP_LIMIT,
                "Requests that would have taken a second peer hop or shield hop, sent to the origin instead (at most one of each)",
                Counter::default(),
            ),
            node_info: reg.register(
                names::NODE_INFO,
                "This node: its name and region (empty without [node] region)",
                Family::default(),
            ),
            handoffs: reg.register(
                names::HANDOFFS,
                "Misses after a membership change asked of the key's previous owner, by result (hit: it still held the key)",
                Family::default(),
            ),
        }
    }

    pub(crate) fn handoff(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.handoffs.get_or_create(&HandoffLabel { result }).inc();
    }

    /// Say which node this is (set once the configuration is known; a reload may rename it).
    pub(crate) fn set_node(&self, name: &str, region: Option<&str>) {
        self.node_info.clear();
        let labels = NodeInfoLabels {
            name: name.to_owned(),
            region: region.unwrap_or_default().to_owned(),
        };
        self.node_info.get_or_create(&labels).set(1);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShieldRequestLabels {
    site: String,
    shield: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShieldLabel {
    site: String,
    shield: String,
}

/// The per-shield families: the same measures as a peer's, per site and shield node.
pub(super) struct ShieldFamilies {
    requests: Family<ShieldRequestLabels, Counter>,
    duration: Family<ShieldLabel, Histogram>,
    ejections: Family<ShieldLabel, Counter>,
    up: Family<ShieldLabel, Gauge>,
    fallbacks: Family<SiteLabel, Counter>,
}

impl ShieldFamilies {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            requests: reg.register(
                names::SHIELD_REQUESTS,
                "Fills asked of a shield node (the parent tier) by site, shield and outcome",
                Family::default(),
            ),
            duration: reg.register(
                names::SHIELD_DURATION,
                "Time from asking a shield node to its response headers (one shield hop)",
                Family::new_with_constructor(latency_histogram as fn() -> _),
            ),
            ejections: reg.register(
                names::SHIELD_EJECTIONS,
                "Times a shield node was ejected (refused, reset or failed a probe)",
                Family::default(),
            ),
            up: reg.register(
                names::SHIELD_UP,
                "1 while a shield node is live, 0 while it is ejected",
                Family::default(),
            ),
            fallbacks: reg.register(
                names::SHIELD_FALLBACKS,
                "Fills that went to the origin because no shield node could be reached",
                Family::default(),
            ),
        }
    }

    /// One shield node of a site, as a peer's handles.
    pub(super) fn shield(&self, site: &str, shield: &str) -> PeerMetrics {
        let label = ShieldLabel {
            site: site.to_owned(),
            shield: shield.to_owned(),
        };
        PeerMetrics {
            requests: PeerOutcome::ALL.map(|o| {
                self.requests.get_or_create_owned(&ShieldRequestLabels {
                    site: site.to_owned(),
                    shield: shield.to_owned(),
                    outcome: o.as_str(),
                })
            }),
            duration: self.duration.get_or_create_owned(&label),
            ejections: self.ejections.get_or_create_owned(&label),
            up: self.up.get_or_create_owned(&label),
            // Unsafe-method invalidations are not sent to shields.
            invalidations_failed: Counter::default(),
        }
    }

    pub(super) fn fallbacks(&self, site: &str) -> Counter {
        self.fallbacks.get_or_create_owned(&SiteLabel {
            site: site.to_owned(),
        })
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
