//! `modelcast completions SHELL` and `modelcast man`: the command line, rendered from its own
//! definition (clap_complete, clap_mangen), so they never drift from `--help`. The one command
//! that reads [`crate::cli`] itself: its subject is the command line.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Shell};
use crate::cmd::Outcome;
use crate::error::{Error, Result};

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> Result<Outcome> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let s = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::Powershell => clap_complete::Shell::PowerShell,
    };
    clap_complete::generate(s, &mut cmd, "modelcast", &mut out);
    write_out(&out)
}

/// Print the man page (roff) on stdout: `modelcast man | man -l -`.
pub fn man() -> Result<Outcome> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out).map_err(|e| Error::io("render", "man page", e))?;
    write_out(&out)
}

fn write_out(bytes: &[u8]) -> Result<Outcome> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|_| stdout.flush()) {
        Ok(()) => Ok(Outcome::Done),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Done),
        Err(e) => Err(Error::io("write", "stdout", e)),
    }
}
