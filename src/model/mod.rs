//! Estimators and metrics. Pure: no I/O, no async.
//!
//! | kind          | solver                                                           | matches scikit-learn          |
//! |---------------|------------------------------------------------------------------|-------------------------------|
//! | `linear`      | normal equations on the Jacobi-scaled Gram matrix (linfa-linalg eigh); minimum-norm if rank-deficient | `LinearRegression()` |
//! | `ridge`       | same, with `alpha` on the diagonal (exact)                        | `Ridge(alpha)`                |
//! | `lasso`       | linfa-elasticnet coordinate descent                               | `Lasso(alpha)`                |
//! | `elastic_net` | linfa-elasticnet coordinate descent                               | `ElasticNet(alpha, l1_ratio)` |
//! | `random_forest` | bagged histogram trees ([`crate::trees`])                       | `RandomForestRegressor`       |
//! | `gradient_boosting` | best-first histogram trees on residuals ([`crate::trees`])  | `HistGradientBoostingRegressor` |
//! | `logistic_regression` | (proximal) Newton's method, streamed ([`logistic`])       | `LogisticRegression(C, l1_ratio)` |
//! | `random_forest_classifier` | bagged gini histogram trees ([`crate::trees`])       | `RandomForestClassifier`      |
//! | `gradient_boosting_classifier` | best-first histogram trees on the log loss's gradients | `HistGradientBoostingClassifier` |
//!
//! The solvers live beside this file: [`linear`] (the four linear kinds), [`logistic`], and
//! [`crate::trees`]; here are what they share: the fitted [`Fit`], the [`Classifier`] view of a
//! classifier, the dispatch ([`fit`], [`fit_classifier`]) and the held-out [`Metrics`].

pub mod classify;
pub mod linear;
pub mod logistic;

use ndarray::ArrayView1;
use serde::{Deserialize, Serialize};

use crate::design::Design;
use crate::error::{Error, Result};
use crate::params::{ClassWeights, Model, Target};
use crate::trees::{Combine, Ensemble, Packed};
pub use classify::{choose_threshold, ClassAcc, ClassMetrics};
pub use linear::{fit_gram, fit_linear, LinearFit};
pub use logistic::LogisticFit;

pub use crate::params::DEFAULT_THRESHOLD;

/// A fitted estimator: a line (linear kinds) or a tree ensemble. In the artifact its fields sit
/// beside `kind` in `estimator` (`coefficients`, `intercept`, … or `trees`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fit {
    /// Coefficients and intercept.
    Linear(LinearFit),
    /// Trees.
    Trees(TreeFit),
    /// A classifier's coefficients (logistic regression).
    Logistic(LogisticFit),
    /// A classifier's trees.
    TreeClassifier(TreeClassifierFit),
}

/// What a fitted classifier answers, whatever its kind.
pub trait Classifier {
    /// The class labels, in probability order.
    fn classes(&self) -> &[String];
    /// Binary: class 1 is predicted when its probability is at least this.
    fn threshold(&self) -> f64;
    /// Write the class probabilities of design row `x` into `probs` (one per class).
    fn probabilities(&self, x: &[f64], probs: &mut [f64]);
    /// The predicted class of a row's probabilities (see [`logistic::decide`]).
    fn decide(&self, probs: &[f64]) -> usize {
        logistic::decide(probs, self.threshold())
    }
}

impl Classifier for LogisticFit {
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    #[inline]
    fn probabilities(&self, x: &[f64], probs: &mut [f64]) {
        LogisticFit::probabilities(self, x, probs)
    }
}

/// A fitted tree classifier as stored: a forest whose leaves hold class frequencies (averaged),
/// or boosted trees of raw scores (summed, then the logistic function or softmax).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeClassifierFit {
    /// The class labels, in probability order.
    pub classes: Vec<String>,
    /// Binary: class 1 is predicted when its probability is at least this (default 0.5).
    pub threshold: f64,
    /// The ensemble: one output (class 1) for two classes, one per class otherwise.
    pub trees: Ensemble,
}

impl TreeClassifierFit {
    /// Check the shapes against a design width.
    pub fn check(&self, width: usize) -> std::result::Result<(), String> {
        let k = self.classes.len();
        if k < 2 {
            return Err(format!("a classifier needs two classes or more, the artifact has {k}"));
        }
        let outputs = if k == 2 { 1 } else { k };
        if self.trees.outputs != outputs {
            return Err(format!("{k} classes need {outputs} outputs, the ensemble has {}", self.trees.outputs));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!("decision threshold {} is not in (0, 1)", self.threshold));
        }
        self.trees.check(width)
    }
}

