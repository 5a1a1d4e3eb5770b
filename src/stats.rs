//! Training statistics in parallel passes over blocks of rows: the preprocessing's counts, sums,
//! spreads, categories and exact medians; the centred Gram matrix of the design (OLS and ridge);
//! a linear model's metrics. Pure: rows are read only through [`Blocks`].
//!
//! Every pass forms partial results per segment of [`SEGMENT_ROWS`] rows (rows
//! `k·SEGMENT_ROWS..` of the whole data, whatever the blocking) and merges them in segment
//! order, so each number is the same for any number of threads, any block size and any CSV
//! chunking. Memory is a few blocks per thread: nothing grows with the number of rows.
//!
//! About 700 lines of code, one job: every statistics pass over the training rows (moments,
//! categories, medians, the Gram matrix, metrics) shares the segment-merge machinery here.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use ndarray::{linalg::general_mat_mul, Array1, Array2};

use crate::data::{map_blocks, Blocks, Mask, Rows, Table, MISSING_CODE, SEGMENT_ROWS};
use crate::design::Gram;
use crate::drift::{
    quantile_edges, CategoricalBuilder, ColumnReference, Distribution, NumericBuilder, BINS, EDGE_SAMPLE,
};
use crate::error::{Error, Result};
use crate::features::{CategoricalFeature, NumericFeature, Preprocessing, CHUNK_ROWS, MISSING_CATEGORY};
use crate::model::{LinearFit, MetricsAcc};
use crate::params::{CategoricalRule, NumericRule, Params, Scale};
use ndarray::ArrayView1;

/// The segments of a block of `len` rows starting at row `first`: each segment's first row and
/// its rows within the block.
fn segments(first: usize, len: usize) -> Result<impl Iterator<Item = (usize, Range<usize>)>> {
    if !first.is_multiple_of(SEGMENT_ROWS) {
        return Err(Error::Model(format!("a block starts at row {first}, not at a segment boundary")));
    }
    Ok((0..len).step_by(SEGMENT_ROWS).map(move |s| (first + s, s..(s + SEGMENT_ROWS).min(len))))
}

/// A segment's work: (the block's first row, the segment's first row, the block, the selected
/// rows as indices into the block) → a partial result.
type SegmentFn<'f, T> = dyn Fn(usize, usize, &Table, &[usize]) -> Result<T> + Sync + 'f;

/// A linear model's metrics, its baseline's, and the report's points.
pub type Evaluated = (MetricsAcc, MetricsAcc, Vec<(f64, f64)>);

/// Call `f` with each segment of `blocks`: the block's first row, the segment's first row, the
/// block and the segment's selected rows (indices into the block), in parallel; the partials
/// come back to `reduce` in segment order.
fn each_segment<T: Send>(
    blocks: &dyn Blocks,
    rows: Rows<'_>,
    threads: usize,
    f: &SegmentFn<'_, T>,
    reduce: &mut dyn FnMut(T) -> Result<()>,
) -> Result<()> {
    map_blocks(
        blocks,
        threads,
        &|first, t| {
            let mut local = Vec::new();
            let mut out = Vec::new();
            for (start, range) in segments(first, t.len())? {
                rows.local(start, range.len(), &mut local);
                local.iter_mut().for_each(|i| *i += range.start);
                out.push(f(first, start, t, &local)?);
            }
            Ok(out)
        },
        &mut |parts: Vec<T>| parts.into_iter().try_for_each(&mut *reduce),
    )
}

/// Count, sum and the sum of squared deviations from the mean, mergeable (Chan et al.).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    /// Values.
    pub count: usize,
    /// Their sum.
    pub sum: f64,
    /// Sum of squared deviations from their mean.
    pub m2: f64,
}

impl Moments {
    /// The moments of `values` (two passes over them).
    pub fn of(values: &[f64]) -> Moments {
        if values.is_empty() {
            return Moments::default();
        }
        let sum: f64 = values.iter().sum();
        let mean = sum / values.len() as f64;
        Moments { count: values.len(), sum, m2: values.iter().map(|v| (v - mean) * (v - mean)).sum() }
    }

    /// The mean (NaN when empty).
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// Add another group of values.
    pub fn merge(&mut self, o: &Moments) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        let (na, nb) = (self.count as f64, o.count as f64);
        let d = o.mean() - self.mean();
        self.m2 += o.m2 + d * d * na * nb / (na + nb);
        self.sum += o.sum;
        self.count += o.count;
    }
}

/// What the first preprocessing pass learns from one segment.
struct PrepPart {
    numeric: Vec<Moments>,
    categories: Vec<BTreeSet<String>>,
    missing: Vec<bool>,
}

