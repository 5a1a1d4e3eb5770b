//! Tree ensembles: random forests and histogram gradient boosting. Pure: no I/O.
//!
//! Both grow binary regression trees on a *binned* design (at most `max_bins` bins per feature,
//! as scikit-learn's `HistGradientBoostingRegressor` and LightGBM do): the split search walks
//! per-node histograms instead of sorting, so a node costs O(rows × features).
//!
//! * `random_forest`: each tree on a bootstrap sample (the bootstrap counts are row weights, as
//!   scikit-learn passes them), grown until leaves are pure, too small (`min_samples_leaf`) or at
//!   `max_depth`; the forest averages its trees. Trees are grown in parallel; each has its own
//!   seed derived from `seed` and its index, so the forest does not depend on scheduling.
//! * `gradient_boosting`: squared error, starting from the training mean; each round fits one
//!   tree to the residuals, best-first up to `max_leaf_nodes` leaves, leaf value
//!   `learning_rate · Σr / (n + l2_regularization)`.
//!
//! A split sends a row left when its value *rounded to float32* is `<= threshold`, and every
//! threshold is a float32 value between two training values (near their midpoint). So a float32
//! runtime (ONNX `TreeEnsembleRegressor`) takes exactly the branches modelcast takes; the PMML
//! export writes each threshold as the float64 midpoint between it and the next float32 (see
//! [`pmml_threshold`]), where a float64 evaluator's `<` decides the same way.
//! The fitted trees are plain arrays ([`Tree`]), stored as JSON in the model artifact.
//!
//! About 700 lines of code, one job: binning, the histogram grower and the two ensemble
//! fitters share the grower's state and its split search.

use serde::{Deserialize, Serialize};

use crate::design::Design;
use crate::error::{Error, Result};
use crate::params::{Boosting, Forest};
use crate::util::rng::SplitMix64;
use crate::util::threads::default_threads;

/// Rows sampled (evenly, deterministically) to find the bin thresholds of a feature.
const BIN_SAMPLE: usize = 200_000;

/// How an ensemble combines its trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// `base + mean(trees)` (random forest).
    Average,
    /// `base + sum(trees)` (boosting; leaf values already include the learning rate).
    Sum,
}

/// One tree as parallel arrays indexed by node; node 0 is the root and every child comes after
/// its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Design column tested at each node (0 at leaves).
    pub feature: Vec<u32>,
    /// `x[feature] <= threshold` goes left (0 at leaves).
    pub threshold: Vec<f64>,
    /// Left child; 0 marks a leaf.
    pub left: Vec<u32>,
    /// Right child; 0 at leaves.
    pub right: Vec<u32>,
    /// The nodes' predictions (used at leaves): one per node, or in a multi-output forest
    /// `outputs` per node (node `i`'s at `value[i·outputs..(i+1)·outputs]`).
    pub value: Vec<f64>,
}

impl Tree {
    /// The leaf one design row reaches.
    #[inline]
    pub fn leaf(&self, x: &[f64]) -> usize {
        let mut i = 0usize;
        loop {
            let l = self.left[i] as usize;
            if l == 0 {
                return i;
            }
            i = if goes_left(x[self.feature[i] as usize], self.threshold[i]) { l } else { self.right[i] as usize };
        }
    }

    /// The leaf value for one design row (a single-output tree).
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.value[self.leaf(x)]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.feature.len()
    }

    /// True for a tree without nodes (never produced by fitting; refused by [`Ensemble::check`]).
    pub fn is_empty(&self) -> bool {
        self.feature.is_empty()
    }

    /// Whether node `i` is a leaf.
    pub fn is_leaf(&self, i: usize) -> bool {
        self.left[i] == 0
    }

    fn check(&self, width: usize, per_node: usize) -> std::result::Result<(), String> {
        let n = self.feature.len();
        if n == 0 || [self.threshold.len(), self.left.len(), self.right.len()].iter().any(|&l| l != n) {
            return Err(format!("a tree's node arrays differ in length or are empty ({n} nodes)"));
        }
        if self.value.len() != n * per_node {
            return Err(format!("{} values for {n} nodes of {per_node} each", self.value.len()));
        }
        if let Some(i) = self.value.iter().position(|v| !v.is_finite()) {
            return Err(format!("node {}: non-finite value", i / per_node));
        }
        for i in 0..n {
            if self.left[i] == 0 {
                continue;
            }
            let (l, r) = (self.left[i] as usize, self.right[i] as usize);
            // children after their parent: prediction always terminates
            if l <= i || r <= i || l >= n || r >= n {
                return Err(format!("node {i}: children {l}, {r} out of order or range"));
            }
            if self.feature[i] as usize >= width || !self.threshold[i].is_finite() {
                return Err(format!("node {i}: feature {} of {width} or threshold not finite", self.feature[i]));
            }
        }
        Ok(())
    }
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// A fitted tree ensemble.
///
/// It predicts `outputs` values a row: one for a regressor or a binary classifier (class 1's
/// frequency in a forest, its log-odds in boosting), one per class otherwise. A multi-output
/// forest's trees hold `outputs` values per node; a multi-output boosting ensemble holds one
/// single-output tree per output per round (tree `t` adds to output `t % outputs`, as
/// scikit-learn's `HistGradientBoostingClassifier`) and a base per output in `bases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ensemble {
    /// How trees combine.
    pub combine: Combine,
    /// Added to the combined trees (boosting: the training mean or log-odds; forest: 0).
    pub base: f64,
    /// Values predicted per row (1 unless a classifier of more than two classes).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub outputs: usize,
    /// Multi-output boosting: the base of each output (`base` is then 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<f64>,
    /// Each design column's share of the total impurity reduction (sums to 1, or all 0).
    pub importances: Vec<f64>,
    /// The trees.
    pub trees: Vec<Tree>,
}