impl Classifier for TreeClassifierFit {
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    #[inline]
    fn probabilities(&self, x: &[f64], probs: &mut [f64]) {
        tree_probabilities(self.trees.combine, probs, |out| self.trees.predict_into(x, out))
    }
}

/// A tree classifier's probabilities from its combined trees, which `fill` writes into its
/// argument (class 1's score for two classes, one per class otherwise).
#[inline]
fn tree_probabilities(combine: Combine, probs: &mut [f64], fill: impl FnOnce(&mut [f64])) {
    if probs.len() == 2 {
        fill(&mut probs[..1]);
        let p1 = match combine {
            Combine::Average => probs[0].clamp(0.0, 1.0),
            Combine::Sum => logistic::sigmoid(probs[0]),
        };
        probs[0] = 1.0 - p1;
        probs[1] = p1;
    } else {
        fill(probs);
        if combine == Combine::Sum {
            logistic::softmax(probs);
        }
    }
}

/// A tree classifier laid out for scoring ([`Packed`]): the same probabilities as its
/// [`TreeClassifierFit`], bit for bit.
#[derive(Debug, Clone)]
pub struct PackedTreeClassifier {
    classes: Vec<String>,
    threshold: f64,
    trees: Packed,
}

impl PackedTreeClassifier {
    /// Lay out a checked classifier ([`TreeClassifierFit::check`] passed).
    pub fn new(fit: &TreeClassifierFit) -> PackedTreeClassifier {
        PackedTreeClassifier { classes: fit.classes.clone(), threshold: fit.threshold, trees: Packed::new(&fit.trees) }
    }
}

impl PackedTreeClassifier {
    /// The layout the classifier walks (for many rows at once: [`Packed::predict_rows`]).
    pub fn trees(&self) -> &Packed {
        &self.trees
    }

    /// The probabilities from the combined trees' `outputs` of one row (what
    /// [`Packed::predict_rows`] gives): [`Classifier::probabilities`]' bit for bit.
    #[inline]
    pub fn probabilities_of(&self, outputs: &[f64], probs: &mut [f64]) {
        tree_probabilities(self.trees.combine(), probs, |out| out.copy_from_slice(outputs))
    }
}

impl Classifier for PackedTreeClassifier {
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    #[inline]
    fn probabilities(&self, x: &[f64], probs: &mut [f64]) {
        tree_probabilities(self.trees.combine(), probs, |out| self.trees.predict_into(x, out))
    }
}

/// A fitted tree ensemble as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeFit {
    /// The ensemble.
    pub trees: Ensemble,
}

impl Fit {
    /// The prediction for one design row.
    pub fn predict_row(&self, x: &[f64]) -> f64 {
        match self {
            Fit::Linear(l) => l.intercept + l.coefficients.iter().zip(x).map(|(c, v)| c * v).sum::<f64>(),
            Fit::Trees(t) => t.trees.predict(x),
            Fit::Logistic(_) | Fit::TreeClassifier(_) => match self.classifier() {
                Some(c) => {
                    let mut probs = vec![0.0; c.classes().len()];
                    c.probabilities(x, &mut probs);
                    c.decide(&probs) as f64
                }
                None => f64::NAN,
            },
        }
    }

    /// The logistic regression, if this is one.
    pub fn logistic(&self) -> Option<&LogisticFit> {
        match self {
            Fit::Logistic(l) => Some(l),
            _ => None,
        }
    }

    /// The classifier, if this is one.
    pub fn classifier(&self) -> Option<&dyn Classifier> {
        match self {
            Fit::Logistic(l) => Some(l),
            Fit::TreeClassifier(t) => Some(t),
            _ => None,
        }
    }

    /// Set a binary classifier's decision threshold (nothing for other fits).
    pub fn set_threshold(&mut self, threshold: f64) {
        match self {
            Fit::Logistic(l) => l.threshold = threshold,
            Fit::TreeClassifier(t) => t.threshold = threshold,
            Fit::Linear(_) | Fit::Trees(_) => {}
        }
    }

