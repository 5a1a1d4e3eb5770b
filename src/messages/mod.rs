//! Every wire format of modelcast, pure (encode/decode only), the same on every channel (the
//! local logs of the embedded default and Kafka topics): the announcement and the alias move
//! ([`announcement`]), the prediction and the dead letter ([`prediction`]), the envelope a
//! channel sends ([`envelope`]), live metrics ([`metrics`]) and labels ([`label`]). Each is a
//! compatibility promise with a `schema_version`, documented in the README.
//!
//! Architecture invariant: `messages` names no transport, store, command or runtime type; the
//! edges (`bus`, `aliases`) carry these bytes and the flows build and read them.

pub mod announcement;
pub mod drift;
pub mod envelope;
pub mod label;
pub mod metrics;
pub mod prediction;

pub use announcement::{
    AliasMove, Announcement, ExportRef, HeadlineMetrics, ModelRef, MoveAction, Skipped, TrainMessage, ALIAS_MOVED,
};
pub use drift::DriftMessage;
pub use envelope::{Outbox, Outgoing, OutputTopics};
pub use label::decode_label;
pub use metrics::{ModelMetrics, MODEL_METRICS_SCHEMA_VERSION};
pub use prediction::{
    ClassProbabilities, DeadLetter, Origin, OriginRef, Prediction, PredictionRef, Probabilities, Scored,
};

/// Version of the announcement and prediction message formats.
pub const MESSAGE_SCHEMA_VERSION: u32 = 1;

