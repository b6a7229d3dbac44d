//! One error type for every way a spec (workload, architecture, mapping, experiment) can be wrong.
//!
//! Errors carry the TOML key path (`model.heads`, `cascade.einsums[3].expr`) because a
//! person fixing a file needs to know *where*, not only *what*. The file name is added by
//! the binary, which is the only part of Strata that knows about files.

use std::fmt;

/// A spec that cannot be turned into its model: where it is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Dotted key path into the document, e.g. `cascade.einsums[2].expr`; empty for the root.
    pub path: String,
    /// What is wrong, in words meant for the person who wrote the file.
    pub reason: String,
    /// 1-based line and column in the source text, where the parser knows them.
    pub location: Option<(usize, usize)>,
}

impl SpecError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError { path: path.into(), reason: reason.into(), location: None }
    }

    /// Prefixes the path with an outer key (used when a sub-spec is validated on its own).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, col)) = self.location {
            write!(f, "line {line}, column {col}: ")?;
        }
        if self.path.is_empty() { write!(f, "{}", self.reason) } else { write!(f, "{}: {}", self.path, self.reason) }
    }
}

impl std::error::Error for SpecError {}

/// Shorthand used by every validator.
pub type SpecResult<T> = Result<T, SpecError>;
