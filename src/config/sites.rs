//! `[[site]]` tables → [`SiteConfig`]s.
//!
//! A request is routed by its host, so the checks that matter most here
//! are global: at least one site, and no host pattern claimed twice
//! (which site would win would otherwise depend on file order). Origin URLs
//! are parsed once into scheme + authority so the node never has to
//! re-validate them; a path is refused because requests are forwarded with
//! their own path, and silently dropping a configured one would surprise.

use std::collections::HashMap;

use http::Uri;
use http::uri::Scheme;
use toml::Spanned;

use crate::config::ctx::{Ctx, check_name, timeout};
use crate::config::error::ConfigError;
use crate::config::file::*;
use crate::config::hosts::HostPattern;
use crate::config::site_cache::{cache_key, site_cache};
use std::time::Duration;

use crate::config::{
    Balance, ClusterConfig, HealthCheck, Http2, ListenConfig, OriginConfig, OriginServer,
    OriginTls, SiteConfig,
};
use std::net::SocketAddr;

/// Where each host pattern and site name was first seen, for duplicates.
#[derive(Default)]
struct Seen {
    hosts: HashMap<HostPattern, String>,
    names: HashMap<String, usize>,
}

pub(crate) fn sites(files: &[SiteFile], cx: &Ctx<'_>) -> Result<Vec<SiteConfig>, ConfigError> {
    if files.is_empty() {
        let message = "at least one [[site]] table (with hosts and origin) is required";
        return Err(cx.invalid(0..0, "site", message));
    }
    let mut seen = Seen::default();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| site(i, f, &mut seen, cx))
        .collect()
}

fn site(i: usize, f: &SiteFile, seen: &mut Seen, cx: &Ctx<'_>) -> Result<SiteConfig, ConfigError> {
    let hosts = hosts(i, &f.hosts, seen, cx)?;
    let (name, span, key) = match (&f.name, hosts.first()) {
        (Some(name), _) => {
            let key = format!("site[{i}].name");
            (check_name(name, &key, cx)?, name.span(), key)
        }
        (None, Some(first)) => (
            first.as_written(),
            first_span(&f.hosts),
            format!("site[{i}].hosts[0]"),
        ),
        (None, None) => (String::new(), f.hosts.span(), format!("site[{i}].hosts")),
    };
    if let Some(first) = seen.names.insert(name.clone(), i) {
        let message = format!("site name {name:?} is already used by site[{first}]");
        return Err(cx.invalid(span, &key, message));
    }
    let origin = origin(i, &f.origin, cx)?;
    let cache = site_cache(&f.cache, &format!("site[{i}].cache"), cx)?;
    let compress = crate::config::compress::compress(f, &format!("site[{i}]"), cx)?;
    let max_request_body = match &f.max_request_body {
        Some(v) if v.get_ref().0 == 0 => {
            let key = format!("site[{i}].max_request_body");
            return Err(cx.invalid(v.span(), &key, "must be greater than zero"));
        }
        Some(v) => v.get_ref().0,
        None => DEFAULT_MAX_REQUEST_BODY,
    };
    let cache_key = cache_key(&f.cache_key, &format!("site[{i}].cache_key"), cx)?;
    let request_buffering = f
        .request_buffering
        .map_or(DEFAULT_REQUEST_BUFFERING, |b| b.0)
        .min(max_request_body);
    let shield = match &f.shield {
        Some(list) => shields(list.get_ref(), &format!("site[{i}].shield"), cx)?,
        None => Vec::new(),
    };
    let request_body_timeout = timeout(
        &f.request_body_timeout,
        DEFAULT_REQUEST_BODY_TIMEOUT,
        &format!("site[{i}].request_body_timeout"),
        cx,
    )?;
    Ok(SiteConfig {
        name,
        hosts,
        origin,
        max_request_body,
        request_buffering,
        request_body_timeout,
        shield,
        request_body_min_rate: f
            .request_body_min_rate
            .map_or(DEFAULT_REQUEST_BODY_MIN_RATE, |r| r.0),
        cache,
        cache_key,
        compress,
    })
}

