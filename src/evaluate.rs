//! The live-evaluation flow behind `modelcast evaluate`: live accuracy per model version. Reads the predictions (`app_messages`,
//! and the shadow topic when it exists) and the labels topic from `now − horizon` on, joins them
//! by key ([`crate::live::Joiner`]) and reports per version: once (batch: up to the ends at start,
//! then a JSON snapshot on stdout) or continuously (`--serve`: a snapshot on the
//! `model_metrics` topic and the `modelcast_live_*` gauges on `/metrics` every interval).
//!
//! The horizon runs on the wall clock, or on the newest record's timestamp when that is later
//! (a replay, or a producer ahead of this machine's clock). State is not stored: a (re)started
//! evaluator rebuilds it by re-reading the horizon, so after a crash nothing is counted twice;
//! "since start" means since `start − horizon`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, IntGaugeVec, Opts};

use crate::bus::Bus;
use crate::config::kafka::KafkaConfig;
use crate::error::{Error, Result};
use crate::live::{JoinConfig, Joiner, Said, Stream, VersionId};
use crate::messages::{decode_label, ModelMetrics, Prediction, MODEL_METRICS_SCHEMA_VERSION};

/// `evaluate`, validated.
#[derive(Debug)]
pub struct EvaluateSettings {
    /// Brokers and topic names (`None`: the local logs in `local`).
    pub kafka: Option<KafkaConfig>,
    /// The local bus directory (`<file store>/_bus`) when there is no Kafka config.
    pub local: Option<std::path::PathBuf>,
    /// How far back to read, and how long each side waits for the other.
    pub horizon: Duration,
    /// Most predictions and labels waiting at once.
    pub max_pending: usize,
    /// Publishing interval (and window bucket).
    pub interval: Duration,
    /// Sliding window.
    pub window: Duration,
    /// Field of a label record that holds the key.
    pub key_field: String,
    /// Field of a label record that holds the true value.
    pub label_field: String,
    /// Keep running and publish every interval.
    pub serve: bool,
    /// Where to serve `/metrics` and `/healthz` (with `serve`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl EvaluateSettings {
    /// The joiner's settings: the horizon, the bound, and the window in buckets of one interval.
    fn join_config(&self) -> JoinConfig {
        JoinConfig {
            horizon_ms: self.horizon.as_millis() as i64,
            max_pending: self.max_pending,
            bucket_ms: self.interval.as_millis().max(1) as i64,
            window_buckets: (self.window.as_millis() / self.interval.as_millis().max(1)).max(1) as usize,
        }
    }
}

