//! Adaptive batching of inference requests (`--batch-max-rows`, `--batch-wait-us`): the HTTP
//! and gRPC handlers decode a request and hand its rows to one scoring thread, which takes every
//! request that is waiting (up to `max_rows` rows, and for up to `wait` more when it has fewer)
//! and scores them together, then answers each. With a shadow model (`--shadow`) it then scores
//! the same rows with the shadow and records those predictions on the shadow topic, after the
//! callers have their answers: the shadow never delays or changes an answer.
//!
//! Why one thread: scoring a row costs well under a microsecond, so the scorer never needs a
//! second core, while the handlers (parsing, encoding, the connections) keep both; a request of
//! 100,000 rows is scored here without holding up the threads that read other requests. Why no
//! wait by default: a batch is what arrived while the previous one was scored, so under load
//! batches grow by themselves, and a wait only adds latency (BENCHMARKS.md, "Adaptive batching").
//!
//! Invariant: each request is scored by the one model it was decoded for; rows of different
//! requests never mix in an answer.

use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::events::metrics;
use crate::features::{Cell, Scorer};
use crate::messages::{DriftMessage, OriginRef, PredictionRef, Probabilities};
use crate::predict::drift::Monitor;
use crate::predict::{predict_cells, prediction_version, Served};

/// The most rows a batch gathers by default (a request with more is its own batch): 1,024 rows of
/// the wine model score in about 0.3 ms, the most a request waits behind another's rows.
pub const DEFAULT_MAX_ROWS: usize = 1024;

/// How long a batch waits for more requests by default: not at all.
pub const DEFAULT_WAIT: Duration = Duration::ZERO;

/// Requests waiting for the scoring thread before new ones are refused (503, "retry").
const QUEUE: usize = 4096;

/// How requests are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// The most rows a batch gathers (`--batch-max-rows`).
    pub max_rows: usize,
    /// How long a batch with fewer rows waits for more requests (`--batch-wait-us`).
    pub wait: Duration,
}

impl Default for BatchOptions {
    fn default() -> BatchOptions {
        BatchOptions { max_rows: DEFAULT_MAX_ROWS, wait: DEFAULT_WAIT }
    }
}

/// One row's outcome: the value and a classifier's class, or why the row was rejected.
pub type RowScore = std::result::Result<(f64, Option<usize>), String>;

/// A request's scores, row by row.
#[derive(Debug, Default)]
pub struct Scores {
    /// Each row's outcome.
    pub rows: Vec<RowScore>,
    /// A classifier's probabilities, `classes` per row (NaN for a rejected row); empty for a
    /// regressor.
    pub probabilities: Vec<f64>,
}

/// Score `cells` (rows of the scorer's input columns, one after another) with `scorer`.
pub fn score_rows(scorer: &Scorer, cells: &[Cell<'_>]) -> Scores {
    let k = scorer.input_columns().len().max(1);
    let classes = scorer.classes().len();
    let mut out = Scores { rows: Vec::with_capacity(cells.len() / k), probabilities: Vec::new() };
    out.probabilities.reserve(classes * (cells.len() / k));
    let mut probs = Vec::with_capacity(classes);
    for row in cells.chunks(k) {
        let r = predict_cells(scorer, row, &mut probs);
        if classes > 0 {
            match r {
                Ok(_) => out.probabilities.extend_from_slice(&probs),
                Err(_) => out.probabilities.extend(std::iter::repeat_n(f64::NAN, classes)),
            }
        }
        out.rows.push(r);
    }
    out
}

/// A request's rows for the scoring thread.
pub struct Rows {
    /// The model that answers.
    pub model: Arc<Served>,
    /// The rows' cells, in the model's column order.
    pub cells: Vec<Cell<'static>>,
    /// Score them with the shadow model too, and record its predictions.
    pub shadow: Option<ShadowOf>,
}

/// What a shadow prediction of a request's row is recorded with.
pub struct ShadowOf {
    /// The shadow model.
    pub model: Arc<Served>,
    /// `http` or `grpc`.
    pub api: &'static str,
    /// The request's id (the server makes one when the request has none).
    pub request_id: String,
}

/// Shadow predictions on their way to the shadow topic: (key, message) pairs of one batch.
pub type ShadowBatch = Vec<(String, Vec<u8>)>;

/// The drift of what requests bring: the monitor the scoring thread counts every scored row
/// into, and where its closed windows go.
pub struct RequestDrift {
    /// Counts the rows of every request, scored by the version it was decoded for.
    pub monitor: Monitor,
    /// The `model_drift` topic's writer.
    pub sink: mpsc::Sender<Vec<DriftMessage>>,
}

/// Why a request was not scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: the server is over its capacity (503; the client retries).
    Busy,
    /// The scoring thread has stopped (the process is ending).
    Stopped,
}

struct Job {
    rows: Rows,
    reply: oneshot::Sender<Scores>,
}

