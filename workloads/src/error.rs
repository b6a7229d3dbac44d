//! Workload spec errors: the shared located error type, and helpers for workload fields.

pub use strata_spec::{SpecError, SpecResult};

/// Reads a positive integer field, naming the key when it is zero or negative.
pub fn positive(path: &str, value: i64) -> SpecResult<u64> {
    if value <= 0 { Err(SpecError::new(path, format!("must be positive (got {value})"))) } else { Ok(value as u64) }
}
