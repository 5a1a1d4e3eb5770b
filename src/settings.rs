//! From raw flags to what a command does, once (ripgrep's low args → high args).
//!
//! [`Settings::from_cli`] reads the files the flags name (params, Kafka config), resolves every
//! default, and rejects what does not apply — a `--serve`-only flag without `--serve` is a usage
//! error naming the flag (exit 2) — before anything connects anywhere. Commands only ever see
//! the validated settings.

use std::path::PathBuf;

use crate::cli::{self, Cli, Command, InputFormat, SinkKind, TopicsAction};
use crate::config::kafka::KafkaConfig;
use crate::error::{Error, Result};
use crate::messages::MoveAction;
use crate::params::{check_alias, Gate, GateMetric, MinImprovement, DEFAULT_ALIAS};
use crate::params::{Overrides, Params, ParamsFile, Promotion};
use crate::predict::api::{ApiOptions, DEFAULT_MAX_BODY};
use crate::predict::batch::{BatchOptions, DEFAULT_MAX_ROWS, DEFAULT_WAIT};
use crate::predict::drift::{WindowLimits, DEFAULT_DRIFT_WINDOW};
use crate::predict::input::{Format, Source};
use crate::predict::models::ModelChoice;
use crate::predict::serve::ServeOptions;
use crate::store::StoreOptions;

/// The model store when `--store` is not given.
pub const DEFAULT_STORE: &str = "file://models";
/// The params file when `--params` is not given.
pub const DEFAULT_PARAMS: &str = "params/params.yaml";
/// The Kafka config of `topics create` when `--kafka-config` is not given.
pub const DEFAULT_KAFKA_CONFIG: &str = "kafka_config.yaml";
/// The record field holding the key when `--key-field` is not given.
pub const DEFAULT_KEY_FIELD: &str = "key";

/// A validated command.
#[derive(Debug)]
pub enum Settings {
    /// `train`.
    Train(Box<TrainSettings>),
    /// `predict` (batch, `--follow` or `--serve`).
    Predict(Box<PredictSettings>),
    /// `topics create`.
    TopicsCreate {
        /// The Kafka config.
        kafka: KafkaConfig,
        /// Partitions of the input and output topics (default from the config).
        partitions: Option<i32>,
    },
    /// `models`.
    Models {
        /// Where the store is.
        loc: Locations,
        /// Only this model.
        name: Option<String>,
        /// JSON on stdout.
        json: bool,
    },
    /// `promote` and `rollback`.
    Move(MoveSettings),
    /// `history`.
    History {
        /// Store and bus.
        loc: Locations,
        /// The model.
        name: String,
        /// Only this alias.
        alias: Option<String>,
        /// JSON lines on stdout.
        json: bool,
    },
    /// `evaluate`.
    Evaluate(Box<crate::evaluate::EvaluateSettings>),
    /// `report`.
    Report {
        /// Store and bus.
        loc: Locations,
        /// The model.
        name: String,
        /// A version id or an alias; the newest version when absent.
        version: Option<String>,
        /// Output file, `-` for stdout; `./MODEL-VERSION.report.svg` when absent.
        output: Option<String>,
    },
    /// `drift`.
    Drift {
        /// Store and bus.
        loc: Locations,
        /// The model.
        name: String,
        /// A version id or an alias; the newest version when absent.
        version: Option<String>,
        /// The records.
        source: Source,
        /// JSON instead of a table.
        json: bool,
        /// The verdict from which the exit code is 6 (`None`: never).
        fail_on: Option<&'static str>,
    },
    /// `export`.
    Export {
        /// Store and bus.
        loc: Locations,
        /// The model.
        name: String,
        /// A version id or an alias; the newest version when absent.
        version: Option<String>,
        /// ONNX or PMML.
        format: crate::export::Format,
        /// The ONNX graph's real numbers.
        precision: crate::export::Precision,
        /// Output file, `-` for stdout; `./MODEL-VERSION.EXT` when absent.
        output: Option<String>,
    },
    /// `completions`.
    Completions(cli::Shell),
    /// `man`.
    Man,
    /// `check`.
    Check {
        /// What to check.
        loc: Locations,
    },
    /// `config`.
    Config {
        /// The params file, shown when it exists.
        params_path: PathBuf,
        /// Where the store and bus are.
        loc: Locations,
    },
}

