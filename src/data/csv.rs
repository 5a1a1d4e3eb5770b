//! The CSV reader: files (plain or gzip) into a [`Table`], parsed in parallel chunks in file
//! order, each file hashed as it is read (the artifact records the hashes).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::cells::{is_missing, parse_number};
use super::{ColumnSpec, Table};
use crate::error::{Error, Result};
use crate::util::threads::default_threads;

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

pub(crate) fn parse_parallel(
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
        let t = cell(pos.target);
        let y = match spec.target_kind {
            crate::params::Target::Number => number(t),
            _ if is_missing(t, spec.missing_tokens) => Ok(None),
            kind => kind.code_text(t.trim()).map(Some),
        }
        .map_err(|m| (line, format!("target {:?}: {m}", spec.target)))?
        .ok_or_else(|| (line, format!("target {:?} is missing; every training row needs one", spec.target)))?;
        table.target.push(y);
    }
    Ok((table, bytes.iter().filter(|&&b| b == b'\n').count() as u64))
}
