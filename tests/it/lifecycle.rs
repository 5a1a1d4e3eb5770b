//! The model lifecycle: aliases, the promotion gate, promote/rollback/history, `--alias` and
//! `--shadow`, on the embedded default (local store and logs) and on the test bed (Kafka + S3,
//! and an S3 store without Kafka).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use modelcast::aliases::AliasLog;
use modelcast::bus::Bus;
use modelcast::store::Store;
use serde_json::Value;

use crate::util::bed::{bed, S3Server, Wired};
use crate::util::fixtures::{alias_move, wine_records};
use crate::util::kafka::{enqueue, produce, producer, read_all, read_topic, wait_count};
use crate::util::logs::events;
use crate::util::race::{is_artifact_get, race, FifoGate, HoldingProxy};
use crate::util::*;

/// Params files of the cron scenario: `weak` (the same columns, over-regularised: the first
/// champion), `worse` (no alcohol, volatile acidity or sulphates: the strongest features gone),
/// and the full `params.yaml` (better than `weak`, with the same input schema).
fn write_params(sb: &Sandbox) {
    let full = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    let without = |cols: &[&str]| {
        full.lines().filter(|l| !cols.iter().any(|c| l.trim() == format!("- {c}"))).collect::<Vec<_>>().join("\n")
    };
    assert!(full.contains("alpha: 1.0 "), "params.yaml changed; adjust the weak variant");
    sb.write("params/weak.yaml", &full.replace("alpha: 1.0 ", "alpha: 2000.0 "));
    sb.write("params/worse.yaml", &without(&["alcohol", "volatile acidity", "sulphates"]));
}

fn versions_of(preds: &[Value]) -> BTreeSet<String> {
    preds.iter().map(|p| p["model_version"].as_str().unwrap().to_string()).collect()
}

fn history(mut c: TestCommand) -> Vec<Value> {
    c.assert_ok().stdout_json()
}

#[test]
fn cron_scenario_on_the_embedded_default() {
    let sb = Sandbox::new();
    write_params(&sb);
    let train = |params: &str| {
        let mut c = sb.command(&["train", "--params", params, "--promote-if-better", "champion", "--json"]);
        c.env("MODELCAST_ACTOR", "cron@batch-host");
        c.output()
    };
    // 1: the first model becomes champion (it beats the mean-of-target baseline)
    let r1 = train("params/weak.yaml");
    assert_eq!(r1.code(), Some(0), "{}", r1.stderr());
    let r1 = r1.stdout_doc();
    let v1 = r1["version"].as_str().unwrap().to_string();
    assert_eq!(r1["promotion"]["promoted"], true);
    assert!(r1["promotion"]["current"].is_null());
    // 2: a worse model is stored and announced, but the gate refuses it: exit 4 and a report of
    // both models on the same rows
    let r2 = train("params/worse.yaml").assert_exit_code(4).stdout_doc();
    let v2 = r2["version"].as_str().unwrap().to_string();
    let p = &r2["promotion"];
    assert_eq!(p["promoted"], false);
    assert_eq!(p["current"]["version"], v1.as_str());
    let rows = p["rows"].as_u64().unwrap();
    assert_eq!(rows, r2["test_rows"].as_u64().unwrap());
    assert_eq!(p["candidate"]["metrics"]["rows"], rows);
    assert_eq!(p["current"]["metrics"]["rows"], rows, "both models on the same rows");
    let (new, old) =
        (p["candidate"]["metrics"]["rmse"].as_f64().unwrap(), p["current"]["metrics"]["rmse"].as_f64().unwrap());
    assert!(new > old, "the worse model is worse on the same rows: {new} vs {old}");
    assert!(p["reason"].as_str().unwrap().contains("below the required"), "{p}");
    assert_eq!(sb.artifacts("wine-quality").len(), 2, "stored either way");
    assert_eq!(sb.log_lines("train").iter().filter(|m| m["type"].is_null()).count(), 2, "announced either way");
    // the champion still serves v1
    let preds = sb.command(&["predict", "--input", "data/winequality-red.csv", "--alias", "champion"]).assert_ok();
    assert_eq!(versions_of(&preds.stdout_json()), BTreeSet::from([v1.clone()]));
    // 3: a better one is promoted
    let r3 = train("params/params.yaml");
    assert_eq!(r3.code(), Some(0), "{}", r3.stderr());
    let r3 = r3.stdout_doc();
    let v3 = r3["version"].as_str().unwrap().to_string();
    assert_eq!(r3["promotion"]["promoted"], true, "{}", r3["promotion"]);
    let preds = sb.command(&["predict", "--input", "data/winequality-red.csv", "--alias", "champion"]).assert_ok();
    assert_eq!(versions_of(&preds.stdout_json()), BTreeSet::from([v3.clone()]));
    // without --alias: the newest announcement, as before
    let preds = sb.command(&["predict", "--input", "data/winequality-red.csv"]).assert_ok();
    assert_eq!(versions_of(&preds.stdout_json()), BTreeSet::from([v3.clone()]));
    // the models table knows the aliases
    let models = sb.command(&["models", "--json"]).assert_ok().stdout_doc();
    let aliases: BTreeMap<String, Value> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["version"].as_str().unwrap().to_string(), m["aliases"].clone()))
        .collect();
    assert_eq!(aliases[&v3], serde_json::json!(["champion"]));
    assert_eq!(aliases[&v2], serde_json::json!([]));
    let table = sb.command(&["models", "wine-quality"]).assert_ok().stdout();
    assert!(table.lines().any(|l| l.contains(&v3) && l.contains("champion") && l.contains("ridge")), "{table}");
    // rollback goes back to v1; history lists every move with who and why
    sb.command(&["rollback", "wine-quality", "--reason", "bad data on the 21st"])
        .env("MODELCAST_ACTOR", "ana")
        .assert_ok();
    let preds = sb.command(&["predict", "--input", "data/winequality-red.csv", "--alias", "champion"]).assert_ok();
    assert_eq!(versions_of(&preds.stdout_json()), BTreeSet::from([v1.clone()]));
    let h = history(sb.command(&["history", "wine-quality", "--json"]));
    let moves: Vec<(&str, &str, &str)> = h
        .iter()
        .map(|m| (m["version"].as_str().unwrap(), m["action"].as_str().unwrap(), m["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (v1.as_str(), "promote", "cron@batch-host"),
            (v3.as_str(), "promote", "cron@batch-host"),
            (v1.as_str(), "rollback", "ana")
        ]
    );
    assert!(h.iter().all(|m| m["applied"] == true && !m["reason"].as_str().unwrap().is_empty()));
    assert_eq!(h[2]["reason"], "bad data on the 21st");
    assert_eq!(h[2]["previous_version"], v3.as_str());
    // a second rollback has nothing further back
    let e = sb.command(&["rollback", "wine-quality"]).assert_exit_code(1).stderr();
    assert!(e.contains("no earlier version"), "{e}");
}

