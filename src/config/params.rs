//! `params/*.yaml`: what to train on and how. See the README's "Params reference".
//!
//! Two types, as linfa's `ParamGuard`: [`ParamsFile`] is what a file says (deserialisable, public
//! fields, nothing checked); [`ParamsFile::check`] is the only way to a [`Params`], the validated
//! settings the rest of the program takes. Every default is resolved there, once; every error names
//! the file and the dotted key. The model section becomes a [`Model`] enum carrying exactly the
//! hyperparameters of its kind, and numeric and categorical missing-value rules are different
//! types ([`NumericRule`], [`CategoricalRule`]), so an impossible combination cannot be written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lifecycle::{Gate, GateMetric, MinImprovement};

/// Default coordinate-descent iteration cap (lasso, elastic net).
pub const DEFAULT_MAX_ITERATIONS: u32 = 10_000;
/// Default coordinate-descent tolerance (lasso, elastic net).
pub const DEFAULT_TOLERANCE: f64 = 1e-8;
/// Default elastic-net mixing.
pub const DEFAULT_L1_RATIO: f64 = 0.5;

/// A params file as written: the raw, unchecked form. [`ParamsFile::check`] turns it into [`Params`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsFile {
    /// Model name: the first path segment of every artifact key and the Kafka message key.
    pub name: String,
    /// Where the training data is and how to read it.
    pub data: DataSection,
    /// The column to predict.
    pub target: String,
    /// Feature columns.
    pub features: FeatureSection,
    /// Missing-value handling.
    #[serde(default)]
    pub missing: MissingSection,
    /// Scaling of numeric features.
    #[serde(default)]
    pub scale: Scale,
    /// The estimator and its hyperparameters.
    pub model: ModelSection,
    /// How the model is evaluated.
    #[serde(default)]
    pub evaluation: EvaluationSection,
    /// Which alias `train` moves to the new model, and the gate it must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionSection>,
}

/// The `promotion` section as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionSection {
    /// The alias to move (default `champion`).
    #[serde(default = "default_alias")]
    pub alias: String,
    /// Move it only if the new model is better (default true); false moves it after every train.
    #[serde(default = "default_true")]
    pub if_better: bool,
    /// `rmse` (default), `mae` or `r2`.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// Required improvement: a number (absolute) or a percentage string such as `"2%"` (default 0).
    #[serde(default)]
    pub min_improvement: Option<NumberOrText>,
}

/// A number, or text such as `"2%"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumberOrText {
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
}

impl std::fmt::Display for NumberOrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberOrText::Number(n) => write!(f, "{n}"),
            NumberOrText::Text(t) => f.write_str(t),
        }
    }
}

fn default_alias() -> String {
    crate::lifecycle::DEFAULT_ALIAS.to_string()
}
fn default_true() -> bool {
    true
}
fn default_metric() -> String {
    "rmse".to_string()
}

/// A checked promotion rule: the alias, and the gate (`None`: promote unconditionally).
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The alias to move.
    pub alias: String,
    /// The gate, or `None` to promote every trained model.
    pub gate: Option<Gate>,
}

impl PromotionSection {
    /// Check the section; errors name `path` and the key.
    pub fn check(&self, path: &Path) -> Result<Promotion> {
        crate::lifecycle::check_alias(&self.alias)
            .map_err(|e| Error::config(path, "promotion.alias", e.to_string()))?;
        let metric = GateMetric::parse(&self.metric).map_err(|m| Error::config(path, "promotion.metric", m))?;
        let min_improvement = match &self.min_improvement {
            None => MinImprovement::Absolute(0.0),
            Some(v) => MinImprovement::parse(&v.to_string())
                .map_err(|m| Error::config(path, "promotion.min_improvement", m))?,
        };
        Ok(Promotion { alias: self.alias.clone(), gate: self.if_better.then_some(Gate { metric, min_improvement }) })
    }
}

/// The `data` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// One CSV path or a list of paths sharing one header.
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub train: OneOrMany,
    /// A Kafka topic of labelled JSON records to train from instead (`--data kafka://TOPIC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
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

impl Default for OneOrMany {
    fn default() -> OneOrMany {
        OneOrMany::Many(Vec::new())
    }
}

impl OneOrMany {
    /// Whether there is no path.
    pub fn is_empty(&self) -> bool {
        matches!(self, OneOrMany::Many(v) if v.is_empty())
    }

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
pub struct FeatureSection {
    /// Numeric feature columns, in design-matrix order.
    #[serde(default)]
    pub numeric: Vec<String>,
    /// Categorical feature columns, one-hot encoded after the numeric block.
    #[serde(default)]
    pub categorical: Vec<String>,
}

/// A missing-value rule as written: a word (`mean`, `median`, `category`, `reject`) or
/// `{constant: VALUE}`. Which rules fit depends on the column's type, known only after the
/// whole file is read; [`ParamsFile::check`] sorts them into [`NumericRule`] and [`CategoricalRule`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleText {
    /// `mean`.
    Mean,
    /// `median`.
    Median,
    /// `{constant: VALUE}`.
    Constant(f64),
    /// `category`.
    Category,
    /// `reject`.
    Reject,
}

