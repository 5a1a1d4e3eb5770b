//! The command line (clap derive): raw flags and the environment variables that stand for them,
//! nothing else. No defaults and no rules between flags live here:
//! [`crate::settings`] turns these into validated per-command settings, once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Train regression models and serve them from Kafka.";

const EXAMPLES: &str = "\
Examples:
  modelcast train                                   # params/params.yaml → models/ (no services needed)
  modelcast predict --input data/winequality-red.csv
  tail -f features.jsonl | modelcast predict --input - --follow
  modelcast train --store s3://my-models/prod --kafka-config kafka_config.yaml
  modelcast predict --serve --kafka-config kafka_config.yaml --store s3://my-models/prod

Lifecycle (cron-safe retraining):
  modelcast train --promote-if-better champion      # stored and announced; the alias moves only if better
  modelcast predict --serve --alias champion --kafka-config kafka_config.yaml
  modelcast rollback wine-quality                   # back to the previous champion

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 some records were rejected,
4 promotion refused by the gate, 5 an alias move lost a race with a concurrent one.
Logs go to stderr (RUST_LOG=debug for more); data goes to stdout.";

/// modelcast command line.
#[derive(Debug, Parser)]
#[command(name = "modelcast", version, about = ABOUT, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, hide_env_values = true, env = "MODELCAST_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Only log warnings and errors (RUST_LOG overrides).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a model, store the artifact, announce it.
    #[command(after_help = TRAIN_EXAMPLES)]
    Train(TrainArgs),
    /// Score records with the newest model (batch, --follow, or --serve from Kafka).
    #[command(after_help = PREDICT_EXAMPLES)]
    Predict(PredictArgs),
    /// Manage Kafka topics.
    Topics {
        /// The action.
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// List the models in a store: version, created, kind, held-out metrics, aliases.
    #[command(
        after_help = "Examples:\n  modelcast models\n  modelcast models wine-quality --store s3://my-models/prod\n  modelcast models --json | jq '.[] | select(.aliases | index(\"champion\"))'"
    )]
    Models(ModelsArgs),
    /// Point an alias (default champion) at a stored version, after verifying it.
    #[command(after_help = PROMOTE_EXAMPLES)]
    Promote(PromoteArgs),
    /// Move an alias back: to the version it pointed at before, or to --to VERSION.
    #[command(after_help = ROLLBACK_EXAMPLES)]
    Rollback(RollbackArgs),
    /// The moves of a model's aliases over time: what served when, who moved it, and why.
    #[command(
        after_help = "Examples:\n  modelcast history wine-quality\n  modelcast history wine-quality --alias champion --json"
    )]
    History(HistoryArgs),
    /// Live accuracy per model version: join predictions with the labels topic by key.
    #[command(after_help = EVALUATE_EXAMPLES)]
    Evaluate(EvaluateArgs),
    /// Fetch a model version's training report (SVG): predicted against actual, residuals,
    /// standardised coefficients, held-out error against the baseline.
    #[command(
        after_help = "Examples:\n  modelcast report wine-quality                  # newest version, written to ./wine-quality-<version>.report.svg\n  modelcast report wine-quality champion -o champion.svg\n  modelcast report wine-quality 20261121T101500123Z-1a2b3c4d -o - | rsvg-convert > report.png\n\nVERSION is a version id or an alias (champion); without it, the newest version."
    )]
    Report(ReportArgs),
    /// How far records have moved from what a model version was trained on: per input column
    /// and for the predictions, PSI and Jensen-Shannon against the training reference.
    #[command(after_help = DRIFT_EXAMPLES)]
    Drift(DriftArgs),
    /// Export a model version as ONNX or PMML: the whole pipeline (imputation, scaling, one-hot,
    /// the estimator) for onnxruntime, tract, JPMML, pypmml or Flink.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Preflight: brokers, credentials, topics, store and a model, as a checklist (exit 0 only
    /// if all pass).
    #[command(
        after_help = "Examples:\n  modelcast check --kafka-config kafka_config.yaml --store s3://my-models/prod\n  modelcast check    # the embedded default: the local store"
    )]
    Check(CheckArgs),
    /// Show the effective configuration (secrets redacted).
    Config(ConfigArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  modelcast completions bash > ~/.local/share/bash-completion/completions/modelcast\n  modelcast completions zsh > \"${fpath[1]}/_modelcast\"\n  modelcast completions fish > ~/.config/fish/completions/modelcast.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff).
    #[command(
        after_help = "Examples:\n  modelcast man | man -l -\n  modelcast man > /usr/local/share/man/man1/modelcast.1"
    )]
    Man,
}

