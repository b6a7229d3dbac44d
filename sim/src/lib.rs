//! Cost models: what an (architecture, workload, mapping) costs.
//!
//! [`space`] counts existing loop-index combinations; [`counts`] turns them into exact per-level,
//! per-operand access counts; [`evaluate`] adds cycles, energy, utilisation and capacity
//! violations; [`executor`] runs the same mapping on real numbers with instrumented buffers and
//! is the proof that the counts are right.
//!
//! Architecture invariant: `sim` evaluates what `mappings` describes and never chooses a
//! mapping; infeasibility (a tile over capacity) is reported as data, not as an error.

pub mod counts;
pub mod engine;
pub mod evaluate;
pub mod executor;
pub mod gpu;
pub mod quick;
pub mod space;

pub use counts::{Access, NestCounts, count};
pub use evaluate::{Evaluation, Violation, evaluate};
pub use quick::{Quick, quick};