/// Evaluate: in batch mode the final snapshot (for the command to print), with `--serve`
/// nothing (snapshots go to the `model_metrics` topic until a signal stops the loop).
///
/// One function of some 130 lines on purpose: the join loop runs on a blocking thread and
/// shares its clock, its joiner and its stop flag with the publishing loop, and reads best in
/// one place.
pub async fn run(s: EvaluateSettings) -> Result<Option<ModelMetrics>> {
    let cfg = match (&s.kafka, &s.local) {
        (Some(cfg), _) => cfg.clone(),
        (None, Some(dir)) => return run_local(&s, dir).map(Some),
        (None, None) => return Err(Error::Usage("evaluate needs --kafka-config or a file:// --store".into())),
    };
    let t = cfg.modelcast.topics.clone();
    let bus = Bus::kafka(cfg)?;
    let found = bus.check_topics(&[&t.app_messages, &t.labels]).await?;
    check_copartitioned(&found, &t.app_messages, &t.labels)?;
    let mut topics = vec![t.app_messages.clone(), t.labels.clone()];
    match bus.check_topics(&[&t.shadow]).await {
        Ok(_) => topics.push(t.shadow.clone()),
        Err(e) => {
            tracing::info!(topic = %t.shadow, reason = %e, "no shadow topic: evaluating the served predictions only")
        }
    }
    if s.serve {
        bus.check_topics(&[&t.model_metrics]).await?;
    }
    let gauges = if s.serve { Some(Gauges::register()?) } else { None };
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = s.metrics_addr {
        crate::predict::http::serve_metrics(addr, ready.clone()).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::predict::shutdown_signal().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ModelMetrics>();
    let since = chrono::Utc::now() - chrono::Duration::from_std(s.horizon).unwrap_or(chrono::Duration::zero());
    let reader_bus = bus.clone();
    let names = (t.app_messages.clone(), t.shadow.clone(), t.labels.clone());
    let cfg = s.join_config();
    let (key_field, label_field, serve, interval) = (s.key_field.clone(), s.label_field.clone(), s.serve, s.interval);
    let (horizon_s, window_s) = (s.horizon.as_secs(), s.window.as_secs());
    let loop_stop = stop.clone();
    let worker = tokio::task::spawn_blocking(move || -> Result<ModelMetrics> {
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut reader = reader_bus.read_since(&refs, since)?;
        let mut joiner = Joiner::new(cfg);
        let mut undecodable = 0u64;
        // the expiry clock: the wall clock, or the newest record's timestamp when that is later
        let mut newest = i64::MIN;
        let mut next_tick = Instant::now() + interval;
        let snapshot = |j: &Joiner, undecodable: u64| ModelMetrics {
            schema_version: MODEL_METRICS_SCHEMA_VERSION,
            kind: "model_metrics".into(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            horizon_s,
            window_s,
            undecodable,
            snapshot: j.snapshot(),
        };
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            reader.poll(Duration::from_millis(100), &mut |r| {
                let at = r.timestamp_ms.unwrap_or(now);
                newest = newest.max(at);
                let ok = if r.topic == names.2 {
                    match decode_label(r.payload, &key_field, &label_field) {
                        Ok((key, truth)) => {
                            joiner.label(&key, truth, at, now);
                            true
                        }
                        Err(reason) => {
                            warn_undecodable(r.topic, &reason, undecodable);
                            false
                        }
                    }
                } else {
                    let stream = if r.topic == names.1 { Stream::Shadow } else { Stream::Served };
                    match serde_json::from_slice::<Prediction>(r.payload).map_err(|e| e.to_string()).and_then(said) {
                        Ok((p, said)) => {
                            let version = VersionId { model_name: p.model_name, model_version: p.model_version };
                            joiner.prediction(&p.key, stream, version, said, p.predicted_at_ms, now);
                            true
                        }
                        Err(e) => {
                            warn_undecodable(r.topic, &e.to_string(), undecodable);
                            false
                        }
                    }
                };
                if !ok {
                    undecodable += 1;
                }
            });
            // while re-reading the horizon, topics arrive out of step: only the wall clock then
            let wall = chrono::Utc::now().timestamp_millis();
            let clock = if reader.caught_up() { wall.max(newest) } else { wall };
            if !serve && reader.caught_up() {
                joiner.expire(clock);
                return Ok(snapshot(&joiner, undecodable));
            }
            if serve && Instant::now() >= next_tick {
                joiner.expire(clock);
                let _ = tx.send(snapshot(&joiner, undecodable));
                next_tick += interval;
            }
            if loop_stop.load(Ordering::Relaxed) {
                return Ok(snapshot(&joiner, undecodable));
            }
        }
    });
    if serve {
        ready.store(true, Ordering::Relaxed);
        while let Some(m) = rx.recv().await {
            if let Some(g) = &gauges {
                g.set(&m);
            }
            let payload = serde_json::to_vec(&m).map_err(|e| Error::Encode { what: "model_metrics", source: e })?;
            match bus.publish_to(&t.model_metrics, "model_metrics", payload, "model metrics").await {
                Ok(_) => tracing::info!(
                    joined = m.snapshot.counts.joined,
                    versions = m.snapshot.versions.len(),
                    pending = m.snapshot.pending_predictions,
                    "published model metrics"
                ),
                Err(e) => tracing::warn!(error = %e, "could not publish model metrics; retrying at the next interval"),
            }
        }
    }
    let last = worker.await.map_err(|e| Error::Task { what: "evaluation", message: e.to_string() })??;
    Ok((!serve).then_some(last))
}

/// `evaluate` on the embedded default: the local prediction log (`--sink bus`; a line's
/// `shadow_prediction` counts as the shadow stream) and `labels.jsonl` beside it, read once.
/// Predictions are stamped when they were made; a label has no time of its own here, so it
/// counts as arriving now and only predictions older than the horizon expire.
fn run_local(s: &EvaluateSettings, dir: &std::path::Path) -> Result<ModelMetrics> {
    let lines = |name: &str| -> Result<Vec<String>> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "no such log yet");
                Ok(Vec::new())
            }
            Err(e) => Err(Error::io("read", path, e)),
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut joiner = Joiner::new(s.join_config());
    let mut undecodable = 0u64;
    let mut shadow_skipped = 0u64;
    for line in lines("app_messages.jsonl")? {
        match serde_json::from_str::<Prediction>(&line).map_err(|e| e.to_string()).and_then(said) {
            Ok((p, said)) => {
                let classifier = matches!(said, Said::Classes { .. });
                let served = VersionId { model_name: p.model_name.clone(), model_version: p.model_version.clone() };
                joiner.prediction(&p.key, Stream::Served, served, said, p.predicted_at_ms, now);
                match (p.shadow_prediction, p.shadow_version) {
                    // a classifier's shadow line carries one number, not its classes
                    (Some(_), Some(_)) if classifier => shadow_skipped += 1,
                    (Some(x), Some(v)) => {
                        let shadow = VersionId { model_name: p.model_name, model_version: v };
                        joiner.prediction(&p.key, Stream::Shadow, shadow, Said::Value(x), p.predicted_at_ms, now);
                    }
                    _ => {}
                }
            }
            Err(e) => {
                warn_undecodable("app_messages.jsonl", &e.to_string(), undecodable);
                undecodable += 1;
            }
        }
    }
    for line in lines("labels.jsonl")? {
        match decode_label(line.as_bytes(), &s.key_field, &s.label_field) {
            Ok((key, truth)) => joiner.label(&key, truth, now, now),
            Err(reason) => {
                warn_undecodable("labels.jsonl", &reason, undecodable);
                undecodable += 1;
            }
        }
    }
    if shadow_skipped > 0 {
        tracing::warn!(
            lines = shadow_skipped,
            "a classifier's shadow predictions in the local log carry no classes and are not evaluated; \
             run the shadow on Kafka for its live metrics"
        );
    }
    joiner.expire(now);
    let m = ModelMetrics {
        schema_version: MODEL_METRICS_SCHEMA_VERSION,
        kind: "model_metrics".into(),
        at_ms: now,
        horizon_s: s.horizon.as_secs(),
        window_s: s.window.as_secs(),
        undecodable,
        snapshot: joiner.snapshot(),
    };
    Ok(m)
}

