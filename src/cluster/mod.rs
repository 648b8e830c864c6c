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
//! - [`discovery`]: members from DNS (A/AAAA or SRV), re-resolved on the records' TTL;
//! - [`message`]: the one signed format of what a node asks of another for itself;
//! - [`purge_log`], [`purges`], [`clock`]: every purge by identity and time, and the lease
//!   that says whether this node may serve what it holds without the origin;
//! - [`sync`]: purge logs compared on every probe, the missing records fetched;
//! - [`broadcast`]: a purge or invalidation to every node of every region and the shields;
//! - [`replicate`]: the stored entry pushed to the key's other holders;
//! - [`progress`]: which of its peers' requests this node is working on (a waiting peer
//!   asks, to tell a slow origin from a wedged node).
//!
//! The member list and ring are one immutable [`View`] behind an `ArcSwap`: rebuilt off the
//! request path when membership changes (DNS, reload), read without a lock by every request.
//! Peer health is an atomic flag per peer, so ejecting a dead peer needs no rebuild: its keys
//! go to the next live node of their preference order at once.

pub(crate) mod broadcast;
pub(crate) mod clock;
pub(crate) mod discovery;
pub mod hop;
pub mod message;
pub(crate) mod peer;
pub(crate) mod progress;
pub(crate) mod purge_log;
pub(crate) mod purges;
pub(crate) mod replicate;
pub(crate) mod ring;
pub(crate) mod shield;
pub(crate) mod sync;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::sync::{mpsc, oneshot};

use crate::config::{ClusterConfig, Replicate};
use crate::observability::metrics::{Metrics, PeerMetrics};
use crate::sketch::Sketch;
use crate::storage::budget::FillBudget;
use hop::Secret;
use message::{Message, SIGNATURE};
use peer::{ExchangeError, Peer, PeerClient};
use purge_log::PurgeRecord;
use purges::Purges;
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
    /// When another node last probed this one (monotonic ms, 0 never): a member, or an edge
    /// whose shield this node is.
    probed_at_ms: std::sync::atomic::AtomicU64,
    /// The purge log and lease (the node's, shared with the proxy and outliving reloads).
    pub(crate) purges: Arc<Purges>,
    /// Nodes outside this cluster that purges go to and purge logs are compared with: the
    /// shield tier's and every other region's.
    pub(crate) remotes: Vec<Remote>,
    /// Records a comparison found missing go here to be applied (by the runtime, through
    /// the proxy serving now).
    records: mpsc::Sender<Apply>,
    /// False while this node drains: its probes say so, and peers route its keys elsewhere.
    ready: Arc<std::sync::atomic::AtomicBool>,
    /// What replica pushes in flight may hold, all together.
    pub(crate) push_budget: Arc<FillBudget>,
    /// Requests from other nodes this node is working on.
    pub(crate) progress: Arc<progress::Progress>,
    /// Which remote node of each group the next probe round compares logs with.
    remote_turn: std::sync::atomic::AtomicUsize,
    /// See [`NodeParts::loaded`].
    loaded: tokio::sync::watch::Receiver<bool>,
}

/// Purge records for the runtime to apply; `done` when they were.
pub(crate) struct Apply {
    pub(crate) records: Vec<PurgeRecord>,
    pub(crate) done: oneshot::Sender<()>,
}

/// What a cluster needs from the node it runs in.
pub(crate) struct NodeParts {
    pub(crate) purges: Arc<Purges>,
    pub(crate) records: mpsc::Sender<Apply>,
    pub(crate) ready: Arc<std::sync::atomic::AtomicBool>,
    /// Every site's shield nodes.
    pub(crate) shields: Vec<SocketAddr>,
    /// The default for `push_memory`: an eighth of the cache's memory.
    pub(crate) cache_memory: u64,
    /// True once the node has loaded what it kept across a restart (its purge log first):
    /// probes compare that log, never the empty one a starting node has before.
    pub(crate) loaded: tokio::sync::watch::Receiver<bool>,
}

/// A node outside this cluster: purges go to it, and logs are compared with it.
pub(crate) struct Remote {
    pub(crate) group: Group,
    pub(crate) peer: Arc<Peer>,
}

/// Where a remote node belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Group {
    /// The shield tier of this node's sites.
    Shield,
    /// Another region, by name.
    Region(String),
}

