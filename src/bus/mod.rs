//! The channels that carry modelcast's messages ([`crate::messages`]).
//!
//! * [`Bus`]: the channel, chosen by configuration as [`crate::store::Store`] is by URL: the
//!   local logs of the embedded default ([`local`], `<store>/_bus/<topic>.jsonl`) or Kafka
//!   ([`kafka`], with `--kafka-config`). Announcing, following a topic and producing go through it.
//!
//! Invariant: commands and flows use [`Bus`], [`Follower`] and [`AnnouncementFeed`]; only
//! [`kafka`] knows about Kafka clients.

pub mod kafka;
pub mod local;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::kafka::{KafkaConfig, Topics};
use crate::error::Result;
use crate::events::{AnnouncementRefused, Event, MessageSkipped};
use crate::messages::{AliasMove, Announcement, Outgoing, Skipped, TrainMessage};
use kafka::{Kafka, TopicFollower};
use local::LocalLog;

/// The message channel of a command.
#[derive(Clone)]
pub enum Bus {
    /// Append-only JSON-lines logs, one per topic, in a directory (`<store>/_bus`).
    Local(PathBuf),
    /// A Kafka cluster.
    Kafka(Arc<Kafka>),
}

impl Bus {
    /// The local logs under `dir`.
    pub fn local(dir: impl Into<PathBuf>) -> Bus {
        Bus::Local(dir.into())
    }

    /// Connect to Kafka (a producer; consumers are opened on demand).
    pub fn kafka(cfg: KafkaConfig) -> Result<Bus> {
        Ok(Bus::Kafka(Arc::new(Kafka::connect(cfg)?)))
    }

    /// Topic names: from the Kafka config, or the defaults (local log names).
    pub fn topics(&self) -> Topics {
        match self {
            Bus::Local(_) => Topics::default(),
            Bus::Kafka(k) => k.config().modelcast.topics.clone(),
        }
    }

    /// The topics and bound scored records go to.
    pub fn output_topics(&self) -> (Topics, usize) {
        match self {
            Bus::Local(_) => (Topics::default(), usize::MAX),
            Bus::Kafka(k) => (k.config().modelcast.topics.clone(), k.config().modelcast.dead_letter_max_bytes),
        }
    }

    /// The local log of `topic` (local bus only).
    pub fn log(&self, topic: &str) -> Option<LocalLog> {
        match self {
            Bus::Local(dir) => Some(LocalLog::new(dir, topic)),
            Bus::Kafka(_) => None,
        }
    }

    /// Where `topic` is, for messages: a log file path or `topic NAME`.
    pub fn describe(&self, topic: &str) -> String {
        match self {
            Bus::Local(dir) => LocalLog::new(dir, topic).path().display().to_string(),
            Bus::Kafka(_) => format!("topic {topic}"),
        }
    }

    /// The Kafka client, when the bus is Kafka.
    pub fn as_kafka(&self) -> Option<&Arc<Kafka>> {
        match self {
            Bus::Kafka(k) => Some(k),
            Bus::Local(_) => None,
        }
    }

