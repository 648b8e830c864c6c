//! The purge log: every purge and invalidation a node has applied, by identity and time, for
//! a window, so that one that did not reach a node (down, stopped, cut off, in another region)
//! reaches it later, and so that an object fetched before a purge cannot come back through a
//! replica push, a hand-off, a shield or a snapshot.
//!
//! A record's identity is the node that took it and its time on that node's hybrid clock
//! ([`super::clock`]): unique, and the same on every node that holds it. Applying a known
//! identity again does nothing, so a replayed or re-sent purge is a no-op.
//!
//! Logs are compared by a digest (how many records, and the XOR of their identities' hashes,
//! since a time both sides hold records from); when two digests differ, one side sends the
//! identities it has and the other answers with the records it lacks.
//!
//! Bounded twice: by age (`purge_log_window`) and by bytes (`purge_log_memory`), oldest out
//! first. What the log still covers is its **horizon**: every purge taken after it is here
//! (or on its way). A copy fetched before the horizon cannot be checked against the purges it
//! may have missed, so the node asks the origin before serving it.
//!
//! Pure: no I/O, no clock (`now` is a parameter).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::clock::{at_millis, millis};
use crate::cache::chunk::url_of_chunk;

/// One purge or invalidation, as every node keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeRecord {
    /// The node that took it (its advertised address, or its name without a cluster).
    pub(crate) node: String,
    /// When, on that node's hybrid clock.
    pub(crate) at: u64,
    /// Absolute URLs: every variant under both schemes, and their chunks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) urls: Vec<String>,
    /// Entries carrying any of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags: Vec<String>,
    /// Cache keys an unsafe method invalidated (RFC 9111 §4.4), as the node computed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) keys: Vec<String>,
    /// Mark stale rather than remove.
    #[serde(default)]
    pub(crate) soft: bool,
}

impl PurgeRecord {
    /// Its identity as a number (what digests and exchanges carry).
    pub(crate) fn id(&self) -> u64 {
        let mut bytes = Vec::with_capacity(self.node.len() + 9);
        bytes.extend_from_slice(self.node.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&self.at.to_le_bytes());
        crate::hash::stable(&bytes)
    }

    /// Its time in milliseconds since the Unix epoch.
    pub(crate) fn at_ms(&self) -> u64 {
        millis(self.at)
    }

    /// What it costs the log: its strings and a fixed overhead.
    pub(crate) fn weight(&self) -> u64 {
        let strings = |v: &[String]| v.iter().map(|s| s.len() as u64 + 24).sum::<u64>();
        RECORD_OVERHEAD
            + self.node.len() as u64
            + strings(&self.urls)
            + strings(&self.tags)
            + strings(&self.keys)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.tags.is_empty() && self.keys.is_empty()
    }
}

/// Bytes counted per record beyond its strings (the record, its map and index slots).
const RECORD_OVERHEAD: u64 = 256;

/// What a record removes, in this node's terms: the cache keys of its URLs (under the site's
/// key rules, both schemes) and of its invalidations, and its tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Matcher {
    pub(crate) keys: Vec<String>,
    pub(crate) tags: Vec<String>,
}

impl Matcher {
    /// Whether an entry stored under `key` with `tags` is one this record names (a chunk
    /// belongs to its URL).
    pub(crate) fn matches(&self, key: &str, tags: &[Box<str>]) -> bool {
        let url = url_of_chunk(key).unwrap_or(key);
        self.keys.iter().any(|k| k == url)
            || self
                .tags
                .iter()
                .any(|t| tags.iter().any(|have| **have == **t))
    }
}

/// A log's summary: records since a time, and the XOR of their identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Digest {
    pub(crate) count: u64,
    pub(crate) xor: u64,
}

/// What inserting a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Logged: apply it.
    New,
    /// Already logged: applied before, nothing to do.
    Known,
    /// Older than the log's horizon: apply it (it is real) but it is not logged again.
    BeforeHorizon,
}

/// What an arriving copy (fetched at some time) must become, given the purges since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No purge since names it.
    Keep,
    /// A soft purge since names it: stale from that time (milliseconds).
    Stale(u64),
    /// A purge since names it: never stored.
    Purged,
    /// Fetched before the horizon: the purges it may have missed are no longer known.
    Unknown,
}

struct Logged {
    record: Arc<PurgeRecord>,
    matcher: Matcher,
    weight: u64,
}