/// Where the store and the bus are.
#[derive(Debug)]
pub struct Locations {
    /// Store URL (`file://PATH` or `s3://BUCKET/PREFIX`).
    pub store: String,
    /// S3 settings.
    pub store_options: StoreOptions,
    /// The Kafka config, loaded and checked; `None` means the local bus.
    pub kafka: Option<KafkaConfig>,
}

/// `promote MODEL VERSION` or `rollback MODEL`.
#[derive(Debug)]
pub struct MoveSettings {
    /// Store and bus.
    pub loc: Locations,
    /// The model.
    pub name: String,
    /// The alias.
    pub alias: String,
    /// `promote`: this version. `rollback`: `--to` (else the alias's previous version).
    pub version: Option<String>,
    /// Promote or roll back.
    pub action: crate::messages::MoveAction,
    /// Why.
    pub reason: Option<String>,
    /// JSON on stdout.
    pub json: bool,
    /// `promote --if-better-live`: the fewest shared live labels to decide on.
    pub live_gate: Option<u64>,
}

/// `train`.
#[derive(Debug)]
pub struct TrainSettings {
    /// The params, command-line replacements applied, checked.
    pub params: Params,
    /// Print the report as JSON.
    pub json: bool,
    /// Move an alias to the new model (with or without a gate).
    pub promotion: Option<Promotion>,
    /// Why (recorded with the alias move).
    pub reason: Option<String>,
    /// From a topic: only records from this time on.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// From a topic: the largest fraction of malformed records before the run fails.
    pub max_rejected: f64,
    /// Exports written beside the artifact (`--export onnx,pmml`).
    pub exports: Vec<crate::export::Format>,
    /// Store and bus.
    pub loc: Locations,
}

/// Default of `--max-rejected`: 1% of a topic's records may be malformed.
pub const DEFAULT_MAX_REJECTED: f64 = 0.01;

fn evaluate(a: cli::EvaluateArgs) -> Result<crate::evaluate::EvaluateSettings> {
    let duration = |flag: &str, v: &Option<String>, default: &str| -> Result<std::time::Duration> {
        let text = v.as_deref().unwrap_or(default);
        parse_duration(text)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| usage(flag, &format!("{text:?} is not a duration (90s, 30m, 24h, 7d)")))
    };
    let horizon = duration("--horizon", &a.horizon, "24h")?;
    let interval = duration("--interval", &a.interval, "10s")?;
    let window = duration("--window", &a.window, "1h")?;
    if window < interval {
        return Err(usage("--window", "must be at least --interval"));
    }
    if a.metrics_addr.is_some() && !a.serve {
        return Err(usage("--metrics-addr", "only applies with --serve"));
    }
    let max_pending = a.max_pending.unwrap_or(1_000_000);
    if max_pending == 0 {
        return Err(usage("--max-pending", "must be at least 1"));
    }
    let kafka = a.kafka_config.as_deref().map(KafkaConfig::load).transpose()?;
    let store = a.store.unwrap_or_else(|| DEFAULT_STORE.into());
    let local = match (&kafka, store.strip_prefix("file://")) {
        (Some(_), _) => None,
        (None, _) if a.serve => return Err(usage("--serve", "evaluate --serve needs --kafka-config")),
        (None, Some(path)) => Some(crate::bus::local_dir(Some(std::path::Path::new(path)))),
        (None, None) => {
            return Err(usage("--store", "without --kafka-config, evaluate reads the local logs of a file:// store"))
        }
    };
    Ok(crate::evaluate::EvaluateSettings {
        kafka,
        local,
        horizon,
        max_pending,
        interval,
        window,
        key_field: a.key_field.unwrap_or_else(|| "key".into()),
        label_field: a.label_field.unwrap_or_else(|| "label".into()),
        serve: a.serve,
        metrics_addr: a.metrics_addr,
    })
}

