//! The typed events of `--log-format json`: every stderr line is a tracing JSON object whose
//! `fields` hold the `message`, the event's name (`event`) and its fields, e.g.
//! `{"level":"INFO","fields":{"message":"hot-swapped model","event":"model_swapped","model":..,
//! "from":..,"to":..},"target":..}`. Tests count events and read their fields instead of
//! matching log text ([`events`] on a finished run, [`Log::wait_event`] on a running one);
//! messages for the user (errors) are not logs and stay text.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `fields` of every JSON log line of `stderr` for which `keep` holds.
fn lines_where(stderr: &str, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let fields: Vec<Value> = stderr.lines().filter_map(fields_of).collect();
    assert!(
        !(fields.is_empty() && stderr.lines().any(|l| l.contains(" INFO ") || l.contains(" WARN "))),
        "stderr holds text logs, not JSON: run with --log-format json\n{stderr}"
    );
    fields.into_iter().filter(keep).collect()
}

/// The `fields` of one JSON log line.
fn fields_of(line: &str) -> Option<Value> {
    let mut v: Value = serde_json::from_str(line).ok()?;
    v.get_mut("fields").filter(|f| f.is_object()).map(Value::take)
}

/// The `fields` of every `name` event in `stderr` (a run with `--log-format json`), in order.
pub fn events(stderr: &str, name: &str) -> Vec<Value> {
    lines_where(stderr, |f| f["event"] == name)
}

/// A number field of an event (tracing writes integers as JSON numbers).
pub fn count(fields: &Value, key: &str) -> u64 {
    fields[key].as_u64().or_else(|| fields[key].as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| {
        panic!("event field {key:?} is not a count: {fields}");
    })
}

/// The stderr of a running child, read by a thread as it comes: wait for events while it
/// runs, then [`Log::finish`] for all of it.
pub struct Log {
    rx: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    text: String,
}

impl Log {
    /// Collect `child`'s stderr (spawned with `Stdio::piped()`).
    pub fn collect(child: &mut Child) -> Log {
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Log { rx, reader: Some(reader), text: String::new() }
    }

    fn push(&mut self, line: String) {
        self.text.push_str(&line);
        self.text.push('\n');
    }

    /// Wait until `n` logged lines (since the start) have `fields` for which `matches` holds;
    /// panics after `timeout`, or when the child closed its stderr first, showing the log so far.
    fn wait_until(&mut self, what: &str, n: usize, timeout: Duration, matches: impl Fn(&Value) -> bool) {
        let mut seen = lines_where(self.so_far(), &matches).len();
        let deadline = Instant::now() + timeout;
        while seen < n {
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    seen += usize::from(fields_of(&line).is_some_and(|f| matches(&f)));
                    self.push(line);
                }
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {timeout:?}; log so far:\n{}", self.text),
                Err(RecvTimeoutError::Disconnected) => panic!("no {what}: the process ended; its log:\n{}", self.text),
            }
        }
    }

    /// Wait until the child has logged a `name` event; returns its first one.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        self.wait_events(name, 1, timeout).remove(0)
    }

    /// Wait until the child has logged `n` `name` events; returns them all.
    pub fn wait_events(&mut self, name: &str, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_until(&format!("{n} {name:?} event(s)"), n, timeout, |f| f["event"] == name);
        events(&self.text, name)
    }

    /// What the child logged so far.
    pub fn so_far(&mut self) -> &str {
        while let Ok(line) = self.rx.try_recv() {
            self.push(line);
        }
        &self.text
    }

    /// The whole stderr, once the child has exited (waits for it to close stderr).
    pub fn finish(mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        while let Ok(line) = self.rx.try_recv() {
            self.push(line);
        }
        std::mem::take(&mut self.text)
    }
}
