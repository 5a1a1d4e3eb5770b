//! `modelcast history`: the moves of a model's aliases, oldest first, so "what served at time
//! T" has an answer: the last applied move of the alias before T.

use std::io::Write;

use crate::aliases::AliasLog;
use crate::cmd::{Edges, Outcome};
use crate::error::{Error, Result};
use crate::settings::Locations;

/// Print the moves (a table, or JSON lines with `json`).
pub async fn show(loc: Locations, name: &str, alias: Option<&str>, json: bool) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(loc).await?;
    let log = AliasLog::of(&store, &bus);
    let book = log.book().await?;
    let entries: Vec<_> = book.history(name, alias).collect();
    if entries.is_empty() {
        tracing::warn!(model = %name, log = %log.describe(), "no alias moves recorded for this model");
    }
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<31} {:<31} {:<9} {:<8} {:<28} REASON",
            "AT (UTC)", "ALIAS", "VERSION", "PREVIOUS", "ACTION", "APPLIED", "WHO"
        );
    }
    for e in entries {
        let line = if json {
            serde_json::to_string(e).map_err(|e| Error::Encode { what: "history", source: e })?
        } else {
            let m = &e.mv;
            let applied = if e.applied { "yes" } else { "CONFLICT" };
            let action = match m.action {
                crate::messages::MoveAction::Promote => "promote",
                crate::messages::MoveAction::Rollback => "rollback",
            };
            format!(
                "{:<24} {:<12} {:<31} {:<31} {:<9} {:<8} {:<28} {}",
                m.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                m.alias,
                m.version,
                m.previous_version.as_deref().unwrap_or("-"),
                action,
                applied,
                m.actor,
                match &m.previous_input_schema_digest {
                    Some(_) => format!("[input schema changed] {}", m.reason),
                    None => m.reason.clone(),
                }
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(Outcome::Done)
}
