//! `strata list` and `strata validate`: what is embedded, and whether files parse.

use std::fmt::Write;
use std::path::Path;

use strata_workloads::presets::{PRESETS, PresetKind};
use strata_workloads::{WORKLOAD_TABLES, WorkloadSpec};

use crate::error::{CliError, CliResult};
use crate::load;

/// One kind of embedded preset: its name in `strata list` and its (name, TOML) pairs.
pub struct PresetTable {
    pub kind: &'static str,
    pub presets: Vec<(&'static str, &'static str)>,
}

/// Every kind of embedded preset: what `strata list` shows and what every point's content hash
/// covers.
pub fn preset_tables() -> Vec<PresetTable> {
    let workloads = |k: PresetKind| PRESETS.iter().filter(|p| p.kind == k).map(|p| (p.name, p.text)).collect();
    vec![
        PresetTable { kind: "model", presets: workloads(PresetKind::Model) },
        PresetTable { kind: "attention", presets: workloads(PresetKind::Attention) },
        PresetTable { kind: "cascade", presets: workloads(PresetKind::Cascade) },
        PresetTable { kind: "architecture", presets: strata_arch::presets::PRESETS.to_vec() },
        PresetTable { kind: "DRAM", presets: strata_arch::arch::DRAM_PRESETS.to_vec() },
        PresetTable { kind: "NAND", presets: strata_arch::arch::NAND_PRESETS.to_vec() },
        PresetTable { kind: "link", presets: strata_arch::arch::LINK_PRESETS.to_vec() },
        PresetTable {
            kind: "mapping",
            presets: strata_mappings::presets::PRESETS.iter().map(|p| (p.name, p.text)).collect(),
        },
        PresetTable { kind: "offload cost profile", presets: strata_mappings::offload::PRESETS.to_vec() },
        PresetTable { kind: "system", presets: strata_mappings::system::PRESETS.to_vec() },
        PresetTable { kind: "experiment", presets: crate::experiment::PRESETS.to_vec() },
    ]
}

/// The first comment line of a preset file, as its description.
fn first_comment(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix('#').map(|c| c.trim().to_string())).unwrap_or_default()
}

/// Every embedded preset, grouped by kind, with a one-line description.
pub fn list() -> String {
    let mut out = String::new();
    let tables = preset_tables();
    // One name column wide enough for the longest name.
    let w = tables.iter().flat_map(|t| t.presets.iter().map(|p| p.0.len())).max().unwrap_or(0).max(20);
    for table in tables {
        let _ = writeln!(out, "{} presets:", table.kind);
        for (name, text) in &table.presets {
            let line = match table.kind {
                "model" | "attention" | "cascade" => match WorkloadSpec::from_toml(text) {
                    Ok(WorkloadSpec::Model(m)) => format!(
                        "{} layers, d_model {}, {} heads ({} kv), ffn {}{}",
                        m.layers,
                        m.d_model,
                        m.heads,
                        m.kv_heads.unwrap_or(m.heads),
                        m.ffn_dim,
                        if m.gated_ffn { " gated" } else { "" }
                    ),
                    Ok(WorkloadSpec::Attention(a)) => a.description,
                    Ok(WorkloadSpec::Cascade(c)) => c.description,
                    Err(e) => format!("(invalid: {e})"),
                },
                "experiment" => match crate::experiment::Experiment::prepare(text, name, Path::new(".")) {
                    Ok(x) => format!("{} ({} points): {}", x.kind.name(), x.sweep.len(), x.spec.description),
                    Err(e) => format!("(invalid: {e})"),
                },
                _ => first_comment(text),
            };
            let _ = writeln!(out, "  {name:<w$} {line}");
        }
        out += "\n";
    }
    out += "experiment kinds:\n";
    for k in crate::kind::KINDS {
        let _ = writeln!(out, "  {:<w$} {}", k.name(), k.about());
    }
    out += "\nUse a preset name wherever a file is accepted, e.g. `strata workload show llama2-7b --phase decode --seq 4096`.\n";
    out
}

