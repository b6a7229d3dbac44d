//! The `serving` experiment kind: a model served by a system (`[system]` file: where weights and
//! KV cache live, which unit runs which Einsums, what is read selectively, what overlaps) on an
//! architecture, per batch: prefill, the decode step, tokens/s, where the time goes, the memory
//! footprint (persistent weights and KV cache, peak transient activations), and the
//! ratios a paper reports between systems (references that select rows by their columns, so
//! nothing here names a system). InstInfer's four systems are presets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use strata_mappings::system::System;
use strata_sim::engine::step::{self, Run, StepError};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, Values as V, optional, required};

const BUDGET: u64 = 1 << 26;

pub fn step_error(what: &str, e: &StepError) -> CliError {
    let message = format!("{what}: {e}");
    if e.at_run_time { CliError::runtime(message) } else { CliError::input(message) }
}

/// A system preset or a `[system]` file beside the experiment, checked against `arch`.
pub fn system(x: &Experiment, name: &str, arch: &strata_arch::Arch) -> CliResult<System> {
    let (text, source) = crate::load::preset_or_file(&x.path(name), "a system", strata_mappings::system::PRESETS)?;
    System::from_toml(&text, arch).map_err(|e| CliError::spec(&format!("{source} on {}", arch.name), &e))
}

/// The machine when an experiment names none: InstInfer's testbed.
const DEFAULT_ARCH: &str = "a6000-csd";

/// Every system file of the sweep against every architecture it runs on (zipped with it or
/// crossed by it; the kind's `default` where the sweep names none), before anything runs.
pub fn check_systems(x: &Experiment, default: Option<&str>) -> CliResult<()> {
    let fallback = toml::Value::String(default.unwrap_or_default().into());
    let pairs = match default {
        Some(_) if x.sweep.values("arch").is_empty() => {
            x.sweep.values("system").into_iter().enumerate().map(|(i, v)| ((0, &fallback), (i, v))).collect()
        }
        _ => x.sweep.pairs("arch", "system"),
    };
    for ((_, a), (i, v)) in pairs {
        let arch = crate::kind::arch(x, a.as_str().unwrap_or_default(), None)?;
        system(x, v.as_str().unwrap_or_default(), &arch).map_err(|e| {
            CliError::input(format!("{}: {}", x.at(&format!("experiment.sweep.system[{i}]")), e.message))
        })?;
    }
    Ok(())
}

/// The `serving` experiment kind.
pub struct Serving;

const AXES: &[Axis] = &[
    required("system", V::Text),
    required("model", V::Model),
    required("batch", V::Positive),
    optional("arch", V::Arch),
    optional("prompt", V::Positive),
    optional("generate", V::Positive),
];

impl Kind for Serving {
    fn name(&self) -> &'static str {
        "serving"
    }
    fn about(&self) -> &'static str {
        "a model served by a system file (placement, assignment, reads, overlap) on an architecture, per batch"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["model", "arch"]
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        [
            "system",
            "model",
            "batch",
            "kv_devices",
            "weights_home",
            "kv_home",
            "kv_read_gb_per_s",
            "prefill_s",
            "step_s",
            "kv_share",
            "transfer_share",
            "step_energy_j",
            "weights_gb",
            "kv_cache_gb",
            "activations_gb",
            "tokens_per_s",
            "design",
        ]
        .map(String::from)
        .to_vec()
    }
    /// Every system file against every architecture before anything runs (spec paths aside:
    /// a point's own architecture is checked again when it runs).
    fn check(&self, x: &Experiment) -> CliResult<()> {
        check_systems(x, Some(DEFAULT_ARCH))?;
        check_references(x, &self.columns(x))
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        point(x, p)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(&x.spec, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
        crate::plots::serving(&x.spec, rows, dir)
    }
}

