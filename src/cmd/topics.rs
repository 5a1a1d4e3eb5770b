//! `modelcast topics create`: the train, input, app_messages and dead-letter topics.

use crate::bus::Bus;
use crate::cmd::Outcome;
use crate::config::kafka::KafkaConfig;
use crate::error::Result;

/// Create the topics (existing ones are kept; with `--partitions`, grown to it); prints
/// `topic<TAB>created|exists|grown to N partitions` per topic.
pub async fn create(cfg: KafkaConfig, partitions: Option<i32>) -> Result<Outcome> {
    let bus = Bus::kafka(cfg)?;
    for (topic, change) in bus.create_topics(partitions).await? {
        println!("{topic}\t{change}");
    }
    Ok(Outcome::Done)
}
