//! Names Outpost resolves itself, following their TTLs: cluster members
//! (`discovery = "dns:…"`) and origin servers given by name.
//!
//! A list of addresses can come from DNS:
//!
//! * `dns:<host>:<port>`: every A and AAAA record of `<host>`, each paired with `<port>`.
//! * `dns+srv:<name>`: every SRV record of `<name>`; each target is resolved to A/AAAA and paired
//!   with the SRV record's port. Priority and weight are ignored: every target is a member.
//!
//! [`spawn`] starts a background task that resolves the source now and again whenever the
//! records' TTL (clamped to `[min_ttl, max_ttl]`) runs out, and publishes every *changed*
//! member list on a [`watch`] channel. Readers only ever look at the channel, so no request
//! waits on DNS.
//!
//! # Caching
//!
//! hickory's own response cache is disabled (`cache_size = 0`), and the discovery task also
//! calls [`Resolver::clear_cache`] before every refresh (an entry in a capacity-0 moka cache
//! can still be visible until moka's housekeeping runs). hickory's `positive_min_ttl` /
//! `positive_max_ttl` are left unset on purpose: setting them would rewrite the record TTLs this
//! module reads. So the TTL logic here, [`clamp_ttl`], alone decides when to re-resolve.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::ResolverBuilder;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};

/// Re-export so callers use the exact hickory version this module was built against.
pub(crate) use hickory_resolver;

/// The resolver type used by this module (hickory on tokio).
pub(crate) type Resolver = hickory_resolver::TokioResolver;

/// Where the member list comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A and AAAA records of `name`, each address paired with `port`.
    Dns { name: String, port: u16 },
    /// SRV records of `name`; targets resolved to A/AAAA, paired with the SRV port.
    Srv { name: String },
}

/// Why a discovery source string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "discovery source {0:?} has no scheme; expected \"dns:<host>:<port>\" or \"dns+srv:<name>\""
    )]
    MissingScheme(String),
    #[error("unknown discovery scheme {0:?}; expected \"dns\" or \"dns+srv\"")]
    UnknownScheme(String),
    #[error("discovery source \"dns:{0}\" has no port; expected \"dns:<host>:<port>\"")]
    MissingPort(String),
    #[error("invalid port {0:?} in discovery source; expected 1-65535")]
    InvalidPort(String),
    #[error("invalid DNS name {name:?} in discovery source: {reason}")]
    InvalidName { name: String, reason: &'static str },
}

impl FromStr for Source {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| SourceError::MissingScheme(s.to_owned()))?;
        match scheme {
            "dns" => {
                let (name, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| SourceError::MissingPort(rest.to_owned()))?;
                validate_name(name)?;
                let port = match port.parse::<u16>() {
                    Ok(p) if p != 0 => p,
                    _ => return Err(SourceError::InvalidPort(port.to_owned())),
                };
                Ok(Source::Dns {
                    name: name.to_owned(),
                    port,
                })
            }
            "dns+srv" => {
                validate_name(rest)?;
                Ok(Source::Srv {
                    name: rest.to_owned(),
                })
            }
            other => Err(SourceError::UnknownScheme(other.to_owned())),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dns { name, port } => write!(f, "dns:{name}:{port}"),
            Source::Srv { name } => write!(f, "dns+srv:{name}"),
        }
    }
}

/// Host-name syntax check (letters, digits, `-`, `_`; a trailing dot marks an FQDN).
fn validate_name(name: &str) -> Result<(), SourceError> {
    let invalid = |reason| {
        Err(SourceError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return invalid("empty name");
    }
    if bare.len() > 253 {
        return invalid("longer than 253 bytes");
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return invalid("empty label");
        }
        if label.len() > 63 {
            return invalid("label longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return invalid("only letters, digits, '-' and '_' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid("label starts or ends with '-'");
        }
    }
    Ok(())
}

/// Configuration of one discovery task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub source: Source,
    /// DNS servers to ask (UDP with TCP fallback). `None`: system configuration (resolv.conf).
    pub servers: Option<Vec<SocketAddr>>,
    /// Lower bound for the refresh interval; also the retry interval after a failure. Must be > 0.
    pub min_ttl: Duration,
    /// Upper bound for the refresh interval. Must be >= `min_ttl`.
    pub max_ttl: Duration,
}

