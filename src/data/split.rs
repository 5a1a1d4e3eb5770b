//! The held-out split: a seeded shuffle that picks the test rows, the same on every platform.

use super::{Mask, Rows};
use crate::util::rng::SplitMix64;

/// How many of `n` rows a fraction holds out: `round(n · fraction)`, at least 1 and at most `n - 1`.
pub fn held_out_count(n: usize, test_fraction: f64) -> usize {
    let k = ((n as f64) * test_fraction).round().max(1.0).min(n.saturating_sub(1).max(1) as f64) as usize;
    k.min(n)
}

/// The held-out rows of a deterministic split: exactly [`held_out_count`] of `n` rows, as a
/// bitset.
///
/// Selection sampling (Knuth's Algorithm S) driven by SplitMix64: row `i` is held out when the
/// next output modulo the rows left (`n - i`) is below the rows still to choose. One pass, no
/// permutation, `n / 8` bytes; a seed gives the same split on every platform and version.
pub fn held_out(n: usize, test_fraction: f64, seed: u64) -> Mask {
    let mut need = held_out_count(n, test_fraction) as u64;
    let mut words = vec![0u64; n.div_ceil(64)];
    let mut rng = SplitMix64::new(seed);
    for i in 0..n {
        if need == 0 {
            break;
        }
        let left = (n - i) as u64;
        if rng.next_u64() % left < need {
            words[i / 64] |= 1 << (i % 64);
            need -= 1;
        }
    }
    Mask::from_words(words, n)
}

/// The split of [`held_out`] as `(train, test)` row lists, each sorted.
pub fn split_indices(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mask = held_out(n, test_fraction, seed);
    (Rows::NotIn(&mask).to_vec(), Rows::In(&mask).to_vec())
}