/// The handle the servers score through (cheap to clone).
#[derive(Clone)]
pub struct Batcher {
    tx: std_mpsc::SyncSender<Job>,
}

impl Batcher {
    /// Start the scoring thread; shadow predictions go to `shadow` (when there is a shadow), and
    /// the rows it scores are counted into `drift`'s windows.
    pub fn start(
        opts: BatchOptions,
        shadow: Option<mpsc::Sender<ShadowBatch>>,
        drift: Option<RequestDrift>,
    ) -> Result<Batcher> {
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("modelcast-score".into())
            .spawn(move || run(&rx, opts, shadow.as_ref(), drift))
            .map_err(|e| Error::io("start the scoring thread", "-", e))?;
        Ok(Batcher { tx })
    }

    /// Score `rows` in the next batch.
    pub async fn score(&self, rows: Rows) -> std::result::Result<Scores, Refused> {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Job { rows, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(Refused::Stopped),
        }
        answer.await.map_err(|_| Refused::Stopped)
    }
}

/// The scoring thread: gather a batch, score it, count its drift, answer, then the shadow;
/// until every handle is gone (then the open drift window is closed and sent).
fn run(
    rx: &std_mpsc::Receiver<Job>,
    opts: BatchOptions,
    shadow: Option<&mpsc::Sender<ShadowBatch>>,
    mut drift: Option<RequestDrift>,
) {
    let mut batch: Vec<Job> = Vec::new();
    let mut shadowed: Vec<(Rows, Vec<Option<f64>>)> = Vec::new();
    loop {
        // wait for a request, or until the open drift window's time is up
        let first = match drift.as_ref().and_then(|d| d.monitor.deadline()) {
            Some(due) => match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    send_windows(drift.as_mut());
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut rows = row_count(&first.rows);
        batch.push(first);
        let deadline = Instant::now() + opts.wait;
        while rows < opts.max_rows {
            let next = match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty) if !opts.wait.is_zero() => {
                    match deadline.checked_duration_since(Instant::now()).map(|left| rx.recv_timeout(left)) {
                        Some(Ok(job)) => job,
                        Some(Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected)) | None => break,
                    }
                }
                Err(_) => break,
            };
            rows += row_count(&next.rows);
            batch.push(next);
        }
        let m = metrics();
        m.http_batch_rows.observe(rows as f64);
        m.http_batch_requests.observe(batch.len() as f64);
        for Job { rows, reply } in batch.drain(..) {
            let scores = score_rows(&rows.model.scorer, &rows.cells);
            if let Some(d) = drift.as_mut() {
                d.monitor.follow(&rows.model);
                let k = rows.model.scorer.input_columns().len().max(1);
                for (row, r) in rows.cells.chunks(k).zip(&scores.rows) {
                    d.monitor.record(Some(row), r.as_ref().ok().map(|(v, _)| *v));
                }
            }
            if rows.shadow.is_some() {
                let served = scores.rows.iter().map(|r| r.as_ref().ok().map(|(v, _)| *v)).collect();
                shadowed.push((rows, served));
            }
            // a caller that went away (a closed connection) needs no answer
            let _ = reply.send(scores);
        }
        if let Some(sink) = shadow {
            record_shadow(&mut shadowed, sink);
        }
        shadowed.clear();
        send_windows(drift.as_mut());
    }
    if let Some(d) = drift.as_mut() {
        d.monitor.stop();
        send_windows(Some(d));
    }
}

/// Close the drift window if its time is up, and hand the closed ones to the topic's writer
/// (dropped, and counted, if it is behind).
fn send_windows(drift: Option<&mut RequestDrift>) {
    let Some(d) = drift else { return };
    d.monitor.tick();
    let windows = d.monitor.take();
    let n = windows.len() as u64;
    if n > 0 && d.sink.try_send(windows).is_err() {
        crate::predict::drift::not_published(n, "the model_drift writer is behind");
    }
}

fn row_count(rows: &Rows) -> usize {
    rows.cells.len() / rows.model.scorer.input_columns().len().max(1)
}

