//! Logistic regression, binary and multinomial, with the L2 or elastic-net penalty, as
//! scikit-learn's `LogisticRegression(C=…, l1_ratio=ρ)`: it minimises
//!
//! ```text
//! C · Σᵢ sᵢ · logloss(yᵢ, softmax(B xᵢ + b)) + (1−ρ)/2 · ‖B‖² + ρ · ‖B‖₁   (b is not penalised)
//! ```
//!
//! with `sᵢ` the class weight of row i. Two classes keep one coefficient vector (the sigmoid of
//! class 1 against class 0, as scikit-learn's `coef_` of shape (1, p)); more keep one per class.
//!
//! The solver is Newton's method with a backtracking line search. Each iteration is one streamed
//! pass over the design: the loss, its gradient and its Hessian (a weighted Gram matrix of the
//! design, `(K·(p+1))²` numbers) are summed chunk by chunk, so memory does not grow with the rows,
//! and the chunks are read in a fixed order, so the model does not depend on the thread count.
//! The step solves the Newton system by eigendecomposition, skipping null directions: the
//! multinomial intercepts are only defined up to a common shift, which is fixed at the end by
//! centring them (probabilities do not change).
//!
//! With an L1 part (ρ > 0) the loss has no Hessian at zero coefficients, and the step is a
//! proximal Newton step instead (as glmnet and liblinear's newGLMNET take it): the same streamed
//! gradient and Hessian of the smooth part, then the quadratic model plus `ρ‖B + D‖₁` minimised
//! over the step D by coordinate descent in memory (`(K·(p+1))²` numbers, not rows), then the
//! same line search on the whole loss. Coefficients the L1 part sets to zero are exactly zero.

use linfa_linalg::eigh::EighInto;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, Slice};
use serde::{Deserialize, Serialize};

use crate::design::Design;
use crate::error::{Error, Result};
pub use crate::util::link::{sigmoid, softmax};

/// Probabilities are clipped to `[EPS, 1 - EPS]` in the log loss (as scikit-learn's `log_loss`
/// clips at the float64 machine epsilon).
pub const EPS: f64 = f64::EPSILON;

/// A fitted logistic regression as stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogisticFit {
    /// The class labels, in probability order.
    pub classes: Vec<String>,
    /// One coefficient vector over the design columns: for class 1 against class 0 when there are
    /// two classes, else one per class.
    pub coefficient_rows: Vec<Vec<f64>>,
    /// One intercept per coefficient vector (centred to sum 0 when there are more than two classes).
    pub intercepts: Vec<f64>,
    /// Binary: class 1 is predicted when its probability is at least this (default 0.5).
    pub threshold: f64,
    /// Newton iterations run.
    pub iterations: u32,
}

impl LogisticFit {
    /// The number of classes.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Write the class probabilities of design row `x` into `probs` (one per class).
    #[inline]
    pub fn probabilities(&self, x: &[f64], probs: &mut [f64]) {
        if self.classes.len() == 2 {
            let z = self.intercepts[0] + dot(&self.coefficient_rows[0], x);
            let p1 = sigmoid(z);
            probs[0] = 1.0 - p1;
            probs[1] = p1;
        } else {
            for ((p, w), b) in probs.iter_mut().zip(&self.coefficient_rows).zip(&self.intercepts) {
                *p = b + dot(w, x);
            }
            softmax(probs);
        }
    }

    /// The predicted class of a row's probabilities: the first most probable, or for two classes
    /// class 1 when its probability reaches the threshold.
    #[inline]
    pub fn decide(&self, probs: &[f64]) -> usize {
        decide(probs, self.threshold)
    }

    /// Check the shapes against a design width.
    pub fn check(&self, width: usize) -> std::result::Result<(), String> {
        let k = self.classes.len();
        let rows = if k == 2 { 1 } else { k };
        if k < 2 {
            return Err(format!("a classifier needs two classes or more, the artifact has {k}"));
        }
        if self.coefficient_rows.len() != rows || self.intercepts.len() != rows {
            return Err(format!("{k} classes need {rows} coefficient rows and intercepts"));
        }
        if let Some(r) = self.coefficient_rows.iter().find(|r| r.len() != width) {
            return Err(format!("{} coefficients for a design matrix of width {width}", r.len()));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!("decision threshold {} is not in (0, 1)", self.threshold));
        }
        if self.coefficient_rows.iter().flatten().chain(&self.intercepts).any(|v| !v.is_finite()) {
            return Err("a coefficient is not finite".into());
        }
        Ok(())
    }
}

