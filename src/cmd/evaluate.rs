//! `modelcast evaluate`: run the live-evaluation flow ([`crate::evaluate`]) and, in batch
//! mode, print its snapshot on stdout.

use std::io::Write;

use crate::cmd::Outcome;
use crate::error::{Error, Result};
use crate::evaluate::EvaluateSettings;

/// Run `evaluate`.
pub async fn run(s: EvaluateSettings) -> Result<Outcome> {
    if let Some(last) = crate::evaluate::run(s).await? {
        let text =
            serde_json::to_string_pretty(&last).map_err(|e| Error::Encode { what: "model_metrics", source: e })?;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    Ok(Outcome::Done)
}
