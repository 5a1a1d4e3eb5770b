//! The CLI on the embedded default (local store, local logs): no services.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn fresh_clone_train_then_predict() {
    let sb = Sandbox::new();
    let out = sb.run(&["train"]);
    assert_ok(&out);
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(uri.starts_with("file://models/wine-quality/") && uri.ends_with(".json"), "{uri}");
    let err = stderr(&out);
    assert!(err.contains("R²") && err.contains("baseline"), "metrics table on stderr: {err}");
    let arts = sb.artifacts("wine-quality");
    assert_eq!(arts.len(), 1);
    let art: serde_json::Value = serde_json::from_slice(&std::fs::read(&arts[0]).unwrap()).unwrap();
    assert_eq!(art["schema_version"], 1);
    assert_eq!(art["training_data"]["files"][0]["rows"], 1599);
    let r2 = art["metrics"]["model"]["r2"].as_f64().unwrap();
    let base = art["metrics"]["baseline"]["r2"].as_f64().unwrap();
    assert!(r2 > 0.25 && r2 > base + 0.2, "model r2 {r2} vs baseline {base}");
    let ann = sb.log_lines("train");
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0]["uri"].as_str().unwrap(), uri);
    let sha = sha256_file(&arts[0]);
    assert_eq!(ann[0]["sha256"].as_str().unwrap(), sha);

    let out = sb.run(&["predict", "--input", "data/winequality-red.csv"]);
    assert_ok(&out);
    let preds = stdout_json(&out);
    assert_eq!(preds.len(), 1599);
    assert_eq!(preds[0]["key"], "2", "row key is the CSV line number");
    let version = ann[0]["version"].as_str().unwrap();
    for p in &preds {
        assert_eq!(p["model_version"], version);
        assert_eq!(p["model_name"], "wine-quality");
        let y = p["prediction"].as_f64().unwrap();
        assert!((3.0..=8.5).contains(&y), "{y}");
    }
}

fn sha256_file(p: &std::path::Path) -> String {
    modelcast::artifact::sha256_hex(&std::fs::read(p).unwrap())
}

#[test]
fn train_json_report_and_overrides() {
    let sb = Sandbox::new();
    let out = sb.run(&["train", "--json", "--name", "other", "--store", "file://store2"]);
    assert_ok(&out);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["model_name"], "other");
    assert!(r["uri"].as_str().unwrap().starts_with("file://store2/other/"));
    for k in ["r2", "rmse", "mae"] {
        assert!(r["metrics"]["model"][k].is_number() && r["metrics"]["baseline"][k].is_number());
    }
    assert_eq!(r["train_rows"].as_u64().unwrap() + r["test_rows"].as_u64().unwrap(), 1599);
}

