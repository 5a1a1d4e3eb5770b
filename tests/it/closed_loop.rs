//! The closed loop on the test bed: `evaluate --serve` joins the service's predictions with a
//! labels topic, per model version across a hot swap, with exact metrics, exact expiry counts,
//! the same counts after a `kill -9` and restart, and a mis-partitioned labels topic refused.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::util::bed::{bed, Replica, Wired};
use crate::util::fixtures::wine_records;
use crate::util::kafka::{produce, producer, read_all, read_topic, wait_count};
use crate::util::{wait_for, PATIENCE};

/// Labels of keys `k{i}`: none for every 20th (5% never arrive), a value from the key otherwise.
fn label_of(i: usize) -> Option<f64> {
    (i % 20 != 7).then_some(4.0 + (i % 5) as f64 * 0.5)
}

fn label_record(i: usize) -> (String, Vec<u8>) {
    let key = format!("k{i}");
    let body = serde_json::json!({"key": key, "label": label_of(i).unwrap()});
    (key, serde_json::to_vec(&body).unwrap())
}

/// Produce one record with an explicit timestamp, and insist the broker took it (a broker may
/// refuse a timestamp far from its clock: Apache Kafka 4 by default one over an hour ahead,
/// `log.message.timestamp.after.max.ms`).
fn produce_at(bootstrap: &str, topic: &str, key: &str, value: &[u8], ts: i64) {
    let p: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sent = rt.block_on(p.send(FutureRecord::to(topic).key(key).payload(value).timestamp(ts), PATIENCE));
    if let Err((e, _)) = sent {
        panic!("{topic}: the broker refused {key} stamped {ts} ms: {e}");
    }
}

