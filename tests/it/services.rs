//! Kafka + S3 flows against the loopback test bed started by `scripts/services.sh run`
//! (Apache Kafka, garage and s3s-fs for S3); see `util/bed.rs`. Every wait is on something
//! observable (`/healthz`, `/metrics`, a topic's contents, a log event) with a deadline of
//! minutes, never a fixed sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

use crate::util::bed::{bed, parse_metrics, Replica, Wired};
use crate::util::fixtures::{wine_json, wine_record, wine_records};
use crate::util::kafka::{
    check_at_least_once, count, distinct_keys, keys_in, produce, producer, producer_compressing, read_all, read_topic,
    wait_count, Killed,
};
use crate::util::logs::{count as field_count, events};
use crate::util::*;

#[test]
fn train_uploads_to_s3_and_announces_on_kafka() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "train", 1);
    let report = w.train(&["--json"]).assert_ok().stdout_doc();
    let uri = report["uri"].as_str().unwrap();
    assert!(uri.starts_with(&w.store), "{uri}");
    // an independent consumer reads the announcement back
    let recs = read_topic(&w.bootstrap, &w.topics.train, 1, PATIENCE);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].key.as_deref(), Some("wine-quality"), "key = model name");
    let ann = recs[0].json();
    assert_eq!(ann["uri"], uri);
    // the artifact is in the bucket and its sha256 matches the announcement
    let store = bed.garage.open_blocking(&w.store);
    let bytes = store.get(ann["key"].as_str().unwrap());
    assert_eq!(modelcast::util::hash::sha256_hex(&bytes), ann["sha256"].as_str().unwrap());
    assert_eq!(bytes.len() as u64, ann["size"].as_u64().unwrap());
    // batch predict from S3 + Kafka history, writing to app_messages
    w.command(&[
        "predict",
        "--input",
        "data/winequality-red.csv",
        "--store",
        &w.store,
        "--kafka-config",
        "kafka.yaml",
        "--sink",
        "bus",
    ])
    .assert_ok();
    // the batch run has exited: the topic holds all it wrote
    assert_eq!(read_all(&w.bootstrap, &w.topics.app).len(), 1599, "one prediction per row");
}

#[test]
fn train_fails_cleanly_on_s3_and_kafka_problems() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "fail", 1);
    // wrong credentials
    let out = w.train(&[]).env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123").assert_exit_code(1);
    let e = out.stderr();
    assert!(e.contains("access denied") || e.contains("Forbidden") || e.contains("403"), "{e}");
    assert!(!e.contains("wrong-secret-value-123") && !e.contains(&bed.garage.secret_key), "no secret in errors");
    // missing bucket
    let out = w
        .command(&["train", "--store", "s3://no-such-bucket-modelcast/x", "--kafka-config", "kafka.yaml"])
        .assert_exit_code(1);
    assert!(out.stderr().contains("does not exist"), "{}", out.stderr());
    // invalid bucket name (the seed's)
    let out =
        w.command(&["train", "--store", "s3://wines_models/x", "--kafka-config", "kafka.yaml"]).assert_exit_code(2);
    assert!(out.stderr().contains("wines-models"), "{}", out.stderr());
    // a missing topic is a clear, quick error
    w.sb.write(
        "nokafka.yaml",
        "bootstrap.servers: ${TEST_BOOTSTRAP}\nmodelcast: {topics: {train: no-such-topic-x}, timeout_ms: 5000}\n",
    );
    let t = Instant::now();
    let out = w.command(&["train", "--store", &w.store, "--kafka-config", "nokafka.yaml"]).assert_exit_code(1);
    assert!(out.stderr().contains("topics create"), "{}", out.stderr());
    assert!(t.elapsed() < Duration::from_secs(20));
    // nothing was announced by any of these (all have exited: what they sent is in the topic)
    assert_eq!(count(&w.bootstrap, &w.topics.train), 0);
}

