//! `predict --serve`: consume the input topic in a consumer group, score in batches, produce
//! to `app_messages` (and rejected records to the dead-letter topic), store offsets only after
//! every output of a batch was acknowledged (at-least-once), and hot-swap models announced on
//! the `train` topic between batches.

use std::io::Write;
use std::sync::Arc;

use crate::aliases::Updates;
use crate::bus::kafka::{InputConsumer, InputRecord, Kafka};
use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::events::{metrics, Event, ModelServing, RecordRejected, ShadowSwapped};
use crate::messages::{OriginRef, Outbox, OutputTopics};
use crate::predict::api::Servers;
use crate::predict::drift::{self, Monitor, WindowLimits};
use crate::predict::models::{ModelChoice, Started, Swapper};
use crate::predict::{decode_ahead, score_ahead_into, score_into, Ahead, Counts, Incoming, Scratch, Served, Verdict};
use crate::store::Store;

/// Records scored with one model between two looks at the train topic.
const BATCH: usize = 1024;

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
    /// Also answer Open Inference Protocol requests (`--http`, `--grpc`), with the same model.
    pub api: Option<crate::predict::api::ApiOptions>,
    /// Count what the serving model scores into drift windows (None: `--no-drift`).
    pub drift: Option<WindowLimits>,
}

/// Run the service until SIGINT/SIGTERM.
///
/// The start-up and the loop stay in one function (about 150 lines): the loop's branches share
/// the consumer, the swapper and the reused buffers the start-up made; scoring and delivering a
/// batch are [`score_batch`] and [`deliver_batch`].
///
/// Start-up joins the input topic's group first, so the group join (the slowest step on most
/// brokers) overlaps the train topic's history read and the model download.
pub async fn run(
    store: &Store,
    bus: &Bus,
    kafka: Arc<Kafka>,
    choice: &ModelChoice,
    opts: &ServeOptions,
) -> Result<Counts> {
    let started = std::time::Instant::now();
    let cfg = kafka.config().modelcast.clone();
    let topics = OutputTopics {
        app_messages: &cfg.topics.app_messages,
        dead_letter: &cfg.topics.dead_letter,
        dead_letter_max_bytes: cfg.dead_letter_max_bytes,
    };
    let shadow_topic = cfg.topics.shadow.as_str();
    let mut needed = vec![opts.input_topic.as_str(), topics.app_messages, topics.dead_letter];
    if choice.shadow.is_some() {
        needed.push(shadow_topic);
    }
    // (the train topic is checked when its follower opens)
    kafka.check_topics(&needed).await?;
    // drift windows are an observation, not the service: a missing topic is said, never fatal
    let mut drift_topic = Some(cfg.topics.model_drift.as_str());
    if opts.drift.is_some() {
        if let Err(e) = kafka.check_topics(&[cfg.topics.model_drift.as_str()]).await {
            tracing::warn!(error = %e, "drift windows will be counted (on /metrics) but not published; run `modelcast topics create`");
            drift_topic = None;
        }
    }
    let consumer = Arc::new(kafka.input_consumer(&opts.input_topic, opts.instance_id.as_deref())?);
    let t0 = std::time::Instant::now();
    if let Some(addr) = opts.metrics_addr {
        super::http::serve(addr, consumer.clone()).await?;
    }
    // the request servers listen before the first model loads (ready turns true when it has)
    let servers = Servers::start(opts.api.clone(), bus).await?;
    let updates = Updates::open(store, bus).await?;
    let Started { mut swapper, model, shadow } = Swapper::start(store, updates, choice, true).await?;
    let mut model = Arc::new(model);
    let mut shadow = shadow.map(Arc::new);
    servers.publish(&model, &shadow);
    ModelServing { model: &model.name, version: &model.version }.emit();
    let mut monitor = opts.drift.map(|limits| Monitor::new(limits, opts.instance_id.as_deref(), "records"));
    if let Some(d) = &mut monitor {
        d.follow(&model);
    }
    if let Some(s) = &shadow {
        ShadowSwapped { model: &s.name, from: "", to: &s.version }.emit();
    }
    tracing::info!(
        topic = %opts.input_topic,
        since_start_ms = started.elapsed().as_millis() as u64,
        model_ms = t0.elapsed().as_millis() as u64,
        "consuming"
    );
    let m = metrics();
    let mut counts = Counts::default();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("install SIGTERM handler", "-", e))?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stdout = std::io::stdout();
    // Kept from batch to batch (their buffers are reused).
    let mut batch = Vec::with_capacity(BATCH);
    let (mut out, mut shadow_out) = (Outbox::default(), Outbox::default());
    let mut stamps = Vec::with_capacity(BATCH);
    loop {
        // Only the wait for a batch's first record races the other branches (it is cancel-safe);
        // the rest of the batch is taken without waiting, so no record is ever dropped mid-batch.
        let window_due = monitor.as_ref().and_then(Monitor::deadline);
        let far = std::time::Instant::now() + std::time::Duration::from_secs(86_400);
        let first = tokio::select! {
            r = consumer.recv() => r,
            // a drift window's time is up while no record comes
            _ = tokio::time::sleep_until(window_due.unwrap_or(far).into()), if window_due.is_some() => {
                if let Some(d) = &mut monitor {
                    d.tick();
                    send_windows(&kafka, drift_topic, d.take());
                }
                continue;
            }
            // woken by the train follower when a message arrives (no polling: an idle replica
            // sleeps until a record, an announcement or a signal)
            _ = swapper.changed(), if choice.version.is_none() => {
                if swapper.poll(store, &mut model, &mut shadow).await {
                    counts.swaps += 1;
                }
                servers.publish(&model, &shadow);
                if let Some(d) = &mut monitor {
                    d.follow(&model);
                    send_windows(&kafka, drift_topic, d.take());
                }
                continue;
            }
            _ = &mut ctrl_c => break,
            _ = term.recv() => break,
        };
        batch.clear();
        match first {
            Ok(r) => batch.push(r),
            Err(e) => {
                tracing::warn!(error = %e, "consumer error; continuing");
                continue;
            }
        }
        consumer.fill(&mut batch, BATCH);
        // Score the whole batch with one model, into the reused outboxes (once they have grown, a
        // scored record allocates nothing), then enqueue it in one go: enqueueing each message as
        // it was encoded cost 2.6x the CPU per record in the throughput bench (0.76 against 0.29
        // CPU-s per 100k records).
        let lanes = Lanes { topics: &topics, shadow_topic, max_record_bytes: cfg.max_record_bytes };
        let print = if opts.stdout { Some(&mut stdout) } else { None };
        let (ok, bad) = score_batch(
            &batch,
            consumer.topic(),
            &model,
            shadow.as_deref(),
            &lanes,
            &mut out,
            &mut shadow_out,
            &mut stamps,
            print,
            monitor.as_mut(),
        )?;
        m.records_in.inc_by(batch.len() as u64);
        deliver_batch(&kafka, &consumer, &batch, &out, &shadow_out, &stamps).await?;
        if counts.scored + counts.rejected == 0 {
            tracing::info!(
                records = batch.len(),
                since_start_ms = started.elapsed().as_millis() as u64,
                "first batch acknowledged"
            );
        }
        // release the records (librdkafka's buffers) before waiting for the next batch
        batch.clear();
        m.predictions_out.inc_by(ok);
        counts.scored += ok;
        counts.rejected += bad;
        if let Some(d) = &mut monitor {
            d.tick();
            send_windows(&kafka, drift_topic, d.take());
        }
    }
    tracing::info!("stopping: flushing the producer and committing offsets");
    if let Some(d) = &mut monitor {
        d.stop();
        send_windows(&kafka, drift_topic, d.take());
    }
    kafka.flush()?;
    consumer.commit_final();
    // the requests in flight are answered before the process ends
    servers.drain().await;
    Ok(counts)
}

