//! A label record on the `labels` topic: the true value for a key, joined late to its prediction.

/// A label record: `{KEY_FIELD: "k" | 7, LABEL_FIELD: 5.5 | "5.5"}`.
pub fn decode_label(bytes: &[u8], key_field: &str, label_field: &str) -> std::result::Result<(String, f64), String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let key = match v.get(key_field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(format!("no {key_field:?} (string or number)")),
    };
    let value = match v.get(label_field) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
    .ok_or_else(|| format!("no numeric {label_field:?}"))?;
    Ok((key, value))
}
