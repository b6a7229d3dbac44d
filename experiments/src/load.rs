//! Resolving a workload argument: an embedded preset name or a file path.
//!
//! This is the only place that reads workload files. A `.json` file is read as a Hugging Face
//! `config.json`; anything else as Strata TOML.

use std::path::Path;

use strata_workloads::presets::{self, PRESETS};
use strata_workloads::{ModelSpec, WorkloadSpec};

use crate::error::{CliError, CliResult};

/// A parsed workload and the name of where it came from, for messages.
pub struct Loaded {
    pub spec: WorkloadSpec,
    pub source: String,
}

/// Loads `arg` as a preset if one has that name, else as a file.
pub fn workload(arg: &str) -> CliResult<Loaded> {
    if let Some(p) = presets::find(arg) {
        let source = format!("preset {}", p.name);
        let spec = WorkloadSpec::from_toml(p.text).map_err(|e| CliError::spec(&source, &e))?;
        return Ok(Loaded { spec, source });
    }
    let path = Path::new(arg);
    if !path.exists() {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        return Err(CliError::input(format!(
            "`{arg}` is neither a preset nor a file (presets: {}; `strata list` describes them)",
            names.join(", ")
        )));
    }
    file(path)
}

/// Reads and parses one workload file.
pub fn file(path: &Path) -> CliResult<Loaded> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?;
    let spec = if path.extension().is_some_and(|e| e == "json") {
        let name = path.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
        ModelSpec::from_hf_json(&text, &name).map(WorkloadSpec::Model)
    } else {
        WorkloadSpec::from_toml(&text)
    };
    let spec = spec.map_err(|e| CliError::spec(&source, &e))?;
    Ok(Loaded { spec, source })
}
