//! Export parity: a model exported with `train --export onnx,pmml` (and `modelcast export`)
//! scores like `modelcast predict` in onnxruntime (float32, within 1e-5), tract (the portable
//! graph of linear kinds, float32, within 1e-5) and pypmml (float64, within 1e-9), relative to
//! max(|prediction|, 1), for every kind, on the red wine held-out rows and on a categorical
//! fixture with missing values, `N.V.` tokens and unseen categories. A classifier's probabilities
//! too (onnxruntime 1e-5, pypmml 1e-9, absolute) and its label on every row that is not a near tie.
//!
//! The checkers come from the test bed (`scripts/services.sh install`: a cached venv with
//! onnxruntime and pypmml, a Java runtime, `tract-check`). Without them the test is skipped with a
//! note; with `MODELCAST_REQUIRE_SERVICES=1` that is a failure unless the bed was told not to
//! install them (`MODELCAST_EXPORT_CHECKS=0`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::util::{checkers_python, repo, Sandbox};

struct Checkers {
    python: PathBuf,
    tract: Option<PathBuf>,
}

fn checkers() -> Option<Checkers> {
    let tract = std::env::var_os("MODELCAST_TEST_TRACT").map(PathBuf::from).filter(|p| p.is_file());
    let python = checkers_python("export parity")?;
    assert!(
        tract.is_some() || !crate::util::checkers_required(),
        "MODELCAST_REQUIRE_SERVICES=1 but tract-check is missing (MODELCAST_TEST_TRACT; scripts/services.sh install \
         makes it, MODELCAST_EXPORT_CHECKS=0 skips it)"
    );
    Some(Checkers { python, tract })
}

/// A case: data, columns, tokens, the model section, and the rows to score.
struct Case {
    name: &'static str,
    yaml: String,
    score_csv: String,
    numeric: Vec<String>,
    categorical: Vec<String>,
    linear: bool,
}

const WINE_NUM: [&str; 11] = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
];

fn wine_case(name: &'static str, model: &str, linear: bool) -> Case {
    wine_case_of(name, "quality", model, linear)
}

