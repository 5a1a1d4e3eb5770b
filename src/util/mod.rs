//! Small leaves every layer may use: content hashes, store-key checks, the seeded RNG, thread
//! counts, link functions, the clock, escaping and YAML reading. Nothing here knows a model, a message, a store
//! or a transport.
//!
//! Architecture invariant: `util` imports nothing of the crate but [`crate::error`].

pub mod escape;
pub mod hash;
pub mod ids;
pub mod link;
pub mod rng;
pub mod threads;
pub mod time;
pub mod yaml;
