//! File structs → [`Config`]: defaults, ranges, cross-checks, file checks.
//!
//! This is the only place defaults are applied and limits enforced, so the
//! node can trust every field of [`Config`]. Each check reports the first
//! problem it finds at the offending value's span with its full key path;
//! a value that is absent and defaulted can only be blamed through the
//! key it conflicts with. Sites live in `sites.rs`, the cluster and DNS in
//! `cluster.rs`, and what they all share in `ctx.rs`.

use std::net::SocketAddr;

use toml::Spanned;

use crate::config::ctx::{Ctx, check_name, socket_addr, timeout};
use crate::config::error::ConfigError;
use crate::config::file::*;
use crate::config::units::ByteSize;
use crate::config::{
    AccessLog, AdminConfig, CacheConfig, CertificateFiles, Config, ListenConfig, LogConfig,
    NodeConfig, TlsConfig,
};

pub(crate) fn validate(file: FileConfig, cx: &Ctx<'_>) -> Result<Config, ConfigError> {
    let node = node(&file.node, cx)?;
    let tls = tls(&file.tls, cx)?;
    let listen = listen(&file.listen, !tls.certificates.is_empty(), cx)?;
    let admin = admin(&file.admin, &listen, cx)?;
    let cache = cache(&file.cache, cx)?;
    let sites = crate::config::sites::sites(&file.sites, cx)?;
    let cluster = match &file.cluster {
        Some(f) => Some(crate::config::cluster::cluster(f, cx)?),
        None => None,
    };
    let dns = crate::config::cluster::dns(&file.dns, cx)?;
    crate::config::sites::check_shields(&file.sites, &sites, cluster.as_ref(), &listen, cx)?;
    let log = log(&file.log, cx)?;
    let steering = crate::config::steering::steering(file.steering.as_ref(), &file.regions, cx)?;
    Ok(Config {
        log,
        node,
        listen,
        tls,
        admin,
        cache,
        sites,
        cluster,
        dns,
        steering,
    })
}

fn log(f: &LogFile, cx: &Ctx<'_>) -> Result<LogConfig, ConfigError> {
    let level = match &f.level {
        Some(v) => {
            if tracing_subscriber::EnvFilter::try_new(v.get_ref()).is_err() {
                let message = format!(
                    "{:?} is not a log filter (try \"info\", \"warn\" or \"info,outpost=debug\")",
                    v.get_ref()
                );
                return Err(cx.invalid(v.span(), "log.level", message));
            }
            v.get_ref().clone()
        }
        None => "info".to_owned(),
    };
    let access = match f.access.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "off")) => AccessLog::Off,
        Some((_, "json")) => AccessLog::Json,
        Some((_, "combined")) => AccessLog::Combined,
        Some((v, other)) => {
            let message = format!("{other:?} is not one of \"off\", \"json\", \"combined\"");
            return Err(cx.invalid(v.span(), "log.access", message));
        }
    };
    Ok(LogConfig { level, access })
}

fn node(f: &NodeFile, cx: &Ctx<'_>) -> Result<NodeConfig, ConfigError> {
    let name = match &f.name {
        Some(name) => check_name(name, "node.name", cx)?,
        None => DEFAULT_NODE_NAME.to_owned(),
    };
    let region = match &f.region {
        Some(region) => Some(check_name(region, "node.region", cx)?),
        None => None,
    };
    Ok(NodeConfig { name, region })
}

fn tls(f: &TlsFile, cx: &Ctx<'_>) -> Result<TlsConfig, ConfigError> {
    let mut certificates = Vec::with_capacity(f.certificates.len());
    for (i, c) in f.certificates.iter().enumerate() {
        let cert = cx.existing_file(&c.cert, &format!("tls.certificates[{i}].cert"))?;
        let key = cx.existing_file(&c.key, &format!("tls.certificates[{i}].key"))?;
        certificates.push(CertificateFiles { cert, key });
    }
    Ok(TlsConfig { certificates })
}

fn listen(f: &ListenFile, has_certs: bool, cx: &Ctx<'_>) -> Result<ListenConfig, ConfigError> {
    let (http, https) = listen_addresses(f, has_certs, cx)?;
    let quic = quic_addresses(f, has_certs, cx)?;
    Ok(ListenConfig {
        http,
        https,
        quic,
        header_read_timeout: timeout(
            &f.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
            "listen.header_read_timeout",
            cx,
        )?,
        idle_timeout: timeout(
            &f.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            "listen.idle_timeout",
            cx,
        )?,
        max_header_bytes: max_header_bytes(f, cx)?,
        max_headers: count(
            &f.max_headers,
            DEFAULT_MAX_HEADERS,
            "listen.max_headers",
            cx,
        )?,
        max_connections: count(
            &f.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            "listen.max_connections",
            cx,
        )?,
        max_connections_per_client: f
            .max_connections_per_client
            .as_ref()
            .map_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT, |v| *v.get_ref()),
        shutdown_timeout: timeout(
            &f.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
            "listen.shutdown_timeout",
            cx,
        )?,
    })
}

