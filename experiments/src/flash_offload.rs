//! The `flash-offload` experiment kind ("LLM in a flash"): per system (an architecture and its
//! compute unit), model and configuration — the paper's cumulative techniques naive, hybrid,
//! predictor, windowing, bundling — the per-token flash bytes, read size, the drive's sustained
//! throughput, and I/O, DRAM management and compute time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use strata_arch::units::parse_bytes;
use strata_sim::flash_offload::{self, Machine, Streaming};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, ExperimentSpec, Row};

/// The configurations of the paper's Table 2, each adding a technique to the one before.
pub const CONFIGS: [&str; 5] = ["naive", "hybrid", "predictor", "windowing", "bundling"];

/// The engine's event budget per simulated layer of reads.
const BUDGET: u64 = 1 << 28;

type Values = BTreeMap<String, toml::Value>;

fn float(v: &Values, axis: &str, default: f64) -> CliResult<f64> {
    crate::experiment::number(v, axis, default, false)
}

fn bytes(v: &Values, axis: &str, default: u64) -> CliResult<u64> {
    match v.get(axis) {
        None => Ok(default),
        Some(x) => {
            let text = x.as_str().ok_or_else(|| {
                CliError::input(format!("experiment.sweep.{axis}: {x} is not a size string like \"16 KiB\""))
            })?;
            let b = parse_bytes(text).map_err(|e| CliError::input(format!("experiment.sweep.{axis}: {e}")))?.0;
            if b == 0 { Err(CliError::input(format!("experiment.sweep.{axis}: must be positive"))) } else { Ok(b) }
        }
    }
}

/// `arch/unit`, e.g. `m1-max/cpu`.
fn machine(system: &str) -> CliResult<Machine> {
    let (arch, unit) = system.split_once('/').ok_or_else(|| {
        CliError::input(format!("experiment.sweep.system: `{system}` is not `arch/unit` (e.g. `m1-max/cpu`)"))
    })?;
    let a = crate::eval::arch(arch)?;
    Machine::from_arch(&a, unit).map_err(|e| CliError::input(format!("{system}: {e}")))
}

/// One point: `values` holds the sweep's axes (`system`, `model`, `config` and the optional
/// technique parameters).
pub fn point(values: &Values) -> CliResult<Vec<Row>> {
    let text = |k: &str| values.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let (system, model, config) = (text("system"), text("model"), text("config"));
    let mc = machine(&system)?;
    let m = crate::run::model(&model)?;
    let active = float(values, "active", 0.10)?;
    let incremental = float(values, "incremental", 0.024)?;
    let window_cache = float(values, "window_cache", 0.24)?;
    let predictor = float(values, "predictor", 0.0125)?;
    let resident = float(values, "resident", 0.5)?;
    let chunk = bytes(values, "chunk", 16 << 10)?;
    let read = bytes(values, "sequential_read", 1 << 20)?;
    let context = float(values, "context", 256.0)? as u64;
    let qd = float(values, "queue_depth", 32.0)? as usize;
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
        .map_err(|e| CliError::input(format!("{system}, {model}, {config}: {e}")))?;
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

/// Checks the axes a `flash-offload` experiment names before anything runs.
pub fn check(spec: &ExperimentSpec, source: &str) -> CliResult<()> {
    for (i, v) in spec.sweep["config"].iter().enumerate() {
        if !v.as_str().is_some_and(|c| CONFIGS.contains(&c)) {
            return Err(CliError::input(format!(
                "{source}: experiment.sweep.config[{i}]: {v} is not one of {}",
                CONFIGS.join(", ")
            )));
        }
    }
    for (i, v) in spec.sweep["system"].iter().enumerate() {
        machine(v.as_str().unwrap_or_default())
            .map_err(|e| CliError::input(format!("{source}: experiment.sweep.system[{i}]: {}", e.message)))?;
    }
    Ok(())
}

/// Every point, then the reference rows (`io_ms` of Table 2, `total_ms` of Table 3) with errors.
pub fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
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
