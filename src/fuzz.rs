//! Property tests of every decoder that takes outside input: records, announcements,
//! artifacts, params and Kafka config files. The property is "never panics, and errors are
//! errors" on arbitrary bytes and on arbitrary JSON/YAML-shaped values. The normal suite runs
//! proptest's default case count; `scripts/reliability.sh` runs them long
//! (`PROPTEST_CASES=100000`). Regressions found are added as plain tests at the bottom.

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

proptest! {
    #[test]
    fn fuzz_record_decoder_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decoder().json(&bytes);
    }

    #[test]
    fn fuzz_record_decoder_json(v in json_value()) {
        let text = serde_json::to_vec(&v).unwrap();
        let r = decoder().json(&text);
        // any JSON object decodes; anything else is an error, never a panic
        prop_assert_eq!(r.is_ok(), v.is_object());
    }

    #[test]
    fn fuzz_announcement_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512), v in json_value()) {
        let _ = Announcement::decode(&bytes);
        let _ = Announcement::decode(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn fuzz_artifact_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512), v in json_value()) {
        let _ = Artifact::decode("fuzz", &bytes);
        let mut v = v;
        if let Value::Object(m) = &mut v {
            m.insert("format".into(), Value::String(crate::artifact::FORMAT.into()));
            m.insert("schema_version".into(), Value::Number(1.into()));
        }
        prop_assert!(Artifact::decode("fuzz", &serde_json::to_vec(&v).unwrap()).is_err());
    }

    #[test]
    fn fuzz_params_and_kafka_config(text in ".{0,300}", v in json_value()) {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("modelcast-fuzz-{}.yaml", std::process::id()));
        for doc in [text.clone(), serde_yaml::to_string(&v).unwrap_or_default()] {
            if let Ok(p) = crate::config::parse_yaml::<crate::config::params::Params>(&path, &doc) {
                let _ = p.validate(&path);
            }
            std::fs::write(&path, &doc).unwrap();
            let _ = crate::config::kafka::KafkaConfig::load(&path);
        }
    }
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