#[test]
fn serve_scores_a_stream_exactly_once_across_a_hot_swap() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "e2e", 3);
    w.train(&[]).assert_ok();
    let mut svc = w.serve(&[]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let n = 20_000;
    let records = wine_records(n);
    produce(&p, &w.topics.input, &records[..n / 2]);
    // a second training mid-stream
    w.train(&[]).assert_ok();
    let anns = read_topic(&w.bootstrap, &w.topics.train, 2, PATIENCE);
    let v1 = anns[0].json()["version"].as_str().unwrap().to_string();
    let v2 = anns[1].json()["version"].as_str().unwrap().to_string();
    produce(&p, &w.topics.input, &records[n / 2..]);
    wait_count(&w.bootstrap, &w.topics.app, n, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}\n{log}");
    // everything the service wrote, read once it stopped (it flushes on stop)
    let preds = read_all(&w.bootstrap, &w.topics.app);
    assert_eq!(preds.len(), n, "each record scored exactly once");
    let mut seen = BTreeSet::new();
    let mut per_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for rec in &preds {
        let v = rec.json();
        assert_eq!(rec.key.as_deref(), v["key"].as_str(), "app_messages key = input key");
        assert!(seen.insert(v["key"].as_str().unwrap().to_string()), "scored twice: {}", v["key"]);
        per_partition
            .entry(v["partition"].as_i64().unwrap() as i32)
            .or_default()
            .push((v["offset"].as_i64().unwrap(), v["model_version"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), n);
    let mut switches = 0;
    for (part, mut list) in per_partition {
        list.sort();
        let versions: Vec<&str> = list.iter().map(|(_, v)| v.as_str()).collect();
        let first_v2 = versions.iter().position(|v| *v == v2).unwrap_or(versions.len());
        assert!(versions[..first_v2].iter().all(|v| *v == v1), "partition {part}: only v1 before v2");
        assert!(versions[first_v2..].iter().all(|v| *v == v2), "partition {part}: never back to v1");
        if first_v2 < versions.len() {
            switches += 1;
        }
    }
    assert!(switches >= 1, "the new model was used");
    let swaps = events(&log, "model_swapped");
    assert_eq!(swaps.len(), 1, "{log}");
    assert_eq!((swaps[0]["from"].as_str(), swaps[0]["to"].as_str()), (Some(v1.as_str()), Some(v2.as_str())));
}

#[test]
fn serve_started_before_any_model_waits_and_serves_the_first_announced_one() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "first", 1);
    let mut svc = w.serve(&[]);
    svc.log().wait_event("waiting_for_model", PATIENCE);
    assert!(!svc.ready(), "/healthz is 503 while there is no model");
    w.train(&[]).assert_ok();
    let version = read_topic(&w.bootstrap, &w.topics.train, 1, PATIENCE)[0].json()["version"].clone();
    let serving = svc.log().wait_event("model_serving", PATIENCE);
    assert_eq!(serving["version"], version, "serves the announced version");
    svc.wait_ready(PATIENCE);
    produce(&producer(&w.bootstrap), &w.topics.input, &wine_records(100));
    wait_count(&w.bootstrap, &w.topics.app, 100, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "{log}");
    let preds = read_all(&w.bootstrap, &w.topics.app);
    assert_eq!(preds.len(), 100, "each record scored once");
    assert!(preds.iter().all(|r| r.json()["model_version"] == version), "every record scored by it");
    assert_eq!(events(&log, "model_serving").len(), 1, "{log}");
    assert_eq!(events(&log, "model_swapped").len(), 0, "the first model is not a swap: {log}");
}

