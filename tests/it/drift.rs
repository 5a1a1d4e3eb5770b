//! Drift on live traffic: the service's windows on the `model_drift` topic and `/metrics`,
//! checked against the batch `modelcast drift` on the same rows, through a swap, a graceful stop
//! and a kill -9.

use serde_json::{Map, Value};

use crate::util::bed::{bed, parse_metrics, Wired};
use crate::util::kafka::{produce, producer, read_topic, wait_count};
use crate::util::{wait_for, Sandbox, PATIENCE};

/// The wine file split by a seeded shuffle: (header, training rows, the last `held_out` rows).
fn split(sb: &Sandbox, held_out: usize) -> (Vec<String>, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(sb.path().join("data/winequality-red.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(|h| h.trim_matches('"').to_string()).collect();
    let mut rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|c| c.parse().unwrap()).collect()).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..rows.len()).rev() {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        rows.swap(i, (state >> 33) as usize % (i + 1));
    }
    let test = rows.split_off(rows.len() - held_out);
    (header, rows, test)
}

fn csv(header: &[String], rows: &[Vec<f64>]) -> String {
    let mut out = header.join(",") + "\n";
    for r in rows {
        out += &(r.iter().map(f64::to_string).collect::<Vec<_>>().join(",") + "\n");
    }
    out
}

/// Rows as keyed JSON records (the label left out); `None` cells are `null`.
fn records(header: &[String], rows: &[Vec<Option<f64>>], tag: &str) -> Vec<(String, Vec<u8>)> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let key = format!("{tag}-{i}");
            let mut m = Map::new();
            m.insert("key".into(), key.clone().into());
            for (h, v) in header.iter().zip(r).filter(|(h, _)| *h != "quality") {
                m.insert(h.clone(), v.map_or(Value::Null, Value::from));
            }
            (key, serde_json::to_vec(&m).unwrap())
        })
        .collect()
}

