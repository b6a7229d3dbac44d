//! Mapping presets: (name, workload preset, arch preset, TOML text). Embedded so the binary
//! works from any directory; each file's comment says which paper mapping it writes down.

/// A mapping preset and the workload and architecture presets it is written for.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub workload: &'static str,
    pub arch: &'static str,
    pub text: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "gemm-fusemax",
        workload: "gemm",
        arch: "fusemax",
        text: include_str!("../presets/gemm-fusemax.toml"),
    },
    Preset {
        name: "fusemax-1pass",
        workload: "attention-1pass",
        arch: "fusemax",
        text: include_str!("../presets/fusemax-1pass.toml"),
    },
    Preset {
        name: "flat-3pass",
        workload: "attention-3pass",
        arch: "flat",
        text: include_str!("../presets/flat-3pass.toml"),
    },
    Preset {
        name: "unfused-3pass",
        workload: "attention-3pass",
        arch: "unfused",
        text: include_str!("../presets/unfused-3pass.toml"),
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
