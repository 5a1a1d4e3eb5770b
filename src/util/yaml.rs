//! Reading the YAML configuration files (`params/*.yaml`, `kafka_config.yaml`): errors name the
//! file and the dotted key that failed.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Parse YAML text into `T`, turning serde errors into [`Error::Config`] naming the
/// file and the dotted key that failed.
pub(crate) fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key.is_empty() || key == "." { "-".to_string() } else { key };
        Error::config(path, key, e.into_inner().to_string())
    })
}

/// Read a whole config file, mapping a missing file to a config error.
pub(crate) fn read_config_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            "file not found".to_string()
        } else {
            format!("cannot read: {e}")
        };
        Error::config(path, "-", message)
    })
}
