//! `modelcast promote` and `modelcast rollback`: verify the target version as a predictor would,
//! then append one alias move to the alias log and read it back.
//!
//! Invariant: nothing is published unless the version exists and passes the checks (sha256
//! against its announcement or an earlier move, format, schema); a move that loses a race is
//! reported (exit 5), never silently dropped.

use std::io::Write;

use crate::aliases::{AliasLog, Updates};
use crate::cmd::{Edges, Outcome};
use crate::error::{Error, Result};
use crate::lifecycle::{live_decision, AliasBook, Entry};
use crate::messages::MoveAction;
use crate::settings::MoveSettings;
use crate::versions::{new_move, publish, verify};

/// Run `promote` or `rollback`.
pub async fn run(s: MoveSettings) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(s.loc).await?;
    let log = AliasLog::of(&store, &bus);
    log.check_writable().await?;
    // one read of the log: the moves (the aliases' state) and the announcements (what to verify
    // a version against)
    let history = Updates::open(&store, &bus).await?.history(&store).await?;
    let book = AliasBook::of(history.moves);
    let current_move = book.current(&s.name, &s.alias).cloned();
    let current = current_move.as_ref().map(|m| m.version.clone());
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
        if bus.as_kafka().is_none() {
            return Err(Error::Usage("--if-better-live needs --kafka-config".into()));
        }
        let latest = crate::evaluate::latest(&bus).await?;
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
    if let Some(why) = kind_change(&store, current_move.as_ref(), &target).await? {
        tracing::warn!(model = %s.name, alias = %s.alias, %version, reason = %why, "promotion refused");
        print(&false, None, &format!("NOT promoted to {}: {why}", s.alias))?;
        return Ok(Outcome::PromotionRefused);
    }
    let mv = new_move(&target, &s.alias, current_move.as_ref(), s.action, reason);
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

/// Why no replica could take the move from `current` to `target`: a regressor and a classifier,
/// or classifiers of other classes (a replica on one output topic cannot change what it writes).
/// An input-schema change alone is fine: the move records it, and replicas following the alias
/// take it.
async fn kind_change(
    store: &crate::store::Store,
    current: Option<&crate::messages::AliasMove>,
    target: &crate::versions::Verified,
) -> Result<Option<String>> {
    let Some(cur) = current else { return Ok(None) };
    let old = crate::predict::fetch_verified(store, cur.model_ref()).await?;
    let r = crate::messages::ModelRef {
        model_name: &target.model_name,
        version: &target.version,
        key: &target.key,
        sha256: &target.sha256,
        input_schema_digest: &target.input_schema_digest,
    };
    let new = crate::predict::fetch_verified(store, r).await?;
    let (a, b) = (old.estimator.fit.classes(), new.estimator.fit.classes());
    Ok(match (a.is_empty(), b.is_empty()) {
        (true, true) => None,
        (true, false) | (false, true) => Some(format!(
            "{} is a {} and {} a {}: one alias serves one kind (its replicas write one kind of prediction); \
             use another alias or model name",
            cur.version,
            if a.is_empty() { "regressor" } else { "classifier" },
            target.version,
            if b.is_empty() { "regressor" } else { "classifier" },
        )),
        _ if a != b => Some(format!(
            "{} predicts the classes {a:?} and {} {b:?}: one alias serves one set of classes",
            cur.version, target.version
        )),
        _ => None,
    })
}

fn print(json: &bool, entry: Option<&Entry>, text: &str) -> Result<()> {
    let out = match (json, entry) {
        (true, Some(e)) => serde_json::to_string(e).map_err(|e| Error::Encode { what: "alias move", source: e })?,
        _ => text.to_string(),
    };
    let _ = writeln!(std::io::stdout().lock(), "{out}");
    Ok(())
}

#[cfg(test)]
mod live_gate_tests {
    use super::*;
    use crate::live::{Counts, PairMetrics, Snapshot};
    use crate::messages::ModelMetrics;

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
                    champion_log_loss: None,
                    challenger_log_loss: None,
                    champion_accuracy: None,
                    challenger_accuracy: None,
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
        // classifiers compare log loss, whatever their probabilities' RMSE says
        let mut m = metrics(150, 0.3, 0.4);
        m.snapshot.pairs[0].champion_log_loss = Some(0.5);
        m.snapshot.pairs[0].challenger_log_loss = Some(0.4);
        let better = d(&m, Some("v1"), "v2");
        assert!(better.promote && better.reason.contains("live log loss 0.4000 < 0.5000"), "{}", better.reason);
        m.snapshot.pairs[0].challenger_log_loss = Some(0.6);
        assert!(!d(&m, Some("v1"), "v2").promote);
    }
}
