//! The in-memory store: a moka cache of [`Variants`] weighed in bytes, plus the short memory of
//! keys that answered uncacheable, plus request coalescing ([`coalesce`]).
//!
//! Memory is honest: the weigher counts bodies, headers, secondary keys and a per-entry
//! overhead, so `cache.memory` bounds what the process actually holds for the cache. moka's
//! TinyLFU admission keeps one-hit wonders from flushing popular objects (scan resistance).

pub(crate) mod budget;
mod chunk_index;
pub(crate) mod coalesce;
pub(crate) mod entry;
pub(crate) mod snapshot;
pub(crate) mod variants;

use crate::locks::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;

pub(crate) use entry::{Entry, EntryParts};

use crate::cache::chunk;
use crate::sketch::Sketch;
use chunk_index::ChunkIndex;
pub use variants::Variants;

/// Called for every entry the store drops, with why (size, expiry, purge, replacement).
pub(crate) type EvictionHook = Arc<dyn Fn(RemovalCause) + Send + Sync>;

pub struct Store {
    cache: Cache<String, Arc<Variants>>,
    /// moka applies evictions lazily, in batches; a run of large inserts could hold several
    /// batches' worth of bytes beyond the budget. Bytes inserted since evictions were last
    /// applied: past `capacity / 16`, the inserting fill applies them itself.
    unapplied: AtomicU64,
    capacity: u64,
    /// Keys whose last response could not be stored: their misses skip coalescing for a while
    /// so a burst is not serialised behind fills that will never be shared.
    uncacheable: moka::sync::Cache<String, ()>,
    /// Recent purges by tag, newest last: a fill that fetched before one of them must not
    /// store a response carrying a purged tag. Bounded; consulted once per stored fill.
    tag_purges: Mutex<VecDeque<(SystemTime, Arc<[String]>)>>,
    /// Bytes of entries this node holds as the key's owner and as a replica (entry weights
    /// without keys), for `outpost_cache_role_bytes`: added when a value is written, taken
    /// off when moka drops it (the eviction listener sees every removal and replacement).
    roles: Arc<RoleBytes>,
    /// URL keys whose chunks (of a representation stored in chunks, held by their own owners)
    /// are stored here, counted: a purge of the URL removes them too.
    chunked_urls: Arc<ChunkIndex>,
    /// URL keys whose origin answered a chunk request with the whole representation (it
    /// ignores `Range`): stored whole, or streamed, for a while rather than as chunks.
    unchunkable: moka::sync::Cache<String, ()>,
    /// How often each key was asked for lately: once the store is full, a new object is
    /// admitted only if it was asked for before (see [`Store::admits`]).
    popularity: Sketch,
}

/// Requests for a key (this one included, within the sketch's aging period) before a full
/// store admits its object: a key asked for once is most likely asked for never again, and
/// storing it would evict one that is.
const ADMIT_AFTER: u32 = 2;

#[derive(Default)]
struct RoleBytes {
    owner: AtomicI64,
    replica: AtomicI64,
}

impl RoleBytes {
    fn add(&self, value: &Variants, sign: i64) {
        let (owner, replica) = value.role_weights();
        let signed = |w: u64| i64::try_from(w).unwrap_or(i64::MAX) * sign;
        self.owner.fetch_add(signed(owner), Ordering::Relaxed);
        self.replica.fetch_add(signed(replica), Ordering::Relaxed);
    }
}

/// How many recent tag purges fills are checked against (older fills than that many purges
/// ago are long finished: a fill is bounded by the origin timeouts).
const TAG_PURGE_LOG: usize = 256;

/// Hard purges delete; soft purges mark stale, so revalidation and RFC 5861 stale serving
/// can still use the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeMode {
    Hard,
    Soft,
}

struct RetentionExpiry;

impl Expiry<String, Arc<Variants>> for RetentionExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Variants>,
        _created_at: Instant,
    ) -> Option<Duration> {
        retained_for(value)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Variants>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        retained_for(value)
    }
}

/// The longest any variant is still kept for, from now (see [`Entry::retained_for`]).
fn retained_for(value: &Variants) -> Option<Duration> {
    let now = SystemTime::now();
    value.entries().iter().map(|e| e.retained_for(now)).max()
}

