//! Tabular data: CSV files into typed columns, and the held-out split. No network.
//!
//! Columns are stored column-wise: numbers as `f64` with `NaN` for "missing", categories
//! as interned codes. This keeps a million-row table a few tens of megabytes.

use std::borrow::Cow;
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

    /// A column from its dictionary (distinct values, in code order) and codes.
    pub fn from_parts(values: Vec<String>, codes: Vec<u32>) -> CategoricalColumn {
        let index = values.iter().cloned().zip(0u32..).collect();
        CategoricalColumn { values, codes, index }
    }

    fn intern(&mut self, v: &str) -> u32 {
        match self.index.get(v) {
            Some(&c) => c,
            None => {
                let c = self.values.len() as u32;
                self.values.push(v.to_string());
                self.index.insert(v.to_string(), c);
                c
            }
        }
    }

    /// Append rows `range` of `src`, re-coding its values into this column's dictionary.
    pub fn append_range(&mut self, src: &CategoricalColumn, range: std::ops::Range<usize>) {
        let mut map: Vec<Option<u32>> = vec![None; src.values.len()];
        self.codes.reserve(range.len());
        for &c in &src.codes[range] {
            let code = match c {
                MISSING_CODE => MISSING_CODE,
                c => *map[c as usize].get_or_insert_with(|| self.intern(&src.values[c as usize])),
            };
            self.codes.push(code);
        }
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
/// in-memory [`Table`] is one block; a spool is many, so its rows are never all in memory at
/// once.
///
/// Invariant: every block but the last holds a multiple of [`SEGMENT_ROWS`] rows, so the
/// statistics, computed per segment of [`SEGMENT_ROWS`] rows and merged in segment order, are
/// the same numbers however the rows are blocked.
pub trait Blocks: Sync {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Number of blocks.
    fn block_count(&self) -> usize;
    /// Block `i`: the index of its first row, and its rows.
    fn block(&self, i: usize) -> Result<(usize, Cow<'_, Table>)>;
    /// Call `f` with each block in row order: the index of its first row, and the block.
    fn for_each_block(&self, f: &mut dyn FnMut(usize, &Table) -> Result<()>) -> Result<()> {
        for i in 0..self.block_count() {
            let (first, t) = self.block(i)?;
            f(first, &t)?;
        }
        Ok(())
    }
}

impl Blocks for Table {
    fn rows(&self) -> usize {
        self.len()
    }

    fn block_count(&self) -> usize {
        1
    }

    fn block(&self, _: usize) -> Result<(usize, Cow<'_, Table>)> {
        Ok((0, Cow::Borrowed(self)))
    }
}

/// Rows per statistics segment: partial sums are formed per segment (rows `k·SEGMENT_ROWS ..`
/// of the whole data) and merged in segment order, so results do not depend on the number of
/// threads, the blocking or the CSV chunking.
pub const SEGMENT_ROWS: usize = 16_384;

/// The threads the statistics passes and the CSV parser use: the machine's parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16)
}

/// Map every block of `blocks` on up to `threads` threads and hand the results to `reduce` in
/// block order. Blocks are taken in waves of a few per thread, so at most one wave of results
/// waits in memory, and the order of `reduce` calls never depends on scheduling.
pub fn map_blocks<T: Send>(
    blocks: &dyn Blocks,
    threads: usize,
    map: &(dyn Fn(usize, &Table) -> Result<T> + Sync),
    reduce: &mut dyn FnMut(T) -> Result<()>,
) -> Result<()> {
    let count = blocks.block_count();
    let one = |i: usize| -> Result<T> {
        let (first, t) = blocks.block(i)?;
        map(first, &t)
    };
    let threads = threads.max(1);
    if threads == 1 || count <= 1 {
        for i in 0..count {
            reduce(one(i)?)?;
        }
        return Ok(());
    }
    let wave = threads * 4;
    for start in (0..count).step_by(wave) {
        let end = (start + wave).min(count);
        let next = std::sync::atomic::AtomicUsize::new(start);
        let mut done: Vec<(usize, Result<T>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.min(end - start))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= end {
                                return out;
                            }
                            out.push((i, one(i)));
                        }
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        });
        done.sort_by_key(|(i, _)| *i);
        for (_, r) in done {
            reduce(r?)?;
        }
    }
    Ok(())
}

