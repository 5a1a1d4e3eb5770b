//! `modelcast models`: the artifact URIs in a store, oldest first per model.

use std::io::Write;

use crate::cmd::Outcome;
use crate::error::Result;
use crate::settings::Locations;
use crate::store::Store;

/// Print one artifact URI per line (a closed pipe ends the listing quietly).
pub async fn list(loc: Locations, name: Option<&str>) -> Result<Outcome> {
    let store = Store::open(&loc.store, &loc.store_options).await?;
    let prefix = name.map(|n| format!("{n}/")).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    for key in store.list(&prefix).await?.into_iter().filter(|k| k.ends_with(".json")) {
        if writeln!(out, "{}", store.uri_of(&key)).is_err() {
            break;
        }
    }
    Ok(Outcome::Done)
}