    /// The class labels of a classifier (empty for a regressor).
    pub fn classes(&self) -> &[String] {
        self.classifier().map_or(&[], |c| c.classes())
    }

    /// Metrics of a classifier on a design whose target holds class indices, and of the constant
    /// `prior` probabilities (the baseline).
    ///
    /// `ranked` keeps the model's probabilities for its AUCs (held-out rows); without it every
    /// other metric is summed in constant memory (the training rows). The baseline is always
    /// summed: a constant score ranks nothing, so its ROC AUC is 0.5 and its PR AUC the positive
    /// rate, when both classes are present.
    pub fn evaluate_classes(&self, d: &dyn Design, prior: &[f64], ranked: bool) -> Result<(Metrics, Metrics)> {
        self.evaluate_classes_with(d, prior, ranked, &mut |_, _| {})
    }

    /// [`Fit::evaluate_classes`], showing `observe` every row's class index and probabilities
    /// on the way (the report's curves, in the same pass).
    pub fn evaluate_classes_with(
        &self,
        d: &dyn Design,
        prior: &[f64],
        ranked: bool,
        observe: &mut dyn FnMut(usize, &[f64]),
    ) -> Result<(Metrics, Metrics)> {
        let l = self.classifier().ok_or_else(|| Error::Model("not a classifier".into()))?;
        let k = l.classes().len();
        let t = l.threshold();
        let mut model = if ranked { ClassAcc::with_capacity(k, t, d.rows()) } else { ClassAcc::streaming(k, t) };
        let mut base = ClassAcc::streaming(k, t);
        let mut probs = vec![0.0; k];
        let mut row = Vec::with_capacity(d.width());
        d.for_each_chunk(&mut |x, y| {
            for (xr, t) in x.rows().into_iter().zip(y) {
                row.clear();
                row.extend(xr.iter().copied());
                l.probabilities(&row, &mut probs);
                let t = *t as usize;
                model.add(t, &probs);
                base.add(t, prior);
                observe(t, &probs);
            }
            Ok(())
        })?;
        let mut base = base.finish();
        if let Some(c) = base.classification.as_mut() {
            let present: Vec<u64> = c.confusion.iter().map(|r| r.iter().sum()).collect();
            if present.iter().filter(|&&n| n > 0).count() >= 2 {
                c.auc = Some(0.5);
                if k == 2 {
                    c.pr_auc = Some(present[1] as f64 / (present[0] + present[1]) as f64);
                }
            }
        }
        Ok((model.finish(), base))
    }

    /// The linear fit, if this is one.
    pub fn linear(&self) -> Option<&LinearFit> {
        match self {
            Fit::Linear(l) => Some(l),
            _ => None,
        }
    }

    /// The tree ensemble, if this is one (a regressor's or a classifier's).
    pub fn ensemble(&self) -> Option<&Ensemble> {
        match self {
            Fit::Trees(t) => Some(&t.trees),
            Fit::TreeClassifier(t) => Some(&t.trees),
            _ => None,
        }
    }

    /// Call `f` with each row's target and this model's prediction, in order (streaming).
    pub fn for_each_prediction(&self, d: &dyn Design, f: &mut dyn FnMut(f64, f64)) -> Result<()> {
        match self {
            Fit::Linear(l) => l.for_each_prediction(d, f),
            Fit::Trees(t) => {
                // laid out for scoring, a chunk's rows walked together: the same predictions
                // on every core: a chunk's rows split between threads
                let packed = Packed::new(&t.trees);
                let threads = crate::util::threads::default_threads();
                let (mut x32, mut out) = (Vec::new(), Vec::new());
                d.for_each_chunk(&mut |x, y| {
                    let width = x.ncols();
                    x32.clear();
                    x32.extend(x.rows().into_iter().flat_map(|r| r.into_iter().map(|v| *v as f32)));
                    out.clear();
                    out.resize(x.nrows(), 0.0);
                    let per = x.nrows().div_ceil(threads).max(4096);
                    std::thread::scope(|scope| {
                        for (xs, o) in x32.chunks(per * width.max(1)).zip(out.chunks_mut(per)) {
                            let packed = &packed;
                            scope.spawn(move || packed.predict_rows(xs, width, o));
                        }
                    });
                    y.iter().zip(&out).for_each(|(t_, p)| f(*t_, *p));
                    Ok(())
                })
            }
            Fit::Logistic(_) | Fit::TreeClassifier(_) => d.for_each_chunk(&mut |x, y| {
                let mut row = Vec::with_capacity(x.ncols());
                for (xr, t_) in x.rows().into_iter().zip(y) {
                    row.clear();
                    row.extend(xr.iter().copied());
                    f(*t_, self.predict_row(&row));
                }
                Ok(())
            }),
        }
    }

