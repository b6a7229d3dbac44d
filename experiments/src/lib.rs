//! Strata as a library: load specs, evaluate a mapping, search mappings, run an experiment.
//!
//! The `strata` binary is a thin command line over these functions, and a Python package will
//! wrap the same facade, so inputs are names, paths and plain data, and every result is a record
//! that implements [`serde::Serialize`]. Errors are [`Error`]s: `code` 2 for bad input (the
//! message names the file and the key), 1 for a failure at run time.
//!
//! Evaluating FuseMax's own mapping of BERT's attention at 1K tokens (batch 64, 12 heads, head
//! dimension 64):
//! ```
//! let arch = strata::load_arch("fusemax")?;
//! let attention = strata::load_workload("attention-1pass", &strata::Shape::default())?;
//! let mapping = strata::mapping_text("fusemax-1pass")?;
//! let r = strata::evaluate_mapping(&arch, &attention, &mapping)?;
//! assert!(r.violations.is_empty());
//! // Fused: Q, K and V are read once and O written once, 2 bytes an element.
//! assert_eq!(r.offchip_bytes, 4 * (64 * 12 * 1024 * 64) * 2);
//! # Ok::<(), strata::Error>(())
//! ```
//!
//! Searching a mapping, running an experiment and merging shards (the README's example):
//! ```no_run
//! let arch = strata::load_arch("fusemax")?;
//! let attention = strata::load_workload("attention-1pass", &strata::Shape::default())?;
//! let report = strata::evaluate_mapping(&arch, &attention, &strata::mapping_text("fusemax-1pass")?)?;
//! println!("{} s, {} J, {} B off chip", report.seconds, report.energy_j, report.offchip_bytes);
//!
//! let gemm = strata::load_workload("gemm", &strata::Shape::default())?;
//! let found = strata::search_mapping(&arch, &gemm, 0, &strata::MapperSettings::default())?;
//! println!("{}", found.mapping); // a mapping file that evaluate_mapping reproduces
//!
//! let options = strata::RunOptions { out: Some("runs/dse".into()), ..Default::default() };
//! let run = strata::run_experiment("experiments/examples/fusemax-dse.toml", &options)?;
//! println!("{} points: {} computed, {} reused", run.points, run.computed, run.resumed.reused);
//! strata::merge_shards(&["s0".into(), "s1".into()], "merged".as_ref())?;
//! # Ok::<(), strata::Error>(())
//! ```
//!
//! The mapper's best mapping of a GEMM, written as a file, evaluates to the cost the search saw:
//! ```
//! let arch = strata::load_arch("fusemax")?;
//! let gemm = strata::load_workload("gemm", &strata::Shape::default())?;
//! let settings = strata::MapperSettings { objective: "latency".into(), ..Default::default() };
//! let found = strata::search_mapping(&arch, &gemm, 0, &settings)?;
//! let again = strata::evaluate_mapping(&arch, &gemm, &found.mapping)?;
//! assert_eq!(again.cycles, found.objective);
//! assert!(again.violations.is_empty());
//! # Ok::<(), strata::Error>(())
//! ```

mod attention_systems;
mod bench;
mod capacity;
mod catalog;
#[doc(hidden)]
pub mod cli;
mod dram;
mod error;
mod eval;
mod experiment;
mod filter;
mod flash_compute;
mod flash_offload;
mod io_curve;
mod kind;
mod kv_offload;
mod load;
mod nand;
mod offload;
mod plots;
mod run;
mod show;
mod slurm;
mod store;
mod sweep;
mod systems;
mod table;
mod trace;
mod validate_gpu;

use serde::Serialize;
pub use strata_arch::Arch;
pub use strata_workloads::Cascade;

pub use error::CliError as Error;
pub use experiment::MapperSpec as MapperSettings;
pub use load::Shape;
pub use run::{RunOptions, RunReport};
pub use store::Resumed;
pub use sweep::Shard;

/// What the library returns.
pub type Result<T> = std::result::Result<T, Error>;

/// An architecture preset or file.
pub fn load_arch(name: &str) -> Result<Arch> {
    eval::arch(name)
}

/// The cascade a workload preset or file lowers to (a model's layer, an attention shape, a
/// `[cascade]` file), with `shape`'s overrides.
pub fn load_workload(name: &str, shape: &Shape) -> Result<Cascade> {
    let args = eval::EvalArgs {
        arch: None,
        workload: None,
        mapping: String::new(),
        shape: shape.clone(),
        allow_violations: false,
    };
    eval::cascade(name, &args)
}

/// The TOML text of a mapping preset or file.
pub fn mapping_text(name: &str) -> Result<String> {
    if let Some(p) = strata_mappings::presets::find(name) {
        return Ok(p.text.to_string());
    }
    let path = std::path::Path::new(name);
    std::fs::read_to_string(path).map_err(|e| Error::read(path, &e))
}

