//! Helpers: run the real binary in a fresh temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.path()).args(args).env_remove("RUST_LOG").env("NO_COLOR", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("MODELCAST_") && !k.starts_with("MODELCAST_TEST") && k != "MODELCAST_REQUIRE_SERVICES" {
                c.env_remove(k);
            }
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
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

    pub fn log_lines(&self, topic: &str) -> Vec<serde_json::Value> {
        let p = self.path().join("models/_bus").join(format!("{topic}.jsonl"));
        std::fs::read_to_string(p).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

pub fn stdout_json(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
