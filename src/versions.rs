//! Model versions on the edges: find one (by id, alias or the newest), verify it as a
//! predictor would, and move an alias to it. Shared by `train` (the gate's move), `promote`,
//! `rollback`, `report` and `export`, so each rule is written once.
//!
//! Architecture invariant: a move is published only for a verified version, and a move that
//! loses a race is an error ([`Error::Conflict`], exit 5), never silently dropped.

use serde::Serialize;

use crate::aliases::AliasLog;
use crate::artifact::Artifact;
use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::lifecycle::{AliasBook, Entry};
use crate::messages::{AliasMove, Announcement, ModelRef, MoveAction, ALIAS_MOVED, MESSAGE_SCHEMA_VERSION};
use crate::predict::{fetch_verified, ServeOptions, Served};
use crate::store::Store;
use crate::util::hash::sha256_hex;

/// Append a move and insist it applied: a move that lost a race is [`Error::Conflict`].
pub async fn publish(log: &AliasLog<'_>, mv: AliasMove) -> Result<(Entry, String)> {
    let (entry, to) = log.append(mv).await?;
    if !entry.applied {
        return Err(Error::Conflict(format!(
            "{} of {} -> {} did not apply: {}",
            entry.mv.alias,
            entry.mv.model_name,
            entry.mv.version,
            entry.conflict.as_deref().unwrap_or("a concurrent move won")
        )));
    }
    tracing::info!(model = %entry.mv.model_name, alias = %entry.mv.alias, version = %entry.mv.version,
        previous = ?entry.mv.previous_version, to = %to, "alias moved");
    Ok((entry, to))
}

/// A verified version: what a move records of it.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Model name.
    pub model_name: String,
    /// Version id.
    pub version: String,
    /// Store key.
    pub key: String,
    /// sha256 of the artifact bytes.
    pub sha256: String,
    /// Input-schema digest.
    pub input_schema_digest: String,
}

impl Verified {
    /// Of an artifact stored as `bytes` under `key`.
    pub fn of(a: &Artifact, key: String, bytes: &[u8]) -> Verified {
        Verified {
            model_name: a.model_name.clone(),
            version: a.version.clone(),
            key,
            sha256: sha256_hex(bytes),
            input_schema_digest: a.input_schema.digest(),
        }
    }
}

/// Find `version` of `name` and check it as a predictor would: against its announcement (or an
/// earlier alias move to it); a version known to neither is checked for format, name and schema
/// and its current sha256 is pinned (with a warning).
pub async fn verify(
    store: &Store,
    announcements: &[Announcement],
    book: &AliasBook,
    name: &str,
    version: &str,
) -> Result<Verified> {
    let announced = announcements.iter().rev().find(|a| a.model_name == name && a.version == version).cloned();
    let moved = book.history(name, None).filter(|e| e.mv.version == version).map(|e| e.mv.clone()).last();
    let reference: Option<(String, String, String)> = announced
        .map(|a| (a.key, a.sha256, a.input_schema_digest))
        .or_else(|| moved.map(|m| (m.key, m.sha256, m.input_schema_digest)));
    let refuse = |why: String| Error::artifact(format!("{name} {version}"), format!("{why}; nothing was published"));
    match reference {
        Some((key, sha256, digest)) => {
            let r = ModelRef { model_name: name, version, key: &key, sha256: &sha256, input_schema_digest: &digest };
            let a = fetch_verified(store, r).await.map_err(|e| refuse(e.to_string()))?;
            Served::from_artifact(&a, ServeOptions::key("key")).map_err(|e| refuse(e.to_string()))?;
            Ok(Verified { model_name: name.into(), version: version.into(), key, sha256, input_schema_digest: digest })
        }
        None => {
            let key = store.key_of_version(Some(name), version).await?.ok_or_else(|| {
                    Error::NotFound(format!(
                        "model {name} version {version} is not in {} (see `modelcast models {name}`); nothing was published",
                        store.uri()
                    ))
                })?;
            let bytes = store.get(&key).await?;
            let a = Artifact::decode(&store.uri_of(&key), &bytes).map_err(|e| refuse(e.to_string()))?;
            if a.model_name != name || a.version != version {
                return Err(refuse(format!("the artifact at {key} is {} {}", a.model_name, a.version)));
            }
            Served::from_artifact(&a, ServeOptions::key("key")).map_err(|e| refuse(e.to_string()))?;
            tracing::warn!(%key, "this version was never announced here; pinning the sha256 of the stored object");
            Ok(Verified::of(&a, key, &bytes))
        }
    }
}

/// A new move of `alias` to `target`, by this process's actor; `previous` is the move the alias
/// stands on (its version, and its input schema when this move changes it).
pub fn new_move(
    target: &Verified,
    alias: &str,
    previous: Option<&AliasMove>,
    action: MoveAction,
    reason: String,
) -> AliasMove {
    let at = chrono::Utc::now();
    let salt = format!("{}/{alias}/{}/{}", target.model_name, target.version, std::process::id());
    AliasMove {
        schema_version: MESSAGE_SCHEMA_VERSION,
        kind: ALIAS_MOVED.to_string(),
        id: crate::artifact::new_version(at, salt.as_bytes()),
        model_name: target.model_name.clone(),
        alias: alias.to_string(),
        version: target.version.clone(),
        key: target.key.clone(),
        sha256: target.sha256.clone(),
        input_schema_digest: target.input_schema_digest.clone(),
        previous_version: previous.map(|p| p.version.clone()),
        previous_input_schema_digest: previous
            .map(|p| p.input_schema_digest.clone())
            .filter(|d| *d != target.input_schema_digest),
        action,
        reason,
        actor: crate::lifecycle::actor(|k| std::env::var(k).ok(), &crate::util::ids::hostname()),
        at,
    }
}

/// The store key of model `name` at `version`: a version id, an alias, or (`None`) the newest.
pub async fn artifact_key(store: &Store, bus: &Bus, name: &str, version: Option<&str>) -> Result<String> {
    Ok(match version {
        // aliases start with a letter, version ids with the date
        Some(alias) if crate::params::check_alias(alias).is_ok() => {
            let book = AliasLog::of(store, bus).book().await?;
            let mv = book.current(name, alias).ok_or_else(|| {
                Error::NotFound(format!(
                    "alias {alias} of {name} is not set (see `modelcast history {name}`); give a version id instead"
                ))
            })?;
            mv.key.clone()
        }
        Some(v) => store.key_of_version(Some(name), v).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "model {name} version {v} is not in {} (see `modelcast models {name}`)",
                store.uri()
            ))
        })?,
        None => store.latest(name).await?.ok_or_else(|| {
            Error::NotFound(format!("no model {name} in {}; run `modelcast train` first", store.uri()))
        })?,
    })
}
