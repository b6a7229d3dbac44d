//! The library's error type: what went wrong and which exit code the command line gives it.
//!
//! Bad input (a file, a key, a flag) exits 2, as ripgrep does for usage errors; anything else
//! that fails at run time exits 1. Messages always name the file and, where known, the key.

use std::fmt;
use std::path::Path;

use strata_workloads::SpecError;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad input: exit code 2.
    pub fn input(message: impl Into<String>) -> Self {
        CliError { code: 2, message: message.into() }
    }

    /// A failure at run time (a write that fails, an exceeded event budget, a solver that
    /// fails): exit code 1.
    pub fn runtime(message: impl Into<String>) -> Self {
        CliError { code: 1, message: message.into() }
    }

    /// An engine error with `what` in front: a configuration problem is bad input, an exceeded
    /// event budget a run-time failure.
    pub fn engine(what: &str, e: &strata_sim::engine::EngineError) -> Self {
        match e {
            strata_sim::engine::EngineError::Budget { .. } | strata_sim::engine::EngineError::DriveFull { .. } => {
                CliError::runtime(format!("{what}: {e}"))
            }
            _ => CliError::input(format!("{what}: {e}")),
        }
    }

    /// A flash-system error with `what` in front: an exceeded event budget is a run-time
    /// failure, anything else bad input.
    /// A spec error located in a file (or a preset, named as `preset NAME`).
    pub fn spec(source: &str, e: &SpecError) -> Self {
        CliError::input(format!("{source}: {e}"))
    }

    /// A file that cannot be read.
    pub fn read(path: &Path, e: &std::io::Error) -> Self {
        CliError::input(format!("{}: cannot read: {e}", path.display()))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

pub type CliResult<T> = Result<T, CliError>;
