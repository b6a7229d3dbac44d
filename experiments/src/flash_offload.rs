//! The `flash-offload` experiment kind ("LLM in a flash"): one decode token at batch 1 of a model
//! whose weights are read from flash, per architecture and system file (the paper's cumulative
//! techniques are systems: hybrid residency as placement fractions, the predictor and window as
//! a neuron selection, bundling as the read block), run by the one step engine
//! (`sim::engine::step`): bytes read from the drives and the rate they sustained, then I/O, the
//! load memory's management and compute time, and what the compute device's memory holds.

use std::fmt::Write as _;

use strata_arch::Arch;
use strata_sim::engine::step::{self, Run};

use crate::error::CliResult;
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, Values as V, optional, required};

/// The engine's event budget per measured drive pattern.
const BUDGET: u64 = 1 << 28;

/// The `flash-offload` experiment kind.
pub struct FlashOffload;

const AXES: &[Axis] = &[
    required("arch", V::Arch),
    required("system", V::Text),
    required("model", V::Model),
    optional("context", V::Positive),
];

impl Kind for FlashOffload {
    fn name(&self) -> &'static str {
        "flash-offload"
    }
    fn about(&self) -> &'static str {
        "one decode token with weights read from flash (LLM in a flash) per architecture, system file and model"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["arch", "model"]
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        [
            "arch",
            "system",
            "model",
            "flash_gb",
            "read_gb_per_s",
            "io_ms",
            "memory_ms",
            "compute_ms",
            "total_ms",
            "resident_gb",
        ]
        .map(String::from)
        .to_vec()
    }
    /// Every system file against every architecture it runs on (zipped with or crossed by).
    fn check(&self, x: &Experiment) -> CliResult<()> {
        crate::serving::check_systems(x, None)
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        point(x, p)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(&x.spec, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
        crate::plots::flash_offload(&x.spec, rows, dir)
    }
}

/// Bytes and seconds the step read from the architecture's drives (levels with a NAND organisation).
fn drive_reads(arch: &Arch, d: &step::StepReport) -> (f64, f64) {
    d.tiers
        .iter()
        .filter(|(name, _)| arch.level_id(name).is_some_and(|l| arch.level(l).nand.is_some()))
        .map(|(name, &bytes)| (bytes, d.tier_seconds.get(name).copied().unwrap_or(0.0)))
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// One point: the decode step at `context` tokens of cache (a prompt of that length, one token out).
fn point(x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
    let (arch_name, name, model) = (p.text("arch"), p.text("system"), p.text("model"));
    let arch = crate::kind::arch(x, &arch_name, Some(p))?;
    let sys = crate::serving::system(x, &name, &arch)?;
    let m = crate::kind::model(x, &model, Some(p))?;
    let run = Run { batch: 1, prompt: p.num("context", 256.0) as u64, generate: 1 };
    let o = step::simulate(&arch, &m, &sys, run, BUDGET)
        .map_err(|e| crate::serving::step_error(&format!("{arch_name}, {model}, {name}"), &e))?;
    let d = &o.decode;
    let (flash, seconds) = drive_reads(&arch, d);
    let ms = |s: f64| Cell::Float(1e3 * s);
    Ok(vec![Row {
        cells: vec![
            ("arch".into(), Cell::Text(arch_name)),
            ("system".into(), Cell::Text(sys.name.clone())),
            ("model".into(), Cell::Text(model)),
            ("flash_gb".into(), Cell::Float(flash / 1e9)),
            ("read_gb_per_s".into(), Cell::Float(if seconds > 0.0 { flash / seconds / 1e9 } else { 0.0 })),
            ("io_ms".into(), ms(d.transfer_seconds)),
            ("memory_ms".into(), ms(d.load_seconds)),
            ("compute_ms".into(), ms(d.stage_seconds)),
            ("total_ms".into(), ms(d.seconds)),
            ("resident_gb".into(), Cell::Float(o.held.get(&o.kv_level).copied().unwrap_or(0.0) / 1e9)),
        ],
    }])
}

/// Every point, then the reference rows (`io_ms` of Table 2, `total_ms` of Table 3) with errors.
fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = String::from(
        "| architecture | system | model | flash → memory (GB) | read GB/s | I/O ms | memory mgmt ms | compute ms | total ms/token | resident GB |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            r.s("arch"),
            r.s("system"),
            r.s("model"),
            r.f("flash_gb"),
            r.f("read_gb_per_s"),
            r.f("io_ms"),
            r.f("memory_ms"),
            r.f("compute_ms"),
            r.f("total_ms"),
            r.f("resident_gb")
        );
    }
    if !spec.reference.is_empty() {
        s += "\n## Reference points (paper, never used to compute results)\n\n| architecture | system | model | quantity | Strata | paper | error |\n|---|---|---|---|---:|---:|---:|\n";
        for reference in &spec.reference {
            let get = |k: &str| reference.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let (arch, system, model) = (get("arch"), get("system"), get("model"));
            let Some(r) = rows.iter().find(|r| r.s("arch") == arch && r.s("system") == system && r.s("model") == model)
            else {
                continue;
            };
            for key in ["flash_gb", "read_gb_per_s", "io_ms", "total_ms", "resident_gb"] {
                if let Some(want) = reference.get(key).and_then(|v| v.as_float()) {
                    let got = r.f(key);
                    let _ = writeln!(
                        s,
                        "| {arch} | {system} | {model} | {key} | {got:.3} | {want} | {:+.1}% |",
                        100.0 * (got / want - 1.0)
                    );
                }
            }
        }
    }
    s
}