/// Linear → random forest → linear while records flow: two swaps, each record scored once, per
/// partition v1 then v2 then v3, and each version's predictions are that version's: equal to a
/// batch run of it on the same record, and the forest's differ from both linear models'.
#[test]
fn serve_swaps_linear_to_forest_to_linear_under_load_losing_nothing() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "trees", 3);
    let base = std::fs::read_to_string(w.sb.path().join("params/params.yaml")).unwrap();
    let (head, _) = base.split_once("\nmodel:").unwrap();
    w.sb.write("params/forest.yaml", &format!("{head}\nmodel: {{kind: random_forest, n_estimators: 40, seed: 3}}\n"));
    w.train(&[]).assert_ok();
    let mut svc = w.serve(&[]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let n = 30_000;
    let records = wine_records(n);
    produce(&p, &w.topics.input, &records[..n / 3]);
    w.train(&["--params", "params/forest.yaml"]).assert_ok();
    produce(&p, &w.topics.input, &records[n / 3..2 * n / 3]);
    w.train(&[]).assert_ok();
    produce(&p, &w.topics.input, &records[2 * n / 3..]);
    let anns = read_topic(&w.bootstrap, &w.topics.train, 3, PATIENCE);
    let v: Vec<String> = anns.iter().map(|a| a.json()["version"].as_str().unwrap().to_string()).collect();
    wait_count(&w.bootstrap, &w.topics.app, n, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}\n{log}");
    let preds = read_all(&w.bootstrap, &w.topics.app);
    assert_eq!(preds.len(), n, "each record scored exactly once");
    let mut seen = BTreeSet::new();
    let mut per_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    let mut by_version: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for rec in &preds {
        let m = rec.json();
        assert!(seen.insert(m["key"].as_str().unwrap().to_string()), "scored twice: {}", m["key"]);
        let k = v.iter().position(|x| m["model_version"].as_str() == Some(x)).expect("a known version");
        by_version.entry(k).or_default().push(m["prediction"].as_f64().unwrap());
        per_partition
            .entry(m["partition"].as_i64().unwrap() as i32)
            .or_default()
            .push((m["offset"].as_i64().unwrap(), k));
    }
    assert_eq!(seen.len(), n, "every record scored once");
    for (part, mut list) in per_partition {
        list.sort();
        let order: Vec<usize> = list.iter().map(|(_, k)| *k).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "partition {part}: v1, then the forest, then v3");
    }
    assert!(by_version.contains_key(&1), "the forest scored records");
    // Each version's predictions are its own. A record's prediction depends on i % 50 only (see
    // wine_record): score those 50 records in a batch run pinned to each version.
    let cycle: String =
        (0..50).map(|i| format!("{}\n", wine_json(9.0 + i as f64 * 0.1, Some(&format!("c{i}"))))).collect();
    w.sb.write("cycle.jsonl", &cycle);
    let batch: Vec<Vec<f64>> = v
        .iter()
        .map(|version| {
            let run = w
                .command(&["predict", "--input", "cycle.jsonl", "--model", version])
                .args(["--store", &w.store, "--kafka-config", "kafka.yaml"])
                .assert_ok();
            let mut out = vec![f64::NAN; 50];
            for p in run.stdout_json() {
                let i: usize = p["key"].as_str().unwrap().trim_start_matches('c').parse().unwrap();
                out[i] = p["prediction"].as_f64().unwrap();
            }
            assert!(out.iter().all(|p| p.is_finite()), "{version}: one prediction per record: {out:?}");
            out
        })
        .collect();
    for rec in &preds {
        let m = rec.json();
        let k = v.iter().position(|x| m["model_version"].as_str() == Some(x)).unwrap();
        let i: usize = m["key"].as_str().unwrap().trim_start_matches('k').parse().unwrap();
        let (got, want) = (m["prediction"].as_f64().unwrap(), batch[k][i % 50]);
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{}: {got} by {}, batch {want}", m["key"], v[k]);
    }
    for (i, forest) in batch[1].iter().enumerate() {
        for line in [batch[0][i], batch[2][i]] {
            assert!((forest - line).abs() > 1e-6, "record {i}: the forest predicts {forest}, a linear model {line}");
        }
    }
    let swaps = events(&log, "model_swapped");
    let pairs: Vec<(Option<&str>, Option<&str>)> =
        swaps.iter().map(|s| (s["from"].as_str(), s["to"].as_str())).collect();
    assert_eq!(
        pairs,
        vec![(Some(v[0].as_str()), Some(v[1].as_str())), (Some(v[1].as_str()), Some(v[2].as_str()))],
        "{log}"
    );
    let listed = w.command(&["models", "--store", &w.store, "--json"]).assert_ok().stdout_doc();
    let kinds: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|m| m["kind"].as_str()).collect();
    assert!(kinds.contains(&"random_forest") && kinds.contains(&"ridge"), "{listed}");
}

