//! The `train` topic's two messages: a model's announcement and an alias move. One log carries
//! both, so every reader folds them in the same order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::MESSAGE_SCHEMA_VERSION;
use crate::artifact::Artifact;
use crate::error::{Error, Result};

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
            sha256: crate::util::hash::sha256_hex(bytes),
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
        check_common("announcement", a.schema_version, &a.sha256, &a.key)?;
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
    /// The input-schema digest of the version the alias leaves, when it differs from this
    /// version's: the move changes the input schema, and says so. Replicas following the alias
    /// accept such a move (the gate or the person promoting vetted it); replicas following the
    /// newest announcement stay strict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_input_schema_digest: Option<String>,
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
        check_common("alias_moved", self.schema_version, &self.sha256, &self.key)?;
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

/// What every `train`-topic message must carry: a schema version this modelcast reads, a
/// sha256 in hex and a safe store key.
fn check_common(what: &str, schema_version: u32, sha256: &str, key: &str) -> std::result::Result<(), String> {
    if schema_version != MESSAGE_SCHEMA_VERSION {
        return Err(format!(
            "unsupported {what} schema_version {schema_version} (this modelcast reads {MESSAGE_SCHEMA_VERSION})"
        ));
    }
    check_sha256(sha256)?;
    crate::util::ids::check_key(key).map_err(|e| e.to_string())
}

fn check_sha256(s: &str) -> std::result::Result<(), String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("sha256 {s:?} is not 64 hex characters"));
    }
    Ok(())
}
