//! The model artifact: one self-describing JSON document per trained model.
//!
//! The artifact is data, not code: [`Artifact::decode`] parses JSON into plain structs
//! (unknown fields rejected) and checks them; nothing in it is ever executed. Its format
//! is a compatibility promise, versioned by [`SCHEMA_VERSION`] and documented in the README.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::FileInfo;
use crate::error::{Error, Result};
use crate::features::{Preprocessing, Scorer};
use crate::model::{Fit, Metrics};
use crate::params::Params;
use crate::util::hash::sha256_hex;

/// The artifact format version of linear models (unchanged since the first release, so older
/// predictors keep reading them).
pub const SCHEMA_VERSION: u32 = 1;
/// The artifact format version of tree ensembles (`estimator.trees`); readers of version 1
/// refuse them with "upgrade modelcast" instead of misreading them.
pub const SCHEMA_VERSION_TREES: u32 = 2;
/// The artifact format version of classifiers (`estimator.classes`, one coefficient row per
/// class); readers of versions 1 and 2 refuse them with "upgrade modelcast".
pub const SCHEMA_VERSION_CLASSIFIER: u32 = 3;
/// The artifact format version of every artifact with a drift reference (`drift`), whatever its
/// estimator: readers of versions 1 to 3 refuse it with "upgrade modelcast" instead of failing
/// on the unknown field.
pub const SCHEMA_VERSION_DRIFT: u32 = 4;

/// The schema version an artifact with this estimator, and with or without a drift reference,
/// is written with.
pub fn schema_version_for(fit: &Fit, drift: bool) -> u32 {
    if drift {
        SCHEMA_VERSION_DRIFT
    } else {
        schema_version_of(fit)
    }
}

/// The schema version an artifact with this estimator is written with.
pub fn schema_version_of(fit: &Fit) -> u32 {
    match fit {
        Fit::Linear(_) => SCHEMA_VERSION,
        Fit::Trees(_) => SCHEMA_VERSION_TREES,
        Fit::Logistic(_) | Fit::TreeClassifier(_) => SCHEMA_VERSION_CLASSIFIER,
    }
}
/// The `format` field of every artifact.
pub const FORMAT: &str = "modelcast.model";

/// One input column of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputColumn {
    /// Column name.
    pub name: String,
    /// `numeric` or `categorical`.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Known categories (categorical columns only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// The type of an input column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// A number.
    Numeric,
    /// A category, one-hot encoded.
    Categorical,
}

/// What a record must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSchema {
    /// Columns in slot order.
    pub columns: Vec<InputColumn>,
    /// The target the model predicts.
    pub target: String,
}

impl InputSchema {
    /// `sha256:` digest of the column names and types (not the categories), used to check that a
    /// new model accepts the same records as the current one.
    pub fn digest(&self) -> String {
        let mut text = String::new();
        for c in &self.columns {
            let kind = match c.kind {
                ColumnType::Numeric => "numeric",
                ColumnType::Categorical => "categorical",
            };
            text.push_str(&format!("{}\t{}\n", c.name, kind));
        }
        format!("sha256:{}", sha256_hex(text.as_bytes()))
    }
}

/// The fitted estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// no deny_unknown_fields here: serde does not support it with `flatten`; the fit refuses unknown fields
pub struct Estimator {
    /// `linear`, `ridge`, `lasso` or `elastic_net`.
    pub kind: String,
    /// Design-matrix column names (numeric, then `column=category`).
    pub feature_names: Vec<String>,
    /// The fit: coefficients, intercept, rank (linear kinds), or `trees`.
    #[serde(flatten)]
    pub fit: Fit,
}

/// Held-out metrics of the model and of the mean-of-target baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The model on the held-out rows.
    pub model: Metrics,
    /// Predicting the training mean for every held-out row.
    pub baseline: Metrics,
    /// The model on its own training rows.
    pub train: Metrics,
}

/// What a model learned from a topic: exactly which records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicData {
    /// The topic.
    pub topic: String,
    /// Per partition, the offsets read: `[start_offset, end_offset)`, in the order read.
    pub partitions: Vec<PartitionRange>,
    /// Records read (rows trained on and held out, plus the rejected).
    pub records: u64,
    /// Malformed records skipped (counted, never silently).
    pub rejected: u64,
    /// The `--since` given (RFC 3339), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// The offsets read from one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRange {
    /// Partition id.
    pub partition: i32,
    /// First offset read.
    pub start_offset: i64,
    /// One past the last offset read (the high watermark when training started).
    pub end_offset: i64,
    /// Records read from it.
    pub records: u64,
}

