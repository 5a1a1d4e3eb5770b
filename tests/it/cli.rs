//! The CLI on the embedded default (local store, local logs): no services.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::fixtures::{wine_json, WINE_CSV_HEADER, WINE_CSV_ROW};
use crate::util::logs::{events, Log};
use crate::util::*;

#[test]
fn fresh_clone_train_then_predict() {
    let sb = Sandbox::new();
    let out = sb.command(&["train"]).assert_ok();
    let uri = out.stdout().trim().to_string();
    assert!(uri.starts_with("file://models/wine-quality/") && uri.ends_with(".json"), "{uri}");
    let err = out.stderr();
    assert!(err.contains("R²") && err.contains("baseline"), "metrics table on stderr: {err}");
    let arts = sb.artifacts("wine-quality");
    assert_eq!(arts.len(), 1);
    let art: serde_json::Value = serde_json::from_slice(&std::fs::read(&arts[0]).unwrap()).unwrap();
    assert_eq!(art["schema_version"], 4);
    assert_eq!(art["training_data"]["files"][0]["rows"], 1599);
    // the drift reference: every input column and the predictions
    assert_eq!(art["drift"]["columns"].as_array().unwrap().len(), 11);
    assert_eq!(art["drift"]["columns"][10]["name"], "alcohol");
    assert_eq!(art["drift"]["columns"][10]["kind"], "numeric");
    assert_eq!(art["drift"]["prediction"]["proportions"].as_array().unwrap().len(), 10);
    let r2 = art["metrics"]["model"]["r2"].as_f64().unwrap();
    let base = art["metrics"]["baseline"]["r2"].as_f64().unwrap();
    assert!(r2 > 0.25 && r2 > base + 0.2, "model r2 {r2} vs baseline {base}");
    let ann = sb.log_lines("train");
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0]["uri"].as_str().unwrap(), uri);
    let sha = sha256_file(&arts[0]);
    assert_eq!(ann[0]["sha256"].as_str().unwrap(), sha);

    let preds = sb.command(&["predict", "--input", "data/winequality-red.csv"]).assert_ok().stdout_json();
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
    modelcast::util::hash::sha256_hex(&std::fs::read(p).unwrap())
}

#[test]
fn train_json_report_and_overrides() {
    let sb = Sandbox::new();
    let r = sb.command(&["train", "--json", "--name", "other", "--store", "file://store2"]).assert_ok().stdout_doc();
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
    sb.command(&["train"]).assert_ok();
    let mut child = follow(&sb);
    let log = Log::collect(&mut child);
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
    let record = |i: usize| format!("{}\n", wine_json(9.0 + (i % 40) as f64 * 0.1, Some(&format!("r{i}"))));
    let mut got = Vec::new();
    let mut sent = 0;
    for _ in 0..50 {
        stdin.write_all(record(sent).as_bytes()).unwrap();
        sent += 1;
    }
    stdin.flush().unwrap();
    while got.len() < 50 {
        got.push(rx.recv_timeout(PATIENCE).expect("predictions from the first model"));
    }
    let first_version = got[0]["model_version"].as_str().unwrap().to_string();
    // A second training while records keep flowing.
    let mut trainer = sb.command(&["train"]);
    trainer.cmd().stdout(Stdio::null()).stderr(Stdio::null());
    let trainer = trainer.spawn();
    let deadline = Instant::now() + PATIENCE;
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
    let log = log.finish();
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
    let swaps = events(&log, "model_swapped");
    assert_eq!(swaps.len(), 1, "{log}");
    assert_eq!(swaps[0]["from"], first_version.as_str());
    assert_eq!(swaps[0]["to"], second_version);
}

/// `predict --input - --follow --format jsonl --log-format json`, all of its stdio piped.
fn follow(sb: &Sandbox) -> std::process::Child {
    let mut c = sb.command(&["predict", "--input", "-", "--follow", "--format", "jsonl", "--log-format", "json"]);
    c.cmd().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn()
}

#[test]
fn bad_records_are_dead_lettered_and_the_rest_predicted() {
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let (header, good) = (WINE_CSV_HEADER, WINE_CSV_ROW);
    let csv = format!(
        "{header}\n{good}\n7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,abc,5\n7.4,0.7,0\n\
         7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,inf,5\n7.4,NA,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5\n{good}\n"
    );
    sb.write("in.csv", &csv);
    // exit 3 when records were rejected
    let preds = sb.command(&["predict", "--input", "in.csv"]).assert_exit_code(3).stdout_json();
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
    let preds = sb.command(&["predict", "--input", "in.jsonl"]).assert_exit_code(3).stdout_json();
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0]["key"], "a");
    let dead = sb.log_lines("dead_letter");
    assert_eq!(dead.len(), 3 + 4);
    assert!(dead[4]["reason"].as_str().unwrap().contains("boolean"), "{}", dead[4]);
}

