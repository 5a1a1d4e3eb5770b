//! Drift: how far live inputs (and predictions) have moved from what a model was trained on.
//!
//! * The reference, made at training ([`NumericBuilder`], [`CategoricalBuilder`]): per numeric
//!   column quantile bin edges (from a sample of its values) and the share of the training rows
//!   in each bin, its range and missing rate; per categorical column the share of each category
//!   and the missing rate.
//! * The scores that compare a window of live counts with it: the population stability index
//!   ([`psi`], smoothed) and the Jensen–Shannon distance ([`jensen_shannon`], which needs no
//!   smoothing and stays meaningful on small windows), with the usual thresholds
//!   ([`PSI_WATCH`], [`PSI_DRIFT`]).
//!
//! Pure: numbers in, numbers out. Live counting adds to fixed arrays (no allocation per value).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::features::{category_text, numeric_value, Cell};

/// Quantile bins per numeric column (fewer when the column has fewer distinct values).
pub const BINS: usize = 10;

/// PSI at or above this: watch the column.
pub const PSI_WATCH: f64 = 0.1;

/// PSI at or above this: the column has drifted.
pub const PSI_DRIFT: f64 = 0.25;

/// The share an empty bin is given in [`psi`] (on either side), so a bin empty in one
/// distribution adds a large but finite term instead of an infinite one.
pub const PSI_FLOOR: f64 = 1e-4;

/// The most values per numeric column [`quantile_edges`] is given at training (every k-th
/// training row, k fixed by the row count, so the sample does not depend on threads or blocks).
pub const EDGE_SAMPLE: usize = 65_536;

/// The format of [`Reference`].
pub const REFERENCE_VERSION: u32 = 1;

/// What drift is measured against, stored in the artifact (`drift`): every input column's
/// training distribution, and the model's predictions on held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// [`REFERENCE_VERSION`].
    pub schema_version: u32,
    /// Each input column, in the model's column order.
    pub columns: Vec<ColumnReference>,
    /// The model's predictions (a regressor's value; a classifier's score: class 1's probability,
    /// or the predicted class's) on the held-out rows the report samples.
    pub prediction: NumericReference,
}

/// One input column's reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnReference {
    /// The column's name.
    pub name: String,
    /// Its distribution.
    #[serde(flatten)]
    pub distribution: Distribution,
}

/// A column's training distribution, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Distribution {
    /// A numeric column.
    Numeric(NumericReference),
    /// A categorical column.
    Categorical(CategoricalReference),
}

/// What a numeric column looked like in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericReference {
    /// Interior bin edges, ascending and distinct: bin 0 holds `x <= edges[0]`, bin `i` holds
    /// `edges[i-1] < x <= edges[i]`, the last bin `x > edges[last]`.
    pub edges: Vec<f64>,
    /// The share of the training values (missing ones left out) in each bin: `edges.len() + 1`
    /// of them, summing to 1 (all 0 when every value was missing).
    pub proportions: Vec<f64>,
    /// The smallest training value (none when every value was missing).
    pub min: Option<f64>,
    /// The largest.
    pub max: Option<f64>,
    /// The share of missing values.
    pub missing_rate: f64,
    /// Training rows counted.
    pub count: u64,
}

impl NumericReference {
    /// The bin of a (non-missing) value.
    #[inline]
    pub fn bin(&self, x: f64) -> usize {
        bin_of(&self.edges, x)
    }
}

/// The bin of `x`: how many edges lie below it. A reference has at most [`BINS`]` - 1` edges, so
/// the service counts them without a branch (a binary search mispredicts on every column of
/// every record); longer edge lists take the binary search.
#[inline]
fn bin_of(edges: &[f64], x: f64) -> usize {
    if edges.len() <= 16 {
        edges.iter().map(|&e| usize::from(e < x)).sum()
    } else {
        edges.partition_point(|&e| e < x)
    }
}

