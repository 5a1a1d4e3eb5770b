//! `kafka_config.yaml`, validated once: the Kafka edge's configuration (brokers, security,
//! topics, client options). The training parameters live in [`crate::params`].

pub mod kafka;
