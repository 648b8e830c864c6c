//! "Is this key hot?": a count-min frequency sketch with periodic aging (TinyLFU style).
//!
//! Two users: a non-owner node replicates objects it serves often, and a full store admits
//! a new object only if it was asked for before (see `storage`). Counting every key exactly would cost
//! memory per distinct key, and most keys on a CDN are requested once; a count-min sketch
//! costs a fixed `4 × width` bytes and never under-counts (short of the races below), which is
//! the safe direction for "hot enough to keep a copy".
//!
//! Design choices:
//!
//! - **4 rows of `u8` counters, width a power of two** sized from the capacity (clamped to
//!   `64..=2^22`, so at most 16 MiB) so a row index is a mask, not a division. `u8` saturates
//!   at 255, far above any useful "hot" threshold.
//! - **Minimal increment** (conservative update, as in the TinyLFU paper): a record raises only
//!   the rows that hold the current minimum. The estimate is still never below the true count,
//!   but collisions inflate it far less. That matters: with a period of `10 × width` records,
//!   plain count-min would add ~10 per counter per period to every row. Measured worst case
//!   (every other record a never-seen key), a never-seen key estimates 3..=7 mid-period, so a
//!   "hot" threshold belongs well above that (e.g. ≥ 16).
//! - **Aging**: every `sample_size = 10 × width` records all counters are halved, so yesterday's
//!   hot keys cool down and a key must stay popular to stay hot: a key seen `r` times per
//!   period settles between `r` (just after aging) and `2r` (just before). The thread whose
//!   record is a multiple of `sample_size` halves. A thread descheduled mid-halving can let the
//!   next halving overlap it, which only halves twice; a reset of the count instead could be
//!   overtaken by other threads and stop aging for good.
//!   (Caffeine instead halves the record count too, aging every half period after the first;
//!   we keep the plain "every `sample_size` records" so the period is one number.)
//! - **No lock**: counters are `AtomicU8` with relaxed ordering, each bumped by a single
//!   compare-exchange. A lost race (another record or the halving got there first) drops that
//!   one increment; nothing is ever double-counted or wrapped past 255. Counts are approximate
//!   by design, so no ordering with other memory is needed.
//! - **Row indexes** are the first four outputs of splitmix64 seeded with the key hash, so the
//!   rows are independent of each other and of the ring's node scores (different mixer), and a
//!   poorly mixed hash passed by mistake still spreads.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

const ROWS: usize = 4;
const MIN_WIDTH: usize = 64;
/// 4 rows × 4 Mi counters = 16 MiB: a cap so a misconfigured capacity cannot eat the node.
const MAX_WIDTH: usize = 1 << 22;
/// Records between agings, per counter of a row.
const SAMPLE_PER_COUNTER: usize = 10;

pub(crate) struct Sketch {
    /// `ROWS` rows of `width` counters, row after row.
    counters: Box<[AtomicU8]>,
    /// `width - 1`; `width` is a power of two.
    mask: usize,
    /// Records between agings: `10 × width`.
    sample_size: usize,
    /// Records ever made (wrapping): every `sample_size`-th one ages the sketch.
    records: AtomicUsize,
}

impl Sketch {
    /// A sketch for about `capacity` distinct hot keys. Any capacity is accepted: it is
    /// clamped to `64..=4 194 304` and rounded up to a power of two.
    pub(crate) fn new(capacity: usize) -> Sketch {
        // Clamp before rounding: `next_power_of_two` overflows for capacities above 2^63.
        let width = capacity.clamp(MIN_WIDTH, MAX_WIDTH).next_power_of_two();
        Sketch {
            counters: (0..ROWS * width).map(|_| AtomicU8::new(0)).collect(),
            mask: width - 1,
            sample_size: SAMPLE_PER_COUNTER * width,
            records: AtomicUsize::new(0),
        }
    }

    /// Counts one request for the key and returns its estimate including this request
    /// (before any aging this record triggers).
    pub(crate) fn record(&self, key_hash: u64) -> u32 {
        let slots = self.slots(key_hash);
        let values = slots.map(|slot| self.counters[slot].load(Relaxed));
        let min = values.into_iter().fold(u8::MAX, u8::min);
        if min < u8::MAX {
            for (slot, value) in slots.into_iter().zip(values) {
                if value == min {
                    // One attempt only: on failure someone else changed the counter, and we
                    // accept losing this increment rather than spin on a hot key.
                    let _ = self.counters[slot].compare_exchange(value, min + 1, Relaxed, Relaxed);
                }
            }
        }
        // Every `sample_size`-th record ages. A modulo rather than a reset: a thread delayed
        // between counting and resetting would otherwise let the count run past the mark and
        // stop aging for good.
        let n = self.records.fetch_add(1, Relaxed).wrapping_add(1);
        if n.is_multiple_of(self.sample_size) {
            self.age();
        }
        u32::from(min.saturating_add(1))
    }