/// One resolution result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// Sorted and deduplicated.
    pub addrs: Vec<SocketAddr>,
    /// Smallest TTL of the records used, clamped to `[min_ttl, max_ttl]`.
    pub valid_for: Duration,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("invalid TTL bounds: need 0 < min_ttl ({min_ttl:?}) <= max_ttl ({max_ttl:?})")]
    InvalidTtlBounds {
        min_ttl: Duration,
        max_ttl: Duration,
    },
    #[error("the explicit DNS server list is empty")]
    NoServers,
    #[error("reading the system DNS configuration failed: {0}")]
    SystemConfig(#[source] NetError),
    #[error("building the DNS resolver failed: {0}")]
    Build(#[source] NetError),
    #[error("discovery must be spawned from within a tokio runtime")]
    NoRuntime,
    #[error("DNS {record_type} lookup for {name:?} failed: {source}")]
    Lookup {
        name: String,
        record_type: RecordType,
        #[source]
        source: NetError,
    },
    #[error("DNS lookup task for an SRV target failed: {0}")]
    TargetTask(#[source] JoinError),
    #[error("DNS returned no usable addresses for {0}")]
    NoMembers(Source),
}

/// Clamp a record TTL to `[min_ttl, max_ttl]`. Never panics: if the bounds are inverted,
/// `min_ttl` wins (never refresh faster than `min_ttl`).
pub(crate) fn clamp_ttl(ttl: Duration, min_ttl: Duration, max_ttl: Duration) -> Duration {
    ttl.min(max_ttl).max(min_ttl)
}

fn check_ttl_bounds(min_ttl: Duration, max_ttl: Duration) -> Result<(), DiscoveryError> {
    if min_ttl.is_zero() || min_ttl > max_ttl {
        return Err(DiscoveryError::InvalidTtlBounds { min_ttl, max_ttl });
    }
    Ok(())
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

/// A resolver builder configured for discovery: `servers` (UDP + TCP fallback, hosts file not
/// consulted) or the system configuration (resolv.conf, including its search list and hosts
/// file), with hickory's response cache disabled. Adjust `options_mut()` (e.g. `timeout`,
/// `attempts`) before `build()` if needed.
pub fn resolver_builder(
    servers: Option<&[SocketAddr]>,
) -> Result<ResolverBuilder<TokioRuntimeProvider>, DiscoveryError> {
    let mut builder = match servers {
        Some([]) => return Err(DiscoveryError::NoServers),
        Some(servers) => {
            let config = ResolverConfig::from_name_servers(
                servers.iter().copied().map(name_server).collect(),
            );
            let mut builder =
                Resolver::builder_with_config(config, TokioRuntimeProvider::default());
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        }
        None => Resolver::builder_tokio().map_err(DiscoveryError::SystemConfig)?,
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    // Leave the TTL bounds unset: hickory would otherwise rewrite the record TTLs we read.
    options.positive_min_ttl = None;
    options.positive_max_ttl = None;
    Ok(builder)
}

/// Addresses and smallest TTL found in some answer sections.
#[derive(Default)]
struct Found {
    ips: Vec<IpAddr>,
    ttl: Option<u32>,
}

impl Found {
    fn add_ttl(&mut self, ttl: u32) {
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }

    fn add_answers(&mut self, answers: &[Record]) {
        for record in answers {
            match &record.data {
                RData::A(a) => self.ips.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => self.ips.push(IpAddr::V6(a.0)),
                RData::CNAME(_) => {}
                _ => continue,
            }
            self.add_ttl(record.ttl);
        }
    }
}

fn lookup_error(name: &str, record_type: RecordType, source: NetError) -> DiscoveryError {
    DiscoveryError::Lookup {
        name: name.to_owned(),
        record_type,
        source,
    }
}

/// A and AAAA of `name`. "No records"/NXDOMAIN gives an empty result. One family failing
/// (a server that refuses AAAA queries, say) leaves the other's answers standing; only when
/// both fail does the lookup fail.
async fn lookup_addrs(resolver: &Resolver, name: &str) -> Result<Found, DiscoveryError> {
    let (v4, v6) = tokio::join!(
        resolver.lookup(name, RecordType::A),
        resolver.lookup(name, RecordType::AAAA)
    );
    let mut found = Found::default();
    let mut failed = None;
    let mut answered = false;
    for (record_type, result) in [(RecordType::A, v4), (RecordType::AAAA, v6)] {
        match result {
            Ok(lookup) => {
                answered = true;
                found.add_answers(lookup.answers());
            }
            Err(e) if e.is_no_records_found() => answered = true,
            Err(e) => {
                tracing::debug!(name, %record_type, error = %e, "DNS lookup of one address family failed");
                failed.get_or_insert_with(|| lookup_error(name, record_type, e));
            }
        }
    }
    match failed {
        Some(e) if !answered => Err(e),
        _ => Ok(found),
    }
}

async fn resolve_srv(
    resolver: &Resolver,
    name: &str,
) -> Result<(Vec<SocketAddr>, Option<u32>), DiscoveryError> {
    let lookup = match resolver.lookup(name, RecordType::SRV).await {
        Ok(lookup) => lookup,
        Err(e) if e.is_no_records_found() => return Ok((Vec::new(), None)),
        Err(e) => return Err(lookup_error(name, RecordType::SRV, e)),
    };
    let mut srv_found = Found::default();
    let mut targets: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for record in lookup.answers() {
        match &record.data {
            // A target of "." means "service not available here" (RFC 2782).
            RData::SRV(srv) if !srv.target.is_root() => targets
                .entry(srv.target.to_ascii())
                .or_default()
                .push(srv.port),
            RData::SRV(_) | RData::CNAME(_) => {}
            _ => continue,
        }
        srv_found.add_ttl(record.ttl);
    }

    let mut lookups = JoinSet::new();
    for (target, ports) in targets {
        let resolver = resolver.clone();
        lookups.spawn(async move {
            let found = lookup_addrs(&resolver, &target).await;
            (target, ports, found)
        });
    }
    let mut addrs = Vec::new();
    let mut ttl = srv_found.ttl;
    while let Some(joined) = lookups.join_next().await {
        let (target, ports, found) = joined.map_err(DiscoveryError::TargetTask)?;
        // A transport error on any target fails the whole refresh (the last good list is kept);
        // a target that authoritatively has no addresses is skipped.
        let found = found?;
        if found.ips.is_empty() {
            tracing::warn!(
                srv = name,
                target,
                "SRV target has no A/AAAA records; skipped"
            );
            continue;
        }
        if let Some(t) = found.ttl {
            ttl = Some(ttl.map_or(t, |cur| cur.min(t)));
        }
        for ip in found.ips {
            addrs.extend(ports.iter().map(|&port| SocketAddr::new(ip, port)));
        }
    }
    Ok((addrs, ttl))
}

/// Resolve `source` once. The result's `valid_for` is the smallest TTL of all records used
/// (SRV, CNAME, A, AAAA), clamped with [`clamp_ttl`]. An empty result is an error
/// ([`DiscoveryError::NoMembers`]), so a broken zone never empties the cluster.
///
/// With a resolver not built by [`resolver_builder`], answers may come from hickory's cache.
pub async fn resolve(
    resolver: &Resolver,
    source: &Source,
    min_ttl: Duration,
    max_ttl: Duration,
) -> Result<Members, DiscoveryError> {
    let (mut addrs, ttl) = match source {
        Source::Dns { name, port } => {
            let found = lookup_addrs(resolver, name).await?;
            let addrs = found
                .ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, *port))
                .collect();
            (addrs, found.ttl)
        }
        Source::Srv { name } => resolve_srv(resolver, name).await?,
    };
    if addrs.is_empty() {
        return Err(DiscoveryError::NoMembers(source.clone()));
    }
    addrs.sort_unstable();
    addrs.dedup();
    let ttl = Duration::from_secs(u64::from(ttl.unwrap_or(0)));
    Ok(Members {
        addrs,
        valid_for: clamp_ttl(ttl, min_ttl, max_ttl),
    })
}

/// Handle to a running discovery task. Dropping it stops the task.
#[derive(Debug)]
pub struct DiscoveryHandle {
    /// Current member list (sorted, deduplicated). Empty until the first successful
    /// resolution; only changed lists are sent.
    pub members: watch::Receiver<Vec<SocketAddr>>,
    /// Number of successful resolutions.
    pub refreshes: Counter,
    /// Number of failed resolutions.
    pub failures: Counter,
    task: JoinHandle<()>,
}

impl Drop for DiscoveryHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawn a discovery task on the current tokio runtime, with a resolver built by
/// [`resolver_builder`] from `config.servers`.
pub fn spawn(config: DiscoveryConfig) -> Result<DiscoveryHandle, DiscoveryError> {
    spawn_counting(config, Counter::default(), Counter::default())
}

/// Like [`spawn`], counting refreshes and failures on the caller's (exported) counters.
pub(crate) fn spawn_counting(
    config: DiscoveryConfig,
    refreshes: Counter,
    failures: Counter,
) -> Result<DiscoveryHandle, DiscoveryError> {
    check_ttl_bounds(config.min_ttl, config.max_ttl)?;
    tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
    let resolver = resolver_builder(config.servers.as_deref())?
        .build()
        .map_err(DiscoveryError::Build)?;
    let bounds = (config.min_ttl, config.max_ttl);
    start(resolver, config.source, bounds, refreshes, failures)
}

/// Like [`spawn`], with a caller-built resolver. The task clears that resolver's cache before
/// every refresh, so give it its own resolver (not a process-wide one).
pub fn spawn_with_resolver(
    resolver: Resolver,
    source: Source,
    min_ttl: Duration,
    max_ttl: Duration,
) -> Result<DiscoveryHandle, DiscoveryError> {
    let counters = (Counter::default(), Counter::default());
    start(resolver, source, (min_ttl, max_ttl), counters.0, counters.1)
}

fn start(
    resolver: Resolver,
    source: Source,
    (min_ttl, max_ttl): (Duration, Duration),
    refreshes: Counter,
    failures: Counter,
) -> Result<DiscoveryHandle, DiscoveryError> {
    check_ttl_bounds(min_ttl, max_ttl)?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
    let (tx, members) = watch::channel(Vec::new());
    let task = runtime.spawn(run(
        resolver,
        source,
        min_ttl,
        max_ttl,
        tx,
        refreshes.clone(),
        failures.clone(),
    ));
    Ok(DiscoveryHandle {
        members,
        refreshes,
        failures,
        task,
    })
}

async fn run(
    resolver: Resolver,
    source: Source,
    min_ttl: Duration,
    max_ttl: Duration,
    tx: watch::Sender<Vec<SocketAddr>>,
    refreshes: Counter,
    failures: Counter,
) {
    loop {
        resolver.clear_cache();
        let wait = match resolve(&resolver, &source, min_ttl, max_ttl).await {
            Ok(Members { addrs, valid_for }) => {
                let count = addrs.len();
                // Count first, so whoever sees the new list also sees it counted.
                refreshes.inc();
                let changed = tx.send_if_modified(|current| {
                    if *current == addrs {
                        false
                    } else {
                        *current = addrs;
                        true
                    }
                });
                if changed {
                    tracing::info!(%source, members = count, next_in = ?valid_for, "DNS address list changed");
                } else {
                    tracing::debug!(%source, members = count, next_in = ?valid_for, "DNS address list unchanged");
                }
                valid_for
            }
            Err(error) => {
                let total = failures.inc() + 1;
                tracing::warn!(%source, %error, failures = total, retry_in = ?min_ttl,
                    "DNS refresh failed; keeping the last good address list");
                min_ttl
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn clamp_ttl_bounds() {
        let (min, max) = (S(5), S(300));
        assert_eq!(
            clamp_ttl(S(0), min, max),
            S(5),
            "TTL 0 must not refresh faster than min"
        );
        assert_eq!(
            clamp_ttl(S(86_400), min, max),
            S(300),
            "1 day must refresh by max"
        );
        assert_eq!(clamp_ttl(S(60), min, max), S(60));
        assert_eq!(clamp_ttl(S(5), min, max), S(5));
        assert_eq!(clamp_ttl(S(300), min, max), S(300));
        assert_eq!(clamp_ttl(S(1), S(1), S(1)), S(1));
        // Inverted bounds do not panic; min wins.
        assert_eq!(clamp_ttl(S(60), S(10), S(2)), S(10));
    }

    #[test]
    fn ttl_bounds_are_validated() {
        assert!(check_ttl_bounds(S(5), S(300)).is_ok());
        assert!(check_ttl_bounds(S(1), S(1)).is_ok());
        assert!(check_ttl_bounds(S(0), S(300)).is_err());
        assert!(check_ttl_bounds(S(10), S(2)).is_err());
    }

    #[test]
    fn source_from_str_table() {
        let dns = |name: &str, port| {
            Ok(Source::Dns {
                name: name.to_owned(),
                port,
            })
        };
        let srv = |name: &str| {
            Ok(Source::Srv {
                name: name.to_owned(),
            })
        };
        let bad_name = |name: &str, reason| {
            Err(SourceError::InvalidName {
                name: name.to_owned(),
                reason,
            })
        };
        let cases: Vec<(&str, Result<Source, SourceError>)> = vec![
            ("dns:edge.internal:8080", dns("edge.internal", 8080)),
            ("dns:edge.internal.:1", dns("edge.internal.", 1)),
            ("dns:localhost:65535", dns("localhost", 65535)),
            (
                "dns+srv:_outpost._tcp.edge.internal",
                srv("_outpost._tcp.edge.internal"),
            ),
            (
                "dns:edge.internal",
                Err(SourceError::MissingPort("edge.internal".into())),
            ),
            ("dns:", Err(SourceError::MissingPort(String::new()))),
            (
                "dns:edge.internal:",
                Err(SourceError::InvalidPort(String::new())),
            ),
            (
                "dns:edge.internal:99999",
                Err(SourceError::InvalidPort("99999".into())),
            ),
            (
                "dns:edge.internal:0",
                Err(SourceError::InvalidPort("0".into())),
            ),
            (
                "dns:edge.internal:http",
                Err(SourceError::InvalidPort("http".into())),
            ),
            (
                "dns:edge.internal:-1",
                Err(SourceError::InvalidPort("-1".into())),
            ),
            ("dns::8080", bad_name("", "empty name")),
            ("dns:a..b:8080", bad_name("a..b", "empty label")),
            (
                "dns:[::1]:8080",
                bad_name("[::1]", "only letters, digits, '-' and '_' are allowed"),
            ),
            (
                "dns:-a.b:8080",
                bad_name("-a.b", "label starts or ends with '-'"),
            ),
            (
                "dns:edge internal:8080",
                bad_name(
                    "edge internal",
                    "only letters, digits, '-' and '_' are allowed",
                ),
            ),
            ("dns+srv:", bad_name("", "empty name")),
            (
                "dns+srv:_outpost._tcp.edge.internal:8080",
                bad_name(
                    "_outpost._tcp.edge.internal:8080",
                    "only letters, digits, '-' and '_' are allowed",
                ),
            ),
            (
                "http:edge.internal:8080",
                Err(SourceError::UnknownScheme("http".into())),
            ),
            (
                "DNS:edge.internal:8080",
                Err(SourceError::UnknownScheme("DNS".into())),
            ),
            (
                "edge.internal",
                Err(SourceError::MissingScheme("edge.internal".into())),
            ),
            ("", Err(SourceError::MissingScheme(String::new()))),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Source>(), expected, "input {input:?}");
        }
        let long = format!("dns:{}:80", "a".repeat(64));
        assert!(matches!(
            long.parse::<Source>(),
            Err(SourceError::InvalidName {
                reason: "label longer than 63 bytes",
                ..
            })
        ));
    }

    #[test]
    fn source_display_round_trips() {
        for s in [
            "dns:edge.internal:8080",
            "dns+srv:_outpost._tcp.edge.internal",
        ] {
            let parsed: Source = s.parse().expect("valid source");
            assert_eq!(parsed.to_string(), s);
        }
    }

    #[test]
    fn spawn_outside_runtime_is_an_error_not_a_panic() {
        let config = DiscoveryConfig {
            source: Source::Dns {
                name: "edge.internal".into(),
                port: 8080,
            },
            servers: None,
            min_ttl: S(5),
            max_ttl: S(300),
        };
        assert!(matches!(spawn(config), Err(DiscoveryError::NoRuntime)));
    }

    #[test]
    fn empty_server_list_is_rejected() {
        assert!(matches!(
            resolver_builder(Some(&[])),
            Err(DiscoveryError::NoServers)
        ));
    }
}
