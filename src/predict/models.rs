//! Which model serves: the first one and the ones that replace it ([`Swapper`]), for every mode
//! (batch, `--follow`, `--serve`): the newest announced model, or the version an alias points
//! at (`--alias`), plus an optional shadow model (`--shadow`).
//!
//! Invariant: a model is swapped in only after its sha256, format, name and input schema were
//! checked; a refused or unreachable model never stops the current one from serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aliases::Updates;
use crate::error::{Error, Result};
use crate::events::{Event, ModelFetchRetry, ModelRefused, ModelSwapped, ShadowSwapped, WaitingForModel};
use crate::lifecycle::AliasBook;
use crate::messages::{AliasMove, Announcement, ModelRef};
use crate::predict::{check_replacement, load_key, load_ref, ServeOptions, Served};
use crate::store::Store;

/// How to pick and follow the model.
#[derive(Debug, Clone, Default)]
pub struct ModelChoice {
    /// Only models of this name.
    pub name: Option<String>,
    /// Pin this version (no hot swap).
    pub version: Option<String>,
    /// Serve the version this alias points at, and follow it when it moves.
    pub alias: Option<String>,
    /// Also score every record with the version this alias points at (shadow scoring).
    pub shadow: Option<String>,
    /// The record field that carries the key.
    pub key_field: String,
    /// A binary classifier's decision threshold instead of the artifact's (`--threshold`).
    pub threshold: Option<f64>,
    /// Accept a new model whose input schema differs.
    pub allow_schema_change: bool,
}

impl ModelChoice {
    /// How the models of this choice are served.
    pub fn serving(&self) -> ServeOptions<'_> {
        ServeOptions { key_field: &self.key_field, threshold: self.threshold }
    }
}

/// A version to load: from an announcement or from an alias move.
#[derive(Debug, Clone)]
enum Target {
    Announced(Announcement),
    Moved(AliasMove),
}

impl Target {
    fn model_ref(&self) -> ModelRef<'_> {
        match self {
            Target::Announced(a) => a.model_ref(),
            Target::Moved(m) => m.model_ref(),
        }
    }

    fn version(&self) -> &str {
        self.model_ref().version
    }
}

/// Follows announcements and alias moves and swaps models: loads each new target of the serving
/// model (the newest announcement of its name, or the version its alias points at), refuses bad
/// ones (an event each), and retries a model whose fetch failed transiently (store outage) with
/// exponential backoff until it loads or a newer target supersedes it. With a shadow alias it
/// does the same for the shadow model, which never affects the serving one.
pub struct Swapper {
    updates: Updates,
    choice: ModelChoice,
    book: AliasBook,
    main: Track,
    shadow: Track,
}

/// What [`Swapper::start`] loaded.
pub struct Started {
    /// The follower of further changes.
    pub swapper: Swapper,
    /// The model to serve.
    pub model: Served,
    /// The shadow model, when `--shadow` names an alias that is set and its model loads.
    pub shadow: Option<Served>,
}

impl Swapper {
    /// The model to start with, and a swapper following `updates` from there.
    ///
    /// The pinned version; else the version the alias points at; else the newest announced one
    /// that loads, else the newest in the store. With `wait`, when there is none yet, wait for an
    /// announcement or the alias to be set (until Ctrl-C or SIGTERM).
    pub async fn start(store: &Store, mut updates: Updates, choice: &ModelChoice, wait: bool) -> Result<Started> {
        let history = updates.history(store).await?;
        let mut book = AliasBook::of(history.moves);
        let first = match initial_model(store, &history.announcements, &book, choice).await {
            Err(Error::NotFound(msg)) if wait => {
                WaitingForModel { reason: &msg }.emit();
                wait_for_model(store, &mut updates, &mut book, choice).await?
            }
            other => other?,
        };
        let shadow = match &choice.shadow {
            Some(alias) => match book.current(&first.name, alias) {
                Some(mv) => match load_ref(store, mv.model_ref(), choice.serving()).await {
                    Ok(m) => Some(m),
                    Err(e) => {
                        ModelRefused { version: &mv.version, reason: &format_args!("shadow: {e}") }.emit();
                        None
                    }
                },
                None => {
                    tracing::warn!(model = %first.name, %alias, "shadow alias is not set; shadow scoring starts when it is");
                    None
                }
            },
            None => None,
        };
        let swapper =
            Swapper { updates, choice: choice.clone(), book, main: Track::default(), shadow: Track::default() };
        Ok(Started { swapper, model: first, shadow })
    }