    /// Metrics of this model on a design, and of a constant `baseline` prediction.
    pub fn evaluate(&self, d: &dyn Design, baseline: f64) -> Result<(Metrics, Metrics)> {
        let (mut model, mut base) = (MetricsAcc::default(), MetricsAcc::default());
        self.for_each_prediction(d, &mut |t, p| {
            model.add(t, p);
            base.add(t, baseline);
        })?;
        Ok((model.finish(), base.finish()))
    }

    /// A one-line summary for logs: rank and iterations, or trees and nodes.
    pub fn summary(&self) -> String {
        match self {
            Fit::Linear(l) => format!("rank {} iterations {}", l.rank, l.iterations),
            Fit::Trees(t) => format!("{} trees, {} nodes", t.trees.trees.len(), t.trees.nodes()),
            Fit::Logistic(l) => format!("{} classes, {} Newton iterations", l.n_classes(), l.iterations),
            Fit::TreeClassifier(t) => {
                format!("{} classes, {} trees, {} nodes", t.classes.len(), t.trees.trees.len(), t.trees.nodes())
            }
        }
    }
}

/// [`Metrics`] accumulated one (truth, prediction) pair at a time, in constant memory: the
/// squared and absolute errors, and the truth's moments shifted by its first value (so R² stays
/// accurate for targets far from zero).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsAcc {
    n: usize,
    sse: f64,
    sae: f64,
    shift: Option<f64>,
    sy: f64,
    syy: f64,
}

impl MetricsAcc {
    /// Add one pair.
    pub fn add(&mut self, truth: f64, pred: f64) {
        let e = truth - pred;
        self.n += 1;
        self.sse += e * e;
        self.sae += e.abs();
        let k = *self.shift.get_or_insert(truth);
        self.sy += truth - k;
        self.syy += (truth - k) * (truth - k);
    }

    /// Add the pairs another accumulator saw (after this one's).
    pub fn merge(&mut self, o: &MetricsAcc) {
        let Some(k2) = o.shift else { return };
        let Some(k1) = self.shift else {
            *self = *o;
            return;
        };
        // the other's sums, shifted by this one's first truth instead of its own
        let (d, n2) = (k2 - k1, o.n as f64);
        self.syy += o.syy + 2.0 * d * o.sy + n2 * d * d;
        self.sy += o.sy + n2 * d;
        self.n += o.n;
        self.sse += o.sse;
        self.sae += o.sae;
    }

    /// The metrics of the pairs added (R² as [`Metrics::compute`] defines it).
    pub fn finish(&self) -> Metrics {
        let n = self.n.max(1) as f64;
        let ss_tot = (self.syy - self.sy * self.sy / n).max(0.0);
        let r2 = if ss_tot > 0.0 {
            1.0 - self.sse / ss_tot
        } else if self.sse == 0.0 {
            1.0
        } else {
            0.0
        };
        Metrics { r2, rmse: (self.sse / n).sqrt(), mae: self.sae / n, rows: self.n, classification: None }
    }
}

/// Fit `model` on a design.
pub fn fit(model: &Model, d: &dyn Design) -> Result<Fit> {
    match model {
        Model::RandomForest(p) => Ok(Fit::Trees(TreeFit { trees: crate::trees::fit_forest(d, p)? })),
        Model::GradientBoosting(p) => Ok(Fit::Trees(TreeFit { trees: crate::trees::fit_boosting(d, p)? })),
        Model::LogisticRegression { .. } | Model::RandomForestClassifier(_) | Model::GradientBoostingClassifier(_) => {
            Err(Error::Model(format!("{} needs the target's classes: use fit_classifier", model.as_str())))
        }
        _ => fit_linear(model, d).map(Fit::Linear),
    }
}

