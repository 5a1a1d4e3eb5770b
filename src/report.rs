//! The training report: one self-contained SVG that a person looks at instead of reading JSON.
//! A regressor's four panels: predicted against actual, residuals against predicted, the
//! coefficients (standardised: the change in the target for one standard deviation of the
//! feature, largest first) and the held-out metrics against the mean-of-target baseline. A
//! classifier's six: the ROC and precision-recall curves (class 1's of two, one per class
//! against the rest for more), a calibration plot, the confusion matrix, the coefficients or
//! importances, and its metrics against the class prior. The curves come from histograms of the
//! held-out probabilities ([`ClassCurves`], [`CURVE_BINS`] bins: every held-out row counts, in
//! memory that does not grow with them).
//!
//! Pure: [`ReportData::new`] summarises a fit, [`render`] draws it. `train` stores the result
//! beside the artifact as `<version>.report.svg`; `modelcast report` fetches it.
//!
//! No chart crate: the few that write SVG need a font stack to place text (plotters' `ttf` or
//! `ab_glyph`), which is more compile time than the hundred lines of geometry below.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, Evaluation};
use crate::design::{ChunkFn, Design};
use crate::drift::{Distribution, NumericReference, Reference};
use crate::model::Fit;
use crate::util::escape::esc;

/// Held-out points drawn at most (evenly strided over the held-out rows, so the picture does not
/// depend on anything but the data); a million-row hold-out would make a 100 MB picture.
pub const MAX_POINTS: usize = 2000;

/// Coefficients drawn at most (the largest by magnitude; the rest are counted).
pub const MAX_COEFFICIENTS: usize = 20;

/// Bins of the probability histograms behind a classifier's ROC and precision-recall curves.
pub const CURVE_BINS: usize = 200;

/// Bins of a classifier's calibration plot.
pub const CALIBRATION_BINS: usize = 10;

/// A classifier's held-out probabilities, summarised for its curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCurves {
    /// The classes, in probability order.
    pub classes: Vec<String>,
    /// Per scored class (class 1 alone of two, every class of more): the held-out rows of that
    /// class (`pos`) and of the others (`neg`) by [`CURVE_BINS`] bin of its probability.
    pub scored: Vec<ScoreHistogram>,
    /// By [`CALIBRATION_BINS`] bin of the predicted probability (class 1's of two, else the
    /// predicted class's): rows, the sum of that probability, and the rows where it came true.
    pub calibration: Vec<CalibrationBin>,
}

/// One class's probabilities, split by the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    /// The class index.
    pub class: usize,
    /// Rows of this class, by bin.
    pub pos: Vec<u64>,
    /// Rows of other classes, by bin.
    pub neg: Vec<u64>,
}

/// One bin of the calibration plot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Rows.
    pub rows: u64,
    /// Sum of their predicted probabilities.
    pub predicted: f64,
    /// Rows where the predicted event happened.
    pub observed: u64,
}

fn bin_of(p: f64, bins: usize) -> usize {
    ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1)
}

impl ClassCurves {
    /// Empty curves for `classes`.
    pub fn new(classes: Vec<String>) -> ClassCurves {
        let scored = if classes.len() == 2 { vec![1] } else { (0..classes.len()).collect() };
        ClassCurves {
            scored: scored
                .into_iter()
                .map(|class| ScoreHistogram { class, pos: vec![0; CURVE_BINS], neg: vec![0; CURVE_BINS] })
                .collect(),
            calibration: vec![CalibrationBin::default(); CALIBRATION_BINS],
            classes,
        }
    }

    /// Count one held-out row: its class and the model's probabilities.
    pub fn add(&mut self, truth: usize, probs: &[f64]) {
        for h in &mut self.scored {
            let b = bin_of(probs[h.class], CURVE_BINS);
            if h.class == truth {
                h.pos[b] += 1;
            } else {
                h.neg[b] += 1;
            }
        }
        let (p, happened) = if probs.len() == 2 {
            (probs[1], truth == 1)
        } else {
            let k = crate::model::logistic::decide(probs, 0.5);
            (probs[k], truth == k)
        };
        let c = &mut self.calibration[bin_of(p, CALIBRATION_BINS)];
        c.rows += 1;
        c.predicted += p;
        c.observed += u64::from(happened);
    }

    /// `(false positive rate, true positive rate)` of scored class `i`, threshold by threshold
    /// from the top bin down; empty without both positives and negatives.
    pub fn roc(&self, i: usize) -> Vec<(f64, f64)> {
        self.walk(i).map(|(tp, fp, p, n)| (fp / n, tp / p)).collect()
    }

    /// `(recall, precision)` of scored class `i`, threshold by threshold.
    pub fn precision_recall(&self, i: usize) -> Vec<(f64, f64)> {
        self.walk(i).filter(|(tp, fp, ..)| tp + fp > 0.0).map(|(tp, fp, p, _)| (tp / p, tp / (tp + fp))).collect()
    }

    /// Cumulative `(tp, fp, positives, negatives)` from the top bin down, starting at nothing.
    fn walk(&self, i: usize) -> impl Iterator<Item = (f64, f64, f64, f64)> + '_ {
        let h = &self.scored[i];
        let (p, n) = (h.pos.iter().sum::<u64>() as f64, h.neg.iter().sum::<u64>() as f64);
        let ok = p > 0.0 && n > 0.0;
        let (mut tp, mut fp) = (0.0, 0.0);
        std::iter::once((0.0, 0.0, p, n))
            .chain((0..CURVE_BINS).rev().map(move |b| {
                tp += h.pos[b] as f64;
                fp += h.neg[b] as f64;
                (tp, fp, p, n)
            }))
            .filter(move |_| ok)
    }
}

/// Store key of a model version's report: `<name>/<YYYY-MM-DD>/<version>.report.svg`, beside
/// its artifact.
pub fn key_of(artifact_key: &str) -> String {
    format!("{}.report.svg", artifact_key.strip_suffix(".json").unwrap_or(artifact_key))
}

