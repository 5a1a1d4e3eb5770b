//! The histogram grower: one tree from the binned rows, depth-first or best-first, and its
//! split search over per-node histograms (a child's histogram is its parent's minus its
//! sibling's).

use super::bins::{Binned, Bins, Place};
use super::Tree;
use crate::util::rng::SplitMix64;

/// The project's SplitMix64 (as the held-out split), one stream per tree.
#[derive(Debug, Clone)]
pub(super) struct Rng(SplitMix64);

impl Rng {
    pub(super) fn new(seed: u64, stream: u64) -> Rng {
        let mut r = SplitMix64::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        Rng(r)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
}

/// Per-bin sums: rows, weight, weighted target (one output's).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sums {
    pub(super) rows: u32,
    pub(super) w: f64,
    pub(super) s: f64,
}

impl Sums {
    pub(super) fn score(&self, l2: f64) -> f64 {
        if self.w + l2 > 0.0 {
            self.s * self.s / (self.w + l2)
        } else {
            0.0
        }
    }
    pub(super) fn minus(&self, o: &Sums) -> Sums {
        Sums { rows: self.rows - o.rows, w: self.w - o.w, s: self.s - o.s }
    }
    pub(super) fn add(&mut self, o: &Sums) {
        self.rows += o.rows;
        self.w += o.w;
        self.s += o.s;
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Split {
    pub(super) gain: f64,
    pub(super) feature: usize,
    pub(super) bin: u16,
}

/// Rows × features above which a boosting histogram is built on all cores.
pub(super) const PARALLEL_WORK: usize = 1 << 16;

/// What a tree is grown with.
pub(super) struct Grow<'a> {
    pub(super) data: &'a Binned,
    /// Targets per row: 1, or one per class (a multi-output forest, whose split score is the sum
    /// of the outputs' scores: gini for one-hot targets).
    pub(super) k: usize,
    /// Per-row weight (bootstrap count × class weight, a hessian, or 1) and weighted targets
    /// (`k` per row: `w · y`, or a negative gradient).
    pub(super) w: &'a [f64],
    pub(super) ws: &'a [f64],
    pub(super) min_leaf: u32,
    /// The least weight a child may have (scikit-learn's `min_hessian_to_split`; 0: any > 0).
    pub(super) min_child_weight: f64,
    pub(super) max_depth: Option<u32>,
    /// Best-first up to this many leaves; `None`: depth-first until nothing splits.
    pub(super) max_leaves: Option<u32>,
    pub(super) l2: f64,
    /// Features tried per split (all when equal to the feature count).
    pub(super) try_features: usize,
    /// Build large histograms on several threads (boosting; a forest is parallel across trees).
    pub(super) threads: usize,
    /// Every weight is 1 (regression boosting): the histogram counts rows and skips the weights.
    pub(super) unit_weights: bool,
}

/// A node that may still split: its rows, sums (one per output), histogram and best split.
pub(super) struct Open {
    pub(super) node: usize,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) depth: u32,
    pub(super) total: Vec<Sums>,
    pub(super) hist: Vec<Sums>,
    pub(super) split: Split,
}

/// A grown tree, the leaves' row ranges (into the row list returned) and the gain per feature.
pub(super) struct Grown {
    pub(super) tree: Tree,
    pub(super) leaves: Vec<(usize, usize, usize)>,
    pub(super) rows: Vec<u32>,
    pub(super) gains: Vec<f64>,
}

/// A node to place: its id, row range, depth, sums and histogram (if it may split).
pub(super) type Child = (usize, usize, usize, u32, Vec<Sums>, Option<Vec<Sums>>);

