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

/// Where a feature's bins are kept: its own column, or a code in a bundle's column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Place {
    /// Column `col` holds the feature's bin.
    Own(usize),
    /// A two-bin feature that is mostly in bin 0 (a one-hot column), bundled with others that
    /// are never in bin 1 in the same row: bin 1 where column `col` holds `code`, else bin 0.
    Bundled { col: usize, code: u16 },
}

/// The design binned per feature, row-major over columns: a feature's own column, or a bundle
/// of exclusive two-bin features (LightGBM's exclusive feature bundling, here of the one-hot
/// columns of a categorical feature: at most one of them is 1 in a row). A row's columns are
/// adjacent, so a histogram pass reads each row once, and a categorical feature of 50 levels is
/// one column to count instead of 50. Bin `b` of feature `f` holds the values that go left of
/// `thresholds[f][b]` but not of `thresholds[f][b-1]`.
pub struct Binned {
    pub(super) n: usize,
    /// `bins[i * columns + c]`: row `i`'s bin in column `c`.
    pub(super) bins: Bins,
    /// The same bins column by column (`by_column[c * n + i]`): a node's rows are partitioned
    /// on one column, which this keeps in a few hundred kilobytes instead of one cache line a row.
    by_column: Vec<u16>,
    pub(super) columns: usize,
    /// Per feature.
    pub(super) place: Vec<Place>,
    /// Start of each column's bins in a column histogram (`columns + 1` entries).
    pub(super) column_offsets: Vec<usize>,
    pub(super) thresholds: Vec<Vec<f64>>,
    /// Start of each feature's bins in a flat histogram (`features + 1` entries).
    pub(super) offsets: Vec<usize>,
}

/// The row-major bins: a byte each when every column has at most 256 bins (`max_bins` ≤ 255
/// and bundles of at most 255 features), so a row's bins span fewer cache lines.
pub(super) enum Bins {
    Narrow(Vec<u8>),
    Wide(Vec<u16>),
}

/// Largest share of the sampled rows in bin 1 for a two-bin feature to be bundled.
const SPARSE: f64 = 0.5;

/// Features bundled into one column at most.
const BUNDLE: usize = 4096;

