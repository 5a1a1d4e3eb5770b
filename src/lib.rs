//! modelcast: train regression models and serve them from Kafka.
//!
//! * The pure core: [`data`], [`features`], [`model`], [`artifact`], [`record`], [`lifecycle`], [`report`] (the training report's SVG)
//!   (aliases folded from their log, the promotion gate) (no I/O).
//! * The edges, chosen by URL scheme and config: [`store`] (file://, s3://) and [`bus`] (local
//!   logs or Kafka; [`bus::kafka`] is the only place that names the Kafka client library), and
//!   [`aliases`], the alias log on whichever of them holds it.
//! * The flows: [`predict`] (scoring records, following announcements, the service).
//! * The commands: [`cli`] (raw flags) → [`settings`] (validated, defaults resolved) →
//!   [`cmd`] (one thin orchestration per command). [`events`] logs and counts what happens.
//!
//! See `docs/ARCHITECTURE.md`.

pub mod aliases;
pub mod artifact;
pub mod bus;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod data;
pub mod design;
pub mod drift;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod export;
pub mod features;
#[cfg(test)]
mod fuzz;
pub mod lifecycle;
pub mod live;
pub mod messages;
pub mod model;
pub mod params;
pub mod predict;
pub mod record;
pub mod report;
pub mod settings;
pub mod stats;
pub mod store;
pub mod train;
pub mod trees;
pub mod util;
pub mod versions;

pub use cmd::{run, Outcome};