/// `--data` values: one `kafka://TOPIC`, or CSV paths.
fn data_source(data: &[PathBuf]) -> Result<(Option<String>, Vec<PathBuf>)> {
    let topics: Vec<&str> = data.iter().filter_map(|p| p.to_str()?.strip_prefix("kafka://")).collect();
    match topics.as_slice() {
        [] => Ok((None, data.to_vec())),
        [t] if data.len() == 1 => Ok((Some(t.trim_end_matches('/').to_string()), Vec::new())),
        _ => Err(usage("--data", "give one kafka://TOPIC, or CSV paths, not both or several topics")),
    }
}

/// `--since`: a duration back from `now` (`90s`, `30m`, `24h`, `7d`) or an RFC 3339 timestamp.
pub fn parse_since(
    text: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = parse_duration(text).ok_or_else(|| {
        format!("{text:?} is neither a duration (90s, 30m, 24h, 7d) nor an RFC 3339 timestamp (2026-12-01T00:00:00Z)")
    })?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("{text:?} is too long ago"))
}

/// A duration written as a whole number and a unit: `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(std::time::Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(std::time::Duration::from_secs)
}

/// `predict`.
#[derive(Debug)]
pub struct PredictSettings {
    /// Store and bus.
    pub loc: Locations,
    /// Which model, and how to follow it.
    pub choice: ModelChoice,
    /// Batch/follow or service.
    pub mode: PredictMode,
}

/// How `predict` runs.
#[derive(Debug)]
pub enum PredictMode {
    /// Records from a file or stdin (`--follow`: keep reading and hot-swap).
    Records {
        /// The input.
        source: Source,
        /// Print predictions on stdout.
        stdout: bool,
        /// Send predictions (and, on Kafka, dead letters) to the bus.
        to_bus: bool,
    },
    /// `--serve`: the Kafka service (and `--http` beside it, in its options).
    Serve(ServeOptions),
    /// `--http`/`--grpc` alone: request/response scoring in the Open Inference Protocol.
    Api(ApiOptions),
}

