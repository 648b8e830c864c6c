//! One stored response: immutable once built, shared by `Arc` between the store and readers.
//!
//! Everything a hit needs is computed when the entry is built (freshness lifetime, corrected
//! initial age, parsed Cache-Control, validators), so serving it is arithmetic on `now`
//! plus clones of an `Arc` and `Bytes`.

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::cache::chunk::ChunkMap;
use crate::cache::control::ResponseDirectives;
use crate::cache::encoding::Coding;
use crate::cache::freshness::{self, Freshness};
use crate::cache::vary::SecondaryKey;

/// Bytes counted for an entry beyond its body and headers: the `Entry` struct itself, the
/// header map's tables, the moka node, its timer and its key, the `Arc`s, and the
/// allocator's rounding. Measured, not estimated: filled with 1 KiB and with 16 KiB objects,
/// the process held 1.6-1.8 KiB per entry more than a 512-byte overhead counted, the same for
/// both sizes, so it is a per-entry cost. Counted at this figure, resident memory tracks
/// `cache.memory` (the Zipf row of docs/performance.md).
pub(crate) const ENTRY_OVERHEAD: u64 = 2240;

/// A stored response: its [`EntryParts`], read through `Deref` (`entry.status`), and its
/// purge state.
#[derive(Debug)]
pub struct Entry {
    parts: EntryParts,
    /// When a soft purge made it stale (Unix seconds + 1; 0: never). The only mutable part of
    /// an entry: a soft purge marks it in place, so readers holding it see it at once.
    soft_purged: AtomicU64,
    /// Hits served from it (relaxed, approximate): the order of the snapshot a draining node
    /// writes, hottest first. A hit already bumps the `Arc`'s count beside it, so this costs
    /// no extra cache-line traffic.
    hits: AtomicU32,
    /// Its body compressed at the edge, one form per coding, made on first demand: they live
    /// and die with this entry, so a purge, an eviction or a newer response takes them too.
    /// Allocated only for an entry that is compressed (most are not).
    encodings: OnceLock<Box<Encodings>>,
}

/// The encoded forms of an entry. Each slot is set once: by the first request that needs
/// it, while the others asking meanwhile wait for that one (`None`: the coding did not make
/// the body smaller, or failed, and identity is served).
#[derive(Debug, Default)]
pub(crate) struct Encodings {
    forms: [tokio::sync::OnceCell<Option<Arc<Entry>>>; 3],
}

impl Encodings {
    pub(crate) fn form(&self, coding: Coding) -> &tokio::sync::OnceCell<Option<Arc<Entry>>> {
        &self.forms[coding.index()]
    }

    fn weight(&self) -> u64 {
        self.forms
            .iter()
            .filter_map(|f| f.get().and_then(Option::as_ref))
            .map(|e| e.weight())
            .sum()
    }
}

/// What an entry is made of, as stored; [`Entry::new`] adds the purge state.
#[derive(Debug, Clone)]
pub struct EntryParts {
    pub(crate) status: StatusCode,
    /// Headers as stored: hop-by-hop and `Age` removed, `Date` present, `Content-Length`
    /// equal to `body.len()` (or, chunked, to the whole length).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Fields named by the response's `Vary`, and the request's values for them.
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) secondary: SecondaryKey,
    /// When the response that produced this entry was received (RFC 9111 §4.2.3).
    pub(crate) response_time: SystemTime,
    /// When the node that fetched it from the origin asked for it: a copy arriving later (a
    /// replica push, a hop's answer, a snapshot) keeps that node's time, so a purge taken
    /// after it still names it (see `cluster::purge_log`).
    pub(crate) fetched: SystemTime,
    pub(crate) corrected_initial_age: Duration,
    /// The freshness lifetime computed when stored; [`Entry::lifetime`] is the one in effect.
    pub(crate) lifetime: Duration,
    pub(crate) directives: ResponseDirectives,
    /// Whether a conditional request can revalidate it (has `ETag` or `Last-Modified`).
    pub(crate) has_validators: bool,
    /// Tags from the site's tag field (`Surrogate-Key`), for purges by tag.
    pub(crate) tags: Box<[Box<str>]>,
    /// A copy of an object another node of the cluster owns.
    pub(crate) replica: bool,
    /// A representation stored as chunks, each its own entry (`body` is empty, and
    /// `Content-Length` in `headers` is the whole length): see [`crate::cache::chunk`].
    pub(crate) chunks: Option<ChunkMap>,
}

/// The stored fields are read-only once built, so readers see them directly rather than
/// through twelve accessors.
impl Deref for Entry {
    type Target = EntryParts;

    fn deref(&self) -> &EntryParts {
        &self.parts
    }
}

impl Entry {
    pub(crate) fn new(parts: EntryParts) -> Self {
        Self {
            parts,
            soft_purged: AtomicU64::new(0),
            hits: AtomicU32::new(0),
            encodings: OnceLock::new(),
        }
    }

    /// The encoded forms' slots, allocated on first use.
    pub(crate) fn encodings(&self) -> &Encodings {
        self.encodings.get_or_init(Box::default)
    }

    /// The form encoded in `coding`, if it was made.
    pub(crate) fn encoded(&self, coding: Coding) -> Option<&Arc<Entry>> {
        self.encodings.get()?.form(coding).get()?.as_ref()
    }

    /// The parts, before the entry is shared (to make a manifest of it).
    pub(crate) fn into_parts(self) -> EntryParts {
        self.parts
    }

