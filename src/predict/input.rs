//! Reading input records on a blocking thread, so that `--follow` on a pipe or a growing file
//! never blocks the async side. Records arrive in order on a bounded channel.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Decide from the file extension (`.csv` → CSV, else JSON lines); on stdin from the first byte.
    Auto,
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// One item read from the input.
#[derive(Debug)]
pub enum Item {
    /// The CSV header.
    Header(csv::StringRecord),
    /// A CSV row and its 1-based line number.
    Csv(u64, csv::StringRecord),
    /// A JSON line and its 1-based line number.
    Json(u64, Vec<u8>),
    /// A line that could not be read as a record.
    Bad(u64, String, String),
}

/// Where records come from.
#[derive(Debug, Clone)]
pub struct Source {
    /// A path, or `-` for stdin.
    pub path: String,
    /// Keep reading at end of file (like `tail -f`); stdin ends at EOF regardless.
    pub follow: bool,
    /// Format.
    pub format: Format,
}

/// Reads a file and, at EOF, waits for more instead of ending (until `stop` is set).
struct Tail {
    file: std::fs::File,
    stop: Arc<AtomicBool>,
}

impl Read for Tail {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.file.read(buf)?;
            if n > 0 || self.stop.load(Ordering::Relaxed) {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Start the reader thread. Returns the receiving end and a stop flag (for followed files).
pub fn spawn(source: &Source) -> Result<(mpsc::Receiver<Item>, Arc<AtomicBool>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let (reader, format): (Box<dyn Read + Send>, Format) = if source.path == "-" {
        (Box::new(std::io::stdin()), source.format)
    } else {
        let path = PathBuf::from(&source.path);
        let file = std::fs::File::open(&path).map_err(|e| Error::io("open input", &path, e))?;
        let format = match source.format {
            Format::Auto if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => Format::Csv,
            Format::Auto => Format::Jsonl,
            f => f,
        };
        if source.follow {
            (Box::new(Tail { file, stop: stop.clone() }), format)
        } else {
            (Box::new(file), format)
        }
    };
    let (tx, rx) = mpsc::channel(4096);
    std::thread::Builder::new()
        .name("modelcast-input".into())
        .spawn(move || {
            let mut r = BufReader::with_capacity(1 << 16, reader);
            let format = match format {
                Format::Auto => match r.fill_buf() {
                    Ok(b) if b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{') => Format::Jsonl,
                    _ => Format::Csv,
                },
                f => f,
            };
            match format {
                Format::Csv => read_csv(r, &tx),
                _ => read_jsonl(r, &tx),
            }
        })
        .map_err(|e| Error::io("spawn input thread", &source.path, e))?;
    Ok((rx, stop))
}

fn read_jsonl(mut r: impl BufRead, tx: &mpsc::Sender<Item>) {
    let mut line_no = 0u64;
    loop {
        let mut buf = Vec::new();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.blocking_send(Item::Bad(line_no + 1, String::new(), format!("read error: {e}")));
                return;
            }
        }
        line_no += 1;
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if tx.blocking_send(Item::Json(line_no, buf)).is_err() {
            return;
        }
    }
}

fn read_csv(r: impl Read, tx: &mpsc::Sender<Item>) {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).has_headers(false).from_reader(r);
    let mut header_len = None;
    loop {
        let mut rec = csv::StringRecord::new();
        let line = rdr.position().line();
        let item = match rdr.read_record(&mut rec) {
            Ok(false) => return,
            Ok(true) => match header_len {
                None => {
                    header_len = Some(rec.len());
                    Item::Header(rec)
                }
                Some(n) if rec.len() != n => {
                    let text = rec.iter().collect::<Vec<_>>().join(",");
                    Item::Bad(line, text, format!("malformed CSV row: {} fields, the header has {n}", rec.len()))
                }
                Some(_) => Item::Csv(line, rec),
            },
            Err(e) => Item::Bad(line, String::new(), format!("malformed CSV row: {e}")),
        };
        if tx.blocking_send(item).is_err() {
            return;
        }
    }
}
