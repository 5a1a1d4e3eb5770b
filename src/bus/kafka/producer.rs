//! The producer: announcements on `train`, and batches of predictions and dead letters.
//!
//! One librdkafka producer served by a background thread of ours. A batch's delivery reports are
//! counted, not awaited one by one: every message of a batch carries the same [`Ticket`] (an
//! `Arc`, so sending allocates nothing), the delivery callback counts the ticket down and records
//! the first failure, and [`Deliveries::wait`] wakes once when the count reaches zero.
//!
//! The thread polls with a timeout of about a second, not rdkafka's `ThreadedProducer`'s 100 ms:
//! a poll wakes as soon as a report arrives either way. See [`REPORT_WAIT`] for why it is not
//! exactly a second. It ends within a second of the client being dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use tokio::sync::Notify;

use super::bus_err;
use super::watch::Watch;
use crate::config::kafka::KafkaConfig;
use crate::error::Result;
use crate::events::{DeliveryFailed, Event};
use crate::messages::Outgoing;

/// How long the reports thread's poll waits: a second and 50 µs. rdkafka 0.39's producer poll
/// waits in whole milliseconds, rounding the time left down, and then spins with 0 ms waits for
/// the sub-millisecond rest: a poll of exactly 1 s waits 999 ms and spins about 1 ms, which was
/// a third of an idle replica's CPU. With the 50 µs the wait is 1000 ms, the wakeup is late
/// by more than 50 µs as a rule, and the spin, if any, is shorter than that.
pub const REPORT_WAIT: Duration = Duration::from_micros(1_000_050);

/// A connected Kafka client: the producer, plus the config to open consumers and followers.
pub struct Kafka {
    pub(super) cfg: KafkaConfig,
    pub(super) producer: Arc<BaseProducer<Reports>>,
    pub(super) watch: Watch,
}

/// The producer's client context: connection errors go to the [`Watch`], delivery reports to
/// their batch's [`Ticket`].
#[derive(Clone)]
pub struct Reports {
    watch: Watch,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        self.watch.error(error, reason);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Arc<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Arc<Ticket>) {
        match result {
            Err((e, m)) => {
                if let Ok(mut f) = ticket.failures.lock() {
                    f.0 += 1;
                    f.1.get_or_insert_with(|| (m.topic().to_string(), e.to_string()));
                }
            }
            Ok(m) if ticket.track_position => {
                if let Ok(mut p) = ticket.position.lock() {
                    *p = Some((m.partition(), m.offset()));
                }
            }
            Ok(_) => {}
        }
        ticket.delivered();
    }
}

/// The delivery count of one batch: how many reports are outstanding, how many failed (and the
/// first failure: topic, reason).
#[derive(Debug, Default)]
pub struct Ticket {
    pending: AtomicUsize,
    failures: Mutex<(u64, Option<(String, String)>)>,
    done: Notify,
    /// Record where a delivered message landed (single announcements, not output batches).
    track_position: bool,
    position: Mutex<Option<(i32, i64)>>,
}

impl Ticket {
    fn delivered(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            // a stored permit if nobody waits yet: the wakeup is never lost
            self.done.notify_one();
        }
    }

    async fn all_reported(&self) {
        while self.pending.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
    }

    fn failures(&self) -> (u64, Option<(String, String)>) {
        self.failures.lock().map(|f| f.clone()).unwrap_or((1, Some(("-".into(), "delivery reports lost".into()))))
    }
}

/// Delivery reports of a batch of outputs; [`Deliveries::wait`] before storing input offsets.
#[must_use = "await the deliveries before storing offsets"]
pub struct Deliveries(Arc<Ticket>);

impl Deliveries {
    /// Wait for every report; a failure is returned (and emitted as an event).
    pub async fn wait(self) -> Result<()> {
        self.0.all_reported().await;
        match self.0.failures() {
            (0, _) => Ok(()),
            (n, first) => {
                let (topic, reason) = first.unwrap_or_else(|| ("-".into(), "unknown".into()));
                DeliveryFailed { topic: &topic, reason: &reason }.emit();
                Err(bus_err(&topic, format!("delivery failed ({n} of the batch): {reason}")))
            }
        }
    }

    /// Wait for every report and count the failures instead of stopping at the first: for
    /// best-effort outputs (shadow predictions), whose failures must not stop the service.
    pub async fn settle(self) -> (u64, Option<String>) {
        self.0.all_reported().await;
        let (n, first) = self.0.failures();
        (n, first.map(|(topic, reason)| format!("topic {topic}: {reason}")))
    }
}

