//! `model_drift`: a window of live records counted against a model version's training
//! reference, as `predict --serve` publishes it.

use serde::{Deserialize, Serialize};

use crate::drift::WindowReport;

/// What `predict --serve` publishes on the `model_drift` topic at the end of each window (its
/// `schema_version` is the report's, [`crate::drift::WINDOW_REPORT_VERSION`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftMessage {
    /// Always `model_drift`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Model name.
    pub model_name: String,
    /// The version that scored the window's records.
    pub version: String,
    /// The replica that counted it (`--instance-id`, else the host name and process id).
    pub instance: String,
    /// What was counted: `records` (the Kafka input topic) or `requests` (rows of inference
    /// requests over HTTP and gRPC); each has its own windows.
    pub source: String,
    /// The window's number within this replica's run of this version, from 1.
    pub window: u64,
    /// When the window's first record was counted (ms since the epoch).
    pub start_ms: i64,
    /// When it was closed.
    pub end_ms: i64,
    /// Why it was closed: `records` (full), `time` (its duration passed), `swap` (another
    /// version took over) or `stop` (the service stopped).
    pub closed_by: String,
    /// The counts' comparison with the reference.
    #[serde(flatten)]
    pub report: WindowReport,
}
