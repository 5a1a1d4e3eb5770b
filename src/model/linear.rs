//! Linear regression: OLS, ridge, lasso and elastic net. Pure: no I/O.
//!
//! Ridge minimises `||y - Xw - b||² + alpha·||w||²`; lasso and elastic net minimise
//! `1/(2n)·||y - Xw - b||² + alpha·l1_ratio·||w||₁ + alpha·(1 - l1_ratio)/2·||w||²`.
//! The intercept is never penalised.
//!
//! OLS and ridge never materialise the design matrix: they stream it in chunks into the
//! centred Gram matrix `XᵀX` (p × p), so a million rows cost a few megabytes. Columns are
//! scaled to unit norm before the eigendecomposition (Jacobi preconditioning), which keeps the
//! normal equations as accurate as a QR solve for the data sizes here (checked against
//! scikit-learn in `tests/it/parity.rs`). A rank-deficient design gets the minimum-norm solution
//! in the original coordinates, as scikit-learn's `lstsq` does.

use linfa::traits::Fit as _;
use linfa::Dataset;
use linfa_linalg::eigh::EighInto;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::design::{gram, Design, Gram};
use crate::error::{Error, Result};
use crate::params::Model;

/// Relative eigenvalue cut-off below which a direction of the scaled Gram matrix counts as null.
const RANK_TOLERANCE: f64 = 1e-10;

/// A fitted linear model over the design matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearFit {
    /// One coefficient per design-matrix column.
    pub coefficients: Vec<f64>,
    /// The intercept.
    pub intercept: f64,
    /// Numerical rank of the centred design matrix.
    pub rank: usize,
    /// Coordinate-descent iterations (0 for direct solvers).
    pub iterations: u32,
}

impl LinearFit {
    /// Predict every row of `x`.
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Array1<f64> {
        x.dot(&ArrayView1::from(&self.coefficients)) + self.intercept
    }

    /// Call `f` with each row's target and this model's prediction, in order (streaming: nothing
    /// is kept).
    pub fn for_each_prediction(&self, d: &dyn Design, f: &mut dyn FnMut(f64, f64)) -> Result<()> {
        d.for_each_chunk(&mut |x, y| {
            for (t, p) in y.iter().zip(self.predict(x)) {
                f(*t, p);
            }
            Ok(())
        })
    }
}

/// The whole design in memory (coordinate descent needs it).
fn materialise(d: &dyn Design) -> Result<(Array2<f64>, Array1<f64>)> {
    let mut x = Array2::<f64>::zeros((d.rows(), d.width()));
    let mut y = Array1::<f64>::zeros(d.rows());
    let mut at = 0;
    d.for_each_chunk(&mut |c, t| {
        let end = at + c.nrows();
        if end > x.nrows() {
            return Err(Error::Model("the design has more rows than it said".into()));
        }
        x.slice_axis_mut(Axis(0), ndarray::Slice::from(at..end)).assign(&c);
        y.slice_axis_mut(Axis(0), ndarray::Slice::from(at..end)).assign(&t);
        at = end;
        Ok(())
    })?;
    if at != x.nrows() {
        return Err(Error::Model(format!("the design has {at} rows, not {}", x.nrows())));
    }
    Ok((x, y))
}

/// Fit a linear `model` (linear, ridge, lasso, elastic net) on a design.
pub fn fit_linear(model: &Model, d: &dyn Design) -> Result<LinearFit> {
    if d.rows() < 2 {
        return Err(Error::Model(format!("need at least 2 training rows, got {}", d.rows())));
    }
    let (coef, rank, iterations, x_mean, y_mean) = match *model {
        Model::Linear | Model::Ridge { .. } => {
            let gm = match d.gram() {
                Some(g) => g?,
                None => gram(d)?,
            };
            return fit_gram(model, &gm);
        }
        Model::Lasso { alpha, max_iterations, tolerance } => {
            coordinate_descent(alpha, 1.0, max_iterations, tolerance, d)?
        }
        Model::ElasticNet { alpha, l1_ratio, max_iterations, tolerance } => {
            coordinate_descent(alpha, l1_ratio, max_iterations, tolerance, d)?
        }
        Model::RandomForest(_)
        | Model::GradientBoosting(_)
        | Model::LogisticRegression { .. }
        | Model::RandomForestClassifier(_)
        | Model::GradientBoostingClassifier(_) => {
            return Err(Error::Model(format!("{} is not a linear regression", model.as_str())))
        }
    };
    finish_linear(model, coef, rank, iterations, &x_mean, y_mean)
}

