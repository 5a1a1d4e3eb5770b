//! The one error type of the library, with the context a user needs to act on it.
//!
//! Every variant says what failed and where (file, key, URI, topic). None of them
//! carries a secret: values from `kafka_config.yaml` and AWS credentials never reach
//! an error message.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in modelcast.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file (params, kafka config) is missing, malformed or invalid.
    #[error("{path}: {key}: {message}")]
    Config {
        /// The file the setting came from.
        path: PathBuf,
        /// The key (dotted path) that is wrong, or `-` for the whole file.
        key: String,
        /// What is expected.
        message: String,
    },
    /// A command-line value is invalid (bad URL, conflicting flags).
    #[error("{0}")]
    Usage(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing ("read", "create", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Input data (CSV or JSON lines) is malformed.
    #[error("{source_name}:{line}: {message}")]
    Data {
        /// File name or `-` for stdin.
        source_name: String,
        /// 1-based line number (0 when unknown).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Fitting or evaluating a model failed (bad hyperparameters, degenerate data).
    #[error("model: {0}")]
    Model(String),
    /// A model artifact could not be read, verified or validated.
    #[error("artifact {uri}: {reason}")]
    Artifact {
        /// Where the artifact lives.
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// The model store failed.
    #[error("store {uri}: {message}")]
    Store {
        /// Store URI (never containing credentials).
        uri: String,
        /// What failed and how to fix it.
        message: String,
        /// Whether retrying may help (network hiccup, throttling).
        transient: bool,
    },
    /// A key that should be written once already exists.
    #[error("store {uri}: {key} already exists; artifacts are never overwritten")]
    AlreadyExists {
        /// Store URI.
        uri: String,
        /// The key.
        key: String,
    },
    /// Nothing found where something was expected (no model announced yet, unknown version).
    #[error("{0}")]
    NotFound(String),
    /// An alias move lost a race with a concurrent move (exit code 5); nothing of it applied.
    #[error("alias conflict: {0}")]
    Conflict(String),
    /// `modelcast check` found problems (listed on stdout).
    #[error("{0} check(s) failed (see the list above)")]
    Checks(usize),
    /// The message bus (local log or Kafka) failed.
    #[error("bus {target}: {message}")]
    Bus {
        /// Topic, log file or broker involved.
        target: String,
        /// What failed and how to fix it.
        message: String,
    },
    /// A background task (a blocking fit, a read) panicked or was cancelled.
    #[error("{what} task failed: {message}")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// The join error.
        message: String,
    },
    /// Registering or serving the Prometheus metrics failed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// Serializing a value failed (should not happen for our own types).
    #[error("encode {what}: {source}")]
    Encode {
        /// What we were encoding.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Shorthand for a [`Error::Config`].
    pub fn config(path: impl Into<PathBuf>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { path: path.into(), key: key.into(), message: message.into() }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// Shorthand for an [`Error::Artifact`].
    pub fn artifact(uri: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Artifact { uri: uri.into(), reason: reason.into() }
    }

    /// Process exit code for this error: 2 for usage and configuration errors, 5 for a lost
    /// alias race, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. } | Error::Usage(_) => 2,
            Error::Conflict(_) => 5,
            _ => 1,
        }
    }

    /// Whether retrying the operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store { transient: true, .. })
    }
}