/// `shield = ["http://IP:PORT", ...]`: Outpost nodes of the parent tier.
fn shields(
    list: &[Spanned<String>],
    key: &str,
    cx: &Ctx<'_>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for (j, raw) in list.iter().enumerate() {
        let here = format!("{key}[{j}]");
        let addr = parse_shield(raw.get_ref()).map_err(|e| cx.invalid(raw.span(), &here, e))?;
        if addrs.contains(&addr) {
            let message = format!("{:?} is listed twice", raw.get_ref());
            return Err(cx.invalid(raw.span(), &here, message));
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

/// `http://IP:PORT[/]`, the http listener of another Outpost node.
fn parse_shield(s: &str) -> Result<SocketAddr, String> {
    let form = "write it as http://IP:PORT, the http listener of an Outpost node";
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("{s:?} is not a valid URL ({e}); {form}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{s:?}: shield hops are plain HTTP, like peer hops (signed, not encrypted); \
                 https shields are not supported, {form} over a private network or a tunnel"
            ));
        }
        Some(other) => return Err(format!("unsupported scheme {other:?} in {s:?}; {form}")),
        None => return Err(format!("{s:?} has no scheme; {form}")),
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!("{s:?} has a path; {form}"));
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let with_port = if uri.port_u16().is_some() {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    with_port.parse().map_err(|_| {
        format!("{s:?} is not an IP address and port (host names are not resolved); {form}")
    })
}

/// Shields need the cluster secret (their hops are signed) and must be neither this node nor
/// a member of its cluster.
pub(crate) fn check_shields(
    files: &[SiteFile],
    sites: &[SiteConfig],
    cluster: Option<&ClusterConfig>,
    listen: &ListenConfig,
    cx: &Ctx<'_>,
) -> Result<(), ConfigError> {
    for (i, (file, site)) in files.iter().zip(sites).enumerate() {
        let Some(list) = &file.shield else { continue };
        let Some(cluster) = cluster else {
            if site.shield.is_empty() {
                continue;
            }
            let message = "a shield needs a [cluster] table with the secret shield hops are \
                           signed with (a node without peers is a cluster of one)";
            return Err(cx.invalid(list.span(), &format!("site[{i}].shield"), message));
        };
        for (j, (raw, addr)) in list.get_ref().iter().zip(&site.shield).enumerate() {
            if *addr == cluster.advertise || listen.http.contains(addr) {
                let message = format!(
                    "{:?} is this node's own listener: a node cannot be its own shield",
                    raw.get_ref()
                );
                return Err(cx.invalid(raw.span(), &format!("site[{i}].shield[{j}]"), message));
            }
            if let crate::config::Members::Static(peers) = &cluster.members
                && peers.contains(addr)
            {
                let message = format!(
                    "{:?} is a member of this node's own cluster ([cluster] peers): a shield \
                     is the tier above the cluster, and a member would route its keys back",
                    raw.get_ref()
                );
                return Err(cx.invalid(raw.span(), &format!("site[{i}].shield[{j}]"), message));
            }
        }
    }
    Ok(())
}

fn first_span(list: &SpannedList) -> std::ops::Range<usize> {
    list.get_ref().first().map_or(list.span(), Spanned::span)
}

fn hosts(
    i: usize,
    list: &SpannedList,
    seen: &mut Seen,
    cx: &Ctx<'_>,
) -> Result<Vec<HostPattern>, ConfigError> {
    if list.get_ref().is_empty() {
        return Err(cx.invalid(
            list.span(),
            &format!("site[{i}].hosts"),
            "must list at least one host",
        ));
    }
    let mut patterns = Vec::with_capacity(list.get_ref().len());
    for (j, raw) in list.get_ref().iter().enumerate() {
        let key = format!("site[{i}].hosts[{j}]");
        let pattern =
            HostPattern::parse(raw.get_ref()).map_err(|e| cx.invalid(raw.span(), &key, e))?;
        if let Some(first) = seen.hosts.get(&pattern) {
            let message = format!(
                "host {:?} is already listed at {first}",
                pattern.as_written()
            );
            return Err(cx.invalid(raw.span(), &key, message));
        }
        seen.hosts.insert(pattern.clone(), key);
        patterns.push(pattern);
    }
    Ok(patterns)
}

