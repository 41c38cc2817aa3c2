//! The one deterministic PRNG of the verification code (SplitMix64; no dependency on `rand`)
//! and the derivation of program seeds. Used by every generator profile and by the tests.
//!
//! Program `k` of campaign seed `S` is generated from [`program_seed`]`(S, k)` alone, so it is
//! the same bytes on every machine, for every `--jobs` value and in every order of execution.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for test generation.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }

    pub fn next_u8(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// A uniform value in `0..n` (0 when `n` is 0), by the multiply-high method.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A uniform value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index chosen with the given weights (the first index when all weights are 0).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w as u64 {
                return i;
            }
            x -= w as u64;
        }
        0
    }

    /// A value of `bits` bits (1..=32) biased towards edge cases: 0, 1, all ones, the sign
    /// boundaries and small distances from them.
    pub fn value(&mut self, bits: u32) -> u32 {
        let mask = if bits >= 32 { u32::MAX } else { (1u32 << bits) - 1 };
        let sign = 1u32 << (bits.clamp(1, 32) - 1);
        let v = match self.below(10) {
            0 => 0,
            1 => 1,
            2 => mask,
            3 => sign,
            4 => sign - 1,
            5 => self.below(16) as u32,
            6 => mask.wrapping_sub(self.below(16) as u32),
            _ => self.next_u32(),
        };
        v & mask
    }

    /// A "interesting" 32-bit value: boundaries and small numbers more often than uniform.
    pub fn interesting_u32(&mut self) -> u32 {
        match self.below(8) {
            0 => *self.pick(&[0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000]),
            1 => 0xFFFF_FFFF - self.below(4) as u32,
            2 => self.below(16) as u32,
            3 => self.next_u8() as u32,
            4 => self.next_u16() as u32,
            _ => self.next_u32(),
        }
    }
}

/// Fills `buf` with the SplitMix64 stream of `seed`, eight little-endian bytes per output (the
/// random data areas of test programs).
pub fn fill_bytes(seed: u64, buf: &mut [u8]) {
    let mut r = SplitMix64::new(seed);
    for chunk in buf.chunks_mut(8) {
        let v = r.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The seed of program `index` in the campaign with seed `seed`.
pub fn program_seed(seed: u64, index: u64) -> u64 {
    let mut r = SplitMix64::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64() ^ index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_and_weighted_stay_in_range() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let i = r.weighted(&[0, 3, 0, 1]);
            assert!(i == 1 || i == 3, "{i}");
            let v = r.range(5, 9);
            assert!((5..=9).contains(&v));
        }
        assert_eq!(r.below(0), 0);
        for bits in [1, 8, 16, 32] {
            for _ in 0..200 {
                let v = r.value(bits) as u64;
                assert!(v < 1u64 << bits, "{bits}: {v:#x}");
            }
        }
    }

    #[test]
    fn program_seeds_differ_and_repeat() {
        assert_eq!(program_seed(1, 5), program_seed(1, 5));
        assert_ne!(program_seed(1, 5), program_seed(1, 6));
        assert_ne!(program_seed(1, 5), program_seed(2, 5));
    }
}