const EVALUATE_EXAMPLES: &str = "\
Examples:
  modelcast evaluate --kafka-config kafka_config.yaml --horizon 24h          # once: JSON on stdout
  modelcast evaluate --serve --kafka-config kafka_config.yaml --metrics-addr 127.0.0.1:9899
  modelcast evaluate --kafka-config kafka_config.yaml --label-field quality --key-field id
  modelcast evaluate     # the embedded default: models/_bus/app_messages.jsonl and labels.jsonl

Reads modelcast.topics.app_messages (and .shadow if it exists) and .labels from now − horizon on.
A label is a JSON object with the record's key and its true value: {\"key\": \"r-17\", \"label\": 6}.
Labels must be keyed like the predictions, on a topic with the same partition count (checked).
Each prediction waits up to the horizon for its label (and a label for its prediction);
unlabelled predictions are counted as expired per version.";

const PROMOTE_EXAMPLES: &str = "\
Examples:
  modelcast promote wine-quality 20261121T101500123Z-1a2b3c4d
  modelcast promote wine-quality 20261121T101500123Z-1a2b3c4d --alias challenger --reason \"A/B test\"

The version must exist in the store and pass a predictor's checks (sha256 against its
announcement, format, schema); otherwise nothing is published (exit 1). Exit 5: another move of
the same alias won a race; nothing of this one applied.";

const ROLLBACK_EXAMPLES: &str = "\
Examples:
  modelcast rollback wine-quality                     # to the version champion held before
  modelcast rollback wine-quality --to 20261121T101500123Z-1a2b3c4d --reason \"bad data on the 21st\"

Repeated rollbacks walk further back through the versions the alias held.";

const TRAIN_EXAMPLES: &str = "\
Examples:
  modelcast train
  modelcast train --promote-if-better champion --json   # cron: exit 4 when the new model is not better
  modelcast train --promote-if-better champion --max-drift 0.25   # and not when the data moved away
  modelcast train --params params/lasso.yaml --name wine-lasso --json
  modelcast train --data data/more.csv --store s3://my-models/prod --kafka-config kafka_config.yaml";

const PREDICT_EXAMPLES: &str = "\
Examples:
  modelcast predict --input data/winequality-red.csv > predictions.jsonl
  modelcast predict --input records.jsonl --model 20261121T101500123Z-1a2b3c4d
  producer | modelcast predict --input - --follow --sink stdout --sink bus
  modelcast predict --serve --kafka-config kafka_config.yaml --metrics-addr 127.0.0.1:9898
  MODELCAST_INSTANCE_ID=$HOSTNAME modelcast predict --serve --kafka-config kafka_config.yaml
  modelcast predict --serve --alias champion --shadow challenger --kafka-config kafka_config.yaml
  modelcast predict --input today.csv --alias champion --shadow challenger
  modelcast predict --http 127.0.0.1:8080 --alias champion     # curl .../v2/models/wine/infer
  modelcast predict --serve --http 0.0.0.0:8080 --grpc 0.0.0.0:8081 --kafka-config kafka_config.yaml
  modelcast predict --serve --kafka-config kafka_config.yaml --drift-window 5000 --drift-every 1m";

