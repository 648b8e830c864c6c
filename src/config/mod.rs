//! Outpost's configuration: one TOML file in, one validated [`Config`] out.
//!
//! `outpost.toml -> file structs (serde, deny_unknown_fields) -> validate -> Config`
//!
//! ```text
//!   outpost.toml
//!        │  toml::from_str
//!        ▼
//!   file structs (serde, deny_unknown_fields)      file.rs, units.rs
//!        │  every key optional, values Spanned
//!        ▼
//!   validate                                       validate.rs, sites.rs, hosts.rs, ctx.rs,
//!                                                  steering.rs
//!        │  defaults applied, cross-checks, paths resolved, files exist
//!        ▼
//!   Config                                         (this file)
//! ```
//!
//! Why two layers of structs: the file layer describes what an operator
//! may *write* (optional keys, two spellings of `origin`, `"64MiB"`), the
//! validated layer describes what the node may *rely on* (every value
//! present, in range and consistent), so no other module re-checks or
//! re-defaults anything.
//!
//! Every failure, from a toml syntax error to a missing certificate file,
//! becomes a [`ConfigError`] of the form `FILE:LINE:COL: key.path: message`
//! (see `error.rs` and `keypath.rs`), because that is all `outpost check`
//! prints. Loading never panics on any input.

mod cluster;
pub(crate) use file::{DEFAULT_PURGE_LEASE, DEFAULT_PURGE_LOG_MEMORY, DEFAULT_PURGE_LOG_WINDOW};
mod compress;
mod ctx;
mod error;
mod file;
mod hosts;
mod keypath;
mod site_cache;
mod sites;
mod steering;
mod units;
mod validate;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use error::ConfigError;
pub(crate) use hosts::HostPattern;

use error::Source;

/// The validated configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) node: NodeConfig,
    pub(crate) listen: ListenConfig,
    pub(crate) tls: TlsConfig,
    pub(crate) admin: AdminConfig,
    pub(crate) cache: CacheConfig,
    /// From `[[site]]`; never empty.
    pub sites: Vec<SiteConfig>,
    /// `[cluster]`; `None`: a single node that owns every key.
    pub(crate) cluster: Option<ClusterConfig>,
    pub dns: DnsConfig,
    pub log: LogConfig,
    /// `[steering]` with its `[[region]]` tables: what `outpost dns-zone` writes a zone
    /// from; a node does not use it.
    pub steering: Option<crate::steering::Steering>,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing filter (`info`, `warn,outpost=debug`, ...); `RUST_LOG` overrides it.
    pub level: String,
    pub(crate) access: AccessLog,
}

/// One line per request on stdout, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessLog {
    Off,
    Json,
    /// The Apache/nginx "combined" format, plus cache status and time taken.
    Combined,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    /// This node's http listener as peers reach it; always one of the members.
    pub(crate) advertise: SocketAddr,
    pub(crate) members: Members,
    /// Shared by every node: authenticates peer hops and purge fan-out.
    pub(crate) secret: String,
    pub(crate) replicate: Replicate,
    /// How often peers are probed.
    pub(crate) probe_interval: Duration,
    /// How long a hop waits for the owner's response head before it checks, with a probe
    /// of the same length, that the owner is alive at all.
    pub(crate) peer_timeout: Duration,
    /// After a membership change, how long a miss on a key's new owner asks its previous
    /// owner first (zero: never).
    pub(crate) handoff: Duration,
    /// On a drain, how long the node keeps serving after its probes say it is leaving, so
    /// its peers route its keys to their next holders, which ask it for them meanwhile.
    pub(crate) leave_notice: Duration,
    /// How many nodes hold each object (1..=3): the first `replicas` of its preference
    /// order. The node that stores a fill pushes the stored entry to the others.
    pub(crate) replicas: usize,
    /// The members of every other region (`[cluster.regions]`), by region name: purges and
    /// invalidations go to each of them, and purge logs are compared with them.
    pub(crate) regions: std::collections::BTreeMap<String, Vec<SocketAddr>>,
    /// How long the purge log keeps a purge.
    pub(crate) purge_log_window: Duration,
    /// Bytes the purge log may hold; the oldest purges go first beyond it.
    pub(crate) purge_log_memory: u64,
    /// How long after its last purge-log comparison with another node a node still serves
    /// what it holds without asking the origin.
    pub(crate) purge_lease: Duration,
    /// Bytes replica pushes in flight may hold, all together; `None`: an eighth of
    /// `cache.memory`.
    pub(crate) push_memory: Option<u64>,
}

