//! `[cluster]` and `[dns]` → [`ClusterConfig`] and [`DnsConfig`].
//!
//! A cluster needs to know how peers reach this node (`advertise`), who the members are
//! (a static `peers` list or a DNS `discovery` name, not both) and the shared `secret` that
//! authenticates peer hops and purge fan-out. The member list may include this node; it is
//! added when it does not, so every node computes the same ring from the same list.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::config::ctx::{Ctx, check_name, socket_addr, timeout};
use crate::config::error::ConfigError;
use crate::config::file::{
    ClusterFile, DEFAULT_DNS_MAX_TTL, DEFAULT_DNS_MIN_TTL, DEFAULT_HANDOFF, DEFAULT_PEER_TIMEOUT,
    DEFAULT_PROBE_INTERVAL, DEFAULT_PURGE_LEASE, DEFAULT_PURGE_LOG_MEMORY,
    DEFAULT_PURGE_LOG_WINDOW, DnsFile, MIN_SECRET_LEN,
};
use crate::config::{ClusterConfig, DnsConfig, Members, Replicate};

pub(crate) fn cluster(f: &ClusterFile, cx: &Ctx<'_>) -> Result<ClusterConfig, ConfigError> {
    let advertise = socket_addr(&f.advertise, "cluster.advertise", cx)?;
    let members = match (&f.peers, &f.discovery) {
        (Some(peers), None) => {
            let mut addrs = Vec::with_capacity(peers.get_ref().len() + 1);
            for (i, peer) in peers.get_ref().iter().enumerate() {
                let addr = socket_addr(peer, &format!("cluster.peers[{i}]"), cx)?;
                if addrs.contains(&addr) {
                    let message = format!("{addr} is listed twice");
                    return Err(cx.invalid(peer.span(), &format!("cluster.peers[{i}]"), message));
                }
                addrs.push(addr);
            }
            if !addrs.contains(&advertise) {
                addrs.push(advertise);
            }
            addrs.sort();
            Members::Static(addrs)
        }
        (None, Some(discovery)) => {
            let text = discovery.get_ref();
            let valid = text.strip_prefix("dns:").is_some_and(|rest| {
                rest.rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            }) || text
                .strip_prefix("dns+srv:")
                .is_some_and(|name| !name.is_empty());
            if !valid {
                let message = format!(
                    "{text:?} is not \"dns:NAME:PORT\" (A/AAAA records) or \"dns+srv:NAME\" (SRV records)"
                );
                return Err(cx.invalid(discovery.span(), "cluster.discovery", message));
            }
            Members::Discovery(text.clone())
        }
        (Some(peers), Some(_)) => {
            let message = "give either peers or discovery, not both";
            return Err(cx.invalid(peers.span(), "cluster.peers", message));
        }
        // A cluster of one: a shield tier of one node, or a cluster still to grow.
        (None, None) => Members::Static(vec![advertise]),
    };
    let secret = f.secret.get_ref();
    if secret.len() < MIN_SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        let message = format!(
            "must be at least {MIN_SECRET_LEN} printable ASCII characters without spaces (it authenticates peers)"
        );
        return Err(cx.invalid(f.secret.span(), "cluster.secret", message));
    }
    let replicate = match f.replicate.as_ref().map(|r| (r, r.get_ref().as_str())) {
        None | Some((_, "hot")) => Replicate::Hot,
        Some((_, "none")) => Replicate::None,
        Some((_, "all")) => Replicate::All,
        Some((r, other)) => {
            let message = format!("{other:?} is not one of \"none\", \"hot\", \"all\"");
            return Err(cx.invalid(r.span(), "cluster.replicate", message));
        }
    };
    let replicas = match &f.replicas {
        None => 1,
        Some(r) if (1..=3).contains(r.get_ref()) => *r.get_ref() as usize,
        Some(r) => {
            let message = format!(
                "{} is out of range: each object is held by 1 to 3 nodes (1: the owner only)",
                r.get_ref()
            );
            return Err(cx.invalid(r.span(), "cluster.replicas", message));
        }
    };
    let probe_interval = timeout(
        &f.probe_interval,
        DEFAULT_PROBE_INTERVAL,
        "cluster.probe_interval",
        cx,
    )?;
    let regions = regions(f, advertise, &members, cx)?;
    let purge_log_memory = match &f.purge_log_memory {
        None => DEFAULT_PURGE_LOG_MEMORY,
        Some(v) if v.get_ref().0 < MIN_PURGE_LOG_MEMORY => {
            let message = "must be at least \"64KiB\"";
            return Err(cx.invalid(v.span(), "cluster.purge_log_memory", message));
        }
        Some(v) => v.get_ref().0,
    };
    let push_memory = match &f.push_memory {
        None => None,
        Some(v) if v.get_ref().0 == 0 => {
            let message = "must be greater than zero (replicas > 1 pushes every stored object)";
            return Err(cx.invalid(v.span(), "cluster.push_memory", message));
        }
        Some(v) => Some(v.get_ref().0),
    };
    Ok(ClusterConfig {
        advertise,
        replicas,
        regions,
        purge_log_window: timeout(
            &f.purge_log_window,
            DEFAULT_PURGE_LOG_WINDOW,
            "cluster.purge_log_window",
            cx,
        )?,
        purge_log_memory,
        purge_lease: purge_lease(f, probe_interval, cx)?,
        push_memory,
        members,
        secret: secret.clone(),
        replicate,
        probe_interval,
        peer_timeout: timeout(
            &f.peer_timeout,
            DEFAULT_PEER_TIMEOUT,
            "cluster.peer_timeout",
            cx,
        )?,
        handoff: f.handoff.map_or(DEFAULT_HANDOFF, |h| h.0),
        // Two probe rounds: every peer has probed once since the node said it was leaving.
        leave_notice: f.leave_notice.map_or(probe_interval * 2, |h| h.0),
    })
}