/// Fit OLS or ridge (`model`) from a design's [`Gram`] statistics.
pub fn fit_gram(model: &Model, gm: &Gram) -> Result<LinearFit> {
    if gm.n < 2 {
        return Err(Error::Model(format!("need at least 2 training rows, got {}", gm.n)));
    }
    let alpha = match *model {
        Model::Ridge { alpha } => alpha,
        Model::Linear => 0.0,
        _ => return Err(Error::Model(format!("{} is not solved from the Gram matrix", model.as_str()))),
    };
    let (w, rank) = solve_normal(gm, alpha)?;
    let width = gm.g.nrows();
    if rank < width && *model == Model::Linear {
        tracing::warn!(
            rank,
            columns = width,
            "design matrix is rank-deficient (collinear columns, or one-hot blocks with an intercept); \
             using the minimum-norm least-squares solution, as scikit-learn's LinearRegression does. \
             Consider kind: ridge for stable coefficients"
        );
    }
    finish_linear(model, w, rank, 0, &gm.x_mean, gm.y_mean)
}

fn finish_linear(
    model: &Model,
    coef: Array1<f64>,
    rank: usize,
    iterations: u32,
    x_mean: &Array1<f64>,
    y_mean: f64,
) -> Result<LinearFit> {
    if coef.iter().any(|c| !c.is_finite()) {
        return Err(Error::Model(format!(
            "{} produced non-finite coefficients; check for constant or duplicate columns, or use ridge",
            model.as_str()
        )));
    }
    let intercept = y_mean - x_mean.dot(&coef);
    Ok(LinearFit { coefficients: coef.to_vec(), intercept, rank, iterations })
}

/// Solve `(G + alpha·I) w = b` in Jacobi-scaled coordinates; minimum-norm when singular.
/// Returns the solution and the numerical rank of `G`.
fn solve_normal(gm: &Gram, alpha: f64) -> Result<(Array1<f64>, usize)> {
    let p = gm.g.nrows();
    let d: Array1<f64> = gm.g.diag().mapv(|v| if v > 0.0 { v.sqrt() } else { 1.0 });
    let outer = d.view().insert_axis(Axis(1)).dot(&d.view().insert_axis(Axis(0)));
    let gs = &gm.g / &outer;
    let bs = &gm.b / &d;
    // rank of the (unpenalised) design
    let (vals, vecs) = gs.clone().eigh_into().map_err(|e| Error::Model(format!("eigendecomposition failed: {e}")))?;
    let max = vals.iter().copied().fold(0.0f64, f64::max);
    let null: Vec<usize> = (0..p).filter(|&k| vals[k] <= RANK_TOLERANCE * max).collect();
    let rank = p - null.len();
    let (vals, vecs) = if alpha > 0.0 {
        let mut a = gs;
        for j in 0..p {
            a[[j, j]] += alpha / (d[j] * d[j]);
        }
        a.eigh_into().map_err(|e| Error::Model(format!("eigendecomposition failed: {e}")))?
    } else {
        (vals, vecs)
    };
    let amax = vals.iter().copied().fold(0.0f64, f64::max);
    let mut ws = Array1::<f64>::zeros(p);
    for k in 0..p {
        if vals[k] > RANK_TOLERANCE * amax {
            let v = vecs.column(k);
            ws.scaled_add(v.dot(&bs) / vals[k], &v);
        }
    }
    let mut w = ws / &d;
    if alpha == 0.0 && !null.is_empty() {
        // Project out the null space of X (in original coordinates) to get the minimum-norm solution.
        let n = Array2::from_shape_fn((p, null.len()), |(j, c)| vecs[[j, null[c]]] / d[j]);
        let ntn = n.t().dot(&n);
        let (ev, evec) = ntn.eigh_into().map_err(|e| Error::Model(format!("eigendecomposition failed: {e}")))?;
        let ntw = n.t().dot(&w);
        let mut c = Array1::<f64>::zeros(null.len());
        for k in 0..ev.len() {
            if ev[k] > 0.0 {
                let v = evec.column(k);
                c.scaled_add(v.dot(&ntw) / ev[k], &v);
            }
        }
        w = w - n.dot(&c);
    }
    Ok((w, rank))
}

