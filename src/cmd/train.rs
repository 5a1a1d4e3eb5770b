//! `modelcast train`: load → fit → evaluate → put → announce. A thin orchestration of the pure
//! core (data, features, model, artifact) and the edges (store, bus).
//!
//! Invariant: the announcement is published only after the artifact is fully written; if the
//! upload fails, nothing is announced.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;

use crate::artifact::{Artifact, Estimator, Evaluation, TrainingData};
use crate::bus::{Announcement, Bus};
use crate::cmd::{Edges, Outcome};
use crate::config::params::{Params, Split};
use crate::data::{self, ColumnSpec, Table};
use crate::error::{Error, Result};
use crate::features::{Preprocessing, TableDesign};
use crate::model::{self, Metrics};
use crate::settings::TrainSettings;
use crate::store::Store;

/// Run `train`: fit, store, announce, print the URI (or the JSON report) on stdout and the
/// metrics table on stderr.
pub async fn run(s: TrainSettings) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(s.loc).await?;
    // fail before fitting if the topic is missing or the broker is down
    bus.check_topics(&[&bus.topics().train]).await?;
    let report = publish(&s.params, &store, &bus).await?;
    eprint!("{}", metrics_table(&report));
    let text = if s.json {
        serde_json::to_string_pretty(&report).map_err(|e| Error::Encode { what: "report", source: e })?
    } else {
        report.uri.clone()
    };
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    Ok(Outcome::Done)
}

/// What `train` reports (stdout with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Model name.
    pub model_name: String,
    /// New version id.
    pub version: String,
    /// Artifact URI.
    pub uri: String,
    /// Artifact sha256.
    pub sha256: String,
    /// Estimator kind.
    pub kind: String,
    /// Held-out and training metrics.
    pub metrics: Evaluation,
    /// Rows used for fitting and evaluation.
    pub train_rows: usize,
    /// Rows held out.
    pub test_rows: usize,
    /// Where the announcement went.
    pub announced_to: String,
}

/// Everything up to (not including) the store: a fitted, evaluated artifact. Pure CPU work.
pub fn fit_artifact(params: &Params) -> Result<Artifact> {
    let t0 = Instant::now();
    let spec = ColumnSpec::of(params);
    let (table, mut files) = data::load_csv(params.train_files(), &spec)?;
    tracing::info!(
        rows = table.len(),
        files = files.len(),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "loaded training data"
    );
    // Train and test rows: indices into the loaded table(s), never copies.
    let test_table;
    let (train_rows, test_rows, test_src): (Vec<usize>, Vec<usize>, &Table) = match params.split() {
        Split::File(path) => {
            let (t, info) = data::load_csv(&[path.to_path_buf()], &spec)?;
            files.extend(info);
            test_table = t;
            ((0..table.len()).collect(), (0..test_table.len()).collect(), &test_table)
        }
        Split::Fraction { fraction, seed } => {
            if table.len() < 3 {
                return Err(Error::Model(format!("need at least 3 rows to hold some out, got {}", table.len())));
            }
            let (tr, te) = data::split_indices(table.len(), fraction, seed);
            (tr, te, &table)
        }
    };
    let t1 = Instant::now();
    let prep = Preprocessing::fit(params, &table, &train_rows)?;
    let train = TableDesign { prep: &prep, table: &table, rows: &train_rows };
    let test = TableDesign { prep: &prep, table: test_src, rows: &test_rows };
    tracing::info!(kind = params.model().as_str(), rows = train_rows.len(), features = prep.width(), "fitting");
    let fit = model::fit(params.model(), &train)?;
    tracing::info!(
        rank = fit.rank,
        iterations = fit.iterations,
        elapsed_ms = t1.elapsed().as_millis() as u64,
        "fitted"
    );
    let train_mean = train_rows.iter().map(|&i| table.target[i]).sum::<f64>() / train_rows.len().max(1) as f64;
    let (train_metrics, _) = fit.evaluate(&train, train_mean)?;
    let (model_metrics, baseline) = fit.evaluate(&test, train_mean)?;
    let created_at = chrono::Utc::now();
    let salt: String = files.iter().map(|f| f.sha256.as_str()).collect();
    let artifact = Artifact {
        schema_version: crate::artifact::SCHEMA_VERSION,
        format: crate::artifact::FORMAT.to_string(),
        model_name: params.name().to_string(),
        version: crate::artifact::new_version(created_at, salt.as_bytes()),
        created_at,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        params: params.clone(),
        input_schema: Artifact::schema_of(&prep, params.target()),
        estimator: Estimator { kind: params.model().as_str().to_string(), feature_names: prep.feature_names(), fit },
        preprocessing: prep,
        metrics: Evaluation { model: model_metrics, baseline, train: train_metrics },
        training_data: TrainingData { files, train_rows: train_rows.len(), test_rows: test_rows.len() },
    };
    artifact.check("(new model)")?;
    Ok(artifact)
}

/// Fit (on a blocking thread), store the artifact, then announce it.
pub async fn publish(params: &Params, store: &Store, bus: &Bus) -> Result<TrainReport> {
    let p = params.clone();
    let mut artifact = tokio::task::spawn_blocking(move || fit_artifact(&p))
        .await
        .map_err(|e| Error::Model(format!("training task failed: {e}")))??;
    // Keys are unique by construction; on the astronomically unlikely clash, take a new version.
    let mut attempts = 0;
    let (bytes, key) = loop {
        let bytes = artifact.encode()?;
        let key = artifact.key();
        let t = Instant::now();
        match store.put_if_absent(&key, &bytes).await {
            Ok(()) => {
                tracing::info!(uri = %store.uri_of(&key), bytes = bytes.len(), elapsed_ms = t.elapsed().as_millis() as u64, "stored model");
                break (bytes, key);
            }
            Err(Error::AlreadyExists { .. }) if attempts < 3 => {
                attempts += 1;
                artifact.version = crate::artifact::new_version(artifact.created_at, key.as_bytes());
            }
            Err(e) => return Err(e),
        }
    };
    let uri = store.uri_of(&key);
    let ann = Announcement::of(&artifact, uri.clone(), &bytes);
    let announced_to = bus.announce(&ann).await?;
    tracing::info!(version = %artifact.version, to = %announced_to, "announced model");
    Ok(TrainReport {
        model_name: artifact.model_name.clone(),
        version: artifact.version.clone(),
        uri,
        sha256: ann.sha256,
        kind: artifact.estimator.kind.clone(),
        metrics: artifact.metrics.clone(),
        train_rows: artifact.training_data.train_rows,
        test_rows: artifact.training_data.test_rows,
        announced_to,
    })
}

/// The short metrics table printed on stderr.
pub fn metrics_table(r: &TrainReport) -> String {
    let m = &r.metrics;
    let row = |name: &str, x: &Metrics| format!("{name:<10} {:>9.4} {:>9.4} {:>9.4}\n", x.r2, x.rmse, x.mae);
    let mut s = format!(
        "model {} version {} ({}; {} train rows, {} held out)\n",
        r.model_name, r.version, r.kind, r.train_rows, r.test_rows
    );
    s.push_str(&format!("{:<10} {:>9} {:>9} {:>9}\n", "", "R²", "RMSE", "MAE"));
    s.push_str(&row("model", &m.model));
    s.push_str(&row("baseline", &m.baseline));
    s.push_str(&format!("stored at {}\n", r.uri));
    s
}