impl Settings {
    /// Turn parsed flags (and the files and environment they name) into validated settings.
    pub fn from_cli(cli: Cli) -> Result<Settings> {
        Ok(match cli.command {
            Command::Train(a) => {
                let path = a.params.clone().unwrap_or_else(|| DEFAULT_PARAMS.into());
                let (topic, files) = data_source(&a.data)?;
                let overrides = Overrides { train: files, topic, name: a.name.clone(), test_data: a.test_data.clone() };
                let params = ParamsFile::read(&path)?.with(&overrides).check(&path)?;
                let since = match &a.since {
                    Some(_) if params.topic().is_none() => {
                        return Err(usage("--since", "only applies when training from a topic (--data kafka://TOPIC)"))
                    }
                    Some(text) => Some(parse_since(text, chrono::Utc::now()).map_err(|m| usage("--since", &m))?),
                    None => None,
                };
                let max_rejected = match a.max_rejected {
                    Some(_) if params.topic().is_none() => {
                        return Err(usage(
                            "--max-rejected",
                            "only applies when training from a topic (--data kafka://TOPIC)",
                        ))
                    }
                    Some(f) if !(0.0..=1.0).contains(&f) => return Err(usage("--max-rejected", "must be in [0, 1]")),
                    Some(f) => f,
                    None => DEFAULT_MAX_REJECTED,
                };
                if params.topic().is_some() && a.loc.kafka_config.is_none() {
                    return Err(usage(
                        "--data",
                        "training from a topic needs --kafka-config (the brokers and credentials to read it with)",
                    ));
                }
                let promotion = promotion(&a, params.promotion(), params.model().kind().is_classifier())?;
                let exports = match &a.export {
                    Some(list) => {
                        crate::export::Format::parse_list(list).map_err(|e| usage("--export", &e.to_string()))?
                    }
                    None => vec![],
                };
                // PMML labels the most probable class: refused before fitting, not after
                if exports.contains(&crate::export::Format::Pmml)
                    && params.decision() != crate::params::Decision::Fixed(crate::params::DEFAULT_THRESHOLD)
                {
                    return Err(usage(
                        "--export",
                        &format!(
                            "pmml labels the most probable class, and target.threshold ({}) sets another decision; \
                             export onnx, which applies it",
                            params.decision().describe()
                        ),
                    ));
                }
                Settings::Train(Box::new(TrainSettings {
                    params,
                    json: a.json,
                    promotion,
                    reason: a.reason,
                    since,
                    max_rejected,
                    exports,
                    loc: locations(a.loc)?,
                }))
            }
            Command::Predict(a) => Settings::Predict(Box::new(predict(a)?)),
            Command::Topics { action: TopicsAction::Create { kafka_config, partitions } } => {
                if let Some(p) = partitions {
                    if p < 1 {
                        return Err(usage("--partitions", "must be at least 1"));
                    }
                }
                let path = kafka_config.unwrap_or_else(|| DEFAULT_KAFKA_CONFIG.into());
                Settings::TopicsCreate { kafka: KafkaConfig::load(&path)?, partitions }
            }
            Command::Models(a) => {
                Settings::Models { loc: locations(a.loc)?, name: a.model.or(a.model_name), json: a.json }
            }
            Command::Promote(a) => {
                if a.if_better_live && a.common.loc.kafka_config.is_none() {
                    return Err(usage(
                        "--if-better-live",
                        "needs --kafka-config (live metrics are read from modelcast.topics.model_metrics)",
                    ));
                }
                let live = a.if_better_live.then_some(a.min_labels.unwrap_or(100));
                let mut s = move_settings(a.model_name, Some(a.model_version), MoveAction::Promote, a.common)?;
                s.live_gate = live;
                Settings::Move(s)
            }
            Command::Rollback(a) => Settings::Move(move_settings(a.model_name, a.to, MoveAction::Rollback, a.common)?),
            Command::History(a) => {
                if let Some(al) = &a.alias {
                    check_alias(al).map_err(|e| usage("--alias", &e.to_string()))?;
                }
                Settings::History { loc: locations(a.loc)?, name: a.model_name, alias: a.alias, json: a.json }
            }
            Command::Evaluate(a) => Settings::Evaluate(Box::new(evaluate(a)?)),
            Command::Report(a) => Settings::Report {
                loc: locations(a.loc)?,
                name: a.model_name,
                version: a.model_version,
                output: a.output,
            },
            Command::Drift(a) => Settings::Drift {
                loc: locations(a.loc)?,
                name: a.model_name,
                version: a.model_version,
                source: Source { path: a.input, follow: false, format: input_format(a.format) },
                json: a.json,
                fail_on: match a.fail_on {
                    cli::FailOn::Watch => Some("watch"),
                    cli::FailOn::Drift => Some("drift"),
                    cli::FailOn::Never => None,
                },
            },
            Command::Export(a) => {
                let format = crate::export::Format::parse(&a.format).map_err(|e| usage("--format", &e.to_string()))?;
                let precision = match (a.float64, format) {
                    (false, _) => crate::export::Precision::Float32,
                    (true, crate::export::Format::Onnx) => crate::export::Precision::Float64,
                    (true, crate::export::Format::Pmml) => {
                        return Err(usage("--float64", "is for ONNX; PMML is float64 always"))
                    }
                };
                Settings::Export {
                    loc: locations(a.loc)?,
                    name: a.model_name,
                    version: a.model_version,
                    format,
                    precision,
                    output: a.output,
                }
            }
            Command::Completions { shell } => Settings::Completions(shell),
            Command::Man => Settings::Man,
            Command::Check(a) => Settings::Check { loc: locations(a.loc)? },
            Command::Config(a) => Settings::Config {
                params_path: a.params.unwrap_or_else(|| DEFAULT_PARAMS.into()),
                loc: locations(a.loc)?,
            },
        })
    }
}

fn move_settings(name: String, version: Option<String>, action: MoveAction, m: cli::MoveArgs) -> Result<MoveSettings> {
    Ok(MoveSettings {
        alias: alias_or_default(m.alias)?,
        loc: locations(m.loc)?,
        name,
        version,
        action,
        reason: m.reason,
        json: m.json,
        live_gate: None,
    })
}

