//! The `target` key: a column to predict as a number (regression), or as a class (classification).
//!
//! ```yaml
//! target: quality                      # a number: regression kinds
//! target: {column: grade, classes: [low, mid, high]}   # labels, in this order
//! target: {column: quality, positive: ">= 7"}           # a number made binary: classes 0 and 1
//! ```
//!
//! A classifier's classes are named in the params file, in the order its probabilities are
//! written (or `0`, `1` for a `positive` rule): a label outside them is an error naming the file
//! and line, never a silent new class. A label matches a class by its text, or as the same number
//! (`7` and `7.0` are one class), so CSV text and JSON numbers read alike.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A binary classifier's decision threshold unless `target.threshold` says otherwise.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// The most classes a target may have (metrics keep a class index in 16 bits).
pub const MAX_CLASSES: usize = 65_535;
/// The `target` key as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetSection {
    /// A numeric column (regression).
    Column(String),
    /// A column with classes, or a rule making it binary.
    Spec(TargetSpec),
}

/// `target: {column, classes | positive, class_weight}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The column.
    pub column: String,
    /// The class labels, in the order probabilities are written (two or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<Label>>,
    /// A comparison making a numeric column binary: `">= 7"` → class `1` where it holds, else `0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    /// `balanced` (weights n / (k · count of the class), as scikit-learn) or `{class: weight}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<ClassWeightSection>,
    /// Two classes: the decision threshold on class 1's probability, or how to choose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdSection>,
}

/// `target.threshold` as written: a probability, `max_f1`, or `{precision: P}` / `{recall: R}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ThresholdSection {
    /// A probability.
    Fixed(f64),
    /// `max_f1`.
    Rule(String),
    /// `{precision: P}` or `{recall: R}`.
    Goal(BTreeMap<String, f64>),
}

/// How a binary classifier's decision threshold is set, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// This probability (0.5 unless `target.threshold` says otherwise).
    Fixed(f64),
    /// The threshold of class 1's best F1 on the held-out rows.
    MaxF1,
    /// The lowest threshold whose held-out precision reaches this (the most recall at it).
    Precision(f64),
    /// The highest threshold whose held-out recall reaches this (the most precision at it).
    Recall(f64),
}

impl Decision {
    /// How it reads in the report and the logs.
    pub fn describe(&self) -> String {
        match self {
            Decision::Fixed(t) => format!("fixed at {t}"),
            Decision::MaxF1 => "the best F1 of class 1 on the held-out rows".into(),
            Decision::Precision(p) => format!("the most recall at precision ≥ {p} on the held-out rows"),
            Decision::Recall(r) => format!("the most precision at recall ≥ {r} on the held-out rows"),
        }
    }
}

/// A class label as written: text or a number (YAML `3` and `"3"` are the same class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Label {
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
}

impl Label {
    fn text(&self) -> String {
        match self {
            Label::Number(v) => number_text(*v),
            Label::Text(t) => t.clone(),
        }
    }
}

/// `class_weight` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeightSection {
    /// `balanced`.
    Keyword(String),
    /// A weight per class label (classes left out weigh 1).
    Given(BTreeMap<String, f64>),
}

/// A comparison operator of a `positive` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// What the target is, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A number (regression).
    Number,
    /// One of these classes (index = position).
    Classes {
        /// The labels, in order.
        labels: Vec<String>,
        /// The labels as numbers, where they are numbers (to match `7` with `7.0`).
        numbers: Vec<Option<f64>>,
        /// The weight of each class.
        weights: ClassWeights,
    },
    /// Class `1` where `value <op> threshold` holds, else `0`.
    Binary {
        /// The comparison.
        op: Compare,
        /// Its right-hand side.
        threshold: f64,
        /// The weight of each class.
        weights: ClassWeights,
    },
}

/// Class weights, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    /// Every row weighs 1.
    None,
    /// n / (k · count of the class), from the training rows.
    Balanced,
    /// A weight per class index.
    Given(Vec<f64>),
}

impl Target {
    /// Whether this target is a class.
    pub fn is_class(&self) -> bool {
        !matches!(self, Target::Number)
    }

