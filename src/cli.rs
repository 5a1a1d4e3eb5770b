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

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 some records were rejected.
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
    /// List the models in a store.
    #[command(
        after_help = "Examples:\n  modelcast models\n  modelcast models --store s3://my-models/prod --model-name wine-quality"
    )]
    Models(ModelsArgs),
    /// Show the effective configuration (secrets redacted).
    Config(ConfigArgs),
}

const TRAIN_EXAMPLES: &str = "\
Examples:
  modelcast train
  modelcast train --params params/lasso.yaml --name wine-lasso --json
  modelcast train --data data/more.csv --store s3://my-models/prod --kafka-config kafka_config.yaml";

const PREDICT_EXAMPLES: &str = "\
Examples:
  modelcast predict --input data/winequality-red.csv > predictions.jsonl
  modelcast predict --input records.jsonl --model 20261121T101500123Z-1a2b3c4d
  producer | modelcast predict --input - --follow --sink stdout --sink bus
  modelcast predict --serve --kafka-config kafka_config.yaml --metrics-addr 127.0.0.1:9898
  MODELCAST_INSTANCE_ID=$HOSTNAME modelcast predict --serve --kafka-config kafka_config.yaml";

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
}

/// `modelcast train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Params file [default: params/params.yaml].
    #[arg(long, hide_env_values = true, env = "MODELCAST_PARAMS")]
    pub params: Option<PathBuf>,
    /// Training CSV(s), replacing data.train from the params file.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Explicit test CSV, replacing evaluation.test_data.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Model name, replacing `name` from the params file.
    #[arg(long)]
    pub name: Option<String>,
    /// Print the report as JSON on stdout.
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
    /// Input file (CSV or JSON lines), or - for stdin. Required unless --serve.
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
    #[arg(long)]
    pub model: Option<String>,
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
    /// Input topic (--serve only) [default: modelcast.topics.input from the Kafka config].
    #[arg(long)]
    pub input_topic: Option<String>,
    /// Serve /healthz and /metrics on this address (--serve only).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
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
    /// Create the train, input, app_messages and dead-letter topics (existing ones are kept).
    #[command(after_help = "Examples:\n  modelcast topics create --kafka-config kafka_config.yaml --partitions 6")]
    Create {
        /// Kafka config file [default: kafka_config.yaml].
        #[arg(long, hide_env_values = true, env = "MODELCAST_KAFKA_CONFIG")]
        kafka_config: Option<PathBuf>,
        /// Partitions of the input, app_messages and dead-letter topics (default from the config).
        #[arg(long)]
        partitions: Option<i32>,
    },
}

/// `modelcast models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Only this model.
    #[arg(long)]
    pub model_name: Option<String>,
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
