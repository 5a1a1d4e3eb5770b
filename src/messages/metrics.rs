//! `model_metrics`: live accuracy per model version, as `evaluate` publishes it.

use serde::{Deserialize, Serialize};

use crate::live::Snapshot;

/// What `evaluate` publishes (the `model_metrics` topic; stdout in batch mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Message format version.
    pub schema_version: u32,
    /// Always `model_metrics`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the snapshot was taken (ms since the epoch).
    pub at_ms: i64,
    /// The join horizon, seconds.
    pub horizon_s: u64,
    /// The sliding window, seconds.
    pub window_s: u64,
    /// Records that could not be read as a prediction or a label (skipped).
    pub undecodable: u64,
    /// The state.
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// The format version of [`ModelMetrics`].
pub const MODEL_METRICS_SCHEMA_VERSION: u32 = 1;
