//! Batch and `--follow` prediction: records from a file or stdin, announcements from the local
//! log (or, with a Kafka config, the `train` topic), predictions to stdout, the local
//! `app_messages` log and/or Kafka.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::{Announcement, Origin};
use crate::error::{Error, Result};
use crate::predict::input::{self, Item, Source};
use crate::predict::{check_replacement, load_announced, load_key, score_csv, score_json, Scored, Served};
use crate::record::CsvLayout;
use crate::store::Store;
use crate::{AnnouncementFeed, Outputs};

/// How to pick and follow the model.
#[derive(Debug, Clone, Default)]
pub struct ModelChoice {
    /// Only models of this name.
    pub name: Option<String>,
    /// Pin this version (no hot swap).
    pub version: Option<String>,
    /// The record field that carries the key.
    pub key_field: String,
    /// Accept a new model whose input schema differs.
    pub allow_schema_change: bool,
}

/// Counts of a prediction run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records scored.
    pub scored: u64,
    /// Records dead-lettered.
    pub rejected: u64,
    /// Models swapped in.
    pub swaps: u64,
}

/// Pick the model to start with: the pinned version, else the newest announced one that loads,
/// else the newest in the store.
pub async fn initial_model(store: &Store, history: &[Announcement], choice: &ModelChoice) -> Result<Served> {
    let named = |a: &&Announcement| choice.name.as_ref().is_none_or(|n| *n == a.model_name);
    if let Some(v) = &choice.version {
        if let Some(a) = history.iter().rev().filter(named).find(|a| &a.version == v) {
            return load_announced(store, a, &choice.key_field).await;
        }
        let prefix = choice.name.as_ref().map(|n| format!("{n}/")).unwrap_or_default();
        let key = store.list(&prefix).await?.into_iter().find(|k| k.ends_with(&format!("/{v}.json")));
        let key = key.ok_or_else(|| Error::NotFound(format!("model version {v} is not in {}", store.uri())))?;
        tracing::warn!(%key, "version not found in announcements; loading from the store without a sha256 check");
        return load_key(store, &key, &choice.key_field).await;
    }
    let mut refused = 0;
    for a in history.iter().rev().filter(named) {
        match load_announced(store, a, &choice.key_field).await {
            Ok(m) => return Ok(m),
            Err(e) => {
                refused += 1;
                tracing::warn!(version = %a.version, reason = %e, "refused announced model; trying an older one")
            }
        }
    }
    if refused > 0 {
        // Announced models exist but none verifies: never fall back to an unverified object.
        return Err(Error::NotFound(format!(
            "none of the {refused} announced models could be loaded (see the warnings above); \
             train a new model or pin one with --model"
        )));
    }
    let key = match &choice.name {
        Some(n) => store.latest(n).await?,
        None => {
            // newest across models: versions start with a sortable timestamp
            let keys = store.list("").await?;
            keys.into_iter().filter(|k| k.ends_with(".json")).max_by(|a, b| file_name(a).cmp(file_name(b)))
        }
    };
    match key {
        Some(k) => {
            tracing::info!(key = %k, "no usable announcement; loading the store's newest model");
            load_key(store, &k, &choice.key_field).await
        }
        None => Err(Error::NotFound(format!(
            "no model found in {}{}; run `modelcast train` first",
            store.uri(),
            choice.name.as_ref().map(|n| format!(" for model {n}")).unwrap_or_default()
        ))),
    }
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Run batch or follow prediction until the input ends (or Ctrl-C in follow mode).
pub async fn run(
    store: &Store,
    mut feed: AnnouncementFeed,
    source: Source,
    choice: &ModelChoice,
    out: &mut Outputs,
) -> Result<Counts> {
    let history = feed.history().await?;
    let mut swapper = Swapper::new(feed);
    let mut model = Arc::new(initial_model(store, &history, choice).await?);
    tracing::info!(model = %model.name, version = %model.version, "serving model");
    let follow_models = source.follow && choice.version.is_none();
    let (mut rx, stop) = input::spawn(&source)?;
    let mut counts = Counts::default();
    let mut header: Option<csv::StringRecord> = None;
    let mut layout: Option<CsvLayout> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut buf = Vec::with_capacity(1024);
    let src_name = source.path.clone();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut buf, 1024) => {
                if n == 0 { break; }
                let mut chunk = Vec::with_capacity(n);
                for item in buf.drain(..) {
                    let origin = |line| Origin::Line { source: src_name.clone(), line };
                    match item {
                        Item::Header(h) => {
                            let l = model.decoder.csv_layout(&h);
                            warn_missing_columns(&model, &l);
                            layout = Some(l);
                            header = Some(h);
                        }
                        Item::Csv(line, row) => match &layout {
                            Some(l) => chunk.push(score_csv(&model, l, &row, origin(line), line.to_string())),
                            None => return Err(Error::Data { source_name: src_name, line, message: "CSV row before header".into() }),
                        },
                        Item::Json(line, bytes) => chunk.push(score_json(&model, &bytes, origin(line), line.to_string(), None)),
                        Item::Bad(line, text, reason) => chunk.push(Scored::Rejected(crate::predict::dead(&model, line.to_string(), reason, origin(line), text.as_bytes()))),
                    }
                }
                let (ok, bad) = out.write(chunk).await?;
                counts.scored += ok;
                counts.rejected += bad;
                if out.closed { break; }
            }
            _ = tick.tick(), if follow_models => {
                if let (Some(next), _) = swapper.poll(store, &model, choice).await {
                    tracing::info!(from = %model.version, to = %next.version, "hot-swapped model");
                    if let Some(h) = &header {
                        layout = Some(next.decoder.csv_layout(h));
                    }
                    model = Arc::new(next);
                    counts.swaps += 1;
                }
            }
            _ = &mut ctrl_c, if source.follow => {
                tracing::info!("interrupted; finishing");
                stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    out.flush().await?;
    Ok(counts)
}

fn warn_missing_columns(model: &Served, layout: &CsvLayout) {
    let missing: Vec<&str> = layout.missing_slots().map(|i| model.scorer.input_columns()[i].as_str()).collect();
    if !missing.is_empty() {
        tracing::warn!(columns = ?missing, "input has no such columns; they count as missing in every row");
    }
}

/// Follows announcements and decides swaps: loads each newly announced model, refuses bad ones
/// (logged and counted), and retries a model whose fetch failed transiently (store outage) with
/// exponential backoff until it loads or a newer announcement supersedes it.
pub struct Swapper {
    feed: AnnouncementFeed,
    pending: Option<Pending>,
}

struct Pending {
    ann: Announcement,
    attempts: u32,
    next: Instant,
}

/// Backoff before retry `attempt` (1-based): 250 ms doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(8).saturating_sub(1))).min(Duration::from_secs(30))
}

