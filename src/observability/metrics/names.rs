//! Metric names (without the `outpost_` prefix; counters get `_total` from the encoder), and
//! the order in which `/metrics` lists them.

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