/// The predicted class of `probs`: class 1 at or above `threshold` for two classes, else the
/// first most probable.
#[inline]
pub fn decide(probs: &[f64], threshold: f64) -> usize {
    if probs.len() == 2 {
        usize::from(probs[1] >= threshold)
    } else {
        let mut best = 0;
        for (k, p) in probs.iter().enumerate() {
            if *p > probs[best] {
                best = k;
            }
        }
        best
    }
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// What the solver needs besides the design.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    /// The class labels (their number is K).
    pub classes: &'a [String],
    /// The weight of each class (1 for unweighted).
    pub class_weights: &'a [f64],
    /// Training rows per class ([`super::class_counts`]).
    pub class_counts: &'a [f64],
    /// Inverse penalty.
    pub c: f64,
    /// The L1 share of the penalty, in `[0, 1]`.
    pub l1_ratio: f64,
    /// Iteration cap.
    pub max_iterations: u32,
    /// Relative gradient tolerance.
    pub tolerance: f64,
}

/// Loss, gradient and Hessian at one point, summed over the design.
struct Pass {
    loss: f64,
    grad: Array1<f64>,
    hess: Array2<f64>,
}

/// Fit on a design whose target holds class indices `0..K`.
pub fn fit(problem: &Problem<'_>, d: &dyn Design) -> Result<LogisticFit> {
    let k = problem.classes.len();
    if k < 2 {
        return Err(Error::Model(format!("a classifier needs two classes or more, got {k}")));
    }
    if d.rows() < 2 {
        return Err(Error::Model(format!("need at least 2 training rows, got {}", d.rows())));
    }
    let p = d.width();
    let m = if k == 2 { 1 } else { k }; // coefficient vectors
    let stride = p + 1; // coefficients then the intercept, per vector
                        // weighted class counts for the starting intercepts and the scale of the tolerance
    let counts: Vec<f64> = problem.class_counts.iter().zip(problem.class_weights).map(|(n, w)| n * w).collect();
    let total: f64 = counts.iter().sum();
    if let Some(c) = counts.iter().position(|&n| n == 0.0) {
        return Err(Error::Model(format!(
            "class {:?} has no training row; every class of target.classes needs at least one",
            problem.classes[c]
        )));
    }
    let mut theta = Array1::<f64>::zeros(m * stride);
    if k == 2 {
        theta[p] = (counts[1] / counts[0]).ln();
    } else {
        let logs: Vec<f64> = counts.iter().map(|n| (n / total).ln()).collect();
        let mean = logs.iter().sum::<f64>() / k as f64;
        for (c, l) in logs.iter().enumerate() {
            theta[c * stride + p] = l - mean;
        }
    }
    let scale = problem.c * total;
    let l1 = problem.l1_ratio;
    let penalised = |j: usize| j % stride != p;
    let mut at = pass(problem, d, &theta, m, p)?;
    let mut iterations = 0;
    while iterations < problem.max_iterations {
        let gmax = optimality(&at.grad, &theta, l1, penalised);
        if gmax <= problem.tolerance * scale.max(1.0) {
            break;
        }
        iterations += 1;
        // the step and the loss's directional change along it (for L1, the change of the model)
        let (step, slope) = if l1 > 0.0 {
            let step = proximal_step(&at.hess, &at.grad, &theta, l1, penalised);
            let l1_change: f64 =
                (0..theta.len()).filter(|&j| penalised(j)).map(|j| (theta[j] + step[j]).abs() - theta[j].abs()).sum();
            let slope = at.grad.dot(&step) + l1 * l1_change;
            (step, slope)
        } else {
            let step = newton_step(&at.hess, &at.grad)?;
            let slope = at.grad.dot(&step);
            (step, slope)
        };
        // The loss is a sum over every row: on millions of rows its rounding (about ε·√n of the
        // sum) is larger than what the last Newton steps gain. Stop when the predicted gain (the
        // Newton decrement) is below that, and accept a full step whose change is within it;
        // otherwise the line search would halve the step ~34 times, one pass over the data each.
        let noise = 4.0 * f64::EPSILON * at.loss.abs().max(1.0) * (d.rows() as f64).sqrt();
        if slope >= 0.0 || -slope / 2.0 <= noise {
            break;
        }
        let mut t = 1.0;
        loop {
            let trial = &theta + &(&step * t);
            let next = pass(problem, d, &trial, m, p)?;
            if next.loss <= at.loss + 1e-4 * t * slope + noise || t < 1e-10 {
                let stalled = next.loss >= at.loss;
                theta = trial;
                at = next;
                if stalled {
                    iterations = problem.max_iterations.max(iterations);
                }
                break;
            }
            t *= 0.5;
        }
        if iterations >= problem.max_iterations {
            break;
        }
    }
    let gmax = optimality(&at.grad, &theta, l1, penalised);
    if gmax > problem.tolerance * scale.max(1.0) * 1e3 {
        tracing::warn!(
            iterations,
            gradient = gmax,
            "logistic regression did not converge; raise model.max_iterations or model.tolerance, or lower model.C"
        );
    }
    let mut coefficient_rows = Vec::with_capacity(m);
    let mut intercepts = Vec::with_capacity(m);
    for v in 0..m {
        coefficient_rows.push(theta.slice_axis(Axis(0), Slice::from(v * stride..v * stride + p)).to_vec());
        intercepts.push(theta[v * stride + p]);
    }
    if m > 1 {
        let mean = intercepts.iter().sum::<f64>() / m as f64;
        intercepts.iter_mut().for_each(|b| *b -= mean);
    }
    let fit =
        LogisticFit { classes: problem.classes.to_vec(), coefficient_rows, intercepts, threshold: 0.5, iterations };
    fit.check(p).map_err(|e| Error::Model(format!("logistic regression: {e}; lower model.C")))?;
    Ok(fit)
}

