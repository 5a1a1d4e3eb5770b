//! The group consumer of the input topic. At-least-once: offsets are stored (and then committed
//! in the background) only by [`InputConsumer::store_offsets`], which the service calls after
//! every output of a batch was acknowledged; records are handed out borrowed, never copied.

use futures_core::Stream;
use std::collections::BTreeMap;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};

use super::{bus_err, Kafka};
use crate::error::Result;

/// The input topic's consumer (a group member, static with an instance id) of one topic,
/// subscribed by name (not a pattern): every record's topic is [`InputConsumer::topic`].
pub struct InputConsumer {
    consumer: StreamConsumer,
    topic: String,
}

/// One input record, borrowed from the consumer's buffer.
pub struct InputRecord<'c>(BorrowedMessage<'c>);

impl InputRecord<'_> {
    /// Partition.
    pub fn partition(&self) -> i32 {
        self.0.partition()
    }
    /// Offset.
    pub fn offset(&self) -> i64 {
        self.0.offset()
    }
    /// The Kafka key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }
    /// The value (empty for a tombstone).
    pub fn payload(&self) -> &[u8] {
        self.0.payload().unwrap_or_default()
    }
    /// The record timestamp, ms since the epoch, if the producer or broker set one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.0.timestamp().to_millis()
    }
}

impl Kafka {
    /// Join the group of `modelcast.group_id` on `topic`; with an `instance_id` as a static member.
    pub fn input_consumer(&self, topic: &str, instance_id: Option<&str>) -> Result<InputConsumer> {
        let c: StreamConsumer = super::config::input_consumer(&self.cfg, instance_id)
            .create()
            .map_err(|e| bus_err(topic, format!("cannot create consumer: {e}")))?;
        c.subscribe(&[topic]).map_err(|e| bus_err(topic, format!("subscribe: {e}")))?;
        Ok(InputConsumer { consumer: c, topic: topic.to_string() })
    }
}

impl InputConsumer {
    /// The topic, the same for every record: asking a record for it reads its name from
    /// librdkafka each time (a C string, measured and checked as UTF-8).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next record (waits). Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&self) -> std::result::Result<InputRecord<'_>, String> {
        self.consumer.recv().await.map(InputRecord).map_err(|e| e.to_string())
    }

    /// Append the records that are ready now, without waiting, until `batch` holds `max`.
    ///
    /// Each `recv` is polled once with a no-op waker: a ready record is taken, a pending one
    /// ends the batch (the future is cancel-safe). No timer and no clock read per record.
    pub fn fill<'c>(&'c self, batch: &mut Vec<InputRecord<'c>>, max: usize) {
        let mut cx = Context::from_waker(Waker::noop());
        // one stream for the whole batch: each `recv()` would register and unregister a waker
        let mut stream = self.consumer.stream();
        while batch.len() < max {
            match std::pin::Pin::new(&mut stream).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(m))) => batch.push(InputRecord(m)),
                Poll::Ready(Some(Err(e))) => tracing::warn!(error = %e, "consumer error; continuing"),
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
    }

    /// Mark the records as processed: their offsets are committed with the next commit.
    pub fn store_offsets(&self, batch: &[InputRecord<'_>]) -> Result<()> {
        // a partition's records come in offset order: storing its last one stores them all
        let mut last: Vec<(i32, i64)> = Vec::new();
        for m in batch {
            match last.iter_mut().find(|(p, _)| *p == m.partition()) {
                Some(entry) => entry.1 = entry.1.max(m.offset()),
                None => last.push((m.partition(), m.offset())),
            }
        }
        let topic = self.topic.as_str();
        for (partition, offset) in last {
            self.consumer
                .store_offset(topic, partition, offset)
                .map_err(|e| bus_err(topic, format!("store offset: {e}")))?;
        }
        Ok(())
    }

    /// Whether the group gave this member any partition.
    pub fn is_assigned(&self) -> bool {
        self.consumer.assignment().map(|a| a.count() > 0).unwrap_or(false)
    }

    /// Records behind the high watermark, per assigned partition (blocking: asks the broker).
    pub fn lag(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        let Ok(pos) = self.consumer.position() else {
            return out;
        };
        for e in pos.elements() {
            if let Ok((_, high)) = self.consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)) {
                let at = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
                out.insert(e.partition(), (high - at).max(0));
            }
        }
        out
    }

    /// Commit what was stored, synchronously, before leaving.
    pub fn commit_final(&self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            // NoOffset: the periodic commit already covered everything
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "final commit failed; the last batches may be re-read after restart")
            }
        }
    }
}
