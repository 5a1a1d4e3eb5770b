//! The embedded default's message channel: append-only JSON-lines logs in the store directory
//! (`<store>/_bus/<topic>.jsonl`), one per topic. Appends are single `write` calls on a file opened
//! with `O_APPEND`, so concurrent writers never interleave within a line; readers only take
//! complete lines.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One append-only log file.
#[derive(Debug, Clone)]
pub struct LocalLog {
    path: PathBuf,
}

impl LocalLog {
    /// The log of `topic` under `dir`.
    pub fn new(dir: &Path, topic: &str) -> LocalLog {
        LocalLog { path: dir.join(format!("{topic}.jsonl")) }
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `lines` (each without its newline), durably.
    pub fn append(&self, lines: &[Vec<u8>]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.extend_from_slice(l);
            buf.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("open", &self.path, e))?;
        f.write_all(&buf).map_err(|e| Error::io("append", &self.path, e))?;
        f.sync_data().map_err(|e| Error::io("sync", &self.path, e))
    }

    /// Complete lines from byte `offset` on, and the offset after the last complete line.
    pub fn read_from(&self, offset: u64) -> Result<(Vec<Vec<u8>>, u64)> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
            Err(e) => return Err(Error::io("open", &self.path, e)),
        };
        let len = f.metadata().map_err(|e| Error::io("stat", &self.path, e))?.len();
        if len <= offset {
            return Ok((Vec::new(), offset));
        }
        f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", &self.path, e))?;
        let mut buf = Vec::with_capacity((len - offset) as usize);
        f.read_to_end(&mut buf).map_err(|e| Error::io("read", &self.path, e))?;
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines = buf[..complete].split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        Ok((lines, offset + complete as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_read_complete_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::new(dir.path(), "train");
        assert_eq!(log.read_from(0).unwrap().0.len(), 0);
        log.append(&[b"a".to_vec(), b"b".to_vec()]).unwrap();
        let (lines, off) = log.read_from(0).unwrap();
        assert_eq!(lines, vec![b"a".to_vec(), b"b".to_vec()]);
        // a partial line (a writer mid-append) is not returned
        std::fs::OpenOptions::new().append(true).open(log.path()).unwrap().write_all(b"par").unwrap();
        assert_eq!(log.read_from(off).unwrap(), (vec![], off));
        std::fs::OpenOptions::new().append(true).open(log.path()).unwrap().write_all(b"tial\n").unwrap();
        assert_eq!(log.read_from(off).unwrap().0, vec![b"partial".to_vec()]);
    }
}