/// Where the member list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Members {
    /// Sorted, deduplicated, `advertise` included.
    Static(Vec<SocketAddr>),
    /// `dns:NAME:PORT` or `dns+srv:NAME`, re-resolved on the records' TTL.
    Discovery(String),
}

/// Which objects a node keeps that another node owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replicate {
    None,
    /// Objects this node serves often (a frequency sketch decides).
    Hot,
    All,
}

/// `[dns]`.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// `None`: the system resolver configuration.
    pub(crate) servers: Option<Vec<SocketAddr>>,
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
}

/// `[node]`.
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    /// Non-empty printable ASCII without spaces; default `"outpost"`.
    pub(crate) name: String,
    /// The region this node serves (`[node] region`), shown in `/cluster` and the metrics.
    pub(crate) region: Option<String>,
}

/// `[listen]`: client-facing sockets and per-connection limits.
#[derive(Debug, Clone)]
pub(crate) struct ListenConfig {
    pub(crate) http: Vec<SocketAddr>,
    pub(crate) https: Vec<SocketAddr>,
    /// HTTP/3 (UDP) sockets, with the HTTPS listeners' certificates.
    pub(crate) quic: Vec<SocketAddr>,
    pub(crate) header_read_timeout: Duration,
    /// Keep-alive idle timeout.
    pub(crate) idle_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_connections: usize,
    /// Most connections (TCP and QUIC together) from one client address; 0: no limit.
    pub(crate) max_connections_per_client: usize,
    /// How long a drain waits for in-flight requests.
    pub(crate) shutdown_timeout: Duration,
}

/// `[tls]`: certificates served on the HTTPS listeners.
#[derive(Debug, Clone)]
pub(crate) struct TlsConfig {
    pub(crate) certificates: Vec<CertificateFiles>,
}

/// One certificate chain and its key; paths are resolved against the
/// config file's directory and were checked to exist at load time.
#[derive(Debug, Clone)]
pub(crate) struct CertificateFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub(crate) struct AdminConfig {
    /// `None`: no admin listener.
    pub(crate) listen: Option<SocketAddr>,
    /// Bearer token for mutating endpoints; `None`: they are refused.
    pub(crate) token: Option<String>,
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub(crate) struct CacheConfig {
    /// Bytes of memory for cached objects (≥ 1MiB).
    pub(crate) memory: u64,
    /// Largest cacheable object in bytes (≤ 1TiB); larger than `chunk_size`, one is stored
    /// in chunks spread over the cluster, so it may exceed `memory`.
    pub(crate) max_object: u64,
    /// The size of one chunk of an object stored in chunks (64KiB..=64MiB, ≤ `memory`).
    pub(crate) chunk_size: u64,
    /// Objects longer than this are stored in chunks; those up to it whole (`chunk_above`,
    /// at least `chunk_size`; by default a quarter of `memory`).
    pub(crate) chunk_above: u64,
    /// How long a key that answered uncacheable skips request coalescing.
    pub(crate) uncacheable_ttl: Duration,
    /// Heuristic freshness as a percentage of the age since
    /// `Last-Modified`, 0..=100.
    pub(crate) heuristic_fraction: u32,
    /// Upper bound on heuristic freshness.
    pub(crate) heuristic_max: Duration,
    /// Where the cache is written on drain and read back at start (`persist`, resolved
    /// against the config file's directory); `None`: the cache starts empty.
    pub(crate) persist: Option<PathBuf>,
}

impl CacheConfig {
    /// The largest object stored whole (one that cannot be chunked: no validator, an
    /// origin that ignores `Range`): within `max_object`, `memory` and the store's weights.
    pub(crate) fn whole_max(&self) -> u64 {
        self.max_object.min(self.memory).min(file::MAX_WHOLE_OBJECT)
    }

