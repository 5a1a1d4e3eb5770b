//! Benchmark baseline: consume a topic and produce the same bytes to another, with the same
//! client library, batching and at-least-once offset handling as `modelcast predict --serve`,
//! but no model. Its throughput is the physical limit of the broker for this workload.
//!
//! ```sh
//! cargo run --release --example passthrough -- 127.0.0.1:9092 features app_messages my-group
//! ```

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bootstrap, input, output, group, fetch_wait) = match args.as_slice() {
        [b, i, o, g] => (b, i, o, g, "500"),
        [b, i, o, g, f] => (b, i, o, g, f.as_str()),
        _ => {
            eprintln!("usage: passthrough BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC GROUP [FETCH_WAIT_MAX_MS]");
            std::process::exit(2);
        }
    };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "200")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait)
        .create()?;
    consumer.subscribe(&[input])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    eprintln!("passthrough ready");
    loop {
        let first = tokio::select! {
            m = consumer.recv() => m?,
            _ = term.recv() => break,
        };
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m),
                _ => break,
            }
        }
        let mut deliveries = Vec::with_capacity(batch.len());
        for m in &batch {
            let mut rec = FutureRecord::to(output).payload(m.payload().unwrap_or_default());
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            deliveries.push(producer.send_result(rec).map_err(|(e, _)| e)?);
        }
        for d in deliveries {
            d.await?.map_err(|(e, _)| e)?;
        }
        for m in &batch {
            consumer.store_offset(m.topic(), m.partition(), m.offset())?;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    Ok(())
}