impl Serialize for RuleText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            RuleText::Mean => s.serialize_str("mean"),
            RuleText::Median => s.serialize_str("median"),
            RuleText::Category => s.serialize_str("category"),
            RuleText::Reject => s.serialize_str("reject"),
            RuleText::Constant(v) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("constant", v)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for RuleText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str = "mean, median, category, reject or {constant: NUMBER}";
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RuleText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<RuleText, E> {
                match v {
                    "mean" => Ok(RuleText::Mean),
                    "median" => Ok(RuleText::Median),
                    "category" => Ok(RuleText::Category),
                    "reject" => Ok(RuleText::Reject),
                    other => Err(E::custom(format!("unknown rule {other:?}, expected {EXPECTED}"))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<RuleText, A::Error> {
                use serde::de::Error;
                let key: String = map.next_key()?.ok_or_else(|| A::Error::custom(EXPECTED))?;
                if key != "constant" {
                    return Err(A::Error::custom(format!("unknown rule {key:?}, expected {EXPECTED}")));
                }
                let v: f64 = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("a rule map has exactly one key, constant"));
                }
                Ok(RuleText::Constant(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// What to do with a missing numeric value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RuleText", into = "RuleText")]
pub enum NumericRule {
    /// Replace with the training mean.
    Mean,
    /// Replace with the training median.
    Median,
    /// Replace with a fixed, finite value.
    Constant(f64),
    /// Refuse the record (dead letter at prediction time, error at training time).
    Reject,
}

impl TryFrom<RuleText> for NumericRule {
    type Error = String;
    fn try_from(r: RuleText) -> std::result::Result<Self, String> {
        match r {
            RuleText::Mean => Ok(NumericRule::Mean),
            RuleText::Median => Ok(NumericRule::Median),
            RuleText::Constant(v) if v.is_finite() => Ok(NumericRule::Constant(v)),
            RuleText::Constant(_) => Err("constant must be a finite number".into()),
            RuleText::Reject => Ok(NumericRule::Reject),
            RuleText::Category => Err("numeric columns take mean, median, reject or {constant: VALUE}".into()),
        }
    }
}

impl From<NumericRule> for RuleText {
    fn from(r: NumericRule) -> RuleText {
        match r {
            NumericRule::Mean => RuleText::Mean,
            NumericRule::Median => RuleText::Median,
            NumericRule::Constant(v) => RuleText::Constant(v),
            NumericRule::Reject => RuleText::Reject,
        }
    }
}

/// What to do with a missing categorical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RuleText", into = "RuleText")]
pub enum CategoricalRule {
    /// Treat "missing" as a category of its own.
    Category,
    /// Refuse the record (dead letter at prediction time, error at training time).
    Reject,
}

impl TryFrom<RuleText> for CategoricalRule {
    type Error = String;
    fn try_from(r: RuleText) -> std::result::Result<Self, String> {
        match r {
            RuleText::Category => Ok(CategoricalRule::Category),
            RuleText::Reject => Ok(CategoricalRule::Reject),
            _ => Err("categorical columns take category or reject".into()),
        }
    }
}

impl From<CategoricalRule> for RuleText {
    fn from(r: CategoricalRule) -> RuleText {
        match r {
            CategoricalRule::Category => RuleText::Category,
            CategoricalRule::Reject => RuleText::Reject,
        }
    }
}

/// The `missing` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingSection {
    /// Default rule for numeric columns (`mean`).
    #[serde(default = "default_numeric_rule")]
    pub numeric: RuleText,
    /// Default rule for categorical columns (`category`).
    #[serde(default = "default_categorical_rule")]
    pub categorical: RuleText,
    /// Per-column overrides.
    #[serde(default)]
    pub columns: BTreeMap<String, RuleText>,
}

impl Default for MissingSection {
    fn default() -> Self {
        MissingSection {
            numeric: default_numeric_rule(),
            categorical: default_categorical_rule(),
            columns: BTreeMap::new(),
        }
    }
}

fn default_numeric_rule() -> RuleText {
    RuleText::Mean
}
fn default_categorical_rule() -> RuleText {
    RuleText::Category
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

/// The estimator kinds.
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
    /// Bagged regression trees (sklearn `RandomForestRegressor`).
    RandomForest,
    /// Histogram gradient-boosted trees (sklearn `HistGradientBoostingRegressor`).
    GradientBoosting,
}

impl ModelKind {
    /// The name used in params and artifacts.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Linear => "linear",
            ModelKind::Ridge => "ridge",
            ModelKind::Lasso => "lasso",
            ModelKind::ElasticNet => "elastic_net",
            ModelKind::RandomForest => "random_forest",
            ModelKind::GradientBoosting => "gradient_boosting",
        }
    }

    /// Tree ensembles (split on raw, imputed values; `scale` does not apply).
    pub fn is_trees(self) -> bool {
        matches!(self, ModelKind::RandomForest | ModelKind::GradientBoosting)
    }
}

/// The `model` section as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Which estimator.
    pub kind: ModelKind,
    /// Penalty strength: ridge as sklearn `Ridge(alpha)`, lasso/elastic_net as sklearn
    /// `Lasso/ElasticNet(alpha)`. Required (> 0) for penalised models; not allowed for `linear`.
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
    /// random_forest: number of trees (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_estimators: Option<u32>,
    /// Trees: the deepest a tree grows (default unlimited; the root is depth 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    /// Trees: the fewest training rows in a leaf (default 1 for random_forest, 20 for
    /// gradient_boosting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples_leaf: Option<u32>,
    /// random_forest: fraction of the features tried at each split, in `(0, 1]` (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_features: Option<f64>,
    /// random_forest: fit each tree on a bootstrap sample (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<bool>,
    /// gradient_boosting: number of boosting rounds, one tree each (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iter: Option<u32>,
    /// gradient_boosting: shrinkage of each tree, in `(0, 1]` (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// gradient_boosting: the most leaves per tree, grown best-first (default 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_leaf_nodes: Option<u32>,
    /// gradient_boosting: L2 penalty on leaf values (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_regularization: Option<f64>,
    /// Trees: the most histogram bins per feature, 2..=65535 (default 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bins: Option<u32>,
    /// Trees: the seed of the bootstrap and feature sampling (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The `evaluation` section as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSection {
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

impl Default for EvaluationSection {
    fn default() -> Self {
        EvaluationSection { test_fraction: default_test_fraction(), seed: default_seed(), test_data: None }
    }
}

fn default_test_fraction() -> f64 {
    0.2
}
fn default_seed() -> u64 {
    42
}

/// A checked estimator with exactly its own hyperparameters, defaults resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// Ordinary least squares.
    Linear,
    /// Ridge: `alpha` > 0.
    Ridge {
        /// L2 penalty.
        alpha: f64,
    },
    /// Lasso by coordinate descent.
    Lasso {
        /// L1 penalty (> 0).
        alpha: f64,
        /// Iteration cap (>= 1).
        max_iterations: u32,
        /// Convergence tolerance (> 0).
        tolerance: f64,
    },
    /// Elastic net by coordinate descent.
    ElasticNet {
        /// Penalty (> 0).
        alpha: f64,
        /// L1 share of the penalty, in `[0, 1]`.
        l1_ratio: f64,
        /// Iteration cap (>= 1).
        max_iterations: u32,
        /// Convergence tolerance (> 0).
        tolerance: f64,
    },
    /// A random forest.
    RandomForest(Forest),
    /// Gradient-boosted trees.
    GradientBoosting(Boosting),
}