/// What the report shows, summarised from a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    /// Model name.
    pub model_name: String,
    /// Version id.
    pub version: String,
    /// Estimator kind.
    pub kind: String,
    /// Target column.
    pub target: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Rows fitted.
    pub train_rows: usize,
    /// Rows held out.
    pub test_rows: usize,
    /// `(actual, predicted)` of at most [`MAX_POINTS`] held-out rows.
    pub points: Vec<(f64, f64)>,
    /// `(feature, coefficient × the feature's standard deviation on the training rows)`, or for
    /// trees `(feature, importance)`, largest magnitude first (ties by name).
    pub coefficients: Vec<(String, f64)>,
    /// Held-out and training metrics, and the baseline's.
    pub metrics: Evaluation,
    /// A classifier's curves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<ClassCurves>,
    /// A binary classifier's decision threshold and how it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The drift reference stored in the artifact: what each input column and the held-out
    /// predictions looked like, drawn as small histograms under the other panels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

/// Every how many held-out rows a point is drawn: at most [`MAX_POINTS`] points of `n` rows.
pub fn stride(n: usize) -> usize {
    n.div_ceil(MAX_POINTS).max(1)
}

impl ReportData {
    /// Summarise `artifact`, its held-out `(actual, predicted)` points (every [`stride`]-th
    /// held-out row) and the standard deviation of each design column on the training rows (see
    /// [`column_sd`]), and a classifier's curves.
    pub fn new(artifact: &Artifact, points: Vec<(f64, f64)>, sd: &[f64], classes: Option<ClassCurves>) -> ReportData {
        let names = &artifact.estimator.feature_names;
        let mut coefficients: Vec<(String, f64)> = match &artifact.estimator.fit {
            Fit::Linear(fit) => names
                .iter()
                .zip(&fit.coefficients)
                .zip(sd.iter().chain(std::iter::repeat(&1.0)))
                .map(|((name, c), s)| (name.clone(), c * s))
                .collect(),
            Fit::Trees(t) => names.iter().cloned().zip(t.trees.importances.iter().copied()).collect(),
            Fit::TreeClassifier(t) => names.iter().cloned().zip(t.trees.importances.iter().copied()).collect(),
            // standardised; for more than two classes, each column's largest over the classes
            Fit::Logistic(l) => names
                .iter()
                .enumerate()
                .map(|(j, name)| {
                    let s = sd.get(j).copied().unwrap_or(1.0);
                    let c = l
                        .coefficient_rows
                        .iter()
                        .map(|r| r[j])
                        .fold(0.0f64, |a, c| if c.abs() > a.abs() { c } else { a });
                    (name.clone(), c * s)
                })
                .collect(),
        };
        coefficients.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
        ReportData {
            model_name: artifact.model_name.clone(),
            version: artifact.version.clone(),
            kind: artifact.estimator.kind.clone(),
            target: artifact.input_schema.target.clone(),
            created_at: artifact.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            train_rows: artifact.training_data.train_rows,
            test_rows: artifact.training_data.test_rows,
            points,
            coefficients,
            metrics: artifact.metrics.clone(),
            classes,
            decision: artifact
                .estimator
                .fit
                .classifier()
                .filter(|c| c.classes().len() == 2)
                .map(|c| format!("decision threshold {:.4}: {}", c.threshold(), artifact.params.decision().describe())),
            reference: artifact.drift.clone(),
        }
    }
}

/// Population standard deviation of every column of a design, in one pass (chunk statistics
/// merged with Chan's formula, so a constant column gives exactly 0).
pub fn column_sd(d: &dyn Design) -> crate::error::Result<Vec<f64>> {
    let p = d.width();
    let (mut n, mut mean, mut m2) = (0usize, vec![0.0; p], vec![0.0; p]);
    let f: &mut ChunkFn<'_> = &mut |x, _y| {
        let k = x.nrows();
        if k == 0 {
            return Ok(());
        }
        for (j, col) in x.columns().into_iter().enumerate() {
            let cm = col.sum() / k as f64;
            let cm2: f64 = col.iter().map(|v| (v - cm) * (v - cm)).sum();
            let delta = cm - mean[j];
            let total = (n + k) as f64;
            mean[j] += delta * k as f64 / total;
            m2[j] += cm2 + delta * delta * n as f64 * k as f64 / total;
        }
        n += k;
        Ok(())
    };
    d.for_each_chunk(f)?;
    Ok(m2.into_iter().map(|s| (s / n.max(1) as f64).sqrt()).collect())
}

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 960.0;
const HEIGHT_CLASSES: f64 = 1400.0;
/// One colour per class curve (cycled).
const PALETTE: [&str; 8] = ["#1c64f2", "#e02424", "#0e9f6e", "#ff8a4c", "#7e3af2", "#c27803", "#0694a2", "#d61f69"];
const PANEL_W: f64 = 560.0;
const PANEL_H: f64 = 400.0;
const INK: &str = "#1f2933";
const GRID: &str = "#e4e7eb";
const MODEL: &str = "#1c64f2";
const BASELINE: &str = "#9aa5b1";
const NEGATIVE: &str = "#e02424";