/// The records, by identity and by time.
pub(crate) struct Log {
    by_id: HashMap<u64, Logged>,
    by_time: BTreeSet<(u64, u64)>,
    bytes: u64,
    xor: u64,
    /// Milliseconds: every purge taken after it is here.
    horizon_ms: u64,
    window_ms: u64,
    max_bytes: u64,
}

impl Log {
    /// An empty log complete since `horizon_ms` (when the node started, or what its snapshot
    /// said).
    pub(crate) fn new(horizon_ms: u64, window_ms: u64, max_bytes: u64) -> Self {
        Self {
            by_id: HashMap::new(),
            by_time: BTreeSet::new(),
            bytes: 0,
            xor: 0,
            horizon_ms,
            window_ms,
            max_bytes,
        }
    }

    pub(crate) fn set_bounds(&mut self, window_ms: u64, max_bytes: u64) {
        self.window_ms = window_ms;
        self.max_bytes = max_bytes;
    }

    pub(crate) fn horizon_ms(&self) -> u64 {
        self.horizon_ms
    }

    /// After an exchange that brought every record `peer_horizon_ms` on: complete since then
    /// too, or (after a time out of touch, from `lost_ms`) since then only when the peer's log
    /// does not reach back to the gap.
    pub(crate) fn merged_horizon(&mut self, peer_horizon_ms: u64, lost_ms: Option<u64>) {
        self.horizon_ms = match lost_ms {
            Some(lost) if peer_horizon_ms > lost => peer_horizon_ms,
            _ => self.horizon_ms.min(peer_horizon_ms),
        };
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The newest record's time (milliseconds), if any.
    pub(crate) fn newest_ms(&self) -> Option<u64> {
        self.by_time.last().map(|(at, _)| millis(*at))
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Log `record` (whose effect here `matcher` says), then drop what the bounds no longer
    /// allow at `now_ms`. How many were dropped for bytes comes back with the outcome.
    pub(crate) fn insert(
        &mut self,
        record: PurgeRecord,
        matcher: Matcher,
        now_ms: u64,
    ) -> (Inserted, usize) {
        let id = record.id();
        if self.by_id.contains_key(&id) {
            return (Inserted::Known, 0);
        }
        if record.at_ms() < self.horizon_ms {
            return (Inserted::BeforeHorizon, 0);
        }
        let weight = record.weight();
        self.by_time.insert((record.at, id));
        self.by_id.insert(
            id,
            Logged {
                record: Arc::new(record),
                matcher,
                weight,
            },
        );
        self.bytes += weight;
        self.xor ^= id;
        let dropped = self.prune(now_ms);
        let outcome = if self.by_id.contains_key(&id) {
            Inserted::New
        } else {
            // Past the bounds as soon as it came (older than the window): applied, not kept.
            Inserted::BeforeHorizon
        };
        (outcome, dropped)
    }

    /// Drop records older than the window and, oldest first, beyond the byte bound; the
    /// horizon moves past what went. How many went for bytes.
    pub(crate) fn prune(&mut self, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(self.window_ms);
        if cutoff > self.horizon_ms {
            self.horizon_ms = cutoff;
        }
        while let Some(&(at, _)) = self.by_time.first()
            && millis(at) < cutoff
        {
            self.remove_oldest();
        }
        let mut dropped = 0;
        while self.bytes > self.max_bytes && !self.by_time.is_empty() {
            if let Some(at) = self.remove_oldest() {
                self.horizon_ms = self.horizon_ms.max(millis(at) + 1);
            }
            dropped += 1;
        }
        dropped
    }

    fn remove_oldest(&mut self) -> Option<u64> {
        let (at, id) = self.by_time.pop_first()?;
        if let Some(gone) = self.by_id.remove(&id) {
            self.bytes -= gone.weight;
            self.xor ^= id;
        }
        Some(at)
    }

    /// The digest of the records since `since_ms` (at or after it).
    pub(crate) fn digest_since(&self, since_ms: u64) -> Digest {
        let mut digest = Digest {
            count: self.by_id.len() as u64,
            xor: self.xor,
        };
        // Only the records before `since` are walked: usually none or a few.
        for (_, id) in self.by_time.range(..(at_millis(since_ms), 0)) {
            digest.count -= 1;
            digest.xor ^= id;
        }
        digest
    }

    /// The identities of the records since `since_ms`.
    pub(crate) fn ids_since(&self, since_ms: u64) -> Vec<u64> {
        self.by_time
            .range((at_millis(since_ms), 0)..)
            .map(|(_, id)| *id)
            .collect()
    }

    /// The records since `since_ms` whose identity is not in `have`, oldest first, up to about
    /// `max_bytes` (at least one); whether more are left.
    pub(crate) fn missing(
        &self,
        since_ms: u64,
        have: &HashSet<u64>,
        max_bytes: u64,
    ) -> (Vec<Arc<PurgeRecord>>, bool) {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (_, id) in self.by_time.range((at_millis(since_ms), 0)..) {
            if have.contains(id) {
                continue;
            }
            let Some(logged) = self.by_id.get(id) else {
                continue;
            };
            if !out.is_empty() && bytes + logged.weight > max_bytes {
                return (out, true);
            }
            bytes += logged.weight;
            out.push(logged.record.clone());
        }
        (out, false)
    }

    /// Every record, oldest first (for the snapshot).
    pub(crate) fn records(&self) -> Vec<Arc<PurgeRecord>> {
        self.by_time
            .iter()
            .filter_map(|(_, id)| self.by_id.get(id).map(|l| l.record.clone()))
            .collect()
    }

    /// What a copy of `key` (with `tags`) fetched at `fetched_ms` must become.
    pub(crate) fn verdict(&self, key: &str, tags: &[Box<str>], fetched_ms: u64) -> Verdict {
        self.verdict_until(key, tags, fetched_ms, u64::MAX)
    }

    /// The same, for the purges logged up to millisecond `until_ms` alone (all of that
    /// millisecond: one in it may have come first).
    pub(crate) fn verdict_until(
        &self,
        key: &str,
        tags: &[Box<str>],
        fetched_ms: u64,
        until_ms: u64,
    ) -> Verdict {
        if fetched_ms < self.horizon_ms {
            return Verdict::Unknown;
        }
        let mut verdict = Verdict::Keep;
        // Purges at or after the fetch: one in the same millisecond may have come first.
        let from = (at_millis(fetched_ms), 0);
        let to = (at_millis(until_ms.saturating_add(1)), 0);
        if from >= to {
            return verdict;
        }
        for (_, id) in self.by_time.range(from..to) {
            let Some(logged) = self.by_id.get(id) else {
                continue;
            };
            if !logged.matcher.matches(key, tags) {
                continue;
            }
            if !logged.record.soft {
                return Verdict::Purged;
            }
            if verdict == Verdict::Keep {
                verdict = Verdict::Stale(logged.record.at_ms());
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HOUR: u64 = 3_600_000;

    fn record(node: &str, at_ms: u64, urls: &[&str]) -> PurgeRecord {
        PurgeRecord {
            node: node.to_owned(),
            at: at_millis(at_ms),
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            tags: Vec::new(),
            keys: Vec::new(),
            soft: false,
        }
    }

    fn matcher(keys: &[&str], tags: &[&str]) -> Matcher {
        Matcher {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn log() -> Log {
        Log::new(0, 24 * HOUR, 1 << 20)
    }

    #[test]
    fn purges_after_the_asking_are_left_out() {
        let mut log = log();
        let key = "http://x.test/a";
        log.insert(record("a", 5000, &[key]), matcher(&[key], &[]), 6000);
        assert_eq!(
            log.verdict_until(key, &[], 4000, 5000),
            Verdict::Purged,
            "same ms"
        );
        assert_eq!(
            log.verdict_until(key, &[], 4000, 4999),
            Verdict::Keep,
            "the purge came after the request was asked"
        );
        assert_eq!(log.verdict_until(key, &[], 6000, 5500), Verdict::Keep);
        assert_eq!(log.verdict_until(key, &[], 4000, u64::MAX), Verdict::Purged);
    }

    #[test]
    fn a_known_identity_is_a_no_op() {
        let mut log = log();
        let r = record("a", 1000, &["http://x/1"]);
        assert_eq!(
            log.insert(r.clone(), Matcher::default(), 2000).0,
            Inserted::New
        );
        assert_eq!(log.insert(r, Matcher::default(), 2000).0, Inserted::Known);
        assert_eq!(log.len(), 1);
        // The same time on another node is another purge.
        let other = record("b", 1000, &["http://x/1"]);
        assert_eq!(log.insert(other, Matcher::default(), 2000).0, Inserted::New);
    }

    #[test]
    fn copies_fetched_before_a_matching_purge_are_purged() {
        let mut log = log();
        let key = "http://x.test/a";
        log.insert(record("a", 5000, &[key]), matcher(&[key], &[]), 6000);
        assert_eq!(log.verdict(key, &[], 4000), Verdict::Purged);
        assert_eq!(
            log.verdict(key, &[], 5000),
            Verdict::Purged,
            "same millisecond"
        );
        assert_eq!(log.verdict(key, &[], 5001), Verdict::Keep, "fetched after");
        let chunk = format!("{key}\u{1}0-9/10\u{1}22");
        assert_eq!(log.verdict(&chunk, &[], 4000), Verdict::Purged, "its chunk");
        assert_eq!(log.verdict("http://x.test/b", &[], 4000), Verdict::Keep);
        let mut soft = record("a", 7000, &[]);
        soft.soft = true;
        soft.tags = vec!["t".into()];
        log.insert(soft, matcher(&[], &["t"]), 8000);
        let tags: Vec<Box<str>> = vec!["t".into()];
        assert_eq!(
            log.verdict("http://x.test/c", &tags, 6000),
            Verdict::Stale(7000)
        );
    }

    #[test]
    fn the_window_and_the_byte_bound_move_the_horizon() {
        let mut log = Log::new(0, HOUR, 2000);
        log.insert(record("a", 1000, &["u"]), Matcher::default(), 1000);
        log.insert(record("a", 2000, &["u"]), Matcher::default(), 2000);
        assert_eq!(log.len(), 2);
        // An hour later the first is out of the window.
        log.prune(HOUR + 1500);
        assert_eq!(log.len(), 1);
        assert_eq!(log.horizon_ms(), 1500);
        assert_eq!(log.verdict("u", &[], 1400), Verdict::Unknown);
        // Big records push older ones out by bytes.
        let big: Vec<String> = (0..50).map(|i| format!("http://x/{i}")).collect();
        let mut r = record("a", HOUR + 2000, &[]);
        r.urls = big;
        let (_, dropped) = log.insert(r, Matcher::default(), HOUR + 2000);
        assert_eq!(dropped, 1);
        assert_eq!(log.horizon_ms(), 2001);
        assert!(log.bytes() <= 2000 || log.len() == 1);
    }

    #[test]
    fn a_record_older_than_the_horizon_is_applied_not_logged() {
        let mut log = Log::new(10_000, HOUR, 1 << 20);
        let (outcome, _) = log.insert(record("a", 9000, &["u"]), Matcher::default(), 20_000);
        assert_eq!(outcome, Inserted::BeforeHorizon);
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn horizons_merge_unless_a_gap_is_not_covered() {
        let mut log = Log::new(5000, HOUR, 1 << 20);
        log.merged_horizon(3000, None);
        assert_eq!(log.horizon_ms(), 3000);
        log.merged_horizon(4000, Some(3500));
        assert_eq!(
            log.horizon_ms(),
            4000,
            "the peer's log starts after the gap"
        );
        log.merged_horizon(1000, Some(3500));
        assert_eq!(log.horizon_ms(), 1000);
    }

    proptest! {
        /// Two logs that exchange what they lack (in pages) end with the same digest, and
        /// the digest since any time counts exactly the records from then.
        #[test]
        fn exchanging_missing_records_makes_digests_equal(
            a in proptest::collection::vec((0u8..4, 0u64..100), 0..40),
            b in proptest::collection::vec((0u8..4, 0u64..100), 0..40),
            since in 0u64..100,
        ) {
            let build = |items: &[(u8, u64)]| {
                let mut log = Log::new(0, u64::MAX / 4, u64::MAX);
                for (node, at) in items {
                    log.insert(record(&format!("n{node}"), *at, &["u"]), Matcher::default(), 0);
                }
                log
            };
            let (mut x, y) = (build(&a), build(&b));
            loop {
                let have: HashSet<u64> = x.ids_since(0).into_iter().collect();
                let (records, more) = y.missing(0, &have, 600);
                for r in records {
                    x.insert((*r).clone(), Matcher::default(), 0);
                }
                if !more {
                    break;
                }
            }
            let ours: HashSet<u64> = x.ids_since(0).into_iter().collect();
            prop_assert!(y.ids_since(0).iter().all(|id| ours.contains(id)));
            let expected = x.ids_since(since);
            let digest = x.digest_since(since);
            prop_assert_eq!(digest.count, expected.len() as u64);
            prop_assert_eq!(digest.xor, expected.iter().fold(0, |acc, id| acc ^ id));
        }
    }
}
