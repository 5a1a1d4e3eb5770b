//! `params/*.yaml`: what to train on and how. See the README's "Params reference".
//!
//! [`Params::load`] parses and validates in one step: a `Params` value that exists is
//! a valid one (unknown keys rejected, hyperparameter ranges checked, every column
//! named at most once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Training parameters, as written in a params file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Model name: the first path segment of every artifact key and the Kafka message key.
    pub name: String,
    /// Where the training data is and how to read it.
    pub data: DataParams,
    /// The column to predict.
    pub target: String,
    /// Feature columns.
    pub features: FeatureParams,
    /// Missing-value handling.
    #[serde(default)]
    pub missing: MissingParams,
    /// Scaling of numeric features.
    #[serde(default)]
    pub scale: Scale,
    /// The estimator and its hyperparameters.
    pub model: ModelParams,
    /// How the model is evaluated.
    #[serde(default)]
    pub evaluation: EvalParams,
}

/// The `data` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataParams {
    /// One CSV path or a list of paths sharing one header.
    pub train: OneOrMany,
    /// Field delimiter, one ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Cell values that mean "missing" (default: empty, `NA`, `N/A`, `NaN`, `null`).
    #[serde(default = "default_missing_tokens")]
    pub missing_tokens: Vec<String>,
}

/// One value or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single path.
    One(PathBuf),
    /// Several paths.
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    /// The paths, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            OneOrMany::One(p) => vec![p.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

fn default_delimiter() -> String {
    ",".to_string()
}

/// The default missing-value tokens.
pub fn default_missing_tokens() -> Vec<String> {
    ["", "NA", "N/A", "NaN", "null"].iter().map(|s| s.to_string()).collect()
}

/// The `features` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureParams {
    /// Numeric feature columns, in design-matrix order.
    #[serde(default)]
    pub numeric: Vec<String>,
    /// Categorical feature columns, one-hot encoded after the numeric block.
    #[serde(default)]
    pub categorical: Vec<String>,
}

/// What to do with a missing value. Written as a word (`mean`, `median`, `category`,
/// `reject`) or as `{constant: VALUE}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MissingRule {
    /// Numeric: replace with the training mean.
    Mean,
    /// Numeric: replace with the training median.
    Median,
    /// Numeric: replace with a fixed value.
    Constant(f64),
    /// Categorical: treat "missing" as a category of its own.
    Category,
    /// Refuse the record (dead letter at prediction time, error at training time).
    Reject,
}

impl Serialize for MissingRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            MissingRule::Mean => s.serialize_str("mean"),
            MissingRule::Median => s.serialize_str("median"),
            MissingRule::Category => s.serialize_str("category"),
            MissingRule::Reject => s.serialize_str("reject"),
            MissingRule::Constant(v) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("constant", v)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for MissingRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str = "mean, median, category, reject or {constant: NUMBER}";
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MissingRule;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<MissingRule, E> {
                match v {
                    "mean" => Ok(MissingRule::Mean),
                    "median" => Ok(MissingRule::Median),
                    "category" => Ok(MissingRule::Category),
                    "reject" => Ok(MissingRule::Reject),
                    other => Err(E::custom(format!("unknown rule {other:?}, expected {EXPECTED}"))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<MissingRule, A::Error> {
                use serde::de::Error;
                let key: String = map.next_key()?.ok_or_else(|| A::Error::custom(EXPECTED))?;
                if key != "constant" {
                    return Err(A::Error::custom(format!("unknown rule {key:?}, expected {EXPECTED}")));
                }
                let v: f64 = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("a rule map has exactly one key, constant"));
                }
                Ok(MissingRule::Constant(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `missing` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingParams {
    /// Default rule for numeric columns (`mean`).
    #[serde(default = "default_numeric_rule")]
    pub numeric: MissingRule,
    /// Default rule for categorical columns (`category`).
    #[serde(default = "default_categorical_rule")]
    pub categorical: MissingRule,
    /// Per-column overrides.
    #[serde(default)]
    pub columns: BTreeMap<String, MissingRule>,
}

impl Default for MissingParams {
    fn default() -> Self {
        MissingParams {
            numeric: default_numeric_rule(),
            categorical: default_categorical_rule(),
            columns: BTreeMap::new(),
        }
    }
}

fn default_numeric_rule() -> MissingRule {
    MissingRule::Mean
}
fn default_categorical_rule() -> MissingRule {
    MissingRule::Category
}

/// Scaling of numeric features.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Subtract the mean, divide by the population standard deviation (sklearn `StandardScaler`).
    #[default]
    Standardize,
    /// Leave numbers as they are.
    None,
}

/// The estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Ordinary least squares (sklearn `LinearRegression`).
    Linear,
    /// L2-penalised least squares (sklearn `Ridge`).
    Ridge,
    /// L1-penalised least squares (sklearn `Lasso`).
    Lasso,
    /// L1 + L2 penalties (sklearn `ElasticNet`).
    ElasticNet,
}

impl ModelKind {
    /// The name used in params and artifacts.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Linear => "linear",
            ModelKind::Ridge => "ridge",
            ModelKind::Lasso => "lasso",
            ModelKind::ElasticNet => "elastic_net",
        }
    }
}

