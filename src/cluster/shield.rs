//! The shield tier: the Outpost nodes a site's misses are filled from before the origin.
//!
//! An edge region's node that owns a missed key asks one shield node for it instead of the
//! origin. Which one is rendezvous hashing over the site's shield list, the same function as
//! the cluster ring, so every edge region asks the same shield node for a key and the shield
//! tier fetches it from the origin once for all of them (and coalesces the regions' requests
//! while it does). Shield nodes are probed and ejected like peers: a dead one's keys go to the
//! next in their preference order, and with every shield down the edge asks the origin itself.
//!
//! The hop to a shield is signed with the cluster secret like a peer hop, and says it is a
//! shield hop (`hops=…s`), so the shield fills it and never sends it to a shield of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::peer::{Peer, PeerClient};
use super::ring::{NodeId, Ring};
use crate::observability::metrics::Metrics;

/// One site's shield nodes and their health.
pub(crate) struct ShieldTier {
    ring: Ring,
    nodes: HashMap<NodeId, Arc<Peer>>,
    /// Fills that went to the origin because no shield node could be reached.
    pub(crate) fallbacks: Counter,
}

impl ShieldTier {
    /// The tier of `site`, probed every `probe_interval` with `client` while it is in use.
    pub(crate) fn start(
        site: &str,
        addrs: &[SocketAddr],
        metrics: &Metrics,
        client: PeerClient,
        probe_interval: Duration,
        probe_timeout: Duration,
    ) -> Arc<Self> {
        let ids: Vec<NodeId> = addrs.iter().map(|a| NodeId(a.to_string())).collect();
        let nodes = addrs
            .iter()
            .zip(&ids)
            .map(|(addr, id)| {
                let peer = Peer::with_metrics(id.clone(), *addr, metrics.shield(site, &id.0));
                (id.clone(), Arc::new(peer))
            })
            .collect();
        let tier = Arc::new(Self {
            ring: Ring::new(ids),
            nodes,
            fallbacks: metrics.shield_fallbacks(site),
        });
        // Unit tests build sites without a runtime; a node always has one.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(probe_while_used(
                Arc::downgrade(&tier),
                client,
                probe_interval,
                probe_timeout,
            ));
        }
        tier
    }

    /// The shield node to ask for a key: the first live one in its preference order.
    pub(crate) fn pick(&self, key_hash: u64) -> Option<Arc<Peer>> {
        let owner = self.ring.owner_where(key_hash, |id| {
            self.nodes.get(id).is_some_and(|node| node.is_alive())
        })?;
        self.nodes.get(owner).cloned()
    }

    /// Every shield node, for `/cluster`.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.ring.nodes().iter().filter_map(|id| self.nodes.get(id))
    }
}

/// Probe every shield node each interval, until the tier is dropped (a reload replaces it).
async fn probe_while_used(
    tier: Weak<ShieldTier>,
    client: PeerClient,
    interval: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(tier) = tier.upgrade() else { return };
        let probes = tier.nodes.values().map(|node| client.probe(node, timeout));
        futures_util::future::join_all(probes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(addrs: &[&str]) -> Arc<ShieldTier> {
        let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().expect("addr")).collect();
        let second = Duration::from_secs(1);
        ShieldTier::start(
            "s",
            &addrs,
            &Metrics::new(),
            PeerClient::new(),
            second,
            second,
        )
    }

    #[test]
    fn every_edge_picks_the_same_shield_and_the_next_when_it_is_ejected() {
        let a = tier(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        // Listed in another order elsewhere: the same pick.
        let b = tier(&["10.0.0.3:80", "10.0.0.1:80", "10.0.0.2:80"]);
        let mut counts = HashMap::new();
        for key in 0..3000u64 {
            let hash = crate::hash::key(&format!("http://example.test/{key}"));
            let pa = a.pick(hash).expect("a shield");
            assert_eq!(pa.id, b.pick(hash).expect("a shield").id);
            *counts.entry(pa.id.0.clone()).or_insert(0) += 1;
        }
        // Spread over all three.
        assert!(counts.values().all(|&n| n > 800), "{counts:?}");
        let hash = crate::hash::key("http://example.test/x");
        let first = a.pick(hash).expect("a shield");
        first.eject("test");
        let next = a.pick(hash).expect("another shield");
        assert_ne!(next.id, first.id);
        for node in a.nodes() {
            node.eject("test");
        }
        assert!(a.pick(hash).is_none(), "every shield down: none");
    }
}