impl Swapper {
    /// A swapper reading `feed` (after its history was consumed).
    pub fn new(feed: AnnouncementFeed) -> Swapper {
        Swapper { feed, pending: None }
    }

    /// Check for new announcements (and a due retry); returns the model to swap to, if any, and
    /// how many announcements or models were refused.
    pub async fn poll(&mut self, store: &Store, current: &Served, choice: &ModelChoice) -> (Option<Served>, u64) {
        let mut refused = 0;
        let mut candidates = Vec::new();
        match self.feed.poll().await {
            Ok(fresh) => {
                for item in fresh {
                    match item {
                        Ok(a) if a.model_name == current.name && a.version != current.version => candidates.push(a),
                        Ok(_) => {}
                        Err(reason) => {
                            tracing::warn!(%reason, "refused announcement");
                            refused += 1;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(reason = %e, "cannot read announcements; will retry"),
        }
        let mut attempts = 0;
        if !candidates.is_empty() {
            self.pending = None; // superseded by newer announcements
        } else if let Some(p) = self.pending.take() {
            if Instant::now() >= p.next {
                attempts = p.attempts;
                candidates.push(p.ann);
            } else {
                self.pending = Some(p);
            }
        }
        let mut chosen = None;
        for ann in candidates {
            let loaded = load_announced(store, &ann, &choice.key_field).await.and_then(|m| {
                check_replacement(current, &m, choice.allow_schema_change)?;
                Ok(m)
            });
            match loaded {
                Ok(m) => {
                    chosen = Some(m);
                    self.pending = None;
                }
                Err(e) if e.is_transient() => {
                    let attempt = attempts + 1;
                    let wait = backoff(attempt);
                    tracing::warn!(version = %ann.version, reason = %e, attempt, retry_in_ms = wait.as_millis() as u64,
                        "cannot fetch the new model; the current one keeps serving");
                    self.pending = Some(Pending { ann, attempts: attempt, next: Instant::now() + wait });
                }
                Err(e) => {
                    refused += 1;
                    tracing::warn!(version = %ann.version, reason = %e, "refused model; the current one keeps serving");
                }
            }
        }
        (chosen, refused)
    }
}

/// Write JSON lines to stdout; a closed pipe ends the run quietly.
pub(crate) fn write_stdout(w: &mut impl Write, lines: &[Vec<u8>]) -> std::io::Result<()> {
    for l in lines {
        w.write_all(l)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
