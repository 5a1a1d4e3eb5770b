//! The model lifecycle, pure: aliases folded from their log ([`AliasBook`]), the promotion gate
//! ([`Gate`], [`decide`]) and who made a move ([`actor`]). No I/O: the edges read the log
//! ([`crate::aliases`]) and the commands orchestrate.
//!
//! Invariants: every reader that folds the same log in the same order reaches the same state; a
//! move applies only when its `previous_version` is where the alias points (compare-and-set),
//! so of two concurrent moves from one state exactly one applies; the gate never promotes a model
//! that does not beat the mean-of-target baseline.

use std::collections::HashMap;

use serde::Serialize;

use crate::messages::{AliasMove, MoveAction};
use crate::model::Metrics;
use crate::params::promotion::{Gate, GateMetric, MinImprovement};

/// One move as read from the log, and whether it applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The move as written.
    #[serde(flatten)]
    pub mv: AliasMove,
    /// Whether it took effect (false: a concurrent move changed the alias first).
    pub applied: bool,
    /// Why it did not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct AliasState {
    /// Index into `entries` of the move the alias points by.
    current: Option<usize>,
    /// Versions the alias pointed at, oldest first; the last is the current one. A rollback
    /// pops back to its target, so repeated rollbacks walk further back.
    stack: Vec<String>,
}

/// The state of every alias, folded from the log of moves.
#[derive(Debug, Default, Clone)]
pub struct AliasBook {
    entries: Vec<Entry>,
    state: HashMap<(String, String), AliasState>,
}

impl AliasBook {
    /// Fold `moves` in log order.
    pub fn of(moves: impl IntoIterator<Item = AliasMove>) -> AliasBook {
        let mut b = AliasBook::default();
        for m in moves {
            b.apply(m);
        }
        b
    }

    /// Fold one more move (compare-and-set on `previous_version`); returns its entry.
    pub fn apply(&mut self, mv: AliasMove) -> &Entry {
        let state = self.state.entry((mv.model_name.clone(), mv.alias.clone())).or_default();
        let now = state.current.map(|i| self.entries[i].mv.version.clone());
        let (applied, conflict) = if now == mv.previous_version {
            (true, None)
        } else {
            let now = now.as_deref().unwrap_or("nothing");
            let expected = mv.previous_version.as_deref().unwrap_or("nothing");
            (
                false,
                Some(format!("alias pointed at {now}, not {expected}, when this move was read: a concurrent move won")),
            )
        };
        if applied {
            state.current = Some(self.entries.len());
            match mv.action {
                MoveAction::Rollback if state.stack.contains(&mv.version) => {
                    while state.stack.last() != Some(&mv.version) {
                        state.stack.pop();
                    }
                }
                _ => state.stack.push(mv.version.clone()),
            }
        }
        self.entries.push(Entry { mv, applied, conflict });
        &self.entries[self.entries.len() - 1]
    }

    /// The move alias `alias` of `model` points by, if it is set.
    pub fn current(&self, model: &str, alias: &str) -> Option<&AliasMove> {
        let s = self.state.get(&(model.to_string(), alias.to_string()))?;
        s.current.map(|i| &self.entries[i].mv)
    }

    /// The version a rollback of `alias` goes back to: the one it pointed at before its current
    /// one (after earlier rollbacks, further back).
    pub fn rollback_target(&self, model: &str, alias: &str) -> Option<&str> {
        let s = self.state.get(&(model.to_string(), alias.to_string()))?;
        s.stack.len().checked_sub(2).map(|i| s.stack[i].as_str())
    }

    /// Aliases of `model` now pointing at `version`, sorted.
    pub fn aliases_of(&self, model: &str, version: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .state
            .iter()
            .filter(|((m, _), s)| m == model && s.current.is_some_and(|i| self.entries[i].mv.version == version))
            .map(|((_, a), _)| a.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Models that have alias `alias` set, sorted.
    pub fn models_with(&self, alias: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .state
            .iter()
            .filter(|((_, a), s)| a == alias && s.current.is_some())
            .map(|((m, _), _)| m.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Every move of `model` (of `alias` only, when given), in log order.
    pub fn history<'a>(&'a self, model: &'a str, alias: Option<&'a str>) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.mv.model_name == model && alias.is_none_or(|a| e.mv.alias == a))
    }

    /// The entry of move `id`, once it is in the log.
    pub fn find(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.mv.id == id)
    }

