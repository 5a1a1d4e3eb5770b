//! The inference layout of an ensemble: every tree's nodes in one array of 16-byte nodes
//! (feature, float32 threshold, both children), leaves pointing at themselves, walked without a
//! branch per node by several trees at once.
//!
//! A row walks [`LANES`] trees side by side: each lane takes one step a round (`next[x > t]`,
//! a load and a select, no branch to mispredict), and a lane whose tree has reached its leaf takes
//! the next tree, so the lanes stay busy until the last tree is done. The lanes' chains are
//! independent, so the CPU overlaps their loads. The leaves are recorded per tree and summed in
//! tree order afterwards: the prediction is bit for bit the stored ensemble's
//! ([`Ensemble::predict`], the reference a test holds it to).
//!
//! Many rows (a batch of the service, an evaluation) walk a tree at a time instead
//! ([`Packed::predict_rows`]): [`BLOCK`] rows side by side through one tree for its depth, so
//! the tree stays in the nearest cache, each row still summing its trees in tree order.

use super::{Combine, Ensemble};

/// Trees walked side by side for one row.
const LANES: usize = 8;

/// Trees whose leaves are recorded on the stack before they are summed (a chunk).
const CHUNK: usize = 256;

/// Rows walked through one tree side by side by [`Packed::predict_rows`].
const BLOCK: usize = 16;

/// Widest design row converted to float32 on the stack (wider rows use a per-thread buffer).
const STACK_WIDTH: usize = 256;

/// One node: a split (`x[feature] > threshold` goes to `next[1]`) or a leaf (`next` is itself
/// twice).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(16))]
struct Node {
    feature: u32,
    threshold: f32,
    next: [u32; 2],
}

thread_local! {
    static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An ensemble laid out for scoring, built once when a model is loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Node 0 is a leaf that belongs to no tree: where a lane without a tree waits.
    nodes: Vec<Node>,
    /// Each tree's root, then one entry for the idle lane (0).
    roots: Vec<u32>,
    /// Values per node (`per_node` each; the idle node's are zeros).
    values: Vec<f64>,
    per_node: usize,
    /// Each tree's depth (steps from its root to its deepest leaf).
    depth: Vec<u32>,
    combine: Combine,
    base: f64,
    outputs: usize,
    bases: Vec<f64>,
}

/// The largest float32 at most `t`: for any float32 `x`, `x <= t` exactly when `x <= below(t)`,
/// so comparing in float32 takes the stored float64 threshold's branch (`goes_left`).
fn f32_at_most(t: f64) -> f32 {
    let r = t as f32;
    if f64::from(r) > t {
        r.next_down()
    } else {
        r
    }
}

impl Packed {
    /// Lay out a checked ensemble ([`Ensemble::check`] passed).
    pub fn new(e: &Ensemble) -> Packed {
        let per_node = e.values_per_node();
        let total: usize = e.nodes() + 1;
        let mut nodes = Vec::with_capacity(total);
        let mut values = Vec::with_capacity(total * per_node);
        nodes.push(Node { feature: 0, threshold: 0.0, next: [0, 0] });
        values.extend(std::iter::repeat_n(0.0, per_node));
        let mut roots = Vec::with_capacity(e.trees.len() + 1);
        let mut depth = Vec::with_capacity(e.trees.len());
        for t in &e.trees {
            let mut d = vec![0u32; t.len()];
            for i in 0..t.len() {
                if !t.is_leaf(i) {
                    d[t.left[i] as usize] = d[i] + 1;
                    d[t.right[i] as usize] = d[i] + 1;
                }
            }
            depth.push(d.iter().copied().max().unwrap_or(0));
            let at = nodes.len() as u32;
            roots.push(at);
            for i in 0..t.len() {
                let me = at + i as u32;
                nodes.push(if t.is_leaf(i) {
                    Node { feature: 0, threshold: 0.0, next: [me, me] }
                } else {
                    Node {
                        feature: t.feature[i],
                        threshold: f32_at_most(t.threshold[i]),
                        next: [at + t.left[i], at + t.right[i]],
                    }
                });
            }
            values.extend_from_slice(&t.value);
        }
        roots.push(0);
        Packed {
            nodes,
            roots,
            values,
            per_node,
            depth,
            combine: e.combine,
            base: e.base,
            outputs: e.outputs,
            bases: e.bases.clone(),
        }
    }

