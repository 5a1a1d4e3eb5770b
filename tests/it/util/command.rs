//! [`TestCommand`]: the real `modelcast` binary, run in a sandbox, with assertions that show
//! the whole run when they fail (ripgrep's `TestCommand`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use serde_json::Value;

use super::bin;
use super::logs::events;

/// `modelcast ARGS` in a directory, free of the caller's `MODELCAST_*`, `RUST_LOG` and colours.
#[derive(Debug)]
pub struct TestCommand {
    dir: PathBuf,
    cmd: Command,
}

impl TestCommand {
    pub fn new(dir: &Path, args: &[&str]) -> TestCommand {
        let mut cmd = Command::new(bin());
        cmd.current_dir(dir).args(args).env_remove("RUST_LOG").env("NO_COLOR", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("MODELCAST_") && !k.starts_with("MODELCAST_TEST") && k != "MODELCAST_REQUIRE_SERVICES" {
                cmd.env_remove(k);
            }
        }
        TestCommand { dir: dir.to_path_buf(), cmd }
    }

    /// The underlying command (stdio, ...).
    pub fn cmd(&mut self) -> &mut Command {
        &mut self.cmd
    }

    pub fn args<I: IntoIterator<Item = A>, A: AsRef<OsStr>>(&mut self, args: I) -> &mut TestCommand {
        self.cmd.args(args);
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut TestCommand {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut TestCommand {
        self.cmd.env_remove(key);
        self
    }

    /// Start it (stdio as set on [`TestCommand::cmd`]).
    pub fn spawn(&mut self) -> Child {
        self.cmd.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.cmd))
    }

    /// Run it to the end, whatever its exit status.
    pub fn output(&mut self) -> Run {
        let output = self.cmd.output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.cmd));
        Run { output, shown: format!("{:?}\ncwd: {}", self.cmd, self.dir.display()) }
    }

    /// Run it and panic, showing the run, unless it exited 0.
    pub fn assert_ok(&mut self) -> Run {
        self.output().assert_ok()
    }

    /// Run it and panic, showing the run, unless it exited with `code`.
    pub fn assert_exit_code(&mut self, code: i32) -> Run {
        self.output().assert_exit_code(code)
    }
}

/// A finished run: its exit status, stdout and stderr.
pub struct Run {
    pub output: Output,
    shown: String,
}

impl From<Output> for Run {
    /// A run of a child started with [`TestCommand::spawn`].
    fn from(output: Output) -> Run {
        Run { output, shown: "a spawned modelcast".into() }
    }
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Panic, showing the run, unless it exited 0.
    pub fn assert_ok(self) -> Run {
        if !self.output.status.success() {
            panic!("{}", self.show("expected success"));
        }
        self
    }

    /// Panic, showing the run, unless it exited with `code`.
    pub fn assert_exit_code(self, code: i32) -> Run {
        if self.code() != Some(code) {
            panic!("{}", self.show(&format!("expected exit code {code}")));
        }
        self
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// stdout as JSON lines.
    pub fn stdout_json(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}")))
            .collect()
    }

    /// stdout as one JSON document (`--json` reports).
    pub fn stdout_doc(&self) -> Value {
        serde_json::from_slice(&self.output.stdout).unwrap_or_else(|e| panic!("{}", self.show(&format!("{e}"))))
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The `fields` of every `name` event the run logged (it ran with `--log-format json`).
    pub fn events(&self, name: &str) -> Vec<Value> {
        events(&self.stderr(), name)
    }

    fn show(&self, what: &str) -> String {
        format!(
            "\n\n===== {} =====\n{what}, got {}\n\nstdout:\n{}\n\nstderr:\n{}\n=====\n",
            self.shown,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }
}
