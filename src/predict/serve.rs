//! `predict --serve`: consume the input topic in a consumer group, score in batches, produce
//! to `app_messages` (and rejected records to the dead-letter topic), store offsets only after
//! every output of a batch was acknowledged (at-least-once), and hot-swap models announced on
//! the `train` topic between batches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bus::kafka::{Kafka, Outgoing};
use crate::bus::Origin;
use crate::error::{Error, Result};
use crate::predict::local::{initial_model, Counts, ModelChoice, Swapper};
use crate::predict::{load_announced, score_json, Scored, Served};
use crate::store::Store;
use crate::AnnouncementFeed;

/// Options of the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Topic to consume.
    pub input_topic: String,
    /// Where to serve `/healthz` and `/metrics`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Also print predictions on stdout.
    pub stdout: bool,
    /// Static group membership (`group.instance.id`) of the input consumer.
    pub instance_id: Option<String>,
}

const LATENCY_BUCKETS_MS: [u64; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/// Service metrics, exported in Prometheus text format.
#[derive(Default)]
pub struct Metrics {
    records_in: AtomicU64,
    predictions_out: AtomicU64,
    dead_lettered: AtomicU64,
    swaps: AtomicU64,
    refused: AtomicU64,
    model: Mutex<(String, String)>,
    latency: Mutex<(Vec<u64>, u64, f64)>,
    ready: AtomicBool,
}

impl Metrics {
    fn observe_latency(&self, ms: f64) {
        if let Ok(mut l) = self.latency.lock() {
            if l.0.is_empty() {
                l.0 = vec![0; LATENCY_BUCKETS_MS.len()];
            }
            for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
                if ms <= *b as f64 {
                    l.0[i] += 1;
                }
            }
            l.1 += 1;
            l.2 += ms / 1000.0;
        }
    }

    /// Prometheus exposition text.
    pub fn render(&self, lag: &BTreeMap<i32, i64>) -> String {
        let mut s = String::new();
        let counters = [
            ("modelcast_records_in_total", "Records consumed from the input topic.", &self.records_in),
            ("modelcast_predictions_out_total", "Predictions acknowledged on app_messages.", &self.predictions_out),
            ("modelcast_dead_lettered_total", "Records sent to the dead-letter topic.", &self.dead_lettered),
            ("modelcast_model_swaps_total", "Hot swaps to a newer model.", &self.swaps),
            ("modelcast_models_refused_total", "Announcements or models refused.", &self.refused),
        ];
        for (name, help, v) in counters {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", v.load(Ordering::Relaxed));
        }
        if let Ok(m) = self.model.lock() {
            let _ = write!(
                s,
                "# HELP modelcast_model_info The serving model.\n# TYPE modelcast_model_info gauge\nmodelcast_model_info{{model=\"{}\",version=\"{}\"}} 1\n",
                m.0, m.1
            );
        }
        if let Ok(l) = self.latency.lock() {
            let name = "modelcast_end_to_end_latency_seconds";
            let _ = write!(
                s,
                "# HELP {name} Input record timestamp to acknowledged prediction.\n# TYPE {name} histogram\n"
            );
            for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
                let _ =
                    writeln!(s, "{name}_bucket{{le=\"{}\"}} {}", *b as f64 / 1000.0, l.0.get(i).copied().unwrap_or(0));
            }
            let _ = write!(s, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}\n", l.1, l.2, l.1);
        }
        let _ = write!(
            s,
            "# HELP modelcast_consumer_lag Records behind the high watermark.\n# TYPE modelcast_consumer_lag gauge\n"
        );
        for (p, v) in lag {
            let _ = writeln!(s, "modelcast_consumer_lag{{partition=\"{p}\"}} {v}");
        }
        s
    }
}

fn consumer_lag(consumer: &StreamConsumer) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    let Ok(pos) = consumer.position() else {
        return out;
    };
    for e in pos.elements() {
        if let Ok((_, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)) {
            let at = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
            out.insert(e.partition(), (high - at).max(0));
        }
    }
    out
}