#[test]
fn promote_refuses_a_missing_or_tampered_version_and_publishes_nothing() {
    let sb = Sandbox::new();
    let v = sb.command(&["train", "--json"]).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string();
    let before = sb.log_lines("train").len();
    let e = sb.command(&["promote", "wine-quality", "20200101T000000000Z-deadbeef"]).assert_exit_code(1).stderr();
    assert!(e.contains("is not in") && e.contains("nothing was published"), "{e}");
    let e = sb.command(&["promote", "no-such-model", &v]).assert_exit_code(1).stderr();
    assert!(e.contains("nothing was published"), "{e}");
    // tamper: one byte more is another sha256 than the announced one
    let art = sb.artifacts("wine-quality").remove(0);
    let mut perms = std::fs::metadata(&art).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&art, perms).unwrap();
    let mut bytes = std::fs::read(&art).unwrap();
    bytes.push(b' ');
    std::fs::write(&art, bytes).unwrap();
    let e = sb.command(&["promote", "wine-quality", &v]).assert_exit_code(1).stderr();
    assert!(e.contains("sha256 mismatch") && e.contains("nothing was published"), "{e}");
    assert_eq!(sb.log_lines("train").len(), before, "nothing was published");
    // a bad alias name is a usage error
    sb.command(&["promote", "wine-quality", &v, "--alias", "Champion!"]).assert_exit_code(2);
}

#[test]
fn concurrent_promotions_on_the_local_log_end_in_one_state_every_reader_agrees_on() {
    let sb = Sandbox::new();
    let mut versions = Vec::new();
    for _ in 0..4 {
        versions
            .push(sb.command(&["train", "--json"]).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string());
    }
    sb.command(&["promote", "wine-quality", &versions[0]]).assert_ok();
    // three promotions at the same moment, all from the state "champion = v0": each is held at
    // the read of its version's artifact (after it read the log, before it writes its move)
    // until all three are there
    let racing = &versions[1..];
    let artifacts: Vec<std::path::PathBuf> = racing
        .iter()
        .map(|v| {
            let mut found = sb.artifacts("wine-quality").into_iter().filter(|p| p.file_stem() == Some(v.as_ref()));
            found.next().unwrap_or_else(|| panic!("the artifact of {v}"))
        })
        .collect();
    let mut gate = FifoGate::new(&artifacts);
    let racers = racing.iter().map(|v| sb.command(&["promote", "wine-quality", v, "--json"])).collect();
    let (runs, together) = race(racers, &mut gate, PATIENCE);
    drop(gate);
    let outcomes = one_wins_the_rest_exit_5(racing, &runs, together, Some(&versions[0]));
    agree_on_one_state(&outcomes, || history(sb.command(&["history", "wine-quality", "--json"])));
    // a move written from a stale state (a racer that lost) is kept as a conflict and ignored
    let h = history(sb.command(&["history", "wine-quality", "--json"]));
    let mut stale: Value = h[0].clone();
    let obj = stale.as_object_mut().unwrap();
    obj.remove("applied");
    obj.remove("conflict");
    obj.insert("id".into(), "stale-move".into());
    obj.insert("version".into(), versions[3].clone().into());
    obj.insert("key".into(), h.iter().find(|m| m["version"] == versions[3].as_str()).unwrap()["key"].clone());
    obj.insert("sha256".into(), h.iter().find(|m| m["version"] == versions[3].as_str()).unwrap()["sha256"].clone());
    obj.insert("previous_version".into(), "20200101T000000000Z-00000000".into());
    sb.append_line("models/_bus/train.jsonl", &stale.to_string());
    let h = history(sb.command(&["history", "wine-quality", "--json"]));
    let last = h.last().unwrap();
    assert_eq!((last["id"].as_str(), &last["applied"]), (Some("stale-move"), &Value::Bool(false)));
    assert!(last["conflict"].as_str().unwrap().contains("concurrent move"), "{last}");
    let applied_last = h.iter().rev().find(|m| m["applied"] == true).unwrap();
    let table = sb.command(&["models", "--json"]).assert_ok().stdout_doc();
    let champion: Vec<&str> = table
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["aliases"].as_array().unwrap().iter().any(|a| a == "champion"))
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(champion, vec![applied_last["version"].as_str().unwrap()], "the conflict did not move the alias");
}

