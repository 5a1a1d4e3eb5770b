//! Property tests of every decoder that takes outside input: records, announcements,
//! artifacts, params and Kafka config files. The property is "never panics, and errors are
//! errors" on arbitrary bytes and on arbitrary JSON/YAML-shaped values. The normal suite runs
//! proptest's default case count; `scripts/reliability.sh` runs each for 10 minutes
//! (`MODELCAST_FUZZ_SECONDS=600`). Regressions found are added as plain tests at the bottom.

use proptest::prelude::*;
use serde_json::Value;

use crate::artifact::Artifact;
use crate::messages::Announcement;
use crate::record::Decoder;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("alcohol".to_string()), Just("key".to_string()), Just("color".to_string()), ".{0,8}"],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn decoder() -> Decoder {
    Decoder::new(&["alcohol".to_string(), "pH".to_string(), "color".to_string()], "key")
}

/// Runs `test` on values of `strategy`: proptest's case count (`PROPTEST_CASES`, default 256), or
/// with `MODELCAST_FUZZ_SECONDS=N` rounds of 10,000 fresh random cases until N seconds are up.
/// Failures are shrunk, saved to `proptest-regressions/fuzz.txt` and replayed first next time.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let seconds = std::env::var("MODELCAST_FUZZ_SECONDS").ok().and_then(|s| s.parse::<u64>().ok());
    let start = std::time::Instant::now();
    let mut cases = 0u64;
    loop {
        let mut config = ProptestConfig { source_file: Some(file!()), ..ProptestConfig::default() };
        if seconds.is_some() {
            config.cases = 10_000;
        }
        cases += u64::from(config.cases);
        let mut runner = proptest::test_runner::TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        if seconds.is_none_or(|s| start.elapsed().as_secs() >= s) {
            break;
        }
    }
    eprintln!("FUZZ {name}: {cases} cases in {:.0?}, no failure", start.elapsed());
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

#[test]
fn fuzz_record_decoder_bytes() {
    fuzz("record decoder (bytes)", bytes(256), |b| {
        let _ = decoder().json(&b);
        Ok(())
    });
}

#[test]
fn fuzz_record_decoder_json() {
    fuzz("record decoder (JSON)", json_value(), |v| {
        let text = serde_json::to_vec(&v).unwrap();
        // any JSON object decodes; anything else is an error, never a panic
        prop_assert_eq!(decoder().json(&text).is_ok(), v.is_object());
        Ok(())
    });
}

/// The record scanner accepts nothing serde_json refuses and decodes what it accepts exactly as
/// serde_json does (cells compared by their Debug form, so -0.0 and 0.0 differ).
fn scanner_agrees_with_serde(text: &[u8]) -> Result<(), TestCaseError> {
    let d = decoder();
    let mut fast = vec![crate::features::Cell::Missing; 3];
    let mut slow = Vec::new();
    let serde = d.json_serde(text, &mut slow);
    if let Some(key) = d.scan(text, &mut fast) {
        let want =
            serde.map_err(|e| TestCaseError::fail(format!("the scanner accepted what serde_json refuses: {e}")))?;
        prop_assert_eq!(key, want);
        prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
    }
    Ok(())
}

#[test]
fn fuzz_record_scanner_agrees_with_serde_json() {
    let number = "-?(0|[0-9]{0,4})(\\.[0-9]{0,3})?([eE][+-]?[0-9]{0,3})?";
    let field = prop_oneof![
        Just("alcohol".to_string()),
        Just("pH".to_string()),
        Just("color".to_string()),
        Just("key".to_string()),
        "[a-z\"\\\\ ]{0,4}".prop_map(|s| s),
    ];
    let value = prop_oneof![
        number.prop_map(|n| n),
        "[a-z\"\\\\\u{1}é ]{0,5}".prop_map(|s| format!("\"{s}\"")),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("[1]".to_string()),
    ];
    let record = prop::collection::vec((field, value, "[ \t\n]{0,2}"), 0..5).prop_map(|fields| {
        let body: Vec<String> = fields.iter().map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}{w}")).collect();
        format!("{{{}}}", body.join(","))
    });
    fuzz(
        "record scanner vs serde_json",
        (record, json_value(), any::<prop::sample::Index>(), any::<u8>()),
        |(r, v, at, byte)| {
            scanner_agrees_with_serde(r.as_bytes())?;
            let compact = serde_json::to_vec(&v).unwrap();
            scanner_agrees_with_serde(&compact)?;
            scanner_agrees_with_serde(serde_json::to_string_pretty(&v).unwrap().as_bytes())?;
            // one byte of a record changed
            let mut bent = r.into_bytes();
            if !bent.is_empty() {
                let i = at.index(bent.len());
                bent[i] = byte;
            }
            scanner_agrees_with_serde(&bent)
        },
    );
}