/// Validates each file; returns the report and whether all were valid.
pub fn validate(files: &[String]) -> (String, Vec<CliError>) {
    let mut out = String::new();
    let mut errors = Vec::new();
    for f in files {
        match validate_one(Path::new(f)) {
            Ok(what) => {
                let _ = writeln!(out, "ok  {f}  ({what})");
            }
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

fn validate_one(path: &Path) -> CliResult<String> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?;
    if path.extension().is_none_or(|e| e != "json") {
        let source = path.display().to_string();
        let keys = strata_workloads::toml_doc::top_level_keys(&text).map_err(|e| CliError::spec(&source, &e))?;
        match keys.as_slice() {
            [k] if k == "arch" => {
                let a = strata_arch::Arch::from_toml(&text).map_err(|e| CliError::input(format!("{source}: {e}")))?;
                return Ok(format!("architecture {}", a.name));
            }
            [k] if k == "experiment" => {
                let x = crate::experiment::load(&path.display().to_string())?;
                crate::run::check_points(&x, crate::sweep::DEFAULT_MAX_POINTS)?;
                // The points the filter keeps (its evaluation errors are run's errors too).
                let mut kept = 0u64;
                for p in x.sweep.points(crate::sweep::Shard::WHOLE) {
                    p?;
                    kept += 1;
                }
                return Ok(format!("experiment {} ({kept} design points)", x.spec.name));
            }
            [k] if k == "dram" => {
                let d = strata_arch::arch::DramOrg::from_toml(&text).map_err(|e| CliError::spec(&source, &e))?;
                strata_sim::engine::dram::Timing::of(&d).map_err(|e| CliError::input(format!("{source}: {e}")))?;
                return Ok(format!("DRAM {}", d.standard));
            }
            [k] if k == "nand" => {
                let n = strata_arch::arch::NandOrg::from_toml(&text).map_err(|e| CliError::spec(&source, &e))?;
                strata_sim::engine::nand::Timing::of(&n).map_err(|e| CliError::input(format!("{source}: {e}")))?;
                return Ok(format!("NAND drive ({} channels)", n.channels));
            }
            [k] if k == "link" => {
                return link(&text, &source);
            }
            [k] if k == "offload" => {
                // A profile prices what it leaves out from a machine: FlexGen's T4 by default.
                let t4 = crate::eval::arch("t4-host-ssd")?;
                let c = strata_mappings::offload::Costs::from_arch(&t4, Some(&text))
                    .map_err(|e| CliError::spec(&source, &e))?;
                return Ok(format!("offload cost profile {} (priced on t4-host-ssd)", c.name));
            }
            [k] if k == "mapping" => {
                // A mapping resolves only against a workload and an architecture: `strata eval` does that.
                let m: strata_mappings::spec::MappingFile =
                    strata_mappings::from_toml(&text).map_err(|e| CliError::spec(&source, &e))?;
                return Ok(format!(
                    "mapping {} (parsed; `strata eval` checks it against a workload and an architecture)",
                    m.mapping.name
                ));
            }
            [k] if !WORKLOAD_TABLES.contains(&k.as_str()) => {
                return Err(CliError::input(format!(
                    "{source}: [{k}]: unknown kind of file; this version validates [{}], [arch], [mapping], [experiment], [dram], [nand], [link] and [offload] files",
                    WORKLOAD_TABLES.join("], [")
                )));
            }
            _ => {}
        }
    }
    let loaded = load::file(path)?;
    loaded.spec.validate().map_err(|e| CliError::spec(&loaded.source, &e))?;
    Ok(match &loaded.spec {
        WorkloadSpec::Model(m) => format!("model {}", m.name),
        WorkloadSpec::Attention(a) => format!("attention {}", a.name),
        WorkloadSpec::Cascade(c) => format!("cascade {}", c.name),
    })
}

/// A link preset file: its table and every unit string in it.
fn link(text: &str, source: &str) -> CliResult<String> {
    use strata_arch::units::{parse_bandwidth, parse_energy_per_bit, parse_time};
    let f: strata_arch::spec::LinkPresetFile =
        strata_arch::error::from_toml(text).map_err(|e| CliError::spec(source, &e))?;
    let at = |key: &str, e: String| CliError::input(format!("{source}: link.{key}: {e}"));
    let bw = parse_bandwidth(&f.link.bandwidth).map_err(|e| at("bandwidth", e))?;
    if bw.0 <= 0.0 {
        return Err(at("bandwidth", "must be positive".into()));
    }
    if let Some(l) = &f.link.latency {
        parse_time(l).map_err(|e| at("latency", e))?;
    }
    if let Some(e) = &f.link.energy_per_bit {
        parse_energy_per_bit(e).map_err(|err| at("energy_per_bit", err))?;
    }
    if f.link.count.is_some_and(|c| c < 1) {
        return Err(at("count", "must be at least 1".into()));
    }
    Ok(format!("link ({:?}, {})", f.link.kind, f.link.bandwidth))
}