/// Where the store and bus are.
#[derive(Debug, Args, Clone)]
pub struct Locations {
    /// Model store URL: file://PATH or s3://BUCKET/PREFIX [default: file://models].
    #[arg(long, hide_env_values = true, env = "MODELCAST_STORE")]
    pub store: Option<String>,
    /// Kafka config file (Kafka client properties + `modelcast:` settings). Without it, the local
    /// announcement and prediction logs in the store are used.
    #[arg(long, hide_env_values = true, env = "MODELCAST_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,
    /// S3 endpoint override (MinIO, garage); AWS_ENDPOINT_URL also works.
    #[arg(long, hide_env_values = true, env = "MODELCAST_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, hide_env_values = true, env = "MODELCAST_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 checksum mode: when_required (default with --s3-endpoint) or when_supported.
    #[arg(long, hide_env_values = true, env = "MODELCAST_S3_CHECKSUMS")]
    pub s3_checksums: Option<String>,
    /// Declare that this S3-compatible server's conditional writes (If-None-Match) are atomic, as
    /// MinIO's are: needed to keep aliases in the bucket without Kafka (AWS S3 needs no flag).
    #[arg(long, hide_env_values = true, env = "MODELCAST_S3_ATOMIC_WRITES")]
    pub s3_atomic_writes: bool,
}

/// `modelcast train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Params file [default: params/params.yaml].
    #[arg(long, hide_env_values = true, env = "MODELCAST_PARAMS")]
    pub params: Option<PathBuf>,
    /// Training CSV(s), replacing data.train from the params file; or one `kafka://TOPIC` of
    /// labelled JSON records (needs --kafka-config), replacing both.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// With a topic: only records from this time on, as a duration back from now (24h, 7d, 90m)
    /// or an RFC 3339 timestamp [default: the earliest offset].
    #[arg(long, value_name = "DURATION|TIMESTAMP")]
    pub since: Option<String>,
    /// With a topic: the largest fraction of malformed records (skipped and counted) before the
    /// run fails [default: 0.01].
    #[arg(long, value_name = "FRACTION")]
    pub max_rejected: Option<f64>,
    /// Explicit test CSV, replacing evaluation.test_data.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Model name, replacing `name` from the params file.
    #[arg(long)]
    pub name: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the model as ONNX and/or PMML beside the artifact (`onnx`, `pmml` or
    /// `onnx,pmml`); the announcement carries their keys and sha256.
    #[arg(long, value_name = "FORMATS", env = "MODELCAST_EXPORT")]
    pub export: Option<String>,
    /// Move this alias to the new model (no gate).
    #[arg(long, value_name = "ALIAS", conflicts_with = "promote_if_better")]
    pub promote: Option<String>,
    /// Move this alias to the new model only if it beats the alias's current model on the same
    /// held-out rows (and the mean-of-target baseline); exit 4 otherwise. Overrides the params
    /// file's `promotion:` block.
    #[arg(long, value_name = "ALIAS")]
    pub promote_if_better: Option<String>,
    /// Gate metric: rmse (default), mae or r2.
    #[arg(long)]
    pub metric: Option<String>,
    /// Required improvement over the current model: absolute (0.01) or relative (2%) [default: 0,
    /// but strictly better].
    #[arg(long)]
    pub min_improvement: Option<String>,
    /// Also refuse when the new data drifted from the current model's training data: some input
    /// column's PSI on the new held-out rows, against the current model's drift reference, is
    /// above this (e.g. 0.25). Off by default; reported under `promotion.drift` in --json.
    #[arg(long, value_name = "PSI")]
    pub max_drift: Option<f64>,
    /// Why (recorded with the alias move).
    #[arg(long)]
    pub reason: Option<String>,
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// What `promote` and `rollback` share: which alias, why, the output, the store and bus.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The alias to move [default: champion].
    #[arg(long)]
    pub alias: Option<String>,
    /// Why (recorded with the move).
    #[arg(long)]
    pub reason: Option<String>,
    /// Print the move as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// `modelcast promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Model name.
    pub model_name: String,
    /// Version id (as printed by `train` and `models`).
    #[arg(value_name = "VERSION")]
    pub model_version: String,
    /// Only if VERSION, shadowing the alias's current version, had a lower RMSE on the same live
    /// labels (the newest message of modelcast.topics.model_metrics, from `evaluate --serve`);
    /// exit 4 otherwise. Needs --kafka-config.
    #[arg(long)]
    pub if_better_live: bool,
    /// With --if-better-live: the fewest shared labels to decide on [default: 100].
    #[arg(long, value_name = "N", requires = "if_better_live")]
    pub min_labels: Option<u64>,
    /// Alias, reason, output, store and bus.
    #[command(flatten)]
    pub common: MoveArgs,
}

