//! Workloads: what is computed, independent of any machine.
//!
//! This crate owns the extended-Einsum cascade IR ([`einsum`]), its text and TOML forms
//! ([`expr`], [`cascade`]), FuseMax's attention cascades ([`attention`]), transformer models
//! and their lowering into cascades ([`model`]), the embedded presets ([`presets`]), and the
//! reference interpreter that every model in Strata is checked against ([`interp`]).
//!
//! Architecture invariant: nothing here knows about hardware, mappings or costs, and nothing
//! here touches the file system; callers hand in text and get values or [`SpecError`]s back.

pub mod attention;
pub mod cascade;
pub mod einsum;
pub mod error;
pub mod expr;
pub mod interp;
pub mod model;
pub mod phase;
pub mod presets;
pub mod sparse;
pub use strata_spec::toml_doc;

pub use attention::{AttentionShape, AttentionSpec};
pub use cascade::CascadeSpec;
pub use einsum::{Cascade, Einsum, MapOp, ReduceOp, Role};
pub use error::{SpecError, SpecResult};
pub use model::{Model, ModelSpec, ModelWorkload};
pub use phase::{Phase, PhaseKind};

/// A workload file of any of the three kinds.
#[derive(Debug, Clone)]
pub enum WorkloadSpec {
    Model(ModelSpec),
    Attention(AttentionSpec),
    Cascade(CascadeSpec),
}

/// The top-level tables a workload file may have, one per kind.
pub const WORKLOAD_TABLES: [&str; 3] = ["model", "attention", "cascade"];

impl WorkloadSpec {
    /// Parses TOML text whose single top-level table says its kind.
    pub fn from_toml(text: &str) -> SpecResult<Self> {
        let keys = toml_doc::top_level_keys(text)?;
        match keys.as_slice() {
            [k] if k == "model" => ModelSpec::from_toml(text).map(WorkloadSpec::Model),
            [k] if k == "attention" => AttentionSpec::from_toml(text).map(WorkloadSpec::Attention),
            [k] if k == "cascade" => CascadeSpec::from_toml(text).map(WorkloadSpec::Cascade),
            [k] => Err(SpecError::new(
                k.as_str(),
                "unknown table; a workload file has one of [model], [attention], [cascade]",
            )),
            _ => Err(SpecError::new(
                "",
                format!(
                    "a workload file has exactly one top-level table ([model], [attention] or [cascade]); found {}",
                    keys.len()
                ),
            )),
        }
    }

    /// Checks everything that can be checked without choosing a phase or batch.
    pub fn validate(&self) -> SpecResult<()> {
        match self {
            WorkloadSpec::Model(m) => m.build().map(|_| ()),
            WorkloadSpec::Attention(a) => {
                a.shape().and_then(|s| s.cascade_spec(&a.name, &a.description).build()).map(|_| ())
            }
            WorkloadSpec::Cascade(c) => c.build().map(|_| ()),
        }
    }
}
