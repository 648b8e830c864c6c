//! Serde structs mirroring `outpost.toml` one-to-one, and the defaults.
//!
//! These describe what an operator may *write*, not what the node uses:
//! every key is optional here (except a site's `hosts` and `origin`) and
//! values that need checking after deserialisation are wrapped in
//! `Spanned` so a later error can still point at them. Absent keys stay
//! `None`, so validation knows whether a value came from the file or from
//! the default constants below. `deny_unknown_fields` everywhere turns a
//! misspelt key into an error instead of a silently ignored setting.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::config::units::{ByteSize, HumanDuration};

pub(crate) const DEFAULT_NODE_NAME: &str = "outpost";
pub(crate) const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 10;
pub(crate) const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
pub(crate) const DEFAULT_MAX_HEADERS: usize = 100;
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `[listen] max_connections_per_client`: no one address takes more than a tenth.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 1_000;
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_MAX_REQUEST_BODY: u64 = 64 << 20;
pub(crate) const DEFAULT_REQUEST_BUFFERING: u64 = 1 << 20;
pub(crate) const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_REQUEST_BODY_MIN_RATE: u64 = 1 << 10;
pub(crate) const DEFAULT_CACHE_MEMORY: u64 = 512 << 20;
pub(crate) const MIN_CACHE_MEMORY: u64 = 1 << 20;
pub(crate) const DEFAULT_MAX_OBJECT: u64 = 64 << 20;
/// Larger objects than a node's memory are stored in chunks across the cluster; this bounds a
/// typo, not the design.
pub(crate) const MAX_MAX_OBJECT: u64 = 1 << 40;
/// Entries are weighed with 32-bit weights in the store: what is stored whole stays below.
pub(crate) const MAX_WHOLE_OBJECT: u64 = (4 << 30) - 1;
pub(crate) const DEFAULT_CHUNK_SIZE: u64 = 1 << 20;
pub(crate) const MIN_CHUNK_SIZE: u64 = 64 << 10;
pub(crate) const MAX_CHUNK_SIZE: u64 = 64 << 20;
pub(crate) const DEFAULT_UNCACHEABLE_TTL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_HEURISTIC_FRACTION: u32 = 10;
pub(crate) const DEFAULT_HEURISTIC_MAX: Duration = Duration::from_secs(86_400);
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_ORIGIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_IDLE_PER_SERVER: usize = 64;
pub(crate) const DEFAULT_ORIGIN_MAX_CONNECTIONS: usize = 256;
pub(crate) const DEFAULT_QUEUE: usize = 1024;
pub(crate) const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_MAX_VARIANTS: usize = 16;
/// `[site.cache] serve_stale_when_disconnected`: one day.
pub(crate) const DEFAULT_STALE_WHEN_DISCONNECTED: std::time::Duration =
    std::time::Duration::from_secs(86_400);
pub(crate) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// `[cluster] peer_timeout`.
pub(crate) const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_millis(500);
/// `[cluster] handoff`.
pub(crate) const DEFAULT_HANDOFF: Duration = Duration::from_secs(60);
/// `[cluster] purge_log_window`: one day.
pub(crate) const DEFAULT_PURGE_LOG_WINDOW: Duration = Duration::from_secs(86_400);
/// `[cluster] purge_log_memory`.
pub(crate) const DEFAULT_PURGE_LOG_MEMORY: u64 = 32 << 20;
/// `[cluster] purge_lease`: long enough that a node slowed by a burst (its probes late) does
/// not lose it and turn every hit into a revalidation.
pub(crate) const DEFAULT_PURGE_LEASE: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);
/// Shortest cluster secret accepted: 128 bits of printable text at the very least.
pub(crate) const MIN_SECRET_LEN: usize = 16;
pub(crate) const MAX_MAX_VARIANTS: usize = 1024;