/// Of promotions to `versions` (their `runs`) that all read the alias at `from` before any of
/// them wrote (`together`: the gate held them all): exactly one exited 0; every other exited 5
/// (a lost race) saying so, what the alias pointed at instead and that a concurrent move won,
/// and printed nothing on stdout. The (version, exit code) of each.
fn one_wins_the_rest_exit_5(
    versions: &[String],
    runs: &[Run],
    together: bool,
    from: Option<&str>,
) -> Vec<(String, Option<i32>)> {
    let shown = || {
        let each = versions.iter().zip(runs);
        each.map(|(v, r)| format!("--- {v}: exit {:?}\n{}{}", r.code(), r.stdout(), r.stderr())).collect::<String>()
    };
    assert!(together, "the racers were not all held at the gate at once:\n{}", shown());
    let winners: Vec<&String> =
        versions.iter().zip(runs).filter(|(_, r)| r.code() == Some(0)).map(|(v, _)| v).collect();
    assert_eq!(winners.len(), 1, "exactly one of the promotions wins:\n{}", shown());
    let why = format!("alias pointed at {}, not {}", winners[0], from.unwrap_or("nothing"));
    for (v, r) in versions.iter().zip(runs).filter(|(v, _)| *v != winners[0]) {
        assert_eq!(r.code(), Some(5), "{v} lost the race:\n{}", shown());
        let e = r.stderr();
        assert!(e.contains("alias conflict") && e.contains(&why) && e.contains("a concurrent move won"), "{v}: {e}");
        assert!(r.stdout().is_empty(), "{v}: a move that did not apply prints nothing: {}", r.stdout());
    }
    versions.iter().cloned().zip(runs.iter().map(Run::code)).collect()
}

/// After concurrent promotions (`outcomes`: version, exit code): every process that exited 0
/// has its move applied in the log, every one that exited 5 has its move in the log as a
/// conflict and none applied, no other exit code, and two independent readers print the same
/// history whose applied moves form one chain.
fn agree_on_one_state(outcomes: &[(String, Option<i32>)], read: impl Fn() -> Vec<Value>) {
    let (h1, h2) = (read(), read());
    assert_eq!(h1, h2, "two readers fold the same log to the same history");
    for (v, code) in outcomes {
        let applied = h1.iter().any(|m| m["version"] == v.as_str() && m["applied"] == true);
        match code {
            Some(0) => assert!(applied, "{v} exited 0 but its move is not applied: {h1:?}"),
            Some(5) => {
                assert!(!applied, "{v} exited 5 (conflict) but its move applied: {h1:?}");
                let kept = h1.iter().any(|m| m["version"] == v.as_str() && m["conflict"].is_string());
                assert!(kept, "{v}: the lost move is kept in the log as a conflict: {h1:?}");
            }
            other => panic!("{v}: unexpected exit {other:?}"),
        }
    }
    assert!(outcomes.iter().any(|(_, c)| *c == Some(0)), "someone won: {outcomes:?}");
    // every applied move starts from the one before it: one chain, no lost update
    let applied: Vec<&Value> = h1.iter().filter(|m| m["applied"] == true).collect();
    for pair in applied.windows(2) {
        assert_eq!(pair[1]["previous_version"], pair[0]["version"], "{h1:?}");
    }
}

#[test]
fn shadow_scoring_in_file_mode_adds_fields_and_a_refused_challenger_changes_nothing() {
    let sb = Sandbox::new();
    write_params(&sb);
    let v1 = sb.command(&["train", "--promote", "champion", "--json"]).assert_ok().stdout_doc()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let v2 = sb
        .command(&["train", "--params", "params/worse.yaml", "--promote", "challenger", "--json"])
        .assert_ok()
        .stdout_doc()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let plain = sb
        .command(&["predict", "--input", "data/winequality-red.csv", "--alias", "champion"])
        .assert_ok()
        .stdout_json();
    let shadowed = sb
        .command(&["predict", "--input", "data/winequality-red.csv", "--alias", "champion", "--shadow", "challenger"])
        .assert_ok()
        .stdout_json();
    assert_eq!(shadowed.len(), 1599);
    let mut differ = 0;
    for (a, b) in plain.iter().zip(&shadowed) {
        assert_eq!(
            (&a["key"], &a["prediction"], &b["model_version"]),
            (&b["key"], &b["prediction"], &Value::from(v1.as_str()))
        );
        assert_eq!(b["shadow_version"], v2.as_str());
        if (b["shadow_prediction"].as_f64().unwrap() - b["prediction"].as_f64().unwrap()).abs() > 1e-9 {
            differ += 1;
        }
    }
    assert!(differ > 1000, "the shadow model is another model: {differ}");
    // tamper the challenger's artifact: it is refused, the champion's output is byte-for-byte the
    // plain one (but for the time stamps)
    let art = sb.artifacts("wine-quality").into_iter().find(|p| p.to_string_lossy().contains(&v2)).unwrap();
    let mut perms = std::fs::metadata(&art).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&art, perms).unwrap();
    let mut bytes = std::fs::read(&art).unwrap();
    bytes.push(b'\n');
    std::fs::write(&art, bytes).unwrap();
    let run = sb
        .command(&[
            "predict",
            "--input",
            "data/winequality-red.csv",
            "--alias",
            "champion",
            "--shadow",
            "challenger",
            "--log-format",
            "json",
        ])
        .assert_ok();
    assert_eq!(run.events("model_refused").len(), 1, "{}", run.stderr());
    let out = run.stdout_json();
    assert_eq!(out.len(), 1599);
    for (a, b) in plain.iter().zip(&out) {
        assert_eq!(
            (&a["key"], &a["prediction"], &a["model_version"]),
            (&b["key"], &b["prediction"], &b["model_version"])
        );
        assert!(b.get("shadow_prediction").is_none());
    }
}