fn drifted(window: &Value) -> Vec<String> {
    window["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] != "stable")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn column(window: &Value, name: &str) -> Value {
    window["columns"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

#[test]
fn serve_publishes_drift_windows_that_name_each_shift_and_agree_with_the_batch_command() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "drift", 1);
    const N: usize = 320;
    let (header, train, test) = split(&w.sb, N);
    w.sb.write("train.csv", &csv(&header, &train));
    w.sb.write("test.csv", &csv(&header, &test));
    w.train(&["--data", "train.csv", "--test-data", "test.csv"]).assert_ok();
    let v1 = read_topic(&w.bootstrap, &w.topics.train, 1, PATIENCE)[0].json()["version"].as_str().unwrap().to_string();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (alcohol, ph, sulphates) = (at("alcohol"), at("pH"), at("sulphates"));
    let col = |rows: &[Vec<f64>], j: usize| rows.iter().map(|r| r[j]).collect::<Vec<f64>>();
    let a = col(&train, alcohol);
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let sd = (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (a.len() - 1) as f64).sqrt();
    let sulphates_max = col(&train, sulphates).into_iter().fold(f64::MIN, f64::max);
    // four windows of the held-out rows: as they are, alcohol + 1 sd, pH half missing,
    // sulphates beyond the training maximum in every other row
    let shifted = |f: &dyn Fn(usize, &mut Vec<Option<f64>>)| -> Vec<Vec<Option<f64>>> {
        test.iter()
            .enumerate()
            .map(|(i, r)| {
                let mut r: Vec<Option<f64>> = r.iter().copied().map(Some).collect();
                f(i, &mut r);
                r
            })
            .collect()
    };
    let windows = [
        ("stable", shifted(&|_, _| {}), vec![]),
        ("alcohol", shifted(&|_, r| r[alcohol] = r[alcohol].map(|x| x + sd)), vec!["alcohol"]),
        ("missing", shifted(&|i, r| r[ph] = r[ph].filter(|_| i % 2 == 1)), vec!["pH"]),
        (
            "range",
            shifted(&|i, r| r[sulphates] = r[sulphates].map(|x| if i % 2 == 0 { sulphates_max + 0.5 } else { x })),
            vec!["sulphates"],
        ),
    ];
    let mut svc = w.serve(&["--drift-window", &N.to_string(), "--drift-every", "1h"]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    for (tag, rows, _) in &windows {
        produce(&p, &w.topics.input, &records(&header, rows, tag));
    }
    let got: Vec<Value> =
        read_topic(&w.bootstrap, &w.topics.drift, windows.len(), PATIENCE).iter().map(|r| r.json()).collect();
    assert_eq!(got.len(), windows.len());
    for (i, ((tag, _, want), window)) in windows.iter().zip(&got).enumerate() {
        assert_eq!(window["type"], "model_drift");
        assert_eq!(window["schema_version"], 1);
        assert_eq!((window["version"].as_str(), window["window"].as_u64()), (Some(v1.as_str()), Some(i as u64 + 1)));
        assert_eq!(
            (window["records"].as_u64(), window["closed_by"].as_str()),
            (Some(N as u64), Some("records")),
            "{tag}"
        );
        // the shifted column drifts in its first full window; every other column stays stable
        assert_eq!(drifted(window), *want, "{tag}: {window}");
        for c in window["columns"].as_array().unwrap() {
            let limit = if want.contains(&c["name"].as_str().unwrap()) { f64::INFINITY } else { 0.1 };
            assert!(c["psi"].as_f64().unwrap() < limit, "{tag}: {c}");
        }
        for name in want {
            assert_eq!(column(window, name)["verdict"], "drift", "{tag}: {window}");
        }
    }
    assert_eq!(got[0]["verdict"], "stable", "the held-out rows, prediction included: {}", got[0]);
    assert!((column(&got[2], "pH")["missing_rate"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert!((column(&got[3], "sulphates")["out_of_range_rate"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    // the batch command on the same rows says the same, number for number
    for ((tag, rows, _), window) in windows.iter().zip(&got) {
        let lines: Vec<String> =
            records(&header, rows, tag).into_iter().map(|(_, r)| String::from_utf8(r).unwrap()).collect();
        let file = format!("{tag}.jsonl");
        w.sb.write(&file, &(lines.join("\n") + "\n"));
        let args = ["drift", "wine-quality", &v1, "--input", &file, "--json", "--fail-on", "never"];
        let mut cmd = w.command(&args);
        cmd.args(["--store", &w.store, "--kafka-config", "kafka.yaml"]);
        let batch = cmd.assert_ok().stdout_doc();
        assert_eq!(batch["records"], window["records"]);
        assert_eq!(batch["verdict"], window["verdict"], "{tag}");
        let pairs = batch["columns"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&batch["prediction"]])
            .zip(window["columns"].as_array().unwrap().iter().chain([&window["prediction"]]));
        for (b, s) in pairs {
            assert_eq!(b["name"], s["name"]);
            for k in ["psi", "jensen_shannon", "missing_rate", "invalid_rate", "out_of_range_rate", "min", "max"] {
                let (x, y) = (b[k].as_f64(), s[k].as_f64());
                assert!(
                    x.zip(y).map_or(x == y, |(x, y)| (x - y).abs() <= 1e-9),
                    "{tag} {} {k}: {x:?} vs {y:?}",
                    b["name"]
                );
            }
        }
    }
    // /metrics holds the last window of the serving version
    let label = format!(
        "modelcast_feature_psi{{feature=\"sulphates\",model=\"wine-quality\",source=\"records\",version=\"{v1}\"}}"
    );
    let text = svc.wait_metrics(&[&label], PATIENCE);
    let psi = parse_metrics(&text)
        .into_iter()
        .find(|(n, l, _)| n == "modelcast_feature_psi" && l.get("feature").map(String::as_str) == Some("sulphates"))
        .map(|(_, _, v)| v);
    assert_eq!(psi, column(&got[3], "sulphates")["psi"].as_f64(), "{text}");
    // a new version: windows start again at 1 for it; a graceful stop publishes the partial one
    w.train(&["--data", "train.csv", "--test-data", "test.csv"]).assert_ok();
    let v2 = read_topic(&w.bootstrap, &w.topics.train, 2, PATIENCE)[1].json()["version"].as_str().unwrap().to_string();
    svc.wait_metrics(&[&format!("modelcast_model_info{{model=\"wine-quality\",version=\"{v2}\"}} 1")], PATIENCE);
    produce(&p, &w.topics.input, &records(&header, &windows[0].1[..100], "after-swap"));
    wait_count(&w.bootstrap, &w.topics.app, 4 * N + 100, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "{log}");
    let got = read_topic(&w.bootstrap, &w.topics.drift, 5, PATIENCE);
    let last = got[4].json();
    assert_eq!(
        (last["version"].as_str(), last["window"].as_u64(), last["records"].as_u64(), last["closed_by"].as_str()),
        (Some(v2.as_str()), Some(1), Some(100), Some("stop")),
        "{last}"
    );
    // kill -9 loses the window being counted, and only it: the restarted replica counts afresh
    let mut svc = w.serve(&["--drift-window", &N.to_string(), "--drift-every", "1h"]);
    svc.wait_ready(PATIENCE);
    produce(&p, &w.topics.input, &records(&header, &windows[0].1[..50], "before-kill"));
    wait_count(&w.bootstrap, &w.topics.app, 4 * N + 150, PATIENCE);
    let _ = svc.kill();
    let mut svc = w.serve(&["--drift-window", &N.to_string(), "--drift-every", "1h"]);
    svc.wait_ready(PATIENCE);
    produce(&p, &w.topics.input, &records(&header, &windows[0].1, "after-kill"));
    let got = read_topic(&w.bootstrap, &w.topics.drift, 6, PATIENCE);
    assert_eq!(got.len(), 6);
    let after = got[5].json();
    assert_eq!((after["window"].as_u64(), after["records"].as_u64()), (Some(1), Some(N as u64)), "{after}");
    assert_eq!(after["verdict"], "stable", "{after}");
    drop(svc);
}

/// The rows of inference requests are counted like records: a window of request rows (from two
/// requests) equals the batch command on the same rows, and a window whose time is up closes
/// with what it has.
#[test]
fn request_rows_are_counted_into_windows_that_agree_with_the_batch_command() {
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let (header, _, rows) = split(&sb, 400);
    let alcohol = header.iter().position(|h| h == "alcohol").unwrap();
    let shifted: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[alcohol] += 1.1;
            r[..11].to_vec()
        })
        .collect();
    sb.write("shifted.csv", &csv(&header[..11], &shifted));
    let server = crate::inference::start(&sb, &["--drift-window", "400", "--drift-every", "1h"]);
    for part in [&shifted[..300], &shifted[300..]] {
        let (status, r) = crate::inference::post(
            &server.addr,
            "/v2/models/wine-quality/infer",
            &crate::inference::named_request(&header, part, "FP64"),
        );
        assert_eq!(status, 200, "{r}");
    }
    let log = sb.path().join("models/_bus/model_drift.jsonl");
    let read = |want: usize| -> Vec<Value> {
        wait_for(&format!("{want} drift windows"), PATIENCE, || {
            let lines: Vec<Value> = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= want {
                Ok(lines)
            } else {
                Err(format!("{} so far", lines.len()))
            }
        })
    };
    let window = read(1).remove(0);
    assert_eq!((window["source"].as_str(), window["records"].as_u64()), (Some("requests"), Some(400)), "{window}");
    assert_eq!(drifted(&window), ["alcohol"], "{window}");
    let batch = sb
        .command(&["drift", "wine-quality", "--input", "shifted.csv", "--json", "--fail-on", "never"])
        .assert_ok()
        .stdout_doc();
    assert_eq!(batch["version"], window["version"]);
    for (b, s) in batch["columns"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&batch["prediction"]])
        .zip(window["columns"].as_array().unwrap().iter().chain([&window["prediction"]]))
    {
        for k in ["psi", "jensen_shannon", "missing_rate", "out_of_range_rate"] {
            let (x, y) = (b[k].as_f64(), s[k].as_f64());
            assert!(x.zip(y).map_or(x == y, |(x, y)| (x - y).abs() <= 1e-9), "{} {k}: {x:?} vs {y:?}", b["name"]);
        }
    }
    drop(server);
    // a window whose time is up closes with what it has
    let server = crate::inference::start(&sb, &["--drift-window", "400", "--drift-every", "1s"]);
    let (status, _) = crate::inference::post(
        &server.addr,
        "/v2/models/wine-quality/infer",
        &crate::inference::named_request(&header, &shifted[..10], "FP64"),
    );
    assert_eq!(status, 200);
    let timed = read(2).remove(1);
    assert_eq!((timed["closed_by"].as_str(), timed["records"].as_u64()), (Some("time"), Some(10)), "{timed}");
}

#[test]
fn a_category_nobody_trained_on_is_named_in_the_request_window_and_the_batch_command_agrees() {
    let sb = Sandbox::new();
    std::fs::copy(crate::util::repo().join("tests/fixtures/mixed.csv"), sb.path().join("data/mixed.csv")).unwrap();
    sb.write(
        "params/mixed.yaml",
        "name: mixed\ndata: {train: data/mixed.csv}\ntarget: y\n\
         features: {numeric: [x1, x2, x3], categorical: [color, size]}\nmodel: {kind: ridge, alpha: 0.5}\n",
    );
    sb.command(&["train", "--params", "params/mixed.yaml"]).assert_ok();
    // every row of the file, a third of them in a colour the model never saw
    let text = std::fs::read_to_string(sb.path().join("data/mixed.csv")).unwrap();
    let mut rows: Vec<Vec<String>> = text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect();
    for r in rows.iter_mut().step_by(3) {
        r[4] = "purple".into();
    }
    let unseen = rows.len().div_ceil(3);
    let names = ["x1", "x2", "x3", "color", "size"];
    let mut file = names.join(",") + "\n";
    for r in &rows {
        file += &(r[1..6].join(",") + "\n");
    }
    sb.write("purple.csv", &file);
    let inputs: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let cell = |r: &Vec<String>| -> Value {
                let v = &r[j + 1];
                match (j < 3, v.is_empty()) {
                    (_, true) => Value::Null,
                    (true, false) => v.parse::<f64>().unwrap().into(),
                    (false, false) => v.as_str().into(),
                }
            };
            serde_json::json!({
                "name": name,
                "datatype": if j < 3 { "FP64" } else { "BYTES" },
                "shape": [rows.len()],
                "data": rows.iter().map(cell).collect::<Vec<_>>(),
            })
        })
        .collect();
    let request = serde_json::json!({ "inputs": inputs }).to_string();
    let server = crate::inference::start(&sb, &["--model-name", "mixed", "--drift-window", &rows.len().to_string()]);
    let (status, answer) = crate::inference::post(&server.addr, "/v2/models/mixed/infer", &request);
    assert_eq!(status, 200, "{answer}");
    let log = sb.path().join("models/_bus/model_drift.jsonl");
    let window: Value = wait_for("the request window", PATIENCE, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().next().map(|l| serde_json::from_str(l).unwrap()).ok_or_else(|| "none yet".to_string())
    });
    assert_eq!(window["records"].as_u64(), Some(rows.len() as u64), "{window}");
    assert_eq!(window["closed_by"], "records", "{window}");
    assert_eq!(drifted(&window), ["color"], "only the colour drifted: {window}");
    let color = column(&window, "color");
    assert_eq!(color["verdict"], "drift", "{color}");
    assert_eq!(color["unseen_rate"].as_f64(), Some(unseen as f64 / rows.len() as f64), "{color}");
    assert_eq!(column(&window, "size")["unseen_rate"].as_f64(), Some(0.0));
    // the batch command on the same rows: the same numbers
    let batch = sb
        .command(&["drift", "mixed", "--input", "purple.csv", "--json", "--fail-on", "never"])
        .assert_ok()
        .stdout_doc();
    assert_eq!(batch["version"], window["version"]);
    for name in names {
        let (b, s) = (column(&batch, name), column(&window, name));
        for k in ["psi", "jensen_shannon", "missing_rate", "unseen_rate", "out_of_range_rate"] {
            let (x, y) = (b[k].as_f64(), s[k].as_f64());
            assert!(x.zip(y).map_or(x == y, |(x, y)| (x - y).abs() <= 1e-9), "{name} {k}: {x:?} vs {y:?}");
        }
    }
    // and --fail-on drift makes the batch command say so in its exit code
    sb.command(&["drift", "mixed", "--input", "purple.csv", "--fail-on", "drift"]).assert_exit_code(6);
}

#[test]
fn the_opt_in_drift_gate_refuses_a_model_trained_on_drifted_data_and_reports_why() {
    let sb = Sandbox::new();
    let (header, train, test) = split(&sb, 320);
    let first = sb.command(&["train", "--promote", "champion", "--json"]).assert_ok().stdout_doc();
    // the new data: alcohol 1.5 standard deviations (1.07) higher, in the training and the test rows
    let alcohol = header.iter().position(|h| h == "alcohol").unwrap();
    let shift = |rows: &[Vec<f64>]| -> Vec<Vec<f64>> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                r[alcohol] += 1.6;
                r
            })
            .collect()
    };
    sb.write("data/shifted-train.csv", &csv(&header, &shift(&train)));
    sb.write("data/shifted-test.csv", &csv(&header, &shift(&test)));
    let shipped = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    let params = shipped
        .replace("train: data/winequality-red.csv", "train: data/shifted-train.csv")
        .replace("# test_data: data/holdout.csv", "test_data: data/shifted-test.csv");
    assert_ne!(params, shipped);
    sb.write("params/shifted.yaml", &params);
    let champion = || -> String {
        let models = sb.command(&["models", "wine-quality", "--json"]).assert_ok().stdout_doc();
        let holder =
            models.as_array().unwrap().iter().find(|m| m["aliases"].as_array().unwrap().contains(&"champion".into()));
        holder.unwrap()["version"].as_str().unwrap().to_string()
    };
    assert_eq!(champion(), first["version"].as_str().unwrap());

    // gated: the metrics would promote (the champion never saw such alcohol), the drift gate refuses
    let gated = ["train", "--params", "params/shifted.yaml", "--promote-if-better", "champion", "--json"];
    let refused = sb.command(&[&gated[..], &["--max-drift", "0.25"]].concat()).assert_exit_code(4).stdout_doc();
    let p = &refused["promotion"];
    let rmse = |who: &str| p[who]["metrics"]["rmse"].as_f64().unwrap();
    assert!(rmse("candidate") < rmse("current"), "the metrics alone would promote: {p}");
    let drift = &p["drift"];
    assert_eq!((drift["passed"].as_bool(), drift["worst_column"].as_str()), (Some(false), Some("alcohol")), "{drift}");
    assert_eq!(drift["against"], first["version"]);
    assert!(drift["worst_psi"].as_f64().unwrap() > 0.25 && drift["max_psi"].as_f64() == Some(0.25), "{drift}");
    let reason = p["reason"].as_str().unwrap();
    assert!(
        reason.contains("drifted") && reason.contains("alcohol") && reason.contains("--max-drift 0.25"),
        "{reason}"
    );
    assert_eq!(champion(), first["version"].as_str().unwrap(), "the alias did not move");
    // the gate's numbers are the batch command's on the same rows against the same version
    let batch = sb
        .command(&[
            "drift",
            "wine-quality",
            "champion",
            "--input",
            "data/shifted-test.csv",
            "--json",
            "--fail-on",
            "never",
        ])
        .assert_ok()
        .stdout_doc();
    assert_eq!(drift["report"]["records"], batch["records"]);
    for name in header.iter().filter(|h| *h != "quality") {
        let (g, b) = (column(&drift["report"], name), column(&batch, name));
        for k in ["psi", "jensen_shannon", "missing_rate", "out_of_range_rate"] {
            let (x, y) = (g[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9, "{name} {k}: gate {x} vs drift {y}");
        }
    }

    // off by default: the same training promotes on the metrics alone, with no drift section
    let promoted = sb.command(&gated).assert_ok().stdout_doc();
    assert_eq!(promoted["promotion"]["promoted"], true, "{promoted}");
    assert!(promoted["promotion"].get("drift").is_none(), "{promoted}");
    assert_eq!(champion(), promoted["version"].as_str().unwrap());

    // against a champion trained on the same shifted data the gate passes (the metrics then refuse:
    // the same fit is not strictly better)
    let same = sb.command(&[&gated[..], &["--max-drift", "0.25"]].concat()).assert_exit_code(4).stdout_doc();
    let drift = &same["promotion"]["drift"];
    assert_eq!(drift["passed"], true, "{drift}");
    assert!(drift["worst_psi"].as_f64().unwrap() < 0.1, "{drift}");
    assert!(!same["promotion"]["reason"].as_str().unwrap().contains("drifted"), "{same}");

    // a wrong threshold is named
    let e = sb.command(&[&gated[..], &["--max-drift", "0"]].concat()).assert_exit_code(2).stderr();
    assert!(e.contains("--max-drift"), "{e}");
}
