//! The serde mirror of a mapping file.
//!
//! ```toml
//! [mapping]
//! name = "gemm-ws"
//! [[mapping.einsums]]
//! einsum = "Z"
//! unit = "pe"
//! levels = [
//!   { level = "DRAM", loops = ["m=*", "n=4"] },
//!   { level = "Buf", loops = ["k=16", "n=8@x"], bypass = ["Z"] },
//! ]
//! ```
//! A loop is `rank=bound`, `rank=*` (whatever is left of the rank: only the outermost loop of
//! a rank may be imperfect) or `rank=bound@x|y` (spatial over the array's x or y dimension).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    pub mapping: MappingSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// One entry per Einsum of the cascade (any order).
    pub einsums: Vec<EinsumMappingSpec>,
    /// Fused groups: loops shared by their members, run once around all of them.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EinsumMappingSpec {
    pub einsum: String,
    /// The compute unit the Einsum is bound to.
    pub unit: String,
    /// Outer to inner; levels of the unit's path that are not listed keep nothing and loop nothing.
    pub levels: Vec<LevelSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LevelSpec {
    pub level: String,
    #[serde(default)]
    pub loops: Vec<String>,
    /// Tensors held at this level; all of the Einsum's tensors unless given.
    pub keep: Option<Vec<String>>,
    /// Tensors that pass this level by (the complement of `keep`).
    pub bypass: Option<Vec<String>>,
}

/// How the members of a group share the arrays in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pipelining {
    /// Members run one after another within each step of the shared loops (FuseMax's "+Architecture").
    #[default]
    Sequential,
    /// Consecutive steps overlap across arrays, so each array's work per step adds up (FuseMax's binding).
    Interleaved,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    /// Loops at the outermost level shared by every member.
    pub prefix: Vec<String>,
    /// Einsum names or group names, in execution order.
    pub members: Vec<String>,
    #[serde(default)]
    pub pipelining: Pipelining,
    /// `Tensor@Level`: members read the tensor's tile at that level from one buffer, loaded
    /// once per step of the group's loops (FLAT's softmax reads a logit row once for 4 passes).
    #[serde(default)]
    pub shared: Vec<String>,
}
