//! The service's hot path (`predict::score_into`, and `score_ahead_into` for a batch decoded and
//! scored together): the same messages as the allocating path every other mode uses, and no
//! allocation per record once its buffers have grown.

use std::path::Path;

use modelcast::messages::{Origin, OriginRef, Outbox, Outgoing, OutputTopics, Prediction};
use modelcast::params::Params;
use modelcast::predict::{
    decode_ahead, score_ahead_into, score_into, score_json, Ahead, Incoming, Scratch, ServeOptions, Served, Verdict,
};

const TOPICS: OutputTopics<'static> =
    OutputTopics { app_messages: "app_messages", dead_letter: "dead_letter", dead_letter_max_bytes: 900_000 };

/// The models the hot path serves: a regressor, the two shipped classifiers (binary and
/// multiclass, whose messages carry a class and probabilities) and both as tree classifiers.
fn models() -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("modelcast-hot-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut paths: Vec<String> =
        ["params/params.yaml", "params/wine-good.yaml", "params/wine-grade.yaml"].map(String::from).to_vec();
    for (base, kind) in [
        ("wine-good", "random_forest_classifier"),
        ("wine-grade", "random_forest_classifier"),
        ("wine-good", "gradient_boosting_classifier"),
        ("wine-grade", "gradient_boosting_classifier"),
    ] {
        let text = std::fs::read_to_string(format!("params/{base}.yaml")).expect("params");
        let (head, _) = text.split_once("\nmodel:").expect("a model section");
        let path = dir.join(format!("{base}-{kind}.yaml"));
        std::fs::write(
            &path,
            format!("{head}\nmodel: {{kind: {kind}, n_estimators: 20}}\n").replace(
                "kind: gradient_boosting_classifier, n_estimators: 20",
                "kind: gradient_boosting_classifier, max_iter: 20",
            ),
        )
        .expect("write");
        paths.push(path.to_str().expect("utf8").to_string());
    }
    paths
}

fn served(params: &str) -> Served {
    let params = Params::load(Path::new(params)).expect("params");
    let artifact = modelcast::train::fit_artifact(&params).expect("fit");
    Served::from_artifact(&artifact, ServeOptions::key("key")).expect("served")
}