/// `purge_lease`: by default three probe intervals and at least five seconds; it must be
/// longer than one probe interval (each probe round renews it).
fn purge_lease(
    f: &ClusterFile,
    probe_interval: std::time::Duration,
    cx: &Ctx<'_>,
) -> Result<std::time::Duration, ConfigError> {
    let default = DEFAULT_PURGE_LEASE.max(probe_interval * 3);
    let lease = timeout(&f.purge_lease, default, "cluster.purge_lease", cx)?;
    if let Some(v) = &f.purge_lease
        && lease <= probe_interval
    {
        let message = "must be longer than cluster.probe_interval: each round of probes renews it";
        return Err(cx.invalid(v.span(), "cluster.purge_lease", message));
    }
    Ok(lease)
}

/// The smallest purge log accepted: a few hundred purges.
const MIN_PURGE_LOG_MEMORY: u64 = 64 << 10;

/// `[cluster.regions]`: region names, each with its members' addresses; none of them this
/// node or a member of its own cluster, none listed twice.
fn regions(
    f: &ClusterFile,
    advertise: SocketAddr,
    members: &Members,
    cx: &Ctx<'_>,
) -> Result<BTreeMap<String, Vec<SocketAddr>>, ConfigError> {
    let Some(table) = &f.regions else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    let mut seen: Vec<SocketAddr> = Vec::new();
    for (name, list) in table.get_ref() {
        let key = format!("cluster.regions.{name}");
        let spanned = toml::Spanned::new(list.span(), name.clone());
        check_name(&spanned, &key, cx)?;
        if list.get_ref().is_empty() {
            return Err(cx.invalid(list.span(), &key, "list at least one node of the region"));
        }
        let mut addrs = Vec::with_capacity(list.get_ref().len());
        for (i, node) in list.get_ref().iter().enumerate() {
            let at = format!("{key}[{i}]");
            let addr = socket_addr(node, &at, cx)?;
            let own =
                addr == advertise || matches!(members, Members::Static(m) if m.contains(&addr));
            if own {
                let message = format!("{addr} is a member of this node's own cluster");
                return Err(cx.invalid(node.span(), &at, message));
            }
            if seen.contains(&addr) {
                return Err(cx.invalid(node.span(), &at, format!("{addr} is listed twice")));
            }
            seen.push(addr);
            addrs.push(addr);
        }
        out.insert(name.clone(), addrs);
    }
    Ok(out)
}

pub(crate) fn dns(f: &DnsFile, cx: &Ctx<'_>) -> Result<DnsConfig, ConfigError> {
    let servers = match &f.servers {
        None => None,
        Some(list) => {
            let mut servers = Vec::with_capacity(list.get_ref().len());
            for (i, server) in list.get_ref().iter().enumerate() {
                servers.push(socket_addr(server, &format!("dns.servers[{i}]"), cx)?);
            }
            Some(servers)
        }
    };
    let min_ttl = timeout(&f.min_ttl, DEFAULT_DNS_MIN_TTL, "dns.min_ttl", cx)?;
    let max_ttl = timeout(&f.max_ttl, DEFAULT_DNS_MAX_TTL, "dns.max_ttl", cx)?;
    if let (true, Some(v)) = (max_ttl < min_ttl, &f.max_ttl) {
        return Err(cx.invalid(v.span(), "dns.max_ttl", "must not be below dns.min_ttl"));
    }
    Ok(DnsConfig {
        servers,
        min_ttl,
        max_ttl,
    })
}
