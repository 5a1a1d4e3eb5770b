//! The training report: stored beside the artifact by `train`, fetched by `modelcast report`,
//! and rendered by a real browser (headless Chromium) with its plots laid out inside their frames.

use std::path::PathBuf;

use serde_json::Value;

use crate::util::Sandbox;

/// Chromium from the test bed (`MODELCAST_TEST_CHROMIUM`, set by `scripts/services.sh`) or the
/// PATH. Without it the test is skipped with a note; with `MODELCAST_REQUIRE_SERVICES=1` a
/// missing browser is a failure, unless the test bed was told to skip it (`MODELCAST_CHROMIUM=0`).
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("MODELCAST_TEST_CHROMIUM").map(PathBuf::from).filter(|p| p.is_file()).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|n| d.join(n)))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        let opted_out = std::env::var("MODELCAST_CHROMIUM").as_deref() == Ok("0");
        assert!(
            opted_out || std::env::var("MODELCAST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "MODELCAST_REQUIRE_SERVICES=1 but no Chromium (scripts/services.sh installs Debian's chromium; \
             MODELCAST_CHROMIUM=0 skips it)"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium)");
    }
    found
}

#[test]
fn train_stores_a_report_that_report_fetches_by_version_alias_and_newest() {
    let sb = Sandbox::new();
    let out: Value = serde_json::from_str(&sb.command(&["train", "--json"]).assert_ok().stdout()).unwrap();
    let version = out["version"].as_str().unwrap();
    let report_uri = out["report_uri"].as_str().unwrap();
    assert!(report_uri.ends_with(&format!("/{version}.report.svg")), "{report_uri}");
    let stored = std::fs::read(sb.path().join(report_uri.trim_start_matches("file://"))).unwrap();

    // newest version, to ./MODEL-VERSION.report.svg; its path on stdout
    let path = sb.command(&["report", "wine-quality"]).assert_ok().stdout();
    assert_eq!(path.trim(), format!("wine-quality-{version}.report.svg"));
    assert_eq!(std::fs::read(sb.path().join(path.trim())).unwrap(), stored);
    // by version, to stdout
    let piped = sb.command(&["report", "wine-quality", version, "-o", "-"]).assert_ok().stdout();
    assert_eq!(piped.as_bytes(), stored);
    // by alias, once it is set
    let e = sb.command(&["report", "wine-quality", "champion"]).assert_exit_code(1).stderr();
    assert!(e.contains("alias champion of wine-quality is not set"), "{e}");
    sb.command(&["promote", "wine-quality", version]).assert_ok();
    sb.command(&["report", "wine-quality", "champion", "-o", "champion.svg"]).assert_ok();
    assert_eq!(std::fs::read(sb.path().join("champion.svg")).unwrap(), stored);
    // an unknown version is named
    let e = sb.command(&["report", "wine-quality", "20200101T000000000Z-00000000"]).assert_exit_code(1).stderr();
    assert!(e.contains("version 20200101T000000000Z-00000000 is not in"), "{e}");
    // the listing does not mistake reports for models
    let models: Value = serde_json::from_str(&sb.command(&["models", "--json"]).assert_ok().stdout()).unwrap();
    assert_eq!(models.as_array().unwrap().len(), 1, "{models}");
}

/// Measured by the browser after layout: every plot's frame, and every mark's box.
const MEASURE: &str = r#"<pre id="result"></pre><script>
const plots = [...document.querySelectorAll('svg g.plot')].map(g => {
  const f = g.querySelector('rect.frame').getBoundingClientRect();
  const marks = [...g.querySelectorAll('.mark')].map(m => m.getBoundingClientRect());
  // laid out (a curve may be a vertical or horizontal line: one of its sizes is then 0)
  const inside = marks.filter(m => (m.width > 0 || m.height > 0) &&
    m.left >= f.left - 3 && m.right <= f.right + 3 && m.top >= f.top - 3 && m.bottom <= f.bottom + 3).length;
  const text = [...g.querySelectorAll('text')].filter(t => t.getBBox().width > 0).length;
  return {id: g.id, width: f.width, height: f.height, marks: marks.length, inside, text};
});
document.getElementById('result').textContent = JSON.stringify(plots);
</script>"#;

#[test]
fn the_report_renders_in_chromium_with_its_plots_inside_their_frames() {
    let Some(chromium) = chromium() else { return };
    let sb = Sandbox::new();
    let out: Value = serde_json::from_str(&sb.command(&["train", "--json"]).assert_ok().stdout()).unwrap();
    let test_rows = out["test_rows"].as_u64().unwrap() as usize;
    let svg = sb.command(&["report", "wine-quality", "-o", "-"]).assert_ok().stdout();
    let plots = measure(&chromium, &sb, &svg);
    let by_id = |id: &str| plots.iter().find(|p| p["id"] == id).unwrap_or_else(|| panic!("no plot {id}: {plots:?}"));
    let features = 11;
    for (id, marks) in [
        ("predicted-vs-actual", test_rows.min(modelcast::report::MAX_POINTS)),
        ("residuals", test_rows.min(modelcast::report::MAX_POINTS)),
        ("coefficients", features),
        ("metrics", 4),
    ] {
        let p = by_id(id);
        assert!(p["width"].as_f64().unwrap() > 200.0 && p["height"].as_f64().unwrap() > 150.0, "{p}");
        assert_eq!(p["marks"].as_u64().unwrap() as usize, marks, "{p}");
        // every point and bar was laid out with a size, inside its plot's frame
        assert_eq!(p["inside"], p["marks"], "{p}");
        assert!(p["text"].as_u64().unwrap() >= 4, "axes and titles rendered: {p}");
    }
    // the drift reference: a histogram per input column and one of the predictions, a bar per bin
    let artifact: Value = serde_json::from_slice(
        &std::fs::read(sb.path().join(out["uri"].as_str().unwrap().trim_start_matches("file://"))).unwrap(),
    )
    .unwrap();
    let reference = &artifact["drift"];
    let bins: Vec<usize> = reference["columns"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&reference["prediction"]])
        .map(|c| c["proportions"].as_array().unwrap().len())
        .collect();
    assert_eq!(bins.len(), features + 1);
    for (i, n) in bins.into_iter().enumerate() {
        let p = by_id(&format!("reference-{i}"));
        assert!(n >= 2 && p["marks"].as_u64() == Some(n as u64), "reference-{i}: {n} bins: {p}");
        assert_eq!(p["inside"], p["marks"], "{p}");
        assert!(p["text"].as_u64().unwrap() >= 3, "name, kind and missing rate rendered: {p}");
    }
}