#[test]
fn bad_records_go_to_the_dead_letter_topic_and_bad_models_are_refused() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "dlq", 1);
    w.train(&[]).assert_ok();
    let mut svc = w.serve(&[]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let mut huge = b"{\"alcohol\": 10, \"pad\": \"".to_vec();
    // 10 MiB, ten times max_record_bytes (1 MiB): dead-lettered unread (cut to
    // dead_letter_max_bytes), and the records after it are scored (no stall). The test broker
    // takes records up to 20 MiB (message.max.bytes), as a cluster configured for them would.
    huge.resize(10 << 20, b'x');
    huge.extend_from_slice(b"\"}");
    let bad: Vec<(String, Vec<u8>)> = vec![
        ("malformed".into(), b"{\"alcohol\": ".to_vec()),
        ("wrongtype".into(), b"{\"alcohol\": \"abc\"}".to_vec()),
        ("boolean".into(), b"{\"alcohol\": true}".to_vec()),
        ("binary".into(), vec![0xff, 0xfe, 0x00, 0x01]),
        ("nan".into(), b"{\"alcohol\": NaN}".to_vec()),
        ("overflow".into(), b"{\"alcohol\": 1e999}".to_vec()),
        ("infinity".into(), b"{\"alcohol\": \"Infinity\"}".to_vec()),
        // the record's key field names the prediction, not the Kafka key
        ("missingrule".into(), b"{\"alcohol\": 10, \"pH\": \"NA\", \"key\": \"from-field\"}".to_vec()),
        ("good".into(), wine_record(1)),
    ];
    produce(&p, &w.topics.input, &bad);
    let big: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &w.bootstrap)
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rt
        .block_on(big.send(rdkafka::producer::FutureRecord::to(&w.topics.input).key("huge").payload(&huge), PATIENCE));
    assert!(sent.is_ok(), "{:?}", sent.err().map(|e| e.0));
    let dead = read_topic(&w.bootstrap, &w.topics.dead, 8, PATIENCE);
    if dead.len() != 8 {
        let (_, log) = svc.stop();
        panic!("dead letters {:?}\nservice log:\n{log}", dead.iter().map(|d| d.key.clone()).collect::<Vec<_>>());
    }
    for d in &dead {
        assert!(!d.headers["modelcast.reason"].is_empty());
        if d.key.as_deref() == Some("huge") {
            assert_eq!(d.value.len(), 900_000, "oversized dead letters are cut to dead_letter_max_bytes");
            assert_eq!(&d.value[..], &huge[..900_000]);
            assert!(d.headers["modelcast.truncated"].contains(&format!("of {} bytes", huge.len())));
            continue;
        }
        let original = &bad.iter().find(|(k, _)| Some(k) == d.key.as_ref()).unwrap().1;
        assert_eq!(&d.value, original, "original bytes kept");
    }
    let reason =
        |k: &str| dead.iter().find(|d| d.key.as_deref() == Some(k)).unwrap().headers["modelcast.reason"].clone();
    assert!(reason("malformed").contains("malformed JSON"));
    assert!(reason("wrongtype").contains("not a number"));
    assert!(reason("boolean").contains("boolean"));
    assert!(reason("nan").contains("malformed JSON"));
    assert!(reason("overflow").contains("malformed JSON"));
    assert!(reason("infinity").contains("finite"));
    assert!(reason("huge").contains("exceeds max_record_bytes"));
    assert!(dead.iter().all(|d| d.key.as_deref() != Some("missingrule")), "a missing value is imputed, not rejected");
    // a tampered artifact is refused; the old model keeps serving
    let anns = read_topic(&w.bootstrap, &w.topics.train, 1, PATIENCE);
    let mut ann = anns[0].json();
    let v1 = ann["version"].as_str().unwrap().to_string();
    let tampered = "20990101T000000000Z-00000000";
    ann["version"] = tampered.into();
    ann["sha256"] = "f".repeat(64).into();
    produce(
        &p,
        &w.topics.train,
        &[("wine-quality".into(), serde_json::to_vec(&ann).unwrap()), ("x".into(), b"garbage".to_vec())],
    );
    // both refused before the next record is produced
    svc.wait_metrics(&["modelcast_models_refused_total 2"], PATIENCE);
    produce(&p, &w.topics.input, &[("after".into(), wine_record(2))]);
    let preds = read_topic(&w.bootstrap, &w.topics.app, 3, PATIENCE);
    let model_info = format!("version=\"{v1}\"");
    let expected = [
        "modelcast_dead_lettered_total 8",
        "modelcast_predictions_out_total 3",
        "modelcast_records_in_total 11",
        "modelcast_models_refused_total 2",
        model_info.as_str(),
        "modelcast_end_to_end_latency_seconds_count 3",
        "modelcast_consumer_lag{partition=\"0\"} 0",
    ];
    let metrics = svc.wait_metrics(&expected, PATIENCE);
    let (_, log) = svc.stop();
    // what the service wrote in the end: nothing beyond what the metrics say
    let (dead_all, preds_all) = (read_all(&w.bootstrap, &w.topics.dead), read_all(&w.bootstrap, &w.topics.app));
    assert_eq!((dead_all.len(), preds_all.len()), (8, 3), "dead letters and predictions, once each");
    for line in expected {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    // the same figures through a Prometheus text parser, plus the standard process metrics
    let samples = parse_metrics(&metrics);
    let value = |name: &str| {
        samples.iter().find(|(n, _, _)| n == name).map(|s| s.2).unwrap_or_else(|| panic!("{name}: {metrics}"))
    };
    assert_eq!(value("modelcast_dead_lettered_total"), 8.0);
    assert_eq!(value("modelcast_predictions_out_total"), 3.0);
    assert_eq!(value("modelcast_records_in_total"), 11.0);
    assert_eq!(value("modelcast_models_refused_total"), 2.0);
    assert_eq!(value("modelcast_model_swaps_total"), 0.0);
    assert_eq!(value("modelcast_ready"), 1.0);
    assert_eq!(value("modelcast_end_to_end_latency_seconds"), 3.0, "histogram count");
    let info = samples.iter().find(|(n, _, _)| n == "modelcast_model_info").expect("model info");
    assert_eq!(info.1.get("version").map(String::as_str), Some(v1.as_str()));
    assert!(value("process_resident_memory_bytes") > 1e6, "RSS of a running service");
    assert!(value("process_open_fds") >= 3.0);
    // whole CPU seconds (the collector's integer counter): present, and 0 this early
    assert!(value("process_cpu_seconds_total").is_finite());
    assert_eq!(preds.len(), 3);
    let keys: Vec<_> = preds.iter().map(|p| p.key.as_deref().unwrap_or_default()).collect();
    assert!(keys.contains(&"from-field") && keys.contains(&"good") && keys.contains(&"after"), "{keys:?}");
    for p in &preds {
        assert_eq!(p.json()["model_version"], v1.as_str());
    }
    let refused = events(&log, "model_refused");
    assert!(
        refused.iter().any(|r| r["version"] == tampered && r["reason"].as_str().unwrap().contains("sha256 mismatch")),
        "{log}"
    );
    assert!(!events(&log, "announcement_refused").is_empty(), "{log}");
}

