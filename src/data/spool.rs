//! A spool: training rows written once to an anonymous temporary file and read back block by
//! block for every statistics pass, so training holds a few blocks in memory however many rows
//! there are (the disk holds the rest: about 8 bytes per numeric value). Training from a CSV
//! file or from a topic both go through one.
//!
//! Format (private, never leaves the process): blocks of [`BLOCK_ROWS`] rows (the last may be
//! shorter), each column-wise: every numeric column as f64 little-endian, the target likewise,
//! then per categorical column the block's dictionary (a u32 count, then each value as a u32
//! length and its UTF-8 bytes) and one u32 code per row (`u32::MAX` = missing). An in-memory
//! index of block offsets lets threads read blocks independently.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};

use crate::data::{Blocks, CategoricalColumn, ColumnSpec, Table, SEGMENT_ROWS};
use crate::error::{Error, Result};

/// Rows per block (about 3 MB for 20 numeric and 3 categorical columns).
pub const BLOCK_ROWS: usize = SEGMENT_ROWS;

fn spool_path() -> std::path::PathBuf {
    std::env::temp_dir().join("(spool)")
}

/// Writes rows; [`SpoolWriter::finish`] makes the readable [`Spool`].
pub struct SpoolWriter {
    out: BufWriter<File>,
    rows: usize,
    pending: Table,
    empty: Table,
    /// Byte offset and row count of each block written.
    index: Vec<(u64, usize)>,
    offset: u64,
    bytes: Vec<u8>,
}

