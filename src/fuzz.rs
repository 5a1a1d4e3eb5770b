//! Property tests of every decoder that takes outside input: records, announcements,
//! artifacts, params and Kafka config files. The property is "never panics, and errors are
//! errors" on arbitrary bytes and on arbitrary JSON/YAML-shaped values. The normal suite runs
//! proptest's default case count; `scripts/reliability.sh` runs each for 10 minutes
//! (`MODELCAST_FUZZ_SECONDS=600`). Regressions found are added as plain tests at the bottom.

use proptest::prelude::*;
use serde_json::Value;

use crate::artifact::Artifact;
use crate::bus::Announcement;
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
            if let Ok(p) = crate::config::parse_yaml::<crate::config::params::ParamsFile>(&path, &doc) {
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