fn class_of(t: f64, k: usize) -> Result<usize> {
    if t >= 0.0 && t.fract() == 0.0 && (t as usize) < k {
        Ok(t as usize)
    } else {
        Err(Error::Model(format!("target value {t} is not a class index below {k}")))
    }
}

/// One streamed pass: the penalised loss, and the gradient and Hessian of its smooth part (all but
/// the L1 share) at `theta`.
fn pass(problem: &Problem<'_>, d: &dyn Design, theta: &Array1<f64>, m: usize, p: usize) -> Result<Pass> {
    let k = problem.classes.len();
    let stride = p + 1;
    let n_par = m * stride;
    let mut loss = 0.0;
    let mut grad = Array1::<f64>::zeros(n_par);
    let mut hess = Array2::<f64>::zeros((n_par, n_par));
    let weights: Vec<ArrayView1<'_, f64>> =
        (0..m).map(|v| theta.slice_axis(Axis(0), Slice::from(v * stride..v * stride + p))).collect();
    let mut probs = vec![0.0; k];
    d.for_each_chunk(&mut |x: ArrayView2<'_, f64>, y| {
        let rows = x.nrows();
        // linear scores, one column per coefficient vector
        let mut z = Array2::<f64>::zeros((rows, m));
        for v in 0..m {
            let col = x.dot(&weights[v]) + theta[v * stride + p];
            z.column_mut(v).assign(&col);
        }
        // residuals r (rows × m) and Hessian weights per block
        let mut r = Array2::<f64>::zeros((rows, m));
        let mut hw = Array2::<f64>::zeros((rows, m * m));
        for i in 0..rows {
            let c = class_of(y[i], k)?;
            let s = problem.class_weights[c] * problem.c;
            if k == 2 {
                let p1 = sigmoid(z[[i, 0]]);
                probs[0] = 1.0 - p1;
                probs[1] = p1;
                r[[i, 0]] = s * (p1 - c as f64);
                hw[[i, 0]] = s * p1 * (1.0 - p1);
            } else {
                for (v, pr) in probs.iter_mut().enumerate() {
                    *pr = z[[i, v]];
                }
                softmax(&mut probs);
                for a in 0..m {
                    r[[i, a]] = s * (probs[a] - f64::from(u8::from(a == c)));
                    for b in 0..m {
                        let delta = if a == b { probs[a] } else { 0.0 };
                        hw[[i, a * m + b]] = s * (delta - probs[a] * probs[b]);
                    }
                }
            }
            loss -= s * probs[c].clamp(EPS, 1.0 - EPS).ln();
        }
        // gradient: Xᵀ r per vector, and the intercepts' Σ r
        for a in 0..m {
            let ra = r.column(a);
            let ga = x.t().dot(&ra);
            grad.slice_axis_mut(Axis(0), Slice::from(a * stride..a * stride + p)).scaled_add(1.0, &ga);
            grad[a * stride + p] += ra.sum();
        }
        // Hessian blocks: [X 1]ᵀ diag(h) [X 1]
        for a in 0..m {
            for b in a..m {
                let h = hw.column(a * m + b);
                let xh = &x * &h.view().insert_axis(Axis(1));
                let xtx = x.t().dot(&xh);
                let xt1 = xh.sum_axis(Axis(0));
                let hs = h.sum();
                let (ra, rb) = (a * stride, b * stride);
                let mut blk = block_mut(&mut hess, ra..ra + p, rb..rb + p);
                blk += &xtx;
                for j in 0..p {
                    hess[[ra + j, rb + p]] += xt1[j];
                    hess[[ra + p, rb + j]] += xt1[j];
                }
                hess[[ra + p, rb + p]] += hs;
            }
        }
        Ok(())
    })?;
    // mirror the upper blocks and add the penalty on the coefficients (never the intercepts)
    for a in 0..m {
        for b in (a + 1)..m {
            let (ra, rb) = (a * stride, b * stride);
            let blk = block_mut(&mut hess, ra..ra + stride, rb..rb + stride).t().to_owned();
            block_mut(&mut hess, rb..rb + stride, ra..ra + stride).assign(&blk);
        }
        // the smooth part carries the L2 share; the L1 share is in `loss` only (its subgradient is
        // the proximal step's business)
        let (l2, l1) = (1.0 - problem.l1_ratio, problem.l1_ratio);
        let ra = a * stride;
        for j in 0..p {
            let w = theta[ra + j];
            loss += 0.5 * l2 * w * w + l1 * w.abs();
            grad[ra + j] += l2 * w;
            hess[[ra + j, ra + j]] += l2;
        }
    }
    Ok(Pass { loss, grad, hess })
}