impl Ensemble {
    /// The prediction for one design row (a single-output ensemble).
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        let s: f64 = self.trees.iter().map(|t| t.predict(x)).sum();
        match self.combine {
            Combine::Average => self.base + s / self.trees.len() as f64,
            Combine::Sum => self.base + s,
        }
    }

    /// Every output for one design row into `out` (`outputs` long).
    #[inline]
    pub fn predict_into(&self, x: &[f64], out: &mut [f64]) {
        let k = self.outputs;
        if k == 1 {
            out[0] = self.predict(x);
            return;
        }
        match self.combine {
            Combine::Average => {
                out.fill(0.0);
                for t in &self.trees {
                    let at = t.leaf(x) * k;
                    out.iter_mut().zip(&t.value[at..at + k]).for_each(|(o, v)| *o += v);
                }
                let n = self.trees.len() as f64;
                out.iter_mut().for_each(|o| *o /= n);
            }
            Combine::Sum => {
                out.copy_from_slice(&self.bases);
                for (i, t) in self.trees.iter().enumerate() {
                    out[i % k] += t.predict(x);
                }
            }
        }
    }

    /// Values each tree holds per node.
    pub fn values_per_node(&self) -> usize {
        match self.combine {
            Combine::Average => self.outputs,
            Combine::Sum => 1,
        }
    }

    /// Structural check against a design of `width` columns.
    pub fn check(&self, width: usize) -> std::result::Result<(), String> {
        if self.trees.is_empty() {
            return Err("the ensemble has no trees".into());
        }
        if self.importances.len() != width || !self.base.is_finite() {
            return Err(format!(
                "{} importances for {width} design columns, or a non-finite base",
                self.importances.len()
            ));
        }
        let k = self.outputs;
        let bases = if self.combine == Combine::Sum && k > 1 { k } else { 0 };
        if k == 0 || self.bases.len() != bases || self.bases.iter().any(|b| !b.is_finite()) {
            return Err(format!("{k} outputs need {bases} finite bases, the ensemble has {}", self.bases.len()));
        }
        if bases > 0 && !self.trees.len().is_multiple_of(k) {
            return Err(format!("{} trees are not whole rounds of {k}", self.trees.len()));
        }
        let per_node = self.values_per_node();
        self.trees
            .iter()
            .enumerate()
            .try_for_each(|(t, tree)| tree.check(width, per_node).map_err(|e| format!("tree {t}: {e}")))
    }

    /// Total number of nodes.
    pub fn nodes(&self) -> usize {
        self.trees.iter().map(Tree::len).sum()
    }
}

/// The project's SplitMix64 (as the held-out split), one stream per tree.
#[derive(Debug, Clone)]
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = SplitMix64::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        Rng(r)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
}

/// The split rule: `x` rounded to float32 is at most the (float32) threshold.
#[inline]
pub fn goes_left(x: f64, threshold: f64) -> bool {
    (x as f32) as f64 <= threshold
}

/// The same rule for a float64 evaluator without the rounding (PMML): `x < pmml_threshold(t)`
/// exactly when `goes_left(x, t)`, except for `x` exactly halfway between two float32 values.
pub fn pmml_threshold(t: f64) -> f64 {
    let t32 = t as f32;
    (t32 as f64 + t32.next_up() as f64) / 2.0
}

/// A float32 threshold `t` with `f32(a) <= t < f32(b)`, nearest `at` (a value between them);
/// `None` when `a` and `b` are the same float32.
fn f32_threshold(a: f64, b: f64, at: f64) -> Option<f64> {
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
    n: usize,
    bins: Vec<u16>,
    thresholds: Vec<Vec<f64>>,
    /// Start of each feature's bins in a flat histogram (`features + 1` entries).
    offsets: Vec<usize>,
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

    fn features(&self) -> usize {
        self.thresholds.len()
    }

    #[inline]
    fn bin(&self, row: usize, f: usize) -> u16 {
        self.bins[row * self.features() + f]
    }

    fn total_bins(&self) -> usize {
        self.offsets[self.features()]
    }
}

/// Split candidates of one feature from its sample, as scikit-learn's histogram estimators bin:
/// the midpoints of consecutive distinct values when there are at most `max_bins` of them, else
/// the `max_bins - 1` percentiles at `k · 100 / max_bins` (numpy's `averaged_inverted_cdf`, as
/// scikit-learn 1.9; unweighted: scikit-learn weighs them by the sample weights). Each is
/// moved to a float32 value that splits the sample's values the same way.
fn thresholds_of(mut sample: Vec<f64>, max_bins: usize) -> Vec<f64> {
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

/// Per-bin sums: rows, weight, weighted target (one output's).
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    rows: u32,
    w: f64,
    s: f64,
}

