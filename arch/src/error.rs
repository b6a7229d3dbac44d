//! Architecture spec errors: the located error type every spec-reading crate shares.

pub use strata_spec::{SpecError, SpecResult, from_toml};