/// Score the shadowed requests with their shadow model, count how it compares, and send its
/// predictions to the shadow topic's writer (dropped, and counted, if it is behind).
fn record_shadow(shadowed: &mut [(Rows, Vec<Option<f64>>)], sink: &mpsc::Sender<ShadowBatch>) {
    if shadowed.is_empty() {
        return;
    }
    let m = metrics();
    let now = crate::util::time::now_ms();
    let mut out: ShadowBatch = Vec::new();
    for (rows, served) in shadowed.iter() {
        let Some(s) = &rows.shadow else { continue };
        let scores = score_rows(&s.model.scorer, &rows.cells);
        let classes = s.model.scorer.classes();
        let many = scores.rows.len() > 1;
        for (i, (r, served)) in scores.rows.iter().zip(served).enumerate() {
            let Some(served) = served else { continue };
            let Ok((value, class)) = r else {
                m.shadow_rejected.inc();
                continue;
            };
            m.shadow_scored.inc();
            m.shadow_abs_diff.observe((served - value).abs());
            let key = if many { format!("{}/{i}", s.request_id) } else { s.request_id.clone() };
            let probs = &scores.probabilities[i * classes.len()..(i + 1) * classes.len()];
            let p = PredictionRef {
                schema_version: prediction_version(&s.model.scorer),
                key: &key,
                prediction: *value,
                class: class.map(|c| classes[c].as_str()),
                probabilities: class.map(|_| Probabilities::Split { labels: classes, values: probs }),
                model_name: &s.model.name,
                model_version: &s.model.version,
                origin: OriginRef::Request { api: s.api, request_id: &s.request_id, row: i as u64 },
                input_timestamp_ms: None,
                predicted_at_ms: now,
                shadow_prediction: None,
                shadow_version: None,
            };
            let mut payload = Vec::with_capacity(256);
            if p.write_json(&mut payload).is_ok() {
                out.push((key, payload));
            }
        }
    }
    let n = out.len();
    if n > 0 && sink.try_send(out).is_err() {
        m.shadow_delivery_failures.inc_by(n as u64);
        tracing::warn!(dropped = n, "shadow predictions of requests dropped: the shadow topic's writer is behind");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Origin, Prediction};

    fn served(params: &str) -> Arc<Served> {
        let params = crate::params::Params::load(std::path::Path::new(params)).unwrap();
        let a = crate::train::fit_artifact(&params).unwrap();
        Arc::new(Served::from_artifact(&a, crate::predict::ServeOptions::key("key")).unwrap())
    }

    fn wine_rows(n: usize) -> Vec<Cell<'static>> {
        let text = std::fs::read_to_string("data/winequality-red.csv").unwrap();
        text.lines()
            .skip(1)
            .take(n)
            .flat_map(|l| l.split(',').take(11).map(|v| Cell::Num(v.parse().unwrap())).collect::<Vec<_>>())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_batched_and_each_gets_its_own_rows_scores() {
        let m = served("params/params.yaml");
        // a wait long enough that the 32 requests sent at once share batches
        let b = Batcher::start(BatchOptions { max_rows: 1024, wait: Duration::from_millis(50) }, None, None).unwrap();
        let before = metrics().http_batch_requests.get_sample_count();
        let sum_before = metrics().http_batch_requests.get_sample_sum();
        let all = wine_rows(32);
        let mut tasks = Vec::new();
        for i in 0..32 {
            let (b, m) = (b.clone(), m.clone());
            let cells = all[i * 11..(i + 1) * 11].to_vec();
            tasks.push(tokio::spawn(async move { b.score(Rows { model: m, cells, shadow: None }).await }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let got = t.await.unwrap().unwrap();
            let want = score_rows(&m.scorer, &all[i * 11..(i + 1) * 11]);
            assert_eq!(got.rows, want.rows, "request {i}");
        }
        let batches = metrics().http_batch_requests.get_sample_count() - before;
        let requests = metrics().http_batch_requests.get_sample_sum() - sum_before;
        // (other tests in this binary may batch at the same time: count what is ours at least)
        assert!(requests >= 32.0, "{requests}");
        assert!(batches < 32, "32 requests sent together went in {batches} batches: nothing was batched");
    }

    #[tokio::test]
    async fn the_batch_size_bounds_a_batch_but_never_splits_a_request() {
        let m = served("params/params.yaml");
        let b = Batcher::start(BatchOptions { max_rows: 4, wait: Duration::from_millis(20) }, None, None).unwrap();
        let cells = wine_rows(10);
        let got = b.score(Rows { model: m.clone(), cells: cells.clone(), shadow: None }).await.unwrap();
        assert_eq!(got.rows.len(), 10);
        assert_eq!(got.rows, score_rows(&m.scorer, &cells).rows);
    }

    #[tokio::test]
    async fn the_shadow_scores_after_the_answer_and_its_predictions_are_recorded() {
        let (champion, shadow) = (served("params/params.yaml"), served("params/params.yaml"));
        let (tx, mut rx) = mpsc::channel(4);
        let b = Batcher::start(BatchOptions::default(), Some(tx), None).unwrap();
        let cells = wine_rows(3);
        let rows = Rows {
            model: champion.clone(),
            cells: cells.clone(),
            shadow: Some(ShadowOf { model: shadow.clone(), api: "http", request_id: "order-7".into() }),
        };
        let got = b.score(rows).await.unwrap();
        let recorded = rx.recv().await.unwrap();
        assert_eq!(recorded.len(), 3);
        for (i, (key, payload)) in recorded.iter().enumerate() {
            assert_eq!(key, &format!("order-7/{i}"));
            let p: Prediction = serde_json::from_slice(payload).unwrap();
            assert_eq!(p.origin, Origin::Request { api: "http".into(), request_id: "order-7".into(), row: i as u64 });
            assert_eq!(p.model_version, shadow.version);
            assert_eq!(Ok((p.prediction, None)), got.rows[i].clone());
        }
    }
}