impl Grow<'_> {
    /// The histogram of `rows` over every feature: `k` entries per bin, bin by bin.
    pub(super) fn histogram(&self, rows: &[u32]) -> Vec<Sums> {
        let k = self.k;
        let data = self.data;
        let cols = data.columns;
        let mut hist = vec![Sums::default(); data.column_offsets[cols] * k];
        // columns c0..c1 into `part` (their bins), one pass over the rows
        let fill = |c0: usize, c1: usize, part: &mut [Sums]| match &data.bins {
            Bins::Narrow(b) => self.count(b, rows, c0, c1, part),
            Bins::Wide(b) => self.count(b, rows, c0, c1, part),
        };
        if self.threads > 1 && rows.len() * cols >= PARALLEL_WORK && cols > 1 {
            // columns split into contiguous groups, one per thread: disjoint parts of `hist`
            let per = cols.div_ceil(self.threads);
            std::thread::scope(|scope| {
                let mut rest: &mut [Sums] = &mut hist;
                let mut c0 = 0;
                while c0 < cols {
                    let c1 = (c0 + per).min(cols);
                    let len = (data.column_offsets[c1] - data.column_offsets[c0]) * k;
                    let (part, tail) = std::mem::take(&mut rest).split_at_mut(len);
                    rest = tail;
                    let fill = &fill;
                    scope.spawn(move || fill(c0, c1, part));
                    c0 = c1;
                }
            });
        } else {
            fill(0, cols, &mut hist);
        }
        self.features_of(hist)
    }

    /// Count `rows` into the histogram of columns `c0..c1` (`part`), from the row-major bins.
    fn count<B: Copy + Into<usize>>(&self, bins: &[B], rows: &[u32], c0: usize, c1: usize, part: &mut [Sums]) {
        let (k, data) = (self.k, self.data);
        let cols = data.columns;
        let base = data.column_offsets[c0];
        let at: Vec<usize> = (c0..c1).map(|c| (data.column_offsets[c] - base) * k).collect();
        for &r in rows {
            let r = r as usize;
            let w = self.w[r];
            let row = &bins[r * cols + c0..r * cols + c1];
            if k == 1 {
                let ws = self.ws[r];
                if self.unit_weights {
                    for (b, &o) in row.iter().zip(&at) {
                        let e = &mut part[o + (*b).into()];
                        e.rows += 1;
                        e.s += ws;
                    }
                } else {
                    for (b, &o) in row.iter().zip(&at) {
                        let e = &mut part[o + (*b).into()];
                        e.rows += 1;
                        e.w += w;
                        e.s += ws;
                    }
                }
            } else {
                let ws = &self.ws[r * k..(r + 1) * k];
                for (b, &o) in row.iter().zip(&at) {
                    let at = o + (*b).into() * k;
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
    }

    /// The features' histogram from the columns' (the same when no feature is bundled): a
    /// bundled feature's bin 1 is its code's bin, its bin 0 the rest of the column.
    fn features_of(&self, columns: Vec<Sums>) -> Vec<Sums> {
        let (k, data) = (self.k, self.data);
        if data.place.iter().enumerate().all(|(f, p)| *p == Place::Own(f)) {
            return columns;
        }
        let mut hist = vec![Sums::default(); data.total_bins() * k];
        for (f, p) in data.place.iter().enumerate() {
            let out = &mut hist[data.offsets[f] * k..data.offsets[f + 1] * k];
            match *p {
                Place::Own(c) => {
                    out.copy_from_slice(&columns[data.column_offsets[c] * k..data.column_offsets[c + 1] * k])
                }
                Place::Bundled { col, code } => {
                    let all = &columns[data.column_offsets[col] * k..data.column_offsets[col + 1] * k];
                    let hot = &all[code as usize * k..(code as usize + 1) * k];
                    for j in 0..k {
                        let mut total = Sums::default();
                        all.chunks_exact(k).for_each(|b| total.add(&b[j]));
                        out[j] = total.minus(&hot[j]);
                        out[k + j] = hot[j];
                    }
                }
            }
        }
        hist
    }

    /// Whether a split leaving `left` of `total` (output 0's sums) is allowed.
    #[inline]
    pub(super) fn allowed(&self, left: &Sums, total: &Sums) -> bool {
        let right = total.minus(left);
        left.rows >= self.min_leaf.max(1)
            && right.rows >= self.min_leaf.max(1)
            && left.w > 0.0
            && right.w > 0.0
            && left.w >= self.min_child_weight
            && right.w >= self.min_child_weight
    }

    /// The best split of a node from its histogram and sums (one per output).
    pub(super) fn best_split(&self, hist: &[Sums], total: &[Sums], rng: &mut Rng) -> Option<Split> {
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
    pub(super) fn left_of(&self, hist: &[Sums], s: &Split) -> Vec<Sums> {
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
    pub(super) fn grow(&self, mut rows: Vec<u32>, rng: &mut Rng, leaf: &dyn Fn(usize, &Sums) -> f64) -> Grown {
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
            // stable partition (rows stay ascending: the histogram passes read memory in order),
            // without a branch per row: each row is written to both sides, and the side it
            // belongs to moves on
            scratch.clear();
            scratch.resize(o.end - o.start, 0);
            let (mut i, mut right) = (o.start, 0);
            let left_of_split = self.data.goes_left(s.feature, s.bin);
            for j in o.start..o.end {
                let r = rows[j];
                let left = left_of_split(r as usize);
                rows[i] = r;
                scratch[right] = r;
                i += usize::from(left);
                right += usize::from(!left);
            }
            rows[i..o.end].copy_from_slice(&scratch[..right]);
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

pub(super) fn normalise(gains: Vec<f64>) -> Vec<f64> {
    let total: f64 = gains.iter().sum();
    if total > 0.0 {
        gains.into_iter().map(|g| g / total).collect()
    } else {
        vec![0.0; gains.len()]
    }
}