#[test]
fn fuzz_record_numbers_are_what_the_standard_parser_makes_of_them() {
    let decimal = "-?[1-9][0-9]{0,17}(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,2})?";
    fuzz("record numbers vs str::parse", (decimal, any::<f64>()), |(text, f)| {
        for t in [text, format!("{f}"), format!("{f:e}"), format!("{f:.3}")] {
            let want: f64 = t.parse().unwrap();
            // alone, and followed by more of a record (digit runs are read 8 bytes at a time
            // where 8 bytes can be read)
            for input in [t.clone(), format!("{t}, \"more\": 12345678}}")] {
                match crate::record::number(input.as_bytes(), 0) {
                    Some((crate::features::Cell::Num(v), end)) => {
                        prop_assert_eq!(end, t.len(), "{}", input);
                        prop_assert_eq!(v.to_bits(), want.to_bits(), "{}", input);
                    }
                    // out of range (or "inf"/"NaN", which are not JSON numbers)
                    None => prop_assert!(!want.is_finite() || t.contains(['i', 'N']), "{}", input),
                    Some(other) => prop_assert!(false, "{input}: {other:?}"),
                }
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_announcement_decoder() {
    fuzz("announcement decoder", (bytes(512), json_value()), |(b, v)| {
        let _ = Announcement::decode(&b);
        let _ = Announcement::decode(&serde_json::to_vec(&v).unwrap());
        Ok(())
    });
}

#[test]
fn fuzz_artifact_decoder() {
    fuzz("artifact loader", (bytes(512), json_value()), |(b, mut v)| {
        let _ = Artifact::decode("fuzz", &b);
        if let Value::Object(m) = &mut v {
            m.insert("format".into(), Value::String(crate::artifact::FORMAT.into()));
            m.insert("schema_version".into(), Value::Number(1.into()));
        }
        let text = serde_json::to_vec(&v).unwrap();
        prop_assert!(Artifact::decode("fuzz", &text).is_err());
        Ok(())
    });
}

#[test]
fn fuzz_params_and_kafka_config() {
    let path = std::env::temp_dir().join(format!("modelcast-fuzz-{}.yaml", std::process::id()));
    fuzz("params and Kafka config loaders", (".{0,300}", json_value()), |(text, v)| {
        for doc in [text, serde_yaml::to_string(&v).unwrap_or_default()] {
            if let Ok(p) = crate::util::yaml::parse_yaml::<crate::params::ParamsFile>(&path, &doc) {
                let _ = p.check(&path);
            }
            std::fs::write(&path, &doc).unwrap();
            let _ = crate::config::kafka::KafkaConfig::load(&path);
        }
        Ok(())
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn fuzz_regression_deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    assert!(decoder().json(deep.as_bytes()).is_err());
    let deep_obj = format!("{{\"alcohol\": {}", "[".repeat(100_000));
    assert!(decoder().json(deep_obj.as_bytes()).is_err());
    assert!(Announcement::decode(deep.as_bytes()).is_err());
}

#[test]
fn fuzz_regression_a_non_scalar_key_field_is_ignored_not_an_error() {
    let r = decoder().json(br#"{"key": [], "alcohol": 1}"#).unwrap();
    assert_eq!(r.key, None);
    assert!(decoder().json(br#"{"key": {"a": 1}}"#).is_ok());
}

/// One field of a generated record: how a producer might send a value.
#[derive(Debug, Clone)]
enum Field {
    Absent,
    Null,
    /// A JSON number (finite).
    Number(f64),
    /// A JSON integer.
    Integer(i64),
    /// A JSON string (a numeric text with spaces, a missing token, a word, "inf", ...).
    Text(String),
    Bool(bool),
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::Absent),
        Just(Field::Null),
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            -1e6f64..1e6,
            (-50i32..50).prop_map(|i| f64::from(i) / 4.0)
        ]
        .prop_map(Field::Number),
        any::<i64>().prop_map(Field::Integer),
        prop_oneof![
            Just(String::new()),
            Just("NA".to_string()),
            Just(" N/A ".to_string()),
            Just("NaN".to_string()),
            Just("null".to_string()),
            Just("inf".to_string()),
            Just("-Infinity".to_string()),
            (-1e9f64..1e9).prop_map(|v| format!(" {v} ")),
            (-1000i32..1000).prop_map(|v| v.to_string()),
            "[a-z][a-z0-9 _-]{0,8}",
            "[0-9]{1,3}\\.[0-9]{0,3}",
        ]
        .prop_map(Field::Text),
        any::<bool>().prop_map(Field::Bool),
    ]
}

impl Field {
    fn json(&self) -> Option<Value> {
        match self {
            Field::Absent => None,
            Field::Null => Some(Value::Null),
            Field::Number(v) => serde_json::Number::from_f64(*v).map(Value::Number),
            Field::Integer(i) => Some(Value::Number((*i).into())),
            Field::Text(s) => Some(Value::String(s.clone())),
            Field::Bool(b) => Some(Value::Bool(*b)),
        }
    }

    /// The same value as a CSV cell, when a CSV can say it (a CSV has no types: only text, and
    /// an empty cell for null or absent; a JSON float in a categorical column has no CSV twin).
    fn csv(&self, categorical: bool) -> Option<String> {
        match self {
            Field::Absent | Field::Null => Some(String::new()),
            Field::Number(v) if !categorical => Some(serde_json::Number::from_f64(*v)?.to_string()),
            Field::Number(_) => None,
            // JSON numbers are doubles (RFC 8259's interoperable range): an integer category
            // beyond 2^53 is the nearest double in JSON, exact text in a CSV
            Field::Integer(i) if categorical && i.unsigned_abs() > 1 << 53 => None,
            Field::Integer(i) => Some(i.to_string()),
            Field::Text(s) => Some(s.clone()),
            Field::Bool(_) => None,
        }
    }
}

/// The three readers of a record hold to one set of cell rules: training from a topic
/// (`data::parse_json_row`), training from a CSV (`data::read_csv`) and serving
/// (`record::Decoder` + `features::{numeric_value, category_text}`, what the scorer applies). On
/// the same input they agree on whether each value is usable and on what it is.
#[test]
fn training_and_serving_read_the_same_cells() {
    use crate::data::{load_csv, parse_json_row, ColumnSpec};
    use crate::features::{category_text, numeric_value};
    let numeric = vec!["n1".to_string(), "n2".to_string()];
    let categorical = vec!["c1".to_string()];
    let tokens = crate::params::default_missing_tokens();
    let spec = ColumnSpec {
        numeric: &numeric,
        categorical: &categorical,
        target: "y",
        target_kind: &crate::params::Target::Number,
        delimiter: b',',
        missing_tokens: &tokens,
    };
    let columns: Vec<String> = numeric.iter().chain(&categorical).cloned().collect();
    let serving = Decoder::new(&columns, "key");
    let dir = tempfile::tempdir().unwrap();
    fuzz("training and serving cells", (field(), field(), field(), -1e3f64..1e3), |(n1, n2, c1, y)| {
        let mut obj = serde_json::Map::new();
        for (name, f) in [("n1", &n1), ("n2", &n2), ("c1", &c1)] {
            if let Some(v) = f.json() {
                obj.insert(name.to_string(), v);
            }
        }
        obj.insert("y".into(), serde_json::json!(y));
        let bytes = serde_json::to_vec(&Value::Object(obj)).unwrap();
        // training from a topic
        let trained = parse_json_row(&bytes, &spec);
        // serving
        let decoded = serving.json(&bytes).map_err(|e| TestCaseError::fail(format!("serving refused {e}")))?;
        let served_num: Vec<Result<Option<f64>, String>> =
            decoded.cells[..2].iter().map(|c| numeric_value(c, &tokens)).collect();
        let served_cat = category_text(&decoded.cells[2], &tokens).map(|c| c.map(|c| c.into_owned()));
        let served_ok = served_num.iter().all(Result::is_ok) && served_cat.is_ok();
        prop_assert_eq!(
            trained.is_ok(),
            served_ok,
            "{} -> {:?} / {:?} {:?}",
            String::from_utf8_lossy(&bytes),
            trained,
            served_num,
            served_cat
        );
        // training from a CSV of the same values, where a CSV can say them
        let csv_twin = match (n1.csv(false), n2.csv(false), c1.csv(true)) {
            (Some(a), Some(b), Some(c)) => {
                let path = dir.path().join("row.csv");
                let mut w = csv::Writer::from_path(&path).unwrap();
                w.write_record(["n1", "n2", "c1", "y"]).unwrap();
                w.write_record([a, b, c, serde_json::json!(y).to_string()]).unwrap();
                w.flush().unwrap();
                drop(w);
                Some(load_csv(&[&path], &spec).map(|(t, _)| t))
            }
            _ => None,
        };
        if let Some(t) = &csv_twin {
            prop_assert_eq!(
                t.is_ok(),
                trained.is_ok(),
                "CSV {:?} vs JSON {:?}",
                t.as_ref().err().map(|e| e.to_string()),
                trained
            );
        }
        let Ok(row) = trained else { return Ok(()) };
        for (t, s) in row.numeric.iter().zip(&served_num) {
            let s = s.clone().unwrap().unwrap_or(f64::NAN);
            prop_assert!(t.to_bits() == s.to_bits() || (t.is_nan() && s.is_nan()), "{t} vs {s}");
        }
        prop_assert_eq!(&row.categorical[0], &served_cat.unwrap());
        let Some(Ok(table)) = csv_twin else { return Ok(()) };
        for (j, t) in row.numeric.iter().enumerate() {
            let c = table.numeric[j][0];
            prop_assert!(t.to_bits() == c.to_bits() || (t.is_nan() && c.is_nan()), "column {j}: {t} vs CSV {c}");
        }
        prop_assert_eq!(row.categorical[0].as_deref(), table.categorical[0].get(0));
        Ok(())
    });
}

/// The model the inference-request fuzzers score with: the shipped wine params, trained once.
fn served() -> &'static crate::predict::Served {
    static SERVED: std::sync::OnceLock<crate::predict::Served> = std::sync::OnceLock::new();
    SERVED.get_or_init(|| {
        let params = crate::params::Params::load(std::path::Path::new("params/params.yaml")).unwrap();
        let a = crate::train::fit_artifact(&params).unwrap();
        crate::predict::Served::from_artifact(&a, crate::predict::ServeOptions::key("key")).unwrap()
    })
}

/// An inference request of the protocol's shape: input names (the model's columns, or not),
/// datatypes (the protocol's, or not), small shapes, any data, and binary parts.
fn infer_request() -> impl Strategy<Value = (Value, Vec<u8>)> {
    let name = prop_oneof![
        Just("alcohol".to_string()),
        Just("pH".to_string()),
        Just("fixed acidity".to_string()),
        Just("input-0".to_string()),
        ".{0,8}"
    ];
    let datatype = prop_oneof![
        Just("FP64"),
        Just("FP32"),
        Just("FP16"),
        Just("INT64"),
        Just("UINT8"),
        Just("BOOL"),
        Just("BYTES"),
        Just("BF16"),
        Just("nope")
    ];
    let shape = prop::collection::vec(-2i64..5, 0..3);
    let tensor =
        (name, datatype, shape, json_value(), prop::option::of(0u64..64)).prop_map(|(n, d, s, data, binary)| {
            let mut t = serde_json::json!({"name": n, "datatype": d, "shape": s});
            match binary {
                Some(size) => t["parameters"] = serde_json::json!({"binary_data_size": size}),
                None => t["data"] = data,
            }
            t
        });
    (prop::collection::vec(tensor, 0..13), bytes(128), any::<bool>()).prop_map(|(inputs, binary, all_binary)| {
        (serde_json::json!({"inputs": inputs, "parameters": {"binary_data_output": all_binary}}), binary)
    })
}

/// An inference request never panics the server and is answered or refused with 400, whatever
/// its bytes or its shape (issue 25, acceptance 2).
#[test]
fn fuzz_inference_request_decoder() {
    let m = served();
    fuzz("inference request (bytes)", bytes(256), |b| {
        if let Err(e) = crate::predict::oip::respond_parts(m, &b, &[]) {
            prop_assert_eq!(e.status.as_u16(), 400, "{}", e.message);
        }
        Ok(())
    });
    fuzz("inference request (shaped)", infer_request(), |(req, binary)| {
        let text = req.to_string();
        match crate::predict::oip::respond_parts(m, text.as_bytes(), &binary) {
            Ok(reply) => prop_assert!(reply.header["outputs"].is_array()),
            Err(e) => prop_assert_eq!(e.status.as_u16(), 400, "{}", e.message),
        }
        Ok(())
    });
}
