//! `modelcast train`: load → fit → evaluate → put → announce → gate. An orchestration of the
//! training pipeline ([`crate::train`]) and the edges (store, bus, the alias log).
//!
//! Invariant: the announcement is published only after the artifact is fully written; if the
//! upload fails, nothing is announced. An alias moves only after the announcement, and with a
//! gate only when the new model beats the alias's current one on the same held-out rows.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;

use crate::aliases::AliasLog;
use crate::artifact::{Artifact, Evaluation};
use crate::bus::Bus;
use crate::cmd::{Edges, Outcome};
use crate::data::{self, RawRows};
use crate::error::{Error, Result};
use crate::export::Format;
use crate::lifecycle::Decision;
use crate::messages::{Announcement, ExportRef, MoveAction};
use crate::model::Metrics;
use crate::params::{GateMetric, Params, Promotion, Split};
use crate::settings::TrainSettings;
use crate::store::Store;
use crate::train::{self, Fitted, Observer, ReadOptions, Work};
use crate::versions::{new_move, Verified};

/// Run `train`: fit, store, announce, (with a promotion) gate and move the alias, print the URI
/// (or the JSON report) on stdout and the metrics table on stderr. A refused promotion is
/// [`Outcome::PromotionRefused`] (exit 4); the model stays stored and announced.
pub async fn run(s: TrainSettings) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(s.loc).await?;
    // preflight, before fitting: the broker answers and accepts us, the train topic (and the
    // topic to train from) exists, the store takes writes (opening it checked the bucket and the
    // credentials)
    let train_topic = bus.topics().train;
    match s.params.topic() {
        Some(data) => bus.check_topics(&[&train_topic, data]).await?,
        None => bus.check_topics(&[&train_topic]).await?,
    };
    store.check_writable().await?;
    if s.promotion.is_some() {
        // and before fitting if the alias cannot be moved here
        AliasLog::of(&store, &bus).check_writable().await?;
    }
    let read = ReadOptions { since: s.since, max_rejected: s.max_rejected, keep_held_out: s.promotion.is_some() };
    let (mut report, artifact, held_out) = publish(&s.params, &read, &s.exports, &store, &bus).await?;
    if let Some(p) = &s.promotion {
        report.promotion =
            Some(promote_new(&s.params, &artifact, &report, held_out, p, s.reason.clone(), &store, &bus).await?);
    }
    eprint!("{}", metrics_table(&report));
    let text = if s.json {
        serde_json::to_string_pretty(&report).map_err(|e| Error::Encode { what: "report", source: e })?
    } else {
        report.uri.clone()
    };
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    match &report.promotion {
        Some(p) if !p.promoted => Ok(Outcome::PromotionRefused),
        _ => Ok(Outcome::Done),
    }
}

/// The promotion part of the `train` report.
#[derive(Debug, Clone, Serialize)]
pub struct PromotionReport {
    /// The alias.
    pub alias: String,
    /// Whether it moved to the new model.
    pub promoted: bool,
    /// Why (the gate's verdict, or why the current model could not be compared).
    pub reason: String,
    /// The gate's metric (`null`: promoted without a gate).
    pub metric: Option<GateMetric>,
    /// The required improvement, as given.
    pub min_improvement: Option<String>,
    /// Held-out rows both models were scored on.
    pub rows: usize,
    /// The new model on those rows.
    pub candidate: Option<Scored>,
    /// The alias's current model on the same rows (`null`: the alias was not set).
    pub current: Option<Scored>,
    /// The mean-of-target baseline on the same rows.
    pub baseline: Option<Metrics>,
    /// Where the move was recorded, when the alias moved.
    pub moved_to: Option<String>,
    /// The drift gate (`--max-drift`, `promotion.max_drift`): the held-out rows counted against
    /// the current model's training reference. Absent when off or when the alias was not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::lifecycle::DriftCheck>,
}

/// One model's metrics on the gate's rows.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// Version id.
    pub version: String,
    /// Metrics on the held-out rows.
    pub metrics: Option<Metrics>,
    /// Why it could not be evaluated, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Gate the new model against the alias's current one on the new model's held-out rows, and move
