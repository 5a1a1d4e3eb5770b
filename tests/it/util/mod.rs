//! Helpers of every integration test, in one place (ripgrep's `tests/util.rs`): a [`Sandbox`]
//! (a fresh temp dir laid out as a clone) and a [`TestCommand`] running the real binary in it;
//! the loopback test bed ([`bed`]), Kafka readers and writers ([`kafka`]), records
//! ([`fixtures`]), the typed events of `--log-format json` ([`logs`]) and races that really
//! happen ([`race`]).

pub mod bed;
pub mod command;
pub mod fixtures;
pub mod kafka;
pub mod logs;
pub mod race;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub use command::{Run, TestCommand};

/// How long a test waits for what a healthy run does in seconds (a group join, a hot swap, a
/// topic filling up). Generous: a loaded 2-core CI machine is many times slower than an idle
/// one, and a failing test is the only thing that ever waits this long.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// The crate root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `modelcast` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modelcast"))
}

/// A temp dir holding a copy of params/ and data/, as a fresh clone would.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["params", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            for e in std::fs::read_dir(repo().join(sub)).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
            }
        }
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `modelcast ARGS` in this sandbox, with none of the caller's `MODELCAST_*` settings.
    pub fn command(&self, args: &[&str]) -> TestCommand {
        TestCommand::new(self.path(), args)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Append `line` and a newline to the file `rel` (e.g. an announcement to the local log).
    pub fn append_line(&self, rel: &str, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(self.path().join(rel)).unwrap();
        writeln!(f, "{line}").unwrap();
    }

    /// Files under models/<name>/ (artifacts).
    pub fn artifacts(&self, name: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = self.path().join("models").join(name);
        if let Ok(days) = std::fs::read_dir(&root) {
            for d in days {
                for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
                    let p = f.unwrap().path();
                    if p.extension().is_some_and(|e| e == "json") {
                        out.push(p);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The messages of the local bus topic `topic` (models/_bus/<topic>.jsonl).
    pub fn log_lines(&self, topic: &str) -> Vec<serde_json::Value> {
        let p = self.path().join("models/_bus").join(format!("{topic}.jsonl"));
        std::fs::read_to_string(p).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Poll `check` (every 100 ms) until it returns `Ok`, or panic after `timeout` with `what` and
/// the last reason `check` gave for not being there yet.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(t) => return t,
            Err(why) if Instant::now() >= deadline => panic!("{what}: not within {timeout:?}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A `127.0.0.1:PORT` with a port that was free a moment ago.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// Ask a child to stop (SIGTERM), as a supervisor would.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}

/// A name no other test (or earlier run on the same test bed) uses.
pub fn unique(tag: &str) -> String {
    format!("{tag}-{}", modelcast::artifact::new_version(chrono::Utc::now(), tag.as_bytes()).to_lowercase())
}

/// Run futures concurrently on the current task; their outputs, in order.
pub async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// The test bed's checkers venv python (onnxruntime, pypmml, tritonclient;
/// `MODELCAST_TEST_EXPORT_PYTHON`, made by `scripts/services.sh install`). Missing: `None` with a
/// note, or a failure when `MODELCAST_REQUIRE_SERVICES=1` unless the bed was told not to
/// install the checkers (`MODELCAST_EXPORT_CHECKS=0`).
pub fn checkers_python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("MODELCAST_TEST_EXPORT_PYTHON").map(PathBuf::from).filter(|p| p.is_file());
    let required = checkers_required();
    if python.is_none() {
        assert!(
            !required,
            "{test}: MODELCAST_REQUIRE_SERVICES=1 but the checkers venv is missing (MODELCAST_TEST_EXPORT_PYTHON; \
             scripts/services.sh install makes it, MODELCAST_EXPORT_CHECKS=0 skips it)"
        );
        eprintln!("{test}: skipped: no checkers venv (run scripts/test.sh, or scripts/services.sh install)");
    }
    python
}

/// Whether the checkers must be there: `MODELCAST_REQUIRE_SERVICES=1` and the bed was not told to
/// skip them (`MODELCAST_EXPORT_CHECKS=0`).
pub fn checkers_required() -> bool {
    std::env::var("MODELCAST_REQUIRE_SERVICES").as_deref() == Ok("1")
        && std::env::var("MODELCAST_EXPORT_CHECKS").as_deref() != Ok("0")
}
