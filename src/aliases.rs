//! The alias log, wherever it lives (an edge): the `train` topic with Kafka, the local `train`
//! log beside a file store, and, for an S3 store without Kafka, objects in the store itself
//! (`_aliases/<model>/<seq>.json`, written with conditional puts) so every machine that shares
//! the bucket sees the same aliases.
//!
//! [`AliasLog`] reads and appends moves for the commands; [`Updates`] is what a predictor
//! follows: announcements and alias moves as they arrive.
//!
//! Invariant: a move is reported applied only after it was read back from the log and folded
//! after everything before it ([`crate::lifecycle::AliasBook`]); the log's order decides races.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::bus::{Bus, TrainFeed};

use crate::error::{Error, Result};
use crate::lifecycle::{AliasBook, Entry};
use crate::messages::{AliasMove, Announcement, TrainMessage};
use crate::store::s3::Atomicity;
use crate::store::Store;

/// The key prefix of the alias log inside an S3 store.
pub const STORE_PREFIX: &str = "_aliases/";

/// Where alias moves are written and read.
pub enum AliasLog<'a> {
    /// The train topic (Kafka) or the local train log (file store without Kafka).
    Bus(&'a Bus),
    /// Objects in the store (S3 store without Kafka).
    Store(&'a Store),
}

impl<'a> AliasLog<'a> {
    /// The log for these edges: with Kafka the train topic; an S3 store without Kafka keeps its
    /// own log (the local bus is per machine); a file store uses its local train log.
    pub fn of(store: &'a Store, bus: &'a Bus) -> AliasLog<'a> {
        match (bus, store) {
            (Bus::Local(_), Store::S3(_)) => AliasLog::Store(store),
            _ => AliasLog::Bus(bus),
        }
    }

    /// Where the log is, for messages.
    pub fn describe(&self) -> String {
        match self {
            AliasLog::Bus(b) => b.describe(&b.topics().train),
            AliasLog::Store(s) => s.uri_of(STORE_PREFIX.trim_end_matches('/')),
        }
    }

    /// Fail when moves cannot be written safely here: an S3 store whose server ignores
    /// `If-None-Match` would let two machines overwrite each other's move (garage 2.5 does).
    pub async fn check_writable(&self) -> Result<()> {
        match self {
            AliasLog::Bus(_) => Ok(()),
            AliasLog::Store(s) => {
                let (what, fix) = match s.atomic_put_if_absent(&format!("{STORE_PREFIX}.probe")).await? {
                    Atomicity::Atomic => return Ok(()),
                    Atomicity::Ignored => (
                        "this S3 server ignores conditional writes (If-None-Match)",
                        "use a server whose conditional writes are atomic (AWS S3, MinIO)",
                    ),
                    Atomicity::Unknown => (
                        "this S3-compatible server honours conditional writes, but whether they are atomic cannot be \
                         probed (s3s-fs 0.14's are not)",
                        "if they are (MinIO), say so with --s3-atomic-writes (MODELCAST_S3_ATOMIC_WRITES=true)",
                    ),
                };
                Err(Error::Usage(format!(
                    "{}: {what}, so two machines could overwrite each other's alias moves; nothing was written. \
                     Keep aliases on Kafka (--kafka-config: the train topic orders every move), or {fix}",
                    s.uri()
                )))
            }
        }
    }

    /// Every move in the log, in log order.
    pub async fn moves(&self) -> Result<Vec<AliasMove>> {
        match self {
            AliasLog::Bus(b) => Ok(moves_of(b.train_feed().await?.history().await?)),
            AliasLog::Store(s) => Ok(store_moves(s, "").await?.into_iter().map(|(_, m)| m).collect()),
        }
    }

    /// The aliases' state.
    pub async fn book(&self) -> Result<AliasBook> {
        Ok(AliasBook::of(self.moves().await?))
    }

    /// Append `mv`, read it back and fold it: its entry says whether it applied. On the store
    /// log a concurrent writer that took the same sequence number first is an
    /// [`Error::Conflict`] (nothing was written).
    pub async fn append(&self, mv: AliasMove) -> Result<(Entry, String)> {
        let id = mv.id.clone();
        match self {
            AliasLog::Bus(b) => {
                let to = b.publish_move(&mv).await?;
                let book = self.book().await?;
                let e = book.find(&id).cloned().ok_or_else(|| Error::Bus {
                    target: self.describe(),
                    message: format!("alias move {id} was acknowledged but is not in the log when read back"),
                })?;
                Ok((e, to))
            }
            AliasLog::Store(s) => {
                self.check_writable().await?;
                let prefix = format!("{STORE_PREFIX}{}/", mv.model_name);
                let existing = store_moves(s, &prefix).await?;
                let key = format!("{prefix}{:010}.json", existing.len() + 1);
                match s.put_if_absent(&key, &mv.encode()?).await {
                    Ok(()) => {}
                    Err(Error::AlreadyExists { .. }) => {
                        return Err(Error::Conflict(format!(
                            "another move of {} was written to {} at the same time; nothing was written \
                             (run `modelcast history {}` and retry)",
                            mv.model_name,
                            s.uri_of(&key),
                            mv.model_name
                        )))
                    }
                    Err(e) => return Err(e),
                }
                // A server that ignores If-None-Match lets the last writer win: check it was us.
                let back = decode(&s.get(&key).await?);
                if back.as_ref().map(|m| m.id.as_str()) != Some(id.as_str()) {
                    return Err(Error::Conflict(format!(
                        "{} was overwritten by a concurrent move (the server ignored If-None-Match)",
                        s.uri_of(&key)
                    )));
                }
                let mut book = AliasBook::of(existing.into_iter().map(|(_, m)| m));
                let e = book.apply(mv).clone();
                Ok((e, s.uri_of(&key)))
            }
        }
    }
}