fn origin(i: usize, f: &Spanned<OriginFile>, cx: &Ctx<'_>) -> Result<OriginConfig, ConfigError> {
    let prefix = format!("site[{i}].origin");
    let table = match f.get_ref() {
        OriginFile::Servers(list) => {
            let servers = servers(list, f.span(), &prefix, cx)?;
            return Ok(defaults(servers));
        }
        OriginFile::Table(table) => table,
    };
    let key = |name: &str| format!("{prefix}.{name}");
    let servers_list = table.servers.get_ref();
    let servers = servers(servers_list, table.servers.span(), &key("servers"), cx)?;
    let time = |v, default, name| timeout(v, default, &key(name), cx);
    Ok(OriginConfig {
        servers,
        connect_timeout: time(
            &table.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
            "connect_timeout",
        )?,
        first_byte_timeout: time(
            &table.first_byte_timeout,
            DEFAULT_FIRST_BYTE_TIMEOUT,
            "first_byte_timeout",
        )?,
        idle_timeout: time(
            &table.idle_timeout,
            DEFAULT_ORIGIN_IDLE_TIMEOUT,
            "idle_timeout",
        )?,
        max_idle_per_server: table
            .max_idle_per_server
            .unwrap_or(DEFAULT_MAX_IDLE_PER_SERVER),
        max_connections: match &table.max_connections {
            Some(v) if *v.get_ref() == 0 => {
                return Err(cx.invalid(v.span(), &key("max_connections"), "must be at least 1"));
            }
            Some(v) => *v.get_ref(),
            None => DEFAULT_ORIGIN_MAX_CONNECTIONS,
        },
        queue: table.queue.unwrap_or(DEFAULT_QUEUE),
        queue_timeout: time(&table.queue_timeout, DEFAULT_QUEUE_TIMEOUT, "queue_timeout")?,
        http2: http2(&table.http2, &key("http2"), cx)?,
        balance: balance(&table.balance, &key("balance"), cx)?,
        retries: table.retries.as_ref().map_or(1, |r| *r.get_ref()),
        health: match &table.health {
            Some(h) => health(h, &key("health"), cx)?,
            None => None,
        },
        passive_statuses: match &table.health {
            Some(h) => passive_statuses(h, &key("health.passive_statuses"), cx)?,
            None => Vec::new(),
        },
        tls: origin_tls(&table.tls, &key("tls"), cx)?,
    })
}

fn defaults(servers: Vec<OriginServer>) -> OriginConfig {
    OriginConfig {
        servers,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
        idle_timeout: DEFAULT_ORIGIN_IDLE_TIMEOUT,
        max_idle_per_server: DEFAULT_MAX_IDLE_PER_SERVER,
        max_connections: DEFAULT_ORIGIN_MAX_CONNECTIONS,
        queue: DEFAULT_QUEUE,
        queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        http2: Http2::Auto,
        balance: Balance::RoundRobin,
        retries: 1,
        health: None,
        passive_statuses: Vec::new(),
        tls: OriginTls::default(),
    }
}