fn point(x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
    let v = &p.values;
    let text = |k: &str, d: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or(d).to_string();
    let (arch_name, name, model) = (text("arch", DEFAULT_ARCH), text("system", ""), text("model", ""));
    let arch = crate::kind::arch(x, &arch_name, Some(p))?;
    let sys = system(x, &name, &arch)?;
    let m = crate::kind::model(x, &model, Some(p))?;
    let run = Run {
        batch: p.num("batch", 1.0) as u64,
        prompt: p.num("prompt", 1024.0) as u64,
        generate: p.num("generate", 1024.0) as u64,
    };
    let o = step::simulate(&arch, &m, &sys, run, BUDGET)
        .map_err(|e| step_error(&format!("{arch_name}, {model}, {name}, batch {}", run.batch), &e))?;
    let kv_level = arch.level(arch.level_id(&o.kv_level).expect("placed in a level"));
    let d = &o.decode;
    Ok(vec![Row {
        cells: vec![
            ("system".into(), Cell::Text(sys.name.clone())),
            ("model".into(), Cell::Text(model)),
            ("batch".into(), Cell::Int(run.batch)),
            ("kv_devices".into(), Cell::Int(arch.device_count(&kv_level.device))),
            ("weights_home".into(), Cell::Text(o.weights_home.clone())),
            ("kv_home".into(), Cell::Text(o.kv_home.clone())),
            ("kv_read_gb_per_s".into(), Cell::Float(o.kv_read_bandwidth / 1e9)),
            ("prefill_s".into(), Cell::Float(o.prefill.seconds)),
            ("step_s".into(), Cell::Float(d.seconds)),
            ("kv_share".into(), Cell::Float(d.kv_seconds / d.seconds)),
            ("transfer_share".into(), Cell::Float((d.transfer_seconds / d.seconds).min(1.0))),
            ("step_energy_j".into(), Cell::Float(d.energy_j)),
            ("weights_gb".into(), Cell::Float(o.weight_bytes / 1e9)),
            ("kv_cache_gb".into(), Cell::Float(o.kv_cache_bytes / 1e9)),
            ("activations_gb".into(), Cell::Float(o.activation_bytes / 1e9)),
            ("tokens_per_s".into(), Cell::Float(o.tokens_per_s)),
            ("design".into(), Cell::Text(p.design())),
        ],
    }])
}

/// The fastest system per (model, batch, design), when the experiment compares several.
fn fastest(rows: &[Row]) -> String {
    let keys = crate::experiment::distinct_by(rows, |r| (r.s("model"), r.f("batch") as u64, r.s("design")));
    let systems = rows.iter().map(|r| r.s("system")).collect::<std::collections::BTreeSet<_>>();
    if systems.len() < 2 {
        return String::new();
    }
    let mut s = String::from(
        "\n## Fastest system per point\n\n| model | batch | design | fastest | tokens/s | next | tokens/s |\n|---|---:|---|---|---:|---|---:|\n",
    );
    for (model, batch, design) in keys {
        let mut here: Vec<&Row> = rows
            .iter()
            .filter(|r| r.s("model") == model && r.f("batch") as u64 == batch && r.s("design") == design)
            .collect();
        here.sort_by(|a, b| {
            b.f("tokens_per_s").total_cmp(&a.f("tokens_per_s")).then(a.s("system").cmp(&b.s("system")))
        });
        let next = here
            .get(1)
            .map_or(("—".to_string(), String::new()), |r| (r.s("system"), format!("{:.3}", r.f("tokens_per_s"))));
        let _ = writeln!(
            s,
            "| {model} | {batch} | {} | {} | {:.3} | {} | {} |",
            if design.is_empty() { "—" } else { &design },
            here[0].s("system"),
            here[0].f("tokens_per_s"),
            next.0,
            next.1
        );
    }
    s
}

/// The fastest design per (system, model, batch), when the experiment sweeps designs (spec
/// paths, such as a model's memory-block size).
fn best_design(rows: &[Row]) -> String {
    let designs = rows.iter().map(|r| r.s("design")).collect::<std::collections::BTreeSet<_>>();
    if designs.len() < 2 {
        return String::new();
    }
    let mut s = String::from(
        "\n## Fastest design per system\n\n| system | model | batch | fastest design | tokens/s | slowest design | tokens/s |\n|---|---|---:|---|---:|---|---:|\n",
    );
    for (system, model, batch) in
        crate::experiment::distinct_by(rows, |r| (r.s("system"), r.s("model"), r.f("batch") as u64))
    {
        let mut here: Vec<&Row> = rows
            .iter()
            .filter(|r| r.s("system") == system && r.s("model") == model && r.f("batch") as u64 == batch)
            .collect();
        here.sort_by(|a, b| {
            b.f("tokens_per_s").total_cmp(&a.f("tokens_per_s")).then(a.s("design").cmp(&b.s("design")))
        });
        let (best, worst) = (here[0], here[here.len() - 1]);
        let _ = writeln!(
            s,
            "| {system} | {model} | {batch} | {} | {:.3} | {} | {:.3} |",
            best.s("design"),
            best.f("tokens_per_s"),
            worst.s("design"),
            worst.f("tokens_per_s")
        );
    }
    s
}

