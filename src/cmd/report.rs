//! `modelcast report`: fetch the training report `train` stored beside a model version.

use crate::cmd::{write_output, Edges, Outcome};
use crate::error::{Error, Result};
use crate::settings::Locations;

/// Write the report of `name` at `version` (a version id, an alias, or the newest version) to
/// `output` (`-`: stdout; default `./NAME-VERSION.report.svg`, whose path goes to stdout).
pub async fn fetch(loc: Locations, name: &str, version: Option<&str>, output: Option<&str>) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(loc).await?;
    let artifact_key = crate::versions::artifact_key(&store, &bus, name, version).await?;
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
