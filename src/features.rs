//! Fitted preprocessing: imputation, one-hot encoding, standardization. Pure: no I/O.
//!
//! [`Preprocessing::fit`] learns the transformation from training rows;
//! [`Preprocessing::design`] turns a table into the design matrix the estimator sees;
//! [`Scorer`] applies preprocessing and coefficients to one raw record at prediction time.
//!
//! The rules match scikit-learn's `SimpleImputer` → `StandardScaler` for numbers and
//! `SimpleImputer(fill_value="missing")` → `OneHotEncoder(handle_unknown="ignore")` for
//! categories: categories are sorted, and a category unseen in training encodes as all zeros.

use std::borrow::Cow;
use std::collections::HashMap;

use ndarray::{Array2, ArrayView1, ArrayViewMut2};
use serde::{Deserialize, Serialize};

use crate::data::{Table, MISSING_CODE};
use crate::error::{Error, Result};
use crate::model::{Classifier, Fit, LogisticFit, PackedTreeClassifier};
use crate::params::{CategoricalRule, NumericRule};
use crate::trees::{Ensemble, Packed};

/// The category a missing categorical value becomes under the `category` rule.
pub const MISSING_CATEGORY: &str = "missing";

/// How one numeric column is prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericFeature {
    /// Column name in the input.
    pub name: String,
    /// The missing-value rule.
    pub missing: NumericRule,
    /// The value a missing cell becomes; `None` when the rule is `reject`.
    pub impute: Option<f64>,
    /// Subtracted before scaling (0 when not standardizing).
    pub center: f64,
    /// Divided by after centering (1 when not standardizing or for a constant column).
    pub scale: f64,
}

/// How one categorical column is prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalFeature {
    /// Column name in the input.
    pub name: String,
    /// The missing-value rule (`category` or `reject`).
    pub missing: CategoricalRule,
    /// The learned vocabulary, sorted; one design-matrix column each.
    pub categories: Vec<String>,
}

/// The whole fitted preprocessing, stored in the model artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// Cell values that mean "missing" (applies to text cells at prediction time too).
    pub missing_tokens: Vec<String>,
    /// Numeric columns, first in the design matrix.
    pub numeric: Vec<NumericFeature>,
    /// Categorical columns, one-hot encoded after the numeric block.
    pub categorical: Vec<CategoricalFeature>,
}

impl Preprocessing {
    /// Width of the design matrix.
    pub fn width(&self) -> usize {
        self.numeric.len() + self.categorical.iter().map(|c| c.categories.len()).sum::<usize>()
    }

    /// Names of the design-matrix columns: numeric names, then `column=category`.
    pub fn feature_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.numeric.iter().map(|n| n.name.clone()).collect();
        for c in &self.categorical {
            out.extend(c.categories.iter().map(|v| format!("{}={}", c.name, v)));
        }
        out
    }

    /// The design matrix of all rows of `table` (rows × [`Self::width`]).
    pub fn design(&self, table: &Table) -> Result<Array2<f64>> {
        let rows: Vec<usize> = (0..table.len()).collect();
        let mut x = Array2::<f64>::zeros((rows.len(), self.width()));
        self.fill(table, &rows, x.view_mut())?;
        Ok(x)
    }

    /// Write the design rows of `rows` into `x` (`rows.len()` × width, zeroed by the caller).
    pub fn fill(&self, table: &Table, rows: &[usize], mut x: ArrayViewMut2<'_, f64>) -> Result<()> {
        for (j, (f, col)) in self.numeric.iter().zip(&table.numeric).enumerate() {
            for (r, &i) in rows.iter().enumerate() {
                let v = col[i];
                let v = if v.is_nan() {
                    f.impute.ok_or_else(|| {
                        Error::Model(format!("column {:?} is missing in row {i} and its rule is reject", f.name))
                    })?
                } else {
                    v
                };
                x[[r, j]] = (v - f.center) / f.scale;
            }
        }
        let mut offset = self.numeric.len();
        for (f, col) in self.categorical.iter().zip(&table.categorical) {
            let lookup: Vec<Option<usize>> = col.values.iter().map(|v| f.categories.binary_search(v).ok()).collect();
            let missing = f.categories.binary_search_by(|c| c.as_str().cmp(MISSING_CATEGORY)).ok();
            for (r, &i) in rows.iter().enumerate() {
                let code = col.codes[i];
                let k = if code == MISSING_CODE { missing } else { lookup[code as usize] };
                if let Some(k) = k {
                    x[[r, offset + k]] = 1.0;
                }
            }
            offset += f.categories.len();
        }
        Ok(())
    }
}

