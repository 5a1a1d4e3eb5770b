//! The messages between modelcast processes: pure types (encode/decode only), the same on
//! every channel (the local logs of the embedded default and Kafka topics). Each is a
//! compatibility promise with a `schema_version`, documented in the README.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::artifact::Artifact;
use crate::error::{Error, Result};

/// Version of the announcement and prediction message formats.
pub const MESSAGE_SCHEMA_VERSION: u32 = 1;

/// Headline metrics carried in an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadlineMetrics {
    /// Held-out R².
    pub r2: f64,
    /// Held-out RMSE.
    pub rmse: f64,
    /// Held-out MAE.
    pub mae: f64,
}

/// "A new model is available": the value of a `train` topic message (key = model name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// Message format version.
    pub schema_version: u32,
    /// Model name.
    pub model_name: String,
    /// Model version id.
    pub version: String,
    /// Full URI of the artifact (informational; readers fetch `key` from their own store).
    pub uri: String,
    /// Store key of the artifact.
    pub key: String,
    /// Hex sha256 of the artifact bytes.
    pub sha256: String,
    /// Artifact size in bytes.
    pub size: u64,
    /// When the model was created.
    pub created_at: DateTime<Utc>,
    /// Held-out metrics.
    pub metrics: HeadlineMetrics,
    /// Digest of the input schema (column names and types).
    pub input_schema_digest: String,
    /// modelcast version that trained the model.
    pub tool_version: String,
    /// The model exported for other runtimes (`train --export`), stored beside the artifact.
    /// Absent when none was asked for (older readers ignore it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportRef>,
}

/// One stored export of a model (ONNX, PMML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRef {
    /// `onnx` or `pmml`.
    pub format: crate::export::Format,
    /// Store key (`<name>/<date>/<version>.onnx`).
    pub key: String,
    /// Full URI (informational).
    pub uri: String,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl Announcement {
    /// The announcement of `artifact`, stored as `bytes` at `uri`.
    pub fn of(artifact: &Artifact, uri: String, bytes: &[u8]) -> Announcement {
        let m = &artifact.metrics.model;
        Announcement {
            schema_version: MESSAGE_SCHEMA_VERSION,
            model_name: artifact.model_name.clone(),
            version: artifact.version.clone(),
            uri,
            key: artifact.key(),
            sha256: crate::artifact::sha256_hex(bytes),
            size: bytes.len() as u64,
            created_at: artifact.created_at,
            metrics: HeadlineMetrics { r2: m.r2, rmse: m.rmse, mae: m.mae },
            input_schema_digest: artifact.input_schema.digest(),
            tool_version: artifact.tool_version.clone(),
            exports: vec![],
        }
    }

    /// One-line JSON.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Encode { what: "announcement", source: e })
    }

    /// Parse and check an announcement.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Announcement, String> {
        let a: Announcement = serde_json::from_slice(bytes).map_err(|e| format!("not an announcement: {e}"))?;
        if a.schema_version != MESSAGE_SCHEMA_VERSION {
            return Err(format!(
                "unsupported announcement schema_version {} (this modelcast reads {MESSAGE_SCHEMA_VERSION})",
                a.schema_version
            ));
        }
        check_sha256(&a.sha256)?;
        crate::store::check_key(&a.key).map_err(|e| e.to_string())?;
        Ok(a)
    }
}

/// The `type` of an [`AliasMove`] message.
pub const ALIAS_MOVED: &str = "alias_moved";

/// Which model version a message points at: enough to fetch and verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRef<'a> {
    /// Model name.
    pub model_name: &'a str,
    /// Version id.
    pub version: &'a str,
    /// Store key of the artifact.
    pub key: &'a str,
    /// Hex sha256 of the artifact bytes.
    pub sha256: &'a str,
    /// Digest of the input schema.
    pub input_schema_digest: &'a str,
}

impl Announcement {
    /// The version this announcement points at.
    pub fn model_ref(&self) -> ModelRef<'_> {
        ModelRef {
            model_name: &self.model_name,
            version: &self.version,
            key: &self.key,
            sha256: &self.sha256,
            input_schema_digest: &self.input_schema_digest,
        }
    }
}

