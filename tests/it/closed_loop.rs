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

/// The red wine rows as JSON objects without `quality`, and their quality.
fn wine_json_rows() -> Vec<(serde_json::Map<String, Value>, f64)> {
    let mut rdr = csv::Reader::from_path(crate::util::repo().join("data/winequality-red.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            let mut obj: serde_json::Map<String, Value> =
                header.iter().zip(r.iter()).map(|(h, v)| (h.clone(), Value::from(v.parse::<f64>().unwrap()))).collect();
            let quality = obj.remove("quality").unwrap().as_f64().unwrap();
            (obj, quality)
        })
        .collect()
}

/// Train the champion (`weak` flags) and the challenger (`strong`), then start `evaluate --serve`
/// and a service scoring with the champion and the challenger in shadow; their versions too.
fn champion_and_challenger(w: &Wired, weak: &[&str], strong: &[&str]) -> (String, String, Replica, Replica) {
    let version = |flags: &[&str], alias: &str| {
        let mut args = flags.to_vec();
        args.extend(["--promote", alias, "--json"]);
        w.train(&args).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string()
    };
    let (v1, v2) = (version(weak, "champion"), version(strong, "challenger"));
    let mut eval =
        Replica::start(w.command(&["evaluate", "--serve", "--kafka-config", "kafka.yaml", "--interval", "1s"]));
    eval.wait_ready(PATIENCE);
    let mut svc = w.serve(&["--alias", "champion", "--shadow", "challenger"]);
    svc.wait_ready(PATIENCE);
    (v1, v2, eval, svc)
}

/// `promote MODEL VERSION --if-better-live` on the bed, with `extra` flags.
fn promote_if_better_live(w: &Wired, model: &str, version: &str, extra: &[&str]) -> crate::util::TestCommand {
    let mut c = w.command(&[
        "promote",
        model,
        version,
        "--kafka-config",
        "kafka.yaml",
        "--store",
        &w.store,
        "--if-better-live",
    ]);
    c.args(extra);
    c
}

