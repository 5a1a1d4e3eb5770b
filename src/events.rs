//! Typed internal events, after vector's `internal_events`: each notable thing that happens is
//! one struct whose [`Event::emit`] writes one log line, carrying an `event` field with its
//! [`Event::NAME`], and updates its counter — from one definition, in every mode (file, follow,
//! serve). The counters live in [`metrics()`], the registry `/metrics` exposes.
//!
//! Invariant: code outside this module never logs or counts these occurrences by itself; it
//! emits the event. Tests assert on counts and on the `event` field of JSON logs, never on text.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Buckets of the end-to-end latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// Buckets of the |serving − shadow| histogram, in the target's units.
/// Buckets of the request latency: from 50 µs (a single row on loopback) to 1 s.
const HTTP_BUCKETS: [f64; 13] = [0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0];
const DIFF_BUCKETS: [f64; 10] = [0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// The process's metrics: one registry, with the standard process collector.
///
/// The names and labels are a documented interface (README, "Metrics"): change them only with a
/// changelog entry.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// `modelcast_records_in_total`: records read from the input.
    pub records_in: IntCounter,
    /// `modelcast_predictions_out_total`: predictions delivered (acknowledged on Kafka).
    pub predictions_out: IntCounter,
    /// `modelcast_dead_lettered_total`: records rejected (sent to the dead-letter topic or log).
    pub dead_lettered: IntCounter,
    /// `modelcast_model_swaps_total`: hot swaps to a newer model.
    pub swaps: IntCounter,
    /// `modelcast_models_refused_total`: announcements or models refused.
    pub refused: IntCounter,
    /// `modelcast_delivery_failures_total`: outputs the broker did not acknowledge.
    pub delivery_failures: IntCounter,
    /// `modelcast_model_fetch_retries_total`: fetches of an announced model retried after a
    /// transient store error.
    pub fetch_retries: IntCounter,
    /// `modelcast_model_info{model,version}`: 1 for the serving model.
    pub model_info: IntGaugeVec,
    /// `modelcast_ready`: 1 once a model is loaded.
    pub ready: IntGauge,
    /// `modelcast_end_to_end_latency_seconds`: input record timestamp to acknowledged prediction.
    pub latency: Histogram,
    /// `modelcast_consumer_lag{partition}`: records behind the high watermark, set at each scrape.
    pub consumer_lag: IntGaugeVec,
    /// `modelcast_shadow_scored_total`: records scored by both the serving and the shadow model.
    pub shadow_scored: IntCounter,
    /// `modelcast_shadow_rejected_total`: records the serving model scored but the shadow model
    /// could not (not dead-lettered).
    pub shadow_rejected: IntCounter,
    /// `modelcast_shadow_delivery_failures_total`: shadow predictions the broker did not
    /// acknowledge (they never hold back the serving model's offsets).
    pub shadow_delivery_failures: IntCounter,
    /// `modelcast_shadow_abs_diff`: |serving − shadow| per record scored by both.
    pub shadow_abs_diff: Histogram,
    /// `modelcast_shadow_info{model,version}`: 1 for the shadow model.
    pub shadow_info: IntGaugeVec,
    /// `modelcast_http_requests_total{endpoint,code}`: Open Inference Protocol requests answered.
    pub http_requests: IntCounterVec,
    /// `modelcast_http_request_seconds{endpoint}`: time to answer one, body read to body built.
    pub http_latency: HistogramVec,
    /// `modelcast_http_rows_per_request`: rows in each inference request.
    pub http_rows: Histogram,
    /// `modelcast_http_batch_rows`: rows in each batch the scoring thread scored together.
    pub http_batch_rows: Histogram,
    /// `modelcast_http_batch_requests`: requests in each batch.
    pub http_batch_requests: Histogram,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
        let c = IntCounter::new(name, help)?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let records_in = counter("modelcast_records_in_total", "Records consumed from the input topic.")?;
    let predictions_out = counter("modelcast_predictions_out_total", "Predictions acknowledged on app_messages.")?;
    let dead_lettered = counter("modelcast_dead_lettered_total", "Records sent to the dead-letter topic.")?;
    let swaps = counter("modelcast_model_swaps_total", "Hot swaps to a newer model.")?;
    let refused = counter("modelcast_models_refused_total", "Announcements or models refused.")?;
    let delivery_failures = counter("modelcast_delivery_failures_total", "Outputs the broker did not acknowledge.")?;
    let fetch_retries = counter(
        "modelcast_model_fetch_retries_total",
        "Fetches of an announced model retried after a transient store error.",
    )?;
    let model_info = IntGaugeVec::new(Opts::new("modelcast_model_info", "The serving model."), &["model", "version"])?;
    registry.register(Box::new(model_info.clone()))?;
    let ready = IntGauge::new("modelcast_ready", "1 once a model is loaded and serving.")?;
    registry.register(Box::new(ready.clone()))?;
    let latency = Histogram::with_opts(
        HistogramOpts::new(
            "modelcast_end_to_end_latency_seconds",
            "Input record timestamp to acknowledged prediction.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
    )?;
    registry.register(Box::new(latency.clone()))?;
    let consumer_lag =
        IntGaugeVec::new(Opts::new("modelcast_consumer_lag", "Records behind the high watermark."), &["partition"])?;
    registry.register(Box::new(consumer_lag.clone()))?;
    let shadow_scored =
        counter("modelcast_shadow_scored_total", "Records scored by both the serving and the shadow model.")?;
    let shadow_rejected =
        counter("modelcast_shadow_rejected_total", "Records the shadow model could not score (not dead-lettered).")?;
    let shadow_delivery_failures =
        counter("modelcast_shadow_delivery_failures_total", "Shadow predictions the broker did not acknowledge.")?;
    let shadow_abs_diff = Histogram::with_opts(
        HistogramOpts::new("modelcast_shadow_abs_diff", "|serving - shadow| prediction per record scored by both.")
            .buckets(DIFF_BUCKETS.to_vec()),
    )?;
    registry.register(Box::new(shadow_abs_diff.clone()))?;
    let shadow_info = IntGaugeVec::new(Opts::new("modelcast_shadow_info", "The shadow model."), &["model", "version"])?;
    registry.register(Box::new(shadow_info.clone()))?;
    let http_requests = IntCounterVec::new(
        Opts::new("modelcast_http_requests_total", "Open Inference Protocol requests answered."),
        &["endpoint", "code"],
    )?;
    registry.register(Box::new(http_requests.clone()))?;
    let http_latency = HistogramVec::new(
        HistogramOpts::new("modelcast_http_request_seconds", "Time to answer an Open Inference Protocol request.")
            .buckets(HTTP_BUCKETS.to_vec()),
        &["endpoint"],
    )?;
    registry.register(Box::new(http_latency.clone()))?;
    let http_rows = Histogram::with_opts(
        HistogramOpts::new("modelcast_http_rows_per_request", "Rows in each inference request.")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]),
    )?;
    registry.register(Box::new(http_rows.clone()))?;
    let http_batch_rows = Histogram::with_opts(
        HistogramOpts::new("modelcast_http_batch_rows", "Rows of inference requests scored together in one batch.")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]),
    )?;
    registry.register(Box::new(http_batch_rows.clone()))?;
    let http_batch_requests = Histogram::with_opts(
        HistogramOpts::new("modelcast_http_batch_requests", "Inference requests scored together in one batch.")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
    )?;
    registry.register(Box::new(http_batch_requests.clone()))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
    Ok(Metrics {
        registry,
        records_in,
        predictions_out,
        dead_lettered,
        swaps,
        refused,
        delivery_failures,
        fetch_retries,
        model_info,
        ready,
        latency,
        consumer_lag,
        shadow_scored,
        shadow_rejected,
        shadow_delivery_failures,
        shadow_abs_diff,
        shadow_info,
        http_requests,
        http_latency,
        http_rows,
        http_batch_rows,
        http_batch_requests,
    })
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| match build() {
    Ok(m) => m,
    // Only a duplicate or malformed name can fail, and the names are constants above: a bug
    // that every test run would hit at once.
    Err(e) => panic!("metric registry: {e}"),
});

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The Prometheus text exposition of every metric, process metrics included.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&METRICS.registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Something worth one log line and one count.
pub trait Event {
    /// The value of the `event` field of its log line.
    const NAME: &'static str;
    /// Log it once and count it once.
    fn emit(self);
}

