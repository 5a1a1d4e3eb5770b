//! Reading a topic once, start to end, for training: every partition in id order, each from its
//! earliest offset (or the first at or after `since`) up to the high watermark taken before
//! reading starts, so the rows are exactly the records that were there when training began, in
//! (partition, offset) order. No group membership, no commits; the prefetch queue is bounded so
//! memory does not grow with the topic.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::SetIfAbsent;
use super::{bus_err, Kafka};
use crate::artifact::PartitionRange;
use crate::error::Result;
use crate::train::topic::RecordFn;
use crate::train::RecordSource;

impl Kafka {
    /// The offset ranges [`Kafka::read_range`] will read: per partition (in id order), the
    /// earliest offset or the first at or after `since`, and the high watermark now.
    pub fn plan_range(&self, topic: &str, since: Option<DateTime<Utc>>) -> Result<(BaseConsumer, Vec<PartitionRange>)> {
        let group = format!("modelcast-read-{}", crate::artifact::new_version(Utc::now(), topic.as_bytes()));
        let mut cc = super::config::follower(&self.cfg, &group);
        cc.set_if_absent("queued.max.messages.kbytes", "8192");
        let consumer: BaseConsumer = cc.create().map_err(|e| bus_err(topic, format!("cannot create consumer: {e}")))?;
        let timeout = self.timeout();
        let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| bus_err(topic, format!("metadata: {e}")))?;
        let mut parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        parts.sort_unstable();
        let mut ranges = Vec::with_capacity(parts.len());
        for p in parts {
            let (low, high) = super::watermarks(&consumer, topic, p, timeout)?;
            let start = match since {
                None => low,
                Some(t) => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(topic, p, Offset::Offset(t.timestamp_millis()))
                        .map_err(|e| bus_err(topic, e.to_string()))?;
                    let found = consumer
                        .offsets_for_times(tpl, timeout)
                        .map_err(|e| bus_err(topic, format!("offsets for {t} in partition {p}: {e}")))?;
                    match found.find_partition(topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.clamp(low, high),
                        // no record at or after `since`
                        _ => high,
                    }
                }
            };
            ranges.push(PartitionRange { partition: p, start_offset: start, end_offset: high, records: 0 });
        }
        Ok((consumer, ranges))
    }

    /// Read the planned ranges in order, handing each record's partition, offset and value to
    /// `f`; fills in each range's record count. Records stamped before `since` are skipped (a
    /// broker that cannot look offsets up by time is then still right) and the range starts at
    /// the first record kept. Blocking: call it from a blocking task. Fails when a partition
    /// stops delivering for `modelcast.timeout_ms`.
    pub fn read_range(
        &self,
        topic: &str,
        consumer: &BaseConsumer,
        ranges: &mut [PartitionRange],
        since: Option<DateTime<Utc>>,
        f: &mut RecordFn<'_>,
    ) -> Result<()> {
        let since_ms = since.map(|t| t.timestamp_millis());
        let stall = self.timeout();
        for r in ranges.iter_mut().filter(|r| r.start_offset < r.end_offset) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.start_offset))
                .map_err(|e| bus_err(topic, e.to_string()))?;
            consumer.assign(&tpl).map_err(|e| bus_err(topic, format!("assign partition {}: {e}", r.partition)))?;
            let mut last = Instant::now();
            let mut next = r.start_offset;
            while next < r.end_offset {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) if m.partition() == r.partition && m.offset() >= next => {
                        let early = since_ms.is_some_and(|t| m.timestamp().to_millis().is_some_and(|ts| ts < t));
                        if early {
                            r.start_offset = m.offset() + 1;
                        } else if m.offset() < r.end_offset {
                            f(r.partition, m.offset(), m.payload().unwrap_or_default())?;
                            r.records += 1;
                        }
                        next = m.offset() + 1;
                        last = Instant::now();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(%topic, partition = r.partition, error = %e, "consumer error while reading")
                    }
                    None => {
                        // offsets without records (compaction, transaction markers): the position
                        // moves past them without a message
                        if let Ok(pos) = consumer.position() {
                            if let Some(Offset::Offset(o)) = pos.find_partition(topic, r.partition).map(|e| e.offset())
                            {
                                if o > next {
                                    next = o;
                                    last = Instant::now();
                                }
                            }
                        }
                    }
                }
                if last.elapsed() > stall {
                    return Err(bus_err(
                        topic,
                        format!(
                            "partition {} delivered nothing for {stall:?} at offset {next} (reading up to {})",
                            r.partition, r.end_offset
                        ),
                    ));
                }
            }
        }
        consumer.unassign().map_err(|e| bus_err(topic, format!("unassign: {e}")))?;
        Ok(())
    }
}

