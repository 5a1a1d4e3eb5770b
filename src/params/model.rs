//! Estimator hyperparameters: the `model` section as written ([`ModelSection`]) and checked
//! ([`Model`], carrying exactly its kind's hyperparameters with defaults resolved, as linfa's
//! checked parameter types). A key the kind does not read is an error naming it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default coordinate-descent iteration cap (lasso, elastic net).
pub const DEFAULT_MAX_ITERATIONS: u32 = 10_000;

/// Default coordinate-descent tolerance (lasso, elastic net).
pub const DEFAULT_TOLERANCE: f64 = 1e-8;

/// Default elastic-net mixing.
pub const DEFAULT_L1_RATIO: f64 = 0.5;

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
    /// Logistic regression, binary or multinomial, L2-penalised (sklearn `LogisticRegression`).
    LogisticRegression,
    /// Bagged gini trees whose leaves hold class frequencies (sklearn `RandomForestClassifier`).
    RandomForestClassifier,
    /// Histogram gradient boosting on the log loss, one tree per class per round for more than
    /// two classes (sklearn `HistGradientBoostingClassifier`).
    GradientBoostingClassifier,
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
            ModelKind::LogisticRegression => "logistic_regression",
            ModelKind::RandomForestClassifier => "random_forest_classifier",
            ModelKind::GradientBoostingClassifier => "gradient_boosting_classifier",
        }
    }

    /// Kinds that predict a class (their target has classes).
    pub fn is_classifier(self) -> bool {
        matches!(
            self,
            ModelKind::LogisticRegression | ModelKind::RandomForestClassifier | ModelKind::GradientBoostingClassifier
        )
    }

    /// Tree ensembles (split on raw, imputed values; `scale` does not apply).
    pub fn is_trees(self) -> bool {
        matches!(
            self,
            ModelKind::RandomForest
                | ModelKind::GradientBoosting
                | ModelKind::RandomForestClassifier
                | ModelKind::GradientBoostingClassifier
        )
    }
}

/// How many features a forest tries at each split: a fraction of them, or scikit-learn's
/// `"sqrt"` / `"log2"` of their number (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaxFeatures {
    /// A fraction of the features, in `(0, 1]`.
    Fraction(f64),
    /// A rule on the feature count.
    Rule(FeatureRule),
}

/// `max_features` rules by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureRule {
    /// `floor(sqrt(features))` (scikit-learn's classifier default).
    Sqrt,
    /// `floor(log2(features))`.
    Log2,
}