/// The newest message of the `model_metrics` topic, if any.
pub async fn latest(bus: &Bus) -> Result<Option<ModelMetrics>> {
    let topic = bus.topics().model_metrics;
    let history = bus.follow(&topic).await?.history().await?;
    Ok(history
        .iter()
        .filter_map(|b| serde_json::from_slice::<ModelMetrics>(b).ok())
        .filter(|m| m.schema_version == MODEL_METRICS_SCHEMA_VERSION)
        .max_by_key(|m| m.at_ms))
}

/// What a prediction message said: its value, or (a classifier's, with a `class`) its classes,
/// probabilities and the index of its class.
fn said(p: Prediction) -> std::result::Result<(Prediction, Said), String> {
    let said = match (&p.class, &p.probabilities) {
        (None, _) => Said::Value(p.prediction),
        (Some(class), Some(probs)) => {
            let classes: Vec<String> = probs.0.iter().map(|(c, _)| c.clone()).collect();
            let Some(index) = classes.iter().position(|c| c == class) else {
                return Err(format!("its class {class:?} is not among its probabilities"));
            };
            Said::Classes { probabilities: probs.0.iter().map(|(_, p)| *p).collect(), classes, class: index }
        }
        (Some(_), None) => return Err("a class without probabilities".into()),
    };
    Ok((p, said))
}

fn warn_undecodable(topic: &str, reason: &str, so_far: u64) {
    if so_far < 10 {
        tracing::warn!(%topic, %reason, "skipped a record that is not a prediction or a label");
    }
}

/// The join needs labels and predictions of a key in the same partition number: the same
/// partition count (and the same key → partition mapping, which the default partitioner gives).
fn check_copartitioned(found: &[(String, usize)], predictions: &str, labels: &str) -> Result<()> {
    let count = |t: &str| found.iter().find(|(n, _)| n == t).map(|(_, p)| *p);
    match (count(predictions), count(labels)) {
        (Some(a), Some(b)) if a != b => Err(Error::Bus {
            target: labels.to_string(),
            message: format!(
                "the labels topic {labels} has {b} partitions but the predictions topic {predictions} has {a}: \
                 the join needs them co-partitioned (the same partition count, labels keyed like the predictions); \
                 recreate {labels} with {a} partitions"
            ),
        }),
        _ => Ok(()),
    }
}

/// The `modelcast_live_*` gauges (set from each snapshot; rebuilt, not accumulated, on restart).
struct Gauges {
    rmse: GaugeVec,
    mae: GaugeVec,
    r2: GaugeVec,
    bias: GaugeVec,
    accuracy: GaugeVec,
    log_loss: GaugeVec,
    auc: GaugeVec,
    labelled: IntGaugeVec,
    expired: IntGaugeVec,
    pending: IntGaugeVec,
    counts: IntGaugeVec,
}

