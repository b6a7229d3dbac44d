//! Inference phases: how many queries and keys attention sees.

use serde::Deserialize;

/// Prefill processes a prompt of `seq` tokens at once; decode generates one token against a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    Prefill,
    Decode,
}

/// A phase with its length: prompt length for prefill, cached context length for decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prefill { seq: u64 },
    Decode { context: u64 },
}

impl Phase {
    pub fn new(kind: PhaseKind, len: u64) -> Self {
        match kind {
            PhaseKind::Prefill => Phase::Prefill { seq: len },
            PhaseKind::Decode => Phase::Decode { context: len },
        }
    }

    /// New tokens per sequence (queries of attention).
    pub fn queries(self) -> u64 {
        match self {
            Phase::Prefill { seq } => seq,
            Phase::Decode { .. } => 1,
        }
    }

    /// Keys each query attends over.
    pub fn keys(self) -> u64 {
        match self {
            Phase::Prefill { seq } => seq,
            Phase::Decode { context } => context,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill { .. } => "prefill",
            Phase::Decode { .. } => "decode",
        }
    }
}