fn moves_of(msgs: Vec<TrainMessage>) -> Vec<AliasMove> {
    msgs.into_iter()
        .filter_map(|m| match m {
            TrainMessage::AliasMoved(mv) => Some(mv),
            TrainMessage::Announced(_) => None,
        })
        .collect()
}

fn decode(bytes: &[u8]) -> Option<AliasMove> {
    match crate::bus::decode_or_skip(bytes)? {
        TrainMessage::AliasMoved(m) => Some(m),
        TrainMessage::Announced(_) => None,
    }
}

/// The moves stored under `prefix` (inside [`STORE_PREFIX`]), by key: per model in sequence.
async fn store_moves(store: &Store, prefix: &str) -> Result<Vec<(String, AliasMove)>> {
    let prefix = if prefix.is_empty() { STORE_PREFIX.to_string() } else { prefix.to_string() };
    let mut out = Vec::new();
    for key in store.list_internal(&prefix).await?.into_iter().filter(|k| k.ends_with(".json")) {
        if let Some(m) = decode(&store.get(&key).await?) {
            out.push((key, m));
        }
    }
    Ok(out)
}

/// What arrived on the train topic (and the store's alias log) since the last look.
#[derive(Debug, Default)]
pub struct Changes {
    /// New models.
    pub announcements: Vec<Announcement>,
    /// Alias moves, in log order.
    pub moves: Vec<AliasMove>,
}

/// What a predictor follows: the train topic and, for an S3 store without Kafka, the store's
/// alias log (listed at most once a second).
pub struct Updates {
    feed: TrainFeed,
    store_log: Option<StorePoll>,
}

struct StorePoll {
    seen: HashSet<String>,
    next: Instant,
}

/// How often the store's alias log is listed.
const STORE_POLL: Duration = Duration::from_secs(1);

impl Updates {
    /// Follow the edges' train topic (and the store's alias log when that is where aliases live).
    pub async fn open(store: &Store, bus: &Bus) -> Result<Updates> {
        let store_log = matches!(AliasLog::of(store, bus), AliasLog::Store(_))
            .then(|| StorePoll { seen: HashSet::new(), next: Instant::now() });
        Ok(Updates { feed: bus.train_feed().await?, store_log })
    }

    /// Everything so far.
    pub async fn history(&mut self, store: &Store) -> Result<Changes> {
        let msgs = self.feed.history().await?;
        let mut c = split(msgs);
        if let Some(p) = &mut self.store_log {
            c.moves.extend(p.poll(store, true).await?);
        }
        Ok(c)
    }

    /// Wait until [`Updates::poll`] may have something: a message on the train topic, or, when
    /// the store's alias log is followed too, the next look ([`crate::bus::LOCAL_LOOK`]).
    pub async fn changed(&mut self) {
        match self.store_log {
            Some(_) => tokio::time::sleep(crate::bus::LOCAL_LOOK).await,
            None => self.feed.changed().await,
        }
    }

    /// What arrived since the last call.
    pub async fn poll(&mut self, store: &Store) -> Result<Changes> {
        let mut c = split(self.feed.poll().await?);
        if let Some(p) = &mut self.store_log {
            c.moves.extend(p.poll(store, false).await?);
        }
        Ok(c)
    }
}

fn split(msgs: Vec<TrainMessage>) -> Changes {
    let mut c = Changes::default();
    for m in msgs {
        match m {
            TrainMessage::Announced(a) => c.announcements.push(a),
            TrainMessage::AliasMoved(mv) => c.moves.push(mv),
        }
    }
    c
}

impl StorePoll {
    async fn poll(&mut self, store: &Store, now: bool) -> Result<Vec<AliasMove>> {
        if !now && Instant::now() < self.next {
            return Ok(Vec::new());
        }
        self.next = Instant::now() + STORE_POLL;
        let mut out = Vec::new();
        let mut read = Vec::new();
        for key in store.list_internal(STORE_PREFIX).await?.into_iter().filter(|k| k.ends_with(".json")) {
            if self.seen.contains(&key) {
                continue;
            }
            // a failed get returns before anything is marked seen: the next poll reads it all again
            if let Some(m) = decode(&store.get(&key).await?) {
                out.push(m);
            }
            read.push(key);
        }
        self.seen.extend(read);
        Ok(out)
    }
}