/// A list of strings where each element keeps its own span.
pub(crate) type SpannedList = Spanned<Vec<Spanned<String>>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) node: NodeFile,
    #[serde(default)]
    pub(crate) listen: ListenFile,
    #[serde(default)]
    pub(crate) tls: TlsFile,
    #[serde(default)]
    pub(crate) admin: AdminFile,
    #[serde(default)]
    pub(crate) cache: CacheFile,
    #[serde(default, rename = "site")]
    pub(crate) sites: Vec<SiteFile>,
    pub(crate) cluster: Option<ClusterFile>,
    #[serde(default)]
    pub(crate) dns: DnsFile,
    #[serde(default)]
    pub(crate) log: LogFile,
    /// `[steering]` and `[[region]]`: read by `outpost dns-zone` only.
    pub(crate) steering: Option<Spanned<crate::config::steering::SteeringFile>>,
    #[serde(default, rename = "region")]
    pub(crate) regions: Vec<Spanned<crate::config::steering::RegionFile>>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogFile {
    pub(crate) level: Option<Spanned<String>>,
    pub(crate) access: Option<Spanned<String>>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterFile {
    pub(crate) advertise: Spanned<String>,
    pub(crate) peers: Option<SpannedList>,
    pub(crate) discovery: Option<Spanned<String>>,
    pub(crate) secret: Spanned<String>,
    pub(crate) replicate: Option<Spanned<String>>,
    pub(crate) replicas: Option<Spanned<i64>>,
    pub(crate) probe_interval: Option<Spanned<HumanDuration>>,
    pub(crate) peer_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) handoff: Option<HumanDuration>,
    pub(crate) leave_notice: Option<HumanDuration>,
    /// `[cluster.regions]`: the members of every other region, by region name.
    pub(crate) regions: Option<Spanned<std::collections::BTreeMap<String, SpannedList>>>,
    pub(crate) purge_log_window: Option<Spanned<HumanDuration>>,
    pub(crate) purge_log_memory: Option<Spanned<ByteSize>>,
    pub(crate) purge_lease: Option<Spanned<HumanDuration>>,
    pub(crate) push_memory: Option<Spanned<ByteSize>>,
}

/// `[dns]`: the resolver used for names Outpost resolves itself (cluster discovery).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsFile {
    pub(crate) servers: Option<SpannedList>,
    pub(crate) min_ttl: Option<Spanned<HumanDuration>>,
    pub(crate) max_ttl: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeFile {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) region: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenFile {
    pub(crate) http: Option<SpannedList>,
    pub(crate) https: Option<SpannedList>,
    pub(crate) quic: Option<SpannedList>,
    pub(crate) header_read_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) idle_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) max_header_bytes: Option<Spanned<ByteSize>>,
    pub(crate) max_headers: Option<Spanned<usize>>,
    pub(crate) max_connections: Option<Spanned<usize>>,
    pub(crate) max_connections_per_client: Option<Spanned<usize>>,
    pub(crate) shutdown_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    #[serde(default)]
    pub(crate) certificates: Vec<CertificateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateFile {
    pub(crate) cert: Spanned<PathBuf>,
    pub(crate) key: Spanned<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminFile {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) token: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheFile {
    pub(crate) memory: Option<Spanned<ByteSize>>,
    pub(crate) max_object: Option<Spanned<ByteSize>>,
    pub(crate) chunk_size: Option<Spanned<ByteSize>>,
    pub(crate) chunk_above: Option<Spanned<ByteSize>>,
    pub(crate) uncacheable_ttl: Option<HumanDuration>,
    pub(crate) heuristic_fraction: Option<Spanned<u32>>,
    pub(crate) heuristic_max: Option<HumanDuration>,
    pub(crate) persist: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteFile {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) hosts: SpannedList,
    pub(crate) origin: Spanned<OriginFile>,
    pub(crate) max_request_body: Option<Spanned<ByteSize>>,
    pub(crate) request_buffering: Option<ByteSize>,
    pub(crate) request_body_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) request_body_min_rate: Option<ByteSize>,
    pub(crate) shield: Option<SpannedList>,
    /// Codings applied at the edge, in order of preference (off when absent).
    pub(crate) compress: Option<SpannedList>,
    pub(crate) compress_types: Option<SpannedList>,
    pub(crate) compress_min_size: Option<ByteSize>,
    pub(crate) compress_max_size: Option<Spanned<ByteSize>>,
    pub(crate) compress_levels: Option<CompressLevelsFile>,
    #[serde(default)]
    pub(crate) cache: SiteCacheFile,
    #[serde(default)]
    pub(crate) cache_key: CacheKeyFile,
}