    /// The records of `topic` from `since` up to its end now, for training (Kafka only; blocking:
    /// call it from a blocking task).
    pub fn training_records(
        &self,
        topic: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<kafka::reader::TopicRecords> {
        match self {
            Bus::Kafka(k) => kafka::reader::TopicRecords::plan(k.clone(), topic, since),
            Bus::Local(_) => Err(crate::error::Error::Usage(format!(
                "--data kafka://{topic}: training from a topic needs --kafka-config"
            ))),
        }
    }

    /// Fail fast when a topic does not exist or the broker is unreachable (local logs always
    /// exist); returns each Kafka topic with its partition count (nothing for local logs).
    pub async fn check_topics(&self, topics: &[&str]) -> Result<Vec<(String, usize)>> {
        match self {
            Bus::Local(_) => Ok(Vec::new()),
            Bus::Kafka(k) => k.check_topics(topics).await,
        }
    }

    /// Create the configured topics (Kafka; existing ones are kept, or grown to an explicit
    /// `partitions`): each with what was done. Local logs need no creating.
    pub async fn create_topics(&self, partitions: Option<i32>) -> Result<Vec<(String, kafka::admin::TopicChange)>> {
        match self {
            Bus::Local(_) => Ok(Vec::new()),
            Bus::Kafka(k) => k.create_topics(partitions).await,
        }
    }

    /// Read `topics` from the first record at or after `since` on, and keep reading (Kafka only;
    /// the local logs are read whole by their callers).
    pub fn read_since(
        &self,
        topics: &[&str],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<kafka::reader::MultiReader> {
        match self {
            Bus::Kafka(k) => k.read_since(topics, since),
            Bus::Local(_) => Err(crate::error::Error::Usage("reading topics from a time needs --kafka-config".into())),
        }
    }

    /// Publish one message on `topic` and wait until it is durable; returns where it went.
    pub async fn publish_to(&self, topic: &str, key: &str, payload: Vec<u8>, what: &str) -> Result<String> {
        match self {
            Bus::Local(dir) => {
                let log = LocalLog::new(dir, topic);
                log.append(&[payload])?;
                Ok(format!("local log {}", log.path().display()))
            }
            Bus::Kafka(k) => k.publish_to(topic, key, &payload, what).await,
        }
    }

    /// Publish an announcement on the train topic and wait until it is durable; returns where it went.
    pub async fn announce(&self, ann: &Announcement) -> Result<String> {
        self.publish_train(&ann.model_name, ann.encode()?, "announcement").await
    }

    /// Publish an alias move on the train topic and wait until it is durable; returns where it went.
    pub async fn publish_move(&self, mv: &AliasMove) -> Result<String> {
        self.publish_train(&mv.model_name, mv.encode()?, "alias move").await
    }

    async fn publish_train(&self, key: &str, payload: Vec<u8>, what: &str) -> Result<String> {
        match self {
            Bus::Local(dir) => {
                let log = LocalLog::new(dir, &self.topics().train);
                log.append(&[payload])?;
                Ok(format!("local log {}", log.path().display()))
            }
            Bus::Kafka(k) => k.publish_train(key, &payload, what).await,
        }
    }

    /// Publish messages and wait until every one is acknowledged (Kafka) or written (local log:
    /// the payload is the line).
    pub async fn produce(&self, msgs: Vec<Outgoing<'_>>) -> Result<()> {
        match self {
            Bus::Local(dir) => {
                let mut by_topic: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
                for m in msgs {
                    match by_topic.iter_mut().find(|(t, _)| *t == m.topic) {
                        Some((_, lines)) => lines.push(m.payload),
                        None => by_topic.push((m.topic, vec![m.payload])),
                    }
                }
                for (topic, lines) in by_topic {
                    LocalLog::new(dir, topic).append(&lines)?;
                }
                Ok(())
            }
            Bus::Kafka(k) => k.produce(msgs).await,
        }
    }

    /// Flush anything queued (Kafka); local logs are written synchronously.
    pub fn flush(&self) -> Result<()> {
        match self {
            Bus::Local(_) => Ok(()),
            Bus::Kafka(k) => k.flush(),
        }
    }

    /// Follow `topic` from its beginning: every replica sees every message (no consumer group).
    pub async fn follow(&self, topic: &str) -> Result<Follower> {
        Ok(match self {
            Bus::Local(dir) => Follower::Local(LocalLog::new(dir, topic), 0),
            Bus::Kafka(k) => Follower::Kafka(
                Box::new(k.follow(topic).await?),
                Duration::from_millis(k.config().modelcast.timeout_ms),
            ),
        })
    }

    /// Follow the train topic: announcements and alias moves.
    pub async fn train_feed(&self) -> Result<TrainFeed> {
        Ok(TrainFeed(self.follow(&self.topics().train).await?))
    }
}

/// Where the local bus lives for a store: `<root>/_bus` for a file store, else `models/_bus`.
pub fn local_dir(store_root: Option<&Path>) -> PathBuf {
    store_root.map_or_else(|| PathBuf::from("models/_bus"), |r| r.join("_bus"))
}

/// A reader of one topic: its history first, then what arrives.
pub enum Follower {
    /// A local log and the byte offset read so far.
    Local(LocalLog, u64),
    /// A Kafka topic, and the bound on reading its history.
    Kafka(Box<TopicFollower>, Duration),
}

impl Follower {
    /// Every message so far (values), oldest first per partition.
    pub async fn history(&mut self) -> Result<Vec<Vec<u8>>> {
        match self {
            Follower::Local(..) => self.poll().await,
            Follower::Kafka(f, timeout) => tokio::task::block_in_place(|| f.history(*timeout)),
        }
    }

    /// Messages that arrived since the last call (non-blocking).
    pub async fn poll(&mut self) -> Result<Vec<Vec<u8>>> {
        match self {
            Follower::Local(log, offset) => {
                let (lines, next) = log.read_from(*offset)?;
                *offset = next;
                Ok(lines)
            }
            Follower::Kafka(f, _) => Ok(f.poll()),
        }
    }

    /// Wait until [`Follower::poll`] may have something: a Kafka follower wakes when a message
    /// arrives; a local log is looked at every [`LOCAL_LOOK`]. Cancel-safe.
    pub async fn changed(&mut self) {
        match self {
            Follower::Local(..) => tokio::time::sleep(LOCAL_LOOK).await,
            Follower::Kafka(f, _) => f.arrived().await,
        }
    }
}

/// How often a follower of a local log looks for new lines (a file has no wakeup to wait on).
pub const LOCAL_LOOK: Duration = Duration::from_millis(100);

/// The messages of the train topic, decoded and checked: announcements and alias moves.
pub struct TrainFeed(Follower);

impl TrainFeed {
    /// All valid messages so far, oldest first; invalid ones are emitted as events and skipped.
    pub async fn history(&mut self) -> Result<Vec<TrainMessage>> {
        Ok(self.0.history().await?.iter().filter_map(|b| decode_or_skip(b)).collect())
    }

    /// Valid messages since the last call; invalid ones are emitted as events and skipped.
    pub async fn poll(&mut self) -> Result<Vec<TrainMessage>> {
        Ok(self.0.poll().await?.iter().filter_map(|b| decode_or_skip(b)).collect())
    }

    /// Wait until [`TrainFeed::poll`] may have something (see [`Follower::changed`]).
    pub async fn changed(&mut self) {
        self.0.changed().await
    }
}

/// Decode a train message; an invalid one or one of an unknown type is emitted as an event.
pub fn decode_or_skip(bytes: &[u8]) -> Option<TrainMessage> {
    match TrainMessage::decode(bytes) {
        Ok(m) => Some(m),
        Err(Skipped::Invalid(reason)) => {
            AnnouncementRefused { reason: &reason }.emit();
            None
        }
        Err(Skipped::UnknownType(kind)) => {
            MessageSkipped { kind: &kind }.emit();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_local_bus_skips_refused_announcements_and_reads_only_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::local(dir.path());
        let mut feed = bus.train_feed().await.unwrap();
        assert!(feed.history().await.unwrap().is_empty());
        LocalLog::new(dir.path(), "train").append(&[b"not json".to_vec()]).unwrap();
        let refused = crate::events::metrics().refused.get();
        assert!(feed.poll().await.unwrap().is_empty());
        assert!(crate::events::metrics().refused.get() > refused);
        assert!(feed.poll().await.unwrap().is_empty(), "read once");
    }
}