fn alias_or_default(a: Option<String>) -> Result<String> {
    let a = a.unwrap_or_else(|| DEFAULT_ALIAS.to_string());
    check_alias(&a).map_err(|e| usage("--alias", &e.to_string()))?;
    Ok(a)
}

/// The alias `train` moves, and its gate: `--promote`/`--promote-if-better` over the params
/// file's `promotion:` block; `--metric` and `--min-improvement` over the block's gate.
fn promotion(a: &cli::TrainArgs, file: Option<&Promotion>, classifier: bool) -> Result<Option<Promotion>> {
    let metric = a.metric.as_deref().map(GateMetric::parse).transpose().map_err(|m| usage("--metric", &m))?;
    if let Some(m) = metric {
        m.check_for(classifier).map_err(|e| usage("--metric", &e))?;
    }
    let min = a
        .min_improvement
        .as_deref()
        .map(MinImprovement::parse)
        .transpose()
        .map_err(|m| usage("--min-improvement", &m))?;
    let max_drift =
        a.max_drift.map(crate::params::check_max_drift).transpose().map_err(|m| usage("--max-drift", &m))?;
    let with_flags = |g: Gate| Gate {
        metric: metric.unwrap_or(g.metric),
        min_improvement: min.unwrap_or(g.min_improvement),
        max_drift: max_drift.or(g.max_drift),
    };
    let p = if let Some(alias) = &a.promote {
        Some(Promotion { alias: alias.clone(), gate: None })
    } else if let Some(alias) = &a.promote_if_better {
        let base = file.and_then(|p| p.gate).unwrap_or(Gate {
            metric: GateMetric::default_for(classifier),
            min_improvement: MinImprovement::Absolute(0.0),
            max_drift: None,
        });
        Some(Promotion { alias: alias.clone(), gate: Some(with_flags(base)) })
    } else {
        file.cloned().map(|p| Promotion { gate: p.gate.map(with_flags), ..p })
    };
    if let Some(p) = &p {
        let flag = if a.promote.is_some() { "--promote" } else { "--promote-if-better" };
        check_alias(&p.alias).map_err(|e| usage(flag, &e.to_string()))?;
    }
    if p.as_ref().is_none_or(|p| p.gate.is_none()) {
        for (set, flag) in
            [(metric.is_some(), "--metric"), (min.is_some(), "--min-improvement"), (max_drift.is_some(), "--max-drift")]
        {
            if set {
                return Err(usage(
                    flag,
                    "only applies with a gate (--promote-if-better, or promotion.if_better in the params file)",
                ));
            }
        }
    }
    if a.reason.is_some() && p.is_none() {
        return Err(usage("--reason", "only applies with --promote or --promote-if-better"));
    }
    Ok(p)
}

fn input_format(f: Option<InputFormat>) -> Format {
    match f.unwrap_or(InputFormat::Auto) {
        InputFormat::Auto => Format::Auto,
        InputFormat::Csv => Format::Csv,
        InputFormat::Jsonl => Format::Jsonl,
    }
}

fn usage(flag: &str, message: &str) -> Error {
    Error::Usage(format!("{flag}: {message}"))
}

fn locations(l: cli::Locations) -> Result<Locations> {
    let kafka = l.kafka_config.as_deref().map(KafkaConfig::load).transpose()?;
    if let Some(c) = l.s3_checksums.as_deref() {
        if !matches!(c, "when_required" | "when_supported") {
            return Err(usage("--s3-checksums", &format!("{c:?}: expected when_required or when_supported")));
        }
    }
    Ok(Locations {
        store: l.store.unwrap_or_else(|| DEFAULT_STORE.into()),
        store_options: StoreOptions {
            endpoint: l.s3_endpoint,
            region: l.s3_region,
            path_style: None,
            checksums: l.s3_checksums,
            atomic_writes: l.s3_atomic_writes,
            max_attempts: None,
            credentials: None,
        },
        kafka,
    })
}