/// The analytical model's report of one mapping.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationRecord {
    pub cycles: f64,
    pub seconds: f64,
    pub energy_j: f64,
    /// Bytes read from and written to the outermost level.
    pub offchip_bytes: u64,
    /// (unit, busy PEs / (PEs × cycles)).
    pub utilization: Vec<(String, f64)>,
    /// (component, action, joules).
    pub energy: Vec<(String, String, f64)>,
    /// Capacities exceeded: (Einsum or fused group, level, bytes needed, bytes there).
    pub violations: Vec<(String, String, u64, u64)>,
}

impl EvaluationRecord {
    fn of(ev: &strata_sim::Evaluation) -> EvaluationRecord {
        EvaluationRecord {
            cycles: ev.cycles,
            seconds: ev.seconds,
            energy_j: ev.energy_pj * 1e-12,
            offchip_bytes: ev.offchip_bytes,
            utilization: ev.utilization.clone(),
            energy: ev.energy.iter().map(|(c, a, pj)| (c.clone(), a.clone(), pj * 1e-12)).collect(),
            violations: ev
                .violations
                .iter()
                .map(|v| (v.scope.clone(), v.level.clone(), v.needed, v.capacity))
                .collect(),
        }
    }
}

/// Evaluates a mapping (TOML text, see [`mapping_text`]) of `cascade` on `arch`.
pub fn evaluate_mapping(arch: &Arch, cascade: &Cascade, mapping: &str) -> Result<EvaluationRecord> {
    let m = strata_mappings::CascadeMapping::from_toml(mapping, cascade, arch)
        .map_err(|e| Error::input(format!("mapping: {e}")))?;
    Ok(EvaluationRecord::of(&strata_sim::evaluate(arch, cascade, &m)))
}

/// The best mapping the mapper found for one Einsum, as a mapping file and its evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct SearchRecord {
    /// The Einsum mapped.
    pub einsum: String,
    /// The compute unit it runs on.
    pub unit: String,
    /// The mapping as a `[mapping]` TOML file that [`evaluate_mapping`] reproduces.
    pub mapping: String,
    /// The objective's value (cycles, pJ or their product).
    pub objective: f64,
    pub evaluation: EvaluationRecord,
}

/// Searches the mappings of Einsum `einsum` of `cascade` on the first unit of `arch` that has
/// its operations, with `settings`' strategy and objective.
pub fn search_mapping(
    arch: &Arch,
    cascade: &Cascade,
    einsum: usize,
    settings: &MapperSettings,
) -> Result<SearchRecord> {
    use strata_mappings::mapper::{Mapspace, to_spec};
    let e = cascade
        .einsums()
        .get(einsum)
        .ok_or_else(|| Error::input(format!("{}: has no Einsum {einsum}", cascade.name())))?;
    let needs = strata_mappings::nest::point_ops(e.map, e.reduce, !e.reduced_ranks().is_empty());
    let unit = (0..arch.units.len())
        .map(strata_arch::arch::UnitId)
        .find(|&u| needs.iter().all(|op| arch.unit(u).ops.contains_key(*op)))
        .ok_or_else(|| {
            Error::input(format!(
                "{}: Einsum {}: no unit of {} has {}",
                cascade.name(),
                e.name,
                arch.name,
                needs.join(", ")
            ))
        })?;
    let space = Mapspace::new(cascade, einsum, arch, unit, false);
    let what = format!("{}: Einsum {}", cascade.name(), e.name);
    let (nest, objective) = systems::search(&space, arch, cascade, settings, &what)?.ok_or_else(|| {
        Error::input(format!("{}: no mapping of Einsum {} fits {}", cascade.name(), e.name, arch.name))
    })?;
    let spec = strata_mappings::spec::MappingSpec {
        name: format!("{}-{}", cascade.name(), e.name),
        description: format!("found by the mapper ({} objective)", settings.objective),
        einsums: vec![to_spec(cascade, arch, &nest)],
        groups: vec![],
    };
    let mapping = toml::to_string(&strata_mappings::spec::MappingFile { mapping: spec })
        .map_err(|e| Error::runtime(format!("mapping: {e}")))?;
    let evaluation = evaluate_mapping(arch, cascade, &mapping)?;
    Ok(SearchRecord { einsum: e.name.clone(), unit: arch.unit(unit).name.clone(), mapping, objective, evaluation })
}

/// Runs an experiment (an embedded name or a file) into `options.out`, resuming what the folder
/// already holds.
pub fn run_experiment(experiment: &str, options: &RunOptions) -> Result<RunReport> {
    run::run(experiment, options)
}

/// Merges the folders of an experiment's shards into `out`: the same files a whole run writes.
pub fn merge_shards(dirs: &[std::path::PathBuf], out: &std::path::Path) -> Result<RunReport> {
    run::merge(dirs, out)
}

/// Checks an experiment (an embedded name or a file) exactly as [`run_experiment`] does, without
/// running it; returns its number of points.
pub fn check_experiment(experiment: &str) -> Result<u64> {
    Ok(experiment::load(experiment)?.sweep.len())
}

/// [`check_experiment`] for an experiment's TOML text (relative paths resolve against the
/// working directory).
pub fn check_experiment_text(text: &str) -> Result<u64> {
    Ok(experiment::Experiment::prepare(text, "experiment", std::path::Path::new("."))?.sweep.len())
}
