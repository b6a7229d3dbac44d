//! The `flash-offload` experiment kind ("LLM in a flash"): per system (an architecture and its
//! compute unit), model and configuration — the paper's cumulative techniques naive, hybrid,
//! predictor, windowing, bundling — the per-token flash bytes, read size, the drive's sustained
//! throughput, and I/O, DRAM management and compute time.

use std::fmt::Write as _;

use strata_sim::flash_offload::{self, Machine, Streaming};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, optional, required};

/// The configurations of the paper's Table 2, each adding a technique to the one before.
pub const CONFIGS: [&str; 5] = ["naive", "hybrid", "predictor", "windowing", "bundling"];

/// The engine's event budget per simulated layer of reads.
const BUDGET: u64 = 1 << 28;

/// The `flash-offload` experiment kind.
pub struct FlashOffload;

const AXES: &[Axis] = &[
    required("system", crate::kind::Values::Text),
    required("model", crate::kind::Values::Model),
    required("config", crate::kind::Values::OneOf(&CONFIGS)),
    optional("active", crate::kind::Values::NonNegative),
    optional("incremental", crate::kind::Values::NonNegative),
    optional("window_cache", crate::kind::Values::NonNegative),
    optional("predictor", crate::kind::Values::NonNegative),
    optional("resident", crate::kind::Values::NonNegative),
    optional("chunk", crate::kind::Values::Bytes),
    optional("sequential_read", crate::kind::Values::Bytes),
    optional("context", crate::kind::Values::NonNegative),
    optional("queue_depth", crate::kind::Values::NonNegative),
];

impl Kind for FlashOffload {
    fn name(&self) -> &'static str {
        "flash-offload"
    }
    fn about(&self) -> &'static str {
        "weights streamed from flash per token (LLM in a flash) per system, model and configuration"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["arch", "model"]
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        [
            "system",
            "model",
            "config",
            "flash_gb",
            "read_bytes",
            "read_gb_per_s",
            "io_ms",
            "memory_ms",
            "compute_ms",
            "total_ms",
            "dram_gb",
            "events",
        ]
        .map(String::from)
        .to_vec()
    }
    fn check(&self, x: &Experiment) -> CliResult<()> {
        for (i, v) in x.sweep.values("system").into_iter().enumerate() {
            machine(x, v.as_str().unwrap_or_default(), None).map_err(|e| {
                CliError::input(format!("{}: {}", x.at(&format!("experiment.sweep.system[{i}]")), e.message))
            })?;
        }
        Ok(())
    }
    fn check_paths(&self, x: &Experiment, root: &str, p: &Point) -> CliResult<()> {
        if root == "arch" {
            for v in x.sweep.values("system") {
                machine(x, v.as_str().unwrap_or_default(), Some(p))?;
            }
        }
        crate::kind::check_paths(x, root, p)
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

/// `arch/unit`, e.g. `m1-max/cpu`, with the point's `arch.*` spec paths applied.
fn machine(x: &Experiment, system: &str, p: Option<&Point>) -> CliResult<Machine> {
    let (arch, unit) = system.split_once('/').ok_or_else(|| {
        CliError::input(format!("experiment.sweep.system: `{system}` is not `arch/unit` (e.g. `m1-max/cpu`)"))
    })?;
    let a = crate::kind::arch(x, arch, p)?;
    Machine::from_arch(&a, unit).map_err(|e| CliError::input(format!("{system}: {e}")))
}

/// One point: its axes are `system`, `model`, `config` and the optional technique parameters.
fn point(x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
    let (system, model, config) = (p.text("system"), p.text("model"), p.text("config"));
    let mc = machine(x, &system, Some(p))?;
    let m = crate::kind::model(x, &model, Some(p))?;
    let active = p.num("active", 0.10);
    let incremental = p.num("incremental", 0.024);
    let window_cache = p.num("window_cache", 0.24);
    let predictor = p.num("predictor", 0.0125);
    let resident = p.num("resident", 0.5);
    let chunk = p.bytes("chunk", 16 << 10);
    let read = p.bytes("sequential_read", 1 << 20);
    let context = p.num("context", 256.0) as u64;
    let qd = p.num("queue_depth", 32.0) as usize;
    let sparse = |loaded: f64, window_cache: f64, chunk: u64| Streaming::Sparse {
        active,
        loaded,
        window_cache,
        predictor,
        chunk,
    };
    let streaming = match config.as_str() {
        "naive" => Streaming::Dense { resident: 0.0, read },
        "hybrid" => Streaming::Dense { resident, read },
        "predictor" => sparse(active, 0.0, chunk),
        "windowing" => sparse(incremental, window_cache, chunk),
        "bundling" => sparse(incremental, window_cache, 2 * chunk),
        other => {
            return Err(CliError::input(format!(
                "experiment.sweep.config: `{other}` is not one of {}",
                CONFIGS.join(", ")
            )));
        }
    };
    let t = flash_offload::token(&mc, &m, streaming, context, qd, BUDGET)
        .map_err(|e| CliError::flash(&format!("{system}, {model}, {config}"), &e))?;
    let ms = |s: f64| Cell::Float(1e3 * s);
    Ok(vec![Row {
        cells: vec![
            ("system".into(), Cell::Text(system)),
            ("model".into(), Cell::Text(model)),
            ("config".into(), Cell::Text(config)),
            ("flash_gb".into(), Cell::Float(t.flash_bytes / 1e9)),
            ("read_bytes".into(), Cell::Int(t.read_bytes)),
            ("read_gb_per_s".into(), Cell::Float(t.read_throughput / 1e9)),
            ("io_ms".into(), ms(t.io_s)),
            ("memory_ms".into(), ms(t.memory_s)),
            ("compute_ms".into(), ms(t.compute_s)),
            ("total_ms".into(), ms(t.total_s)),
            ("dram_gb".into(), Cell::Float(t.dram_bytes / 1e9)),
            ("events".into(), Cell::Int(t.events)),
        ],
    }])
}

/// Every point, then the reference rows (`io_ms` of Table 2, `total_ms` of Table 3) with errors.
fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = String::from(
        "| system | model | configuration | flash → DRAM (GB) | read size | read GB/s | I/O ms | DRAM mgmt ms | compute ms | total ms/token | DRAM GB |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {} KiB | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            r.s("system"),
            r.s("model"),
            r.s("config"),
            r.f("flash_gb"),
            r.f("read_bytes") as u64 >> 10,
            r.f("read_gb_per_s"),
            r.f("io_ms"),
            r.f("memory_ms"),
            r.f("compute_ms"),
            r.f("total_ms"),
            r.f("dram_gb")
        );
    }
    if !spec.reference.is_empty() {
        s += "\n## Reference points (paper, never used to compute results)\n\n| system | model | configuration | quantity | Strata | paper | error |\n|---|---|---|---|---:|---:|---:|\n";
        for reference in &spec.reference {
            let get = |k: &str| reference.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let (system, model, config) = (get("system"), get("model"), get("config"));
            let Some(r) =
                rows.iter().find(|r| r.s("system") == system && r.s("model") == model && r.s("config") == config)
            else {
                continue;
            };
            for key in ["flash_gb", "read_gb_per_s", "io_ms", "total_ms"] {
                if let Some(want) = reference.get(key).and_then(|v| v.as_float()) {
                    let got = r.f(key);
                    let _ = writeln!(
                        s,
                        "| {system} | {model} | {config} | {key} | {got:.3} | {want} | {:+.1}% |",
                        100.0 * (got / want - 1.0)
                    );
                }
            }
        }
    }
    s
}