/// The newest `model_metrics` message published after `after_ms` that satisfies `ok`.
fn wait_metrics(w: &Wired, after_ms: i64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, PATIENCE, || {
        let msgs = read_all(&w.bootstrap, &w.topics.metrics);
        let last = msgs.iter().map(|r| r.json()).rfind(|m| m["at_ms"].as_i64() > Some(after_ms));
        match last {
            Some(m) if ok(&m) => Ok(m),
            Some(m) => Err(format!("latest: {}", m["counts"])),
            None => Err("no model_metrics message yet".into()),
        }
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
}

#[test]
fn evaluate_joins_labels_per_version_across_a_hot_swap_and_survives_kill_9() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "loop", 3);
    let evaluate = |w: &Wired| {
        Replica::start(w.command(&[
            "evaluate",
            "--serve",
            "--kafka-config",
            "kafka.yaml",
            "--horizon",
            "30m",
            "--interval",
            "1s",
        ]))
    };
    let mut eval = evaluate(&w);
    eval.wait_ready(PATIENCE);
    w.train(&[]).assert_ok();
    let mut svc = w.serve(&[]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let n = 20_000;
    let inputs = wine_records(n);
    produce(&p, &w.topics.input, &inputs[..n / 2]);
    // labels that arrive before their prediction: keys of the second half
    let early: Vec<usize> = (15_000..15_500).filter(|&i| label_of(i).is_some()).collect();
    produce(&p, &w.topics.labels, &early.iter().map(|&i| label_record(i)).collect::<Vec<_>>());
    // the hot swap, once the first half is scored: the second half is scored by the new version
    read_topic(&w.bootstrap, &w.topics.app, n / 2, PATIENCE);
    w.train(&[]).assert_ok();
    svc.log().wait_event("model_swapped", PATIENCE);
    produce(&p, &w.topics.input, &inputs[n / 2..]);
    wait_count(&w.bootstrap, &w.topics.app, n, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "{log}");
    // what the service wrote in the end (it flushes on stop): one prediction per input
    let preds = read_all(&w.bootstrap, &w.topics.app);
    assert_eq!(preds.len(), n, "each input scored once");
    let by_key: BTreeMap<String, (String, f64)> = preds
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["key"].as_str().unwrap().to_string(),
                (v["model_version"].as_str().unwrap().to_string(), v["prediction"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(by_key.len(), n);
    // the rest of the labels, shuffled
    let mut late: Vec<usize> = (0..n).filter(|i| label_of(*i).is_some() && !early.contains(i)).collect();
    let mut state = 12345u64;
    for i in (1..late.len()).rev() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        late.swap(i, (state >> 33) as usize % (i + 1));
    }
    produce(&p, &w.topics.labels, &late.iter().map(|&i| label_record(i)).collect::<Vec<_>>());

    // expected, computed here from the predictions read back and the labels sent
    let mut pairs: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut unlabelled: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..n {
        let (version, pred) = &by_key[&format!("k{i}")];
        match label_of(i) {
            Some(y) => pairs.entry(version.clone()).or_default().push((*pred, y)),
            None => *unlabelled.entry(version.clone()).or_default() += 1,
        }
    }
    assert_eq!(pairs.len(), 2, "two versions served");
    let labelled = (n - n / 20) as u64;

    let joined = |m: &Value| m["counts"]["joined"].as_u64() == Some(labelled);
    wait_metrics(&w, 0, "every label joined", joined);
    // a label stamped 45 minutes ahead moves the clock past the 30-minute horizon: the unlabelled
    // expire (Kafka refuses records stamped more than log.message.timestamp.after.max.ms, 1 h by
    // default, ahead of its clock)
    let tick = chrono::Utc::now().timestamp_millis() + 45 * 60_000;
    produce_at(&w.bootstrap, &w.topics.labels, "tick", br#"{"key":"tick","label":0}"#, tick);
    let expired = |m: &Value| {
        m["versions"].as_array().unwrap().iter().map(|v| v["expired"].as_u64().unwrap()).sum::<u64>() == n as u64 / 20
    };
    let before = wait_metrics(&w, 0, "the unlabelled predictions expired", |m| joined(m) && expired(m));

    let check = |m: &Value| {
        assert_eq!(m["schema_version"], 1);
        assert_eq!(m["counts"]["joined"].as_u64(), Some(labelled), "{}", m["counts"]);
        assert_eq!(m["counts"]["duplicates"].as_u64(), Some(0), "{}", m["counts"]);
        assert_eq!(m["pending_predictions"].as_u64(), Some(0));
        for (version, list) in &pairs {
            let got =
                m["versions"].as_array().unwrap().iter().find(|v| v["model_version"] == version.as_str()).unwrap();
            assert_eq!(got["stream"], "served");
            assert_eq!(got["expired"].as_u64(), Some(unlabelled[version]), "{got}");
            let s = &got["since_start"];
            let k = list.len() as f64;
            let rmse = (list.iter().map(|(p, y)| (p - y) * (p - y)).sum::<f64>() / k).sqrt();
            let mae = list.iter().map(|(p, y)| (p - y).abs()).sum::<f64>() / k;
            let bias = list.iter().map(|(p, y)| p - y).sum::<f64>() / k;
            let mean = list.iter().map(|(_, y)| y).sum::<f64>() / k;
            let sst: f64 = list.iter().map(|(_, y)| (y - mean) * (y - mean)).sum();
            let r2 = 1.0 - list.iter().map(|(p, y)| (p - y) * (p - y)).sum::<f64>() / sst;
            assert_eq!(s["count"].as_u64(), Some(list.len() as u64), "{got}");
            assert!(close(s["rmse"].as_f64().unwrap(), rmse), "rmse {s} vs {rmse}");
            assert!(close(s["mae"].as_f64().unwrap(), mae), "mae {s} vs {mae}");
            assert!(close(s["bias"].as_f64().unwrap(), bias), "bias {s} vs {bias}");
            assert!((s["r2"].as_f64().unwrap() - r2).abs() < 1e-9, "r2 {s} vs {r2}");
        }
    };
    check(&before);
    let text = eval.metrics();
    assert!(text.contains("modelcast_live_rmse{") && text.contains("window=\"since_start\""), "{text}");

    // kill -9 and restart: the state is rebuilt from the horizon, nothing counted twice
    let killed_at = chrono::Utc::now().timestamp_millis();
    eval.kill();
    let mut eval = evaluate(&w);
    eval.wait_ready(PATIENCE);
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_metrics(&w, killed_at, "the restarted evaluator caught up", |m| joined(m) && expired(m))
    }));
    let after = waited.unwrap_or_else(|_| panic!("the restarted evaluator's log:\n{}", eval.log().so_far()));
    check(&after);
    // the sliding window depends on when the joins happened; everything else is the same
    // (the joins happen in another order, so the sums agree to rounding, the counts exactly)
    for (b, a) in before["versions"].as_array().unwrap().iter().zip(after["versions"].as_array().unwrap()) {
        let (sa, sb) = (&a["since_start"], &b["since_start"]);
        assert_eq!(sa["count"], sb["count"], "same count after the restart");
        for k in ["rmse", "mae", "bias", "r2"] {
            assert!(close(sa[k].as_f64().unwrap(), sb[k].as_f64().unwrap()), "{k}: {sa} vs {sb}");
        }
        assert_eq!(a["expired"], b["expired"]);
    }
    let (status, _) = eval.stop();
    assert!(status.success());
    // a batch run says the same on stdout
    let once = w.command(&["evaluate", "--kafka-config", "kafka.yaml", "--horizon", "30m"]).assert_ok().stdout_doc();
    check(&once);
}