// ---- the test bed: Kafka + S3 ----

/// `modelcast ARGS --store S3 --kafka-config kafka.yaml` of a wired sandbox.
fn wired(w: &Wired, args: &[&str]) -> TestCommand {
    let mut c = w.command(args);
    c.args(["--store", &w.store, "--kafka-config", "kafka.yaml"]);
    c
}

/// Predictions on app_messages: every key exactly once; per partition, the versions in offset
/// order (run-length encoded).
fn version_runs(preds: &[crate::util::kafka::Rec], n: usize) -> BTreeMap<i64, Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut per: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for r in preds {
        let v = r.json();
        assert!(seen.insert(v["key"].as_str().unwrap().to_string()), "scored twice: {}", v["key"]);
        per.entry(v["partition"].as_i64().unwrap())
            .or_default()
            .push((v["offset"].as_i64().unwrap(), v["model_version"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), n, "every record scored once");
    per.into_iter()
        .map(|(p, mut l)| {
            l.sort();
            let mut runs: Vec<String> = Vec::new();
            for (_, v) in l {
                if runs.last() != Some(&v) {
                    runs.push(v);
                }
            }
            (p, runs)
        })
        .collect()
}

#[test]
fn cron_scenario_on_kafka_the_service_follows_the_champion_only() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "cron", 2);
    write_params(&w.sb);
    let train = |params: &str| {
        let mut c = w.train(&["--params", params, "--promote-if-better", "champion", "--json"]);
        c.env("MODELCAST_ACTOR", "cron@host");
        c.output()
    };
    let r1 = train("params/weak.yaml").assert_exit_code(0).stdout_doc();
    let v1 = r1["version"].as_str().unwrap().to_string();
    let mut svc = w.serve(&["--alias", "champion"]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let records = wine_records(9_000);
    produce(&p, &w.topics.input, &records[..3_000]);
    let r2 = train("params/worse.yaml").assert_exit_code(4).stdout_doc();
    assert_eq!(r2["promotion"]["promoted"], false);
    assert_eq!(r2["promotion"]["current"]["version"], v1.as_str());
    produce(&p, &w.topics.input, &records[3_000..6_000]);
    // all of the first 6,000 scored by v1: the refused model was announced but never served
    let first = read_topic(&w.bootstrap, &w.topics.app, 6_000, PATIENCE);
    assert!(first.iter().all(|r| r.json()["model_version"] == v1.as_str()));
    let r3 = train("params/params.yaml").assert_exit_code(0).stdout_doc();
    let v3 = r3["version"].as_str().unwrap().to_string();
    svc.log().wait_event("model_swapped", PATIENCE);
    produce(&p, &w.topics.input, &records[6_000..]);
    wait_count(&w.bootstrap, &w.topics.app, 9_000, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "{log}");
    // what the service wrote in the end (it flushes on stop): version_runs finds any duplicate
    let preds = read_all(&w.bootstrap, &w.topics.app);
    for (part, runs) in version_runs(&preds, 9_000) {
        assert!(runs == vec![v1.clone(), v3.clone()] || runs == vec![v1.clone()], "partition {part}: {runs:?}");
    }
    let swaps = events(&log, "model_swapped");
    assert_eq!(swaps.len(), 1, "{log}");
    assert_eq!((swaps[0]["from"].as_str(), swaps[0]["to"].as_str()), (Some(v1.as_str()), Some(v3.as_str())));
    // history: two moves, by the cron actor, with the gate's reasons
    let h = history(wired(&w, &["history", "wine-quality", "--json"]));
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(h.iter().all(|m| m["actor"] == "cron@host" && m["applied"] == true));
    assert!(h[1]["reason"].as_str().unwrap().contains("improves on the current"), "{}", h[1]);
}

