//! Every metric Outpost exports, named in one place, with handles resolved up front.
//!
//! The request path never looks a label set up: per-site handles are created when the site is
//! built ([`SiteMetrics`]) and cloned into it, so counting is one atomic add.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Metric names (without the `outpost_` prefix; counters get `_total` from the encoder).
pub mod names {
    pub const PREFIX: &str = "outpost";
    pub const REQUESTS: &str = "requests";
    pub const ORIGIN_REQUESTS: &str = "origin_requests";
    pub const ORIGIN_DURATION: &str = "origin_response_duration_seconds";
    pub const CACHE_BYTES: &str = "cache_bytes";
    pub const CACHE_CAPACITY: &str = "cache_capacity_bytes";
    pub const CACHE_ENTRIES: &str = "cache_entries";
    pub const CACHE_EVICTIONS: &str = "cache_evictions";
    pub const COALESCED: &str = "coalesced_requests";
    pub const FILLS_IN_FLIGHT: &str = "fills_in_flight";
    pub const PURGED: &str = "purged_objects";
    pub const BUILD: &str = "build";
    pub const PEER_REQUESTS: &str = "peer_requests";
    pub const PEER_DURATION: &str = "peer_response_duration_seconds";
    pub const PEER_EJECTIONS: &str = "peer_ejections";
    pub const PEER_UP: &str = "peer_up";
    pub const CLUSTER_MEMBERS: &str = "cluster_members";
    pub const REPLICA_HITS: &str = "replica_hits";
    pub const RESPONSES: &str = "responses";
    pub const REQUEST_DURATION: &str = "request_duration_seconds";
    pub const RESPONSE_BYTES: &str = "response_bytes";
    pub const ORIGIN_BYTES: &str = "origin_bytes";
    pub const CONNECTIONS_OPEN: &str = "connections_open";
    pub const CONNECTIONS_ACCEPTED: &str = "connections_accepted";
    pub const CONNECTIONS_REFUSED: &str = "connections_refused";
    pub const TLS_HANDSHAKES: &str = "tls_handshakes";
    pub const TLS_HANDSHAKE_FAILURES: &str = "tls_handshake_failures";
    pub const CONFIG_RELOADS: &str = "config_reloads";
    pub const CONFIG_RELOAD_FAILURES: &str = "config_reload_failures";
    pub const ACCESS_LOG_DROPPED: &str = "access_log_dropped";
    pub const ORIGIN_SERVER_UP: &str = "origin_server_up";
    pub const ORIGIN_EJECTIONS: &str = "origin_ejections";
    pub const ORIGIN_SERVER_REQUESTS: &str = "origin_server_requests";
    pub const ORIGIN_SERVER_ERRORS: &str = "origin_server_errors";
    pub const ORIGIN_SERVER_DURATION: &str = "origin_server_response_duration_seconds";
    pub const ORIGIN_SERVER_CONNECTIONS: &str = "origin_server_connections";
    pub const ORIGIN_SERVER_QUEUED: &str = "origin_server_queued_requests";
    pub const ORIGIN_DNS_REFRESHES: &str = "origin_dns_refreshes";
    pub const ORIGIN_DNS_FAILURES: &str = "origin_dns_failures";
    pub const ORIGIN_SERVER_ADDRESSES: &str = "origin_server_addresses";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    site: String,
    server: String,
}

/// Handles for one origin server.
#[derive(Clone, Debug)]
pub struct OriginServerMetrics {
    pub up: Gauge,
    pub ejections: Counter,
    /// Requests sent (probes excluded), whatever came of them.
    pub requests: Counter,
    errors: [Counter; OriginError::ALL.len()],
    /// Time to the response head of answered requests.
    pub duration: Histogram,
    pub open: Gauge,
    pub idle: Gauge,
    pub queued: Gauge,
    pub addresses: Gauge,
    pub dns_refreshes: Counter,
    pub dns_failures: Counter,
}

impl OriginServerMetrics {
    pub fn error(&self, kind: OriginError) {
        self.errors[kind as usize].inc();
    }
}

/// Why a request to one origin server failed: the `kind` label of
/// `outpost_origin_server_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginError {
    /// No TCP connection (refused, unreachable, connect timeout, no address from DNS).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No response head within `first_byte_timeout`.
    Timeout,
    /// The connection was reset or closed before a response head.
    Reset,
    /// A response that is not HTTP.
    Protocol,
    /// No free connection: the queue was full or the wait too long.
    Overload,
}