/// The plots of a report as Chromium laid them out.
fn measure(chromium: &std::path::Path, sb: &Sandbox, svg: &str) -> Vec<Value> {
    let page =
        sb.write("page.html", &format!("<!doctype html><html><body style=\"margin:0\">{svg}{MEASURE}</body></html>"));
    let run = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", sb.path().join("chromium-profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "chromium failed: {}", String::from_utf8_lossy(&run.stderr));
    let json = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result in the DOM:\n{dom:.2000}"));
    serde_json::from_str(&json.replace("&quot;", "\"")).unwrap()
}

#[test]
fn a_classifier_report_draws_its_curves_calibration_and_confusion_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let sb = Sandbox::new();
    for (params, name, classes) in
        [("params/wine-good.yaml", "wine-good", 2usize), ("params/wine-grade.yaml", "wine-grade", 6)]
    {
        let out = sb.command(&["train", "--params", params, "--json"]).assert_ok().stdout_doc();
        let confusion = &out["metrics"]["model"]["classification"]["confusion"];
        let svg = sb.command(&["report", name, "-o", "-"]).assert_ok().stdout();
        assert!(!svg.contains("predicted-vs-actual"), "{name}: a classifier has no regression panels");
        let plots = measure(&chromium, &sb, &svg);
        let by_id = |id: &str| {
            plots.iter().find(|p| p["id"] == id).unwrap_or_else(|| panic!("{name}: no plot {id}: {plots:?}"))
        };
        let curves = if classes == 2 { 1 } else { classes };
        for (id, marks) in [
            ("roc", Some(curves)),
            ("precision-recall", Some(curves)),
            ("calibration", None),
            ("confusion", Some(classes * classes)),
            ("coefficients", Some(11)),
            ("metrics", Some(4)),
        ] {
            let p = by_id(id);
            assert!(p["width"].as_f64().unwrap() > 200.0 && p["height"].as_f64().unwrap() > 150.0, "{name}: {p}");
            let n = p["marks"].as_u64().unwrap() as usize;
            match marks {
                Some(m) => assert_eq!(n, m, "{name}: {p}"),
                // a point per non-empty probability bin
                None => assert!((2..=modelcast::report::CALIBRATION_BINS).contains(&n), "{name}: {p}"),
            }
            assert_eq!(p["inside"], p["marks"], "{name}: every mark laid out inside its frame: {p}");
            assert!(p["text"].as_u64().unwrap() >= 3, "{name}: axes and titles rendered: {p}");
        }
        // the matrix's cells are the artifact's confusion matrix
        for (a, row) in confusion.as_array().unwrap().iter().enumerate() {
            for (p, n) in row.as_array().unwrap().iter().enumerate() {
                assert!(svg.contains(&format!(": {n}</title>")), "{name}: cell {a},{p} = {n} not drawn");
            }
        }
    }
}