#[test]
fn rollback_under_load_two_replicas_follow_within_the_stream() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "rollback", 4);
    let v1 =
        w.train(&["--promote", "champion", "--json"]).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string();
    let v2 =
        w.train(&["--promote", "champion", "--json"]).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string();
    let mut a = w.serve(&["--alias", "champion"]);
    let mut b = w.serve(&["--alias", "champion"]);
    a.wait_ready(PATIENCE);
    b.wait_ready(PATIENCE);
    // load: records at about 20,000 a second (the rate e2e-bench measures the rollback at), the
    // rollback once 30,000 were handed to the producer, and the stream going on until both
    // replicas swapped and 10,000 more were offered: so the rollback lands mid-stream however
    // fast or slow this machine is (as fast as the producer goes, the first 60,000 records
    // could all be scored before the alias move was read)
    let pool = wine_records(400_000);
    let (half_tx, half_rx) = std::sync::mpsc::channel();
    let swapped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (bootstrap, topic, done) = (w.bootstrap.clone(), w.topics.input.clone(), swapped.clone());
    let offer = std::thread::spawn(move || {
        let p = producer(&bootstrap);
        let t = Instant::now();
        let (mut sent, mut after) = (0usize, 0usize);
        for (i, chunk) in pool.chunks(1_000).enumerate() {
            enqueue(&p, &topic, chunk);
            sent += chunk.len();
            if i == 29 {
                half_tx.send(()).unwrap();
            }
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                after += chunk.len();
                if after >= 10_000 {
                    break;
                }
            }
            // pacing the offer (1,000 records every 50 ms), not waiting for the broker
            if let Some(wait) = (std::time::Duration::from_millis(50) * (i as u32 + 1)).checked_sub(t.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        rdkafka::producer::Producer::flush(&p, PATIENCE).unwrap();
        (sent, after, sent as f64 / t.elapsed().as_secs_f64())
    });
    half_rx.recv().unwrap();
    wired(&w, &["rollback", "wine-quality", "--reason", "under load"]).assert_ok();
    a.log().wait_event("model_swapped", PATIENCE);
    b.log().wait_event("model_swapped", PATIENCE);
    swapped.store(true, std::sync::atomic::Ordering::SeqCst);
    let (n, after, rate) = offer.join().unwrap();
    // the rate is reported, not asserted (a timed test would be flaky on a loaded machine)
    eprintln!("offered {n} records at {rate:.0} a second; {after} after both replicas swapped");
    assert_eq!(after, 10_000, "the stream ran out before both replicas swapped ({n} records)");
    wait_count(&w.bootstrap, &w.topics.app, n, PATIENCE);
    let (sa, la) = a.stop();
    let (sb_, lb) = b.stop();
    assert!(sa.success() && sb_.success(), "{la}\n{lb}");
    let preds = read_all(&w.bootstrap, &w.topics.app);
    let runs = version_runs(&preds, n);
    assert!(runs.values().any(|r| r.contains(&v1)), "the older version served after the rollback: {runs:?}");
    for (part, r) in runs {
        assert!(
            r == vec![v2.clone(), v1.clone()] || r == vec![v2.clone()] || r == vec![v1.clone()],
            "partition {part}: {r:?}"
        );
    }
    for log in [&la, &lb] {
        let swaps = events(log, "model_swapped");
        assert_eq!(swaps.len(), 1, "{log}");
        assert_eq!((swaps[0]["from"].as_str(), swaps[0]["to"].as_str()), (Some(v2.as_str()), Some(v1.as_str())));
    }
}