    /// The class labels (empty for a number).
    pub fn labels(&self) -> Vec<String> {
        match self {
            Target::Number => Vec::new(),
            Target::Classes { labels, .. } => labels.clone(),
            Target::Binary { .. } => vec!["0".into(), "1".into()],
        }
    }

    /// The class weights (`None` for a number).
    pub fn weights(&self) -> &ClassWeights {
        match self {
            Target::Number => &ClassWeights::None,
            Target::Classes { weights, .. } | Target::Binary { weights, .. } => weights,
        }
    }

    /// The target value of a cell that is not missing: the number itself, or the class index.
    /// The error says why, without the column name (the caller adds it).
    pub fn code_text(&self, text: &str) -> std::result::Result<f64, String> {
        match self {
            Target::Number => parse_number(text),
            Target::Binary { op, threshold, .. } => {
                parse_number(text).map(|v| f64::from(u8::from(op.holds(v, *threshold))))
            }
            Target::Classes { labels, numbers, .. } => {
                if let Some(i) = labels.iter().position(|l| l == text) {
                    return Ok(i as f64);
                }
                if let Ok(v) = text.trim().parse::<f64>() {
                    if let Some(i) = numbers.iter().position(|n| *n == Some(v)) {
                        return Ok(i as f64);
                    }
                }
                Err(format!("{text:?} is not one of the classes {labels:?} (target.classes)"))
            }
        }
    }

    /// Text that [`Target::code_text`] reads back as `value` (a number, or a class index): what
    /// raw rows rebuilt from coded training rows carry (the gate of a model trained from a topic).
    /// For a `positive` rule, any number on the class's side of the threshold.
    pub fn text_of(&self, value: f64) -> String {
        match self {
            Target::Number => value.to_string(),
            Target::Classes { labels, .. } => labels.get(value as usize).cloned().unwrap_or_else(|| value.to_string()),
            Target::Binary { op, threshold, .. } => {
                let t = *threshold;
                let inside = value == 1.0;
                let v = match op {
                    Compare::Ge | Compare::Le | Compare::Eq if inside => t,
                    Compare::Gt | Compare::Ne if inside => t + 1.0,
                    Compare::Lt if inside => t - 1.0,
                    Compare::Ge => t - 1.0,
                    Compare::Le | Compare::Eq => t + 1.0,
                    Compare::Gt | Compare::Lt | Compare::Ne => t,
                };
                v.to_string()
            }
        }
    }

    /// [`Target::code_text`] for a number (a JSON number).
    pub fn code_number(&self, v: f64) -> std::result::Result<f64, String> {
        match self {
            Target::Number => Ok(v),
            Target::Binary { op, threshold, .. } => Ok(f64::from(u8::from(op.holds(v, *threshold)))),
            Target::Classes { labels, numbers, .. } => numbers
                .iter()
                .position(|n| *n == Some(v))
                .map(|i| i as f64)
                .ok_or_else(|| format!("{v} is not one of the classes {labels:?} (target.classes)")),
        }
    }
}

impl Compare {
    fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Compare::Ge => v >= t,
            Compare::Gt => v > t,
            Compare::Le => v <= t,
            Compare::Lt => v < t,
            Compare::Eq => v == t,
            Compare::Ne => v != t,
        }
    }
}

impl TargetSection {
    /// The column.
    pub fn column(&self) -> &str {
        match self {
            TargetSection::Column(c) => c,
            TargetSection::Spec(s) => &s.column,
        }
    }