#[test]
fn a_ten_megabyte_record_is_dead_lettered_and_the_next_one_scored() {
    // (On Kafka, records over modelcast.max_record_bytes are dead-lettered unread:
    // services::bad_records_go_to_the_dead_letter_topic_and_bad_models_are_refused. Here the
    // decoder meets it whole.)
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let big = format!("{{\"key\": \"big\", \"alcohol\": \"{}\"}}", "9".repeat(10 << 20));
    sb.write("in.jsonl", &format!("{big}\n{{\"key\": \"after\", \"alcohol\": 10}}\n"));
    let preds = sb.command(&["predict", "--input", "in.jsonl"]).assert_exit_code(3).stdout_json();
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
    sb.command(&["train", "--params", "params/mixed.yaml"]).assert_ok();
    sb.write(
        "in.jsonl",
        "{\"x1\": 1.5, \"x3\": -0.3, \"color\": \"purple\", \"size\": \"M\"}\n\
         {\"x1\": 1.5, \"x2\": null, \"x3\": -0.3, \"color\": \"red\", \"size\": \"M\", \"unused\": [1]}\n",
    );
    let preds = sb.command(&["predict", "--input", "in.jsonl", "--model-name", "mixed"]).assert_ok().stdout_json();
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
    let e = sb.command(&["train", "--params", "params/bad.yaml"]).assert_exit_code(2).stderr();
    assert!(e.contains("params/bad.yaml") && e.contains("features") && e.contains("text"), "{e}");

    sb.write(
        "params/bad2.yaml",
        "name: m\ndata: {train: data/winequality-red.csv}\ntarget: quality\n\
         features: {numeric: [alcohol]}\nmodel: {kind: lasso, alpha: 0}\n",
    );
    let e = sb.command(&["train", "--params", "params/bad2.yaml"]).assert_exit_code(2).stderr();
    assert!(e.contains("model.alpha"), "{e}");

    let e = sb.command(&["train", "--params", "params/nope.yaml"]).assert_exit_code(2).stderr();
    assert!(e.contains("nope.yaml") && e.contains("not found"), "{e}");

    sb.command(&["train", "--store", "ftp://x"]).assert_exit_code(2);

    // missing --input is a usage error
    sb.command(&["predict"]).assert_exit_code(2);

    sb.write("k.yaml", "bootstrap.servers: 127.0.0.1:9\n");
    let e = sb
        .command(&["predict", "--serve", "--kafka-config", "k.yaml", "--instance-id", "replica 0"])
        .assert_exit_code(2)
        .stderr();
    assert!(e.contains("--instance-id") && e.contains("pod name"), "{e}");
    // --instance-id needs --serve
    sb.command(&["predict", "--input", "x.csv", "--instance-id", "replica-0"]).assert_exit_code(2);
}

#[test]
fn serve_only_flags_without_serve_exit_2_naming_the_flag() {
    let sb = Sandbox::new();
    for (flag, value) in [("--metrics-addr", "127.0.0.1:9898"), ("--input-topic", "t"), ("--instance-id", "r0")] {
        let run = sb.command(&["predict", "--input", "x.csv", flag, value]).assert_exit_code(2);
        let e = run.stderr();
        assert!(e.contains(flag) && e.contains("--serve"), "{flag}: {e}");
        assert!(run.stdout().is_empty());
    }
    // and the flags that do not apply to the service
    sb.write("k.yaml", "bootstrap.servers: 127.0.0.1:9\n");
    let e = sb.command(&["predict", "--serve", "--kafka-config", "k.yaml", "--follow"]).assert_exit_code(2).stderr();
    assert!(e.contains("--follow"), "{e}");
}

#[test]
fn malformed_training_csv_names_the_line() {
    let sb = Sandbox::new();
    let mut text = std::fs::read_to_string(sb.path().join("data/winequality-red.csv")).unwrap();
    text.push_str("7.4,0.7,oops,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5\n");
    sb.write("data/winequality-red.csv", &text);
    let e = sb.command(&["train"]).assert_exit_code(1).stderr();
    assert!(e.contains("winequality-red.csv:1601") && e.contains("citric acid"), "{e}");
    assert!(sb.log_lines("train").is_empty(), "nothing announced");
    assert!(sb.artifacts("wine-quality").is_empty(), "nothing stored");
}

