//! Kafka + S3 flows against the loopback test bed started by `scripts/services.sh run`
//! (tansu for Kafka, garage and s3s-fs for S3). Without the `MODELCAST_TEST_*` variables these
//! tests are skipped with a note, unless `MODELCAST_REQUIRE_SERVICES=1` (set by the script), in
//! which case a missing service is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::util::*;

/// Addresses of the test bed.
pub struct Bed {
    pub bootstrap: String,
    pub s3_endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub s3s: Option<(String, String, String, String)>,
}

pub fn bed() -> Option<Bed> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let bootstrap = var("MODELCAST_TEST_BOOTSTRAP");
    let endpoint = var("MODELCAST_TEST_S3_ENDPOINT");
    if bootstrap.is_none() || endpoint.is_none() {
        if std::env::var("MODELCAST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("MODELCAST_REQUIRE_SERVICES=1 but the test bed variables are not set");
        }
        eprintln!("skipped: no test bed (run scripts/test.sh, or scripts/services.sh run cargo test)");
        return None;
    }
    let s3s = match (var("MODELCAST_TEST_S3S_ENDPOINT"), var("MODELCAST_TEST_S3S_BUCKET")) {
        (Some(e), Some(b)) => Some((
            e,
            b,
            var("MODELCAST_TEST_S3S_ACCESS_KEY").unwrap_or_default(),
            var("MODELCAST_TEST_S3S_SECRET_KEY").unwrap_or_default(),
        )),
        _ => None,
    };
    Some(Bed {
        bootstrap: bootstrap.unwrap(),
        s3_endpoint: endpoint.unwrap(),
        bucket: var("MODELCAST_TEST_S3_BUCKET").expect("MODELCAST_TEST_S3_BUCKET"),
        access_key: var("MODELCAST_TEST_S3_ACCESS_KEY").expect("MODELCAST_TEST_S3_ACCESS_KEY"),
        secret_key: var("MODELCAST_TEST_S3_SECRET_KEY").expect("MODELCAST_TEST_S3_SECRET_KEY"),
        region: var("MODELCAST_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
        s3s,
    })
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}", modelcast::artifact::new_version(chrono::Utc::now(), tag.as_bytes()).to_lowercase())
}

/// Topic names of one test.
pub struct Topics {
    pub train: String,
    pub app: String,
    pub input: String,
    pub dead: String,
}

/// A sandbox wired to the test bed with its own topics, bucket prefix and Kafka config.
pub struct Wired {
    pub sb: Sandbox,
    pub topics: Topics,
    pub store: String,
    bed_env: Vec<(String, String)>,
    pub bootstrap: String,
}

impl Wired {
    pub fn new(bed: &Bed, tag: &str, partitions: i32) -> Wired {
        let sb = Sandbox::new();
        let id = unique(tag);
        let topics = Topics {
            train: format!("{id}-train"),
            app: format!("{id}-app"),
            input: format!("{id}-in"),
            dead: format!("{id}-dead"),
        };
        sb.write(
            "kafka.yaml",
            &format!(
                "bootstrap.servers: ${{TEST_BOOTSTRAP}}\ncompression.type: lz4\n\
                 modelcast:\n  topics: {{train: {}, app_messages: {}, input: {}, dead_letter: {}}}\n  \
                 group_id: {id}-group\n  partitions: {partitions}\n  timeout_ms: 15000\n",
                topics.train, topics.app, topics.input, topics.dead
            ),
        );
        let bed_env = vec![
            ("TEST_BOOTSTRAP".to_string(), bed.bootstrap.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), bed.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), bed.secret_key.clone()),
            ("AWS_REGION".to_string(), bed.region.clone()),
            ("AWS_ENDPOINT_URL".to_string(), bed.s3_endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        ];
        let w =
            Wired { sb, topics, store: format!("s3://{}/{id}", bed.bucket), bed_env, bootstrap: bed.bootstrap.clone() };
        assert_ok(&w.run(&["topics", "create", "--kafka-config", "kafka.yaml"]));
        w
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.sb.cmd(args);
        c.env_remove("AWS_PROFILE");
        for (k, v) in &self.bed_env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `train` to S3 + Kafka.
    pub fn train(&self, extra: &[&str]) -> Output {
        let mut args = vec!["train", "--store", &self.store, "--kafka-config", "kafka.yaml"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Start `predict --serve`.
    pub fn serve(&self, extra: &[&str]) -> Child {
        let mut args = vec!["predict", "--serve", "--store", &self.store, "--kafka-config", "kafka.yaml"];
        args.extend_from_slice(extra);
        self.cmd(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    }
}

/// Wait until a serving child logs `needle` on stderr; returns the log so far. The rest of
/// stderr keeps being collected by a thread (returned handle).
pub fn wait_log(child: &mut Child, needle: &str, timeout: Duration) -> (String, std::thread::JoinHandle<String>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return (seen, handle);
                }
            }
            Err(_) => panic!("no {needle:?} within {timeout:?}; log so far:\n{seen}"),
        }
    }
}

