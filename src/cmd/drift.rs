//! `modelcast drift`: how far a file of records has moved from what a model version was trained
//! on, per input column and for the predictions (a table, or JSON with `--json`); exit 6 when
//! the worst verdict reaches `--fail-on`.

use std::io::Write;

use serde::Serialize;

use crate::artifact::Artifact;
use crate::cmd::{Edges, Outcome};
use crate::drift::{ColumnDrift, WindowReport};
use crate::error::{Error, Result};
use crate::predict::input::Source;
use crate::settings::Locations;

/// What `modelcast drift --json` prints.
#[derive(Debug, Serialize)]
pub struct Printed<'a> {
    /// Model name.
    pub model_name: &'a str,
    /// The version measured against.
    pub version: &'a str,
    /// The input (`-` for stdin).
    pub input: &'a str,
    /// The report.
    #[serde(flatten)]
    pub report: &'a WindowReport,
}

/// Measure `source` against `name` at `version` (an id, an alias, or the newest); `fail_on` is
/// the verdict (`watch` or `drift`) from which the outcome is [`Outcome::Drifted`] (`None`: never).
pub async fn run(
    loc: Locations,
    name: &str,
    version: Option<&str>,
    source: Source,
    json: bool,
    fail_on: Option<&str>,
) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(loc).await?;
    let key = crate::versions::artifact_key(&store, &bus, name, version).await?;
    let uri = store.uri_of(&key);
    let artifact = Artifact::decode(&uri, &store.get(&key).await?)?;
    let report = crate::predict::drift::measure(&artifact, &uri, &source).await?;
    let printed = Printed { model_name: name, version: &artifact.version, input: &source.path, report: &report };
    let text = if json {
        serde_json::to_string_pretty(&printed).map_err(|source| Error::Encode { what: "drift report", source })? + "\n"
    } else {
        table(&printed)
    };
    // a closed pipe (`| head`) is not an error
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    let rank = |v: &str| ["stable", "watch", "drift"].iter().position(|x| *x == v).unwrap_or(0);
    Ok(match fail_on {
        Some(level) if rank(&report.verdict) >= rank(level) => Outcome::Drifted,
        _ => Outcome::Done,
    })
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

fn row(c: &ColumnDrift) -> String {
    let odd = c.out_of_range_rate.or(c.unseen_rate);
    format!(
        "{:<24} {:<11} {:>8.4} {:>7.4}  {:<7} {:>8} {:>8} {:>8} {:>8}\n",
        c.name,
        c.kind,
        c.psi,
        c.jensen_shannon,
        c.verdict,
        pct(Some(c.missing_rate)),
        pct(Some(c.reference_missing_rate)),
        pct(odd),
        pct(Some(c.invalid_rate)),
    )
}

fn table(p: &Printed<'_>) -> String {
    let mut out = format!(
        "{:<24} {:<11} {:>8} {:>7}  {:<7} {:>8} {:>8} {:>8} {:>8}\n",
        "COLUMN", "KIND", "PSI", "JS", "VERDICT", "MISSING", "TRAINED", "OUTSIDE", "INVALID"
    );
    for c in p.report.columns.iter().chain([&p.report.prediction]) {
        out.push_str(&row(c));
    }
    out.push_str(&format!(
        "\n{} {} against {}: {} ({} records, {} refused, {} unreadable)\n",
        p.model_name, p.version, p.input, p.report.verdict, p.report.records, p.report.rejected, p.report.unreadable
    ));
    out
}
