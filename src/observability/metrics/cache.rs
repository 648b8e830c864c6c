//! Cache: the cache result of each client request, the store's size and evictions, fills in
//! flight, coalesced requests and purges.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Registrar, names};

/// The cache result of one client request: the `cache` label of `outpost_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheResult {
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
    pub(super) const ALL: [CacheResult; 7] = [
        Self::Hit,
        Self::Miss,
        Self::Stale,
        Self::Revalidated,
        Self::Pass,
        Self::Error,
        Self::Peer,
    ];

    pub(crate) fn as_str(self) -> &'static str {
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: String,
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The node-wide cache handles (public fields of [`super::Metrics`]).
pub(crate) struct Store {
    pub(crate) cache_bytes: Gauge,
    role_bytes: Family<RoleLabel, Gauge>,
    pub(crate) cache_capacity: Gauge,
    pub(crate) cache_entries: Gauge,
    pub(crate) coalesced: Counter,
    pub(crate) fills_in_flight: Gauge,
    pub(crate) purged: Counter,
    /// Objects stored in chunks (a manifest stored).
    pub(crate) chunked_objects: Counter,
    chunk_fetches: Family<ChunkLabel, Counter>,
    compressions: Family<CompressionLabels, Counter>,
    compressed_responses: Family<CodingLabel, Counter>,
    snapshot_entries: Family<SnapshotLabels, Counter>,
    snapshots_skipped: Family<ReasonLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompressionLabels {
    coding: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodingLabel {
    coding: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChunkLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotLabels {
    op: &'static str,
    result: &'static str,
}

impl Store {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            cache_bytes: reg.register(
                names::CACHE_BYTES,
                "Bytes held by the cache",
                Gauge::default(),
            ),
            role_bytes: reg.register(
                names::CACHE_ROLE_BYTES,
                "Bytes of cached entries by role: owner (this node filled them) or replica (copies of objects another node owns)",
                Family::default(),
            ),
            cache_capacity: reg.register(
                names::CACHE_CAPACITY,
                "Configured cache memory",
                Gauge::default(),
            ),
            cache_entries: reg.register(
                names::CACHE_ENTRIES,
                "URLs held by the cache",
                Gauge::default(),
            ),
            coalesced: reg.register(
                names::COALESCED,
                "Requests that waited on another request's origin fetch",
                Counter::default(),
            ),
            fills_in_flight: reg.register(
                names::FILLS_IN_FLIGHT,
                "Origin fetches in flight",
                Gauge::default(),
            ),
            purged: reg.register(
                names::PURGED,
                "Entries removed or marked stale by purge requests",
                Counter::default(),
            ),
            chunked_objects: reg.register(
                names::CHUNKED_OBJECTS,
                "Objects stored in chunks spread over the cluster (manifests stored)",
                Counter::default(),
            ),
            chunk_fetches: reg.register(
                names::CHUNK_FETCHES,
                "Chunks read to serve objects stored in chunks, by result: ok, changed (another version answered; the response was cut, never stitched), ignored (the origin ignores Range), gone (refused with a client error; the object is fetched again), failed",
                Family::default(),
            ),
            compressions: reg.register(
                names::COMPRESSIONS,
                "Stored bodies compressed at the edge, by coding and result: stored (the encoded form kept beside the object), larger (no smaller than the original; identity served), failed",
                Family::default(),
            ),
            compressed_responses: reg.register(
                names::COMPRESSED_RESPONSES,
                "Responses served with a coding applied at the edge, by coding",
                Family::default(),
            ),
            snapshot_entries: reg.register(
                names::SNAPSHOT_ENTRIES,
                "Entries of the cache.persist snapshot: op=save (saved, left_out at the deadline) and op=load (loaded, corrupt, expired, over_budget)",
                Family::default(),
            ),
            snapshots_skipped: reg.register(
                names::SNAPSHOT_SKIPPED,
                "Snapshots not loaded whole, by reason (version, config, corrupt, io; truncated: the entries before the cut were loaded)",
                Family::default(),
            ),
        }
    }

    /// Count one chunk read (`result`: ok, changed, ignored, failed).
    pub(crate) fn chunk_fetch(&self, result: &'static str) {
        self.chunk_fetches
            .get_or_create(&ChunkLabel { result })
            .inc();
    }

    /// Count one body compressed (`result`: stored, larger, failed).
    pub(crate) fn compression(&self, coding: &'static str, result: &'static str) {
        self.compressions
            .get_or_create(&CompressionLabels { coding, result })
            .inc();
    }

    /// Count one response served encoded at the edge.
    pub(crate) fn compressed_response(&self, coding: &'static str) {
        self.compressed_responses
            .get_or_create(&CodingLabel { coding })
            .inc();
    }

    /// Set the bytes held as owner and as replica.
    pub(crate) fn set_role_bytes(&self, owner: u64, replica: u64) {
        for (role, bytes) in [("owner", owner), ("replica", replica)] {
            self.role_bytes
                .get_or_create(&RoleLabel { role })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Count `n` snapshot entries (`op` save or load) with this result.
    pub(crate) fn snapshot(&self, op: &'static str, result: &'static str, n: u64) {
        self.snapshot_entries
            .get_or_create(&SnapshotLabels { op, result })
            .inc_by(n);
    }

    pub(crate) fn snapshot_skipped(&self, reason: &'static str) {
        self.snapshots_skipped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

/// The cache's labelled families.
pub(super) struct CacheFamilies {
    requests: Family<RequestLabels, Counter>,
    evictions: Family<ReasonLabel, Counter>,
}

impl CacheFamilies {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Self {
        Self {
            requests: reg.register(
                names::REQUESTS,
                "Client requests by site and cache result",
                Family::default(),
            ),
            evictions: reg.register(
                names::CACHE_EVICTIONS,
                "Objects removed from the cache by reason (size, expired, purged, replaced)",
                Family::default(),
            ),
        }
    }

    /// A site's request counters, indexed by [`CacheResult`].
    pub(super) fn site(&self, site: &str) -> [Counter; CacheResult::ALL.len()] {
        CacheResult::ALL.map(|r| {
            self.requests.get_or_create_owned(&RequestLabels {
                site: site.to_owned(),
                cache: r.as_str(),
            })
        })
    }

    pub(super) fn eviction(&self, reason: &'static str) -> Counter {
        self.evictions.get_or_create_owned(&ReasonLabel { reason })
    }
}
