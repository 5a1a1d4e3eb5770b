//! Tabular data: CSV files into typed columns, and the held-out split. No network.
//!
//! Columns are stored column-wise: numbers as `f64` with `NaN` for "missing", categories
//! as interned codes. This keeps a million-row table a few tens of megabytes.

use std::collections::HashMap;
use std::io::Read;

use sha2::{Digest, Sha256};
use std::path::Path;

use crate::error::{Error, Result};

/// Marker code for a missing categorical value.
pub const MISSING_CODE: u32 = u32::MAX;

/// A categorical column: one code per row plus the dictionary of distinct values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CategoricalColumn {
    /// Distinct values, indexed by code, in first-seen order.
    pub values: Vec<String>,
    /// One code per row; [`MISSING_CODE`] for missing.
    pub codes: Vec<u32>,
    index: HashMap<String, u32>,
}

impl CategoricalColumn {
    /// Append one value (`None` = missing).
    pub fn push(&mut self, value: Option<&str>) {
        let code = match value {
            None => MISSING_CODE,
            Some(v) => match self.index.get(v) {
                Some(&c) => c,
                None => {
                    let c = self.values.len() as u32;
                    self.values.push(v.to_string());
                    self.index.insert(v.to_string(), c);
                    c
                }
            },
        };
        self.codes.push(code);
    }

    /// The value of row `i`, `None` when missing.
    pub fn get(&self, i: usize) -> Option<&str> {
        match self.codes[i] {
            MISSING_CODE => None,
            c => Some(self.values[c as usize].as_str()),
        }
    }
}

/// Which columns to load and how to read the cells.
#[derive(Debug, Clone)]
pub struct ColumnSpec<'a> {
    /// Numeric feature columns.
    pub numeric: &'a [String],
    /// Categorical feature columns.
    pub categorical: &'a [String],
    /// The target column (numeric, never missing).
    pub target: &'a str,
    /// Field delimiter.
    pub delimiter: u8,
    /// Cell values that mean "missing".
    pub missing_tokens: &'a [String],
}

impl<'a> ColumnSpec<'a> {
    /// The columns and reading rules a params file names.
    pub fn of(params: &'a crate::config::params::Params) -> ColumnSpec<'a> {
        ColumnSpec {
            numeric: params.numeric(),
            categorical: params.categorical(),
            target: params.target(),
            delimiter: params.delimiter(),
            missing_tokens: params.missing_tokens(),
        }
    }
}

/// A loaded table: the requested columns only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Numeric columns in spec order; `NaN` marks a missing cell.
    pub numeric: Vec<Vec<f64>>,
    /// Categorical columns in spec order.
    pub categorical: Vec<CategoricalColumn>,
    /// Target values.
    pub target: Vec<f64>,
}

impl Table {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.target.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
    }

    /// The rows at `idx`, in that order, as a new table.
    pub fn take(&self, idx: &[usize]) -> Table {
        let mut out = Table {
            numeric: self.numeric.iter().map(|c| idx.iter().map(|&i| c[i]).collect()).collect(),
            categorical: vec![CategoricalColumn::default(); self.categorical.len()],
            target: idx.iter().map(|&i| self.target[i]).collect(),
        };
        for (dst, src) in out.categorical.iter_mut().zip(&self.categorical) {
            for &i in idx {
                dst.push(src.get(i));
            }
        }
        out
    }
}

/// Rows readable block by block, as many times as training needs (the statistics passes): an
/// in-memory [`Table`] is one block; a spool of a topic is many, so its rows are never all in
/// memory at once.
pub trait Blocks {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Call `f` with each block in row order: the index of its first row, and the block.
    fn for_each_block(&self, f: &mut dyn FnMut(usize, &Table) -> Result<()>) -> Result<()>;
}

impl Blocks for Table {
    fn rows(&self) -> usize {
        self.len()
    }

    fn for_each_block(&self, f: &mut dyn FnMut(usize, &Table) -> Result<()>) -> Result<()> {
        f(0, self)
    }
}

/// The part of the sorted row list `rows` that falls in a block of `len` rows starting at `first`.
pub fn rows_in_block(rows: &[usize], first: usize, len: usize) -> &[usize] {
    let lo = rows.partition_point(|&r| r < first);
    let hi = rows.partition_point(|&r| r < first + len);
    &rows[lo..hi]
}

