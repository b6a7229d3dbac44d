//! Workload presets, embedded in the binary so `strata` works from any directory.
//!
//! Each preset is a TOML file under `workloads/presets/` in the same format a user would write;
//! the comment at the top of each file says where its numbers come from.

/// What a preset file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PresetKind {
    Model,
    Attention,
    Cascade,
}

impl PresetKind {
    pub fn name(self) -> &'static str {
        match self {
            PresetKind::Model => "model",
            PresetKind::Attention => "attention",
            PresetKind::Cascade => "cascade",
        }
    }
}

/// One embedded workload preset.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub kind: PresetKind,
    pub text: &'static str,
}

/// Every workload preset, grouped by kind.
pub const PRESETS: &[Preset] = &[
    Preset { name: "bert", kind: PresetKind::Model, text: include_str!("../presets/models/bert.toml") },
    Preset { name: "llama2-13b", kind: PresetKind::Model, text: include_str!("../presets/models/llama2-13b.toml") },
    Preset { name: "llama2-70b", kind: PresetKind::Model, text: include_str!("../presets/models/llama2-70b.toml") },
    Preset { name: "llama3-70b", kind: PresetKind::Model, text: include_str!("../presets/models/llama3-70b.toml") },
    Preset { name: "llama2-7b", kind: PresetKind::Model, text: include_str!("../presets/models/llama2-7b.toml") },
    Preset { name: "opt-13b", kind: PresetKind::Model, text: include_str!("../presets/models/opt-13b.toml") },
    Preset { name: "opt-175b", kind: PresetKind::Model, text: include_str!("../presets/models/opt-175b.toml") },
    Preset { name: "opt-30b", kind: PresetKind::Model, text: include_str!("../presets/models/opt-30b.toml") },
    Preset { name: "opt-6.7b", kind: PresetKind::Model, text: include_str!("../presets/models/opt-6.7b.toml") },
    Preset { name: "opt-66b", kind: PresetKind::Model, text: include_str!("../presets/models/opt-66b.toml") },
    Preset { name: "t5", kind: PresetKind::Model, text: include_str!("../presets/models/t5.toml") },
    Preset { name: "trxl", kind: PresetKind::Model, text: include_str!("../presets/models/trxl.toml") },
    Preset { name: "xlm", kind: PresetKind::Model, text: include_str!("../presets/models/xlm.toml") },
    Preset { name: "yi-34b", kind: PresetKind::Model, text: include_str!("../presets/models/yi-34b.toml") },
    Preset {
        name: "attention-1pass",
        kind: PresetKind::Attention,
        text: include_str!("../presets/attention/attention-1pass.toml"),
    },
    Preset {
        name: "attention-2pass",
        kind: PresetKind::Attention,
        text: include_str!("../presets/attention/attention-2pass.toml"),
    },
    Preset {
        name: "attention-3pass",
        kind: PresetKind::Attention,
        text: include_str!("../presets/attention/attention-3pass.toml"),
    },
    Preset {
        name: "attention-decode",
        kind: PresetKind::Attention,
        text: include_str!("../presets/attention/attention-decode.toml"),
    },
    Preset {
        name: "attention-gqa",
        kind: PresetKind::Attention,
        text: include_str!("../presets/attention/attention-gqa.toml"),
    },
    Preset { name: "gemm", kind: PresetKind::Cascade, text: include_str!("../presets/cascades/gemm.toml") },
    Preset { name: "mlp", kind: PresetKind::Cascade, text: include_str!("../presets/cascades/mlp.toml") },
    Preset { name: "prefix-sum", kind: PresetKind::Cascade, text: include_str!("../presets/cascades/prefix-sum.toml") },
];

/// Looks a preset up by name.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
