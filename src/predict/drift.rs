//! Drift on what a model scores: `modelcast drift` counts the records of a file (or stdin)
//! against a model version's training reference ([`measure`]); the service keeps a [`Monitor`]
//! that counts every record it scores into tumbling windows and publishes each closed window
//! on the `model_drift` topic and as gauges on `/metrics`.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, IntCounterVec, Opts};

use crate::artifact::Artifact;
use crate::drift::{ColumnDrift, Reference, Window, WindowReport};
use crate::error::{Error, Result};
use crate::features::Cell;
use crate::messages::DriftMessage;
use crate::predict::input::{self, Item, Source};
use crate::predict::{predict_cells, ServeOptions, Served};
use crate::record::CsvLayout;

/// Count every record of `source` against `artifact`'s drift reference (`uri` names it in
/// errors). An artifact trained before references were stored is an error saying so.
pub async fn measure(artifact: &Artifact, uri: &str, source: &Source) -> Result<WindowReport> {
    let reference = artifact.drift.as_ref().ok_or_else(|| {
        Error::artifact(
            uri,
            format!(
                "has no drift reference: it was written with artifact schema_version {} (references came with 4); \
                 retrain the model to get one",
                artifact.schema_version
            ),
        )
    })?;
    let served = Served::from_artifact(artifact, ServeOptions::key("key"))?;
    let scorer = &served.scorer;
    let mut window =
        Window::new(reference, scorer.input_columns(), scorer.missing_tokens()).map_err(|e| Error::artifact(uri, e))?;
    let (mut rx, _stop) = input::spawn(source)?;
    let mut layout: Option<CsvLayout> = None;
    let mut probs = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    let started = std::time::Instant::now();
    while rx.recv_many(&mut buf, 1024).await > 0 {
        for item in buf.drain(..) {
            let decoded = match &item {
                Item::Header(h) => {
                    let l = served.decoder.csv_layout(h);
                    let missing: Vec<&str> = l.missing_slots().map(|i| scorer.input_columns()[i].as_str()).collect();
                    if !missing.is_empty() {
                        tracing::warn!(columns = ?missing, "input has no such columns; they count as missing in every row");
                    }
                    layout = Some(l);
                    continue;
                }
                Item::Csv(line, row) => match &layout {
                    Some(l) => Ok(l.decode(row)),
                    None => {
                        return Err(Error::Data {
                            source_name: source.path.clone(),
                            line: *line,
                            message: "CSV row before header".into(),
                        })
                    }
                },
                Item::Json(_, bytes) => served.decoder.json(bytes),
                Item::Bad(_, _, reason) => Err(reason.clone()),
            };
            match decoded {
                Ok(d) => {
                    let prediction = predict_cells(scorer, &d.cells, &mut probs).ok().map(|(v, _)| v);
                    window.add(&d.cells, prediction);
                }
                Err(_) => window.unreadable(),
            }
        }
    }
    tracing::info!(
        records = window.records(),
        ms = started.elapsed().as_millis() as u64,
        source = %source.path,
        "counted the input against the training reference"
    );
    Ok(window.report(reference))
}

/// Records in a full drift window unless `--drift-window` says otherwise: enough that a stable
/// column's PSI from sampling alone stays far below the 0.1 watch line (about bins / records,
/// 0.001 here), few enough that a busy replica closes one every few seconds.
pub const DEFAULT_DRIFT_WINDOW: u64 = 10_000;

/// When the service closes a drift window: after `records` counted records, or `every` after
/// its first record, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Records in a full window.
    pub records: u64,
    /// The longest a window stays open.
    pub every: Duration,
}

/// The window being counted for the serving version.
struct Current {
    name: String,
    version: String,
    reference: Arc<Reference>,
    window: Window,
    /// Its number within this run of the version, from 1.
    seq: u64,
    /// When its first record was counted (None: empty).
    opened: Option<(Instant, i64)>,
}

/// The serving version's live drift: every record it scores is counted into a window (no
/// allocation per record once the window exists); a window closes when full, when its time
/// is up, when another version takes over, or at a stop, and becomes a [`DriftMessage`] waiting
/// in [`Monitor::take`] and the `modelcast_feature_*` gauges.
///
/// A window lives in memory only: a crash (kill -9) loses the window being counted, never a
/// closed one that was published.
pub struct Monitor {
    limits: WindowLimits,
    instance: String,
    source: &'static str,
    current: Option<Current>,
    /// The version the monitor last followed (also when it has no reference).
    following: String,
    done: Vec<DriftMessage>,
    said_off: HashSet<String>,
}

