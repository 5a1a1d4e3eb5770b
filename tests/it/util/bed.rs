//! The loopback test bed started by `scripts/services.sh run` (tansu for Kafka, garage and
//! s3s-fs for S3), a [`Sandbox`] [`Wired`] to it, and serving [`Replica`]s.
//!
//! Without the `MODELCAST_TEST_*` variables [`bed`] returns `None` and the test is skipped with
//! a note, unless `MODELCAST_REQUIRE_SERVICES=1` (set by the script): then it is a failure. The
//! same holds for s3s-fs ([`Bed::s3s_fs`]), unless the bed was told to go without it
//! (`MODELCAST_S3S_FS=0`).
//!
//! Tests share the bed; a test that stops or restarts one of its servers takes it alone
//! ([`bed_alone`]): a lock file in the bed's directory, shared by every other test, held
//! exclusively by it, across the threads of `cargo test` and the processes of nextest alike.

use std::fs::File;
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use modelcast::store::{StaticCredentials, Store, StoreOptions};

use super::logs::Log;
use super::{free_addr, sigterm, unique, wait_for, Sandbox, TestCommand};

/// An S3 server of the test bed.
#[derive(Debug, Clone)]
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl S3Server {
    /// Store options reaching this server with its keys and region, from no environment.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            credentials: Some(StaticCredentials {
                access_key_id: self.access_key.clone(),
                secret_access_key: self.secret_key.clone(),
            }),
            ..Default::default()
        }
    }

    /// The store at `url` (`s3://bucket/prefix`) on this server.
    pub async fn open(&self, url: &str) -> Store {
        Store::open(url, &self.options()).await.unwrap_or_else(|e| panic!("open {url} at {}: {e}", self.endpoint))
    }

    /// The store at `url`, for a synchronous test.
    pub fn open_blocking(&self, url: &str) -> BlockingStore {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(self.open(url));
        BlockingStore { rt, store }
    }
}

/// A store with the runtime its client lives on.
pub struct BlockingStore {
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl BlockingStore {
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(self.store.get(key)).unwrap_or_else(|e| panic!("get {key}: {e}"))
    }

    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.rt.block_on(self.store.list(prefix)).unwrap()
    }
}

/// Addresses of the test bed.
pub struct Bed {
    pub bootstrap: String,
    pub garage: S3Server,
    /// s3s-fs, when it was installed (tests reach it through [`Bed::s3s_fs`]).
    s3s: Option<S3Server>,
    /// The SASL_SSL broker, when socat was there to terminate its TLS.
    pub sasl: Option<SaslBed>,
    /// This test's hold on the bed (shared, or exclusive for [`bed_alone`]), released on drop.
    _turn: File,
}

/// The test bed's SASL_SSL listener on Kafka's own TLS, as Confluent Cloud's: PLAIN, and
/// SCRAM-SHA-256/512 for the same user.
#[derive(Debug, Clone)]
pub struct SaslBed {
    /// `localhost:PORT` (the name in its certificate).
    pub bootstrap: String,
    /// The test CA that signed the broker certificate.
    pub ca: String,
    pub user: String,
    pub password: String,
}

impl SaslBed {
    /// A connection string for the `util::kafka` helpers, authenticating with `mechanism`.
    pub fn conn(&self, mechanism: &str) -> String {
        format!(
            "{}|security.protocol=SASL_SSL|sasl.mechanisms={mechanism}|sasl.username={}|sasl.password={}|ssl.ca.location={}",
            self.bootstrap, self.user, self.password, self.ca
        )
    }