/// The part of the sorted row list `rows` that falls in a block of `len` rows starting at `first`.
pub fn rows_in_block(rows: &[usize], first: usize, len: usize) -> &[usize] {
    let lo = rows.partition_point(|&r| r < first);
    let hi = rows.partition_point(|&r| r < first + len);
    &rows[lo..hi]
}

/// A set of row indices as a bitset of `n` bits: the held-out rows, in `n / 8` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    words: Vec<u64>,
    /// Set bits before each word.
    before: Vec<u64>,
    len: usize,
}

impl Mask {
    fn from_words(words: Vec<u64>, len: usize) -> Mask {
        let mut before = Vec::with_capacity(words.len());
        let mut total = 0u64;
        for w in &words {
            before.push(total);
            total += u64::from(w.count_ones());
        }
        Mask { words, before, len }
    }

    /// Whether row `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        i < self.len && self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Rows in the set before row `i`.
    pub fn rank(&self, i: usize) -> usize {
        let i = i.min(self.len);
        let (w, b) = (i / 64, i % 64);
        if w >= self.words.len() {
            return self.count();
        }
        let low = if b == 0 { 0 } else { self.words[w] & ((1u64 << b) - 1) };
        (self.before[w] + u64::from(low.count_ones())) as usize
    }

    /// Rows in the set.
    pub fn count(&self) -> usize {
        self.words.last().map_or(0, |w| *self.before.last().unwrap_or(&0) + u64::from(w.count_ones())) as usize
    }

    /// Rows the set is over (set or not).
    pub fn universe(&self) -> usize {
        self.len
    }
}