/// Random forest hyperparameters (scikit-learn's names and meanings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forest {
    /// Number of trees (>= 1).
    pub n_estimators: u32,
    /// Deepest level a tree grows to (`None`: until leaves are pure or too small).
    pub max_depth: Option<u32>,
    /// Fewest training rows in a leaf (>= 1).
    pub min_samples_leaf: u32,
    /// Fraction of the features tried at each split, in `(0, 1]`.
    pub max_features: f64,
    /// Each tree on a bootstrap sample of the training rows.
    pub bootstrap: bool,
    /// Histogram bins per feature, 2..=65535.
    pub max_bins: u32,
    /// Seed of the bootstrap and feature sampling.
    pub seed: u64,
}

/// Histogram gradient boosting hyperparameters (scikit-learn's
/// `HistGradientBoostingRegressor` names and meanings; squared error).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boosting {
    /// Boosting rounds (>= 1).
    pub max_iter: u32,
    /// Shrinkage, in `(0, 1]`.
    pub learning_rate: f64,
    /// Most leaves per tree (>= 2).
    pub max_leaf_nodes: u32,
    /// Deepest level a tree grows to.
    pub max_depth: Option<u32>,
    /// Fewest training rows in a leaf (>= 1).
    pub min_samples_leaf: u32,
    /// L2 penalty on leaf values (>= 0).
    pub l2_regularization: f64,
    /// Histogram bins per feature, 2..=65535.
    pub max_bins: u32,
    /// Seed (kept for the record: nothing in boosting is sampled).
    pub seed: u64,
}

