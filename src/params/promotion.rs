//! The promotion policy: which alias `train` moves, and the gate a new model must pass
//! ([`Gate`]: the metric and the improvement required). Alias names are checked here, once.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// Regressors: `rmse` (default), `mae` or `r2`; classifiers: `log_loss` (default),
    /// `accuracy`, `auc` or `f1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Required improvement: a number (absolute) or a percentage string such as `"2%"` (default 0).
    #[serde(default)]
    pub min_improvement: Option<NumberOrText>,
    /// Refuse when the new data drifted from the current model's training reference: the
    /// largest PSI of an input column on the new held-out rows above this (off by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drift: Option<f64>,
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
    crate::params::DEFAULT_ALIAS.to_string()
}

fn default_true() -> bool {
    true
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
    pub fn check(&self, path: &Path, classifier: bool) -> Result<Promotion> {
        crate::params::check_alias(&self.alias).map_err(|e| Error::config(path, "promotion.alias", e.to_string()))?;
        let metric = match &self.metric {
            None => GateMetric::default_for(classifier),
            Some(m) => GateMetric::parse(m).map_err(|m| Error::config(path, "promotion.metric", m))?,
        };
        metric.check_for(classifier).map_err(|m| Error::config(path, "promotion.metric", m))?;
        let min_improvement = match &self.min_improvement {
            None => MinImprovement::Absolute(0.0),
            Some(v) => MinImprovement::parse(&v.to_string())
                .map_err(|m| Error::config(path, "promotion.min_improvement", m))?,
        };
        let max_drift = self
            .max_drift
            .map(check_max_drift)
            .transpose()
            .map_err(|m| Error::config(path, "promotion.max_drift", m))?;
        if max_drift.is_some() && !self.if_better {
            return Err(Error::config(
                path,
                "promotion.max_drift",
                "only applies with a gate (if_better: true); without one every model is promoted",
            ));
        }
        Ok(Promotion {
            alias: self.alias.clone(),
            gate: self.if_better.then_some(Gate { metric, min_improvement, max_drift }),
        })
    }
}

/// Check a drift gate's threshold: a PSI above 0 (0.1 is the watch line, 0.25 drift).
pub fn check_max_drift(psi: f64) -> std::result::Result<f64, String> {
    if psi.is_finite() && psi > 0.0 {
        Ok(psi)
    } else {
        Err(format!("{psi} is not a PSI above 0 (0.1 is the watch line, 0.25 the drift line)"))
    }
}

/// The alias `--promote`, `promote` and `rollback` use when none is given.
pub const DEFAULT_ALIAS: &str = "champion";

/// Check an alias name: `[a-z][a-z0-9_-]*`, at most 64 characters.
pub fn check_alias(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "alias {name:?}: use a lowercase letter then lowercase letters, digits, '_' or '-' (e.g. champion)"
        )))
    }
}

/// The metric the gate compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateMetric {
    /// Root mean squared error (lower is better).
    Rmse,
    /// Mean absolute error (lower is better).
    Mae,
    /// R² (higher is better).
    R2,
    /// A classifier's log loss (lower is better).
    #[serde(rename = "log_loss")]
    LogLoss,
    /// A classifier's accuracy (higher is better).
    Accuracy,
    /// A classifier's ROC AUC (higher is better).
    Auc,
    /// A classifier's macro F1 (higher is better).
    F1,
}

impl GateMetric {
    /// Parse `rmse`, `mae`, `r2` (regressors), `log_loss`, `accuracy`, `auc` or `f1` (classifiers).
    pub fn parse(s: &str) -> std::result::Result<GateMetric, String> {
        match s {
            "rmse" => Ok(GateMetric::Rmse),
            "mae" => Ok(GateMetric::Mae),
            "r2" => Ok(GateMetric::R2),
            "log_loss" => Ok(GateMetric::LogLoss),
            "accuracy" => Ok(GateMetric::Accuracy),
            "auc" => Ok(GateMetric::Auc),
            "f1" => Ok(GateMetric::F1),
            other => Err(format!(
                "{other:?}: expected rmse, mae or r2 (regressors), log_loss, accuracy, auc or f1 (classifiers)"
            )),
        }
    }

    /// The gate's metric when none is named: RMSE for a regressor, log loss for a classifier.
    pub fn default_for(classifier: bool) -> GateMetric {
        if classifier {
            GateMetric::LogLoss
        } else {
            GateMetric::Rmse
        }
    }

    /// Whether it measures a classifier.
    pub fn is_classification(self) -> bool {
        matches!(self, GateMetric::LogLoss | GateMetric::Accuracy | GateMetric::Auc | GateMetric::F1)
    }

    /// An error when the metric does not measure this kind of model.
    pub fn check_for(self, classifier: bool) -> std::result::Result<(), String> {
        match (self.is_classification(), classifier) {
            (true, false) => {
                Err(format!("{} measures a classifier; a regressor's gate uses rmse, mae or r2", self.as_str()))
            }
            (false, true) => Err(format!(
                "{} measures a regressor; a classifier's gate uses log_loss, accuracy, auc or f1",
                self.as_str()
            )),
            _ => Ok(()),
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            GateMetric::Rmse => "rmse",
            GateMetric::Mae => "mae",
            GateMetric::R2 => "r2",
            GateMetric::LogLoss => "log_loss",
            GateMetric::Accuracy => "accuracy",
            GateMetric::Auc => "auc",
            GateMetric::F1 => "f1",
        }
    }
}

/// The improvement a candidate needs over the current model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinImprovement {
    /// In the metric's units (`0.01`).
    Absolute(f64),
    /// A fraction of the current model's value (`2%` is 0.02).
    Relative(f64),
}

impl MinImprovement {
    /// Parse `0.01` (absolute) or `2%` (relative); negative values are refused.
    pub fn parse(s: &str) -> std::result::Result<MinImprovement, String> {
        let s = s.trim();
        let (num, rel) = match s.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (s, false),
        };
        let v: f64 = num.parse().map_err(|_| format!("{s:?}: expected a number (0.01) or a percentage (2%)"))?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("{s:?}: must be zero or more"));
        }
        Ok(if rel { MinImprovement::Relative(v / 100.0) } else { MinImprovement::Absolute(v) })
    }
}

impl std::fmt::Display for MinImprovement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinImprovement::Absolute(v) => write!(f, "{v}"),
            MinImprovement::Relative(v) => write!(f, "{}%", v * 100.0),
        }
    }
}

/// The promotion gate: which metric, and how much better a candidate must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// Compared metric.
    pub metric: GateMetric,
    /// Required improvement over the current model (a candidate must also be strictly better).
    pub min_improvement: MinImprovement,
    /// The drift gate (opt-in): the largest input column PSI of the new held-out rows against
    /// the current model's training reference that still promotes.
    pub max_drift: Option<f64>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate { metric: GateMetric::Rmse, min_improvement: MinImprovement::Absolute(0.0), max_drift: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> PromotionSection {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_drift_gate_is_a_psi_above_zero_and_needs_a_gate() {
        let path = Path::new("params/p.yaml");
        let p = section("max_drift: 0.25").check(path, false).unwrap();
        assert_eq!(p.gate.unwrap().max_drift, Some(0.25));
        assert_eq!(section("{}").check(path, false).unwrap().gate.unwrap().max_drift, None, "off by default");
        for bad in ["max_drift: 0", "max_drift: -1", "{max_drift: 0.25, if_better: false}"] {
            let e = section(bad).check(path, false).unwrap_err().to_string();
            assert!(e.contains("params/p.yaml") && e.contains("promotion.max_drift"), "{bad}: {e}");
        }
    }
}
