//! `kafka_config.yaml`: Kafka client properties (passed through as they are) plus modelcast's own
//! settings under the `modelcast:` key.
//!
//! `${VAR}` in any value is replaced by the environment variable `VAR` (an unset variable is an
//! error naming it), so secrets stay out of the file. Values of secret properties are never
//! printed: [`KafkaConfig::redacted`] shows `***` instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Topic names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    /// Model announcements (default `train`).
    #[serde(default = "d_train")]
    pub train: String,
    /// Predictions (default `app_messages`).
    #[serde(default = "d_app")]
    pub app_messages: String,
    /// Feature records to score (default `features`).
    #[serde(default = "d_input")]
    pub input: String,
    /// Rejected records (default `dead_letter`).
    #[serde(default = "d_dead")]
    pub dead_letter: String,
    /// Shadow predictions, `predict --serve --shadow ALIAS` (default `app_messages_shadow`).
    #[serde(default = "d_shadow")]
    pub shadow: String,
    /// True values of scored records, keyed like the predictions (default `labels`).
    #[serde(default = "d_labels")]
    pub labels: String,
    /// Live accuracy per model version, published by `evaluate --serve` (default `model_metrics`).
    #[serde(default = "d_model_metrics")]
    pub model_metrics: String,
    /// Drift windows per model version, published by `predict --serve` (default `model_drift`).
    #[serde(default = "d_model_drift")]
    pub model_drift: String,
}

fn d_train() -> String {
    "train".into()
}
fn d_app() -> String {
    "app_messages".into()
}
fn d_input() -> String {
    "features".into()
}
fn d_dead() -> String {
    "dead_letter".into()
}
fn d_shadow() -> String {
    "app_messages_shadow".into()
}
fn d_labels() -> String {
    "labels".into()
}
fn d_model_metrics() -> String {
    "model_metrics".into()
}
fn d_model_drift() -> String {
    "model_drift".into()
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            train: d_train(),
            app_messages: d_app(),
            input: d_input(),
            dead_letter: d_dead(),
            shadow: d_shadow(),
            labels: d_labels(),
            model_metrics: d_model_metrics(),
            model_drift: d_model_drift(),
        }
    }
}

/// modelcast's own Kafka settings (the `modelcast:` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelcastKafka {
    /// Topic names.
    #[serde(default)]
    pub topics: Topics,
    /// Consumer group of `predict --serve` replicas on the input topic (default `modelcast-predict`).
    #[serde(default = "d_group")]
    pub group_id: String,
    /// Partitions for `topics create` (default 3).
    #[serde(default = "d_partitions")]
    pub partitions: i32,
    /// Replication factor for `topics create` (default 1).
    #[serde(default = "d_replication")]
    pub replication_factor: i32,
    /// Bound on waiting for a delivery report or a broker answer, in ms (default 30000).
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// Input records larger than this are dead-lettered unread (default 1 MiB).
    #[serde(default = "d_max_record")]
    pub max_record_bytes: usize,
    /// Dead-letter values are cut to this size (header `modelcast.truncated` says so), so an
    /// oversized record can never block the service on the broker's size limit (default 900000).
    #[serde(default = "d_dead_max")]
    pub dead_letter_max_bytes: usize,
}

fn d_max_record() -> usize {
    1 << 20
}
fn d_dead_max() -> usize {
    900_000
}

fn d_group() -> String {
    "modelcast-predict".into()
}
fn d_partitions() -> i32 {
    3
}
fn d_replication() -> i32 {
    1
}
fn d_timeout() -> u64 {
    30_000
}

impl Default for ModelcastKafka {
    fn default() -> Self {
        ModelcastKafka {
            topics: Topics::default(),
            group_id: d_group(),
            partitions: d_partitions(),
            replication_factor: d_replication(),
            timeout_ms: d_timeout(),
            max_record_bytes: d_max_record(),
            dead_letter_max_bytes: d_dead_max(),
        }
    }
}

/// A loaded, expanded Kafka configuration.
#[derive(Clone, PartialEq)]
pub struct KafkaConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Kafka client properties, expanded.
    pub properties: BTreeMap<String, String>,
    /// modelcast settings.
    pub modelcast: ModelcastKafka,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig").field("path", &self.path).field("properties", &self.redacted()).finish()
    }
}

/// Whether a client property holds a secret.
pub fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", "ssl.key.pem", "ssl.keystore", "ssl_key", "credentials"]
        .iter()
        .any(|s| n.contains(s))
        || n == "sasl.username"
}