    /// Number of moves folded (applied or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no move was folded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Who is making a move: `MODELCAST_ACTOR`, else the CI job (GitHub Actions, GitLab CI), else
/// `user@host`. `env` looks up an environment variable; `host` is the host name.
pub fn actor(env: impl Fn(&str) -> Option<String>, host: &str) -> String {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(a) = get("MODELCAST_ACTOR") {
        return a;
    }
    if get("GITHUB_ACTIONS").as_deref() == Some("true") {
        return format!(
            "{} via GitHub Actions {} run {}",
            get("GITHUB_ACTOR").unwrap_or_else(|| "unknown".into()),
            get("GITHUB_REPOSITORY").unwrap_or_default(),
            get("GITHUB_RUN_ID").unwrap_or_default()
        );
    }
    if get("GITLAB_CI").as_deref() == Some("true") {
        return format!(
            "{} via GitLab CI {} job {}",
            get("GITLAB_USER_LOGIN").unwrap_or_else(|| "unknown".into()),
            get("CI_PROJECT_PATH").unwrap_or_default(),
            get("CI_JOB_ID").unwrap_or_default()
        );
    }
    let user = get("USER").or_else(|| get("LOGNAME")).unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

impl GateMetric {
    /// The metric's value in `m`.
    pub fn of(self, m: &Metrics) -> f64 {
        match self {
            GateMetric::Rmse => m.rmse,
            GateMetric::Mae => m.mae,
            GateMetric::R2 => m.r2,
            GateMetric::LogLoss => m.classification.as_ref().map_or(f64::NAN, |c| c.log_loss),
            GateMetric::Accuracy => m.classification.as_ref().map_or(f64::NAN, |c| c.accuracy),
            GateMetric::Auc => m.classification.as_ref().and_then(|c| c.auc).unwrap_or(f64::NAN),
            GateMetric::F1 => m.classification.as_ref().map_or(f64::NAN, |c| c.f1),
        }
    }

    /// How much better `new` is than `old` (positive = better), absolute.
    pub(crate) fn gain(self, new: f64, old: f64) -> f64 {
        match self {
            GateMetric::R2 | GateMetric::Accuracy | GateMetric::Auc | GateMetric::F1 => new - old,
            GateMetric::Rmse | GateMetric::Mae | GateMetric::LogLoss => old - new,
        }
    }
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Whether the alias may move to the candidate.
    pub promote: bool,
    /// Why, in one sentence.
    pub reason: String,
}

/// Decide on metrics measured on the same rows: the candidate's, the current model's (`None`
/// when the alias is not set yet) and the mean-of-target baseline's.
pub fn decide(gate: &Gate, candidate: &Metrics, current: Option<&Metrics>, baseline: &Metrics) -> Decision {
    let m = gate.metric;
    let (c, b) = (m.of(candidate), m.of(baseline));
    let name = m.as_str();
    let kind_of = |x: &Metrics| if x.classification.is_some() { "a classifier" } else { "a regressor" };
    if m.is_classification() != candidate.classification.is_some() {
        return Decision {
            promote: false,
            reason: format!("the gate's metric {name} does not measure the candidate, {}", kind_of(candidate)),
        };
    }
    if let Some(cur) = current {
        if cur.classification.is_some() != candidate.classification.is_some() {
            return Decision {
                promote: false,
                reason: format!(
                    "the candidate is {} and the current model {}: a regressor and a classifier are not \
                     compared, and one alias serves one kind (promote by hand with `modelcast promote` \
                     to change it)",
                    kind_of(candidate),
                    kind_of(cur)
                ),
            };
        }
    }
    let baseline_name = if candidate.classification.is_some() { "class-prior" } else { "mean-of-target" };
    if !c.is_finite() || m.gain(c, b) <= 0.0 {
        return Decision {
            promote: false,
            reason: format!("candidate {name} {c:.6} does not beat the {baseline_name} baseline's {b:.6}"),
        };
    }
    let Some(cur) = current else {
        return Decision {
            promote: true,
            reason: format!("no current model; candidate {name} {c:.6} beats the baseline's {b:.6}"),
        };
    };
    let o = m.of(cur);
    let gain = m.gain(c, o);
    let needed = match gate.min_improvement {
        MinImprovement::Absolute(v) => v,
        MinImprovement::Relative(r) => r * o.abs(),
    };
    if gain > 0.0 && gain >= needed {
        Decision {
            promote: true,
            reason: format!(
                "candidate {name} {c:.6} improves on the current {o:.6} by {gain:.6} (required {} = {needed:.6})",
                gate.min_improvement
            ),
        }
    } else {
        Decision {
            promote: false,
            reason: format!(
                "candidate {name} {c:.6} vs current {o:.6}: improvement {gain:.6} is below the required {} \
                 (= {needed:.6}, and must be above 0)",
                gate.min_improvement
            ),
        }
    }
}

/// Score raw held-out rows with a model's scorer, reading them as a predictor reads a CSV, and
/// compare with the target column: the metrics both sides of the gate are measured with. The
/// target is read as the new model's params read it (`kind`): a number, or a class. A classifier
/// is scored by its probabilities, and only against the same classes in the same order.
///
/// Refuses (with a reason) when a column the model needs is not in the rows, when a row cannot
/// be scored, when a target is missing or not a number (not a class), or when a classifier's
/// classes differ from the target's.
pub fn metrics_on_rows(
    scorer: &crate::features::Scorer,
    rows: &crate::data::RawRows,
    target: &str,
    kind: &crate::params::Target,
) -> std::result::Result<Metrics, String> {
    let labels = kind.labels();
    let classes = scorer.classes();
    if classes != labels.as_slice() {
        return Err(match (classes.is_empty(), labels.is_empty()) {
            (true, false) => "it predicts a number (a regressor), and the target is a class (a classifier)".to_string(),
            (false, true) => "it predicts a class (a classifier), and the target is a number (a regressor)".to_string(),
            _ => format!("its classes {classes:?} differ from the target's {labels:?}"),
        });
    }
    let decoder = crate::record::Decoder::new(scorer.input_columns(), "");
    let (mut truth, mut pred) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    let mut class_acc = crate::model::ClassAcc::new(labels.len(), scorer.threshold());
    let mut probs = vec![0.0; labels.len()];
    for (header, records) in &rows.files {
        let layout = decoder.csv_layout(header);
        let missing: Vec<&str> = layout.missing_slots().map(|i| scorer.input_columns()[i].as_str()).collect();
        if !missing.is_empty() {
            return Err(format!("the held-out rows have no column(s) {missing:?}, which the model needs"));
        }
        let t = header
            .iter()
            .position(|h| h.trim() == target)
            .ok_or_else(|| format!("the held-out rows have no target column {target:?}"))?;
        for (i, r) in records.iter().enumerate() {
            let cell = r.get(t).unwrap_or("");
            if crate::data::cells::is_missing(cell, scorer.missing_tokens()) {
                return Err(format!("held-out row {}: the target is missing", i + 1));
            }
            let y = kind.code_text(cell.trim()).map_err(|m| format!("held-out row {}: target: {m}", i + 1))?;
            let cells = layout.decode(r).cells;
            if labels.is_empty() {
                let p = scorer.score(&cells).map_err(|m| format!("held-out row {}: {m}", i + 1))?;
                truth.push(y);
                pred.push(p);
            } else {
                scorer
                    .score_classes(&cells, &mut probs, scorer.threshold())
                    .map_err(|m| format!("held-out row {}: {m}", i + 1))?;
                class_acc.add(y as usize, &probs);
            }
        }
    }
    if !labels.is_empty() {
        return if class_acc.rows() == 0 { Err("no held-out rows".into()) } else { Ok(class_acc.finish()) };
    }
    if truth.is_empty() {
        return Err("no held-out rows".into());
    }
    Ok(Metrics::compute(ndarray::ArrayView1::from(&truth), ndarray::ArrayView1::from(&pred)))
}

/// Count raw rows against a version's drift reference as `modelcast drift` counts a CSV: each row
/// decoded as `scorer` decodes one and scored for the prediction's bins.
pub fn drift_on_rows(
    scorer: &crate::features::Scorer,
    reference: &crate::drift::Reference,
    rows: &crate::data::RawRows,
) -> std::result::Result<crate::drift::WindowReport, String> {
    let mut window = crate::drift::Window::new(reference, scorer.input_columns(), scorer.missing_tokens())?;
    let decoder = crate::record::Decoder::new(scorer.input_columns(), "");
    let mut probs = Vec::new();
    for (header, records) in &rows.files {
        let layout = decoder.csv_layout(header);
        for r in records {
            let cells = layout.decode(r).cells;
            let prediction = scorer.predict(&cells, &mut probs).ok().map(|(v, _)| v);
            window.add(&cells, prediction);
        }
    }
    Ok(window.report(reference))
}

/// The drift gate's finding on the new held-out rows (`promotion.drift` in `train --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftCheck {
    /// The threshold: the largest input column PSI that still promotes.
    pub max_psi: f64,
    /// The version whose training reference the rows were counted against.
    pub against: String,
    /// Whether the rows are within the threshold.
    pub passed: bool,
    /// The input column with the largest PSI (`null` when not measured).
    pub worst_column: Option<String>,
    /// Its PSI.
    pub worst_psi: Option<f64>,
    /// Every column's numbers, as `modelcast drift --json` prints them (`null` when not measured).
    pub report: Option<crate::drift::WindowReport>,
    /// Why it could not be measured, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DriftCheck {
    /// Judge a report of the new rows against `version`'s reference (`Err`: why there is none).
    pub fn judge(
        max_psi: f64,
        version: &str,
        report: std::result::Result<crate::drift::WindowReport, String>,
    ) -> DriftCheck {
        match report {
            Ok(report) => {
                let worst = report.columns.iter().max_by(|a, b| a.psi.total_cmp(&b.psi));
                let (worst_column, worst_psi) = (worst.map(|c| c.name.clone()), worst.map(|c| c.psi));
                DriftCheck {
                    max_psi,
                    against: version.to_string(),
                    passed: worst_psi.is_none_or(|p| p <= max_psi),
                    worst_column,
                    worst_psi,
                    report: Some(report),
                    error: None,
                }
            }
            Err(e) => DriftCheck {
                max_psi,
                against: version.to_string(),
                passed: false,
                worst_column: None,
                worst_psi: None,
                report: None,
                error: Some(e),
            },
        }
    }

    /// The refusal this finding makes, if any (one sentence, for the gate's reason).
    pub fn refusal(&self, alias: &str) -> Option<String> {
        if self.passed {
            return None;
        }
        Some(match (&self.error, &self.worst_column, self.worst_psi) {
            (Some(e), _, _) => format!(
                "the drift gate cannot compare the new data with the current {alias} ({}): {e}; not promoting \
                 (compare by hand with `modelcast drift` and use `modelcast promote`)",
                self.against
            ),
            (None, Some(c), Some(p)) => format!(
                "the new data drifted from what the current {alias} ({}) was trained on: column {c} has PSI \
                 {p:.4}, above --max-drift {}",
                self.against, self.max_psi
            ),
            _ => "the drift gate failed".to_string(),
        })
    }
}

/// The live gate: the challenger must have shadowed the current version and had a lower RMSE on
/// at least `min_labels` labels both were scored on.
pub fn live_decision(
    latest: Option<&crate::messages::ModelMetrics>,
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
        Some(p) => {
            // a classifier pair compares log loss, a regressor pair RMSE
            let (what, old, new) = match (p.champion_log_loss, p.challenger_log_loss) {
                (Some(a), Some(b)) => ("log loss", a, b),
                _ => ("RMSE", p.champion_rmse, p.challenger_rmse),
            };
            let shared = p.shared_labels;
            if new < old {
                crate::lifecycle::Decision {
                    promote: true,
                    reason: format!("live {what} {new:.4} < {old:.4} of {current} on {shared} shared labels"),
                }
            } else {
                refuse(format!("live {what} {new:.4} is not lower than {old:.4} of {current} on {shared} shared labels"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ALIAS_MOVED;
    use crate::params::check_alias;

    fn mv(id: &str, version: &str, previous: Option<&str>, action: MoveAction) -> AliasMove {
        AliasMove {
            schema_version: 1,
            kind: ALIAS_MOVED.into(),
            id: id.into(),
            model_name: "m".into(),
            alias: "champion".into(),
            version: version.into(),
            key: format!("m/d/{version}.json"),
            sha256: "a".repeat(64),
            input_schema_digest: "sha256:x".into(),
            previous_version: previous.map(str::to_string),
            previous_input_schema_digest: None,
            action,
            reason: String::new(),
            actor: "t".into(),
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn two_moves_from_one_state_the_first_in_the_log_wins() {
        let b = AliasBook::of([
            mv("a", "v1", None, MoveAction::Promote),
            mv("b", "v2", Some("v1"), MoveAction::Promote),
            mv("c", "v3", Some("v1"), MoveAction::Promote), // raced with b
        ]);
        assert_eq!(b.current("m", "champion").unwrap().version, "v2");
        assert!(b.find("b").unwrap().applied);
        let lost = b.find("c").unwrap();
        assert!(!lost.applied && lost.conflict.as_ref().unwrap().contains("pointed at v2"));
        assert_eq!(b.aliases_of("m", "v2"), vec!["champion"]);
        assert!(b.aliases_of("m", "v3").is_empty());
        assert_eq!(b.history("m", Some("champion")).count(), 3);
        assert_eq!(b.models_with("champion"), vec!["m"]);
        assert!(b.current("m", "challenger").is_none());
    }

    #[test]
    fn rollbacks_walk_back_through_the_versions_the_alias_held() {
        let mut b = AliasBook::of([
            mv("1", "v1", None, MoveAction::Promote),
            mv("2", "v2", Some("v1"), MoveAction::Promote),
            mv("3", "v3", Some("v2"), MoveAction::Promote),
        ]);
        assert_eq!(b.rollback_target("m", "champion"), Some("v2"));
        b.apply(mv("4", "v2", Some("v3"), MoveAction::Rollback));
        assert_eq!(b.rollback_target("m", "champion"), Some("v1"));
        b.apply(mv("5", "v1", Some("v2"), MoveAction::Rollback));
        assert_eq!(b.current("m", "champion").unwrap().version, "v1");
        assert_eq!(b.rollback_target("m", "champion"), None);
        // a promotion after a rollback is pushed on top
        b.apply(mv("6", "v4", Some("v1"), MoveAction::Promote));
        assert_eq!(b.rollback_target("m", "champion"), Some("v1"));
    }

    #[test]
    fn alias_names_are_checked() {
        for ok in ["champion", "c2", "shadow_a", "blue-green"] {
            assert!(check_alias(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Champion", "2c", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
    }

    fn metrics(rmse: f64, r2: f64) -> Metrics {
        Metrics { r2, rmse, mae: rmse * 0.8, rows: 10, classification: None }
    }

    #[test]
    fn the_gate_needs_the_baseline_beaten_and_the_required_improvement() {
        let base = metrics(0.8, 0.0);
        let g = Gate::default();
        assert!(decide(&g, &metrics(0.65, 0.35), None, &base).promote);
        assert!(!decide(&g, &metrics(0.9, -0.1), None, &base).promote, "worse than the mean");
        assert!(!decide(&g, &metrics(0.65, 0.35), Some(&metrics(0.65, 0.35)), &base).promote, "a tie is no gain");
        assert!(decide(&g, &metrics(0.64, 0.36), Some(&metrics(0.65, 0.35)), &base).promote);
        let rel =
            Gate { metric: GateMetric::Rmse, min_improvement: MinImprovement::parse("5%").unwrap(), max_drift: None };
        let d = decide(&rel, &metrics(0.64, 0.36), Some(&metrics(0.65, 0.35)), &base);
        assert!(!d.promote && d.reason.contains("below the required 5%"), "{}", d.reason);
        assert!(decide(&rel, &metrics(0.60, 0.4), Some(&metrics(0.65, 0.35)), &base).promote);
        let r2 = Gate { metric: GateMetric::R2, min_improvement: MinImprovement::Absolute(0.01), max_drift: None };
        assert!(decide(&r2, &metrics(0.7, 0.37), Some(&metrics(0.65, 0.35)), &base).promote);
        assert!(!decide(&r2, &metrics(0.6, 0.355), Some(&metrics(0.65, 0.35)), &base).promote);
        assert!(MinImprovement::parse("-1").is_err() && MinImprovement::parse("x%").is_err());
        assert_eq!(GateMetric::parse("mae"), Ok(GateMetric::Mae));
    }

    #[test]
    fn the_actor_is_the_ci_job_or_user_at_host() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(actor(env(&[("USER", "ana")]), "box"), "ana@box");
        assert_eq!(actor(env(&[("USER", "ana"), ("MODELCAST_ACTOR", "cron-nightly")]), "box"), "cron-nightly");
        let gh = actor(
            env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_ACTOR", "bob"),
                ("GITHUB_REPOSITORY", "o/r"),
                ("GITHUB_RUN_ID", "42"),
            ]),
            "runner",
        );
        assert_eq!(gh, "bob via GitHub Actions o/r run 42");
        assert!(actor(env(&[("GITLAB_CI", "true"), ("CI_JOB_ID", "7")]), "h").contains("GitLab CI"));
    }
}