impl Store {
    pub fn new(memory: u64, uncacheable_ttl: Duration, on_evict: EvictionHook) -> Self {
        let roles = Arc::new(RoleBytes::default());
        let dropped = roles.clone();
        let chunked_urls = Arc::new(ChunkIndex::default());
        let chunks_dropped = chunked_urls.clone();
        let cache = Cache::builder()
            .max_capacity(memory)
            .weigher(|key: &String, value: &Arc<Variants>| {
                let weight = key.len() as u64 + value.weight();
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .expire_after(RetentionExpiry)
            .eviction_listener(move |key: Arc<String>, value: Arc<Variants>, cause| {
                dropped.add(&value, -1);
                if let Some(url) = chunk::url_of_chunk(&key) {
                    chunks_dropped.add(url, -1);
                }
                on_evict(cause);
            })
            .support_invalidation_closures()
            .build();
        let uncacheable = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(uncacheable_ttl.max(Duration::from_millis(1)))
            .build();
        let unchunkable = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(uncacheable_ttl.max(Duration::from_secs(60)))
            .build();
        Self {
            cache,
            uncacheable,
            chunked_urls,
            unchunkable,
            unapplied: AtomicU64::new(0),
            capacity: memory,
            tag_purges: Mutex::new(VecDeque::new()),
            roles,
            // One counter per 4 KiB of memory: more keys than the store can hold, so the
            // sketch remembers the ones it turned away.
            popularity: Sketch::new(usize::try_from(memory / 4096).unwrap_or(usize::MAX)),
        }
    }

    /// Count a request for `key`.
    pub(crate) fn record_request(&self, key: &str) {
        self.popularity.record(crate::hash::key(key));
    }

    /// Whether a new object of `weight` bytes for `key` should be stored: while there is
    /// room, always; once full, only if `key` was asked for before (TinyLFU's doorkeeper,
    /// in front of moka's own admission, which compares the candidate with its victims).
    ///
    /// "Room" leaves out the last sixteenth of the budget: moka's size lags the inserts not
    /// yet applied (up to that much, see [`Store::insert`]), and a full store whose evictions
    /// have just been applied sits a little under its budget, which would otherwise let every
    /// insert until the next maintenance through.
    pub(crate) fn admits(&self, key: &str, weight: u64) -> bool {
        let room = self.capacity - self.capacity / 16;
        self.weighted_size().saturating_add(weight) <= room
            || self.popularity.estimate(crate::hash::key(key)) >= ADMIT_AFTER
    }

    /// Bytes held as owner and as replica (see [`Store::weighted_size`] for the total).
    pub(crate) fn role_bytes(&self) -> (u64, u64) {
        let read = |a: &AtomicI64| u64::try_from(a.load(Ordering::Relaxed)).unwrap_or(0);
        (read(&self.roles.owner), read(&self.roles.replica))
    }

    pub async fn get(&self, key: &str) -> Option<Arc<Variants>> {
        self.cache.get(key).await
    }

    /// Store `entry` as the variant of `key` for its secondary key. The read-modify-write is
    /// atomic per key, so two fills of different variants cannot drop each other's.
    pub async fn insert(&self, key: &str, entry: Arc<Entry>, max_variants: usize) {
        let weight = entry.weight();
        let stored = self
            .cache
            .entry_by_ref(key)
            .and_upsert_with(|existing| async move {
                Arc::new(match existing {
                    Some(existing) => existing.into_value().with(entry, max_variants),
                    None => Variants::single(entry),
                })
            })
            .await;
        self.roles.add(stored.value(), 1);
        self.uncacheable.invalidate(key);
        if let Some(url) = chunk::url_of_chunk(key) {
            self.chunked_urls.add(url, 1);
        }
        let unapplied = self.unapplied.fetch_add(weight, Ordering::Relaxed) + weight;
        if unapplied > self.capacity / 16 {
            self.unapplied.store(0, Ordering::Relaxed);
            self.cache.run_pending_tasks().await;
        }
    }

    /// Weigh `key`'s variants again after `entry` (one of them) grew an encoded form, so the
    /// budget counts it. Nothing happens if `entry` is no longer stored there.
    pub(crate) async fn reweigh(&self, key: &str, entry: &Arc<Entry>) {
        let result = self
            .cache
            .entry_by_ref(key)
            .and_compute_with(|existing| async move {
                match existing {
                    Some(e) if e.value().entries().iter().any(|x| Arc::ptr_eq(x, entry)) => {
                        Op::Put(Arc::new(e.value().reweighed()))
                    }
                    _ => Op::Nop,
                }
            })
            .await;
        if let moka::ops::compute::CompResult::ReplacedWith(stored) = result {
            self.roles.add(stored.value(), 1);
        }
    }

    /// Remove every variant of `key` (and the chunks of its representation held here); true
    /// if something was stored.
    pub(crate) async fn purge(&self, key: &str) -> bool {
        self.purge_chunks(key);
        self.cache.remove(key).await.is_some()
    }

    /// Remove the chunks of `url_key` held here (a soft purge too: a chunk is asked for with
    /// its validator, so refetching one costs a Range request, never a wrong byte).
    fn purge_chunks(&self, url_key: &str) {
        if !self.chunked_urls.has(url_key) {
            return;
        }
        let prefix = chunk::chunk_prefix(url_key);
        let selected = move |key: &String, _: &Arc<Variants>| key.starts_with(&prefix);
        if let Err(e) = self.cache.invalidate_entries_if(selected) {
            // Only if the builder above lost `support_invalidation_closures`.
            tracing::warn!(error = %e, "chunks of a purged object left to expire");
        }
    }

    /// The origin of `url_key` ignores `Range`: no chunks for it for a while.
    pub(crate) fn mark_unchunkable(&self, url_key: &str) {
        self.unchunkable.insert(url_key.to_owned(), ());
    }

    pub(crate) fn is_unchunkable(&self, url_key: &str) -> bool {
        self.unchunkable.contains_key(url_key)
    }

    /// Purge `key` the given way; how many variants it held.
    pub(crate) async fn purge_key(&self, key: &str, mode: PurgeMode) -> usize {
        self.purge_chunks(key);
        match mode {
            PurgeMode::Hard => self
                .cache
                .remove(key)
                .await
                .map_or(0, |v| v.entries().len()),
            PurgeMode::Soft => self.get(key).await.map_or(0, |variants| {
                let now = SystemTime::now();
                variants.entries().iter().for_each(|e| e.mark_stale(now));
                variants.entries().len()
            }),
        }
    }

    /// Purge every entry carrying one of `tags`; how many entries it hit.
    ///
    /// The store keeps no tag index (one more structure to keep consistent with evictions and
    /// replacements): a purge scans the cache on a blocking thread, so it costs time
    /// proportional to the cache, off the request path, and nothing per request.
    pub async fn purge_tags(&self, tags: Arc<[String]>, mode: PurgeMode) -> usize {
        {
            let mut log = lock(&self.tag_purges);
            if log.len() == TAG_PURGE_LOG {
                log.pop_front();
            }
            log.push_back((SystemTime::now(), tags.clone()));
        }
        let cache = self.cache.clone();
        let wanted = tags.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            let (mut whole, mut partial, mut marked) = (Vec::new(), Vec::new(), 0);
            for (key, variants) in cache.iter() {
                let tagged = variants
                    .entries()
                    .iter()
                    .filter(|e| wanted.iter().any(|t| e.has_tag(t)));
                match mode {
                    PurgeMode::Soft => tagged.for_each(|e| {
                        e.mark_stale(now);
                        marked += 1;
                    }),
                    PurgeMode::Hard => match tagged.count() {
                        0 => {}
                        n if n == variants.entries().len() => {
                            whole.push(key);
                            marked += n;
                        }
                        _ => partial.push(key),
                    },
                }
            }
            (whole, partial, marked)
        });
        let Ok((whole, partial, marked)) = scan.await else {
            return 0;
        };
        if mode == PurgeMode::Soft {
            return marked;
        }
        // Every variant tagged (the usual case): moka drops the keys itself. From now on no
        // lookup returns an entry inserted before this call that the predicate selects, and
        // entries stored after it are untouched; the memory is reclaimed in maintenance.
        let gone = tags.clone();
        let selected = move |_: &String, v: &Arc<Variants>| {
            v.entries()
                .iter()
                .all(|e| gone.iter().any(|t| e.has_tag(t)))
        };
        if self.cache.invalidate_entries_if(selected).is_err() {
            // Only if the builder above lost `support_invalidation_closures`.
            for key in whole {
                self.cache.invalidate(key.as_str()).await;
            }
        }
        // `marked` counted the variants of the wholly tagged keys.
        let mut purged = marked;
        for key in partial {
            purged += self
                .remove_variants(&key, |e| tags.iter().any(|t| e.has_tag(t)))
                .await;
        }
        purged
    }