/// The `schema_version` of a classifier's prediction: version 1's fields, `prediction` being a
/// probability, plus `class` and `probabilities`. A reader of version 1 that checks the version
/// refuses it rather than read a probability as a regression value.
pub const CLASSIFIER_PREDICTION_SCHEMA_VERSION: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::escape::needs_escape;
    use chrono::Utc;

    #[test]
    fn the_word_at_a_time_escape_check_agrees_with_the_bytewise_one() {
        let bytewise = |s: &[u8]| s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        // every byte value at every position of strings of 0 to 19 plain bytes (words and
        // remainders), next to bytes just above and below the thresholds
        for len in 0..20usize {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut s: Vec<u8> =
                        (0..len).map(|i| [b'a', 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0xc3][i % 8]).collect();
                    s[at] = byte;
                    assert_eq!(needs_escape(&s), bytewise(&s), "{s:?}");
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    fn sample() -> Announcement {
        Announcement {
            schema_version: 1,
            model_name: "m".into(),
            version: "20260101T000000000Z-abcdef01".into(),
            uri: "file://models/m/2026-01-01/x.json".into(),
            key: "m/2026-01-01/x.json".into(),
            sha256: "a".repeat(64),
            size: 10,
            created_at: Utc::now(),
            metrics: HeadlineMetrics { r2: 0.5, rmse: 1.0, mae: 0.8 },
            input_schema_digest: "sha256:x".into(),
            tool_version: "0.1.0".into(),
            exports: vec![],
        }
    }

    #[test]
    fn announcement_round_trips() {
        let a = sample();
        assert_eq!(Announcement::decode(&a.encode().unwrap()).unwrap(), a);
    }

    #[test]
    fn bad_announcements_are_refused_with_a_reason() {
        assert!(Announcement::decode(b"\xff\xfe").unwrap_err().contains("not an announcement"));
        let mut a = sample();
        a.schema_version = 7;
        assert!(Announcement::decode(&a.encode().unwrap()).unwrap_err().contains("schema_version 7"));
        let mut a = sample();
        a.key = "../../etc/passwd".into();
        assert!(Announcement::decode(&a.encode().unwrap()).unwrap_err().contains("invalid store key"));
        let mut a = sample();
        a.sha256 = "zz".into();
        assert!(Announcement::decode(&a.encode().unwrap()).is_err());
    }

    fn alias_move() -> AliasMove {
        AliasMove {
            schema_version: 1,
            kind: ALIAS_MOVED.into(),
            id: "m1".into(),
            model_name: "m".into(),
            alias: "champion".into(),
            version: "v2".into(),
            key: "m/2026-01-01/v2.json".into(),
            sha256: "b".repeat(64),
            input_schema_digest: "sha256:x".into(),
            previous_version: Some("v1".into()),
            previous_input_schema_digest: None,
            action: MoveAction::Promote,
            reason: "better".into(),
            actor: "ci".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn train_messages_are_told_apart_by_type_and_unknown_types_are_skipped() {
        let a = sample();
        assert_eq!(TrainMessage::decode(&a.encode().unwrap()), Ok(TrainMessage::Announced(a)));
        let m = alias_move();
        assert_eq!(TrainMessage::decode(&m.encode().unwrap()), Ok(TrainMessage::AliasMoved(m.clone())));
        let future = br#"{"schema_version":1,"type":"model_deleted","model_name":"m"}"#;
        assert_eq!(TrainMessage::decode(future), Err(Skipped::UnknownType("model_deleted".into())));
        let mut bad = m;
        bad.key = "/etc/passwd".into();
        assert!(matches!(TrainMessage::decode(&bad.encode().unwrap()), Err(Skipped::Invalid(_))));
        assert!(matches!(TrainMessage::decode(b"[1]"), Err(Skipped::Invalid(_))));
    }

    #[test]
    fn prediction_json_has_the_documented_fields() {
        let p = Prediction {
            schema_version: 1,
            key: "7".into(),
            prediction: 5.5,
            class: None,
            probabilities: None,
            model_name: "m".into(),
            model_version: "v".into(),
            origin: Origin::Kafka { topic: "t".into(), partition: 0, offset: 3 },
            input_timestamp_ms: Some(1),
            predicted_at_ms: 2,
            shadow_prediction: None,
            shadow_version: None,
        };
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        for k in ["key", "prediction", "model_name", "model_version", "topic", "partition", "offset"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(serde_json::from_value::<Prediction>(v).unwrap(), p);
    }

    #[test]
    fn the_hand_written_prediction_json_is_what_serde_writes() {
        let keys = ["k", "", "quote\" back\\slash \u{1} é 🦀", "42"];
        let values = [
            5.5,
            -0.0,
            1e-300,
            123456789.125,
            f64::NAN,
            f64::INFINITY,
            0.1 + 0.2,
            1e15,
            1e16,
            1.5e-7,
            1.2e21,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ];
        let origins = [
            OriginRef::Kafka { topic: "in\"put", partition: -1, offset: i64::MAX },
            OriginRef::Line { source: "-", line: 0 },
            OriginRef::Request { api: "grpc", request_id: "order \"7\"", row: 3 },
        ];
        let labels = ["no".to_string(), "y\"es".to_string(), "3".to_string()];
        for (i, key) in keys.iter().enumerate() {
            for (j, &prediction) in values.iter().enumerate() {
                for origin in origins {
                    let probs = [prediction, 1.0 - prediction, 0.25];
                    let classifier = (i + j) % 2 == 1;
                    let p = PredictionRef {
                        schema_version: 1,
                        key,
                        prediction,
                        class: classifier.then_some(labels[j % 3].as_str()),
                        probabilities: classifier.then_some(Probabilities::Split { labels: &labels, values: &probs }),
                        model_name: "wine\n",
                        model_version: "20261202T000000Z-abc",
                        origin,
                        input_timestamp_ms: (i % 2 == 0).then_some(-5),
                        predicted_at_ms: 1_764_000_000_000,
                        shadow_prediction: (j % 2 == 0).then_some(prediction / 3.0),
                        shadow_version: (j % 3 == 0).then_some("v\t2"),
                    };
                    let mut hand = Vec::new();
                    p.write_json(&mut hand).unwrap();
                    assert_eq!(String::from_utf8(hand).unwrap(), serde_json::to_string(&p).unwrap());
                }
            }
        }
        // and any bit pattern as the prediction
        let mut bits = crate::util::rng::SplitMix64::new(0);
        for _ in 0..20_000 {
            let prediction = f64::from_bits(bits.next_u64());
            let p = PredictionRef {
                schema_version: 1,
                key: "k",
                prediction,
                class: None,
                probabilities: None,
                model_name: "m",
                model_version: "v",
                origin: origins[0],
                input_timestamp_ms: None,
                predicted_at_ms: 0,
                shadow_prediction: None,
                shadow_version: None,
            };
            let mut hand = Vec::new();
            p.write_json(&mut hand).unwrap();
            assert_eq!(String::from_utf8(hand).unwrap(), serde_json::to_string(&p).unwrap(), "{prediction:e}");
        }
    }

    const TOPICS: OutputTopics<'static> =
        OutputTopics { app_messages: "app", dead_letter: "dead", dead_letter_max_bytes: 4 };

    #[test]
    fn a_prediction_becomes_its_json_keyed_by_the_record_key() {
        let p = Prediction {
            schema_version: 1,
            key: "k".into(),
            prediction: 1.5,
            class: Some("b".into()),
            probabilities: Some(ClassProbabilities(vec![("b".into(), 0.25), ("a".into(), 0.75)])),
            model_name: "m".into(),
            model_version: "v".into(),
            origin: Origin::Line { source: "in.csv".into(), line: 2 },
            input_timestamp_ms: None,
            predicted_at_ms: 3,
            shadow_prediction: None,
            shadow_version: None,
        };
        let m = Outgoing::of(Scored::Ok(p.clone()), &TOPICS).unwrap();
        assert_eq!((m.topic, m.key.as_slice()), ("app", &b"k"[..]));
        assert!(m.headers.is_empty() && m.is_prediction(&TOPICS));
        assert_eq!(serde_json::from_slice::<Prediction>(&m.payload).unwrap(), p);
        // the probabilities keep the class order, not the labels' sort order
        let text = String::from_utf8(m.payload.clone()).unwrap();
        assert!(text.contains(r#""class":"b","probabilities":{"b":0.25,"a":0.75}"#), "{text}");
    }

    #[test]
    fn a_dead_letter_keeps_the_original_bytes_cut_to_the_bound_with_its_reason() {
        let d = DeadLetter {
            schema_version: 1,
            key: "k".into(),
            reason: "bad".into(),
            origin: Origin::Kafka { topic: "in".into(), partition: 1, offset: 7 },
            record: "123456".into(),
            model_version: None,
            raw: b"123456".to_vec(),
        };
        let m = Outgoing::of(Scored::Rejected(d), &TOPICS).unwrap();
        assert_eq!((m.topic, m.payload.as_slice()), ("dead", &b"1234"[..]));
        let h: std::collections::BTreeMap<_, _> = m.headers.iter().cloned().collect();
        assert_eq!(h["modelcast.reason"], b"bad");
        assert_eq!(h["modelcast.source"], b"in/1/7");
        assert_eq!(h["modelcast.truncated"], b"4 of 6 bytes kept");
        assert!(!m.is_prediction(&TOPICS));
    }
}