/// A model was loaded and is now serving (at start).
pub struct ModelServing<'a> {
    /// Model name.
    pub model: &'a str,
    /// Version id.
    pub version: &'a str,
}

impl Event for ModelServing<'_> {
    const NAME: &'static str = "model_serving";
    fn emit(self) {
        tracing::info!(event = Self::NAME, model = %self.model, version = %self.version, "serving model");
        let m = metrics();
        m.model_info.reset();
        m.model_info.with_label_values(&[self.model, self.version]).set(1);
        m.ready.set(1);
    }
}

/// The serving model was replaced by a newer one, between two chunks of records.
pub struct ModelSwapped<'a> {
    /// Model name.
    pub model: &'a str,
    /// The version that served until now.
    pub from: &'a str,
    /// The version that serves from now on.
    pub to: &'a str,
}

impl Event for ModelSwapped<'_> {
    const NAME: &'static str = "model_swapped";
    fn emit(self) {
        tracing::info!(event = Self::NAME, model = %self.model, from = %self.from, to = %self.to, "hot-swapped model");
        let m = metrics();
        m.swaps.inc();
        m.model_info.reset();
        m.model_info.with_label_values(&[self.model, self.to]).set(1);
    }
}

/// The shadow model was replaced (its alias moved), between two chunks of records.
pub struct ShadowSwapped<'a> {
    /// Model name.
    pub model: &'a str,
    /// The version that shadowed until now (empty: none).
    pub from: &'a str,
    /// The version that shadows from now on.
    pub to: &'a str,
}

