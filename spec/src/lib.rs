//! Located spec errors, shared by every crate that reads a spec.
//!
//! Workloads and architectures know nothing of each other, yet a person fixing either file
//! wants the same message: the key path, the line and column, and the reason. Both depend on
//! this crate for that one error type and its parsers, so the binary reports them alike.

mod error;
pub mod toml_doc;

pub use error::{SpecError, SpecResult};
pub use toml_doc::{from_json, from_toml};
