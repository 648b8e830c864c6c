//! The cluster: nodes of one site sharing their memory as one cache.
//!
//! ```text
//!            client                 client
//!              │                      │
//!        ┌─────▼─────┐          ┌─────▼─────┐           ┌───────────┐
//!        │  node A   │── hop ──▶│  node B   │── miss ──▶│  origin   │
//!        │ (edge)    │◀─────────│ (owner)   │◀──────────│           │
//!        └───────────┘          └───────────┘           └───────────┘
//!   ring(key) = B: A asks B once (Outpost-Hop, MAC'd with the cluster secret);
//!   B serves from its cache or fills from the origin, coalesced; A keeps a
//!   replica only of what it serves often (replicate = "hot").
//! ```
//!
//! - [`ring`]: who owns a key (rendezvous hashing, pure, golden vectors);
//! - [`hop`]: the hop header and its MAC;
//! - [`peer`]: the HTTP client to peers, health probes and ejection;
//! - [`shield`]: the parent tier a site's owned misses are filled from before the origin;
//! - [`crate::sketch`] (shared with the store's admission): decides which non-owned objects are hot;
//! - [`discovery`]: members from DNS (A/AAAA or SRV), re-resolved on the records' TTL.
//!
//! The member list and ring are one immutable [`View`] behind an `ArcSwap`: rebuilt off the
//! request path when membership changes (DNS, reload), read without a lock by every request.
//! Peer health is an atomic flag per peer, so ejecting a dead peer needs no rebuild: its keys
//! go to the next live node of their preference order at once.

pub(crate) mod discovery;
pub mod hop;
pub(crate) mod peer;
pub(crate) mod ring;
pub(crate) mod shield;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::config::{ClusterConfig, Replicate};
use crate::observability::metrics::Metrics;
use crate::sketch::Sketch;
use hop::Secret;
use peer::{ExchangeError, PURGE_MAC, Peer, PeerClient};
use ring::{NodeId, Ring};

/// Fetches of a non-owned object (within the sketch's aging period) before the node keeps its
/// own replica (`replicate = "hot"`); well above the estimate a never-seen key can reach from
/// collisions (3-7 in the worst case).
const HOT_THRESHOLD: u32 = 8;
/// The shortest wait for a probe's answer. A node busy with a burst answers its probe after
/// the requests queued before it; a short `probe_interval` (fast detection of a node that
/// refuses connections, which needs no wait) must not turn that into ejections. A hung peer is
/// out after three such waits.
const PROBE_TIMEOUT_MIN: std::time::Duration = std::time::Duration::from_secs(1);
/// The first wait between probes of peers never yet seen alive; doubled each round while
/// some remain unseen, up to `probe_interval`.
const FAST_PROBE: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a holder may take to fetch an object written through to it from this node.
const WRITE_THROUGH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Distinct objects the hot sketch tracks well.
const SKETCH_CAPACITY: usize = 1 << 16;

/// Where a request goes.
pub(crate) enum Route {
    /// This node owns the key (or no live peer does).
    Local,
    /// Ask this peer, once.
    Peer(Arc<Peer>),
}

/// The members as this node sees them now.
pub(crate) struct View {
    pub(crate) ring: Ring,
    /// Every member but this node.
    pub(crate) peers: HashMap<NodeId, Arc<Peer>>,
    pub(crate) changed: SystemTime,
    /// The ring before the last change, whose owners still hold their keys for a while.
    previous: Option<Ring>,
}

pub(crate) struct Cluster {
    /// This node as peers know it (its advertised address).
    pub(crate) me: NodeId,
    pub(crate) name: String,
    pub(crate) secret: Secret,
    pub(crate) replicate: Replicate,
    pub(crate) probe_interval: std::time::Duration,
    /// See [`PeerClient::forward`].
    pub(crate) peer_timeout: std::time::Duration,
    /// See [`Cluster::handoff_peer`].
    handoff: std::time::Duration,
    /// How long a draining node keeps serving after it says it is leaving.
    pub(crate) leave_notice: std::time::Duration,
    /// Nodes holding each object (`replicas`), see [`Cluster::holds`].
    pub(crate) replicas: usize,
    view: ArcSwap<View>,
    sketch: Sketch,
    pub(crate) client: PeerClient,
    metrics: Arc<Metrics>,
    /// Set after the first probe round.
    probed_once: std::sync::atomic::AtomicBool,
}

