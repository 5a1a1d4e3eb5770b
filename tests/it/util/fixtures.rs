//! Input records: the red-wine dataset's first row as JSON, as a CSV row, and keyed batches.

/// The CSV header of data/winequality-red.csv.
pub const WINE_CSV_HEADER: &str = "fixed acidity,volatile acidity,citric acid,residual sugar,chlorides,\
                                   free sulfur dioxide,total sulfur dioxide,density,pH,sulphates,alcohol,quality";

/// The first row of data/winequality-red.csv.
pub const WINE_CSV_ROW: &str = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5";

/// The dataset's first row as a JSON object with `alcohol` set, and a `key` field if given.
pub fn wine_json(alcohol: f64, key: Option<&str>) -> String {
    let key = key.map(|k| format!("\"key\":\"{k}\",")).unwrap_or_default();
    format!(
        "{{{key}\"fixed acidity\":7.4,\"volatile acidity\":0.7,\"citric acid\":0,\"residual sugar\":1.9,\
         \"chlorides\":0.076,\"free sulfur dioxide\":11,\"total sulfur dioxide\":34,\"density\":0.9978,\
         \"pH\":3.51,\"sulphates\":0.56,\"alcohol\":{alcohol}}}"
    )
}

/// Record `i` of a stream: alcohol cycles through 9.0..=13.9.
pub fn wine_record(i: usize) -> Vec<u8> {
    wine_json(9.0 + (i % 50) as f64 * 0.1, None).into_bytes()
}

/// `n` records keyed `k0`, `k1`, ...
pub fn wine_records(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(|i| (format!("k{i}"), wine_record(i))).collect()
}

/// An alias move of `champion` of model `m` to `version` (the artifact need not exist).
pub fn alias_move(id: &str, version: &str, previous: Option<&str>) -> modelcast::messages::AliasMove {
    modelcast::messages::AliasMove {
        schema_version: modelcast::messages::MESSAGE_SCHEMA_VERSION,
        kind: modelcast::messages::ALIAS_MOVED.into(),
        id: id.into(),
        model_name: "m".into(),
        alias: "champion".into(),
        version: version.into(),
        key: format!("m/2026-01-01/{version}.json"),
        sha256: "ab".repeat(32),
        input_schema_digest: "sha256:x".into(),
        previous_version: previous.map(str::to_string),
        previous_input_schema_digest: None,
        action: modelcast::messages::MoveAction::Promote,
        reason: "test".into(),
        actor: "tester@host".into(),
        at: chrono::Utc::now(),
    }
}
