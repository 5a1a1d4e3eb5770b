//! `modelcast predict`: score records with the newest model, hot-swapping when a newer one is
//! announced.
//!
//! * this module: a [`Served`] model, loading one from the store, and scoring one record.
//! * [`models`]: choosing the first model and following announcements and aliases
//!   ([`models::Swapper`]).
//! * [`input`]: reading records from a file, a followed file, or stdin (a blocking thread).
//! * [`local`]: batch and `--follow` (records from a file or stdin) and [`output`], its outputs.
//! * [`serve`]: the Kafka service (`--serve`) and [`http`], its `/healthz` and `/metrics`.
//! * [`oip`]: request/response scoring in the Open Inference Protocol (`--http`),
//!   [`grpc`], its gRPC service (`--grpc`), and [`api`], which starts them and feeds them models.
//!
//! Invariants: every scored record is scored by exactly one model, named in its prediction; a
//! chunk of records is scored by one model (swaps happen between chunks); a model is swapped in
//! only after its sha256, format and input schema were checked.

pub mod api;
pub mod batch;
pub mod drift;
pub mod grpc;
pub mod http;
pub mod input;
pub mod local;
pub mod models;
pub mod oip;
pub mod output;
pub mod serve;
pub mod tls;

pub use crate::messages::Scored;

use crate::artifact::Artifact;
use std::borrow::Cow;
use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::features::{Cell, Scorer};
use crate::messages::{
    ClassProbabilities, DeadLetter, ModelRef, Origin, OriginRef, Outgoing, OutputTopics, Prediction, PredictionRef,
    Probabilities, MESSAGE_SCHEMA_VERSION,
};
use crate::record::{CsvLayout, Decoder};
use crate::store::Store;

/// A model ready to serve.
pub struct Served {
    /// Model name.
    pub name: String,
    /// Version id.
    pub version: String,
    /// Input-schema digest.
    pub digest: String,
    /// The scoring function.
    pub scorer: Scorer,
    /// The record decoder for its input columns.
    pub decoder: Decoder,
    /// What drift is measured against (none in artifacts written before references).
    pub drift: Option<std::sync::Arc<crate::drift::Reference>>,
}

/// How a replica serves the models it loads: the record field that carries the key, and the
/// decision threshold of a binary classifier when `--threshold` overrides the artifact's.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions<'a> {
    /// The record field that carries the key.
    pub key_field: &'a str,
    /// Class 1 is predicted at or above this probability (binary classifiers only).
    pub threshold: Option<f64>,
}

impl ServeOptions<'_> {
    /// Serving with the record key in `key_field` and each model's own threshold.
    pub fn key(key_field: &str) -> ServeOptions<'_> {
        ServeOptions { key_field, threshold: None }
    }
}

impl Served {
    /// Build from a checked artifact. A threshold override is refused for a model that is not a
    /// binary classifier (the replica keeps serving what it has).
    pub fn from_artifact(a: &Artifact, serve: ServeOptions<'_>) -> Result<Served> {
        let mut scorer = a.scorer()?;
        if let Some(t) = serve.threshold {
            scorer.set_threshold(t).map_err(|why| Error::artifact(format!("{} {}", a.model_name, a.version), why))?;
        }
        let decoder = Decoder::new(scorer.input_columns(), serve.key_field);
        Ok(Served {
            name: a.model_name.clone(),
            version: a.version.clone(),
            digest: a.input_schema.digest(),
            scorer,
            decoder,
            drift: a.drift.clone().map(std::sync::Arc::new),
        })
    }
}

/// Counts of a prediction run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records scored.
    pub scored: u64,
    /// Records dead-lettered.
    pub rejected: u64,
    /// Models swapped in.
    pub swaps: u64,
}

/// Fetch, verify and load the model an announcement or alias move points to: its sha256, its
/// name and version, and its input schema must match what the message says.
pub async fn load_ref(store: &Store, ann: ModelRef<'_>, serve: ServeOptions<'_>) -> Result<Served> {
    Served::from_artifact(&fetch_verified(store, ann).await?, serve)
}

/// Fetch an artifact and check it against what a message says of it (sha256, name, version,
/// input schema): the checks every predictor makes before serving.
pub async fn fetch_verified(store: &Store, ann: ModelRef<'_>) -> Result<Artifact> {
    let uri = store.uri_of(ann.key);
    let bytes = store.get_verified(ann.key, ann.sha256).await?;
    let artifact = Artifact::decode(&uri, &bytes)?;
    if artifact.model_name != ann.model_name || artifact.version != ann.version {
        return Err(Error::artifact(
            uri,
            format!(
                "announced as {} {} but the artifact is {} {}",
                ann.model_name, ann.version, artifact.model_name, artifact.version
            ),
        ));
    }
    if artifact.input_schema.digest() != ann.input_schema_digest {
        return Err(Error::artifact(uri, "input schema differs from the announced input_schema_digest"));
    }
    Ok(artifact)
}