impl Kafka {
    /// Connect a producer (idempotent, `acks=all`).
    pub fn connect(cfg: KafkaConfig) -> Result<Kafka> {
        let watch = Watch::default();
        let producer: BaseProducer<Reports> = super::config::producer(&cfg)
            .create_with_context(Reports { watch: watch.clone() })
            .map_err(|e| bus_err(&cfg.path.display().to_string(), format!("cannot create producer: {e}")))?;
        let producer = Arc::new(producer);
        let served = Arc::downgrade(&producer);
        std::thread::Builder::new()
            .name("producer reports".into())
            .spawn(move || {
                while let Some(p) = served.upgrade() {
                    p.poll(REPORT_WAIT);
                }
            })
            .map_err(|e| bus_err("producer", format!("cannot start its thread: {e}")))?;
        Ok(Kafka { cfg, producer, watch })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.modelcast.timeout_ms)
    }

    /// Publish a message (an announcement, an alias move) on the train topic, keyed by the model
    /// name, and wait for its acknowledgement.
    pub async fn publish_train(&self, key: &str, payload: &[u8], what: &str) -> Result<String> {
        let topic = self.cfg.modelcast.topics.train.clone();
        self.check_topics(&[&topic]).await?;
        self.publish_to(&topic, key, payload, what).await
    }

    /// Publish one message on `topic` and wait for its acknowledgement.
    pub async fn publish_to(&self, topic: &str, key: &str, payload: &[u8], what: &str) -> Result<String> {
        let msg = Outgoing { topic, key: key.as_bytes().to_vec(), payload: payload.to_vec(), headers: Vec::new() };
        let ticket = Arc::new(Ticket { track_position: true, ..Ticket::default() });
        let sent = self.send_with(std::slice::from_ref(&msg), ticket)?;
        match tokio::time::timeout(self.timeout(), sent.0.all_reported()).await {
            Ok(()) => match sent.0.failures() {
                (0, _) => Ok(match sent.0.position.lock().ok().and_then(|p| *p) {
                    Some((partition, offset)) => format!("kafka topic {topic} partition {partition} offset {offset}"),
                    None => format!("kafka topic {topic}"),
                }),
                (_, first) => Err(bus_err(
                    topic,
                    format!("{what} not acknowledged: {}", first.map(|(_, r)| r).unwrap_or_default()),
                )),
            },
            Err(_) => {
                self.producer.purge(PurgeConfig::default().queue().inflight());
                Err(bus_err(
                    topic,
                    format!("{what} not acknowledged within {:?}; nothing was published", self.timeout()),
                ))
            }
        }
    }

    /// Enqueue messages (waiting while librdkafka's queue is full); returns their delivery
    /// reports, counted as one batch.
    pub fn send_all(&self, msgs: &[Outgoing<'_>]) -> Result<Deliveries> {
        self.send_with(msgs, Arc::new(Ticket::default()))
    }

    fn send_with(&self, msgs: &[Outgoing<'_>], ticket: Arc<Ticket>) -> Result<Deliveries> {
        for m in msgs {
            let mut rec = BaseRecord::with_opaque_to(m.topic, ticket.clone()).payload(&m.payload);
            if !m.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
                for (k, v) in &m.headers {
                    headers = headers.insert(Header { key: k, value: Some(v.as_slice()) });
                }
                rec = rec.headers(headers);
            }
            if !m.key.is_empty() {
                rec = rec.key(&m.key);
            }
            // counted before it is sent: its report may arrive before `send` returns
            ticket.pending.fetch_add(1, Ordering::AcqRel);
            loop {
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // the background thread is draining the queue
                        std::thread::sleep(Duration::from_millis(5));
                        rec = r;
                    }
                    Err((e, _)) => {
                        ticket.pending.fetch_sub(1, Ordering::AcqRel);
                        return Err(bus_err(m.topic, format!("cannot enqueue: {e}")));
                    }
                }
            }
        }
        Ok(Deliveries(ticket))
    }

    /// Send and wait for every acknowledgement.
    pub async fn produce(&self, msgs: Vec<Outgoing<'_>>) -> Result<()> {
        self.send_all(&msgs)?.wait().await
    }

    /// Flush everything queued.
    pub fn flush(&self) -> Result<()> {
        self.producer.flush(self.timeout()).map_err(|e| bus_err("producer", format!("flush failed: {e}")))
    }
}