impl SpoolWriter {
    /// A new, empty spool in the system's temporary directory (removed when dropped).
    pub fn new(spec: &ColumnSpec<'_>) -> Result<SpoolWriter> {
        let file = tempfile::tempfile().map_err(|e| Error::io("create a spool file in", std::env::temp_dir(), e))?;
        Ok(SpoolWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            rows: 0,
            pending: Table::empty(spec),
            empty: Table::empty(spec),
            index: Vec::new(),
            offset: 0,
            bytes: Vec::new(),
        })
    }

    /// Append one row (values in spec order; `NaN` / `None` for missing).
    pub fn push(&mut self, numeric: &[f64], categorical: &[Option<&str>], target: f64) -> Result<()> {
        debug_assert_eq!(
            (numeric.len(), categorical.len()),
            (self.pending.numeric.len(), self.pending.categorical.len())
        );
        if let Some(s) = categorical.iter().flatten().find(|s| u32::try_from(s.len()).is_err()) {
            return Err(Error::Model(format!("a categorical value of {} bytes is too long", s.len())));
        }
        self.pending.push_row(numeric, categorical, target);
        self.rows += 1;
        if self.pending.len() == BLOCK_ROWS {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Append every row of `table` (a table with the spec's columns).
    pub fn push_table(&mut self, table: &Table) -> Result<()> {
        let mut at = 0;
        while at < table.len() {
            let take = (BLOCK_ROWS - self.pending.len()).min(table.len() - at);
            self.pending.append_range(table, at..at + take);
            self.rows += take;
            at += take;
            if self.pending.len() == BLOCK_ROWS {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        let t = std::mem::replace(&mut self.pending, self.empty.clone());
        let b = &mut self.bytes;
        b.clear();
        for col in t.numeric.iter().chain([&t.target]) {
            for v in col {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        for col in &t.categorical {
            b.extend_from_slice(&(col.values.len() as u32).to_le_bytes());
            for v in &col.values {
                b.extend_from_slice(&(v.len() as u32).to_le_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            for c in &col.codes {
                b.extend_from_slice(&c.to_le_bytes());
            }
        }
        self.out.write_all(b).map_err(|e| Error::io("write", spool_path(), e))?;
        self.index.push((self.offset, t.len()));
        self.offset += b.len() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Flush and make the rows readable.
    pub fn finish(mut self) -> Result<Spool> {
        if !self.pending.is_empty() {
            self.flush_block()?;
        }
        let file = self.out.into_inner().map_err(|e| Error::io("flush", spool_path(), e.into_error()))?;
        let mut index = self.index;
        index.push((self.offset, 0));
        Ok(Spool { file, rows: self.rows, index, empty: self.empty })
    }
}

/// Spooled rows, readable block by block any number of times, from any thread.
pub struct Spool {
    file: File,
    rows: usize,
    /// Offset and rows of each block, then the end offset.
    index: Vec<(u64, usize)>,
    empty: Table,
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads little-endian values off a block's bytes.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64s(&mut self, n: usize, out: &mut Vec<f64>) -> std::io::Result<()> {
        let b = self.take(8 * n)?;
        out.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])));
        Ok(())
    }
}

impl Spool {
    fn decode(&self, bytes: &[u8], n: usize) -> std::io::Result<Table> {
        let mut t = self.empty.clone();
        let mut c = Cursor(bytes);
        for col in t.numeric.iter_mut().chain([&mut t.target]) {
            col.reserve_exact(n);
            c.f64s(n, col)?;
        }
        for col in t.categorical.iter_mut() {
            let count = c.u32()? as usize;
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                let len = c.u32()? as usize;
                let text = std::str::from_utf8(c.take(len)?)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                values.push(text.to_string());
            }
            let codes = c.take(4 * n)?.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            *col = CategoricalColumn::from_parts(values, codes);
        }
        Ok(t)
    }
}

impl Blocks for Spool {
    fn rows(&self) -> usize {
        self.rows
    }

    fn block_count(&self) -> usize {
        self.index.len() - 1
    }

    fn block(&self, i: usize) -> Result<(usize, Cow<'_, Table>)> {
        let io = |e| Error::io("read", spool_path(), e);
        let ((offset, n), (end, _)) = (self.index[i], self.index[i + 1]);
        let mut bytes = vec![0u8; (end - offset) as usize];
        read_at(&self.file, &mut bytes, offset).map_err(io)?;
        let t = self.decode(&bytes, n).map_err(io)?;
        Ok((i * BLOCK_ROWS, Cow::Owned(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamsFile;

    #[test]
    fn rows_come_back_in_order_in_blocks_with_missing_values() {
        let (num, cat) = (vec!["a".to_string()], vec!["c".to_string()]);
        let spec = ColumnSpec {
            numeric: &num,
            categorical: &cat,
            target: "y",
            target_kind: &crate::params::Target::Number,
            delimiter: b',',
            missing_tokens: &[],
        };
        let mut w = SpoolWriter::new(&spec).unwrap();
        let n = BLOCK_ROWS * 2 + 5;
        for i in 0..n {
            let a = if i % 7 == 0 { f64::NAN } else { i as f64 * 0.5 };
            let c = if i % 5 == 0 { None } else { Some(if i % 2 == 0 { "even" } else { "ödd" }) };
            w.push(&[a], &[c], i as f64).unwrap();
        }
        let spool = w.finish().unwrap();
        for _pass in 0..2 {
            let mut seen = 0;
            let mut blocks = 0;
            spool
                .for_each_block(&mut |first, t| {
                    assert_eq!(first, seen);
                    for r in 0..t.len() {
                        let i = first + r;
                        assert_eq!(t.target[r], i as f64);
                        assert_eq!(t.numeric[0][r].is_nan(), i % 7 == 0);
                        let want = if i % 5 == 0 { None } else { Some(if i % 2 == 0 { "even" } else { "ödd" }) };
                        assert_eq!(t.categorical[0].get(r), want);
                    }
                    seen += t.len();
                    blocks += 1;
                    Ok(())
                })
                .unwrap();
            assert_eq!((seen, blocks), (n, 3));
        }
    }

    #[test]
    fn a_spool_and_a_table_of_the_same_rows_fit_the_same_model_bit_for_bit() {
        let yaml = "name: m\ndata: {train: unused.csv}\ntarget: y\nfeatures: {numeric: [a, b], categorical: [c]}\n\
                    missing: {numeric: median}\nmodel: {kind: ridge, alpha: 0.5}\n";
        let path = std::path::Path::new("p.yaml");
        let params = crate::util::yaml::parse_yaml::<ParamsFile>(path, yaml).unwrap().check(path).unwrap();
        let spec = ColumnSpec::of(&params);
        let mut table = Table::empty(&spec);
        let mut w = SpoolWriter::new(&spec).unwrap();
        // more rows than a block and than a design chunk, so both boundaries are crossed
        let mut rng = crate::util::rng::SplitMix64::new(7);
        for i in 0..(BLOCK_ROWS * 2 + 1234) {
            let state = rng.next_u64();
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let a = if i % 11 == 0 { f64::NAN } else { u * 10.0 };
            let b = (i % 97) as f64 - 40.0;
            let c = match i % 4 {
                0 => None,
                1 => Some("red"),
                2 => Some("white"),
                _ => Some("rosé"),
            };
            let y = 3.0 * u - 0.02 * b + if c == Some("red") { 1.0 } else { 0.0 };
            table.push_row(&[a, b], &[c], y);
            w.push(&[a, b], &[c], y).unwrap();
        }
        let spool = w.finish().unwrap();
        let from_table = crate::train::fit_rows(&params, &table, vec![], None, &()).unwrap().artifact;
        let from_spool = crate::train::fit_rows(&params, &spool, vec![], None, &()).unwrap().artifact;
        assert_eq!(from_table.estimator.fit, from_spool.estimator.fit);
        assert_eq!(from_table.preprocessing, from_spool.preprocessing);
        assert_eq!(from_table.metrics, from_spool.metrics);
        assert_eq!(from_table.preprocessing.categorical[0].categories, ["missing", "red", "rosé", "white"]);
    }
}