impl Sums {
    fn score(&self, l2: f64) -> f64 {
        if self.w + l2 > 0.0 {
            self.s * self.s / (self.w + l2)
        } else {
            0.0
        }
    }
    fn minus(&self, o: &Sums) -> Sums {
        Sums { rows: self.rows - o.rows, w: self.w - o.w, s: self.s - o.s }
    }
    fn add(&mut self, o: &Sums) {
        self.rows += o.rows;
        self.w += o.w;
        self.s += o.s;
    }
}

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: u16,
}

/// Rows × features above which a boosting histogram is built on all cores.
const PARALLEL_WORK: usize = 1 << 18;

/// What a tree is grown with.
struct Grow<'a> {
    data: &'a Binned,
    /// Targets per row: 1, or one per class (a multi-output forest, whose split score is the sum
    /// of the outputs' scores: gini for one-hot targets).
    k: usize,
    /// Per-row weight (bootstrap count × class weight, a hessian, or 1) and weighted targets
    /// (`k` per row: `w · y`, or a negative gradient).
    w: &'a [f64],
    ws: &'a [f64],
    min_leaf: u32,
    /// The least weight a child may have (scikit-learn's `min_hessian_to_split`; 0: any > 0).
    min_child_weight: f64,
    max_depth: Option<u32>,
    /// Best-first up to this many leaves; `None`: depth-first until nothing splits.
    max_leaves: Option<u32>,
    l2: f64,
    /// Features tried per split (all when equal to the feature count).
    try_features: usize,
    /// Build large histograms on several threads (boosting; a forest is parallel across trees).
    threads: usize,
    /// Every weight is 1 (regression boosting): the histogram counts rows and skips the weights.
    unit_weights: bool,
}

/// A node that may still split: its rows, sums (one per output), histogram and best split.
struct Open {
    node: usize,
    start: usize,
    end: usize,
    depth: u32,
    total: Vec<Sums>,
    hist: Vec<Sums>,
    split: Split,
}

/// A grown tree, the leaves' row ranges (into the row list returned) and the gain per feature.
struct Grown {
    tree: Tree,
    leaves: Vec<(usize, usize, usize)>,
    rows: Vec<u32>,
    gains: Vec<f64>,
}

/// A node to place: its id, row range, depth, sums and histogram (if it may split).
type Child = (usize, usize, usize, u32, Vec<Sums>, Option<Vec<Sums>>);

