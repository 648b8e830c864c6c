//! Passive health of one origin server: failures seen by real requests take it out of
//! rotation for a while, so a dead or struggling server costs one timeout per backoff period
//! instead of one per request.
//!
//! `FALL` consecutive failures (connect errors, resets, timeouts, broken responses, and the
//! statuses of `health.passive_statuses`, none by default) eject the server for a backoff that doubles with each ejection in a row (1 s up to 30 s). When the
//! backoff ends, the next request is a trial: a success brings the server back and resets
//! the backoff; a failure ejects it again, for longer. Time is a parameter (milliseconds on a
//! monotonic clock), so the rules are tested without sleeping.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Consecutive failures that eject a server.
pub(crate) const FALL: u32 = 3;
const FIRST_BACKOFF_MS: u64 = 1_000;
const MAX_BACKOFF_MS: u64 = 30_000;

#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    /// Ejections in a row (for the backoff), reset by a success.
    ejections: AtomicU32,
    /// Out of rotation until this time (ms); 0: in rotation.
    until_ms: AtomicU64,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Counted,
    /// The server just left rotation, for this many milliseconds.
    Ejected(u64),
}

impl Health {
    pub(crate) fn available(&self, now_ms: u64) -> bool {
        now_ms >= self.until_ms.load(Ordering::Relaxed)
    }

    /// Whether it is in rotation and not on trial.
    pub(crate) fn is_up(&self) -> bool {
        self.until_ms.load(Ordering::Relaxed) == 0
    }

    /// Returns whether the server came back (it was ejected before).
    pub(crate) fn success(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
        self.until_ms.swap(0, Ordering::Relaxed) != 0
    }

    pub(crate) fn failure(&self, now_ms: u64) -> Failure {
        let on_trial = self.until_ms.load(Ordering::Relaxed) != 0;
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < FALL && !on_trial {
            return Failure::Counted;
        }
        self.failures.store(0, Ordering::Relaxed);
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed);
        let backoff = FIRST_BACKOFF_MS
            .saturating_mul(1 << ejections.min(16))
            .min(MAX_BACKOFF_MS);
        self.until_ms
            .store(now_ms.saturating_add(backoff).max(1), Ordering::Relaxed);
        Failure::Ejected(backoff)
    }
}

/// Retries spend tokens that requests earn: one tenth of a retry per request, at most ten
/// retries banked. A failing origin therefore sees at most about 10% extra requests from
/// retries, however many requests fail.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// In tenths of a retry.
    tenths: AtomicU64,
}

const BUDGET_CAP: u64 = 100;

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            tenths: AtomicU64::new(BUDGET_CAP),
        }
    }
}

impl RetryBudget {
    pub(crate) fn deposit(&self) {
        let _ = self
            .tenths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < BUDGET_CAP).then_some(t + 1)
            });
    }

    pub(crate) fn withdraw(&self) -> bool {
        self.tenths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(10))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_about_a_tenth_of_requests() {
        let budget = RetryBudget::default();
        // Every request wants a retry (the origin always fails).
        let retried = (0..1_000)
            .filter(|_| {
                budget.deposit();
                budget.withdraw()
            })
            .count();
        // Ten banked, then one per ten requests.
        assert!((100..=111).contains(&retried), "{retried}");
        assert!(!budget.withdraw());
    }

    #[test]
    fn consecutive_failures_eject_with_a_doubling_backoff() {
        let h = Health::default();
        assert!(h.available(0) && h.is_up());
        assert_eq!(h.failure(10), Failure::Counted);
        assert_eq!(h.failure(20), Failure::Counted);
        assert_eq!(h.failure(30), Failure::Ejected(1_000));
        assert!(!h.available(1_029) && h.available(1_030) && !h.is_up());
        // The trial request fails: out again, for twice as long, at once.
        assert_eq!(h.failure(1_040), Failure::Ejected(2_000));
        assert_eq!(h.failure(3_040), Failure::Ejected(4_000));
        for _ in 0..10 {
            h.failure(1 << 40);
        }
        assert!(!h.available((1 << 40) + MAX_BACKOFF_MS - 1));
        assert!(h.available((1 << 40) + MAX_BACKOFF_MS));
        // A success brings it back and forgets the backoff.
        assert!(h.success());
        assert!(h.is_up() && h.available(0));
        assert_eq!(h.failure(0), Failure::Counted);
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let h = Health::default();
        h.failure(0);
        h.failure(0);
        assert!(!h.success(), "it was never ejected");
        assert_eq!(h.failure(0), Failure::Counted);
        assert_eq!(h.failure(0), Failure::Counted);
        assert_eq!(h.failure(0), Failure::Ejected(1_000));
    }
}