/// Load `key` from the store without an announcement (no sha256 to check against).
pub async fn load_key(store: &Store, key: &str, serve: ServeOptions<'_>) -> Result<Served> {
    let uri = store.uri_of(key);
    let bytes = store.get(key).await?;
    let artifact = Artifact::decode(&uri, &bytes)?;
    Served::from_artifact(&artifact, serve)
}

/// Whether `candidate` may replace `current`: the same model name, the same kind and classes
/// (always: a replica writes one kind of prediction), and the same input schema unless
/// `allow_schema_change` (`--allow-schema-change`, or following an alias, whose moves are vetted
/// and record a schema change).
pub fn check_replacement(current: &Served, candidate: &Served, allow_schema_change: bool) -> Result<()> {
    if candidate.name != current.name {
        return Err(Error::artifact(&candidate.version, format!("model {} is not {}", candidate.name, current.name)));
    }
    let (a, b) = (current.scorer.classes(), candidate.scorer.classes());
    if a != b {
        let what = |c: &[String]| if c.is_empty() { "a number".to_string() } else { format!("the classes {c:?}") };
        return Err(Error::artifact(
            &candidate.version,
            format!("it predicts {}, the serving model {}: a replica writes one kind of prediction", what(b), what(a)),
        ));
    }
    if candidate.digest != current.digest && !allow_schema_change {
        return Err(Error::artifact(
            &candidate.version,
            format!(
                "input schema {} differs from the serving model's {}; records may not fit \
                 (pass --allow-schema-change to accept it)",
                candidate.digest, current.digest
            ),
        ));
    }
    Ok(())
}

/// Score one JSON record.
pub fn score_json(model: &Served, bytes: &[u8], origin: Origin, fallback_key: String, ts: Option<i64>) -> Scored {
    match model.decoder.json(bytes) {
        Ok(d) => {
            let key = d.key.unwrap_or(fallback_key);
            let mut probs = Vec::new();
            let score = predict_cells(&model.scorer, &d.cells, &mut probs);
            finish(model, score, &probs, key, origin, ts, || bytes.to_vec())
        }
        Err(reason) => Scored::Rejected(dead(model, fallback_key, reason, origin, bytes)),
    }
}

/// A JSON record for the hot path ([`score_into`]): its bytes and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The record.
    pub bytes: &'a [u8],
    /// Where it came from.
    pub origin: OriginRef<'a>,
    /// The transport's key (the Kafka key): the record's key when it has no key field.
    pub transport_key: Option<&'a [u8]>,
    /// When it was produced (Kafka timestamp), if known.
    pub timestamp_ms: Option<i64>,
}

impl Incoming<'_> {
    /// The key of a record without a key field: the transport key, else `partition:offset`
    /// (Kafka) or the line number; written into `buf` only when it is not borrowed.
    pub fn fallback_key<'b>(&'b self, buf: &'b mut String) -> &'b str {
        match self.transport_key.map(String::from_utf8_lossy) {
            Some(Cow::Borrowed(k)) => k,
            Some(Cow::Owned(k)) => {
                *buf = k;
                buf
            }
            None => {
                buf.clear();
                let _ = match self.origin {
                    OriginRef::Kafka { partition, offset, .. } => write!(buf, "{partition}:{offset}"),
                    OriginRef::Line { line, .. } => write!(buf, "{line}"),
                    OriginRef::Request { row, .. } => write!(buf, "{row}"),
                };
                buf
            }
        }
    }
}

/// What [`score_into`] made of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A prediction (its message is on the prediction topic).
    Scored(f64),
    /// Rejected, for this reason (its message is a dead letter).
    Rejected(String),
}

/// Buffers the hot path reuses from record to record: the decoded cells (borrowing the batch's
/// records) and the fallback key.
#[derive(Debug, Default)]
pub struct Scratch<'a> {
    cells: Vec<Cell<'a>>,
    key: String,
    probs: Vec<f64>,
    decoded: bool,
}

impl<'a> Scratch<'a> {
    /// The last record's cells in the model's column order, if it could be read.
    pub fn cells(&self) -> Option<&[Cell<'a>]> {
        self.decoded.then_some(&self.cells[..])
    }
}