#[test]
fn two_replicas_share_partitions_and_both_hot_swap() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "replicas", 4);
    w.train(&[]).assert_ok();
    let a = w.serve(&[]);
    let b = w.serve(&[]);
    // the group has rebalanced across both members: each has a model and partitions
    wait_for("both replicas ready", PATIENCE, || match (a.ready(), b.ready()) {
        (true, true) => Ok(()),
        ready => Err(format!("ready: {ready:?}")),
    });
    let p = producer(&w.bootstrap);
    let n = 4000;
    let records = wine_records(n);
    produce(&p, &w.topics.input, &records);
    wait_count(&w.bootstrap, &w.topics.app, n, PATIENCE);
    w.train(&[]).assert_ok();
    for r in [&a, &b] {
        let m = r.wait_metrics(&["modelcast_model_swaps_total 1"], PATIENCE);
        assert!(m.contains("modelcast_model_swaps_total 1"), "replica at {} did not swap: {m}", r.addr);
    }
    produce(&p, &w.topics.input, &records[..100]);
    wait_count(&w.bootstrap, &w.topics.app, n + 100, PATIENCE);
    let ((_, la), (_, lb)) = (a.stop(), b.stop());
    // the 100 are new records (with keys of the first 100): count records, not keys
    let total = read_all(&w.bootstrap, &w.topics.app);
    assert_eq!(total.len(), n + 100, "each record scored exactly once by one of the two");
    assert_eq!(distinct_keys(&total).len(), n);
    assert!(
        !events(&la, "model_swapped").is_empty() && !events(&lb, "model_swapped").is_empty(),
        "both swap:\nA:\n{la}\nB:\n{lb}"
    );
    let scored = |log: &str| -> u64 { events(log, "run_finished").last().map_or(0, |e| field_count(e, "scored")) };
    let (sa, sb) = (scored(&la), scored(&lb));
    assert!(sa > 0 && sb > 0, "both replicas scored records: {sa} / {sb}");
    assert!(sa + sb >= (n + 100) as u64);
}

