//! A hybrid logical clock (Kulkarni et al., 2014): wall-clock milliseconds that never run
//! backwards and never fall behind a time this node has heard from another.
//!
//! Purges are ordered by it. Machines' clocks disagree; a node whose clock lags reads, after
//! one message from a peer, a time no earlier than that peer's, so "this object was fetched
//! before that purge" compares times that agree to within a probe interval rather than to
//! whatever NTP left between the machines. Each reading is unique on this node: two purges
//! entered in the same millisecond still get distinct identities.
//!
//! A reading is one `u64`: milliseconds since the Unix epoch in the high 48 bits, a counter
//! within the millisecond in the low 16.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::message::unix_ms;

const LOGICAL_BITS: u32 = 16;

#[derive(Debug, Default)]
pub(crate) struct Clock {
    last: AtomicU64,
}

/// The milliseconds of a reading.
pub(crate) fn millis(reading: u64) -> u64 {
    reading >> LOGICAL_BITS
}

/// A reading at the start of millisecond `ms`.
pub(crate) fn at_millis(ms: u64) -> u64 {
    ms.saturating_mul(1 << LOGICAL_BITS)
}

impl Clock {
    /// A new reading: after every earlier one, and no earlier than the wall clock.
    pub(crate) fn now(&self) -> u64 {
        self.tick(at_millis(unix_ms(SystemTime::now())))
    }

    /// A reading at or after every earlier one, without taking a new one (so it may equal
    /// the last purge's time): for comparing, never for stamping.
    pub(crate) fn read(&self) -> u64 {
        let physical = at_millis(unix_ms(SystemTime::now()));
        physical.max(self.last.load(Ordering::Relaxed))
    }

    fn tick(&self, physical: u64) -> u64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// A time heard from another node (in milliseconds): later readings come after it.
    pub(crate) fn observe_ms(&self, ms: u64) {
        self.last.fetch_max(at_millis(ms), Ordering::Relaxed);
    }

    /// The milliseconds of the latest reading (without taking a new one).
    pub(crate) fn now_ms(&self) -> u64 {
        millis(self.last.load(Ordering::Relaxed)).max(unix_ms(SystemTime::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_grow_and_follow_what_was_heard() {
        let clock = Clock::default();
        let a = clock.tick(at_millis(1000));
        let b = clock.tick(at_millis(1000));
        assert!(b > a);
        assert_eq!(millis(b), 1000);
        // A wall clock that went back does not take the clock back.
        let c = clock.tick(at_millis(900));
        assert!(c > b);
        // A peer ahead by 5 s: the next reading is after its time.
        clock.observe_ms(6000);
        let d = clock.tick(at_millis(1001));
        assert!(millis(d) >= 6000);
    }
}
