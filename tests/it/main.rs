//! The one integration-test binary: the real CLI in temp dirs, sklearn parity, the store contract
//! on every backend, and the Kafka + S3 flows against the loopback services started by
//! `scripts/test.sh`. Shared helpers (sandbox, `TestCommand`, test bed, Kafka, fixtures, log
//! events) live in `util/`.

mod bus_contract;
mod classify;
mod cli;
mod closed_loop;
mod drift;
mod export;
mod hot_path;
mod inference;
mod layers;
mod lifecycle;
mod parity;
mod reliability;
mod report;
mod sasl;
mod services;
mod store_contract;
mod topic_training;
mod util;