/// The sub-matrix `rows × cols` of `m`, mutable.
fn block_mut(
    m: &mut Array2<f64>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> ArrayViewMut2<'_, f64> {
    let mut v = m.slice_axis_mut(Axis(0), Slice::from(rows));
    v.slice_axis_inplace(Axis(1), Slice::from(cols));
    v
}

/// The largest entry of the minimum-norm subgradient of the loss at `theta` (the gradient itself
/// without an L1 part): zero exactly at the optimum.
fn optimality(grad: &Array1<f64>, theta: &Array1<f64>, l1: f64, penalised: impl Fn(usize) -> bool) -> f64 {
    let mut worst = 0.0f64;
    for (j, (&g, &w)) in grad.iter().zip(theta).enumerate() {
        let v = if l1 == 0.0 || !penalised(j) {
            g.abs()
        } else if w != 0.0 {
            (g + l1 * w.signum()).abs()
        } else {
            (g.abs() - l1).max(0.0)
        };
        worst = worst.max(v);
    }
    worst
}

/// The proximal Newton step: the `D` minimising `g·D + ½ DᵀHD + l1·Σⱼ|θⱼ + Dⱼ|` (the sum over
/// the penalised entries), by cyclic coordinate descent on the in-memory Hessian, each
/// coordinate solved exactly (a soft threshold), until a sweep moves nothing by more than
/// 1e-13 of the step, or 2,000 sweeps.
fn proximal_step(
    h: &Array2<f64>,
    g: &Array1<f64>,
    theta: &Array1<f64>,
    l1: f64,
    penalised: impl Fn(usize) -> bool,
) -> Array1<f64> {
    let n = g.len();
    let mut step = Array1::<f64>::zeros(n);
    let mut hd = Array1::<f64>::zeros(n); // H · step, kept current
    for _ in 0..2000 {
        let mut moved = 0.0f64;
        for j in 0..n {
            let a = h[[j, j]];
            if a <= 0.0 {
                continue; // a column without data: its coefficient stays where it is
            }
            // the model along coordinate j with the others held: ½a·u² + b·u (+ l1·|θⱼ + u|)
            let b = g[j] + hd[j] - a * step[j];
            let new = if penalised(j) {
                let z = a * theta[j] - b;
                let u = z.signum() * (z.abs() - l1).max(0.0) / a;
                u - theta[j]
            } else {
                -b / a
            };
            let delta = new - step[j];
            if delta != 0.0 {
                step[j] = new;
                hd.scaled_add(delta, &h.row(j)); // H is symmetric: its row is its column
                moved = moved.max(delta.abs());
            }
        }
        let size = step.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if moved <= 1e-13 * size.max(1e-300) || moved == 0.0 {
            break;
        }
    }
    step
}

