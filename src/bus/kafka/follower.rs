//! A broadcast reader of one topic: assigned every partition from the beginning, no group
//! membership and no commits, so every replica reads every message. It first replays the
//! history up to the high watermarks seen at start, then hands out what arrives.
//!
//! After the history, a thread of its own waits on the consumer and queues what arrives, and
//! [`TopicFollower::arrived`] wakes the caller: a new message reaches a service as soon as
//! the broker hands it out, and an idle service is not woken to look (a 100 ms tick cost an
//! idle replica about 2 ms of CPU a second, a third of its idle cost).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::{bus_err, Kafka};
use crate::error::Result;

/// How long the follower's thread waits for a message before it checks that the follower still
/// exists: the thread ends within this much of the follower being dropped. (A consumer poll of
/// whole seconds ends without the sub-millisecond spin a producer poll has.)
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// Follows one topic: history first, then new messages.
pub struct TopicFollower {
    topic: String,
    state: State,
}

enum State {
    /// Reading the history: the consumer is ours.
    History { consumer: BaseConsumer, ends: HashMap<i32, i64> },
    /// Following: the consumer belongs to a thread that queues what arrives.
    Live(Arc<Arrivals>),
    /// The thread could not start (logged); nothing more arrives.
    Stopped,
}

/// What the follower's thread has queued, and the wakeup of whoever waits for it.
#[derive(Default)]
struct Arrivals {
    values: Mutex<Vec<Vec<u8>>>,
    notify: Notify,
}

impl Kafka {
    /// A follower of `topic`, positioned at the beginning of its history.
    pub async fn follow(&self, topic: &str) -> Result<TopicFollower> {
        self.check_topics(&[topic]).await?;
        let group = format!("modelcast-follow-{}", crate::artifact::new_version(chrono::Utc::now(), b"feed"));
        let consumer: BaseConsumer = super::config::follower(&self.cfg, &group)
            .create()
            .map_err(|e| bus_err(topic, format!("cannot create consumer: {e}")))?;
        let timeout = self.timeout();
        let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| bus_err(topic, format!("metadata: {e}")))?;
        let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in &parts {
            let (_, high) = super::watermarks(&consumer, topic, *p, timeout)?;
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning).map_err(|e| bus_err(topic, e.to_string()))?;
        }
        consumer.assign(&tpl).map_err(|e| bus_err(topic, format!("assign: {e}")))?;
        Ok(TopicFollower { topic: topic.to_string(), state: State::History { consumer, ends } })
    }
}

impl TopicFollower {
    /// Every value up to the high watermarks seen at start (blocking, bounded by `timeout`).
    /// Only before following: once [`TopicFollower::poll`] or [`TopicFollower::arrived`] has
    /// started the thread, the history is gone.
    pub fn history(&mut self, timeout: Duration) -> Result<Vec<Vec<u8>>> {
        let State::History { consumer, ends } = &mut self.state else {
            return Err(bus_err(&self.topic, "the history was asked for after following had started"));
        };
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut pending: HashMap<i32, i64> = ends.iter().filter(|(_, &h)| h > 0).map(|(p, h)| (*p, *h)).collect();
        while !pending.is_empty() {
            if Instant::now() > deadline {
                return Err(bus_err(&self.topic, format!("could not read the topic's history within {timeout:?}")));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "consumer error while reading history")
                }
                Some(Ok(m)) => {
                    out.push(m.payload().unwrap_or_default().to_vec());
                    if let Some(&end) = pending.get(&m.partition()) {
                        if m.offset() + 1 >= end {
                            pending.remove(&m.partition());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Values that arrived since the last call (non-blocking).
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        match self.live() {
            Some(a) => a.values.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Wait until a value may have arrived since the last [`TopicFollower::poll`] (at once if
    /// one is queued; a spurious wakeup is possible). Cancel-safe.
    pub async fn arrived(&mut self) {
        let Some(a) = self.live() else {
            return std::future::pending().await;
        };
        let notified = a.notify.notified();
        if a.values.lock().is_ok_and(|v| !v.is_empty()) {
            return;
        }
        notified.await;
    }

    /// The queue, the thread started on first use.
    fn live(&mut self) -> Option<Arc<Arrivals>> {
        if matches!(self.state, State::History { .. }) {
            if let State::History { consumer, .. } = std::mem::replace(&mut self.state, State::Stopped) {
                let arrivals = Arc::new(Arrivals::default());
                let weak = Arc::downgrade(&arrivals);
                let topic = self.topic.clone();
                let thread = std::thread::Builder::new().name("follower".into());
                match thread.spawn(move || follow(consumer, weak, &topic)) {
                    Ok(_) => self.state = State::Live(arrivals),
                    Err(e) => tracing::error!(
                        topic = %self.topic, error = %e,
                        "cannot start the follower's thread; no further messages will be read"
                    ),
                }
            }
        }
        match &self.state {
            State::Live(a) => Some(a.clone()),
            _ => None,
        }
    }
}

/// The follower's thread: queue each value and wake the waiter; end when the follower is gone.
fn follow(consumer: BaseConsumer, arrivals: Weak<Arrivals>, topic: &str) {
    loop {
        let polled = consumer.poll(FOLLOW_WAIT);
        let Some(a) = arrivals.upgrade() else { return };
        match polled {
            None => {}
            Some(Err(e)) => tracing::warn!(%topic, error = %e, "consumer error while following"),
            Some(Ok(m)) => {
                if let Ok(mut v) = a.values.lock() {
                    v.push(m.payload().unwrap_or_default().to_vec());
                }
                // a stored permit when nobody waits: the wakeup is never lost
                a.notify.notify_one();
            }
        }
    }
}
