//! Training from the records of a topic: the caller (the command, through the bus) hands over
//! a [`RecordSource`]; each record is decoded by the same cell rules as a CSV row, malformed
//! ones are counted against `max_rejected`, and the rows are spooled to disk as they come.

use std::time::Instant;

use super::{fit_rows, Fitted, Observer, Work};
use crate::artifact::{PartitionRange, TopicData};
use crate::data::spool::SpoolWriter;
use crate::data::{self, Blocks, ColumnSpec, RawRows};
use crate::error::{Error, Result};
use crate::params::{Params, Split};

/// A consumer of records read: partition, offset, value.
pub type RecordFn<'f> = dyn FnMut(i32, i64, &[u8]) -> Result<()> + 'f;

/// The records of a topic to train from, as an edge reads them.
pub trait RecordSource {
    /// Records to read, when known (for progress).
    fn total(&self) -> u64;
    /// Call `each(partition, offset, payload)` for every record, in order per partition, and
    /// return what was read from each partition.
    fn read(&mut self, each: &mut RecordFn<'_>) -> Result<Vec<PartitionRange>>;
}

/// How `train` reads a topic (`data.topic`).
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Only records from this time on.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The largest fraction of malformed records before the run fails.
    pub max_rejected: f64,
    /// Keep the held-out rows (raw) for the promotion gate.
    pub keep_held_out: bool,
}

/// Read `params.topic()`'s records from `source` into a spool (malformed records counted, at
/// most `max_rejected` of them) and fit on it; with `keep_held_out`, also the held-out rows,
/// raw, for the gate.
pub fn fit_from_records(
    source: &mut dyn RecordSource,
    params: &Params,
    read: &ReadOptions,
    obs: &dyn Observer,
) -> Result<(Fitted, Option<RawRows>)> {
    let topic = params.topic().unwrap_or_default();
    let spec = ColumnSpec::of(params);
    let t0 = Instant::now();
    obs.stage(&format!("reading topic {topic}"), Some(Work::Records(source.total())));
    let mut spool = SpoolWriter::new(&spec)?;
    let mut rejected = 0u64;
    let ranges = source.read(&mut |partition, offset, payload| {
        obs.advance(1);
        match data::parse_json_row(payload, &spec) {
            Ok(row) => {
                let cats: Vec<Option<&str>> = row.categorical.iter().map(|c| c.as_deref()).collect();
                spool.push(&row.numeric, &cats, row.target)
            }
            Err(reason) => {
                rejected += 1;
                if rejected <= MAX_REJECT_WARNINGS {
                    tracing::warn!(%topic, partition, offset, %reason, "skipped a malformed training record");
                }
                Ok(())
            }
        }
    })?;
    let records: u64 = ranges.iter().map(|r| r.records).sum();
    tracing::info!(%topic, records, rejected, rows = spool.rows(), elapsed_ms = t0.elapsed().as_millis() as u64,
        "read training records");
    let source = format!("kafka://{topic}");
    if rejected > 0 {
        let share = rejected as f64 / records.max(1) as f64;
        if share > read.max_rejected {
            return Err(Error::Data {
                source_name: source,
                line: 0,
                message: format!(
                    "{rejected} of {records} records ({:.2}%) are malformed, above --max-rejected {}; the warnings \
                     above name the first {}",
                    share * 100.0,
                    read.max_rejected,
                    rejected.min(MAX_REJECT_WARNINGS)
                ),
            });
        }
        tracing::warn!(%topic, rejected, records, "trained without the malformed records (within --max-rejected)");
    }
    if spool.rows() == 0 {
        return Err(Error::Data {
            source_name: source,
            line: 0,
            message: match read.since {
                Some(t) => format!("no training records since {}", t.to_rfc3339()),
                None => "the topic has no training records".into(),
            },
        });
    }
    let spool = spool.finish()?;
    let info = TopicData {
        topic: topic.to_string(),
        partitions: ranges,
        records,
        rejected,
        since: read.since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    };
    let fitted = fit_rows(params, &spool, Vec::new(), Some(info), obs)?;
    let held_out = match params.split() {
        Split::Fraction { fraction, seed } if read.keep_held_out => {
            let (_, test) = data::split_indices(spool.rows(), fraction, seed);
            Some(data::raw_rows_of(&spool, &test, &spec)?)
        }
        _ => None,
    };
    Ok((fitted, held_out))
}

/// Malformed records named one by one in the log; the rest are counted.
const MAX_REJECT_WARNINGS: u64 = 10;
