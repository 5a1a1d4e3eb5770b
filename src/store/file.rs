//! `file://PATH`: a directory as a model store (the embedded default, `file://models`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A model store in a local directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> FileStore {
        FileStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `file://ROOT`.
    pub fn uri(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        crate::util::ids::check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Write to a temporary file, fsync it, then hard-link it into place: the link fails if the key
    /// exists, and readers never see a partial file.
    pub fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let dest = self.path_of(key)?;
        if dest.exists() {
            return Err(Error::AlreadyExists { uri: self.uri(), key: key.to_string() });
        }
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            crate::artifact::new_version(chrono::Utc::now(), key.as_bytes())
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("write", &tmp, e));
        }
        let linked = std::fs::hard_link(&tmp, &dest);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists { uri: self.uri(), key: key.to_string() })
            }
            Err(e) => Err(Error::io("link", &dest, e)),
        }
    }

    /// Remove `key` (internal keys only: artifacts are never deleted).
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))
    }

    /// Read `key`.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path_of(key)?;
        std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(format!("{}/{key} does not exist", self.uri()))
            } else {
                Error::io("read", &path, e)
            }
        })
    }

    /// Keys under `prefix` (files only; names starting with `.` or `_` are internal and skipped).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_with(prefix, false)
    }

    /// Keys under `prefix`; with `internal`, names starting with `_` are listed too (never `.`:
    /// temporary files).
    pub fn list_with(&self, prefix: &str, internal: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || (name.starts_with('_') && !internal) {
                    continue;
                }
                let path = entry.path();
                let ft = entry.file_type().map_err(|e| Error::io("stat", &path, e))?;
                if ft.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        Ok(out)
    }
}