fn max_header_bytes(f: &ListenFile, cx: &Ctx<'_>) -> Result<usize, ConfigError> {
    let bytes = size(&f.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
    if let Some(v) = f
        .max_header_bytes
        .as_ref()
        .filter(|_| bytes < MIN_MAX_HEADER_BYTES)
    {
        let message = format!(
            "{} is too small; the minimum is 8KiB (the smallest request buffer the HTTP/1 parser accepts)",
            v.get_ref()
        );
        return Err(cx.invalid(v.span(), "listen.max_header_bytes", message));
    }
    // Only a 32-bit node could clamp here, and nothing that large fits in
    // its memory anyway.
    Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
}

/// `http` defaults to 127.0.0.1:8080 only when neither list is given.
fn listen_addresses(
    f: &ListenFile,
    has_certs: bool,
    cx: &Ctx<'_>,
) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), ConfigError> {
    let lists = [
        (f.http.as_ref(), "listen.http"),
        (f.https.as_ref(), "listen.https"),
    ];
    let http = match lists {
        [(None, _), (None, _)] => vec![DEFAULT_HTTP_LISTEN],
        _ => addresses(f.http.as_ref(), "listen.http", cx)?,
    };
    let https = addresses(f.https.as_ref(), "listen.https", cx)?;
    let given = lists
        .iter()
        .find_map(|(list, key)| list.map(|l| (l.span(), *key)));
    let quic = f.quic.as_ref().is_some_and(|l| !l.get_ref().is_empty());
    if let (true, true, false, Some((span, key))) = (http.is_empty(), https.is_empty(), quic, given)
    {
        let message =
            "no listeners: give at least one address in listen.http, listen.https or listen.quic";
        return Err(cx.invalid(span, key, message));
    }
    if let (false, false, Some(list)) = (https.is_empty(), has_certs, &f.https) {
        let message = "HTTPS listeners need at least one [[tls.certificates]] entry";
        return Err(cx.invalid(list.span(), "listen.https", message));
    }
    no_duplicates(&lists, cx)?;
    Ok((http, https))
}

/// `listen.quic`: UDP, so the same address as an HTTPS (TCP) listener is the usual setup.
fn quic_addresses(
    f: &ListenFile,
    has_certs: bool,
    cx: &Ctx<'_>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let quic = addresses(f.quic.as_ref(), "listen.quic", cx)?;
    if let (false, false, Some(list)) = (quic.is_empty(), has_certs, &f.quic) {
        let message = "QUIC listeners need at least one [[tls.certificates]] entry";
        return Err(cx.invalid(list.span(), "listen.quic", message));
    }
    no_duplicates(&[(f.quic.as_ref(), "listen.quic")], cx)?;
    Ok(quic)
}

fn addresses(
    list: Option<&SpannedList>,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let items = list.map_or(&[][..], |l| l.get_ref().as_slice());
    items
        .iter()
        .enumerate()
        .map(|(i, item)| socket_addr(item, &format!("{key}[{i}]"), cx))
        .collect()
}

/// The same address twice cannot be bound; blame the second occurrence.
fn no_duplicates(lists: &[(Option<&SpannedList>, &str)], cx: &Ctx<'_>) -> Result<(), ConfigError> {
    let mut seen: Vec<(SocketAddr, String)> = Vec::new();
    for (list, key) in lists {
        for (i, item) in list
            .map_or(&[][..], |l| l.get_ref().as_slice())
            .iter()
            .enumerate()
        {
            let here = format!("{key}[{i}]");
            let addr = socket_addr(item, &here, cx)?;
            if let Some((_, first)) = seen.iter().find(|(a, _)| *a == addr) {
                return Err(cx.invalid(
                    item.span(),
                    &here,
                    format!("{addr} is already listed at {first}"),
                ));
            }
            seen.push((addr, here));
        }
    }
    Ok(())
}

fn admin(f: &AdminFile, listen: &ListenConfig, cx: &Ctx<'_>) -> Result<AdminConfig, ConfigError> {
    let listen = match &f.listen {
        Some(v) => Some(admin_listen(v, listen, cx)?),
        None => None,
    };
    let token = match &f.token {
        Some(v) => Some(admin_token(v, cx)?),
        None => None,
    };
    Ok(AdminConfig { listen, token })
}

fn admin_listen(
    v: &Spanned<String>,
    listen: &ListenConfig,
    cx: &Ctx<'_>,
) -> Result<SocketAddr, ConfigError> {
    let addr = socket_addr(v, "admin.listen", cx)?;
    if listen.http.contains(&addr) || listen.https.contains(&addr) {
        let message = format!("{addr} is also a listen.http or listen.https address");
        return Err(cx.invalid(v.span(), "admin.listen", message));
    }
    Ok(addr)
}

/// The token travels in an `Authorization` header, hence visible ASCII.
fn admin_token(v: &Spanned<String>, cx: &Ctx<'_>) -> Result<String, ConfigError> {
    let token = v.get_ref();
    let problem = if token.is_empty() {
        "must not be empty (remove the key to refuse mutating requests)"
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        "must be printable ASCII without spaces (it is sent in an HTTP header)"
    } else {
        return Ok(token.clone());
    };
    Err(cx.invalid(v.span(), "admin.token", problem))
}