#[test]
fn a_labels_topic_with_another_partition_count_is_refused_naming_both_topics() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "misp", 3);
    let yaml = std::fs::read_to_string(w.sb.path().join("kafka.yaml")).unwrap();
    let other = format!("{}-one", w.topics.labels);
    let mis = yaml
        .replace(&format!("labels: {}", w.topics.labels), &format!("labels: {other}"))
        .replace("partitions: 3", "partitions: 1");
    w.sb.write("mis.yaml", &mis);
    w.command(&["topics", "create", "--kafka-config", "mis.yaml"]).assert_ok();
    let e = w.command(&["evaluate", "--kafka-config", "mis.yaml"]).assert_exit_code(1).stderr();
    assert!(e.contains(&format!("{other} has 1 partitions")) && e.contains(&format!("{} has 3", w.topics.app)), "{e}");
}

#[test]
fn shadow_gets_a_verdict_promote_if_better_live_needs_enough_shared_labels() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "verdict", 2);
    // the champion sees two columns, the challenger all of them: the challenger is better
    w.sb.write(
        "params/weak.yaml",
        "name: wine-quality\ndata: {train: data/winequality-red.csv}\ntarget: quality\n\
         features: {numeric: [pH, density]}\nmodel: {kind: ridge, alpha: 1.0}\n",
    );
    let weak = w.train(&["--params", "params/weak.yaml", "--promote", "champion", "--json"]).assert_ok().stdout_doc();
    let strong = w.train(&["--promote", "challenger", "--json"]).assert_ok().stdout_doc();
    let (v1, v2) = (weak["version"].as_str().unwrap(), strong["version"].as_str().unwrap());
    let mut eval =
        Replica::start(w.command(&["evaluate", "--serve", "--kafka-config", "kafka.yaml", "--interval", "1s"]));
    eval.wait_ready(PATIENCE);
    let mut svc = w.serve(&["--alias", "champion", "--shadow", "challenger"]);
    svc.wait_ready(PATIENCE);
    let mut rdr = csv::Reader::from_path(crate::util::repo().join("data/winequality-red.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for (i, r) in rdr.records().enumerate() {
        let r = r.unwrap();
        let mut obj = serde_json::Map::new();
        for (h, v) in header.iter().zip(r.iter()) {
            obj.insert(h.clone(), Value::from(v.parse::<f64>().unwrap()));
        }
        let quality = obj.remove("quality").unwrap();
        let key = format!("w{i}");
        inputs.push((key.clone(), serde_json::to_vec(&obj).unwrap()));
        labels.push((key.clone(), serde_json::to_vec(&serde_json::json!({"key": key, "label": quality})).unwrap()));
    }
    let p = producer(&w.bootstrap);
    produce(&p, &w.topics.input, &inputs);
    read_topic(&w.bootstrap, &w.topics.shadow, inputs.len(), PATIENCE);
    produce(&p, &w.topics.labels, &labels);
    let m = wait_metrics(&w, 0, "champion and challenger on shared labels", |m| {
        m["pairs"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["shared_labels"].as_u64() == Some(inputs.len() as u64)))
    });
    let pair = &m["pairs"][0];
    assert_eq!((pair["champion"].as_str(), pair["challenger"].as_str()), (Some(v1), Some(v2)), "{pair}");
    assert!(pair["challenger_rmse"].as_f64() < pair["champion_rmse"].as_f64(), "{pair}");
    let _ = svc.stop();
    let _ = eval.stop();

    let promote = |extra: &[&str]| {
        let mut c = w.command(&[
            "promote",
            "wine-quality",
            v2,
            "--kafka-config",
            "kafka.yaml",
            "--store",
            &w.store,
            "--if-better-live",
        ]);
        c.args(extra);
        c
    };
    let refused = promote(&["--min-labels", "100000"]).assert_exit_code(4).stdout();
    assert!(refused.contains(&format!("only {} shared live labels", inputs.len())), "{refused}");
    let ok = promote(&["--min-labels", "1000"]).assert_ok().stdout();
    assert!(ok.contains(&format!("champion of wine-quality -> {v2} (was {v1})")), "{ok}");
    let history = w
        .command(&[
            "history",
            "wine-quality",
            "--alias",
            "champion",
            "--json",
            "--kafka-config",
            "kafka.yaml",
            "--store",
            &w.store,
        ])
        .assert_ok()
        .stdout_json();
    let reason = history.last().unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("live RMSE") && reason.contains("shared labels"), "{reason}");
}

