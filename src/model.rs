//! Estimators and metrics. Pure: no I/O, no async.
//!
//! | kind          | solver                                             | matches scikit-learn            |
//! |---------------|----------------------------------------------------|---------------------------------|
//! | `linear`      | linfa-linear QR; minimum-norm SVD if rank-deficient | `LinearRegression()`            |
//! | `ridge`       | linfa-linear QR on the augmented system            | `Ridge(alpha)`                  |
//! | `lasso`       | linfa-elasticnet coordinate descent                | `Lasso(alpha)`                  |
//! | `elastic_net` | linfa-elasticnet coordinate descent                | `ElasticNet(alpha, l1_ratio)`   |
//!
//! Ridge minimises `||y - Xw - b||² + alpha·||w||²`; lasso and elastic net minimise
//! `1/(2n)·||y - Xw - b||² + alpha·l1_ratio·||w||₁ + alpha·(1 - l1_ratio)/2·||w||²`.
//! The intercept is never penalised.

use linfa::prelude::*;
use linfa_linalg::eigh::EighInto;
use linfa_linalg::svd::SVDInto;
use ndarray::{concatenate, Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::config::params::{ModelKind, ModelParams};
use crate::error::{Error, Result};

/// Default coordinate-descent iteration cap.
pub const DEFAULT_MAX_ITERATIONS: u32 = 10_000;
/// Default coordinate-descent tolerance (relative duality gap, as scikit-learn's `tol`).
pub const DEFAULT_TOLERANCE: f64 = 1e-8;
/// Relative eigenvalue cut-off below which a direction of the (scaled) Gram matrix counts as null.
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
}

/// Fit `params.kind` on design matrix `x` and target `y`.
pub fn fit(params: &ModelParams, x: &Array2<f64>, y: &Array1<f64>) -> Result<LinearFit> {
    let (n, p) = x.dim();
    if n < 2 {
        return Err(Error::Model(format!(
            "need at least 2 training rows, got {n}"
        )));
    }
    let x_mean = x
        .mean_axis(Axis(0))
        .ok_or_else(|| Error::Model("empty design matrix".into()))?;
    let y_mean = y.mean().unwrap_or(0.0);
    let xc = x - &x_mean;
    let rank = rank(&xc)?;
    let (coef, iterations) = match params.kind {
        ModelKind::Linear if rank == p => {
            let ds = Dataset::new(xc, y - y_mean);
            let fitted = linfa_linear::LinearRegression::new()
                .with_intercept(false)
                .fit(&ds)
                .map_err(|e| Error::Model(format!("least squares failed: {e}")))?;
            (fitted.params().clone(), 0)
        }
        ModelKind::Linear => {
            tracing::warn!(
                rank,
                columns = p,
                "design matrix is rank-deficient (collinear columns, or one-hot blocks with an intercept); \
                 using the minimum-norm least-squares solution, as scikit-learn's LinearRegression does. \
                 Consider kind: ridge for stable coefficients"
            );
            (min_norm_lstsq(xc, &(y - y_mean))?, 0)
        }
        ModelKind::Ridge => {
            let alpha = params.alpha.unwrap_or(1.0);
            let aug_x = concatenate(
                Axis(0),
                &[xc.view(), (Array2::eye(p) * alpha.sqrt()).view()],
            )
            .map_err(|e| Error::Model(e.to_string()))?;
            let aug_y = concatenate(Axis(0), &[(y - y_mean).view(), Array1::zeros(p).view()])
                .map_err(|e| Error::Model(e.to_string()))?;
            let fitted = linfa_linear::LinearRegression::new()
                .with_intercept(false)
                .fit(&Dataset::new(aug_x, aug_y))
                .map_err(|e| Error::Model(format!("ridge solve failed: {e}")))?;
            (fitted.params().clone(), 0)
        }
        ModelKind::Lasso | ModelKind::ElasticNet => {
            let alpha = params.alpha.unwrap_or(1.0);
            let l1 = if params.kind == ModelKind::Lasso {
                1.0
            } else {
                params.l1_ratio.unwrap_or(0.5)
            };
            let max_it = params.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
            let fitted = linfa_elasticnet::ElasticNet::params()
                .penalty(alpha)
                .l1_ratio(l1)
                .with_intercept(false)
                .tolerance(params.tolerance.unwrap_or(DEFAULT_TOLERANCE))
                .max_iterations(max_it)
                .fit(&Dataset::new(xc, y - y_mean))
                .map_err(|e| Error::Model(format!("coordinate descent failed: {e}")))?;
            if fitted.n_steps() >= max_it {
                tracing::warn!(
                    max_iterations = max_it,
                    duality_gap = fitted.duality_gap(),
                    "coordinate descent did not converge; raise model.max_iterations or model.tolerance"
                );
            }
            (fitted.hyperplane().clone(), fitted.n_steps())
        }
    };
    if coef.iter().any(|c| !c.is_finite()) {
        return Err(Error::Model(format!(
            "{} produced non-finite coefficients; check for constant or duplicate columns, or use ridge",
            params.kind.as_str()
        )));
    }
    let intercept = y_mean - x_mean.dot(&coef);
    Ok(LinearFit {
        coefficients: coef.to_vec(),
        intercept,
        rank,
        iterations,
    })
}