/// Fit a classifier `model` on a design whose target holds the class indices of `target`.
pub fn fit_classifier(model: &Model, target: &Target, d: &dyn Design) -> Result<Fit> {
    let classes = target.labels();
    let k = classes.len();
    let counts = class_counts(d, k)?;
    let weights = match target.weights() {
        ClassWeights::None => vec![1.0; k],
        ClassWeights::Given(w) => w.clone(),
        // scikit-learn's compute_class_weight("balanced"): n / (k · count)
        ClassWeights::Balanced => {
            let n: f64 = counts.iter().sum();
            counts.iter().map(|&c| if c > 0.0 { n / (k as f64 * c) } else { 1.0 }).collect()
        }
    };
    match *model {
        Model::LogisticRegression { c, l1_ratio, max_iterations, tolerance } => {
            let problem = logistic::Problem {
                classes: &classes,
                class_weights: &weights,
                class_counts: &counts,
                c,
                l1_ratio,
                max_iterations,
                tolerance,
            };
            Ok(Fit::Logistic(logistic::fit(&problem, d)?))
        }
        Model::RandomForestClassifier(ref p) => Ok(Fit::TreeClassifier(TreeClassifierFit {
            classes,
            threshold: DEFAULT_THRESHOLD,
            trees: crate::trees::fit_forest_classifier(d, p, k, &weights)?,
        })),
        Model::GradientBoostingClassifier(ref p) => Ok(Fit::TreeClassifier(TreeClassifierFit {
            classes,
            threshold: DEFAULT_THRESHOLD,
            trees: crate::trees::fit_boosting_classifier(d, p, k, &weights)?,
        })),
        _ => Err(Error::Model(format!("{} is not a classifier", model.as_str()))),
    }
}

/// Rows per class index `0..k` of a design's target.
pub fn class_counts(d: &dyn Design, k: usize) -> Result<Vec<f64>> {
    let mut counts = vec![0.0; k];
    d.for_each_chunk(&mut |_, y| {
        for &t in y {
            match counts.get_mut(t as usize) {
                Some(c) if t >= 0.0 && t.fract() == 0.0 => *c += 1.0,
                _ => return Err(Error::Model(format!("target value {t} is not a class index below {k}"))),
            }
        }
        Ok(())
    })?;
    Ok(counts)
}

/// Regression metrics, and a classifier's own ones. For a classifier, `r2`, `rmse` and `mae` are
/// those of its probabilities against the one-hot truth (see [`ClassAcc::finish`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Coefficient of determination (1 is perfect; 0 is the mean of the target).
    pub r2: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Rows evaluated.
    pub rows: usize,
    /// A classifier's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<ClassMetrics>,
}

impl Metrics {
    /// Compare predictions with the truth. R² uses the truth's own mean, as scikit-learn's `r2_score`.
    pub fn compute(truth: ArrayView1<'_, f64>, pred: ArrayView1<'_, f64>) -> Metrics {
        let n = truth.len().max(1) as f64;
        let mean = truth.mean().unwrap_or(0.0);
        let ss_res: f64 = truth.iter().zip(pred).map(|(t, p)| (t - p) * (t - p)).sum();
        let ss_tot: f64 = truth.iter().map(|t| (t - mean) * (t - mean)).sum();
        let mae = truth.iter().zip(pred).map(|(t, p)| (t - p).abs()).sum::<f64>() / n;
        let r2 = if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else if ss_res == 0.0 {
            1.0
        } else {
            0.0
        };
        Metrics { r2, rmse: (ss_res / n).sqrt(), mae, rows: truth.len(), classification: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    #[test]
    fn metrics_match_hand_computation() {
        let m = Metrics::compute(array![1.0, 2.0, 3.0].view(), array![1.0, 2.0, 4.0].view());
        let mut acc = MetricsAcc::default();
        for (t, p) in [(1.0, 1.0), (2.0, 2.0), (3.0, 4.0)] {
            acc.add(t, p);
        }
        let a = acc.finish();
        assert_eq!(a.rows, m.rows);
        assert_abs_diff_eq!(a.r2, m.r2, epsilon = 1e-12);
        assert_abs_diff_eq!(a.rmse, m.rmse, epsilon = 1e-12);
        assert_abs_diff_eq!(a.mae, m.mae, epsilon = 1e-12);
        assert_abs_diff_eq!(m.r2, 0.5, epsilon = 1e-12);
        assert_abs_diff_eq!(m.rmse, (1.0f64 / 3.0).sqrt(), epsilon = 1e-12);
        assert_abs_diff_eq!(m.mae, 1.0 / 3.0, epsilon = 1e-12);
    }
}