/// What moved an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveAction {
    /// `modelcast promote`, or `train --promote`/`--promote-if-better`.
    Promote,
    /// `modelcast rollback`.
    Rollback,
}

/// "Alias A of model M now points at version V": the value of a `train` topic message with
/// `"type": "alias_moved"` (key = model name), or a line of the local `train` log, or an object
/// `_aliases/<model>/<seq>.json` of an S3 store without Kafka.
///
/// A move applies only if `previous_version` is where the alias pointed when the move is read
/// (compare-and-set, decided by the log's order): of two concurrent moves from the same state,
/// the first in the log wins and the second is kept in the history as a conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    /// Message format version.
    pub schema_version: u32,
    /// Always `alias_moved`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique id of this move (the writer finds its own move in the log by it).
    pub id: String,
    /// Model name.
    pub model_name: String,
    /// The alias (`champion`, `challenger`, any `[a-z][a-z0-9_-]*`).
    pub alias: String,
    /// The version it points at from now on.
    pub version: String,
    /// Store key of that version's artifact.
    pub key: String,
    /// Hex sha256 of that artifact, checked by every reader before serving it.
    pub sha256: String,
    /// Digest of its input schema.
    pub input_schema_digest: String,
    /// Where the alias pointed before (the writer's view); `null` for a new alias.
    pub previous_version: Option<String>,
    /// `promote` or `rollback`.
    pub action: MoveAction,
    /// Why (free text; `train --promote-if-better` writes the gate's verdict).
    pub reason: String,
    /// Who: `user@host`, or the CI job (`MODELCAST_ACTOR` overrides).
    pub actor: String,
    /// When the move was written.
    pub at: DateTime<Utc>,
}

impl AliasMove {
    /// The version this move points at.
    pub fn model_ref(&self) -> ModelRef<'_> {
        ModelRef {
            model_name: &self.model_name,
            version: &self.version,
            key: &self.key,
            sha256: &self.sha256,
            input_schema_digest: &self.input_schema_digest,
        }
    }

    /// One-line JSON.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Encode { what: "alias move", source: e })
    }

    fn check(self) -> std::result::Result<AliasMove, String> {
        if self.schema_version != MESSAGE_SCHEMA_VERSION {
            return Err(format!(
                "unsupported alias_moved schema_version {} (this modelcast reads {MESSAGE_SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        check_sha256(&self.sha256)?;
        crate::store::check_key(&self.key).map_err(|e| e.to_string())?;
        Ok(self)
    }
}

/// A message of the `train` topic (or local log).
#[derive(Debug, Clone, PartialEq)]
pub enum TrainMessage {
    /// A new model (no `type` field, as since the first release).
    Announced(Announcement),
    /// An alias moved.
    AliasMoved(AliasMove),
}

/// Why a `train` message was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Not valid JSON, or a known type with bad fields.
    Invalid(String),
    /// A `type` this modelcast does not know (written by a newer one): skipped with a warning.
    UnknownType(String),
}

impl TrainMessage {
    /// Decode and check one message. Messages without a `type` are announcements.
    pub fn decode(bytes: &[u8]) -> std::result::Result<TrainMessage, Skipped> {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let peek: Peek =
            serde_json::from_slice(bytes).map_err(|e| Skipped::Invalid(format!("not a train message: {e}")))?;
        match peek.kind.as_deref() {
            None => Announcement::decode(bytes).map(TrainMessage::Announced).map_err(Skipped::Invalid),
            Some(ALIAS_MOVED) => serde_json::from_slice::<AliasMove>(bytes)
                .map_err(|e| format!("not an alias move: {e}"))
                .and_then(AliasMove::check)
                .map(TrainMessage::AliasMoved)
                .map_err(Skipped::Invalid),
            Some(other) => Err(Skipped::UnknownType(other.to_string())),
        }
    }
}

fn check_sha256(s: &str) -> std::result::Result<(), String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("sha256 {s:?} is not 64 hex characters"));
    }
    Ok(())
}