#[test]
fn sigkill_and_restart_loses_nothing() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "kill", 3);
    w.train(&[]).assert_ok();
    // Restarted under the same name (static membership), as DEPLOY.md recommends: the broker
    // hands the returning member its partitions back without a rebalance.
    let id = ["--instance-id", "kill-replica-0"];
    let mut svc = w.serve(&id);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let n = 20_000;
    produce(&p, &w.topics.input, &wine_records(n));
    // kill -9 mid-stream
    wait_count(&w.bootstrap, &w.topics.app, 2000, PATIENCE);
    svc.kill();
    let killed = Killed::now(&w.bootstrap, &w.group, &w.topics.input);
    let mut svc = w.serve(&id);
    svc.wait_ready(PATIENCE);
    keys_in(&w.bootstrap, &w.topics.app, n, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "{log}");
    let all = read_all(&w.bootstrap, &w.topics.app);
    let keys = distinct_keys(&all);
    // at-least-once: only what the killed replica had not committed is predicted again
    let dup = check_at_least_once(&all, &[killed]);
    eprintln!("kill -9: {n} inputs, {} predictions, {dup} duplicates (at-least-once)", all.len());
    assert_eq!(keys.len(), n, "every input has at least one prediction");
}

#[test]
fn secrets_never_appear_in_output_logs_messages_or_artifacts() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "secrets", 1);
    let sasl_secret = "sasl-Secret-Value-93f1c";
    let sasl_user = "sasl-User-Key-77ab2";
    let cfg = std::fs::read_to_string(w.sb.path().join("kafka.yaml")).unwrap();
    // SASL settings referenced from the environment (a PLAINTEXT broker ignores them)
    w.sb.write(
        "secret.yaml",
        &format!("{cfg}sasl.username: ${{TEST_SASL_USER}}\nsasl.password: ${{TEST_SASL_PASSWORD}}\n"),
    );
    w.sb.write("in.csv", "alcohol,pH\n10,3.1\nabc,3.2\n");
    let command = |args: &[&str]| -> TestCommand {
        let mut c = w.command(args);
        c.env("TEST_SASL_PASSWORD", sasl_secret).env("TEST_SASL_USER", sasl_user);
        c
    };
    let run = |args: &[&str], extra: &[(&str, &str)]| -> String {
        let mut c = command(args);
        c.env("MODELCAST_LOG_FORMAT", "json");
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.output();
        format!("{}{}", out.stdout(), out.stderr())
    };
    let store = w.store.clone();
    let mut everything = String::new();
    for args in [
        vec!["--help"],
        vec!["train", "--help"],
        vec!["predict", "--help"],
        vec!["topics", "create", "--kafka-config", "secret.yaml"],
        vec!["train", "--json", "--store", &store, "--kafka-config", "secret.yaml"],
        vec!["predict", "--input", "in.csv", "--store", &store, "--kafka-config", "secret.yaml", "--sink", "bus"],
        vec!["config", "--kafka-config", "secret.yaml", "--store", &store],
        vec!["models", "--store", &store],
    ] {
        everything.push_str(&run(&args, &[]));
    }
    // error paths: wrong AWS secret, unset variable
    everything.push_str(&run(
        &["train", "--store", &store, "--kafka-config", "secret.yaml"],
        &[("AWS_SECRET_ACCESS_KEY", "wrong-aws-Secret-5521")],
    ));
    let config = run(&["config", "--kafka-config", "secret.yaml"], &[]);
    assert!(
        config.contains("sasl.password: '***'")
            || config.contains("sasl.password: \"***\"")
            || config.contains("sasl.password: ***"),
        "{config}"
    );
    // the service's logs
    let mut svc = Replica::start(command(&["predict", "--serve", "--store", &store, "--kafka-config", "secret.yaml"]));
    svc.wait_ready(PATIENCE);
    produce(
        &producer(&w.bootstrap),
        &w.topics.input,
        &[("a".into(), b"{\"alcohol\": 1}".to_vec()), ("b".into(), b"nope".to_vec())],
    );
    // "a" predicted (after the csv's first row), "b" dead-lettered
    wait_count(&w.bootstrap, &w.topics.app, 2, PATIENCE);
    wait_for("\"b\" dead-lettered", PATIENCE, || match read_all(&w.bootstrap, &w.topics.dead) {
        d if d.iter().any(|r| r.key.as_deref() == Some("b")) => Ok(()),
        d => Err(format!("dead letters: {:?}", d.iter().map(|r| r.key.clone()).collect::<Vec<_>>())),
    });
    everything.push_str(&svc.stop().1);
    // what went over Kafka and into S3
    for t in [&w.topics.train, &w.topics.app, &w.topics.dead] {
        for r in read_all(&w.bootstrap, t) {
            everything.push_str(&String::from_utf8_lossy(&r.value));
            everything.push_str(&format!("{:?}", r.headers));
        }
    }
    let store = bed.garage.open_blocking(&w.store);
    for key in store.list("") {
        everything.push_str(&String::from_utf8_lossy(&store.get(&key)));
    }
    assert!(everything.len() > 10_000, "collected output: {} bytes", everything.len());
    for secret in [sasl_secret, sasl_user, bed.garage.secret_key.as_str(), "wrong-aws-Secret-5521"] {
        assert_eq!(everything.matches(secret).count(), 0, "{secret} leaked");
    }
}

