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

/// FuseMax's Mapping 1 of the 1-pass cascade on [`strata_arch::presets::io_machine`]: `queries`
/// queries stay on chip (Q, their running values and the per-block intermediates) while K and V
/// stream once per query block. The family whose best member FlashAttention's I/O bounds describe.
pub fn one_pass_query_block(queries: u64) -> String {
    let members = ["BQK", "LM", "RM", "SLN", "SLD", "SLNV", "PRM", "SPD", "RD", "SPNV", "RNV"];
    let mut t = format!(
        "[mapping]\nname = \"flash\"\n[[mapping.groups]]\nname = \"block\"\nprefix = [\"b=*\", \"h=*\", \"p=*\"]\nmembers = [\"running\", \"AV\"]\n\
         [[mapping.groups]]\nname = \"running\"\nprefix = [\"m1=*\"]\nmembers = {members:?}\npipelining = \"interleaved\"\n"
    );
    for e in members.iter().chain(&["AV"]) {
        let mut loops: Vec<String> = vec![format!("p={queries}")];
        let own: &[&str] = match *e {
            "BQK" => &["e", "m0"],
            "LM" | "SLN" | "SLD" => &["m0"],
            "SLNV" => &["f", "m0"],
            "SPNV" | "RNV" | "AV" => &["f"],
            _ => &[],
        };
        loops.extend(own.iter().map(|r| format!("{r}=*")));
        let keep: &[&str] = match *e {
            "BQK" => &["Q", "K"],
            "SLNV" => &["V"],
            "AV" => &["AV"],
            _ => &[],
        };
        t += &format!(
            "[[mapping.einsums]]\neinsum = \"{e}\"\nunit = \"pe\"\nlevels = [{{ level = \"DRAM\", keep = {keep:?} }}, {{ level = \"SRAM\", loops = {loops:?} }}]\n"
        );
    }
    t
}