/// One training row decoded from a JSON object (a topic record): the values in [`ColumnSpec`]
/// order, read by the same rules as a CSV cell.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRow {
    /// Numeric features; `NaN` marks missing.
    pub numeric: Vec<f64>,
    /// Categorical features; `None` marks missing.
    pub categorical: Vec<Option<String>>,
    /// The target.
    pub target: f64,
}

/// Decode a labelled record. Numbers are numbers or numeric strings; `null`, an absent field or a
/// missing token is missing; a categorical number is its JSON text. The target must be present
/// and numeric. Errors say which field and why (the reason a rejected record is counted under).
pub fn parse_json_row(bytes: &[u8], spec: &ColumnSpec<'_>) -> std::result::Result<JsonRow, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("not a JSON object".into());
    };
    let number = |name: &str| -> std::result::Result<Option<f64>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_f64().filter(|v| v.is_finite()).map(Some).ok_or_else(|| format!("{name:?}: {n} is not finite"))
            }
            Some(Value::String(s)) => parse_number(s, spec.missing_tokens).map_err(|m| format!("{name:?}: {m}")),
            Some(other) => Err(format!("{name:?}: {other} is not a number")),
        }
    };
    let numeric = spec
        .numeric
        .iter()
        .map(|c| number(c).map(|v| v.unwrap_or(f64::NAN)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let categorical = spec
        .categorical
        .iter()
        .map(|c| match obj.get(c.as_str()) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if is_missing(s, spec.missing_tokens) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(format!("{c:?}: {other} is not a category")),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let target = number(spec.target)?.ok_or_else(|| format!("target {:?} is missing", spec.target))?;
    Ok(JsonRow { numeric, categorical, target })
}

impl Table {
    /// An empty table with the columns of `spec`.
    pub fn empty(spec: &ColumnSpec<'_>) -> Table {
        Table {
            numeric: vec![Vec::new(); spec.numeric.len()],
            categorical: vec![CategoricalColumn::default(); spec.categorical.len()],
            target: Vec::new(),
        }
    }

    /// Append one row (values in spec order; `NaN` / `None` for missing).
    pub fn push_row(&mut self, numeric: &[f64], categorical: &[Option<&str>], target: f64) {
        for (col, v) in self.numeric.iter_mut().zip(numeric) {
            col.push(*v);
        }
        for (col, v) in self.categorical.iter_mut().zip(categorical) {
            col.push(*v);
        }
        self.target.push(target);
    }
}

/// Facts about one loaded file, recorded in the artifact for provenance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    /// The path as given.
    pub path: String,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Data rows read (header excluded).
    pub rows: u64,
}

/// Whether `cell` is one of the missing-value tokens.
pub fn is_missing(cell: &str, tokens: &[String]) -> bool {
    let cell = cell.trim();
    tokens.iter().any(|t| t == cell)
}

/// Parse a numeric cell: `Ok(None)` for missing, an error message for non-numbers and non-finite values.
pub fn parse_number(cell: &str, tokens: &[String]) -> std::result::Result<Option<f64>, String> {
    if is_missing(cell, tokens) {
        return Ok(None);
    }
    match cell.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Err(format!("{cell:?} is not a finite number")),
        Err(_) => Err(format!("{cell:?} is not a number")),
    }
}

/// Load `paths` (same header) into one table, reading only the columns in `spec`.
///
/// Errors name the file and line: a missing column, a short row, a non-numeric value in a
/// numeric column, a missing target.
pub fn load_csv(paths: &[impl AsRef<Path>], spec: &ColumnSpec<'_>) -> Result<(Table, Vec<FileInfo>)> {
    load_csv_observed(paths, spec, &|_| {})
}