/// The features' places and the column count: two-bin features mostly in bin 0 bundled greedily
/// (in feature order, into the first bundle none of whose features is in bin 1 in a sampled row
/// where this one is), every other feature in its own column.
fn bundle(samples: &[Vec<f64>], thresholds: &[Vec<f64>]) -> (Vec<Place>, usize) {
    let words = samples.first().map_or(0, |s| s.len().div_ceil(64));
    // per bundle: its column, features, and the sampled rows where one of them is in bin 1
    let mut bundles: Vec<(usize, usize, Vec<u64>)> = Vec::new();
    let mut place = Vec::with_capacity(thresholds.len());
    let mut columns = 0;
    for (s, t) in samples.iter().zip(thresholds) {
        let hot: Option<Vec<u64>> = (t.len() == 1).then(|| {
            let mut bits = vec![0u64; words];
            for (i, v) in s.iter().enumerate() {
                if (*v as f32) as f64 > t[0] {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            bits
        });
        let sparse = hot.filter(|b| {
            let ones: u32 = b.iter().map(|w| w.count_ones()).sum();
            (ones as f64) <= SPARSE * s.len() as f64
        });
        let Some(bits) = sparse else {
            place.push(Place::Own(columns));
            columns += 1;
            continue;
        };
        let free = bundles
            .iter_mut()
            .find(|(_, members, taken)| *members < BUNDLE && taken.iter().zip(&bits).all(|(a, b)| a & b == 0));
        match free {
            Some((col, members, taken)) => {
                *members += 1;
                taken.iter_mut().zip(&bits).for_each(|(a, b)| *a |= b);
                place.push(Place::Bundled { col: *col, code: *members as u16 });
            }
            None => {
                bundles.push((columns, 1, bits));
                place.push(Place::Bundled { col: columns, code: 1 });
                columns += 1;
            }
        }
    }
    // a bundle of one is a column of its own (the same bins: 0, or 1 where the code is)
    for p in place.iter_mut() {
        if let Place::Bundled { col, .. } = *p {
            if bundles.iter().any(|(c, members, _)| *c == col && *members == 1) {
                *p = Place::Own(col);
            }
        }
    }
    (place, columns)
}

impl Binned {
    /// Bin a design in two streaming passes (a sample of every `n / 200,000`-th row for the
    /// thresholds and the bundles, then the bins): the float64 design is never held whole.
    /// Returns the targets too.
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
        let thresholds: Vec<Vec<f64>> = samples.iter().map(|s| thresholds_of(s.clone(), max_bins)).collect();
        let (place, columns) = bundle(&samples, &thresholds);
        drop(samples);
        let binned = match Self::bin_rows(d, &thresholds, &place, columns)? {
            Some(bins) => Binned::new(n, bins, place, thresholds),
            // a row outside the sample has two bundled features in bin 1: no bundles
            None => {
                let own: Vec<Place> = (0..p).map(Place::Own).collect();
                let bins = Self::bin_rows(d, &thresholds, &own, p)?
                    .ok_or_else(|| Error::Model("binning without bundles found a bundle conflict".into()))?;
                Binned::new(n, bins, own, thresholds)
            }
        };
        Ok((binned, y))
    }

    fn new(n: usize, bins: Vec<u16>, place: Vec<Place>, thresholds: Vec<Vec<f64>>) -> Binned {
        let mut offsets = vec![0usize];
        for t in &thresholds {
            offsets.push(offsets[offsets.len() - 1] + t.len() + 1);
        }
        let columns = bins.len() / n;
        let mut width = vec![0usize; columns];
        for (f, p) in place.iter().enumerate() {
            match *p {
                Place::Own(c) => width[c] = thresholds[f].len() + 1,
                Place::Bundled { col, code } => width[col] = width[col].max(code as usize + 1),
            }
        }
        let mut column_offsets = vec![0usize];
        for w in width {
            column_offsets.push(column_offsets[column_offsets.len() - 1] + w);
        }
        let mut by_column = vec![0u16; bins.len()];
        for (i, row) in bins.chunks_exact(columns).enumerate() {
            for (c, b) in row.iter().enumerate() {
                by_column[c * n + i] = *b;
            }
        }
        let narrow = column_offsets.windows(2).all(|w| w[1] - w[0] <= 256);
        let bins = if narrow { Bins::Narrow(bins.iter().map(|b| *b as u8).collect()) } else { Bins::Wide(bins) };
        Binned { n, bins, by_column, columns, place, column_offsets, thresholds, offsets }
    }

    /// Every row's column bins; `None` when two features of a bundle are in bin 1 in one row.
    fn bin_rows(d: &dyn Design, thresholds: &[Vec<f64>], place: &[Place], columns: usize) -> Result<Option<Vec<u16>>> {
        let n = d.rows();
        let mut bins = vec![0u16; n * columns];
        let mut at = 0usize;
        let mut conflict = false;
        d.for_each_chunk(&mut |x, _| {
            for (r, row) in x.rows().into_iter().enumerate() {
                let out = &mut bins[(at + r) * columns..(at + r + 1) * columns];
                for ((v, t), p) in row.iter().zip(thresholds).zip(place) {
                    if !v.is_finite() {
                        return Err(Error::Model("trees need finite inputs and targets".into()));
                    }
                    // the first threshold the value goes left of (`goes_left`)
                    let v = (*v as f32) as f64;
                    let b = t.partition_point(|c| *c < v) as u16;
                    match *p {
                        Place::Own(c) => out[c] = b,
                        Place::Bundled { col, code } if b == 1 => {
                            conflict |= out[col] != 0;
                            out[col] = code;
                        }
                        Place::Bundled { .. } => {}
                    }
                }
            }
            at += x.nrows();
            Ok(())
        })?;
        Ok((!conflict).then_some(bins))
    }

    pub(super) fn features(&self) -> usize {
        self.thresholds.len()
    }

    /// Row `row`'s bin in feature `f`.
    #[cfg(test)]
    pub(super) fn bin(&self, row: usize, f: usize) -> u16 {
        let at = |c: usize| match &self.bins {
            Bins::Narrow(b) => u16::from(b[row * self.columns + c]),
            Bins::Wide(b) => b[row * self.columns + c],
        };
        match self.place[f] {
            Place::Own(c) => at(c),
            Place::Bundled { col, code } => u16::from(at(col) == code),
        }
    }

    /// Whether a row goes left of feature `f`'s split after bin `bin` (its bin is at most `bin`).
    #[inline]
    pub(super) fn goes_left(&self, f: usize, bin: u16) -> impl Fn(usize) -> bool + '_ {
        let (col, code) = match self.place[f] {
            Place::Own(c) => (c, None),
            Place::Bundled { col, code } => (col, Some(code)),
        };
        let column = &self.by_column[col * self.n..(col + 1) * self.n];
        move |row| {
            let b = column[row];
            match code {
                None => b <= bin,
                Some(c) => u16::from(b == c) <= bin,
            }
        }
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
        // more than 256 bins: two bytes a bin
        let (b, _) = Binned::from_design(&Dense { x: x.view(), y: y.view() }, 600).unwrap();
        assert!(matches!(b.bins, Bins::Wide(_)));
        let col: Vec<u16> = (0..1000).map(|i| b.bin(i, 0)).collect();
        assert!(col.windows(2).all(|w| w[0] <= w[1]) && col[999] > 255 && col[999] < 600);
    }

    /// A numeric column, a one-hot group of 3 and one of 2 (standardized: not 0/1), and a
    /// mostly-zero column that is 1 together with the first group's columns.
    fn mixed(n: usize) -> (Array2<f64>, Array1<f64>) {
        let x = Array2::from_shape_fn((n, 7), |(i, j)| {
            let (a, b) = (i % 4, (i / 3) % 3);
            match j {
                0 => (i % 97) as f64 * 0.5,
                // level 3 of 4 has no column of its own (all three are "cold")
                1..=3 => f64::from(a == j - 1) * 2.5 - 0.7,
                4 | 5 => f64::from(b == j - 4),
                _ => f64::from(i % 5 == 0),
            }
        });
        let y = Array1::from_shape_fn(n, |i| i as f64 * 0.01);
        (x, y)
    }

    #[test]
    fn exclusive_one_hot_columns_share_a_column_and_keep_their_bins() {
        let (x, y) = mixed(1000);
        let d = Dense { x: x.view(), y: y.view() };
        let (b, _) = Binned::from_design(&d, 255).unwrap();
        // the two groups each in one column (the mostly-zero column conflicts with both: its own)
        assert_eq!(b.columns, 4, "{:?}", b.place);
        assert_eq!(b.place[0], Place::Own(0));
        assert!(matches!((b.place[1], b.place[2], b.place[3]), (
            Place::Bundled { col: c1, code: 1 },
            Place::Bundled { col: c2, code: 2 },
            Place::Bundled { col: c3, code: 3 }
        ) if c1 == c2 && c2 == c3));
        // every feature's bin is the one it has alone
        let own: Vec<Place> = (0..7).map(Place::Own).collect();
        let alone = Binned::bin_rows(&d, &b.thresholds, &own, 7).unwrap().unwrap();
        for r in 0..1000 {
            for f in 0..7 {
                assert_eq!(b.bin(r, f), alone[r * 7 + f], "row {r}, feature {f}");
            }
        }
        // and the features' histograms are the ones counted without bundles
        let unbundled = Binned::new(1000, alone, own, b.thresholds.clone());
        let w = vec![1.0; 1000];
        let ws: Vec<f64> = (0..1000).map(|i| (i as f64).sin()).collect();
        let grow = |data| crate::trees::grow::Grow {
            data,
            k: 1,
            w: &w,
            ws: &ws,
            min_leaf: 1,
            min_child_weight: 0.0,
            max_depth: None,
            max_leaves: None,
            l2: 0.0,
            try_features: 7,
            threads: 1,
            unit_weights: true,
        };
        let rows: Vec<u32> = (0..1000).filter(|i| i % 3 != 1).collect();
        let (a, c) = (grow(&b).histogram(&rows), grow(&unbundled).histogram(&rows));
        assert_eq!(a.len(), c.len());
        for (i, (a, c)) in a.iter().zip(&c).enumerate() {
            assert_eq!((a.rows, a.w), (c.rows, c.w), "bin {i}");
            assert!((a.s - c.s).abs() < 1e-9, "bin {i}: {} against {}", a.s, c.s);
        }
        // a byte a bin, or two: the same counts
        let Bins::Narrow(narrow) = &b.bins else { panic!("255 bins fit a byte") };
        let mut wide =
            Binned::new(1000, narrow.iter().map(|v| u16::from(*v)).collect(), b.place.clone(), b.thresholds.clone());
        wide.bins = Bins::Wide(narrow.iter().map(|v| u16::from(*v)).collect());
        let w = grow(&wide).histogram(&rows);
        assert!(a.iter().zip(&w).all(|(a, w)| (a.rows, a.w, a.s.to_bits()) == (w.rows, w.w, w.s.to_bits())));
    }

    #[test]
    fn a_bundle_whose_features_meet_in_a_row_is_refused() {
        let (x, y) = mixed(100);
        let d = Dense { x: x.view(), y: y.view() };
        let (b, _) = Binned::from_design(&d, 255).unwrap();
        // feature 6 is 1 in rows where a feature of the first group is
        let mut place: Vec<Place> = (0..7).map(Place::Own).collect();
        place[1] = Place::Bundled { col: 1, code: 1 };
        place[6] = Place::Bundled { col: 1, code: 2 };
        assert!(Binned::bin_rows(&d, &b.thresholds, &place, 6).unwrap().is_none());
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