/// A wine case with another target (classes).
fn wine_case_of(name: &'static str, target: &str, model: &str, linear: bool) -> Case {
    let text = std::fs::read_to_string(repo().join("data/winequality-red.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (_, test) = modelcast::data::split_indices(lines.len() - 1, 0.2, 42);
    let mut score_csv = format!("{}\n", lines[0]);
    for i in test {
        score_csv.push_str(lines[i + 1]);
        score_csv.push('\n');
    }
    let yaml = format!(
        "name: {name}\ndata: {{train: {}}}\ntarget: {target}\nfeatures: {{numeric: {}}}\nmodel: {model}\n",
        repo().join("data/winequality-red.csv").display(),
        serde_json::to_string(&WINE_NUM).unwrap()
    );
    Case {
        name,
        yaml,
        score_csv,
        numeric: WINE_NUM.iter().map(|s| s.to_string()).collect(),
        categorical: vec![],
        linear,
    }
}

fn mixed_case(name: &'static str, model: &str, linear: bool) -> Case {
    mixed_case_of(name, "y", model, linear)
}

/// A mixed case with another target (classes).
fn mixed_case_of(name: &'static str, target: &str, model: &str, linear: bool) -> Case {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/mixed.csv")).unwrap();
    let mut score_csv: String = text.lines().take(61).map(|l| format!("{l}\n")).collect();
    // tokens, gaps and categories never seen in training
    for row in [
        "900,0.5,N.V.,-0.3,purple,M,0",
        "901,N.V.,1.2,0.4,N.V.,XXL,0",
        "902,-1.5,,2.0,,S,0",
        "903,0.1,0.2,0.3,red,N.V.,0",
        "904,,,,blue,,0",
        "905,2.5,-2.5,1.0,orange,tiny,0",
    ] {
        score_csv.push_str(row);
        score_csv.push('\n');
    }
    let yaml = format!(
        "name: {name}\ndata: {{train: {}, missing_tokens: ['', 'NA', 'N.V.']}}\ntarget: {target}\n\
         features: {{numeric: [x1, x2, x3], categorical: [color, size]}}\nmissing: {{numeric: median}}\nmodel: {model}\n",
        repo().join("tests/fixtures/mixed.csv").display()
    );
    Case {
        name,
        yaml,
        score_csv,
        numeric: vec!["x1".into(), "x2".into(), "x3".into()],
        categorical: vec!["color".into(), "size".into()],
        linear,
    }
}

/// Every kind at least once (checked against the kinds `train` accepts).
fn cases() -> Vec<Case> {
    vec![
        wine_case("wine-ridge", "{kind: ridge, alpha: 1.0}", true),
        // strong enough that some coefficients are exactly zero
        wine_case("wine-lasso", "{kind: lasso, alpha: 0.05}", true),
        wine_case("wine-forest", "{kind: random_forest, n_estimators: 30, seed: 7}", false),
        wine_case("wine-boosting", "{kind: gradient_boosting}", false),
        mixed_case("mixed-linear", "{kind: linear}", true),
        mixed_case("mixed-elastic-net", "{kind: elastic_net, alpha: 0.05, l1_ratio: 0.5}", true),
        mixed_case("mixed-forest", "{kind: random_forest, n_estimators: 20, min_samples_leaf: 2}", false),
        mixed_case("mixed-boosting", "{kind: gradient_boosting, max_iter: 50, min_samples_leaf: 5}", false),
        // classifiers: two classes and six, linear and trees, with categorical and missing columns
        wine_case_of("good-logistic", GOOD, "{kind: logistic_regression}", true),
        wine_case_of("grade-logistic", GRADE, "{kind: logistic_regression}", true),
        mixed_case_of("mixed-logistic", "{column: y, positive: '>= 0'}", "{kind: logistic_regression, C: 0.5}", true),
        wine_case_of("good-forest", GOOD, "{kind: random_forest_classifier, n_estimators: 20, seed: 3}", false),
        wine_case_of(
            "grade-forest",
            GRADE,
            "{kind: random_forest_classifier, n_estimators: 20, min_samples_leaf: 3, seed: 3}",
            false,
        ),
        wine_case_of("good-boosting", GOOD, "{kind: gradient_boosting_classifier, max_iter: 40}", false),
        wine_case_of("grade-boosting", GRADE, "{kind: gradient_boosting_classifier, max_iter: 20}", false),
        mixed_case_of(
            "mixed-boosting-classes",
            "{column: y, positive: '>= 0'}",
            "{kind: gradient_boosting_classifier, max_iter: 20, min_samples_leaf: 5}",
            false,
        ),
    ]
}

const GOOD: &str = "{column: quality, positive: '>= 7'}";
const GRADE: &str = "{column: quality, classes: [3, 4, 5, 6, 7, 8]}";

/// The model kinds `train` accepts, from its own refusal of an unknown one.
fn kinds_train_accepts(sb: &Sandbox) -> BTreeSet<String> {
    let base = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    let (head, _) = base.split_once("\nmodel:").unwrap();
    let params = sb.write("no-such-kind.yaml", &format!("{head}\nmodel: {{kind: no_such_kind}}\n"));
    let e = sb.command(&["train", "--params", params.to_str().unwrap()]).assert_exit_code(2).stderr();
    let listed = e.split_once("expected one of").unwrap_or_else(|| panic!("no list of kinds in: {e}")).1;
    let kinds: BTreeSet<String> = listed.split('`').skip(1).step_by(2).map(str::to_string).collect();
    assert!(kinds.len() >= 6, "{e}");
    kinds
}

/// `modelcast predict`'s messages by input line.
fn modelcast_predictions(sb: &Sandbox, version: &str, input: &Path) -> BTreeMap<u64, Value> {
    let run = sb.command(&["predict", "--input", input.to_str().unwrap(), "--model", version]).assert_ok();
    run.stdout_json().into_iter().map(|p| (p["line"].as_u64().unwrap(), p)).collect()
}

/// A classifier's answers in another runtime against modelcast's: every probability within
/// `tol` (absolute), and the same label wherever the decision is not a near tie (the runtime's
/// float32 may round a tie the other way). Returns the worst difference and the near ties.
fn same_classes(what: &str, case: &str, want: &BTreeMap<u64, Value>, got: &[Value], tol: f64) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "{case} {what}: one answer per row");
    let (mut worst, mut ties) = (0.0f64, 0);
    for ((line, w), g) in want.iter().zip(got) {
        let classes: Vec<&String> = w["probabilities"].as_object().unwrap().keys().collect();
        let wp: Vec<f64> = w["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).collect();
        let gp: Vec<f64> = g["probabilities"]
            .as_array()
            .unwrap_or_else(|| panic!("{case} {what}: no probabilities for line {line}: {g}"))
            .iter()
            .map(|v| v.as_f64().unwrap_or_else(|| panic!("{case} {what}: line {line}: {g}")))
            .collect();
        assert_eq!(gp.len(), wp.len(), "{case} {what}: line {line}: {g}");
        for (a, b) in wp.iter().zip(&gp) {
            let err = (a - b).abs();
            assert!(err <= tol, "{case} {what}: line {line}: modelcast {wp:?}, {what} {gp:?} ({err:e} > {tol:e})");
            worst = worst.max(err);
        }
        let mut sorted = wp.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let near_tie = if wp.len() == 2 { (wp[1] - 0.5).abs() <= 1e-6 } else { sorted[0] - sorted[1] <= 1e-6 };
        if near_tie {
            ties += 1;
        } else {
            assert_eq!(g["label"].as_str(), w["class"].as_str(), "{case} {what}: line {line}: {g} vs {w}");
        }
        assert!(classes.iter().any(|c| Some(c.as_str()) == w["class"].as_str()));
    }
    (worst, ties)
}

fn close(what: &str, case: &str, want: &BTreeMap<u64, Value>, got: &[Value], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{case} {what}: one prediction per row");
    let mut worst = 0.0f64;
    for ((line, w), g) in want.iter().zip(got) {
        let w = w["prediction"].as_f64().unwrap();
        let g = g.as_f64().unwrap_or_else(|| panic!("{case} {what}: no prediction for line {line}: {g}"));
        let err = (w - g).abs() / w.abs().max(1.0);
        assert!(err <= tol, "{case} {what}: line {line}: modelcast {w}, {what} {g} ({err:e} > {tol:e})");
        worst = worst.max(err);
    }
    worst
}

/// The tract-check input: the score CSV's columns as numbers (tokens → null) and strings.
fn tract_input(case: &Case, tokens: &[&str]) -> Value {
    let mut lines = case.score_csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').map(|h| h.trim_matches('"')).collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (mut num, mut cat) = (vec![], vec![]);
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        num.push(
            case.numeric
                .iter()
                .map(|c| {
                    let v = cells[col(c)].trim();
                    if tokens.contains(&v) {
                        Value::Null
                    } else {
                        json!(v.parse::<f64>().unwrap())
                    }
                })
                .collect::<Vec<_>>(),
        );
        cat.push(case.categorical.iter().map(|c| json!(cells[col(c)].trim())).collect::<Vec<_>>());
    }
    json!({"numeric": num, "categorical": cat})
}