/// Where a scored record came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Origin {
    /// A line of a file or stdin.
    Line {
        /// File name, or `-` for stdin.
        source: String,
        /// 1-based line number.
        line: u64,
    },
    /// A Kafka record.
    Kafka {
        /// Input topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
}

impl fmt::Display for Origin {
    /// `file:line` or `topic/partition/offset`: the `modelcast.source` header of a dead letter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl Origin {
    /// The borrowed form (what the messages serialize).
    pub fn as_ref(&self) -> OriginRef<'_> {
        match self {
            Origin::Line { source, line } => OriginRef::Line { source, line: *line },
            Origin::Kafka { topic, partition, offset } => {
                OriginRef::Kafka { topic, partition: *partition, offset: *offset }
            }
        }
    }
}

/// [`Origin`], borrowed: how the hot path names a record's origin without copying its topic.
/// Serializes exactly as [`Origin`] does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OriginRef<'a> {
    /// A line of a file or stdin.
    Line {
        /// File name, or `-` for stdin.
        source: &'a str,
        /// 1-based line number.
        line: u64,
    },
    /// A Kafka record.
    Kafka {
        /// Input topic.
        topic: &'a str,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
}

impl OriginRef<'_> {
    /// The owned form.
    pub fn to_owned(&self) -> Origin {
        match *self {
            OriginRef::Line { source, line } => Origin::Line { source: source.to_string(), line },
            OriginRef::Kafka { topic, partition, offset } => {
                Origin::Kafka { topic: topic.to_string(), partition, offset }
            }
        }
    }
}

impl fmt::Display for OriginRef<'_> {
    /// `file:line` or `topic/partition/offset`: the `modelcast.source` header of a dead letter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginRef::Line { source, line } => write!(f, "{source}:{line}"),
            OriginRef::Kafka { topic, partition, offset } => write!(f, "{topic}/{partition}/{offset}"),
        }
    }
}

/// One prediction: a line on stdout, a line of the local `app_messages` log, or the value of an
/// `app_messages` Kafka record (key = input key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Message format version.
    pub schema_version: u32,
    /// The record's key: its `key` field (JSON), the Kafka key, or the row number.
    pub key: String,
    /// The predicted value.
    pub prediction: f64,
    /// Model name.
    pub model_name: String,
    /// Version of the model that produced it.
    pub model_version: String,
    /// Where the record came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// When the input record was produced (Kafka timestamp, ms since epoch), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_timestamp_ms: Option<i64>,
    /// When the prediction was made (ms since epoch).
    pub predicted_at_ms: i64,
    /// The shadow model's prediction (file/stdin mode with `--shadow`), when it scored the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_prediction: Option<f64>,
    /// The shadow model's version (file/stdin mode with `--shadow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_version: Option<String>,
}

impl Prediction {
    /// The borrowed form (what is serialized).
    pub fn as_ref(&self) -> PredictionRef<'_> {
        PredictionRef {
            schema_version: self.schema_version,
            key: &self.key,
            prediction: self.prediction,
            model_name: &self.model_name,
            model_version: &self.model_version,
            origin: self.origin.as_ref(),
            input_timestamp_ms: self.input_timestamp_ms,
            predicted_at_ms: self.predicted_at_ms,
            shadow_prediction: self.shadow_prediction,
            shadow_version: self.shadow_version.as_deref(),
        }
    }
}

/// [`Prediction`], borrowed: the hot path builds one per record without copying a string, and
/// every prediction message is written from this form by [`PredictionRef::write_json`], which
/// writes exactly what this type's derived `Serialize` writes (a test holds them together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PredictionRef<'a> {
    /// Message format version.
    pub schema_version: u32,
    /// The record's key.
    pub key: &'a str,
    /// The predicted value.
    pub prediction: f64,
    /// Model name.
    pub model_name: &'a str,
    /// Version of the model that produced it.
    pub model_version: &'a str,
    /// Where the record came from.
    #[serde(flatten)]
    pub origin: OriginRef<'a>,
    /// When the input record was produced, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_timestamp_ms: Option<i64>,
    /// When the prediction was made (ms since epoch).
    pub predicted_at_ms: i64,
    /// The shadow model's prediction, when it scored the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_prediction: Option<f64>,
    /// The shadow model's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_version: Option<&'a str>,
}