    /// Objects longer than this (with a strong validator) are stored in chunks: what
    /// `chunk_above` says, and never more than what can be stored whole.
    pub(crate) fn chunk_threshold(&self) -> u64 {
        self.chunk_above.min(self.whole_max())
    }
}

/// One `[[site]]`.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// `name` key, default the first host as written.
    pub(crate) name: String,
    /// Never empty; no pattern appears twice across all sites.
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) origin: OriginConfig,
    /// Largest request body forwarded (413 beyond).
    pub(crate) max_request_body: u64,
    /// Request bodies up to this are read whole before the origin is asked (0: none are);
    /// never more than `max_request_body`.
    pub(crate) request_buffering: u64,
    /// The wait for a request body's first byte, and its longest pause.
    pub(crate) request_body_timeout: Duration,
    /// Bytes per second a request body must average (0: no minimum).
    pub(crate) request_body_min_rate: u64,
    /// The parent tier's nodes (`shield`): a miss this node owns is asked of one of them, by
    /// rendezvous hash, before the origin. Never this node's own address.
    pub(crate) shield: Vec<SocketAddr>,
    pub(crate) cache: SiteCacheConfig,
    pub(crate) cache_key: crate::cache::key::KeyRules,
    /// Edge compression (`compress`); `None`: off.
    pub(crate) compress: Option<crate::cache::encoding::Rules>,
}

/// `[site.cache]`: the site's caching policy.
#[derive(Debug, Clone)]
pub(crate) struct SiteCacheConfig {
    /// Obey `CDN-Cache-Control` (RFC 9213); default `true`.
    pub(crate) cdn_cache_control: bool,
    /// The site's own targeted field, first in precedence, removed before clients.
    pub(crate) targeted_field: Option<http::HeaderName>,
    /// Obey `Surrogate-Control` `max-age` / `no-store`; default `false`.
    pub(crate) surrogate_control: bool,
    /// Grace for responses that set no `stale-while-revalidate` (zero: none).
    pub(crate) stale_while_revalidate: Duration,
    /// Grace for responses that set no `stale-if-error` (zero: none).
    pub(crate) stale_if_error: Duration,
    /// Most staleness served when the origin cannot be reached (RFC 9111 §4.2.4; zero:
    /// never); default one day.
    pub(crate) stale_when_disconnected: Duration,
    /// Store responses with `Set-Cookie` (without the cookies); default `false`.
    pub(crate) store_set_cookie: bool,
    /// Send a HEAD that the cache cannot answer to the origin as a HEAD, whose 200 freshens
    /// the stored response it describes (RFC 9111 §4.3.5), instead of filling with a GET;
    /// default `false`.
    pub(crate) head_to_origin: bool,
    /// Variants kept per URL, 1..=1024; default 16.
    pub(crate) max_variants: usize,
    /// Response field listing tags; default `Surrogate-Key`.
    pub(crate) tag_header: http::HeaderName,
    /// Lifetimes by status for responses without explicit freshness.
    pub(crate) status_ttl: Vec<(http::StatusCode, Duration)>,
}

/// Where a site's misses go.
#[derive(Debug, Clone)]
pub(crate) struct OriginConfig {
    /// Never empty.
    pub(crate) servers: Vec<OriginServer>,
    pub(crate) connect_timeout: Duration,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle_per_server: usize,
    /// Requests in flight per server (`http2 = "always"`: times
    /// [`H2_STREAMS_PER_CONNECTION`]), and open connections per address of it.
    pub(crate) max_connections: usize,
    /// Requests that may wait for a free connection per server; more get 503.
    pub(crate) queue: usize,
    /// Longest wait for a free connection; then 503.
    pub(crate) queue_timeout: Duration,
    pub(crate) http2: Http2,
    pub(crate) balance: Balance,
    /// Further attempts on other servers for requests without a body (within a budget).
    pub(crate) retries: u32,
    /// Active probes; `None`: passive health only.
    pub(crate) health: Option<HealthCheck>,
    /// Response statuses that count as passive failures (`health.passive_statuses`); by
    /// default none: a server that answers, with any status, is reachable.
    pub(crate) passive_statuses: Vec<http::StatusCode>,
    pub(crate) tls: OriginTls,
}

/// Requests one HTTP/2 origin connection may carry at once, for the in-flight bound.
pub(crate) const H2_STREAMS_PER_CONNECTION: usize = 100;