/// Quantile edges for `bins` bins from `sample` (NaN, missing, left out): the values at ranks
/// `k·n/bins`, `k = 1..bins`, deduplicated, so a column with few distinct values gets a bin per
/// value at most. Sorts `sample`.
pub fn quantile_edges(sample: &mut Vec<f64>, bins: usize) -> Vec<f64> {
    sample.retain(|x| !x.is_nan());
    sample.sort_by(f64::total_cmp);
    let n = sample.len();
    let mut edges: Vec<f64> = Vec::with_capacity(bins.saturating_sub(1));
    if n == 0 {
        return edges;
    }
    for k in 1..bins {
        let e = sample[(k * n / bins).saturating_sub(1).min(n - 1)];
        // the largest value is no edge: nothing would be above it
        if e < sample[n - 1] && edges.last().is_none_or(|&last| e > last) {
            edges.push(e);
        }
    }
    edges
}

/// The reference of a sample of values (all of them counted): for the predictions.
pub fn numeric_reference(values: &[f64]) -> NumericReference {
    let mut b = NumericBuilder::new(quantile_edges(&mut values.to_vec(), BINS));
    values.iter().for_each(|&x| b.add(x));
    b.finish()
}

/// Counts a numeric column's training values into bins of given edges, then makes its reference.
#[derive(Debug, Clone)]
pub struct NumericBuilder {
    edges: Vec<f64>,
    counts: Vec<u64>,
    missing: u64,
    min: f64,
    max: f64,
}

impl NumericBuilder {
    /// A builder for bins with these edges ([`quantile_edges`]).
    pub fn new(edges: Vec<f64>) -> NumericBuilder {
        let counts = vec![0; edges.len() + 1];
        NumericBuilder { edges, counts, missing: 0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }

    /// Count one value (NaN: missing).
    #[inline]
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            self.missing += 1;
            return;
        }
        self.counts[bin_of(&self.edges, x)] += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Add another builder's counts (same edges): partial counts of a parallel pass.
    pub fn merge_from(&mut self, o: NumericBuilder) {
        self.merge(&o);
    }

    /// Add another builder's counts (same edges), borrowed.
    pub fn merge(&mut self, o: &NumericBuilder) {
        debug_assert_eq!(self.edges, o.edges);
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.missing += o.missing;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// The reference.
    pub fn finish(self) -> NumericReference {
        let present: u64 = self.counts.iter().sum();
        let count = present + self.missing;
        let share = |c: u64, of: u64| if of == 0 { 0.0 } else { c as f64 / of as f64 };
        NumericReference {
            proportions: self.counts.iter().map(|&c| share(c, present)).collect(),
            edges: self.edges,
            min: (present > 0).then_some(self.min),
            max: (present > 0).then_some(self.max),
            missing_rate: share(self.missing, count),
            count,
        }
    }
}

/// What a categorical column looked like in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalReference {
    /// The categories seen in training, in the model's order.
    pub categories: Vec<String>,
    /// The share of the (non-missing) training values of each category; a live window adds one
    /// more bin, unseen categories, whose training share is 0.
    pub proportions: Vec<f64>,
    /// The share of missing values.
    pub missing_rate: f64,
    /// Training rows counted.
    pub count: u64,
}

/// Counts a categorical column's training values (as category indices) and makes its reference.
#[derive(Debug, Clone)]
pub struct CategoricalBuilder {
    categories: Vec<String>,
    counts: Vec<u64>,
    missing: u64,
}

impl CategoricalBuilder {
    /// A builder for these categories.
    pub fn new(categories: Vec<String>) -> CategoricalBuilder {
        let counts = vec![0; categories.len()];
        CategoricalBuilder { categories, counts, missing: 0 }
    }

    /// Count one value: its category's index, or `None` for a missing value.
    #[inline]
    pub fn add(&mut self, category: Option<usize>) {
        self.add_n(category, 1);
    }

    /// Count `n` values of one category (or missing).
    #[inline]
    pub fn add_n(&mut self, category: Option<usize>, n: u64) {
        match category {
            Some(i) => self.counts[i] += n,
            None => self.missing += n,
        }
    }