/// The Newton step `−H⁺ g` by eigendecomposition of the Jacobi-scaled Hessian, null directions
/// (the multinomial intercepts' common shift) left out.
fn newton_step(h: &Array2<f64>, g: &Array1<f64>) -> Result<Array1<f64>> {
    let n = h.nrows();
    let d: Array1<f64> = h.diag().mapv(|v| if v > 0.0 { v.sqrt() } else { 1.0 });
    let mut hs = h.clone();
    for i in 0..n {
        for j in 0..n {
            hs[[i, j]] /= d[i] * d[j];
        }
    }
    let gs = g / &d;
    let (vals, vecs) = hs.eigh_into().map_err(|e| Error::Model(format!("eigendecomposition failed: {e}")))?;
    let max = vals.iter().copied().fold(0.0f64, f64::max);
    let mut step = Array1::<f64>::zeros(n);
    for k in 0..n {
        if vals[k] > 1e-12 * max {
            let v = vecs.column(k);
            step.scaled_add(-v.dot(&gs) / vals[k], &v);
        }
    }
    Ok(step / &d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::Dense;
    use ndarray::array;

    fn classes(k: usize) -> Vec<String> {
        (0..k).map(|c| c.to_string()).collect()
    }

    fn solve(x: &Array2<f64>, y: &Array1<f64>, k: usize, c: f64) -> LogisticFit {
        solve_net(x, y, k, c, 0.0)
    }

    fn solve_net(x: &Array2<f64>, y: &Array1<f64>, k: usize, c: f64, l1_ratio: f64) -> LogisticFit {
        let names = classes(k);
        let w = vec![1.0; k];
        let d = Dense { x: x.view(), y: y.view() };
        let counts = crate::model::class_counts(&d, k).unwrap();
        let problem = Problem {
            classes: &names,
            class_weights: &w,
            class_counts: &counts,
            c,
            l1_ratio,
            max_iterations: 100,
            tolerance: 1e-12,
        };
        fit(&problem, &d).unwrap()
    }

    /// The penalised loss of a fit, computed directly.
    fn loss_at(x: &Array2<f64>, y: &Array1<f64>, f: &LogisticFit, c: f64) -> f64 {
        net_loss_at(x, y, f, c, 0.0)
    }

    fn net_loss_at(x: &Array2<f64>, y: &Array1<f64>, f: &LogisticFit, c: f64, l1_ratio: f64) -> f64 {
        let mut probs = vec![0.0; f.n_classes()];
        let mut loss = 0.0;
        for (i, row) in x.rows().into_iter().enumerate() {
            f.probabilities(row.as_slice().unwrap(), &mut probs);
            loss -= c * probs[y[i] as usize].ln();
        }
        let w = || f.coefficient_rows.iter().flatten();
        loss + 0.5 * (1.0 - l1_ratio) * w().map(|w| w * w).sum::<f64>() + l1_ratio * w().map(|w| w.abs()).sum::<f64>()
    }

    /// Every small move of any coefficient or intercept of `f` makes the loss larger: a minimum,
    /// also where the L1 part has no derivative.
    fn assert_minimum(x: &Array2<f64>, y: &Array1<f64>, f: &LogisticFit, c: f64, l1_ratio: f64) {
        let base = net_loss_at(x, y, f, c, l1_ratio);
        for v in 0..f.coefficient_rows.len() {
            for j in 0..=x.ncols() {
                for h in [1e-5, -1e-5] {
                    let mut g = f.clone();
                    if j < x.ncols() {
                        g.coefficient_rows[v][j] += h;
                    } else {
                        g.intercepts[v] += h;
                    }
                    let moved = net_loss_at(x, y, &g, c, l1_ratio);
                    assert!(moved > base - 1e-13, "vector {v} entry {j} step {h}: {moved} < {base}");
                }
            }
        }
    }

    fn wide_rows() -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        // 40 rows, 5 columns: two carry the signal, three are noise
        let x = Array2::from_shape_fn((40, 5), |(i, j)| {
            let t = (i * 7 + j * 13) as f64;
            (t * 0.37).sin() + 0.3 * (t * 1.7).cos()
        });
        let binary = x.rows().into_iter().map(|r| f64::from(u8::from(r[0] - 0.5 * r[1] + 0.2 > 0.0))).collect();
        let three = x
            .rows()
            .into_iter()
            .map(|r| {
                if r[0] > 0.4 {
                    2.0
                } else if r[1] > 0.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        (x, binary, three)
    }

    #[test]
    fn elastic_net_fits_are_minima_with_exact_zeros() {
        let (x, binary, three) = wide_rows();
        for (y, k) in [(&binary, 2), (&three, 3)] {
            for (c, l1_ratio) in [(0.3, 0.5), (0.5, 1.0), (5.0, 0.2)] {
                let f = solve_net(&x, y, k, c, l1_ratio);
                assert_minimum(&x, y, &f, c, l1_ratio);
                if c < 1.0 {
                    let zeros = f.coefficient_rows.iter().flatten().filter(|w| **w == 0.0).count();
                    assert!(
                        zeros > 0,
                        "k {k} C {c} ρ {l1_ratio}: no coefficient set to zero: {:?}",
                        f.coefficient_rows
                    );
                }
            }
        }
        // ρ = 0 through the proximal path would be the L2 fit: the two solvers agree
        let l2 = solve_net(&x, &binary, 2, 2.0, 0.0);
        let tiny = solve_net(&x, &binary, 2, 2.0, 1e-12);
        for (a, b) in l2.coefficient_rows[0].iter().zip(&tiny.coefficient_rows[0]) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
    }

    #[test]
    fn binary_fit_is_the_minimum_of_the_penalised_loss() {
        let x = array![[0.5, 1.0], [1.5, -0.5], [2.0, 0.3], [-1.0, 0.8], [0.2, -1.2], [1.1, 0.1], [-0.4, -0.3]];
        let y = array![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let f = solve(&x, &y, 2, 2.0);
        assert_eq!(f.coefficient_rows.len(), 1);
        let base = loss_at(&x, &y, &f, 2.0);
        // every small move of a coefficient or the intercept makes the loss larger
        for j in 0..3 {
            for h in [1e-4, -1e-4] {
                let mut g = f.clone();
                if j < 2 {
                    g.coefficient_rows[0][j] += h;
                } else {
                    g.intercepts[0] += h;
                }
                assert!(loss_at(&x, &y, &g, 2.0) > base, "coordinate {j} step {h}");
            }
        }
        let mut probs = [0.0; 2];
        f.probabilities(&[0.5, 1.0], &mut probs);
        assert!((probs[0] + probs[1] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn multinomial_coefficients_sum_to_zero_and_intercepts_are_centred() {
        let x = array![
            [0.0, 1.0],
            [1.0, 0.0],
            [2.0, 2.0],
            [3.0, 1.0],
            [0.5, 2.5],
            [2.5, 0.5],
            [1.5, 1.5],
            [3.0, 3.0],
            [0.2, 0.1]
        ];
        let y = array![0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0, 2.0, 0.0];
        let f = solve(&x, &y, 3, 1.0);
        assert_eq!(f.coefficient_rows.len(), 3);
        for j in 0..2 {
            let s: f64 = f.coefficient_rows.iter().map(|r| r[j]).sum();
            assert!(s.abs() < 1e-9, "column {j}: {s}");
        }
        assert!(f.intercepts.iter().sum::<f64>().abs() < 1e-12);
        let base = loss_at(&x, &y, &f, 1.0);
        for (v, j) in [(0, 0), (1, 1), (2, 0)] {
            let mut g = f.clone();
            g.coefficient_rows[v][j] += 1e-4;
            assert!(loss_at(&x, &y, &g, 1.0) > base);
        }
    }

    #[test]
    fn a_class_without_rows_is_named() {
        let x = array![[0.0], [1.0], [2.0]];
        let y = array![0.0, 0.0, 2.0];
        let names = vec!["a".to_string(), "b".into(), "c".into()];
        let d = Dense { x: x.view(), y: y.view() };
        let counts = super::super::class_counts(&d, 3).unwrap();
        let problem = Problem {
            classes: &names,
            class_weights: &[1.0; 3],
            class_counts: &counts,
            c: 1.0,
            l1_ratio: 0.0,
            max_iterations: 10,
            tolerance: 1e-8,
        };
        let e = fit(&problem, &d).unwrap_err().to_string();
        assert!(e.contains("\"b\""), "{e}");
    }

    #[test]
    fn decide_uses_the_threshold_for_two_classes_and_argmax_otherwise() {
        assert_eq!(decide(&[0.6, 0.4], 0.3), 1);
        assert_eq!(decide(&[0.6, 0.4], 0.5), 0);
        assert_eq!(decide(&[0.2, 0.5, 0.3], 0.5), 1);
        assert_eq!(decide(&[0.4, 0.2, 0.4], 0.5), 0);
        assert_eq!(sigmoid(-800.0), 0.0f64.max(sigmoid(-800.0)));
        assert!((sigmoid(30.0) - 1.0).abs() < 1e-12 && sigmoid(-30.0) > 0.0);
    }
}