/// A reference ratio: `of` over `over`, each the largest `ratio` column among the rows that
/// match every key the side gives (one row when the keys pin a point; the best over the rest,
/// e.g. over batches, otherwise). `None` where no row matches.
fn ratio(rows: &[Row], reference: &BTreeMap<String, toml::Value>) -> Option<f64> {
    let column = reference.get("ratio")?.as_str()?;
    let side = |key: &str| {
        let keys = reference.get(key)?.as_table()?;
        rows.iter().filter(|r| keys.iter().all(|(k, v)| matches(r, k, v))).map(|r| r.f(column)).reduce(f64::max)
    };
    Some(side("of")? / side("over")?)
}

/// Whether row `r`'s cell `k` is `v` (a string as written, a number by value).
fn matches(r: &Row, k: &str, v: &toml::Value) -> bool {
    match v {
        toml::Value::String(s) => r.s(k) == *s,
        toml::Value::Integer(i) => r.f(k) == *i as f64,
        toml::Value::Float(f) => r.f(k) == *f,
        _ => false,
    }
}

/// Every reference is a ratio of a column between two row selections that name columns.
pub fn check_references(x: &Experiment, columns: &[String]) -> CliResult<()> {
    for (i, reference) in x.spec.reference.iter().enumerate() {
        let at = |k: &str| x.at(&format!("experiment.reference[{i}]{k}"));
        let bad = |k: &str, why: String| CliError::input(format!("{}: {why}", at(k)));
        for key in reference.keys() {
            if !["quantity", "ratio", "of", "over", "value"].contains(&key.as_str()) {
                return Err(bad(
                    &format!(".{key}"),
                    "is not a key of a reference (quantity, ratio, of, over, value)".into(),
                ));
            }
        }
        let column = reference.get("ratio").and_then(|v| v.as_str()).unwrap_or_default();
        if !columns.iter().any(|c| c == column) {
            return Err(bad(".ratio", format!("must name a column ({})", columns.join(", "))));
        }
        if !reference.get("value").is_some_and(|v| v.is_float() || v.is_integer()) {
            return Err(bad(".value", "must be the paper's number".into()));
        }
        for side in ["of", "over"] {
            let Some(keys) = reference.get(side).and_then(|v| v.as_table()) else {
                return Err(bad(&format!(".{side}"), "must be a table of column = value".into()));
            };
            if let Some(k) = keys.keys().find(|k| !columns.contains(k)) {
                return Err(bad(&format!(".{side}.{k}"), "is not a column".into()));
            }
        }
    }
    Ok(())
}

fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = String::from(
        "| system | model | batch | KV devices | KV cache in | KV read GB/s | prefill s | decode step s | KV share of step | footprint GB (weights / KV / activations) | tokens/s |\n\
         |---|---|---:|---:|---|---:|---:|---:|---:|---|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.3} | {:.1}% | {:.1} / {:.1} / {:.2} | {:.3} |",
            r.s("system"),
            r.s("model"),
            r.s("batch"),
            r.s("kv_devices"),
            r.s("kv_home"),
            r.f("kv_read_gb_per_s"),
            r.f("prefill_s"),
            r.f("step_s"),
            100.0 * r.f("kv_share"),
            r.f("weights_gb"),
            r.f("kv_cache_gb"),
            r.f("activations_gb"),
            r.f("tokens_per_s")
        );
    }
    s += &fastest(rows);
    s += &best_design(rows);
    s += &references(spec, rows);
    s
}

/// The reference ratios against the paper's, as a summary section (empty without references).
pub fn references(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = String::new();
    if !spec.reference.is_empty() {
        s += "\n## Reference points (paper, never used to compute results)\n\n| quantity | Strata | paper | error |\n|---|---:|---:|---:|\n";
        for reference in &spec.reference {
            let q = reference.get("quantity").and_then(|v| v.as_str()).unwrap_or_default();
            let want = reference.get("value").and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));
            let (Some(want), Some(got)) = (want, ratio(rows, reference)) else {
                continue;
            };
            let _ = writeln!(s, "| {q} | {got:.3} | {want} | {:+.1}% |", 100.0 * (got / want - 1.0));
        }
    }
    s
}