/// Send closed drift windows without waiting (a failure is logged and counted, never fatal, and
/// never holds the records' path).
fn send_windows(kafka: &Kafka, topic: Option<&str>, windows: Vec<crate::messages::DriftMessage>) {
    let Some(topic) = topic else { return };
    let mut msgs = Vec::with_capacity(windows.len());
    for w in &windows {
        match drift::encode(w) {
            Ok(payload) => msgs.push(crate::messages::Outgoing {
                topic,
                key: w.model_name.as_bytes().to_vec(),
                payload,
                headers: Vec::new(),
            }),
            Err(e) => drift::not_published(1, &e.to_string()),
        }
    }
    if msgs.is_empty() {
        return;
    }
    match kafka.send_all(&msgs) {
        Ok(d) => {
            tokio::spawn(async move {
                if let (n @ 1.., reason) = d.settle().await {
                    drift::not_published(n, &reason.unwrap_or_default());
                }
            });
        }
        Err(e) => drift::not_published(msgs.len() as u64, &e.to_string()),
    }
}

/// Where a batch's outputs go: the prediction and dead-letter topics, the shadow topic, and the
/// largest record scored.
struct Lanes<'t> {
    topics: &'t OutputTopics<'t>,
    shadow_topic: &'t str,
    max_record_bytes: usize,
}