pub fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

pub fn produce(p: &BaseProducer, topic: &str, records: &[(String, Vec<u8>)]) {
    for (k, v) in records {
        let mut rec = BaseRecord::to(topic).key(k.as_bytes()).payload(v.as_slice());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    p.poll(Duration::from_millis(5));
                    rec = r;
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// An independent reader of a whole topic: (partition, offset, key, value, headers).
pub type Rec = (i32, i64, Option<String>, Vec<u8>, BTreeMap<String, String>);

/// Read a whole topic: until nothing new arrived for `idle` (or `max` passed).
pub fn read_all(bootstrap: &str, topic: &str, idle: Duration, max: Duration) -> Vec<Rec> {
    read_topic_until(bootstrap, topic, usize::MAX, max, Some(idle))
}

/// Distinct keys in `topic` and the number of records, re-reading the whole topic until `want`
/// keys are there or `timeout` passed.
pub fn keys_in(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> (BTreeSet<String>, usize) {
    let deadline = Instant::now() + timeout;
    loop {
        let recs = read_all(bootstrap, topic, Duration::from_secs(3), Duration::from_secs(120));
        let keys: BTreeSet<String> = recs.iter().filter_map(|r| r.2.clone()).collect();
        if keys.len() >= want || Instant::now() > deadline {
            return (keys, recs.len());
        }
    }
}

pub fn read_topic(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Rec> {
    read_topic_until(bootstrap, topic, want, timeout, None)
}

fn read_topic_until(bootstrap: &str, topic: &str, want: usize, timeout: Duration, idle: Option<Duration>) -> Vec<Rec> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < want && Instant::now() < deadline {
        if idle.is_some_and(|i| last.elapsed() > i) {
            break;
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            last = Instant::now();
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for hd in h.iter() {
                    headers
                        .insert(hd.key.to_string(), String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned());
                }
            }
            out.push((
                m.partition(),
                m.offset(),
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
        }
    }
    out
}

pub fn wine_record(i: usize) -> Vec<u8> {
    format!(
        "{{\"fixed acidity\":7.4,\"volatile acidity\":0.7,\"citric acid\":0,\"residual sugar\":1.9,\
         \"chlorides\":0.076,\"free sulfur dioxide\":11,\"total sulfur dioxide\":34,\"density\":0.9978,\
         \"pH\":3.51,\"sulphates\":0.56,\"alcohol\":{}}}",
        9.0 + (i % 50) as f64 * 0.1
    )
    .into_bytes()
}

pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Ask a child to stop (SIGTERM), as a supervisor would.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}

fn s3_store(bed: &Bed, url: &str) -> modelcast::store::Store {
    std::env::set_var("AWS_ACCESS_KEY_ID", &bed.access_key);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &bed.secret_key);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let opts = modelcast::store::StoreOptions {
        endpoint: Some(bed.s3_endpoint.clone()),
        region: Some(bed.region.clone()),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(modelcast::store::Store::open(url, &opts)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn store_contract_on_garage_and_s3s_fs() {
    let Some(bed) = bed() else { return };
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let opts = modelcast::store::StoreOptions {
        endpoint: Some(bed.s3_endpoint.clone()),
        region: Some(bed.region.clone()),
        ..Default::default()
    };
    std::env::set_var("AWS_ACCESS_KEY_ID", &bed.access_key);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &bed.secret_key);
    let store = modelcast::store::Store::open(&format!("s3://{}/contract", bed.bucket), &opts).await.unwrap();
    crate::store_contract::contract(&store, &unique("garage")).await;
    match &bed.s3s {
        Some((endpoint, bucket, ak, sk)) => {
            let opts = modelcast::store::StoreOptions {
                endpoint: Some(endpoint.clone()),
                region: Some("us-east-1".into()),
                ..Default::default()
            };
            // s3s-fs signs with its own keys; the SDK reads them from the environment.
            std::env::set_var("AWS_ACCESS_KEY_ID", ak);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", sk);
            let store = modelcast::store::Store::open(&format!("s3://{bucket}/contract"), &opts).await.unwrap();
            crate::store_contract::contract(&store, &unique("s3s")).await;
        }
        None => eprintln!("s3s-fs not in the test bed; contract checked on garage only"),
    }
}

#[test]
fn train_uploads_to_s3_and_announces_on_kafka() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "train", 1);
    let out = w.train(&["--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uri = report["uri"].as_str().unwrap();
    assert!(uri.starts_with(&w.store), "{uri}");
    // an independent consumer reads the announcement back
    let recs = read_topic(&w.bootstrap, &w.topics.train, 1, Duration::from_secs(20));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].2.as_deref(), Some("wine-quality"), "key = model name");
    let ann: serde_json::Value = serde_json::from_slice(&recs[0].3).unwrap();
    assert_eq!(ann["uri"], uri);
    // the artifact is in the bucket and its sha256 matches the announcement
    let store = s3_store(&bed, &w.store);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes = rt.block_on(store.get(ann["key"].as_str().unwrap())).unwrap();
    assert_eq!(modelcast::artifact::sha256_hex(&bytes), ann["sha256"].as_str().unwrap());
    assert_eq!(bytes.len() as u64, ann["size"].as_u64().unwrap());
    // batch predict from S3 + Kafka history, writing to app_messages
    let out = w.run(&[
        "predict",
        "--input",
        "data/winequality-red.csv",
        "--store",
        &w.store,
        "--kafka-config",
        "kafka.yaml",
        "--sink",
        "bus",
    ]);
    assert_ok(&out);
    let preds = read_topic(&w.bootstrap, &w.topics.app, 1599, Duration::from_secs(30));
    assert_eq!(preds.len(), 1599);
}

#[test]
fn train_fails_cleanly_on_s3_and_kafka_problems() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "fail", 1);
    // wrong credentials
    let out = w
        .cmd(&["train", "--store", &w.store, "--kafka-config", "kafka.yaml"])
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("access denied") || e.contains("Forbidden") || e.contains("403"), "{e}");
    assert!(!e.contains("wrong-secret-value-123") && !e.contains(&bed.secret_key), "no secret in errors");
    // missing bucket
    let out = w.run(&["train", "--store", "s3://no-such-bucket-modelcast/x", "--kafka-config", "kafka.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // invalid bucket name (the seed's)
    let out = w.run(&["train", "--store", "s3://wines_models/x", "--kafka-config", "kafka.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("wines-models"), "{}", stderr(&out));
    // a missing topic is a clear, quick error
    w.sb.write(
        "nokafka.yaml",
        "bootstrap.servers: ${TEST_BOOTSTRAP}\nmodelcast: {topics: {train: no-such-topic-x}, timeout_ms: 5000}\n",
    );
    let t = Instant::now();
    let out = w.run(&["train", "--store", &w.store, "--kafka-config", "nokafka.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("topics create"), "{}", stderr(&out));
    assert!(t.elapsed() < Duration::from_secs(20));
    // nothing was announced by any of these
    assert!(read_topic(&w.bootstrap, &w.topics.train, 1, Duration::from_secs(3)).is_empty());
}

#[test]
fn serve_scores_a_stream_exactly_once_across_a_hot_swap() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "e2e", 3);
    assert_ok(&w.train(&[]));
    let mut svc = w.serve(&["--metrics-addr", "127.0.0.1:0"]);
    let (_, log) = wait_log(&mut svc, "serving model", Duration::from_secs(60));
    let p = producer(&w.bootstrap);
    let n = 20_000;
    let records: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("k{i}"), wine_record(i))).collect();
    produce(&p, &w.topics.input, &records[..n / 2]);
    // a second training mid-stream
    let out = w.train(&[]);
    assert_ok(&out);
    let anns = read_topic(&w.bootstrap, &w.topics.train, 2, Duration::from_secs(10));
    let v1 = serde_json::from_slice::<serde_json::Value>(&anns[0].3).unwrap()["version"].as_str().unwrap().to_string();
    let v2 = serde_json::from_slice::<serde_json::Value>(&anns[1].3).unwrap()["version"].as_str().unwrap().to_string();
    produce(&p, &w.topics.input, &records[n / 2..]);
    let preds = read_topic(&w.bootstrap, &w.topics.app, n, Duration::from_secs(120));
    sigterm(&svc);
    let status = svc.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "graceful stop exits 0: {status:?}\n{log}");
    assert_eq!(preds.len(), n, "all predictions arrived");
    let mut seen = BTreeSet::new();
    let mut per_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (_, _, key, value, _) in &preds {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        assert_eq!(key.as_deref(), v["key"].as_str(), "app_messages key = input key");
        assert!(seen.insert(v["key"].as_str().unwrap().to_string()), "scored twice: {}", v["key"]);
        per_partition
            .entry(v["partition"].as_i64().unwrap() as i32)
            .or_default()
            .push((v["offset"].as_i64().unwrap(), v["model_version"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), n);
    let mut switches = 0;
    for (part, mut list) in per_partition {
        list.sort();
        let versions: Vec<&str> = list.iter().map(|(_, v)| v.as_str()).collect();
        let first_v2 = versions.iter().position(|v| *v == v2).unwrap_or(versions.len());
        assert!(versions[..first_v2].iter().all(|v| *v == v1), "partition {part}: only v1 before v2");
        assert!(versions[first_v2..].iter().all(|v| *v == v2), "partition {part}: never back to v1");
        if first_v2 < versions.len() {
            switches += 1;
        }
    }
    assert!(switches >= 1, "the new model was used");
    assert_eq!(log.matches("hot-swapped model").count(), 1, "{log}");
}

#[test]
fn bad_records_go_to_the_dead_letter_topic_and_bad_models_are_refused() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "dlq", 1);
    assert_ok(&w.train(&[]));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut svc = w.serve(&["--metrics-addr", &addr]);
    let (_, log) = wait_log(&mut svc, "serving model", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(&addr, "/healthz").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "healthz never became ready: {}", http_get(&addr, "/healthz"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = producer(&w.bootstrap);
    let mut huge = b"{\"alcohol\": 10, \"pad\": \"".to_vec();
    // 4 MB: tansu 0.6.0 accepts a 10 MB record but never serves records over ~5 MB to consumers
    // (checked with confluent-kafka too); what matters is "over max_record_bytes (1 MiB)".
    huge.resize(4_000_000, b'x');
    huge.extend_from_slice(b"\"}");
    let bad: Vec<(String, Vec<u8>)> = vec![
        ("malformed".into(), b"{\"alcohol\": ".to_vec()),
        ("wrongtype".into(), b"{\"alcohol\": \"abc\"}".to_vec()),
        ("boolean".into(), b"{\"alcohol\": true}".to_vec()),
        ("binary".into(), vec![0xff, 0xfe, 0x00, 0x01]),
        ("nan".into(), b"{\"alcohol\": NaN}".to_vec()),
        ("overflow".into(), b"{\"alcohol\": 1e999}".to_vec()),
        ("infinity".into(), b"{\"alcohol\": \"Infinity\"}".to_vec()),
        // the record's key field names the prediction, not the Kafka key
        ("missingrule".into(), b"{\"alcohol\": 10, \"pH\": \"NA\", \"key\": \"from-field\"}".to_vec()),
        ("good".into(), wine_record(1)),
    ];
    produce(&p, &w.topics.input, &bad);
    let big: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &w.bootstrap)
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rt.block_on(big.send(
        rdkafka::producer::FutureRecord::to(&w.topics.input).key("huge").payload(&huge),
        Duration::from_secs(30),
    ));
    assert!(sent.is_ok(), "{:?}", sent.err().map(|e| e.0));
    let dead = read_topic(&w.bootstrap, &w.topics.dead, 8, Duration::from_secs(60));
    if dead.len() != 8 {
        sigterm(&svc);
        let _ = svc.wait();
        panic!(
            "dead letters {:?}\nservice log:\n{}",
            dead.iter().map(|d| d.2.clone()).collect::<Vec<_>>(),
            log.join().unwrap()
        );
    }
    for (_, _, key, value, headers) in &dead {
        assert!(!headers["modelcast.reason"].is_empty());
        if key.as_deref() == Some("huge") {
            assert_eq!(value.len(), 900_000, "oversized dead letters are cut to dead_letter_max_bytes");
            assert_eq!(&value[..], &huge[..900_000]);
            assert!(headers["modelcast.truncated"].contains(&format!("of {} bytes", huge.len())));
            continue;
        }
        let original = &bad.iter().find(|(k, _)| Some(k) == key.as_ref()).unwrap().1;
        assert_eq!(value, original, "original bytes kept");
    }
    let reason = |k: &str| dead.iter().find(|d| d.2.as_deref() == Some(k)).unwrap().4["modelcast.reason"].clone();
    assert!(reason("malformed").contains("malformed JSON"));
    assert!(reason("wrongtype").contains("not a number"));
    assert!(reason("boolean").contains("boolean"));
    assert!(reason("nan").contains("malformed JSON"));
    assert!(reason("overflow").contains("malformed JSON"));
    assert!(reason("infinity").contains("finite"));
    assert!(reason("huge").contains("exceeds max_record_bytes"));
    assert!(dead.iter().all(|d| d.2.as_deref() != Some("missingrule")), "a missing value is imputed, not rejected");
    // a tampered artifact is refused; the old model keeps serving
    let anns = read_topic(&w.bootstrap, &w.topics.train, 1, Duration::from_secs(10));
    let mut ann: serde_json::Value = serde_json::from_slice(&anns[0].3).unwrap();
    let v1 = ann["version"].as_str().unwrap().to_string();
    ann["version"] = "20990101T000000000Z-00000000".into();
    ann["sha256"] = "f".repeat(64).into();
    produce(
        &p,
        &w.topics.train,
        &[("wine-quality".into(), serde_json::to_vec(&ann).unwrap()), ("x".into(), b"garbage".to_vec())],
    );
    std::thread::sleep(Duration::from_secs(2));
    produce(&p, &w.topics.input, &[("after".into(), wine_record(2))]);
    let preds = read_topic(&w.bootstrap, &w.topics.app, 3, Duration::from_secs(30));
    let metrics = http_get(&addr, "/metrics");
    sigterm(&svc);
    svc.wait().unwrap();
    let log = log.join().unwrap();
    assert!(metrics.contains("modelcast_dead_lettered_total 8"), "{metrics}");
    assert!(metrics.contains("modelcast_predictions_out_total 3"), "{metrics}");
    assert!(metrics.contains("modelcast_records_in_total 11"), "{metrics}");
    assert!(metrics.contains("modelcast_models_refused_total 2"), "{metrics}");
    assert!(metrics.contains(&format!("version=\"{v1}\"")), "{metrics}");
    assert!(metrics.contains("modelcast_end_to_end_latency_seconds_count 3"), "{metrics}");
    assert!(metrics.contains("modelcast_consumer_lag{partition=\"0\"} 0"), "{metrics}");
    assert_eq!(preds.len(), 3);
    let keys: Vec<_> = preds.iter().map(|p| p.2.as_deref().unwrap_or_default()).collect();
    assert!(keys.contains(&"from-field") && keys.contains(&"good") && keys.contains(&"after"), "{keys:?}");
    for (_, _, _, v, _) in &preds {
        let v: serde_json::Value = serde_json::from_slice(v).unwrap();
        assert_eq!(v["model_version"], v1.as_str());
    }
    assert!(log.contains("sha256 mismatch") && log.contains("refused announcement"), "{log}");
}

#[test]
fn two_replicas_share_partitions_and_both_hot_swap() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "replicas", 4);
    assert_ok(&w.train(&[]));
    let mut a = w.serve(&[]);
    let mut b = w.serve(&[]);
    let (_, log_a) = wait_log(&mut a, "serving model", Duration::from_secs(60));
    let (_, log_b) = wait_log(&mut b, "serving model", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(8)); // let the group rebalance across both members
    let p = producer(&w.bootstrap);
    let n = 4000;
    let records: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("k{i}"), wine_record(i))).collect();
    produce(&p, &w.topics.input, &records);
    assert_eq!(read_topic(&w.bootstrap, &w.topics.app, n, Duration::from_secs(90)).len(), n);
    assert_ok(&w.train(&[]));
    std::thread::sleep(Duration::from_secs(3));
    produce(&p, &w.topics.input, &records[..100]);
    let total = read_topic(&w.bootstrap, &w.topics.app, n + 100, Duration::from_secs(60));
    sigterm(&a);
    sigterm(&b);
    a.wait().unwrap();
    b.wait().unwrap();
    let (la, lb) = (log_a.join().unwrap(), log_b.join().unwrap());
    assert_eq!(total.len(), n + 100);
    assert!(la.contains("hot-swapped model") && lb.contains("hot-swapped model"), "both swap:\nA:\n{la}\nB:\n{lb}");
    let scored = |log: &str| -> u64 {
        log.lines()
            .find(|l| l.contains("stopped"))
            .and_then(|l| l.split("scored=").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let (sa, sb) = (scored(&la), scored(&lb));
    assert!(sa > 0 && sb > 0, "both replicas scored records: {sa} / {sb}");
    assert!(sa + sb >= (n + 100) as u64);
}

#[test]
fn sigkill_and_restart_loses_nothing() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "kill", 3);
    assert_ok(&w.train(&[]));
    let mut svc = w.serve(&[]);
    let (_, _log) = wait_log(&mut svc, "serving model", Duration::from_secs(60));
    let p = producer(&w.bootstrap);
    let n = 20_000;
    let records: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("k{i}"), wine_record(i))).collect();
    produce(&p, &w.topics.input, &records);
    // kill -9 mid-stream
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_topic(&w.bootstrap, &w.topics.app, 2000, Duration::from_secs(2)).len() < 2000 {
        assert!(Instant::now() < deadline, "no progress before the kill");
    }
    svc.kill().unwrap();
    svc.wait().unwrap();
    let mut svc = w.serve(&[]);
    let (_, log) = wait_log(&mut svc, "serving model", Duration::from_secs(60));
    let (keys, all) = keys_in(&w.bootstrap, &w.topics.app, n, Duration::from_secs(120));
    sigterm(&svc);
    svc.wait().unwrap();
    let _ = log.join();
    assert_eq!(keys.len(), n, "every input has at least one prediction");
    eprintln!("kill -9: {n} inputs, {all} predictions, {} duplicates (at-least-once)", all - n);
}