impl Cluster {
    pub(crate) fn new(
        config: &ClusterConfig,
        name: &str,
        metrics: Arc<Metrics>,
        node: NodeParts,
    ) -> Arc<Self> {
        let me = NodeId(config.advertise.to_string());
        let remote = |group: Group, addr: &SocketAddr| Remote {
            group,
            peer: Arc::new(Peer::with_metrics(
                NodeId(addr.to_string()),
                *addr,
                PeerMetrics::detached(),
            )),
        };
        let mut remotes: Vec<Remote> = Vec::new();
        for addr in &node.shields {
            if !remotes.iter().any(|r| r.peer.addr == *addr) {
                remotes.push(remote(Group::Shield, addr));
            }
        }
        for (region, addrs) in &config.regions {
            for addr in addrs {
                remotes.push(remote(Group::Region(region.clone()), addr));
            }
        }
        let partners = !remotes.is_empty()
            || !matches!(&config.members, crate::config::Members::Static(m) if m.len() < 2);
        node.purges.configure(
            config.purge_log_window,
            config.purge_log_memory,
            config.purge_lease,
            partners,
        );
        let push_memory = config.push_memory.unwrap_or(node.cache_memory / 8);
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
            probed_at_ms: std::sync::atomic::AtomicU64::new(0),
            purges: node.purges,
            remotes,
            records: node.records,
            ready: node.ready,
            push_budget: FillBudget::new(push_memory),
            progress: Arc::default(),
            remote_turn: std::sync::atomic::AtomicUsize::new(0),
            loaded: node.loaded,
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

    /// Another node probed this one.
    pub(crate) fn probed(&self) {
        self.probed_at_ms.store(
            peer::monotonic_ms().max(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether other nodes watch this one: a live member, or a probe within the last three
    /// probe intervals (10 s at least) from a node of another tier. They are told it leaves
    /// before it stops, so they move its keys without calling it a failure.
    pub(crate) fn watched(&self) -> bool {
        let at = self.probed_at_ms.load(std::sync::atomic::Ordering::Relaxed);
        let window = (self.probe_interval * 3).max(std::time::Duration::from_secs(10));
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.any_peer_alive() || (at != 0 && peer::monotonic_ms().saturating_sub(at) <= window_ms)
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

    /// The owner of `key_hash` among live members other than `skipped` (nodes a request has
    /// already tried: ejected or not, they did not answer it).
    pub(crate) fn route_skipping(&self, key_hash: u64, skipped: &[NodeId]) -> Route {
        let view = self.view.load();
        let owner = view.ring.owner_where(key_hash, |id| {
            *id == self.me
                || (!skipped.contains(id) && view.peers.get(id).is_some_and(|p| p.is_alive()))
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

    /// Send a signed message (see [`message`]) to `addr` and wait up to `timeout` for the
    /// whole answer.
    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Bytes,
        timeout: std::time::Duration,
    ) -> Result<(StatusCode, Bytes), ExchangeError> {
        let headers = self.signed_headers(&method, path, query, &body);
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        self.client
            .exchange(addr, method, &target, headers, body, timeout)
            .await
    }

    /// The headers of a signed message from this node.
    pub(crate) fn signed_headers(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> HeaderMap {
        let message = Message {
            method,
            path,
            query,
            body,
        };
        let at = self.purges.clock.now_ms();
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE, self.secret.sign_message(&self.me.0, message, at));
        if !body.is_empty() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        headers
    }

    /// Records a comparison found missing: applied (by the proxy serving now) before this
    /// returns, or dropped if the node is stopping.
    pub(crate) async fn apply(&self, records: Vec<PurgeRecord>) -> bool {
        let (done, applied) = oneshot::channel();
        if self.records.send(Apply { records, done }).await.is_err() {
            return false;
        }
        applied.await.is_ok()
    }

    /// Whether this node is serving (not draining).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long a probe waits: the probe interval, but never less than [`PROBE_TIMEOUT_MIN`].
    pub(crate) fn probe_timeout(&self) -> std::time::Duration {
        self.probe_interval.max(PROBE_TIMEOUT_MIN)
    }

    /// Probe every peer each `probe_interval`: a dead peer that answers comes back, a live one
    /// that does not is ejected. Peers never yet seen alive (a rolling start, where the next
    /// node is not listening yet) are probed fast, from [`FAST_PROBE`] doubling up to the
    /// interval, so that a node refused before it listened is not left ejected for a whole
    /// interval while its keys go to the origin from elsewhere. Every probe is signed: a peer
    /// that hears from this node takes it as alive (so a node that starts last is routed to
    /// by the others as soon as it is ready), and its answer carries its purge log's digest,
    /// compared here ([`sync`]); one node of each other region and of the shield tier is
    /// compared with too. Runs until the node stops.
    pub(crate) async fn probe_forever(self: Arc<Self>) {
        let mut loaded = self.loaded.clone();
        if loaded.wait_for(|done| *done).await.is_err() {
            return;
        }
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
                sync::probe(&self, peer, timeout)
            });
            let this = &self;
            let remotes = self
                .remotes_this_round()
                .into_iter()
                .map(|peer| async move { sync::probe(this, &peer, this.probe_timeout()).await });
            futures_util::future::join(
                futures_util::future::join_all(probes),
                futures_util::future::join_all(remotes),
            )
            .await;
            self.purges.prune();
            self.purges.observe_lease();
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

    /// One node of each remote group to compare purge logs with this round: in turn, the
    /// live ones first.
    fn remotes_this_round(&self) -> Vec<Arc<Peer>> {
        let turn = self
            .remote_turn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut groups: Vec<&Group> = Vec::new();
        for remote in &self.remotes {
            if !groups.contains(&&remote.group) {
                groups.push(&remote.group);
            }
        }
        groups
            .into_iter()
            .filter_map(|group| {
                let members: Vec<&Arc<Peer>> = self
                    .remotes
                    .iter()
                    .filter(|r| r.group == *group)
                    .map(|r| &r.peer)
                    .collect();
                let live: Vec<&Arc<Peer>> =
                    members.iter().copied().filter(|p| p.is_alive()).collect();
                let pool = if live.is_empty() { &members } else { &live };
                pool.get(turn % pool.len().max(1)).map(|p| (*p).clone())
            })
            .collect()
    }

    /// Whether every peer has been probed once since the node started: until then `/readyz`
    /// says 503, so that a load balancer (or a StatefulSet's rollout) waits for this node to
    /// know which of its peers are up.
    pub(crate) fn probed_once(&self) -> bool {
        self.probed_once.load(std::sync::atomic::Ordering::Relaxed)
    }
}