/// Numerical rank of a centred matrix, from the eigenvalues of its column-scaled Gram matrix.
fn rank(xc: &Array2<f64>) -> Result<usize> {
    let norms: Array1<f64> = xc.map_axis(Axis(0), |c| c.dot(&c).sqrt());
    let zero_cols = norms.iter().filter(|&&v| v == 0.0).count();
    let safe = norms.mapv(|v| if v > 0.0 { v } else { 1.0 });
    let scaled = xc / &safe;
    let gram = scaled.t().dot(&scaled);
    let (vals, _) = gram
        .eigh_into()
        .map_err(|e| Error::Model(format!("eigendecomposition failed: {e}")))?;
    let max = vals.iter().copied().fold(0.0f64, f64::max);
    let nonzero = vals.iter().filter(|&&v| v > RANK_TOLERANCE * max).count();
    Ok(nonzero.min(xc.ncols() - zero_cols))
}

/// Minimum-norm least squares by SVD (numpy's `lstsq` cut-off: `eps · max(n, p) · s_max`).
fn min_norm_lstsq(xc: Array2<f64>, yc: &Array1<f64>) -> Result<Array1<f64>> {
    let (n, p) = xc.dim();
    let (u, s, vt) = xc
        .svd_into(true, true)
        .map_err(|e| Error::Model(format!("SVD failed: {e}")))?;
    let (u, vt) = match (u, vt) {
        (Some(u), Some(vt)) => (u, vt),
        _ => return Err(Error::Model("SVD returned no singular vectors".into())),
    };
    let s_max = s.iter().copied().fold(0.0f64, f64::max);
    let cutoff = f64::EPSILON * (n.max(p) as f64) * s_max;
    let uty = u.t().dot(yc);
    let mut w = Array1::<f64>::zeros(p);
    for (k, &sk) in s.iter().enumerate() {
        if sk > cutoff {
            w.scaled_add(uty[k] / sk, &vt.row(k));
        }
    }
    Ok(w)
}

/// Regression metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
}

impl Metrics {
    /// Compare predictions with the truth. R² uses the truth's own mean, as scikit-learn's `r2_score`.
    pub fn compute(truth: ArrayView1<'_, f64>, pred: ArrayView1<'_, f64>) -> Metrics {
        let n = truth.len().max(1) as f64;
        let mean = truth.mean().unwrap_or(0.0);
        let ss_res: f64 = truth.iter().zip(pred).map(|(t, p)| (t - p) * (t - p)).sum();
        let ss_tot: f64 = truth.iter().map(|t| (t - mean) * (t - mean)).sum();
        let mae = truth
            .iter()
            .zip(pred)
            .map(|(t, p)| (t - p).abs())
            .sum::<f64>()
            / n;
        let r2 = if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else if ss_res == 0.0 {
            1.0
        } else {
            0.0
        };
        Metrics {
            r2,
            rmse: (ss_res / n).sqrt(),
            mae,
            rows: truth.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    fn params(kind: ModelKind, alpha: Option<f64>) -> ModelParams {
        ModelParams {
            kind,
            alpha,
            l1_ratio: None,
            max_iterations: None,
            tolerance: None,
        }
    }

    #[test]
    fn ols_recovers_an_exact_plane() {
        let x = array![[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0], [4.0, 4.0]];
        let y = x.column(0).mapv(|v| 2.0 * v) - x.column(1).mapv(|v| 3.0 * v) + 1.5;
        let f = fit(&params(ModelKind::Linear, None), &x, &y).unwrap();
        assert_abs_diff_eq!(f.coefficients[0], 2.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.coefficients[1], -3.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.intercept, 1.5, epsilon = 1e-10);
        assert_eq!(f.rank, 2);
    }

    #[test]
    fn duplicate_columns_give_the_minimum_norm_solution() {
        // y = 2a; with a duplicated, min-norm splits the weight evenly.
        let x = array![[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [5.0, 5.0]];
        let y = array![2.0, 4.0, 6.0, 10.0];
        let f = fit(&params(ModelKind::Linear, None), &x, &y).unwrap();
        assert_eq!(f.rank, 1);
        assert_abs_diff_eq!(f.coefficients[0], 1.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.coefficients[1], 1.0, epsilon = 1e-10);
        assert_abs_diff_eq!(f.intercept, 0.0, epsilon = 1e-10);
    }

    #[test]
    fn ridge_shrinks_towards_zero() {
        let x = array![[0.0], [1.0], [2.0], [3.0]];
        let y = array![0.0, 1.0, 2.0, 3.0];
        // closed form for one centred column: w = sxy / (sxx + alpha) = 5 / (5 + 5)
        let f = fit(&params(ModelKind::Ridge, Some(5.0)), &x, &y).unwrap();
        assert_abs_diff_eq!(f.coefficients[0], 0.5, epsilon = 1e-12);
        assert_abs_diff_eq!(f.intercept, 1.5 - 0.5 * 1.5, epsilon = 1e-12);
    }

    #[test]
    fn lasso_zeroes_an_irrelevant_column() {
        let x = array![
            [0.0, 0.3],
            [1.0, -0.2],
            [2.0, 0.1],
            [3.0, -0.1],
            [4.0, 0.2],
            [5.0, -0.3]
        ];
        let y = x.column(0).mapv(|v| 3.0 * v);
        let f = fit(&params(ModelKind::Lasso, Some(0.1)), &x, &y).unwrap();
        assert_eq!(f.coefficients[1], 0.0);
        assert!(
            f.coefficients[0] > 2.5 && f.coefficients[0] < 3.0,
            "{:?}",
            f.coefficients
        );
    }

    #[test]
    fn metrics_match_hand_computation() {
        let m = Metrics::compute(array![1.0, 2.0, 3.0].view(), array![1.0, 2.0, 4.0].view());
        assert_abs_diff_eq!(m.r2, 0.5, epsilon = 1e-12);
        assert_abs_diff_eq!(m.rmse, (1.0f64 / 3.0).sqrt(), epsilon = 1e-12);
        assert_abs_diff_eq!(m.mae, 1.0 / 3.0, epsilon = 1e-12);
    }
}