    /// Trees in the ensemble.
    fn trees(&self) -> usize {
        self.roots.len() - 1
    }

    /// The leaves (node indices) row `x` reaches in trees `from..from + count`, into
    /// `leaves[..count]` (`leaves[count]` is the idle lanes' scratch).
    #[inline]
    fn leaves(&self, x: &[f32], from: usize, count: usize, leaves: &mut [u32]) {
        let nodes = &self.nodes[..];
        // roots of trees `from..`, the tree after the chunk's last (or the idle node) at `count`
        let roots = &self.roots[from..=from + count];
        let idle = count;
        // lane j walks tree `from + rel[j]` (`idle`: none) and stands at node `at[j]`
        let mut rel = [idle; LANES];
        let mut at = [0u32; LANES];
        let mut next = 0;
        for j in 0..LANES.min(count) {
            rel[j] = j;
            at[j] = roots[j];
            next += 1;
        }
        let mut busy = next;
        while busy > 0 {
            for j in 0..LANES {
                let n = nodes[at[j] as usize];
                let go = (x[n.feature as usize] <= n.threshold) as usize ^ 1;
                let step = n.next[go];
                // written every step: the last write for a tree is its leaf
                leaves[rel[j]] = step;
                let take = (step == at[j]) & (rel[j] != idle);
                let more = next < count;
                let root = if more { roots[next] } else { 0 };
                let then = if more { next } else { idle };
                next += (take & more) as usize;
                busy -= (take & !more) as usize;
                rel[j] = if take { then } else { rel[j] };
                at[j] = if take { root } else { step };
            }
        }
    }

    /// Call `f` with `x` in float32 (on the stack, or a per-thread buffer when wide).
    #[inline]
    fn with_f32<T>(x: &[f64], f: impl FnOnce(&[f32]) -> T) -> T {
        if x.len() <= STACK_WIDTH {
            let mut buf = [0.0f32; STACK_WIDTH];
            buf.iter_mut().zip(x).for_each(|(b, v)| *b = *v as f32);
            f(&buf[..x.len()])
        } else {
            WIDE.with(|w| {
                let mut w = w.borrow_mut();
                w.clear();
                w.extend(x.iter().map(|v| *v as f32));
                f(&w)
            })
        }
    }

    /// Each tree's leaf for row `x` in tree order, a chunk at a time: `f(first tree, leaves)`.
    #[inline]
    fn each_chunk(&self, x: &[f64], mut f: impl FnMut(usize, &[u32])) {
        Self::with_f32(x, |x32| {
            let mut buf = [0u32; CHUNK + 1];
            let mut from = 0;
            while from < self.trees() {
                let len = CHUNK.min(self.trees() - from);
                self.leaves(x32, from, len, &mut buf);
                f(from, &buf[..len]);
                from += len;
            }
        })
    }

    /// A row's outputs before its first tree (`out`: `outputs` long).
    #[inline]
    fn start(&self, out: &mut [f64]) {
        match (self.outputs, self.combine) {
            // `Iterator::sum`'s start, as the reference sums its trees
            (1, _) => out[0] = std::iter::empty::<f64>().sum(),
            (_, Combine::Average) => out.fill(0.0),
            (_, Combine::Sum) => out.copy_from_slice(&self.bases),
        }
    }

