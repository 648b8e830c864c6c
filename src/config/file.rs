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

pub const DEFAULT_NODE_NAME: &str = "outpost";
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 10;
pub const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 64 << 20;
pub const DEFAULT_CACHE_MEMORY: u64 = 512 << 20;
pub const MIN_CACHE_MEMORY: u64 = 1 << 20;
pub const DEFAULT_MAX_OBJECT: u64 = 64 << 20;
/// Objects are addressed with 32-bit lengths in the store.
pub const MAX_MAX_OBJECT: u64 = (4 << 30) - 1;
pub const DEFAULT_UNCACHEABLE_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_HEURISTIC_FRACTION: u32 = 10;
pub const DEFAULT_HEURISTIC_MAX: Duration = Duration::from_secs(86_400);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_ORIGIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_IDLE_PER_SERVER: usize = 64;
pub const DEFAULT_ORIGIN_MAX_CONNECTIONS: usize = 256;
pub const DEFAULT_QUEUE: usize = 1024;
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_VARIANTS: usize = 16;
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(5);
pub const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);
/// Shortest cluster secret accepted: 128 bits of printable text at the very least.
pub const MIN_SECRET_LEN: usize = 16;
pub const MAX_MAX_VARIANTS: usize = 1024;

/// A list of strings where each element keeps its own span.
pub type SpannedList = Spanned<Vec<Spanned<String>>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub node: NodeFile,
    #[serde(default)]
    pub listen: ListenFile,
    #[serde(default)]
    pub tls: TlsFile,
    #[serde(default)]
    pub admin: AdminFile,
    #[serde(default)]
    pub cache: CacheFile,
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteFile>,
    pub cluster: Option<ClusterFile>,
    #[serde(default)]
    pub dns: DnsFile,
    #[serde(default)]
    pub log: LogFile,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub level: Option<Spanned<String>>,
    pub access: Option<Spanned<String>>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub advertise: Spanned<String>,
    pub peers: Option<SpannedList>,
    pub discovery: Option<Spanned<String>>,
    pub secret: Spanned<String>,
    pub replicate: Option<Spanned<String>>,
    pub probe_interval: Option<Spanned<HumanDuration>>,
}

/// `[dns]`: the resolver used for names Outpost resolves itself (cluster discovery).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    pub servers: Option<SpannedList>,
    pub min_ttl: Option<Spanned<HumanDuration>>,
    pub max_ttl: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    pub http: Option<SpannedList>,
    pub https: Option<SpannedList>,
    pub header_read_timeout: Option<Spanned<HumanDuration>>,
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    pub max_header_bytes: Option<Spanned<ByteSize>>,
    pub max_headers: Option<Spanned<usize>>,
    pub max_connections: Option<Spanned<usize>>,
    pub shutdown_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    #[serde(default)]
    pub certificates: Vec<CertificateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    pub memory: Option<Spanned<ByteSize>>,
    pub max_object: Option<Spanned<ByteSize>>,
    pub uncacheable_ttl: Option<HumanDuration>,
    pub heuristic_fraction: Option<Spanned<u32>>,
    pub heuristic_max: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    pub name: Option<Spanned<String>>,
    pub hosts: SpannedList,
    pub origin: Spanned<OriginFile>,
    pub max_request_body: Option<Spanned<ByteSize>>,
    #[serde(default)]
    pub cache: SiteCacheFile,
    #[serde(default)]
    pub cache_key: CacheKeyFile,
}

/// `[site.cache]`: the site's caching policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteCacheFile {
    pub cdn_cache_control: Option<bool>,
    pub targeted_field: Option<Spanned<String>>,
    pub surrogate_control: Option<bool>,
    pub serve_stale_while_revalidate: Option<HumanDuration>,
    pub serve_stale_if_error: Option<HumanDuration>,
    pub store_set_cookie: Option<bool>,
    pub max_variants: Option<Spanned<usize>>,
    pub tag_header: Option<Spanned<String>>,
    #[serde(default)]
    pub status_ttl: std::collections::BTreeMap<String, Spanned<HumanDuration>>,
}

/// `[site.cache_key]`: what of the request makes the cache key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheKeyFile {
    pub ignore_query: Option<Spanned<bool>>,
    pub drop_query: Option<SpannedList>,
    pub only_query: Option<SpannedList>,
    pub sort_query: Option<bool>,
    pub headers: Option<SpannedList>,
    pub cookies: Option<SpannedList>,
}

/// `origin = ["http://…"]` or a full `[site.origin]` table.
#[derive(Debug)]
pub enum OriginFile {
    Servers(Vec<Spanned<String>>),
    Table(Box<OriginTableFile>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginTableFile {
    pub servers: SpannedList,
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    pub first_byte_timeout: Option<Spanned<HumanDuration>>,
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    pub max_idle_per_server: Option<usize>,
    pub max_connections: Option<Spanned<usize>>,
    pub queue: Option<usize>,
    pub queue_timeout: Option<Spanned<HumanDuration>>,
    pub http2: Option<Spanned<String>>,
    pub balance: Option<Spanned<String>>,
    pub retries: Option<Spanned<u32>>,
    pub health: Option<HealthFile>,
    #[serde(default)]
    pub tls: OriginTlsFile,
}

/// `health = { path = "/health", interval = "5s", timeout = "1s", rise = 2, fall = 3 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    pub path: Spanned<String>,
    pub interval: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginTlsFile {
    pub ca: Option<Spanned<PathBuf>>,
    pub sni: Option<Spanned<String>>,
    pub verify: Option<bool>,
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
