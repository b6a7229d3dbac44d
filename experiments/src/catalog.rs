//! `strata list` and `strata validate`: what is embedded, and whether files parse.

use std::fmt::Write;
use std::path::Path;

use strata_workloads::presets::{PRESETS, PresetKind};
use strata_workloads::{WORKLOAD_TABLES, WorkloadSpec};

use crate::error::{CliError, CliResult};
use crate::load;

/// Every embedded preset, grouped by kind, with a one-line description.
pub fn list() -> String {
    let mut out = String::new();
    for kind in [PresetKind::Model, PresetKind::Attention, PresetKind::Cascade] {
        let _ = writeln!(out, "{} presets:", kind.name());
        for p in PRESETS.iter().filter(|p| p.kind == kind) {
            let line = match WorkloadSpec::from_toml(p.text) {
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
            };
            let _ = writeln!(out, "  {:<18} {line}", p.name);
        }
        out += "\n";
    }
    out += "Use a preset name wherever a file is accepted, e.g. `strata workload show llama2-7b --phase decode --seq 4096`.\n";
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
                let (spec, _) = crate::experiment::load(&path.display().to_string())?;
                crate::run::check(&spec, &source)?;
                return Ok(format!(
                    "experiment {} ({} design points)",
                    spec.name,
                    crate::experiment::points(&spec).len()
                ));
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
                    "{source}: [{k}]: unknown kind of file; this version validates [{}], [arch], [mapping] and [experiment] files",
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