/// A reader of several topics at once from a point in time on, for `evaluate`: every partition
/// of each topic assigned (no group), starting at the first record stamped at or after `since`.
pub struct MultiReader {
    consumer: BaseConsumer,
    /// High watermarks when it started, per (topic, partition).
    ends: std::collections::BTreeMap<(String, i32), i64>,
    /// Next offset to read, per (topic, partition).
    next: std::collections::BTreeMap<(String, i32), i64>,
}

/// One record read by a [`MultiReader`].
pub struct Record<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its value.
    pub payload: &'a [u8],
    /// Its timestamp (ms since the epoch), if it has one.
    pub timestamp_ms: Option<i64>,
}

impl Kafka {
    /// Read `topics` (each must exist) from `since` on.
    pub fn read_since(&self, topics: &[&str], since: DateTime<Utc>) -> Result<MultiReader> {
        let group = format!("modelcast-evaluate-{}", crate::artifact::new_version(Utc::now(), b"evaluate"));
        let mut cc = super::config::follower(&self.cfg, &group);
        cc.set_if_absent("queued.max.messages.kbytes", "16384");
        let consumer: BaseConsumer =
            cc.create().map_err(|e| bus_err(&topics.join(","), format!("cannot create consumer: {e}")))?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = std::collections::BTreeMap::new();
        let mut next = std::collections::BTreeMap::new();
        for topic in topics {
            let (_, ranges) = self.plan_range(topic, Some(since))?;
            for r in ranges {
                tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.start_offset))
                    .map_err(|e| bus_err(topic, e.to_string()))?;
                ends.insert((topic.to_string(), r.partition), r.end_offset);
                next.insert((topic.to_string(), r.partition), r.start_offset);
            }
        }
        consumer.assign(&tpl).map_err(|e| bus_err(&topics.join(","), format!("assign: {e}")))?;
        Ok(MultiReader { consumer, ends, next })
    }
}

impl MultiReader {
    /// Wait up to `timeout` for the next record and hand it to `f`; false when none came.
    pub fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(Record<'_>)) -> bool {
        match self.consumer.poll(timeout) {
            Some(Ok(m)) => {
                self.next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                f(Record {
                    topic: m.topic(),
                    payload: m.payload().unwrap_or_default(),
                    timestamp_ms: m.timestamp().to_millis(),
                });
                true
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error while evaluating");
                false
            }
            None => false,
        }
    }

    /// Whether every partition was read up to its high watermark at start: its next record, or
    /// the consumer's position (which moves past offsets without records: compaction,
    /// transaction markers), is there.
    pub fn caught_up(&self) -> bool {
        let behind: Vec<&(String, i32)> =
            self.ends.iter().filter(|(k, end)| self.next.get(*k).is_none_or(|n| n < *end)).map(|(k, _)| k).collect();
        if behind.is_empty() {
            return true;
        }
        let Ok(pos) = self.consumer.position() else { return false };
        behind.iter().all(|(topic, p)| {
            let at = pos.find_partition(topic, *p).map(|e| e.offset());
            matches!(at, Some(Offset::Offset(o)) if o >= self.ends[&(topic.clone(), *p)])
        })
    }
}

/// A topic's records from `since` up to the end it had when planned: what `train` reads from
/// `data.topic` (a [`RecordSource`] for the training pipeline).
pub struct TopicRecords {
    kafka: std::sync::Arc<Kafka>,
    topic: String,
    since: Option<DateTime<Utc>>,
    consumer: BaseConsumer,
    ranges: Vec<PartitionRange>,
}

impl TopicRecords {
    /// Plan the read of `topic` (blocking: metadata and watermarks).
    pub fn plan(kafka: std::sync::Arc<Kafka>, topic: &str, since: Option<DateTime<Utc>>) -> Result<TopicRecords> {
        let (consumer, ranges) = kafka.plan_range(topic, since)?;
        Ok(TopicRecords { kafka, topic: topic.to_string(), since, consumer, ranges })
    }
}

impl RecordSource for TopicRecords {
    fn total(&self) -> u64 {
        self.ranges.iter().map(|r| (r.end_offset - r.start_offset).max(0) as u64).sum()
    }

    fn read(&mut self, each: &mut RecordFn<'_>) -> Result<Vec<PartitionRange>> {
        self.kafka.read_range(&self.topic, &self.consumer, &mut self.ranges, self.since, each)?;
        Ok(self.ranges.clone())
    }
}