#[test]
fn evaluate_on_the_embedded_default_joins_the_local_prediction_log_with_labels_jsonl() {
    let sb = crate::util::Sandbox::new();
    sb.command(&["train"]).assert_ok();
    sb.command(&["predict", "--input", "data/winequality-red.csv", "--sink", "bus"]).assert_ok();
    let preds = sb.log_lines("app_messages");
    assert_eq!(preds.len(), 1599);
    let mut rdr = csv::Reader::from_path(sb.path().join("data/winequality-red.csv")).unwrap();
    let quality: Vec<f64> = rdr.records().map(|r| r.unwrap()[11].parse().unwrap()).collect();
    // labels for all but every 10th prediction, matched by the prediction's key (the line)
    let (mut labels, mut pairs) = (String::new(), Vec::new());
    for (i, p) in preds.iter().enumerate().filter(|(i, _)| i % 10 != 3) {
        let key = p["key"].as_str().unwrap();
        labels.push_str(&format!("{{\"key\":\"{key}\",\"label\":{}}}\n", quality[i]));
        pairs.push((p["prediction"].as_f64().unwrap(), quality[i]));
    }
    sb.write("models/_bus/labels.jsonl", &labels);
    let m = sb.command(&["evaluate"]).assert_ok().stdout_doc();
    assert_eq!(m["counts"]["joined"].as_u64(), Some(pairs.len() as u64), "{}", m["counts"]);
    assert_eq!(m["pending_predictions"].as_u64(), Some(160), "the unlabelled tenth waits");
    let s = &m["versions"][0]["since_start"];
    let rmse = (pairs.iter().map(|(p, y)| (p - y) * (p - y)).sum::<f64>() / pairs.len() as f64).sqrt();
    assert!(close(s["rmse"].as_f64().unwrap(), rmse), "{s} vs {rmse}");
    // --serve needs Kafka
    let e = sb.command(&["evaluate", "--serve"]).assert_exit_code(2).stderr();
    assert!(e.contains("--serve") && e.contains("--kafka-config"), "{e}");
}
