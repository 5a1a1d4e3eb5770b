//! The `modelcast` binary: parse flags, set up logging, validate settings, run, map the outcome
//! to an exit code (0 ok, 1 failure, 2 usage or configuration error, 3 records rejected, 4
//! promotion refused by the gate, 5 an alias move lost a race, 6 `drift` found drift).

use std::process::ExitCode;

use clap::Parser;
use modelcast::cli::{Cli, LogFormat};
use modelcast::settings::Settings;
use modelcast::Outcome;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = if cli.quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    let settings = match Settings::from_cli(cli) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("modelcast: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(modelcast::run(settings)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected(_)) => ExitCode::from(3),
        Ok(Outcome::PromotionRefused) => ExitCode::from(4),
        Ok(Outcome::Drifted) => ExitCode::from(6),
        Err(e) => fail(&e),
    }
}

/// Print the error once with its whole cause chain; its exit code.
fn fail(e: &modelcast::error::Error) -> ExitCode {
    let mut msg = format!("modelcast: error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!("\n  caused by: {s}"));
        source = s.source();
    }
    eprintln!("{msg}");
    ExitCode::from(e.exit_code())
}
