//! The responses stored under one primary key, one per `Vary` secondary key (RFC 9111 §4.1).
//!
//! Copy-on-write: adding a variant builds a new `Variants` holding the same `Arc<Entry>`s plus
//! the new one, so readers of the old set are never disturbed and nothing is locked.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use super::entry::Entry;
use crate::cache::vary::{SecondaryKey, secondary_key};

#[derive(Debug, Clone, Default)]
pub struct Variants {
    /// Newest first, so the most recent matching response is chosen (RFC 9111 §4.1 allows
    /// using the most recent one when several match).
    entries: Vec<Arc<Entry>>,
    /// The entries' weights as the owner's and as replicas, taken when the set was built:
    /// what the store counted in is what it takes off when the set goes, even if an entry
    /// has grown since (an encoded form added; the set is then built again and reweighed).
    owner: u64,
    replica: u64,
}

impl Variants {
    fn of(entries: Vec<Arc<Entry>>) -> Self {
        let (mut owner, mut replica) = (0, 0);
        for e in &entries {
            match e.replica {
                true => replica += e.weight(),
                false => owner += e.weight(),
            }
        }
        Self {
            entries,
            owner,
            replica,
        }
    }

    pub(crate) fn single(entry: Arc<Entry>) -> Self {
        Self::of(vec![entry])
    }

    /// The same entries, weighed again.
    pub(crate) fn reweighed(&self) -> Self {
        Self::of(self.entries.clone())
    }

    /// The entry whose secondary key matches this request's headers.
    pub fn select(&self, request_headers: &HeaderMap) -> Option<&Arc<Entry>> {
        // The variants of one URL almost always vary on the same fields: the request's values
        // for them are computed once, not once per stored variant (`vary_select_8_variants`
        // bench: 890 ns → 196 ns).
        let mut request_key: Option<(&[HeaderName], SecondaryKey)> = None;
        for entry in &self.entries {
            if entry.vary.is_empty() {
                return Some(entry);
            }
            let known =
                matches!(&request_key, Some((fields, _)) if *fields == entry.vary.as_slice());
            if !known {
                request_key = Some((&entry.vary, secondary_key(&entry.vary, request_headers)));
            }
            if request_key
                .as_ref()
                .is_some_and(|(_, key)| *key == entry.secondary)
            {
                return Some(entry);
            }
        }
        None
    }

    /// A new set with `entry` replacing any variant of the same secondary key, keeping at most
    /// `max` variants (the oldest go first).
    pub fn with(&self, entry: Arc<Entry>, max: usize) -> Self {
        let mut entries = Vec::with_capacity(self.entries.len().min(max) + 1);
        entries.push(entry.clone());
        entries.extend(
            self.entries
                .iter()
                .filter(|e| !(e.vary == entry.vary && e.secondary == entry.secondary))
                .take(max.saturating_sub(1))
                .cloned(),
        );
        Self::of(entries)
    }

    /// The set without the variants `drop` selects; `None` when nothing is left.
    pub(crate) fn without(&self, drop: impl Fn(&Entry) -> bool) -> Option<Self> {
        let entries: Vec<_> = self.entries.iter().filter(|e| !drop(e)).cloned().collect();
        (!entries.is_empty()).then(|| Self::of(entries))
    }

    pub(crate) fn weight(&self) -> u64 {
        self.owner + self.replica
    }

    /// Bytes held as the keys' owner and as replicas, as weighed when built.
    pub(crate) fn role_weights(&self) -> (u64, u64) {
        (self.owner, self.replica)
    }

    pub(crate) fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }
}