fn predict(a: cli::PredictArgs) -> Result<PredictSettings> {
    for (value, flag) in [(&a.alias, "--alias"), (&a.shadow, "--shadow")] {
        if let Some(v) = value {
            check_alias(v).map_err(|e| usage(flag, &e.to_string()))?;
        }
    }
    if let Some(t) = a.threshold.filter(|t| !(*t > 0.0 && *t < 1.0)) {
        return Err(usage("--threshold", &format!("{t} is not a probability in (0, 1)")));
    }
    if a.shadow.is_some() && a.shadow == a.alias {
        return Err(usage("--shadow", "must name another alias than --alias"));
    }
    let choice = ModelChoice {
        name: a.model_name,
        version: a.model,
        alias: a.alias,
        shadow: a.shadow,
        key_field: a.key_field.unwrap_or_else(|| DEFAULT_KEY_FIELD.into()),
        threshold: a.threshold,
        allow_schema_change: a.allow_schema_change,
    };
    let stdout = a.sink.contains(&SinkKind::Stdout);
    if a.http_max_body.is_some() && a.http.is_none() && a.grpc.is_none() {
        return Err(usage("--http-max-body", "only applies with --http or --grpc"));
    }
    if a.http_max_body == Some(0) {
        return Err(usage("--http-max-body", "must be at least 1 byte"));
    }
    if a.http.is_some() && a.http == a.grpc {
        return Err(usage("--grpc", "must be another address than --http"));
    }
    let token = match &a.api_token_file {
        Some(_) if a.http.is_none() && a.grpc.is_none() => {
            return Err(usage("--api-token-file", "only applies with --http or --grpc"))
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage("--api-token-file", &format!("cannot read {}: {e}", path.display())))?;
            let token = text.trim();
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err(usage(
                    "--api-token-file",
                    &format!("{} must hold one token (no spaces), and it is empty or has spaces", path.display()),
                ));
            }
            Some(std::sync::Arc::<str>::from(token))
        }
        None => None,
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(_), _) if a.http.is_none() && a.grpc.is_none() => {
            return Err(usage("--tls-cert", "only applies with --http or --grpc"))
        }
        (Some(cert), Some(key)) => Some(std::sync::Arc::new(crate::predict::tls::Identity::load(cert, key)?)),
        _ => None,
    };
    for (set, flag) in
        [(a.batch_max_rows.is_some(), "--batch-max-rows"), (a.batch_wait_us.is_some(), "--batch-wait-us")]
    {
        if set && a.http.is_none() && a.grpc.is_none() {
            return Err(usage(flag, "only applies with --http or --grpc"));
        }
    }
    let batch = BatchOptions {
        max_rows: a.batch_max_rows.map_or(DEFAULT_MAX_ROWS, |n| n as usize),
        wait: a.batch_wait_us.map_or(DEFAULT_WAIT, std::time::Duration::from_micros),
    };
    let api = (a.http.is_some() || a.grpc.is_some()).then(|| ApiOptions {
        batch,
        token,
        tls,
        http: a.http,
        grpc: a.grpc,
        max_body: a.http_max_body.unwrap_or(DEFAULT_MAX_BODY),
        // --grpc alone serves /metrics and /healthz here (--http serves them itself)
        metrics: a.metrics_addr.filter(|_| !a.serve && a.http.is_none()),
        drift: None,
        instance: a.instance_id.clone(),
    });
    let drift_flags = [
        (a.drift_window.is_some(), "--drift-window"),
        (a.drift_every.is_some(), "--drift-every"),
        (a.no_drift, "--no-drift"),
    ];
    if api.is_none() && !a.serve {
        if let Some((_, flag)) = drift_flags.iter().find(|(set, _)| *set) {
            return Err(usage(flag, "only applies with --serve, --http or --grpc (modelcast drift measures a file)"));
        }
    }
    let drift = if a.no_drift {
        if let Some((_, flag)) = drift_flags[..2].iter().find(|(set, _)| *set) {
            return Err(usage(flag, "does not apply with --no-drift"));
        }
        None
    } else {
        let text = a.drift_every.as_deref().unwrap_or("5m");
        let every = parse_duration(text)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| usage("--drift-every", &format!("{text:?} is not a duration (90s, 30m, 24h, 7d)")))?;
        Some(WindowLimits { records: a.drift_window.unwrap_or(DEFAULT_DRIFT_WINDOW), every })
    };
    let api = api.map(|o| ApiOptions { drift, ..o });
    let mode = if a.serve {
        for (set, flag) in [(a.input.is_some(), "--input"), (a.format.is_some(), "--format"), (a.follow, "--follow")] {
            if set {
                return Err(usage(flag, "does not apply with --serve (the input is the Kafka input topic)"));
            }
        }
        if a.loc.kafka_config.is_none() {
            return Err(usage("--serve", "needs --kafka-config (the service consumes and produces on Kafka)"));
        }
        if let Some(id) = &a.instance_id {
            check_instance_id(id)?;
        }
        PredictMode::Serve(ServeOptions {
            // resolved against the Kafka config below, once it is loaded
            input_topic: a.input_topic.unwrap_or_default(),
            metrics_addr: a.metrics_addr,
            instance_id: a.instance_id,
            stdout,
            api,
            drift,
        })
    } else if let Some(api) = api {
        let records_only: [(bool, &str); 7] = [
            (a.input.is_some(), "--input"),
            (a.format.is_some(), "--format"),
            (a.follow, "--follow"),
            (!a.sink.is_empty(), "--sink"),
            (a.metrics_addr.is_some() && a.http.is_some(), "--metrics-addr (--http serves /metrics itself)"),
            (a.input_topic.is_some(), "--input-topic"),
            (a.instance_id.is_some(), "--instance-id (or MODELCAST_INSTANCE_ID)"),
        ];
        for (set, flag) in records_only {
            if set {
                return Err(usage(
                    flag,
                    "does not apply with --http or --grpc alone (requests are the input; add --serve for Kafka)",
                ));
            }
        }
        PredictMode::Api(api)
    } else {
        let serve_only: [(bool, &str); 3] = [
            (a.metrics_addr.is_some(), "--metrics-addr"),
            (a.input_topic.is_some(), "--input-topic"),
            (a.instance_id.is_some(), "--instance-id (or MODELCAST_INSTANCE_ID)"),
        ];
        for (set, flag) in serve_only {
            if set {
                return Err(usage(flag, "only applies with --serve"));
            }
        }
        let path =
            a.input.ok_or_else(|| usage("--input", "required: a file, or - for stdin (or use --serve or --http)"))?;
        PredictMode::Records {
            source: Source { path, follow: a.follow, format: input_format(a.format) },
            stdout: a.sink.is_empty() || stdout,
            to_bus: a.sink.contains(&SinkKind::Bus),
        }
    };
    let loc = locations(a.loc)?;
    let mode = match (mode, &loc.kafka) {
        (PredictMode::Serve(mut s), Some(k)) => {
            if s.input_topic.is_empty() {
                s.input_topic = k.modelcast.topics.input.clone();
            }
            PredictMode::Serve(s)
        }
        (m, _) => m,
    };
    Ok(PredictSettings { loc, choice, mode })
}