/// `[site.origin] http2`: which HTTP version origin connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Http2 {
    /// HTTP/2 where TLS negotiates it (ALPN), HTTP/1.1 otherwise (cleartext included).
    Auto,
    /// HTTP/2 only: ALPN `h2` over TLS, prior knowledge (h2c) over cleartext.
    Always,
    /// HTTP/1.1 only.
    Never,
}

/// How a request picks among the servers in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Balance {
    RoundRobin,
    /// The server with the fewest requests in flight.
    LeastRequests,
    Random,
    /// By the request's host and path (rendezvous hashing): one server per object.
    Hash,
}

/// `[site.origin] health`.
#[derive(Debug, Clone)]
pub(crate) struct HealthCheck {
    /// Path asked with GET; a 2xx or 3xx answer is healthy.
    pub(crate) path: http::uri::PathAndQuery,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    /// Consecutive good probes that bring a server back.
    pub(crate) rise: u32,
    /// Consecutive bad probes that take it out.
    pub(crate) fall: u32,
}

/// `http` or `https` plus a host and optional port; no path or query.
#[derive(Debug, Clone)]
pub(crate) struct OriginServer {
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) authority: http::uri::Authority,
}

/// TLS settings towards the origin (used for `https` servers).
#[derive(Debug, Clone)]
pub(crate) struct OriginTls {
    /// Extra CA bundle, resolved against the config file's directory.
    pub(crate) ca: Option<PathBuf>,
    /// SNI/verification name to use instead of the server's host.
    pub(crate) sni: Option<String>,
    /// Verify the origin's certificate; default `true`.
    pub(crate) verify: bool,
}

/// Hand-written so that the default is the safe one (`verify: true`),
/// matching the file's default.
impl Default for OriginTls {
    fn default() -> Self {
        Self {
            ca: None,
            sni: None,
            verify: true,
        }
    }
}

impl Config {
    /// Reads and validates the file at `path`. Relative paths inside it
    /// are resolved against its (absolute) directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (text, label) = read(path)?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base_dir = absolute.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &label, base_dir)
    }

    /// Only the `[steering]` and `[[region]]` tables of the file at `path`, validated: what
    /// `outpost dns-zone` needs, on a DNS host that runs no node (and has no `[[site]]`).
    pub fn load_steering(path: &Path) -> Result<Option<crate::steering::Steering>, ConfigError> {
        let (text, label) = read(path)?;
        let source = Source {
            text: &text,
            file: &label,
        };
        let file: file::FileConfig =
            toml::from_str(&text).map_err(|e| keypath::from_toml(&source, &e))?;
        let cx = ctx::Ctx {
            source,
            base_dir: Path::new("."),
        };
        steering::steering(file.steering.as_ref(), &file.regions, &cx)
    }

    /// Validates `text`; `file_label` prefixes error messages and
    /// `base_dir` anchors relative paths.
    pub fn parse(text: &str, file_label: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let source = Source {
            text,
            file: file_label,
        };
        let file: file::FileConfig =
            toml::from_str(text).map_err(|e| keypath::from_toml(&source, &e))?;
        validate::validate(file, &ctx::Ctx { source, base_dir })
    }

    /// What is valid but probably not what was meant: `outpost check` prints these, and a
    /// node logs them when it starts or reloads.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(cluster) = &self.cluster {
            if let Members::Static(members) = &cluster.members
                && cluster.replicas > members.len()
            {
                out.push(format!(
                    "cluster.replicas: {} holders per object, but the cluster has {} member(s): each object is held by all {} of them",
                    cluster.replicas,
                    members.len(),
                    members.len()
                ));
            }
            let alone = matches!(&cluster.members, Members::Static(m) if m.len() < 2);
            let shields = self.sites.iter().any(|s| !s.shield.is_empty());
            if alone && cluster.regions.is_empty() && !shields {
                out.push(
                    "cluster: no peers, no [cluster.regions] and no shields: a purge this node misses while it is down or cut off is never caught up".to_owned(),
                );
            }
        }
        out
    }
}

/// The text of the file at `path` and the label its errors carry.
fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: label.clone(),
        message: e.to_string(),
    })?;
    Ok((text, label))
}