async fn serve_http(addr: std::net::SocketAddr, metrics: Arc<Metrics>, consumer: Arc<StreamConsumer>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on --metrics-addr {addr}: {e}")))?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let consumer = consumer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(k)) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/healthz" => {
                        let assigned = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
                        if metrics.ready.load(Ordering::Relaxed) && assigned {
                            ("200 OK", "ok\n".to_string())
                        } else {
                            (
                                "503 Service Unavailable",
                                "not ready: waiting for a model and a partition assignment\n".to_string(),
                            )
                        }
                    }
                    "/metrics" => {
                        let lag =
                            tokio::task::spawn_blocking(move || consumer_lag(&consumer)).await.unwrap_or_default();
                        ("200 OK", metrics.render(&lag))
                    }
                    _ => ("404 Not Found", "try /healthz or /metrics\n".to_string()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(())
}

async fn first_model(store: &Store, feed: &mut AnnouncementFeed, choice: &ModelChoice) -> Result<Served> {
    let history = feed.history().await?;
    match initial_model(store, &history, choice).await {
        Ok(m) => return Ok(m),
        Err(Error::NotFound(msg)) => {
            tracing::warn!(%msg, "no model yet; waiting for an announcement")
        }
        Err(e) => return Err(e),
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => return Err(Error::NotFound("interrupted before any model was announced".into())),
        }
        for ann in feed.poll().await?.into_iter().flatten() {
            if choice.name.as_ref().is_some_and(|n| *n != ann.model_name) {
                continue;
            }
            match load_announced(store, &ann, &choice.key_field).await {
                Ok(m) => return Ok(m),
                Err(e) => tracing::warn!(version = %ann.version, reason = %e, "refused model"),
            }
        }
    }
}

/// The dead-letter record for `d`: original bytes (cut to `max` bytes), reason and source in headers.
pub fn dead_letter_message(topic: &str, d: crate::bus::DeadLetter, source: String, max: usize) -> Outgoing {
    let mut headers = vec![("modelcast.reason", d.reason.into_bytes()), ("modelcast.source", source.into_bytes())];
    let mut payload = d.raw;
    if payload.len() > max {
        headers.push(("modelcast.truncated", format!("{} of {} bytes kept", max, payload.len()).into_bytes()));
        payload.truncate(max);
    }
    Outgoing { topic: topic.to_string(), key: d.key.into_bytes(), payload, headers }
}