/// Draw the report as a standalone SVG document. Each panel is a `<g class="plot">` with an id
/// (`predicted-vs-actual`, `residuals`, `coefficients`, `metrics`), a `rect.frame` for its
/// plotting area and its data drawn as `.mark` elements inside that area.
pub fn render(r: &ReportData) -> String {
    let mut s = String::with_capacity(64 * 1024 + r.points.len() * 160);
    let top = if r.classes.is_some() { HEIGHT_CLASSES } else { HEIGHT };
    let height = top + r.reference.as_ref().map_or(0.0, reference_height);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12" fill="{INK}">
<title>{name} {version}: training report</title>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="40" y="38" font-size="20" font-weight="bold">{name} · {version}</text>
<text x="40" y="62" font-size="13">{kind} on {train} rows, evaluated on {test} held-out rows · target {target} · created {created}</text>
"##,
        name = esc(&r.model_name),
        version = esc(&r.version),
        kind = esc(&r.kind),
        train = r.train_rows,
        test = r.test_rows,
        target = esc(&r.target),
        created = esc(&r.created_at),
    );
    match &r.classes {
        None => {
            predicted_vs_actual(&mut s, r, 40.0, 90.0);
            residuals(&mut s, r, 620.0, 90.0);
            coefficients(&mut s, r, 40.0, 530.0);
            metrics(&mut s, r, 620.0, 530.0);
        }
        Some(c) => {
            curves(&mut s, c, Curve::Roc, 40.0, 90.0);
            curves(&mut s, c, Curve::PrecisionRecall, 620.0, 90.0);
            calibration(&mut s, c, 40.0, 530.0);
            confusion(&mut s, r, c, 620.0, 530.0);
            coefficients(&mut s, r, 40.0, 970.0);
            class_metrics(&mut s, r, 620.0, 970.0);
        }
    }
    if let Some(reference) = &r.reference {
        drift_reference(&mut s, reference, top);
    }
    s.push_str("</svg>\n");
    s
}

/// A plotting area with its data ranges.
struct Frame {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    xr: (f64, f64),
    yr: (f64, f64),
}

impl Frame {
    /// The plotting area of a panel at `(x, y)`, leaving room for the title and the axes.
    fn of_panel(x: f64, y: f64, xr: (f64, f64), yr: (f64, f64)) -> Frame {
        Frame { x: x + 60.0, y: y + 30.0, w: PANEL_W - 80.0, h: PANEL_H - 80.0, xr, yr }
    }

    fn px(&self, v: f64) -> f64 {
        self.x + (v - self.xr.0) / (self.xr.1 - self.xr.0) * self.w
    }

    fn py(&self, v: f64) -> f64 {
        self.y + self.h - (v - self.yr.0) / (self.yr.1 - self.yr.0) * self.h
    }

