//! Topic checks (fail fast, with the fix in the message) and idempotent topic creation.

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use std::time::Duration;

use super::watch::Severity;
use super::{bus_err, Kafka};

/// How long a connection may be refused before a check gives up (the broker may be restarting).
const TRANSIENT_GRACE: Duration = Duration::from_secs(5);
use crate::error::Result;

impl Kafka {
    /// Fail fast with a clear message when the brokers cannot be reached or refuse us (naming
    /// the setting to fix, within seconds: see [`super::watch`]), or a topic does not exist or
    /// is not ours to use. Returns each topic's partition count.
    pub async fn check_topics(&self, topics: &[&str]) -> Result<Vec<(String, usize)>> {
        let producer = self.producer.clone();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let timeout = self.timeout();
        let cfg = self.cfg.clone();
        let watch = self.watch.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            let servers = cfg.properties.get("bootstrap.servers").cloned().unwrap_or_default();
            let start = std::time::Instant::now();
            let md = loop {
                // short attempts, so a diagnosis from the error callback ends the wait early
                let attempt = Duration::from_millis(500).min(timeout);
                match producer.client().fetch_metadata(None, attempt) {
                    Ok(md) => break md,
                    Err(e) => {
                        let diagnosis = watch.diagnosis(&cfg);
                        let waited = start.elapsed();
                        match diagnosis {
                            Some((Severity::Fatal, msg)) => return Err(bus_err(&servers, msg)),
                            Some((Severity::Transient, msg)) if waited >= TRANSIENT_GRACE.min(timeout) => {
                                return Err(bus_err(&servers, format!("{msg}; no answer for {waited:.0?}")))
                            }
                            _ if waited >= timeout => {
                                return Err(bus_err(
                                    &servers,
                                    format!("cannot reach the Kafka brokers within {timeout:?}: {e}; check bootstrap.servers and security settings"),
                                ))
                            }
                            _ => {}
                        }
                    }
                }
            };
            let mut out = Vec::new();
            for t in &topics {
                let found = md.topics().iter().find(|m| m.name() == t.as_str());
                match found {
                    Some(m) if m.error().is_none() && !m.partitions().is_empty() => {
                        out.push((t.clone(), m.partitions().len()))
                    }
                    Some(m) if matches!(
                        m.error().map(RDKafkaErrorCode::from),
                        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
                    ) => {
                        return Err(bus_err(
                            t,
                            format!(
                                "not authorised to use topic {t:?} as sasl.username {:?}: grant it DESCRIBE, READ and WRITE (ACLs)",
                                cfg.properties.get("sasl.username").map_or("", String::as_str)
                            ),
                        ))
                    }
                    _ => {
                        return Err(bus_err(
                            t,
                            format!("topic {t:?} does not exist; create it with `modelcast topics create` (the broker may not auto-create topics)"),
                        ))
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| bus_err("metadata", e.to_string()))?
    }

    /// Create modelcast's topics; existing ones are left as they are, except that with an
    /// explicit `partitions` the partitioned topics (input, app_messages, dead letters, shadow,
    /// labels) that have fewer are grown to it (Kafka cannot shrink a topic). Returns each topic
    /// and what was done.
    pub async fn create_topics(&self, partitions: Option<i32>) -> Result<Vec<(String, TopicChange)>> {
        // explain a broker that cannot be reached or refuses us before the admin request waits
        self.check_topics(&[]).await?;
        let admin: AdminClient<DefaultClientContext> = super::config::base(&self.cfg)
            .create()
            .map_err(|e| bus_err("admin", format!("cannot create admin client: {e}")))?;
        let t = &self.cfg.modelcast.topics;
        let n = partitions.unwrap_or(self.cfg.modelcast.partitions);
        let repl = self.cfg.modelcast.replication_factor;
        // The train topic keeps every announcement (history is how replicas find the newest model).
        // Labels are joined with predictions by key: co-partitioned with app_messages (same count).
        let specs = [
            (&t.train, 1),
            (&t.input, n),
            (&t.app_messages, n),
            (&t.dead_letter, n),
            (&t.shadow, n),
            (&t.labels, n),
            (&t.model_metrics, 1),
            (&t.model_drift, 1),
        ];
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
                Ok(name) => out.push((name, TopicChange::Created)),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => out.push((name, TopicChange::Exists)),
                Err((name, code)) => return Err(bus_err(&name, format!("create topic failed: {code}"))),
            }
        }
        let Some(want) = partitions else {
            self.wait_visible(&out, None).await?;
            return Ok(out);
        };
        // grow the existing partitioned topics that have fewer partitions
        let grow: Vec<&String> = specs
            .iter()
            .filter(|(_, p)| *p == n)
            .map(|(name, _)| *name)
            .filter(|name| out.iter().any(|(t, c)| t == *name && *c == TopicChange::Exists))
            .collect();
        let names: Vec<&str> = grow.iter().map(|s| s.as_str()).collect();
        let counts = self.check_topics(&names).await?;
        let more: Vec<NewPartitions> = counts
            .iter()
            .filter(|(_, have)| (*have as i32) < want)
            .map(|(name, _)| NewPartitions::new(name.as_str(), want as usize))
            .collect();
        if more.is_empty() {
            self.wait_visible(&out, None).await?;
            return Ok(out);
        }
        let results = admin
            .create_partitions(more.iter(), &opts)
            .await
            .map_err(|e| bus_err("admin", format!("create partitions: {e}")))?;
        for r in results {
            match r {
                Ok(name) => {
                    if let Some(entry) = out.iter_mut().find(|(t, _)| *t == name) {
                        entry.1 = TopicChange::Grown(want);
                    }
                }
                Err((name, code)) => return Err(bus_err(&name, format!("add partitions failed: {code}"))),
            }
        }
        self.wait_visible(&out, Some(want)).await?;
        Ok(out)
    }

    /// Wait (up to `modelcast.timeout_ms`) until the broker's metadata shows every topic of
    /// `done`, the grown ones with `grown` partitions: a broker answers CreateTopics and
    /// CreatePartitions before its metadata has them, and the next command should find them.
    async fn wait_visible(&self, done: &[(String, TopicChange)], grown: Option<i32>) -> Result<()> {
        let names: Vec<&str> = done.iter().map(|(t, _)| t.as_str()).collect();
        let deadline = std::time::Instant::now() + self.timeout();
        loop {
            let seen = match self.check_topics(&names).await {
                Ok(found) => found.iter().all(|(t, n)| {
                    let grown_here = done.iter().any(|(d, c)| d == t && matches!(c, TopicChange::Grown(_)));
                    !grown_here || Some(*n as i32) == grown
                }),
                Err(_) => false,
            };
            if seen {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(bus_err("admin", "the new topics or partitions did not show in the metadata in time"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What `topics create` did to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicChange {
    /// Created.
    Created,
    /// There already, left as it was.
    Exists,
    /// There already with fewer partitions, grown to this many.
    Grown(i32),
}

impl std::fmt::Display for TopicChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicChange::Created => f.write_str("created"),
            TopicChange::Exists => f.write_str("exists"),
            TopicChange::Grown(n) => write!(f, "grown to {n} partitions"),
        }
    }
}