/// the alias when it passes (or when there is no gate).
#[allow(clippy::too_many_arguments)]
async fn promote_new(
    params: &Params,
    artifact: &Artifact,
    report: &TrainReport,
    held_out: Option<RawRows>,
    p: &Promotion,
    reason: Option<String>,
    store: &Store,
    bus: &Bus,
) -> Result<PromotionReport> {
    let log = AliasLog::of(store, bus);
    let book = log.book().await?;
    let name = &artifact.model_name;
    let current = book.current(name, &p.alias).cloned();
    let mut r = PromotionReport {
        alias: p.alias.clone(),
        promoted: false,
        reason: String::new(),
        metric: p.gate.map(|g| g.metric),
        min_improvement: p.gate.map(|g| g.min_improvement.to_string()),
        rows: 0,
        candidate: None,
        current: None,
        baseline: None,
        moved_to: None,
        drift: None,
    };
    let decision = match &p.gate {
        None => Decision { promote: true, reason: "promoted without a gate (--promote)".into() },
        Some(gate) => {
            let rows = match held_out {
                Some(rows) => rows,
                None => held_out_rows(params, artifact).await?,
            };
            r.rows = rows.len();
            let target = params.target();
            let cand = crate::lifecycle::metrics_on_rows(&artifact.scorer()?, &rows, target, params.target_kind())
                .map_err(|m| Error::Model(format!("the new model cannot be scored on its own held-out rows: {m}")))?;
            r.candidate = Some(Scored { version: artifact.version.clone(), metrics: Some(cand.clone()), error: None });
            let baseline = artifact.metrics.baseline.clone();
            r.baseline = Some(baseline.clone());
            let cur = match &current {
                None => Ok(None),
                Some(mv) => {
                    let old = crate::predict::fetch_verified(store, mv.model_ref()).await;
                    let evaluated = match &old {
                        Ok(old) => old
                            .scorer()
                            .map_err(|e| e.to_string())
                            .and_then(|s| crate::lifecycle::metrics_on_rows(&s, &rows, target, params.target_kind())),
                        Err(e) => Err(format!("cannot load it: {e}")),
                    };
                    if let Some(max) = gate.max_drift {
                        let measured = match &old {
                            Ok(old) => drift_against(old, &rows),
                            Err(e) => Err(format!("cannot load it: {e}")),
                        };
                        r.drift = Some(crate::lifecycle::DriftCheck::judge(max, &mv.version, measured));
                    }
                    r.current = Some(Scored {
                        version: mv.version.clone(),
                        metrics: evaluated.as_ref().ok().cloned(),
                        error: evaluated.as_ref().err().cloned(),
                    });
                    evaluated.map(Some).map_err(|e| (mv.version.clone(), e))
                }
            };
            match cur {
                Ok(cur) => crate::lifecycle::decide(gate, &cand, cur.as_ref(), &baseline),
                Err((v, e)) => Decision {
                    promote: false,
                    reason: format!(
                        "the current {} ({v}) cannot be evaluated on the new model's held-out rows ({e}); \
                         not promoting (compare by hand and use `modelcast promote`)",
                        p.alias
                    ),
                },
            }
        }
    };
    // the drift gate refuses what the metrics would promote
    let refusal = r.drift.as_ref().and_then(|d| d.refusal(&p.alias));
    let decision = match refusal {
        Some(reason) if decision.promote => Decision { promote: false, reason },
        _ => decision,
    };
    r.reason = decision.reason.clone();
    if !decision.promote {
        tracing::warn!(model = %name, alias = %p.alias, version = %artifact.version, reason = %decision.reason,
            "promotion refused; the model is stored and announced, the alias did not move");
        return Ok(r);
    }
    let target = Verified {
        model_name: name.clone(),
        version: artifact.version.clone(),
        key: artifact.key(),
        sha256: report.sha256.clone(),
        input_schema_digest: artifact.input_schema.digest(),
    };
    let why = match reason {
        Some(text) => format!("{text} ({})", decision.reason),
        None => decision.reason,
    };
    let mv = new_move(&target, &p.alias, current.as_ref(), MoveAction::Promote, why);
    let (_, to) = crate::versions::publish(&log, mv).await?;
    r.promoted = true;
    r.moved_to = Some(to);
    Ok(r)
}

/// The new held-out rows counted against `old`'s training reference (the drift gate).
fn drift_against(old: &Artifact, rows: &RawRows) -> std::result::Result<crate::drift::WindowReport, String> {
    let reference = old.drift.as_ref().ok_or_else(|| {
        format!(
            "its artifact has no drift reference (artifact schema_version {}; references came with 4)",
            old.schema_version
        )
    })?;
    let scorer = old.scorer().map_err(|e| e.to_string())?;
    crate::lifecycle::drift_on_rows(&scorer, reference, rows)
}