/// A record's prediction: the value and, for a classifier, the predicted class (its probabilities
/// are in the caller's buffer).
type Predicted = std::result::Result<(f64, Option<usize>), String>;

/// Score cells with `scorer`: a regressor's number, or a classifier's class with its
/// probabilities written into `probs` (the value is then class 1's probability for two classes,
/// the predicted class's for more).
#[inline]
pub fn predict_cells(scorer: &Scorer, cells: &[Cell<'_>], probs: &mut Vec<f64>) -> Predicted {
    scorer.predict(cells, probs)
}

/// The `schema_version` of a prediction of this model.
pub(crate) fn prediction_version(scorer: &Scorer) -> u32 {
    if scorer.classes().is_empty() {
        MESSAGE_SCHEMA_VERSION
    } else {
        crate::messages::CLASSIFIER_PREDICTION_SCHEMA_VERSION
    }
}

/// The service's hot path: score one JSON record and write its message into `msg` (reused):
/// a prediction on `topic`, or a dead letter on `topics.dead_letter`. The record's key is its
/// key field, else the transport key, else `partition:offset` (Kafka) or the line number.
///
/// Once `scratch` and `msg` have grown, a scored record allocates nothing: cells and key are
/// borrowed from the record, the prediction is serialized straight into `msg`'s buffer, and
/// `now_ms` (the prediction time) is read once per batch by the caller.
pub fn score_into<'a, 't>(
    model: &Served,
    rec: &Incoming<'a>,
    now_ms: i64,
    scratch: &mut Scratch<'a>,
    msg: &mut Outgoing<'t>,
    topic: &'t str,
    topics: &OutputTopics<'t>,
) -> crate::error::Result<Verdict> {
    let Scratch { cells, key: keybuf, probs, decoded } = scratch;
    let outcome = model.decoder.json_into(rec.bytes, cells);
    *decoded = outcome.is_ok();
    let field_key = match &outcome {
        Ok(k) => k.as_ref(),
        Err(_) => None,
    };
    let key: &str = match field_key {
        Some(k) => k,
        None => rec.fallback_key(keybuf),
    };
    let score = match &outcome {
        Ok(_) => predict_cells(&model.scorer, cells, probs),
        Err(reason) => Err(reason.clone()),
    };
    write_verdict(model, rec, key, score, probs, now_ms, msg, topic, topics)
}

/// A batch's records decoded ahead of their messages, for a model that scores rows together
/// ([`Scorer::scores_rows`], a tree ensemble): each record's cells and key kept, its design row
/// walked with the others' ([`decode_ahead`]); [`score_ahead_into`] then writes each record's
/// message as [`score_into`] would. Reused from batch to batch.
#[derive(Debug, Default)]
pub struct Ahead<'a> {
    /// The decoded records' cells, the model's column count each.
    cells: Vec<Cell<'a>>,
    records: Vec<AheadRecord<'a>>,
    rows: crate::features::RowBatch,
    one: Vec<Cell<'a>>,
}

/// One record of an [`Ahead`] batch.
#[derive(Debug)]
struct AheadRecord<'a> {
    /// Its key field.
    key: Option<Cow<'a, str>>,
    /// Where its cells start in [`Ahead::cells`], if it could be decoded.
    cells: Option<usize>,
    /// Its row in the batch, or why it is refused.
    row: std::result::Result<usize, String>,
}

impl<'a> Ahead<'a> {
    /// Record `i`'s cells in the model's column order, if it could be read.
    pub fn cells(&self, i: usize) -> Option<&[Cell<'a>]> {
        let at = self.records.get(i)?.cells?;
        Some(&self.cells[at..at + self.one.len()])
    }
}

/// Decode a batch (`None`: a record refused before decoding, left to the caller) and score the
/// decodable records' rows together; [`score_ahead_into`] writes record `i`'s message after.
pub fn decode_ahead<'a>(model: &Served, records: impl Iterator<Item = Option<&'a [u8]>>, ahead: &mut Ahead<'a>) {
    ahead.cells.clear();
    ahead.records.clear();
    ahead.rows.clear();
    for bytes in records {
        let Some(bytes) = bytes else {
            ahead.records.push(AheadRecord { key: None, cells: None, row: Err(String::new()) });
            continue;
        };
        match model.decoder.json_into(bytes, &mut ahead.one) {
            Ok(key) => {
                let at = ahead.cells.len();
                ahead.cells.extend_from_slice(&ahead.one);
                let row = ahead.rows.len();
                let row = model.scorer.push_row(&ahead.one, &mut ahead.rows).map(|()| row);
                ahead.records.push(AheadRecord { key, cells: Some(at), row });
            }
            Err(reason) => ahead.records.push(AheadRecord { key: None, cells: None, row: Err(reason) }),
        }
    }
    model.scorer.score_rows(&mut ahead.rows);
}

