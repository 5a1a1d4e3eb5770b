//! Kafka from the outside, as an independent client: produce records, count a topic (its
//! watermarks) and read it back from the beginning.
//!
//! Waiting and counting are two steps. A test waits for what it expects ([`wait_count`],
//! [`read_topic`], [`keys_in`]: they stop at the number they were asked for), then stops the
//! service (which flushes what it holds) and counts what the topic holds in the end
//! ([`read_all`]): a duplicate written after the n-th record or while the service drained is
//! counted too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{unique, wait_for, PATIENCE};

/// Client settings for a connection string: `SERVERS`, optionally followed by `|key=value`
/// client properties (the SASL_SSL broker of the test bed: see `bed::SaslBed::conn`).
fn config(conn: &str) -> ClientConfig {
    let mut parts = conn.split('|');
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", parts.next().unwrap_or_default());
    for kv in parts {
        let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{kv:?} in {conn:?} is not key=value"));
        cc.set(k, v);
    }
    cc
}

pub fn producer(bootstrap: &str) -> BaseProducer {
    config(bootstrap)
        .set("linger.ms", "10")
        .set("compression.type", "lz4")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// A producer compressing with `codec` (`compression.type`).
pub fn producer_compressing(bootstrap: &str, codec: &str) -> BaseProducer {
    config(bootstrap).set("linger.ms", "10").set("compression.type", codec).create().unwrap()
}

/// Produce `records` (key, value) to `topic` and wait until the broker has them all.
pub fn produce(p: &BaseProducer, topic: &str, records: &[(String, Vec<u8>)]) {
    enqueue(p, topic, records);
    p.flush(PATIENCE).unwrap();
}

/// Hand `records` to the producer (waiting only while its queue is full), without a flush.
pub fn enqueue(p: &BaseProducer, topic: &str, records: &[(String, Vec<u8>)]) {
    for (k, v) in records {
        send(p, BaseRecord::to(topic).key(k.as_bytes()).payload(v.as_slice()));
        p.poll(Duration::ZERO);
    }
}

/// Hand one record to the producer, waiting while its queue is full.
pub fn send<K: rdkafka::message::ToBytes + ?Sized>(p: &BaseProducer, mut rec: BaseRecord<'_, K, [u8]>) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                p.poll(Duration::from_millis(5));
                rec = r;
            }
        }
    }
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Rec {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Rec {
    /// The value as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| panic!("{self:?} is not JSON: {e}"))
    }
}

fn client(bootstrap: &str) -> BaseConsumer {
    config(bootstrap).set("group.id", unique("reader")).set("enable.auto.commit", "false").create().unwrap()
}

/// Records in `topic` now: the sum over its partitions of high - low watermark.
pub fn count(bootstrap: &str, topic: &str) -> usize {
    let c = client(bootstrap);
    let md = c.fetch_metadata(Some(topic), PATIENCE).unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (lo, hi) = c.fetch_watermarks(topic, p.id(), PATIENCE).unwrap();
            (hi - lo) as usize
        })
        .sum()
}

/// Wait until `topic` holds at least `want` records; returns how many it holds.
pub fn wait_count(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> usize {
    wait_for(&format!("{want} records in {topic}"), timeout, || match count(bootstrap, topic) {
        n if n >= want => Ok(n),
        n => Err(format!("{n} so far")),
    })
}

/// A reader of a whole topic from the beginning of every partition, keeping what it read.
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
    records: Vec<Rec>,
    /// Per partition: the offset after the last record read.
    next: BTreeMap<i32, i64>,
}

impl TopicReader {
    pub fn new(bootstrap: &str, topic: &str) -> TopicReader {
        let consumer = client(bootstrap);
        let md = consumer.fetch_metadata(Some(topic), PATIENCE).unwrap();
        let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        TopicReader { consumer, topic: topic.to_string(), partitions, records: Vec::new(), next: BTreeMap::new() }
    }

    /// Records the topic holds now: the sum over its partitions of high - low watermark.
    pub fn held(&self) -> usize {
        let marks = self.partitions.iter().map(|p| self.consumer.fetch_watermarks(&self.topic, *p, PATIENCE).unwrap());
        marks.map(|(lo, hi)| (hi - lo) as usize).sum()
    }

    /// Everything read so far.
    pub fn records(&self) -> &[Rec] {
        &self.records
    }

    /// Read one record if one arrives within `wait`.
    fn read_one(&mut self, wait: Duration) -> bool {
        let Some(Ok(m)) = self.consumer.poll(wait) else { return false };
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for hd in h.iter() {
                headers.insert(hd.key.to_string(), String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned());
            }
        }
        self.next.insert(m.partition(), m.offset() + 1);
        self.records.push(Rec {
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
        true
    }

    /// Read until `want` records in all were read, or `timeout` passed.
    pub fn read_until(&mut self, want: usize, timeout: Duration) -> &[Rec] {
        let deadline = Instant::now() + timeout;
        while self.records.len() < want && Instant::now() < deadline {
            self.read_one(Duration::from_millis(200));
        }
        &self.records
    }

    /// Read what arrives within `time`.
    pub fn read_for(&mut self, time: Duration) -> &[Rec] {
        let deadline = Instant::now() + time;
        while Instant::now() < deadline {
            self.read_one(deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200)));
        }
        &self.records
    }

    /// Read everything the topic holds now: up to each partition's high watermark.
    pub fn read_all(&mut self) -> &[Rec] {
        let mut ends = BTreeMap::new();
        for p in &self.partitions {
            let (lo, hi) = self.consumer.fetch_watermarks(&self.topic, *p, PATIENCE).unwrap();
            if hi > lo {
                ends.insert(*p, hi);
            }
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let behind: Vec<_> = ends.iter().filter(|(p, hi)| self.next.get(*p).is_none_or(|n| n < *hi)).collect();
            if behind.is_empty() {
                return &self.records;
            }
            assert!(
                Instant::now() < deadline,
                "{}: partitions {behind:?} not read to their end within {PATIENCE:?} (read {:?})",
                self.topic,
                self.next
            );
            self.read_one(Duration::from_millis(200));
        }
    }
}