impl OriginError {
    pub const ALL: [OriginError; 6] = [
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::Reset,
        Self::Protocol,
        Self::Overload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::Overload => "overload",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerErrorLabels {
    site: String,
    server: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerStateLabels {
    site: String,
    server: String,
    state: &'static str,
}

/// The per-origin-server families.
struct OriginServerFamilies {
    up: Family<ServerLabels, Gauge>,
    ejections: Family<ServerLabels, Counter>,
    requests: Family<ServerLabels, Counter>,
    errors: Family<ServerErrorLabels, Counter>,
    duration: Family<ServerLabels, Histogram>,
    connections: Family<ServerStateLabels, Gauge>,
    queued: Family<ServerLabels, Gauge>,
    addresses: Family<ServerLabels, Gauge>,
    dns_refreshes: Family<ServerLabels, Counter>,
    dns_failures: Family<ServerLabels, Counter>,
}

impl OriginServerFamilies {
    fn register(registry: &mut Registry) -> Self {
        fn add<M: prometheus_client::registry::Metric + Clone>(
            registry: &mut Registry,
            name: &str,
            help: &str,
            metric: M,
        ) -> M {
            registry.register(name, help, metric.clone());
            metric
        }
        Self {
            up: add(
                registry,
                names::ORIGIN_SERVER_UP,
                "1 while an origin server is in rotation, 0 while failures keep it out",
                Family::default(),
            ),
            ejections: add(
                registry,
                names::ORIGIN_EJECTIONS,
                "Times an origin server was taken out of rotation after consecutive failures",
                Family::default(),
            ),
            requests: add(
                registry,
                names::ORIGIN_SERVER_REQUESTS,
                "Requests sent to an origin server (health probes excluded)",
                Family::default(),
            ),
            errors: add(
                registry,
                names::ORIGIN_SERVER_ERRORS,
                "Requests to an origin server that failed, by kind (connect, tls, timeout, reset, protocol, overload)",
                Family::default(),
            ),
            duration: add(
                registry,
                names::ORIGIN_SERVER_DURATION,
                "Time from sending a request to an origin server to its response headers",
                Family::new_with_constructor(latency_histogram as fn() -> _),
            ),
            connections: add(
                registry,
                names::ORIGIN_SERVER_CONNECTIONS,
                "Connections to an origin server: open, and idle among them",
                Family::default(),
            ),
            queued: add(
                registry,
                names::ORIGIN_SERVER_QUEUED,
                "Requests waiting for a free connection to an origin server (max_connections reached)",
                Family::default(),
            ),
            addresses: add(
                registry,
                names::ORIGIN_SERVER_ADDRESSES,
                "Addresses an origin server's name resolves to (1 for an IP literal)",
                Family::default(),
            ),
            dns_refreshes: add(
                registry,
                names::ORIGIN_DNS_REFRESHES,
                "Successful DNS resolutions of an origin server's name",
                Family::default(),
            ),
            dns_failures: add(
                registry,
                names::ORIGIN_DNS_FAILURES,
                "Failed DNS resolutions of an origin server's name (the last good addresses stay in use)",
                Family::default(),
            ),
        }
    }
}

/// Status classes: the `class` label of `outpost_responses_total`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    site: String,
    class: &'static str,
}

/// Outcome of one request to a peer: the `outcome` label of `outpost_peer_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerOutcome {
    Response,
    /// Refused, reset or closed before a response: the peer is ejected.
    Unreachable,
    Timeout,
}

impl PeerOutcome {
    const ALL: [PeerOutcome; 3] = [Self::Response, Self::Unreachable, Self::Timeout];

    pub fn as_str(self) -> &'static str {
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
pub struct PeerMetrics {
    requests: [Counter; PeerOutcome::ALL.len()],
    pub duration: Histogram,
    pub ejections: Counter,
    pub up: Gauge,
}

impl PeerMetrics {
    pub fn request(&self, outcome: PeerOutcome) {
        self.requests[outcome as usize].inc();
    }
}

/// The cache result of one client request: the `cache` label of `outpost_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
    Revalidated,
    Pass,
    Error,
    /// Served by the owner node of the key, through one hop.
    Peer,
}

impl CacheResult {
    const ALL: [CacheResult; 7] = [
        Self::Hit,
        Self::Miss,
        Self::Stale,
        Self::Revalidated,
        Self::Pass,
        Self::Error,
        Self::Peer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Revalidated => "revalidated",
            Self::Pass => "pass",
            Self::Error => "error",
            Self::Peer => "peer",
        }
    }
}