fn records() -> Vec<Vec<u8>> {
    (0..256)
        .map(|i| match i % 8 {
            // a record without a key field (the transport key or partition:offset is its key)
            0 => format!(r#"{{"alcohol": {}, "pH": 3.3, "density": 0.99}}"#, 9 + i % 5).into_bytes(),
            // an escape sends it down serde_json's path
            1 => format!(r#"{{"key": "k\"{i}", "alcohol": 10.5}}"#).into_bytes(),
            // rejected: not a number
            2 => format!(r#"{{"key": "bad{i}", "alcohol": "strong"}}"#).into_bytes(),
            _ => format!(
                r#"{{"key":"k{i}","fixed acidity":7.4,"volatile acidity":0.7,"citric acid":0,"residual sugar":1.9,"chlorides":0.076,"free sulfur dioxide":11,"total sulfur dioxide":34,"density":0.9978,"pH":3.51,"sulphates":0.56,"alcohol":{}}}"#,
                9.0 + i as f64 * 0.01
            )
            .into_bytes(),
        })
        .collect()
}

/// Score `records` one by one (`score_into`), or with `ahead` as the service scores a tree
/// model's batch: decoded and scored together first, the messages written after.
fn score_all<'a, 't>(
    m: &Served,
    records: &'a [Vec<u8>],
    scratch: &mut Scratch<'a>,
    mut ahead: Option<&mut Ahead<'a>>,
    out: &mut Outbox<'t>,
) -> Vec<Verdict> {
    out.clear();
    if let Some(a) = ahead.as_deref_mut() {
        decode_ahead(m, records.iter().map(|r| Some(&r[..])), a);
    }
    let mut verdicts = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let rec = Incoming {
            bytes: r,
            origin: OriginRef::Kafka { topic: "features", partition: 2, offset: i as i64 },
            transport_key: (i % 16 == 0).then_some(&b"tk"[..]),
            timestamp_ms: Some(7),
        };
        let msg = out.next(TOPICS.app_messages);
        let v = match ahead.as_deref() {
            Some(a) => score_ahead_into(m, &rec, i, a, 1_000, scratch, msg, TOPICS.app_messages, &TOPICS),
            None => score_into(m, &rec, 1_000, scratch, msg, TOPICS.app_messages, &TOPICS),
        };
        verdicts.push(v.expect("encode"));
    }
    verdicts
}

#[test]
fn the_hot_path_writes_what_the_allocating_path_writes() {
    for params in models() {
        same_messages(&served(&params), &params);
    }
}

fn same_messages(m: &Served, params: &str) {
    let records = records();
    let (mut scratch, mut out) = (Scratch::default(), Outbox::default());
    let verdicts = score_all(m, &records, &mut scratch, None, &mut out);
    assert_eq!(out.len(), records.len());
    let mut rejected = 0;
    for (i, (msg, verdict)) in out.messages().iter().zip(&verdicts).enumerate() {
        let fallback = if i % 16 == 0 { "tk".to_string() } else { format!("2:{i}") };
        let origin = Origin::Kafka { topic: "features".into(), partition: 2, offset: i as i64 };
        let mut want = Outgoing::of(score_json(m, &records[i], origin, fallback, Some(7)), &TOPICS).expect("encode");
        if let Verdict::Scored(p) = verdict {
            // the allocating path stamps its own time; the hot path the batch's
            let mut pred: Prediction = serde_json::from_slice(&want.payload).expect("prediction");
            assert_eq!(pred.prediction, *p);
            pred.predicted_at_ms = 1_000;
            want.payload = serde_json::to_vec(&pred).expect("json");
        } else {
            rejected += 1;
        }
        assert_eq!(msg, &want, "{params}: record {i}");
    }
    assert_eq!(rejected, records.len() / 8, "the non-numbers, and only them, are dead letters");
    // the batch decoded and scored together: the same messages, bit for bit, for every model
    let (mut ahead, mut together) = (Ahead::default(), Outbox::default());
    let verdicts_ahead = score_all(m, &records, &mut scratch, Some(&mut ahead), &mut together);
    assert_eq!(together.messages(), out.messages(), "{params}: scored together");
    assert_eq!(verdicts_ahead, verdicts, "{params}: scored together");
    // every record is a JSON object: each one's cells are kept for the drift window
    assert!((0..records.len()).all(|i| ahead.cells(i).is_some()), "{params}: cells kept");
    assert!(ahead.cells(records.len()).is_none());
}

#[test]
fn the_hot_path_allocates_nothing_per_scored_record_once_its_buffers_have_grown() {
    for params in models() {
        allocates_nothing(&served(&params), &params);
    }
}

fn allocates_nothing(m: &Served, params: &str) {
    // the records every service sees: keyed, flat, scored
    let records: Vec<Vec<u8>> = records().into_iter().enumerate().filter(|(i, _)| i % 8 > 2).map(|(_, r)| r).collect();
    let (mut scratch, mut out) = (Scratch::default(), Outbox::default());
    let mut verdicts = score_all(m, &records, &mut scratch, None, &mut out);
    let counted = allocation_counter::measure(|| {
        out.clear();
        for (i, r) in records.iter().enumerate() {
            let rec = Incoming {
                bytes: r,
                origin: OriginRef::Kafka { topic: "features", partition: 0, offset: i as i64 },
                transport_key: None,
                timestamp_ms: None,
            };
            let msg = out.next(TOPICS.app_messages);
            verdicts[i] = score_into(m, &rec, 2_000, &mut scratch, msg, TOPICS.app_messages, &TOPICS).expect("encode");
        }
    });
    assert!(verdicts.iter().all(|v| matches!(v, Verdict::Scored(_))));
    assert_eq!(counted.count_total, 0, "{params}: allocations while scoring {} records", records.len());
    // and the measurement is live: the first batch, with no grown buffers, did allocate
    let fresh = allocation_counter::measure(|| {
        let (mut scratch, mut out) = (Scratch::default(), Outbox::default());
        score_all(m, &records, &mut scratch, None, &mut out);
    });
    assert!(fresh.count_total > 0);
    // scored together: nothing allocated once the batch's buffers have grown
    let (mut ahead, mut out) = (Ahead::default(), Outbox::default());
    score_all(m, &records, &mut scratch, Some(&mut ahead), &mut out);
    let counted = allocation_counter::measure(|| {
        score_all(m, &records, &mut scratch, Some(&mut ahead), &mut out);
    });
    // one: the verdicts' vector the helper returns
    assert_eq!(counted.count_total, 1, "{params}: allocations scoring {} records together", records.len());
}