impl Grow<'_> {
    /// The histogram of `rows` over every feature: `k` entries per bin, bin by bin.
    fn histogram(&self, rows: &[u32]) -> Vec<Sums> {
        let k = self.k;
        let mut hist = vec![Sums::default(); self.data.total_bins() * k];
        let p = self.data.features();
        // features f0..f1 into `part` (their bins), one pass over the rows
        let fill = |f0: usize, f1: usize, part: &mut [Sums]| {
            let base = self.data.offsets[f0];
            let at: Vec<usize> = (f0..f1).map(|f| (self.data.offsets[f] - base) * k).collect();
            let bins = &self.data.bins;
            for &r in rows {
                let r = r as usize;
                let w = self.w[r];
                let row = &bins[r * p + f0..r * p + f1];
                if k == 1 {
                    let ws = self.ws[r];
                    if self.unit_weights {
                        for (b, &o) in row.iter().zip(&at) {
                            let e = &mut part[o + *b as usize];
                            e.rows += 1;
                            e.s += ws;
                        }
                    } else {
                        for (b, &o) in row.iter().zip(&at) {
                            let e = &mut part[o + *b as usize];
                            e.rows += 1;
                            e.w += w;
                            e.s += ws;
                        }
                    }
                } else {
                    let ws = &self.ws[r * k..(r + 1) * k];
                    for (b, &o) in row.iter().zip(&at) {
                        let at = o + *b as usize * k;
                        for (e, s) in part[at..at + k].iter_mut().zip(ws) {
                            e.rows += 1;
                            e.w += w;
                            e.s += s;
                        }
                    }
                }
            }
            if self.unit_weights {
                part.iter_mut().for_each(|e| e.w = e.rows as f64);
            }
        };
        if self.threads > 1 && rows.len() * p >= PARALLEL_WORK && p > 1 {
            // features split into contiguous groups, one per thread: disjoint parts of `hist`
            let per = p.div_ceil(self.threads);
            std::thread::scope(|scope| {
                let mut rest: &mut [Sums] = &mut hist;
                let mut f0 = 0;
                while f0 < p {
                    let f1 = (f0 + per).min(p);
                    let len = (self.data.offsets[f1] - self.data.offsets[f0]) * k;
                    let (part, tail) = std::mem::take(&mut rest).split_at_mut(len);
                    rest = tail;
                    let fill = &fill;
                    scope.spawn(move || fill(f0, f1, part));
                    f0 = f1;
                }
            });
        } else {
            fill(0, p, &mut hist);
        }
        hist
    }

    /// Whether a split leaving `left` of `total` (output 0's sums) is allowed.
    #[inline]
    fn allowed(&self, left: &Sums, total: &Sums) -> bool {
        let right = total.minus(left);
        left.rows >= self.min_leaf.max(1)
            && right.rows >= self.min_leaf.max(1)
            && left.w > 0.0
            && right.w > 0.0
            && left.w >= self.min_child_weight
            && right.w >= self.min_child_weight
    }

    /// The best split of a node from its histogram and sums (one per output).
    fn best_split(&self, hist: &[Sums], total: &[Sums], rng: &mut Rng) -> Option<Split> {
        let k = self.k;
        if total[0].rows < 2 * self.min_leaf || total[0].rows < 2 {
            return None;
        }
        let p = self.data.features();
        let mut feats: Vec<usize> = (0..p).collect();
        if self.try_features < p {
            for j in 0..self.try_features {
                let r = j + rng.below(p - j);
                feats.swap(j, r);
            }
            feats.truncate(self.try_features);
            feats.sort_unstable();
        }
        let parent: f64 = total.iter().map(|t| t.score(self.l2)).sum();
        let mut best: Option<Split> = None;
        let mut left = vec![Sums::default(); k];
        for &f in &feats {
            let h = &hist[self.data.offsets[f] * k..self.data.offsets[f + 1] * k];
            if k == 1 {
                // one output (regression, binary classes): a scalar running sum
                let (mut l, t) = (Sums::default(), total[0]);
                for (b, e) in h[..h.len() - 1].iter().enumerate() {
                    l.add(e);
                    if !self.allowed(&l, &t) {
                        continue;
                    }
                    let gain = l.score(self.l2) + t.minus(&l).score(self.l2) - parent;
                    if best.is_none_or(|s| gain > s.gain) {
                        best = Some(Split { gain, feature: f, bin: b as u16 });
                    }
                }
                continue;
            }
            left.fill(Sums::default());
            for (b, e) in h.chunks_exact(k).enumerate().take(h.len() / k - 1) {
                left.iter_mut().zip(e).for_each(|(l, e)| l.add(e));
                if !self.allowed(&left[0], &total[0]) {
                    continue;
                }
                let gain =
                    left.iter().zip(total).map(|(l, t)| l.score(self.l2) + t.minus(l).score(self.l2)).sum::<f64>()
                        - parent;
                if best.is_none_or(|s| gain > s.gain) {
                    best = Some(Split { gain, feature: f, bin: b as u16 });
                }
            }
        }
        // no split for a (numerically) pure node
        best.filter(|s| s.gain > parent.abs() * 1e-12 + 1e-300)
    }

    /// The sums (one per output) of the bins of `s.feature` up to `s.bin`: the left child's.
    fn left_of(&self, hist: &[Sums], s: &Split) -> Vec<Sums> {
        let k = self.k;
        let h = &hist[self.data.offsets[s.feature] * k..];
        let mut left = vec![Sums::default(); k];
        for e in h.chunks_exact(k).take(s.bin as usize + 1) {
            left.iter_mut().zip(e).for_each(|(l, e)| l.add(e));
        }
        left
    }

    /// Grow one tree on `rows` (rows with weight > 0, ascending). `leaf` turns an output's sums
    /// into its value at a node.
    fn grow(&self, mut rows: Vec<u32>, rng: &mut Rng, leaf: &dyn Fn(usize, &Sums) -> f64) -> Grown {
        let k = self.k;
        let mut tree = Tree { feature: vec![], threshold: vec![], left: vec![], right: vec![], value: vec![] };
        let mut gains = vec![0.0; self.data.features()];
        let push = |tree: &mut Tree, sums: &[Sums]| {
            tree.feature.push(0);
            tree.threshold.push(0.0);
            tree.left.push(0);
            tree.right.push(0);
            tree.value.extend(sums.iter().enumerate().map(|(j, s)| leaf(j, s)));
            tree.feature.len() - 1
        };
        let mut total = vec![Sums::default(); k];
        for &r in &rows {
            let r = r as usize;
            for (j, t) in total.iter_mut().enumerate() {
                t.rows += 1;
                t.w += self.w[r];
                t.s += self.ws[r * k + j];
            }
        }
        let root = push(&mut tree, &total);
        let can_split = |depth: u32| self.max_depth.is_none_or(|d| depth < d);
        let mut open: Vec<Open> = Vec::new();
        let mut leaves = Vec::new();
        // a node that can split waits in `open` with its histogram; any other is a leaf now
        let admit = |open: &mut Vec<Open>,
                     leaves: &mut Vec<(usize, usize, usize)>,
                     rng: &mut Rng,
                     (node, start, end, depth, total, hist): Child| {
            if let Some(hist) = hist.filter(|_| can_split(depth) && total[0].rows >= 2 * self.min_leaf.max(1)) {
                if let Some(split) = self.best_split(&hist, &total, rng) {
                    open.push(Open { node, start, end, depth, total, hist, split });
                    return;
                }
            }
            leaves.push((node, start, end));
        };
        let root_hist = can_split(0).then(|| self.histogram(&rows));
        admit(&mut open, &mut leaves, rng, (root, 0, rows.len(), 0, total, root_hist));
        let mut n_leaves = 1u32;
        let mut scratch: Vec<u32> = Vec::new();
        loop {
            if self.max_leaves.is_some_and(|m| n_leaves >= m) {
                break;
            }
            let next = match self.max_leaves {
                // best-first: the largest gain (first on ties)
                Some(_) => match open.iter().enumerate().fold(None, |b: Option<(usize, f64)>, (i, o)| match b {
                    Some((_, g)) if o.split.gain <= g => b,
                    _ => Some((i, o.split.gain)),
                }) {
                    Some((i, _)) => i,
                    None => break,
                },
                // depth-first: the newest
                None if open.is_empty() => break,
                None => open.len() - 1,
            };
            let o = open.swap_remove(next);
            let s = o.split;
            // stable partition (rows stay ascending: the histogram passes read memory in order)
            scratch.clear();
            let mut i = o.start;
            for j in o.start..o.end {
                let r = rows[j];
                if self.data.bin(r as usize, s.feature) <= s.bin {
                    rows[i] = r;
                    i += 1;
                } else {
                    scratch.push(r);
                }
            }
            rows[i..o.end].copy_from_slice(&scratch);
            let mid = i;
            let left_sums = self.left_of(&o.hist, &s);
            let right_sums: Vec<Sums> = o.total.iter().zip(&left_sums).map(|(t, l)| t.minus(l)).collect();
            let l = push(&mut tree, &left_sums);
            let r = push(&mut tree, &right_sums);
            tree.feature[o.node] = s.feature as u32;
            tree.threshold[o.node] = self.data.thresholds[s.feature][s.bin as usize];
            tree.left[o.node] = l as u32;
            tree.right[o.node] = r as u32;
            gains[s.feature] += s.gain;
            n_leaves += 1;
            let depth = o.depth + 1;
            // the smaller child's histogram is built; the larger one's is the parent's minus it
            let (small, large) = if mid - o.start <= o.end - mid {
                ((l, o.start, mid, left_sums), (r, mid, o.end, right_sums))
            } else {
                ((r, mid, o.end, right_sums), (l, o.start, mid, left_sums))
            };
            let splittable = |t: &[Sums]| can_split(depth) && t[0].rows >= 2 * self.min_leaf.max(1);
            let (small_hist, large_hist) = if splittable(&small.3) || splittable(&large.3) {
                let sh = self.histogram(&rows[small.1..small.2]);
                let mut lh = o.hist;
                lh.iter_mut().zip(&sh).for_each(|(a, b)| *a = a.minus(b));
                (Some(sh), Some(lh))
            } else {
                (None, None)
            };
            // children in node order (left first), whatever their sizes
            let mut kids = [(small, small_hist), (large, large_hist)];
            kids.sort_by_key(|c| c.0 .0);
            for ((node, start, end, sums), hist) in kids {
                admit(&mut open, &mut leaves, rng, (node, start, end, depth, sums, hist));
            }
        }
        leaves.extend(open.iter().map(|o| (o.node, o.start, o.end)));
        Grown { tree, leaves, rows, gains }
    }
}

