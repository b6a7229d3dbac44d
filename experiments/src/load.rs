//! Resolving a workload argument: an embedded preset name or a file path.
//!
//! This is the only place that reads workload files. A `.json` file is read as a Hugging Face
//! `config.json`; anything else as Strata TOML.

use std::path::Path;

use strata_workloads::presets::{self, PRESETS};
use strata_workloads::{AttentionSpec, ModelSpec, Phase, PhaseKind, WorkloadSpec};

use crate::error::{CliError, CliResult};

/// A parsed workload and the name of where it came from, for messages.
pub struct Loaded {
    pub spec: WorkloadSpec,
    pub source: String,
}

/// The text of the preset named `arg` among `presets` (name, TOML), else of the file `arg`, and
/// where it came from; `what` names the kind of preset in the error ("an architecture").
pub fn preset_or_file(arg: &str, what: &str, presets: &[(&str, &str)]) -> CliResult<(String, String)> {
    if let Some(p) = presets.iter().find(|p| p.0 == arg) {
        return Ok((p.1.to_string(), format!("preset {arg}")));
    }
    let path = Path::new(arg);
    if !path.exists() {
        let names: Vec<&str> = presets.iter().map(|p| p.0).collect();
        return Err(CliError::input(format!(
            "`{arg}` is neither {what} preset nor a file (presets: {})",
            names.join(", ")
        )));
    }
    Ok((std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?, path.display().to_string()))
}

/// The level `LEVEL` of architecture `ARCH` (a preset or file) named as `ARCH:LEVEL`, where
/// `arg` is not a file itself: a memory of the system model, for a device engine to run alone.
/// `None` where `arg` names no level.
pub fn arch_level(arg: &str) -> CliResult<Option<(strata_arch::arch::Level, String)>> {
    let Some((arch, level)) = arg.rsplit_once(':') else { return Ok(None) };
    if Path::new(arg).exists() {
        return Ok(None);
    }
    let a = crate::eval::arch(arch)?;
    let Some(l) = a.levels.iter().find(|l| l.name == level) else {
        let names: Vec<&str> = a.levels.iter().map(|l| l.name.as_str()).collect();
        return Err(CliError::input(format!(
            "`{arg}`: {} has no level `{level}` (levels: {})",
            a.name,
            names.join(", ")
        )));
    };
    Ok(Some((l.clone(), format!("{} level {level}", a.name))))
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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PhaseArg {
    Prefill,
    Decode,
}

/// Shape overrides for models and attention workloads, shared by the commands that take them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Shape {
    /// Prefill a prompt, or decode one token against a KV cache (models and attention).
    #[arg(long, value_enum)]
    pub phase: Option<PhaseArg>,
    /// Prompt length (prefill) or context length (decode); models default to 2048.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 62))]
    pub seq: Option<u64>,
    /// Sequences per batch; models default to 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 62))]
    pub batch: Option<u64>,
    /// Attention cascade: 1-, 2- or 3-pass (models default to 1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub passes: Option<u8>,
}

/// Prompt or context length models are lowered for when `--seq` is not given.
const DEFAULT_SEQ: u64 = 2048;

impl Shape {
    pub fn is_set(&self) -> bool {
        self.phase.is_some() || self.seq.is_some() || self.batch.is_some() || self.passes.is_some()
    }

    fn kind(&self) -> Option<PhaseKind> {
        self.phase.map(|p| match p {
            PhaseArg::Prefill => PhaseKind::Prefill,
            PhaseArg::Decode => PhaseKind::Decode,
        })
    }

    /// An attention spec with the overrides applied.
    pub fn attention(&self, a: &AttentionSpec) -> AttentionSpec {
        let mut a = a.clone();
        if let Some(p) = self.kind() {
            a.phase = p;
        }
        if let Some(s) = self.seq {
            a.seq = s as i64;
        }
        if let Some(b) = self.batch {
            a.batch = b as i64;
        }
        if let Some(p) = self.passes {
            a.passes = i64::from(p);
        }
        a
    }

    /// (phase, batch, passes) a model is lowered for.
    pub fn model(&self) -> (Phase, u64, u8) {
        let phase = Phase::new(self.kind().unwrap_or(PhaseKind::Prefill), self.seq.unwrap_or(DEFAULT_SEQ));
        (phase, self.batch.unwrap_or(1), self.passes.unwrap_or(1))
    }
}