    /// The key's estimated request count, aged: never below the true count except by
    /// increments lost to races, above it by collisions. What `record` returns, read without
    /// recording.
    pub(crate) fn estimate(&self, key_hash: u64) -> u32 {
        let min = self
            .slots(key_hash)
            .into_iter()
            .map(|slot| self.counters[slot].load(Relaxed))
            .fold(u8::MAX, u8::min);
        u32::from(min)
    }

    /// Halves every counter. A record racing with this can lose its increment (its
    /// compare-exchange fails, or this store overwrites it); it can never be counted twice.
    fn age(&self) {
        for counter in self.counters.iter() {
            counter.store(counter.load(Relaxed) >> 1, Relaxed);
        }
    }

    /// The key's counter in each row, as indexes into `counters` (always in bounds: each is
    /// `row × width + (hash & mask)`).
    fn slots(&self, key_hash: u64) -> [usize; ROWS] {
        let width = self.mask + 1;
        let mut state = key_hash;
        std::array::from_fn(|row| {
            state = state.wrapping_add(SPLITMIX_GAMMA);
            // Truncation on 32-bit targets keeps the low bits, which are all the mask needs.
            row * width + (splitmix64_mix(state) as usize & self.mask)
        })
    }
}

impl fmt::Debug for Sketch {
    /// Sizes only: printing megabytes of counters helps no one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sketch")
            .field("width", &(self.mask + 1))
            .field("sample_size", &self.sample_size)
            .field("records", &self.records.load(Relaxed))
            .finish()
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): state increment and output mixer.
const SPLITMIX_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(namespace: &str, i: usize) -> u64 {
        crate::hash::key(&format!("https://example.com/{namespace}/{i}"))
    }

    fn snapshot(sketch: &Sketch) -> Vec<u8> {
        sketch.counters.iter().map(|c| c.load(Relaxed)).collect()
    }

    #[test]
    fn capacity_is_clamped_and_rounded() {
        for (capacity, width) in [
            (0, 64),
            (1, 64),
            (64, 64),
            (65, 128),
            (10_000, 16_384),
            (1 << 22, 1 << 22),
            ((1 << 22) + 1, 1 << 22),
            (usize::MAX, 1 << 22),
        ] {
            let sketch = Sketch::new(capacity);
            assert_eq!(sketch.mask + 1, width, "capacity {capacity}");
            assert_eq!(sketch.counters.len(), ROWS * width);
            assert_eq!(sketch.sample_size, 10 * width);
            assert_eq!(sketch.record(42), 1, "usable at capacity {capacity}");
            assert_eq!(sketch.estimate(42), 1);
        }
    }

    #[test]
    fn record_returns_running_count_for_a_lone_key() {
        let sketch = Sketch::new(0);
        for expected in 1..=300u32 {
            // Saturates at 255 instead of wrapping.
            assert_eq!(sketch.record(7), expected.min(255));
        }
        assert_eq!(sketch.estimate(7), 255);
    }

    /// In a sparse sketch (fewer keys than counters, no aging yet) each estimate is at least
    /// the true count and at most a couple over.
    #[test]
    fn sparse_estimates_are_at_least_the_count_and_close() {
        let sketch = Sketch::new(10_000);
        let counts: Vec<usize> = (0..200).map(|i| 1 + i % 50).collect();
        for (i, &count) in counts.iter().enumerate() {
            for _ in 0..count {
                sketch.record(key("sparse", i));
            }
        }
        for (i, &count) in counts.iter().enumerate() {
            let estimate = sketch.estimate(key("sparse", i)) as usize;
            assert!(
                (count..=count + 2).contains(&estimate),
                "key {i}: recorded {count}, estimated {estimate}"
            );
        }
    }

    #[test]
    fn cold_key_among_ten_thousand_one_hit_keys_estimates_small() {
        let sketch = Sketch::new(10_000);
        for i in 0..10_000 {
            sketch.record(key("one-hit", i));
        }
        let unseen: Vec<u32> = (0..1_000)
            .map(|i| sketch.estimate(key("never", i)))
            .collect();
        assert!(
            unseen.iter().all(|&e| e <= 2),
            "max {:?}",
            unseen.iter().max()
        );
        let nonzero = unseen.iter().filter(|&&e| e > 0).count();
        // Four rows at load ≈ 0.6 collide together for ≈ 4% of keys.
        assert!(nonzero < 100, "{nonzero} of 1000 unseen keys estimate > 0");
        let seen_max = (0..10_000)
            .map(|i| sketch.estimate(key("one-hit", i)))
            .max();
        assert!(
            seen_max <= Some(3),
            "one-hit keys estimate at most {seen_max:?}"
        );
    }

    #[test]
    fn age_halves_every_counter() {
        let sketch = Sketch::new(0);
        for i in 0..500 {
            for _ in 0..i % 7 {
                sketch.record(key("age", i));
            }
        }
        let before = snapshot(&sketch);
        sketch.age();
        let after = snapshot(&sketch);
        assert!(
            before.iter().any(|&c| c > 1),
            "the test needs counters to halve"
        );
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(*a, b >> 1);
        }
    }

    /// The `sample_size`-th record ages the sketch; halving commutes with the minimum, so a
    /// key's estimate is exactly halved.
    #[test]
    fn the_sample_size_th_record_halves_estimates() {
        let sketch = Sketch::new(0);
        let hot = key("hot", 0);
        for _ in 0..100 {
            sketch.record(hot);
        }
        let fillers = sketch.sample_size - 100 - 1;
        for i in 0..fillers {
            sketch.record(key("filler", i));
        }
        let before = sketch.estimate(hot);
        assert!(before >= 100, "no aging before the mark: {before}");
        let after_increment = sketch.record(hot);
        assert_eq!(after_increment, before + 1);
        assert_eq!(sketch.estimate(hot), after_increment / 2);
        assert_eq!(sketch.records.load(Relaxed) % sketch.sample_size, 0);
        // The next aging comes after another full period, not before.
        let before = sketch.estimate(hot);
        for i in 0..sketch.sample_size - 1 {
            sketch.record(key("filler2", i));
        }
        assert!(sketch.estimate(hot) >= before, "aged early");
        sketch.record(key("filler2", sketch.sample_size));
        assert!(sketch.estimate(hot) <= before, "did not age");
    }

    /// With aging, a key requested at a steady rate settles near a fixed point while a stream
    /// of distinct keys stays near the floor: the gap is what a "hot" threshold relies on.
    #[test]
    fn steady_state_separates_hot_from_cold() {
        let sketch = Sketch::new(1_024);
        let hot = key("steady-hot", 0);
        // 1 in 100 records is the hot key, for 5.5 aging periods.
        for i in 0..11 * sketch.sample_size / 2 {
            if i % 100 == 0 {
                sketch.record(hot);
            } else {
                sketch.record(key("stream", i));
            }
        }
        let hot_estimate = sketch.estimate(hot);
        let cold_max = (0..1_000).map(|i| sketch.estimate(key("unseen", i))).max();
        // A period is 10 240 records, so the hot key gets ~102 per period and settles between
        // ~102 and ~204; mid-period after five agings it is ≈ 98 + 51.
        assert!(
            (120..=170).contains(&hot_estimate),
            "hot key estimates {hot_estimate}"
        );
        // The worst case for the floor (every other record a new key) measured 3..=7, mostly
        // 5–6: a "hot" threshold must sit well above it.
        assert!(
            cold_max <= Some(8),
            "unseen keys estimate up to {cold_max:?}"
        );
    }

    #[test]
    fn concurrent_records_do_not_panic_and_stay_sane() {
        let sketch = Sketch::new(256);
        let hot = key("shared-hot", 0);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let sketch = &sketch;
                scope.spawn(move || {
                    for i in 0..5_000 {
                        sketch.record(hot);
                        sketch.record(key(&format!("thread-{thread}"), i));
                    }
                });
            }
        });
        // 40 000 records over a 2 560-record period: aging ran many times, concurrently with
        // records, and every record was counted towards the periods.
        assert_eq!(sketch.records.load(Relaxed), 40_000);
        let hot_estimate = sketch.estimate(hot);
        let cold_max = (0..100).map(|i| sketch.estimate(key("unseen", i))).max();
        assert!(hot_estimate >= 100, "hot key estimates {hot_estimate}");
        assert!(cold_max < Some(hot_estimate / 4), "cold up to {cold_max:?}");
    }

    proptest! {
        /// At most 39 × 15 = 585 records, below the smallest sample size (640): no aging, so
        /// count-min's guarantee must hold exactly.
        #[test]
        fn estimate_is_never_below_the_count_before_aging(
            counts in prop::collection::vec(1usize..16, 1..40),
            capacity in 0usize..2_000,
            salt in any::<u64>(),
        ) {
            let sketch = Sketch::new(capacity);
            let keys: Vec<u64> = (0..counts.len()).map(|i| key(&salt.to_string(), i)).collect();
            for (&k, &count) in keys.iter().zip(&counts) {
                for _ in 0..count {
                    sketch.record(k);
                }
            }
            for (&k, &count) in keys.iter().zip(&counts) {
                prop_assert!(sketch.estimate(k) as usize >= count);
            }
        }

        #[test]
        fn any_key_hash_is_safe(hash in any::<u64>()) {
            let sketch = Sketch::new(0);
            prop_assert_eq!(sketch.estimate(hash), 0);
            prop_assert_eq!(sketch.record(hash), 1);
            prop_assert_eq!(sketch.record(hash), 2);
            prop_assert_eq!(sketch.estimate(hash), 2);
        }
    }
}