/// The drift reference of the training rows' input columns ([`crate::drift`]), in the model's
/// column order: numeric columns' quantile edges from every k-th row (k from the row count, at
/// most about [`EDGE_SAMPLE`] values per column), then one pass counting every training row into
/// those bins and every categorical value into the model's categories.
pub fn drift_columns(
    prep: &Preprocessing,
    blocks: &dyn Blocks,
    rows: Rows<'_>,
    threads: usize,
) -> Result<Vec<ColumnReference>> {
    let stride = blocks.rows().div_ceil(EDGE_SAMPLE).max(1);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); prep.numeric.len()];
    each_segment(
        blocks,
        rows,
        threads,
        &|first, _, t, local| {
            // which rows of the segment are sampled, worked out once for all the columns
            let picked: Vec<usize> = local.iter().copied().filter(|&i| (first + i).is_multiple_of(stride)).collect();
            Ok(t.numeric.iter().map(|col| picked.iter().map(|&i| col[i]).collect()).collect::<Vec<Vec<f64>>>())
        },
        &mut |part: Vec<Vec<f64>>| {
            samples.iter_mut().zip(part).for_each(|(s, p)| s.extend(p));
            Ok(())
        },
    )?;
    let edges: Vec<Vec<f64>> = samples.iter_mut().map(|s| quantile_edges(s, BINS)).collect();
    drop(samples);
    let index: Vec<HashMap<&str, usize>> = prep
        .categorical
        .iter()
        .map(|f| f.categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect())
        .collect();
    let mut num: Vec<NumericBuilder> = edges.iter().map(|e| NumericBuilder::new(e.clone())).collect();
    let mut cat: Vec<CategoricalBuilder> =
        prep.categorical.iter().map(|f| CategoricalBuilder::new(f.categories.clone())).collect();
    each_segment(
        blocks,
        rows,
        threads,
        &|_, _, t, local| {
            let numeric: Vec<NumericBuilder> = t
                .numeric
                .iter()
                .zip(&edges)
                .map(|(col, e)| {
                    let mut b = NumericBuilder::new(e.clone());
                    local.iter().for_each(|&i| b.add(col[i]));
                    b
                })
                .collect();
            let mut categorical = Vec::with_capacity(index.len());
            for ((col, idx), f) in t.categorical.iter().zip(&index).zip(&prep.categorical) {
                let mut by_code = vec![0u64; col.values.len()];
                let mut missing = 0u64;
                for &i in local {
                    match col.codes[i] {
                        MISSING_CODE => missing += 1,
                        code => by_code[code as usize] += 1,
                    }
                }
                let mut b = CategoricalBuilder::new(f.categories.clone());
                b.add_n(None, missing);
                // every training category is one of the model's (the vocabulary is learned
                // from these rows)
                for (value, n) in col.values.iter().zip(by_code).filter(|(_, n)| *n > 0) {
                    if let Some(&j) = idx.get(value.as_str()) {
                        b.add_n(Some(j), n);
                    }
                }
                categorical.push(b);
            }
            Ok((numeric, categorical))
        },
        &mut |(numeric, categorical): (Vec<NumericBuilder>, Vec<CategoricalBuilder>)| {
            num.iter_mut().zip(numeric).for_each(|(a, b)| a.merge_from(b));
            cat.iter_mut().zip(categorical).for_each(|(a, b)| a.merge_from(b));
            Ok(())
        },
    )?;
    let mut out: Vec<ColumnReference> = prep
        .numeric
        .iter()
        .zip(num)
        .map(|(f, b)| ColumnReference { name: f.name.clone(), distribution: Distribution::Numeric(b.finish()) })
        .collect();
    out.extend(
        prep.categorical.iter().zip(cat).map(|(f, b)| ColumnReference {
            name: f.name.clone(),
            distribution: Distribution::Categorical(b.finish()),
        }),
    );
    Ok(out)
}