impl Event for ShadowSwapped<'_> {
    const NAME: &'static str = "shadow_swapped";
    fn emit(self) {
        tracing::info!(event = Self::NAME, model = %self.model, from = %self.from, to = %self.to, "swapped shadow model");
        let m = metrics();
        m.shadow_info.reset();
        m.shadow_info.with_label_values(&[self.model, self.to]).set(1);
    }
}

/// An announced model was refused (bad sha256, bad artifact, other name or schema); the current
/// one keeps serving.
pub struct ModelRefused<'a> {
    /// The refused version.
    pub version: &'a str,
    /// Why.
    pub reason: &'a dyn std::fmt::Display,
}

impl Event for ModelRefused<'_> {
    const NAME: &'static str = "model_refused";
    fn emit(self) {
        tracing::warn!(event = Self::NAME, version = %self.version, reason = %self.reason, "refused model");
        metrics().refused.inc();
    }
}

/// The service started without a model to serve and waits for one to be announced (or for its
/// alias to be set).
pub struct WaitingForModel<'a> {
    /// Why there is none yet.
    pub reason: &'a str,
}

impl Event for WaitingForModel<'_> {
    const NAME: &'static str = "waiting_for_model";
    fn emit(self) {
        tracing::warn!(event = Self::NAME, reason = %self.reason, "no model yet; waiting");
    }
}

/// A message on the train topic was not a valid announcement.
pub struct AnnouncementRefused<'a> {
    /// Why.
    pub reason: &'a str,
}

impl Event for AnnouncementRefused<'_> {
    const NAME: &'static str = "announcement_refused";
    fn emit(self) {
        tracing::warn!(event = Self::NAME, reason = %self.reason, "refused announcement");
        metrics().refused.inc();
    }
}

/// A train-topic message of a type this modelcast does not know (from a newer one) was skipped.
pub struct MessageSkipped<'a> {
    /// Its `type`.
    pub kind: &'a str,
}