/// Score `batch` with `model` into `out` (and with `shadow`, what it scored, into `shadow_out`),
/// stamping each prediction's record time into `stamps`; returns (scored, rejected).
#[allow(clippy::too_many_arguments)] // the hot path's reused buffers, passed in, not allocated
fn score_batch<'t>(
    batch: &[InputRecord<'_>],
    input_topic: &str,
    model: &Served,
    shadow: Option<&Served>,
    lanes: &Lanes<'t>,
    out: &mut Outbox<'t>,
    shadow_out: &mut Outbox<'t>,
    stamps: &mut Vec<Option<i64>>,
    mut print: Option<&mut std::io::Stdout>,
    mut drift: Option<&mut Monitor>,
) -> Result<(u64, u64)> {
    let m = metrics();
    let topics = lanes.topics;
    out.clear();
    shadow_out.clear();
    stamps.clear();
    let mut scratch = Scratch::default();
    let now = crate::util::time::now_ms();
    let (mut ok, mut bad) = (0u64, 0u64);
    // a tree model walks each tree over the whole batch's rows, before the messages are written
    let mut ahead = Ahead::default();
    let together = model.scorer.scores_rows();
    if together {
        let max = lanes.max_record_bytes;
        decode_ahead(model, batch.iter().map(|r| Some(r.payload()).filter(|b| b.len() <= max)), &mut ahead);
    }
    for (i, r) in batch.iter().enumerate() {
        let rec = Incoming {
            bytes: r.payload(),
            origin: OriginRef::Kafka { topic: input_topic, partition: r.partition(), offset: r.offset() },
            transport_key: r.key(),
            timestamp_ms: r.timestamp_ms(),
        };
        let msg = out.next(topics.app_messages);
        let verdict = if rec.bytes.len() > lanes.max_record_bytes {
            let reason =
                format!("record of {} bytes exceeds max_record_bytes {}", rec.bytes.len(), lanes.max_record_bytes);
            let mut buf = String::new();
            msg.set_dead_letter(rec.fallback_key(&mut buf), &reason, &rec.origin, rec.bytes, topics);
            scratch.decoded = false;
            Verdict::Rejected(reason)
        } else if together {
            score_ahead_into(model, &rec, i, &ahead, now, &mut scratch, msg, topics.app_messages, topics)?
        } else {
            score_into(model, &rec, now, &mut scratch, msg, topics.app_messages, topics)?
        };
        if let Some(d) = drift.as_deref_mut() {
            let prediction = match &verdict {
                Verdict::Scored(p) => Some(*p),
                Verdict::Rejected(_) => None,
            };
            d.record(if together { ahead.cells(i) } else { scratch.cells() }, prediction);
        }
        match verdict {
            Verdict::Scored(p) => {
                ok += 1;
                stamps.push(rec.timestamp_ms);
                if let Some(w) = print.as_deref_mut() {
                    let _ = w.write_all(&[&msg.payload[..], b"\n"].concat());
                }
                if let Some(s) = shadow {
                    // the shadow model scores what the serving one scored; its outcome never
                    // changes the serving output
                    let smsg = shadow_out.next(lanes.shadow_topic);
                    match score_into(s, &rec, now, &mut scratch, smsg, lanes.shadow_topic, topics)? {
                        Verdict::Scored(sp) => {
                            m.shadow_scored.inc();
                            m.shadow_abs_diff.observe((p - sp).abs());
                        }
                        Verdict::Rejected(_) => {
                            shadow_out.pop();
                            m.shadow_rejected.inc();
                        }
                    }
                }
            }
            Verdict::Rejected(reason) => {
                bad += 1;
                RecordRejected { key: &String::from_utf8_lossy(&msg.key), reason: &reason }.emit();
            }
        }
    }
    Ok((ok, bad))
}

/// Send a scored batch and store its offsets once every serving output was acknowledged
/// (at-least-once: a delivery failure ends the process without storing them, and a restart
/// re-reads the batch). Shadow outputs are best effort: a failure is counted and logged, and
/// never holds back the serving model's offsets.
async fn deliver_batch(
    kafka: &Kafka,
    consumer: &InputConsumer,
    batch: &[InputRecord<'_>],
    out: &Outbox<'_>,
    shadow_out: &Outbox<'_>,
    stamps: &[Option<i64>],
) -> Result<()> {
    let m = metrics();
    let shadow_sent = if shadow_out.is_empty() { None } else { Some(kafka.send_all(shadow_out.messages())) };
    kafka.send_all(out.messages())?.wait().await?;
    let shadow_failed = match shadow_sent {
        None => (0, None),
        Some(Ok(d)) => d.settle().await,
        Some(Err(e)) => (1, Some(e.to_string())),
    };
    if let (n @ 1.., Some(reason)) = shadow_failed {
        m.shadow_delivery_failures.inc_by(n);
        tracing::warn!(failed = n, %reason, "shadow predictions not delivered; the serving output is unaffected");
    }
    let now = crate::util::time::now_ms();
    let latency = m.latency.local();
    for ts in stamps.iter().flatten() {
        latency.observe((now - ts).max(0) as f64 / 1000.0);
    }
    latency.flush();
    consumer.store_offsets(batch)
}
