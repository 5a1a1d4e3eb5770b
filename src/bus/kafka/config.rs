//! librdkafka client settings per role. The user's properties from `kafka_config.yaml` always
//! win over modelcast's defaults (`set_if_absent`), except where a role needs a setting to keep
//! its guarantee (idempotence and `acks=all` for the producer, manual offset storing for the
//! input consumer, no commits for followers).

use rdkafka::config::ClientConfig;

use crate::config::kafka::KafkaConfig;

/// The user's properties plus a client id.
pub fn base(cfg: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in &cfg.properties {
        cc.set(k, v);
    }
    cc.set_if_absent("client.id", "modelcast");
    cc
}

/// The producer: idempotent, `acks=all`, deliveries bounded by `modelcast.timeout_ms`.
pub fn producer(cfg: &KafkaConfig) -> ClientConfig {
    let mut cc = base(cfg);
    cc.set("enable.idempotence", "true").set("acks", "all");
    cc.set_if_absent("message.timeout.ms", cfg.modelcast.timeout_ms.to_string());
    cc.set_if_absent("linger.ms", "5");
    cc
}

/// The input consumer's default `session.timeout.ms`.
pub const SESSION_TIMEOUT_MS: u32 = 10_000;

/// The input consumer: group `modelcast.group_id`, offsets stored by modelcast after the outputs
/// were acknowledged and committed every 200 ms; with `instance_id`, a static member (KIP-345).
///
/// A session times out after 10 s (librdkafka's default is 45 s): how long the partitions of a
/// replica that died without leaving (`kill -9`, a lost node) wait before the group hands them to
/// the others, and how long a static member may take to restart and take them back itself.
pub fn input_consumer(cfg: &KafkaConfig, instance_id: Option<&str>) -> ClientConfig {
    let mut cc = base(cfg);
    if let Some(id) = instance_id {
        cc.set("group.instance.id", id);
    }
    cc.set("group.id", &cfg.modelcast.group_id)
        .set("enable.auto.offset.store", "false")
        .set_if_absent("enable.auto.commit", "true")
        .set_if_absent("auto.commit.interval.ms", "200")
        .set_if_absent("auto.offset.reset", "earliest")
        .set_if_absent("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        // bound the prefetch queue (default 64 MiB): memory stays flat under any backlog
        .set_if_absent("queued.max.messages.kbytes", "16384")
        // partitions added to the input topic are seen (and rebalanced) within 10 s, not 5 min
        .set_if_absent("topic.metadata.refresh.interval.ms", "10000");
    cc
}

/// A broadcast follower: a throwaway group that never commits, reading from the beginning.
pub fn follower(cfg: &KafkaConfig, group: &str) -> ClientConfig {
    let mut cc = base(cfg);
    cc.set("group.id", group).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
    cc.set("auto.offset.reset", "earliest");
    // The train topic is tiny and a swap waits on it: a broker that holds a fetch for its whole
    // wait instead of answering when data arrives would add up to librdkafka's 500 ms default
    // to every hot swap (Apache Kafka answers at once; some Kafka-compatible brokers do not).
    cc.set_if_absent("fetch.wait.max.ms", "100");
    cc
}

/// `set` unless the user's properties already have the key.
pub trait SetIfAbsent {
    /// Set `k` to `v` unless it is set.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_properties_win_except_where_a_guarantee_depends_on_the_setting() {
        let mut cfg = KafkaConfig::for_tests("127.0.0.1:9092");
        cfg.properties.insert("linger.ms".into(), "50".into());
        cfg.properties.insert("acks".into(), "1".into());
        cfg.properties.insert("enable.auto.offset.store".into(), "true".into());
        let p = producer(&cfg);
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("acks"), Some("all"));
        let c = input_consumer(&cfg, Some("pod-1"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.instance.id"), Some("pod-1"));
        assert_eq!(follower(&cfg, "g").get("fetch.wait.max.ms"), Some("100"));
    }
}
