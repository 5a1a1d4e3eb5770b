//! A spool: training rows written once to an anonymous temporary file and read back block by
//! block for every statistics pass, so training from a topic holds one block in memory however
//! long the topic is (the disk holds the rest: about 8 bytes per numeric value).
//!
//! Format (private, never leaves the process): per row, each numeric value as f64
//! little-endian, each categorical value as a u32 length (`u32::MAX` = missing) and its UTF-8
//! bytes, then the target as f64.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use crate::data::{Blocks, ColumnSpec, Table};
use crate::error::{Error, Result};

/// Rows per block read back (about 1.5 MB for the wine columns).
pub const BLOCK_ROWS: usize = 16_384;

const MISSING_LEN: u32 = u32::MAX;

/// Writes rows; [`SpoolWriter::finish`] makes the readable [`Spool`].
pub struct SpoolWriter {
    out: BufWriter<File>,
    rows: usize,
    numeric: usize,
    categorical: usize,
}

impl SpoolWriter {
    /// A new, empty spool in the system's temporary directory (removed when dropped).
    pub fn new(spec: &ColumnSpec<'_>) -> Result<SpoolWriter> {
        let file = tempfile::tempfile().map_err(|e| Error::io("create a spool file in", std::env::temp_dir(), e))?;
        Ok(SpoolWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            rows: 0,
            numeric: spec.numeric.len(),
            categorical: spec.categorical.len(),
        })
    }

    /// Append one row (values in spec order; `NaN` / `None` for missing).
    pub fn push(&mut self, numeric: &[f64], categorical: &[Option<&str>], target: f64) -> Result<()> {
        debug_assert_eq!((numeric.len(), categorical.len()), (self.numeric, self.categorical));
        let io = |e| Error::io("write", std::env::temp_dir().join("(spool)"), e);
        for v in numeric {
            self.out.write_all(&v.to_le_bytes()).map_err(io)?;
        }
        for c in categorical {
            match c {
                None => self.out.write_all(&MISSING_LEN.to_le_bytes()).map_err(io)?,
                Some(s) => {
                    let len = u32::try_from(s.len())
                        .ok()
                        .filter(|&l| l != MISSING_LEN)
                        .ok_or_else(|| Error::Model(format!("a categorical value of {} bytes is too long", s.len())))?;
                    self.out.write_all(&len.to_le_bytes()).map_err(io)?;
                    self.out.write_all(s.as_bytes()).map_err(io)?;
                }
            }
        }
        self.out.write_all(&target.to_le_bytes()).map_err(io)?;
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Flush and make the rows readable.
    pub fn finish(self) -> Result<Spool> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io("flush", std::env::temp_dir().join("(spool)"), e.into_error()))?;
        Ok(Spool { file, rows: self.rows, numeric: self.numeric, categorical: self.categorical })
    }
}

/// Spooled rows, readable block by block any number of times.
pub struct Spool {
    file: File,
    rows: usize,
    numeric: usize,
    categorical: usize,
}

impl Blocks for Spool {
    fn rows(&self) -> usize {
        self.rows
    }

    fn for_each_block(&self, f: &mut dyn FnMut(usize, &Table) -> Result<()>) -> Result<()> {
        let io = |e| Error::io("read", std::env::temp_dir().join("(spool)"), e);
        let mut file = self.file.try_clone().map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        let mut first = 0;
        let (mut numeric, mut categorical) = (vec![0.0; self.numeric], Vec::with_capacity(self.categorical));
        let mut text: Vec<String> = vec![String::new(); self.categorical];
        let mut buf8 = [0u8; 8];
        let mut buf4 = [0u8; 4];
        while first < self.rows {
            let n = BLOCK_ROWS.min(self.rows - first);
            let mut t = Table {
                numeric: vec![Vec::with_capacity(n); self.numeric],
                categorical: vec![Default::default(); self.categorical],
                target: Vec::with_capacity(n),
            };
            for _ in 0..n {
                for v in numeric.iter_mut() {
                    r.read_exact(&mut buf8).map_err(io)?;
                    *v = f64::from_le_bytes(buf8);
                }
                categorical.clear();
                for s in text.iter_mut() {
                    r.read_exact(&mut buf4).map_err(io)?;
                    let len = u32::from_le_bytes(buf4);
                    if len == MISSING_LEN {
                        categorical.push(false);
                        continue;
                    }
                    let mut bytes = std::mem::take(s).into_bytes();
                    bytes.resize(len as usize, 0);
                    r.read_exact(&mut bytes).map_err(io)?;
                    *s = String::from_utf8(bytes)
                        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
                    categorical.push(true);
                }
                r.read_exact(&mut buf8).map_err(io)?;
                let cats: Vec<Option<&str>> =
                    text.iter().zip(&categorical).map(|(s, &present)| present.then_some(s.as_str())).collect();
                t.push_row(&numeric, &cats, f64::from_le_bytes(buf8));
            }
            f(first, &t)?;
            first += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::params::ParamsFile;

    #[test]
    fn rows_come_back_in_order_in_blocks_with_missing_values() {
        let (num, cat) = (vec!["a".to_string()], vec!["c".to_string()]);
        let spec = ColumnSpec { numeric: &num, categorical: &cat, target: "y", delimiter: b',', missing_tokens: &[] };
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
        let params = crate::config::parse_yaml::<ParamsFile>(path, yaml).unwrap().check(path).unwrap();
        let spec = ColumnSpec::of(&params);
        let mut table = Table::empty(&spec);
        let mut w = SpoolWriter::new(&spec).unwrap();
        // more rows than a block and than a design chunk, so both boundaries are crossed
        let mut state = 7u64;
        for i in 0..(BLOCK_ROWS * 2 + 1234) {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
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
        let from_table = crate::cmd::train::fit_rows(&params, &table, vec![], None, &()).unwrap().artifact;
        let from_spool = crate::cmd::train::fit_rows(&params, &spool, vec![], None, &()).unwrap().artifact;
        assert_eq!(from_table.estimator.fit, from_spool.estimator.fit);
        assert_eq!(from_table.preprocessing, from_spool.preprocessing);
        assert_eq!(from_table.metrics, from_spool.metrics);
        assert_eq!(from_table.preprocessing.categorical[0].categories, ["missing", "red", "rosé", "white"]);
    }
}