/// A selection of rows by index: every row, a sorted list, or the rows a [`Mask`] holds (or
/// does not hold). The held-out split is a mask, so neither side needs a per-row index list.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// Rows `0..n`.
    All(usize),
    /// These rows, sorted.
    List(&'a [usize]),
    /// The rows in the mask.
    In(&'a Mask),
    /// The rows of `0..mask.universe()` not in the mask.
    NotIn(&'a Mask),
}

impl Rows<'_> {
    /// Number of rows selected.
    pub fn len(&self) -> usize {
        match self {
            Rows::All(n) => *n,
            Rows::List(l) => l.len(),
            Rows::In(m) => m.count(),
            Rows::NotIn(m) => m.universe() - m.count(),
        }
    }

    /// Whether no row is selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Selected rows before row `i`.
    pub fn rank(&self, i: usize) -> usize {
        match self {
            Rows::All(n) => i.min(*n),
            Rows::List(l) => l.partition_point(|&r| r < i),
            Rows::In(m) => m.rank(i),
            Rows::NotIn(m) => i.min(m.universe()) - m.rank(i),
        }
    }

    /// Replace `out` with the selected rows in `first..first + len`, as offsets from `first`.
    pub fn local(&self, first: usize, len: usize, out: &mut Vec<usize>) {
        out.clear();
        match self {
            Rows::All(n) => out.extend(0..len.min(n.saturating_sub(first))),
            Rows::List(l) => out.extend(rows_in_block(l, first, len).iter().map(|&i| i - first)),
            Rows::In(m) => out.extend((0..len).filter(|&r| m.contains(first + r))),
            Rows::NotIn(m) => {
                out.extend((0..len.min(m.universe().saturating_sub(first))).filter(|&r| !m.contains(first + r)))
            }
        }
    }

    /// The selected rows as a sorted list.
    pub fn to_vec(&self) -> Vec<usize> {
        let n = match self {
            Rows::All(n) => *n,
            Rows::List(l) => return l.to_vec(),
            Rows::In(m) | Rows::NotIn(m) => m.universe(),
        };
        let mut out = Vec::with_capacity(self.len());
        self.local(0, n, &mut out);
        out
    }
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

    /// Append rows `range` of `other` (a table with the same columns).
    pub fn append_range(&mut self, other: &Table, range: std::ops::Range<usize>) {
        for (dst, src) in self.numeric.iter_mut().zip(&other.numeric) {
            dst.extend_from_slice(&src[range.clone()]);
        }
        for (dst, src) in self.categorical.iter_mut().zip(&other.categorical) {
            dst.append_range(src, range.clone());
        }
        self.target.extend_from_slice(&other.target[range]);
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
    on_read: &(dyn Fn(u64) + Sync),
) -> Result<(Table, Vec<FileInfo>)> {
    let mut table = Table::empty(spec);
    let infos = read_csv(paths, spec, on_read, default_threads(), &mut |t| {
        table.append_range(&t, 0..t.len());
        Ok(())
    })?;
    if table.is_empty() {
        return Err(Error::Data { source_name: join_paths(paths), line: 0, message: "no data rows".into() });
    }
    Ok((table, infos))
}

/// Bytes of CSV text a parser thread takes at a time.
const CSV_CHUNK_BYTES: usize = 1 << 21;

/// Read `paths` (same header; gzip by extension), the columns of `spec` only, parsing on
/// `threads` threads, and hand the rows to `sink` in file order, a table of a few thousand rows
/// at a time. The files are read (and hashed, for [`FileInfo`]) on one thread, cut at record
/// boundaries into chunks of about 2 MB, and parsed in parallel; at most a few chunks per thread
/// are in flight, so memory does not grow with the file. Errors name the file and line, as
/// [`load_csv`]'s do; the first bad row in file order is the one reported.
pub fn read_csv(
    paths: &[impl AsRef<Path>],
    spec: &ColumnSpec<'_>,
    on_read: &(dyn Fn(u64) + Sync),
    threads: usize,
    sink: &mut dyn FnMut(Table) -> Result<()>,
) -> Result<Vec<FileInfo>> {
    let mut infos = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let hashing =
            HashingReader { inner: std::io::BufReader::with_capacity(1 << 16, file), hasher: Sha256::new(), on_read };
        let rows = if path.extension().is_some_and(|e| e == "gz") {
            let mut gz = flate2::read::GzDecoder::new(hashing);
            let rows = parse_parallel(path, &mut gz, spec, threads, CSV_CHUNK_BYTES, sink)?;
            finish_hash(gz.into_inner(), path, rows, &mut infos)?
        } else {
            let mut r = hashing;
            let rows = parse_parallel(path, &mut r, spec, threads, CSV_CHUNK_BYTES, sink)?;
            finish_hash(r, path, rows, &mut infos)?
        };
        tracing::debug!(path = %path.display(), rows, "read");
    }
    Ok(infos)
}

/// Reads through and hashes every byte, so a file is read once for both parsing and provenance.
struct HashingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    on_read: &'a (dyn Fn(u64) + Sync),
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

/// Where the spec's columns are in a file's records.
struct Positions {
    numeric: Vec<usize>,
    categorical: Vec<usize>,
    target: usize,
    fields: usize,
}

/// A parsed chunk and the newlines it spans, or the (chunk-relative) line and message of its
/// first bad row.
type Chunk = std::result::Result<(Table, u64), (u64, String)>;

/// Append up to `want` bytes from `input` to `buf`; `true` at the end of the input.
fn fill(input: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let start = buf.len();
    buf.resize(start + want, 0);
    loop {
        match input.read(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(n == 0);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
}

/// The end of the last complete record of `buf` (which starts at a record boundary), if one
/// ends before the buffer does. Text without quotes is cut after its last newline; text with
/// quotes is walked by the CSV parser itself, so a quoted newline is never a cut.
fn record_boundary(buf: &[u8], delimiter: u8) -> Option<usize> {
    if !buf.contains(&b'"') {
        return buf.iter().rposition(|&b| b == b'\n').map(|p| p + 1);
    }
    let mut rdr = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(buf);
    let mut rec = csv::ByteRecord::new();
    let mut last = None;
    while let Ok(true) = rdr.read_byte_record(&mut rec) {
        let end = rdr.position().byte() as usize;
        // a record that ends at the end of the buffer may be cut short: never a boundary
        if end >= buf.len() {
            break;
        }
        last = Some(end);
    }
    last
}

fn parse_parallel(
    path: &Path,
    input: &mut (dyn Read + Send),
    spec: &ColumnSpec<'_>,
    threads: usize,
    chunk: usize,
    sink: &mut dyn FnMut(Table) -> Result<()>,
) -> Result<u64> {
    let name = path.display().to_string();
    let data_err = |line: u64, message: String| Error::Data { source_name: name.clone(), line, message };
    let io = |e| Error::io("read", path, e);
    // the header: the first record
    let mut buf = Vec::new();
    let mut eof = false;
    while !eof && (buf.len() < 1 << 16 || !buf.contains(&b'\n')) {
        eof = fill(input, &mut buf, 1 << 16).map_err(io)?;
    }
    let (header, header_end) = {
        let mut rdr =
            csv::ReaderBuilder::new().delimiter(spec.delimiter).has_headers(false).from_reader(buf.as_slice());
        let mut rec = csv::ByteRecord::new();
        rdr.read_byte_record(&mut rec).map_err(|e| data_err(1, e.to_string()))?;
        let header = csv::StringRecord::from_byte_record(rec).map_err(|e| data_err(1, e.to_string()))?;
        (header, rdr.position().byte() as usize)
    };
    let find = |col: &str| -> Result<usize> {
        header.iter().position(|h| h.trim() == col).ok_or_else(|| {
            let have: Vec<&str> = header.iter().collect();
            data_err(1, format!("column {col:?} not in header; the header has {have:?} (check data.delimiter)"))
        })
    };
    let pos = Positions {
        numeric: spec.numeric.iter().map(|c| find(c)).collect::<Result<Vec<_>>>()?,
        categorical: spec.categorical.iter().map(|c| find(c)).collect::<Result<Vec<_>>>()?,
        target: find(spec.target)?,
        fields: header.len(),
    };
    let first_line = 1 + buf[..header_end].iter().filter(|&&b| b == b'\n').count() as u64;
    buf.drain(..header_end);
    let threads = threads.max(1);
    let in_flight = 2 * threads + 2;
    let delimiter = spec.delimiter;
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(threads);
    let work_rx = std::sync::Mutex::new(work_rx);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Chunk)>();
    let (ticket_tx, ticket_rx) = std::sync::mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = ticket_tx.send(());
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> std::io::Result<()> {
            let mut seq = 0;
            loop {
                while !eof && buf.len() < chunk {
                    let want = chunk - buf.len();
                    eof = fill(input, &mut buf, want)?;
                }
                if buf.is_empty() {
                    return Ok(());
                }
                let cut = if eof {
                    buf.len()
                } else {
                    match record_boundary(&buf, delimiter) {
                        Some(c) => c,
                        None => {
                            // a record longer than a chunk: read on
                            eof = fill(input, &mut buf, chunk)?;
                            continue;
                        }
                    }
                };
                let rest = buf.split_off(cut);
                if ticket_rx.recv().is_err() || work_tx.send((seq, std::mem::replace(&mut buf, rest))).is_err() {
                    return Ok(()); // the consumer stopped (an error)
                }
                seq += 1;
            }
        });
        for _ in 0..threads {
            let (work_rx, done_tx, pos) = (&work_rx, done_tx.clone(), &pos);
            s.spawn(move || {
                let mut stopped = false;
                loop {
                    let job = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, bytes)) = job else { return };
                    // after the consumer stopped, keep draining so that the reader is never stuck
                    if !stopped && done_tx.send((seq, parse_chunk(&bytes, pos, spec))).is_err() {
                        stopped = true;
                    }
                }
            });
        }
        drop(done_tx);
        let consumed = consume(done_rx, ticket_tx, first_line, sink, &data_err);
        let read = reader.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        let rows = consumed?;
        read.map_err(io)?;
        Ok(rows)
    })
}

