//! The Kafka edge: the only module that uses `rdkafka`.
//!
//! * [`Kafka::announce`]: idempotent, `acks=all` produce of an announcement, awaiting its
//!   delivery report within the configured bound.
//! * [`Kafka::feed`]: a broadcast follower of the `train` topic (no consumer group: every
//!   replica sees every announcement) that first replays the topic's history.
//! * [`Kafka::input_consumer`]: the group consumer of the input topic with offsets stored only
//!   after the outputs were acknowledged (at-least-once).
//! * [`Kafka::create_topics`]: idempotent topic creation.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::bus::Announcement;
use crate::config::kafka::KafkaConfig;
use crate::error::{Error, Result};

/// A connected Kafka client (producer side), plus the config to open consumers.
pub struct Kafka {
    cfg: KafkaConfig,
    producer: FutureProducer,
}

fn bus_err(target: &str, message: impl Into<String>) -> Error {
    Error::Bus { target: target.to_string(), message: message.into() }
}

/// A message to produce.
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// Key (may be empty).
    pub key: Vec<u8>,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers (name, value).
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl Kafka {
    /// Connect a producer (idempotent, `acks=all`).
    pub fn connect(cfg: KafkaConfig) -> Result<Kafka> {
        let mut cc = base_config(&cfg);
        cc.set("enable.idempotence", "true").set("acks", "all");
        cc.set_if_absent("message.timeout.ms", cfg.modelcast.timeout_ms.to_string());
        cc.set_if_absent("linger.ms", "5");
        let producer: FutureProducer = cc
            .create()
            .map_err(|e| bus_err(&cfg.path.display().to_string(), format!("cannot create producer: {e}")))?;
        Ok(Kafka { cfg, producer })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.modelcast.timeout_ms)
    }

    /// Fail fast with a clear message when a topic does not exist or the broker is unreachable.
    pub async fn check_topics(&self, topics: &[&str]) -> Result<()> {
        let producer = self.producer.clone();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let timeout = self.timeout();
        let servers = self.cfg.properties.get("bootstrap.servers").cloned().unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let md = producer.client().fetch_metadata(None, timeout).map_err(|e| {
                bus_err(&servers, format!("cannot reach the Kafka brokers within {timeout:?}: {e}; check bootstrap.servers and security settings"))
            })?;
            for t in &topics {
                let found = md.topics().iter().find(|m| m.name() == t.as_str());
                match found {
                    Some(m) if m.error().is_none() && !m.partitions().is_empty() => {}
                    _ => {
                        return Err(bus_err(
                            t,
                            format!("topic {t:?} does not exist; create it with `modelcast topics create` (the broker may not auto-create topics)"),
                        ))
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| bus_err("metadata", e.to_string()))?
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
                self.producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
                Err(bus_err(
                    &topic,
                    format!("announcement not acknowledged within {:?}; nothing was announced", self.timeout()),
                ))
            }
        }
    }

    /// Enqueue messages; returns their delivery futures (await them before storing offsets).
    pub fn send_all(&self, msgs: Vec<Outgoing>) -> Result<Vec<DeliveryFuture>> {
        let mut futures = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut rec = FutureRecord::to(&m.topic).payload(&m.payload);
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
            let mut rec = rec;
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
                    Err((e, _)) => return Err(bus_err(&m.topic, format!("cannot enqueue: {e}"))),
                }
            }
        }
        Ok(futures)
    }

    /// Await deliveries; the first failure is returned.
    pub async fn await_all(futures: Vec<DeliveryFuture>) -> Result<()> {
        for f in futures {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, m))) => return Err(bus_err(m.topic(), format!("delivery failed: {e}"))),
                Err(_) => return Err(bus_err("producer", "delivery report lost (producer closed)")),
            }
        }
        Ok(())
    }

    /// Send and await.
    pub async fn produce(&self, msgs: Vec<Outgoing>) -> Result<()> {
        let f = self.send_all(msgs)?;
        Self::await_all(f).await
    }

    /// Flush everything queued.
    pub fn flush(&self) -> Result<()> {
        self.producer.flush(self.timeout()).map_err(|e| bus_err("producer", format!("flush failed: {e}")))
    }

    /// A broadcast follower of the train topic, positioned at the beginning of its history.
    pub async fn feed(&self) -> Result<KafkaFeed> {
        let topic = self.cfg.modelcast.topics.train.clone();
        self.check_topics(&[&topic]).await?;
        let mut cc = base_config(&self.cfg);
        let group = format!("modelcast-follow-{}", crate::artifact::new_version(chrono::Utc::now(), b"feed"));
        cc.set("group.id", group).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
        cc.set("auto.offset.reset", "earliest");
        // The train topic is tiny and a swap waits on it: brokers that hold a fetch for its whole
        // wait (tansu) would add up to librdkafka's 500 ms default to every hot swap.
        cc.set_if_absent("fetch.wait.max.ms", "100");
        let consumer: BaseConsumer =
            cc.create().map_err(|e| bus_err(&topic, format!("cannot create consumer: {e}")))?;
        let timeout = self.timeout();
        let md =
            consumer.fetch_metadata(Some(&topic), timeout).map_err(|e| bus_err(&topic, format!("metadata: {e}")))?;
        let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in &parts {
            let (_, high) = consumer
                .fetch_watermarks(&topic, *p, timeout)
                .map_err(|e| bus_err(&topic, format!("watermarks of partition {p}: {e}")))?;
            ends.insert(*p, high);
            tpl.add_partition_offset(&topic, *p, Offset::Beginning).map_err(|e| bus_err(&topic, e.to_string()))?;
        }
        consumer.assign(&tpl).map_err(|e| bus_err(&topic, format!("assign: {e}")))?;
        Ok(KafkaFeed { consumer, topic, ends })
    }

    /// The group consumer of the input topic, subscribed, with manual offset storing; with an
    /// `instance_id` it is a static member (`group.instance.id`, KIP-345).
    pub fn input_consumer(&self, topic: &str, instance_id: Option<&str>) -> Result<StreamConsumer> {
        let mut cc = base_config(&self.cfg);
        if let Some(id) = instance_id {
            cc.set("group.instance.id", id);
        }
        cc.set("group.id", &self.cfg.modelcast.group_id)
            .set("enable.auto.offset.store", "false")
            .set_if_absent("enable.auto.commit", "true")
            .set_if_absent("auto.commit.interval.ms", "200")
            .set_if_absent("auto.offset.reset", "earliest")
            // bound the prefetch queue (default 64 MiB): memory stays flat under any backlog
            .set_if_absent("queued.max.messages.kbytes", "16384");
        let c: StreamConsumer = cc.create().map_err(|e| bus_err(topic, format!("cannot create consumer: {e}")))?;
        c.subscribe(&[topic]).map_err(|e| bus_err(topic, format!("subscribe: {e}")))?;
        Ok(c)
    }

    /// Create modelcast's topics; existing ones are left as they are. Returns (topic, created?).
    pub async fn create_topics(&self, partitions: Option<i32>) -> Result<Vec<(String, bool)>> {
        let admin: AdminClient<DefaultClientContext> = base_config(&self.cfg)
            .create()
            .map_err(|e| bus_err("admin", format!("cannot create admin client: {e}")))?;
        let t = &self.cfg.modelcast.topics;
        let n = partitions.unwrap_or(self.cfg.modelcast.partitions);
        let repl = self.cfg.modelcast.replication_factor;
        // The train topic keeps every announcement (history is how replicas find the newest model).
        let specs = [(&t.train, 1), (&t.input, n), (&t.app_messages, n), (&t.dead_letter, n)];
        let new: Vec<NewTopic> =
            specs.iter().map(|(name, p)| NewTopic::new(name.as_str(), *p, TopicReplication::Fixed(repl))).collect();
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout())).request_timeout(Some(self.timeout()));
        let results = admin
            .create_topics(new.iter(), &opts)
            .await
            .map_err(|e| bus_err("admin", format!("create topics: {e}")))?;
        let mut out = Vec::new();
        for r in results {
            match r {
                Ok(name) => out.push((name, true)),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => out.push((name, false)),
                Err((name, code)) => return Err(bus_err(&name, format!("create topic failed: {code}"))),
            }
        }
        Ok(out)
    }
}

fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in &cfg.properties {
        cc.set(k, v);
    }
    cc.set_if_absent("client.id", "modelcast");
    cc
}

trait SetIfAbsent {
    fn set_if_absent(&mut self, k: &str, v: impl Into<String>) -> &mut Self;
}

impl SetIfAbsent for ClientConfig {
    fn set_if_absent(&mut self, k: &str, v: impl Into<String>) -> &mut Self {
        if self.get(k).is_none() {
            self.set(k, v);
        }
        self
    }
}

/// Follows the train topic: history first, then new announcements.
pub struct KafkaFeed {
    consumer: BaseConsumer,
    topic: String,
    ends: HashMap<i32, i64>,
}

impl KafkaFeed {
    /// Everything up to the high watermarks seen at start (bounded by `timeout`).
    pub fn history(&mut self, timeout: Duration) -> Result<Vec<std::result::Result<Announcement, String>>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        let mut pending: HashMap<i32, i64> = self.ends.iter().filter(|(_, &h)| h > 0).map(|(p, h)| (*p, *h)).collect();
        while !pending.is_empty() {
            if std::time::Instant::now() > deadline {
                return Err(bus_err(
                    &self.topic,
                    format!("could not read the announcement history within {timeout:?}"),
                ));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "consumer error while reading history")
                }
                Some(Ok(m)) => {
                    out.push(decode(m.payload()));
                    if let Some(&end) = pending.get(&m.partition()) {
                        if m.offset() + 1 >= end {
                            pending.remove(&m.partition());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// New announcements since the last call (non-blocking).
    pub fn poll(&mut self) -> Vec<std::result::Result<Announcement, String>> {
        let mut out = Vec::new();
        while let Some(r) = self.consumer.poll(Duration::ZERO) {
            match r {
                Ok(m) => out.push(decode(m.payload())),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "consumer error on the train topic")
                }
            }
        }
        out
    }
}

fn decode(payload: Option<&[u8]>) -> std::result::Result<Announcement, String> {
    Announcement::decode(payload.unwrap_or_default())
}
