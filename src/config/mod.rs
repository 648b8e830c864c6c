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
//!   validate                                       validate.rs, sites.rs, hosts.rs, ctx.rs
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
mod ctx;
mod error;
mod file;
mod hosts;
mod keypath;
mod site_cache;
mod sites;
mod units;
mod validate;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
pub use hosts::HostPattern;
pub use units::{ByteSize, HumanDuration, parse_duration, parse_size};

use error::Source;

/// The validated configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: NodeConfig,
    pub listen: ListenConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub cache: CacheConfig,
    /// From `[[site]]`; never empty.
    pub sites: Vec<SiteConfig>,
    /// `[cluster]`; `None`: a single node that owns every key.
    pub cluster: Option<ClusterConfig>,
    pub dns: DnsConfig,
    pub log: LogConfig,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing filter (`info`, `warn,outpost=debug`, ...); `RUST_LOG` overrides it.
    pub level: String,
    pub access: AccessLog,
}

/// One line per request on stdout, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Json,
    /// The Apache/nginx "combined" format, plus cache status and time taken.
    Combined,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's http listener as peers reach it; always one of the members.
    pub advertise: SocketAddr,
    pub members: Members,
    /// Shared by every node: authenticates peer hops and purge fan-out.
    pub secret: String,
    pub replicate: Replicate,
    /// How often peers are probed.
    pub probe_interval: Duration,
}

/// Where the member list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// Sorted, deduplicated, `advertise` included.
    Static(Vec<SocketAddr>),
    /// `dns:NAME:PORT` or `dns+srv:NAME`, re-resolved on the records' TTL.
    Discovery(String),
}

/// Which objects a node keeps that another node owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicate {
    None,
    /// Objects this node serves often (a frequency sketch decides).
    Hot,
    All,
}

/// `[dns]`.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// `None`: the system resolver configuration.
    pub servers: Option<Vec<SocketAddr>>,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

/// `[node]`.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Non-empty printable ASCII without spaces; default `"outpost"`.
    pub name: String,
}

/// `[listen]`: client-facing sockets and per-connection limits.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub header_read_timeout: Duration,
    /// Keep-alive idle timeout.
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    /// How long a drain waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

/// `[tls]`: certificates served on the HTTPS listeners.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub certificates: Vec<CertificateFiles>,
}

/// One certificate chain and its key; paths are resolved against the
/// config file's directory and were checked to exist at load time.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None`: no admin listener.
    pub listen: Option<SocketAddr>,
    /// Bearer token for mutating endpoints; `None`: they are refused.
    pub token: Option<String>,
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes of memory for cached objects (≥ 1MiB).
    pub memory: u64,
    /// Largest cacheable object in bytes (≤ `memory`, ≤ 4GiB−1).
    pub max_object: u64,
    /// How long a key that answered uncacheable skips request coalescing.
    pub uncacheable_ttl: Duration,
    /// Heuristic freshness as a percentage of the age since
    /// `Last-Modified`, 0..=100.
    pub heuristic_fraction: u32,
    /// Upper bound on heuristic freshness.
    pub heuristic_max: Duration,
}

/// One `[[site]]`.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// `name` key, default the first host as written.
    pub name: String,
    /// Never empty; no pattern appears twice across all sites.
    pub hosts: Vec<HostPattern>,
    pub origin: OriginConfig,
    /// Largest request body forwarded (413 beyond).
    pub max_request_body: u64,
    pub cache: SiteCacheConfig,
    pub cache_key: crate::cache::key::KeyRules,
}

/// `[site.cache]`: the site's caching policy.
#[derive(Debug, Clone)]
pub struct SiteCacheConfig {
    /// Obey `CDN-Cache-Control` (RFC 9213); default `true`.
    pub cdn_cache_control: bool,
    /// The site's own targeted field, first in precedence, removed before clients.
    pub targeted_field: Option<http::HeaderName>,
    /// Obey `Surrogate-Control` `max-age` / `no-store`; default `false`.
    pub surrogate_control: bool,
    /// Grace for responses that set no `stale-while-revalidate` (zero: none).
    pub stale_while_revalidate: Duration,
    /// Grace for responses that set no `stale-if-error` (zero: none).
    pub stale_if_error: Duration,
    /// Store responses with `Set-Cookie` (without the cookies); default `false`.
    pub store_set_cookie: bool,
    /// Variants kept per URL, 1..=1024; default 16.
    pub max_variants: usize,
    /// Response field listing tags; default `Surrogate-Key`.
    pub tag_header: http::HeaderName,
    /// Lifetimes by status for responses without explicit freshness.
    pub status_ttl: Vec<(http::StatusCode, Duration)>,
}

/// Where a site's misses go.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Never empty.
    pub servers: Vec<OriginServer>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_server: usize,
    /// Requests in flight per server (`http2 = "always"`: times
    /// [`H2_STREAMS_PER_CONNECTION`]), and open connections per address of it.
    pub max_connections: usize,
    /// Requests that may wait for a free connection per server; more get 503.
    pub queue: usize,
    /// Longest wait for a free connection; then 503.
    pub queue_timeout: Duration,
    pub http2: Http2,
    pub balance: Balance,
    /// Further attempts on other servers for requests without a body (within a budget).
    pub retries: u32,
    /// Active probes; `None`: passive health only.
    pub health: Option<HealthCheck>,
    pub tls: OriginTls,
}

/// Requests one HTTP/2 origin connection may carry at once, for the in-flight bound.
pub const H2_STREAMS_PER_CONNECTION: usize = 100;

/// `[site.origin] http2`: which HTTP version origin connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2 {
    /// HTTP/2 where TLS negotiates it (ALPN), HTTP/1.1 otherwise (cleartext included).
    Auto,
    /// HTTP/2 only: ALPN `h2` over TLS, prior knowledge (h2c) over cleartext.
    Always,
    /// HTTP/1.1 only.
    Never,
}

/// How a request picks among the servers in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// The server with the fewest requests in flight.
    LeastRequests,
    Random,
    /// By the request's host and path (rendezvous hashing): one server per object.
    Hash,
}

/// `[site.origin] health`.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Path asked with GET; a 2xx or 3xx answer is healthy.
    pub path: http::uri::PathAndQuery,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive good probes that bring a server back.
    pub rise: u32,
    /// Consecutive bad probes that take it out.
    pub fall: u32,
}

/// `http` or `https` plus a host and optional port; no path or query.
#[derive(Debug, Clone)]
pub struct OriginServer {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
}

/// TLS settings towards the origin (used for `https` servers).
#[derive(Debug, Clone)]
pub struct OriginTls {
    /// Extra CA bundle, resolved against the config file's directory.
    pub ca: Option<PathBuf>,
    /// SNI/verification name to use instead of the server's host.
    pub sni: Option<String>,
    /// Verify the origin's certificate; default `true`.
    pub verify: bool,
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
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: label.clone(),
            message: e.to_string(),
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base_dir = absolute.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &label, base_dir)
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
}