#[test]
fn shadow_on_kafka_one_prediction_each_and_a_refused_challenger_never_touches_the_champion() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "shadow", 2);
    write_params(&w.sb);
    let v1 =
        w.train(&["--promote", "champion", "--json"]).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string();
    let v2 = w.train(&["--params", "params/worse.yaml", "--promote", "challenger", "--json"]).assert_ok().stdout_doc()
        ["version"]
        .as_str()
        .unwrap()
        .to_string();
    let mut svc = w.serve(&["--alias", "champion", "--shadow", "challenger"]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let records = wine_records(6_000);
    produce(&p, &w.topics.input, &records[..3_000]);
    let app = read_topic(&w.bootstrap, &w.topics.app, 3_000, PATIENCE);
    let shadow = read_topic(&w.bootstrap, &w.topics.shadow, 3_000, PATIENCE);
    let keys = |recs: &[crate::util::kafka::Rec], version: &str| -> BTreeSet<String> {
        recs.iter()
            .map(|r| {
                let v = r.json();
                assert_eq!(v["model_version"], version);
                assert_eq!(r.key.as_deref(), v["key"].as_str());
                v["key"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let app_keys = keys(&app, &v1);
    assert_eq!(app_keys.len(), 3_000);
    assert_eq!(keys(&shadow, &v2), app_keys, "one shadow prediction per input, same key");
    // the challenger alias moves to a version whose artifact does not match (a tampered object):
    // refused; the champion's stream goes on untouched and the old challenger keeps shadowing
    let h = history(wired(&w, &["history", "wine-quality", "--alias", "challenger", "--json"]));
    let mut bad = h[0].clone();
    let o = bad.as_object_mut().unwrap();
    o.remove("applied");
    o.insert("id".into(), "tampered".into());
    o.insert("version".into(), v1.clone().into());
    o.insert("previous_version".into(), v2.clone().into());
    o.insert("sha256".into(), "0".repeat(64).into());
    produce(&p, &w.topics.train, &[("wine-quality".to_string(), bad.to_string().into_bytes())]);
    let refused = svc.log().wait_event("model_refused", PATIENCE);
    assert!(refused["reason"].as_str().unwrap().contains("shadow"), "{refused}");
    produce(&p, &w.topics.input, &records[3_000..]);
    wait_count(&w.bootstrap, &w.topics.app, 6_000, PATIENCE);
    wait_count(&w.bootstrap, &w.topics.shadow, 6_000, PATIENCE);
    let m = svc.wait_metrics(&["modelcast_shadow_scored_total 6000"], PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "{log}");
    // what the service wrote in the end (it flushes on stop): one record per input on each topic
    let (app, shadow) = (read_all(&w.bootstrap, &w.topics.app), read_all(&w.bootstrap, &w.topics.shadow));
    assert_eq!((app.len(), shadow.len()), (6_000, 6_000), "one prediction and one shadow prediction each");
    assert_eq!(keys(&app, &v1).len(), 6_000);
    assert_eq!(keys(&shadow, &v2), keys(&app, &v1), "the same keys");
    assert!(m.contains("modelcast_shadow_scored_total 6000"), "{m}");
    assert!(m.contains("modelcast_shadow_abs_diff_count 6000"), "{m}");
    assert!(events(&log, "model_swapped").is_empty(), "the champion never changed: {log}");
}

#[test]
fn concurrent_promotions_on_kafka_end_in_one_state_every_reader_agrees_on() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "race", 1);
    let mut versions = Vec::new();
    for _ in 0..3 {
        versions.push(w.train(&["--json"]).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string());
    }
    // three promotions from the unset alias, each held at its GET of the artifact (after it read
    // the train topic, before it publishes its move) until all three are there
    let mut proxy = HoldingProxy::start(&bed.garage.endpoint, is_artifact_get);
    let racers = versions
        .iter()
        .map(|v| {
            let mut c = wired(&w, &["promote", "wine-quality", v]);
            c.env("AWS_ENDPOINT_URL", &proxy.url);
            c
        })
        .collect();
    let (runs, together) = race(racers, &mut proxy, PATIENCE);
    drop(proxy);
    let outcomes = one_wins_the_rest_exit_5(&versions, &runs, together, None);
    agree_on_one_state(&outcomes, || history(wired(&w, &["history", "wine-quality", "--json"])));
}

/// `modelcast ARGS --store STORE` in `sb`, reaching `server` through the standard AWS variables.
fn on_s3(sb: &Sandbox, server: &S3Server, store: &str, args: &[&str]) -> TestCommand {
    let mut c = sb.command(args);
    c.args(["--store", store]);
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.as_str()),
        ("AWS_REGION", server.region.as_str()),
        ("AWS_ENDPOINT_URL", server.endpoint.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        c.env(k, v);
    }
    c.env_remove("AWS_PROFILE");
    c
}

#[test]
fn an_s3_store_without_kafka_shares_its_aliases_between_machines() {
    let Some(bed) = bed() else { return };
    let Some(server) = bed.s3s_fs() else { return };
    let store = format!("s3://{}/{}", server.bucket, unique("aliases"));
    // two "machines": two directories (two local buses) sharing one bucket
    let (ci, cron) = (Sandbox::new(), Sandbox::new());
    // s3s-fs honours If-None-Match one request at a time, but cannot be trusted with concurrent
    // writers: without the operator's word it is refused, saying what to do
    let e = on_s3(&ci, server, &store, &["train", "--promote", "champion"]).assert_exit_code(2).stderr();
    assert!(e.contains("--s3-atomic-writes") && e.contains("--kafka-config"), "{e}");
    // with it (as for MinIO), aliases live in the bucket; no concurrent moves here, since
    // s3s-fs's conditional writes are not in fact atomic
    let cmd = |sb: &Sandbox, args: &[&str]| {
        let mut c = on_s3(sb, server, &store, args);
        c.env("MODELCAST_S3_ATOMIC_WRITES", "true");
        c
    };
    let v1 = cmd(&ci, &["train", "--promote", "champion", "--json"]).assert_ok().stdout_doc()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let v2 = cmd(&ci, &["train", "--json"]).assert_ok().stdout_doc()["version"].as_str().unwrap().to_string();
    // the cron host never saw the announcements, but sees the alias
    let preds = cmd(&cron, &["predict", "--input", "data/winequality-red.csv", "--alias", "champion"]).assert_ok();
    assert_eq!(versions_of(&preds.stdout_json()), BTreeSet::from([v1.clone()]));
    // a promotion from the cron host (pinning the stored object's sha256) is visible to the CI host
    cmd(&cron, &["promote", "wine-quality", &v2, "--reason", "from cron"]).assert_ok();
    let h = history(cmd(&ci, &["history", "wine-quality", "--json"]));
    assert_eq!(h.len(), 2);
    assert_eq!((h[1]["version"].as_str(), h[1]["reason"].as_str()), (Some(v2.as_str()), Some("from cron")));
    let preds = cmd(&ci, &["predict", "--input", "data/winequality-red.csv", "--alias", "champion"]).assert_ok();
    assert_eq!(versions_of(&preds.stdout_json()), BTreeSet::from([v2.clone()]));
    cmd(&ci, &["rollback", "wine-quality"]).assert_ok();
    let preds = cmd(&cron, &["predict", "--input", "data/winequality-red.csv", "--alias", "champion"]).assert_ok();
    assert_eq!(versions_of(&preds.stdout_json()), BTreeSet::from([v1]));
}

#[test]
fn an_s3_server_without_atomic_conditional_writes_refuses_aliases_without_kafka() {
    let Some(bed) = bed() else { return };
    // garage 2.5 ignores If-None-Match: two machines could overwrite each other's move
    let store = format!("s3://{}/{}", bed.garage.bucket, unique("noalias"));
    let sb = Sandbox::new();
    let e = on_s3(&sb, &bed.garage, &store, &["train", "--promote", "champion"]).assert_exit_code(2).stderr();
    assert!(e.contains("ignores conditional writes") && e.contains("--kafka-config"), "{e}");
    assert!(sb.artifacts("wine-quality").is_empty() && sb.log_lines("train").is_empty(), "refused before training");
    let v = on_s3(&sb, &bed.garage, &store, &["train", "--json"]).assert_ok().stdout_doc()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let e = on_s3(&sb, &bed.garage, &store, &["promote", "wine-quality", &v]).assert_exit_code(2).stderr();
    assert!(e.contains("ignores conditional writes"), "{e}");
    // reading works: no aliases, and serving by alias says how to set one
    assert!(history(on_s3(&sb, &bed.garage, &store, &["history", "wine-quality", "--json"])).is_empty());
    let e = on_s3(&sb, &bed.garage, &store, &["predict", "--input", "data/winequality-red.csv", "--alias", "champion"])
        .assert_exit_code(1)
        .stderr();
    assert!(e.contains("is not set"), "{e}");
}

#[test]
fn promote_on_kafka_refuses_a_missing_or_tampered_version_and_publishes_nothing() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "promote", 1);
    let r = w.train(&["--json"]).assert_ok().stdout_doc();
    let v = r["version"].as_str().unwrap().to_string();
    let e = wired(&w, &["promote", "wine-quality", "20200101T000000000Z-deadbeef"]).assert_exit_code(1).stderr();
    assert!(e.contains("is not in") && e.contains("nothing was published"), "{e}");
    // a later announcement of the same version with another sha256: the stored object no longer
    // matches what was announced (a tampered or replaced object)
    let mut forged = read_topic(&w.bootstrap, &w.topics.train, 1, PATIENCE)[0].json();
    forged["sha256"] = "0".repeat(64).into();
    produce(&producer(&w.bootstrap), &w.topics.train, &[("wine-quality".into(), forged.to_string().into_bytes())]);
    let e = wired(&w, &["promote", "wine-quality", &v]).assert_exit_code(1).stderr();
    assert!(e.contains("sha256 mismatch") && e.contains("nothing was published"), "{e}");
    assert_eq!(crate::util::kafka::count(&w.bootstrap, &w.topics.train), 2, "no alias move was published");
    assert!(history(wired(&w, &["history", "wine-quality", "--json"])).is_empty());
}

