//! The bus contract, one generic body run against every backend: the local logs of the embedded
//! default and Kafka (Apache Kafka on the test bed). Announce → history → poll; produce → read back.

use std::time::{Duration, Instant};

use modelcast::bus::{Bus, TrainFeed};

use modelcast::messages::{Announcement, HeadlineMetrics, Outgoing, TrainMessage, MESSAGE_SCHEMA_VERSION};

use crate::util::bed::bed;
use crate::util::fixtures::alias_move;
use crate::util::{unique, PATIENCE};

fn announcement(version: &str) -> Announcement {
    Announcement {
        schema_version: MESSAGE_SCHEMA_VERSION,
        model_name: "m".into(),
        version: version.into(),
        uri: format!("file://models/m/2026-01-01/{version}.json"),
        key: format!("m/2026-01-01/{version}.json"),
        sha256: "ab".repeat(32),
        size: 10,
        created_at: chrono::Utc::now(),
        metrics: HeadlineMetrics { r2: 0.5, rmse: 1.0, mae: 0.8 },
        input_schema_digest: "sha256:x".into(),
        tool_version: "0.1.0".into(),
        exports: vec![],
    }
}

fn announced(m: TrainMessage) -> Announcement {
    match m {
        TrainMessage::Announced(a) => a,
        other => panic!("expected an announcement, got {other:?}"),
    }
}

/// Poll until `n` messages arrived (or the deadline passed).
async fn poll_n(feed: &mut TrainFeed, n: usize) -> Vec<TrainMessage> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(feed.poll().await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

/// The contract every bus keeps.
pub async fn contract(bus: &Bus) {
    let topics = bus.topics();
    let mut early = bus.train_feed().await.unwrap();
    assert!(early.history().await.unwrap().is_empty(), "a new train topic has no history");
    let (a1, a2) = (announcement("20260101T000000000Z-00000001"), announcement("20260101T000000000Z-00000002"));
    bus.announce(&a1).await.unwrap();
    // garbage, and a message of a type from a newer modelcast, are skipped, never an error
    for payload in [&b"garbage"[..], br#"{"schema_version":1,"type":"model_deleted","model_name":"m"}"#] {
        bus.produce(vec![Outgoing {
            topic: &topics.train,
            key: b"m".to_vec(),
            payload: payload.to_vec(),
            headers: vec![],
        }])
        .await
        .unwrap();
    }
    // a follower that starts now finds it in the history; one that was following gets it by polling
    let mut late = bus.train_feed().await.unwrap();
    assert_eq!(late.history().await.unwrap(), vec![TrainMessage::Announced(a1.clone())]);
    assert_eq!(poll_n(&mut early, 1).await.into_iter().map(announced).collect::<Vec<_>>(), vec![a1.clone()]);
    bus.announce(&a2).await.unwrap();
    // alias moves travel on the same log, in order with announcements
    let mv = alias_move(&format!("move-{}", a2.version), &a2.version, None);
    bus.publish_move(&mv).await.unwrap();
    let want = vec![TrainMessage::Announced(a2.clone()), TrainMessage::AliasMoved(mv)];
    assert_eq!(poll_n(&mut late, 2).await, want);
    assert_eq!(poll_n(&mut early, 2).await, want);
    assert!(early.poll().await.unwrap().is_empty(), "each message is read once");

    // produce → read back, in order
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
    let msgs = payloads
        .iter()
        .map(|p| Outgoing { topic: &topics.app_messages, key: b"k".to_vec(), payload: p.clone(), headers: vec![] })
        .collect();
    bus.produce(msgs).await.unwrap();
    bus.flush().unwrap();
    let mut reader = bus.follow(&topics.app_messages).await.unwrap();
    assert_eq!(reader.history().await.unwrap(), payloads, "what was produced (and acknowledged) reads back");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_logs_keep_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&Bus::local(dir.path().join("_bus"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_keeps_the_contract() {
    let Some(bed) = bed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::kafka(bed.kafka_config(dir.path(), &unique("bus"))).unwrap();
    let created = bus.as_kafka().unwrap().create_topics(None).await.unwrap();
    assert_eq!(created.len(), 8, "{created:?}");
    contract(&bus).await;
}