    /// Add tree `tree`'s leaf `leaf` to a row's outputs (trees in order, as the reference).
    #[inline]
    fn add(&self, out: &mut [f64], tree: usize, leaf: u32) {
        let k = self.outputs;
        match (k, self.combine) {
            (1, _) => out[0] += self.values[leaf as usize],
            (_, Combine::Average) => {
                let at = leaf as usize * k;
                out.iter_mut().zip(&self.values[at..at + k]).for_each(|(o, v)| *o += v);
            }
            (_, Combine::Sum) => out[tree % k] += self.values[leaf as usize],
        }
    }

    /// A row's outputs once every tree is added.
    #[inline]
    fn finish(&self, out: &mut [f64]) {
        let trees = self.trees() as f64;
        match (self.outputs, self.combine) {
            (1, Combine::Average) => out[0] = self.base + out[0] / trees,
            (1, Combine::Sum) => out[0] += self.base,
            (_, Combine::Average) => out.iter_mut().for_each(|o| *o /= trees),
            (_, Combine::Sum) => {}
        }
    }

    /// The prediction for one design row (a single-output ensemble): [`Ensemble::predict`].
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut out = [0.0];
        self.predict_into(x, &mut out);
        out[0]
    }

    /// Every output for one design row into `out`: [`Ensemble::predict_into`].
    #[inline]
    pub fn predict_into(&self, x: &[f64], out: &mut [f64]) {
        self.start(out);
        self.each_chunk(x, |from, leaves| {
            for (i, &l) in leaves.iter().enumerate() {
                self.add(out, from + i, l);
            }
        });
        self.finish(out);
    }

    /// Every output of `out.len() / outputs` design rows in float32 (`x`, row-major, `width`
    /// each) into `out` (`outputs` per row), each row's exactly [`Packed::predict_into`]'s.
    ///
    /// A tree at a time over a pass of rows, [`BLOCK`] rows through the tree side by side: the
    /// tree stays in the nearest cache while every row of the pass walks it, and the rows' walks
    /// are independent chains the CPU overlaps. Each row sums its trees in tree order, as one
    /// row alone does.
    pub fn predict_rows(&self, x: &[f32], width: usize, out: &mut [f64]) {
        let k = self.outputs;
        let n = out.len() / k;
        assert!(x.len() >= n * width, "{} design values for {n} rows of {width}", x.len());
        out.chunks_exact_mut(k).for_each(|o| self.start(o));
        // rows per pass: about 32 KiB of design values
        let pass = ((8192 / width.max(1)) / BLOCK).max(1) * BLOCK;
        let mut leaves = [0u32; BLOCK];
        for first in (0..n).step_by(pass) {
            let rows = pass.min(n - first);
            for t in 0..self.trees() {
                let root = self.roots[t];
                for b in (first..first + rows).step_by(BLOCK) {
                    let m = BLOCK.min(first + rows - b);
                    self.walk_block(x, width, b, m, root, self.depth[t], &mut leaves);
                    for (r, &l) in leaves[..m].iter().enumerate() {
                        self.add(&mut out[(b + r) * k..(b + r + 1) * k], t, l);
                    }
                }
            }
        }
        out.chunks_exact_mut(k).for_each(|o| self.finish(o));
    }

    /// The leaves rows `first..first + m` (`m` ≤ [`BLOCK`]) reach in the tree at `root` of
    /// `depth`, into `at[..m]`; the block's other lanes walk the last row again. Every lane takes
    /// `depth` steps (a leaf points at itself): no test of whether the block is done, which cost
    /// more than the steps it saved.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn walk_block(
        &self,
        x: &[f32],
        width: usize,
        first: usize,
        m: usize,
        root: u32,
        depth: u32,
        at: &mut [u32; BLOCK],
    ) {
        let nodes = &self.nodes[..];
        let mut base = [0usize; BLOCK];
        for (r, b) in base.iter_mut().enumerate() {
            *b = (first + r.min(m - 1)) * width;
        }
        *at = [root; BLOCK];
        for _ in 0..depth {
            for r in 0..BLOCK {
                let n = nodes[at[r] as usize];
                let go = (x[base[r] + n.feature as usize] <= n.threshold) as usize ^ 1;
                at[r] = n.next[go];
            }
        }
    }

    /// Values predicted per row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// How the trees combine.
    pub fn combine(&self) -> Combine {
        self.combine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trees::Tree;

    #[test]
    fn float32_thresholds_take_the_float64_branch() {
        for t in [0.1, -0.1, 1.0, 1e-40, 3.5e38, -3.5e38, 1e300, -1e300, 0.30000001192092896] {
            let b = f32_at_most(t);
            assert!(f64::from(b) <= t, "{t}");
            for x in [b, b.next_up(), b.next_down(), t as f32] {
                assert_eq!(x <= b, f64::from(x) <= t, "t {t}, x {x}");
            }
        }
    }

    fn stump(feature: u32, threshold: f64, lo: f64, hi: f64) -> Tree {
        Tree {
            feature: vec![feature, 0, 0],
            threshold: vec![threshold, 0.0, 0.0],
            left: vec![1, 0, 0],
            right: vec![2, 0, 0],
            value: vec![0.0, lo, hi],
        }
    }

    #[test]
    fn lanes_take_every_tree_in_order_however_many_there_are() {
        for n in [1usize, 7, 8, 9, 300, 517] {
            let trees: Vec<Tree> = (0..n)
                .map(|i| {
                    let leaf = Tree {
                        feature: vec![0],
                        threshold: vec![0.0],
                        left: vec![0],
                        right: vec![0],
                        value: vec![0.5],
                    };
                    if i % 5 == 3 {
                        leaf
                    } else {
                        stump((i % 2) as u32, i as f64 * 0.01, i as f64, -(i as f64) * 1e-3)
                    }
                })
                .collect();
            for combine in [Combine::Sum, Combine::Average] {
                let e = Ensemble {
                    combine,
                    base: 0.25,
                    outputs: 1,
                    bases: vec![],
                    importances: vec![0.5, 0.5],
                    trees: trees.clone(),
                };
                e.check(2).unwrap();
                let p = Packed::new(&e);
                let probes = [[0.0, 0.0], [1.0, -1.0], [0.5, 2.0], [f64::NAN, 0.3], [3.0, f64::INFINITY]];
                for x in probes {
                    assert_eq!(p.predict(&x).to_bits(), e.predict(&x).to_bits(), "{n} trees, {combine:?}, {x:?}");
                }
                let x32: Vec<f32> = probes.iter().flatten().map(|v| *v as f32).collect();
                let mut rows = [0.0; 5];
                p.predict_rows(&x32, 2, &mut rows);
                for (x, got) in probes.iter().zip(rows) {
                    assert_eq!(got.to_bits(), e.predict(x).to_bits(), "rows: {n} trees, {combine:?}, {x:?}");
                }
            }
        }
    }

    #[test]
    fn multi_output_ensembles_match_the_reference() {
        let three = |i: usize| {
            let mut t = stump(i as u32 % 2, 0.5, 0.0, 0.0);
            t.value = (0..9).map(|v| (v * (i + 1)) as f64 * 0.1).collect();
            t
        };
        let forest = Ensemble {
            combine: Combine::Average,
            base: 0.0,
            outputs: 3,
            bases: vec![],
            importances: vec![0.5, 0.5],
            trees: (0..11).map(three).collect(),
        };
        let boosting = Ensemble {
            combine: Combine::Sum,
            base: 0.0,
            outputs: 3,
            bases: vec![0.1, -0.2, 0.3],
            importances: vec![0.5, 0.5],
            trees: (0..12).map(|i| stump(i as u32 % 2, 0.5, i as f64, -(i as f64))).collect(),
        };
        for e in [forest, boosting] {
            e.check(2).unwrap();
            let p = Packed::new(&e);
            let probes = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]];
            let x32: Vec<f32> = probes.iter().flatten().map(|v| *v as f32).collect();
            let mut rows = [0.0; 9];
            p.predict_rows(&x32, 2, &mut rows);
            for (x, got) in probes.iter().zip(rows.chunks(3)) {
                let (mut a, mut b) = ([0.0; 3], [0.0; 3]);
                e.predict_into(x, &mut a);
                p.predict_into(x, &mut b);
                assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits), "{:?} {x:?}", e.combine);
                assert_eq!(&a.map(f64::to_bits)[..], &got.iter().map(|v| v.to_bits()).collect::<Vec<_>>()[..]);
            }
        }
    }

    /// Acceptance of issue 27: a fitted model scores bit for bit as with the stored ensemble's
    /// walk, for the four fitters, on rows in and out of the training range.
    #[test]
    fn fitted_ensembles_score_bit_for_bit_as_the_stored_walk() {
        use crate::design::Dense;
        use crate::params::{Boosting, Forest, MaxFeatures};
        use crate::trees::{fit_boosting, fit_boosting_classifier, fit_forest, fit_forest_classifier};
        use crate::util::rng::SplitMix64;
        use ndarray::{Array1, Array2};
        let mut r = SplitMix64::new(7);
        let mut u = move || (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (n, p) = (600, 5);
        let x = Array2::from_shape_fn((n, p), |_| (u() * 20.0).round() / 4.0 - 2.0);
        let y = Array1::from_shape_fn(n, |i| x[[i, 0]] * x[[i, 1]] + (x[[i, 2]] > 0.5) as u8 as f64 + 0.1 * x[[i, 3]]);
        let classes = y.mapv(|v| {
            if v > 3.0 {
                2.0
            } else if v > 0.0 {
                1.0
            } else {
                0.0
            }
        });
        let forest = Forest {
            n_estimators: 37,
            max_depth: None,
            min_samples_leaf: 1,
            max_features: MaxFeatures::Fraction(0.6),
            bootstrap: true,
            max_bins: 255,
            seed: 3,
        };
        let boosting = Boosting {
            max_iter: 30,
            learning_rate: 0.1,
            max_leaf_nodes: 31,
            max_depth: None,
            min_samples_leaf: 2,
            l2_regularization: 0.0,
            max_bins: 255,
            seed: 0,
        };
        let d = Dense { x: x.view(), y: y.view() };
        let c = Dense { x: x.view(), y: classes.view() };
        let fitted = [
            fit_forest(&d, &forest).unwrap(),
            fit_boosting(&d, &boosting).unwrap(),
            fit_forest_classifier(&c, &forest, 3, &[1.0; 3]).unwrap(),
            fit_boosting_classifier(&c, &boosting, 3, &[1.0; 3]).unwrap(),
        ];
        let probes: Vec<Vec<f64>> = (0..n)
            .map(|i| x.row(i).to_vec())
            .chain((0..400).map(|_| (0..p).map(|_| u() * 8.0 - 4.0).collect()))
            .collect();
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let x32: Vec<f32> = probes.iter().flatten().map(|v| *v as f32).collect();
        for e in &fitted {
            let packed = Packed::new(e);
            let k = e.outputs;
            let (mut a, mut b) = (vec![0.0; k], vec![0.0; k]);
            let mut want = Vec::new();
            for row in &probes {
                e.predict_into(row, &mut a);
                packed.predict_into(row, &mut b);
                assert_eq!(bits(&a), bits(&b), "{:?} of {k} outputs on {row:?}", e.combine);
                want.extend_from_slice(&a);
            }
            // the batch walk, over batches that end inside and at a block's edge
            for n in [1, 15, 16, 17, probes.len()] {
                let mut got = vec![f64::NAN; n * k];
                packed.predict_rows(&x32, p, &mut got);
                assert_eq!(bits(&got), bits(&want[..n * k]), "{:?} of {k} outputs, {n} rows", e.combine);
            }
        }
    }
}