#[test]
fn follow_mode_swaps_when_the_alias_moves_back() {
    use std::io::{BufRead, BufReader, Write};
    let sb = Sandbox::new();
    let v1 = sb.command(&["train", "--promote", "champion", "--json"]).assert_ok().stdout_doc()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let v2 = sb.command(&["train", "--promote", "champion", "--json"]).assert_ok().stdout_doc()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = sb.command(&["predict", "--input", "-", "--follow", "--format", "jsonl", "--alias", "champion"]);
    c.cmd()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let record = crate::util::fixtures::wine_json(10.0, Some("r"));
    let mut next_version = |stdin: &mut std::process::ChildStdin| {
        writeln!(stdin, "{record}").unwrap();
        stdin.flush().unwrap();
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        v["model_version"].as_str().unwrap().to_string()
    };
    assert_eq!(next_version(&mut stdin), v2);
    sb.command(&["rollback", "wine-quality"]).assert_ok();
    // the follower looks at the log every 100 ms: records keep flowing until the older one serves
    wait_for("the follower serving the rolled-back version", PATIENCE, || {
        let got = next_version(&mut stdin);
        if got == v1 {
            Ok(())
        } else {
            std::thread::sleep(std::time::Duration::from_millis(50));
            Err(got)
        }
    });
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

// ---- the alias log contract: one body, every backend ----

/// The contract every alias log keeps: what one writer appends every reader folds the same way;
/// a move from a stale state does not apply; of concurrent moves from one state exactly one
/// applies, and each writer learns its own fate (applied, not applied, or a conflict error).
async fn alias_log_contract(log: &AliasLog<'_>, other_reader: &AliasLog<'_>) {
    assert!(log.book().await.unwrap().is_empty());
    let (e, _) = log.append(alias_move("a", "v1", None)).await.unwrap();
    assert!(e.applied);
    assert_eq!(other_reader.book().await.unwrap().current("m", "champion").unwrap().version, "v1");
    let (stale, _) = log.append(alias_move("stale", "v9", None)).await.unwrap();
    assert!(!stale.applied && stale.conflict.is_some(), "{stale:?}");
    // four writers at once, all from the state champion = v1
    let results =
        join_all((0..4).map(|i| log.append(alias_move(&format!("race{i}"), &format!("r{i}"), Some("v1"))))).await;
    let book = other_reader.book().await.unwrap();
    let applied: Vec<usize> = (0..4).filter(|i| book.find(&format!("race{i}")).is_some_and(|e| e.applied)).collect();
    assert_eq!(applied.len(), 1, "exactly one of the concurrent moves applies: {results:?}");
    for (i, r) in results.iter().enumerate() {
        let in_log = book.find(&format!("race{i}"));
        match r {
            Ok((e, _)) => {
                assert_eq!(Some(e.applied), in_log.map(|x| x.applied), "writer {i} was told what the log says")
            }
            Err(modelcast::error::Error::Conflict(_)) => assert!(in_log.is_none_or(|x| !x.applied)),
            Err(e) => panic!("writer {i}: {e}"),
        }
    }
    assert_eq!(book.current("m", "champion").unwrap().version, format!("r{}", applied[0]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_train_log_keeps_the_alias_log_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Bus::local(dir.path()), Bus::local(dir.path()));
    alias_log_contract(&AliasLog::Bus(&a), &AliasLog::Bus(&b)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn store_objects_keep_the_alias_log_contract() {
    // the log an S3 store without Kafka keeps, on a store whose create-if-absent is atomic
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let (a, b) =
        (Store::open(&url, &Default::default()).await.unwrap(), Store::open(&url, &Default::default()).await.unwrap());
    alias_log_contract(&AliasLog::Store(&a), &AliasLog::Store(&b)).await;
    assert!(a.list_internal("_aliases/m/").await.unwrap().iter().all(|k| k.ends_with(".json")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kafka_train_topic_keeps_the_alias_log_contract() {
    let Some(bed) = bed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = bed.kafka_config(dir.path(), &unique("aliaslog"));
    let (a, b) = (Bus::kafka(cfg.clone()).unwrap(), Bus::kafka(cfg).unwrap());
    a.as_kafka().unwrap().create_topics(None).await.unwrap();
    alias_log_contract(&AliasLog::Bus(&a), &AliasLog::Bus(&b)).await;
}

/// The issue's scenario, as a user met it: champion = ridge on 9 of the 11 wine columns, then a
/// scheduled `train --promote-if-better champion` of a model on all 11. The gate promotes it
/// (better RMSE on the same raw rows), the move records the schema change (`history` says so),
/// and the replicas following `--alias champion` take it and serve it; a replica following the
/// newest announcement stays strict and refuses it (`model_refused`), serving the old version.
/// A classifier is never promoted onto the regressor's alias, by the gate or by hand (exit 4).
#[test]
fn an_alias_move_that_changes_the_input_schema_is_recorded_and_followed() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "schema", 3);
    let full = std::fs::read_to_string(w.sb.path().join("params/params.yaml")).unwrap();
    let nine: String = full
        .lines()
        .filter(|l| !["- sulphates", "- chlorides"].contains(&l.trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(nine, full, "params.yaml changed; adjust the nine-column variant");
    w.sb.write("params/nine.yaml", &nine);
    let v1 = w.train(&["--params", "params/nine.yaml", "--promote", "champion", "--json"]).assert_ok().stdout_doc()
        ["version"]
        .as_str()
        .unwrap()
        .to_string();
    let mut a = w.serve(&["--alias", "champion"]);
    let mut b = w.serve(&["--alias", "champion"]);
    // a third replica of the same group follows the newest announcement (no --alias)
    let mut newest = w.serve(&[]);
    a.wait_ready(PATIENCE);
    b.wait_ready(PATIENCE);
    newest.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let n = 4_000;
    let records = wine_records(n); // all 11 columns
    produce(&p, &w.topics.input, &records[..n / 2]);
    let r = w.train(&["--promote-if-better", "champion", "--json"]).assert_ok().stdout_doc();
    let v2 = r["version"].as_str().unwrap().to_string();
    assert_eq!(r["promotion"]["promoted"], true, "{r}");
    for replica in [&mut a, &mut b] {
        let swap = replica.log().wait_event("model_swapped", PATIENCE);
        assert_eq!((swap["from"].as_str(), swap["to"].as_str()), (Some(v1.as_str()), Some(v2.as_str())));
    }
    produce(&p, &w.topics.input, &records[n / 2..]);
    let h = wired(&w, &["history", "wine-quality", "--json"]).assert_ok().stdout_json();
    let last = h.last().unwrap();
    assert_eq!(last["version"], v2.as_str());
    assert!(last["previous_input_schema_digest"].is_string(), "the move records the schema change: {last}");
    assert_ne!(last["previous_input_schema_digest"], last["input_schema_digest"]);
    let text = wired(&w, &["history", "wine-quality"]).assert_ok().stdout();
    assert!(text.contains("[input schema changed]"), "{text}");
    // a classifier cannot take the regressor's alias: by hand, exit 4, nothing published
    let good = std::fs::read_to_string(w.sb.path().join("params/wine-good.yaml")).unwrap();
    w.sb.write("params/good.yaml", &good.replace("name: wine-good", "name: wine-quality"));
    let r = w.train(&["--params", "params/good.yaml", "--promote-if-better", "champion", "--json"]).assert_exit_code(4);
    let reason = r.stdout_doc()["promotion"]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("classifier"), "{reason}");
    let models = w.command(&["models", "wine-quality", "--store", &w.store, "--json"]).assert_ok().stdout_doc();
    let v3 = models.as_array().unwrap().iter().find(|m| m["kind"] == "logistic_regression").unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let out = wired(&w, &["promote", "wine-quality", &v3]).assert_exit_code(4);
    assert!(out.stdout().contains("one alias serves one kind"), "{}", out.stdout());
    assert_eq!(wired(&w, &["history", "wine-quality", "--json"]).assert_ok().stdout_json().len(), h.len());
    wait_count(&w.bootstrap, &w.topics.app, n, PATIENCE);
    let (sa, la) = a.stop();
    let (sb_, lb) = b.stop();
    let (sn, ln) = newest.stop();
    assert!(sa.success() && sb_.success() && sn.success(), "{la}\n{lb}\n{ln}");
    for log in [&la, &lb] {
        assert!(events(log, "model_refused").is_empty(), "{log}");
    }
    // the replica on the newest announcement: the 11-column model refused, the old one kept
    let refused = events(&ln, "model_refused");
    assert!(refused.iter().any(|e| e["version"] == v2.as_str()), "{ln}");
    let preds = read_all(&w.bootstrap, &w.topics.app);
    assert!(preds.iter().any(|p| p.json()["model_version"] == v2.as_str()), "the alias replicas served v2");
}
