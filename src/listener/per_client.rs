//! The connection limit per client address (`listen.max_connections_per_client`), TCP and
//! QUIC together: one address cannot take every slot of `max_connections` (a single client
//! that opens a thousand idle QUIC connections in three seconds locks out everyone else).
//!
//! Counted per IP address, IPv6 included as it is (a client that rotates through its /64
//! gets a slot per address; the node-wide limit still holds). Sharded so that accepting a
//! connection takes one uncontended lock, never a global one.

use crate::locks::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

#[derive(Default)]
pub(crate) struct PerClient {
    shards: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
    /// 0: no limit. Follows reloads.
    max: AtomicUsize,
}

/// One connection of a client; its slot is given back when dropped.
pub(crate) struct ClientSlot {
    limiter: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        let limiter = Arc::new(Self::default());
        limiter.set_max(max);
        limiter
    }

    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let hash = match ip {
            IpAddr::V4(v4) => u64::from(u32::from(*v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(*v6);
                (bits as u64) ^ ((bits >> 64) as u64)
            }
        };
        &self.shards[(crate::hash::mix(hash) as usize) % SHARDS]
    }

    /// A slot for a connection from `ip`, unless it holds its limit already.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let max = self.max.load(Ordering::Relaxed);
        let mut shard = lock(self.shard(&ip));
        let held = shard.entry(ip).or_insert(0);
        if max != 0 && *held >= max {
            return None;
        }
        *held += 1;
        Some(ClientSlot {
            limiter: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> usize {
        lock(self.shard(&ip)).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut shard = lock(self.limiter.shard(&self.ip));
        if let Some(held) = shard.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_limit_and_slots_come_back() {
        let limiter = PerClient::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "2001:db8::1".parse().expect("ip");
        let first = limiter.take(a).expect("first");
        let _second = limiter.take(a).expect("second");
        assert!(limiter.take(a).is_none(), "third from one address");
        assert!(limiter.take(b).is_some(), "another address");
        drop(first);
        assert!(limiter.take(a).is_some(), "a slot came back");
        limiter.set_max(0);
        let many: Vec<_> = (0..10).filter_map(|_| limiter.take(a)).collect();
        assert_eq!(many.len(), 10, "0: no limit");
        drop(many);
        assert_eq!(limiter.held(b), 0);
    }
}
