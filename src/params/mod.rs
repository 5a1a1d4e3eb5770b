//! `params/*.yaml`: what to train on and how. See the README's "Params reference".
//!
//! Split by job: this file is the file's schema, [`ParamsFile::check`] and the accessors;
//! [`model`] holds the estimator hyperparameters, [`rules`] the preprocessing rules and
//! [`promotion`] the promotion policy and its gate.
//!
//! Architecture invariant: `params` imports only `util` and `error`; every layer above reads
//! the checked types, none of them the raw file.
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

pub mod model;
pub mod promotion;
pub mod rules;
pub mod target;

use model::check_model;
pub use model::{
    Boosting, FeatureRule, Forest, MaxFeatures, Model, ModelKind, ModelSection, DEFAULT_L1_RATIO, DEFAULT_MAX_BINS,
    DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE,
};
pub use promotion::{
    check_alias, check_max_drift, Gate, GateMetric, MinImprovement, Promotion, PromotionSection, DEFAULT_ALIAS,
};
pub use rules::{default_missing_tokens, CategoricalRule, MissingSection, NumericRule, RuleText, Scale};
pub use target::{ClassWeights, Decision, Target, TargetSection, DEFAULT_THRESHOLD};

/// A params file as written: the raw, unchecked form. [`ParamsFile::check`] turns it into [`Params`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsFile {
    /// Model name: the first path segment of every artifact key and the Kafka message key.
    pub name: String,
    /// Where the training data is and how to read it.
    pub data: DataSection,
    /// The column to predict: a name (a number), or `{column, classes | positive, class_weight}`
    /// (a class; see [`target`]).
    pub target: TargetSection,
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
    target: Target,
    decision: Decision,
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
        let text = crate::util::yaml::read_config_file(path)?;
        crate::util::yaml::parse_yaml(path, &text)
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
            if c.as_str() == self.target.column() {
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
        let target = self.target.check(path)?;
        let decision = self.target.decision(path)?;
        match (model.kind().is_classifier(), target.is_class()) {
            (true, false) => {
                return err(
                    "target",
                    format!(
                        "kind: {} predicts a class: write target: {{column: {}, classes: [...]}} or \
                         {{column: {}, positive: \">= N\"}}",
                        model.as_str(),
                        self.target.column(),
                        self.target.column()
                    ),
                )
            }
            (false, true) => {
                return err(
                    "target",
                    format!(
                        "kind: {} predicts a number, but the target has classes; a classifier is \
                         kind: logistic_regression",
                        model.as_str()
                    ),
                )
            }
            _ => {}
        }
        let ev = &self.evaluation;
        if ev.test_data.is_none() && !(ev.test_fraction > 0.0 && ev.test_fraction < 1.0) {
            return err("evaluation.test_fraction", format!("{} must be in (0, 1)", ev.test_fraction));
        }
        let promotion = self.promotion.as_ref().map(|p| p.check(path, model.kind().is_classifier())).transpose()?;
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
            target,
            decision,
            promotion,
        })
    }
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
        self.file.target.column()
    }

    /// What the target is: a number, or a class (with its labels and weights).
    pub fn target_kind(&self) -> &Target {
        &self.target
    }

    /// How a binary classifier's decision threshold is set (`target.threshold`).
    pub fn decision(&self) -> Decision {
        self.decision
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
        let params: ParamsFile = crate::util::yaml::parse_yaml(p, text)?;
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
    fn logistic_l1_ratio_defaults_to_l2_is_checked_and_round_trips() {
        let base = BASE.replace("target: y\n", "target: {column: y, classes: [a, b]}\n");
        let p = parse(&format!("{base}model: {{kind: logistic_regression}}\n")).unwrap();
        assert!(matches!(*p.model(), Model::LogisticRegression { l1_ratio, .. } if l1_ratio == 0.0));
        let p = parse(&format!("{base}model: {{kind: logistic_regression, l1_ratio: 0.3}}\n")).unwrap();
        let written = ModelSection::from(*p.model());
        assert_eq!(written.l1_ratio, Some(0.3));
        let e = parse(&format!("{base}model: {{kind: logistic_regression, l1_ratio: 1.5}}\n")).unwrap_err();
        assert!(matches!(&e, Error::Config { key, .. } if key == "model.l1_ratio"), "{e}");
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
            (100, Some(6), 1, MaxFeatures::Fraction(1.0), true, 9)
        );
        // the classifier kinds: scikit-learn's classifier defaults (`max_features: sqrt`)
        let yaml = "model: {kind: random_forest_classifier}\n";
        let classes = "target: {column: y, classes: [a, b]}\n";
        let p = parse(&format!("{}{classes}{yaml}", BASE.replace("target: y\n", ""))).unwrap();
        let Model::RandomForestClassifier(c) = *p.model() else { panic!("{:?}", p.model()) };
        assert_eq!(c.max_features, MaxFeatures::Rule(FeatureRule::Sqrt));
        assert_eq!((MaxFeatures::Rule(FeatureRule::Sqrt).count(11), MaxFeatures::Fraction(0.5).count(11)), (3, 5));
        // the artifact stores the resolved section; reading it back gives the same model
        for m in [
            Model::RandomForest(f),
            Model::GradientBoosting(b),
            Model::RandomForestClassifier(c),
            Model::GradientBoostingClassifier(b),
        ] {
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