/// The `model` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// Which estimator.
    pub kind: ModelKind,
    /// Penalty strength: ridge as sklearn `Ridge(alpha)`, lasso/elastic_net as sklearn
    /// `Lasso/ElasticNet(alpha)`. Must be > 0 for penalised models; not allowed for `linear`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Elastic net mixing, in `[0, 1]` (1 = lasso). Elastic net only; default 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1_ratio: Option<f64>,
    /// Coordinate-descent iteration cap for lasso/elastic_net (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// Coordinate-descent convergence tolerance for lasso/elastic_net (default 1e-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

/// The `evaluation` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    /// Fraction of rows held out for testing, in `(0, 1)` (default 0.2).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Seed of the shuffle that picks the held-out rows (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// An explicit test CSV; when set, all training rows are used for fitting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data: Option<PathBuf>,
}

impl Default for EvalParams {
    fn default() -> Self {
        EvalParams { test_fraction: default_test_fraction(), seed: default_seed(), test_data: None }
    }
}

fn default_test_fraction() -> f64 {
    0.2
}
fn default_seed() -> u64 {
    42
}

impl Params {
    /// Read, parse and validate a params file.
    pub fn load(path: &Path) -> Result<Params> {
        let text = super::read_config_file(path)?;
        let params: Params = super::parse_yaml(path, &text)?;
        params.validate(path)?;
        Ok(params)
    }

    /// The delimiter as a byte (validated to be one ASCII character).
    pub fn delimiter(&self) -> u8 {
        self.data.delimiter.as_bytes().first().copied().unwrap_or(b',')
    }

    /// The missing-value rule that applies to a numeric column.
    pub fn numeric_rule(&self, column: &str) -> MissingRule {
        self.missing.columns.get(column).copied().unwrap_or(self.missing.numeric)
    }

    /// The missing-value rule that applies to a categorical column.
    pub fn categorical_rule(&self, column: &str) -> MissingRule {
        self.missing.columns.get(column).copied().unwrap_or(self.missing.categorical)
    }

