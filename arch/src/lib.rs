//! Architectures: what the machine is, independent of any workload.
//!
//! Owns unit newtypes and unit strings ([`units`]), the TOML spec ([`spec`]), the validated
//! tree of storage levels with compute arrays and links ([`arch`]), and the embedded presets
//! ([`presets`]).
//!
//! Architecture invariant: nothing here knows about Einsums, mappings or costs. Operations are
//! named by strings (`mac`, `exp`, ...) that the cost model looks up; the file system is never
//! touched.

pub mod arch;
pub mod dram_map;
pub mod error;
pub mod gpu;
pub mod presets;
pub mod spec;
pub mod units;

pub use arch::{Arch, ComputeUnit, Level, LevelId, OpCost, UnitId};
pub use error::{SpecError, SpecResult};
pub use gpu::Gpu;
pub use spec::LevelKind;
