//! `modelcast promote` and `modelcast rollback`: verify the target version as a predictor would,
//! then append one alias move to the alias log and read it back.
//!
//! Invariant: nothing is published unless the version exists and passes the checks (sha256
//! against its announcement or an earlier move, format, schema); a move that loses a race is
//! reported (exit 5), never silently dropped.

use std::io::Write;

use serde::Serialize;

use crate::aliases::{AliasLog, Updates};
use crate::artifact::{sha256_hex, Artifact};
use crate::bus::{AliasMove, Announcement, ModelRef, MoveAction, ALIAS_MOVED, MESSAGE_SCHEMA_VERSION};
use crate::cmd::{Edges, Outcome};
use crate::error::{Error, Result};
use crate::lifecycle::{AliasBook, Entry};
use crate::predict::{fetch_verified, Served};
use crate::settings::MoveSettings;
use crate::store::Store;

/// Run `promote` or `rollback`.
pub async fn run(s: MoveSettings) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(s.loc).await?;
    let log = AliasLog::of(&store, &bus);
    log.check_writable().await?;
    // one read of the log: the moves (the aliases' state) and the announcements (what to verify
    // a version against)
    let history = Updates::open(&store, &bus).await?.history(&store).await?;
    let book = AliasBook::of(history.moves);
    let current = book.current(&s.name, &s.alias).map(|m| m.version.clone());
    let version = match (&s.version, s.action) {
        (Some(v), _) => v.clone(),
        (None, _) => book.rollback_target(&s.name, &s.alias).map(str::to_string).ok_or_else(|| {
            Error::NotFound(format!(
                "alias {} of {} has no earlier version to roll back to (see `modelcast history {}`); use --to VERSION",
                s.alias, s.name, s.name
            ))
        })?,
    };
    if current.as_deref() == Some(version.as_str()) {
        tracing::warn!(model = %s.name, alias = %s.alias, %version, "the alias already points at this version; nothing published");
        print(&s.json, None, &format!("{} of {} already points at {version}", s.alias, s.name))?;
        return Ok(Outcome::Done);
    }
    let target = verify(&store, &history.announcements, &book, &s.name, &version).await?;
    let mut verdict = None;
    if let Some(min_labels) = s.live_gate {
        let kafka = bus.as_kafka().ok_or_else(|| Error::Usage("--if-better-live needs --kafka-config".into()))?;
        let latest = crate::cmd::evaluate::latest(kafka).await?;
        let decision = live_decision(latest.as_ref(), &s.name, current.as_deref(), &version, min_labels);
        if !decision.promote {
            tracing::warn!(model = %s.name, alias = %s.alias, %version, reason = %decision.reason, "promotion refused");
            print(&false, None, &format!("NOT promoted to {}: {}", s.alias, decision.reason))?;
            return Ok(Outcome::PromotionRefused);
        }
        verdict = Some(decision.reason);
    }
    let reason = match (s.reason.clone(), verdict) {
        (Some(r), Some(v)) => format!("{r} ({v})"),
        (None, Some(v)) => v,
        (Some(r), None) => r,
        (None, None) => match s.action {
            MoveAction::Promote => "promoted by hand".to_string(),
            MoveAction::Rollback => format!("rolled back from {}", current.as_deref().unwrap_or("nothing")),
        },
    };
    let mv = new_move(&target, &s.alias, current, s.action, reason);
    let (entry, to) = publish(&log, mv).await?;
    let text = format!(
        "{} of {} -> {} (was {}); recorded in {to}",
        s.alias,
        s.name,
        entry.mv.version,
        entry.mv.previous_version.as_deref().unwrap_or("unset")
    );
    print(&s.json, Some(&entry), &text)?;
    Ok(Outcome::Done)
}

