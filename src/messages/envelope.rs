//! The envelope every channel sends: topic, key, payload and headers. [`Outgoing::of`] is the
//! one way a scored record becomes one; [`Outbox`] reuses a batch of them on the hot path.

use super::{OriginRef, PredictionRef, Scored};
use crate::error::{Error, Result};

/// Where scored records go on a bus, and the bound on a dead letter's size.
#[derive(Debug, Clone, Copy)]
pub struct OutputTopics<'a> {
    /// Predictions.
    pub app_messages: &'a str,
    /// Rejected records.
    pub dead_letter: &'a str,
    /// Dead-letter values are cut to this many bytes (header `modelcast.truncated` says so).
    pub dead_letter_max_bytes: usize,
}

/// A message to publish: topic, key (may be empty), value and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing<'t> {
    /// Topic (or local log) name.
    pub topic: &'t str,
    /// Key (may be empty).
    pub key: Vec<u8>,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers (name, value).
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl<'t> Outgoing<'t> {
    /// The one way a scored record becomes a message, on every path (batch, follow, serve).
    ///
    /// A prediction is its JSON on `app_messages`, keyed by the record key. A rejected record is
    /// its original bytes on the dead-letter topic (cut to `dead_letter_max_bytes`), keyed by the
    /// record key, with headers `modelcast.reason`, `modelcast.source` and, when cut,
    /// `modelcast.truncated`.
    pub fn of(scored: Scored, topics: &OutputTopics<'t>) -> Result<Outgoing<'t>> {
        let mut m = Outgoing::empty(topics.app_messages);
        match scored {
            Scored::Ok(p) => m.set_prediction(&p.as_ref(), topics.app_messages)?,
            Scored::Rejected(d) => {
                m.set_dead_letter(&d.key, &d.reason, &d.origin.as_ref(), &d.raw, topics);
            }
        }
        Ok(m)
    }

    /// A message with nothing in it yet (for [`Outgoing::set_prediction`] and friends).
    pub fn empty(topic: &'t str) -> Outgoing<'t> {
        Outgoing { topic, key: Vec::new(), payload: Vec::new(), headers: Vec::new() }
    }

    /// Make this message `p`'s JSON on `topic`, keyed by the record key, reusing its buffers
    /// (the hot path: no allocation once they are large enough).
    pub fn set_prediction(&mut self, p: &PredictionRef<'_>, topic: &'t str) -> Result<()> {
        self.topic = topic;
        self.key.clear();
        self.key.extend_from_slice(p.key.as_bytes());
        self.headers.clear();
        self.payload.clear();
        p.write_json(&mut self.payload).map_err(|e| Error::Encode { what: "prediction", source: e })
    }

    /// Make this message a dead letter: the original bytes on the dead-letter topic (cut to
    /// `dead_letter_max_bytes`), keyed by the record key, with headers `modelcast.reason`,
    /// `modelcast.source` and, when cut, `modelcast.truncated`.
    pub fn set_dead_letter(
        &mut self,
        key: &str,
        reason: &str,
        origin: &OriginRef<'_>,
        raw: &[u8],
        topics: &OutputTopics<'t>,
    ) {
        let max = topics.dead_letter_max_bytes;
        self.topic = topics.dead_letter;
        self.key.clear();
        self.key.extend_from_slice(key.as_bytes());
        self.headers.clear();
        self.headers.push(("modelcast.reason", reason.as_bytes().to_vec()));
        self.headers.push(("modelcast.source", origin.to_string().into_bytes()));
        self.payload.clear();
        if raw.len() > max {
            self.headers.push(("modelcast.truncated", format!("{max} of {} bytes kept", raw.len()).into_bytes()));
            self.payload.extend_from_slice(&raw[..max]);
        } else {
            self.payload.extend_from_slice(raw);
        }
    }

    /// Whether this is a prediction (not a dead letter).
    pub fn is_prediction(&self, topics: &OutputTopics<'_>) -> bool {
        self.topic == topics.app_messages && self.headers.is_empty()
    }
}

/// A batch's messages, kept from batch to batch: once its buffers have grown to the batch's
/// size, filling it again allocates nothing (the service's hot path).
#[derive(Debug, Default)]
pub struct Outbox<'t> {
    msgs: Vec<Outgoing<'t>>,
    len: usize,
}

impl<'t> Outbox<'t> {
    /// Empty it (the buffers stay).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The next message to fill, with the buffers of an earlier batch's message when there is one.
    pub fn next(&mut self, topic: &'t str) -> &mut Outgoing<'t> {
        if self.len == self.msgs.len() {
            self.msgs.push(Outgoing::empty(topic));
        }
        self.len += 1;
        &mut self.msgs[self.len - 1]
    }

    /// Take back the message [`Outbox::next`] handed out last.
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// The messages of this batch.
    pub fn messages(&self) -> &[Outgoing<'t>] {
        &self.msgs[..self.len]
    }

    /// How many messages this batch has.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether this batch has none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
