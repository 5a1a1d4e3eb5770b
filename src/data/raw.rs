//! Raw rows as text: what the promotion gate replays through a model's own decoder, so the old
//! and the new model are compared on exactly the same cells.

use std::io::Read;
use std::path::Path;

use super::{rows_in_block, Blocks, ColumnSpec};
use crate::error::{Error, Result};

/// Raw rows of CSV files, each file with its header: what a model is evaluated on when it
/// must read the records as a predictor does (the promotion gate).
#[derive(Debug, Default)]
pub struct RawRows {
    /// Per file: its header and the kept rows.
    pub files: Vec<(csv::StringRecord, Vec<csv::StringRecord>)>,
}

impl RawRows {
    /// Number of rows kept.
    pub fn len(&self) -> usize {
        self.files.iter().map(|(_, r)| r.len()).sum()
    }

    /// Whether no row was kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rows `keep` (sorted) of `blocks` as raw records under one header (the spec's columns, then the
/// target), as a CSV of them would read: numbers in their shortest round-trip form, missing
/// values as empty cells. For the promotion gate when the rows came from a topic.
pub fn raw_rows_of(blocks: &dyn Blocks, keep: &[usize], spec: &ColumnSpec<'_>) -> Result<RawRows> {
    let header: csv::StringRecord =
        spec.numeric.iter().chain(spec.categorical).map(String::as_str).chain([spec.target]).collect();
    let mut rows = Vec::with_capacity(keep.len());
    blocks.for_each_block(&mut |first, t| {
        for &i in rows_in_block(keep, first, t.len()) {
            let r = i - first;
            let mut rec = csv::StringRecord::new();
            for col in &t.numeric {
                let v = col[r];
                rec.push_field(&if v.is_nan() { String::new() } else { v.to_string() });
            }
            for col in &t.categorical {
                rec.push_field(col.get(r).unwrap_or(""));
            }
            rec.push_field(&spec.target_kind.text_of(t.target[r]));
            rows.push(rec);
        }
        Ok(())
    })?;
    Ok(RawRows { files: vec![(header, rows)] })
}

/// Read the data rows of `paths` (gzip by extension) as raw records, keeping those whose index
/// across all files (as [`load_csv`] numbers them) is in `keep` (sorted), or every row when
/// `keep` is `None`. Streams: only kept rows stay in memory.
pub fn read_rows(paths: &[impl AsRef<Path>], delimiter: u8, keep: Option<&[usize]>) -> Result<RawRows> {
    let mut out = RawRows::default();
    let mut index = 0usize;
    let mut next = 0usize; // position in `keep`
    for path in paths {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let input: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        let name = path.display().to_string();
        let mut rdr = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).from_reader(input);
        let header = rdr
            .headers()
            .map_err(|e| Error::Data { source_name: name.clone(), line: 1, message: e.to_string() })?
            .clone();
        let mut rows = Vec::new();
        let mut record = csv::StringRecord::new();
        loop {
            let line = rdr.position().line();
            match rdr.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    return Err(Error::Data { source_name: name, line, message: format!("malformed CSV row: {e}") })
                }
            }
            let kept = match keep {
                None => true,
                Some(k) => {
                    while next < k.len() && k[next] < index {
                        next += 1;
                    }
                    next < k.len() && k[next] == index
                }
            };
            if kept {
                rows.push(record.clone());
            }
            index += 1;
        }
        out.files.push((header, rows));
    }
    Ok(out)
}