/// Learn the preprocessing from the rows `rows` of `blocks` (see [`Preprocessing::fit_blocks`]):
/// one pass for the counts, means, spreads and categories, and for median columns two to five
/// short passes that find the exact median without holding the column.
pub fn fit_preprocessing(
    params: &Params,
    blocks: &dyn Blocks,
    rows: Rows<'_>,
    threads: usize,
) -> Result<Preprocessing> {
    let (k, c) = (params.numeric().len(), params.categorical().len());
    let rules: Vec<NumericRule> = params.numeric().iter().map(|n| params.numeric_rule(n)).collect();
    let mut num = vec![Moments::default(); k];
    let mut seen: Vec<BTreeSet<String>> = vec![BTreeSet::new(); c];
    let mut has_missing = vec![false; c];
    each_segment(
        blocks,
        rows,
        threads,
        &|_, _, t, local| {
            let mut values = Vec::with_capacity(local.len());
            let numeric = t
                .numeric
                .iter()
                .map(|col| {
                    values.clear();
                    values.extend(local.iter().map(|&i| col[i]).filter(|v| !v.is_nan()));
                    Moments::of(&values)
                })
                .collect();
            let mut categories = Vec::with_capacity(c);
            let mut missing = Vec::with_capacity(c);
            for col in &t.categorical {
                let mut used = vec![false; col.values.len()];
                let mut miss = false;
                for &i in local {
                    match col.codes[i] {
                        MISSING_CODE => miss = true,
                        code => used[code as usize] = true,
                    }
                }
                categories.push(col.values.iter().zip(&used).filter(|(_, &u)| u).map(|(v, _)| v.clone()).collect());
                missing.push(miss);
            }
            Ok(PrepPart { numeric, categories, missing })
        },
        &mut |part: PrepPart| {
            for (m, p) in num.iter_mut().zip(&part.numeric) {
                m.merge(p);
            }
            for (s, p) in seen.iter_mut().zip(part.categories) {
                s.extend(p);
            }
            for (m, p) in has_missing.iter_mut().zip(part.missing) {
                *m |= p;
            }
            Ok(())
        },
    )?;
    let n = rows.len();
    for (j, name) in params.numeric().iter().enumerate() {
        if num[j].count == 0 && !matches!(rules[j], NumericRule::Constant(_)) {
            return Err(Error::Model(format!("numeric column {name:?} has no values in the training rows")));
        }
    }
    let median_cols: Vec<usize> = (0..k).filter(|&j| rules[j] == NumericRule::Median).collect();
    let medians = exact_medians(blocks, rows, &median_cols, &num, threads)?;
    let mut numeric = Vec::with_capacity(k);
    for (j, name) in params.numeric().iter().enumerate() {
        let rule = rules[j];
        let impute = match rule {
            NumericRule::Mean => Some(num[j].mean()),
            NumericRule::Median => median_cols.iter().position(|&m| m == j).map(|p| medians[p]),
            NumericRule::Constant(v) => Some(v),
            NumericRule::Reject => {
                if num[j].count != n {
                    return Err(Error::Model(format!(
                        "numeric column {name:?} has {} missing values in the training rows and its rule is \
                         reject; choose mean, median or constant, or clean the data",
                        n - num[j].count
                    )));
                }
                None
            }
        };
        let mut f = NumericFeature { name: name.clone(), missing: rule, impute, center: 0.0, scale: 1.0 };
        // trees split on the imputed values themselves: a monotone rescaling changes nothing
        if params.scale() == Scale::Standardize && !params.model().kind().is_trees() && n > 0 {
            // the imputed column: the values seen, and n - count copies of the imputed value
            let mut all = num[j];
            if let Some(v) = impute {
                all.merge(&Moments { count: n - num[j].count, sum: v * (n - num[j].count) as f64, m2: 0.0 });
            }
            let (m, sd) = (all.mean(), (all.m2 / n as f64).sqrt());
            f.center = m;
            f.scale = if sd > f64::EPSILON * m.abs().max(1.0) { sd } else { 1.0 };
        }
        numeric.push(f);
    }
    let mut categorical = Vec::with_capacity(c);
    for (j, name) in params.categorical().iter().enumerate() {
        let rule = params.categorical_rule(name);
        if has_missing[j] && rule == CategoricalRule::Reject {
            return Err(Error::Model(format!(
                "categorical column {name:?} has missing values in the training rows and its rule is reject"
            )));
        }
        let mut categories: Vec<String> = std::mem::take(&mut seen[j]).into_iter().collect();
        if has_missing[j] && !categories.iter().any(|c| c == MISSING_CATEGORY) {
            categories.push(MISSING_CATEGORY.to_string());
            categories.sort();
        }
        categorical.push(CategoricalFeature { name: name.clone(), missing: rule, categories });
    }
    Ok(Preprocessing { missing_tokens: params.missing_tokens().to_vec(), numeric, categorical })
}