fn servers(
    list: &[Spanned<String>],
    span: std::ops::Range<usize>,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<Vec<OriginServer>, ConfigError> {
    if list.is_empty() {
        return Err(cx.invalid(span, key, "must list at least one origin server"));
    }
    let mut servers: Vec<OriginServer> = Vec::with_capacity(list.len());
    for (j, raw) in list.iter().enumerate() {
        let here = format!("{key}[{j}]");
        let server = parse_origin(raw.get_ref()).map_err(|e| cx.invalid(raw.span(), &here, e))?;
        let same = |s: &OriginServer| s.scheme == server.scheme && s.authority == server.authority;
        if servers.iter().any(same) {
            return Err(cx.invalid(
                raw.span(),
                &here,
                format!("{:?} is listed twice", raw.get_ref()),
            ));
        }
        servers.push(server);
    }
    Ok(servers)
}

/// `http://host[:port][/]` or `https://…`; nothing else.
pub(crate) fn parse_origin(s: &str) -> Result<OriginServer, String> {
    let forms = "write it as http://host[:port] or https://host[:port]";
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("{s:?} is not a valid URL ({e}); {forms}"))?;
    let parts = uri.into_parts();
    let scheme = parts
        .scheme
        .ok_or_else(|| format!("{s:?} has no scheme; {forms}"))?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!(
            "unsupported scheme \"{scheme}\" in {s:?}; only http and https are supported"
        ));
    }
    let authority = parts.authority.filter(|a| !a.host().is_empty());
    let authority = authority.ok_or_else(|| format!("{s:?} has no host; {forms}"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?} must not contain credentials"));
    }
    let after_host = authority
        .as_str()
        .strip_prefix(authority.host())
        .unwrap_or_default();
    if !after_host.is_empty() && authority.port_u16().is_none_or(|p| p == 0) {
        return Err(format!("{s:?} has an invalid port (use 1-65535)"));
    }
    let path_ok = parts
        .path_and_query
        .as_ref()
        .is_none_or(|pq| matches!(pq.as_str(), "" | "/"));
    if !path_ok || s.contains('#') {
        let why = "must not have a path, query or fragment (requests keep their own path)";
        return Err(format!("{s:?} {why}; {forms}"));
    }
    Ok(OriginServer { scheme, authority })
}

fn balance(f: &Option<Spanned<String>>, key: &str, cx: &Ctx<'_>) -> Result<Balance, ConfigError> {
    Ok(match f.as_ref().map(|b| (b, b.get_ref().as_str())) {
        None | Some((_, "round_robin")) => Balance::RoundRobin,
        Some((_, "least_requests")) => Balance::LeastRequests,
        Some((_, "random")) => Balance::Random,
        Some((_, "hash")) => Balance::Hash,
        Some((b, other)) => {
            let message = format!(
                "{other:?} is not one of \"round_robin\", \"least_requests\", \"random\", \"hash\""
            );
            return Err(cx.invalid(b.span(), key, message));
        }
    })
}

fn http2(f: &Option<Spanned<String>>, key: &str, cx: &Ctx<'_>) -> Result<Http2, ConfigError> {
    Ok(match f.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "auto")) => Http2::Auto,
        Some((_, "always")) => Http2::Always,
        Some((_, "never")) => Http2::Never,
        Some((v, other)) => {
            let message = format!("{other:?} is not one of \"auto\", \"always\", \"never\"");
            return Err(cx.invalid(v.span(), key, message));
        }
    })
}

/// The active probe of `health`; `None` without a `path` (passive health only).
fn health(f: &HealthFile, prefix: &str, cx: &Ctx<'_>) -> Result<Option<HealthCheck>, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let Some(path) = &f.path else {
        let probe_keys = [
            (f.interval.as_ref().map(Spanned::span), "interval"),
            (f.timeout.as_ref().map(Spanned::span), "timeout"),
            (f.rise.as_ref().map(Spanned::span), "rise"),
            (f.fall.as_ref().map(Spanned::span), "fall"),
        ];
        if let Some((Some(span), name)) = probe_keys.into_iter().find(|(span, _)| span.is_some()) {
            let message = "applies to active probes only: set `path` too";
            return Err(cx.invalid(span, &key(name), message));
        }
        return Ok(None);
    };
    let parsed = path
        .get_ref()
        .parse::<http::uri::PathAndQuery>()
        .ok()
        .filter(|p| p.as_str().starts_with('/'))
        .ok_or_else(|| {
            let message = format!("{:?} is not a path like \"/health\"", path.get_ref());
            cx.invalid(path.span(), &key("path"), message)
        })?;
    let count = |v: &Option<Spanned<u32>>, default: u32, name: &str| match v {
        Some(v) if *v.get_ref() == 0 => Err(cx.invalid(v.span(), &key(name), "must be at least 1")),
        Some(v) => Ok(*v.get_ref()),
        None => Ok(default),
    };
    Ok(Some(HealthCheck {
        path: parsed,
        interval: timeout(&f.interval, Duration::from_secs(5), &key("interval"), cx)?,
        timeout: timeout(&f.timeout, Duration::from_secs(1), &key("timeout"), cx)?,
        rise: count(&f.rise, 2, "rise")?,
        fall: count(&f.fall, 3, "fall")?,
    }))
}

