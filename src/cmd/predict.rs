//! `modelcast predict`: open the edges, then run the records flow (batch or `--follow`,
//! [`crate::predict::local`]), the service (`--serve`, [`crate::predict::serve`]) or the
//! request/response servers (`--http`/`--grpc` alone, [`crate::predict::api`]).

use crate::aliases::Updates;
use crate::cmd::{Edges, Outcome};
use crate::error::{Error, Result};
use crate::events::{Event, RunFinished};
use crate::predict::output::Outputs;
use crate::predict::{api, local, serve};
use crate::settings::{PredictMode, PredictSettings};

/// Run `predict`; [`Outcome::Rejected`] when records were dead-lettered (exit 3).
pub async fn run(s: PredictSettings) -> Result<Outcome> {
    let Edges { store, bus } = Edges::open(s.loc).await?;
    match s.mode {
        PredictMode::Serve(opts) => {
            let kafka = bus.as_kafka().cloned().ok_or_else(|| Error::Usage("--serve needs --kafka-config".into()))?;
            let counts = serve::run(&store, &bus, kafka, &s.choice, &opts).await?;
            RunFinished {
                scored: counts.scored,
                rejected: counts.rejected,
                swaps: counts.swaps,
                how: "stopped",
                dead_letters: None,
            }
            .emit();
            Ok(Outcome::Done)
        }
        PredictMode::Api(opts) => {
            let updates = Updates::open(&store, &bus).await?;
            let counts = api::run(&store, &bus, updates, &s.choice, opts).await?;
            RunFinished { scored: 0, rejected: 0, swaps: counts.swaps, how: "stopped", dead_letters: None }.emit();
            Ok(Outcome::Done)
        }
        PredictMode::Records { source, stdout, to_bus } => {
            let updates = Updates::open(&store, &bus).await?;
            let mut out = Outputs::new(bus, stdout, to_bus, source.follow);
            out.check().await?;
            let counts = local::run(&store, updates, source, &s.choice, &mut out).await?;
            RunFinished {
                scored: counts.scored,
                rejected: counts.rejected,
                swaps: counts.swaps,
                how: "done",
                dead_letters: Some(out.dead_letters_to()),
            }
            .emit();
            Ok(if counts.rejected > 0 { Outcome::Rejected(counts.rejected) } else { Outcome::Done })
        }
    }
}
