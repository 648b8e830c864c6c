//! The deterministic random input behind every "never panics on hostile input" test of the
//! cache policy: one xorshift generator, so a failure reproduces from its seed.

pub(crate) struct Rng(pub u64);

impl Rng {
    /// A number below `bound` (which must not be 0).
    pub(crate) fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }

    /// Up to `max - 1` fragments picked at random, concatenated.
    pub(crate) fn bytes(&mut self, fragments: &[&[u8]], max: usize) -> Vec<u8> {
        let mut raw = Vec::new();
        for _ in 0..self.next(max) {
            raw.extend_from_slice(fragments[self.next(fragments.len())]);
        }
        raw
    }
}
