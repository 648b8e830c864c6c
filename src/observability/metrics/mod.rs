//! Every metric Outpost exports, named in one place ([`names`]), with handles resolved up
//! front.
//!
//! The request path never looks a label set up: per-site handles are created when the site is
//! built ([`SiteMetrics`]) and cloned into it, so counting is one atomic add.
//!
//! By area: `front` (client connections, responses, TLS, reloads), `cache` (cache results,
//! store, evictions, fills, coalescing, purges), `origin` (per-site origin requests,
//! per-server health, connections and DNS), `cluster` (peers, hops, replicas). Each registers
//! its metrics through `Registrar`; `exposition` turns them into text.

mod cache;
mod cluster;
mod exposition;
mod front;
mod messages;
pub(crate) mod names;
mod origin;

pub(crate) use cache::CacheResult;
pub(crate) use cluster::{PeerMetrics, PeerOutcome};
pub(crate) use exposition::openmetrics_to_prometheus;
pub(crate) use messages::PurgeSource;
pub(crate) use origin::{Discard, OriginOutcome, OriginServerMetrics};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

/// The one way a metric is registered: every area hands its metrics to the prefixed registry
/// through here and keeps the handle it gets back.
struct Registrar<'a>(&'a mut Registry);

impl Registrar<'_> {
    /// Register `metric` as `name` and hand back the handle to count with.
    fn register<M: Metric + Clone>(
        &mut self,
        name: &'static str,
        help: &'static str,
        metric: M,
    ) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s, doubling.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

/// Handles for one site, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct SiteMetrics {
    requests: [Counter; CacheResult::ALL.len()],
    origin: [Counter; OriginOutcome::ALL.len()],
    pub(crate) origin_duration: Histogram,
    pub(crate) origin_bytes: Counter,
    pub(crate) origin_panic: Gauge,
    pub(crate) origin_panic_requests: Counter,
    discarded: [Counter; origin::Discard::ALL.len()],
    responses: front::SiteResponses,
}

impl SiteMetrics {
    /// One response sent: its status class, the time to its head, and its announced length.
    pub(crate) fn response(&self, status: http::StatusCode, seconds: f64, bytes: Option<u64>) {
        self.responses.response(status, seconds, bytes);
    }

    pub(crate) fn request(&self, result: CacheResult) {
        self.requests[result as usize].inc();
    }

    pub(crate) fn origin(&self, outcome: OriginOutcome) {
        self.origin[outcome as usize].inc();
    }

    /// A fill that said `stored` stored nothing, and why.
    pub(crate) fn discarded(&self, why: Discard) {
        self.discarded[why as usize].inc();
    }
}

pub struct Metrics {
    registry: Registry,
    /// Connections, TLS handshakes, reloads, the access log.
    pub(crate) front: front::FrontDoor,
    responses: front::ResponseFamilies,
    /// The store's size, fills, coalescing and purges.
    pub(crate) store: cache::Store,
    cache: cache::CacheFamilies,
    // Origins.
    site_origins: origin::SiteOriginFamilies,
    origin_servers: origin::ServerFamilies,
    /// Members and replica hits.
    pub(crate) membership: cluster::Membership,
    peers: cluster::PeerFamilies,
    shields: cluster::ShieldFamilies,
    /// Purges, the purge log and replica pushes.
    pub(crate) purges: messages::Purges,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let prefixed = registry.sub_registry_with_prefix(names::PREFIX);
        let mut reg = Registrar(prefixed);
        let front = front::FrontDoor::register(&mut reg);
        let responses = front::ResponseFamilies::register(&mut reg);
        let store = cache::Store::register(&mut reg);
        let cache = cache::CacheFamilies::register(&mut reg);
        let site_origins = origin::SiteOriginFamilies::register(&mut reg);
        let origin_servers = origin::ServerFamilies::register(&mut reg);
        let membership = cluster::Membership::register(&mut reg);
        let peers = cluster::PeerFamilies::register(&mut reg);
        let shields = cluster::ShieldFamilies::register(&mut reg);
        let purges = messages::Purges::register(&mut reg);
        // An `Info` is set once and has no handle to keep.
        let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        reg.0.register(names::BUILD, "Build information", info);
        Self {
            registry,
            front,
            responses,
            store,
            cache,
            site_origins,
            origin_servers,
            membership,
            peers,
            shields,
            purges,
        }
    }

    pub(crate) fn peer(&self, peer: &str) -> PeerMetrics {
        self.peers.peer(peer)
    }

    /// Drop a peer's series when it leaves the cluster (pods come and go with new addresses;
    /// a departed peer must not stay "down" forever).
    pub(crate) fn remove_peer(&self, peer: &str) {
        self.peers.remove(peer);
    }

    /// A shield node of a site.
    pub(crate) fn shield(&self, site: &str, shield: &str) -> PeerMetrics {
        self.shields.shield(site, shield)
    }

    /// Fills of a site that went to the origin because no shield node could be reached.
    pub(crate) fn shield_fallbacks(&self, site: &str) -> Counter {
        self.shields.fallbacks(site)
    }

    pub(crate) fn origin_server(&self, site: &str, server: &str) -> OriginServerMetrics {
        self.origin_servers.server(site, server)
    }

    pub(crate) fn site(&self, site: &str) -> SiteMetrics {
        let origin = self.site_origins.site(site);
        SiteMetrics {
            requests: self.cache.site(site),
            origin: origin.outcomes,
            origin_duration: origin.duration,
            origin_bytes: origin.bytes,
            origin_panic: origin.panic,
            origin_panic_requests: origin.panic_requests,
            discarded: origin.discarded,
            responses: self.responses.site(site),
        }
    }

    pub(crate) fn eviction(&self, reason: &'static str) -> Counter {
        self.cache.eviction(reason)
    }

    /// OpenMetrics text exposition (what Prometheus asks for).
    pub(crate) fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Classic Prometheus text format 0.0.4 (for tools that predate OpenMetrics).
    pub(crate) fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode_openmetrics())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