    /// A copy of this entry to answer with, not to store, whose `Cache-Status` is `value`
    /// (the caches before this node that answered its revalidation). Its body is shared.
    pub(crate) fn answered_with_status(&self, value: http::HeaderValue) -> Entry {
        let mut parts = self.parts.clone();
        parts
            .headers
            .insert(http::HeaderName::from_static("cache-status"), value);
        let entry = Entry::new(parts);
        entry.restore(self.soft_purged_at(), self.hits());
        entry
    }

    /// A copy of this entry to answer with, not to store, as the caches before this node
    /// answered it: their `Cache-Status` and `Via`, from `upstream` (another node's answer).
    pub(crate) fn answered_through(&self, upstream: &http::HeaderMap) -> Entry {
        let mut parts = self.parts.clone();
        for name in [
            http::HeaderName::from_static("cache-status"),
            http::header::VIA,
        ] {
            parts.headers.remove(&name);
            for value in upstream.get_all(&name) {
                parts.headers.append(name.clone(), value.clone());
            }
        }
        let entry = Entry::new(parts);
        entry.restore(self.soft_purged_at(), self.hits());
        entry
    }

    /// The same entry, held as a copy of an object another node stored (a pushed replica):
    /// its purge state and hits kept, its encoded forms left to be made here.
    pub(crate) fn into_replica(self) -> Entry {
        let (soft_purged, hits) = (self.soft_purged_at(), self.hits());
        let mut parts = self.parts;
        parts.replica = true;
        let entry = Entry::new(parts);
        entry.restore(soft_purged, hits);
        entry
    }

    /// The representation's length: the body's, or the whole of a chunked one.
    pub(crate) fn len(&self) -> u64 {
        self.chunks
            .as_ref()
            .map_or(self.body.len() as u64, |map| map.total)
    }

    /// Count a hit.
    pub(crate) fn touch(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The soft purge state as stored (Unix seconds + 1; 0: never), for the snapshot.
    pub(crate) fn soft_purged_at(&self) -> u64 {
        self.soft_purged.load(Ordering::Relaxed)
    }

    /// Put back what [`Entry::soft_purged_at`] and [`Entry::hits`] said (a snapshot's entry).
    pub(crate) fn restore(&self, soft_purged_at: u64, hits: u32) {
        self.soft_purged.store(soft_purged_at, Ordering::Relaxed);
        self.hits.store(hits, Ordering::Relaxed);
    }

    pub(crate) fn current_age(&self, now: SystemTime) -> Duration {
        freshness::current_age(self.corrected_initial_age, self.response_time, now)
    }

    /// The freshness lifetime in effect: the stored one, cut short by a soft purge at the age
    /// the entry had then. Staleness therefore counts from the purge, and the RFC 5861
    /// windows (`stale-while-revalidate`, `stale-if-error`) still apply after it.
    pub(crate) fn lifetime(&self) -> Duration {
        match self.soft_purged.load(Ordering::Relaxed) {
            0 => self.parts.lifetime,
            at => {
                let purged = UNIX_EPOCH + Duration::from_secs(at - 1);
                self.parts.lifetime.min(self.current_age(purged))
            }
        }
    }

    pub(crate) fn freshness(&self, now: SystemTime) -> Freshness {
        freshness::freshness(self.lifetime(), self.current_age(now))
    }

    /// Soft purge: stale from `now` on, kept for revalidation and stale serving.
    pub(crate) fn mark_stale(&self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        // The first soft purge counts; a later one cannot make it fresher.
        let _ = self.soft_purged.compare_exchange(
            0,
            secs.saturating_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| &**t == tag)
    }

    /// Weight in bytes for the store's budget: body, every header name and value, the
    /// secondary key, a fixed overhead, and the encoded forms made so far (the store weighs
    /// the entry again when one is added).
    pub(crate) fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let secondary: usize = self
            .secondary
            .0
            .iter()
            .map(|v| v.as_ref().map_or(0, String::len) + 24)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + 16).sum();
        let encoded = self.encodings.get().map_or(0, |e| e.weight());
        self.body.len() as u64
            + headers as u64
            + secondary as u64
            + tags as u64
            + ENTRY_OVERHEAD
            + encoded
    }

    /// How long the store keeps the entry: while fresh, and past that only while it can still
    /// be useful: renewed by a conditional request, or served stale within the RFC 5861
    /// `stale-while-revalidate` / `stale-if-error` windows or the site's window for an
    /// unreachable origin (RFC 9111 §4.2.4). The byte bound evicts it sooner where space is
    /// short.
    pub(crate) fn retention(&self) -> Duration {
        let stale_use = self
            .directives
            .stale_while_revalidate
            .max(self.directives.stale_if_error)
            .max(crate::cache::freshness::disconnected_window(
                &self.directives,
            ))
            .unwrap_or(0);
        let validatable = if self.has_validators {
            STALE_VALIDATABLE_SECS
        } else {
            0
        };
        let keep_stale = Duration::from_secs(stale_use.max(validatable));
        self.parts
            .lifetime
            .saturating_sub(self.corrected_initial_age)
            .saturating_add(keep_stale)
    }
}

impl Entry {
    /// How much longer the store keeps it from `now`: [`Entry::retention`] less the time since
    /// the response was received (zero once that has passed). The same as `retention` when it
    /// is stored fresh from a fill; less for an entry carried over a reload or a restart.
    pub(crate) fn retained_for(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.response_time).unwrap_or_default();
        self.retention().saturating_sub(resident)
    }
}

/// A stale entry with validators is kept this long so a conditional request can renew it
/// cheaply instead of refetching the body.
const STALE_VALIDATABLE_SECS: u64 = 3600;