fn normalise(gains: Vec<f64>) -> Vec<f64> {
    let total: f64 = gains.iter().sum();
    if total > 0.0 {
        gains.into_iter().map(|g| g / total).collect()
    } else {
        vec![0.0; gains.len()]
    }
}

/// Fit a random forest (regression) on a design.
pub fn fit_forest(d: &dyn Design, p: &Forest) -> Result<Ensemble> {
    let (data, y) = Binned::from_design(d, p.max_bins)?;
    let weights = vec![1.0; y.len()];
    forest(&data, &y, 1, &weights, p)
}

/// Fit a random forest classifier on a design whose target holds class indices `0..classes`:
/// gini trees whose leaves hold the (weighted) class frequencies, averaged over the trees, as
/// scikit-learn's `RandomForestClassifier`. A row's weight is its bootstrap count times its
/// class's weight.
///
/// The gini decrease of a split is the squared-error decrease of the one-hot class indicators,
/// summed over classes, so the grower scores one output per class. Two classes need only class
/// 1's indicator (the sum is twice its decrease: the same split), and the ensemble's one output is
/// class 1's probability.
pub fn fit_forest_classifier(d: &dyn Design, p: &Forest, classes: usize, class_weights: &[f64]) -> Result<Ensemble> {
    let (data, y) = Binned::from_design(d, p.max_bins)?;
    let labels = class_indices(&y, classes)?;
    let weights: Vec<f64> = labels.iter().map(|&c| class_weights[c]).collect();
    let k = if classes == 2 { 1 } else { classes };
    let mut targets = vec![0.0; y.len() * k];
    for (i, &c) in labels.iter().enumerate() {
        match k {
            1 => targets[i] = c as f64,
            _ => targets[i * k + c] = 1.0,
        }
    }
    forest(&data, &targets, k, &weights, p)
}

/// The class index of each target value, checked to be below `classes`.
fn class_indices(y: &[f64], classes: usize) -> Result<Vec<usize>> {
    y.iter()
        .map(|&t| {
            if t >= 0.0 && t.fract() == 0.0 && (t as usize) < classes {
                Ok(t as usize)
            } else {
                Err(Error::Model(format!("target value {t} is not a class index below {classes}")))
            }
        })
        .collect()
}

