//! Model stores: where artifacts live. Chosen by URL scheme: `file://PATH` ([`FileStore`]) or
//! `s3://bucket/prefix` ([`s3::S3Store`]).
//!
//! The contract every backend keeps (and `tests/` checks against each): keys are written once
//! (`put_if_absent` never overwrites, and a half-written object is never visible under its
//! key), `get` returns exactly what was put, `list` returns keys sorted, and
//! [`Store::get_verified`] refuses bytes whose sha256 differs from the announced one.

pub mod file;
pub mod s3;

pub use file::FileStore;

use crate::error::{Error, Result};
use crate::util::hash::sha256_hex;

/// Settings for opening a store (only S3 uses them).
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// S3 endpoint override (MinIO, garage...). Falls back to `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// AWS region (falls back to the standard chain, then `us-east-1`).
    pub region: Option<String>,
    /// Path-style addressing (default: on when an endpoint is set).
    pub path_style: Option<bool>,
    /// `when_required` (default with a custom endpoint) or `when_supported` (AWS default).
    pub checksums: Option<String>,
    /// Bound on attempts for transient errors.
    pub max_attempts: Option<u32>,
    /// Static credentials used instead of the standard AWS chain (tests, explicit settings).
    pub credentials: Option<StaticCredentials>,
    /// The operator declares the server's conditional writes atomic (`--s3-atomic-writes`).
    pub atomic_writes: bool,
}

/// An access key pair given explicitly; the secret never prints.
#[derive(Clone)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// An opened model store.
pub enum Store {
    /// A directory on the local filesystem.
    File(FileStore),
    /// An S3 bucket (AWS, MinIO, garage, any S3-compatible server).
    S3(s3::S3Store),
}

impl Store {
    /// Open the store named by `url`.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Store> {
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(Error::Usage(format!("store URL {url:?} has no path; try file://models")));
            }
            Ok(Store::File(FileStore::new(path)))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            Ok(Store::S3(s3::S3Store::open(rest, opts).await?))
        } else {
            Err(Error::Usage(format!(
                "unsupported store URL {url:?}: use file://PATH (e.g. file://models) or s3://BUCKET/PREFIX"
            )))
        }
    }

    /// The store's URI, for messages (never contains credentials).
    pub fn uri(&self) -> String {
        match self {
            Store::File(s) => s.uri(),
            Store::S3(s) => s.uri(),
        }
    }

    /// The directory of a file store (`None` for S3).
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match self {
            Store::File(s) => Some(s.root()),
            Store::S3(_) => None,
        }
    }

    /// Full URI of `key`.
    pub fn uri_of(&self, key: &str) -> String {
        format!("{}/{}", self.uri().trim_end_matches('/'), key)
    }

    /// Write `bytes` under `key` unless the key exists ([`Error::AlreadyExists`] then).
    pub async fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Store::File(s) => s.put_if_absent(key, bytes),
            Store::S3(s) => s.put_if_absent(key, bytes).await,
        }
    }

    /// Whether two writers of one key cannot both succeed with [`Store::put_if_absent`]: always
    /// for a file store (hard links); for S3 see [`s3::S3Store::atomic_writes`].
    pub async fn atomic_put_if_absent(&self, probe_prefix: &str) -> Result<s3::Atomicity> {
        match self {
            Store::File(_) => Ok(s3::Atomicity::Atomic),
            Store::S3(s) => s.atomic_writes(probe_prefix).await,
        }
    }

    /// Check that objects can be written here: put a probe under `_check/` and delete it.
    pub async fn check_writable(&self) -> Result<()> {
        let key = format!("_check/{}.probe", crate::artifact::new_version(chrono::Utc::now(), b"check"));
        self.put_if_absent(&key, b"modelcast write check").await?;
        match self {
            Store::File(s) => s.delete(&key),
            Store::S3(s) => s.delete(&key).await,
        }
    }

    /// Read `key`; [`Error::NotFound`] when absent.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        match self {
            Store::File(s) => s.get(key),
            Store::S3(s) => s.get(key).await,
        }
    }

    /// Read `key` and check its sha256 against `sha256` (hex).
    pub async fn get_verified(&self, key: &str, sha256: &str) -> Result<Vec<u8>> {
        let bytes = self.get(key).await?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(sha256) {
            return Err(Error::artifact(
                self.uri_of(key),
                format!("sha256 mismatch: announced {sha256}, stored object has {actual} (tampered or truncated)"),
            ));
        }
        Ok(bytes)
    }

    /// Keys under `prefix`, sorted; internal keys (a segment starting with `_` or `.`, such as
    /// the alias log `_aliases/`) are left out.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = match self {
            Store::File(s) => s.list(prefix)?,
            Store::S3(s) => s.list(prefix).await?,
        };
        keys.retain(|k| !k.split('/').any(|seg| seg.starts_with('_') || seg.starts_with('.')));
        keys.sort();
        Ok(keys)
    }

    /// Keys under `prefix`, sorted, internal ones included.
    pub async fn list_internal(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = match self {
            Store::File(s) => s.list_with(prefix, true)?,
            Store::S3(s) => s.list(prefix).await?,
        };
        keys.sort();
        Ok(keys)
    }

    /// The artifact key of `version` (`NAME/DATE/VERSION.json`) of model `name` (`None`: of any
    /// model), if stored. The one place a version id becomes a key.
    pub async fn key_of_version(&self, name: Option<&str>, version: &str) -> Result<Option<String>> {
        let file = format!("/{version}.json");
        let prefix = name.map(|n| format!("{n}/")).unwrap_or_default();
        Ok(self.list(&prefix).await?.into_iter().find(|k| k.ends_with(&file)))
    }

    /// The newest artifact key of model `name` (keys sort by creation time), if any.
    pub async fn latest(&self, name: &str) -> Result<Option<String>> {
        Ok(self.list(&format!("{name}/")).await?.into_iter().rfind(|k| k.ends_with(".json")))
    }
}