/// `modelcast rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Model name.
    pub model_name: String,
    /// Go back to this version [default: the one the alias held before its current one].
    #[arg(long)]
    pub to: Option<String>,
    /// Alias, reason, output, store and bus.
    #[command(flatten)]
    pub common: MoveArgs,
}

/// `modelcast history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Model name.
    pub model_name: String,
    /// Only this alias.
    #[arg(long)]
    pub alias: Option<String>,
    /// JSON lines on stdout (one move each).
    #[arg(long)]
    pub json: bool,
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// Where predictions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// JSON lines on stdout.
    Stdout,
    /// The app_messages topic (Kafka) or log (<store>/_bus/app_messages.jsonl).
    Bus,
}

/// `modelcast predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Input file (CSV or JSON lines), or - for stdin. Required unless --serve or --http.
    #[arg(long)]
    pub input: Option<String>,
    /// Input format [default: auto].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Keep reading the input (tail -f) and hot-swap to newly announced models.
    #[arg(long)]
    pub follow: bool,
    /// Run as a service: consume the Kafka input topic, produce to app_messages (needs --kafka-config).
    #[arg(long)]
    pub serve: bool,
    /// Only use models of this name (default: the newest model of any name).
    #[arg(long, hide_env_values = true, env = "MODELCAST_MODEL_NAME")]
    pub model_name: Option<String>,
    /// Pin a model version (no hot swap).
    #[arg(long, conflicts_with = "alias")]
    pub model: Option<String>,
    /// Serve the version this alias points at (e.g. champion) and swap whenever it moves, to a
    /// newer or an older version. Without it, the newest announced model serves.
    #[arg(long, hide_env_values = true, env = "MODELCAST_ALIAS")]
    pub alias: Option<String>,
    /// Also score every record with the version this alias points at (e.g. challenger): with
    /// --serve its predictions go to the shadow topic; otherwise each output line gets
    /// shadow_prediction and shadow_version. It never changes the serving output.
    #[arg(long)]
    pub shadow: Option<String>,
    /// Where predictions go (repeatable). Default: stdout, or bus with --serve.
    #[arg(long, value_enum)]
    pub sink: Vec<SinkKind>,
    /// Record field (JSON) or column (CSV) holding the record key [default: key]; records
    /// without it are keyed by their Kafka key, else their row number or partition:offset.
    #[arg(long)]
    pub key_field: Option<String>,
    /// Accept a newly announced model whose input schema differs from the current one.
    #[arg(long)]
    pub allow_schema_change: bool,
    /// A binary classifier predicts class 1 when its probability is at least this, instead of
    /// the threshold stored in the model (0.5 unless chosen at training). In (0, 1). A model
    /// that is not a binary classifier is refused with it.
    #[arg(long, value_name = "P")]
    pub threshold: Option<f64>,
    /// Input topic (--serve only) [default: modelcast.topics.input from the Kafka config].
    #[arg(long)]
    pub input_topic: Option<String>,
    /// Serve /healthz and /metrics on this address (--serve only).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Answer scoring requests in the Open Inference Protocol (KServe V2) over HTTP on this
    /// address: POST /v2/models/NAME/infer, metadata, health, /metrics. Alone, or beside
    /// --serve in the same process (the same model, swapped for both).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// A file holding the bearer token --http and --grpc require (Authorization: Bearer TOKEN);
    /// HTTP health endpoints and /metrics stay open. Never printed.
    #[arg(long, value_name = "FILE", hide_env_values = true, env = "MODELCAST_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Serve --http and --grpc over TLS with this PEM certificate chain (leaf first); needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Answer scoring requests in the Open Inference Protocol's gRPC service
    /// (inference.GRPCInferenceService) on this address. Alone, beside --http, or beside --serve.
    #[arg(long, value_name = "ADDR")]
    pub grpc: Option<std::net::SocketAddr>,
    /// The largest request body --http accepts (413 beyond), and the largest message --grpc
    /// accepts (RESOURCE_EXHAUSTED beyond), in bytes [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub http_max_body: Option<usize>,
    /// Score requests that arrive together in one batch of at most this many rows (a request
    /// with more is a batch of its own) [default: 1024].
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_max_rows: Option<u32>,
    /// How long a batch with fewer rows than --batch-max-rows waits for more requests, in
    /// microseconds; 0 (the default) batches only what arrived while the previous batch was
    /// scored.
    #[arg(long, value_name = "MICROSECONDS")]
    pub batch_wait_us: Option<u64>,
    /// Close a drift window (published on modelcast.topics.model_drift and /metrics) after this
    /// many records (or request rows) scored by the serving version [default: 10000].
    #[arg(long, value_name = "RECORDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub drift_window: Option<u64>,
    /// ... or this long after its first record, whichever comes first [default: 5m].
    #[arg(long, value_name = "DURATION")]
    pub drift_every: Option<String>,
    /// Do not count drift windows.
    #[arg(long)]
    pub no_drift: bool,
    /// Stable name of this replica (Kafka static membership, `group.instance.id`): a replica
    /// restarted under the same name within the session timeout gets its partitions back
    /// without a rebalance. Use the pod or host name; never share it between live replicas
    /// (--serve only).
    #[arg(long, hide_env_values = true, env = "MODELCAST_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// `modelcast topics ...`.