/// A forest on binned data with `k` targets per row (`targets[i·k + j]`) and per-row weights.
fn forest(data: &Binned, targets: &[f64], k: usize, weights: &[f64], p: &Forest) -> Result<Ensemble> {
    let n = data.n;
    let features = data.features();
    let try_features = p.max_features.count(features);
    let trees = p.n_estimators as usize;
    let workers = default_threads().min(trees).max(1);
    let one = |t: usize| -> (Tree, Vec<f64>) {
        let mut rng = Rng::new(p.seed, t as u64 + 1);
        let mut w = vec![0.0; n];
        if p.bootstrap {
            for _ in 0..n {
                w[rng.below(n)] += 1.0;
            }
        } else {
            w.fill(1.0);
        }
        w.iter_mut().zip(weights).for_each(|(w, c)| *w *= c);
        // centre each target on this sample's mean: the split scores stay well conditioned
        let wsum: f64 = w.iter().sum();
        let mut mean = vec![0.0; k];
        for (i, wi) in w.iter().enumerate() {
            mean.iter_mut().zip(&targets[i * k..(i + 1) * k]).for_each(|(m, y)| *m += wi * y);
        }
        mean.iter_mut().for_each(|m| *m /= wsum);
        let mut ws = vec![0.0; n * k];
        for (i, wi) in w.iter().enumerate() {
            for j in 0..k {
                ws[i * k + j] = wi * (targets[i * k + j] - mean[j]);
            }
        }
        let rows: Vec<u32> = (0..n as u32).filter(|&i| w[i as usize] > 0.0).collect();
        let g = Grow {
            data,
            k,
            w: &w,
            ws: &ws,
            min_leaf: p.min_samples_leaf,
            min_child_weight: 0.0,
            max_depth: p.max_depth,
            max_leaves: None,
            l2: 0.0,
            try_features,
            threads: 1,
            unit_weights: false,
        };
        let grown = g.grow(rows, &mut rng, &|j, s: &Sums| mean[j] + s.s / s.w);
        (grown.tree, grown.gains)
    };
    let mut out: Vec<Option<(Tree, Vec<f64>)>> = vec![None; trees];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let one = &one;
                scope.spawn(move || (w..trees).step_by(workers).map(|t| (t, one(t))).collect::<Vec<_>>())
            })
            .collect();
        for h in handles {
            // a panic in a worker is a bug; re-raise it here
            for (t, r) in h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) {
                out[t] = Some(r);
            }
        }
    });
    let mut gains = vec![0.0; features];
    let mut fitted = Vec::with_capacity(trees);
    for (tree, g) in out.into_iter().flatten() {
        gains.iter_mut().zip(g).for_each(|(a, b)| *a += b);
        fitted.push(tree);
    }
    Ok(Ensemble {
        combine: Combine::Average,
        base: 0.0,
        outputs: k,
        bases: vec![],
        importances: normalise(gains),
        trees: fitted,
    })
}

/// Fit histogram gradient boosting (squared error) on a design.
pub fn fit_boosting(d: &dyn Design, p: &Boosting) -> Result<Ensemble> {
    let (data, y) = Binned::from_design(d, p.max_bins)?;
    let n = data.n;
    let base = y.iter().sum::<f64>() / n as f64;
    let mut pred = vec![base; n];
    let w = vec![1.0; n];
    let mut ws = vec![0.0; n];
    let mut gains = vec![0.0; data.features()];
    let mut trees = Vec::with_capacity(p.max_iter as usize);
    let mut rng = Rng::new(p.seed, 0);
    let (lr, l2) = (p.learning_rate, p.l2_regularization);
    for _ in 0..p.max_iter {
        for i in 0..n {
            ws[i] = y[i] - pred[i];
        }
        let g = Grow {
            data: &data,
            k: 1,
            w: &w,
            ws: &ws,
            min_leaf: p.min_samples_leaf,
            min_child_weight: 0.0,
            max_depth: p.max_depth,
            max_leaves: Some(p.max_leaf_nodes),
            l2,
            try_features: data.features(),
            threads: default_threads(),
            unit_weights: true,
        };
        let grown = g.grow((0..n as u32).collect(), &mut rng, &|_, s: &Sums| lr * s.s / (s.w + l2));
        for &(node, start, end) in &grown.leaves {
            let v = grown.tree.value[node];
            for &r in &grown.rows[start..end] {
                pred[r as usize] += v;
            }
        }
        gains.iter_mut().zip(&grown.gains).for_each(|(a, b)| *a += b);
        let single_leaf = grown.tree.len() == 1;
        trees.push(grown.tree);
        if single_leaf {
            // nothing left to fit: every later round would be the same empty tree
            break;
        }
    }
    Ok(Ensemble { combine: Combine::Sum, base, outputs: 1, bases: vec![], importances: normalise(gains), trees })
}

/// A gradient or hessian as scikit-learn keeps it (float32): the same sums, so the same splits
/// where two candidates are near a tie.
#[inline]
fn f32_round(v: f64) -> f64 {
    f64::from(v as f32)
}

