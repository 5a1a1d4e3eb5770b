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
//! The code: `bins` (the binned design and its thresholds), `grow` (the histogram grower and
//! its split search, shared by every ensemble) and `fit` (the four fitters: forest and boosting,
//! regression and classification); this file holds what is stored and scored, `packed` the
//! layout the scorer walks (the same predictions, bit for bit).

mod bins;
mod fit;
mod grow;
mod packed;

use serde::{Deserialize, Serialize};

pub use fit::{fit_boosting, fit_boosting_classifier, fit_forest, fit_forest_classifier};
pub use packed::Packed;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::Dense;
    use crate::params::{Boosting, Forest, MaxFeatures};
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