impl Model {
    /// The estimator kind.
    pub fn kind(&self) -> ModelKind {
        match self {
            Model::Linear => ModelKind::Linear,
            Model::Ridge { .. } => ModelKind::Ridge,
            Model::Lasso { .. } => ModelKind::Lasso,
            Model::ElasticNet { .. } => ModelKind::ElasticNet,
            Model::RandomForest(_) => ModelKind::RandomForest,
            Model::GradientBoosting(_) => ModelKind::GradientBoosting,
        }
    }

    /// The name used in params and artifacts.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }
}

impl From<Model> for ModelSection {
    fn from(m: Model) -> ModelSection {
        let kind = m.kind();
        let mut s = ModelSection::of(kind);
        match m {
            Model::Linear => {}
            Model::Ridge { alpha } => s.alpha = Some(alpha),
            Model::Lasso { alpha, max_iterations, tolerance } => {
                (s.alpha, s.max_iterations, s.tolerance) = (Some(alpha), Some(max_iterations), Some(tolerance))
            }
            Model::ElasticNet { alpha, l1_ratio, max_iterations, tolerance } => {
                (s.alpha, s.l1_ratio, s.max_iterations, s.tolerance) =
                    (Some(alpha), Some(l1_ratio), Some(max_iterations), Some(tolerance))
            }
            Model::RandomForest(f) => {
                s.n_estimators = Some(f.n_estimators);
                s.max_depth = f.max_depth;
                s.min_samples_leaf = Some(f.min_samples_leaf);
                s.max_features = Some(f.max_features);
                s.bootstrap = Some(f.bootstrap);
                s.max_bins = Some(f.max_bins);
                s.seed = Some(f.seed);
            }
            Model::GradientBoosting(b) => {
                s.max_iter = Some(b.max_iter);
                s.learning_rate = Some(b.learning_rate);
                s.max_leaf_nodes = Some(b.max_leaf_nodes);
                s.max_depth = b.max_depth;
                s.min_samples_leaf = Some(b.min_samples_leaf);
                s.l2_regularization = Some(b.l2_regularization);
                s.max_bins = Some(b.max_bins);
                s.seed = Some(b.seed);
            }
        }
        s
    }
}

impl ModelSection {
    /// A section of `kind` with nothing else set.
    pub fn of(kind: ModelKind) -> ModelSection {
        ModelSection {
            kind,
            alpha: None,
            l1_ratio: None,
            max_iterations: None,
            tolerance: None,
            n_estimators: None,
            max_depth: None,
            min_samples_leaf: None,
            max_features: None,
            bootstrap: None,
            max_iter: None,
            learning_rate: None,
            max_leaf_nodes: None,
            l2_regularization: None,
            max_bins: None,
            seed: None,
        }
    }

    /// The keys set in this section (besides `kind`), as `model.<key>`.
    fn keys_set(&self) -> Vec<&'static str> {
        [
            (self.alpha.is_some(), "model.alpha"),
            (self.l1_ratio.is_some(), "model.l1_ratio"),
            (self.max_iterations.is_some(), "model.max_iterations"),
            (self.tolerance.is_some(), "model.tolerance"),
            (self.n_estimators.is_some(), "model.n_estimators"),
            (self.max_depth.is_some(), "model.max_depth"),
            (self.min_samples_leaf.is_some(), "model.min_samples_leaf"),
            (self.max_features.is_some(), "model.max_features"),
            (self.bootstrap.is_some(), "model.bootstrap"),
            (self.max_iter.is_some(), "model.max_iter"),
            (self.learning_rate.is_some(), "model.learning_rate"),
            (self.max_leaf_nodes.is_some(), "model.max_leaf_nodes"),
            (self.l2_regularization.is_some(), "model.l2_regularization"),
            (self.max_bins.is_some(), "model.max_bins"),
            (self.seed.is_some(), "model.seed"),
        ]
        .into_iter()
        .filter_map(|(set, k)| set.then_some(k))
        .collect()
    }
}

/// The keys each kind reads; any other key set in `model` is an error naming it.
fn keys_of(kind: ModelKind) -> &'static [&'static str] {
    match kind {
        ModelKind::Linear => &[],
        ModelKind::Ridge => &["model.alpha"],
        ModelKind::Lasso => &["model.alpha", "model.max_iterations", "model.tolerance"],
        ModelKind::ElasticNet => &["model.alpha", "model.l1_ratio", "model.max_iterations", "model.tolerance"],
        ModelKind::RandomForest => &[
            "model.n_estimators",
            "model.max_depth",
            "model.min_samples_leaf",
            "model.max_features",
            "model.bootstrap",
            "model.max_bins",
            "model.seed",
        ],
        ModelKind::GradientBoosting => &[
            "model.max_iter",
            "model.learning_rate",
            "model.max_leaf_nodes",
            "model.max_depth",
            "model.min_samples_leaf",
            "model.l2_regularization",
            "model.max_bins",
            "model.seed",
        ],
    }
}