/// Run the service until SIGINT/SIGTERM.
pub async fn run(
    store: &Store,
    kafka: Arc<Kafka>,
    mut feed: AnnouncementFeed,
    choice: &ModelChoice,
    opts: &ServeOptions,
) -> Result<Counts> {
    let topics = kafka.config().modelcast.topics.clone();
    let limits = kafka.config().modelcast.clone();
    kafka.check_topics(&[&opts.input_topic, &topics.app_messages, &topics.dead_letter]).await?;
    let metrics = Arc::new(Metrics::default());
    let consumer = Arc::new(kafka.input_consumer(&opts.input_topic, opts.instance_id.as_deref())?);
    if let Some(addr) = opts.metrics_addr {
        serve_http(addr, metrics.clone(), consumer.clone()).await?;
    }
    let mut model = Arc::new(first_model(store, &mut feed, choice).await?);
    let mut swapper = Swapper::new(feed);
    tracing::info!(model = %model.name, version = %model.version, topic = %opts.input_topic, "serving");
    if let Ok(mut m) = metrics.model.lock() {
        *m = (model.name.clone(), model.version.clone());
    }
    metrics.ready.store(true, Ordering::Relaxed);
    let mut counts = Counts::default();
    // How often the train follower is polled (a non-blocking read of its queue): part of every
    // hot swap's delay, and nearly free.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("install SIGTERM handler", "-", e))?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stdout = std::io::stdout();
    loop {
        let first = tokio::select! {
            m = consumer.recv() => m,
            _ = tick.tick(), if choice.version.is_none() => {
                let (next, refused) = swapper.poll(store, &model, choice).await;
                metrics.refused.fetch_add(refused, Ordering::Relaxed);
                if let Some(next) = next {
                    tracing::info!(from = %model.version, to = %next.version, "hot-swapped model");
                    model = Arc::new(next);
                    counts.swaps += 1;
                    metrics.swaps.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut m) = metrics.model.lock() {
                        *m = (model.name.clone(), model.version.clone());
                    }
                }
                continue;
            }
            _ = &mut ctrl_c => break,
            _ = term.recv() => break,
        };
        let mut batch = Vec::with_capacity(1024);
        match first {
            Ok(m) => batch.push(m),
            Err(e) => {
                tracing::warn!(error = %e, "consumer error; continuing");
                continue;
            }
        }
        while batch.len() < 1024 {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m),
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer error; continuing"),
                Err(_) => break,
            }
        }
        // Score the whole batch with one model.
        let mut out = Vec::with_capacity(batch.len());
        let mut stamps = Vec::with_capacity(batch.len());
        let (mut ok, mut bad) = (0u64, 0u64);
        for m in &batch {
            // key: the record's key field, else the Kafka key, else partition:offset
            let fallback = match m.key() {
                Some(k) => String::from_utf8_lossy(k).into_owned(),
                None => format!("{}:{}", m.partition(), m.offset()),
            };
            let origin = Origin::Kafka { topic: m.topic().to_string(), partition: m.partition(), offset: m.offset() };
            let ts = m.timestamp().to_millis();
            let payload = m.payload().unwrap_or_default();
            let scored = if payload.len() > limits.max_record_bytes {
                let reason =
                    format!("record of {} bytes exceeds max_record_bytes {}", payload.len(), limits.max_record_bytes);
                Scored::Rejected(crate::predict::dead(&model, fallback, reason, origin, payload))
            } else {
                score_json(&model, payload, origin, fallback, ts)
            };
            match scored {
                Scored::Ok(p) => {
                    let mut json = Vec::with_capacity(384);
                    serde_json::to_writer(&mut json, &p)
                        .map_err(|e| Error::Encode { what: "prediction", source: e })?;
                    if opts.stdout {
                        let _ = std::io::Write::write_all(&mut stdout, &[&json[..], b"\n"].concat());
                    }
                    ok += 1;
                    stamps.push(ts);
                    out.push(Outgoing {
                        topic: topics.app_messages.clone(),
                        key: p.key.into_bytes(),
                        payload: json,
                        headers: vec![],
                    });
                }
                Scored::Rejected(d) => {
                    bad += 1;
                    tracing::debug!(key = %d.key, reason = %d.reason, "dead-lettered");
                    let source = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
                    out.push(dead_letter_message(&topics.dead_letter, d, source, limits.dead_letter_max_bytes));
                }
            }
        }
        metrics.records_in.fetch_add(batch.len() as u64, Ordering::Relaxed);
        // At-least-once: offsets are stored only after every output was acknowledged. A delivery
        // failure ends the process without storing them; a restart re-reads the batch.
        Kafka::await_all(kafka.send_all(out)?).await?;
        let now = crate::bus::now_ms();
        for ts in stamps.into_iter().flatten() {
            metrics.observe_latency((now - ts).max(0) as f64);
        }
        for m in &batch {
            consumer
                .store_offset(m.topic(), m.partition(), m.offset())
                .map_err(|e| Error::Bus { target: m.topic().to_string(), message: format!("store offset: {e}") })?;
        }
        metrics.predictions_out.fetch_add(ok, Ordering::Relaxed);
        metrics.dead_lettered.fetch_add(bad, Ordering::Relaxed);
        counts.scored += ok;
        counts.rejected += bad;
    }
    tracing::info!("stopping: flushing the producer and committing offsets");
    kafka.flush()?;
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // NoOffset: the periodic commit already covered everything
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "final commit failed; the last batches may be re-read after restart")
        }
    }
    Ok(counts)
}
