//! `modelcast models`: the versions in a store, oldest first per model, with their held-out
//! metrics and the aliases pointing at them (a table, or JSON with `--json`).

use std::io::Write;

use serde::Serialize;

use crate::aliases::AliasLog;
use crate::artifact::Artifact;
use crate::cmd::{Edges, Outcome};
use crate::error::{Error, Result};
use crate::settings::Locations;

/// One version, as `models --json` prints it.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Model name.
    pub model_name: String,
    /// Version id.
    pub version: String,
    /// Artifact URI.
    pub uri: String,
    /// Creation time (RFC 3339), when the artifact could be read.
    pub created_at: Option<String>,
    /// Estimator kind.
    pub kind: Option<String>,
    /// Held-out R².
    pub r2: Option<f64>,
    /// Held-out RMSE.
    pub rmse: Option<f64>,
    /// Held-out MAE.
    pub mae: Option<f64>,
    /// A classifier's held-out accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// A classifier's held-out log loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
    /// A classifier's held-out ROC AUC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// Rows fitted.
    pub train_rows: Option<usize>,
    /// Aliases now pointing at this version.
    pub aliases: Vec<String>,
    /// Why the artifact could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// List the versions (a closed pipe ends the listing quietly).
pub async fn list(loc: Locations, name: Option<&str>, json: bool) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(loc).await?;
    let book = AliasLog::of(&store, &bus).book().await?;
    let prefix = name.map(|n| format!("{n}/")).unwrap_or_default();
    let mut rows = Vec::new();
    for key in store.list(&prefix).await?.into_iter().filter(|k| k.ends_with(".json")) {
        let uri = store.uri_of(&key);
        let (model_name, version) = match key.split_once('/') {
            Some((m, rest)) => {
                (m.to_string(), rest.rsplit('/').next().unwrap_or(rest).trim_end_matches(".json").to_string())
            }
            None => continue,
        };
        let artifact = match store.get(&key).await {
            Ok(bytes) => Artifact::decode(&uri, &bytes),
            Err(e) => Err(e),
        };
        let aliases = book.aliases_of(&model_name, &version).into_iter().map(str::to_string).collect();
        rows.push(match artifact {
            Ok(a) => Row {
                model_name,
                version,
                uri,
                created_at: Some(a.created_at.to_rfc3339()),
                kind: Some(a.estimator.kind.clone()),
                r2: Some(a.metrics.model.r2),
                rmse: Some(a.metrics.model.rmse),
                mae: Some(a.metrics.model.mae),
                accuracy: a.metrics.model.classification.as_ref().map(|c| c.accuracy),
                log_loss: a.metrics.model.classification.as_ref().map(|c| c.log_loss),
                auc: a.metrics.model.classification.as_ref().and_then(|c| c.auc),
                train_rows: Some(a.training_data.train_rows),
                aliases,
                error: None,
            },
            Err(e) => Row {
                model_name,
                version,
                uri,
                created_at: None,
                kind: None,
                r2: None,
                rmse: None,
                mae: None,
                accuracy: None,
                log_loss: None,
                auc: None,
                train_rows: None,
                aliases,
                error: Some(e.to_string()),
            },
        });
    }
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Encode { what: "models", source: e })?;
        let _ = writeln!(out, "{text}");
        return Ok(Outcome::Done);
    }
    // classifiers listed: their accuracy and log loss in two more columns
    let classes = rows.iter().any(|r| r.accuracy.is_some());
    let extra = |a: &str, b: &str| if classes { format!(" {a:>8} {b:>8}") } else { String::new() };
    let _ = writeln!(
        out,
        "{:<20} {:<31} {:<20} {:<19} {:>8} {:>8}{} {:>10}  ALIASES",
        "MODEL",
        "VERSION",
        "CREATED (UTC)",
        "KIND",
        "R2",
        "RMSE",
        extra("ACCURACY", "LOG LOSS"),
        "TRAIN ROWS"
    );
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    for r in &rows {
        let created = r.created_at.as_deref().map_or("-", |c| c.get(..19).unwrap_or(c)).replace('T', " ");
        let line = format!(
            "{:<20} {:<31} {:<20} {:<19} {:>8} {:>8}{} {:>10}  {}",
            r.model_name,
            r.version,
            created,
            r.kind.as_deref().unwrap_or("unreadable"),
            num(r.r2),
            num(r.rmse),
            extra(&num(r.accuracy), &num(r.log_loss)),
            r.train_rows.map_or_else(|| "-".to_string(), |n| n.to_string()),
            r.aliases.join(",")
        );
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(Outcome::Done)
}
