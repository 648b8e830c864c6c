//! Where a server's connections go: an IP literal as written, or every A/AAAA address of its
//! name, re-resolved in the background when the records' TTL (clamped to `[dns]
//! min_ttl..max_ttl`) runs out. Only a request before the first answer waits on DNS; a
//! failed refresh keeps the last good addresses (and counts in
//! `outpost_origin_dns_failures_total`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{OriginSetupError, Server, host_of};
use crate::config::DnsConfig;
use crate::dns::{DiscoveryConfig, Source, spawn_counting};

/// Give `server` its addresses; for a name, the task that keeps them current.
pub(super) fn follow(
    server: &Arc<Server>,
    dns: &DnsConfig,
) -> Result<Option<JoinHandle<()>>, OriginSetupError> {
    let host = host_of(&server.config);
    let port = server.config.authority.port_u16().unwrap_or(
        if server.config.scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        },
    );
    if let Ok(ip) = host.parse::<IpAddr>() {
        server.pool.set_addresses(&[SocketAddr::new(ip, port)]);
        return Ok(None);
    }
    let config = DiscoveryConfig {
        source: Source::Dns {
            name: host.to_owned(),
            port,
        },
        servers: dns.servers.clone(),
        min_ttl: dns.min_ttl,
        max_ttl: dns.max_ttl,
    };
    let mut handle = spawn_counting(
        config,
        server.metrics.dns_refreshes.clone(),
        server.metrics.dns_failures.clone(),
    )?;
    let server = Arc::clone(server);
    Ok(Some(tokio::spawn(async move {
        loop {
            let addrs = handle.members.borrow_and_update().clone();
            // Empty only before the first answer: resolution never publishes an empty list.
            if !addrs.is_empty() {
                tracing::info!(origin = %server.config.authority, ?addrs, "origin addresses");
                server.pool.set_addresses(&addrs);
            }
            if handle.members.changed().await.is_err() {
                return;
            }
        }
    })))
}