/// The design matrix of some rows of a table, produced in chunks so that it is never
/// materialised whole (a million rows × a hundred columns would be 800 MB).
pub struct TableDesign<'a> {
    /// The fitted preprocessing.
    pub prep: &'a Preprocessing,
    /// The table.
    pub table: &'a Table,
    /// Which rows, in order.
    pub rows: &'a [usize],
}

/// Rows per chunk of a [`TableDesign`].
pub const CHUNK_ROWS: usize = 4096;

impl crate::design::Design for TableDesign<'_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn width(&self) -> usize {
        self.prep.width()
    }

    fn for_each_chunk(&self, f: &mut crate::design::ChunkFn<'_>) -> Result<()> {
        let mut buf = Array2::<f64>::zeros((CHUNK_ROWS.min(self.rows.len()).max(1), self.width()));
        let mut y = Vec::with_capacity(CHUNK_ROWS);
        for rows in self.rows.chunks(CHUNK_ROWS) {
            buf.fill(0.0);
            let mut x = buf.slice_axis_mut(ndarray::Axis(0), ndarray::Slice::from(0..rows.len()));
            self.prep.fill(self.table, rows, x.view_mut())?;
            y.clear();
            y.extend(rows.iter().map(|&i| self.table.target[i]));
            f(x.view(), ArrayView1::from(&y))?;
        }
        Ok(())
    }
}

