//! A node-wide bound on the bytes that fills hold while buffering a body they mean to store
//! (and, in a budget of its own, on request bodies read before their origin request).
//!
//! A storable fill keeps its whole body until it completes (it becomes the entry). Without a
//! bound, many concurrent misses for distinct large objects (distinct query strings are
//! enough) could hold `max_object` each. A fill that cannot reserve more bytes stops storing and
//! streams through with a bounded window instead, so clients still get every byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct FillBudget {
    limit: u64,
    used: AtomicU64,
}

impl FillBudget {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes one fill holds against the budget; released when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<FillBudget>,
    held: u64,
}

impl Reservation {
    pub(crate) fn new(budget: Arc<FillBudget>) -> Self {
        Self { budget, held: 0 }
    }

    /// Reserve `bytes` more; false (and nothing reserved) if that would pass the limit.
    pub(crate) fn grow(&mut self, bytes: u64) -> bool {
        let budget = &self.budget;
        let reserved = budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|total| *total <= budget.limit)
            })
            .is_ok();
        if reserved {
            self.held += bytes;
        }
        reserved
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_are_released_on_drop() {
        let budget = FillBudget::new(100);
        let mut a = Reservation::new(budget.clone());
        let mut b = Reservation::new(budget.clone());
        assert!(a.grow(60));
        assert!(!b.grow(50), "60 + 50 > 100");
        assert!(b.grow(40));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.grow(60));
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
