//! `modelcast config`: the effective configuration as YAML, secrets redacted.

use std::path::Path;

use crate::cmd::Outcome;
use crate::error::{Error, Result};
use crate::params::Params;
use crate::settings::Locations;

/// Print the store, the params (when the file exists) and the Kafka config (redacted).
pub fn show(params: &Path, loc: &Locations) -> Result<Outcome> {
    let mut doc = serde_json::Map::new();
    doc.insert("store".into(), loc.store.clone().into());
    if let Some(e) = &loc.store_options.endpoint {
        doc.insert("s3_endpoint".into(), e.clone().into());
    }
    if params.exists() {
        let p = Params::load(params)?;
        doc.insert("params_file".into(), params.display().to_string().into());
        doc.insert("params".into(), serde_json::to_value(&p).map_err(|e| Error::Encode { what: "params", source: e })?);
    }
    if let Some(k) = &loc.kafka {
        doc.insert("kafka_config_file".into(), k.path.display().to_string().into());
        doc.insert("kafka".into(), serde_json::to_value(k.redacted()).unwrap_or_default());
        doc.insert("modelcast_kafka".into(), serde_json::to_value(&k.modelcast).unwrap_or_default());
    }
    let yaml = serde_yaml::to_string(&doc).map_err(|e| Error::Usage(format!("cannot render config: {e}")))?;
    print!("{yaml}");
    Ok(Outcome::Done)
}