/// Looks up an environment variable (the process environment, or a map in tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replace `${VAR}` references with values from `env`.
pub fn expand_env(value: &str, path: &Path, key: &str, env: EnvLookup<'_>) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end =
            after.find('}').ok_or_else(|| Error::config(path, key, "unterminated ${...} reference".to_string()))?;
        let var = &after[..end];
        let v = env(var).ok_or_else(|| {
            Error::config(path, key, format!("environment variable {var} is not set (referenced as ${{{var}}})"))
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl KafkaConfig {
    /// Load a config file, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<KafkaConfig> {
        Self::load_with(path, &|k| std::env::var(k).ok())
    }

    /// A config with only `bootstrap.servers` and the defaults (unit tests).
    #[cfg(test)]
    pub fn for_tests(bootstrap: &str) -> KafkaConfig {
        KafkaConfig {
            path: PathBuf::from("test.yaml"),
            properties: [("bootstrap.servers".to_string(), bootstrap.to_string())].into(),
            modelcast: ModelcastKafka::default(),
        }
    }

    /// Load a config file, expanding `${VAR}` with `env`.
    pub fn load_with(path: &Path, env: EnvLookup<'_>) -> Result<KafkaConfig> {
        let text = crate::util::yaml::read_config_file(path)?;
        let raw: BTreeMap<String, serde_yaml::Value> = crate::util::yaml::parse_yaml(path, &text)?;
        let mut properties = BTreeMap::new();
        let mut modelcast = ModelcastKafka::default();
        for (k, v) in raw {
            if k == "modelcast" {
                let text = serde_yaml::to_string(&v).unwrap_or_default();
                modelcast = crate::util::yaml::parse_yaml::<ModelcastKafka>(path, &text).map_err(|e| match e {
                    Error::Config { path, key, message } => {
                        Error::Config { path, key: format!("modelcast.{key}"), message }
                    }
                    other => other,
                })?;
                continue;
            }
            let s = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Null => continue,
                _ => return Err(Error::config(path, &k, "client properties take a string, number or boolean")),
            };
            properties.insert(k.clone(), expand_env(&s, path, &k, env)?);
        }
        if !properties.contains_key("bootstrap.servers") {
            return Err(Error::config(path, "bootstrap.servers", "required (host:port of the Kafka brokers)"));
        }
        if modelcast.partitions < 1 || modelcast.replication_factor < 1 {
            return Err(Error::config(path, "modelcast.partitions", "partitions and replication_factor must be >= 1"));
        }
        Ok(KafkaConfig { path: path.to_path_buf(), properties, modelcast })
    }

    /// Properties with secret values replaced by `***`.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.properties
            .iter()
            .map(|(k, v)| (k.clone(), if is_secret(k) { "***".to_string() } else { v.clone() }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_env_and_redacts_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.yaml");
        let env = |k: &str| (k == "MODELCAST_TEST_SECRET_X").then(|| "hunter2".to_string());
        std::fs::write(
            &p,
            "bootstrap.servers: 127.0.0.1:9092\nsasl.password: ${MODELCAST_TEST_SECRET_X}\nlinger.ms: 5\n\
             modelcast: {topics: {input: in}, partitions: 2}\n",
        )
        .unwrap();
        let c = KafkaConfig::load_with(&p, &env).unwrap();
        assert_eq!(c.properties["sasl.password"], "hunter2");
        assert_eq!(c.properties["linger.ms"], "5");
        assert_eq!(c.modelcast.topics.input, "in");
        assert_eq!(c.modelcast.topics.train, "train");
        assert_eq!(c.redacted()["sasl.password"], "***");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.yaml");
        std::fs::write(&p, "bootstrap.servers: x\nsasl.password: ${MODELCAST_SURELY_UNSET_VAR}\n").unwrap();
        let e = KafkaConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("sasl.password") && e.contains("MODELCAST_SURELY_UNSET_VAR"), "{e}");
        std::fs::write(&p, "bootstrap.servers: x\nmodelcast: {topicz: 1}\n").unwrap();
        let e = KafkaConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("modelcast") && e.contains("topicz"), "{e}");
        std::fs::write(&p, "linger.ms: 1\n").unwrap();
        assert!(KafkaConfig::load(&p).unwrap_err().to_string().contains("bootstrap.servers"));
    }
}