#[test]
fn tampered_or_unknown_artifacts_are_refused() {
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    sb.command(&["train"]).assert_ok();
    let arts = sb.artifacts("wine-quality");
    let anns = sb.log_lines("train");
    let old_version = anns[0]["version"].as_str().unwrap().to_string();
    // Tamper with the newest artifact: predict refuses it and falls back to the older one.
    let newest = arts.iter().find(|p| p.to_string_lossy().contains(anns[1]["version"].as_str().unwrap())).unwrap();
    let text = std::fs::read_to_string(newest).unwrap().replacen("\"intercept\": ", "\"intercept\": 1", 1);
    std::fs::write(newest, text).unwrap();
    let out = sb.command(&["predict", "--input", "data/winequality-red.csv", "--log-format", "json"]).assert_ok();
    let refused = out.events("model_refused");
    assert!(
        refused.iter().any(|r| r["version"] == anns[1]["version"]
            && r["reason"].as_str().is_some_and(|r| r.contains("sha256 mismatch"))),
        "{}",
        out.stderr()
    );
    assert!(out.stdout_json().iter().all(|p| p["model_version"] == old_version.as_str()));
    // Pinning the tampered version is an error, not a silent fallback.
    let e = sb
        .command(&["predict", "--input", "data/winequality-red.csv", "--model", anns[1]["version"].as_str().unwrap()])
        .assert_exit_code(1)
        .stderr();
    assert!(e.contains("sha256 mismatch"), "{e}");
    // Unknown schema_version.
    let older = arts.iter().find(|p| p.to_string_lossy().contains(&old_version)).unwrap();
    let text = std::fs::read_to_string(older).unwrap().replacen("\"schema_version\": 4", "\"schema_version\": 99", 1);
    std::fs::write(older, &text).unwrap();
    let e = sb.command(&["predict", "--input", "data/winequality-red.csv"]).assert_exit_code(1).stderr();
    assert!(e.contains("sha256 mismatch"), "{e}");
    // Announced sha256 matching the (future-format) artifact: refused for its schema_version.
    let mut ann = anns[0].clone();
    ann["sha256"] = modelcast::util::hash::sha256_hex(text.as_bytes()).into();
    sb.append_line("models/_bus/train.jsonl", &ann.to_string());
    let e = sb.command(&["predict", "--input", "data/winequality-red.csv"]).assert_exit_code(1).stderr();
    assert!(e.contains("unsupported schema_version 99"), "{e}");
}

#[test]
fn follow_refuses_a_bad_model_and_keeps_serving() {
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let mut child = follow(&sb);
    let mut log = Log::collect(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"alcohol\": 10, \"key\": \"a\"}\n").unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap(); // the model is loaded and serving
    let mut ann = sb.log_lines("train")[0].clone();
    let bad_version = "20990101T000000000Z-deadbeef";
    ann["version"] = bad_version.into();
    ann["sha256"] = "0".repeat(64).into();
    // announce garbage, then a model with a wrong sha256
    sb.append_line("models/_bus/train.jsonl", "not json at all");
    sb.append_line("models/_bus/train.jsonl", &ann.to_string());
    // both refused before the next record
    log.wait_event("announcement_refused", PATIENCE);
    log.wait_event("model_refused", PATIENCE);
    stdin.write_all(b"{\"alcohol\": 11, \"key\": \"b\"}\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let log = log.finish();
    assert!(status.success(), "{status:?}\n{log}");
    let preds: Vec<serde_json::Value> =
        format!("{first}{rest}").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0]["model_version"], preds[1]["model_version"], "still the first model");
    assert!(!events(&log, "announcement_refused").is_empty(), "{log}");
    assert!(events(&log, "model_refused").iter().any(|r| r["version"] == bad_version), "{log}");
}

#[test]
fn help_shows_examples() {
    let sb = Sandbox::new();
    for args in [&["--help"][..], &["train", "--help"], &["predict", "--help"]] {
        assert!(sb.command(args).assert_ok().stdout().contains("Examples:"), "{args:?}");
    }
}