/// Where the training data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingData {
    /// Each file read, with its sha256 and row count.
    pub files: Vec<FileInfo>,
    /// The topic read (`train --data kafka://TOPIC`), when the rows came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicData>,
    /// Rows used for fitting.
    pub train_rows: usize,
    /// Rows used for evaluation.
    pub test_rows: usize,
}

/// The model artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Always [`FORMAT`].
    pub format: String,
    /// Model name.
    pub model_name: String,
    /// Version id: `YYYYMMDDTHHMMSSmmmZ-xxxxxxxx`, sortable by creation time.
    pub version: String,
    /// Creation time (UTC).
    pub created_at: DateTime<Utc>,
    /// modelcast version that wrote it.
    pub tool_version: String,
    /// The params the model was trained with.
    pub params: Params,
    /// What records must look like.
    pub input_schema: InputSchema,
    /// The fitted preprocessing.
    pub preprocessing: Preprocessing,
    /// The fitted estimator.
    pub estimator: Estimator,
    /// Held-out evaluation.
    pub metrics: Evaluation,
    /// Provenance of the training data.
    pub training_data: TrainingData,
    /// What drift on live traffic is measured against (absent from artifacts made before it
    /// existed: drift is then off for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::Reference>,
}

impl Artifact {
    /// Build the input schema from fitted preprocessing.
    pub fn schema_of(prep: &Preprocessing, target: &str) -> InputSchema {
        let mut columns: Vec<InputColumn> = prep
            .numeric
            .iter()
            .map(|f| InputColumn { name: f.name.clone(), kind: ColumnType::Numeric, categories: vec![] })
            .collect();
        columns.extend(prep.categorical.iter().map(|f| InputColumn {
            name: f.name.clone(),
            kind: ColumnType::Categorical,
            categories: f.categories.clone(),
        }));
        InputSchema { columns, target: target.to_string() }
    }

    /// Serialize to the bytes stored in the model store (pretty JSON, trailing newline).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| Error::Encode { what: "artifact", source: e })?;
        v.push(b'\n');
        Ok(v)
    }

    /// Parse and check artifact bytes read from `uri`. The schema version is checked before the
    /// body is interpreted, so a future format gives a clear "unsupported" error.
    pub fn decode(uri: &str, bytes: &[u8]) -> Result<Artifact> {
        #[derive(Deserialize)]
        struct Probe {
            schema_version: Option<serde_json::Value>,
            format: Option<String>,
        }
        let probe: Probe = serde_json::from_slice(bytes)
            .map_err(|e| Error::artifact(uri, format!("not a JSON model artifact: {e}")))?;
        if probe.format.as_deref() != Some(FORMAT) {
            return Err(Error::artifact(uri, format!("format is {:?}, expected {FORMAT:?}", probe.format)));
        }
        match probe.schema_version.as_ref().and_then(|v| v.as_u64()) {
            Some(v) if (SCHEMA_VERSION as u64..=SCHEMA_VERSION_DRIFT as u64).contains(&v) => {}
            other => {
                return Err(Error::artifact(
                    uri,
                    format!(
                        "unsupported schema_version {}; this modelcast reads {SCHEMA_VERSION} to {SCHEMA_VERSION_DRIFT} (upgrade modelcast)",
                        other.map_or_else(|| format!("{:?}", probe.schema_version), |v| v.to_string())
                    ),
                ))
            }
        }
        let a: Artifact =
            serde_json::from_slice(bytes).map_err(|e| Error::artifact(uri, format!("invalid artifact: {e}")))?;
        a.check(uri)?;
        Ok(a)
    }

    /// Internal consistency: schema, preprocessing and coefficients agree; numbers are finite.
    pub fn check(&self, uri: &str) -> Result<()> {
        let bad = |m: String| Err(Error::artifact(uri, m));
        if self.input_schema != Self::schema_of(&self.preprocessing, &self.input_schema.target) {
            return bad("input_schema does not match preprocessing".into());
        }
        let width = self.preprocessing.width();
        if self.estimator.feature_names.len() != width {
            return bad(format!("{} feature names for {width} design columns", self.estimator.feature_names.len()));
        }
        let want = schema_version_for(&self.estimator.fit, self.drift.is_some());
        if self.schema_version != want {
            return bad(format!(
                "schema_version {} does not match its content ({} {} a drift reference is written with {want})",
                self.schema_version,
                self.estimator.kind,
                if self.drift.is_some() { "with" } else { "without" },
            ));
        }
        match &self.estimator.fit {
            Fit::Linear(fit) => {
                if fit.coefficients.len() != width {
                    return bad(format!("{} coefficients for {width} design columns", fit.coefficients.len()));
                }
                if !(fit.coefficients.iter().all(|c| c.is_finite()) && fit.intercept.is_finite()) {
                    return bad("non-finite coefficient or intercept".into());
                }
            }
            Fit::Trees(t) => t.trees.check(width).map_err(|e| Error::artifact(uri, format!("trees: {e}")))?,
            Fit::Logistic(l) => l.check(width).map_err(|e| Error::artifact(uri, format!("classifier: {e}")))?,
            Fit::TreeClassifier(t) => {
                t.check(width).map_err(|e| Error::artifact(uri, format!("tree classifier: {e}")))?
            }
        }
        let finite = self.preprocessing.numeric.iter().all(|f| {
            f.center.is_finite() && f.scale.is_finite() && f.scale != 0.0 && f.impute.is_none_or(f64::is_finite)
        });
        if !finite {
            return bad("non-finite preprocessing value".into());
        }
        Ok(())
    }

    /// The fast record → prediction function of this model.
    pub fn scorer(&self) -> Result<Scorer> {
        Scorer::of(&self.preprocessing, &self.estimator.fit)
    }

    /// Store key: `<name>/<YYYY-MM-DD>/<version>.json`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}.json", self.model_name, self.created_at.format("%Y-%m-%d"), self.version)
    }
}

