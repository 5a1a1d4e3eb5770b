//! Benchmark baseline: consume a topic and produce the same bytes to another with the same client
//! library and the same at-least-once rule as `modelcast predict --serve` (offsets stored only
//! after every output of a batch was acknowledged), but no model, and the leanest loop
//! librdkafka allows: no async runtime, a `BaseConsumer` polled directly, a `BaseProducer` whose
//! delivery reports a second thread serves (a poll returns only at its timeout, so the loop
//! cannot poll it itself without waiting or spinning), counted by a callback that wakes the loop
//! when a batch is acknowledged (no future, no channel, no timer). Its throughput is the broker's
//! limit for this workload and its CPU the floor for the client.
//!
//! ```sh
//! cargo run --release --example passthrough -- 127.0.0.1:9092 features app_messages my-group
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// Counts delivery reports: outstanding (the loop waits for zero) and failed.
#[derive(Default)]
struct Acks {
    pending: Mutex<u64>,
    acked: Condvar,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let mut pending = self.pending.lock().expect("lock");
        *pending -= 1;
        if *pending == 0 {
            self.acked.notify_one();
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bootstrap, input, output, group, fetch_wait) = match args.as_slice() {
        [b, i, o, g] => (b, i, o, g, "500"),
        [b, i, o, g, f] => (b, i, o, g, f.as_str()),
        _ => {
            eprintln!("usage: passthrough BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC GROUP [FETCH_WAIT_MAX_MS]");
            std::process::exit(2);
        }
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "200")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait)
        .create()?;
    consumer.subscribe(&[input])?;
    let producer: Arc<BaseProducer<Acks>> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(Acks::default())?,
    );
    let served = producer.clone();
    // a second and 50 µs, as modelcast's reports thread: rdkafka rounds a poll's wait down to
    // whole milliseconds and spins for the rest, and 1 s flat spun about 1 ms a second
    std::thread::spawn(move || loop {
        served.poll(Duration::from_micros(1_000_050));
    });
    // SIGTERM/SIGINT end the loop between batches (a thread that only waits for the signal)
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        });
        flag.store(true, Ordering::Relaxed);
    });
    eprintln!("passthrough ready");
    let acks = producer.context();
    let mut batch = Vec::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        // a 1 s wait (a consumer poll of whole seconds does not spin): an idle passthrough wakes
        // once a second, and SIGTERM ends it within a second
        let Some(first) = consumer.poll(Duration::from_secs(1)) else { continue };
        batch.push(first?);
        while batch.len() < 1024 {
            match consumer.poll(Duration::ZERO) {
                Some(m) => batch.push(m?),
                None => break,
            }
        }
        // counted before any is sent: a report may arrive before `send` returns
        *acks.pending.lock().expect("lock") += batch.len() as u64;
        for m in &batch {
            let mut rec = BaseRecord::to(output).payload(m.payload().unwrap_or_default());
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        std::thread::sleep(Duration::from_millis(5));
                        rec = r;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        // wait until the batch is acknowledged
        let mut pending = acks.pending.lock().expect("lock");
        while *pending > 0 {
            pending = acks.acked.wait(pending).expect("lock");
        }
        drop(pending);
        if acks.failed.load(Ordering::Relaxed) > 0 {
            return Err("a delivery failed; offsets not stored".into());
        }
        // a partition's records come in offset order: storing its last one stores them all (one
        // topic, subscribed by name, so no record is asked for its topic, as in modelcast)
        let mut last: Vec<(i32, i64)> = Vec::new();
        for m in &batch {
            match last.iter_mut().find(|(p, _)| *p == m.partition()) {
                Some(entry) => entry.1 = entry.1.max(m.offset()),
                None => last.push((m.partition(), m.offset())),
            }
        }
        for (partition, offset) in last {
            consumer.store_offset(input, partition, offset)?;
        }
        batch.clear();
    }
    producer.flush(Duration::from_secs(10))?;
    consumer.commit_consumer_state(CommitMode::Sync)?;
    Ok(())
}