impl Gauges {
    fn register() -> Result<Gauges> {
        let reg = &crate::events::metrics().registry;
        let err = |e: prometheus::Error| Error::Metrics(e.to_string());
        let labels = ["model", "version", "stream", "window"];
        let gauge = |name: &str, help: &str| -> Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(name, help), &labels).map_err(err)?;
            reg.register(Box::new(g.clone())).map_err(err)?;
            Ok(g)
        };
        let int = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).map_err(err)?;
            reg.register(Box::new(g.clone())).map_err(err)?;
            Ok(g)
        };
        Ok(Gauges {
            rmse: gauge(
                "modelcast_live_rmse",
                "RMSE of labelled predictions per version (window: since_start or sliding).",
            )?,
            mae: gauge("modelcast_live_mae", "MAE of labelled predictions per version.")?,
            r2: gauge("modelcast_live_r2", "R² of labelled predictions per version.")?,
            bias: gauge("modelcast_live_bias", "Mean prediction − label per version.")?,
            accuracy: gauge(
                "modelcast_live_accuracy",
                "Classifiers: share of labelled predictions of the right class.",
            )?,
            log_loss: gauge("modelcast_live_log_loss", "Classifiers: mean log loss of labelled predictions.")?,
            auc: gauge(
                "modelcast_live_auc",
                "Classifiers: ROC AUC from score histograms (within auc_bound of the exact one; see model_metrics).",
            )?,
            labelled: int("modelcast_live_labelled", "Labelled predictions per version.", &labels)?,
            expired: int(
                "modelcast_live_expired",
                "Predictions dropped at the horizon without a label, per version.",
                &["model", "version", "stream"],
            )?,
            pending: int("modelcast_live_pending", "Predictions or labels waiting for the other side.", &["kind"])?,
            counts: int(
                "modelcast_live_records",
                "Join counters: joined, labels, labels_unmatched, duplicates, evicted, labels_unusable, undecodable.",
                &["what"],
            )?,
        })
    }

    fn set(&self, m: &ModelMetrics) {
        for v in &m.snapshot.versions {
            let stream = match v.stream {
                Stream::Served => "served",
                Stream::Shadow => "shadow",
            };
            for (window, lm) in [("since_start", &v.since_start), ("sliding", &v.window)] {
                let l = [v.model_name.as_str(), v.model_version.as_str(), stream, window];
                match lm {
                    Some(x) => {
                        self.rmse.with_label_values(&l).set(x.rmse);
                        self.mae.with_label_values(&l).set(x.mae);
                        self.bias.with_label_values(&l).set(x.bias);
                        if let Some(r2) = x.r2 {
                            self.r2.with_label_values(&l).set(r2);
                        }
                        if let Some(c) = &x.classification {
                            self.accuracy.with_label_values(&l).set(c.accuracy);
                            self.log_loss.with_label_values(&l).set(c.log_loss);
                            if let Some(auc) = c.auc {
                                self.auc.with_label_values(&l).set(auc);
                            }
                        }
                        self.labelled.with_label_values(&l).set(x.count as i64);
                    }
                    None => self.labelled.with_label_values(&l).set(0),
                }
            }
            self.expired.with_label_values(&[&v.model_name, &v.model_version, stream]).set(v.expired as i64);
        }
        self.pending.with_label_values(&["predictions"]).set(m.snapshot.pending_predictions as i64);
        self.pending.with_label_values(&["labels"]).set(m.snapshot.pending_labels as i64);
        let c = &m.snapshot.counts;
        for (what, n) in [
            ("joined", c.joined),
            ("labels", c.labels),
            ("labels_unmatched", c.labels_unmatched),
            ("duplicates", c.duplicates),
            ("evicted", c.evicted),
            ("labels_unusable", c.labels_unusable),
            ("undecodable", m.undecodable),
        ] {
            self.counts.with_label_values(&[what]).set(n as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_strings_and_numbers_and_name_what_is_missing() {
        let number = |b: &[u8], k: &str, l: &str| decode_label(b, k, l).map(|(key, t)| (key, t.number));
        assert_eq!(number(br#"{"key":"a","label":5}"#, "key", "label"), Ok(("a".into(), Some(5.0))));
        assert_eq!(number(br#"{"id":7,"quality":"6.5"}"#, "id", "quality"), Ok(("7".into(), Some(6.5))));
        let (_, t) = decode_label(br#"{"key":"a","label":"fraud"}"#, "key", "label").unwrap();
        assert_eq!((t.text.as_str(), t.number), ("fraud", None));
        let (_, t) = decode_label(br#"{"key":"a","label":true}"#, "key", "label").unwrap();
        assert_eq!((t.text.as_str(), t.number), ("1", Some(1.0)));
        assert!(decode_label(br#"{"key":"a","label":null}"#, "key", "label").unwrap_err().contains("\"label\""));
        assert!(decode_label(br#"{"key":"a"}"#, "key", "label").unwrap_err().contains("\"label\""));
        assert!(decode_label(b"x", "key", "label").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn mis_partitioned_labels_are_refused_naming_both_topics() {
        let found = vec![("app".to_string(), 3), ("lab".to_string(), 2)];
        let e = check_copartitioned(&found, "app", "lab").unwrap_err().to_string();
        assert!(e.contains("lab has 2 partitions") && e.contains("app has 3"), "{e}");
        assert!(check_copartitioned(&[("app".into(), 3), ("lab".into(), 3)], "app", "lab").is_ok());
    }
}