    /// Check every cross-field rule; errors name `path` and the offending key.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let err = |key: &str, msg: String| Err(Error::config(path, key, msg));
        if self.name.is_empty()
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return err("name", format!("{:?} must be non-empty ASCII letters, digits, '-', '_' or '.'", self.name));
        }
        if self.data.delimiter.len() != 1 || !self.data.delimiter.is_ascii() {
            return err("data.delimiter", format!("{:?} must be exactly one ASCII character", self.data.delimiter));
        }
        if self.data.train.paths().is_empty() {
            return err("data.train", "needs at least one CSV path".into());
        }
        let all: Vec<&String> = self.features.numeric.iter().chain(&self.features.categorical).collect();
        if all.is_empty() {
            return err("features", "name at least one numeric or categorical column".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &all {
            if *c == &self.target {
                return err("features", format!("target column {c:?} cannot also be a feature"));
            }
            if !seen.insert(c.as_str()) {
                return err("features", format!("column {c:?} is listed twice"));
            }
        }
        for (rule, key) in [(self.missing.numeric, "missing.numeric")] {
            if matches!(rule, MissingRule::Category) {
                return err(key, "numeric columns take mean, median, reject or {constant: VALUE}".into());
            }
        }
        if !matches!(self.missing.categorical, MissingRule::Category | MissingRule::Reject) {
            return err("missing.categorical", "categorical columns take category or reject".into());
        }
        for (col, rule) in &self.missing.columns {
            let key = format!("missing.columns.{col}");
            if self.features.numeric.contains(col) {
                if matches!(rule, MissingRule::Category) {
                    return err(&key, "numeric column: use mean, median, reject or {constant: VALUE}".into());
                }
                if let MissingRule::Constant(v) = rule {
                    if !v.is_finite() {
                        return err(&key, "constant must be a finite number".into());
                    }
                }
            } else if self.features.categorical.contains(col) {
                if !matches!(rule, MissingRule::Category | MissingRule::Reject) {
                    return err(&key, "categorical column: use category or reject".into());
                }
            } else {
                return err(&key, format!("{col:?} is not a feature column"));
            }
        }
        if let MissingRule::Constant(v) = self.missing.numeric {
            if !v.is_finite() {
                return err("missing.numeric", "constant must be a finite number".into());
            }
        }
        self.validate_model(path)?;
        let ev = &self.evaluation;
        if ev.test_data.is_none() && !(ev.test_fraction > 0.0 && ev.test_fraction < 1.0) {
            return err("evaluation.test_fraction", format!("{} must be in (0, 1)", ev.test_fraction));
        }
        Ok(())
    }

    fn validate_model(&self, path: &Path) -> Result<()> {
        let m = &self.model;
        let err = |key: &str, msg: String| Err(Error::config(path, key, msg));
        match m.kind {
            ModelKind::Linear => {
                for (set, key) in [
                    (m.alpha.is_some(), "model.alpha"),
                    (m.l1_ratio.is_some(), "model.l1_ratio"),
                    (m.max_iterations.is_some(), "model.max_iterations"),
                    (m.tolerance.is_some(), "model.tolerance"),
                ] {
                    if set {
                        return err(key, "not used by kind: linear (ordinary least squares); remove it".into());
                    }
                }
            }
            ModelKind::Ridge | ModelKind::Lasso | ModelKind::ElasticNet => {
                match m.alpha {
                    Some(a) if a.is_finite() && a > 0.0 => {}
                    Some(a) => return err("model.alpha", format!("{a} must be a finite number > 0")),
                    None => return err("model.alpha", format!("required for kind: {}", m.kind.as_str())),
                }
                if m.kind == ModelKind::ElasticNet {
                    if let Some(r) = m.l1_ratio {
                        if !(0.0..=1.0).contains(&r) {
                            return err("model.l1_ratio", format!("{r} must be in [0, 1]"));
                        }
                    }
                } else if m.l1_ratio.is_some() {
                    return err("model.l1_ratio", format!("only for kind: elastic_net, not {}", m.kind.as_str()));
                }
                if m.kind == ModelKind::Ridge && (m.max_iterations.is_some() || m.tolerance.is_some()) {
                    return err("model", "ridge is solved exactly; max_iterations/tolerance do not apply".into());
                }
                if let Some(t) = m.tolerance {
                    if !(t.is_finite() && t > 0.0) {
                        return err("model.tolerance", format!("{t} must be > 0"));
                    }
                }
                if m.max_iterations == Some(0) {
                    return err("model.max_iterations", "must be >= 1".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Params> {
        let p = Path::new("p.yaml");
        let params: Params = crate::config::parse_yaml(p, text)?;
        params.validate(p)?;
        Ok(params)
    }

    const BASE: &str = "name: m\ndata: {train: d.csv}\ntarget: y\nfeatures: {numeric: [a, b], categorical: [c]}\n";

    #[test]
    fn shipped_params_are_valid() {
        let p = Params::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/params/params.yaml"))).unwrap();
        assert_eq!(p.target, "quality");
        assert_eq!(p.features.numeric.len(), 11);
    }

    #[test]
    fn unknown_key_names_the_key() {
        let e = parse(&format!("{BASE}model: {{kind: ridge, alpah: 1}}\n")).unwrap_err().to_string();
        assert!(e.contains("p.yaml") && e.contains("model") && e.contains("alpah"), "{e}");
    }

    #[test]
    fn hyperparameters_are_checked() {
        for (model, key) in [
            ("{kind: ridge}", "model.alpha"),
            ("{kind: lasso, alpha: -1}", "model.alpha"),
            ("{kind: elastic_net, alpha: 1, l1_ratio: 2}", "model.l1_ratio"),
            ("{kind: linear, alpha: 1}", "model.alpha"),
            ("{kind: ridge, alpha: 1, l1_ratio: 0.5}", "model.l1_ratio"),
        ] {
            let e = parse(&format!("{BASE}model: {model}\n")).unwrap_err();
            assert!(matches!(&e, Error::Config { key: k, .. } if k == key), "{model}: {e}");
        }
        let e = parse(&format!("{BASE}model: {{kind: forest}}\n")).unwrap_err();
        assert!(e.to_string().contains("forest"), "{e}");
    }

    #[test]
    fn missing_rules_must_fit_the_column_type() {
        let ok = parse(&format!(
            "{BASE}model: {{kind: linear}}\nmissing: {{columns: {{a: median, b: {{constant: 2.5}}, c: reject}}}}\n"
        ))
        .unwrap();
        assert_eq!(ok.numeric_rule("b"), MissingRule::Constant(2.5));
        assert_eq!(ok.categorical_rule("c"), MissingRule::Reject);
        assert_eq!(ok.numeric_rule("a"), MissingRule::Median);
        for bad in ["{a: category}", "{c: mean}", "{zz: mean}"] {
            let e = parse(&format!("{BASE}model: {{kind: linear}}\nmissing: {{columns: {bad}}}\n")).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}");
        }
    }

    #[test]
    fn target_cannot_be_a_feature() {
        let text = "name: m\ndata: {train: d.csv}\ntarget: a\nfeatures: {numeric: [a]}\nmodel: {kind: linear}\n";
        assert!(parse(text).is_err());
    }
}