    /// Remove the variants of `key` that `drop` selects (all of them: the key goes). The
    /// read-modify-write is atomic per key, like `insert`.
    async fn remove_variants(&self, key: &str, drop: impl Fn(&Entry) -> bool + Send) -> usize {
        let mut removed = 0;
        let removed_ref = &mut removed;
        self.cache
            .entry_by_ref(key)
            .and_compute_with(|existing| async move {
                let Some(existing) = existing else {
                    return Op::Nop;
                };
                let variants = existing.into_value();
                let before = variants.entries().len();
                match variants.without(&drop) {
                    None => {
                        *removed_ref = before;
                        Op::Remove
                    }
                    Some(kept) if kept.entries().len() == before => Op::Nop,
                    Some(kept) => {
                        *removed_ref = before - kept.entries().len();
                        self.roles.add(&kept, 1);
                        Op::Put(Arc::new(kept))
                    }
                }
            })
            .await;
        removed
    }

    /// Whether a tag purge since `since` names one of `tags`: a fill that fetched before it
    /// must not store.
    pub(crate) fn tag_purged_since(&self, since: SystemTime, tags: &[Box<str>]) -> bool {
        if tags.is_empty() {
            return false;
        }
        lock(&self.tag_purges)
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .any(|(_, purged)| purged.iter().any(|p| tags.iter().any(|t| **t == **p)))
    }

