//! The binned design: per feature at most `max_bins` float32 thresholds, found on a sample,
//! and each row's bin in each feature.

use crate::design::Design;
use crate::error::{Error, Result};

/// Rows sampled (evenly, deterministically) to find the bin thresholds of a feature.
const BIN_SAMPLE: usize = 200_000;

/// A float32 threshold `t` with `f32(a) <= t < f32(b)`, nearest `at` (a value between them);
/// `None` when `a` and `b` are the same float32.
pub(super) fn f32_threshold(a: f64, b: f64, at: f64) -> Option<f64> {
    let (lo, hi) = (a as f32, b as f32);
    if lo >= hi {
        return None;
    }
    let m = at as f32;
    Some(f64::from(m.clamp(lo, hi.next_down())))
}

/// The design binned per feature, row-major: `bins[i * p + f]` is row `i`'s bin in feature `f`
/// (a row's bins are adjacent, so a histogram pass reads each row once); bin `b`
/// holds the values that go left of `thresholds[f][b]` but not of `thresholds[f][b-1]`.
pub struct Binned {
    pub(super) n: usize,
    pub(super) bins: Vec<u16>,
    pub(super) thresholds: Vec<Vec<f64>>,
    /// Start of each feature's bins in a flat histogram (`features + 1` entries).
    pub(super) offsets: Vec<usize>,
}

impl Binned {
    /// Bin a design in two streaming passes (a sample of every `n / 200,000`-th row for the
    /// thresholds, then the bins): the float64 design is never held whole. Returns the targets too.
    pub fn from_design(d: &dyn Design, max_bins: u32) -> Result<(Binned, Vec<f64>)> {
        let (n, p) = (d.rows(), d.width());
        if n < 2 {
            return Err(Error::Model(format!("need at least 2 training rows, got {n}")));
        }
        if n > u32::MAX as usize {
            return Err(Error::Model("trees take at most 2^32 - 1 training rows".into()));
        }
        let max_bins = max_bins.clamp(2, 65535) as usize;
        let step = n.div_ceil(BIN_SAMPLE).max(1);
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(n / step + 1); p];
        let mut y = Vec::with_capacity(n);
        let mut at = 0usize;
        d.for_each_chunk(&mut |x, t| {
            for (r, row) in x.rows().into_iter().enumerate() {
                if (at + r).is_multiple_of(step) {
                    for (f, v) in row.iter().enumerate() {
                        samples[f].push(*v);
                    }
                }
            }
            y.extend(t.iter().copied());
            at += x.nrows();
            Ok(())
        })?;
        if y.iter().chain(samples.iter().flatten()).any(|v| !v.is_finite()) {
            return Err(Error::Model("trees need finite inputs and targets".into()));
        }
        let thresholds: Vec<Vec<f64>> = samples.into_iter().map(|s| thresholds_of(s, max_bins)).collect();
        let mut bins = vec![0u16; n * p];
        let mut at = 0usize;
        d.for_each_chunk(&mut |x, _| {
            for (r, row) in x.rows().into_iter().enumerate() {
                let out = &mut bins[(at + r) * p..(at + r + 1) * p];
                for ((b, v), t) in out.iter_mut().zip(row.iter()).zip(&thresholds) {
                    if !v.is_finite() {
                        return Err(Error::Model("trees need finite inputs and targets".into()));
                    }
                    // the first threshold the value goes left of (`goes_left`)
                    let v = (*v as f32) as f64;
                    *b = t.partition_point(|c| *c < v) as u16;
                }
            }
            at += x.nrows();
            Ok(())
        })?;
        let mut offsets = vec![0usize];
        for t in &thresholds {
            offsets.push(offsets[offsets.len() - 1] + t.len() + 1);
        }
        Ok((Binned { n, bins, thresholds, offsets }, y))
    }

    pub(super) fn features(&self) -> usize {
        self.thresholds.len()
    }

    #[inline]
    pub(super) fn bin(&self, row: usize, f: usize) -> u16 {
        self.bins[row * self.features() + f]
    }

    pub(super) fn total_bins(&self) -> usize {
        self.offsets[self.features()]
    }
}

/// Split candidates of one feature from its sample, as scikit-learn's histogram estimators bin:
/// the midpoints of consecutive distinct values when there are at most `max_bins` of them, else
/// the `max_bins - 1` percentiles at `k · 100 / max_bins` (numpy's `averaged_inverted_cdf`, as
/// scikit-learn 1.9; unweighted: scikit-learn weighs them by the sample weights). Each is
/// moved to a float32 value that splits the sample's values the same way.
pub(super) fn thresholds_of(mut sample: Vec<f64>, max_bins: usize) -> Vec<f64> {
    sample.sort_by(f64::total_cmp);
    let mut distinct = sample.clone();
    distinct.dedup();
    let mut t: Vec<f64> = if distinct.len() <= max_bins {
        distinct.windows(2).filter_map(|w| f32_threshold(w[0], w[1], (w[0] + w[1]) / 2.0)).collect()
    } else {
        let n = sample.len();
        let step = 100.0 / max_bins as f64;
        (1..max_bins)
            .filter_map(|k| {
                // numpy's averaged_inverted_cdf: the value at rank ⌈n·p⌉, or the mean of two
                // neighbours when n·p is whole
                let g = n as f64 * (k as f64 * step / 100.0);
                let j = (g.floor() as usize).min(n - 1);
                let at = if g > j as f64 || j == 0 { sample[j] } else { (sample[j - 1] + sample[j]) / 2.0 };
                // the sample's values either side of the percentile
                let right = sample.partition_point(|v| *v <= at);
                (right > 0 && right < n).then(|| f32_threshold(sample[right - 1], sample[right], at)).flatten()
            })
            .collect()
    };
    t.dedup();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::Dense;
    use crate::trees::{goes_left, pmml_threshold};
    use ndarray::{Array1, Array2};

    #[test]
    fn many_distinct_values_are_binned_into_max_bins() {
        let x = Array2::from_shape_fn((1000, 1), |(i, _)| i as f64 * 0.001);
        let y = Array1::zeros(1000);
        let (b, _) = Binned::from_design(&Dense { x: x.view(), y: y.view() }, 16).unwrap();
        assert_eq!(b.thresholds[0].len(), 15);
        let col: Vec<u16> = (0..1000).map(|i| b.bin(i, 0)).collect();
        assert!(col.iter().all(|&v| v < 16));
        assert!(col.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn f32_thresholds_separate_their_neighbours() {
        assert_eq!(f32_threshold(1.0, 2.0, 1.5), Some(1.5));
        let (a, b) = (0.1f64, 0.1f64 + 1e-12);
        assert_eq!(f32_threshold(a, b, a), None, "indistinguishable in f32");
        let t = f32_threshold(0.9966, 0.9968, 0.9967).unwrap();
        assert!((t as f32) as f64 == t);
        assert!(goes_left(0.9966, t) && !goes_left(0.9968, t));
        // a value on the decimal midpoint goes the same way here, in float32 and in PMML's float64
        for x in [0.9967, t, f64::from((t as f32).next_up()), 0.99669999, 0.99670001] {
            assert_eq!(goes_left(x, t), (x as f32) <= t as f32, "{x}");
            assert_eq!(goes_left(x, t), x < pmml_threshold(t), "{x}");
        }
    }
}