    /// A kafka_config.yaml in the Confluent Cloud shape; the password comes from
    /// `${SASL_PASSWORD}`, topic names from `id`.
    pub fn kafka_yaml(&self, mechanism: &str, id: &str) -> String {
        format!(
            "bootstrap.servers: {}\nsecurity.protocol: SASL_SSL\nsasl.mechanisms: {mechanism}\n\
             sasl.username: {}\nsasl.password: ${{SASL_PASSWORD}}\nssl.ca.location: {}\n\
             modelcast:\n  topics: {{train: {id}-train, app_messages: {id}-app, input: {id}-in, dead_letter: {id}-dead, \
             shadow: {id}-shadow, labels: {id}-labels, model_metrics: {id}-metrics}}\n  group_id: {id}-group\n  partitions: 2\n",
            self.bootstrap, self.user, self.ca
        )
    }
}

/// The test bed, shared with the other tests running now; `None` (a skipped test) without one.
pub fn bed() -> Option<Bed> {
    connect(false)
}

/// The test bed for a test that stops or restarts its servers: it waits until no other test
/// uses the bed, and none starts until it is done.
pub fn bed_alone() -> Option<Bed> {
    connect(true)
}

fn connect(alone: bool) -> Option<Bed> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let bootstrap = var("MODELCAST_TEST_BOOTSTRAP");
    let endpoint = var("MODELCAST_TEST_S3_ENDPOINT");
    let (Some(bootstrap), Some(endpoint)) = (bootstrap, endpoint) else {
        if required() {
            panic!("MODELCAST_REQUIRE_SERVICES=1 but the test bed variables are not set");
        }
        eprintln!("skipped: no test bed (run scripts/test.sh, or scripts/services.sh run cargo test)");
        return None;
    };
    let garage = S3Server {
        endpoint,
        bucket: var("MODELCAST_TEST_S3_BUCKET").expect("MODELCAST_TEST_S3_BUCKET"),
        access_key: var("MODELCAST_TEST_S3_ACCESS_KEY").expect("MODELCAST_TEST_S3_ACCESS_KEY"),
        secret_key: var("MODELCAST_TEST_S3_SECRET_KEY").expect("MODELCAST_TEST_S3_SECRET_KEY"),
        region: var("MODELCAST_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
    };
    let s3s = match (var("MODELCAST_TEST_S3S_ENDPOINT"), var("MODELCAST_TEST_S3S_BUCKET")) {
        (Some(endpoint), Some(bucket)) => Some(S3Server {
            endpoint,
            bucket,
            access_key: var("MODELCAST_TEST_S3S_ACCESS_KEY").unwrap_or_default(),
            secret_key: var("MODELCAST_TEST_S3S_SECRET_KEY").unwrap_or_default(),
            region: var("MODELCAST_TEST_S3S_REGION").unwrap_or_else(|| "us-east-1".into()),
        }),
        _ => None,
    };
    let sasl = match (var("MODELCAST_TEST_SASL_BOOTSTRAP"), var("MODELCAST_TEST_SASL_CA")) {
        (Some(bootstrap), Some(ca)) => Some(SaslBed {
            bootstrap,
            ca,
            user: var("MODELCAST_TEST_SASL_USER").expect("MODELCAST_TEST_SASL_USER"),
            password: var("MODELCAST_TEST_SASL_PASSWORD").expect("MODELCAST_TEST_SASL_PASSWORD"),
        }),
        _ => None,
    };
    let turn = take_turn(&bootstrap, alone);
    Some(Bed { bootstrap, garage, s3s, sasl, _turn: turn })
}