/// How the held-out rows are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split<'a> {
    /// A random fraction of the training rows, by a seeded shuffle.
    Fraction {
        /// In `(0, 1)`.
        fraction: f64,
        /// Shuffle seed.
        seed: u64,
    },
    /// An explicit test file; all training rows are fitted.
    File(&'a Path),
}

/// Checked training parameters: only [`ParamsFile::check`] makes one. Serialises (into the model
/// artifact, and `modelcast config`) as the params file it stands for, defaults written out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ParamsFile", try_from = "ParamsFile")]
pub struct Params {
    file: ParamsFile,
    train: Vec<PathBuf>,
    delimiter: u8,
    numeric_default: NumericRule,
    categorical_default: CategoricalRule,
    numeric_rules: BTreeMap<String, NumericRule>,
    categorical_rules: BTreeMap<String, CategoricalRule>,
    model: Model,
    promotion: Option<Promotion>,
}

impl From<Params> for ParamsFile {
    fn from(p: Params) -> ParamsFile {
        p.file
    }
}

impl TryFrom<ParamsFile> for Params {
    type Error = Error;
    fn try_from(f: ParamsFile) -> Result<Params> {
        f.check(Path::new("(artifact params)"))
    }
}

/// Command-line replacements of params values, applied before the check.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replace `data.train` (and drop `data.topic`).
    pub train: Vec<PathBuf>,
    /// Replace `data.topic` (and drop `data.train`).
    pub topic: Option<String>,
    /// Replace `name`.
    pub name: Option<String>,
    /// Replace `evaluation.test_data`.
    pub test_data: Option<PathBuf>,
}

impl ParamsFile {
    /// Read and parse a params file (unchecked).
    pub fn read(path: &Path) -> Result<ParamsFile> {
        let text = super::read_config_file(path)?;
        super::parse_yaml(path, &text)
    }

    /// Apply command-line replacements.
    pub fn with(mut self, o: &Overrides) -> ParamsFile {
        if !o.train.is_empty() {
            self.data.train = OneOrMany::Many(o.train.clone());
            self.data.topic = None;
        }
        if let Some(t) = &o.topic {
            self.data.topic = Some(t.clone());
            self.data.train = OneOrMany::default();
        }
        if let Some(n) = &o.name {
            self.name = n.clone();
        }
        if let Some(t) = &o.test_data {
            self.evaluation.test_data = Some(t.clone());
        }
        self
    }

    /// Check every rule and resolve every default; errors name `path` and the dotted key.
    pub fn check(self, path: &Path) -> Result<Params> {
        let err = |key: &str, msg: String| Err(Error::config(path, key, msg));
        if self.name.is_empty()
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return err("name", format!("{:?} must be non-empty ASCII letters, digits, '-', '_' or '.'", self.name));
        }
        if self.data.delimiter.len() != 1 || !self.data.delimiter.is_ascii() {
            return err("data.delimiter", format!("{:?} must be exactly one ASCII character", self.data.delimiter));
        }
        let train = self.data.train.paths();
        match &self.data.topic {
            None if train.is_empty() => {
                return err("data.train", "needs at least one CSV path (or data.topic: a Kafka topic)".into())
            }
            Some(_) if !train.is_empty() => {
                return err("data.topic", "give data.train (CSV files) or data.topic, not both".into())
            }
            Some(t)
                if t.is_empty()
                    || t.len() > 249
                    || !t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
            {
                return err(
                    "data.topic",
                    format!("{t:?} is not a Kafka topic name (ASCII letters, digits, '.', '_', '-')"),
                )
            }
            _ => {}
        }
        let f = &self.features;
        let all: Vec<&String> = f.numeric.iter().chain(&f.categorical).collect();
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
        let bad = |key: &str, msg: String| Error::config(path, key, msg);
        let numeric_default = NumericRule::try_from(self.missing.numeric).map_err(|m| bad("missing.numeric", m))?;
        let categorical_default =
            CategoricalRule::try_from(self.missing.categorical).map_err(|m| bad("missing.categorical", m))?;
        let (mut numeric_rules, mut categorical_rules) = (BTreeMap::new(), BTreeMap::new());
        for (col, rule) in &self.missing.columns {
            let key = format!("missing.columns.{col}");
            if f.numeric.contains(col) {
                let r = NumericRule::try_from(*rule).map_err(|m| bad(&key, format!("numeric column: {m}")))?;
                numeric_rules.insert(col.clone(), r);
            } else if f.categorical.contains(col) {
                let r = CategoricalRule::try_from(*rule).map_err(|m| bad(&key, format!("categorical column: {m}")))?;
                categorical_rules.insert(col.clone(), r);
            } else {
                return err(&key, format!("{col:?} is not a feature column"));
            }
        }
        let model = check_model(&self.model, path)?;
        let ev = &self.evaluation;
        if ev.test_data.is_none() && !(ev.test_fraction > 0.0 && ev.test_fraction < 1.0) {
            return err("evaluation.test_fraction", format!("{} must be in (0, 1)", ev.test_fraction));
        }
        let promotion = self.promotion.as_ref().map(|p| p.check(path)).transpose()?;
        let delimiter = self.data.delimiter.as_bytes()[0];
        let mut file = self;
        file.model = model.into();
        Ok(Params {
            file,
            train,
            delimiter,
            numeric_default,
            categorical_default,
            numeric_rules,
            categorical_rules,
            model,
            promotion,
        })
    }
}