/// The reason of the champion alias's last move, from `history`.
fn champion_reason(w: &Wired, model: &str) -> String {
    let history = w
        .command(&[
            "history",
            model,
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
    history.last().unwrap()["reason"].as_str().unwrap().to_string()
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
    let (v1, v2, eval, svc) = champion_and_challenger(&w, &["--params", "params/weak.yaml"], &[]);
    let (v1, v2) = (v1.as_str(), v2.as_str());
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for (i, (obj, quality)) in wine_json_rows().into_iter().enumerate() {
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

    let promote = |extra: &[&str]| promote_if_better_live(&w, "wine-quality", v2, extra);
    let refused = promote(&["--min-labels", "100000"]).assert_exit_code(4).stdout();
    assert!(refused.contains(&format!("only {} shared live labels", inputs.len())), "{refused}");
    let ok = promote(&["--min-labels", "1000"]).assert_ok().stdout();
    assert!(ok.contains(&format!("champion of wine-quality -> {v2} (was {v1})")), "{ok}");
    let reason = champion_reason(&w, "wine-quality");
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

/// Exact binary ROC AUC of scores against 0/1 truths (ties count half).
fn exact_auc(scored: &[(f64, bool)]) -> f64 {
    let pos: Vec<f64> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    let neg: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

#[test]
fn evaluate_scores_classes_live_and_the_gate_compares_log_loss() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "classloop", 2);
    // champion: "good wine" from pH alone; challenger: from every column (both unweighted, so
    // their probabilities are calibrated and their log losses compare)
    let good = std::fs::read_to_string(w.sb.path().join("params/wine-good.yaml")).unwrap();
    let good = good.replace("  class_weight: balanced # or {\"1\": 3.0}\n", "");
    assert!(!good.contains("class_weight: balanced"), "wine-good.yaml changed; adjust the test");
    w.sb.write("params/all.yaml", &good);
    w.sb.write(
        "params/ph.yaml",
        "name: wine-good\ndata: {train: data/winequality-red.csv}\n\
         target: {column: quality, positive: \">= 7\"}\nfeatures: {numeric: [pH]}\n\
         model: {kind: logistic_regression}\n",
    );
    let (v1, v2, eval, svc) =
        champion_and_challenger(&w, &["--params", "params/ph.yaml"], &["--params", "params/all.yaml"]);
    let (v1, v2) = (v1.as_str(), v2.as_str());

    let (mut inputs, mut truth) = (Vec::new(), BTreeMap::new());
    for (i, (obj, quality)) in wine_json_rows().into_iter().enumerate() {
        let good = quality >= 7.0;
        let key = format!("g{i}");
        inputs.push((key.clone(), serde_json::to_vec(&obj).unwrap()));
        // every 10th label never comes
        if i % 10 != 3 {
            truth.insert(key, good);
        }
    }
    let n = inputs.len();
    // labels in another order than the predictions, as numbers 0/1 and as the class names "0"/"1"
    let mut labels = Vec::new();
    for j in 0..n {
        let i = j * 7919 % n;
        let key = format!("g{i}");
        let Some(&good) = truth.get(&key) else { continue };
        let label = if i % 2 == 0 { Value::from(u8::from(good)) } else { Value::from(if good { "1" } else { "0" }) };
        labels.push((key.clone(), serde_json::to_vec(&serde_json::json!({"key": key, "label": label})).unwrap()));
    }
    assert_eq!(labels.len(), truth.len());
    let p = producer(&w.bootstrap);
    produce(&p, &w.topics.input, &inputs);
    read_topic(&w.bootstrap, &w.topics.shadow, n, PATIENCE);
    produce(&p, &w.topics.labels, &labels);
    let m = wait_metrics(&w, 0, "both classifiers joined with every label", |m| {
        let joined = |v: &str| {
            m["versions"].as_array().is_some_and(|vs| {
                vs.iter().any(|x| x["model_version"] == v && x["since_start"]["count"] == truth.len() as u64)
            })
        };
        joined(v1) && joined(v2)
    });
    // the gauges, as /metrics shows them now
    let scraped = eval.metrics();
    let _ = svc.stop();
    let _ = eval.stop();

    // the test's own metrics from the prediction messages: per version, over the labelled keys
    let champion = read_all(&w.bootstrap, &w.topics.app);
    let challenger = read_all(&w.bootstrap, &w.topics.shadow);
    let mut pair_loss = Vec::new();
    for (v, msgs) in [(v1, &champion), (v2, &challenger)] {
        assert_eq!(msgs.len(), n, "{v}: every record predicted once");
        let (mut hits, mut loss, mut confusion, mut scored) = (0u64, 0.0, [[0u64; 2]; 2], Vec::new());
        for rec in msgs {
            let pm = rec.json();
            assert_eq!(pm["model_version"], v, "{pm}");
            let Some(&good) = truth.get(pm["key"].as_str().unwrap()) else { continue };
            let p1 = pm["probabilities"]["1"].as_f64().unwrap();
            let said = pm["class"] == "1";
            hits += u64::from(said == good);
            let p_true = if good { p1 } else { pm["probabilities"]["0"].as_f64().unwrap() };
            loss -= p_true.max(f64::EPSILON).ln();
            confusion[usize::from(good)][usize::from(said)] += 1;
            scored.push((p1, good));
        }
        let count = truth.len() as f64;
        let (accuracy, log_loss, auc) = (hits as f64 / count, loss / count, exact_auc(&scored));
        pair_loss.push(log_loss);
        let got = m["versions"].as_array().unwrap().iter().find(|x| x["model_version"] == v).unwrap();
        let c = &got["since_start"]["classification"];
        assert!(close(c["accuracy"].as_f64().unwrap(), accuracy), "{v}: {c} vs accuracy {accuracy}");
        assert!(close(c["log_loss"].as_f64().unwrap(), log_loss), "{v}: {c} vs log loss {log_loss}");
        assert_eq!(c["classes"], serde_json::json!(["0", "1"]), "{c}");
        assert_eq!(c["confusion"], serde_json::json!(confusion), "{v}: confusion[label][predicted]");
        let bound = c["auc_bound"].as_f64().unwrap();
        // measured: 0.0094 for pH alone (its probabilities span a narrow range, so many pairs
        // share a bin), 0.0006 for every column
        assert!(bound < 0.02, "{v}: a bound of {bound} says little");
        let live_auc = c["auc"].as_f64().unwrap();
        assert!((live_auc - auc).abs() <= bound + 1e-12, "{v}: AUC {live_auc} ± {bound} misses the exact {auc}");
        eprintln!("{v}: live AUC {live_auc} ± {bound}, exact {auc}; accuracy {accuracy}, log loss {log_loss}");
        let gauge = |name: &str| -> f64 {
            let line = scraped
                .lines()
                .find(|l| {
                    l.starts_with(&format!("{name}{{"))
                        && l.contains(&format!("version=\"{v}\""))
                        && l.contains("window=\"since_start\"")
                })
                .unwrap_or_else(|| panic!("{v}: no {name} since start on /metrics:\n{scraped}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(close(gauge("modelcast_live_accuracy"), accuracy), "{v}: the accuracy gauge");
        assert!(close(gauge("modelcast_live_log_loss"), log_loss), "{v}: the log loss gauge");
        assert!(close(gauge("modelcast_live_auc"), live_auc), "{v}: the AUC gauge");
    }
    assert!(pair_loss[1] < pair_loss[0], "every column beats pH alone: {pair_loss:?}");
    let pair = &m["pairs"][0];
    assert_eq!((pair["champion"].as_str(), pair["challenger"].as_str()), (Some(v1), Some(v2)), "{pair}");
    assert_eq!(pair["shared_labels"].as_u64(), Some(truth.len() as u64), "{pair}");
    assert!(close(pair["champion_log_loss"].as_f64().unwrap(), pair_loss[0]), "{pair}");
    assert!(close(pair["challenger_log_loss"].as_f64().unwrap(), pair_loss[1]), "{pair}");

    let ok = promote_if_better_live(&w, "wine-good", v2, &["--min-labels", "1000"]).assert_ok().stdout();
    assert!(ok.contains(&format!("champion of wine-good -> {v2} (was {v1})")), "{ok}");
    let reason = champion_reason(&w, "wine-good");
    assert!(reason.contains("live log loss") && reason.contains("shared labels"), "{reason}");
}

#[test]
fn evaluate_on_the_embedded_default_scores_six_classes_with_a_bounded_macro_auc() {
    let sb = crate::util::Sandbox::new();
    sb.command(&["train", "--params", "params/wine-grade.yaml"]).assert_ok();
    sb.command(&["predict", "--model-name", "wine-grade", "--input", "data/winequality-red.csv", "--sink", "bus"])
        .assert_ok();
    let preds = sb.log_lines("app_messages");
    assert_eq!(preds.len(), 1599);
    let grades = ["3", "4", "5", "6", "7", "8"];
    let mut rdr = csv::Reader::from_path(sb.path().join("data/winequality-red.csv")).unwrap();
    let quality: Vec<usize> = rdr.records().map(|r| r.unwrap()[11].parse::<usize>().unwrap() - 3).collect();
    // every 7th prediction unlabelled; labels as numbers and as text; one label names no grade
    let (mut labels, mut rows) = (String::new(), Vec::new());
    for (i, p) in preds.iter().enumerate().filter(|(i, _)| i % 7 != 2) {
        let key = p["key"].as_str().unwrap();
        let label = if i == 0 {
            "\"9\"".to_string()
        } else if i % 2 == 0 {
            format!("{}", quality[i] + 3)
        } else {
            format!("\"{}\"", quality[i] + 3)
        };
        labels.push_str(&format!("{{\"key\":\"{key}\",\"label\":{label}}}\n"));
        if i != 0 {
            let probs: Vec<f64> = grades.iter().map(|g| p["probabilities"][g].as_f64().unwrap()).collect();
            let said = grades.iter().position(|g| p["class"] == *g).unwrap();
            rows.push((quality[i], said, probs));
        }
    }
    sb.write("models/_bus/labels.jsonl", &labels);
    let m = sb.command(&["evaluate"]).assert_ok().stdout_doc();
    assert_eq!(m["counts"]["labels_unusable"].as_u64(), Some(1), "\"9\" is no grade: {}", m["counts"]);
    let c = &m["versions"][0]["since_start"]["classification"];
    assert_eq!(m["versions"][0]["since_start"]["count"].as_u64(), Some(rows.len() as u64));
    let n = rows.len() as f64;
    let accuracy = rows.iter().filter(|(t, s, _)| t == s).count() as f64 / n;
    let log_loss = rows.iter().map(|(t, _, p)| -p[*t].max(f64::EPSILON).ln()).sum::<f64>() / n;
    assert!(close(c["accuracy"].as_f64().unwrap(), accuracy), "{c} vs {accuracy}");
    assert!(close(c["log_loss"].as_f64().unwrap(), log_loss), "{c} vs {log_loss}");
    let mut confusion = vec![vec![0u64; 6]; 6];
    for (t, s, _) in &rows {
        confusion[*t][*s] += 1;
    }
    assert_eq!(c["confusion"], serde_json::json!(confusion));
    assert_eq!(c["classes"], serde_json::json!(grades));
    // one-vs-rest macro AUC over the grades with both positives and negatives
    let aucs: Vec<f64> = (0..6)
        .filter(|k| rows.iter().any(|r| r.0 == *k))
        .map(|k| exact_auc(&rows.iter().map(|(t, _, p)| (p[k], *t == k)).collect::<Vec<_>>()))
        .collect();
    let macro_auc = aucs.iter().sum::<f64>() / aucs.len() as f64;
    let (auc, bound) = (c["auc"].as_f64().unwrap(), c["auc_bound"].as_f64().unwrap());
    assert!(bound < 0.01, "a bound of {bound} says little");
    assert!((auc - macro_auc).abs() <= bound + 1e-12, "macro AUC {auc} ± {bound} misses the exact {macro_auc}");
    eprintln!("six grades: live macro AUC {auc} ± {bound}, exact {macro_auc}");
}
