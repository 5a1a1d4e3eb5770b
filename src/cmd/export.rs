//! `modelcast export`: a stored model version as ONNX or PMML, for runtimes outside modelcast.

use crate::artifact::Artifact;
use crate::cmd::write_output;
use crate::cmd::{Edges, Outcome};
use crate::error::Result;
use crate::export::{Format, Precision};
use crate::settings::Locations;
use crate::versions::artifact_key;

/// Export `name` at `version` (a version id, an alias, or the newest) as `format` (an ONNX graph
/// in `precision`) to `output` (`-`: stdout; default `./NAME-VERSION.EXT`, whose path goes to
/// stdout).
pub async fn run(
    loc: Locations,
    name: &str,
    version: Option<&str>,
    format: Format,
    precision: Precision,
    output: Option<&str>,
) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(loc).await?;
    let key = artifact_key(&store, &bus, name, version).await?;
    let uri = store.uri_of(&key);
    let artifact = Artifact::decode(&uri, &store.get(&key).await?)?;
    let bytes = crate::export::export_with(&artifact, format, precision)?;
    tracing::info!(%uri, format = format.as_str(), bytes = bytes.len(), "exported");
    write_output(output, &bytes, || format!("{name}-{}.{}", artifact.version, format.extension()))?;
    Ok(Outcome::Done)
}
