//! Batch and `--follow` prediction: records from a file or stdin, announcements from the bus,
//! outputs through [`Outputs`]. Swaps happen between chunks, so a chunk is scored by one model.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::{AnnouncementFeed, Origin};
use crate::error::{Error, Result};
use crate::events::{Event, ModelServing};
use crate::predict::input::{self, Item, Source};
use crate::predict::models::{first_model, ModelChoice, Swapper};
use crate::predict::output::Outputs;
use crate::predict::{score_csv, score_json, Counts, Scored, Served};
use crate::record::CsvLayout;
use crate::store::Store;

/// Run batch or follow prediction until the input ends (or Ctrl-C in follow mode).
pub async fn run(
    store: &Store,
    mut feed: AnnouncementFeed,
    source: Source,
    choice: &ModelChoice,
    out: &mut Outputs,
) -> Result<Counts> {
    let mut model = Arc::new(first_model(store, &mut feed, choice, false).await?);
    ModelServing { model: &model.name, version: &model.version }.emit();
    let mut swapper = Swapper::new(feed, choice.clone());
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
                if swapper.poll(store, &mut model).await {
                    if let Some(h) = &header {
                        layout = Some(model.decoder.csv_layout(h));
                    }
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