fn required() -> bool {
    std::env::var("MODELCAST_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Lock the bed's lock file (`suite.lock` in `MODELCAST_TEST_SERVICES_DIR`, or one per broker
/// address in the temp dir): shared, or exclusive when `alone`. The lock lives as long as the file.
fn take_turn(bootstrap: &str, alone: bool) -> File {
    let path = match std::env::var_os("MODELCAST_TEST_SERVICES_DIR") {
        Some(dir) => std::path::PathBuf::from(dir).join("suite.lock"),
        None => std::env::temp_dir().join(format!("modelcast-bed-{}.lock", bootstrap.replace([':', '/'], "_"))),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open the test bed's lock file {}: {e}", path.display()));
    let locked = if alone { file.lock() } else { file.lock_shared() };
    locked.unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}

impl Bed {
    /// s3s-fs, or `None` (a skipped test) when the bed runs without it. With
    /// `MODELCAST_REQUIRE_SERVICES=1` a missing s3s-fs is a failure saying how to install it,
    /// unless the bed was told to go without it (`MODELCAST_S3S_FS=0`).
    pub fn s3s_fs(&self) -> Option<&S3Server> {
        if self.s3s.is_none() {
            let opted_out = std::env::var("MODELCAST_S3S_FS").as_deref() == Ok("0");
            assert!(
                opted_out || !required(),
                "MODELCAST_REQUIRE_SERVICES=1 but s3s-fs is not in the test bed (no MODELCAST_TEST_S3S_ENDPOINT): \
                 install it with `scripts/services.sh install` (cargo install s3s-fs@0.14.1 --features binary \
                 --locked into ~/.cache/modelcast/s3s-fs-0.14.1), then start the bed again; \
                 MODELCAST_S3S_FS=0 runs the bed and the tests without it"
            );
            eprintln!("skipped: s3s-fs is not in the test bed (scripts/services.sh install builds it)");
        }
        self.s3s.as_ref()
    }

    /// A Kafka config for a Rust-level contract test: topics `ID-train`, `ID-app`, ... on the plain
    /// broker (1 partition each), written into `dir`.
    pub fn kafka_config(&self, dir: &std::path::Path, id: &str) -> modelcast::config::kafka::KafkaConfig {
        let path = dir.join("kafka.yaml");
        std::fs::write(
            &path,
            format!(
                "bootstrap.servers: {}\nmodelcast:\n  topics: {{train: {id}-train, app_messages: {id}-app, input: {id}-in, \
                 dead_letter: {id}-dead, shadow: {id}-shadow, labels: {id}-labels, model_metrics: {id}-metrics, \
                 model_drift: {id}-drift}}\n  partitions: 1\n  timeout_ms: 60000\n",
                self.bootstrap
            ),
        )
        .unwrap();
        modelcast::config::kafka::KafkaConfig::load_with(&path, &|_| None).unwrap()
    }
}

/// Topic names of one test.
pub struct Topics {
    pub train: String,
    pub app: String,
    pub input: String,
    pub dead: String,
    pub shadow: String,
    pub labels: String,
    pub metrics: String,
    pub drift: String,
}

/// A sandbox wired to the test bed with its own topics, bucket prefix and Kafka config
/// (`kafka.yaml`); the binary reaches garage through the standard AWS variables.
pub struct Wired {
    pub sb: Sandbox,
    pub topics: Topics,
    /// `s3://bucket/prefix` of this test.
    pub store: String,
    pub bootstrap: String,
    /// The serving replicas' consumer group.
    pub group: String,
    env: Vec<(String, String)>,
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
            shadow: format!("{id}-shadow"),
            labels: format!("{id}-labels"),
            metrics: format!("{id}-metrics"),
            drift: format!("{id}-drift"),
        };
        // timeout_ms bounds the binary's Kafka requests (metadata, history, deliveries): a
        // failing bound, generous for a loaded machine.
        sb.write(
            "kafka.yaml",
            &format!(
                "bootstrap.servers: ${{TEST_BOOTSTRAP}}\ncompression.type: lz4\n\
                 modelcast:\n  topics: {{train: {}, app_messages: {}, input: {}, dead_letter: {}, shadow: {}, \
                 labels: {}, model_metrics: {}, model_drift: {}}}\n  \
                 group_id: {id}-group\n  partitions: {partitions}\n  timeout_ms: 60000\n",
                topics.train,
                topics.app,
                topics.input,
                topics.dead,
                topics.shadow,
                topics.labels,
                topics.metrics,
                topics.drift
            ),
        );
        let g = &bed.garage;
        let env = [
            ("TEST_BOOTSTRAP", bed.bootstrap.as_str()),
            ("AWS_ACCESS_KEY_ID", g.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", g.secret_key.as_str()),
            ("AWS_REGION", g.region.as_str()),
            ("AWS_ENDPOINT_URL", g.endpoint.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let (store, bootstrap, group) =
            (format!("s3://{}/{id}", g.bucket), bed.bootstrap.clone(), format!("{id}-group"));
        let w = Wired { sb, topics, store, bootstrap, group, env };
        w.command(&["topics", "create", "--kafka-config", "kafka.yaml"]).assert_ok();
        w
    }

    /// `modelcast ARGS` in the sandbox, with the test bed's addresses and keys in its environment.
    pub fn command(&self, args: &[&str]) -> TestCommand {
        let mut c = self.sb.command(args);
        c.env_remove("AWS_PROFILE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `train` to S3 + Kafka.
    pub fn train(&self, extra: &[&str]) -> TestCommand {
        let mut c = self.command(&["train", "--store", &self.store, "--kafka-config", "kafka.yaml"]);
        c.args(extra);
        c
    }

    /// Start `predict --serve` (see [`Replica::start`]).
    pub fn serve(&self, extra: &[&str]) -> Replica {
        let mut c = self.command(&["predict", "--serve", "--store", &self.store, "--kafka-config", "kafka.yaml"]);
        c.args(extra);
        Replica::start(c)
    }
}

/// A running `predict --serve` with `/healthz` and `/metrics` on a free port and JSON logs
/// collected from its stderr. Dropping it kills the process.
pub struct Replica {
    child: Option<Child>,
    /// Where `/healthz` and `/metrics` are served.
    pub addr: String,
    pub log: Option<Log>,
}

impl Replica {
    /// Start `cmd` (a `predict --serve`) with `--metrics-addr` and `--log-format json` added.
    pub fn start(mut cmd: TestCommand) -> Replica {
        let addr = free_addr();
        cmd.args(["--metrics-addr", &addr, "--log-format", "json"]);
        cmd.cmd().stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn();
        let log = Log::collect(&mut child);
        Replica { child: Some(child), addr, log: Some(log) }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&mut self) -> &mut Log {
        self.log.as_mut().unwrap()
    }

    /// Whether `/healthz` answers 200: the replica has a model and a partition assignment.
    pub fn ready(&self) -> bool {
        http_get(&self.addr, "/healthz").is_some_and(|(status, _)| status == 200)
    }

    /// Wait until [`Replica::ready`].
    pub fn wait_ready(&mut self, timeout: Duration) {
        let addr = self.addr.clone();
        let child = self.child.as_mut().unwrap();
        wait_for(&format!("replica at {addr} ready"), timeout, || {
            if let Some(status) = child.try_wait().unwrap() {
                return Ok(Err(status));
            }
            match http_get(&addr, "/healthz") {
                Some((200, _)) => Ok(Ok(())),
                r => Err(format!("/healthz: {r:?}")),
            }
        })
        .unwrap_or_else(|status| panic!("the replica exited ({status}) before it was ready:\n{}", self.log().so_far()));
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(&self.addr, "/metrics").map(|(_, body)| body).unwrap_or_default()
    }

    /// `/metrics` once it contains every one of `lines`, or as it is when `timeout` passed (the
    /// caller asserts on it).
    pub fn wait_metrics(&self, lines: &[&str], timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if lines.iter().all(|l| m.contains(l)) || std::time::Instant::now() >= deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop it as a supervisor would (SIGTERM); its exit status and whole log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        sigterm(&child);
        let status = child.wait().unwrap();
        (status, self.log.take().unwrap().finish())
    }

    /// kill -9; its whole log.
    pub fn kill(mut self) -> String {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.log.take().unwrap().finish()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP GET with a real client (ureq): (status, body), or `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent.get(&format!("http://{addr}{path}")).call().ok()?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// Parse a Prometheus text exposition into (metric name, labels, value) samples.
pub fn parse_metrics(text: &str) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid Prometheus text exposition");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            let labels = s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            (s.metric, labels, value)
        })
        .collect()
}