#[derive(Debug, Subcommand)]
pub enum TopicsAction {
    /// Create modelcast's topics (existing ones are kept); with --partitions, grow the
    /// partitioned ones that have fewer.
    #[command(after_help = "Examples:\n  modelcast topics create --kafka-config kafka_config.yaml --partitions 6\n\n\
                      With --partitions, existing input, app_messages, dead-letter, shadow and labels\n\
                      topics with fewer partitions are grown to it (Kafka cannot shrink a topic);\n\
                      running replicas pick the new input partitions up within 10 s.")]
    Create {
        /// Kafka config file [default: kafka_config.yaml].
        #[arg(long, hide_env_values = true, env = "MODELCAST_KAFKA_CONFIG")]
        kafka_config: Option<PathBuf>,
        /// Partitions of the input, app_messages, dead-letter, shadow and labels topics (default
        /// from the config); existing ones with fewer are grown to it.
        #[arg(long)]
        partitions: Option<i32>,
    },
}

/// `modelcast models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Only this model.
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// Only this model (same as MODEL).
    #[arg(long, conflicts_with = "model")]
    pub model_name: Option<String>,
    /// A JSON array on stdout, one object per version.
    #[arg(long)]
    pub json: bool,
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// `modelcast evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Kafka config (brokers, topic names). Without it, the local logs of a file store:
    /// `_bus/app_messages.jsonl` (with `--sink bus`) and `_bus/labels.jsonl`.
    #[arg(long, hide_env_values = true, env = "MODELCAST_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,
    /// Without --kafka-config: the file store whose logs to read [default: file://models].
    #[arg(long, hide_env_values = true, env = "MODELCAST_STORE")]
    pub store: Option<String>,
    /// Keep running: publish on modelcast.topics.model_metrics and update /metrics every --interval.
    #[arg(long)]
    pub serve: bool,
    /// How far back to read, and how long a prediction waits for its label [default: 24h].
    #[arg(long, value_name = "DURATION")]
    pub horizon: Option<String>,
    /// Most predictions and labels waiting at once; the oldest beyond it are dropped and counted
    /// [default: 1000000].
    #[arg(long, value_name = "N")]
    pub max_pending: Option<usize>,
    /// How often to publish (and the window's bucket) [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// Sliding window of the windowed metrics [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Field of a label record holding the key [default: key].
    #[arg(long, value_name = "FIELD")]
    pub key_field: Option<String>,
    /// Field of a label record holding the true value [default: label].
    #[arg(long, value_name = "FIELD")]
    pub label_field: Option<String>,
    /// Serve /healthz and /metrics here (with --serve).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// `modelcast report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Model name.
    pub model_name: String,
    /// Version id or alias [default: the newest version].
    #[arg(value_name = "VERSION")]
    pub model_version: Option<String>,
    /// Where to write the SVG (`-` for stdout) [default: ./MODEL-VERSION.report.svg].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,
    /// Store and bus (the bus holds the aliases).
    #[command(flatten)]
    pub loc: Locations,
}