    /// Frame, grid lines at the ticks, tick labels and axis titles.
    fn axes(&self, s: &mut String, xticks: &[f64], yticks: &[f64], xlabel: &str, ylabel: &str) {
        let _ = writeln!(
            s,
            r#"<rect class="frame" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{INK}"/>"#,
            self.x, self.y, self.w, self.h
        );
        for &t in xticks {
            let x = self.px(t);
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{GRID}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                self.y,
                self.y + self.h,
                self.y + self.h + 16.0,
                fmt_tick(t)
            );
        }
        for &t in yticks {
            let y = self.py(t);
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{GRID}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                self.x,
                self.x + self.w,
                self.x - 6.0,
                y + 4.0,
                fmt_tick(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate({:.1} {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            self.x + self.w / 2.0,
            self.y + self.h + 36.0,
            esc(xlabel),
            self.x - 44.0,
            self.y + self.h / 2.0,
            esc(ylabel)
        );
    }
}

fn open_panel(s: &mut String, id: &str, title: &str, x: f64, y: f64) {
    let _ = writeln!(
        s,
        r#"<g class="plot" id="{id}"><text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
        x,
        y + 14.0,
        esc(title)
    );
}

fn predicted_vs_actual(s: &mut String, r: &ReportData, x: f64, y: f64) {
    open_panel(s, "predicted-vs-actual", "Predicted against actual (held out)", x, y);
    let values = r.points.iter().flat_map(|&(a, p)| [a, p]);
    let (lo, hi) = padded(range(values));
    let ticks = nice_ticks(lo, hi, 6);
    let (lo, hi) = (lo.min(ticks[0]), hi.max(ticks[ticks.len() - 1]));
    let f = Frame::of_panel(x, y, (lo, hi), (lo, hi));
    f.axes(s, &ticks, &ticks, &format!("actual {}", r.target), &format!("predicted {}", r.target));
    let _ = writeln!(
        s,
        r#"<line class="ideal" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{BASELINE}" stroke-dasharray="6 4"/>"#,
        f.px(lo),
        f.py(lo),
        f.px(hi),
        f.py(hi)
    );
    for &(a, p) in &r.points {
        let _ = writeln!(
            s,
            r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="2.5" fill="{MODEL}" fill-opacity="0.35"/>"#,
            f.px(a),
            f.py(p)
        );
    }
    note(s, &f, &shown(r));
    s.push_str("</g>\n");
}

fn residuals(s: &mut String, r: &ReportData, x: f64, y: f64) {
    open_panel(s, "residuals", "Residuals (actual − predicted) against predicted", x, y);
    let (xlo, xhi) = padded(range(r.points.iter().map(|&(_, p)| p)));
    let m = r.points.iter().map(|&(a, p)| (a - p).abs()).fold(0.0, f64::max).max(1e-12) * 1.05;
    let (xt, yt) = (nice_ticks(xlo, xhi, 6), nice_ticks(-m, m, 6));
    let xr = (xlo.min(xt[0]), xhi.max(xt[xt.len() - 1]));
    let yr = (-m.max(-yt[0]).max(yt[yt.len() - 1]), m.max(-yt[0]).max(yt[yt.len() - 1]));
    let f = Frame::of_panel(x, y, xr, yr);
    f.axes(s, &xt, &yt, &format!("predicted {}", r.target), "residual");
    let _ = writeln!(
        s,
        r#"<line class="zero" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{BASELINE}" stroke-dasharray="6 4"/>"#,
        f.x,
        f.py(0.0),
        f.x + f.w,
        f.py(0.0)
    );
    for &(a, p) in &r.points {
        let _ = writeln!(
            s,
            r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="2.5" fill="{MODEL}" fill-opacity="0.35"/>"#,
            f.px(p),
            f.py(a - p)
        );
    }
    note(s, &f, &shown(r));
    s.push_str("</g>\n");
}

fn coefficients(s: &mut String, r: &ReportData, x: f64, y: f64) {
    let trees = matches!(
        r.kind.as_str(),
        "random_forest" | "gradient_boosting" | "random_forest_classifier" | "gradient_boosting_classifier"
    );
    let title = if trees { "Feature importance (largest first)" } else { "Coefficients, standardised (largest first)" };
    open_panel(s, "coefficients", title, x, y);
    let shown = &r.coefficients[..r.coefficients.len().min(MAX_COEFFICIENTS)];
    let m = shown.iter().map(|c| c.1.abs()).fold(0.0, f64::max).max(1e-12) * 1.05;
    let ticks = nice_ticks(-m, m, 5);
    let m = m.max(-ticks[0]).max(ticks[ticks.len() - 1]);
    // room on the left for the feature names
    let f = Frame { x: x + 170.0, y: y + 30.0, w: PANEL_W - 190.0, h: PANEL_H - 80.0, xr: (-m, m), yr: (0.0, 1.0) };
    let axis = if trees {
        if r.classes.is_some() { "share of the loss reduction" } else { "share of the squared-error reduction" }
            .to_string()
    } else if r.classes.is_some() {
        "change in the log-odds per standard deviation of the feature".to_string()
    } else {
        format!("change in {} per standard deviation of the feature", r.target)
    };
    f.axes(s, &ticks, &[], &axis, "");
    let band = f.h / shown.len().max(1) as f64;
    for (i, (name, c)) in shown.iter().enumerate() {
        let top = f.y + band * i as f64;
        let (x0, x1) = (f.px(0.0_f64.min(*c)), f.px(0.0_f64.max(*c)));
        let colour = if *c < 0.0 { NEGATIVE } else { MODEL };
        let _ = writeln!(
            s,
            r#"<rect class="mark" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{} {}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
            top + band * 0.15,
            (x1 - x0).max(0.5),
            band * 0.7,
            esc(name),
            fmt_value(*c),
            f.x - 6.0,
            top + band * 0.5 + 4.0,
            esc(&truncate(name, 26))
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{INK}"/>"#,
        f.px(0.0),
        f.y,
        f.px(0.0),
        f.y + f.h
    );
    if r.coefficients.len() > shown.len() {
        note(s, &f, &format!("{} of {} features shown", shown.len(), r.coefficients.len()));
    }
    s.push_str("</g>\n");
}

fn metrics(s: &mut String, r: &ReportData, x: f64, y: f64) {
    open_panel(s, "metrics", "Held-out error against the baseline (lower is better)", x, y);
    let (m, b) = (&r.metrics.model, &r.metrics.baseline);
    let bars = [("RMSE", m.rmse, b.rmse), ("MAE", m.mae, b.mae)];
    let f = against_baseline(s, &bars, ("model", "baseline"), &format!("error in {} units", r.target), (x, y, 150.0));
    let gain = if b.rmse > 0.0 { (1.0 - m.rmse / b.rmse) * 100.0 } else { 0.0 };
    let lines = [
        format!("R² held out {:.4} (baseline {:.4}); on the training rows {:.4}", m.r2, b.r2, r.metrics.train.r2),
        format!("RMSE {:.4} against {:.4} for predicting the training mean: {gain:.1}% lower", m.rmse, b.rmse),
        format!("{} held-out rows", m.rows),
    ];
    text_lines(s, &lines, x + 20.0, f.y + f.h + 60.0);
    s.push_str("</g>\n");
}

/// Bars of `(name, model, baseline)` pairs in a panel at `(x, y)` whose frame is `below` shorter
/// than a panel (room for text lines under it), labelled `who`; returns the frame.
fn against_baseline(
    s: &mut String,
    bars: &[(&str, f64, f64)],
    who: (&str, &str),
    axis: &str,
    (x, y, below): (f64, f64, f64),
) -> Frame {
    let top = bars.iter().map(|&(_, a, b)| a.max(b)).fold(0.0, f64::max).max(1e-12) * 1.05;
    let ticks = nice_ticks(0.0, top, 5);
    let top = top.max(ticks[ticks.len() - 1]);
    let f = Frame { x: x + 110.0, y: y + 30.0, w: PANEL_W - 130.0, h: PANEL_H - below, xr: (0.0, top), yr: (0.0, 1.0) };
    f.axes(s, &ticks, &[], axis, "");
    let band = f.h / bars.len() as f64;
    for (i, (name, model, baseline)) in bars.iter().enumerate() {
        let y0 = f.y + band * i as f64;
        for (j, (who, v, colour)) in [(who.0, model, MODEL), (who.1, baseline, BASELINE)].iter().enumerate() {
            let yb = y0 + band * (0.12 + 0.38 * j as f64);
            let _ = writeln!(
                s,
                r#"<rect class="mark" x="{:.1}" y="{yb:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{name} {who} {}</title></rect><text x="{:.1}" y="{:.1}" font-size="11">{who} {}</text>"#,
                f.x,
                (f.px(**v) - f.x).max(0.5),
                band * 0.34,
                fmt_value(**v),
                f.px(**v) + 4.0,
                yb + band * 0.17 + 4.0,
                fmt_value(**v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="bold">{name}</text>"#,
            f.x - 8.0,
            y0 + band * 0.5 + 4.0
        );
    }
    f
}

/// Small multiples of the drift reference per row, their size, and the categories drawn at most
/// per categorical column (the rest are counted in its title).
const REF_PER_ROW: usize = 4;
const REF_W: f64 = 280.0;
const REF_H: f64 = 170.0;
const REF_MAX_CATEGORIES: usize = 16;

/// The height the drift reference adds under the panels.
fn reference_height(r: &Reference) -> f64 {
    let plots = r.columns.len() + 1;
    60.0 + plots.div_ceil(REF_PER_ROW) as f64 * REF_H
}

/// The drift reference from `y` down: a histogram per input column (numeric: the quantile bins
/// drawn to scale between the training minimum and maximum, each bar's area its share;
/// categorical: a bar per category) and one of the held-out predictions, each a plot of its own
/// (`reference-0`, `reference-1`, …, the prediction last) with its missing rate.
fn drift_reference(s: &mut String, r: &Reference, y: f64) {
    let _ = writeln!(
        s,
        r#"<text x="40" y="{:.1}" font-size="15" font-weight="bold">Drift reference: what the training data looked like, which modelcast drift and the service compare live data with</text>"#,
        y + 20.0
    );
    let prediction = Distribution::Numeric(r.prediction.clone());
    let plots =
        r.columns.iter().map(|c| (c.name.as_str(), &c.distribution)).chain([("prediction (held out)", &prediction)]);
    for (i, (name, d)) in plots.enumerate() {
        let x = 40.0 + (i % REF_PER_ROW) as f64 * REF_W;
        let y = y + 40.0 + (i / REF_PER_ROW) as f64 * REF_H;
        let f = Frame { x: x + 10.0, y: y + 28.0, w: REF_W - 40.0, h: REF_H - 80.0, xr: (0.0, 1.0), yr: (0.0, 1.0) };
        let (bars, missing, extra) = match d {
            Distribution::Numeric(n) => (numeric_bars(n), n.missing_rate, String::new()),
            Distribution::Categorical(c) => {
                let shown = c.categories.len().min(REF_MAX_CATEGORIES);
                let bars = (0..shown)
                    .map(|k| {
                        (
                            k as f64 / shown as f64,
                            (k + 1) as f64 / shown as f64,
                            c.proportions[k],
                            c.categories[k].clone(),
                        )
                    })
                    .collect::<Vec<_>>();
                let extra = if shown < c.categories.len() {
                    format!(", {} more categories", c.categories.len() - shown)
                } else {
                    String::new()
                };
                (bars, c.missing_rate, extra)
            }
        };
        let kind = if matches!(d, Distribution::Categorical(_)) { "categorical" } else { "numeric" };
        let _ = writeln!(
            s,
            r#"<g class="plot" id="reference-{i}"><text x="{:.1}" y="{:.1}" font-weight="bold">{}</text><text x="{:.1}" y="{:.1}" font-size="11" fill="{BASELINE}">{kind}{extra}</text>"#,
            f.x,
            y + 12.0,
            esc(&truncate(name, 34)),
            f.x,
            y + 24.0,
        );
        let _ = writeln!(
            s,
            r#"<rect class="frame" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{GRID}"/>"#,
            f.x, f.y, f.w, f.h
        );
        // a bar's height is its share over its width, so that its area is its share
        let tallest = bars.iter().map(|(a, b, p, _)| p / (b - a).max(1e-9)).fold(0.0f64, f64::max).max(1e-12);
        for (a, b, p, label) in &bars {
            let h = p / (b - a).max(1e-9) / tallest * f.h;
            let _ = writeln!(
                s,
                r#"<rect class="mark" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{MODEL}" fill-opacity="0.75"><title>{}: {:.1}%</title></rect>"#,
                f.x + a * f.w,
                f.y + f.h - h,
                ((b - a) * f.w - 0.5).max(0.5),
                esc(label),
                p * 100.0
            );
        }
        let range = match d {
            Distribution::Numeric(NumericReference { min: Some(lo), max: Some(hi), .. }) => {
                format!("{} to {}", fmt_value(*lo), fmt_value(*hi))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11">{range}</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">missing {:.1}%</text></g>"#,
            f.x,
            f.y + f.h + 16.0,
            f.x + f.w,
            f.y + f.h + 16.0,
            missing * 100.0
        );
    }
}

/// A numeric reference's bins as `(from, to, share, label)` with `from`/`to` in [0, 1] of the
/// drawing: to scale between the training minimum and maximum (a bin of one value, such as the
/// zeros of a mostly-zero column, gets 1% of the range), or of equal width when the values do
/// not span a range (a constant column, every value missing).
fn numeric_bars(n: &NumericReference) -> Vec<(f64, f64, f64, String)> {
    let k = n.proportions.len();
    let widths: Vec<f64> = match (n.min, n.max) {
        (Some(lo), Some(hi)) if hi > lo && n.edges.len() + 1 == k => {
            let bounds: Vec<f64> =
                std::iter::once(lo).chain(n.edges.iter().map(|e| e.clamp(lo, hi))).chain([hi]).collect();
            bounds.windows(2).map(|w| (w[1] - w[0]).max((hi - lo) * 0.01)).collect()
        }
        _ => vec![1.0; k],
    };
    let total: f64 = widths.iter().sum::<f64>().max(1e-300);
    let mut from = 0.0;
    (0..k)
        .map(|i| {
            let label = match (i.checked_sub(1).and_then(|j| n.edges.get(j)), n.edges.get(i)) {
                (None, Some(b)) => format!("≤ {}", fmt_value(*b)),
                (Some(a), Some(b)) => format!("({}, {}]", fmt_value(*a), fmt_value(*b)),
                (Some(a), None) => format!("> {}", fmt_value(*a)),
                (None, None) => "every value".to_string(),
            };
            let to = from + widths[i] / total;
            let bar = (from, to.min(1.0), n.proportions[i], label);
            from = to;
            bar
        })
        .collect()
}

/// Lines of text from `(x, y)` down.
fn text_lines(s: &mut String, lines: &[String], x: f64, y: f64) {
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{:.1}" font-size="13">{}</text>"#, y + 20.0 * i as f64, esc(line));
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Curve {
    Roc,
    PrecisionRecall,
}

/// The ROC or precision-recall curves: one polyline per scored class.
fn curves(s: &mut String, c: &ClassCurves, which: Curve, x: f64, y: f64) {
    let (id, title, xl, yl) = match which {
        Curve::Roc => ("roc", "ROC curve (held out)", "false positive rate", "true positive rate"),
        Curve::PrecisionRecall => ("precision-recall", "Precision against recall (held out)", "recall", "precision"),
    };
    open_panel(s, id, title, x, y);
    let f = Frame::of_panel(x, y, (0.0, 1.0), (0.0, 1.0));
    let ticks = nice_ticks(0.0, 1.0, 5);
    f.axes(s, &ticks, &ticks, xl, yl);
    if which == Curve::Roc {
        unit_diagonal(s, &f, "chance");
    }
    for (i, h) in c.scored.iter().enumerate() {
        let points = match which {
            Curve::Roc => c.roc(i),
            Curve::PrecisionRecall => c.precision_recall(i),
        };
        if points.len() < 2 {
            continue;
        }
        let path: Vec<String> = points.iter().map(|&(a, b)| format!("{:.1},{:.1}", f.px(a), f.py(b))).collect();
        let colour = PALETTE[i % PALETTE.len()];
        let name = esc(&c.classes[h.class]);
        let _ = writeln!(
            s,
            r#"<polyline class="mark" points="{}" fill="none" stroke="{colour}" stroke-width="2"><title>{name}</title></polyline>"#,
            path.join(" ")
        );
        if c.scored.len() > 1 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{colour}">{name}</text>"#,
                f.x + f.w + 4.0,
                f.y + 14.0 * (i as f64 + 1.0)
            );
        }
    }
    let what = if c.scored.len() == 1 {
        format!("class {} against {}", c.classes[1], c.classes[0])
    } else {
        "each class against the rest".to_string()
    };
    note(s, &f, &what);
    s.push_str("</g>\n");
}

/// The dashed line from (0, 0) to (1, 1) of a probability frame: chance (ROC) or a perfect
/// calibration.
fn unit_diagonal(s: &mut String, f: &Frame, class: &str) {
    let _ = writeln!(
        s,
        r#"<line class="{class}" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{BASELINE}" stroke-dasharray="6 4"/>"#,
        f.px(0.0),
        f.py(0.0),
        f.px(1.0),
        f.py(1.0)
    );
}

/// Predicted probability against how often it came true, per bin, sized by its rows.
fn calibration(s: &mut String, c: &ClassCurves, x: f64, y: f64) {
    open_panel(s, "calibration", "Calibration: predicted against observed (held out)", x, y);
    let f = Frame::of_panel(x, y, (0.0, 1.0), (0.0, 1.0));
    let ticks = nice_ticks(0.0, 1.0, 5);
    let what = if c.classes.len() == 2 { format!("class {}", c.classes[1]) } else { "the predicted class".into() };
    f.axes(s, &ticks, &ticks, &format!("predicted probability of {what}"), "observed frequency");
    unit_diagonal(s, &f, "ideal");
    let most = c.calibration.iter().map(|b| b.rows).max().unwrap_or(1).max(1) as f64;
    for b in c.calibration.iter().filter(|b| b.rows > 0) {
        let (p, o) = (b.predicted / b.rows as f64, b.observed as f64 / b.rows as f64);
        let r = 3.0 + 7.0 * (b.rows as f64 / most).sqrt();
        // kept inside the frame: a point at 0 or 1 sits on its edge
        let (cx, cy) = (f.px(p).clamp(f.x + r, f.x + f.w - r), f.py(o).clamp(f.y + r, f.y + f.h - r));
        let _ = writeln!(
            s,
            r#"<circle class="mark" cx="{cx:.1}" cy="{cy:.1}" r="{r:.1}" fill="{MODEL}" fill-opacity="0.6"><title>{} rows: predicted {:.3}, observed {:.3}</title></circle>"#,
            b.rows, p, o
        );
    }
    note(s, &f, &format!("{} bins; a point's size is its rows", CALIBRATION_BINS));
    s.push_str("</g>\n");
}

/// The held-out confusion matrix: a cell per (actual, predicted), shaded by its share of the row.
fn confusion(s: &mut String, r: &ReportData, c: &ClassCurves, x: f64, y: f64) {
    open_panel(s, "confusion", "Confusion matrix (held out)", x, y);
    let k = c.classes.len();
    let m = r.metrics.model.classification.as_ref().map(|m| m.confusion.clone()).unwrap_or_default();
    let f = Frame {
        x: x + 90.0,
        y: y + 30.0,
        w: PANEL_H - 110.0,
        h: PANEL_H - 110.0,
        xr: (0.0, k as f64),
        yr: (0.0, k as f64),
    };
    let _ = writeln!(
        s,
        r#"<rect class="frame" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{INK}"/>"#,
        f.x, f.y, f.w, f.h
    );
    let cell = f.w / k.max(1) as f64;
    for (a, row) in m.iter().enumerate().take(k) {
        let total = row.iter().sum::<u64>().max(1) as f64;
        for (p, n) in row.iter().enumerate().take(k) {
            let share = *n as f64 / total;
            let (cx, cy) = (f.x + cell * p as f64, f.y + cell * a as f64);
            let ink = if share > 0.5 { "#ffffff" } else { INK };
            let _ = writeln!(
                s,
                r#"<rect class="mark" x="{cx:.1}" y="{cy:.1}" width="{cell:.1}" height="{cell:.1}" fill="{MODEL}" fill-opacity="{:.3}" stroke="{GRID}"><title>actual {} predicted {}: {n}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="{:.0}" fill="{ink}">{n}</text>"#,
                0.05 + 0.9 * share,
                esc(&c.classes[a]),
                esc(&c.classes[p]),
                cx + cell / 2.0,
                cy + cell / 2.0 + 4.0,
                (cell / 4.0).clamp(9.0, 14.0)
            );
        }
    }
    for (i, name) in c.classes.iter().enumerate() {
        let mid = cell * (i as f64 + 0.5);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
            f.x + mid,
            f.y + f.h + 16.0,
            esc(&truncate(name, 10)),
            f.x - 6.0,
            f.y + mid + 4.0,
            esc(&truncate(name, 12))
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">predicted</text><text transform="translate({:.1} {:.1}) rotate(-90)" text-anchor="middle">actual {}</text>"#,
        f.x + f.w / 2.0,
        f.y + f.h + 36.0,
        f.x - 70.0,
        f.y + f.h / 2.0,
        esc(&r.target)
    );
    s.push_str("</g>\n");
}

/// A classifier's losses against the class prior's, and its other held-out metrics.
fn class_metrics(s: &mut String, r: &ReportData, x: f64, y: f64) {
    open_panel(s, "metrics", "Held-out loss against the class prior (lower is better)", x, y);
    let (Some(m), Some(b)) = (r.metrics.model.classification.as_ref(), r.metrics.baseline.classification.as_ref())
    else {
        s.push_str("</g>\n");
        return;
    };
    let bars = [("log loss", m.log_loss, b.log_loss), ("Brier", m.brier, b.brier)];
    let f = against_baseline(s, &bars, ("model", "prior"), "loss", (x, y, 170.0));
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let lines = [
        format!("accuracy {:.4} (prior {:.4}); balanced accuracy {:.4}", m.accuracy, b.accuracy, m.balanced_accuracy),
        format!("ROC AUC {}; PR AUC {}; macro F1 {:.4}", opt(m.auc), opt(m.pr_auc), m.f1),
        format!("log loss on the training rows {}", opt(r.metrics.train.classification.as_ref().map(|t| t.log_loss))),
        match &r.decision {
            Some(d) => format!("{} held-out rows; {d}", r.metrics.model.rows),
            None => format!("{} held-out rows", r.metrics.model.rows),
        },
    ];
    text_lines(s, &lines, x + 20.0, f.y + f.h + 56.0);
    s.push_str("</g>\n");
}

fn shown(r: &ReportData) -> String {
    if r.points.len() < r.test_rows {
        format!("{} of {} held-out rows", r.points.len(), r.test_rows)
    } else {
        format!("{} held-out rows", r.points.len())
    }
}

fn note(s: &mut String, f: &Frame, text: &str) {
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#52606d">{}</text>"##,
        f.x + f.w - 6.0,
        f.y + 16.0,
        esc(text)
    );
}

/// The finite range of `values` (`(0, 1)` when there is none).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi)
    }
}

/// A range widened by 5% on each side (and to a unit width when it is a single value).
fn padded((lo, hi): (f64, f64)) -> (f64, f64) {
    let w = hi - lo;
    if w <= f64::EPSILON * hi.abs().max(1.0) {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo - w * 0.05, hi + w * 0.05)
    }
}

/// About `n` round tick values covering `[lo, hi]`: steps of 1, 2 or 5 × 10^k.
fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo).abs().max(f64::MIN_POSITIVE) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn fmt_tick(v: f64) -> String {
    let v = if v.abs() < 1e-12 { 0.0 } else { v };
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn fmt_value(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::Dense;
    use crate::model::Metrics;
    use ndarray::array;

    fn data(points: Vec<(f64, f64)>, coefficients: Vec<(String, f64)>) -> ReportData {
        let m = |r2, rmse| Metrics { r2, rmse, mae: rmse * 0.8, rows: 10, classification: None };
        ReportData {
            model_name: "wine<&>".into(),
            version: "v1".into(),
            kind: "linear".into(),
            target: "quality".into(),
            created_at: "2026-12-02T00:00:00Z".into(),
            train_rows: 40,
            test_rows: points.len(),
            points,
            coefficients,
            metrics: Evaluation { model: m(0.4, 0.6), baseline: m(0.0, 0.8), train: m(0.45, 0.58) },
            classes: None,
            decision: None,
            reference: None,
        }
    }

    #[test]
    fn class_curves_walk_the_thresholds_from_the_top_and_calibrate() {
        let mut c = ClassCurves::new(vec!["no".into(), "yes".into()]);
        // positives at 0.9 and 0.6, negatives at 0.7 and 0.1
        for (t, p1) in [(1, 0.9), (0, 0.7), (1, 0.6), (0, 0.1)] {
            c.add(t, &[1.0 - p1, p1]);
        }
        let roc = c.roc(0);
        assert_eq!(roc.len(), CURVE_BINS + 1);
        assert_eq!((roc[0], roc[roc.len() - 1]), ((0.0, 0.0), (1.0, 1.0)));
        // the distinct points: (0, ½) after 0.9, (½, ½) after 0.7, (½, 1) after 0.6, (1, 1)
        let mut seen = roc.clone();
        seen.dedup();
        assert_eq!(seen, [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        let mut pr = c.precision_recall(0);
        pr.dedup();
        assert_eq!(pr, [(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0), (1.0, 0.5)]);
        let cal: Vec<_> = c.calibration.iter().filter(|b| b.rows > 0).map(|b| (b.rows, b.observed)).collect();
        assert_eq!(cal, [(1, 0), (1, 1), (1, 0), (1, 1)], "bins of 0.1, 0.6, 0.7, 0.9");
        // three classes: a curve per class, calibration on the predicted class
        let mut m = ClassCurves::new(vec!["a".into(), "b".into(), "c".into()]);
        m.add(2, &[0.2, 0.3, 0.5]);
        m.add(0, &[0.6, 0.3, 0.1]);
        assert_eq!(m.scored.len(), 3);
        assert!(m.roc(1).is_empty(), "no row of class b: no curve");
        assert_eq!(m.calibration.iter().map(|b| b.observed).sum::<u64>(), 2, "both predicted classes came true");
    }

    fn wine() -> Artifact {
        let params = crate::params::Params::load(std::path::Path::new("params/params.yaml")).unwrap();
        crate::train::fit_artifact(&params).unwrap()
    }

    /// A design served in chunks of `rows` rows.
    struct Chunked(ndarray::Array2<f64>, usize);

    impl Design for Chunked {
        fn rows(&self) -> usize {
            self.0.nrows()
        }
        fn width(&self) -> usize {
            self.0.ncols()
        }
        fn for_each_chunk(&self, f: &mut ChunkFn<'_>) -> crate::error::Result<()> {
            let y = ndarray::Array1::zeros(self.1);
            for c in self.0.axis_chunks_iter(ndarray::Axis(0), self.1) {
                f(c, y.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..c.nrows())))?;
            }
            Ok(())
        }
    }

    #[test]
    fn column_sd_matches_the_two_pass_formula_across_chunks() {
        let x = array![[1.0, 5.0], [2.0, 5.0], [4.0, 5.0], [7.0, 5.0], [1e3, 5.0]];
        let y = array![0.0, 0.0, 0.0, 0.0, 0.0];
        let one = column_sd(&Dense { x: x.view(), y: y.view() }).unwrap();
        let sd = column_sd(&Chunked(x.clone(), 2)).unwrap();
        assert!((sd[0] - one[0]).abs() < 1e-9, "{sd:?} {one:?}");
        let col = [1.0f64, 2.0, 4.0, 7.0, 1e3];
        let mean = col.iter().sum::<f64>() / 5.0;
        let want = (col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 5.0).sqrt();
        assert!((sd[0] - want).abs() < 1e-12, "{sd:?}");
        assert_eq!(sd[1], 0.0);
    }

    #[test]
    fn points_are_capped_and_evenly_strided() {
        for n in [0, 1, 320, 2000, 2001, 10_000, 1_000_000] {
            let s = stride(n);
            let drawn = n.div_ceil(s);
            assert!(drawn <= MAX_POINTS && (n < MAX_POINTS || drawn > MAX_POINTS / 2), "{n}: {drawn}");
        }
        assert_eq!(stride(10_000), 5);
        let a = wine();
        let r = ReportData::new(&a, vec![(5.0, 5.5)], &[], None);
        assert_eq!(r.points, vec![(5.0, 5.5)]);
    }

    #[test]
    fn coefficients_are_scaled_by_the_sd_and_sorted_by_magnitude() {
        let mut a = wine();
        a.estimator.feature_names = vec!["a".into(), "b".into(), "c".into()];
        let Fit::Linear(fit) = &mut a.estimator.fit else { panic!("linear") };
        fit.coefficients = vec![1.0, -3.0, 2.0];
        let r = ReportData::new(&a, vec![], &[10.0, 1.0, 0.5], None);
        assert_eq!(r.coefficients, vec![("a".into(), 10.0), ("b".into(), -3.0), ("c".into(), 1.0)]);
    }

    #[test]
    fn render_has_four_panels_every_point_and_escaped_text() {
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (f64::from(i % 7), 3.0 + f64::from(i % 5) * 0.5)).collect();
        let svg = render(&data(pts, vec![("alcohol".into(), 0.3), ("sulphates=<1>".into(), -0.1)]));
        for id in ["predicted-vs-actual", "residuals", "coefficients", "metrics"] {
            assert!(svg.contains(&format!(r#"<g class="plot" id="{id}">"#)), "{id}");
        }
        // 50 points in each scatter, 2 coefficient bars, 4 metric bars
        assert_eq!(svg.matches(r#"<circle class="mark""#).count(), 100);
        assert_eq!(svg.matches(r#"<rect class="mark""#).count(), 6);
        assert!(svg.contains("wine&lt;&amp;&gt;") && svg.contains("sulphates=&lt;1&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinates");
    }

    #[test]
    fn the_drift_reference_draws_a_histogram_per_column_and_the_prediction() {
        use crate::drift::{CategoricalReference, ColumnReference};
        let numeric = |edges: Vec<f64>, proportions: Vec<f64>, min, max| NumericReference {
            edges,
            proportions,
            min,
            max,
            missing_rate: 0.25,
            count: 8,
        };
        let mut d = data(vec![(1.0, 2.0)], vec![]);
        d.reference = Some(Reference {
            schema_version: 1,
            columns: vec![
                ColumnReference {
                    name: "alcohol".into(),
                    // a bin of one value (the edge is the minimum), and the rest to scale
                    distribution: Distribution::Numeric(numeric(
                        vec![8.0, 10.0, 12.0],
                        vec![0.25, 0.25, 0.25, 0.25],
                        Some(8.0),
                        Some(15.0),
                    )),
                },
                ColumnReference {
                    name: "empty".into(),
                    distribution: Distribution::Numeric(numeric(vec![], vec![0.0], None, None)),
                },
                ColumnReference {
                    name: "colour".into(),
                    distribution: Distribution::Categorical(CategoricalReference {
                        categories: vec!["red".into(), "<white>".into()],
                        proportions: vec![0.75, 0.25],
                        missing_rate: 0.0,
                        count: 8,
                    }),
                },
            ],
            prediction: numeric(vec![5.5], vec![0.5, 0.5], Some(4.0), Some(7.0)),
        });
        let svg = render(&d);
        for i in 0..4 {
            assert!(svg.contains(&format!(r#"<g class="plot" id="reference-{i}">"#)), "{i}");
        }
        // 4 + 1 + 2 + 2 bars, after the regressor's 2 metric pairs
        assert_eq!(svg.matches(r#"<rect class="mark""#).count(), 4 + 9);
        assert!(svg.contains("&lt;white&gt;: 25.0%") && svg.contains("missing 25.0%"), "{svg}");
        assert!(svg.contains("8.0000 to 15.0000"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinates");
        // the picture grows by the reference's rows
        assert!(svg.contains(&format!(r#"height="{}""#, HEIGHT + 60.0 + REF_H)), "one row of four");
        // to scale: (12, 15] is 1.5 times as wide as (10, 12]; the bin of one value gets 1% of the range
        let bars = numeric_bars(&numeric(vec![8.0, 10.0, 12.0], vec![0.25; 4], Some(8.0), Some(15.0)));
        let w: Vec<f64> = bars.iter().map(|(a, b, _, _)| b - a).collect();
        assert!((w[3] / w[2] - 1.5).abs() < 1e-9 && (w[0] / w[1] - 0.035).abs() < 1e-9, "{w:?}");
        assert!((bars[3].1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn render_survives_empty_and_constant_data() {
        for pts in [vec![], vec![(5.0, 5.0); 3]] {
            let svg = render(&data(pts, vec![]));
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = nice_ticks(2.7, 8.3, 6);
        assert_eq!(t.first().copied(), Some(2.0));
        assert_eq!(t.last().copied(), Some(9.0));
        assert!(t.windows(2).all(|w| (w[1] - w[0] - 1.0).abs() < 1e-12), "{t:?}");
        assert_eq!(fmt_tick(0.30000000000000004), "0.3");
        assert_eq!(key_of("wine/2026-12-02/v1.json"), "wine/2026-12-02/v1.report.svg");
    }
}