/// Hand parsed chunks to `sink` in order; on the first error, stop (dropping the channels ends
/// the reader and the parsers).
fn consume(
    done: std::sync::mpsc::Receiver<(usize, Chunk)>,
    tickets: std::sync::mpsc::SyncSender<()>,
    first_line: u64,
    sink: &mut dyn FnMut(Table) -> Result<()>,
    data_err: &dyn Fn(u64, String) -> Error,
) -> Result<u64> {
    let mut pending = std::collections::BTreeMap::new();
    let (mut next, mut rows, mut line) = (0usize, 0u64, first_line);
    for (seq, chunk) in done.iter() {
        pending.insert(seq, chunk);
        while let Some(chunk) = pending.remove(&next) {
            match chunk {
                Ok((table, newlines)) => {
                    rows += table.len() as u64;
                    line += newlines;
                    sink(table)?;
                }
                Err((local, message)) => return Err(data_err(line + local - 1, message)),
            }
            next += 1;
            let _ = tickets.send(());
        }
    }
    Ok(rows)
}

/// Parse one chunk of whole records.
fn parse_chunk(bytes: &[u8], pos: &Positions, spec: &ColumnSpec<'_>) -> Chunk {
    let mut table = Table::empty(spec);
    let mut rdr =
        csv::ReaderBuilder::new().delimiter(spec.delimiter).has_headers(false).flexible(true).from_reader(bytes);
    let mut rec = csv::StringRecord::new();
    // a cell that reads as a finite number is not a missing token unless some token reads as
    // one (`NaN` does not): then the tokens need not be compared first
    let plain_numbers = !spec.missing_tokens.iter().any(|t| t.trim().parse::<f64>().is_ok_and(f64::is_finite));
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err((line, format!("malformed CSV row: {e}"))),
        }
        if rec.len() != pos.fields {
            return Err((
                line,
                format!("malformed CSV row: found record with {} fields, but the header has {}", rec.len(), pos.fields),
            ));
        }
        let cell = |i: usize| rec.get(i).unwrap_or("");
        let number = |text: &str| match text.parse::<f64>() {
            Ok(v) if plain_numbers && v.is_finite() => Ok(Some(v)),
            _ => parse_number(text, spec.missing_tokens),
        };
        for (j, &i) in pos.numeric.iter().enumerate() {
            let v = number(cell(i)).map_err(|m| (line, format!("column {:?}: {m}", spec.numeric[j])))?;
            table.numeric[j].push(v.unwrap_or(f64::NAN));
        }
        for (j, &i) in pos.categorical.iter().enumerate() {
            let c = cell(i);
            table.categorical[j].push(if is_missing(c, spec.missing_tokens) { None } else { Some(c.trim()) });
        }
        let y = number(cell(pos.target))
            .map_err(|m| (line, format!("target {:?}: {m}", spec.target)))?
            .ok_or_else(|| (line, format!("target {:?} is missing; every training row needs one", spec.target)))?;
        table.target.push(y);
    }
    Ok((table, bytes.iter().filter(|&&b| b == b'\n').count() as u64))
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