#[test]
fn exports_score_like_modelcast_in_onnxruntime_tract_and_pypmml() {
    let Some(ck) = checkers() else { return };
    let sb = Sandbox::new();
    let mut summary = vec![];
    let mut exported = BTreeSet::new();
    for case in cases() {
        let params = sb.write(&format!("{}.yaml", case.name), &case.yaml);
        let out = sb
            .command(&["train", "--params", params.to_str().unwrap(), "--export", "onnx,pmml", "--json"])
            .assert_ok()
            .stdout_doc();
        let version = out["version"].as_str().unwrap().to_string();
        exported.insert(out["kind"].as_str().unwrap().to_string());
        let artifact = PathBuf::from(out["uri"].as_str().unwrap().trim_start_matches("file://"));
        let artifact = if artifact.is_absolute() { artifact } else { sb.path().join(artifact) };
        // the exports are stored beside the artifact and announced with their sha256
        let exports = out["exports"].as_array().unwrap();
        assert_eq!(exports.len(), 2, "{}: {out}", case.name);
        let announced = sb.log_lines("train");
        let ann = announced.iter().find(|a| a["version"] == version.as_str()).unwrap();
        assert_eq!(&ann["exports"], &out["exports"], "{}: the announcement carries the exports", case.name);
        let mut files = BTreeMap::new();
        for e in exports {
            let path = artifact.with_extension(e["format"].as_str().unwrap());
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(e["sha256"].as_str().unwrap(), modelcast::util::hash::sha256_hex(&bytes), "{}", path.display());
            assert_eq!(e["key"].as_str().unwrap().rsplit('/').next(), path.file_name().unwrap().to_str());
            files.insert(e["format"].as_str().unwrap().to_string(), (path, bytes));
        }
        // `modelcast export` writes the same bytes
        for (format, (_, bytes)) in &files {
            let dest = sb.path().join(format!("{}.{format}", case.name));
            sb.command(&["export", case.name, &version, "--format", format, "-o", dest.to_str().unwrap()]).assert_ok();
            assert_eq!(&std::fs::read(&dest).unwrap(), bytes, "{} {format}: export = train --export", case.name);
        }
        let input = sb.write(&format!("{}-score.csv", case.name), &case.score_csv);
        let want = modelcast_predictions(&sb, &version, &input);
        assert_eq!(want.len(), case.score_csv.lines().count() - 1, "{}: modelcast scores every row", case.name);
        let py = Command::new(&ck.python)
            .arg(repo().join("scripts/export_check.py"))
            .args(["--artifact", artifact.to_str().unwrap(), "--input", input.to_str().unwrap()])
            .args(["--onnx", files["onnx"].0.to_str().unwrap(), "--pmml", files["pmml"].0.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(py.status.success(), "{}: export_check.py: {}", case.name, String::from_utf8_lossy(&py.stderr));
        let got: Value = serde_json::from_slice(&py.stdout).unwrap();
        let ort = close("onnxruntime", case.name, &want, got["onnxruntime"].as_array().unwrap(), 1e-5);
        let pmml = close("pypmml", case.name, &want, got["pypmml"].as_array().unwrap(), 1e-9);
        let classifier = want.values().next().is_some_and(|w| w.get("probabilities").is_some());
        let mut class_note = String::new();
        if classifier {
            for (runtime, tol) in [("onnxruntime", 1e-5), ("pypmml", 1e-9)] {
                let answers = got[format!("{runtime}_classes")]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: {runtime} gave no classes: {got}", case.name));
                let (worst, ties) = same_classes(runtime, case.name, &want, answers, tol);
                assert!(ties * 50 <= want.len(), "{}: {runtime}: {ties} near ties of {} rows", case.name, want.len());
                class_note.push_str(&format!(", {runtime} probabilities {worst:.1e} ({ties} near ties)"));
            }
        }
        let mut tract = None;
        if let (true, Some(t)) = (case.linear, &ck.tract) {
            let tin =
                sb.write(&format!("{}-tract.json", case.name), &tract_input(&case, &["", "NA", "N.V."]).to_string());
            let o = Command::new(t).args([files["onnx"].0.as_os_str(), tin.as_os_str()]).output().unwrap();
            assert!(o.status.success(), "{}: tract-check: {}", case.name, String::from_utf8_lossy(&o.stderr));
            let preds: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
            tract = Some(close("tract", case.name, &want, &preds, 1e-5));
        }
        summary.push(format!("{}: onnxruntime {ort:.1e}, pypmml {pmml:.1e}, tract {tract:?}{class_note}", case.name));
    }
    eprintln!("worst relative differences:\n  {}", summary.join("\n  "));

    let kinds = kinds_train_accepts(&sb);
    assert_eq!(exported, kinds, "export parity is tested on every kind");
}

/// The float32 graph is not enough for every linear model: a ridge model on 1,400 shops (one-hot,
/// effects up to ±900 around an intercept of 163) and seconds since the epoch (a trend of 0.001 a
/// second: float32 holds 1.7e9 only to 128 s). `export --float64` scores it like `modelcast
/// predict` within 1e-9 relative in onnxruntime; the float32 graph misses by far more.
#[test]
fn a_float64_graph_scores_a_large_one_hot_model_with_epoch_seconds_like_modelcast() {
    let Some(ck) = checkers() else { return };
    let sb = Sandbox::new();
    let effect = |s: usize| ((s * 7919) % 1801) as f64 - 900.0;
    let mut train = String::from("t,shop,y\n");
    for i in 0..8400usize {
        let (s, t) = (i % 1400, 1_700_000_000 + (i * 7_919_017) % 1_000_000);
        let noise = ((i * 104_729) % 1000) as f64 / 1000.0 - 0.5;
        let y = 163.0 + effect(s) + 0.001 * (t - 1_700_000_000) as f64 + noise;
        train.push_str(&format!("{t},s{s},{y}\n"));
    }
    sb.write("shops.csv", &train);
    let mut score: String = train.lines().step_by(20).map(|l| format!("{l}\n")).collect();
    score.push_str("1700123456,never-seen,0\n");
    let score_csv = sb.write("shops-score.csv", &score);
    sb.write(
        "params/shops.yaml",
        "name: shops\ndata: {train: shops.csv}\ntarget: y\n\
         features: {numeric: [t], categorical: [shop]}\nmodel: {kind: ridge, alpha: 0.001}\n",
    );
    let out = sb.command(&["train", "--params", "params/shops.yaml", "--json"]).assert_ok().stdout_doc();
    let version = out["version"].as_str().unwrap().to_string();
    let artifact = PathBuf::from(out["uri"].as_str().unwrap().trim_start_matches("file://"));
    let artifact = if artifact.is_absolute() { artifact } else { sb.path().join(artifact) };
    let want = modelcast_predictions(&sb, &version, &score_csv);
    let worst = |flags: &[&str], file: &str| {
        let dest = sb.path().join(file);
        let mut args = vec!["export", "shops", version.as_str(), "--format", "onnx", "-o", dest.to_str().unwrap()];
        args.extend_from_slice(flags);
        sb.command(&args).assert_ok();
        let py = Command::new(&ck.python)
            .arg(repo().join("scripts/export_check.py"))
            .args(["--artifact", artifact.to_str().unwrap(), "--input", score_csv.to_str().unwrap()])
            .args(["--onnx", dest.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(py.status.success(), "export_check.py: {}", String::from_utf8_lossy(&py.stderr));
        let got: Value = serde_json::from_slice(&py.stdout).unwrap();
        close(file, "shops", &want, got["onnxruntime"].as_array().unwrap(), f64::INFINITY)
    };
    let f64_err = worst(&["--float64"], "shops64.onnx");
    let f32_err = worst(&[], "shops32.onnx");
    eprintln!("shops: worst relative difference float64 {f64_err:.1e}, float32 {f32_err:.1e}");
    assert!(f64_err <= 1e-9, "the float64 graph: {f64_err:e}");
    assert!(f32_err > 1e-5, "this model needs float64: the float32 graph missed by only {f32_err:e}");
    // --float64 is for ONNX of linear kinds
    let e = sb.command(&["export", "shops", "--format", "pmml", "--float64"]).assert_exit_code(2).stderr();
    assert!(e.contains("--float64") && e.contains("PMML"), "{e}");
    let base = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    let (head, _) = base.split_once("\nmodel:").unwrap();
    let head = head.replace("name: wine-quality", "name: wine-forest");
    assert!(head.contains("name: wine-forest"), "params.yaml changed; adjust the test");
    sb.write("params/forest.yaml", &format!("{head}\nmodel: {{kind: random_forest, n_estimators: 3}}\n"));
    sb.command(&["train", "--params", "params/forest.yaml"]).assert_ok();
    let e = sb.command(&["export", "wine-forest", "--format", "onnx", "--float64"]).assert_exit_code(2).stderr();
    assert!(e.contains("float32 graph is exact"), "{e}");
}