/// Every codec a user can set as `compression.type` in kafka_config.yaml works end to end: the
/// announcement, the predictions and a dead letter are produced compressed by modelcast, the
/// input compressed by the producer, and everything is read back.
#[test]
fn every_compression_codec_works_end_to_end() {
    let Some(bed) = bed() else { return };
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let w = Wired::new(&bed, &format!("codec-{codec}"), 1);
        let yaml = std::fs::read_to_string(w.sb.path().join("kafka.yaml")).unwrap();
        assert!(yaml.contains("compression.type: lz4"), "{yaml}");
        w.sb.write("kafka.yaml", &yaml.replace("compression.type: lz4", &format!("compression.type: {codec}")));
        w.train(&[]).assert_ok();
        let mut svc = w.serve(&[]);
        svc.wait_ready(PATIENCE);
        let p = producer_compressing(&w.bootstrap, codec);
        produce(&p, &w.topics.input, &wine_records(300));
        produce(&p, &w.topics.input, &[("bad".into(), b"{\"alcohol\": ".to_vec())]);
        let preds = read_topic(&w.bootstrap, &w.topics.app, 300, PATIENCE);
        let dead = read_topic(&w.bootstrap, &w.topics.dead, 1, PATIENCE);
        let anns = read_all(&w.bootstrap, &w.topics.train);
        let (status, log) = svc.stop();
        assert!(status.success(), "{codec}: {log}");
        let keys: BTreeSet<_> = preds.iter().filter_map(|r| r.key.clone()).collect();
        assert_eq!((preds.len(), keys.len()), (300, 300), "{codec}: every record scored once");
        assert_eq!(dead.len(), 1, "{codec}");
        assert_eq!(dead[0].key.as_deref(), Some("bad"), "{codec}");
        assert_eq!(anns.len(), 1, "{codec}: the announcement");
    }
}

