//! Topic checks (fail fast, with the fix in the message) and idempotent topic creation.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::{bus_err, Kafka};
use crate::error::Result;

impl Kafka {
    /// Fail fast with a clear message when a topic does not exist or the broker is unreachable.
    pub async fn check_topics(&self, topics: &[&str]) -> Result<()> {
        let producer = self.producer.clone();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let timeout = self.timeout();
        let servers = self.cfg.properties.get("bootstrap.servers").cloned().unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
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

    /// Create modelcast's topics; existing ones are left as they are. Returns (topic, created?).
    pub async fn create_topics(&self, partitions: Option<i32>) -> Result<Vec<(String, bool)>> {
        let admin: AdminClient<DefaultClientContext> = super::config::base(&self.cfg)
            .create()
            .map_err(|e| bus_err("admin", format!("cannot create admin client: {e}")))?;
        let t = &self.cfg.modelcast.topics;
        let n = partitions.unwrap_or(self.cfg.modelcast.partitions);
        let repl = self.cfg.modelcast.replication_factor;
        // The train topic keeps every announcement (history is how replicas find the newest model).
        let specs = [(&t.train, 1), (&t.input, n), (&t.app_messages, n), (&t.dead_letter, n), (&t.shadow, n)];
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