    /// Wait until [`Swapper::poll`] may have something to do: an announcement or alias move
    /// arrived (see [`Updates::changed`]) or a model fetch's retry is due. Cancel-safe.
    pub async fn changed(&mut self) {
        let due = [&self.main, &self.shadow].iter().filter_map(|t| t.pending.as_ref().map(|p| p.next)).min();
        match due {
            Some(at) => tokio::select! {
                _ = self.updates.changed() => {}
                _ = tokio::time::sleep_until(at.into()) => {}
            },
            None => self.updates.changed().await,
        }
    }

    /// Check for announcements and alias moves (and due retries); when a new model loads and may
    /// replace `current`, swap it in (emitting [`ModelSwapped`]) and return true. The shadow
    /// model is swapped the same way, silently to the caller.
    pub async fn poll(&mut self, store: &Store, current: &mut Arc<Served>, shadow: &mut Option<Arc<Served>>) -> bool {
        let changes = match self.updates.poll(store).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(reason = %e, "cannot read announcements; will retry");
                Default::default()
            }
        };
        let mut main = Vec::new();
        let mut side = Vec::new();
        for mv in changes.moves {
            let (model, alias) = (mv.model_name.clone(), mv.alias.clone());
            if !self.book.apply(mv.clone()).applied || model != current.name {
                continue;
            }
            if self.choice.alias.as_ref() == Some(&alias) {
                main.push(Target::Moved(mv.clone()));
            }
            if self.choice.shadow.as_ref() == Some(&alias) {
                side.push(Target::Moved(mv));
            }
        }
        if self.choice.alias.is_none() {
            main.extend(
                changes.announcements.into_iter().filter(|a| a.model_name == current.name).map(Target::Announced),
            );
        }
        let mut swapped = false;
        // an alias's moves are vetted (and record a schema change): a replica following one takes
        // them; the newest announcement is not, so that mode stays strict
        let allow = self.choice.allow_schema_change || self.choice.alias.is_some();
        let check = |m: &Served| check_replacement(current, m, allow);
        if let Some(next) = self.main.next(store, main, &current.version, self.choice.serving(), check, "").await {
            ModelSwapped { model: &next.name, from: &current.version, to: &next.version }.emit();
            *current = Arc::new(next);
            swapped = true;
        }
        let shadow_version = shadow.as_ref().map(|s| s.version.clone()).unwrap_or_default();
        if let Some(next) =
            self.shadow.next(store, side, &shadow_version, self.choice.serving(), |_| Ok(()), "shadow: ").await
        {
            ShadowSwapped { model: &next.name, from: &shadow_version, to: &next.version }.emit();
            *shadow = Some(Arc::new(next));
        }
        swapped
    }
}

/// Loads the newest of a model's new targets, with retries of transient failures.
#[derive(Default)]
struct Track {
    pending: Option<Pending>,
}

struct Pending {
    target: Target,
    attempts: u32,
    next: Instant,
}

impl Track {
    /// Load the newest loadable of `fresh` (or a due retry); `None` when nothing new loads.
    async fn next(
        &mut self,
        store: &Store,
        fresh: Vec<Target>,
        serving: &str,
        serve: ServeOptions<'_>,
        check: impl Fn(&Served) -> Result<()>,
        what: &str,
    ) -> Option<Served> {
        let mut candidates: Vec<Target> = fresh.into_iter().filter(|t| t.version() != serving).collect();
        let mut attempts = 0;
        if !candidates.is_empty() {
            self.pending = None; // superseded by newer targets
        } else if let Some(p) = self.pending.take() {
            if Instant::now() >= p.next {
                attempts = p.attempts;
                candidates.push(p.target);
            } else {
                self.pending = Some(p);
            }
        }
        let mut chosen = None;
        for target in candidates {
            let loaded = load_ref(store, target.model_ref(), serve).await.and_then(|m| {
                check(&m)?;
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
                        version: target.version(),
                        attempt,
                        retry_in_ms: wait.as_millis() as u64,
                        reason: &format_args!("{what}{e}"),
                    }
                    .emit();
                    self.pending = Some(Pending { target, attempts: attempt, next: Instant::now() + wait });
                }
                Err(e) => ModelRefused {
                    version: target.version(),
                    reason: &format_args!("{what}{e}; the current one keeps serving"),
                }
                .emit(),
            }
        }
        chosen
    }
}