/// [`load_csv`], calling `on_read` with the number of (compressed) bytes of each read from the
/// files, for a progress bar.
pub fn load_csv_observed(
    paths: &[impl AsRef<Path>],
    spec: &ColumnSpec<'_>,
    on_read: &dyn Fn(u64),
) -> Result<(Table, Vec<FileInfo>)> {
    let mut table = Table {
        numeric: vec![Vec::new(); spec.numeric.len()],
        categorical: vec![CategoricalColumn::default(); spec.categorical.len()],
        target: Vec::new(),
    };
    let mut infos = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let hashing =
            HashingReader { inner: std::io::BufReader::with_capacity(1 << 16, file), hasher: Sha256::new(), on_read };
        let rows = if path.extension().is_some_and(|e| e == "gz") {
            let mut gz = flate2::read::GzDecoder::new(hashing);
            let rows = load_one(path, &mut gz, spec, &mut table)?;
            finish_hash(gz.into_inner(), path, rows, &mut infos)?
        } else {
            let mut r = hashing;
            let rows = load_one(path, &mut r, spec, &mut table)?;
            finish_hash(r, path, rows, &mut infos)?
        };
        tracing::debug!(path = %path.display(), rows, "read");
    }
    if table.is_empty() {
        return Err(Error::Data { source_name: join_paths(paths), line: 0, message: "no data rows".into() });
    }
    Ok((table, infos))
}

/// Reads through and hashes every byte, so a file is read once for both parsing and provenance.
struct HashingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    on_read: &'a dyn Fn(u64),
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        (self.on_read)(n as u64);
        Ok(n)
    }
}

/// Drain what the parser did not read (a gzip trailer), then record the file's sha256.
fn finish_hash<R: Read>(mut r: HashingReader<'_, R>, path: &Path, rows: u64, infos: &mut Vec<FileInfo>) -> Result<u64> {
    std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| Error::io("read", path, e))?;
    let sha256 = r.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    infos.push(FileInfo { path: path.display().to_string(), sha256, rows });
    Ok(rows)
}

fn join_paths(paths: &[impl AsRef<Path>]) -> String {
    paths.iter().map(|p| p.as_ref().display().to_string()).collect::<Vec<_>>().join(",")
}

fn load_one(path: &Path, input: &mut dyn Read, spec: &ColumnSpec<'_>, table: &mut Table) -> Result<u64> {
    let name = path.display().to_string();
    let data_err = |line: u64, message: String| Error::Data { source_name: name.clone(), line, message };
    let mut rdr = csv::ReaderBuilder::new().delimiter(spec.delimiter).has_headers(true).from_reader(input);
    let header = rdr.headers().map_err(|e| data_err(1, e.to_string()))?.clone();
    let find = |col: &str| -> Result<usize> {
        header.iter().position(|h| h.trim() == col).ok_or_else(|| {
            let have: Vec<&str> = header.iter().collect();
            data_err(1, format!("column {col:?} not in header; the header has {have:?} (check data.delimiter)"))
        })
    };
    let num_idx = spec.numeric.iter().map(|c| find(c)).collect::<Result<Vec<_>>>()?;
    let cat_idx = spec.categorical.iter().map(|c| find(c)).collect::<Result<Vec<_>>>()?;
    let target_idx = find(spec.target)?;
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(data_err(line, format!("malformed CSV row: {e}"))),
        }
        let cell = |i: usize| record.get(i).unwrap_or("");
        for (j, &i) in num_idx.iter().enumerate() {
            let v = parse_number(cell(i), spec.missing_tokens)
                .map_err(|m| data_err(line, format!("column {:?}: {m}", spec.numeric[j])))?;
            table.numeric[j].push(v.unwrap_or(f64::NAN));
        }
        for (j, &i) in cat_idx.iter().enumerate() {
            let c = cell(i);
            table.categorical[j].push(if is_missing(c, spec.missing_tokens) { None } else { Some(c.trim()) });
        }
        let y = parse_number(cell(target_idx), spec.missing_tokens)
            .map_err(|m| data_err(line, format!("target {:?}: {m}", spec.target)))?
            .ok_or_else(|| {
                data_err(line, format!("target {:?} is missing; every training row needs one", spec.target))
            })?;
        table.target.push(y);
        rows += 1;
    }
    Ok(rows)
}

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
            rec.push_field(&t.target[r].to_string());
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

