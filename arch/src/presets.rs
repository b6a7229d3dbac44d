//! Architecture presets, embedded so the binary works from any directory. Each TOML file says
//! in comments where its numbers come from.

use crate::arch::Arch;
use crate::error::SpecResult;

/// (name, TOML text) of every architecture preset.
pub const PRESETS: &[(&str, &str)] = &[
    ("a100", include_str!("../presets/a100.toml")),
    ("a100-host", include_str!("../presets/a100-host.toml")),
    ("gh200-ssd", include_str!("../presets/gh200-ssd.toml")),
    ("h200", include_str!("../presets/h200.toml")),
    ("a6000-csd", include_str!("../presets/a6000-csd.toml")),
    ("cambricon-llm-l", include_str!("../presets/cambricon-llm-l.toml")),
    ("cambricon-llm-m", include_str!("../presets/cambricon-llm-m.toml")),
    ("cambricon-llm-s", include_str!("../presets/cambricon-llm-s.toml")),
    ("flat", include_str!("../presets/flat.toml")),
    ("flat-edge", include_str!("../presets/flat-edge.toml")),
    ("fusemax", include_str!("../presets/fusemax.toml")),
    ("h100", include_str!("../presets/h100.toml")),
    ("m1-max", include_str!("../presets/m1-max.toml")),
    ("rtx4090-host", include_str!("../presets/rtx4090-host.toml")),
    ("t4-host-ssd", include_str!("../presets/t4-host-ssd.toml")),
    ("unfused", include_str!("../presets/unfused.toml")),
];

/// The TOML text of a preset.
pub fn text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.0 == name).map(|p| p.1)
}

/// Parses and validates a preset.
pub fn load(name: &str) -> Option<SpecResult<Arch>> {
    text(name).map(Arch::from_toml)
}

/// The machine of the I/O bounds (Hong–Kung style): one on-chip memory of `words` 2-byte words
/// between DRAM and a 16-PE array, every operation one cycle. FlashAttention's traffic analyses
/// assume exactly this.
pub fn io_machine(words: u64) -> SpecResult<Arch> {
    Arch::from_toml(&format!(
        "[arch]\nname = \"io-{words}\"\nclock = \"1 GHz\"\n[[arch.levels]]\nname = \"DRAM\"\nkind = \"dram\"\nread_bandwidth = \"100 GB/s\"\n\
         [[arch.levels]]\nname = \"SRAM\"\nkind = \"sram\"\ncapacity = \"{} B\"\n[[arch.compute]]\nname = \"pe\"\nlevel = \"SRAM\"\ncols = 16\n\
         ops = {{ mac = {{ energy = \"1 pJ\" }}, add = {{ energy = \"1 pJ\" }}, max = {{ energy = \"1 pJ\" }}, exp = {{ energy = \"1 pJ\" }}, div = {{ energy = \"1 pJ\" }} }}\n",
        words * 2
    ))
}