/// `modelcast drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Model name.
    pub model_name: String,
    /// Version id or alias [default: the newest version].
    #[arg(value_name = "VERSION")]
    pub model_version: Option<String>,
    /// The records: a CSV or JSON-lines file, or - for stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: String,
    /// Input format [default: auto].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Print the report as JSON (schema_version 1) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit 6 when the worst verdict is this or worse.
    #[arg(long, value_enum, default_value = "drift")]
    pub fail_on: FailOn,
    /// Store and bus (the bus holds the aliases).
    #[command(flatten)]
    pub loc: Locations,
}

/// The verdict from which `drift` exits 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// PSI ≥ 0.1 in a column or the predictions.
    Watch,
    /// PSI ≥ 0.25.
    Drift,
    /// Always exit 0 once measured.
    Never,
}

const DRIFT_EXAMPLES: &str = "Examples:
  modelcast drift wine-quality --input today.csv
  modelcast drift wine-quality champion --input - --format jsonl < records.jsonl
  modelcast drift wine-quality --input today.csv --json | jq '.columns[] | select(.verdict != \"stable\")'
  modelcast drift wine-quality --input today.csv --fail-on watch || alert 'inputs moved'

Verdicts by PSI: stable < 0.1 <= watch < 0.25 <= drift. Missing values (and unseen categories)
are bins of their own. Exit codes: 0 measured, 6 the verdict reached --fail-on.";

/// `modelcast export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model name.
    pub model_name: String,
    /// Version id or alias [default: the newest version].
    #[arg(value_name = "VERSION")]
    pub model_version: Option<String>,
    /// `onnx` or `pmml`.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: String,
    /// Where to write (`-` for stdout) [default: ./MODEL-VERSION.onnx or .pmml].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,
    /// ONNX in float64 (double inputs, weights and outputs): for a linear model or logistic
    /// regression whose predictions are small differences of large terms. Trees are exact in
    /// float32 already; PMML is float64 always.
    #[arg(long)]
    pub float64: bool,
    /// Store and bus (the bus holds the aliases).
    #[command(flatten)]
    pub loc: Locations,
}

const EXPORT_EXAMPLES: &str = "Examples:
  modelcast export wine-quality --format onnx -o wine.onnx
  modelcast export wine-quality champion --format pmml -o champion.pmml
  modelcast export wine-quality --format onnx -o - | python3 score.py
  modelcast export sales --format onnx --float64 -o sales.onnx   # double inputs, for large one-hot models

ONNX: inputs `numeric` (float32 [N, k], NaN = missing) and `categorical` (string [N, c]), output
`prediction` (float32 [N, 1]; classifiers add `label` and `probabilities`); column order as in
`modelcast models MODEL --json`. PMML 4.4: one field per input column. See README.md,
\"Exporting models\".";

/// `modelcast check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// `modelcast config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Params file to show [default: params/params.yaml].
    #[arg(long, hide_env_values = true, env = "MODELCAST_PARAMS")]
    pub params: Option<PathBuf>,
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// Shells for `completions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// PowerShell.
    Powershell,
}

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Decide from the file extension (`.csv` → CSV, else JSON lines); on stdin from the first byte.
    Auto,
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}
