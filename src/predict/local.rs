//! Batch and `--follow` prediction: records from a file or stdin, announcements from the bus,
//! outputs through [`Outputs`]. Swaps happen between chunks, so a chunk is scored by one model.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::aliases::Updates;
use crate::error::{Error, Result};
use crate::events::{metrics, Event, ModelServing, ShadowSwapped};
use crate::messages::Origin;
use crate::predict::input::{self, Item, Source};
use crate::predict::models::{ModelChoice, Started, Swapper};
use crate::predict::output::Outputs;
use crate::predict::{score_csv, score_json, Counts, Scored, Served};
use crate::record::CsvLayout;
use crate::store::Store;

/// Run batch or follow prediction until the input ends (or Ctrl-C in follow mode).
pub async fn run(
    store: &Store,
    updates: Updates,
    source: Source,
    choice: &ModelChoice,
    out: &mut Outputs,
) -> Result<Counts> {
    let Started { mut swapper, model, shadow } = Swapper::start(store, updates, choice, false).await?;
    let mut model = Arc::new(model);
    let mut shadow = shadow.map(Arc::new);
    ModelServing { model: &model.name, version: &model.version }.emit();
    if let Some(s) = &shadow {
        ShadowSwapped { model: &s.name, from: "", to: &s.version }.emit();
    }
    let follow_models = source.follow && choice.version.is_none();
    let (mut rx, stop) = input::spawn(&source)?;
    let mut counts = Counts::default();
    let mut header: Option<csv::StringRecord> = None;
    let mut layout: Option<CsvLayout> = None;
    let mut shadow_layout: Option<CsvLayout> = None;
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
                            shadow_layout = shadow.as_ref().map(|s| s.decoder.csv_layout(&h));
                            header = Some(h);
                        }
                        Item::Csv(line, row) => match &layout {
                            Some(l) => {
                                let mut scored = score_csv(&model, l, &row, origin(line), line.to_string());
                                if let (Some(s), Some(sl)) = (&shadow, &shadow_layout) {
                                    add_shadow(&mut scored, s, || score_csv(s, sl, &row, origin(line), line.to_string()));
                                }
                                chunk.push(scored);
                            }
                            None => return Err(Error::Data { source_name: src_name, line, message: "CSV row before header".into() }),
                        },
                        Item::Json(line, bytes) => {
                            let mut scored = score_json(&model, &bytes, origin(line), line.to_string(), None);
                            if let Some(s) = &shadow {
                                add_shadow(&mut scored, s, || score_json(s, &bytes, origin(line), line.to_string(), None));
                            }
                            chunk.push(scored);
                        }
                        Item::Bad(line, text, reason) => chunk.push(Scored::Rejected(crate::predict::dead(&model, line.to_string(), reason, origin(line), text.as_bytes()))),
                    }
                }
                let (ok, bad) = out.write(chunk).await?;
                counts.scored += ok;
                counts.rejected += bad;
                if out.closed { break; }
            }
            _ = tick.tick(), if follow_models => {
                let shadow_was = shadow.as_ref().map(|s| s.version.clone());
                if swapper.poll(store, &mut model, &mut shadow).await {
                    if let Some(h) = &header {
                        layout = Some(model.decoder.csv_layout(h));
                    }
                    counts.swaps += 1;
                }
                if shadow.as_ref().map(|s| &s.version) != shadow_was.as_ref() {
                    shadow_layout = shadow.as_ref().zip(header.as_ref()).map(|(s, h)| s.decoder.csv_layout(h));
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

/// Put the shadow model's prediction into a scored record (only a scored one: the shadow model
/// scores what the serving one scored).
fn add_shadow(scored: &mut Scored, shadow: &Served, score: impl FnOnce() -> Scored) {
    if let Scored::Ok(p) = scored {
        let m = metrics();
        match score() {
            Scored::Ok(sp) => {
                m.shadow_scored.inc();
                m.shadow_abs_diff.observe((p.prediction - sp.prediction).abs());
                p.shadow_prediction = Some(sp.prediction);
                p.shadow_version = Some(shadow.version.clone());
            }
            Scored::Rejected(_) => m.shadow_rejected.inc(),
        }
    }
}

fn warn_missing_columns(model: &Served, layout: &CsvLayout) {
    let missing: Vec<&str> = layout.missing_slots().map(|i| model.scorer.input_columns()[i].as_str()).collect();
    if !missing.is_empty() {
        tracing::warn!(columns = ?missing, "input has no such columns; they count as missing in every row");
    }
}
