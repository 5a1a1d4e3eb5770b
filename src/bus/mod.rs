//! Messages between modelcast processes, and the channels that carry them.
//!
//! The message types here are pure (encode/decode only) and are the same on every channel:
//! the local logs of the embedded default ([`local`]) and Kafka topics ([`kafka`]).

pub mod kafka;
pub mod local;

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
        if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 {:?} is not 64 hex characters", a.sha256));
        }
        crate::store::check_key(&a.key).map_err(|e| e.to_string())?;
        Ok(a)
    }
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
        };
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        for k in ["key", "prediction", "model_name", "model_version", "topic", "partition", "offset"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(serde_json::from_value::<Prediction>(v).unwrap(), p);
    }
}