fn check_model(m: &ModelSection, path: &Path) -> Result<Model> {
    let err = |key: &str, msg: String| Err(Error::config(path, key, msg));
    let kind = m.kind.as_str();
    let allowed = keys_of(m.kind);
    if let Some(key) = m.keys_set().into_iter().find(|k| !allowed.contains(k)) {
        let reads = if allowed.is_empty() {
            "no other keys".to_string()
        } else {
            allowed.iter().map(|k| k.trim_start_matches("model.")).collect::<Vec<_>>().join(", ")
        };
        return err(key, format!("not used by kind: {kind} (it reads {reads}); remove it"));
    }
    match m.kind {
        ModelKind::Linear => return Ok(Model::Linear),
        ModelKind::RandomForest => return check_forest(m, path).map(Model::RandomForest),
        ModelKind::GradientBoosting => return check_boosting(m, path).map(Model::GradientBoosting),
        _ => {}
    }
    let alpha = match m.alpha {
        Some(a) if a.is_finite() && a > 0.0 => a,
        Some(a) => return err("model.alpha", format!("{a} must be a finite number > 0")),
        None => return err("model.alpha", format!("required for kind: {kind}")),
    };
    if m.kind == ModelKind::Ridge {
        return Ok(Model::Ridge { alpha });
    }
    let tolerance = m.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    if !(tolerance.is_finite() && tolerance > 0.0) {
        return err("model.tolerance", format!("{tolerance} must be > 0"));
    }
    let max_iterations = m.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
    if max_iterations == 0 {
        return err("model.max_iterations", "must be >= 1".into());
    }
    if m.kind == ModelKind::Lasso {
        return Ok(Model::Lasso { alpha, max_iterations, tolerance });
    }
    let l1_ratio = m.l1_ratio.unwrap_or(DEFAULT_L1_RATIO);
    if !(0.0..=1.0).contains(&l1_ratio) {
        return err("model.l1_ratio", format!("{l1_ratio} must be in [0, 1]"));
    }
    Ok(Model::ElasticNet { alpha, l1_ratio, max_iterations, tolerance })
}

/// Default histogram bins per feature (scikit-learn's `max_bins`).
pub const DEFAULT_MAX_BINS: u32 = 255;

fn check_positive(path: &Path, key: &str, v: Option<u32>, default: u32) -> Result<u32> {
    match v.unwrap_or(default) {
        0 => Err(Error::config(path, key, "must be >= 1")),
        v => Ok(v),
    }
}

fn check_bins(m: &ModelSection, path: &Path) -> Result<u32> {
    match m.max_bins.unwrap_or(DEFAULT_MAX_BINS) {
        b @ 2..=65535 => Ok(b),
        b => Err(Error::config(path, "model.max_bins", format!("{b} must be in 2..=65535"))),
    }
}

fn check_depth(m: &ModelSection, path: &Path) -> Result<Option<u32>> {
    match m.max_depth {
        Some(0) => Err(Error::config(path, "model.max_depth", "must be >= 1 (or left out for no limit)")),
        d => Ok(d),
    }
}

fn check_forest(m: &ModelSection, path: &Path) -> Result<Forest> {
    let max_features = m.max_features.unwrap_or(1.0);
    if !(max_features > 0.0 && max_features <= 1.0) {
        return Err(Error::config(
            path,
            "model.max_features",
            format!("{max_features} must be a fraction of the features in (0, 1]"),
        ));
    }
    Ok(Forest {
        n_estimators: check_positive(path, "model.n_estimators", m.n_estimators, 100)?,
        max_depth: check_depth(m, path)?,
        min_samples_leaf: check_positive(path, "model.min_samples_leaf", m.min_samples_leaf, 1)?,
        max_features,
        bootstrap: m.bootstrap.unwrap_or(true),
        max_bins: check_bins(m, path)?,
        seed: m.seed.unwrap_or(0),
    })
}