impl MaxFeatures {
    /// The features tried at each split out of `features` (between 1 and `features`).
    pub fn count(self, features: usize) -> usize {
        let n = match self {
            MaxFeatures::Fraction(f) => (f * features as f64).floor() as usize,
            MaxFeatures::Rule(FeatureRule::Sqrt) => (features as f64).sqrt().floor() as usize,
            MaxFeatures::Rule(FeatureRule::Log2) => (features as f64).log2().floor() as usize,
        };
        n.clamp(1, features.max(1))
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
    /// Elastic net mixing, in `[0, 1]` (1 = lasso): elastic_net (default 0.5) and
    /// logistic_regression (default 0, the L2 penalty).
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
    /// Forests: the features tried at each split, a fraction in `(0, 1]` or `sqrt` / `log2`
    /// (default 1.0 for random_forest, `sqrt` for random_forest_classifier, as scikit-learn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_features: Option<MaxFeatures>,
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
    /// logistic_regression: inverse of the L2 penalty, as scikit-learn's `C` (default 1.0).
    #[serde(default, rename = "C", skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
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
    /// Logistic regression by Newton's method on the penalised log loss.
    LogisticRegression {
        /// Inverse penalty (> 0): the loss is `C·Σ wᵢ·logloss(i) + (1−ρ)/2·‖β‖² + ρ·‖β‖₁`.
        c: f64,
        /// ρ, the L1 share of the penalty, in `[0, 1]` (0 = L2, scikit-learn's default).
        l1_ratio: f64,
        /// Newton iteration cap (>= 1).
        max_iterations: u32,
        /// Convergence: the largest gradient entry, relative to `C·Σ wᵢ` (> 0).
        tolerance: f64,
    },
    /// A random forest of gini trees.
    RandomForestClassifier(Forest),
    /// Gradient-boosted trees on the log loss.
    GradientBoostingClassifier(Boosting),
}

/// Default Newton iteration cap of logistic regression.
pub const DEFAULT_NEWTON_ITERATIONS: u32 = 100;

/// Default logistic-regression tolerance (relative gradient).
pub const DEFAULT_NEWTON_TOLERANCE: f64 = 1e-10;

/// Random forest hyperparameters (scikit-learn's names and meanings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forest {
    /// Number of trees (>= 1).
    pub n_estimators: u32,
    /// Deepest level a tree grows to (`None`: until leaves are pure or too small).
    pub max_depth: Option<u32>,
    /// Fewest training rows in a leaf (>= 1).
    pub min_samples_leaf: u32,
    /// The features tried at each split.
    pub max_features: MaxFeatures,
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
            Model::LogisticRegression { .. } => ModelKind::LogisticRegression,
            Model::RandomForestClassifier(_) => ModelKind::RandomForestClassifier,
            Model::GradientBoostingClassifier(_) => ModelKind::GradientBoostingClassifier,
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
            Model::RandomForest(f) | Model::RandomForestClassifier(f) => {
                s.n_estimators = Some(f.n_estimators);
                s.max_depth = f.max_depth;
                s.min_samples_leaf = Some(f.min_samples_leaf);
                s.max_features = Some(f.max_features);
                s.bootstrap = Some(f.bootstrap);
                s.max_bins = Some(f.max_bins);
                s.seed = Some(f.seed);
            }
            Model::LogisticRegression { c, l1_ratio, max_iterations, tolerance } => {
                (s.c, s.max_iterations, s.tolerance) = (Some(c), Some(max_iterations), Some(tolerance));
                s.l1_ratio = (l1_ratio != 0.0).then_some(l1_ratio);
            }
            Model::GradientBoosting(b) | Model::GradientBoostingClassifier(b) => {
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
            c: None,
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
            (self.c.is_some(), "model.C"),
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
        ModelKind::LogisticRegression => &["model.C", "model.l1_ratio", "model.max_iterations", "model.tolerance"],
        ModelKind::RandomForest | ModelKind::RandomForestClassifier => &[
            "model.n_estimators",
            "model.max_depth",
            "model.min_samples_leaf",
            "model.max_features",
            "model.bootstrap",
            "model.max_bins",
            "model.seed",
        ],
        ModelKind::GradientBoosting | ModelKind::GradientBoostingClassifier => &[
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

pub(crate) fn check_model(m: &ModelSection, path: &Path) -> Result<Model> {
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
        ModelKind::RandomForestClassifier => return check_forest(m, path).map(Model::RandomForestClassifier),
        ModelKind::GradientBoostingClassifier => return check_boosting(m, path).map(Model::GradientBoostingClassifier),
        ModelKind::LogisticRegression => return check_logistic(m, path),
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

fn check_logistic(m: &ModelSection, path: &Path) -> Result<Model> {
    let c = m.c.unwrap_or(1.0);
    if !(c.is_finite() && c > 0.0) {
        return Err(Error::config(path, "model.C", format!("{c} must be a finite number > 0")));
    }
    let tolerance = m.tolerance.unwrap_or(DEFAULT_NEWTON_TOLERANCE);
    if !(tolerance.is_finite() && tolerance > 0.0) {
        return Err(Error::config(path, "model.tolerance", format!("{tolerance} must be > 0")));
    }
    let max_iterations = check_positive(path, "model.max_iterations", m.max_iterations, DEFAULT_NEWTON_ITERATIONS)?;
    let l1_ratio = m.l1_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&l1_ratio) {
        return Err(Error::config(path, "model.l1_ratio", format!("{l1_ratio} must be in [0, 1]")));
    }
    Ok(Model::LogisticRegression { c, l1_ratio, max_iterations, tolerance })
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
    let default = match m.kind {
        ModelKind::RandomForestClassifier => MaxFeatures::Rule(FeatureRule::Sqrt),
        _ => MaxFeatures::Fraction(1.0),
    };
    let max_features = m.max_features.unwrap_or(default);
    if let MaxFeatures::Fraction(f) = max_features {
        if !(f > 0.0 && f <= 1.0) {
            return Err(Error::config(
                path,
                "model.max_features",
                format!("{f} must be a fraction of the features in (0, 1], or sqrt or log2"),
            ));
        }
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
