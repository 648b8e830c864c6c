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
//! Sharded so that registering is one uncontended lock per hop request, never a global one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

#[derive(Default)]
pub(crate) struct Progress {
    shards: [Mutex<HashMap<u64, u32>>; SHARDS],
}

/// A request in progress; dropped when its response head is ready.
pub(crate) struct Working {
    progress: Arc<Progress>,
    key_hash: u64,
}

impl Progress {
    fn shard(&self, key_hash: u64) -> &Mutex<HashMap<u64, u32>> {
        // The low bits of a stable hash are as good as any.
        &self.shards[(key_hash as usize) % SHARDS]
    }

    /// Register a request for the key hashed `key_hash`.
    pub(crate) fn start(self: &Arc<Self>, key_hash: u64) -> Working {
        *lock(self.shard(key_hash)).entry(key_hash).or_insert(0) += 1;
        Working {
            progress: self.clone(),
            key_hash,
        }
    }

    /// Whether a request for the key hashed `key_hash` is in progress.
    pub(crate) fn working_on(&self, key_hash: u64) -> bool {
        lock(self.shard(key_hash)).contains_key(&key_hash)
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        let mut shard = lock(self.progress.shard(self.key_hash));
        if let Some(n) = shard.get_mut(&self.key_hash) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&self.key_hash);
            }
        }
    }
}

/// A poisoned shard only means a thread panicked holding it; its counts are whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_worked_on_while_any_request_for_it_is() {
        let progress = Arc::new(Progress::default());
        let a = progress.start(7);
        let b = progress.start(7);
        assert!(progress.working_on(7));
        assert!(!progress.working_on(8));
        drop(a);
        assert!(progress.working_on(7));
        drop(b);
        assert!(!progress.working_on(7));
    }
}