    /// Carry every entry of `old` over (a reload that changed the cache size): entries are
    /// shared `Arc`s, nothing is copied, and what does not fit the new size is evicted as
    /// usual.
    pub(crate) async fn take_from(&self, old: &Store) {
        let entries: Vec<(Arc<String>, Arc<Variants>)> = old.cache.iter().collect();
        for (key, variants) in entries {
            self.roles.add(&variants, 1);
            if let Some(url) = chunk::url_of_chunk(&key) {
                self.chunked_urls.add(url, 1);
            }
            self.cache.insert(key.as_ref().clone(), variants).await;
        }
        self.cache.run_pending_tasks().await;
    }

    /// Every stored entry with its key, for a snapshot (a scan of the whole cache: call it off
    /// the request path, on a blocking thread).
    pub(crate) fn all_entries(&self) -> Vec<(Arc<String>, Arc<Entry>)> {
        let mut out = Vec::with_capacity(usize::try_from(self.cache.entry_count()).unwrap_or(0));
        for (key, variants) in self.cache.iter() {
            // Manifests and chunks too: each is one node's share of an object spread over the
            // cluster, read back by the node that holds it.
            for entry in variants.entries().iter() {
                out.push((key.clone(), entry.clone()));
            }
        }
        out
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn mark_uncacheable(&self, key: &str) {
        self.uncacheable.insert(key.to_owned(), ());
    }

    pub(crate) fn is_uncacheable(&self, key: &str) -> bool {
        self.uncacheable.contains_key(key)
    }

    /// Bytes currently held, as the weigher counts them (approximate until pending
    /// maintenance runs).
    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Apply pending inserts and evictions now (metrics scrapes and tests want exact figures).
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode, header};
    use proptest::prelude::*;

    use super::*;
    use crate::cache::control::ResponseDirectives;
    use crate::cache::vary::SecondaryKey;

    fn entry(size: usize) -> Arc<Entry> {
        entry_as(size, false)
    }