#[test]
fn two_trains_two_artifacts_and_follow_hot_swaps_with_each_record_scored_once() {
    let sb = Sandbox::new();
    assert_ok(&sb.run(&["train"]));
    let mut child = sb
        .cmd(&["predict", "--input", "-", "--follow", "--format", "jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let record = |i: usize| {
        format!(
            "{{\"key\":\"r{i}\",\"fixed acidity\":7.4,\"volatile acidity\":0.7,\"citric acid\":0,\"residual sugar\":1.9,\
             \"chlorides\":0.076,\"free sulfur dioxide\":11,\"total sulfur dioxide\":34,\"density\":0.9978,\"pH\":3.51,\
             \"sulphates\":0.56,\"alcohol\":{}}}\n",
            9.0 + (i % 40) as f64 * 0.1
        )
    };
    let mut got = Vec::new();
    let mut sent = 0;
    for _ in 0..50 {
        stdin.write_all(record(sent).as_bytes()).unwrap();
        sent += 1;
    }
    stdin.flush().unwrap();
    while got.len() < 50 {
        got.push(rx.recv_timeout(Duration::from_secs(30)).expect("predictions from the first model"));
    }
    let first_version = got[0]["model_version"].as_str().unwrap().to_string();
    // A second training while records keep flowing.
    let trainer = sb.cmd(&["train"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut trainer = Some(trainer);
    loop {
        for _ in 0..5 {
            stdin.write_all(record(sent).as_bytes()).unwrap();
            sent += 1;
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(v) = rx.try_recv() {
            got.push(v);
        }
        if let Some(t) = trainer.as_mut() {
            if let Some(status) = t.try_wait().unwrap() {
                assert!(status.success());
                trainer = None;
            }
        }
        let switched = got.iter().any(|p| p["model_version"] != first_version.as_str());
        if switched && trainer.is_none() && sent > 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no switch to the new model; got {} predictions", got.len());
    }
    drop(stdin); // EOF ends the follow run on stdin
    let status = child.wait().unwrap();
    reader.join().unwrap();
    while let Ok(v) = rx.try_recv() {
        got.push(v);
    }
    assert!(status.success(), "{status:?}");
    assert_eq!(sb.artifacts("wine-quality").len(), 2, "two trainings, two artifacts");
    let anns = sb.log_lines("train");
    assert_eq!(anns.len(), 2);
    let second_version = anns[1]["version"].as_str().unwrap();
    // exactly one prediction per record, in order, one switch from the first to the second model
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for p in &got {
        *count.entry(p["key"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(count.len(), sent, "every record predicted");
    assert!(count.values().all(|&c| c == 1), "no record predicted twice");
    let versions: Vec<&str> = got.iter().map(|p| p["model_version"].as_str().unwrap()).collect();
    let switch = versions.iter().position(|v| *v == second_version).expect("new model used");
    assert!(versions[..switch].iter().all(|v| *v == first_version));
    assert!(versions[switch..].iter().all(|v| *v == second_version), "no switching back");
    assert!(stderr_contains_swap(&mut child));
}

fn stderr_contains_swap(child: &mut std::process::Child) -> bool {
    let mut s = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut s).unwrap();
    s.contains("hot-swapped model")
}

#[test]
fn bad_records_are_dead_lettered_and_the_rest_predicted() {
    let sb = Sandbox::new();
    assert_ok(&sb.run(&["train"]));
    let header = "fixed acidity,volatile acidity,citric acid,residual sugar,chlorides,free sulfur dioxide,\
                  total sulfur dioxide,density,pH,sulphates,alcohol,quality";
    let good = "7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5";
    let csv = format!(
        "{header}\n{good}\n7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,abc,5\n7.4,0.7,0\n\
         7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,inf,5\n7.4,NA,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5\n{good}\n"
    );
    sb.write("in.csv", &csv);
    let out = sb.run(&["predict", "--input", "in.csv"]);
    assert_eq!(out.status.code(), Some(3), "exit 3 when records were rejected: {}", stderr(&out));
    let preds = stdout_json(&out);
    let keys: Vec<&str> = preds.iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["2", "6", "7"], "good rows and the imputed NA row are predicted");
    let dead = sb.log_lines("dead_letter");
    assert_eq!(dead.len(), 3);
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(reasons[0].contains("\"alcohol\"") && reasons[0].contains("not a number"), "{reasons:?}");
    assert!(reasons[1].contains("malformed CSV row"), "{reasons:?}");
    assert!(reasons[2].contains("finite"), "{reasons:?}");
    assert_eq!(dead[0]["line"], 3);

    // JSON lines: malformed, wrong type, non-UTF-8, NaN-free good record
    let mut jsonl = Vec::new();
    jsonl.extend_from_slice(
        b"{\"alcohol\": 10, \"key\": \"a\"}\n{\"alcohol\": \n{\"alcohol\": true}\n\xff\xfe\n[1,2]\n",
    );
    std::fs::write(sb.path().join("in.jsonl"), &jsonl).unwrap();
    let out = sb.run(&["predict", "--input", "in.jsonl"]);
    assert_eq!(out.status.code(), Some(3));
    let preds = stdout_json(&out);
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0]["key"], "a");
    let dead = sb.log_lines("dead_letter");
    assert_eq!(dead.len(), 3 + 4);
    assert!(dead[4]["reason"].as_str().unwrap().contains("boolean"), "{}", dead[4]);
}

#[test]
fn a_ten_megabyte_record_is_dead_lettered_and_the_next_one_scored() {
    // (On Kafka, records over modelcast.max_record_bytes are dead-lettered unread; tansu cannot
    // serve a 10 MB record at all, see docs/RELIABILITY.md. Here the decoder meets it whole.)
    let sb = Sandbox::new();
    assert_ok(&sb.run(&["train"]));
    let big = format!("{{\"key\": \"big\", \"alcohol\": \"{}\"}}", "9".repeat(10 << 20));
    sb.write("in.jsonl", &format!("{big}\n{{\"key\": \"after\", \"alcohol\": 10}}\n"));
    let out = sb.run(&["predict", "--input", "in.jsonl"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let preds = stdout_json(&out);
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0]["key"], "after");
    let dead = sb.log_lines("dead_letter");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["key"], "big");
    assert!(dead[0]["reason"].as_str().unwrap().contains("\"alcohol\""), "{}", dead[0]["reason"]);
    assert_eq!(dead[0]["record"].as_str().map(str::len), Some(big.len()), "the original bytes are kept");
}

#[test]
fn categorical_model_handles_unseen_categories_and_missing_values() {
    let sb = Sandbox::new();
    std::fs::copy(repo().join("tests/fixtures/mixed.csv"), sb.path().join("data/mixed.csv")).unwrap();
    sb.write(
        "params/mixed.yaml",
        "name: mixed\ndata: {train: data/mixed.csv}\ntarget: y\n\
         features: {numeric: [x1, x2, x3], categorical: [color, size]}\nmodel: {kind: ridge, alpha: 0.5}\n",
    );
    assert_ok(&sb.run(&["train", "--params", "params/mixed.yaml"]));
    sb.write(
        "in.jsonl",
        "{\"x1\": 1.5, \"x3\": -0.3, \"color\": \"purple\", \"size\": \"M\"}\n\
         {\"x1\": 1.5, \"x2\": null, \"x3\": -0.3, \"color\": \"red\", \"size\": \"M\", \"unused\": [1]}\n",
    );
    let out = sb.run(&["predict", "--input", "in.jsonl", "--model-name", "mixed"]);
    assert_ok(&out);
    let preds = stdout_json(&out);
    assert_eq!(preds.len(), 2);
    assert_ne!(preds[0]["prediction"], preds[1]["prediction"], "unseen vs known category differ");
}

#[test]
fn config_errors_name_file_and_key_and_exit_2() {
    let sb = Sandbox::new();
    sb.write(
        "params/bad.yaml",
        "name: m\ndata: {train: data/winequality-red.csv}\ntarget: quality\n\
         features: {numeric: [alcohol], text: [x]}\nmodel: {kind: linear}\n",
    );
    let out = sb.run(&["train", "--params", "params/bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("params/bad.yaml") && e.contains("features") && e.contains("text"), "{e}");

    sb.write(
        "params/bad2.yaml",
        "name: m\ndata: {train: data/winequality-red.csv}\ntarget: quality\n\
         features: {numeric: [alcohol]}\nmodel: {kind: lasso, alpha: 0}\n",
    );
    let out = sb.run(&["train", "--params", "params/bad2.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("model.alpha"), "{}", stderr(&out));

    let out = sb.run(&["train", "--params", "params/nope.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.yaml") && stderr(&out).contains("not found"));

    let out = sb.run(&["train", "--store", "ftp://x"]);
    assert_eq!(out.status.code(), Some(2));

    let out = sb.run(&["predict"]);
    assert_eq!(out.status.code(), Some(2), "missing --input is a usage error");

    sb.write("k.yaml", "bootstrap.servers: 127.0.0.1:9\n");
    let out = sb.run(&["predict", "--serve", "--kafka-config", "k.yaml", "--instance-id", "replica 0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--instance-id") && stderr(&out).contains("pod name"), "{}", stderr(&out));
    let out = sb.run(&["predict", "--input", "x.csv", "--instance-id", "replica-0"]);
    assert_eq!(out.status.code(), Some(2), "--instance-id needs --serve: {}", stderr(&out));
}

#[test]
fn malformed_training_csv_names_the_line() {
    let sb = Sandbox::new();
    let mut text = std::fs::read_to_string(sb.path().join("data/winequality-red.csv")).unwrap();
    text.push_str("7.4,0.7,oops,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5\n");
    sb.write("data/winequality-red.csv", &text);
    let out = sb.run(&["train"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("winequality-red.csv:1601") && e.contains("citric acid"), "{e}");
    assert!(sb.log_lines("train").is_empty(), "nothing announced");
    assert!(sb.artifacts("wine-quality").is_empty(), "nothing stored");
}

#[test]
fn tampered_or_unknown_artifacts_are_refused() {
    let sb = Sandbox::new();
    assert_ok(&sb.run(&["train"]));
    assert_ok(&sb.run(&["train"]));
    let arts = sb.artifacts("wine-quality");
    let anns = sb.log_lines("train");
    let old_version = anns[0]["version"].as_str().unwrap().to_string();
    // Tamper with the newest artifact: predict refuses it and falls back to the older one.
    let newest = arts.iter().find(|p| p.to_string_lossy().contains(anns[1]["version"].as_str().unwrap())).unwrap();
    let text = std::fs::read_to_string(newest).unwrap().replacen("\"intercept\": ", "\"intercept\": 1", 1);
    std::fs::write(newest, text).unwrap();
    let out = sb.run(&["predict", "--input", "data/winequality-red.csv"]);
    assert_ok(&out);
    let e = stderr(&out);
    assert!(e.contains("sha256 mismatch"), "{e}");
    assert!(stdout_json(&out).iter().all(|p| p["model_version"] == old_version.as_str()));
    // Pinning the tampered version is an error, not a silent fallback.
    let out =
        sb.run(&["predict", "--input", "data/winequality-red.csv", "--model", anns[1]["version"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("sha256 mismatch"));
    // Unknown schema_version.
    let older = arts.iter().find(|p| p.to_string_lossy().contains(&old_version)).unwrap();
    let text = std::fs::read_to_string(older).unwrap().replacen("\"schema_version\": 1", "\"schema_version\": 99", 1);
    std::fs::write(older, &text).unwrap();
    let out = sb.run(&["predict", "--input", "data/winequality-red.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("sha256 mismatch"), "{e}");
    // Announced sha256 matching the (future-format) artifact: refused for its schema_version.
    let mut ann = anns[0].clone();
    ann["sha256"] = modelcast::artifact::sha256_hex(text.as_bytes()).into();
    let mut log = std::fs::OpenOptions::new().append(true).open(sb.path().join("models/_bus/train.jsonl")).unwrap();
    writeln!(log, "{ann}").unwrap();
    let out = sb.run(&["predict", "--input", "data/winequality-red.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unsupported schema_version 99"), "{}", stderr(&out));
}

#[test]
fn follow_refuses_a_bad_model_and_keeps_serving() {
    let sb = Sandbox::new();
    assert_ok(&sb.run(&["train"]));
    let mut child = sb
        .cmd(&["predict", "--input", "-", "--follow", "--format", "jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"alcohol\": 10, \"key\": \"a\"}\n").unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap(); // the model is loaded and serving
                                           // announce garbage, then a model with a wrong sha256
    let mut ann = sb.log_lines("train")[0].clone();
    ann["version"] = "20990101T000000000Z-deadbeef".into();
    ann["sha256"] = "0".repeat(64).into();
    let mut log = std::fs::OpenOptions::new().append(true).open(sb.path().join("models/_bus/train.jsonl")).unwrap();
    writeln!(log, "not json at all").unwrap();
    writeln!(log, "{ann}").unwrap();
    drop(log);
    std::thread::sleep(Duration::from_millis(600));
    stdin.write_all(b"{\"alcohol\": 11, \"key\": \"b\"}\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    let preds: Vec<serde_json::Value> =
        format!("{first}{rest}").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0]["model_version"], preds[1]["model_version"], "still the first model");
    let e = stderr(&out);
    assert!(e.contains("refused announcement") && e.contains("refused model"), "{e}");
}

#[test]
fn help_shows_examples() {
    let sb = Sandbox::new();
    for args in [&["--help"][..], &["train", "--help"], &["predict", "--help"]] {
        let out = sb.run(args);
        assert_ok(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"), "{args:?}");
    }
}

#[test]
fn concurrent_trainers_never_overwrite_each_other() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..4).map(|_| sb.cmd(&["train", "-q"]).stdout(Stdio::piped()).spawn().unwrap()).collect();
    let uris: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert_ok(&out);
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    let arts = sb.artifacts("wine-quality");
    assert_eq!(arts.len(), 4, "four trainings, four artifacts: {uris:?}");
    let anns = sb.log_lines("train");
    assert_eq!(anns.len(), 4);
    for a in &anns {
        let key = a["key"].as_str().unwrap();
        let bytes = std::fs::read(sb.path().join("models").join(key)).unwrap();
        assert_eq!(
            modelcast::artifact::sha256_hex(&bytes),
            a["sha256"].as_str().unwrap(),
            "announcement matches its artifact"
        );
    }
}