#[test]
fn secrets_never_appear_in_output_logs_messages_or_artifacts() {
    let Some(bed) = bed() else { return };
    let w = Wired::new(&bed, "secrets", 1);
    let sasl_secret = "sasl-Secret-Value-93f1c";
    let sasl_user = "sasl-User-Key-77ab2";
    let cfg = std::fs::read_to_string(w.sb.path().join("kafka.yaml")).unwrap();
    // SASL settings referenced from the environment (a PLAINTEXT broker ignores them)
    w.sb.write(
        "secret.yaml",
        &format!("{cfg}sasl.username: ${{TEST_SASL_USER}}\nsasl.password: ${{TEST_SASL_PASSWORD}}\n"),
    );
    w.sb.write("in.csv", "alcohol,pH\n10,3.1\nabc,3.2\n");
    let run = |args: &[&str], extra: &[(&str, &str)]| -> String {
        let mut c = w.cmd(args);
        c.env("TEST_SASL_PASSWORD", sasl_secret).env("TEST_SASL_USER", sasl_user).env("MODELCAST_LOG_FORMAT", "json");
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let store = w.store.clone();
    let mut everything = String::new();
    for args in [
        vec!["--help"],
        vec!["train", "--help"],
        vec!["predict", "--help"],
        vec!["topics", "create", "--kafka-config", "secret.yaml"],
        vec!["train", "--json", "--store", &store, "--kafka-config", "secret.yaml"],
        vec!["predict", "--input", "in.csv", "--store", &store, "--kafka-config", "secret.yaml", "--sink", "bus"],
        vec!["config", "--kafka-config", "secret.yaml", "--store", &store],
        vec!["models", "--store", &store],
    ] {
        everything.push_str(&run(&args, &[]));
    }
    // error paths: wrong AWS secret, unset variable
    everything.push_str(&run(
        &["train", "--store", &store, "--kafka-config", "secret.yaml"],
        &[("AWS_SECRET_ACCESS_KEY", "wrong-aws-Secret-5521")],
    ));
    let config = run(&["config", "--kafka-config", "secret.yaml"], &[]);
    assert!(
        config.contains("sasl.password: '***'")
            || config.contains("sasl.password: \"***\"")
            || config.contains("sasl.password: ***"),
        "{config}"
    );
    // the service's logs
    let mut svc = w
        .cmd(&["predict", "--serve", "--store", &store, "--kafka-config", "secret.yaml", "--log-format", "json"])
        .env("TEST_SASL_PASSWORD", sasl_secret)
        .env("TEST_SASL_USER", sasl_user)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, log) = wait_log(&mut svc, "serving", Duration::from_secs(60));
    produce(
        &producer(&w.bootstrap),
        &w.topics.input,
        &[("a".into(), b"{\"alcohol\": 1}".to_vec()), ("b".into(), b"nope".to_vec())],
    );
    read_topic(&w.bootstrap, &w.topics.app, 2, Duration::from_secs(20));
    sigterm(&svc);
    svc.wait().unwrap();
    everything.push_str(&log.join().unwrap());
    // what went over Kafka and into S3
    for t in [&w.topics.train, &w.topics.app, &w.topics.dead] {
        for r in read_topic(&w.bootstrap, t, usize::MAX, Duration::from_secs(3)) {
            everything.push_str(&String::from_utf8_lossy(&r.3));
            everything.push_str(&format!("{:?}", r.4));
        }
    }
    let store = s3_store(&bed, &w.store);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for key in rt.block_on(store.list("")).unwrap() {
        everything.push_str(&String::from_utf8_lossy(&rt.block_on(store.get(&key)).unwrap()));
    }
    assert!(everything.len() > 10_000, "collected output: {} bytes", everything.len());
    for secret in [sasl_secret, sasl_user, bed.secret_key.as_str(), "wrong-aws-Secret-5521"] {
        assert_eq!(everything.matches(secret).count(), 0, "{secret} leaked");
    }
}
