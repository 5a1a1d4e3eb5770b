//! Preprocessing rules: what to do with a missing value (by column type) and how to scale
//! numbers. A rule as written ([`RuleText`]) is sorted into [`NumericRule`] or
//! [`CategoricalRule`] once the column's type is known, so an impossible pairing cannot exist.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The default missing-value tokens.
pub fn default_missing_tokens() -> Vec<String> {
    ["", "NA", "N/A", "NaN", "null"].iter().map(|s| s.to_string()).collect()
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