    /// Add another builder's counts (same categories).
    pub fn merge_from(&mut self, o: CategoricalBuilder) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.missing += o.missing;
    }

    /// The reference.
    pub fn finish(self) -> CategoricalReference {
        let present: u64 = self.counts.iter().sum();
        let count = present + self.missing;
        let share = |c: u64, of: u64| if of == 0 { 0.0 } else { c as f64 / of as f64 };
        CategoricalReference {
            proportions: self.counts.iter().map(|&c| share(c, present)).collect(),
            categories: self.categories,
            missing_rate: share(self.missing, count),
            count,
        }
    }
}

/// The population stability index of live `counts` against reference `expected` shares (the
/// same bins; a live bin beyond `expected`'s, such as unseen categories, has a reference share
/// of 0): `Σ (a − e) · ln(a / e)` over the bins, where `a` is the bin's live share and both
/// shares are raised to [`PSI_FLOOR`] when below it. 0 for an empty window.
pub fn psi(expected: &[f64], counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let e = expected.get(i).copied().unwrap_or(0.0).max(PSI_FLOOR);
            let a = (c as f64 / n as f64).max(PSI_FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The Jensen–Shannon distance (base 2, in [0, 1]) between reference `expected` shares and live
/// `counts` (bins as in [`psi`]): `sqrt(½ KL(p‖m) + ½ KL(q‖m))`, `m = (p + q) / 2`; an empty bin
/// adds nothing, so no smoothing is needed. 0 for an empty window.
pub fn jensen_shannon(expected: &[f64], counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let bins = expected.len().max(counts.len());
    let mut js = 0.0;
    for i in 0..bins {
        let p = expected.get(i).copied().unwrap_or(0.0);
        let q = counts.get(i).map_or(0.0, |&c| c as f64 / n as f64);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            js += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            js += 0.5 * q * (q / m).log2();
        }
    }
    js.max(0.0).sqrt()
}

/// A verdict on a PSI: `stable` below [`PSI_WATCH`], `watch` below [`PSI_DRIFT`], else `drift`.
pub fn verdict(psi: f64) -> &'static str {
    if psi >= PSI_DRIFT {
        "drift"
    } else if psi >= PSI_WATCH {
        "watch"
    } else {
        "stable"
    }
}

/// The format of a [`WindowReport`] (the `modelcast drift` JSON and the `model_drift` topic).
pub const WINDOW_REPORT_VERSION: u32 = 1;

/// A reference's bin edges as the hot path reads them: up to [`BINS`]` - 1` (what a reference
/// has) in a fixed array padded with +inf, counted without a branch or a length; more in a
/// sorted list, found by binary search.
#[derive(Debug, Clone)]
enum Edges {
    Short([f64; BINS - 1]),
    Long(Vec<f64>),
}

impl Edges {
    fn of(edges: &[f64]) -> Edges {
        if edges.len() < BINS {
            let mut a = [f64::INFINITY; BINS - 1];
            a[..edges.len()].copy_from_slice(edges);
            Edges::Short(a)
        } else {
            Edges::Long(edges.to_vec())
        }
    }

    /// The bin of a finite `x`: how many edges lie below it (as [`NumericReference::bin`]).
    #[inline]
    fn bin(&self, x: f64) -> usize {
        match self {
            Edges::Short(a) => a.iter().map(|&e| usize::from(e < x)).sum(),
            Edges::Long(v) => v.partition_point(|&e| e < x),
        }
    }
}

/// Live counts of one input column against its reference (a numeric column carries its edges
/// and training range, so counting a value reads nothing else).
#[derive(Debug, Clone)]
enum Slot {
    Numeric {
        edges: Edges,
        /// The training minimum (-inf when every training value was missing).
        lo: f64,
        /// The training maximum (+inf when none).
        hi: f64,
        counts: Vec<u64>,
        missing: u64,
        invalid: u64,
        below: u64,
        above: u64,
        min: f64,
        max: f64,
    },
    Categorical {
        index: HashMap<String, usize>,
        counts: Vec<u64>,
        missing: u64,
        invalid: u64,
    },
}