/// A new version id for a model created at `at`: a sortable UTC timestamp plus 8 hex characters
/// that differ between two trainings in the same millisecond (process id, a counter, the clock's
/// nanoseconds and `salt` are hashed).
pub fn new_version(at: DateTime<Utc>, salt: &[u8]) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(at.timestamp_nanos_opt().unwrap_or_default().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .to_le_bytes(),
    );
    h.update(salt);
    let d = h.finalize();
    format!("{}-{:02x}{:02x}{:02x}{:02x}", at.format("%Y%m%dT%H%M%S%3fZ"), d[0], d[1], d[2], d[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn versions_sort_by_time_and_differ_within_a_millisecond() {
        let t = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123Z").unwrap().with_timezone(&Utc);
        let (a, b) = (new_version(t, b"x"), new_version(t, b"x"));
        assert!(a.starts_with("20261121T100000123Z-") && a.len() == 28, "{a}");
        assert_ne!(a, b);
        assert!(new_version(t + chrono::Duration::milliseconds(1), b"") > a);
    }

    #[test]
    fn decode_refuses_non_artifacts_and_future_versions() {
        let e = Artifact::decode("u", b"\x00garbage").unwrap_err().to_string();
        assert!(e.contains("not a JSON model artifact"), "{e}");
        let e = Artifact::decode("u", br#"{"format":"modelcast.model","schema_version":99}"#).unwrap_err().to_string();
        assert!(e.contains("unsupported schema_version 99"), "{e}");
        let e = Artifact::decode("u", br#"{"format":"pickle","schema_version":1}"#).unwrap_err().to_string();
        assert!(e.contains("format"), "{e}");
    }

    #[test]
    fn tree_artifacts_are_version_2_and_a_version_must_match_its_estimator() {
        use crate::model::TreeFit;
        use crate::trees::{Combine, Ensemble, Tree};
        let tree = Tree { feature: vec![0], threshold: vec![0.0], left: vec![0], right: vec![0], value: vec![5.0] };
        let fit = Fit::Trees(TreeFit {
            trees: Ensemble {
                combine: Combine::Sum,
                base: 0.5,
                outputs: 1,
                bases: vec![],
                importances: vec![0.0],
                trees: vec![tree],
            },
        });
        assert_eq!(schema_version_of(&fit), 2);
        // a linear estimator's JSON is unchanged: the fields sit beside `kind`
        let linear =
            Fit::Linear(crate::model::LinearFit { coefficients: vec![1.0], intercept: 2.0, rank: 1, iterations: 0 });
        let v = serde_json::to_value(Estimator { kind: "linear".into(), feature_names: vec!["a".into()], fit: linear })
            .unwrap();
        assert_eq!(v["coefficients"], serde_json::json!([1.0]));
        let back: Estimator = serde_json::from_value(v).unwrap();
        assert_eq!(schema_version_of(&back.fit), 1);
        let v =
            serde_json::to_value(Estimator { kind: "gradient_boosting".into(), feature_names: vec!["a".into()], fit })
                .unwrap();
        assert_eq!(v["trees"]["trees"][0]["value"], serde_json::json!([5.0]));
        let back: Estimator = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(back.fit, Fit::Trees(_)));
        // unknown fields are still refused
        let mut bad = v;
        bad["trees"]["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Estimator>(bad).is_err());
    }
}