/// [`score_into`] for record `i` of a batch decoded by [`decode_ahead`] (`rec` is that record):
/// the same message, bit for bit.
#[allow(clippy::too_many_arguments)] // score_into's, and the batch
pub fn score_ahead_into<'a, 't>(
    model: &Served,
    rec: &Incoming<'a>,
    i: usize,
    ahead: &Ahead<'a>,
    now_ms: i64,
    scratch: &mut Scratch<'a>,
    msg: &mut Outgoing<'t>,
    topic: &'t str,
    topics: &OutputTopics<'t>,
) -> crate::error::Result<Verdict> {
    let Scratch { key: keybuf, probs, .. } = scratch;
    let r = &ahead.records[i];
    let key: &str = match &r.key {
        Some(k) => k,
        None => rec.fallback_key(keybuf),
    };
    let score = match &r.row {
        Ok(row) => Ok(model.scorer.row_prediction(&ahead.rows, *row, probs)),
        Err(reason) => Err(reason.clone()),
    };
    write_verdict(model, rec, key, score, probs, now_ms, msg, topic, topics)
}

/// Write a record's prediction (or its dead letter) into `msg`.
#[allow(clippy::too_many_arguments)] // the record, its outcome and where it goes
#[inline]
fn write_verdict<'t>(
    model: &Served,
    rec: &Incoming<'_>,
    key: &str,
    score: Predicted,
    probs: &[f64],
    now_ms: i64,
    msg: &mut Outgoing<'t>,
    topic: &'t str,
    topics: &OutputTopics<'t>,
) -> crate::error::Result<Verdict> {
    match score {
        Ok((prediction, class)) => {
            let labels = model.scorer.classes();
            let p = PredictionRef {
                schema_version: prediction_version(&model.scorer),
                key,
                prediction,
                class: class.map(|c| labels[c].as_str()),
                probabilities: class.map(|_| Probabilities::Split { labels, values: probs }),
                model_name: &model.name,
                model_version: &model.version,
                origin: rec.origin,
                input_timestamp_ms: rec.timestamp_ms,
                predicted_at_ms: now_ms,
                shadow_prediction: None,
                shadow_version: None,
            };
            msg.set_prediction(&p, topic)?;
            Ok(Verdict::Scored(prediction))
        }
        Err(reason) => {
            msg.set_dead_letter(key, &reason, &rec.origin, rec.bytes, topics);
            Ok(Verdict::Rejected(reason))
        }
    }
}

/// Score one CSV row.
pub fn score_csv(
    model: &Served,
    layout: &CsvLayout,
    row: &csv::StringRecord,
    origin: Origin,
    fallback_key: String,
) -> Scored {
    let d = layout.decode(row);
    let key = d.key.unwrap_or(fallback_key);
    let raw = || row.iter().collect::<Vec<_>>().join(",").into_bytes();
    let mut probs = Vec::new();
    let score = predict_cells(&model.scorer, &d.cells, &mut probs);
    finish(model, score, &probs, key, origin, None, raw)
}

fn finish(
    model: &Served,
    score: Predicted,
    probs: &[f64],
    key: String,
    origin: Origin,
    ts: Option<i64>,
    raw: impl FnOnce() -> Vec<u8>,
) -> Scored {
    match score {
        Ok((prediction, class)) => Scored::Ok(Prediction {
            schema_version: prediction_version(&model.scorer),
            key,
            prediction,
            class: class.map(|c| model.scorer.classes()[c].clone()),
            probabilities: class.map(|_| {
                ClassProbabilities(model.scorer.classes().iter().cloned().zip(probs.iter().copied()).collect())
            }),
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            origin,
            input_timestamp_ms: ts,
            predicted_at_ms: crate::util::time::now_ms(),
            shadow_prediction: None,
            shadow_version: None,
        }),
        Err(reason) => Scored::Rejected(dead(model, key, reason, origin, &raw())),
    }
}

/// A dead letter for `raw`.
pub fn dead(model: &Served, key: String, reason: String, origin: Origin, raw: &[u8]) -> DeadLetter {
    DeadLetter {
        schema_version: MESSAGE_SCHEMA_VERSION,
        key,
        reason,
        origin,
        record: String::from_utf8_lossy(raw).into_owned(),
        model_version: Some(model.version.clone()),
        raw: raw.to_vec(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