/// A window of live records counted against a model's [`Reference`]: per input column its bins
/// (plus missing; plus unseen for a categorical column), out-of-range and invalid values, and
/// the bins of the predictions. Counting a record adds to arrays sized once; it allocates
/// nothing (a categorical number is the one exception: its text is made to look it up).
#[derive(Debug, Clone)]
pub struct Window {
    slots: Vec<Slot>,
    missing_tokens: Vec<String>,
    prediction_edges: Edges,
    prediction: Vec<u64>,
    records: u64,
    rejected: u64,
    unreadable: u64,
}

/// How one column (or the predictions) of a window compares with its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    /// The column (`prediction` for the predictions).
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// The population stability index over the reference's bins, with missing values (and, for
    /// a categorical column, unseen categories) as bins of their own.
    pub psi: f64,
    /// The Jensen–Shannon distance over the same bins.
    pub jensen_shannon: f64,
    /// `stable`, `watch` or `drift` ([`verdict`] of the PSI).
    pub verdict: String,
    /// The share of missing values in the window.
    pub missing_rate: f64,
    /// The share in training.
    pub reference_missing_rate: f64,
    /// Numeric: the share of values below the training minimum or above the maximum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_range_rate: Option<f64>,
    /// Categorical: the share of values that are no training category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen_rate: Option<f64>,
    /// The share of values that are no number (numeric) or of the wrong type.
    pub invalid_rate: f64,
    /// Numeric: the smallest and largest value of the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A window's drift: every input column and the predictions against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// [`WINDOW_REPORT_VERSION`].
    pub schema_version: u32,
    /// Records counted.
    pub records: u64,
    /// Records the model refused (their inputs are counted; they have no prediction).
    pub rejected: u64,
    /// Records that could not be read (not counted anywhere else).
    #[serde(default)]
    pub unreadable: u64,
    /// The worst verdict of any column or the predictions.
    pub verdict: String,
    /// The input columns, in the model's order.
    pub columns: Vec<ColumnDrift>,
    /// The predictions.
    pub prediction: ColumnDrift,
}