impl Event for MessageSkipped<'_> {
    const NAME: &'static str = "message_skipped";
    fn emit(self) {
        tracing::warn!(event = Self::NAME, kind = %self.kind, "skipped a train message of an unknown type (written by a newer modelcast?)");
    }
}

/// A record could not be scored and was dead-lettered. Logged for the first 20 and then at
/// every power of two, so a flood of bad records cannot flood the log; always counted.
pub struct RecordRejected<'a> {
    /// The record's key.
    pub key: &'a str,
    /// Why.
    pub reason: &'a str,
}

impl Event for RecordRejected<'_> {
    const NAME: &'static str = "record_rejected";
    fn emit(self) {
        let c = &metrics().dead_lettered;
        c.inc();
        let n = c.get();
        if n <= 20 || n.is_power_of_two() {
            tracing::warn!(event = Self::NAME, key = %self.key, reason = %self.reason, rejected_so_far = n,
                "record rejected (dead-lettered)");
        }
    }
}

/// An announced model could not be fetched (store outage); it is retried after a backoff while
/// the current model keeps serving.
pub struct ModelFetchRetry<'a> {
    /// The version being fetched.
    pub version: &'a str,
    /// Attempts so far.
    pub attempt: u32,
    /// Wait before the next attempt.
    pub retry_in_ms: u64,
    /// Why the fetch failed.
    pub reason: &'a dyn std::fmt::Display,
}

impl Event for ModelFetchRetry<'_> {
    const NAME: &'static str = "model_fetch_retry";
    fn emit(self) {
        tracing::warn!(event = Self::NAME, version = %self.version, attempt = self.attempt,
            retry_in_ms = self.retry_in_ms, reason = %self.reason,
            "cannot fetch the new model; the current one keeps serving");
        metrics().fetch_retries.inc();
    }
}

/// The broker did not acknowledge an output; offsets of its batch are not stored.
pub struct DeliveryFailed<'a> {
    /// Topic of the output.
    pub topic: &'a str,
    /// Why.
    pub reason: &'a dyn std::fmt::Display,
}

impl Event for DeliveryFailed<'_> {
    const NAME: &'static str = "delivery_failed";
    fn emit(self) {
        tracing::error!(event = Self::NAME, topic = %self.topic, reason = %self.reason, "delivery failed");
        metrics().delivery_failures.inc();
    }
}

/// A prediction run ended (input exhausted, interrupted, or service stopped).
pub struct RunFinished {
    /// Records scored.
    pub scored: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Models swapped in.
    pub swaps: u64,
    /// `done` (batch, follow) or `stopped` (service).
    pub how: &'static str,
    /// Where rejected records went, when any were.
    pub dead_letters: Option<String>,
}

impl Event for RunFinished {
    const NAME: &'static str = "run_finished";
    fn emit(self) {
        let (scored, rejected, swaps) = (self.scored, self.rejected, self.swaps);
        match self.dead_letters {
            Some(to) if rejected > 0 => tracing::warn!(event = Self::NAME, scored, rejected, swaps, dead_letters = %to,
                "{}, with rejected records", self.how),
            _ => tracing::info!(event = Self::NAME, scored, rejected, swaps, "{}", self.how),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_once_and_the_exposition_keeps_the_documented_names() {
        let before = metrics().swaps.get();
        ModelSwapped { model: "m", from: "v1", to: "v2" }.emit();
        assert_eq!(metrics().swaps.get(), before + 1);
        let refused = metrics().refused.get();
        AnnouncementRefused { reason: "x" }.emit();
        ModelRefused { version: "v3", reason: &"bad" }.emit();
        assert_eq!(metrics().refused.get(), refused + 2);
        let text = render();
        for name in [
            "modelcast_records_in_total",
            "modelcast_predictions_out_total",
            "modelcast_dead_lettered_total",
            "modelcast_model_swaps_total",
            "modelcast_models_refused_total",
            "modelcast_end_to_end_latency_seconds_bucket{le=\"0.001\"}",
            "modelcast_model_info{model=\"m\",version=\"v2\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
