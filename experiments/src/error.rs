//! The binary's error type: what went wrong and which exit code it earns.
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

pub type CliResult<T> = Result<T, CliError>;