impl Window {
    /// An empty window for a model whose input columns, in slot order, are `columns` (the order
    /// of the reference's columns) and whose missing-value tokens are `missing_tokens`.
    pub fn new(reference: &Reference, columns: &[String], missing_tokens: &[String]) -> Result<Window, String> {
        let names: Vec<&str> = reference.columns.iter().map(|c| c.name.as_str()).collect();
        if names != columns.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(format!("the drift reference's columns {names:?} are not the model's {columns:?}"));
        }
        let slots = reference
            .columns
            .iter()
            .map(|c| match &c.distribution {
                Distribution::Numeric(n) => Slot::Numeric {
                    edges: Edges::of(&n.edges),
                    lo: n.min.unwrap_or(f64::NEG_INFINITY),
                    hi: n.max.unwrap_or(f64::INFINITY),
                    counts: vec![0; n.proportions.len()],
                    missing: 0,
                    invalid: 0,
                    below: 0,
                    above: 0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                },
                Distribution::Categorical(k) => Slot::Categorical {
                    index: k.categories.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect(),
                    counts: vec![0; k.categories.len() + 1],
                    missing: 0,
                    invalid: 0,
                },
            })
            .collect();
        Ok(Window {
            slots,
            missing_tokens: missing_tokens.to_vec(),
            prediction_edges: Edges::of(&reference.prediction.edges),
            prediction: vec![0; reference.prediction.proportions.len()],
            records: 0,
            rejected: 0,
            unreadable: 0,
        })
    }

    /// Count one record's cells (slot order) and its prediction (`None`: the model refused it).
    pub fn add(&mut self, cells: &[Cell<'_>], prediction: Option<f64>) {
        self.records += 1;
        for (slot, cell) in self.slots.iter_mut().zip(cells) {
            match slot {
                Slot::Numeric { edges, lo, hi, counts, missing, invalid, below, above, min, max } => {
                    let value = match cell {
                        Cell::Num(v) if v.is_finite() => Ok(Some(*v)),
                        _ => numeric_value(cell, &self.missing_tokens),
                    };
                    match value {
                        Ok(None) => *missing += 1,
                        Err(_) => *invalid += 1,
                        Ok(Some(x)) => {
                            counts[edges.bin(x)] += 1;
                            *below += u64::from(x < *lo);
                            *above += u64::from(x > *hi);
                            *min = min.min(x);
                            *max = max.max(x);
                        }
                    }
                }
                Slot::Categorical { index, counts, missing, invalid } => {
                    match category_text(cell, &self.missing_tokens) {
                        Ok(None) => *missing += 1,
                        Err(_) => *invalid += 1,
                        Ok(Some(c)) => {
                            let unseen = counts.len() - 1;
                            counts[index.get(c.as_ref()).copied().unwrap_or(unseen)] += 1;
                        }
                    }
                }
            }
        }
        match prediction {
            Some(p) if p.is_finite() => self.prediction[self.prediction_edges.bin(p)] += 1,
            _ => self.rejected += 1,
        }
    }

    /// Empty the window for the next one (the arrays keep their size: no allocation).
    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            match slot {
                Slot::Numeric { counts, missing, invalid, below, above, min, max, .. } => {
                    counts.fill(0);
                    (*missing, *invalid, *below, *above) = (0, 0, 0, 0);
                    (*min, *max) = (f64::INFINITY, f64::NEG_INFINITY);
                }
                Slot::Categorical { counts, missing, invalid, .. } => {
                    counts.fill(0);
                    (*missing, *invalid) = (0, 0);
                }
            }
        }
        self.prediction.fill(0);
        (self.records, self.rejected, self.unreadable) = (0, 0, 0);
    }

    /// Count a record that could not be read at all (not an object, not UTF-8, a bad CSV row).
    pub fn unreadable(&mut self) {
        self.unreadable += 1;
    }

    /// Records counted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Compare the window with the reference.
    pub fn report(&self, reference: &Reference) -> WindowReport {
        let columns: Vec<ColumnDrift> = self
            .slots
            .iter()
            .zip(&reference.columns)
            .map(|(slot, r)| match (slot, &r.distribution) {
                (Slot::Numeric { counts, missing, invalid, below, above, min, max, .. }, Distribution::Numeric(n)) => {
                    let mut d = compare(&r.name, "numeric", &n.proportions, n.missing_rate, counts, *missing, *invalid);
                    let valued: u64 = counts.iter().sum();
                    d.out_of_range_rate = Some(share(below + above, self.records));
                    (d.min, d.max) = if valued > 0 { (Some(*min), Some(*max)) } else { (None, None) };
                    d
                }
                (Slot::Categorical { counts, missing, invalid, .. }, Distribution::Categorical(k)) => {
                    let mut d =
                        compare(&r.name, "categorical", &k.proportions, k.missing_rate, counts, *missing, *invalid);
                    d.unseen_rate = Some(share(counts[counts.len() - 1], self.records));
                    d
                }
                _ => compare(&r.name, "numeric", &[], 0.0, &[], 0, 0),
            })
            .collect();
        let p = &reference.prediction;
        let prediction = compare("prediction", "numeric", &p.proportions, 0.0, &self.prediction, 0, 0);
        let worst = columns.iter().chain([&prediction]).map(|c| c.psi).fold(0.0, f64::max);
        WindowReport {
            schema_version: WINDOW_REPORT_VERSION,
            records: self.records,
            rejected: self.rejected,
            unreadable: self.unreadable,
            verdict: verdict(worst).to_string(),
            columns,
            prediction,
        }
    }
}

fn share(c: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        c as f64 / of as f64
    }
}

