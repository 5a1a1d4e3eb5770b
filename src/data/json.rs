//! Training rows from JSON objects (records of a topic), read by the same cell rules as a CSV.

use super::cells::{is_missing, parse_number};
use super::ColumnSpec;

/// One training row decoded from a JSON object (a topic record): the values in [`ColumnSpec`]
/// order, read by the same rules as a CSV cell.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRow {
    /// Numeric features; `NaN` marks missing.
    pub numeric: Vec<f64>,
    /// Categorical features; `None` marks missing.
    pub categorical: Vec<Option<String>>,
    /// The target.
    pub target: f64,
}

/// Decode a labelled record. Numbers are numbers or numeric strings; `null`, an absent field or a
/// missing token is missing; a categorical number is its JSON text. The target must be present
/// and numeric. Errors say which field and why (the reason a rejected record is counted under).
pub fn parse_json_row(bytes: &[u8], spec: &ColumnSpec<'_>) -> std::result::Result<JsonRow, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("not a JSON object".into());
    };
    let number = |name: &str| -> std::result::Result<Option<f64>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_f64().filter(|v| v.is_finite()).map(Some).ok_or_else(|| format!("{name:?}: {n} is not finite"))
            }
            Some(Value::String(s)) => parse_number(s, spec.missing_tokens).map_err(|m| format!("{name:?}: {m}")),
            Some(other) => Err(format!("{name:?}: {other} is not a number")),
        }
    };
    let numeric = spec
        .numeric
        .iter()
        .map(|c| number(c).map(|v| v.unwrap_or(f64::NAN)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let categorical = spec
        .categorical
        .iter()
        .map(|c| match obj.get(c.as_str()) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if is_missing(s, spec.missing_tokens) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(n.as_f64().map(super::cells::number_category)),
            Some(other) => Err(format!("{c:?}: {other} is not a category")),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let missing = || format!("target {:?} is missing", spec.target);
    let target = match (spec.target_kind, obj.get(spec.target)) {
        (crate::params::Target::Number, _) => number(spec.target)?.ok_or_else(missing)?,
        (_, None | Some(Value::Null)) => return Err(missing()),
        (_, Some(Value::String(s))) if is_missing(s, spec.missing_tokens) => return Err(missing()),
        (kind, Some(Value::String(s))) => {
            kind.code_text(s.trim()).map_err(|m| format!("target {:?}: {m}", spec.target))?
        }
        (kind, Some(Value::Number(n))) => n
            .as_f64()
            .ok_or_else(|| format!("target {:?}: {n} is not a number", spec.target))
            .and_then(|v| kind.code_number(v).map_err(|m| format!("target {:?}: {m}", spec.target)))?,
        (_, Some(other)) => return Err(format!("target {:?}: {other} is not a class label", spec.target)),
    };
    Ok(JsonRow { numeric, categorical, target })
}
