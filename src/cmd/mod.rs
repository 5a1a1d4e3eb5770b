//! One thin orchestration per command: open the edges the settings name, call the core and the
//! flows, print the result. [`run`] is the dispatch; [`Outcome`] becomes the exit code in `main`.

pub mod check;
pub mod config;
pub mod docs;
pub mod drift;
pub mod evaluate;
pub mod export;
pub mod history;
pub mod models;
pub mod predict;
pub mod promote;
pub mod report;
pub mod topics;
pub mod train;

use crate::bus::{self, Bus};
use std::io::Write;

use crate::error::{Error, Result};
use crate::settings::{Locations, Settings};
use crate::store::Store;

/// How a successful run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything went through.
    Done,
    /// Finished, but this many records were dead-lettered (exit code 3).
    Rejected(u64),
    /// The model was stored and announced, but the gate refused to promote it (exit code 4).
    PromotionRefused,
    /// `drift` measured, and the verdict reached `--fail-on` (exit code 6).
    Drifted,
}

/// Run a validated command.
pub async fn run(settings: Settings) -> Result<Outcome> {
    match settings {
        Settings::Train(s) => train::run(*s).await,
        Settings::Predict(s) => predict::run(*s).await,
        Settings::TopicsCreate { kafka, partitions } => topics::create(kafka, partitions).await,
        Settings::Models { loc, name, json } => models::list(loc, name.as_deref(), json).await,
        Settings::Move(s) => promote::run(s).await,
        Settings::History { loc, name, alias, json } => history::show(loc, &name, alias.as_deref(), json).await,
        Settings::Config { params_path, loc } => config::show(&params_path, &loc),
        Settings::Check { loc } => check::run(loc).await,
        Settings::Evaluate(s) => evaluate::run(*s).await,
        Settings::Report { loc, name, version, output } => {
            report::fetch(loc, &name, version.as_deref(), output.as_deref()).await
        }
        Settings::Export { loc, name, version, format, precision, output } => {
            export::run(loc, &name, version.as_deref(), format, precision, output.as_deref()).await
        }
        Settings::Drift { loc, name, version, source, json, fail_on } => {
            drift::run(loc, &name, version.as_deref(), source, json, fail_on).await
        }
        Settings::Completions(shell) => docs::completions(shell),
        Settings::Man => docs::man(),
    }
}

/// The store and bus a command works with.
pub struct Edges {
    /// The model store.
    pub store: Store,
    /// The message bus: Kafka with a Kafka config, else the local logs beside a file store.
    pub bus: Bus,
}

impl Edges {
    /// Open the store (checking it is reachable) and connect the bus.
    pub async fn open(loc: Locations) -> Result<Edges> {
        let store = Store::open(&loc.store, &loc.store_options).await?;
        let bus = match loc.kafka {
            Some(cfg) => Bus::kafka(cfg)?,
            None => Bus::local(bus::local_dir(store.local_root())),
        };
        Ok(Edges { store, bus })
    }
}

/// Write `bytes` to `output`: `-` is stdout; a path (default `default()`) is written and its
/// name printed on stdout.
pub fn write_output(output: Option<&str>, bytes: &[u8], default: impl FnOnce() -> String) -> Result<()> {
    match output {
        Some("-") => {
            // a closed pipe (`| head`) is not an error
            let _ = std::io::stdout().lock().write_all(bytes);
        }
        out => {
            let path = std::path::PathBuf::from(out.map_or_else(default, str::to_string));
            std::fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))?;
            let _ = writeln!(std::io::stdout().lock(), "{}", path.display());
        }
    }
    Ok(())
}