fn cache(f: &CacheFile, cx: &Ctx<'_>) -> Result<CacheConfig, ConfigError> {
    let (memory, max_object, chunk_size) = cache_sizes(f, cx)?;
    let heuristic_fraction = match &f.heuristic_fraction {
        Some(v) if *v.get_ref() > 100 => {
            let message = "is a percentage and must be between 0 and 100";
            return Err(cx.invalid(v.span(), "cache.heuristic_fraction", message));
        }
        Some(v) => *v.get_ref(),
        None => DEFAULT_HEURISTIC_FRACTION,
    };
    let chunk_above = match &f.chunk_above {
        None => (memory / 4).max(chunk_size),
        Some(v) if v.get_ref().0 < chunk_size => {
            let message = format!(
                "{} is below cache.chunk_size ({}): an object that short is one chunk",
                v.get_ref(),
                ByteSize(chunk_size)
            );
            return Err(cx.invalid(v.span(), "cache.chunk_above", message));
        }
        Some(v) => v.get_ref().0,
    };
    Ok(CacheConfig {
        memory,
        max_object,
        chunk_size,
        chunk_above,
        uncacheable_ttl: f.uncacheable_ttl.map_or(DEFAULT_UNCACHEABLE_TTL, |d| d.0),
        heuristic_fraction,
        heuristic_max: f.heuristic_max.map_or(DEFAULT_HEURISTIC_MAX, |d| d.0),
        persist: f.persist.as_ref().map(|p| persist(p, cx)).transpose()?,
    })
}

/// `cache.persist`: a directory (created at start when missing), not a file.
fn persist(
    path: &Spanned<std::path::PathBuf>,
    cx: &Ctx<'_>,
) -> Result<std::path::PathBuf, ConfigError> {
    let key = "cache.persist";
    if path.get_ref().as_os_str().is_empty() {
        let message = "must name a directory (remove the key to start with an empty cache)";
        return Err(cx.invalid(path.span(), key, message));
    }
    let resolved = cx.base_dir.join(path.get_ref());
    match std::fs::metadata(&resolved) {
        Ok(meta) if !meta.is_dir() => {
            let message = format!("{} is not a directory", resolved.display());
            Err(cx.invalid(path.span(), key, message))
        }
        _ => Ok(resolved),
    }
}

/// `memory`, `max_object` and `chunk_size`.
fn cache_sizes(f: &CacheFile, cx: &Ctx<'_>) -> Result<(u64, u64, u64), ConfigError> {
    let memory = size(&f.memory, DEFAULT_CACHE_MEMORY);
    let max_object = size(&f.max_object, DEFAULT_MAX_OBJECT);
    let chunk_size = size(&f.chunk_size, DEFAULT_CHUNK_SIZE);
    if let Some(v) = &f.memory
        && memory < MIN_CACHE_MEMORY
    {
        let message = format!("{} is too small; the minimum is 1MiB", ByteSize(memory));
        return Err(cx.invalid(v.span(), "cache.memory", message));
    }
    let object_problem = match max_object {
        0 => Some("must be greater than zero".to_owned()),
        n if n > MAX_MAX_OBJECT => {
            Some(format!("{} is too large; the maximum is 1TiB", ByteSize(n)))
        }
        _ => None,
    };
    if let (Some(message), Some(v)) = (object_problem, &f.max_object) {
        return Err(cx.invalid(v.span(), "cache.max_object", message));
    }
    let chunk_problem = match chunk_size {
        n if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&n) => Some(format!(
            "{} is out of range; use 64KiB to 64MiB",
            ByteSize(n)
        )),
        n if n > memory => Some(format!(
            "{} is larger than cache.memory ({})",
            ByteSize(n),
            ByteSize(memory)
        )),
        _ => None,
    };
    if let Some(message) = chunk_problem {
        return Err(match &f.chunk_size {
            Some(v) => cx.invalid(v.span(), "cache.chunk_size", message),
            None => match &f.memory {
                Some(v) => cx.invalid(
                    v.span(),
                    "cache.memory",
                    format!(
                        "is smaller than cache.chunk_size (default {})",
                        ByteSize(chunk_size)
                    ),
                ),
                None => cx.invalid(0..0, "cache.chunk_size", message),
            },
        });
    }
    Ok((memory, max_object, chunk_size))
}

fn size(v: &Option<Spanned<ByteSize>>, default: u64) -> u64 {
    v.as_ref().map_or(default, |v| v.get_ref().0)
}

/// A count that must be at least 1.
fn count(
    v: &Option<Spanned<usize>>,
    default: usize,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<usize, ConfigError> {
    match v {
        Some(v) if *v.get_ref() == 0 => Err(cx.invalid(v.span(), key, "must be at least 1")),
        Some(v) => Ok(*v.get_ref()),
        None => Ok(default),
    }
}