/// Arithmetic mean (0 for an empty slice).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Median as numpy computes it (mean of the two middle values for even lengths).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One raw input value, as decoded from CSV or JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Absent, `null`, or a missing-value token.
    Missing,
    /// A number.
    Num(f64),
    /// Text (numeric columns parse it; categorical columns look it up).
    Text(Cow<'a, str>),
    /// A value of the wrong JSON type; carries the type's name.
    Invalid(&'static str),
}

/// Why a record could not be scored.
pub type Reject = String;

struct NumSlot {
    impute: Option<f64>,
    center: f64,
    scale: f64,
    weight: f64,
}

struct CatSlot {
    /// Category → its position in the vocabulary.
    index: HashMap<String, u32>,
    /// Linear: one weight per category.
    weights: Vec<f64>,
    /// The `missing` category's position, if it has one.
    missing: Option<u32>,
    reject_missing: bool,
    /// First design column of this block.
    offset: usize,
}

/// One prepared cell: numeric slot `j` with its imputed value, or a categorical slot with the
/// category's position (`None`: unseen or missing without a `missing` category, all zeros).
enum Prepared<'a> {
    Num(&'a NumSlot, usize, f64),
    Cat(&'a CatSlot, Option<u32>),
}

/// What turns the prepared cells into a prediction.
enum Head {
    /// Coefficients folded into the slots; this is the intercept.
    Linear(f64),
    /// The ensemble (laid out for scoring) reads the design row.
    Trees(Packed),
    /// A classifier reads the design row.
    Logistic(LogisticFit),
    /// A tree classifier reads the design row.
    TreeClassifier(PackedTreeClassifier),
}

impl Head {
    fn classifier(&self) -> Option<&dyn Classifier> {
        match self {
            Head::Logistic(l) => Some(l),
            Head::TreeClassifier(t) => Some(t),
            _ => None,
        }
    }
}

thread_local! {
    /// The design row of the record being scored by a tree ensemble (reused: no allocation per record).
    static ROW: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records' design rows gathered to be scored together ([`Scorer::push_row`],
/// [`Scorer::score_rows`]): a tree ensemble walks each tree over all of them at once. Reused from
/// batch to batch, so a steady stream of batches allocates nothing.
#[derive(Debug, Default)]
pub struct RowBatch {
    /// The rows' design values in float32 (what the trees compare), row after row.
    x: Vec<f32>,
    /// The ensemble's outputs, `outputs` per row, once scored.
    out: Vec<f64>,
    rows: usize,
}

impl RowBatch {
    /// Forget the rows (keeping the buffers).
    pub fn clear(&mut self) {
        self.x.clear();
        self.out.clear();
        self.rows = 0;
    }

    /// Rows pushed.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True before the first row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// Preprocessing and the estimator folded into one record → prediction function.
///
/// Inputs are addressed by slot: numeric columns first, then categorical ones, in the
/// order of [`Scorer::input_columns`].
pub struct Scorer {
    columns: Vec<String>,
    numeric: Vec<NumSlot>,
    categorical: Vec<CatSlot>,
    head: Head,
    width: usize,
    missing_tokens: Vec<String>,
    /// A binary classifier's decision threshold set when serving, instead of the model's.
    threshold: Option<f64>,
}

impl Scorer {
    /// Fold `prep` and the design-matrix `coefficients` (+ `intercept`) into a scorer.
    pub fn new(prep: &Preprocessing, coefficients: &[f64], intercept: f64) -> Result<Scorer> {
        if coefficients.len() != prep.width() {
            return Err(Error::Model(format!(
                "{} coefficients for a design matrix of width {}",
                coefficients.len(),
                prep.width()
            )));
        }
        Ok(Scorer::build(prep, coefficients, Head::Linear(intercept)))
    }

    /// Fold `prep` and a tree ensemble into a scorer.
    pub fn trees(prep: &Preprocessing, ensemble: &Ensemble) -> Result<Scorer> {
        ensemble.check(prep.width()).map_err(Error::Model)?;
        Ok(Scorer::build(prep, &vec![0.0; prep.width()], Head::Trees(Packed::new(ensemble))))
    }

    /// A scorer for a fitted estimator.
    pub fn of(prep: &Preprocessing, fit: &Fit) -> Result<Scorer> {
        match fit {
            Fit::Linear(l) => Scorer::new(prep, &l.coefficients, l.intercept),
            Fit::Trees(t) => Scorer::trees(prep, &t.trees),
            Fit::Logistic(l) => {
                l.check(prep.width()).map_err(Error::Model)?;
                Ok(Scorer::build(prep, &vec![0.0; prep.width()], Head::Logistic(l.clone())))
            }
            Fit::TreeClassifier(t) => {
                t.check(prep.width()).map_err(Error::Model)?;
                Ok(Scorer::build(prep, &vec![0.0; prep.width()], Head::TreeClassifier(PackedTreeClassifier::new(t))))
            }
        }
    }

    /// A classifier's class labels, in probability order (empty for a regressor).
    pub fn classes(&self) -> &[String] {
        self.head.classifier().map_or(&[], |c| c.classes())
    }

    /// A classifier's binary decision threshold (0.5 unless the artifact says otherwise).
    pub fn threshold(&self) -> f64 {
        self.threshold
            .unwrap_or_else(|| self.head.classifier().map_or(crate::model::DEFAULT_THRESHOLD, |c| c.threshold()))
    }

    /// Predict class 1 at or above `t` instead of the model's threshold: a binary classifier
    /// only, `t` in (0, 1). The error says why not.
    pub fn set_threshold(&mut self, t: f64) -> std::result::Result<(), String> {
        let k = self.classes().len();
        if k != 2 {
            return Err(match k {
                0 => "a decision threshold applies to a binary classifier; this model predicts a number".into(),
                _ => format!("a decision threshold applies to a binary classifier; this model has {k} classes"),
            });
        }
        if !(t > 0.0 && t < 1.0) {
            return Err(format!("decision threshold {t} is not in (0, 1)"));
        }
        self.threshold = Some(t);
        Ok(())
    }

    /// Score any record (cells in slot order): a regressor's number, or a classifier's class at
    /// its threshold with the probabilities written into `probs`; the value is then class 1's
    /// probability of two classes, the predicted class's of more (what drift bins count).
    #[inline]
    pub fn predict(
        &self,
        cells: &[Cell<'_>],
        probs: &mut Vec<f64>,
    ) -> std::result::Result<(f64, Option<usize>), Reject> {
        let k = self.classes().len();
        if k == 0 {
            return self.score(cells).map(|p| (p, None));
        }
        probs.resize(k, 0.0);
        let c = self.score_classes(cells, probs, self.threshold())?;
        Ok((if k == 2 { probs[1] } else { probs[c] }, Some(c)))
    }

    /// Score a classifier's record (cells in slot order): the class probabilities into `probs`
    /// (one per class), and the predicted class at `threshold` (binary; argmax otherwise).
    pub fn score_classes(
        &self,
        cells: &[Cell<'_>],
        probs: &mut [f64],
        threshold: f64,
    ) -> std::result::Result<usize, Reject> {
        let Some(l) = self.head.classifier() else {
            return Err("this model predicts a number, not a class".into());
        };
        self.with_row(cells, |row| {
            l.probabilities(row, probs);
            crate::model::logistic::decide(probs, threshold)
        })
    }

    /// Whether records score faster together than one by one ([`Scorer::push_row`]): a tree
    /// ensemble, whose trees stay in cache while a batch of rows walks them.
    pub fn scores_rows(&self) -> bool {
        matches!(self.head, Head::Trees(_) | Head::TreeClassifier(_))
    }

    /// Check and prepare one record (cells in slot order) into `batch` as its next row, or say
    /// why it is refused (the reasons [`Scorer::predict`] gives). A model other than trees
    /// scores the record here.
    pub fn push_row(&self, cells: &[Cell<'_>], batch: &mut RowBatch) -> std::result::Result<(), Reject> {
        match &self.head {
            Head::Trees(_) | Head::TreeClassifier(_) => {
                self.with_row(cells, |row| batch.x.extend(row.iter().map(|v| *v as f32)))?
            }
            Head::Linear(_) => {
                let y = self.score(cells)?;
                batch.out.push(y);
            }
            Head::Logistic(l) => self.with_row(cells, |row| {
                let at = batch.out.len();
                batch.out.resize(at + l.classes.len(), 0.0);
                l.probabilities(row, &mut batch.out[at..]);
            })?,
        }
        batch.rows += 1;
        Ok(())
    }

    /// Walk the batch's rows (a tree model; the others scored each row as it was pushed).
    pub fn score_rows(&self, batch: &mut RowBatch) {
        let trees = match &self.head {
            Head::Trees(t) => t,
            Head::TreeClassifier(t) => t.trees(),
            Head::Linear(_) | Head::Logistic(_) => return,
        };
        batch.out.clear();
        batch.out.resize(batch.rows * trees.outputs(), 0.0);
        trees.predict_rows(&batch.x, self.width, &mut batch.out);
    }

    /// Row `i` of a scored batch: what [`Scorer::predict`] gives for its record, bit for bit.
    pub fn row_prediction(&self, batch: &RowBatch, i: usize, probs: &mut Vec<f64>) -> (f64, Option<usize>) {
        let k = self.classes().len();
        match &self.head {
            Head::Trees(_) | Head::Linear(_) => return (batch.out[i], None),
            Head::TreeClassifier(t) => {
                let per = t.trees().outputs();
                probs.resize(k, 0.0);
                t.probabilities_of(&batch.out[i * per..(i + 1) * per], probs);
            }
            Head::Logistic(_) => {
                probs.clear();
                probs.extend_from_slice(&batch.out[i * k..(i + 1) * k]);
            }
        }
        let c = crate::model::logistic::decide(probs, self.threshold());
        (if k == 2 { probs[1] } else { probs[c] }, Some(c))
    }

    /// Build the record's design row (imputed, scaled, one-hot) in a reused buffer and hand it to `f`.
    #[inline]
    fn with_row<T>(&self, cells: &[Cell<'_>], f: impl FnOnce(&[f64]) -> T) -> std::result::Result<T, Reject> {
        ROW.with(|row| {
            let mut row = row.borrow_mut();
            row.clear();
            row.resize(self.width, 0.0);
            self.prepare(cells, |p| match p {
                Prepared::Num(slot, j, v) => row[j] = (v - slot.center) / slot.scale,
                Prepared::Cat(slot, Some(c)) => row[slot.offset + c as usize] = 1.0,
                Prepared::Cat(_, None) => {}
            })?;
            Ok(f(&row))
        })
    }

    fn build(prep: &Preprocessing, coefficients: &[f64], head: Head) -> Scorer {
        let numeric = prep
            .numeric
            .iter()
            .zip(coefficients)
            .map(|(f, &w)| NumSlot { impute: f.impute, center: f.center, scale: f.scale, weight: w / f.scale })
            .collect();
        let mut offset = prep.numeric.len();
        let mut categorical = Vec::new();
        for f in &prep.categorical {
            let weights = coefficients[offset..offset + f.categories.len()].to_vec();
            let index: HashMap<String, u32> = f.categories.iter().cloned().zip(0u32..).collect();
            let missing = index.get(MISSING_CATEGORY).copied();
            categorical.push(CatSlot {
                index,
                weights,
                missing,
                reject_missing: f.missing == CategoricalRule::Reject,
                offset,
            });
            offset += f.categories.len();
        }
        let columns = prep
            .numeric
            .iter()
            .map(|f| f.name.clone())
            .chain(prep.categorical.iter().map(|f| f.name.clone()))
            .collect();
        Scorer {
            columns,
            numeric,
            categorical,
            head,
            width: prep.width(),
            missing_tokens: prep.missing_tokens.clone(),
            threshold: None,
        }
    }

    /// The input column names, in slot order.
    pub fn input_columns(&self) -> &[String] {
        &self.columns
    }

    /// How many of [`Scorer::input_columns`] are numeric (they come first; the rest are
    /// categorical).
    pub fn numeric_inputs(&self) -> usize {
        self.numeric.len()
    }

    /// Missing-value tokens for text cells.
    pub fn missing_tokens(&self) -> &[String] {
        &self.missing_tokens
    }

    /// Score one record given as cells in slot order (`cells.len()` must equal the column count).
    pub fn score(&self, cells: &[Cell<'_>]) -> std::result::Result<f64, Reject> {
        match &self.head {
            Head::Linear(intercept) => {
                let mut y = *intercept;
                self.prepare(cells, |p| match p {
                    Prepared::Num(slot, _, v) => y += (v - slot.center) * slot.weight,
                    Prepared::Cat(slot, c) => y += c.map_or(0.0, |c| slot.weights[c as usize]),
                })?;
                Ok(y)
            }
            Head::Trees(e) => self.with_row(cells, |row| e.predict(row)),
            // binary: class 1's probability; more classes: the predicted class's probability
            Head::Logistic(_) | Head::TreeClassifier(_) => self.with_row(cells, |row| {
                let Some(l) = self.head.classifier() else { return f64::NAN };
                let k = l.classes().len();
                let mut probs = [0.0f64; 16];
                let mut heap;
                let probs: &mut [f64] = if k <= probs.len() {
                    &mut probs[..k]
                } else {
                    heap = vec![0.0; k];
                    &mut heap
                };
                l.probabilities(row, probs);
                if probs.len() == 2 {
                    probs[1]
                } else {
                    probs[l.decide(probs)]
                }
            }),
        }
    }

    /// A numeric cell other than a finite number: parsed text, imputed, or the reason it is
    /// refused (out of line: the hot loop keeps the finite-number case only).
    #[cold]
    #[inline(never)]
    fn numeric_slow(&self, j: usize, slot: &NumSlot, cell: &Cell<'_>) -> std::result::Result<f64, Reject> {
        match numeric_value(cell, &self.missing_tokens) {
            Ok(Some(v)) => Ok(v),
            Err(why) => Err(format!("column {:?}: {why}", self.columns[j])),
            Ok(None) => {
                slot.impute.ok_or_else(|| format!("column {:?} is missing and its rule is reject", self.columns[j]))
            }
        }
    }

    /// Check and prepare each cell, in slot order, handing each to `out`.
    #[inline]
    fn prepare(&self, cells: &[Cell<'_>], mut out: impl FnMut(Prepared<'_>)) -> std::result::Result<(), Reject> {
        let (num_cells, cat_cells) = cells.split_at(self.numeric.len());
        for (j, (slot, cell)) in self.numeric.iter().zip(num_cells).enumerate() {
            let v = match cell {
                // the common case, without building the general answer
                Cell::Num(v) if v.is_finite() => *v,
                _ => self.numeric_slow(j, slot, cell)?,
            };
            out(Prepared::Num(slot, j, v));
        }
        for (j, (slot, cell)) in self.categorical.iter().zip(cat_cells).enumerate() {
            let name = &self.columns[self.numeric.len() + j];
            let text = category_text(cell, &self.missing_tokens).map_err(|why| format!("column {name:?}: {why}"))?;
            match text {
                Some(t) => out(Prepared::Cat(slot, slot.index.get(t.as_ref()).copied())),
                None if slot.reject_missing => {
                    return Err(format!("column {name:?} is missing and its rule is reject"))
                }
                None => out(Prepared::Cat(slot, slot.missing)),
            }
        }
        Ok(())
    }
}

/// A numeric column's value in a serving cell, by the rules training applies to a CSV or JSON
/// cell (`data::cells`): `Ok(None)` is missing (absent, `null`, a missing token); text must
/// parse as a finite number. The reason of an error names no column (the caller adds it).
#[inline]
pub fn numeric_value(cell: &Cell<'_>, missing_tokens: &[String]) -> std::result::Result<Option<f64>, String> {
    let v = match cell {
        Cell::Num(v) => *v,
        Cell::Missing => return Ok(None),
        Cell::Text(s) if crate::data::is_missing(s, missing_tokens) => return Ok(None),
        Cell::Text(s) => s.trim().parse::<f64>().map_err(|_| format!("{s:?} is not a number"))?,
        Cell::Invalid(t) => return Err(format!("expected a number, got {t}")),
    };
    if v.is_finite() {
        Ok(Some(v))
    } else {
        Err(format!("{v} is not a finite number"))
    }
}

/// A categorical column's category in a serving cell, by the rules training applies: `Ok(None)`
/// is missing; text is trimmed; a number is its text (integers without a fraction).
#[inline]
pub fn category_text<'c>(
    cell: &'c Cell<'_>,
    missing_tokens: &[String],
) -> std::result::Result<Option<Cow<'c, str>>, String> {
    Ok(match cell {
        Cell::Missing => None,
        Cell::Text(s) if crate::data::is_missing(s, missing_tokens) => None,
        Cell::Text(s) => Some(Cow::Borrowed(s.trim())),
        Cell::Num(v) => Some(Cow::Owned(crate::data::cells::number_category(*v))),
        Cell::Invalid(t) => return Err(format!("expected a category, got {t}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load_csv, ColumnSpec};
    use crate::params::Params;

    fn params(scale: &str, extra: &str) -> Params {
        let text = format!(
            "name: t\ndata: {{train: x.csv}}\ntarget: y\nfeatures: {{numeric: [a], categorical: [c]}}\n\
             model: {{kind: linear}}\nscale: {scale}\n{extra}"
        );
        let p: crate::params::ParamsFile =
            crate::util::yaml::parse_yaml(std::path::Path::new("t.yaml"), &text).unwrap();
        p.check(std::path::Path::new("t.yaml")).unwrap()
    }

    fn table(params: &Params, csv: &str) -> Table {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, csv).unwrap();
        let spec = ColumnSpec::of(params);
        load_csv(&[p], &spec).unwrap().0
    }

    const CSV: &str = "a,c,y\n1,red,1\n,blue,2\n3,,3\n5,red,4\n";

    #[test]
    fn fit_imputes_standardizes_and_sorts_categories() {
        let p = params("standardize", "");
        let prep = Preprocessing::fit(&p, &table(&p, CSV), &[0, 1, 2, 3]).unwrap();
        let a = &prep.numeric[0];
        assert_eq!(a.impute, Some(3.0));
        assert_eq!(a.center, 3.0);
        assert!((a.scale - 2.0f64.sqrt()).abs() < 1e-12); // values 1,3,3,5
        assert_eq!(prep.categorical[0].categories, vec!["blue", "missing", "red"]);
        let x = prep.design(&table(&p, CSV)).unwrap();
        assert_eq!(x.shape(), &[4, 4]);
        assert_eq!(x.row(2).to_vec(), vec![0.0, 0.0, 1.0, 0.0]);
        assert_eq!(prep.feature_names()[1], "c=blue");
    }

    #[test]
    fn scorer_matches_design_matrix_and_handles_unseen_and_bad_cells() {
        let p = params("standardize", "missing: {numeric: median}\n");
        let t = table(&p, CSV);
        let prep = Preprocessing::fit(&p, &t, &[0, 1, 2, 3]).unwrap();
        let coef = [2.0, 10.0, 20.0, 30.0];
        let s = Scorer::new(&prep, &coef, 0.5).unwrap();
        let x = prep.design(&t).unwrap();
        let rows: Vec<Vec<Cell>> = vec![
            vec![Cell::Num(1.0), Cell::Text("red".into())],
            vec![Cell::Missing, Cell::Text("blue".into())],
            vec![Cell::Text("3".into()), Cell::Text("NA".into())],
            vec![Cell::Num(5.0), Cell::Text(" red ".into())],
        ];
        for (i, cells) in rows.iter().enumerate() {
            let want = 0.5 + x.row(i).iter().zip(&coef).map(|(a, b)| a * b).sum::<f64>();
            assert!((s.score(cells).unwrap() - want).abs() < 1e-12, "row {i}");
        }
        let unseen = s.score(&[Cell::Num(3.0), Cell::Text("purple".into())]).unwrap();
        assert!((unseen - 0.5).abs() < 1e-12, "unseen category is all-zero: {unseen}");
        assert!(s.score(&[Cell::Text("abc".into()), Cell::Missing]).unwrap_err().contains("not a number"));
        assert!(s.score(&[Cell::Num(f64::NAN), Cell::Missing]).unwrap_err().contains("finite"));
        assert!(s.score(&[Cell::Invalid("boolean"), Cell::Missing]).unwrap_err().contains("boolean"));
    }

    #[test]
    fn reject_rule_rejects_missing_at_prediction_time() {
        let p = params("none", "missing: {columns: {a: reject, c: reject}}\n");
        let t = table(&p, "a,c,y\n1,red,1\n2,blue,2\n");
        let prep = Preprocessing::fit(&p, &t, &[0, 1]).unwrap();
        let s = Scorer::new(&prep, &[1.0, 0.0, 0.0], 0.0).unwrap();
        assert!(s.score(&[Cell::Missing, Cell::Text("red".into())]).unwrap_err().contains("reject"));
        assert!(s.score(&[Cell::Num(1.0), Cell::Text("".into())]).unwrap_err().contains("reject"));
        assert!(Preprocessing::fit(&p, &table(&p, "a,c,y\n,red,1\n2,blue,2\n"), &[0, 1]).is_err());
        // only the given rows count: row 0 (with the missing value) left out
        assert!(Preprocessing::fit(&p, &table(&p, "a,c,y\n,red,1\n2,blue,2\n"), &[1]).is_ok());
    }

    #[test]
    fn median_matches_numpy() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