#[test]
fn concurrent_trainers_never_overwrite_each_other() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = sb.command(&["train", "-q"]);
            c.cmd().stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn()
        })
        .collect();
    let uris: Vec<String> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()).assert_ok().stdout().trim().to_string())
        .collect();
    let arts = sb.artifacts("wine-quality");
    assert_eq!(arts.len(), 4, "four trainings, four artifacts: {uris:?}");
    let anns = sb.log_lines("train");
    assert_eq!(anns.len(), 4);
    for a in &anns {
        let key = a["key"].as_str().unwrap();
        let bytes = std::fs::read(sb.path().join("models").join(key)).unwrap();
        assert_eq!(
            modelcast::util::hash::sha256_hex(&bytes),
            a["sha256"].as_str().unwrap(),
            "announcement matches its artifact"
        );
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_itself() {
    let sb = Sandbox::new();
    let bash = sb.command(&["completions", "bash"]).assert_ok().stdout();
    assert!(
        bash.contains("complete -F _modelcast") && bash.contains("promote") && bash.contains("--promote-if-better")
    );
    let path = sb.write("modelcast.bash", &bash);
    let syntax = std::process::Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(syntax.success(), "the bash completion script parses");
    for shell in ["zsh", "fish", "powershell"] {
        assert!(sb.command(&["completions", shell]).assert_ok().stdout().contains("rollback"), "{shell}");
    }
    sb.command(&["completions", "tcsh"]).assert_exit_code(2);
    let man = sb.command(&["man"]).assert_ok().stdout();
    assert!(man.starts_with(".ie") && man.contains(".TH modelcast 1") && man.contains("history"), "{man:.300}");
}

#[test]
fn progress_shows_on_a_terminal_and_never_in_a_pipe() {
    let sb = Sandbox::new();
    // a pipe (cron, CI): log lines only
    let e = sb.command(&["train"]).assert_ok().stderr();
    assert!(!e.contains("reading the training data") && !e.contains("uploading the"), "{e}");
    // a terminal: script(1) gives the binary a pseudo-terminal
    let Ok(script) = which("script") else {
        eprintln!("skipped the terminal half: no script(1) (util-linux)");
        return;
    };
    let out = std::process::Command::new(script)
        .current_dir(sb.path())
        .env("NO_COLOR", "1")
        .args(["-qec", &format!("{} train", bin().display()), "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let tty = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    // stages shorter than the spinner's redraw interval may be skipped: at least one shows
    let stages = ["reading the training data", "fitting", "uploading the report and the model", "announcing"];
    assert!(stages.iter().any(|s| tty.contains(s)), "no progress on the terminal:\n{tty}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .ok_or(())
}

/// The shipped wine params with `kind: gradient_boosting` (and the ridge-only `alpha` removed)
/// train a boosted model out of the box; with `alpha` left in, the error names the key and file.
#[test]
fn shipped_params_train_gradient_boosting_and_name_a_key_the_kind_does_not_read() {
    let sb = Sandbox::new();
    let shipped = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    let kind_line = shipped.lines().find(|l| l.trim_start().starts_with("kind: ridge")).unwrap();
    let boosted = shipped.replace(kind_line, "  kind: gradient_boosting");
    sb.write("params/with-alpha.yaml", &boosted);
    let e = sb.command(&["train", "--params", "params/with-alpha.yaml"]).assert_exit_code(2).stderr();
    assert!(e.contains("model.alpha") && e.contains("with-alpha.yaml") && e.contains("gradient_boosting"), "{e}");
    let alpha_line = boosted.lines().find(|l| l.trim_start().starts_with("alpha:")).unwrap();
    sb.write("params/boosted.yaml", &boosted.replace(alpha_line, ""));
    let out = sb.command(&["train", "--params", "params/boosted.yaml", "--json"]).assert_ok().stdout_doc();
    assert_eq!(out["kind"], "gradient_boosting");
    let r2 = out["metrics"]["model"]["r2"].as_f64().unwrap();
    assert!(r2 > 0.38, "boosting beats the line's ~0.35 on the held-out wine rows: {r2}");
    // the stored artifact is schema_version 4 (trees and a drift reference) with plain JSON
    // trees, and predict uses it
    let art: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sb.artifacts("wine-quality")[0]).unwrap()).unwrap();
    assert_eq!(art["schema_version"], 4);
    assert_eq!(art["estimator"]["trees"]["trees"].as_array().unwrap().len(), 100);
    let preds = sb.command(&["predict", "--input", "data/winequality-red.csv"]).assert_ok().stdout_json();
    assert_eq!(preds.len(), 1599);
    assert!(preds.iter().all(|p| p["model_version"] == out["version"]));
}

/// `modelcast drift`: the training rows score stable (exit 0); alcohol moved and a third of pH
/// missing are each named (exit 6), their numbers those of the documented formula over the
/// artifact's reference; `--fail-on never` measures without failing; a model from before
/// references is refused, saying why.
#[test]
fn drift_names_the_columns_that_moved_and_how() {
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let art: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sb.artifacts("wine-quality")[0]).unwrap()).unwrap();
    let stable = sb
        .command(&["drift", "wine-quality", "--input", "data/winequality-red.csv", "--json"])
        .assert_ok()
        .stdout_doc();
    assert_eq!((stable["schema_version"].as_u64(), stable["records"].as_u64()), (Some(1), Some(1599)));
    assert_eq!(stable["version"], art["version"]);
    for c in stable["columns"].as_array().unwrap() {
        assert!(c["psi"].as_f64().unwrap() < 0.1 && c["verdict"] == "stable", "{c}");
    }
    let text = std::fs::read_to_string(sb.path().join("data/winequality-red.csv")).unwrap();
    let header: Vec<String> =
        text.lines().next().unwrap().split(',').map(|h| h.trim_matches('"').to_string()).collect();
    let (alcohol, ph) =
        (header.iter().position(|h| h == "alcohol").unwrap(), header.iter().position(|h| h == "pH").unwrap());
    let mut shifted = vec![text.lines().next().unwrap().to_string()];
    let mut alcohol_values = Vec::new();
    for (i, line) in text.lines().skip(1).enumerate() {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        let a: f64 = cells[alcohol].parse::<f64>().unwrap() + 1.1;
        cells[alcohol] = a.to_string();
        alcohol_values.push(a);
        if i % 3 == 0 {
            cells[ph] = String::new();
        }
        shifted.push(cells.join(","));
    }
    sb.write("shifted.csv", &(shifted.join("\n") + "\n"));
    let run = sb.command(&["drift", "wine-quality", "--input", "shifted.csv", "--json"]).assert_exit_code(6);
    let moved = run.stdout_doc();
    assert_eq!(moved["verdict"], "drift");
    let col = |name: &str| moved["columns"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    let drifted: Vec<String> = moved["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] != "stable")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(drifted, ["pH", "alcohol"]);
    assert!((col("pH")["missing_rate"].as_f64().unwrap() - 533.0 / 1599.0).abs() < 1e-9, "{}", col("pH"));
    // alcohol's PSI by hand: the reference's bins (and an empty missing bin), shares floored at 1e-4
    let reference = art["drift"]["columns"].as_array().unwrap().iter().find(|c| c["name"] == "alcohol").unwrap();
    let edges: Vec<f64> = reference["edges"].as_array().unwrap().iter().map(|e| e.as_f64().unwrap()).collect();
    let mut expected: Vec<f64> =
        reference["proportions"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
    expected.push(0.0);
    let mut counts = vec![0.0f64; expected.len()];
    alcohol_values.iter().for_each(|&a| counts[edges.iter().filter(|&&e| e < a).count()] += 1.0);
    let by_hand: f64 = expected
        .iter()
        .zip(&counts)
        .map(|(&e, &c)| {
            let (e, a) = (e.max(1e-4), (c / 1599.0).max(1e-4));
            (a - e) * (a / e).ln()
        })
        .sum();
    assert!((col("alcohol")["psi"].as_f64().unwrap() - by_hand).abs() < 1e-9, "{} vs {by_hand}", col("alcohol"));
    // the table names them too, and --fail-on never only measures
    let table =
        sb.command(&["drift", "wine-quality", "--input", "shifted.csv", "--fail-on", "never"]).assert_ok().stdout();
    assert!(table.lines().any(|l| l.starts_with("alcohol") && l.contains("drift")), "{table}");
    assert!(table.contains("drift (1599 records"), "{table}");
    // an artifact written before references: refused, saying so
    let path = &sb.artifacts("wine-quality")[0];
    let mut old = art.clone();
    old.as_object_mut().unwrap().remove("drift");
    old["schema_version"] = 1.into(); // a ridge model before references
    std::fs::write(path, serde_json::to_vec(&old).unwrap()).unwrap();
    let err = sb.command(&["drift", "wine-quality", "--input", "shifted.csv"]).assert_exit_code(1).stderr();
    assert!(err.contains("has no drift reference") && err.contains("retrain"), "{err}");
}