fn check_boosting(m: &ModelSection, path: &Path) -> Result<Boosting> {
    let learning_rate = m.learning_rate.unwrap_or(0.1);
    if !(learning_rate > 0.0 && learning_rate <= 1.0) {
        return Err(Error::config(path, "model.learning_rate", format!("{learning_rate} must be in (0, 1]")));
    }
    let l2_regularization = m.l2_regularization.unwrap_or(0.0);
    if !(l2_regularization.is_finite() && l2_regularization >= 0.0) {
        return Err(Error::config(path, "model.l2_regularization", format!("{l2_regularization} must be >= 0")));
    }
    let max_leaf_nodes = m.max_leaf_nodes.unwrap_or(31);
    if max_leaf_nodes < 2 {
        return Err(Error::config(path, "model.max_leaf_nodes", format!("{max_leaf_nodes} must be >= 2")));
    }
    Ok(Boosting {
        max_iter: check_positive(path, "model.max_iter", m.max_iter, 100)?,
        learning_rate,
        max_leaf_nodes,
        max_depth: check_depth(m, path)?,
        min_samples_leaf: check_positive(path, "model.min_samples_leaf", m.min_samples_leaf, 20)?,
        l2_regularization,
        max_bins: check_bins(m, path)?,
        seed: m.seed.unwrap_or(0),
    })
}

impl Params {
    /// Read, parse and check a params file.
    pub fn load(path: &Path) -> Result<Params> {
        ParamsFile::read(path)?.check(path)
    }

    /// Model name.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// Training CSV paths, in order (empty when training from a topic).
    pub fn train_files(&self) -> &[PathBuf] {
        &self.train
    }

    /// The Kafka topic to train from (`data.topic`), if not CSV files.
    pub fn topic(&self) -> Option<&str> {
        self.file.data.topic.as_deref()
    }

    /// The delimiter byte.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// Cell values that mean "missing".
    pub fn missing_tokens(&self) -> &[String] {
        &self.file.data.missing_tokens
    }

    /// The target column.
    pub fn target(&self) -> &str {
        &self.file.target
    }

    /// Numeric feature columns, in design order.
    pub fn numeric(&self) -> &[String] {
        &self.file.features.numeric
    }

    /// Categorical feature columns, in design order.
    pub fn categorical(&self) -> &[String] {
        &self.file.features.categorical
    }

    /// The missing-value rule of a numeric column.
    pub fn numeric_rule(&self, column: &str) -> NumericRule {
        self.numeric_rules.get(column).copied().unwrap_or(self.numeric_default)
    }

    /// The missing-value rule of a categorical column.
    pub fn categorical_rule(&self, column: &str) -> CategoricalRule {
        self.categorical_rules.get(column).copied().unwrap_or(self.categorical_default)
    }

    /// Scaling of numeric features.
    pub fn scale(&self) -> Scale {
        self.file.scale
    }

    /// The estimator.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The `promotion` block, checked.
    pub fn promotion(&self) -> Option<&Promotion> {
        self.promotion.as_ref()
    }

    /// How held-out rows are chosen.
    pub fn split(&self) -> Split<'_> {
        let ev = &self.file.evaluation;
        match &ev.test_data {
            Some(p) => Split::File(p),
            None => Split::Fraction { fraction: ev.test_fraction, seed: ev.seed },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Params> {
        let p = Path::new("p.yaml");
        let params: ParamsFile = crate::config::parse_yaml(p, text)?;
        params.check(p)
    }

    const BASE: &str = "name: m\ndata: {train: d.csv}\ntarget: y\nfeatures: {numeric: [a, b], categorical: [c]}\n";

    #[test]
    fn shipped_params_are_valid() {
        let p = Params::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/params/params.yaml"))).unwrap();
        assert_eq!(p.target(), "quality");
        assert_eq!(p.numeric().len(), 11);
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
            ("{kind: ridge, alpha: 1, tolerance: 0.1}", "model.tolerance"),
            ("{kind: random_forest, n_estimators: 0}", "model.n_estimators"),
            ("{kind: random_forest, max_features: 1.5}", "model.max_features"),
            ("{kind: random_forest, learning_rate: 0.1}", "model.learning_rate"),
            ("{kind: random_forest, alpha: 1}", "model.alpha"),
            ("{kind: gradient_boosting, learning_rate: 0}", "model.learning_rate"),
            ("{kind: gradient_boosting, max_leaf_nodes: 1}", "model.max_leaf_nodes"),
            ("{kind: gradient_boosting, max_depth: 0}", "model.max_depth"),
            ("{kind: gradient_boosting, max_bins: 1}", "model.max_bins"),
            ("{kind: gradient_boosting, l2_regularization: -1}", "model.l2_regularization"),
            ("{kind: gradient_boosting, n_estimators: 10}", "model.n_estimators"),
        ] {
            let e = parse(&format!("{BASE}model: {model}\n")).unwrap_err();
            assert!(matches!(&e, Error::Config { key: k, .. } if k == key), "{model}: {e}");
        }
        let e = parse(&format!("{BASE}model: {{kind: forest}}\n")).unwrap_err();
        assert!(e.to_string().contains("forest"), "{e}");
    }

