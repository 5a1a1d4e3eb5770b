//! The command line (clap derive). Raw flags only: [`crate::run`] turns them into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::predict::input::Format;

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
    /// Model store URL: file://PATH or s3://BUCKET/PREFIX.
    #[arg(long, hide_env_values = true, env = "MODELCAST_STORE", default_value = "file://models")]
    pub store: String,
    /// Kafka config file (librdkafka properties + `modelcast:` settings). Without it, the local
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
    /// Params file.
    #[arg(long, hide_env_values = true, env = "MODELCAST_PARAMS", default_value = "params/params.yaml")]
    pub params: PathBuf,
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
    /// Input file (CSV or JSON lines), or - for stdin.
    #[arg(long, required_unless_present = "serve")]
    pub input: Option<String>,
    /// Input format.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Keep reading the input (tail -f) and hot-swap to newly announced models.
    #[arg(long, conflicts_with = "serve")]
    pub follow: bool,
    /// Run as a service: consume the Kafka input topic, produce to app_messages.
    #[arg(long, requires = "kafka_config")]
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
    /// Record field (JSON) or column (CSV) holding the record key; default row number.
    #[arg(long, default_value = "key")]
    pub key_field: String,
    /// Accept a newly announced model whose input schema differs from the current one.
    #[arg(long)]
    pub allow_schema_change: bool,
    /// Input topic for --serve (default: modelcast.topics.input from the Kafka config).
    #[arg(long)]
    pub input_topic: Option<String>,
    /// Serve /healthz and /metrics on this address (--serve).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Stable name of this replica (Kafka static membership, `group.instance.id`): a replica
    /// restarted under the same name within the session timeout gets its partitions back
    /// without a rebalance. Use the pod or host name; never share it between live replicas.
    #[arg(long, requires = "serve", hide_env_values = true, env = "MODELCAST_INSTANCE_ID", value_parser = instance_id)]
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
        /// Kafka config file.
        #[arg(long, hide_env_values = true, env = "MODELCAST_KAFKA_CONFIG", default_value = "kafka_config.yaml")]
        kafka_config: PathBuf,
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
    /// Params file to show.
    #[arg(long, hide_env_values = true, env = "MODELCAST_PARAMS", default_value = "params/params.yaml")]
    pub params: PathBuf,
    /// Store and bus.
    #[command(flatten)]
    pub loc: Locations,
}

/// A Kafka `group.instance.id`: 1 to 249 of `[A-Za-z0-9._-]` (the broker's own rule).
fn instance_id(s: &str) -> Result<String, String> {
    let ok = (1..=249).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("use 1 to 249 letters, digits, '.', '_' or '-' (e.g. the pod name)".into())
    }
}