impl Monitor {
    /// A monitor closing windows at `limits`, naming itself `instance` (None: the host name and
    /// process id) and what it counts, `source` (`records` or `requests`), in its messages.
    pub fn new(limits: WindowLimits, instance: Option<&str>, source: &'static str) -> Monitor {
        let instance =
            instance.map_or_else(|| format!("{}-{}", crate::util::ids::hostname(), std::process::id()), str::to_string);
        Monitor {
            limits,
            instance,
            source,
            current: None,
            following: String::new(),
            done: Vec::new(),
            said_off: HashSet::new(),
        }
    }

    /// Follow the serving model: on a new version the current window closes (`swap`) and the new
    /// version's starts (none when its artifact has no reference: said once in the log).
    pub fn follow(&mut self, model: &Served) {
        if self.following == model.version {
            return;
        }
        self.following.clone_from(&model.version);
        self.close("swap");
        self.current = None;
        let Some(reference) = &model.drift else {
            if self.said_off.insert(model.version.clone()) {
                tracing::info!(
                    model = %model.name,
                    version = %model.version,
                    "drift is off for this version: its artifact has no drift reference (written before artifact schema_version 4)"
                );
            }
            return;
        };
        match Window::new(reference, model.scorer.input_columns(), model.scorer.missing_tokens()) {
            Ok(window) => {
                self.current = Some(Current {
                    name: model.name.clone(),
                    version: model.version.clone(),
                    reference: reference.clone(),
                    window,
                    seq: 1,
                    opened: None,
                })
            }
            Err(why) => {
                tracing::warn!(model = %model.name, version = %model.version, %why, "drift is off for this version")
            }
        }
    }

    /// Count one record: its cells in the model's column order (`None`: it could not be read)
    /// and its prediction (`None`: the model refused it). A full window closes here.
    pub fn record(&mut self, cells: Option<&[Cell<'_>]>, prediction: Option<f64>) {
        let Some(c) = &mut self.current else { return };
        if c.opened.is_none() {
            c.opened = Some((Instant::now(), crate::util::time::now_ms()));
        }
        match cells {
            Some(cells) => c.window.add(cells, prediction),
            None => c.window.unreadable(),
        }
        if c.window.records() >= self.limits.records {
            self.close("records");
        }
    }

    /// When the open window's time is up (None: no window has a record).
    pub fn deadline(&self) -> Option<Instant> {
        self.current.as_ref()?.opened.map(|(at, _)| at + self.limits.every)
    }

    /// Close the open window if its time is up.
    pub fn tick(&mut self) {
        if self.deadline().is_some_and(|d| Instant::now() >= d) {
            self.close("time");
        }
    }

    /// Close the open window (the service stops).
    pub fn stop(&mut self) {
        self.close("stop");
    }

    /// The windows closed since the last call, oldest first.
    pub fn take(&mut self) -> Vec<DriftMessage> {
        std::mem::take(&mut self.done)
    }

    fn close(&mut self, why: &str) {
        let Some(c) = &mut self.current else { return };
        let Some((_, start_ms)) = c.opened.take() else { return };
        let report = c.window.report(&c.reference);
        c.window.reset();
        let msg = DriftMessage {
            kind: "model_drift".into(),
            model_name: c.name.clone(),
            version: c.version.clone(),
            instance: self.instance.clone(),
            source: self.source.into(),
            window: c.seq,
            start_ms,
            end_ms: crate::util::time::now_ms(),
            closed_by: why.into(),
            report,
        };
        c.seq += 1;
        observe(&msg);
        self.done.push(msg);
    }
}

/// A window's message bytes.
pub fn encode(w: &DriftMessage) -> Result<Vec<u8>> {
    serde_json::to_vec(w).map_err(|e| Error::Encode { what: "model_drift", source: e })
}

/// Log and count `n` windows that were not published.
pub fn not_published(n: u64, reason: &str) {
    if let Some(g) = GAUGES.as_ref() {
        g.failures.with_label_values(&["publish"]).inc_by(n);
    }
    tracing::warn!(windows = n, %reason, "drift windows not published; serving goes on");
}

/// The `modelcast_feature_*` gauges: the last closed window of the serving version, per feature
/// (its input columns and `prediction`); reset when the version changes, so their label
/// cardinality is one version's columns.
struct Gauges {
    psi: GaugeVec,
    js: GaugeVec,
    missing: GaugeVec,
    outside: GaugeVec,
    records: GaugeVec,
    windows: IntCounterVec,
    failures: IntCounterVec,
    /// Per source, the (model, version, features) its series are labelled with now.
    shown: std::sync::Mutex<Vec<Shown>>,
}

struct Shown {
    source: String,
    model: String,
    version: String,
    features: Vec<String>,
}

static GAUGES: LazyLock<Option<Gauges>> = LazyLock::new(|| match Gauges::register() {
    Ok(g) => Some(g),
    Err(e) => {
        tracing::warn!(error = %e, "drift gauges not registered");
        None
    }
});

impl Gauges {
    fn register() -> std::result::Result<Gauges, prometheus::Error> {
        let reg = &crate::events::metrics().registry;
        let labels = ["model", "version", "feature", "source"];
        let gauge = |name: &str, help: &str, labels: &[&str]| -> std::result::Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            reg.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> std::result::Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                reg.register(Box::new(c.clone()))?;
                Ok(c)
            };
        Ok(Gauges {
            psi: gauge(
                "modelcast_feature_psi",
                "PSI of the last drift window against the training reference.",
                &labels,
            )?,
            js: gauge(
                "modelcast_feature_jensen_shannon",
                "Jensen-Shannon distance of the last drift window against the training reference.",
                &labels,
            )?,
            missing: gauge(
                "modelcast_feature_missing_rate",
                "Share of missing values in the last drift window.",
                &labels,
            )?,
            outside: gauge(
                "modelcast_feature_outside_rate",
                "Share of values outside the training range (numeric) or of unseen categories, last drift window.",
                &labels,
            )?,
            records: gauge(
                "modelcast_drift_window_records",
                "Records in the last drift window.",
                &["model", "version", "source"],
            )?,
            windows: counter(
                "modelcast_drift_windows_total",
                "Drift windows closed, by their worst verdict.",
                &["model", "version", "source", "verdict"],
            )?,
            failures: counter("modelcast_drift_failures_total", "Drift windows not published.", &["what"])?,
            shown: std::sync::Mutex::new(Vec::new()),
        })
    }
}

