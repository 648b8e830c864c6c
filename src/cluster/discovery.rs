//! Cluster members from DNS: `discovery = "dns:NAME:PORT"` (A/AAAA) or `"dns+srv:NAME"`
//! (SRV), resolved by [`crate::dns`] on the records' TTL (clamped to `[dns] min_ttl..max_ttl`)
//! in the background. Each changed list becomes the cluster's membership; a failed refresh
//! keeps the last good one. No request ever waits on DNS.

use std::future::Future;
use std::sync::Arc;

use super::Cluster;
use crate::config::{Config, Members};
use crate::dns::{DiscoveryConfig, Source, spawn};

/// The task that follows DNS, if the cluster's members come from it.
pub(crate) fn start(
    config: &Config,
    cluster: Arc<Cluster>,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let Some(Members::Discovery(text)) = config.cluster.as_ref().map(|c| &c.members) else {
        return None;
    };
    let source = match text.parse::<Source>() {
        Ok(source) => source,
        Err(e) => {
            tracing::error!(%text, error = %e, "cluster discovery disabled");
            return None;
        }
    };
    let discovery = DiscoveryConfig {
        source,
        servers: config.dns.servers.clone(),
        min_ttl: config.dns.min_ttl,
        max_ttl: config.dns.max_ttl,
    };
    let handle = match spawn(discovery) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(%text, error = %e, "cluster discovery disabled");
            return None;
        }
    };
    Some(async move {
        let mut handle = handle;
        let mut reported = (0, 0);
        loop {
            let members = handle.members.borrow_and_update().clone();
            if !members.is_empty() {
                cluster.set_members(&members);
            }
            let counts = (handle.refreshes.get(), handle.failures.get());
            if counts != reported {
                tracing::debug!(
                    refreshes = counts.0,
                    failures = counts.1,
                    "cluster discovery"
                );
                reported = counts;
            }
            if handle.members.changed().await.is_err() {
                return;
            }
        }
    })
}