    fn entry_as(size: usize, replica: bool) -> Arc<Entry> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        Arc::new(Entry::new(EntryParts {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(vec![0u8; size]),
            vary: Vec::new(),
            secondary: SecondaryKey::default(),
            response_time: SystemTime::now(),
            fetched: SystemTime::now(),
            corrected_initial_age: Duration::ZERO,
            lifetime: Duration::from_secs(3600),
            directives: ResponseDirectives::default(),
            has_validators: false,
            tags: Box::new([]),
            replica,
            chunks: None,
        }))
    }

    fn runtime() -> tokio::runtime::Runtime {
        // Building a current-thread runtime only fails if the OS refuses basic resources.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    const BUDGET: u64 = 1 << 20;

    /// While there is room every object is admitted; once full, only one asked for before.
    #[test]
    fn a_full_store_admits_only_keys_asked_for_before() {
        runtime().block_on(async {
            let store = Store::new(BUDGET, Duration::from_secs(30), Arc::new(|_| {}));
            let size = 100_000;
            let weight = entry(size).weight();
            assert!(store.admits("http://a.test/new", weight), "room left");
            for i in 0..12 {
                store
                    .insert(&format!("http://a.test/{i}"), entry(size), 16)
                    .await;
            }
            store.run_pending_tasks().await;
            assert!(store.weighted_size() + weight > BUDGET, "now full");
            store.record_request("http://a.test/new");
            assert!(!store.admits("http://a.test/new", weight), "asked for once");
            store.record_request("http://a.test/new");
            assert!(store.admits("http://a.test/new", weight), "asked for twice");
            assert!(
                !store.admits("http://a.test/other", weight),
                "never asked for"
            );
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn weight_never_exceeds_the_budget(sizes in proptest::collection::vec(0usize..300_000, 1..120)) {
            runtime().block_on(async {
                let store = Store::new(BUDGET, Duration::from_secs(30), Arc::new(|_| {}));
                for (i, size) in sizes.iter().enumerate() {
                    store.insert(&format!("http://a.test/{i}"), entry(*size), 16).await;
                    store.run_pending_tasks().await;
                    prop_assert!(store.weighted_size() <= BUDGET);
                }
                Ok(())
            })?;
        }

        /// Chunks written, evicted by size, replaced and purged: the index says a URL has
        /// chunks exactly when some are stored, so a purge never misses one, and a carried
        /// store counts what it took.
        #[test]
        fn the_chunk_index_matches_the_chunks_stored(
            ops in proptest::collection::vec((0u8..6, 0u8..4, 0usize..200_000, any::<bool>()), 1..80),
        ) {
            runtime().block_on(async {
                let store = Store::new(BUDGET, Duration::from_secs(30), Arc::new(|_| {}));
                let url = |u: &u8| format!("http://a.test/{u}");
                for (u, index, size, purge) in &ops {
                    if *purge {
                        store.purge(&url(u)).await;
                    } else {
                        let key = format!("{}{index}\u{1}\"v\"", chunk::chunk_prefix(&url(u)));
                        store.insert(&key, entry(*size), 16).await;
                    }
                }
                store.run_pending_tasks().await;
                let carried = Store::new(BUDGET, Duration::from_secs(30), Arc::new(|_| {}));
                carried.take_from(&store).await;
                for s in [&store, &carried] {
                    let keys: Vec<Arc<String>> = s.cache.iter().map(|(k, _)| k).collect();
                    for u in 0u8..6 {
                        let held = keys.iter().any(|k| chunk::url_of_chunk(k) == Some(url(&u).as_str()));
                        prop_assert_eq!(s.chunked_urls.has(&url(&u)), held, "url {}", u);
                    }
                    prop_assert!(s.chunked_urls.len() <= keys.len());
                }
                Ok(())
            })?;
        }

        #[test]
        fn role_bytes_add_up_to_what_is_stored(
            ops in proptest::collection::vec((0u8..24, 0usize..120_000, any::<bool>(), any::<bool>()), 1..80),
        ) {
            runtime().block_on(async {
                let store = Store::new(BUDGET, Duration::from_secs(30), Arc::new(|_| {}));
                for (k, size, replica, purge) in &ops {
                    let key = format!("http://a.test/{k}");
                    if *purge {
                        store.purge(&key).await;
                    } else {
                        store.insert(&key, entry_as(*size, *replica), 16).await;
                    }
                }
                store.run_pending_tasks().await;
                let (mut owner, mut replica) = (0, 0);
                for (_, e) in store.all_entries() {
                    if e.replica { replica += e.weight() } else { owner += e.weight() }
                }
                prop_assert_eq!(store.role_bytes(), (owner, replica));
                Ok(())
            })?;
        }

        #[test]
        fn a_purge_then_a_lookup_always_misses(
            keys in proptest::collection::vec(0u8..16, 1..40),
            purge in 0u8..16,
        ) {
            runtime().block_on(async {
                let store = Store::new(BUDGET, Duration::from_secs(30), Arc::new(|_| {}));
                for k in &keys {
                    store.insert(&format!("http://a.test/{k}"), entry(100), 16).await;
                }
                let key = format!("http://a.test/{purge}");
                store.purge(&key).await;
                prop_assert!(store.get(&key).await.is_none());
                Ok(())
            })?;
        }
    }
}