/// The new model's held-out rows, read raw (as a predictor reads them) from the training files
/// (the same split) or the explicit test file.
async fn held_out_rows(params: &Params, artifact: &Artifact) -> Result<RawRows> {
    let params = params.clone();
    let (train_rows, test_rows) = (artifact.training_data.train_rows, artifact.training_data.test_rows);
    let rows = tokio::task::spawn_blocking(move || match params.split() {
        Split::File(path) => data::read_rows(&[path], params.delimiter(), None),
        Split::Fraction { fraction, seed } => {
            let (_, test) = data::split_indices(train_rows + test_rows, fraction, seed);
            data::read_rows(params.train_files(), params.delimiter(), Some(&test))
        }
    })
    .await
    .map_err(|e| Error::Task { what: "reading held-out rows", message: e.to_string() })??;
    if rows.len() != test_rows {
        return Err(Error::Model(format!(
            "read {} held-out rows for the gate but the model held out {test_rows}: did the training data change \
             during the run?",
            rows.len()
        )));
    }
    Ok(rows)
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
    /// The training report (SVG) beside the artifact.
    pub report_uri: String,
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
    /// ONNX / PMML exports stored beside the artifact (`--export`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportRef>,
    /// Where the announcement went.
    pub announced_to: String,
    /// The promotion (with `--promote`, `--promote-if-better` or a `promotion:` block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionReport>,
}

/// Fit (on a blocking thread), store the report and the artifact, then announce it. From a
/// topic, also the held-out rows read raw when `read.keep_held_out` (for the gate).
pub async fn publish(
    params: &Params,
    read: &ReadOptions,
    exports: &[Format],
    store: &Store,
    bus: &Bus,
) -> Result<(TrainReport, Artifact, Option<RawRows>)> {
    let p = params.clone();
    let progress = Progress::start();
    let obs = progress.clone();
    let bus2 = bus.clone();
    let read = *read;
    let (Fitted { mut artifact, mut report }, held_out) = tokio::task::spawn_blocking(move || match p.topic() {
        None => train::fit(&p, &obs).map(|f| (f, None)),
        Some(topic) => train::fit_from_records(&mut bus2.training_records(topic, read.since)?, &p, &read, &obs),
    })
    .await
    .map_err(|e| Error::Task { what: "training", message: e.to_string() })??;
    // Keys are unique by construction; on the astronomically unlikely clash, take a new version.
    // The report and the exports go first: an artifact in the store always has them beside it,
    // and nothing is announced unless all were stored.
    let mut attempts = 0;
    let (bytes, key, report_key, export_refs) = loop {
        let bytes = artifact.encode()?;
        let key = artifact.key();
        let report_key = crate::report::key_of(&key);
        let svg = crate::report::render(&report);
        let files: Vec<(Format, String, Vec<u8>)> = exports
            .iter()
            .map(|&f| Ok((f, f.key_of(&key), crate::export::export(&artifact, f)?)))
            .collect::<Result<_>>()?;
        let total = svg.len() + bytes.len() + files.iter().map(|f| f.2.len()).sum::<usize>();
        let what = if files.is_empty() { "the report and the model" } else { "the report, exports and the model" };
        progress.stage(&format!("uploading {what} ({})", indicatif::HumanBytes(total as u64)), None);
        let t = Instant::now();
        let stored = async {
            store.put_if_absent(&report_key, svg.as_bytes()).await?;
            for (_, k, b) in &files {
                store.put_if_absent(k, b).await?;
            }
            store.put_if_absent(&key, &bytes).await
        }
        .await;
        match stored {
            Ok(()) => {
                tracing::info!(uri = %store.uri_of(&key), bytes = bytes.len(), report_bytes = svg.len(),
                    exports = files.len(), elapsed_ms = t.elapsed().as_millis() as u64, "stored model and report");
                let refs = files
                    .iter()
                    .map(|(f, k, b)| ExportRef {
                        format: *f,
                        key: k.clone(),
                        uri: store.uri_of(k),
                        sha256: crate::util::hash::sha256_hex(b),
                        size: b.len() as u64,
                    })
                    .collect::<Vec<_>>();
                break (bytes, key, report_key, refs);
            }
            Err(Error::AlreadyExists { .. }) if attempts < 3 => {
                attempts += 1;
                artifact.version = crate::artifact::new_version(artifact.created_at, key.as_bytes());
                report.version = artifact.version.clone();
            }
            Err(e) => return Err(e),
        }
    };
    let uri = store.uri_of(&key);
    let mut ann = Announcement::of(&artifact, uri.clone(), &bytes);
    ann.exports = export_refs;
    progress.stage("announcing", None);
    let announced_to = bus.announce(&ann).await?;
    progress.finish();
    tracing::info!(version = %artifact.version, to = %announced_to, "announced model");
    let report = TrainReport {
        model_name: artifact.model_name.clone(),
        version: artifact.version.clone(),
        uri,
        report_uri: store.uri_of(&report_key),
        sha256: ann.sha256,
        kind: artifact.estimator.kind.clone(),
        metrics: artifact.metrics.clone(),
        train_rows: artifact.training_data.train_rows,
        test_rows: artifact.training_data.test_rows,
        exports: ann.exports.clone(),
        announced_to,
        promotion: None,
    };
    Ok((report, artifact, held_out))
}

