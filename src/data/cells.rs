//! The rules for one cell, shared by every reader of training data (CSV, topic JSON) and held
//! to the serving decoder (`record`) by a property test: what is missing, what is a number.

/// Whether `cell` is one of the missing-value tokens.
pub fn is_missing(cell: &str, tokens: &[String]) -> bool {
    let cell = cell.trim();
    tokens.iter().any(|t| t == cell)
}

/// Parse a numeric cell: `Ok(None)` for missing, an error message for non-numbers and non-finite values.
pub fn parse_number(cell: &str, tokens: &[String]) -> std::result::Result<Option<f64>, String> {
    if is_missing(cell, tokens) {
        return Ok(None);
    }
    match cell.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Err(format!("{cell:?} is not a finite number")),
        Err(_) => Err(format!("{cell:?} is not a number")),
    }
}

/// The category a number stands for in a categorical column of a JSON record (training and
/// serving alike): an integral value below 10¹⁵ without a fraction (`7`, `7.0` → `"7"`), any
/// other its shortest text (`1.5` → `"1.5"`). JSON numbers are doubles, so an integer beyond
/// 2⁵³ is the nearest double's text: identifiers that long belong in JSON strings.
pub fn number_category(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