/// Which model an alias belongs to: `--model-name`, else the one model that has the alias.
fn alias_model(book: &AliasBook, choice: &ModelChoice, alias: &str) -> Result<Option<String>> {
    if let Some(n) = &choice.name {
        return Ok(Some(n.clone()));
    }
    match book.models_with(alias).as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => Err(Error::Usage(format!(
            "--alias {alias}: models {} all have it; choose one with --model-name",
            many.join(", ")
        ))),
    }
}

async fn initial_model(
    store: &Store,
    history: &[Announcement],
    book: &AliasBook,
    choice: &ModelChoice,
) -> Result<Served> {
    let named = |a: &&Announcement| choice.name.as_ref().is_none_or(|n| *n == a.model_name);
    if let Some(v) = &choice.version {
        if let Some(a) = history.iter().rev().filter(named).find(|a| &a.version == v) {
            return load_ref(store, a.model_ref(), choice.serving()).await;
        }
        let key = store.key_of_version(choice.name.as_deref(), v).await?;
        let key = key.ok_or_else(|| Error::NotFound(format!("model version {v} is not in {}", store.uri())))?;
        tracing::warn!(%key, "version not found in announcements; loading from the store without a sha256 check");
        return load_key(store, &key, choice.serving()).await;
    }
    if let Some(alias) = &choice.alias {
        let name = alias_model(book, choice, alias)?;
        let mv = name.as_deref().and_then(|n| book.current(n, alias));
        return match mv {
            // Verified like an announcement; a refused target is an error, never a fallback.
            Some(mv) => load_ref(store, mv.model_ref(), choice.serving()).await,
            None => Err(Error::NotFound(format!(
                "alias {alias} of {} is not set; set it with `modelcast promote MODEL VERSION --alias {alias}`",
                name.as_deref().unwrap_or("any model")
            ))),
        };
    }
    let mut refused = 0;
    for a in history.iter().rev().filter(named) {
        match load_ref(store, a.model_ref(), choice.serving()).await {
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
            load_key(store, &k, choice.serving()).await
        }
        None => Err(Error::NotFound(format!(
            "no model found in {}{}; run `modelcast train` first",
            store.uri(),
            choice.name.as_ref().map(|n| format!(" for model {n}")).unwrap_or_default()
        ))),
    }
}

/// Wait (until Ctrl-C or SIGTERM) for the first announcement, or the first move of the alias.
async fn wait_for_model(
    store: &Store,
    updates: &mut Updates,
    book: &mut AliasBook,
    choice: &ModelChoice,
) -> Result<Served> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("install SIGTERM handler", "-", e))?;
    loop {
        tokio::select! {
            _ = updates.changed() => {}
            _ = tokio::signal::ctrl_c() => return Err(Error::NotFound("interrupted before any model was announced".into())),
            _ = term.recv() => return Err(Error::NotFound("stopped before any model was announced".into())),
        }
        let changes = updates.poll(store).await?;
        let mut targets = Vec::new();
        match &choice.alias {
            Some(alias) => {
                for mv in changes.moves {
                    let wanted = &mv.alias == alias && choice.name.as_ref().is_none_or(|n| *n == mv.model_name);
                    if book.apply(mv.clone()).applied && wanted {
                        targets.push(Target::Moved(mv));
                    }
                }
            }
            None => {
                for mv in changes.moves {
                    book.apply(mv);
                }
                targets.extend(
                    changes
                        .announcements
                        .into_iter()
                        .filter(|a| choice.name.as_ref().is_none_or(|n| *n == a.model_name))
                        .map(Target::Announced),
                );
            }
        }
        for t in targets.iter().rev() {
            match load_ref(store, t.model_ref(), choice.serving()).await {
                Ok(m) => return Ok(m),
                Err(e) => ModelRefused { version: t.version(), reason: &e }.emit(),
            }
        }
    }
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Backoff before retry `attempt` (1-based): 250 ms doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(8).saturating_sub(1))).min(Duration::from_secs(30))
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
