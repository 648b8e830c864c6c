//! Metric names (without the `outpost_` prefix; counters get `_total` from the encoder), and
//! the order in which `/metrics` lists them.

pub(crate) const PREFIX: &str = "outpost";
pub(crate) const REQUESTS: &str = "requests";
pub(crate) const ORIGIN_REQUESTS: &str = "origin_requests";
pub(crate) const ORIGIN_DURATION: &str = "origin_response_duration_seconds";
pub(crate) const CACHE_BYTES: &str = "cache_bytes";
pub(crate) const CACHE_CAPACITY: &str = "cache_capacity_bytes";
pub(crate) const CACHE_ENTRIES: &str = "cache_entries";
pub(crate) const CACHE_EVICTIONS: &str = "cache_evictions";
pub(crate) const COALESCED: &str = "coalesced_requests";
pub(crate) const FILLS_IN_FLIGHT: &str = "fills_in_flight";
pub(crate) const PURGED: &str = "purged_objects";
pub(crate) const BUILD: &str = "build";
pub(crate) const PEER_REQUESTS: &str = "peer_requests";
pub(crate) const PEER_DURATION: &str = "peer_response_duration_seconds";
pub(crate) const PEER_EJECTIONS: &str = "peer_ejections";
pub(crate) const PEER_UP: &str = "peer_up";
pub(crate) const CLUSTER_MEMBERS: &str = "cluster_members";
pub(crate) const REPLICA_HITS: &str = "replica_hits";
pub(crate) const RESPONSES: &str = "responses";
pub(crate) const REQUEST_DURATION: &str = "request_duration_seconds";
pub(crate) const RESPONSE_BYTES: &str = "response_bytes";
pub(crate) const ORIGIN_BYTES: &str = "origin_bytes";
pub(crate) const CONNECTIONS_OPEN: &str = "connections_open";
pub(crate) const CONNECTIONS_ACCEPTED: &str = "connections_accepted";
pub(crate) const CONNECTIONS_REFUSED: &str = "connections_refused";
pub(crate) const TLS_HANDSHAKES: &str = "tls_handshakes";
pub(crate) const TLS_HANDSHAKE_FAILURES: &str = "tls_handshake_failures";
pub(crate) const CONFIG_RELOADS: &str = "config_reloads";
pub(crate) const CONFIG_RELOAD_FAILURES: &str = "config_reload_failures";
pub(crate) const ACCESS_LOG_DROPPED: &str = "access_log_dropped";
pub(crate) const ORIGIN_SERVER_UP: &str = "origin_server_up";
pub(crate) const ORIGIN_EJECTIONS: &str = "origin_ejections";
pub(crate) const ORIGIN_SERVER_REQUESTS: &str = "origin_server_requests";
pub(crate) const ORIGIN_SERVER_ERRORS: &str = "origin_server_errors";
pub(crate) const ORIGIN_SERVER_DURATION: &str = "origin_server_response_duration_seconds";
pub(crate) const ORIGIN_SERVER_CONNECTIONS: &str = "origin_server_connections";
pub(crate) const ORIGIN_SERVER_QUEUED: &str = "origin_server_queued_requests";
pub(crate) const ORIGIN_DNS_REFRESHES: &str = "origin_dns_refreshes";
pub(crate) const ORIGIN_DNS_FAILURES: &str = "origin_dns_failures";
pub(crate) const ORIGIN_SERVER_ADDRESSES: &str = "origin_server_addresses";

/// The order of the families in the exposition (the build info comes last). It predates the
/// split of the metrics by area and is kept so that `/metrics` reads the same as before; a new
/// metric goes where it reads best.
pub(super) const ORDER: [&str; 38] = [
    REQUESTS,
    ORIGIN_REQUESTS,
    ORIGIN_DURATION,
    CACHE_EVICTIONS,
    PEER_REQUESTS,
    PEER_DURATION,
    PEER_EJECTIONS,
    PEER_UP,
    RESPONSES,
    REQUEST_DURATION,
    RESPONSE_BYTES,
    ORIGIN_BYTES,
    ORIGIN_SERVER_UP,
    ORIGIN_EJECTIONS,
    ORIGIN_SERVER_REQUESTS,
    ORIGIN_SERVER_ERRORS,
    ORIGIN_SERVER_DURATION,
    ORIGIN_SERVER_CONNECTIONS,
    ORIGIN_SERVER_QUEUED,
    ORIGIN_SERVER_ADDRESSES,
    ORIGIN_DNS_REFRESHES,
    ORIGIN_DNS_FAILURES,
    CONNECTIONS_OPEN,
    CONNECTIONS_ACCEPTED,
    CONNECTIONS_REFUSED,
    TLS_HANDSHAKES,
    TLS_HANDSHAKE_FAILURES,
    CONFIG_RELOADS,
    ACCESS_LOG_DROPPED,
    CONFIG_RELOAD_FAILURES,
    CLUSTER_MEMBERS,
    REPLICA_HITS,
    CACHE_BYTES,
    CACHE_CAPACITY,
    CACHE_ENTRIES,
    COALESCED,
    FILLS_IN_FLIGHT,
    PURGED,
];
