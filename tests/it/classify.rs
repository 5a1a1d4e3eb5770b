//! Classification end to end on the embedded default: params with classes, training, the
//! prediction messages (class and probabilities), the promotion gate on log loss, and the
//! mistakes a user makes named.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::*;

/// A binary "good wine" params file (quality >= 7) on `features`, without class weights (so the
/// probabilities are calibrated and log losses compare).
fn good_params(features: &[&str]) -> String {
    format!(
        "name: wine-good\ndata: {{train: data/winequality-red.csv}}\n\
         target: {{column: quality, positive: \">= 7\"}}\nfeatures: {{numeric: {features:?}}}\n\
         model: {{kind: logistic_regression}}\n"
    )
}

#[test]
fn a_classifier_trains_serves_and_passes_the_gate_on_log_loss() {
    let sb = Sandbox::new();
    sb.write("params/alcohol.yaml", &good_params(&["alcohol"]));
    sb.write("params/ph.yaml", &good_params(&["pH"]));
    let all = std::fs::read_to_string(sb.path().join("params/wine-good.yaml")).unwrap();
    sb.write("params/all.yaml", &all.replace("  class_weight: balanced", ""));
    let train =
        |params: &str| sb.command(&["train", "--params", params, "--promote-if-better", "champion", "--json"]).output();
    // 1: alcohol alone beats the class prior on log loss: champion
    let r1 = train("params/alcohol.yaml");
    assert_eq!(r1.code(), Some(0), "{}", r1.stderr());
    let r1 = r1.stdout_doc();
    let v1 = r1["version"].as_str().unwrap().to_string();
    assert_eq!(r1["promotion"]["promoted"], true, "{r1}");
    assert_eq!(r1["promotion"]["metric"], "log_loss", "a classifier's gate defaults to log loss");
    let c1 = &r1["metrics"]["model"]["classification"];
    let b1 = &r1["metrics"]["baseline"]["classification"];
    assert!(c1["log_loss"].as_f64().unwrap() < b1["log_loss"].as_f64().unwrap(), "{r1}");
    assert_eq!(b1["auc"].as_f64(), Some(0.5), "the prior ranks nothing");
    // 2: pH alone is worse on the same rows: refused, exit 4, the champion unchanged
    let r2 = train("params/ph.yaml").assert_exit_code(4).stdout_doc();
    let p = &r2["promotion"];
    assert_eq!(p["promoted"], false);
    let (new, old) = (
        p["candidate"]["metrics"]["classification"]["log_loss"].as_f64().unwrap(),
        p["current"]["metrics"]["classification"]["log_loss"].as_f64().unwrap(),
    );
    assert!(new > old, "pH alone is worse: {new} vs {old}");
    assert_eq!(p["candidate"]["metrics"]["rows"], p["current"]["metrics"]["rows"], "the same rows");
    assert!(p["reason"].as_str().unwrap().contains("log_loss"), "{p}");
    // 3: all eleven columns are better: promoted
    let r3 = train("params/all.yaml");
    assert_eq!(r3.code(), Some(0), "{}", r3.stderr());
    let r3 = r3.stdout_doc();
    let v3 = r3["version"].as_str().unwrap().to_string();
    assert_eq!(r3["promotion"]["promoted"], true, "{r3}");
    assert_eq!(r3["promotion"]["current"]["version"], v1.as_str());
    // the champion serves classes: schema_version 2, class and probabilities on every line
    let run = sb.command(&["predict", "--input", "data/winequality-red.csv", "--alias", "champion"]).assert_ok();
    let lines = run.stdout_json();
    assert_eq!(lines.len(), 1599);
    let mut classes = BTreeSet::new();
    for l in &lines {
        assert_eq!(l["schema_version"], 2, "{l}");
        assert_eq!(l["model_version"], v3.as_str());
        let probs = l["probabilities"].as_object().unwrap();
        assert_eq!(probs.keys().cloned().collect::<Vec<_>>(), ["0", "1"]);
        let (p0, p1) = (probs["0"].as_f64().unwrap(), probs["1"].as_f64().unwrap());
        assert!((p0 + p1 - 1.0).abs() < 1e-12, "{l}");
        assert_eq!(l["prediction"].as_f64().unwrap(), p1, "prediction is class 1's probability");
        let class = l["class"].as_str().unwrap();
        assert_eq!(class, if p1 >= 0.5 { "1" } else { "0" }, "{l}");
        classes.insert(class.to_string());
    }
    assert_eq!(classes.len(), 2, "both classes predicted somewhere");
}

