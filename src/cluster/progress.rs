//! Which requests from other nodes this node is working on, by key.
//!
//! A node that forwarded a request and has no response head after `peer_timeout` cannot tell
//! an owner waiting on a slow origin (which must be waited for: asking the origin too would
//! fetch the object twice) from an owner whose request path is stuck behind a probe handler
//! that still answers. So it asks: its probe names the key, and the answer says whether a
//! request for that key from another node is in progress here. A request is registered from
//! the moment it is read until its response head is ready, so "no" means the request never
//! got here or is not being served, and the asking node goes to the key's next holder.
//!
//! A key answered a moment ago still counts ([`RECENT`]): the head is ready when the
//! registration ends, but it may not have reached the asking node when its probe is
//! answered (a loaded machine widened that gap to a wrong "no" and a second origin fetch).
//!
//! Sharded so that registering is one uncontended lock per hop request, never a global one.
//! Answered keys are forgotten once older than [`RECENT`], swept when a shard has doubled
//! since its last sweep, so a shard holds at most the keys of about that long.

use crate::locks::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// How long a key whose last request was answered still counts as worked on.
pub(crate) const RECENT: Duration = Duration::from_secs(2);

/// A shard is not swept below this many keys.
const SWEEP_FROM: usize = 256;

#[derive(Default)]
pub(crate) struct Progress {
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Default)]
struct Shard {
    keys: HashMap<u64, Slot>,
    /// Sweep when `keys` reaches this many.
    sweep_at: usize,
}

#[derive(Clone, Copy)]
struct Slot {
    active: u32,
    /// When the last request ended, once none is active.
    answered: Option<Instant>,
}

impl Slot {
    fn counts(&self, now: Instant) -> bool {
        self.active > 0
            || self
                .answered
                .is_some_and(|at| now.duration_since(at) < RECENT)
    }
}

/// A request in progress; dropped when its response head is ready.
pub(crate) struct Working {
    progress: Arc<Progress>,
    key_hash: u64,
}

impl Progress {
    fn shard(&self, key_hash: u64) -> &Mutex<Shard> {
        // The low bits of a stable hash are as good as any.
        &self.shards[(key_hash as usize) % SHARDS]
    }

    /// Register a request for the key hashed `key_hash`.
    pub(crate) fn start(self: &Arc<Self>, key_hash: u64) -> Working {
        let mut shard = lock(self.shard(key_hash));
        if shard.keys.len() >= shard.sweep_at.max(SWEEP_FROM) {
            let now = Instant::now();
            shard.keys.retain(|_, slot| slot.counts(now));
            shard.sweep_at = shard.keys.len() * 2;
        }
        let slot = shard.keys.entry(key_hash).or_insert(Slot {
            active: 0,
            answered: None,
        });
        slot.active += 1;
        Working {
            progress: self.clone(),
            key_hash,
        }
    }

    /// Whether a request for the key hashed `key_hash` is in progress, or was answered less
    /// than [`RECENT`] ago.
    pub(crate) fn working_on(&self, key_hash: u64) -> bool {
        let now = Instant::now();
        lock(self.shard(key_hash))
            .keys
            .get(&key_hash)
            .is_some_and(|slot| slot.counts(now))
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.shards.iter().map(|s| lock(s).keys.len()).sum()
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        let mut shard = lock(self.progress.shard(self.key_hash));
        if let Some(slot) = shard.keys.get_mut(&self.key_hash) {
            slot.active = slot.active.saturating_sub(1);
            if slot.active == 0 {
                slot.answered = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_worked_on_while_any_request_for_it_is_and_a_moment_after() {
        let progress = Arc::new(Progress::default());
        let a = progress.start(7);
        let b = progress.start(7);
        assert!(progress.working_on(7));
        assert!(!progress.working_on(8));
        drop(a);
        assert!(progress.working_on(7));
        drop(b);
        assert!(progress.working_on(7), "answered just now");
        let mut shard = lock(progress.shard(7));
        let slot = shard.keys.get_mut(&7).expect("kept");
        slot.answered = Instant::now().checked_sub(RECENT);
        drop(shard);
        assert!(!progress.working_on(7), "answered long ago");
    }

    #[test]
    fn answered_keys_are_swept() {
        let progress = Arc::new(Progress::default());
        for key in 0..10_000u64 {
            drop(progress.start(key));
        }
        assert_eq!(progress.held(), 10_000, "all answered within RECENT");
        for shard in &progress.shards {
            for slot in lock(shard).keys.values_mut() {
                slot.answered = Instant::now().checked_sub(RECENT);
            }
        }
        // Each shard, swept at twice its last size, drops the expired keys as it grows.
        for key in 10_000..30_000u64 {
            drop(progress.start(key));
        }
        assert_eq!(progress.held(), 20_000, "only the recent ones are kept");
    }
}