/// A Kafka `group.instance.id`: 1 to 249 of `[A-Za-z0-9._-]` (the broker's own rule).
fn check_instance_id(s: &str) -> Result<()> {
    let ok = (1..=249).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(usage("--instance-id", "use 1 to 249 letters, digits, '.', '_' or '-' (e.g. the pod name)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings> {
        let mut argv = vec!["modelcast"];
        argv.extend_from_slice(args);
        Settings::from_cli(Cli::try_parse_from(argv).unwrap())
    }

    fn usage_text(args: &[&str]) -> String {
        match settings(args) {
            Err(e @ Error::Usage(_)) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn serve_only_flags_without_serve_are_usage_errors_naming_the_flag() {
        assert!(
            usage_text(&["predict", "--input", "x.csv", "--metrics-addr", "127.0.0.1:9898"]).contains("--metrics-addr")
        );
        assert!(usage_text(&["predict", "--input", "x.csv", "--input-topic", "t"]).contains("--input-topic"));
        assert!(usage_text(&["predict", "--input", "x.csv", "--instance-id", "a"]).contains("--instance-id"));
        assert!(usage_text(&["predict"]).contains("--input"));
        assert!(usage_text(&["predict", "--serve"]).contains("--kafka-config"));
        assert!(usage_text(&["predict", "--serve", "--input", "x"]).contains("--input"));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn gate_flags_need_a_gate_and_aliases_are_checked() {
        assert!(usage_text(&["train", "--metric", "mae"]).contains("--metric"));
        assert!(
            usage_text(&["train", "--promote", "champion", "--min-improvement", "1%"]).contains("--min-improvement")
        );
        assert!(usage_text(&["train", "--promote-if-better", "Champion"]).contains("--promote-if-better"));
        assert!(usage_text(&["train", "--promote-if-better", "champion", "--metric", "mape"]).contains("--metric"));
        assert!(usage_text(&["train", "--reason", "x"]).contains("--reason"));
        assert!(usage_text(&["train", "--promote", "champion", "--max-drift", "0.25"]).contains("--max-drift"));
        assert!(usage_text(&["train", "--promote-if-better", "champion", "--max-drift", "0"]).contains("--max-drift"));
        assert!(usage_text(&["predict", "--input", "x", "--alias", "a", "--shadow", "a"]).contains("--shadow"));
        assert!(usage_text(&["promote", "m", "v", "--alias", "no way"]).contains("--alias"));
        let Settings::Train(t) =
            settings(&["train", "--promote-if-better", "champion", "--metric", "r2", "--min-improvement", "2%"])
                .unwrap()
        else {
            panic!()
        };
        let p = t.promotion.unwrap();
        assert_eq!(p.alias, "champion");
        assert_eq!(
            p.gate,
            Some(Gate { metric: GateMetric::R2, min_improvement: MinImprovement::Relative(0.02), max_drift: None })
        );
        let Settings::Train(t) =
            settings(&["train", "--promote-if-better", "champion", "--max-drift", "0.25"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.promotion.unwrap().gate.unwrap().max_drift, Some(0.25));
    }

    #[test]
    fn defaults_are_resolved_here() {
        let Settings::Predict(p) = settings(&["predict", "--input", "x.csv"]).unwrap() else { panic!() };
        assert_eq!(p.loc.store, DEFAULT_STORE);
        assert_eq!(p.choice.key_field, DEFAULT_KEY_FIELD);
        assert!(p.loc.kafka.is_none());
        match p.mode {
            PredictMode::Records { source, stdout, to_bus } => {
                assert_eq!(source.format, Format::Auto);
                assert!(stdout && !to_bus, "stdout is the default sink");
            }
            PredictMode::Serve(_) | PredictMode::Api(_) => panic!("not a records run"),
        }
    }

    #[test]
    fn http_goes_alone_or_beside_serve() {
        let Settings::Predict(p) = settings(&["predict", "--http", "127.0.0.1:0"]).unwrap() else { panic!() };
        assert!(matches!(&p.mode, PredictMode::Api(h) if h.max_body == DEFAULT_MAX_BODY && h.grpc.is_none()));
        let Settings::Predict(p) = settings(&["predict", "--grpc", "127.0.0.1:0"]).unwrap() else { panic!() };
        assert!(matches!(&p.mode, PredictMode::Api(h) if h.http.is_none() && h.grpc.is_some()));
        assert!(matches!(&p.mode, PredictMode::Api(h) if h.batch == BatchOptions::default()));
        let args = ["predict", "--grpc", "127.0.0.1:0", "--batch-max-rows", "64", "--batch-wait-us", "250"];
        let Settings::Predict(p) = settings(&args).unwrap() else { panic!() };
        let want = BatchOptions { max_rows: 64, wait: std::time::Duration::from_micros(250) };
        assert!(matches!(&p.mode, PredictMode::Api(h) if h.batch == want));
        for (args, flag) in [
            (&["predict", "--http", "127.0.0.1:0", "--input", "x.csv"][..], "--input"),
            (&["predict", "--input", "x.csv", "--batch-wait-us", "10"][..], "--batch-wait-us"),
            (&["predict", "--serve", "--batch-max-rows", "10"][..], "--batch-max-rows"),
            (&["predict", "--input", "x.csv", "--http-max-body", "10"][..], "--http-max-body"),
            (&["predict", "--http", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"][..], "--metrics-addr"),
        ] {
            let e = settings(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }
}
