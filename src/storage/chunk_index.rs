//! Which URL keys have chunks stored on this node, and how many: a purge of the URL removes
//! them (a scan of the cache, so only when there are some), and nothing else can find them
//! (chunk keys carry the validator of a manifest that may be on another node, or gone).
//!
//! The counts are exact, not a bounded memory that could forget: every insert of a chunk
//! adds one, and the store's eviction listener, which sees every removal (expiry, size,
//! purge, replacement), takes one off. A URL leaves the index when its count is back to
//! zero, so the index never holds more URLs than the cache holds chunks. A count may dip
//! below zero for a moment (moka drops an entry just inserted before the insert counted it);
//! the insert's increment brings it back.
//!
//! Sharded so concurrent chunk fills do not share one lock; hits never touch it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::lock;
use crate::hash;

const SHARDS: usize = 16;

#[derive(Default)]
pub(crate) struct ChunkIndex {
    shards: [Mutex<HashMap<Box<str>, i64>>; SHARDS],
}

impl ChunkIndex {
    /// A chunk of `url_key` was written (`delta = 1`) or dropped (`-1`).
    pub(crate) fn add(&self, url_key: &str, delta: i64) {
        let mut shard = self.shard(url_key);
        match shard.get_mut(url_key) {
            Some(count) => {
                *count += delta;
                if *count == 0 {
                    shard.remove(url_key);
                }
            }
            None => {
                shard.insert(url_key.into(), delta);
            }
        }
    }

    /// Whether chunks of `url_key` are stored here.
    pub(crate) fn has(&self, url_key: &str) -> bool {
        self.shard(url_key).get(url_key).is_some_and(|c| *c > 0)
    }

    /// URL keys with chunks here.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn shard(&self, url_key: &str) -> MutexGuard<'_, HashMap<Box<str>, i64>> {
        // The modulo keeps the index below SHARDS.
        let at = usize::try_from(hash::key(url_key) % SHARDS as u64).unwrap_or(0);
        lock(&self.shards[at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_chunks_and_forgets_a_url_without_any() {
        let index = ChunkIndex::default();
        index.add("a", 1);
        index.add("a", 1);
        index.add("b", 1);
        assert!(index.has("a") && index.has("b"));
        index.add("a", -1);
        assert!(index.has("a"));
        index.add("a", -1);
        assert!(!index.has("a"));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_drop_counted_before_its_insert_balances() {
        let index = ChunkIndex::default();
        index.add("a", -1);
        assert!(!index.has("a"));
        index.add("a", 1);
        assert!(!index.has("a"));
        assert_eq!(index.len(), 0);
    }
}