/// A deterministic shuffle-split: `(train, test)` row indices, each sorted.
///
/// The permutation is a Fisher–Yates shuffle driven by SplitMix64, so a seed gives the same
/// split on every platform and every modelcast version.
pub fn split_indices(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let test: Vec<usize> = match u32::try_from(n) {
        // the same shuffle on a permutation half the size (it is the split's peak memory)
        Ok(n32) => {
            split_generic::<u32>((0..n32).collect(), test_fraction, seed).into_iter().map(|i| i as usize).collect()
        }
        Err(_) => split_generic::<usize>((0..n).collect(), test_fraction, seed),
    };
    // the training rows: the complement of the sorted test rows, built after the permutation is gone
    let mut train = Vec::with_capacity(n - test.len());
    let mut t = test.iter().peekable();
    for i in 0..n {
        if t.peek() == Some(&&i) {
            t.next();
        } else {
            train.push(i);
        }
    }
    (train, test)
}

/// SplitMix64: the project's seeded generator (the held-out split, the trees' bootstrap and
/// feature sampling), the same sequence on every platform and version.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose first output is the mix of `seed + γ`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn split_generic<T: Copy + Ord>(mut idx: Vec<T>, test_fraction: f64, seed: u64) -> Vec<T> {
    let n = idx.len();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    let n_test = ((n as f64) * test_fraction).round().clamp(1.0, (n.saturating_sub(1)) as f64) as usize;
    // the held-out rows: the first n_test of the permutation, sorted
    idx.truncate(n_test);
    idx.shrink_to_fit();
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::params::default_missing_tokens;

    fn spec<'a>(num: &'a [String], cat: &'a [String], tokens: &'a [String]) -> ColumnSpec<'a> {
        ColumnSpec { numeric: num, categorical: cat, target: "y", delimiter: b',', missing_tokens: tokens }
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_numbers_categories_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "d.csv", "a,c,y,ignored\n1.5,red,3,x\nNA,,4,y\n2,blue,5,z\n");
        let (num, cat, tok) = (vec!["a".to_string()], vec!["c".to_string()], default_missing_tokens());
        let (t, info) = load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.numeric[0][0], 1.5);
        assert!(t.numeric[0][1].is_nan());
        assert_eq!(t.categorical[0].get(0), Some("red"));
        assert_eq!(t.categorical[0].get(1), None);
        assert_eq!(t.target, vec![3.0, 4.0, 5.0]);
        assert_eq!(info[0].rows, 3);
        assert_eq!(info[0].sha256.len(), 64);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let (num, cat, tok) = (vec!["a".to_string()], vec![], default_missing_tokens());
        let p = write(&dir, "bad.csv", "a,y\n1,2\nabc,3\n");
        let e = load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap_err().to_string();
        assert!(e.contains("bad.csv:3") && e.contains("\"a\"") && e.contains("not a number"), "{e}");
        let p = write(&dir, "short.csv", "a,y\n1,2\n3\n");
        let e = load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap_err().to_string();
        assert!(e.contains("short.csv:3") && e.contains("malformed"), "{e}");
        let p = write(&dir, "nocol.csv", "b,y\n1,2\n");
        let e = load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap_err().to_string();
        assert!(e.contains("\"a\" not in header"), "{e}");
        let p = write(&dir, "inf.csv", "a,y\ninf,2\n");
        assert!(load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap_err().to_string().contains("finite"));
        let p = write(&dir, "noy.csv", "a,y\n1,\n");
        assert!(load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn gzip_files_are_read_and_hashed_as_stored() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"a,y\n1,2\n3,4\n").unwrap();
        let gz = enc.finish().unwrap();
        std::fs::write(&p, &gz).unwrap();
        let (num, cat, tok) = (vec!["a".to_string()], vec![], default_missing_tokens());
        let (t, info) = load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap();
        assert_eq!(t.target, vec![2.0, 4.0]);
        assert_eq!(info[0].sha256, crate::artifact::sha256_hex(&gz));
    }

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let (tr, te) = split_indices(100, 0.2, 7);
        assert_eq!((tr.len(), te.len()), (80, 20));
        let mut all: Vec<usize> = tr.iter().chain(&te).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(split_indices(100, 0.2, 7), (tr.clone(), te.clone()));
        assert_ne!(split_indices(100, 0.2, 8).1, te);
    }
}
