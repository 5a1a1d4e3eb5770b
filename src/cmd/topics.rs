//! `modelcast topics create`: the train, input, app_messages and dead-letter topics.

use crate::bus::Bus;
use crate::cmd::Outcome;
use crate::config::kafka::KafkaConfig;
use crate::error::Result;

/// Create the topics (existing ones are kept); prints `topic<TAB>created|exists` per topic.
pub async fn create(cfg: KafkaConfig, partitions: Option<i32>) -> Result<Outcome> {
    let bus = Bus::kafka(cfg)?;
    for (topic, created) in bus.create_topics(partitions).await? {
        println!("{topic}\t{}", if created { "created" } else { "exists" });
    }
    Ok(Outcome::Done)
}