/// scikit-learn's `min_hessian_to_split`: the least hessian sum of a child.
const MIN_HESSIAN_TO_SPLIT: f64 = 1e-3;

/// Fit histogram gradient boosting on the log loss (a classifier) on a design whose target holds
/// class indices `0..classes`, as scikit-learn's `HistGradientBoostingClassifier`: two classes
/// boost one raw score (class 1's log-odds, from the prior's), more boost one per class (a
/// softmax, from the log priors centred), one tree per class per round, each fitted to the
/// gradients and hessians of the round's start. A leaf's value is
/// `-learning_rate · Σg / (Σh + l2_regularization)`; a row's weight (its class's) scales both.
pub fn fit_boosting_classifier(
    d: &dyn Design,
    p: &Boosting,
    classes: usize,
    class_weights: &[f64],
) -> Result<Ensemble> {
    let (data, y) = Binned::from_design(d, p.max_bins)?;
    let labels = class_indices(&y, classes)?;
    let n = data.n;
    let sw: Vec<f64> = labels.iter().map(|&c| class_weights[c]).collect();
    let k = if classes == 2 { 1 } else { classes };
    // the prior, clipped as scikit-learn's fit_intercept_only
    let total: f64 = sw.iter().sum();
    let mut prior = vec![0.0; classes];
    labels.iter().zip(&sw).for_each(|(&c, w)| prior[c] += w);
    let eps = f64::EPSILON;
    prior.iter_mut().for_each(|q| *q = (*q / total).clamp(eps, 1.0 - eps));
    let bases: Vec<f64> = if k == 1 {
        vec![(prior[1] / (1.0 - prior[1])).ln()]
    } else {
        let logs: Vec<f64> = prior.iter().map(|q| q.ln()).collect();
        let mean = logs.iter().sum::<f64>() / k as f64;
        logs.iter().map(|l| l - mean).collect()
    };
    let mut raw: Vec<f64> = (0..n).flat_map(|_| bases.iter().copied()).collect();
    let (mut h, mut neg_g) = (vec![vec![0.0; n]; k], vec![vec![0.0; n]; k]);
    let mut probs = vec![0.0; k.max(2)];
    let mut gains = vec![0.0; data.features()];
    let mut trees = Vec::with_capacity(p.max_iter as usize * k);
    let mut rng = Rng::new(p.seed, 0);
    let (lr, l2) = (p.learning_rate, p.l2_regularization);
    let all: Vec<u32> = (0..n as u32).collect();
    for _ in 0..p.max_iter {
        for i in 0..n {
            let r = &raw[i * k..(i + 1) * k];
            if k == 1 {
                let p1 = crate::util::link::sigmoid(r[0]);
                let y1 = (labels[i] == 1) as u8 as f64;
                neg_g[0][i] = -f32_round((p1 - y1) * sw[i]);
                h[0][i] = f32_round(p1 * (1.0 - p1) * sw[i]);
            } else {
                probs.copy_from_slice(r);
                crate::util::link::softmax(&mut probs);
                for j in 0..k {
                    let yj = (labels[i] == j) as u8 as f64;
                    neg_g[j][i] = -f32_round((probs[j] - yj) * sw[i]);
                    h[j][i] = f32_round(probs[j] * (1.0 - probs[j]) * sw[i]);
                }
            }
        }
        for j in 0..k {
            let g = Grow {
                data: &data,
                k: 1,
                w: &h[j],
                ws: &neg_g[j],
                min_leaf: p.min_samples_leaf,
                min_child_weight: MIN_HESSIAN_TO_SPLIT,
                max_depth: p.max_depth,
                max_leaves: Some(p.max_leaf_nodes),
                l2,
                try_features: data.features(),
                threads: default_threads(),
                unit_weights: false,
            };
            let grown = g.grow(all.clone(), &mut rng, &|_, s: &Sums| lr * s.s / (s.w + l2));
            for &(node, start, end) in &grown.leaves {
                let v = grown.tree.value[node];
                for &r in &grown.rows[start..end] {
                    raw[r as usize * k + j] += v;
                }
            }
            gains.iter_mut().zip(&grown.gains).for_each(|(a, b)| *a += b);
            trees.push(grown.tree);
        }
    }
    let (base, bases) = if k == 1 { (bases[0], vec![]) } else { (0.0, bases) };
    Ok(Ensemble { combine: Combine::Sum, base, outputs: k, bases, importances: normalise(gains), trees })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::Dense;
    use crate::params::MaxFeatures;
    use ndarray::{array, Array1, Array2};

    fn fit_forest_x(x: &Array2<f64>, y: &Array1<f64>, p: &Forest) -> Ensemble {
        fit_forest(&Dense { x: x.view(), y: y.view() }, p).unwrap()
    }

    fn fit_boosting_x(x: &Array2<f64>, y: &Array1<f64>, p: &Boosting) -> Ensemble {
        fit_boosting(&Dense { x: x.view(), y: y.view() }, p).unwrap()
    }

    fn forest(n_estimators: u32) -> Forest {
        Forest {
            n_estimators,
            max_depth: None,
            min_samples_leaf: 1,
            max_features: MaxFeatures::Fraction(1.0),
            bootstrap: false,
            max_bins: 255,
            seed: 0,
        }
    }

    fn boosting(max_iter: u32) -> Boosting {
        Boosting {
            max_iter,
            learning_rate: 0.1,
            max_leaf_nodes: 31,
            max_depth: None,
            min_samples_leaf: 1,
            l2_regularization: 0.0,
            max_bins: 255,
            seed: 0,
        }
    }

    #[test]
    fn a_step_function_is_learned_exactly_by_one_tree() {
        let x = array![[1.0], [2.0], [3.0], [4.0]];
        let y = array![10.0, 10.0, 20.0, 20.0];
        let e = fit_forest_x(&x, &y, &forest(1));
        let t = &e.trees[0];
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!(t.feature[0], 0);
        // the threshold lies between 2 and 3 and is an f32
        assert!(t.threshold[0] >= 2.0 && t.threshold[0] < 3.0 && (t.threshold[0] as f32) as f64 == t.threshold[0]);
        for (xi, yi) in [(1.0, 10.0), (2.0, 10.0), (2.4, 10.0), (3.0, 20.0), (9.0, 20.0)] {
            assert_eq!(e.predict(&[xi]), yi, "x={xi}");
        }
        assert_eq!(e.importances, vec![1.0]);
        e.check(1).unwrap();
    }

    #[test]
    fn min_samples_leaf_and_max_depth_bound_the_tree() {
        let x = Array2::from_shape_fn((40, 1), |(i, _)| i as f64);
        let y = Array1::from_shape_fn(40, |i| (i * i) as f64);
        let mut p = forest(1);
        p.min_samples_leaf = 10;
        let t = &fit_forest_x(&x, &y, &p).trees[0];
        let mut per_leaf = std::collections::BTreeMap::new();
        for i in 0..40 {
            *per_leaf.entry(t.predict(&[i as f64]).to_bits()).or_insert(0) += 1;
        }
        assert!(per_leaf.len() >= 2 && per_leaf.values().all(|&n| n >= 10), "{per_leaf:?}");
        p.min_samples_leaf = 1;
        p.max_depth = Some(2);
        let t = &fit_forest_x(&x, &y, &p).trees[0];
        assert_eq!(t.len(), 7, "a full tree of depth 2");
    }

    #[test]
    fn boosting_converges_on_the_training_rows_and_sums_its_trees() {
        let x = Array2::from_shape_fn((50, 2), |(i, j)| ((i * (j + 3)) % 17) as f64);
        let y = Array1::from_shape_fn(50, |i| ((i * 3) % 17) as f64 * 2.0 + ((i * 4) % 17) as f64);
        let e = fit_boosting_x(&x, &y, &boosting(200));
        assert_eq!(e.combine, Combine::Sum);
        assert!((e.base - y.mean().unwrap()).abs() < 1e-12);
        let sse: f64 = (0..50).map(|i| (e.predict(x.row(i).as_slice().unwrap()) - y[i]).powi(2)).sum();
        let sst: f64 = y.iter().map(|v| (v - e.base).powi(2)).sum();
        assert!(sse < 1e-3 * sst, "sse {sse} of {sst}");
        // max_leaf_nodes bounds every tree
        let mut p = boosting(5);
        p.max_leaf_nodes = 3;
        let e = fit_boosting_x(&x, &y, &p);
        assert!(e.trees.iter().all(|t| (0..t.len()).filter(|&i| t.is_leaf(i)).count() <= 3));
    }

    #[test]
    fn forests_are_deterministic_for_a_seed_and_differ_between_seeds() {
        let x = Array2::from_shape_fn((200, 3), |(i, j)| ((i * 7 + j * 13) % 29) as f64 / 3.0);
        let y = Array1::from_shape_fn(200, |i| ((i * 11) % 23) as f64);
        let mut p = forest(8);
        p.bootstrap = true;
        p.max_features = MaxFeatures::Fraction(0.5);
        let a = fit_forest_x(&x, &y, &p);
        assert_eq!(a, fit_forest_x(&x, &y, &p));
        p.seed = 1;
        assert_ne!(a, fit_forest_x(&x, &y, &p));
        // the average of its trees
        let row = [1.0, 2.0, 3.0];
        let mean = a.trees.iter().map(|t| t.predict(&row)).sum::<f64>() / 8.0;
        assert!((a.predict(&row) - mean).abs() < 1e-12);
    }

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

    #[test]
    fn corrupt_trees_are_refused() {
        let mut t = Tree {
            feature: vec![0, 0, 0],
            threshold: vec![1.0, 0.0, 0.0],
            left: vec![1, 0, 0],
            right: vec![2, 0, 0],
            value: vec![0.0, 1.0, 2.0],
        };
        let e = |t: &Tree| Ensemble {
            combine: Combine::Sum,
            base: 0.0,
            outputs: 1,
            bases: vec![],
            importances: vec![1.0],
            trees: vec![t.clone()],
        };
        e(&t).check(1).unwrap();
        assert!(e(&t).check(0).is_err(), "feature out of range");
        t.left[0] = 0;
        t.left[1] = 1;
        assert!(e(&t).check(1).unwrap_err().contains("out of order"), "a loop");
    }
}