/// A finite f64 as a u64 in the same order (`total_cmp`'s).
fn key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn unkey(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Values a selection collects in memory once its candidates are this few.
const COLLECT: usize = 1 << 16;

/// Bits of the key each histogram pass resolves.
const DIGIT: u32 = 16;

/// One order statistic being found: the `rank`-th smallest value among those whose key starts
/// with the `bits` high bits `prefix`.
#[derive(Debug, Clone)]
struct Select {
    col: usize,
    rank: usize,
    prefix: u64,
    bits: u32,
    candidates: usize,
    value: Option<f64>,
}

impl Select {
    fn matches(&self, k: u64) -> bool {
        self.bits == 0 || k >> (64 - self.bits) == self.prefix
    }
}

/// Exact medians (numpy's: the mean of the two middle values for an even count) of the numeric
/// columns `cols`, over the non-missing values of the selected rows, without holding a column:
/// each pass counts the candidates by the next 16 bits of their order-preserving key and keeps
/// the bucket holding the wanted rank; once a bucket has at most 65,536 values they are
/// collected and sorted. Every median column is resolved in the same passes.
pub fn exact_medians(
    blocks: &dyn Blocks,
    rows: Rows<'_>,
    cols: &[usize],
    moments: &[Moments],
    threads: usize,
) -> Result<Vec<f64>> {
    let mut sel: Vec<Select> = Vec::new();
    for &j in cols {
        let n = moments[j].count;
        for rank in if n % 2 == 1 { vec![n / 2] } else { vec![n / 2 - 1, n / 2] } {
            sel.push(Select { col: j, rank, prefix: 0, bits: 0, candidates: n, value: None });
        }
    }
    while sel.iter().any(|s| s.value.is_none()) {
        for s in sel.iter_mut().filter(|s| s.value.is_none() && s.bits == 64) {
            // every candidate has the same key: the same value
            s.value = Some(unkey(s.prefix));
        }
        let open: Vec<Select> = sel.iter().filter(|s| s.value.is_none()).cloned().collect();
        if open.is_empty() {
            break;
        }
        // per open selection: a histogram of the next digit, or the collected candidates
        let mut hist: Vec<Vec<u64>> =
            open.iter().map(|s| if s.candidates > COLLECT { vec![0; 1 << DIGIT] } else { Vec::new() }).collect();
        let mut found: Vec<Vec<f64>> = vec![Vec::new(); open.len()];
        each_segment(
            blocks,
            rows,
            threads,
            &|_, _, t, local| {
                let mut part: Vec<(Vec<u32>, Vec<f64>)> = Vec::with_capacity(open.len());
                for s in &open {
                    let col = &t.numeric[s.col];
                    let values = local.iter().map(|&i| col[i]).filter(|v| !v.is_nan());
                    if s.candidates > COLLECT {
                        let mut h = vec![0u32; 1 << DIGIT];
                        let shift = 64 - s.bits - DIGIT;
                        for v in values {
                            let k = key(v);
                            if s.matches(k) {
                                h[(k >> shift) as usize & ((1 << DIGIT) - 1)] += 1;
                            }
                        }
                        part.push((h, Vec::new()));
                    } else {
                        part.push((Vec::new(), values.filter(|&v| s.matches(key(v))).collect()));
                    }
                }
                Ok(part)
            },
            &mut |part: Vec<(Vec<u32>, Vec<f64>)>| {
                for (q, (h, v)) in part.into_iter().enumerate() {
                    for (a, b) in hist[q].iter_mut().zip(h) {
                        *a += u64::from(b);
                    }
                    found[q].extend(v);
                }
                Ok(())
            },
        )?;
        for (q, s) in sel.iter_mut().filter(|s| s.value.is_none()).enumerate() {
            if s.candidates > COLLECT {
                let mut below = 0usize;
                for (digit, &count) in hist[q].iter().enumerate() {
                    let count = count as usize;
                    if s.rank < below + count {
                        s.rank -= below;
                        s.prefix = (s.prefix << DIGIT) | digit as u64;
                        s.bits += DIGIT;
                        s.candidates = count;
                        break;
                    }
                    below += count;
                }
            } else {
                let v = &mut found[q];
                v.sort_by(f64::total_cmp);
                let value = v.get(s.rank).copied().ok_or_else(|| {
                    Error::Model("the training rows changed between two passes over them".to_string())
                })?;
                s.value = Some(value);
            }
        }
    }
    let value = |s: &Select| s.value.unwrap_or(f64::NAN);
    let mut out = Vec::with_capacity(cols.len());
    let mut it = sel.iter();
    for &j in cols {
        let n = moments[j].count;
        let a = it.next().map_or(f64::NAN, value);
        out.push(if n % 2 == 1 { a } else { (a + it.next().map_or(f64::NAN, value)) / 2.0 });
    }
    Ok(out)
}

/// For each categorical column of a block: block code → design column, and the missing
/// value's design column.
/// A categorical column's design columns: per block code, and for the missing value.
type CategoryColumns = (Vec<Option<usize>>, Option<usize>);

fn category_columns(prep: &Preprocessing, t: &Table) -> Vec<CategoryColumns> {
    let mut offset = prep.numeric.len();
    let mut out = Vec::with_capacity(prep.categorical.len());
    for (f, col) in prep.categorical.iter().zip(&t.categorical) {
        let lookup = col.values.iter().map(|v| f.categories.binary_search(v).ok().map(|k| offset + k)).collect();
        let missing = f.categories.binary_search_by(|c| c.as_str().cmp(MISSING_CATEGORY)).ok().map(|k| offset + k);
        out.push((lookup, missing));
        offset += f.categories.len();
    }
    out
}

/// The design value of numeric column `j` for a raw value.
fn design_value(f: &NumericFeature, v: f64, row: usize) -> Result<f64> {
    let v = if v.is_nan() {
        f.impute.ok_or_else(|| {
            Error::Model(format!("column {:?} is missing in row {row} and its rule is reject", f.name))
        })?
    } else {
        v
    };
    Ok((v - f.center) / f.scale)
}

/// The centred Gram statistics of the design of the selected rows, without building the
/// design: the numeric block by a small matrix product, the one-hot blocks by counting, each
/// segment centred at its own means and the segments merged in order ([`Gram::merge`]).
pub fn gram(prep: &Preprocessing, blocks: &dyn Blocks, rows: Rows<'_>, threads: usize) -> Result<Gram> {
    let (k, p) = (prep.numeric.len(), prep.width());
    let mut total = Gram { n: 0, x_mean: Array1::zeros(p), y_mean: 0.0, g: Array2::zeros((p, p)), b: Array1::zeros(p) };
    each_segment(
        blocks,
        rows,
        threads,
        &|first, _, t, local| segment_gram(prep, t, local, first, k, p),
        &mut |part: Gram| {
            total.merge(&part);
            Ok(())
        },
    )?;
    Ok(total)
}

fn segment_gram(prep: &Preprocessing, t: &Table, local: &[usize], first: usize, k: usize, p: usize) -> Result<Gram> {
    let nb = local.len();
    let mut out = Gram { n: nb, x_mean: Array1::zeros(p), y_mean: 0.0, g: Array2::zeros((p, p)), b: Array1::zeros(p) };
    if nb == 0 {
        return Ok(out);
    }
    let n = nb as f64;
    // the numeric block, centred
    let mut z = Array2::<f64>::zeros((nb, k));
    for (j, (f, col)) in prep.numeric.iter().zip(&t.numeric).enumerate() {
        for (r, &i) in local.iter().enumerate() {
            z[[r, j]] = design_value(f, col[i], first + i)?;
        }
    }
    let mz = z.sum_axis(ndarray::Axis(0)) / n;
    z -= &mz;
    let y: Vec<f64> = local.iter().map(|&i| t.target[i]).collect();
    let y_mean = y.iter().sum::<f64>() / n;
    let yc: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
    let yc_sum: f64 = yc.iter().sum();
    // the rows' design columns in the one-hot blocks
    let cats = category_columns(prep, t);
    let mut hot: Vec<usize> = Vec::with_capacity(cats.len());
    let mut count = vec![0.0f64; p];
    let mut zsum_in = Array2::<f64>::zeros((p, k)); // Σ of centred numeric values over rows hot in a column
    let mut ysum_in = vec![0.0f64; p];
    let mut joint = Array2::<f64>::zeros((p, p));
    for (r, &i) in local.iter().enumerate() {
        hot.clear();
        hot.extend(cats.iter().zip(&t.categorical).filter_map(|((lookup, missing), col)| match col.codes[i] {
            MISSING_CODE => *missing,
            code => lookup[code as usize],
        }));
        for &q in &hot {
            count[q] += 1.0;
            zsum_in.row_mut(q).scaled_add(1.0, &z.row(r));
            ysum_in[q] += yc[r];
            for &q2 in &hot {
                joint[[q, q2]] += 1.0;
            }
        }
    }
    let zsum = z.sum_axis(ndarray::Axis(0));
    // numeric × numeric
    let mut zz = Array2::<f64>::zeros((k, k));
    general_mat_mul(1.0, &z.t(), &z, 0.0, &mut zz);
    for ((j, l), v) in zz.indexed_iter() {
        out.g[[j, l]] = *v;
    }
    for j in 0..k {
        out.b[j] = z.column(j).iter().zip(&yc).map(|(a, b)| a * b).sum();
    }
    for q in k..p {
        let f = count[q] / n;
        out.x_mean[q] = f;
        // numeric × one-hot: Σ over the column's rows of (z - mz), less f · Σ (z - mz)
        for j in 0..k {
            let v = zsum_in[[q, j]] - f * zsum[j];
            out.g[[j, q]] = v;
            out.g[[q, j]] = v;
        }
        for q2 in k..p {
            out.g[[q, q2]] = joint[[q, q2]] - count[q] * count[q2] / n;
        }
        out.b[q] = ysum_in[q] - f * yc_sum;
    }
    for (j, m) in mz.iter().enumerate() {
        out.x_mean[j] = *m;
    }
    out.y_mean = y_mean;
    Ok(out)
}

/// A linear model's prediction for row `i` of a block (row `first + i` of the data).
fn predict(
    prep: &Preprocessing,
    fit: &LinearFit,
    cats: &[CategoryColumns],
    t: &Table,
    i: usize,
    first: usize,
) -> Result<f64> {
    let mut pred = fit.intercept;
    for (j, (f, col)) in prep.numeric.iter().zip(&t.numeric).enumerate() {
        pred += fit.coefficients[j] * design_value(f, col[i], first + i)?;
    }
    for ((lookup, missing), col) in cats.iter().zip(&t.categorical) {
        let q = match col.codes[i] {
            MISSING_CODE => *missing,
            code => lookup[code as usize],
        };
        if let Some(q) = q {
            pred += fit.coefficients[q];
        }
    }
    Ok(pred)
}

/// A linear model's metrics on the selected rows (truth against prediction, and against the
/// constant `baseline`), with every `stride`-th row's (truth, prediction) pair in row order (the
/// report's points), in one parallel pass over the raw rows.
pub fn linear_metrics(
    prep: &Preprocessing,
    fit: &LinearFit,
    blocks: &dyn Blocks,
    rows: Rows<'_>,
    baseline: f64,
    stride: usize,
    threads: usize,
) -> Result<Evaluated> {
    let (mut model, mut base, mut points) = (MetricsAcc::default(), MetricsAcc::default(), Vec::new());
    each_segment(
        blocks,
        rows,
        threads,
        &|first, start, t, local| {
            let (mut m, mut b, mut pts) = (MetricsAcc::default(), MetricsAcc::default(), Vec::new());
            let cats = category_columns(prep, t);
            for (ordinal, &i) in (rows.rank(start)..).zip(local) {
                let pred = predict(prep, fit, &cats, t, i, first)?;
                let truth = t.target[i];
                m.add(truth, pred);
                b.add(truth, baseline);
                if ordinal.is_multiple_of(stride) {
                    pts.push((truth, pred));
                }
            }
            Ok((m, b, pts))
        },
        &mut |(m, b, pts): Evaluated| {
            model.merge(&m);
            base.merge(&b);
            points.extend(pts);
            Ok(())
        },
    )?;
    Ok((model, base, points))
}

/// [`linear_metrics`] of the training rows (those not in `held_out`, without points) and of the
/// held-out rows, in one pass: the same numbers as two calls.
pub fn linear_metrics_split(
    prep: &Preprocessing,
    fit: &LinearFit,
    blocks: &dyn Blocks,
    held_out: &Mask,
    baseline: f64,
    stride: usize,
    threads: usize,
) -> Result<(Evaluated, Evaluated)> {
    let mut train: Evaluated = Default::default();
    let mut test: Evaluated = Default::default();
    let test_rows = Rows::In(held_out);
    each_segment(
        blocks,
        Rows::All(held_out.universe()),
        threads,
        &|first, start, t, local| {
            let (mut tr, mut te): (Evaluated, Evaluated) = Default::default();
            let cats = category_columns(prep, t);
            let mut ordinal = test_rows.rank(start);
            for &i in local {
                let pred = predict(prep, fit, &cats, t, i, first)?;
                let truth = t.target[i];
                if held_out.contains(first + i) {
                    te.0.add(truth, pred);
                    te.1.add(truth, baseline);
                    if ordinal.is_multiple_of(stride) {
                        te.2.push((truth, pred));
                    }
                    ordinal += 1;
                } else {
                    tr.0.add(truth, pred);
                    tr.1.add(truth, baseline);
                }
            }
            Ok((tr, te))
        },
        &mut |(tr, te): (Evaluated, Evaluated)| {
            for (acc, part) in [(&mut train, tr), (&mut test, te)] {
                acc.0.merge(&part.0);
                acc.1.merge(&part.1);
                acc.2.extend(part.2);
            }
            Ok(())
        },
    )?;
    Ok((train, test))
}

/// The mean target of the selected rows (segment sums added in order).
pub fn target_mean(blocks: &dyn Blocks, rows: Rows<'_>, threads: usize) -> Result<f64> {
    let mut sum = 0.0;
    each_segment(
        blocks,
        rows,
        threads,
        &|_, _, t, local| Ok(local.iter().map(|&i| t.target[i]).sum::<f64>()),
        &mut |s| {
            sum += s;
            Ok(())
        },
    )?;
    Ok(sum / rows.len().max(1) as f64)
}

impl Preprocessing {
    /// Learn the preprocessing from the rows `rows` (sorted) of `table` (the training rows).
    pub fn fit(params: &Params, table: &Table, rows: &[usize]) -> Result<Preprocessing> {
        Preprocessing::fit_blocks(params, table, Rows::List(rows))
    }

    /// Learn the preprocessing from the rows `rows` of `blocks`, in streaming passes
    /// ([`crate::stats::fit_preprocessing`]): counts, means and spreads in one pass (the
    /// standardisation's mean and spread are those of the imputed column, found from the values
    /// seen and the number imputed), then, for the median rule, a few passes that find the exact
    /// median without holding the column. Every statistic is over the training rows only, formed
    /// per segment of rows and merged in row order, so a table and a spool of the same rows, and
    /// any number of threads, give the same numbers.
    pub fn fit_blocks(params: &Params, blocks: &dyn Blocks, rows: Rows<'_>) -> Result<Preprocessing> {
        crate::stats::fit_preprocessing(params, blocks, rows, crate::util::threads::default_threads())
    }
}

/// The design matrix of some rows of any [`Blocks`] in chunks of [`CHUNK_ROWS`] rows, a chunk
/// spanning blocks where it must: the same chunks as a [`TableDesign`] of the same rows. Its
/// [`Gram`](crate::design::Gram) statistics come straight from the raw rows
/// ([`crate::stats::gram`]), in parallel, without building the design.
pub struct BlockDesign<'a> {
    /// The fitted preprocessing.
    pub prep: &'a Preprocessing,
    /// The rows' source.
    pub blocks: &'a dyn Blocks,
    /// Which rows.
    pub rows: Rows<'a>,
}

