//! A broadcast reader of one topic: assigned every partition from the beginning, no group
//! membership and no commits, so every replica reads every message. It first replays the
//! history up to the high watermarks seen at start, then hands out what arrives.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{bus_err, Kafka};
use crate::error::Result;

/// Follows one topic: history first, then new messages.
pub struct TopicFollower {
    consumer: BaseConsumer,
    topic: String,
    ends: HashMap<i32, i64>,
}

impl Kafka {
    /// A follower of `topic`, positioned at the beginning of its history.
    pub async fn follow(&self, topic: &str) -> Result<TopicFollower> {
        self.check_topics(&[topic]).await?;
        let group = format!("modelcast-follow-{}", crate::artifact::new_version(chrono::Utc::now(), b"feed"));
        let consumer: BaseConsumer = super::config::follower(&self.cfg, &group)
            .create()
            .map_err(|e| bus_err(topic, format!("cannot create consumer: {e}")))?;
        let timeout = self.timeout();
        let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| bus_err(topic, format!("metadata: {e}")))?;
        let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in &parts {
            let (_, high) = consumer
                .fetch_watermarks(topic, *p, timeout)
                .map_err(|e| bus_err(topic, format!("watermarks of partition {p}: {e}")))?;
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning).map_err(|e| bus_err(topic, e.to_string()))?;
        }
        consumer.assign(&tpl).map_err(|e| bus_err(topic, format!("assign: {e}")))?;
        Ok(TopicFollower { consumer, topic: topic.to_string(), ends })
    }
}

impl TopicFollower {
    /// Every value up to the high watermarks seen at start (blocking, bounded by `timeout`).
    pub fn history(&mut self, timeout: Duration) -> Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut pending: HashMap<i32, i64> = self.ends.iter().filter(|(_, &h)| h > 0).map(|(p, h)| (*p, *h)).collect();
        while !pending.is_empty() {
            if Instant::now() > deadline {
                return Err(bus_err(&self.topic, format!("could not read the topic's history within {timeout:?}")));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "consumer error while reading history")
                }
                Some(Ok(m)) => {
                    out.push(m.payload().unwrap_or_default().to_vec());
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

    /// Values that arrived since the last call (non-blocking).
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = self.consumer.poll(Duration::ZERO) {
            match r {
                Ok(m) => out.push(m.payload().unwrap_or_default().to_vec()),
                Err(e) => tracing::warn!(topic = %self.topic, error = %e, "consumer error while following"),
            }
        }
        out
    }
}
