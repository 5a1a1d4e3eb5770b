//! The Kafka edge: the only place that names `rdkafka`. Split by role, as vector's sinks are:
//!
//! * [`config`]: librdkafka client settings per role, from `kafka_config.yaml`.
//! * [`producer`]: [`Kafka`], the idempotent `acks=all` producer: announcements (awaited within
//!   the configured bound) and batches of outputs ([`Deliveries`]).
//! * [`consumer`]: [`InputConsumer`], the group consumer of the input topic; offsets are stored
//!   only after the outputs of a batch were acknowledged (at-least-once).
//! * [`follower`]: [`TopicFollower`], a broadcast reader of a topic (no group: every replica sees
//!   every message) that first replays the topic's history: how replicas follow `train`.
//! * [`reader`]: a topic read once, start to end offsets fixed when it starts, in (partition,
//!   offset) order: training from a topic.
//! * [`admin`]: topic checks and idempotent topic creation.
//! * [`watch`]: librdkafka's connection errors (authentication, TLS, transport) turned into
//!   messages that name the setting to fix, within seconds.

pub mod admin;
pub mod config;
pub mod consumer;
pub mod follower;
pub mod producer;
pub mod reader;
pub mod watch;

pub use admin::TopicChange;
pub use consumer::{InputConsumer, InputRecord};
pub use follower::TopicFollower;
pub use producer::{Deliveries, Kafka};

use crate::error::Error;

fn bus_err(target: &str, message: impl Into<String>) -> Error {
    Error::Bus { target: target.to_string(), message: message.into() }
}

/// A partition's (low, high) watermarks, asked again while the broker says its leader is not
/// known yet (right after a topic was created or grown, or during a leader move), up to `timeout`.
fn watermarks(
    consumer: &impl rdkafka::consumer::Consumer,
    topic: &str,
    partition: i32,
    timeout: std::time::Duration,
) -> crate::error::Result<(i64, i64)> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Ok(w) => return Ok(w),
            Err(KafkaError::MetadataFetch(
                Code::NotLeaderForPartition | Code::LeaderNotAvailable | Code::UnknownTopicOrPartition,
            )) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(100)),
            Err(e) => return Err(bus_err(topic, format!("watermarks of partition {partition}: {e}"))),
        }
    }
}