/// `compress_levels = { br = 6, zstd = 6, gzip = 6 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompressLevelsFile {
    pub(crate) br: Option<Spanned<i64>>,
    pub(crate) zstd: Option<Spanned<i64>>,
    pub(crate) gzip: Option<Spanned<i64>>,
}

/// `[site.cache]`: the site's caching policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteCacheFile {
    pub(crate) cdn_cache_control: Option<bool>,
    pub(crate) targeted_field: Option<Spanned<String>>,
    pub(crate) surrogate_control: Option<bool>,
    pub(crate) serve_stale_while_revalidate: Option<HumanDuration>,
    pub(crate) serve_stale_if_error: Option<HumanDuration>,
    pub(crate) serve_stale_when_disconnected: Option<HumanDuration>,
    pub(crate) store_set_cookie: Option<bool>,
    pub(crate) head_to_origin: Option<bool>,
    pub(crate) max_variants: Option<Spanned<usize>>,
    pub(crate) tag_header: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) status_ttl: std::collections::BTreeMap<String, Spanned<HumanDuration>>,
}

/// `[site.cache_key]`: what of the request makes the cache key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheKeyFile {
    pub(crate) ignore_query: Option<Spanned<bool>>,
    pub(crate) drop_query: Option<SpannedList>,
    pub(crate) only_query: Option<SpannedList>,
    pub(crate) sort_query: Option<bool>,
    pub(crate) headers: Option<SpannedList>,
    pub(crate) cookies: Option<SpannedList>,
}

/// `origin = ["http://…"]` or a full `[site.origin]` table.
#[derive(Debug)]
pub(crate) enum OriginFile {
    Servers(Vec<Spanned<String>>),
    Table(Box<OriginTableFile>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OriginTableFile {
    pub(crate) servers: SpannedList,
    pub(crate) connect_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) first_byte_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) idle_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) max_idle_per_server: Option<usize>,
    pub(crate) max_connections: Option<Spanned<usize>>,
    pub(crate) queue: Option<usize>,
    pub(crate) queue_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) http2: Option<Spanned<String>>,
    pub(crate) balance: Option<Spanned<String>>,
    pub(crate) retries: Option<Spanned<u32>>,
    pub(crate) health: Option<HealthFile>,
    #[serde(default)]
    pub(crate) tls: OriginTlsFile,
}

/// `health = { path = "/health", interval = "5s", timeout = "1s", rise = 2, fall = 3,
/// passive_statuses = [502, 503, 504] }`; without `path`, no active probes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthFile {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) passive_statuses: Option<Vec<Spanned<u16>>>,
    pub(crate) interval: Option<Spanned<HumanDuration>>,
    pub(crate) timeout: Option<Spanned<HumanDuration>>,
    pub(crate) rise: Option<Spanned<u32>>,
    pub(crate) fall: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OriginTlsFile {
    pub(crate) ca: Option<Spanned<PathBuf>>,
    pub(crate) sni: Option<Spanned<String>>,
    pub(crate) verify: Option<bool>,
}

/// Hand-written rather than `#[serde(untagged)]`: untagged enums swallow
/// the inner error ("data did not match any variant"), whereas dispatching
/// on the TOML type keeps errors like an unknown key inside
/// `[site.origin]` precise.
impl<'de> Deserialize<'de> for OriginFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OriginVisitor)
    }
}

struct OriginVisitor;

impl<'de> Visitor<'de> for OriginVisitor {
    type Value = OriginFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a list of origin URLs like [\"http://127.0.0.1:8000\"] \
             or a [site.origin] table with `servers`",
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OriginFile, A::Error> {
        let servers = Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(OriginFile::Servers(servers))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OriginFile, A::Error> {
        let table = OriginTableFile::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(OriginFile::Table(Box::new(table)))
    }
}