impl PredictionRef<'_> {
    /// Append this prediction's JSON to `out`: the bytes serde_json writes for it, written field
    /// by field (strings escaped by serde_json, numbers by zmij and itoa as serde_json does).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        fn str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
            // serde_json escapes exactly these bytes; a string without them is copied as is
            if !needs_escape(s.as_bytes()) {
                out.reserve(s.len() + 2);
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
                Ok(())
            } else {
                serde_json::to_writer(out, s)
            }
        }
        fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
        fn float(out: &mut Vec<u8>, v: f64) {
            if v.is_finite() {
                out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
            } else {
                out.extend_from_slice(b"null");
            }
        }
        out.extend_from_slice(b"{\"schema_version\":");
        int(out, self.schema_version);
        out.extend_from_slice(b",\"key\":");
        str(out, self.key)?;
        out.extend_from_slice(b",\"prediction\":");
        float(out, self.prediction);
        out.extend_from_slice(b",\"model_name\":");
        str(out, self.model_name)?;
        out.extend_from_slice(b",\"model_version\":");
        str(out, self.model_version)?;
        match self.origin {
            OriginRef::Line { source, line } => {
                out.extend_from_slice(b",\"source\":");
                str(out, source)?;
                out.extend_from_slice(b",\"line\":");
                int(out, line);
            }
            OriginRef::Kafka { topic, partition, offset } => {
                out.extend_from_slice(b",\"topic\":");
                str(out, topic)?;
                out.extend_from_slice(b",\"partition\":");
                int(out, partition);
                out.extend_from_slice(b",\"offset\":");
                int(out, offset);
            }
        }
        if let Some(ts) = self.input_timestamp_ms {
            out.extend_from_slice(b",\"input_timestamp_ms\":");
            int(out, ts);
        }
        out.extend_from_slice(b",\"predicted_at_ms\":");
        int(out, self.predicted_at_ms);
        if let Some(v) = self.shadow_prediction {
            out.extend_from_slice(b",\"shadow_prediction\":");
            float(out, v);
        }
        if let Some(v) = self.shadow_version {
            out.extend_from_slice(b",\"shadow_version\":");
            str(out, v)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// Whether serde_json escapes any byte of `s` (a control character, `"` or `\\`), eight bytes
/// at a time: the hot path asks it of the model name, version and topic of every prediction.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    // a high bit where a byte of `v` is below `n` (n ≤ 128); exact as "any byte below n"
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let v = u64::from_le_bytes(word);
        if below(v, 0x20) | below(v ^ (ONES * u64::from(b'"')), 1) | below(v ^ (ONES * u64::from(b'\\')), 1) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// A record that could not be scored: a line of the local `dead_letter` log. On Kafka the
/// original bytes are the record value and the reason is a header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Message format version.
    pub schema_version: u32,
    /// The record's key, if one could be read.
    pub key: String,
    /// Why it was rejected.
    pub reason: String,
    /// Where it came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// The original record (lossy UTF-8).
    pub record: String,
    /// The model that rejected it, if one was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The original bytes (the Kafka dead-letter value); not part of the JSON form.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

/// The outcome of scoring one raw record.
#[derive(Debug, Clone, PartialEq)]
pub enum Scored {
    /// A prediction.
    Ok(Prediction),
    /// A rejected record.
    Rejected(DeadLetter),
}

/// Where scored records go on a bus, and the bound on a dead letter's size.
#[derive(Debug, Clone, Copy)]
pub struct OutputTopics<'a> {
    /// Predictions.
    pub app_messages: &'a str,
    /// Rejected records.
    pub dead_letter: &'a str,
    /// Dead-letter values are cut to this many bytes (header `modelcast.truncated` says so).
    pub dead_letter_max_bytes: usize,
}

