//! Mappings: how a cascade runs on an architecture.
//!
//! Owns the mapping spec ([`spec`]), resolved loop nests and the fused-group execution tree
//! ([`nest`]), their validation ([`resolve`]) and the embedded presets ([`presets`]).
//!
//! Architecture invariant: mappings know workloads and architectures but nothing about costs;
//! the cost model (`strata-sim`) evaluates what this crate describes. No file system access.

pub mod flash_tiling;
pub mod fusion;
pub mod mapper;
pub mod milp;
pub mod nest;
pub mod offload;
pub mod presets;
pub mod resolve;
pub mod spec;
pub mod system;

pub use nest::{CascadeMapping, Dim, EinsumNest, Group, Loop, Node, Operand, SharedRead, point_ops};
pub use spec::{MappingSpec, Pipelining};
pub use strata_workloads::{SpecError, SpecResult};

/// Parses TOML into `T` with the key path of any error (the workloads crate's parser).
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> SpecResult<T> {
    strata_workloads::toml_doc::from_toml(text)
}