impl Cluster {
    pub(crate) fn new(config: &ClusterConfig, name: &str, metrics: Arc<Metrics>) -> Arc<Self> {
        let me = NodeId(config.advertise.to_string());
        let cluster = Arc::new(Self {
            view: ArcSwap::from_pointee(View {
                ring: Ring::new([me.clone()]),
                peers: HashMap::new(),
                changed: SystemTime::now(),
                previous: None,
            }),
            me,
            name: name.to_owned(),
            secret: Secret::new(&config.secret),
            replicate: config.replicate,
            probe_interval: config.probe_interval,
            peer_timeout: config.peer_timeout,
            handoff: config.handoff,
            leave_notice: config.leave_notice,
            replicas: config.replicas,
            sketch: Sketch::new(SKETCH_CAPACITY),
            client: PeerClient::new(),
            metrics,
            probed_once: std::sync::atomic::AtomicBool::new(false),
        });
        if let crate::config::Members::Static(addrs) = &config.members {
            cluster.set_members(addrs);
        }
        cluster
    }

    pub(crate) fn view(&self) -> arc_swap::Guard<Arc<View>> {
        self.view.load()
    }

    /// The view, held across awaits.
    pub(crate) fn view_full(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Replace the member list (this node is always a member). Peers that stay keep their
    /// state; new ones start alive, so traffic reaches them at once and a failure ejects them.
    pub(crate) fn set_members(&self, addrs: &[SocketAddr]) {
        let old = self.view.load();
        let mut ids: Vec<NodeId> = addrs.iter().map(|a| NodeId(a.to_string())).collect();
        ids.push(self.me.clone());
        let ring = Ring::new(ids);
        if ring.nodes() == old.ring.nodes() {
            return;
        }
        let peers = ring
            .nodes()
            .iter()
            .filter(|id| **id != self.me)
            .filter_map(|id| {
                let peer = match old.peers.get(id) {
                    Some(peer) => peer.clone(),
                    None => Arc::new(Peer::new(id.clone(), id.0.parse().ok()?, &self.metrics)),
                };
                Some((id.clone(), peer))
            })
            .collect();
        tracing::info!(members = ring.len(), "cluster membership changed");
        for gone in old.peers.keys().filter(|id| !ring.nodes().contains(id)) {
            self.metrics.remove_peer(&gone.0);
        }
        // The first list (at start) moves nothing cached: there is nothing to hand off.
        let previous = (old.ring.len() > 1).then(|| old.ring.clone());
        self.view.store(Arc::new(View {
            ring,
            peers,
            changed: SystemTime::now(),
            previous,
        }));
        self.metrics
            .membership
            .cluster_members
            .set(self.view.load().ring.len() as i64);
    }

    /// Whether any peer is live (one that could route to this node).
    pub(crate) fn any_peer_alive(&self) -> bool {
        self.view.load().peers.values().any(|p| p.is_alive())
    }

    /// The owner of `key` among live members.
    pub(crate) fn route(&self, key_hash: u64) -> Route {
        let view = self.view.load();
        let owner = view.ring.owner_where(key_hash, |id| {
            *id == self.me || view.peers.get(id).is_some_and(|p| p.is_alive())
        });
        match owner.and_then(|id| view.peers.get(id)) {
            Some(peer) => Route::Peer(peer.clone()),
            None => Route::Local,
        }
    }

    /// The live node that owned `key_hash` before the last membership change, if that was
    /// less than `handoff` ago and it was another node: a miss on its new owner asks it
    /// first, so a join (or a leave) does not send the moved keys to the origin. A node that
    /// has just started (joined, or restarted after a crash) had no ring of its own before:
    /// its keys were owned by whoever owns them without it.
    ///
    /// A planned leave is a hand-off too, for as long as the leaving node still serves: the
    /// key's first node that is not dead, when it is a draining peer, holds it.
    pub(crate) fn handoff_peer(&self, key_hash: u64) -> Option<Arc<Peer>> {
        let view = self.view.load();
        let leaving = view.ring.owner_where(key_hash, |id| {
            *id == self.me
                || view
                    .peers
                    .get(id)
                    .is_some_and(|p| p.is_alive() || p.is_leaving())
        });
        if let Some(peer) = leaving.and_then(|id| view.peers.get(id))
            && peer.is_leaving()
        {
            return Some(peer.clone());
        }
        if view.changed.elapsed().unwrap_or_default() >= self.handoff {
            return None;
        }
        let alive = |id: &NodeId| view.peers.get(id).is_some_and(|p| p.is_alive());
        let owner = match &view.previous {
            Some(previous) => previous.owner_where(key_hash, |id| *id == self.me || alive(id)),
            None => view
                .ring
                .owner_where(key_hash, |id| *id != self.me && alive(id)),
        }?;
        view.peers.get(owner).cloned()
    }

    /// A handoff hop found the key on its previous owner (`hit`) or not.
    pub(crate) fn count_handoff(&self, hit: bool) {
        self.metrics.membership.handoff(hit);
    }

    /// A request that would have taken a second peer or shield hop went to the origin.
    pub(crate) fn count_hop_limit(&self) {
        self.metrics.membership.hop_limit.inc();
    }

    /// Whether this node is one of the key's holders (the first `replicas` nodes of its
    /// preference order, live or not) without being its first: it keeps a copy of what it
    /// fetches from the owner, to serve it when the owner goes.
    pub(crate) fn holds(&self, key_hash: u64) -> bool {
        self.replicas > 1
            && self
                .view
                .load()
                .ring
                .preference(key_hash, self.replicas)
                .contains(&&self.me)
    }

    /// The key's other live holders, which the node that stored it writes it through to.
    pub(crate) fn other_holders(&self, key_hash: u64) -> Vec<Arc<Peer>> {
        if self.replicas < 2 {
            return Vec::new();
        }
        let view = self.view.load();
        view.ring
            .preference(key_hash, self.replicas)
            .into_iter()
            .filter_map(|id| view.peers.get(id))
            .filter(|p| p.is_alive())
            .cloned()
            .collect()
    }

    /// Write an object this node stored through to `holders`: each gets a HEAD for it, with a
    /// hop header that says no hop was taken (so it routes it as a client request would, to
    /// this node, and keeps the copy as a holder) and carries the client's scheme (the key
    /// depends on it). A pull on the holder's side, started by this push: the body crosses
    /// once, holder-bound, and the answer is a head. Runs in the background; a holder that
    /// does not answer in time is counted and left to fill on its first request.
    pub(crate) fn write_through(
        self: &Arc<Self>,
        holders: Vec<Arc<Peer>>,
        https: bool,
        target: String,
        path_and_query: String,
        headers: HeaderMap,
    ) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let hop = cluster.secret.sign_hops(
                &cluster.me.0,
                https,
                hop::Hops::default(),
                &Method::HEAD,
                &target,
                SystemTime::now(),
            );
            let mut headers = headers;
            headers.insert(hop::HOP_HEADER, hop);
            let writes = holders.iter().map(|peer| {
                cluster.client.exchange(
                    peer.addr,
                    Method::HEAD,
                    &path_and_query,
                    headers.clone(),
                    Bytes::new(),
                    WRITE_THROUGH_TIMEOUT,
                )
            });
            for (peer, result) in holders
                .iter()
                .zip(futures_util::future::join_all(writes).await)
            {
                let ok = matches!(result, Ok((status, _)) if status.is_success());
                if !ok {
                    tracing::debug!(node = %peer.id.0, ?result, "write-through to a holder failed");
                }
                cluster.metrics.membership.replica_write(ok);
            }
        });
    }

    /// Whether this node should keep its own copy of a non-owned object it is fetching now.
    pub(crate) fn keep_replica(&self, key_hash: u64) -> bool {
        if self.holds(key_hash) {
            return true;
        }
        match self.replicate {
            Replicate::None => false,
            Replicate::All => true,
            Replicate::Hot => self.sketch.record(key_hash) >= HOT_THRESHOLD,
        }
    }

    /// POST `body` to `path` on every other member at once, its MAC with the cluster secret
    /// in [`PURGE_MAC`], and wait up to `timeout` for each answer (purge and invalidation
    /// fan-out). Each answer comes back with the peer that gave it.
    pub(crate) async fn fan_out(
        &self,
        path: &str,
        body: &Bytes,
        timeout: std::time::Duration,
    ) -> Vec<(Arc<Peer>, Result<(StatusCode, Bytes), ExchangeError>)> {
        let view = self.view_full();
        self.post_signed(view.peers.values().cloned(), path, body, timeout)
            .await
    }

    /// POST `body` to `path` on each of `nodes` at once (members, or shield nodes), signed
    /// as [`Self::fan_out`] does.
    pub(crate) async fn post_signed(
        &self,
        nodes: impl Iterator<Item = Arc<Peer>>,
        path: &str,
        body: &Bytes,
        timeout: std::time::Duration,
    ) -> Vec<(Arc<Peer>, Result<(StatusCode, Bytes), ExchangeError>)> {
        let mut headers = HeaderMap::new();
        if let Ok(mac) = HeaderValue::from_str(&self.secret.mac_bytes(body)) {
            headers.insert(PURGE_MAC, mac);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let requests = nodes.map(|peer| {
            let headers = headers.clone();
            async move {
                let answer = self
                    .client
                    .exchange(
                        peer.addr,
                        Method::POST,
                        path,
                        headers,
                        body.clone(),
                        timeout,
                    )
                    .await;
                (peer, answer)
            }
        });
        futures_util::future::join_all(requests).await
    }

    /// How long a probe waits: the probe interval, but never less than [`PROBE_TIMEOUT_MIN`].
    pub(crate) fn probe_timeout(&self) -> std::time::Duration {
        self.probe_interval.max(PROBE_TIMEOUT_MIN)
    }

    /// Probe every peer each `probe_interval`: a dead peer that answers comes back, a live one
    /// that does not is ejected. Peers never yet seen alive (a rolling start, where the next
    /// node is not listening yet) are probed fast, from [`FAST_PROBE`] doubling up to the
    /// interval, so that a node refused before it listened is not left ejected for a whole
    /// interval while its keys go to the origin from elsewhere. Runs until the node stops.
    pub(crate) async fn probe_forever(self: Arc<Self>) {
        let mut fast = FAST_PROBE;
        loop {
            let started = tokio::time::Instant::now();
            let view = self.view.load_full();
            let probes = view.peers.values().map(|peer| {
                // An unseen peer is not yet a busy one: the shortest wait.
                let timeout = if peer.seen() {
                    self.probe_timeout()
                } else {
                    PROBE_TIMEOUT_MIN
                };
                self.client.probe(peer, timeout)
            });
            futures_util::future::join_all(probes).await;
            self.probed_once
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let wait = if view.peers.values().any(|peer| !peer.seen()) {
                let wait = fast.min(self.probe_interval);
                fast = (fast * 2).min(self.probe_interval);
                wait
            } else {
                fast = FAST_PROBE;
                self.probe_interval
            };
            tokio::time::sleep_until(started + wait).await;
        }
    }

    /// Whether every peer has been probed once since the node started: until then `/readyz`
    /// says 503, so that a load balancer (or a StatefulSet's rollout) waits for this node to
    /// know which of its peers are up.
    pub(crate) fn probed_once(&self) -> bool {
        self.probed_once.load(std::sync::atomic::Ordering::Relaxed)
    }
}