/// The live gate: the challenger must have shadowed the current version and had a lower RMSE on
/// at least `min_labels` labels both were scored on.
pub fn live_decision(
    latest: Option<&crate::cmd::evaluate::ModelMetrics>,
    name: &str,
    current: Option<&str>,
    challenger: &str,
    min_labels: u64,
) -> crate::lifecycle::Decision {
    let refuse = |reason: String| crate::lifecycle::Decision { promote: false, reason };
    let Some(current) = current else {
        return refuse(
            "the alias is not set, so there is no live champion to compare with; promote without --if-better-live"
                .into(),
        );
    };
    let Some(m) = latest else {
        return refuse("no live metrics yet: run `modelcast evaluate --serve` while the challenger shadows".into());
    };
    let pair =
        m.snapshot.pairs.iter().find(|p| p.model_name == name && p.champion == current && p.challenger == challenger);
    match pair {
        None => refuse(format!(
            "no shared live labels of {challenger} (shadow) and {current} (served) yet: serve with --shadow and run evaluate"
        )),
        Some(p) if p.shared_labels < min_labels => {
            refuse(format!("only {} shared live labels, fewer than --min-labels {min_labels}", p.shared_labels))
        }
        Some(p) if p.challenger_rmse < p.champion_rmse => crate::lifecycle::Decision {
            promote: true,
            reason: format!(
                "live RMSE {:.4} < {:.4} of {current} on {} shared labels",
                p.challenger_rmse, p.champion_rmse, p.shared_labels
            ),
        },
        Some(p) => refuse(format!(
            "live RMSE {:.4} is not lower than {:.4} of {current} on {} shared labels",
            p.challenger_rmse, p.champion_rmse, p.shared_labels
        )),
    }
}

fn print(json: &bool, entry: Option<&Entry>, text: &str) -> Result<()> {
    let out = match (json, entry) {
        (true, Some(e)) => serde_json::to_string(e).map_err(|e| Error::Encode { what: "alias move", source: e })?,
        _ => text.to_string(),
    };
    let _ = writeln!(std::io::stdout().lock(), "{out}");
    Ok(())
}

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
            Served::from_artifact(&a, "key").map_err(|e| refuse(e.to_string()))?;
            Ok(Verified { model_name: name.into(), version: version.into(), key, sha256, input_schema_digest: digest })
        }
        None => {
            let key = store
                .list(&format!("{name}/"))
                .await?
                .into_iter()
                .find(|k| k.ends_with(&format!("/{version}.json")))
                .ok_or_else(|| {
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
            Served::from_artifact(&a, "key").map_err(|e| refuse(e.to_string()))?;
            tracing::warn!(%key, "this version was never announced here; pinning the sha256 of the stored object");
            Ok(Verified::of(&a, key, &bytes))
        }
    }
}

/// A new move of `alias` to `target`, by this process's actor.
pub fn new_move(
    target: &Verified,
    alias: &str,
    previous: Option<String>,
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
        previous_version: previous,
        action,
        reason,
        actor: crate::lifecycle::actor(|k| std::env::var(k).ok(), &hostname()),
        at,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod live_gate_tests {
    use super::*;
    use crate::cmd::evaluate::ModelMetrics;
    use crate::live::{Counts, PairMetrics, Snapshot};

    fn metrics(shared: u64, champion_rmse: f64, challenger_rmse: f64) -> ModelMetrics {
        ModelMetrics {
            schema_version: 1,
            kind: "model_metrics".into(),
            at_ms: 0,
            horizon_s: 3600,
            window_s: 3600,
            undecodable: 0,
            snapshot: Snapshot {
                versions: vec![],
                pairs: vec![PairMetrics {
                    model_name: "m".into(),
                    champion: "v1".into(),
                    challenger: "v2".into(),
                    shared_labels: shared,
                    champion_rmse,
                    challenger_rmse,
                    champion_mae: 0.0,
                    challenger_mae: 0.0,
                }],
                counts: Counts::default(),
                pending_predictions: 0,
                pending_labels: 0,
            },
        }
    }

    #[test]
    fn the_live_gate_needs_enough_shared_labels_and_a_strictly_lower_rmse() {
        let d = |m: &ModelMetrics, current: Option<&str>, v: &str| live_decision(Some(m), "m", current, v, 100);
        assert!(d(&metrics(150, 0.7, 0.6), Some("v1"), "v2").promote);
        let few = d(&metrics(99, 0.7, 0.6), Some("v1"), "v2");
        assert!(!few.promote && few.reason.contains("only 99 shared"), "{}", few.reason);
        assert!(!d(&metrics(150, 0.6, 0.6), Some("v1"), "v2").promote, "equal is not better");
        assert!(!d(&metrics(150, 0.7, 0.6), Some("v0"), "v2").promote, "compared with another champion");
        assert!(!d(&metrics(150, 0.7, 0.6), None, "v2").promote);
        assert!(!live_decision(None, "m", Some("v1"), "v2", 1).promote);
    }
}