/// `health.passive_statuses`: server errors (500-599) that count against a server like a
/// connect failure.
fn passive_statuses(
    f: &HealthFile,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<Vec<http::StatusCode>, ConfigError> {
    let mut statuses = Vec::new();
    for v in f.passive_statuses.iter().flatten() {
        let status = http::StatusCode::from_u16(*v.get_ref())
            .ok()
            .filter(http::StatusCode::is_server_error)
            .ok_or_else(|| {
                let message = format!("{} is not a server error status (500-599)", v.get_ref());
                cx.invalid(v.span(), key, message)
            })?;
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    Ok(statuses)
}

fn origin_tls(f: &OriginTlsFile, prefix: &str, cx: &Ctx<'_>) -> Result<OriginTls, ConfigError> {
    let ca = match &f.ca {
        Some(path) => Some(cx.existing_file(path, &format!("{prefix}.ca"))?),
        None => None,
    };
    let sni = match &f.sni {
        Some(v) => match HostPattern::parse(v.get_ref()) {
            Ok(HostPattern::Exact(name)) if !name.starts_with('[') => Some(name),
            _ => {
                let message = format!(
                    "{:?} is not a DNS name like \"origin.example.com\"",
                    v.get_ref()
                );
                return Err(cx.invalid(v.span(), &format!("{prefix}.sni"), message));
            }
        },
        None => None,
    };
    Ok(OriginTls {
        ca,
        sni,
        verify: f.verify.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls() {
        let ok = [
            ("http://127.0.0.1:8000", "http", "127.0.0.1:8000"),
            ("https://origin.example.com", "https", "origin.example.com"),
            (
                "https://origin.example.com:8443/",
                "https",
                "origin.example.com:8443",
            ),
            ("http://[::1]:80", "http", "[::1]:80"),
            ("HTTP://Example.com", "http", "Example.com"),
        ];
        for (input, scheme, authority) in ok {
            let server = parse_origin(input).expect(input);
            assert_eq!(server.scheme.as_str(), scheme, "{input}");
            assert_eq!(server.authority.as_str(), authority, "{input}");
        }
    }

    #[test]
    fn bad_origin_urls() {
        let bad = [
            ("ftp://x", "unsupported scheme"),
            ("127.0.0.1:8000", "no scheme"),
            ("origin.example.com", "no scheme"),
            ("/path", "no scheme"),
            ("http://x/app", "must not have a path"),
            ("http://x/?a=1", "must not have a path"),
            ("http://x?a=1", "must not have a path"),
            ("http://x#frag", "fragment"),
            ("http://user:pw@x", "credentials"),
            ("http://x:0", "invalid port"),
            ("http://x:", "invalid port"),
            ("http://[::1]:x", "invalid port"),
            ("http://x:abc", "invalid port"),
            ("http://x:65536", "invalid port"),
            ("http://", "not a valid URL"),
            ("", "not a valid URL"),
            ("http://exa mple", "not a valid URL"),
        ];
        for (input, want) in bad {
            let err = parse_origin(input).map(|_| ()).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