type Solved = (Array1<f64>, usize, u32, Array1<f64>, f64);

/// Lasso / elastic net with linfa-elasticnet on the centred, materialised design.
fn coordinate_descent(alpha: f64, l1: f64, max_it: u32, tolerance: f64, d: &dyn Design) -> Result<Solved> {
    let (x, y) = materialise(d)?;
    let x_mean = x.mean_axis(Axis(0)).ok_or_else(|| Error::Model("empty design matrix".into()))?;
    let y_mean = y.mean().unwrap_or(0.0);
    let xc = x - &x_mean;
    let rank = {
        let gm =
            Gram { n: xc.nrows(), x_mean: x_mean.clone(), y_mean, g: xc.t().dot(&xc), b: Array1::zeros(xc.ncols()) };
        solve_normal(&gm, 0.0)?.1
    };
    let fitted = linfa_elasticnet::ElasticNet::params()
        .penalty(alpha)
        .l1_ratio(l1)
        .with_intercept(false)
        .tolerance(tolerance)
        .max_iterations(max_it)
        .fit(&Dataset::new(xc, &y - y_mean))
        .map_err(|e| Error::Model(format!("coordinate descent failed: {e}")))?;
    if fitted.n_steps() >= max_it {
        tracing::warn!(
            max_iterations = max_it,
            duality_gap = fitted.duality_gap(),
            "coordinate descent did not converge; raise model.max_iterations or model.tolerance"
        );
    }
    Ok((fitted.hyperplane().clone(), rank, fitted.n_steps(), x_mean, y_mean))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{ChunkFn, Dense};
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    use crate::params::{ModelKind, DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE};

    fn params(kind: ModelKind, alpha: Option<f64>) -> Model {
        let (alpha, max_iterations, tolerance) = (alpha.unwrap_or(1.0), DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE);
        match kind {
            ModelKind::Linear => Model::Linear,
            ModelKind::Ridge => Model::Ridge { alpha },
            ModelKind::Lasso => Model::Lasso { alpha, max_iterations, tolerance },
            ModelKind::ElasticNet => Model::ElasticNet { alpha, l1_ratio: 0.5, max_iterations, tolerance },
            other => panic!("{other:?} is not linear"),
        }
    }

    fn fit_dense(p: &Model, x: &Array2<f64>, y: &Array1<f64>) -> LinearFit {
        fit_linear(p, &Dense { x: x.view(), y: y.view() }).unwrap()
    }

    #[test]
    fn ols_recovers_an_exact_plane() {
        let x = array![[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0], [4.0, 4.0]];
        let y = x.column(0).mapv(|v| 2.0 * v) - x.column(1).mapv(|v| 3.0 * v) + 1.5;
        let f = fit_dense(&params(ModelKind::Linear, None), &x, &y);
        assert_abs_diff_eq!(f.coefficients[0], 2.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.coefficients[1], -3.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.intercept, 1.5, epsilon = 1e-10);
        assert_eq!(f.rank, 2);
    }

    #[test]
    fn duplicate_columns_give_the_minimum_norm_solution() {
        // y = 2a; with a duplicated (and a scaled copy), min-norm spreads the weight.
        let x = array![[1.0, 1.0, 10.0], [2.0, 2.0, 20.0], [3.0, 3.0, 30.0], [5.0, 5.0, 50.0]];
        let y = array![2.0, 4.0, 6.0, 10.0];
        let f = fit_dense(&params(ModelKind::Linear, None), &x, &y);
        assert_eq!(f.rank, 1);
        // minimum norm of w with w0 + w1 + 10 w2 = 2: w ∝ (1, 1, 10), w = 2/102 · (1, 1, 10)
        assert_abs_diff_eq!(f.coefficients[0], 2.0 / 102.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.coefficients[1], 2.0 / 102.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.coefficients[2], 20.0 / 102.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.intercept, 0.0, epsilon = 1e-10);
    }

    #[test]
    fn a_constant_column_gets_zero_weight() {
        let x = array![[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]];
        let y = array![1.0, 2.0, 3.0];
        let f = fit_dense(&params(ModelKind::Linear, None), &x, &y);
        assert_eq!(f.rank, 1);
        assert_abs_diff_eq!(f.coefficients[1], 0.0, epsilon = 1e-12);
        assert_abs_diff_eq!(f.coefficients[0], 1.0, epsilon = 1e-10);
    }

    #[test]
    fn ridge_shrinks_towards_zero() {
        let x = array![[0.0], [1.0], [2.0], [3.0]];
        let y = array![0.0, 1.0, 2.0, 3.0];
        // closed form for one centred column: w = sxy / (sxx + alpha) = 5 / (5 + 5)
        let f = fit_dense(&params(ModelKind::Ridge, Some(5.0)), &x, &y);
        assert_abs_diff_eq!(f.coefficients[0], 0.5, epsilon = 1e-12);
        assert_abs_diff_eq!(f.intercept, 1.5 - 0.5 * 1.5, epsilon = 1e-12);
    }

    #[test]
    fn chunked_and_dense_designs_agree() {
        struct Chunked(Array2<f64>, Array1<f64>);
        impl Design for Chunked {
            fn rows(&self) -> usize {
                self.0.nrows()
            }
            fn width(&self) -> usize {
                self.0.ncols()
            }
            fn for_each_chunk(&self, f: &mut ChunkFn<'_>) -> Result<()> {
                for i in 0..self.0.nrows() {
                    f(self.0.row(i).insert_axis(Axis(0)), self.1.slice_axis(Axis(0), ndarray::Slice::from(i..i + 1)))?;
                }
                Ok(())
            }
        }
        let x = array![[0.0, 1.0], [1.0, 0.5], [2.0, 3.0], [3.0, 1.0], [4.0, 4.5]];
        let y = array![1.0, 2.0, 2.5, 4.0, 6.0];
        let a = fit_dense(&params(ModelKind::Ridge, Some(0.3)), &x, &y);
        let b = fit_linear(&params(ModelKind::Ridge, Some(0.3)), &Chunked(x, y)).unwrap();
        for (p, q) in a.coefficients.iter().zip(&b.coefficients) {
            assert_abs_diff_eq!(p, q, epsilon = 1e-12);
        }
    }

    #[test]
    fn lasso_zeroes_an_irrelevant_column() {
        let x = array![[0.0, 0.3], [1.0, -0.2], [2.0, 0.1], [3.0, -0.1], [4.0, 0.2], [5.0, -0.3]];
        let y = x.column(0).mapv(|v| 3.0 * v);
        let f = fit_dense(&params(ModelKind::Lasso, Some(0.1)), &x, &y);
        assert_eq!(f.coefficients[1], 0.0);
        assert!(f.coefficients[0] > 2.5 && f.coefficients[0] < 3.0, "{:?}", f.coefficients);
    }
}