/// The first `want` records of `topic` (fewer if `timeout` passed first): for waiting, and for
/// looking at records while a service still runs; never for counting what a service wrote.
pub fn read_topic(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Rec> {
    let mut r = TopicReader::new(bootstrap, topic);
    r.read_until(want, timeout);
    r.records
}

/// Every record `topic` holds now (to its end): what a stopped service wrote, to count.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Rec> {
    let mut r = TopicReader::new(bootstrap, topic);
    r.read_all();
    r.records
}

/// Distinct keys in `topic` and the number of records it holds, once `want` distinct keys are
/// there (or `timeout` passed): for waiting; what a service wrote is counted with [`read_all`]
/// once it stopped.
pub fn keys_in(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> (BTreeSet<String>, usize) {
    let deadline = Instant::now() + timeout;
    let mut r = TopicReader::new(bootstrap, topic);
    let mut keys = BTreeSet::new();
    while keys.len() < want && Instant::now() < deadline {
        let before = r.records().len();
        r.read_for(Duration::from_secs(1));
        keys.extend(r.records()[before..].iter().filter_map(|rec| rec.key.clone()));
    }
    // and whatever else (duplicates) is in the topic by then
    let before = r.records().len();
    r.read_all();
    keys.extend(r.records()[before..].iter().filter_map(|rec| rec.key.clone()));
    (keys, r.records().len())
}

/// The offsets `group` has committed on `topic`, by partition (partitions without a commit are
/// left out).
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = config(bootstrap).set("group.id", group).set("enable.auto.commit", "false").create().unwrap();
    let md = c.fetch_metadata(Some(topic), PATIENCE).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let got = c.committed_offsets(tpl, PATIENCE).unwrap();
    let offsets = got.elements().into_iter().map(|e| (e.partition(), e.offset()));
    offsets.filter_map(|(p, o)| if let Offset::Offset(o) = o { Some((p, o)) } else { None }).collect()
}

/// The end offsets (high watermarks) of `topic`'s non-empty partitions.
pub fn ends(bootstrap: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c = client(bootstrap);
    let md = c.fetch_metadata(Some(topic), PATIENCE).unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let marks = parts.into_iter().map(|p| (p, c.fetch_watermarks(topic, p, PATIENCE).unwrap().1));
    marks.filter(|(_, hi)| *hi > 0).collect()
}

/// A replica killed at `at_ms` (wall clock), and the offsets its group had committed on the
/// input topic once it was dead.
pub struct Killed {
    pub at_ms: i64,
    pub committed: BTreeMap<i32, i64>,
}

impl Killed {
    /// Now, with what `group` has committed on `topic`: call it right after the kill.
    pub fn now(bootstrap: &str, group: &str, topic: &str) -> Killed {
        let at_ms = chrono::Utc::now().timestamp_millis();
        Killed { at_ms, committed: committed(bootstrap, group, topic) }
    }
}

/// At-least-once, checked on predictions (which carry their input's `partition`, `offset` and
/// `predicted_at_ms`): an input predicted more than once was, every time but the last, predicted
/// by a replica that was then killed (`kills`, in order) before its offset was committed, so
/// nothing committed was read again. The number of predictions beyond the first of each input.
pub fn check_at_least_once(preds: &[Rec], kills: &[Killed]) -> usize {
    let mut by_input: BTreeMap<(i32, i64), Vec<i64>> = BTreeMap::new();
    for r in preds {
        let m = r.json();
        let input = (m["partition"].as_i64().unwrap() as i32, m["offset"].as_i64().unwrap());
        by_input.entry(input).or_default().push(m["predicted_at_ms"].as_i64().unwrap());
    }
    let mut extra = 0;
    for ((part, offset), mut at) in by_input {
        at.sort_unstable();
        extra += at.len() - 1;
        for t in &at[..at.len() - 1] {
            let kill = kills.iter().find(|k| *t <= k.at_ms).unwrap_or_else(|| {
                panic!("input {part}:{offset} predicted at {at:?}: again by a replica that was not killed")
            });
            let from = kill.committed.get(&part).copied().unwrap_or(0);
            assert!(
                offset >= from,
                "input {part}:{offset} predicted at {at:?} was read again, but its replica, killed at {}, had \
                 committed partition {part} up to {from}",
                kill.at_ms
            );
        }
    }
    extra
}

/// The distinct record keys of `recs` (records without a key are left out).
pub fn distinct_keys(recs: &[Rec]) -> BTreeSet<String> {
    recs.iter().filter_map(|r| r.key.clone()).collect()
}
