//! One stored response: immutable once built, shared by `Arc` between the store and readers.
//!
//! Everything a hit needs is computed when the entry is built (freshness lifetime, corrected
//! initial age, parsed Cache-Control, validators), so serving it is arithmetic on `now`
//! plus clones of an `Arc` and `Bytes`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::cache::control::ResponseDirectives;
use crate::cache::freshness::{self, Freshness};
use crate::cache::vary::SecondaryKey;

/// Bytes counted for an entry beyond its body and headers: the `Entry` struct itself, the
/// moka node and its key, the `Arc`s. Measured order of magnitude, kept deliberately generous
/// so resident memory tracks `cache.memory`.
pub const ENTRY_OVERHEAD: u64 = 512;

#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    /// Headers as stored: hop-by-hop and `Age` removed, `Date` present, `Content-Length`
    /// equal to `body.len()`.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Fields named by the response's `Vary`, and the request's values for them.
    pub vary: Vec<HeaderName>,
    pub secondary: SecondaryKey,
    /// When the response that produced this entry was received (RFC 9111 §4.2.3).
    pub response_time: SystemTime,
    pub corrected_initial_age: Duration,
    pub lifetime: Duration,
    pub directives: ResponseDirectives,
    /// Whether a conditional request can revalidate it (has `ETag` or `Last-Modified`).
    pub has_validators: bool,
}

impl Entry {
    pub fn current_age(&self, now: SystemTime) -> Duration {
        freshness::current_age(self.corrected_initial_age, self.response_time, now)
    }

    pub fn freshness(&self, now: SystemTime) -> Freshness {
        freshness::freshness(self.lifetime, self.current_age(now))
    }

    /// Weight in bytes for the store's budget: body, every header name and value, the
    /// secondary key, and a fixed overhead.
    pub fn weight(&self) -> u64 {
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
        self.body.len() as u64 + headers as u64 + secondary as u64 + ENTRY_OVERHEAD
    }

    /// How long the store keeps the entry: while fresh, and past that only while it can still
    /// be useful: renewed by a conditional request, or served stale within the RFC 5861
    /// `stale-while-revalidate` / `stale-if-error` windows.
    pub fn retention(&self) -> Duration {
        let stale_use = self
            .directives
            .stale_while_revalidate
            .max(self.directives.stale_if_error)
            .unwrap_or(0);
        let validatable = if self.has_validators {
            STALE_VALIDATABLE_SECS
        } else {
            0
        };
        let keep_stale = Duration::from_secs(stale_use.max(validatable));
        self.lifetime
            .saturating_sub(self.corrected_initial_age)
            .saturating_add(keep_stale)
    }
}

/// A stale entry with validators is kept this long so a conditional request can renew it
/// cheaply instead of refetching the body.
const STALE_VALIDATABLE_SECS: u64 = 3600;
