//! `modelcast report`: fetch the training report `train` stored beside a model version.

use std::io::Write;

use crate::aliases::AliasLog;
use crate::bus::Bus;
use crate::cmd::{Edges, Outcome};
use crate::error::{Error, Result};
use crate::settings::Locations;
use crate::store::Store;

/// Write the report of `name` at `version` (a version id, an alias, or the newest version) to
/// `output` (`-`: stdout; default `./NAME-VERSION.report.svg`, whose path goes to stdout).
pub async fn fetch(loc: Locations, name: &str, version: Option<&str>, output: Option<&str>) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(loc).await?;
    let artifact_key = artifact_key(&store, &bus, name, version).await?;
    let key = crate::report::key_of(&artifact_key);
    let svg = match store.get(&key).await {
        Ok(b) => b,
        Err(Error::NotFound(_)) => {
            return Err(Error::NotFound(format!(
                "{} has no training report (models trained before modelcast 0.1 reports, or stored by another tool); \
                 retrain it to get one",
                store.uri_of(&artifact_key)
            )))
        }
        Err(e) => return Err(e),
    };
    tracing::info!(uri = %store.uri_of(&key), bytes = svg.len(), "fetched training report");
    write_output(output, &svg, || {
        let file = key.rsplit('/').next().unwrap_or(&key);
        format!("{name}-{file}")
    })?;
    Ok(Outcome::Done)
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

/// The store key of model `name` at `version`: a version id, an alias, or (`None`) the newest.
pub async fn artifact_key(store: &Store, bus: &Bus, name: &str, version: Option<&str>) -> Result<String> {
    Ok(match version {
        // aliases start with a letter, version ids with the date
        Some(alias) if crate::lifecycle::check_alias(alias).is_ok() => {
            let book = AliasLog::of(store, bus).book().await?;
            let mv = book.current(name, alias).ok_or_else(|| {
                Error::NotFound(format!(
                    "alias {alias} of {name} is not set (see `modelcast history {name}`); give a version id instead"
                ))
            })?;
            mv.key.clone()
        }
        Some(v) => {
            store.list(&format!("{name}/")).await?.into_iter().find(|k| k.ends_with(&format!("/{v}.json"))).ok_or_else(
                || {
                    Error::NotFound(format!(
                        "model {name} version {v} is not in {} (see `modelcast models {name}`)",
                        store.uri()
                    ))
                },
            )?
        }
        None => store.latest(name).await?.ok_or_else(|| {
            Error::NotFound(format!("no model {name} in {}; run `modelcast train` first", store.uri()))
        })?,
    })
}
