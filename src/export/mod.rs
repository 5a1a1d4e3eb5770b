//! Model exports: the whole pipeline (imputation, standardisation, one-hot encoding with the
//! unseen-category rule, the estimator) as a standard file another runtime executes. Pure: bytes
//! in memory, no I/O.
//!
//! * [`onnx`]: ONNX (opset 17 + `ai.onnx.ml` 3), float32, for onnxruntime, tract and friends.
//! * [`pmml`]: PMML 4.4, float64, for JPMML, PMML4S/pypmml, Flink.

pub mod onnx;
pub mod pmml;

pub use onnx::Precision;

use crate::artifact::Artifact;
use crate::error::{Error, Result};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// ONNX protobuf.
    Onnx,
    /// PMML 4.4 XML.
    Pmml,
}

impl Format {
    /// The name used on the command line and in messages (`onnx`, `pmml`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Pmml => "pmml",
        }
    }

    /// Parse one name.
    pub fn parse(s: &str) -> Result<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "onnx" => Ok(Format::Onnx),
            "pmml" => Ok(Format::Pmml),
            other => Err(Error::Usage(format!("unknown export format {other:?}: use onnx or pmml"))),
        }
    }

    /// Parse a comma-separated list (`onnx,pmml`), sorted, without duplicates.
    pub fn parse_list(s: &str) -> Result<Vec<Format>> {
        let mut v = s.split(',').filter(|p| !p.trim().is_empty()).map(Format::parse).collect::<Result<Vec<_>>>()?;
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// The file extension (without the dot).
    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    /// The store key of this export of the artifact stored at `artifact_key`
    /// (`<name>/<date>/<version>.onnx`).
    pub fn key_of(self, artifact_key: &str) -> String {
        let stem = artifact_key.strip_suffix(".json").unwrap_or(artifact_key);
        format!("{stem}.{}", self.extension())
    }
}

/// Export an artifact in `format` (ONNX in float32).
pub fn export(a: &Artifact, format: Format) -> Result<Vec<u8>> {
    export_with(a, format, Precision::Float32)
}

/// Export an artifact in `format`, an ONNX graph in `precision` (PMML is float64 always).
pub fn export_with(a: &Artifact, format: Format, precision: Precision) -> Result<Vec<u8>> {
    match format {
        Format::Onnx => onnx::export(a, precision),
        Format::Pmml => pmml::export(a),
    }
}
