//! Tabular data as the training pipeline reads it: typed columns, blocks and row selections
//! ([`Table`], [`Blocks`], [`Mask`], [`Rows`]); the readers that fill them ([`csv`], [`json`]);
//! the cell rules they share ([`cells`]); raw rows for the gate ([`raw`]); the held-out split
//! ([`split`]); and the on-disk spool of a topic's rows ([`spool`]).
//!
//! Columns are stored column-wise: numbers as `f64` with `NaN` for "missing", categories
//! as interned codes. This keeps a million-row table a few tens of megabytes.
//!
//! Architecture invariant: `data` knows files (the CSV reader, the spool) but no network, no
//! model and no message; it imports only `params`, `util` and `error`.

pub mod cells;
pub mod csv;
pub mod json;
pub mod raw;
pub mod split;
pub mod spool;

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::Result;

pub use cells::{is_missing, parse_number};
pub use csv::{load_csv, load_csv_observed, read_csv, FileInfo};
pub use json::{parse_json_row, JsonRow};
pub use raw::{raw_rows_of, read_rows, RawRows};
pub use split::{held_out, held_out_count, split_indices};

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
    /// The target column (never missing).
    pub target: &'a str,
    /// How a target cell becomes its value: the number, or the class index.
    pub target_kind: &'a crate::params::Target,
    /// Field delimiter.
    pub delimiter: u8,
    /// Cell values that mean "missing".
    pub missing_tokens: &'a [String],
}

impl<'a> ColumnSpec<'a> {
    /// The columns and reading rules a params file names.
    pub fn of(params: &'a crate::params::Params) -> ColumnSpec<'a> {
        ColumnSpec {
            numeric: params.numeric(),
            categorical: params.categorical(),
            target: params.target(),
            target_kind: params.target_kind(),
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

#[cfg(test)]
mod tests {
    use super::csv::parse_parallel;
    use super::*;
    use crate::params::default_missing_tokens;
    use crate::util::rng::SplitMix64;
    use std::path::Path;

    fn spec<'a>(num: &'a [String], cat: &'a [String], tokens: &'a [String]) -> ColumnSpec<'a> {
        ColumnSpec {
            numeric: num,
            categorical: cat,
            target: "y",
            target_kind: &crate::params::Target::Number,
            delimiter: b',',
            missing_tokens: tokens,
        }
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
        assert_eq!(info[0].sha256, crate::util::hash::sha256_hex(&gz));
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