fn observe(msg: &DriftMessage) {
    let drifted: Vec<&str> = msg
        .report
        .columns
        .iter()
        .chain([&msg.report.prediction])
        .filter(|c| c.verdict != "stable")
        .map(|c| c.name.as_str())
        .collect();
    tracing::info!(
        event = "drift_window",
        model = %msg.model_name,
        version = %msg.version,
        window = msg.window,
        source = %msg.source,
        records = msg.report.records,
        closed_by = %msg.closed_by,
        verdict = %msg.report.verdict,
        moved = ?drifted,
        "drift window closed"
    );
    let Some(g) = GAUGES.as_ref() else { return };
    let (m, v, src) = (msg.model_name.as_str(), msg.version.as_str(), msg.source.as_str());
    let features: Vec<&ColumnDrift> = msg.report.columns.iter().chain([&msg.report.prediction]).collect();
    let mut shown = g.shown.lock().unwrap_or_else(|e| e.into_inner());
    let same = |s: &Shown| s.model == m && s.version == v;
    match shown.iter().position(|s| s.source == src) {
        Some(i) if same(&shown[i]) => {}
        found => {
            // a new version for this source: its old series go, so the label sets stay one
            // version's columns per source
            if let Some(i) = found {
                let old = shown.swap_remove(i);
                let (om, ov) = (old.model.as_str(), old.version.as_str());
                for f in &old.features {
                    for gv in [&g.psi, &g.js, &g.missing, &g.outside] {
                        let _ = gv.remove_label_values(&[om, ov, f.as_str(), src]);
                    }
                }
                let _ = g.records.remove_label_values(&[om, ov, src]);
                for verdict in ["stable", "watch", "drift"] {
                    let _ = g.windows.remove_label_values(&[om, ov, src, verdict]);
                }
            }
            shown.push(Shown {
                source: src.into(),
                model: m.into(),
                version: v.into(),
                features: features.iter().map(|c| c.name.clone()).collect(),
            });
        }
    }
    for c in features {
        let l = [m, v, c.name.as_str(), src];
        g.psi.with_label_values(&l).set(c.psi);
        g.js.with_label_values(&l).set(c.jensen_shannon);
        g.missing.with_label_values(&l).set(c.missing_rate);
        if let Some(x) = c.out_of_range_rate.or(c.unseen_rate) {
            g.outside.with_label_values(&l).set(x);
        }
    }
    g.records.with_label_values(&[m, v, src]).set(msg.report.records as f64);
    g.windows.with_label_values(&[m, v, src, &msg.report.verdict]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(version: &str, with_reference: bool) -> Served {
        let params = crate::params::Params::load(std::path::Path::new("params/params.yaml")).unwrap();
        let mut a = crate::train::fit_artifact(&params).unwrap();
        a.version = version.into();
        if !with_reference {
            a.drift = None;
        }
        Served::from_artifact(&a, crate::predict::ServeOptions::key("key")).unwrap()
    }

    fn row(m: &Served, alcohol: f64) -> Vec<Cell<'static>> {
        let values = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, alcohol];
        assert_eq!(m.scorer.input_columns().len(), values.len());
        values.iter().map(|v| Cell::Num(*v)).collect()
    }

    #[test]
    fn windows_close_when_full_on_a_swap_and_at_a_stop_and_reset_between() {
        let (v1, v2, old) = (served("v1", true), served("v2", true), served("v0", false));
        let limits = WindowLimits { records: 3, every: Duration::from_secs(3600) };
        let mut m = Monitor::new(limits, Some("replica-a"), "records");
        m.follow(&old);
        m.record(Some(&row(&old, 10.0)), Some(5.0));
        assert!(m.deadline().is_none(), "a version without a reference counts nothing");
        m.follow(&v1);
        for i in 0..7 {
            m.record(Some(&row(&v1, 9.0 + f64::from(i) * 0.5)), Some(5.5));
        }
        m.record(None, None);
        let full = m.take();
        assert_eq!(full.iter().map(|w| (w.window, w.report.records)).collect::<Vec<_>>(), [(1, 3), (2, 3)]);
        assert!(full.iter().all(|w| w.closed_by == "records" && w.version == "v1" && w.instance == "replica-a"));
        // the second window's counts are its own: its alcohol range is rows 3..6
        let alcohol = |w: &DriftMessage| w.report.columns.iter().find(|c| c.name == "alcohol").unwrap().clone();
        assert_eq!((alcohol(&full[1]).min, alcohol(&full[1]).max), (Some(10.5), Some(11.5)));
        m.follow(&v2);
        let swapped = m.take();
        assert_eq!(swapped.len(), 1);
        assert_eq!(
            (swapped[0].closed_by.as_str(), swapped[0].report.records, swapped[0].report.unreadable),
            ("swap", 1, 1)
        );
        m.follow(&v2);
        m.stop();
        assert!(m.take().is_empty(), "an empty window is never published");
        m.record(Some(&row(&v2, 12.0)), None);
        assert!(m.deadline().is_some());
        m.stop();
        let stopped = m.take();
        assert_eq!((stopped[0].version.as_str(), stopped[0].window, stopped[0].report.rejected), ("v2", 1, 1));
        assert_eq!(stopped[0].closed_by, "stop");
        let back: DriftMessage = serde_json::from_slice(&encode(&stopped[0]).unwrap()).unwrap();
        assert_eq!(back, stopped[0]);
    }

    #[test]
    fn a_window_closes_when_its_time_is_up() {
        let v1 = served("v1", true);
        let mut m = Monitor::new(WindowLimits { records: 1000, every: Duration::from_millis(30) }, None, "records");
        m.follow(&v1);
        m.tick();
        assert!(m.take().is_empty(), "no record, no window");
        m.record(Some(&row(&v1, 10.0)), Some(5.0));
        m.tick();
        assert!(m.take().is_empty(), "not yet");
        std::thread::sleep(Duration::from_millis(40));
        m.tick();
        let w = m.take();
        assert_eq!((w.len(), w[0].closed_by.as_str(), w[0].report.records), (1, "time", 1));
        assert!(w[0].end_ms >= w[0].start_ms + 30);
    }

    /// Every metric the Grafana dashboard queries is exposed: the events' metrics and, once a
    /// window has closed, the drift gauges (a source label of its own, so that the other tests'
    /// windows never remove these series).
    #[test]
    fn every_metric_of_the_grafana_dashboard_exists() {
        let dashboard = include_str!("../../docs/grafana/modelcast-dashboard.json");
        let m = crate::events::metrics();
        m.model_info.with_label_values(&["m", "v"]).set(1);
        m.shadow_info.with_label_values(&["m", "v"]).set(1);
        m.consumer_lag.with_label_values(&["0"]).set(0);
        let v1 = served("v1", true);
        let mut d = Monitor::new(WindowLimits { records: 1, every: Duration::from_secs(60) }, None, "dashboard-test");
        d.follow(&v1);
        d.record(Some(&row(&v1, 10.0)), Some(5.0));
        assert_eq!(d.take().len(), 1);
        not_published(0, "a test");
        let text = crate::events::render();
        let mut names = std::collections::BTreeSet::new();
        for prefix in ["modelcast_", "process_"] {
            for (i, _) in dashboard.match_indices(prefix) {
                let name: String =
                    dashboard[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                names.insert(name);
            }
        }
        assert!(names.len() > 15 && names.contains("modelcast_feature_psi"), "{names:?}");
        for name in names {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
                "the dashboard uses {name}, which /metrics does not expose"
            );
        }
    }
}
