//! Which model serves: the first one ([`first_model`]) and the ones that replace it
//! ([`Swapper`]), for every mode (batch, `--follow`, `--serve`).
//!
//! Invariant: a model is swapped in only after its sha256, format, name and input schema were
//! checked; a refused or unreachable model never stops the current one from serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::{Announcement, AnnouncementFeed};
use crate::error::{Error, Result};
use crate::events::{Event, ModelFetchRetry, ModelRefused, ModelSwapped};
use crate::predict::{check_replacement, load_announced, load_key, Served};
use crate::store::Store;

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

/// The model to start with: the pinned version, else the newest announced one that loads, else
/// the newest in the store. With `wait`, when there is none yet, wait for an announcement
/// (until Ctrl-C or SIGTERM).
pub async fn first_model(
    store: &Store,
    feed: &mut AnnouncementFeed,
    choice: &ModelChoice,
    wait: bool,
) -> Result<Served> {
    let history = feed.history().await?;
    match initial_model(store, &history, choice).await {
        Err(Error::NotFound(msg)) if wait => tracing::warn!(%msg, "no model yet; waiting for an announcement"),
        other => return other,
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("install SIGTERM handler", "-", e))?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => return Err(Error::NotFound("interrupted before any model was announced".into())),
            _ = term.recv() => return Err(Error::NotFound("stopped before any model was announced".into())),
        }
        for ann in feed.poll().await? {
            if choice.name.as_ref().is_some_and(|n| *n != ann.model_name) {
                continue;
            }
            match load_announced(store, &ann, &choice.key_field).await {
                Ok(m) => return Ok(m),
                Err(e) => ModelRefused { version: &ann.version, reason: &e }.emit(),
            }
        }
    }
}

async fn initial_model(store: &Store, history: &[Announcement], choice: &ModelChoice) -> Result<Served> {
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
                ModelRefused { version: &a.version, reason: &format_args!("{e}; trying an older one") }.emit();
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

/// Follows announcements and swaps models: loads each newly announced model of the serving
/// model's name, refuses bad ones (an event each), and retries a model whose fetch failed
/// transiently (store outage) with exponential backoff until it loads or a newer announcement
/// supersedes it.
pub struct Swapper {
    feed: AnnouncementFeed,
    choice: ModelChoice,
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
    pub fn new(feed: AnnouncementFeed, choice: ModelChoice) -> Swapper {
        Swapper { feed, choice, pending: None }
    }

    /// Check for new announcements (and a due retry); when a newer model loads and may replace
    /// `current`, swap it in (emitting [`ModelSwapped`]) and return true.
    pub async fn poll(&mut self, store: &Store, current: &mut Arc<Served>) -> bool {
        let mut candidates = Vec::new();
        match self.feed.poll().await {
            Ok(fresh) => candidates
                .extend(fresh.into_iter().filter(|a| a.model_name == current.name && a.version != current.version)),
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
            let loaded = load_announced(store, &ann, &self.choice.key_field).await.and_then(|m| {
                check_replacement(current, &m, self.choice.allow_schema_change)?;
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
                    ModelFetchRetry {
                        version: &ann.version,
                        attempt,
                        retry_in_ms: wait.as_millis() as u64,
                        reason: &e,
                    }
                    .emit();
                    self.pending = Some(Pending { ann, attempts: attempt, next: Instant::now() + wait });
                }
                Err(e) => {
                    ModelRefused { version: &ann.version, reason: &format_args!("{e}; the current one keeps serving") }
                        .emit()
                }
            }
        }
        match chosen {
            Some(next) => {
                ModelSwapped { model: &next.name, from: &current.version, to: &next.version }.emit();
                *current = Arc::new(next);
                true
            }
            None => false,
        }
    }
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
