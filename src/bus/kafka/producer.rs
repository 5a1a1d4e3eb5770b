//! The producer: announcements on `train`, and batches of predictions and dead letters.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};

use super::bus_err;
use super::watch::Watch;
use crate::bus::message::Outgoing;
use crate::config::kafka::KafkaConfig;
use crate::error::Result;
use crate::events::{DeliveryFailed, Event};

/// A connected Kafka client: the producer, plus the config to open consumers and followers.
pub struct Kafka {
    pub(super) cfg: KafkaConfig,
    pub(super) producer: FutureProducer<Watch>,
    pub(super) watch: Watch,
}

/// Delivery reports of a batch of outputs; [`Deliveries::wait`] before storing input offsets.
#[must_use = "await the deliveries before storing offsets"]
pub struct Deliveries(Vec<DeliveryFuture>);

impl Deliveries {
    /// Wait for every report; the first failure is returned (and emitted as an event).
    pub async fn wait(self) -> Result<()> {
        for f in self.0 {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, m))) => {
                    DeliveryFailed { topic: m.topic(), reason: &e }.emit();
                    return Err(bus_err(m.topic(), format!("delivery failed: {e}")));
                }
                Err(_) => {
                    DeliveryFailed { topic: "-", reason: &"delivery report lost (producer closed)" }.emit();
                    return Err(bus_err("producer", "delivery report lost (producer closed)"));
                }
            }
        }
        Ok(())
    }
}

impl Deliveries {
    /// Wait for every report and count the failures instead of stopping at the first: for
    /// best-effort outputs (shadow predictions), whose failures must not stop the service.
    pub async fn settle(self) -> (u64, Option<String>) {
        let (mut failed, mut first) = (0, None);
        for f in self.0 {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, m))) => {
                    failed += 1;
                    first.get_or_insert_with(|| format!("topic {}: {e}", m.topic()));
                }
                Err(_) => {
                    failed += 1;
                    first.get_or_insert_with(|| "delivery report lost (producer closed)".to_string());
                }
            }
        }
        (failed, first)
    }
}

impl Kafka {
    /// Connect a producer (idempotent, `acks=all`).
    pub fn connect(cfg: KafkaConfig) -> Result<Kafka> {
        let watch = Watch::default();
        let producer: FutureProducer<Watch> = super::config::producer(&cfg)
            .create_with_context(watch.clone())
            .map_err(|e| bus_err(&cfg.path.display().to_string(), format!("cannot create producer: {e}")))?;
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
        let rec = FutureRecord::to(topic).key(key.as_bytes()).payload(payload);
        match tokio::time::timeout(self.timeout(), self.producer.send(rec, self.timeout())).await {
            Ok(Ok(d)) => Ok(format!("kafka topic {topic} partition {} offset {}", d.partition, d.offset)),
            Ok(Err((e, _))) => Err(bus_err(topic, format!("{what} not acknowledged: {e}"))),
            Err(_) => {
                self.producer.purge(PurgeConfig::default().queue().inflight());
                Err(bus_err(
                    topic,
                    format!("{what} not acknowledged within {:?}; nothing was published", self.timeout()),
                ))
            }
        }
    }

    /// Enqueue messages (waiting while librdkafka's queue is full); returns their delivery reports.
    pub fn send_all(&self, msgs: &[Outgoing<'_>]) -> Result<Deliveries> {
        let mut futures = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut rec = FutureRecord::to(m.topic).payload(&m.payload);
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
            loop {
                match self.producer.send_result(rec) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        self.producer.poll(Duration::from_millis(10));
                        rec = r;
                    }
                    Err((e, _)) => return Err(bus_err(m.topic, format!("cannot enqueue: {e}"))),
                }
            }
        }
        Ok(Deliveries(futures))
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
