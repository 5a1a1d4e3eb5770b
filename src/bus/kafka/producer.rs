//! The producer: announcements on `train`, and batches of predictions and dead letters.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};

use super::bus_err;
use crate::bus::message::{Announcement, Outgoing};
use crate::config::kafka::KafkaConfig;
use crate::error::Result;
use crate::events::{DeliveryFailed, Event};

/// A connected Kafka client: the producer, plus the config to open consumers and followers.
pub struct Kafka {
    pub(super) cfg: KafkaConfig,
    pub(super) producer: FutureProducer,
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

impl Kafka {
    /// Connect a producer (idempotent, `acks=all`).
    pub fn connect(cfg: KafkaConfig) -> Result<Kafka> {
        let producer: FutureProducer = super::config::producer(&cfg)
            .create()
            .map_err(|e| bus_err(&cfg.path.display().to_string(), format!("cannot create producer: {e}")))?;
        Ok(Kafka { cfg, producer })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.modelcast.timeout_ms)
    }

    /// Publish an announcement on the train topic and wait for its acknowledgement.
    pub async fn announce(&self, ann: &Announcement) -> Result<String> {
        let topic = self.cfg.modelcast.topics.train.clone();
        self.check_topics(&[&topic]).await?;
        let payload = ann.encode()?;
        let rec = FutureRecord::to(&topic).key(ann.model_name.as_bytes()).payload(&payload);
        match tokio::time::timeout(self.timeout(), self.producer.send(rec, self.timeout())).await {
            Ok(Ok(d)) => Ok(format!("kafka topic {topic} partition {} offset {}", d.partition, d.offset)),
            Ok(Err((e, _))) => Err(bus_err(&topic, format!("announcement not acknowledged: {e}"))),
            Err(_) => {
                self.producer.purge(PurgeConfig::default().queue().inflight());
                Err(bus_err(
                    &topic,
                    format!("announcement not acknowledged within {:?}; nothing was announced", self.timeout()),
                ))
            }
        }
    }

    /// Enqueue messages (waiting while librdkafka's queue is full); returns their delivery reports.
    pub fn send_all(&self, msgs: Vec<Outgoing<'_>>) -> Result<Deliveries> {
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
        self.send_all(msgs)?.wait().await
    }

    /// Flush everything queued.
    pub fn flush(&self) -> Result<()> {
        self.producer.flush(self.timeout()).map_err(|e| bus_err("producer", format!("flush failed: {e}")))
    }
}
