//! modelcast: train regression models and serve them from Kafka.
//!
//! The pure core ([`data`], [`features`], [`model`], [`artifact`], [`record`]) does no I/O. The
//! edges ([`store`], [`bus`]) are chosen by URL scheme and config. [`train`] and [`predict`] are
//! thin orchestrations of the two. See `docs/ARCHITECTURE.md`.

pub mod artifact;
pub mod bus;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod features;
#[cfg(test)]
mod fuzz;
pub mod model;
pub mod predict;
pub mod record;
pub mod store;
pub mod train;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bus::kafka::{Kafka, KafkaFeed, Outgoing};
use bus::local::LocalLog;
use bus::Announcement;
use cli::{Cli, Command, Locations, SinkKind, TopicsAction};
use config::kafka::KafkaConfig;
use config::params::Params;
use error::{Error, Result};
use predict::Scored;
use store::{Store, StoreOptions};

/// How a successful run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything went through.
    Done,
    /// Finished, but this many records were dead-lettered (exit code 3).
    Rejected(u64),
}

/// Where announcements are published.
pub enum Announcer {
    /// The local log `<store>/_bus/train.jsonl`.
    Local(LocalLog),
    /// The Kafka train topic.
    Kafka(Arc<Kafka>),
}

impl Announcer {
    /// Publish; returns a description of where it went.
    pub async fn announce(&self, ann: &Announcement) -> Result<String> {
        match self {
            Announcer::Local(log) => {
                log.append(&[ann.encode()?])?;
                Ok(format!("local log {}", log.path().display()))
            }
            Announcer::Kafka(k) => k.announce(ann).await,
        }
    }
}

/// Where announcements are read from.
pub enum AnnouncementFeed {
    /// The local log, from a byte offset.
    Local(LocalLog, u64),
    /// The Kafka train topic.
    Kafka(Box<KafkaFeed>, Duration),
}

impl AnnouncementFeed {
    /// All announcements so far (refused ones logged and skipped), oldest first.
    pub async fn history(&mut self) -> Result<Vec<Announcement>> {
        let items = match self {
            AnnouncementFeed::Local(log, offset) => {
                let (lines, next) = log.read_from(*offset)?;
                *offset = next;
                lines.iter().map(|l| Announcement::decode(l)).collect::<Vec<_>>()
            }
            AnnouncementFeed::Kafka(feed, timeout) => tokio::task::block_in_place(|| feed.history(*timeout))?,
        };
        Ok(items
            .into_iter()
            .filter_map(|r| r.map_err(|reason| tracing::warn!(%reason, "refused announcement in history")).ok())
            .collect())
    }

    /// New announcements since the last call; undecodable ones as `Err(reason)`.
    pub async fn poll(&mut self) -> Result<Vec<std::result::Result<Announcement, String>>> {
        match self {
            AnnouncementFeed::Local(log, offset) => {
                let (lines, next) = log.read_from(*offset)?;
                *offset = next;
                Ok(lines.iter().map(|l| Announcement::decode(l)).collect())
            }
            AnnouncementFeed::Kafka(feed, _) => Ok(feed.poll()),
        }
    }
}

/// Prediction and dead-letter outputs of batch and follow runs.
pub struct Outputs {
    stdout: Option<std::io::BufWriter<std::io::Stdout>>,
    app_log: Option<LocalLog>,
    dead_log: Option<LocalLog>,
    kafka: Option<Arc<Kafka>>,
    flush_each: bool,
    warned: u64,
    /// stdout was closed by the reader (e.g. `| head`).
    pub closed: bool,
}