/// Outcome of one request to an origin: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginOutcome {
    Response,
    Connect,
    Timeout,
    Protocol,
}

impl OriginOutcome {
    const ALL: [OriginOutcome; 4] = [Self::Response, Self::Connect, Self::Timeout, Self::Protocol];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Response => "response",
            Self::Connect => "connect_error",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: String,
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    site: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Handles for one site, resolved once.
#[derive(Clone, Debug)]
pub struct SiteMetrics {
    requests: [Counter; CacheResult::ALL.len()],
    origin: [Counter; OriginOutcome::ALL.len()],
    pub origin_duration: Histogram,
    responses: [Counter; CLASSES.len()],
    duration: Histogram,
    response_bytes: Counter,
    pub origin_bytes: Counter,
}

impl SiteMetrics {
    /// One response sent: its status class, the time to its head, and its announced length.
    pub fn response(&self, status: http::StatusCode, seconds: f64, bytes: Option<u64>) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].inc();
        self.duration.observe(seconds);
        if let Some(bytes) = bytes {
            self.response_bytes.inc_by(bytes);
        }
    }

    pub fn request(&self, result: CacheResult) {
        self.requests[result as usize].inc();
    }

    pub fn origin(&self, outcome: OriginOutcome) {
        self.origin[outcome as usize].inc();
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    origin_requests: Family<OriginLabels, Counter>,
    origin_duration: Family<SiteLabel, Histogram>,
    evictions: Family<ReasonLabel, Counter>,
    pub cache_bytes: Gauge,
    pub cache_capacity: Gauge,
    pub cache_entries: Gauge,
    pub coalesced: Counter,
    pub fills_in_flight: Gauge,
    pub purged: Counter,
    peer_requests: Family<PeerRequestLabels, Counter>,
    peer_duration: Family<PeerLabel, Histogram>,
    peer_ejections: Family<PeerLabel, Counter>,
    peer_up: Family<PeerLabel, Gauge>,
    pub cluster_members: Gauge,
    pub replica_hits: Counter,
    responses: Family<ClassLabels, Counter>,
    request_duration: Family<SiteLabel, Histogram>,
    response_bytes: Family<SiteLabel, Counter>,
    origin_bytes: Family<SiteLabel, Counter>,
    pub connections_open: Gauge,
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    pub tls_handshakes: Counter,
    pub tls_handshake_failures: Counter,
    pub config_reloads: Counter,
    pub config_reload_failures: Counter,
    pub access_log_dropped: Counter,
    origin_servers: OriginServerFamilies,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s, doubling.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix(names::PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            names::REQUESTS,
            "Client requests by site and cache result",
            requests.clone(),
        );
        let origin_requests = Family::<OriginLabels, Counter>::default();
        registry.register(
            names::ORIGIN_REQUESTS,
            "Requests sent to origins by site and outcome",
            origin_requests.clone(),
        );
        let origin_duration =
            Family::<SiteLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            names::ORIGIN_DURATION,
            "Time from sending a request to an origin to its response headers",
            origin_duration.clone(),
        );
        let evictions = Family::<ReasonLabel, Counter>::default();
        registry.register(
            names::CACHE_EVICTIONS,
            "Objects removed from the cache by reason (size, expired, purged, replaced)",
            evictions.clone(),
        );
        let peer_requests = Family::<PeerRequestLabels, Counter>::default();
        registry.register(
            names::PEER_REQUESTS,
            "Requests forwarded to the owner peer by peer and outcome",
            peer_requests.clone(),
        );
        let peer_duration =
            Family::<PeerLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            names::PEER_DURATION,
            "Time from forwarding a request to a peer to its response headers (one hop)",
            peer_duration.clone(),
        );
        let peer_ejections = Family::<PeerLabel, Counter>::default();
        registry.register(
            names::PEER_EJECTIONS,
            "Times a peer was ejected (refused, reset or failed a probe)",
            peer_ejections.clone(),
        );
        let peer_up = Family::<PeerLabel, Gauge>::default();
        registry.register(
            names::PEER_UP,
            "1 while a peer is live, 0 while it is ejected",
            peer_up.clone(),
        );
        let responses = Family::<ClassLabels, Counter>::default();
        registry.register(
            names::RESPONSES,
            "Responses sent to clients by site and status class",
            responses.clone(),
        );
        let request_duration =
            Family::<SiteLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            names::REQUEST_DURATION,
            "Time from a client request to its response headers",
            request_duration.clone(),
        );
        let response_bytes = Family::<SiteLabel, Counter>::default();
        registry.register(
            names::RESPONSE_BYTES,
            "Body bytes announced to clients (Content-Length of responses that have one)",
            response_bytes.clone(),
        );
        let origin_bytes = Family::<SiteLabel, Counter>::default();
        registry.register(
            names::ORIGIN_BYTES,
            "Body bytes received from origins (and owner peers) by fills",
            origin_bytes.clone(),
        );
        let origin_servers = OriginServerFamilies::register(registry);
        let metrics = Self {
            origin_servers,
            responses,
            request_duration,
            response_bytes,
            origin_bytes,
            connections_open: gauge(registry, names::CONNECTIONS_OPEN, "Client connections open"),
            connections_accepted: counter(
                registry,
                names::CONNECTIONS_ACCEPTED,
                "Client connections accepted",
            ),
            connections_refused: counter(
                registry,
                names::CONNECTIONS_REFUSED,
                "Client connections closed at once: listen.max_connections reached",
            ),
            tls_handshakes: counter(registry, names::TLS_HANDSHAKES, "TLS handshakes attempted"),
            tls_handshake_failures: counter(
                registry,
                names::TLS_HANDSHAKE_FAILURES,
                "TLS handshakes that failed or timed out",
            ),
            config_reloads: counter(
                registry,
                names::CONFIG_RELOADS,
                "Configuration reloads applied (SIGHUP or POST /reload)",
            ),
            access_log_dropped: counter(
                registry,
                names::ACCESS_LOG_DROPPED,
                "Access log lines dropped because the log writer fell behind",
            ),
            config_reload_failures: counter(
                registry,
                names::CONFIG_RELOAD_FAILURES,
                "Configuration reloads refused (invalid file, unbindable listener, bad certificate)",
            ),
            cluster_members: gauge(
                registry,
                names::CLUSTER_MEMBERS,
                "Members of the cluster, this node included",
            ),
            replica_hits: counter(
                registry,
                names::REPLICA_HITS,
                "Hits on replicas of objects another node owns",
            ),
            peer_requests,
            peer_duration,
            peer_ejections,
            peer_up,
            cache_bytes: gauge(registry, names::CACHE_BYTES, "Bytes held by the cache"),
            cache_capacity: gauge(registry, names::CACHE_CAPACITY, "Configured cache memory"),
            cache_entries: gauge(registry, names::CACHE_ENTRIES, "URLs held by the cache"),
            coalesced: counter(
                registry,
                names::COALESCED,
                "Requests that waited on another request's origin fetch",
            ),
            fills_in_flight: gauge(registry, names::FILLS_IN_FLIGHT, "Origin fetches in flight"),
            purged: counter(
                registry,
                names::PURGED,
                "Entries removed or marked stale by purge requests",
            ),
            requests,
            origin_requests,
            origin_duration,
            evictions,
            registry: root,
        };
        let mut metrics = metrics;
        let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        metrics
            .registry
            .sub_registry_with_prefix(names::PREFIX)
            .register(names::BUILD, "Build information", info);
        metrics
    }

    pub fn peer(&self, peer: &str) -> PeerMetrics {
        let requests = PeerOutcome::ALL.map(|o| {
            self.peer_requests
                .get_or_create(&PeerRequestLabels {
                    peer: peer.to_owned(),
                    outcome: o.as_str(),
                })
                .clone()
        });
        let label = PeerLabel {
            peer: peer.to_owned(),
        };
        PeerMetrics {
            requests,
            duration: self.peer_duration.get_or_create(&label).clone(),
            ejections: self.peer_ejections.get_or_create(&label).clone(),
            up: self.peer_up.get_or_create(&label).clone(),
        }
    }

    /// Drop a peer's series when it leaves the cluster (pods come and go with new addresses;
    /// a departed peer must not stay "down" forever).
    pub fn remove_peer(&self, peer: &str) {
        for outcome in PeerOutcome::ALL {
            self.peer_requests.remove(&PeerRequestLabels {
                peer: peer.to_owned(),
                outcome: outcome.as_str(),
            });
        }
        let label = PeerLabel {
            peer: peer.to_owned(),
        };
        self.peer_duration.remove(&label);
        self.peer_ejections.remove(&label);
        self.peer_up.remove(&label);
    }

    pub fn origin_server(&self, site: &str, server: &str) -> OriginServerMetrics {
        let labels = ServerLabels {
            site: site.to_owned(),
            server: server.to_owned(),
        };
        let f = &self.origin_servers;
        let up = f.up.get_or_create_owned(&labels);
        up.set(1);
        let state = |state| {
            f.connections.get_or_create_owned(&ServerStateLabels {
                site: site.to_owned(),
                server: server.to_owned(),
                state,
            })
        };
        OriginServerMetrics {
            up,
            ejections: f.ejections.get_or_create_owned(&labels),
            requests: f.requests.get_or_create_owned(&labels),
            errors: OriginError::ALL.map(|kind| {
                f.errors.get_or_create_owned(&ServerErrorLabels {
                    site: site.to_owned(),
                    server: server.to_owned(),
                    kind: kind.as_str(),
                })
            }),
            duration: f.duration.get_or_create_owned(&labels),
            open: state("open"),
            idle: state("idle"),
            queued: f.queued.get_or_create_owned(&labels),
            addresses: f.addresses.get_or_create_owned(&labels),
            dns_refreshes: f.dns_refreshes.get_or_create_owned(&labels),
            dns_failures: f.dns_failures.get_or_create_owned(&labels),
        }
    }

    pub fn site(&self, site: &str) -> SiteMetrics {
        let requests = CacheResult::ALL.map(|r| {
            self.requests.get_or_create_owned(&RequestLabels {
                site: site.to_owned(),
                cache: r.as_str(),
            })
        });
        let origin = OriginOutcome::ALL.map(|o| {
            self.origin_requests.get_or_create_owned(&OriginLabels {
                site: site.to_owned(),
                outcome: o.as_str(),
            })
        });
        let label = SiteLabel {
            site: site.to_owned(),
        };
        let responses = CLASSES.map(|class| {
            self.responses.get_or_create_owned(&ClassLabels {
                site: site.to_owned(),
                class,
            })
        });
        SiteMetrics {
            requests,
            origin,
            origin_duration: self.origin_duration.get_or_create_owned(&label),
            responses,
            duration: self.request_duration.get_or_create_owned(&label),
            response_bytes: self.response_bytes.get_or_create_owned(&label),
            origin_bytes: self.origin_bytes.get_or_create_owned(&label),
        }
    }

    pub fn eviction(&self, reason: &'static str) -> Counter {
        self.evictions.get_or_create_owned(&ReasonLabel { reason })
    }

    /// OpenMetrics text exposition (what Prometheus asks for).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Classic Prometheus text format 0.0.4 (for tools that predate OpenMetrics).
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode_openmetrics())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

/// Rewrite OpenMetrics text into the classic format: a counter family `x` is exposed as
/// samples `x_total`, so its HELP/TYPE must name `x_total`; `info` becomes a gauge named
/// `x_info`; `# UNIT` and `# EOF` do not exist there.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_owned(), other),
            };
            if let Some((_, help)) = pending_help.take() {
                out.push_str(&format!("# HELP {name} {help}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_format_names_counter_families_by_their_samples() {
        let m = Metrics::new();
        m.site("a").request(CacheResult::Hit);
        let text = m.encode_prometheus();
        assert!(
            text.contains("# TYPE outpost_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("# HELP outpost_requests_total "), "{text}");
        assert!(text.contains("outpost_requests_total{site=\"a\",cache=\"hit\"} 1"));
        assert!(text.contains("# TYPE outpost_build_info gauge"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        assert!(Metrics::new().encode_openmetrics().ends_with("# EOF\n"));
    }
}
