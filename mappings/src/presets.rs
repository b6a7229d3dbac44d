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

pub const PRESETS: &[Preset] = &[];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
