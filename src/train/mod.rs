//! The training pipeline as a library: rows in (CSV files, or the records of a topic handed
//! over by the caller), a fitted, evaluated [`Artifact`] and its report's data out. It knows no
//! flag, store, bus or runtime: `cmd::train` orchestrates it, and tests, benches and the
//! report call it directly.
//!
//! Architecture invariant: the same params and rows give the same model whatever the number
//! of threads; nothing here touches the network.

pub mod topic;

use std::time::Instant;

use crate::artifact::{Artifact, Estimator, Evaluation, TopicData, TrainingData};
use crate::data::spool::SpoolWriter;
use crate::data::{self, Blocks, ColumnSpec, FileInfo, Rows};
use crate::error::{Error, Result};
use crate::features::Preprocessing;
use crate::model::{self, Fit, MetricsAcc};
use crate::params::{Model, Params, Split};
use crate::report::ReportData;
use crate::stats::BlockDesign;

pub use topic::{fit_from_records, ReadOptions, RecordSource};

/// Everything up to (not including) the store: a fitted, evaluated artifact. Pure CPU work.
pub fn fit_artifact(params: &Params) -> Result<Artifact> {
    fit(params, &()).map(|f| f.artifact)
}

/// A fitted, evaluated model and what its report shows.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The artifact, ready to store.
    pub artifact: Artifact,
    /// The training report's data (held-out points, standardised coefficients).
    pub report: ReportData,
}

/// How much work a step has, when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Bytes (reading files).
    Bytes(u64),
    /// Records (reading a topic).
    Records(u64),
}

/// Told about the long steps of training, for a progress bar.
pub trait Observer: Sync {
    /// A step starts; its size when known.
    fn stage(&self, what: &str, total: Option<Work>);
    /// `n` more bytes or records of the current step are done.
    fn advance(&self, n: u64);
}

/// Nobody watching.
impl Observer for () {
    fn stage(&self, _: &str, _: Option<Work>) {}
    fn advance(&self, _: u64) {}
}

/// [`fit_artifact`] with the report's data, telling `obs` about each long step.
///
/// The CSV files are parsed in parallel straight into a [`crate::data::spool::Spool`] on disk, and
/// every statistics pass reads it back block by block: memory does not grow with the rows
/// (except for lasso, elastic net and the tree kinds, which hold the design matrix).
pub fn fit(params: &Params, obs: &dyn Observer) -> Result<Fitted> {
    let size = params.train_files().iter().map(|p| std::fs::metadata(p).map(|m| m.len()).ok()).sum::<Option<u64>>();
    obs.stage("reading the training data", size.map(Work::Bytes));
    let t0 = Instant::now();
    let spec = ColumnSpec::of(params);
    let mut spool = SpoolWriter::new(&spec)?;
    let files = data::read_csv(
        params.train_files(),
        &spec,
        &|n| obs.advance(n),
        crate::util::threads::default_threads(),
        &mut |t| spool.push_table(&t),
    )?;
    if spool.rows() == 0 {
        let names: Vec<String> = params.train_files().iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Data { source_name: names.join(","), line: 0, message: "no data rows".into() });
    }
    let spool = spool.finish()?;
    tracing::info!(
        rows = spool.rows(),
        files = files.len(),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "loaded training data"
    );
    fit_rows(params, &spool, files, None, obs)
}

