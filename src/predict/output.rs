//! Where batch and `--follow` predictions go: stdout (JSON lines), the bus (`--sink bus`: the
//! local `app_messages` log or the Kafka topic), and rejected records to the dead-letter log
//! (local bus, always) or topic (Kafka with `--sink bus`).

use std::io::Write;

use crate::bus::Bus;

use crate::config::kafka::Topics;
use crate::error::{Error, Result};
use crate::events::{metrics, Event, RecordRejected};
use crate::messages::{Outgoing, OutputTopics, Scored};

/// The outputs of a batch or follow run.
pub struct Outputs {
    stdout: Option<std::io::BufWriter<std::io::Stdout>>,
    bus: Bus,
    to_bus: bool,
    topics: Topics,
    dead_letter_max_bytes: usize,
    flush_each: bool,
    /// stdout was closed by the reader (e.g. `| head`).
    pub closed: bool,
}

impl Outputs {
    /// Outputs to stdout (when `stdout`) and, when `to_bus`, to the bus. `flush_each` flushes
    /// stdout after every chunk (for `--follow`).
    pub fn new(bus: Bus, stdout: bool, to_bus: bool, flush_each: bool) -> Outputs {
        let (topics, dead_letter_max_bytes) = bus.output_topics();
        Outputs {
            stdout: stdout.then(|| std::io::BufWriter::with_capacity(1 << 16, std::io::stdout())),
            bus,
            to_bus,
            topics,
            dead_letter_max_bytes,
            flush_each,
            closed: false,
        }
    }

    /// The bus (for announcements).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Where dead letters go, for the final message.
    pub fn dead_letters_to(&self) -> String {
        match (&self.bus, self.to_bus) {
            (Bus::Local(_), _) => self.bus.describe(&self.topics.dead_letter),
            (Bus::Kafka(_), true) => format!("topic {}", self.topics.dead_letter),
            (Bus::Kafka(_), false) => "the log only (add --sink bus to send them to Kafka)".to_string(),
        }
    }

    /// Check the output topics exist (Kafka with `--sink bus`).
    pub async fn check(&self) -> Result<()> {
        if self.to_bus {
            self.bus.check_topics(&[&self.topics.app_messages, &self.topics.dead_letter]).await?;
        }
        Ok(())
    }

    /// Write one chunk; returns (predictions, rejections).
    pub async fn write(&mut self, chunk: Vec<Scored>) -> Result<(u64, u64)> {
        let topics = OutputTopics {
            app_messages: &self.topics.app_messages,
            dead_letter: &self.topics.dead_letter,
            dead_letter_max_bytes: self.dead_letter_max_bytes,
        };
        let local = matches!(self.bus, Bus::Local(_));
        let (mut ok, mut bad) = (0, 0);
        let mut lines = Vec::with_capacity(chunk.len());
        let mut msgs = Vec::new();
        for s in chunk {
            if let Scored::Rejected(d) = &s {
                bad += 1;
                RecordRejected { key: &d.key, reason: &d.reason }.emit();
                if local {
                    // the local dead-letter log keeps the documented JSON form, reason included
                    let json = serde_json::to_vec(d).map_err(|e| Error::Encode { what: "dead letter", source: e })?;
                    msgs.push(Outgoing { topic: topics.dead_letter, key: Vec::new(), payload: json, headers: vec![] });
                } else if self.to_bus {
                    msgs.push(Outgoing::of(s, &topics)?);
                }
                continue;
            }
            ok += 1;
            let m = Outgoing::of(s, &topics)?;
            // predictions: the same JSON on stdout and on the bus; a copy only when both want it
            match (self.stdout.is_some(), self.to_bus) {
                (true, true) => {
                    lines.push(m.payload.clone());
                    msgs.push(m);
                }
                (true, false) => lines.push(m.payload),
                (false, true) => msgs.push(m),
                (false, false) => {}
            }
        }
        if let Some(w) = &mut self.stdout {
            let r = write_lines(w, &lines).and_then(|_| if self.flush_each { w.flush() } else { Ok(()) });
            if let Err(e) = r {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    self.closed = true;
                } else {
                    return Err(Error::io("write", "stdout", e));
                }
            }
        }
        self.bus.produce(msgs).await?;
        let m = metrics();
        m.records_in.inc_by(ok + bad);
        m.predictions_out.inc_by(ok);
        Ok((ok, bad))
    }

    /// Flush stdout and the bus.
    pub async fn flush(&mut self) -> Result<()> {
        if let Some(w) = &mut self.stdout {
            if let Err(e) = w.flush() {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(Error::io("write", "stdout", e));
                }
            }
        }
        self.bus.flush()
    }
}

/// Write JSON lines; a closed pipe is reported as `BrokenPipe` for the caller to end quietly.
fn write_lines(w: &mut impl Write, lines: &[Vec<u8>]) -> std::io::Result<()> {
    for l in lines {
        w.write_all(l)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