/// A column's scores: its reference shares (of the non-missing values) spread over the present
/// share, plus a missing bin; the live counts with their missing count last.
fn compare(
    name: &str,
    kind: &str,
    proportions: &[f64],
    reference_missing: f64,
    counts: &[u64],
    missing: u64,
    invalid: u64,
) -> ColumnDrift {
    let present = 1.0 - reference_missing;
    // the expected shares: the bins (an unseen bin of a categorical column has none), then missing
    let mut expected: Vec<f64> = proportions.iter().map(|p| p * present).collect();
    expected.resize(counts.len(), 0.0);
    expected.push(reference_missing);
    let mut live = counts.to_vec();
    live.push(missing);
    let total = live.iter().sum::<u64>() + invalid;
    let psi = psi(&expected, &live);
    ColumnDrift {
        name: name.to_string(),
        kind: kind.to_string(),
        psi,
        jensen_shannon: jensen_shannon(&expected, &live),
        verdict: verdict(psi).to_string(),
        missing_rate: share(missing, total),
        reference_missing_rate: reference_missing,
        out_of_range_rate: None,
        unseen_rate: None,
        invalid_rate: share(invalid, total),
        min: None,
        max: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(values: &[f64]) -> NumericReference {
        numeric_reference(values)
    }

    #[test]
    fn the_branchless_bin_is_the_binary_search_bin() {
        for n in [0usize, 1, 2, 9, 10, 16, 17, 40] {
            let edges: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 3.0).collect();
            for k in -20..60 {
                let x = f64::from(k) * 0.25 - 4.0;
                assert_eq!(bin_of(&edges, x), edges.partition_point(|&e| e < x), "{n} edges, x {x}");
                assert_eq!(Edges::of(&edges).bin(x), edges.partition_point(|&e| e < x), "{n} edges, x {x}");
            }
            assert_eq!(bin_of(&edges, f64::NAN), 0);
            assert_eq!(Edges::of(&edges).bin(f64::NAN), 0);
        }
    }

    #[test]
    fn quantile_bins_hold_a_tenth_each_and_bins_follow_the_edges() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let r = reference(&values);
        assert_eq!(r.edges, (1..10).map(|k| f64::from(k * 100)).collect::<Vec<_>>());
        assert!(r.proportions.iter().all(|&p| (p - 0.1).abs() < 1e-12), "{:?}", r.proportions);
        assert_eq!((r.min, r.max, r.missing_rate, r.count), (Some(1.0), Some(1000.0), 0.0, 1000));
        // an edge's own value is in the bin below it
        assert_eq!((r.bin(100.0), r.bin(100.5), r.bin(-5.0), r.bin(1e9)), (0, 1, 0, 9));
    }

    #[test]
    fn a_column_of_few_values_gets_a_bin_per_value_and_missing_values_are_their_own_rate() {
        let mut values: Vec<f64> = (0..300).map(|i| f64::from(i % 3)).collect();
        values.extend([f64::NAN; 100]);
        let r = reference(&values);
        assert_eq!(r.edges, vec![0.0, 1.0]);
        assert_eq!(r.proportions.len(), 3);
        assert!(r.proportions.iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-12));
        assert_eq!(r.missing_rate, 0.25);
        // every value missing: no bins, no range
        let r = reference(&[f64::NAN; 4]);
        assert_eq!((r.edges.len(), r.proportions.clone(), r.missing_rate), (0, vec![0.0], 1.0));
        assert_eq!((r.min, r.max), (None, None));
    }

    #[test]
    fn merged_partial_counts_equal_one_pass() {
        let values: Vec<f64> = (0..997).map(|i| f64::from(i * 7919 % 1000) / 10.0).collect();
        let edges = quantile_edges(&mut values.clone(), BINS);
        let mut one = NumericBuilder::new(edges.clone());
        values.iter().for_each(|&x| one.add(x));
        let (mut a, mut b) = (NumericBuilder::new(edges.clone()), NumericBuilder::new(edges));
        values[..400].iter().for_each(|&x| a.add(x));
        values[400..].iter().for_each(|&x| b.add(x));
        a.merge(&b);
        assert_eq!(a.finish(), one.finish());
    }

    #[test]
    fn psi_and_js_are_the_formulas_on_hand_computed_cases() {
        // identical shares: 0
        assert_eq!(psi(&[0.25; 4], &[10, 10, 10, 10]), 0.0);
        assert_eq!(jensen_shannon(&[0.25; 4], &[10, 10, 10, 10]), 0.0);
        // two bins, 0.5/0.5 against 0.8/0.2
        let want = (0.8 - 0.5) * (0.8f64 / 0.5).ln() + (0.2 - 0.5) * (0.2f64 / 0.5).ln();
        assert!((psi(&[0.5, 0.5], &[8, 2]) - want).abs() < 1e-15);
        let (p, q) = ([0.5, 0.5], [0.8, 0.2]);
        let m = [0.65, 0.35];
        let kl = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * (x / y).log2()).sum::<f64>();
        let want = (0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)).sqrt();
        assert!((jensen_shannon(&p, &[8, 2]) - want).abs() < 1e-15);
        // disjoint: JS distance 1; PSI large but finite (the floor)
        assert!((jensen_shannon(&[1.0, 0.0], &[0, 5]) - 1.0).abs() < 1e-15);
        let floor = PSI_FLOOR;
        let want = (floor - 1.0) * (floor / 1.0).ln() + (1.0 - floor) * (1.0 / floor).ln();
        assert!((psi(&[1.0, 0.0], &[0, 5]) - want).abs() < 1e-12);
        // an extra live bin (unseen categories) has a reference share of 0
        assert!(psi(&[0.5, 0.5], &[5, 4, 1]) > psi(&[0.5, 0.5], &[5, 5]));
        // an empty window scores 0
        assert_eq!((psi(&[0.5, 0.5], &[0, 0]), jensen_shannon(&[0.5, 0.5], &[])), (0.0, 0.0));
        assert_eq!((verdict(0.05), verdict(0.1), verdict(0.3)), ("stable", "watch", "drift"));
    }

    #[test]
    fn a_one_sd_shift_drifts_and_a_resample_is_stable() {
        // a normal-ish training column (sum of uniforms), a fresh sample of it, and the same
        // shifted by one standard deviation
        let mut state = 12345u64;
        let mut uniform = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut normal = || (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
        let train: Vec<f64> = (0..20_000).map(|_| normal()).collect();
        let r = reference(&train);
        let count = |xs: &[f64]| {
            let mut c = vec![0u64; r.proportions.len()];
            xs.iter().for_each(|&x| c[r.bin(x)] += 1);
            c
        };
        let same: Vec<f64> = (0..2_000).map(|_| normal()).collect();
        let shifted: Vec<f64> = (0..2_000).map(|_| normal() + 1.0).collect();
        let (stable, moved) = (psi(&r.proportions, &count(&same)), psi(&r.proportions, &count(&shifted)));
        assert!(stable < PSI_WATCH, "{stable}");
        assert!(moved >= PSI_DRIFT, "{moved}");
        assert!(jensen_shannon(&r.proportions, &count(&shifted)) > 3.0 * jensen_shannon(&r.proportions, &count(&same)));
    }

    #[test]
    fn categorical_shares_and_an_unseen_bin() {
        let mut b = CategoricalBuilder::new(vec!["a".into(), "b".into()]);
        for c in [Some(0), Some(0), Some(1), None] {
            b.add(c);
        }
        let r = b.finish();
        assert_eq!((r.proportions.clone(), r.missing_rate, r.count), (vec![2.0 / 3.0, 1.0 / 3.0], 0.25, 4));
        // live: the same shares plus half unseen
        assert!(psi(&r.proportions, &[2, 1, 3]) >= PSI_DRIFT);
    }

    /// A reference of two columns: `x` uniform on 0..1000 (no missing), `c` two categories.
    fn two_columns() -> Reference {
        let x: Vec<f64> = (0..1000).map(f64::from).collect();
        let mut c = CategoricalBuilder::new(vec!["a".into(), "b".into()]);
        (0..1000).for_each(|i| c.add(Some(i % 2)));
        Reference {
            schema_version: REFERENCE_VERSION,
            columns: vec![
                ColumnReference { name: "x".into(), distribution: Distribution::Numeric(numeric_reference(&x)) },
                ColumnReference { name: "c".into(), distribution: Distribution::Categorical(c.finish()) },
            ],
            prediction: numeric_reference(&x),
        }
    }

    fn window(r: &Reference, rows: impl Iterator<Item = (Cell<'static>, Cell<'static>, f64)>) -> WindowReport {
        let mut w = Window::new(r, &["x".into(), "c".into()], &["NA".into()]).unwrap();
        for (x, c, p) in rows {
            w.add(&[x, c], Some(p));
        }
        w.report(r)
    }

    fn by_name<'r>(rep: &'r WindowReport, name: &str) -> &'r ColumnDrift {
        rep.columns.iter().chain([&rep.prediction]).find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_window_names_the_column_that_moved_and_how() {
        let r = two_columns();
        let cat = |i: i32| Cell::Text(if i % 2 == 0 { "a" } else { "b" }.into());
        // the training distribution again: stable everywhere
        let same = window(&r, (0..1000).map(|i| (Cell::Num(f64::from(i)), cat(i), f64::from(i))));
        assert_eq!(same.verdict, "stable", "{same:#?}");
        assert!(same.columns.iter().all(|c| c.psi < 1e-9), "{same:#?}");
        assert_eq!((same.records, same.rejected), (1000, 0));
        // x shifted by half its range: x drifts (and its values run past the training maximum)
        let shifted = window(&r, (0..1000).map(|i| (Cell::Num(f64::from(i) + 500.0), cat(i), f64::from(i))));
        let x = by_name(&shifted, "x");
        assert_eq!((x.verdict.as_str(), by_name(&shifted, "c").verdict.as_str()), ("drift", "stable"));
        assert!((x.out_of_range_rate.unwrap() - 0.5).abs() < 1e-12, "{x:?}");
        assert_eq!((x.min, x.max), (Some(500.0), Some(1499.0)));
        // a third of x missing (text tokens and absent cells): x drifts on its missing bin
        let holes = window(
            &r,
            (0..1000).map(|i| {
                let x = match i % 6 {
                    0 => Cell::Missing,
                    1 => Cell::Text("NA".into()),
                    _ => Cell::Num(f64::from(i)),
                };
                (x, cat(i), f64::from(i))
            }),
        );
        let x = by_name(&holes, "x");
        assert!((x.missing_rate - 1.0 / 3.0).abs() < 1e-3 && x.verdict == "drift", "{x:?}");
        // a new category in a fifth of the rows: c drifts, its unseen rate named
        let unseen = window(
            &r,
            (0..1000).map(|i| {
                let c = if i % 5 == 0 { Cell::Text("z".into()) } else { cat(i) };
                (Cell::Num(f64::from(i)), c, f64::from(i))
            }),
        );
        let c = by_name(&unseen, "c");
        assert!((c.unseen_rate.unwrap() - 0.2).abs() < 1e-12 && c.verdict == "drift", "{c:?}");
        assert_eq!(by_name(&unseen, "x").verdict, "stable");
        // predictions all in the top tenth: the predictions drift, the inputs do not
        let high = window(&r, (0..1000).map(|i| (Cell::Num(f64::from(i)), cat(i), 950.0)));
        assert_eq!((high.prediction.verdict.as_str(), high.verdict.as_str()), ("drift", "drift"));
        assert!(high.columns.iter().all(|c| c.verdict == "stable"));
        // a number in a numeric column that is no number is invalid, not missing
        let bad = window(&r, (0..10).map(|i| (Cell::Text("x".into()), cat(i), 1.0)));
        assert_eq!((by_name(&bad, "x").invalid_rate, by_name(&bad, "x").missing_rate), (1.0, 0.0));
        // the report's JSON is what the topic and `modelcast drift --json` carry
        let back: WindowReport = serde_json::from_str(&serde_json::to_string(&high).unwrap()).unwrap();
        assert_eq!(back, high);
    }

    #[test]
    fn a_window_refuses_a_reference_of_other_columns() {
        let r = two_columns();
        assert!(Window::new(&r, &["c".into(), "x".into()], &[]).unwrap_err().contains("not the model's"));
    }
}