/// Fit on rows already read (a CSV table, or a spool of a file or a topic): the split,
/// preprocessing, estimator and evaluation, in streaming passes over `rows` (parallel for OLS
/// and ridge, whose statistics are merged in a fixed order: the result does not depend on the
/// number of threads).
pub fn fit_rows(
    params: &Params,
    rows: &dyn Blocks,
    mut files: Vec<FileInfo>,
    topic: Option<TopicData>,
    obs: &dyn Observer,
) -> Result<Fitted> {
    let spec = ColumnSpec::of(params);
    let threads = crate::util::threads::default_threads();
    let n = rows.rows();
    if n == 0 {
        return Err(Error::Model("no training rows".into()));
    }
    // Train and test rows: a selection of the rows (the held-out split is a bitset), never copies.
    let test_table;
    let mask;
    let (train_rows, test_rows, test_src): (Rows<'_>, Rows<'_>, &dyn Blocks) = match params.split() {
        Split::File(path) => {
            let (t, info) = data::load_csv(&[path.to_path_buf()], &spec)?;
            files.extend(info);
            test_table = t;
            (Rows::All(n), Rows::All(test_table.len()), &test_table)
        }
        Split::Fraction { fraction, seed } => {
            if n < 3 {
                return Err(Error::Model(format!("need at least 3 rows to hold some out, got {n}")));
            }
            mask = data::held_out(n, fraction, seed);
            (Rows::NotIn(&mask), Rows::In(&mask), rows)
        }
    };
    let held = match train_rows {
        Rows::NotIn(mask) => Some(mask),
        _ => None,
    };
    obs.stage("fitting", None);
    let t1 = Instant::now();
    let prep = Preprocessing::fit_blocks(params, rows, train_rows)?;
    let t_drift = Instant::now();
    let drift_columns = crate::stats::drift_columns(&prep, rows, train_rows, threads)?;
    tracing::debug!(ms = t_drift.elapsed().as_secs_f64() * 1e3, "counted the drift reference");
    let train = BlockDesign { prep: &prep, blocks: rows, rows: train_rows };
    let test = BlockDesign { prep: &prep, blocks: test_src, rows: test_rows };
    tracing::info!(kind = params.model().as_str(), rows = train_rows.len(), features = prep.width(), "fitting");
    if params.model().kind().is_classifier() {
        let mut fit = model::fit_classifier(params.model(), params.target_kind(), &train)?;
        tracing::info!(fit = %fit.summary(), elapsed_ms = t1.elapsed().as_millis() as u64, "fitted");
        let counts = model::class_counts(&train, fit.classes().len())?;
        let total: f64 = counts.iter().sum();
        let prior: Vec<f64> = counts.iter().map(|c| c / total).collect();
        if fit.classes().len() == 2 {
            let rule = params.decision();
            let threshold = match rule {
                crate::params::Decision::Fixed(t) => t,
                _ => {
                    // a pass over the held-out rows for class 1's probabilities
                    let mut scored = Vec::with_capacity(test_rows.len());
                    fit.evaluate_classes_with(&test, &prior, false, &mut |t, probs| scored.push((probs[1], t == 1)))?;
                    model::choose_threshold(&mut scored, rule)
                        .map_err(|e| Error::Model(format!("target.threshold: {e}")))?
                }
            };
            fit.set_threshold(threshold);
            tracing::info!(threshold, rule = %rule.describe(), "decision threshold");
        }
        let (train_metrics, _) = fit.evaluate_classes(&train, &prior, false)?;
        // held out: metrics, the report's curves and points in one pass
        let stride = crate::report::stride(test_rows.len());
        let mut points = Vec::with_capacity(test_rows.len().div_ceil(stride));
        let mut curves = crate::report::ClassCurves::new(fit.classes().to_vec());
        let threshold = fit.classifier().map_or(model::DEFAULT_THRESHOLD, |c| c.threshold());
        let mut i = 0usize;
        let (model_metrics, baseline) = fit.evaluate_classes_with(&test, &prior, true, &mut |t, probs| {
            curves.add(t, probs);
            if i.is_multiple_of(stride) {
                let k = crate::model::logistic::decide(probs, threshold);
                points.push((t as f64, if probs.len() == 2 { probs[1] } else { probs[k] }));
            }
            i += 1;
        })?;
        let sd = crate::report::column_sd(&train)?;
        let evaluation = Evaluation { model: model_metrics, baseline, train: train_metrics };
        let rows = (train_rows.len(), test_rows.len());
        let drift = drift_reference(drift_columns, &points);
        return finish(params, prep, fit, evaluation, files, topic, rows, (points, Some(curves)), &sd, drift);
    }
    let (fit, gram) = match params.model() {
        m @ (Model::Linear | Model::Ridge { .. }) => {
            let gm = crate::stats::gram(&prep, rows, train_rows, threads)?;
            (Fit::Linear(model::fit_gram(m, &gm)?), Some(gm))
        }
        m => (model::fit(m, &train)?, None),
    };
    tracing::info!(fit = %fit.summary(), elapsed_ms = t1.elapsed().as_millis() as u64, "fitted");
    let train_mean = match &gram {
        Some(gm) => gm.y_mean,
        None => crate::stats::target_mean(rows, train_rows, threads)?,
    };
    // held out: metrics and the report's points in one streaming pass
    let stride = crate::report::stride(test_rows.len());
    let (train_metrics, model_metrics, baseline, points) = match fit.linear() {
        Some(l) => {
            let ((train_acc, _, _), (model_acc, base_acc, points)) = match held {
                Some(mask) => crate::stats::linear_metrics_split(&prep, l, rows, mask, train_mean, stride, threads)?,
                None => (
                    crate::stats::linear_metrics(&prep, l, rows, train_rows, train_mean, usize::MAX, threads)?,
                    crate::stats::linear_metrics(&prep, l, test_src, test_rows, train_mean, stride, threads)?,
                ),
            };
            (train_acc.finish(), model_acc.finish(), base_acc.finish(), points)
        }
        None => {
            let (train_metrics, _) = fit.evaluate(&train, train_mean)?;
            let (mut model_acc, mut base_acc) = (MetricsAcc::default(), MetricsAcc::default());
            let mut points = Vec::with_capacity(test_rows.len().div_ceil(stride));
            let mut i = 0usize;
            fit.for_each_prediction(&test, &mut |t, p| {
                model_acc.add(t, p);
                base_acc.add(t, train_mean);
                if i.is_multiple_of(stride) {
                    points.push((t, p));
                }
                i += 1;
            })?;
            (train_metrics, model_acc.finish(), base_acc.finish(), points)
        }
    };
    let sd = match &gram {
        Some(gm) => gm.column_sd(),
        None => crate::report::column_sd(&train)?,
    };
    let evaluation = Evaluation { model: model_metrics, baseline, train: train_metrics };
    let drift = drift_reference(drift_columns, &points);
    let rows = (train_rows.len(), test_rows.len());
    finish(params, prep, fit, evaluation, files, topic, rows, (points, None), &sd, drift)
}

