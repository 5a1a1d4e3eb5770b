//! A label record on the `labels` topic: the true value for a key, joined late to its prediction.

use crate::live::Truth;

/// A label record: `{KEY_FIELD: "k" | 7, LABEL_FIELD: 5.5 | "5.5" | "fraud" | true}`: a number or
/// text (a class's name), read as [`Truth`]; JSON `true`/`false` are the classes `1`/`0`.
pub fn decode_label(bytes: &[u8], key_field: &str, label_field: &str) -> std::result::Result<(String, Truth), String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let key = match v.get(key_field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(format!("no {key_field:?} (string or number)")),
    };
    let truth = match v.get(label_field) {
        Some(Value::Number(n)) => match n.as_f64().filter(|x| x.is_finite()) {
            Some(x) => Truth { text: n.to_string(), number: Some(x) },
            None => return Err(format!("{label_field:?} is not a finite number")),
        },
        Some(Value::String(s)) if !s.trim().is_empty() => Truth::text(s),
        Some(Value::Bool(b)) => Truth::number(f64::from(u8::from(*b))),
        _ => return Err(format!("no {label_field:?} (a number, or a class as text)")),
    };
    Ok((key, truth))
}