/// A message to publish: topic, key (may be empty), value and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing<'t> {
    /// Topic (or local log) name.
    pub topic: &'t str,
    /// Key (may be empty).
    pub key: Vec<u8>,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers (name, value).
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl<'t> Outgoing<'t> {
    /// The one way a scored record becomes a message, on every path (batch, follow, serve).
    ///
    /// A prediction is its JSON on `app_messages`, keyed by the record key. A rejected record is
    /// its original bytes on the dead-letter topic (cut to `dead_letter_max_bytes`), keyed by the
    /// record key, with headers `modelcast.reason`, `modelcast.source` and, when cut,
    /// `modelcast.truncated`.
    pub fn of(scored: Scored, topics: &OutputTopics<'t>) -> Result<Outgoing<'t>> {
        let mut m = Outgoing::empty(topics.app_messages);
        match scored {
            Scored::Ok(p) => m.set_prediction(&p.as_ref(), topics.app_messages)?,
            Scored::Rejected(d) => {
                m.set_dead_letter(&d.key, &d.reason, &d.origin.as_ref(), &d.raw, topics);
            }
        }
        Ok(m)
    }

    /// A message with nothing in it yet (for [`Outgoing::set_prediction`] and friends).
    pub fn empty(topic: &'t str) -> Outgoing<'t> {
        Outgoing { topic, key: Vec::new(), payload: Vec::new(), headers: Vec::new() }
    }

    /// Make this message `p`'s JSON on `topic`, keyed by the record key, reusing its buffers
    /// (the hot path: no allocation once they are large enough).
    pub fn set_prediction(&mut self, p: &PredictionRef<'_>, topic: &'t str) -> Result<()> {
        self.topic = topic;
        self.key.clear();
        self.key.extend_from_slice(p.key.as_bytes());
        self.headers.clear();
        self.payload.clear();
        p.write_json(&mut self.payload).map_err(|e| Error::Encode { what: "prediction", source: e })
    }

    /// Make this message a dead letter: the original bytes on the dead-letter topic (cut to
    /// `dead_letter_max_bytes`), keyed by the record key, with headers `modelcast.reason`,
    /// `modelcast.source` and, when cut, `modelcast.truncated`.
    pub fn set_dead_letter(
        &mut self,
        key: &str,
        reason: &str,
        origin: &OriginRef<'_>,
        raw: &[u8],
        topics: &OutputTopics<'t>,
    ) {
        let max = topics.dead_letter_max_bytes;
        self.topic = topics.dead_letter;
        self.key.clear();
        self.key.extend_from_slice(key.as_bytes());
        self.headers.clear();
        self.headers.push(("modelcast.reason", reason.as_bytes().to_vec()));
        self.headers.push(("modelcast.source", origin.to_string().into_bytes()));
        self.payload.clear();
        if raw.len() > max {
            self.headers.push(("modelcast.truncated", format!("{max} of {} bytes kept", raw.len()).into_bytes()));
            self.payload.extend_from_slice(&raw[..max]);
        } else {
            self.payload.extend_from_slice(raw);
        }
    }

    /// Whether this is a prediction (not a dead letter).
    pub fn is_prediction(&self, topics: &OutputTopics<'_>) -> bool {
        self.topic == topics.app_messages && self.headers.is_empty()
    }
}

/// A batch's messages, kept from batch to batch: once its buffers have grown to the batch's
/// size, filling it again allocates nothing (the service's hot path).
#[derive(Debug, Default)]
pub struct Outbox<'t> {
    msgs: Vec<Outgoing<'t>>,
    len: usize,
}

impl<'t> Outbox<'t> {
    /// Empty it (the buffers stay).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The next message to fill, with the buffers of an earlier batch's message when there is one.
    pub fn next(&mut self, topic: &'t str) -> &mut Outgoing<'t> {
        if self.len == self.msgs.len() {
            self.msgs.push(Outgoing::empty(topic));
        }
        self.len += 1;
        &mut self.msgs[self.len - 1]
    }

    /// Take back the message [`Outbox::next`] handed out last.
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// The messages of this batch.
    pub fn messages(&self) -> &[Outgoing<'t>] {
        &self.msgs[..self.len]
    }

    /// How many messages this batch has.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether this batch has none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    // SystemTime, not chrono: this runs once per prediction
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_escape_check_agrees_with_the_bytewise_one() {
        let bytewise = |s: &[u8]| s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        // every byte value at every position of strings of 0 to 19 plain bytes (words and
        // remainders), next to bytes just above and below the thresholds
        for len in 0..20usize {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut s: Vec<u8> =
                        (0..len).map(|i| [b'a', 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0xc3][i % 8]).collect();
                    s[at] = byte;
                    assert_eq!(needs_escape(&s), bytewise(&s), "{s:?}");
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    fn sample() -> Announcement {
        Announcement {
            schema_version: 1,
            model_name: "m".into(),
            version: "20260101T000000000Z-abcdef01".into(),
            uri: "file://models/m/2026-01-01/x.json".into(),
            key: "m/2026-01-01/x.json".into(),
            sha256: "a".repeat(64),
            size: 10,
            created_at: Utc::now(),
            metrics: HeadlineMetrics { r2: 0.5, rmse: 1.0, mae: 0.8 },
            input_schema_digest: "sha256:x".into(),
            tool_version: "0.1.0".into(),
            exports: vec![],
        }
    }

    #[test]
    fn announcement_round_trips() {
        let a = sample();
        assert_eq!(Announcement::decode(&a.encode().unwrap()).unwrap(), a);
    }

    #[test]
    fn bad_announcements_are_refused_with_a_reason() {
        assert!(Announcement::decode(b"\xff\xfe").unwrap_err().contains("not an announcement"));
        let mut a = sample();
        a.schema_version = 7;
        assert!(Announcement::decode(&a.encode().unwrap()).unwrap_err().contains("schema_version 7"));
        let mut a = sample();
        a.key = "../../etc/passwd".into();
        assert!(Announcement::decode(&a.encode().unwrap()).unwrap_err().contains("invalid store key"));
        let mut a = sample();
        a.sha256 = "zz".into();
        assert!(Announcement::decode(&a.encode().unwrap()).is_err());
    }

    fn alias_move() -> AliasMove {
        AliasMove {
            schema_version: 1,
            kind: ALIAS_MOVED.into(),
            id: "m1".into(),
            model_name: "m".into(),
            alias: "champion".into(),
            version: "v2".into(),
            key: "m/2026-01-01/v2.json".into(),
            sha256: "b".repeat(64),
            input_schema_digest: "sha256:x".into(),
            previous_version: Some("v1".into()),
            action: MoveAction::Promote,
            reason: "better".into(),
            actor: "ci".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn train_messages_are_told_apart_by_type_and_unknown_types_are_skipped() {
        let a = sample();
        assert_eq!(TrainMessage::decode(&a.encode().unwrap()), Ok(TrainMessage::Announced(a)));
        let m = alias_move();
        assert_eq!(TrainMessage::decode(&m.encode().unwrap()), Ok(TrainMessage::AliasMoved(m.clone())));
        let future = br#"{"schema_version":1,"type":"model_deleted","model_name":"m"}"#;
        assert_eq!(TrainMessage::decode(future), Err(Skipped::UnknownType("model_deleted".into())));
        let mut bad = m;
        bad.key = "/etc/passwd".into();
        assert!(matches!(TrainMessage::decode(&bad.encode().unwrap()), Err(Skipped::Invalid(_))));
        assert!(matches!(TrainMessage::decode(b"[1]"), Err(Skipped::Invalid(_))));
    }

    #[test]
    fn prediction_json_has_the_documented_fields() {
        let p = Prediction {
            schema_version: 1,
            key: "7".into(),
            prediction: 5.5,
            model_name: "m".into(),
            model_version: "v".into(),
            origin: Origin::Kafka { topic: "t".into(), partition: 0, offset: 3 },
            input_timestamp_ms: Some(1),
            predicted_at_ms: 2,
            shadow_prediction: None,
            shadow_version: None,
        };
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        for k in ["key", "prediction", "model_name", "model_version", "topic", "partition", "offset"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(serde_json::from_value::<Prediction>(v).unwrap(), p);
    }

    #[test]
    fn the_hand_written_prediction_json_is_what_serde_writes() {
        let keys = ["k", "", "quote\" back\\slash \u{1} é 🦀", "42"];
        let values = [
            5.5,
            -0.0,
            1e-300,
            123456789.125,
            f64::NAN,
            f64::INFINITY,
            0.1 + 0.2,
            1e15,
            1e16,
            1.5e-7,
            1.2e21,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ];
        let origins = [
            OriginRef::Kafka { topic: "in\"put", partition: -1, offset: i64::MAX },
            OriginRef::Line { source: "-", line: 0 },
        ];
        for (i, key) in keys.iter().enumerate() {
            for (j, &prediction) in values.iter().enumerate() {
                for origin in origins {
                    let p = PredictionRef {
                        schema_version: 1,
                        key,
                        prediction,
                        model_name: "wine\n",
                        model_version: "20261202T000000Z-abc",
                        origin,
                        input_timestamp_ms: (i % 2 == 0).then_some(-5),
                        predicted_at_ms: 1_764_000_000_000,
                        shadow_prediction: (j % 2 == 0).then_some(prediction / 3.0),
                        shadow_version: (j % 3 == 0).then_some("v\t2"),
                    };
                    let mut hand = Vec::new();
                    p.write_json(&mut hand).unwrap();
                    assert_eq!(String::from_utf8(hand).unwrap(), serde_json::to_string(&p).unwrap());
                }
            }
        }
        // and any bit pattern as the prediction
        let mut bits = crate::data::SplitMix64::new(0);
        for _ in 0..20_000 {
            let prediction = f64::from_bits(bits.next_u64());
            let p = PredictionRef {
                schema_version: 1,
                key: "k",
                prediction,
                model_name: "m",
                model_version: "v",
                origin: origins[0],
                input_timestamp_ms: None,
                predicted_at_ms: 0,
                shadow_prediction: None,
                shadow_version: None,
            };
            let mut hand = Vec::new();
            p.write_json(&mut hand).unwrap();
            assert_eq!(String::from_utf8(hand).unwrap(), serde_json::to_string(&p).unwrap(), "{prediction:e}");
        }
    }

    const TOPICS: OutputTopics<'static> =
        OutputTopics { app_messages: "app", dead_letter: "dead", dead_letter_max_bytes: 4 };

    #[test]
    fn a_prediction_becomes_its_json_keyed_by_the_record_key() {
        let p = Prediction {
            schema_version: 1,
            key: "k".into(),
            prediction: 1.5,
            model_name: "m".into(),
            model_version: "v".into(),
            origin: Origin::Line { source: "in.csv".into(), line: 2 },
            input_timestamp_ms: None,
            predicted_at_ms: 3,
            shadow_prediction: None,
            shadow_version: None,
        };
        let m = Outgoing::of(Scored::Ok(p.clone()), &TOPICS).unwrap();
        assert_eq!((m.topic, m.key.as_slice()), ("app", &b"k"[..]));
        assert!(m.headers.is_empty() && m.is_prediction(&TOPICS));
        assert_eq!(serde_json::from_slice::<Prediction>(&m.payload).unwrap(), p);
    }

    #[test]
    fn a_dead_letter_keeps_the_original_bytes_cut_to_the_bound_with_its_reason() {
        let d = DeadLetter {
            schema_version: 1,
            key: "k".into(),
            reason: "bad".into(),
            origin: Origin::Kafka { topic: "in".into(), partition: 1, offset: 7 },
            record: "123456".into(),
            model_version: None,
            raw: b"123456".to_vec(),
        };
        let m = Outgoing::of(Scored::Rejected(d), &TOPICS).unwrap();
        assert_eq!((m.topic, m.payload.as_slice()), ("dead", &b"1234"[..]));
        let h: std::collections::BTreeMap<_, _> = m.headers.iter().cloned().collect();
        assert_eq!(h["modelcast.reason"], b"bad");
        assert_eq!(h["modelcast.source"], b"in/1/7");
        assert_eq!(h["modelcast.truncated"], b"4 of 6 bytes kept");
        assert!(!m.is_prediction(&TOPICS));
    }
}
