//! `train --data kafka://TOPIC` on the test bed: the same model as the CSV of the same rows in
//! (partition, offset) order, offset ranges in the artifact, `--since`, malformed records counted
//! and bounded by `--max-rejected`.

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Map, Value};

use crate::util::bed::{bed, Wired};
use crate::util::{kafka, repo, PATIENCE};

/// The red wine rows as JSON objects (header names as keys, numbers as numbers), and the header.
fn wine_rows() -> (Vec<String>, Vec<Map<String, Value>>) {
    let mut rdr = csv::Reader::from_path(repo().join("data/winequality-red.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    let rows = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            header.iter().zip(r.iter()).map(|(h, v)| (h.clone(), Value::from(v.parse::<f64>().unwrap()))).collect()
        })
        .collect();
    (header, rows)
}

/// Produce `(partition, timestamp_ms, value)` records in order and wait for all of them.
fn produce_to(p: &BaseProducer, topic: &str, records: &[(i32, i64, Vec<u8>)]) {
    for (partition, ts, v) in records {
        kafka::send(p, BaseRecord::<(), [u8]>::to(topic).partition(*partition).timestamp(*ts).payload(v.as_slice()));
    }
    p.flush(PATIENCE).unwrap();
}

/// The artifact `train --json` stored in the sandbox's local store.
fn artifact_of(w: &Wired, report: &Value) -> Value {
    let uri = report["uri"].as_str().unwrap();
    let path = w.sb.path().join(uri.trim_start_matches("file://"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn training_from_a_topic_fits_the_csv_of_the_same_rows_and_names_its_offsets() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "ttrain", 3);
    let topic = &w.topics.input;
    let (header, rows) = wine_rows();
    // three partitions, row i to partition i % 3, and four malformed records in partition 1
    let now = chrono::Utc::now().timestamp_millis();
    let old = now - 3 * 3_600_000;
    let mut records: Vec<(i32, i64, Vec<u8>)> =
        rows.iter().enumerate().map(|(i, r)| ((i % 3) as i32, old, serde_json::to_vec(r).unwrap())).collect();
    let mut no_target = rows[0].clone();
    no_target.remove("quality");
    let mut text = rows[1].clone();
    text.insert("alcohol".into(), Value::from("lots"));
    for bad in [
        b"not json".to_vec(),
        b"[1, 2]".to_vec(),
        serde_json::to_vec(&no_target).unwrap(),
        serde_json::to_vec(&text).unwrap(),
    ] {
        records.push((1, old, bad));
    }
    let producer = kafka::producer(&bed.bootstrap);
    produce_to(&producer, topic, &records);

    let data = format!("kafka://{topic}");
    let from_topic = w.command(&["train", "--kafka-config", "kafka.yaml", "--data", &data, "--json"]).assert_ok();
    let e = from_topic.stderr();
    assert!(e.contains("skipped a malformed training record") && e.contains("not JSON"), "{e}");
    let topic_report = from_topic.stdout_doc();
    let a = artifact_of(&w, &topic_report);

    // the CSV of the same rows in (partition, offset) order
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(&header).unwrap();
    for p in 0..3 {
        for (_, r) in rows.iter().enumerate().filter(|(i, _)| i % 3 == p) {
            csv.write_record(header.iter().map(|h| r[h].as_f64().unwrap().to_string())).unwrap();
        }
    }
    w.sb.write("ordered.csv", &String::from_utf8(csv.into_inner().unwrap()).unwrap());
    let b = artifact_of(&w, &w.command(&["train", "--data", "ordered.csv", "--json"]).assert_ok().stdout_doc());

    let (ca, cb) = (floats(&a["estimator"]["coefficients"]), floats(&b["estimator"]["coefficients"]));
    assert_eq!(ca.len(), cb.len());
    for (j, (x, y)) in ca.iter().zip(&cb).enumerate() {
        assert!((x - y).abs() <= 1e-9 * y.abs().max(1e-12), "coefficient {j}: topic {x} vs CSV {y}");
    }
    let (ia, ib) = (a["estimator"]["intercept"].as_f64().unwrap(), b["estimator"]["intercept"].as_f64().unwrap());
    assert!((ia - ib).abs() <= 1e-9 * ib.abs(), "intercept {ia} vs {ib}");
    assert_eq!(a["metrics"], b["metrics"], "same split, same held-out rows");

    // provenance: the offsets read, per partition
    let t = &a["training_data"]["topic"];
    assert_eq!(t["topic"], topic.as_str());
    assert_eq!(t["records"].as_u64(), Some(rows.len() as u64 + 4));
    assert_eq!(t["rejected"].as_u64(), Some(4));
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    // rows of partition p (and the four malformed records in partition 1)
    let in_partition = |p: usize| (0..rows.len()).filter(|i| i % 3 == p).count() + if p == 1 { 4 } else { 0 };
    for (p, range) in parts.iter().enumerate() {
        let n = in_partition(p);
        assert_eq!(range["partition"].as_u64(), Some(p as u64));
        assert_eq!(range["start_offset"].as_i64(), Some(0));
        assert_eq!(range["end_offset"].as_u64(), Some(n as u64), "{range}");
        assert_eq!(range["records"].as_u64(), Some(n as u64), "{range}");
    }
    assert_eq!(
        a["training_data"]["train_rows"].as_u64().unwrap() + a["training_data"]["test_rows"].as_u64().unwrap(),
        rows.len() as u64
    );

    // --since: only what arrived in the last hour (300 new rows, 100 per partition)
    let fresh: Vec<(i32, i64, Vec<u8>)> =
        rows.iter().take(300).enumerate().map(|(i, r)| ((i % 3) as i32, now, serde_json::to_vec(r).unwrap())).collect();
    produce_to(&producer, topic, &fresh);
    let recent =
        w.command(&["train", "--kafka-config", "kafka.yaml", "--data", &data, "--since", "1h", "--json"]).assert_ok();
    let a = artifact_of(&w, &recent.stdout_doc());
    let t = &a["training_data"]["topic"];
    assert_eq!(t["records"].as_u64(), Some(300), "{t}");
    assert_eq!(t["rejected"].as_u64(), Some(0), "{t}");
    assert!(t["since"].as_str().is_some(), "{t}");
    for (p, range) in t["partitions"].as_array().unwrap().iter().enumerate() {
        assert_eq!(range["start_offset"].as_u64(), Some(in_partition(p) as u64), "{range}");
        assert_eq!(range["records"].as_u64(), Some(100), "{range}");
    }
}

#[test]
fn too_many_malformed_records_fail_the_run_and_store_nothing() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "trej", 1);
    let topic = &w.topics.input;
    let (_, rows) = wine_rows();
    let mut records: Vec<(i32, i64, Vec<u8>)> = Vec::new();
    let ts = chrono::Utc::now().timestamp_millis();
    for r in rows.iter().take(90) {
        records.push((0, ts, serde_json::to_vec(r).unwrap()));
    }
    for _ in 0..10 {
        records.push((0, ts, b"{\"alcohol\": ".to_vec()));
    }
    produce_to(&kafka::producer(&bed.bootstrap), topic, &records);
    let data = format!("kafka://{topic}");
    let e = w.command(&["train", "--kafka-config", "kafka.yaml", "--data", &data]).assert_exit_code(1).stderr();
    assert!(e.contains("10 of 100 records (10.00%) are malformed, above --max-rejected 0.01"), "{e}");
    assert!(w.sb.artifacts("wine-quality").is_empty(), "nothing stored");
    assert!(kafka::read_all(&bed.bootstrap, &w.topics.train).is_empty(), "nothing announced");
    // allowed at 20%
    w.command(&["train", "--kafka-config", "kafka.yaml", "--data", &data, "--max-rejected", "0.2"]).assert_ok();
    assert_eq!(w.sb.artifacts("wine-quality").len(), 1);
}