    /// Check the section; errors name `path` and the dotted key.
    pub fn check(&self, path: &Path) -> Result<Target> {
        let err = |key: &str, msg: String| Err(Error::config(path, key, msg));
        let s = match self {
            TargetSection::Column(c) if c.is_empty() => return err("target", "name the column to predict".into()),
            TargetSection::Column(_) => return Ok(Target::Number),
            TargetSection::Spec(s) => s,
        };
        if s.column.is_empty() {
            return err("target.column", "name the column to predict".into());
        }
        let labels: Vec<String> =
            match (&s.classes, &s.positive) {
                (Some(_), Some(_)) => {
                    return err("target.positive", "give target.classes or target.positive, not both".into())
                }
                (None, None) => return err(
                    "target",
                    "a target mapping needs classes (e.g. classes: [3, 4, 5]) or positive (e.g. positive: \">= 7\"); \
                     a number to predict is written target: COLUMN"
                        .into(),
                ),
                (Some(c), None) => c.iter().map(Label::text).collect(),
                (None, Some(_)) => vec!["0".into(), "1".into()],
            };
        if labels.len() < 2 {
            return err("target.classes", format!("{labels:?}: a classifier needs two classes or more"));
        }
        if labels.len() > MAX_CLASSES {
            return err("target.classes", format!("{} classes: at most {MAX_CLASSES}", labels.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        let numbers: Vec<Option<f64>> = labels.iter().map(|l| l.trim().parse::<f64>().ok()).collect();
        for (l, n) in labels.iter().zip(&numbers) {
            if !seen.insert(n.map_or(l.clone(), number_text)) {
                return err("target.classes", format!("class {l:?} is listed twice"));
            }
        }
        let weights = match &s.class_weight {
            None => ClassWeights::None,
            Some(ClassWeightSection::Keyword(k)) if k == "balanced" => ClassWeights::Balanced,
            Some(ClassWeightSection::Keyword(k)) => {
                return err("target.class_weight", format!("{k:?}: write balanced or a map {{class: weight}}"))
            }
            Some(ClassWeightSection::Given(m)) => {
                let mut w = vec![1.0; labels.len()];
                for (class, v) in m {
                    let key = format!("target.class_weight.{class}");
                    let i = labels
                        .iter()
                        .position(|l| l == class)
                        .ok_or_else(|| Error::config(path, &key, format!("{class:?} is not one of {labels:?}")))?;
                    if !(v.is_finite() && *v > 0.0) {
                        return err(&key, format!("{v} must be a finite number > 0"));
                    }
                    w[i] = *v;
                }
                ClassWeights::Given(w)
            }
        };
        if s.threshold.is_some() && labels.len() != 2 {
            return err(
                "target.threshold",
                format!("a decision threshold is for two classes; this target has {}", labels.len()),
            );
        }
        match &s.positive {
            None => Ok(Target::Classes { labels, numbers, weights }),
            Some(rule) => {
                let (op, threshold) = parse_rule(rule).ok_or_else(|| {
                    Error::config(
                        path,
                        "target.positive",
                        format!("{rule:?}: write e.g. \">= 7\" (>=, >, <=, <, ==, != and a number)"),
                    )
                })?;
                Ok(Target::Binary { op, threshold, weights })
            }
        }
    }
}

impl TargetSection {
    /// The decision rule of a binary classifier (`Fixed(0.5)` unless `target.threshold` is
    /// given); errors name `path` and `target.threshold`.
    pub fn decision(&self, path: &Path) -> Result<Decision> {
        let TargetSection::Spec(TargetSpec { threshold: Some(t), .. }) = self else {
            return Ok(Decision::Fixed(DEFAULT_THRESHOLD));
        };
        let err = |msg: String| Err(Error::config(path, "target.threshold", msg));
        let unit = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
        match t {
            ThresholdSection::Fixed(v) if unit(*v) => Ok(Decision::Fixed(*v)),
            ThresholdSection::Fixed(v) => err(format!("{v}: a probability strictly between 0 and 1")),
            ThresholdSection::Rule(r) if r == "max_f1" => Ok(Decision::MaxF1),
            ThresholdSection::Goal(m) if m.len() == 1 => match m.iter().next() {
                Some((k, v)) if !unit(*v) => err(format!("{k}: {v}: a share strictly between 0 and 1")),
                Some((k, v)) if k == "precision" => Ok(Decision::Precision(*v)),
                Some((k, v)) if k == "recall" => Ok(Decision::Recall(*v)),
                _ => err(format!("{m:?}: write {{precision: 0.9}} or {{recall: 0.8}}")),
            },
            _ => err(format!("{t:?}: write a probability (0.3), max_f1, {{precision: 0.9}} or {{recall: 0.8}}")),
        }
    }
}

/// A class label's text for a number: `7` and `7.0` → `"7"` (as a categorical JSON number).
fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn parse_number(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{text:?} is not a finite number")),
    }
}

fn parse_rule(rule: &str) -> Option<(Compare, f64)> {
    let r = rule.trim();
    let (op, rest) = [
        (">=", Compare::Ge),
        ("<=", Compare::Le),
        ("==", Compare::Eq),
        ("!=", Compare::Ne),
        (">", Compare::Gt),
        ("<", Compare::Lt),
    ]
    .into_iter()
    .find_map(|(s, op)| r.strip_prefix(s).map(|rest| (op, rest)))?;
    let v: f64 = rest.trim().parse().ok()?;
    v.is_finite().then_some((op, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Target> {
        let s: TargetSection = serde_yaml::from_str(yaml).unwrap();
        s.check(Path::new("p.yaml"))
    }

    #[test]
    fn labels_code_by_text_or_number() {
        let t = check("{column: q, classes: [3, 4, five]}").unwrap();
        assert_eq!(t.labels(), ["3", "4", "five"]);
        assert_eq!(t.code_text("4").unwrap(), 1.0);
        assert_eq!(t.code_text("4.0").unwrap(), 1.0);
        assert_eq!(t.code_number(3.0).unwrap(), 0.0);
        assert_eq!(t.code_text("five").unwrap(), 2.0);
        let e = t.code_text("6").unwrap_err();
        assert!(e.contains("\"6\"") && e.contains("target.classes"), "{e}");
    }

    #[test]
    fn a_positive_rule_makes_a_number_binary() {
        let t = check("{column: q, positive: '>= 7'}").unwrap();
        assert_eq!(t.labels(), ["0", "1"]);
        assert_eq!(t.code_text("7").unwrap(), 1.0);
        assert_eq!(t.code_text("6.5").unwrap(), 0.0);
        assert_eq!(t.code_number(8.0).unwrap(), 1.0);
        assert!(t.code_text("x").is_err());
        // what raw rows rebuilt from coded rows carry reads back as the same class, for every rule
        for rule in [">= 7", "> 7", "<= 7", "< 7", "== 7", "!= 7"] {
            let t = check(&format!("{{column: q, positive: '{rule}'}}")).unwrap();
            for class in [0.0, 1.0] {
                assert_eq!(t.code_text(&t.text_of(class)).unwrap(), class, "{rule} class {class}");
            }
        }
        let t = check("{column: q, classes: [lo, hi]}").unwrap();
        assert_eq!(t.code_text(&t.text_of(1.0)).unwrap(), 1.0);
    }

    #[test]
    fn mistakes_name_the_key() {
        for (yaml, key) in [
            ("{column: q}", "target"),
            ("{column: q, classes: [a]}", "target.classes"),
            ("{column: q, classes: [a, a]}", "target.classes"),
            ("{column: q, classes: [3, 3.0]}", "target.classes"),
            ("{column: q, positive: '=> 7'}", "target.positive"),
            ("{column: q, positive: '>= 7', classes: [a, b]}", "target.positive"),
            ("{column: q, classes: [a, b], class_weight: even}", "target.class_weight"),
            ("{column: q, classes: [a, b], class_weight: {c: 2}}", "target.class_weight.c"),
            ("{column: q, classes: [a, b], class_weight: {a: 0}}", "target.class_weight.a"),
        ] {
            let e = check(yaml).unwrap_err();
            assert!(matches!(&e, Error::Config { key: k, .. } if k == key), "{yaml}: {e}");
        }
        assert!(serde_yaml::from_str::<TargetSection>("{column: q, clases: [a, b]}").is_err());
    }

    #[test]
    fn class_weights_resolve_by_label() {
        let t = check("{column: q, classes: [a, b, c], class_weight: {b: 2.5}}").unwrap();
        assert_eq!(*t.weights(), ClassWeights::Given(vec![1.0, 2.5, 1.0]));
        let t = check("{column: q, positive: '> 0', class_weight: balanced}").unwrap();
        assert_eq!(*t.weights(), ClassWeights::Balanced);
    }
}