#[test]
fn a_multiclass_model_writes_every_class_in_its_order() {
    let sb = Sandbox::new();
    let r = sb.command(&["train", "--params", "params/wine-grade.yaml", "--json"]).output();
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let doc = r.stdout_doc();
    let c = &doc["metrics"]["model"]["classification"];
    let confusion: Vec<Vec<u64>> = serde_json::from_value(c["confusion"].clone()).unwrap();
    assert_eq!(confusion.len(), 6);
    assert_eq!(confusion.iter().flatten().sum::<u64>(), doc["test_rows"].as_u64().unwrap());
    let correct: u64 = (0..6).map(|k| confusion[k][k]).sum();
    let acc = c["accuracy"].as_f64().unwrap();
    assert!((acc - correct as f64 / doc["test_rows"].as_f64().unwrap()).abs() < 1e-12);
    let run = sb.command(&["predict", "--input", "data/winequality-red.csv", "--model-name", "wine-grade"]).assert_ok();
    let text = run.stdout();
    let first = text.lines().next().unwrap();
    let keys: Vec<&str> = first
        .split("\"probabilities\":{")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap()
        .split(',')
        .map(|kv| kv.split(':').next().unwrap())
        .collect();
    assert_eq!(keys, ["\"3\"", "\"4\"", "\"5\"", "\"6\"", "\"7\"", "\"8\""], "class order, as in target.classes");
    for l in run.stdout_json() {
        let probs: Vec<f64> = l["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).collect();
        let best = probs.iter().cloned().fold(f64::MIN, f64::max);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(l["prediction"].as_f64().unwrap(), best, "the predicted class's probability");
        let k = probs.iter().position(|p| *p == best).unwrap();
        assert_eq!(l["class"], ["3", "4", "5", "6", "7", "8"][k]);
    }
}

/// The tree classifiers end to end: the shipped breast-cancer params (boosting, text labels)
/// train and predict `benign` / `malignant`, and a six-class forest writes six probabilities
/// that sum to 1 on every row, its class the first most probable.
#[test]
fn tree_classifiers_train_and_predict_text_and_many_classes() {
    let sb = Sandbox::new();
    let r = sb.command(&["train", "--params", "params/breast-cancer.yaml", "--json"]).output();
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let doc = r.stdout_doc();
    assert_eq!(doc["kind"], "gradient_boosting_classifier", "{doc}");
    let c = &doc["metrics"]["model"]["classification"];
    let b = &doc["metrics"]["baseline"]["classification"];
    assert!(c["accuracy"].as_f64().unwrap() > 0.9, "boosting separates the diagnoses: {c}");
    assert!(c["log_loss"].as_f64().unwrap() < b["log_loss"].as_f64().unwrap(), "better than the prior: {c}");
    let run =
        sb.command(&["predict", "--input", "data/breast-cancer.csv", "--model-name", "breast-cancer"]).assert_ok();
    let lines = run.stdout_json();
    assert_eq!(lines.len(), 569);
    let classes: BTreeSet<String> = lines.iter().map(|l| l["class"].as_str().unwrap().to_string()).collect();
    assert_eq!(classes, BTreeSet::from(["benign".to_string(), "malignant".to_string()]));
    for l in &lines {
        let p1 = l["probabilities"]["malignant"].as_f64().unwrap();
        assert_eq!(l["class"], if p1 >= 0.5 { "malignant" } else { "benign" }, "{l}");
    }
    let grade = std::fs::read_to_string(sb.path().join("params/wine-grade.yaml")).unwrap();
    let (head, _) = grade.split_once("\nmodel:").unwrap();
    sb.write(
        "params/grade-forest.yaml",
        &format!("{head}\nmodel: {{kind: random_forest_classifier, n_estimators: 30, min_samples_leaf: 3}}\n"),
    );
    let r = sb.command(&["train", "--params", "params/grade-forest.yaml", "--json"]).output();
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let run = sb.command(&["predict", "--input", "data/winequality-red.csv", "--model-name", "wine-grade"]).assert_ok();
    let grades = ["3", "4", "5", "6", "7", "8"];
    for l in run.stdout_json() {
        let probs: Vec<f64> = grades.iter().map(|g| l["probabilities"][g].as_f64().unwrap()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{l}");
        let best = probs.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(l["class"], grades[probs.iter().position(|p| *p == best).unwrap()], "{l}");
    }
}

/// `predict --threshold P`: a binary classifier's class is 1 exactly where its probability is at
/// least P; on a model that is not a binary classifier, or out of (0, 1), it is refused and says why.
#[test]
fn a_serving_threshold_moves_the_binary_decision() {
    let sb = Sandbox::new();
    sb.command(&["train", "--params", "params/wine-good.yaml"]).assert_ok();
    let classes = |threshold: &str| -> Vec<(f64, String)> {
        let args =
            ["predict", "--input", "data/winequality-red.csv", "--model-name", "wine-good", "--threshold", threshold];
        let run = sb.command(&args).assert_ok();
        run.stdout_json()
            .iter()
            .map(|l| (l["probabilities"]["1"].as_f64().unwrap(), l["class"].as_str().unwrap().to_string()))
            .collect()
    };
    let (low, high) = (classes("0.5"), classes("0.9"));
    let ones = |c: &[(f64, String)]| c.iter().filter(|(_, k)| k == "1").count();
    for (p, k) in &high {
        assert_eq!(k, if *p >= 0.9 { "1" } else { "0" }, "p = {p}");
    }
    assert!(ones(&high) > 0 && ones(&high) < ones(&low), "fewer ones at 0.9: {} vs {}", ones(&high), ones(&low));
    let bad = sb
        .command(&["predict", "--input", "data/winequality-red.csv", "--model-name", "wine-good", "--threshold", "1.5"])
        .assert_exit_code(2);
    assert!(bad.stderr().contains("--threshold"), "{}", bad.stderr());
    sb.command(&["train", "--params", "params/wine-grade.yaml"]).assert_ok();
    let r = sb
        .command(&[
            "predict",
            "--input",
            "data/winequality-red.csv",
            "--model-name",
            "wine-grade",
            "--threshold",
            "0.7",
        ])
        .output();
    assert_ne!(r.code(), Some(0));
    assert!(r.stderr().contains("binary classifier") && r.stderr().contains("6 classes"), "{}", r.stderr());
    assert!(r.stdout().is_empty(), "nothing scored with a refused model");
}

#[test]
fn a_threshold_chosen_at_training_is_stored_applied_and_stated() {
    let sb = Sandbox::new();
    let features = ["alcohol", "sulphates", "volatile acidity"];
    let with =
        |threshold: &str| good_params(&features).replace("\">= 7\"}", &format!("\">= 7\", threshold: {threshold}}}"));
    let train = |name: &str, text: &str| {
        sb.write(name, text);
        let out = sb.command(&["train", "--params", name, "--json"]).assert_ok().stdout_doc();
        let uri = out["uri"].as_str().unwrap().trim_start_matches("file://").to_string();
        let artifact: Value = serde_json::from_slice(&std::fs::read(sb.path().join(uri)).unwrap()).unwrap();
        (out, artifact["estimator"]["threshold"].as_f64().unwrap())
    };
    let (fixed, t_fixed) = train("params/half.yaml", &good_params(&features));
    let (best, t_best) = train("params/f1.yaml", &with("max_f1"));
    assert_eq!(t_fixed, 0.5);
    assert_ne!(t_best, 0.5, "the rare class's best F1 is not at 0.5");
    let f1 = |out: &Value| out["metrics"]["model"]["classification"]["f1"].as_f64().unwrap();
    let log_loss = |out: &Value| out["metrics"]["model"]["classification"]["log_loss"].as_f64().unwrap();
    // the same model, decided elsewhere: the best F1 on those rows is at least the one at 0.5
    assert_eq!(log_loss(&fixed), log_loss(&best));
    assert!(f1(&best) >= f1(&fixed), "{} < {}", f1(&best), f1(&fixed));
    // predict applies the stored threshold
    let lines = sb
        .command(&["predict", "--input", "data/winequality-red.csv", "--model", best["version"].as_str().unwrap()])
        .assert_ok()
        .stdout_json();
    let mut moved = 0;
    for l in &lines {
        let p1 = l["probabilities"]["1"].as_f64().unwrap();
        assert_eq!(l["class"], if p1 >= t_best { "1" } else { "0" }, "{l}");
        moved += usize::from((p1 >= t_best) != (p1 >= 0.5));
    }
    assert!(moved > 0, "some rows decided differently than at 0.5");
    // a precision goal holds on the held-out rows
    let (goal, _) = train("params/precise.yaml", &with("{precision: 0.6}"));
    let c = &goal["metrics"]["model"]["classification"]["confusion"];
    let (tp, fp) = (c[1][1].as_f64().unwrap(), c[0][1].as_f64().unwrap());
    assert!(tp / (tp + fp) >= 0.6, "precision {} on the held-out rows", tp / (tp + fp));
    // the report says how it was set
    let svg = sb.command(&["report", "wine-good", best["version"].as_str().unwrap(), "-o", "-"]).assert_ok().stdout();
    assert!(
        svg.contains("decision threshold") && svg.contains("best F1 of class 1"),
        "the report states the threshold"
    );
    // PMML cannot carry the threshold: refused before anything is fitted or stored
    let e = sb.command(&["train", "--params", "params/f1.yaml", "--export", "pmml"]).assert_exit_code(2).stderr();
    assert!(e.contains("--export") && e.contains("target.threshold") && e.contains("onnx"), "{e}");
    // mistakes are named
    for (text, wants) in [
        (with("1.5"), "strictly between 0 and 1"),
        (with("best"), "max_f1"),
        (with("{precision: 0.9, recall: 0.5}"), "{precision: 0.9}"),
        (
            "name: g\ndata: {train: data/winequality-red.csv}\nfeatures: {numeric: [alcohol]}\n\
             target: {column: quality, classes: [3, 4, 5, 6, 7, 8], threshold: 0.3}\nmodel: {kind: logistic_regression}\n"
                .to_string(),
            "two classes",
        ),
    ] {
        sb.write("params/bad.yaml", &text);
        let e = sb.command(&["train", "--params", "params/bad.yaml"]).assert_exit_code(2).stderr();
        assert!(e.contains("target.threshold") && e.contains(wants), "{wants}: {e}");
    }
}

#[test]
fn classification_mistakes_are_named() {
    let sb = Sandbox::new();
    let named = |params: &str, text: &str, wants: &[&str]| {
        sb.write(params, text);
        let r = sb.command(&["train", "--params", params]).assert_exit_code(2);
        for w in wants {
            assert!(r.stderr().contains(w), "{params}: {w:?} not in {}", r.stderr());
        }
    };
    let base = "name: m\ndata: {train: data/winequality-red.csv}\nfeatures: {numeric: [alcohol]}\n";
    named(
        "params/a.yaml",
        &format!("{base}target: quality\nmodel: {{kind: logistic_regression}}\n"),
        &["a.yaml", "target", "classes"],
    );
    named(
        "params/b.yaml",
        &format!("{base}target: {{column: quality, classes: [5, 6]}}\nmodel: {{kind: ridge, alpha: 1}}\n"),
        &["b.yaml", "target", "logistic_regression"],
    );
    named(
        "params/c.yaml",
        &format!(
            "{base}target: {{column: quality, positive: \">= 7\"}}\nmodel: {{kind: logistic_regression, alpha: 1}}\n"
        ),
        &["c.yaml", "model.alpha"],
    );
    named(
        "params/d.yaml",
        &format!("{base}target: {{column: quality, positive: \">= 7\"}}\nmodel: {{kind: logistic_regression}}\npromotion: {{metric: rmse}}\n"),
        &["d.yaml", "promotion.metric", "log_loss"],
    );
    // a label outside the classes: bad data (exit 1), named by file, line and the key to fix
    sb.write(
        "params/e.yaml",
        &format!("{base}target: {{column: quality, classes: [3, 4, 5, 6, 7]}}\nmodel: {{kind: logistic_regression}}\n"),
    );
    let r = sb.command(&["train", "--params", "params/e.yaml"]).assert_exit_code(1);
    let e = r.stderr();
    assert!(e.contains("winequality-red.csv:") && e.contains("\"8\"") && e.contains("target.classes"), "{e}");
    let r = sb
        .command(&["train", "--params", "params/wine-good.yaml", "--promote-if-better", "champion", "--metric", "rmse"])
        .assert_exit_code(2);
    assert!(r.stderr().contains("--metric"), "{}", r.stderr());
}

/// A classifier hot-swaps under load on Kafka: 0 lost, 0 scored twice, per partition v1 then
/// v2, and every prediction carries its class, its probabilities (summing to 1, in class order)
/// and the version that made it.
#[test]
fn serve_swaps_a_classifier_under_load_losing_nothing() {
    use std::collections::BTreeMap;

    use crate::util::bed::{bed, Wired};
    use crate::util::fixtures::wine_records;
    use crate::util::kafka::{produce, producer, read_all, read_topic, wait_count};
    use crate::util::logs::events;

    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "classes", 3);
    let good = std::fs::read_to_string(w.sb.path().join("params/wine-good.yaml")).unwrap();
    assert!(good.contains("  C: 1.0"), "wine-good.yaml changed; adjust the weak variant");
    w.sb.write("params/weak.yaml", &good.replace("  C: 1.0", "  C: 0.001"));
    w.train(&["--params", "params/weak.yaml"]).assert_ok();
    let mut svc = w.serve(&[]);
    svc.wait_ready(PATIENCE);
    let p = producer(&w.bootstrap);
    let n = 20_000;
    let records = wine_records(n);
    produce(&p, &w.topics.input, &records[..n / 2]);
    w.train(&["--params", "params/wine-good.yaml"]).assert_ok();
    let anns = read_topic(&w.bootstrap, &w.topics.train, 2, PATIENCE);
    let v: Vec<String> = anns.iter().map(|a| a.json()["version"].as_str().unwrap().to_string()).collect();
    produce(&p, &w.topics.input, &records[n / 2..]);
    wait_count(&w.bootstrap, &w.topics.app, n, PATIENCE);
    let (status, log) = svc.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}\n{log}");
    let preds = read_all(&w.bootstrap, &w.topics.app);
    assert_eq!(preds.len(), n, "each record scored exactly once");
    let mut seen = BTreeSet::new();
    let mut per_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    let mut p1_by_version: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for rec in &preds {
        let m = rec.json();
        assert!(seen.insert(m["key"].as_str().unwrap().to_string()), "scored twice: {}", m["key"]);
        assert_eq!(m["schema_version"], 2, "{m}");
        let k = v.iter().position(|x| m["model_version"].as_str() == Some(x)).expect("a known version");
        let probs = m["probabilities"].as_object().unwrap();
        assert_eq!(probs.keys().cloned().collect::<Vec<_>>(), ["0", "1"], "{m}");
        let p1 = probs["1"].as_f64().unwrap();
        assert!((probs["0"].as_f64().unwrap() + p1 - 1.0).abs() < 1e-12, "{m}");
        assert_eq!(m["class"].as_str().unwrap(), if p1 >= 0.5 { "1" } else { "0" }, "{m}");
        p1_by_version.entry(k).or_default().push(p1);
        per_partition
            .entry(m["partition"].as_i64().unwrap() as i32)
            .or_default()
            .push((m["offset"].as_i64().unwrap(), k));
    }
    assert_eq!(seen.len(), n);
    for (part, mut list) in per_partition {
        list.sort();
        assert!(list.windows(2).all(|w| w[0].1 <= w[1].1), "partition {part}: v1, then v2, never back");
    }
    assert_eq!(p1_by_version.len(), 2, "both versions scored records");
    // the weak model (C = 0.001) barely moves from its prior; the full one does
    let spread = |k: usize| {
        let p = &p1_by_version[&k];
        p.iter().cloned().fold(f64::MIN, f64::max) - p.iter().cloned().fold(f64::MAX, f64::min)
    };
    assert!(spread(1) > 2.0 * spread(0), "v1 spread {} vs v2 {}", spread(0), spread(1));
    let swaps = events(&log, "model_swapped");
    assert_eq!(swaps.len(), 1, "{log}");
    assert_eq!((swaps[0]["from"].as_str(), swaps[0]["to"].as_str()), (Some(v[0].as_str()), Some(v[1].as_str())));
}