impl crate::design::Design for BlockDesign<'_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn width(&self) -> usize {
        self.prep.width()
    }

    fn gram(&self) -> Option<Result<crate::design::Gram>> {
        Some(crate::stats::gram(self.prep, self.blocks, self.rows, crate::util::threads::default_threads()))
    }

    fn for_each_chunk(&self, f: &mut crate::design::ChunkFn<'_>) -> Result<()> {
        let cap = CHUNK_ROWS.min(self.rows.len()).max(1);
        let mut buf = Array2::<f64>::zeros((cap, self.width()));
        let mut y = Vec::with_capacity(cap);
        let mut selected = Vec::new();
        self.blocks.for_each_block(&mut |first, t| {
            self.rows.local(first, t.len(), &mut selected);
            let mut rest = selected.as_slice();
            while !rest.is_empty() {
                let filled = y.len();
                let take = (cap - filled).min(rest.len());
                let x = buf.slice_axis_mut(ndarray::Axis(0), ndarray::Slice::from(filled..filled + take));
                self.prep.fill(t, &rest[..take], x)?;
                y.extend(rest[..take].iter().map(|&i| t.target[i]));
                rest = &rest[take..];
                if y.len() == cap {
                    f(buf.view(), ArrayView1::from(&y))?;
                    buf.fill(0.0);
                    y.clear();
                }
            }
            Ok(())
        })?;
        if !y.is_empty() {
            let x = buf.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..y.len()));
            f(x, ArrayView1::from(&y))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::spool::SpoolWriter;
    use crate::data::{held_out, ColumnSpec};
    use crate::features::{median, TableDesign};
    use crate::params::ParamsFile;

    fn params(extra: &str) -> Params {
        let yaml = format!(
            "name: m\ndata: {{train: unused.csv}}\ntarget: y\nfeatures: {{numeric: [a, b], categorical: [c, d]}}\n{extra}"
        );
        let path = std::path::Path::new("p.yaml");
        crate::util::yaml::parse_yaml::<ParamsFile>(path, &yaml).unwrap().check(path).unwrap()
    }

    /// A table of `n` pseudo-random rows and a spool of the same rows.
    fn data(params: &Params, n: usize) -> (Table, crate::data::spool::Spool) {
        let spec = ColumnSpec::of(params);
        let mut table = Table::empty(&spec);
        let mut w = SpoolWriter::new(&spec).unwrap();
        let mut rng = crate::util::rng::SplitMix64::new(11);
        for i in 0..n {
            let state = rng.next_u64();
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let a = if i % 13 == 0 { f64::NAN } else { 1000.0 + u * 10.0 };
            let b = ((i * 7919) % 101) as f64 - 40.0;
            let c = ["x", "y", "z"][i % 3];
            let d = if i % 17 == 0 { None } else { Some(["p", "q", "r", "s", "t"][(state >> 40) as usize % 5]) };
            let y = 3.0 * u - 0.02 * b + if c == "x" { 1.0 } else { 0.0 };
            table.push_row(&[a, b], &[Some(c), d], y);
            w.push(&[a, b], &[Some(c), d], y).unwrap();
        }
        (table, w.finish().unwrap())
    }

    #[test]
    fn the_drift_reference_counts_every_training_row_the_same_for_any_threads_and_blocking() {
        let p = params("model: {kind: ridge, alpha: 0.5}\n");
        let n = SEGMENT_ROWS * 3 + 777;
        let (table, spool) = data(&p, n);
        let mask = held_out(n, 0.2, 42);
        let train = Rows::NotIn(&mask);
        let prep = fit_preprocessing(&p, &table, train, 1).unwrap();
        let want = drift_columns(&prep, &table, train, 1).unwrap();
        for threads in [2, 8] {
            for blocks in [&table as &dyn Blocks, &spool] {
                assert_eq!(drift_columns(&prep, blocks, train, threads).unwrap(), want, "{threads} threads");
            }
        }
        let names: Vec<&str> = want.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let train_rows = train.len() as u64;
        // a: uniform on [1000, 1010), one row in 13 missing: ten bins of about a tenth each
        let Distribution::Numeric(a) = &want[0].distribution else { panic!("{want:?}") };
        let missing = (0..n).filter(|&i| !mask.contains(i) && i % 13 == 0).count();
        assert_eq!(a.count, train_rows);
        assert!((a.missing_rate - missing as f64 / train_rows as f64).abs() < 1e-12);
        assert_eq!(a.proportions.len(), BINS);
        assert!(a.proportions.iter().all(|&s| (s - 0.1).abs() < 0.01), "{:?}", a.proportions);
        assert!(a.min.unwrap() >= 1000.0 && a.max.unwrap() < 1010.0);
        // b: integers -40..=60; its shares sum to 1
        let Distribution::Numeric(b) = &want[1].distribution else { panic!() };
        assert!((b.proportions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!((b.min, b.max), (Some(-40.0), Some(60.0)));
        // c: x, y, z a third each; d: one row in 17 missing
        let Distribution::Categorical(c) = &want[2].distribution else { panic!() };
        assert_eq!(c.categories, ["x", "y", "z"]);
        assert!(c.proportions.iter().all(|&s| (s - 1.0 / 3.0).abs() < 0.01), "{:?}", c.proportions);
        let Distribution::Categorical(d) = &want[3].distribution else { panic!() };
        assert!((d.missing_rate - 1.0 / 17.0).abs() < 0.005, "{}", d.missing_rate);
        assert_eq!(d.count, train_rows);
    }

    #[test]
    fn statistics_are_bitwise_the_same_for_any_threads_and_blocking() {
        let p = params("missing: {numeric: median}\nmodel: {kind: ridge, alpha: 0.5}\n");
        let n = SEGMENT_ROWS * 3 + 777;
        let (table, spool) = data(&p, n);
        let mask = held_out(n, 0.2, 42);
        let train = Rows::NotIn(&mask);
        let run = |blocks: &dyn Blocks, threads: usize| {
            let prep = fit_preprocessing(&p, blocks, train, threads).unwrap();
            let g = gram(&prep, blocks, train, threads).unwrap();
            let fit = crate::model::fit_gram(p.model(), &g).unwrap();
            let m = linear_metrics(&prep, &fit, blocks, Rows::In(&mask), 0.5, 7, threads).unwrap();
            (prep, g, fit, m.0.finish(), m.1.finish(), m.2)
        };
        let reference = run(&table, 1);
        for threads in [1, 2, 3, 8] {
            for blocks in [&table as &dyn Blocks, &spool] {
                assert_eq!(run(blocks, threads), reference, "{threads} threads");
            }
        }
    }

    #[test]
    fn one_pass_split_metrics_equal_two_passes() {
        let p = params("model: {kind: ridge, alpha: 1.0}\n");
        let n = SEGMENT_ROWS * 2 + 99;
        let (_, spool) = data(&p, n);
        let mask = held_out(n, 0.25, 7);
        let prep = fit_preprocessing(&p, &spool, Rows::NotIn(&mask), 2).unwrap();
        let fit = crate::model::fit_gram(p.model(), &gram(&prep, &spool, Rows::NotIn(&mask), 2).unwrap()).unwrap();
        let (tr, te) = linear_metrics_split(&prep, &fit, &spool, &mask, 1.5, 13, 2).unwrap();
        let two = (
            linear_metrics(&prep, &fit, &spool, Rows::NotIn(&mask), 1.5, usize::MAX, 2).unwrap(),
            linear_metrics(&prep, &fit, &spool, Rows::In(&mask), 1.5, 13, 2).unwrap(),
        );
        assert_eq!((tr.0.finish(), tr.1.finish()), (two.0 .0.finish(), two.0 .1.finish()));
        assert_eq!((te.0.finish(), te.1.finish(), te.2), (two.1 .0.finish(), two.1 .1.finish(), two.1 .2));
    }

    #[test]
    fn the_gram_from_raw_rows_equals_the_dense_design_gram() {
        let p = params("model: {kind: linear}\n");
        let n = SEGMENT_ROWS + 500;
        let (table, _) = data(&p, n);
        let rows: Vec<usize> = (0..n).filter(|i| i % 5 != 0).collect();
        let prep = fit_preprocessing(&p, &table, Rows::List(&rows), 2).unwrap();
        let fast = gram(&prep, &table, Rows::List(&rows), 2).unwrap();
        let d = TableDesign { prep: &prep, table: &table, rows: &rows };
        // the dense reference: column means and centred products of the materialised design
        let mut dense = Array2::<f64>::zeros((rows.len(), prep.width()));
        let mut y = Vec::new();
        let mut at = 0;
        crate::design::Design::for_each_chunk(&d, &mut |c, t| {
            dense.slice_axis_mut(ndarray::Axis(0), ndarray::Slice::from(at..at + c.nrows())).assign(&c);
            y.extend(t.iter().copied());
            at += c.nrows();
            Ok(())
        })
        .unwrap();
        let mean = dense.mean_axis(ndarray::Axis(0)).unwrap();
        let xc = &dense - &mean;
        let y_mean = y.iter().sum::<f64>() / y.len() as f64;
        let yc = Array1::from(y.iter().map(|v| v - y_mean).collect::<Vec<_>>());
        let g = xc.t().dot(&xc);
        let b = xc.t().dot(&yc);
        assert_eq!(fast.n, rows.len());
        assert!((fast.y_mean - y_mean).abs() < 1e-12);
        for (a, b) in fast.x_mean.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-12, "{a} {b}");
        }
        for (a, b) in fast.g.iter().zip(&g) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} {b}");
        }
        for (a, b) in fast.b.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} {b}");
        }
    }

    #[test]
    fn streaming_medians_equal_the_sorted_median() {
        let cases: Vec<Vec<f64>> = vec![
            vec![3.0, 1.0, 2.0],
            vec![4.0, 1.0, 2.0, 3.0],
            vec![f64::NAN, 5.0, f64::NAN, -1.0],
            vec![-0.0, 0.0, -0.0, 1.0],
            vec![7.0; 10],
            // more than a collection holds: histogram passes, with many duplicates and a narrow range
            (0..200_003).map(|i| 1000.0 + ((i * 7919) % 1000) as f64 * 1e-9).collect(),
            (0..150_000).map(|i| if i % 3 == 0 { f64::NAN } else { ((i * 31) % 977) as f64 - 488.0 }).collect(),
            (0..140_000).map(|i| 2.5 + (i % 2) as f64).collect(),
        ];
        for values in cases {
            let p = params("model: {kind: linear}\n");
            let spec = ColumnSpec::of(&p);
            let mut t = Table::empty(&spec);
            for &v in &values {
                t.push_row(&[v, 0.0], &[Some("x"), Some("p")], 0.0);
            }
            let seen: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            let moments = [Moments::of(&seen), Moments::default()];
            for threads in [1, 3] {
                let got = exact_medians(&t, Rows::All(values.len()), &[0], &moments, threads).unwrap();
                assert_eq!(got[0].to_bits(), median(seen.clone()).to_bits(), "{} values", values.len());
            }
        }
    }

    #[test]
    fn moments_merge_like_one_pass() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin() * 100.0 + 1e6).collect();
        let whole = Moments::of(&v);
        let mut merged = Moments::default();
        for c in v.chunks(77) {
            merged.merge(&Moments::of(c));
        }
        assert_eq!(merged.count, whole.count);
        assert!((merged.m2 - whole.m2).abs() <= 1e-9 * whole.m2);
        assert!((merged.mean() - whole.mean()).abs() <= 1e-12 * whole.mean());
    }
}
