//! The design matrix as the estimators see it: a [`Design`] is read in row chunks, so OLS and
//! ridge never hold it whole; [`Gram`] is its centred sufficient statistics. Pure: no I/O.
//!
//! Architecture invariant: `design` knows no estimator; the estimators (`model`, `trees`) and the
//! preprocessing that produces designs (`features`, `stats`) all import it, never the reverse.

use ndarray::{linalg::general_mat_mul, Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::error::Result;

/// A consumer of design chunks: (rows × columns, targets).
pub type ChunkFn<'f> = dyn FnMut(ArrayView2<'_, f64>, ArrayView1<'_, f64>) -> Result<()> + 'f;

/// A design matrix with its target, readable in row chunks.
pub trait Design {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Number of columns.
    fn width(&self) -> usize;
    /// Call `f` with consecutive row chunks of the design matrix and the matching targets.
    fn for_each_chunk(&self, f: &mut ChunkFn<'_>) -> Result<()>;
    /// The design's [`Gram`] statistics, when it can compute them faster than from its chunks
    /// (`None`: accumulate them from [`Design::for_each_chunk`]).
    fn gram(&self) -> Option<Result<Gram>> {
        None
    }
}

/// An in-memory design matrix.
pub struct Dense<'a> {
    /// Rows × columns.
    pub x: ArrayView2<'a, f64>,
    /// One target per row.
    pub y: ArrayView1<'a, f64>,
}

impl Design for Dense<'_> {
    fn rows(&self) -> usize {
        self.x.nrows()
    }
    fn width(&self) -> usize {
        self.x.ncols()
    }
    fn for_each_chunk(&self, f: &mut ChunkFn<'_>) -> Result<()> {
        f(self.x, self.y)
    }
}

/// Centred sufficient statistics of a design: rows, column means, target mean, `XcᵀXc`, `Xcᵀyc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    /// Rows.
    pub n: usize,
    /// Column means.
    pub x_mean: Array1<f64>,
    /// Target mean.
    pub y_mean: f64,
    /// The centred Gram matrix `XcᵀXc` (p × p).
    pub g: Array2<f64>,
    /// The centred cross products `Xcᵀyc`.
    pub b: Array1<f64>,
}

impl Gram {
    /// Add the statistics of more rows (Chan's parallel update: the two groups' centred sums
    /// plus the outer product of the difference of their means).
    pub fn merge(&mut self, o: &Gram) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = o.clone();
            return;
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let w = na * nb / (na + nb);
        let dx = &o.x_mean - &self.x_mean;
        let dy = o.y_mean - self.y_mean;
        self.g += &o.g;
        let col = dx.view().insert_axis(Axis(1));
        general_mat_mul(w, &col, &col.t(), 1.0, &mut self.g);
        self.b += &o.b;
        self.b.scaled_add(w * dy, &dx);
        self.x_mean.scaled_add(nb / (na + nb), &dx);
        self.y_mean += dy * nb / (na + nb);
        self.n += o.n;
    }

    /// Population standard deviation of every column.
    pub fn column_sd(&self) -> Vec<f64> {
        self.g.diag().iter().map(|v| (v.max(0.0) / self.n.max(1) as f64).sqrt()).collect()
    }
}

/// The [`Gram`] statistics of a design, accumulated from its chunks in two passes (means, then
/// centred products).
pub fn gram(d: &dyn Design) -> Result<Gram> {
    let p = d.width();
    let (mut sum, mut y_sum, mut n) = (Array1::<f64>::zeros(p), 0.0, 0usize);
    d.for_each_chunk(&mut |x, y| {
        sum += &x.sum_axis(Axis(0));
        y_sum += y.sum();
        n += x.nrows();
        Ok(())
    })?;
    let x_mean = sum / n.max(1) as f64;
    let y_mean = y_sum / n.max(1) as f64;
    let mut g = Array2::<f64>::zeros((p, p));
    let mut b = Array1::<f64>::zeros(p);
    d.for_each_chunk(&mut |x, y| {
        let xc = &x - &x_mean;
        general_mat_mul(1.0, &xc.t(), &xc, 1.0, &mut g);
        b += &xc.t().dot(&(&y - y_mean));
        Ok(())
    })?;
    Ok(Gram { n, x_mean, y_mean, g, b })
}