/// Progress on stderr only when it is a terminal (never in cron, CI or a pipe, where the log
/// lines say the same): a byte bar while reading the training data, a spinner naming the step
/// otherwise.
#[derive(Clone)]
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn start() -> Progress {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(spinner_style());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Progress(Some(bar))
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn spinner_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
}

impl Observer for Progress {
    fn stage(&self, what: &str, total: Option<Work>) {
        let Some(b) = &self.0 else { return };
        let bar = |template: &str, total: u64| {
            b.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .map(|s| s.progress_chars("=> "))
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_length(total);
            b.set_position(0);
        };
        match total {
            Some(Work::Bytes(n)) => bar("{msg} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)", n),
            Some(Work::Records(n)) => {
                bar("{msg} [{wide_bar}] {human_pos}/{human_len} records ({per_sec}, {eta} left)", n)
            }
            None => b.set_style(spinner_style()),
        }
        b.set_message(what.to_string());
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
}

/// The short metrics table printed on stderr.
pub fn metrics_table(r: &TrainReport) -> String {
    let m = &r.metrics;
    let row = |name: &str, x: &Metrics| format!("{name:<10} {:>9.4} {:>9.4} {:>9.4}\n", x.r2, x.rmse, x.mae);
    let mut s = format!(
        "model {} version {} ({}; {} train rows, {} held out)\n",
        r.model_name, r.version, r.kind, r.train_rows, r.test_rows
    );
    match (&m.model.classification, &m.baseline.classification) {
        (Some(c), Some(b)) => {
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
            s.push_str(&format!(
                "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                "", "accuracy", "balanced", "log loss", "ROC AUC", "F1", "Brier"
            ));
            for (name, x) in [("model", c), ("baseline", b)] {
                s.push_str(&format!(
                    "{name:<10} {:>9.4} {:>9.4} {:>9.4} {:>9} {:>9.4} {:>9.4}\n",
                    x.accuracy,
                    x.balanced_accuracy,
                    x.log_loss,
                    opt(x.auc),
                    x.f1,
                    x.brier
                ));
            }
        }
        _ => {
            s.push_str(&format!("{:<10} {:>9} {:>9} {:>9}\n", "", "R²", "RMSE", "MAE"));
            s.push_str(&row("model", &m.model));
            s.push_str(&row("baseline", &m.baseline));
        }
    }
    s.push_str(&format!("stored at {}\nreport at {}\n", r.uri, r.report_uri));
    for e in &r.exports {
        s.push_str(&format!("{} at {}\n", e.format.as_str(), e.uri));
    }
    if let Some(p) = &r.promotion {
        if let Some(metric) = p.metric {
            let on_rows = |x: &Option<Scored>| {
                x.as_ref()
                    .and_then(|x| x.metrics.as_ref())
                    .map_or_else(|| "-".to_string(), |m| format!("{:.4}", metric.of(m)))
            };
            let name = metric.as_str();
            s.push_str(&format!(
                "gate on {} held-out rows: new {name} {}, current {} {name} {}\n",
                p.rows,
                on_rows(&p.candidate),
                p.alias,
                on_rows(&p.current)
            ));
        }
        if let Some(d) = &p.drift {
            if let (Some(c), Some(psi)) = (&d.worst_column, d.worst_psi) {
                s.push_str(&format!(
                    "drift gate against {} ({}): largest PSI {psi:.4} ({c}), allowed {}\n",
                    p.alias, d.against, d.max_psi
                ));
            }
        }
        let verdict = if p.promoted { "promoted to" } else { "NOT promoted to" };
        s.push_str(&format!("{verdict} {}: {}\n", p.alias, p.reason));
    }
    s
}