/// The artifact's drift reference: the input columns', and the predictions of the held-out
/// rows the report samples (`points`: (actual, predicted)).
fn drift_reference(columns: Vec<crate::drift::ColumnReference>, points: &[(f64, f64)]) -> crate::drift::Reference {
    let predictions: Vec<f64> = points.iter().map(|p| p.1).collect();
    crate::drift::Reference {
        schema_version: crate::drift::REFERENCE_VERSION,
        columns,
        prediction: crate::drift::numeric_reference(&predictions),
    }
}

/// The artifact of a fitted, evaluated model, checked, and its report's data.
#[allow(clippy::too_many_arguments)]
fn finish(
    params: &Params,
    prep: Preprocessing,
    fit: Fit,
    metrics: Evaluation,
    files: Vec<FileInfo>,
    topic: Option<TopicData>,
    (train_rows, test_rows): (usize, usize),
    (points, curves): (Vec<(f64, f64)>, Option<crate::report::ClassCurves>),
    sd: &[f64],
    drift: crate::drift::Reference,
) -> Result<Fitted> {
    let created_at = chrono::Utc::now();
    let mut salt: String = files.iter().map(|f| f.sha256.as_str()).collect();
    if let Some(t) = &topic {
        salt.push_str(&serde_json::to_string(t).unwrap_or_default());
    }
    let artifact = Artifact {
        schema_version: crate::artifact::SCHEMA_VERSION_DRIFT,
        format: crate::artifact::FORMAT.to_string(),
        model_name: params.name().to_string(),
        version: crate::artifact::new_version(created_at, salt.as_bytes()),
        created_at,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        params: params.clone(),
        input_schema: Artifact::schema_of(&prep, params.target()),
        estimator: Estimator { kind: params.model().as_str().to_string(), feature_names: prep.feature_names(), fit },
        preprocessing: prep,
        metrics,
        training_data: TrainingData { files, topic, train_rows, test_rows },
        drift: Some(drift),
    };
    artifact.check("(new model)")?;
    let report = ReportData::new(&artifact, points, sd, curves);
    Ok(Fitted { artifact, report })
}

#[cfg(test)]
mod tests {
    use crate::drift::{jensen_shannon, psi, Distribution, PSI_DRIFT, PSI_WATCH};

    /// The wine model's reference: every column and the predictions; all the wine rows (of which
    /// the training rows are 80%) binned against it score stable, alcohol moved by one standard
    /// deviation scores drift.
    #[test]
    fn an_artifact_carries_the_drift_reference_of_its_training_rows() {
        let params = crate::params::Params::load(std::path::Path::new("params/params.yaml")).unwrap();
        let a = super::fit_artifact(&params).unwrap();
        let r = a.drift.as_ref().expect("a new artifact has a drift reference");
        let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, params.numeric().iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.prediction.proportions.len(), crate::drift::BINS);
        let text = std::fs::read_to_string("data/winequality-red.csv").unwrap();
        let rows: Vec<Vec<f64>> =
            text.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').map(|h| h.trim_matches('"')).collect();
        for c in &r.columns {
            let Distribution::Numeric(n) = &c.distribution else { panic!("{c:?}") };
            assert_eq!(n.count, a.training_data.train_rows as u64);
            let j = header.iter().position(|h| *h == c.name).unwrap();
            let mut counts = vec![0u64; n.proportions.len()];
            rows.iter().for_each(|row| counts[n.bin(row[j])] += 1);
            let stable = psi(&n.proportions, &counts);
            assert!(stable < PSI_WATCH, "{}: PSI {stable} on the rows it was trained on", c.name);
            if c.name == "alcohol" {
                let values: Vec<f64> = rows.iter().map(|row| row[j]).collect();
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
                let mut shifted = vec![0u64; n.proportions.len()];
                values.iter().for_each(|v| shifted[n.bin(v + sd)] += 1);
                let moved = psi(&n.proportions, &shifted);
                assert!(moved >= PSI_DRIFT, "alcohol + 1 sd: PSI {moved}");
                assert!(jensen_shannon(&n.proportions, &shifted) > jensen_shannon(&n.proportions, &counts));
            }
        }
        // it survives the artifact's JSON
        let back: crate::artifact::Artifact = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back.drift, a.drift);
    }
}