impl Outputs {
    /// Write one chunk; returns (predictions, rejections).
    pub async fn write(&mut self, chunk: Vec<Scored>) -> Result<(u64, u64)> {
        let (mut ok, mut bad) = (0, 0);
        let mut lines = Vec::with_capacity(chunk.len());
        let mut dead_lines = Vec::new();
        let mut msgs = Vec::new();
        for s in chunk {
            match s {
                Scored::Ok(p) => {
                    ok += 1;
                    let json = serde_json::to_vec(&p).map_err(|e| Error::Encode { what: "prediction", source: e })?;
                    if let Some(k) = &self.kafka {
                        msgs.push(Outgoing {
                            topic: k.config().modelcast.topics.app_messages.clone(),
                            key: p.key.clone().into_bytes(),
                            payload: json.clone(),
                            headers: vec![],
                        });
                    }
                    lines.push(json);
                }
                Scored::Rejected(d) => {
                    bad += 1;
                    self.warned += 1;
                    if self.warned <= 20 || self.warned.is_power_of_two() {
                        tracing::warn!(key = %d.key, reason = %d.reason, rejected_so_far = self.warned, "record rejected (dead-lettered)");
                    }
                    dead_lines
                        .push(serde_json::to_vec(&d).map_err(|e| Error::Encode { what: "dead letter", source: e })?);
                    if let Some(k) = &self.kafka {
                        let c = &k.config().modelcast;
                        let source = match &d.origin {
                            bus::Origin::Line { source, line } => format!("{source}:{line}"),
                            bus::Origin::Kafka { topic, partition, offset } => format!("{topic}/{partition}/{offset}"),
                        };
                        msgs.push(predict::serve::dead_letter_message(
                            &c.topics.dead_letter,
                            d,
                            source,
                            c.dead_letter_max_bytes,
                        ));
                    }
                }
            }
        }
        if let Some(w) = &mut self.stdout {
            let r =
                predict::local::write_stdout(w, &lines).and_then(|_| if self.flush_each { w.flush() } else { Ok(()) });
            if let Err(e) = r {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    self.closed = true;
                } else {
                    return Err(Error::io("write", "stdout", e));
                }
            }
        }
        if let Some(log) = &self.app_log {
            log.append(&lines)?;
        }
        if let Some(log) = &self.dead_log {
            log.append(&dead_lines)?;
        }
        if let Some(k) = &self.kafka {
            k.produce(msgs).await?;
        }
        Ok((ok, bad))
    }

    /// Flush stdout and Kafka.
    pub async fn flush(&mut self) -> Result<()> {
        if let Some(w) = &mut self.stdout {
            if let Err(e) = w.flush() {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(Error::io("write", "stdout", e));
                }
            }
        }
        if let Some(k) = &self.kafka {
            k.flush()?;
        }
        Ok(())
    }
}

/// Resolved store + bus for a command.
struct Env {
    store: Store,
    kafka: Option<Arc<Kafka>>,
    bus_dir: PathBuf,
}

impl Env {
    async fn open(loc: &Locations) -> Result<Env> {
        let opts = StoreOptions {
            endpoint: loc.s3_endpoint.clone(),
            region: loc.s3_region.clone(),
            path_style: None,
            checksums: loc.s3_checksums.clone(),
            max_attempts: None,
        };
        let store = Store::open(&loc.store, &opts).await?;
        let bus_dir = match &store {
            Store::File(f) => f.root().join("_bus"),
            Store::S3(_) => PathBuf::from("models/_bus"),
        };
        let kafka = match &loc.kafka_config {
            Some(p) => Some(Arc::new(Kafka::connect(KafkaConfig::load(p)?)?)),
            None => None,
        };
        Ok(Env { store, kafka, bus_dir })
    }

    fn log(&self, topic: &str) -> LocalLog {
        LocalLog::new(&self.bus_dir, topic)
    }

