//! Strata as a library: load specs, evaluate a mapping, map a workload, run an experiment.
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
//! Mapping a workload, running an experiment and merging shards (the README's example):
//! ```no_run
//! let arch = strata::load_arch("fusemax")?;
//! let attention = strata::load_workload("attention-1pass", &strata::Shape::default())?;
//! let report = strata::evaluate_mapping(&arch, &attention, &strata::mapping_text("fusemax-1pass")?)?;
//! println!("{} s, {} J, {} B off chip", report.seconds, report.energy_j, report.offchip_bytes);
//!
//! let gemm = strata::load_workload("gemm", &strata::Shape::default())?;
//! let found = strata::map_workload(&arch, &gemm, &[], &strata::MapperSettings::default(), None)?;
//! println!("{}", found.mapping); // a mapping file that evaluate_mapping reproduces
//! let k16 = "[[constraints]]\nlevel = \"GlobalBuffer\"\nfactors = { k = 16 }\n";
//! let constrained = strata::map_workload_constrained(&arch, &gemm, &[], &strata::MapperSettings::default(), None, k16)?;
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
//! let found = strata::map_workload(&arch, &gemm, &[], &settings, None)?;
//! let again = strata::evaluate_mapping(&arch, &gemm, &found.mapping)?;
//! assert_eq!(again.cycles, found.einsums[0].objective);
//! assert!(again.violations.is_empty());
//! # Ok::<(), strata::Error>(())
//! ```

mod attention_systems;
mod bench;
mod capacity;
mod catalog;
#[doc(hidden)]
pub mod cli;
mod constraints;
mod double_sparsity;
mod dram;
mod error;
mod eval;
mod experiment;
mod filter;
mod flash_compute;
mod flash_offload;
mod flashsvd;
mod io_curve;
mod kind;
mod load;
mod load_curve;
mod map;
mod nand;
mod offload;
mod plots;
mod request_trace;
mod run;
mod serving;
mod show;
mod slurm;
mod step;
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
pub use run::{RunOptions, RunReport, SUMMARY_ROWS};
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
    /// Peak bytes of activations held at once in the outermost level, from the mapping's
    /// liveness.
    pub peak_activation_bytes: u64,
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
            peak_activation_bytes: ev.peak_activation_bytes,
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

/// The mapper's best mapping of a cascade (or of some of its Einsums), as a mapping file, its
/// evaluation, and per Einsum the unit chosen, the mapspace size and the mappings evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct MapRecord {
    /// A `[mapping]` TOML file that [`evaluate_mapping`] reproduces exactly.
    pub mapping: String,
    pub evaluation: EvaluationRecord,
    pub einsums: Vec<map::EinsumSearch>,
    /// The fusion search of a whole cascade, and whether its mapping is the one returned.
    pub fusion: Option<map::FusionSearch>,
    /// Wall-clock seconds of the search.
    pub seconds: f64,
}

/// Maps the Einsums of `cascade` named in `einsums` (all when empty) on `arch` with `settings`'
/// strategy and objective: each on every unit that has its operations, the best kept; a whole
/// cascade is also searched fused and the better mapping returned;
/// `time_limit` (seconds) stops evaluating new mappings and keeps the best found.
pub fn map_workload(
    arch: &Arch,
    cascade: &Cascade,
    einsums: &[String],
    settings: &MapperSettings,
    time_limit: Option<f64>,
) -> Result<MapRecord> {
    map_workload_constrained(arch, cascade, einsums, settings, time_limit, "")
}

/// [`map_workload`] under per-level constraints given as the text of a constraints file
/// (`[[constraints]]` tables: `einsum`, `level`, `factors`, `order`, `keep`; see `strata map
/// --constraints`); contradictory or impossible constraints are an error naming them.
pub fn map_workload_constrained(
    arch: &Arch,
    cascade: &Cascade,
    einsums: &[String],
    settings: &MapperSettings,
    time_limit: Option<f64>,
    constraints: &str,
) -> Result<MapRecord> {
    let constraints = match constraints.trim() {
        "" => constraints::Constraints::default(),
        text => constraints::Constraints::parse(text, "constraints", cascade, arch)?,
    };
    let m = map::map(arch, cascade, einsums, settings, time_limit, &constraints, &map::silent())?;
    let evaluation = evaluate_mapping(arch, cascade, &m.mapping)?;
    Ok(MapRecord { mapping: m.mapping, evaluation, einsums: m.einsums, fusion: m.fusion, seconds: m.seconds })
}

/// Runs an experiment (an embedded name or a file) into `options.out`, resuming what the folder
/// already holds.
pub fn run_experiment(experiment: &str, options: &RunOptions) -> Result<RunReport> {
    run::run(experiment, options)
}

/// Merges the folders of an experiment's shards into `out`: the same files a whole run writes
/// (the summary and plots made from at most [`SUMMARY_ROWS`] rows, as a run's default).
pub fn merge_shards(dirs: &[std::path::PathBuf], out: &std::path::Path) -> Result<RunReport> {
    run::merge(dirs, out, SUMMARY_ROWS)
}

/// The names of the embedded experiments, in `strata list` order.
pub fn experiment_presets() -> Vec<&'static str> {
    experiment::PRESETS.iter().map(|p| p.0).collect()
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
