//! The four fitters: a random forest and histogram gradient boosting, for regression and for
//! classes, on the grower.

use super::bins::Binned;
use super::grow::{normalise, Grow, Rng, Sums};
use super::{Combine, Ensemble, Tree};
use crate::design::Design;
use crate::error::{Error, Result};
use crate::params::{Boosting, Forest};
use crate::util::threads::default_threads;

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