    async fn feed(&self) -> Result<AnnouncementFeed> {
        Ok(match &self.kafka {
            Some(k) => AnnouncementFeed::Kafka(
                Box::new(k.feed().await?),
                Duration::from_millis(k.config().modelcast.timeout_ms),
            ),
            None => AnnouncementFeed::Local(self.log("train"), 0),
        })
    }
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Train(args) => {
            let params = Params::load(&args.params)?;
            let opts = train::TrainOptions { data: args.data, name: args.name, test_data: args.test_data };
            let params = train::apply_overrides(params, &opts, &args.params)?;
            let env = Env::open(&args.loc).await?;
            let announcer = match &env.kafka {
                Some(k) => {
                    // fail before fitting if the topic is missing or the broker is down
                    k.check_topics(&[&k.config().modelcast.topics.train]).await?;
                    Announcer::Kafka(k.clone())
                }
                None => Announcer::Local(env.log("train")),
            };
            let report = train::run(&params, &env.store, &announcer).await?;
            eprint!("{}", train::metrics_table(&report));
            let mut out = std::io::stdout().lock();
            let text = if args.json {
                serde_json::to_string_pretty(&report).map_err(|e| Error::Encode { what: "report", source: e })?
            } else {
                report.uri.clone()
            };
            let _ = writeln!(out, "{text}");
            Ok(Outcome::Done)
        }
        Command::Predict(args) => {
            let env = Env::open(&args.loc).await?;
            let choice = predict::local::ModelChoice {
                name: args.model_name.clone(),
                version: args.model.clone(),
                key_field: args.key_field.clone(),
                allow_schema_change: args.allow_schema_change,
            };
            if args.serve {
                let kafka = env.kafka.clone().ok_or_else(|| Error::Usage("--serve needs --kafka-config".into()))?;
                let feed = env.feed().await?;
                let opts = predict::serve::ServeOptions {
                    input_topic: args
                        .input_topic
                        .clone()
                        .unwrap_or_else(|| kafka.config().modelcast.topics.input.clone()),
                    metrics_addr: args.metrics_addr,
                    instance_id: args.instance_id.clone(),
                    stdout: args.sink.contains(&SinkKind::Stdout),
                };
                let counts = predict::serve::run(&env.store, kafka, feed, &choice, &opts).await?;
                tracing::info!(scored = counts.scored, rejected = counts.rejected, swaps = counts.swaps, "stopped");
                return Ok(Outcome::Done);
            }
            let sinks = if args.sink.is_empty() { vec![SinkKind::Stdout] } else { args.sink.clone() };
            let to_bus = sinks.contains(&SinkKind::Bus);
            let mut out = Outputs {
                stdout: sinks
                    .contains(&SinkKind::Stdout)
                    .then(|| std::io::BufWriter::with_capacity(1 << 16, std::io::stdout())),
                app_log: (to_bus && env.kafka.is_none()).then(|| env.log("app_messages")),
                dead_log: env.kafka.is_none().then(|| env.log("dead_letter")),
                kafka: if to_bus { env.kafka.clone() } else { None },
                flush_each: args.follow,
                warned: 0,
                closed: false,
            };
            if let Some(k) = &out.kafka {
                let t = &k.config().modelcast.topics;
                k.check_topics(&[&t.app_messages, &t.dead_letter]).await?;
            }
            let feed = env.feed().await?;
            let source = predict::input::Source {
                path: args.input.clone().unwrap_or_else(|| "-".into()),
                follow: args.follow,
                format: args.format,
            };
            let counts = predict::local::run(&env.store, feed, source, &choice, &mut out).await?;
            let dead_to = match &env.kafka {
                Some(k) if to_bus => format!("topic {}", k.config().modelcast.topics.dead_letter),
                Some(_) => "the log only (add --sink bus to send them to Kafka)".to_string(),
                None => env.log("dead_letter").path().display().to_string(),
            };
            if counts.rejected > 0 {
                tracing::warn!(scored = counts.scored, rejected = counts.rejected, dead_letters = %dead_to, "done, with rejected records");
                Ok(Outcome::Rejected(counts.rejected))
            } else {
                tracing::info!(scored = counts.scored, swaps = counts.swaps, "done");
                Ok(Outcome::Done)
            }
        }
        Command::Topics { action: TopicsAction::Create { kafka_config, partitions } } => {
            let k = Kafka::connect(KafkaConfig::load(&kafka_config)?)?;
            for (topic, created) in k.create_topics(partitions).await? {
                println!("{topic}\t{}", if created { "created" } else { "exists" });
            }
            Ok(Outcome::Done)
        }
        Command::Models(args) => {
            let env = Env::open(&args.loc).await?;
            let prefix = args.model_name.as_ref().map(|n| format!("{n}/")).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            for key in env.store.list(&prefix).await?.into_iter().filter(|k| k.ends_with(".json")) {
                if writeln!(out, "{}", env.store.uri_of(&key)).is_err() {
                    break;
                }
            }
            Ok(Outcome::Done)
        }
        Command::Config(args) => {
            show_config(&args.params, &args.loc)?;
            Ok(Outcome::Done)
        }
    }
}

fn show_config(params: &Path, loc: &Locations) -> Result<()> {
    let mut doc = serde_json::Map::new();
    doc.insert("store".into(), loc.store.clone().into());
    if let Some(e) = &loc.s3_endpoint {
        doc.insert("s3_endpoint".into(), e.clone().into());
    }
    if params.exists() {
        let p = Params::load(params)?;
        doc.insert("params_file".into(), params.display().to_string().into());
        doc.insert("params".into(), serde_json::to_value(&p).map_err(|e| Error::Encode { what: "params", source: e })?);
    }
    if let Some(path) = &loc.kafka_config {
        let k = KafkaConfig::load(path)?;
        doc.insert("kafka_config_file".into(), path.display().to_string().into());
        doc.insert("kafka".into(), serde_json::to_value(k.redacted()).unwrap_or_default());
        doc.insert("modelcast_kafka".into(), serde_json::to_value(&k.modelcast).unwrap_or_default());
    }
    let yaml = serde_yaml::to_string(&doc).map_err(|e| Error::Usage(format!("cannot render config: {e}")))?;
    print!("{yaml}");
    Ok(())
}