/// Partitions added to the input topic while two replicas serve (`topics create --partitions`):
/// the group rebalances within the metadata refresh, every record on the new partitions is
/// scored, both replicas keep serving, nothing is lost; duplicates are only what a rebalance allows
/// (at-least-once), counted.
#[test]
fn partitions_added_while_two_replicas_serve_are_picked_up() {
    use rdkafka::producer::Producer as _;
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "grow", 2);
    w.train(&[]).assert_ok();
    let mut a = w.serve(&[]);
    let mut b = w.serve(&[]);
    a.wait_ready(PATIENCE);
    b.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let records = wine_records(8_000);
    produce(&p, &w.topics.input, &records[..4_000]);
    wait_count(&w.bootstrap, &w.topics.app, 4_000, PATIENCE);
    let grown =
        w.command(&["topics", "create", "--kafka-config", "kafka.yaml", "--partitions", "4"]).assert_ok().stdout();
    assert!(grown.contains(&format!("{}\tgrown to 4 partitions", w.topics.input)), "{grown}");
    assert!(grown.contains(&format!("{}\tgrown to 4 partitions", w.topics.app)), "{grown}");
    let records_in = |r: &Replica| -> f64 {
        parse_metrics(&r.metrics()).into_iter().find(|(n, _, _)| n == "modelcast_records_in_total").map_or(0.0, |m| m.2)
    };
    let before = (records_in(&a), records_in(&b));
    // the second half on all four partitions in turn: half of it on the new ones (a new
    // producer: one made before the growth knows two partitions until its metadata refresh)
    let p = producer(&w.bootstrap);
    for (i, (k, v)) in records[4_000..].iter().enumerate() {
        crate::util::kafka::send(
            &p,
            rdkafka::producer::BaseRecord::to(&w.topics.input)
                .key(k.as_bytes())
                .payload(v.as_slice())
                .partition((i % 4) as i32),
        );
    }
    p.flush(PATIENCE).unwrap();
    let (keys, all) = keys_in(&w.bootstrap, &w.topics.app, records.len(), PATIENCE);
    let after = (records_in(&a), records_in(&b));
    let (sa, la) = a.stop();
    let (sb, lb) = b.stop();
    let all_after_stop = read_all(&w.bootstrap, &w.topics.app).len();
    eprintln!("grown: {} inputs, {all_after_stop} predictions, {} distinct", records.len(), keys.len());
    assert_eq!(keys.len(), records.len(), "every record scored, those on the new partitions too\n{la}\n{lb}");
    assert!(all_after_stop >= all);
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "both replicas serve after the rebalance: {before:?} -> {after:?}"
    );
    assert!(sa.success() && sb.success(), "{la}\n{lb}");
}