/// How many of `n` rows a fraction holds out: `round(n · fraction)`, at least 1 and at most `n - 1`.
pub fn held_out_count(n: usize, test_fraction: f64) -> usize {
    let k = ((n as f64) * test_fraction).round().max(1.0).min(n.saturating_sub(1).max(1) as f64) as usize;
    k.min(n)
}

/// The held-out rows of a deterministic split: exactly [`held_out_count`] of `n` rows, as a
/// bitset.
///
/// Selection sampling (Knuth's Algorithm S) driven by SplitMix64: row `i` is held out when the
/// next output modulo the rows left (`n - i`) is below the rows still to choose. One pass, no
/// permutation, `n / 8` bytes; a seed gives the same split on every platform and version.
pub fn held_out(n: usize, test_fraction: f64, seed: u64) -> Mask {
    let mut need = held_out_count(n, test_fraction) as u64;
    let mut words = vec![0u64; n.div_ceil(64)];
    let mut rng = SplitMix64::new(seed);
    for i in 0..n {
        if need == 0 {
            break;
        }
        let left = (n - i) as u64;
        if rng.next_u64() % left < need {
            words[i / 64] |= 1 << (i % 64);
            need -= 1;
        }
    }
    Mask::from_words(words, n)
}

/// The split of [`held_out`] as `(train, test)` row lists, each sorted.
pub fn split_indices(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mask = held_out(n, test_fraction, seed);
    (Rows::NotIn(&mask).to_vec(), Rows::In(&mask).to_vec())
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
    fn a_numeric_missing_token_is_missing_and_nan_text_is_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "d.csv", "a,y\n-999,1\n5,2\nNaN,3\n");
        let (num, cat) = (vec!["a".to_string()], vec![]);
        let tok = vec!["-999".to_string(), "NaN".to_string()];
        let (t, _) = load_csv(&[&p], &spec(&num, &cat, &tok)).unwrap();
        assert!(t.numeric[0][0].is_nan() && t.numeric[0][2].is_nan());
        assert_eq!(t.numeric[0][1], 5.0);
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

    /// Parse `text` with the parallel reader at a given chunk size and thread count.
    fn parse_with(text: &str, spec: &ColumnSpec<'_>, threads: usize, chunk: usize) -> Result<Table> {
        let mut table = Table::empty(spec);
        parse_parallel(Path::new("t.csv"), &mut text.as_bytes(), spec, threads, chunk, &mut |t| {
            table.append_range(&t, 0..t.len());
            Ok(())
        })?;
        Ok(table)
    }

    /// A table's contents, comparable (NaN, a missing value, is not equal to itself).
    type Bits = (Vec<Vec<u64>>, Vec<(Vec<String>, Vec<u32>)>, Vec<u64>);

    fn bits(t: &Table) -> Bits {
        (
            t.numeric.iter().map(|c| c.iter().map(|v| v.to_bits()).collect()).collect(),
            t.categorical.iter().map(|c| (c.values.clone(), c.codes.clone())).collect(),
            t.target.iter().map(|v| v.to_bits()).collect(),
        )
    }

    #[test]
    fn parallel_parsing_gives_the_same_table_for_any_chunking_and_threads() {
        // quoted fields with delimiters, quotes and newlines inside; CRLF and blank lines
        let mut text = String::from("a,c,\"y\"\r\n");
        for i in 0..300 {
            let c = match i % 4 {
                0 => "\"red, dark\"".to_string(),
                1 => "\"two\nlines\"".to_string(),
                2 => "\"say \"\"hi\"\"\"".to_string(),
                _ => "plain".to_string(),
            };
            let a = if i % 7 == 0 { String::new() } else { format!("{}.5", i) };
            text.push_str(&format!("{a},{c},{i}{}", if i % 3 == 0 { "\r\n" } else { "\n" }));
            if i % 50 == 0 {
                text.push('\n');
            }
        }
        let (num, cat, tok) = (vec!["a".to_string()], vec!["c".to_string()], default_missing_tokens());
        let spec = spec(&num, &cat, &tok);
        let want = parse_with(&text, &spec, 1, 1 << 20).unwrap();
        assert_eq!(want.len(), 300);
        assert_eq!(want.categorical[0].get(1), Some("two\nlines"));
        assert_eq!(want.categorical[0].get(2), Some("say \"hi\""));
        assert!(want.numeric[0][0].is_nan());
        for threads in [1, 2, 3] {
            for chunk in [1, 7, 64, 1000] {
                assert_eq!(bits(&parse_with(&text, &spec, threads, chunk).unwrap()), bits(&want), "{threads}/{chunk}");
            }
        }
    }

    #[test]
    fn parallel_parsing_names_the_first_bad_line_for_any_chunking() {
        let mut text = String::from("a,y\n");
        for i in 0..200 {
            text.push_str(&format!("{i},{i}\n"));
        }
        text.push_str("oops,1\n5,5\nbad,2\n");
        let (num, cat, tok) = (vec!["a".to_string()], vec![], default_missing_tokens());
        let spec = spec(&num, &cat, &tok);
        for threads in [1, 2, 4] {
            for chunk in [1, 16, 100, 1 << 16] {
                let e = parse_with(&text, &spec, threads, chunk).unwrap_err().to_string();
                assert!(e.contains("t.csv:202") && e.contains("oops"), "{threads}/{chunk}: {e}");
            }
        }
    }

    #[test]
    fn the_split_holds_out_exactly_round_n_fraction_rows() {
        for n in [3usize, 10, 99, 1000, 4097] {
            for fraction in [0.1, 0.2, 0.5, 0.9] {
                let m = held_out(n, fraction, 42);
                assert_eq!(m.count(), held_out_count(n, fraction), "{n} {fraction}");
                assert_eq!(held_out(n, fraction, 42), m, "deterministic");
                let listed: Vec<usize> = (0..n).filter(|&i| m.contains(i)).collect();
                assert_eq!(Rows::In(&m).to_vec(), listed);
                for i in [0, 1, n / 2, n] {
                    assert_eq!(m.rank(i), listed.partition_point(|&r| r < i));
                    assert_eq!(Rows::NotIn(&m).rank(i), i - m.rank(i));
                }
            }
        }
        // a fixed seed's split is a compatibility promise (the reference fixtures depend on it)
        assert_eq!(split_indices(10, 0.3, 42).1, held_out_list(10, 0.3, 42));
    }

    /// Algorithm S written out plainly, as scripts/sklearn_trees_reference.py does.
    fn held_out_list(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
        let mut rng = SplitMix64::new(seed);
        let mut need = held_out_count(n, fraction) as u64;
        (0..n)
            .filter(|&i| {
                if need == 0 {
                    return false;
                }
                let keep = rng.next_u64() % (n - i) as u64 >= need;
                if !keep {
                    need -= 1;
                }
                !keep
            })
            .collect()
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
