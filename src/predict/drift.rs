//! `modelcast drift`: the records of a file (or stdin) counted against a model version's
//! training reference, each scored by the model for the predictions' distribution.

use crate::artifact::Artifact;
use crate::drift::{Window, WindowReport};
use crate::error::{Error, Result};
use crate::predict::input::{self, Item, Source};
use crate::predict::{predict_cells, ServeOptions, Served};
use crate::record::CsvLayout;

/// Count every record of `source` against `artifact`'s drift reference (`uri` names it in
/// errors). An artifact trained before references were stored is an error saying so.
pub async fn measure(artifact: &Artifact, uri: &str, source: &Source) -> Result<WindowReport> {
    let reference = artifact.drift.as_ref().ok_or_else(|| {
        Error::artifact(
            uri,
            format!(
                "has no drift reference: it was written with artifact schema_version {} (references came with 4); \
                 retrain the model to get one",
                artifact.schema_version
            ),
        )
    })?;
    let served = Served::from_artifact(artifact, ServeOptions::key("key"))?;
    let scorer = &served.scorer;
    let mut window =
        Window::new(reference, scorer.input_columns(), scorer.missing_tokens()).map_err(|e| Error::artifact(uri, e))?;
    let (mut rx, _stop) = input::spawn(source)?;
    let mut layout: Option<CsvLayout> = None;
    let mut probs = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    let started = std::time::Instant::now();
    while rx.recv_many(&mut buf, 1024).await > 0 {
        for item in buf.drain(..) {
            let decoded = match &item {
                Item::Header(h) => {
                    let l = served.decoder.csv_layout(h);
                    let missing: Vec<&str> = l.missing_slots().map(|i| scorer.input_columns()[i].as_str()).collect();
                    if !missing.is_empty() {
                        tracing::warn!(columns = ?missing, "input has no such columns; they count as missing in every row");
                    }
                    layout = Some(l);
                    continue;
                }
                Item::Csv(line, row) => match &layout {
                    Some(l) => Ok(l.decode(row)),
                    None => {
                        return Err(Error::Data {
                            source_name: source.path.clone(),
                            line: *line,
                            message: "CSV row before header".into(),
                        })
                    }
                },
                Item::Json(_, bytes) => served.decoder.json(bytes),
                Item::Bad(_, _, reason) => Err(reason.clone()),
            };
            match decoded {
                Ok(d) => {
                    let prediction = predict_cells(scorer, &d.cells, &mut probs).ok().map(|(v, _)| v);
                    window.add(reference, &d.cells, prediction);
                }
                Err(_) => window.unreadable(),
            }
        }
    }
    tracing::info!(
        records = window.records(),
        ms = started.elapsed().as_millis() as u64,
        source = %source.path,
        "counted the input against the training reference"
    );
    Ok(window.report(reference))
}