    #[test]
    fn tree_kinds_resolve_scikit_learn_defaults_and_round_trip() {
        let p = parse(&format!("{BASE}model: {{kind: gradient_boosting}}\n")).unwrap();
        let Model::GradientBoosting(b) = *p.model() else { panic!("{:?}", p.model()) };
        assert_eq!(
            (b.max_iter, b.learning_rate, b.max_leaf_nodes, b.max_depth, b.min_samples_leaf, b.max_bins),
            (100, 0.1, 31, None, 20, 255)
        );
        let p = parse(&format!("{BASE}model: {{kind: random_forest, max_depth: 6, seed: 9}}\n")).unwrap();
        let Model::RandomForest(f) = *p.model() else { panic!("{:?}", p.model()) };
        assert_eq!(
            (f.n_estimators, f.max_depth, f.min_samples_leaf, f.max_features, f.bootstrap, f.seed),
            (100, Some(6), 1, 1.0, true, 9)
        );
        // the artifact stores the resolved section; reading it back gives the same model
        for m in [Model::RandomForest(f), Model::GradientBoosting(b)] {
            let section = ModelSection::from(m);
            assert_eq!(check_model(&section, Path::new("a")).unwrap(), m);
        }
    }

    #[test]
    fn missing_rules_must_fit_the_column_type() {
        let ok = parse(&format!(
            "{BASE}model: {{kind: linear}}\nmissing: {{columns: {{a: median, b: {{constant: 2.5}}, c: reject}}}}\n"
        ))
        .unwrap();
        assert_eq!(ok.numeric_rule("b"), NumericRule::Constant(2.5));
        assert_eq!(ok.categorical_rule("c"), CategoricalRule::Reject);
        assert_eq!(ok.numeric_rule("a"), NumericRule::Median);
        for bad in ["{a: category}", "{c: mean}", "{zz: mean}"] {
            let e = parse(&format!("{BASE}model: {{kind: linear}}\nmissing: {{columns: {bad}}}\n")).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}");
        }
    }

    #[test]
    fn defaults_are_resolved_once_into_the_model_enum() {
        let p = parse(&format!("{BASE}model: {{kind: elastic_net, alpha: 0.1}}\n")).unwrap();
        assert_eq!(
            *p.model(),
            Model::ElasticNet {
                alpha: 0.1,
                l1_ratio: DEFAULT_L1_RATIO,
                max_iterations: DEFAULT_MAX_ITERATIONS,
                tolerance: DEFAULT_TOLERANCE
            }
        );
        assert_eq!(p.numeric_rule("a"), NumericRule::Mean);
        assert_eq!(p.categorical_rule("c"), CategoricalRule::Category);
        // serialised as the params file it stands for, defaults written out, and read back
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["model"]["max_iterations"], 10_000);
        assert_eq!(serde_json::from_value::<Params>(json).unwrap(), p);
    }

    #[test]
    fn a_numeric_default_rule_of_category_is_refused_by_type() {
        let e = parse(&format!("{BASE}model: {{kind: linear}}\nmissing: {{numeric: category}}\n")).unwrap_err();
        assert!(matches!(&e, Error::Config { key, .. } if key == "missing.numeric"), "{e}");
        let e = parse(&format!("{BASE}model: {{kind: linear}}\nmissing: {{categorical: mean}}\n")).unwrap_err();
        assert!(matches!(&e, Error::Config { key, .. } if key == "missing.categorical"), "{e}");
        assert!(serde_json::from_str::<NumericRule>("\"category\"").is_err());
        assert!(serde_json::from_str::<CategoricalRule>("\"median\"").is_err());
    }

    #[test]
    fn target_cannot_be_a_feature() {
        let text = "name: m\ndata: {train: d.csv}\ntarget: a\nfeatures: {numeric: [a]}\nmodel: {kind: linear}\n";
        assert!(parse(text).is_err());
    }
}
