//! The `attention-systems` kind: systems × models × sequence lengths, attention and end-to-end
//! layer cost (FuseMax's evaluation), with the `pe_dim` axis that rescales FuseMax's arrays.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use strata_arch::Arch;
use strata_mappings::mapper::Mapspace;
use strata_sim::quick;
use strata_workloads::attention::AttentionShape;
use strata_workloads::{Cascade, CascadeSpec, Phase};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, Values, optional, required};
use crate::systems;

pub struct AttentionSystems;

const AXES: &[Axis] = &[
    required("model", Values::Model),
    required("seq", Values::PositiveInt),
    required("batch", Values::PositiveInt),
    optional("pe_dim", Values::PositiveInt),
];

/// Columns every row has; `pe_dim` follows when the sweep has it.
const COLUMNS: [&str; 14] = [
    "point",
    "system",
    "arch",
    "model",
    "seq_len",
    "batch",
    "scope",
    "latency_s",
    "energy_j",
    "dram_bytes",
    "util_2d",
    "util_1d",
    "mapping",
    "area_mm2",
];

impl Kind for AttentionSystems {
    fn name(&self) -> &'static str {
        "attention-systems"
    }
    fn about(&self) -> &'static str {
        "systems × models × sequence lengths: attention and end-to-end layer cost"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn uses_systems(&self) -> bool {
        true
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["arch", "model", "mapping", "system"]
    }
    fn columns(&self, x: &Experiment) -> Vec<String> {
        let pe = x.spec.sweep.contains_key("pe_dim").then_some("pe_dim");
        COLUMNS.iter().copied().chain(pe).map(str::to_string).collect()
    }
    fn check(&self, x: &Experiment) -> CliResult<()> {
        if x.spec.systems.is_empty() {
            return Err(CliError::input(format!(
                "{}: this kind of experiment needs systems",
                x.at("experiment.systems")
            )));
        }
        for (i, s) in x.spec.systems.iter().enumerate() {
            let (table, origin) = s.arch_table(x, i)?;
            crate::kind::arch_from(x, table, &origin, None)?;
            s.attention(x, i)?;
        }
        // Counts grow with N and the batch: if the largest point's layer fits 64-bit counts,
        // every point's does.
        let most = |axis: &str| x.sweep.values(axis).iter().filter_map(|v| v.as_integer()).max().unwrap_or(1) as u64;
        for (i, v) in x.sweep.values("model").into_iter().enumerate() {
            let m = crate::kind::model(x, v.as_str().unwrap_or_default(), None)?;
            m.workload(Phase::Prefill { seq: most("seq") }, most("batch"), 1).map_err(|e| {
                CliError::input(format!(
                    "{}: at seq {} and batch {}: {e}",
                    x.at(&format!("experiment.sweep.model[{i}]")),
                    most("seq"),
                    most("batch")
                ))
            })?;
        }
        for (k, name) in x.spec.metrics.iter().flatten().enumerate() {
            if !METRICS.contains(&name.as_str()) {
                return Err(CliError::input(format!(
                    "{}: unknown metric `{name}` (metrics: {})",
                    x.at(&format!("experiment.metrics[{k}]")),
                    METRICS.join(", ")
                )));
            }
        }
        Ok(())
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        attention_point(x, p)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(&x.spec, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &Path) -> Result<Vec<String>, String> {
        crate::plots::attention_systems(&x.spec, rows, dir)
    }
}

fn unit_util(ev: &strata_sim::Evaluation, unit: &str) -> f64 {
    ev.utilization.iter().find(|u| u.0 == unit).map_or(0.0, |u| u.1)
}

/// Linear layers mapped once per (architecture content, M, K, N): two architectures that
/// share a name but not their numbers never share an entry.
#[derive(Default)]
pub struct LinearCache(Mutex<HashMap<LinearKey, LinearCost>>);

/// (hash of the architecture's resolved spec, M, K, N, bytes per element).
type LinearKey = (String, u64, u64, u64, u64);
/// (seconds, joules, DRAM bytes, 2D busy seconds).
type LinearCost = (f64, f64, u64, f64);

/// (seconds, joules, DRAM bytes, 2D busy seconds) of an M×K·K×N GEMM of `bytes`-byte elements
/// (the model's), mapped by the mapper.
fn linear(
    arch: &Arch,
    m: u64,
    k: u64,
    n: u64,
    bytes: u64,
    cache: &LinearCache,
    settings: &crate::experiment::MapperSpec,
) -> CliResult<LinearCost> {
    let key = (crate::store::content_hash(&format!("{arch:?}")), m, k, n, bytes);
    if let Some(v) = cache.0.lock().expect("lock").get(&key) {
        return Ok(*v);
    }
    let text = format!(
        "[cascade]\nname = \"linear\"\nelem_bytes = {bytes}\nranks = {{ m = {m}, n = {n}, k = {k} }}\n[cascade.tensors]\nB = {{ role = \"weight\" }}\n[[cascade.einsums]]\nexpr = \"Z[m,n] = A[k,m] * B[k,n]\"\n"
    );
    let c: Cascade = CascadeSpec::from_toml(&text)
        .and_then(|s| s.build())
        .map_err(|e| CliError::input(format!("linear layer: {e}")))?;
    let unit = arch.unit_id("pe2d").ok_or_else(|| CliError::input(format!("{} has no `pe2d` array", arch.name)))?;
    let space = Mapspace::new(&c, 0, arch, unit, false);
    let (nest, _) = systems::search(&space, arch, &c, settings, &format!("a {m}×{k}×{n} GEMM"))?
        .ok_or_else(|| CliError::input(format!("no mapping of a {m}×{k}×{n} GEMM fits {}", arch.name)))?;
    let q = quick(arch, &c, &nest);
    let counts = strata_sim::count(&c, &nest);
    let busy = counts.temporal_steps as f64 / arch.clock.0;
    let v = (q.cycles / arch.clock.0, q.energy_pj * 1e-12, q.offchip_bytes, busy);
    cache.0.lock().expect("lock").insert(key, v);
    Ok(v)
}

/// FuseMax's array scaled to `pe_dim` × `pe_dim` (and a `pe_dim`-wide 1D array), with the
/// global buffer sized as the artifact sizes it for the pipelined binding at `keys` keys
/// (fusemax.md §11): PE_dim · P1 · E · 8 · 2 bytes, P1 = max(1, min_tiles / (keys / PE_dim)),
/// min_tiles = 2 · max(1, PE_dim / E).
fn scaled_arch(
    spec: &strata_arch::spec::ArchSpec,
    source: &str,
    pe_dim: u64,
    head_dim: u64,
    keys: u64,
) -> CliResult<Arch> {
    let mut spec = spec.clone();
    let a = &mut spec;
    // A scaled machine is another machine: its name keys caches and labels results.
    a.name = format!("{}-pe{pe_dim}", a.name);
    let d = pe_dim as i64;
    let min_tiles = 2 * (pe_dim / head_dim).max(1);
    let p1 = (min_tiles / (keys / pe_dim).max(1)).max(1);
    let buffer = pe_dim * p1 * head_dim * 8 * 2;
    for u in &mut a.compute {
        let level = a.levels.iter_mut().find(|l| l.name == u.level);
        match u.name.as_str() {
            "pe2d" => {
                (u.rows, u.cols, u.pipeline_latency) = (d, d, d);
                if let Some(l) = level {
                    l.mesh = [d, d];
                }
            }
            "pe1d" => {
                u.cols = d;
                if let Some(l) = level {
                    l.mesh = [d, 1];
                }
            }
            _ => {}
        }
    }
    if let Some(gb) = a.levels.iter_mut().find(|l| l.name == "GlobalBuffer") {
        gb.capacity = Some(format!("{buffer} B"));
    }
    Arch::from_spec(a).map_err(|e| CliError::input(format!("{source} scaled to {pe_dim}×{pe_dim}: {e}")))
}

fn attention_point(x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
    let spec = &x.spec;
    let system_name = p.text("system");
    let (index, _) = x.system(&system_name).expect("points come from systems");
    let system = &x.system_at(index, p)?;
    let model_name = p.text("model");
    let m = crate::kind::model(x, &model_name, Some(p))?;
    let pe_dim = p.values.contains_key("pe_dim").then(|| p.int("pe_dim", 0));
    let (table, origin) = system.arch_table(x, index)?;
    let arch_spec = crate::kind::arch_spec(x, table, &origin, Some(p))?;
    let arch = match pe_dim {
        Some(d) => scaled_arch(&arch_spec, &origin, d, m.head_dim, p.int("seq", 0))?,
        None => Arch::from_spec(&arch_spec).map_err(|e| CliError::input(format!("{origin}: {e}")))?,
    };
    let (seq, batch) = (p.int("seq", 0), p.int("batch", 0));
    let block = arch.unit_id("pe2d").map_or(256, |u| arch.unit(u).rows);
    let attention = crate::kind::attention_for(x, system, index, p)?;
    let shape = AttentionShape {
        passes: attention.passes(),
        phase: Phase::Prefill { seq },
        batch,
        heads: m.heads,
        kv_heads: m.kv_heads,
        head_dim: m.head_dim,
        value_dim: m.head_dim,
        block,
        causal: false,
        elem_bytes: m.bytes_per_element,
    };
    let c = shape.cascade_spec("attention", "").build().map_err(|e| CliError::input(format!("attention: {e}")))?;
    let mapped = systems::map_attention(&attention, &c, &arch, &spec.mapper)?;
    let ev = &mapped.eval;
    let att_s = ev.seconds;
    let (u2, u1) = (unit_util(ev, "pe2d"), unit_util(ev, "pe1d"));
    // Linear layers of the layer: Q, K, V, output projection, FFN up and down, as (B·P)×in×out GEMMs.
    let tokens = batch * seq;
    let hd = m.heads * m.head_dim;
    let kv = m.kv_heads * m.head_dim;
    let mut shapes = vec![(m.d_model, hd), (m.d_model, kv), (m.d_model, kv), (hd, m.d_model)];
    let ffn_in = if m.gated_ffn { 2 } else { 1 };
    shapes.extend(std::iter::repeat_n((m.d_model, m.ffn_dim), ffn_in));
    shapes.push((m.ffn_dim, m.d_model));
    let (mut lin_s, mut lin_j, mut lin_b, mut lin_busy) = (0.0, 0.0, 0u64, 0.0);
    for (k, n) in shapes {
        let (s, j, b, busy) = linear(&arch, tokens, k, n, m.bytes_per_element, &x.linear, &spec.mapper)?;
        lin_s += s;
        lin_j += j;
        lin_b += b;
        lin_busy += busy;
    }
    let row = |scope: &str, latency: f64, energy: f64, dram: u64, util_2d: f64, util_1d: f64| Row {
        cells: vec![
            ("point".into(), Cell::Text(p.key.clone())),
            ("system".into(), Cell::Text(system.name.clone())),
            ("arch".into(), Cell::Text(arch.name.clone())),
            ("model".into(), Cell::Text(model_name.clone())),
            ("seq_len".into(), Cell::Int(seq)),
            ("batch".into(), Cell::Int(batch)),
            ("scope".into(), Cell::Text(scope.into())),
            ("latency_s".into(), Cell::Float(latency)),
            ("energy_j".into(), Cell::Float(energy)),
            ("dram_bytes".into(), Cell::Int(dram)),
            ("util_2d".into(), Cell::Float(util_2d)),
            ("util_1d".into(), Cell::Float(util_1d)),
            ("mapping".into(), Cell::Text(mapped.choice.clone())),
            ("area_mm2".into(), Cell::Float(arch.area_um2().unwrap_or(0.0) / 1e6)),
        ]
        .into_iter()
        .chain(pe_dim.map(|d| ("pe_dim".to_string(), Cell::Int(d))))
        .collect(),
    };
    let e2e_s = att_s + lin_s;
    Ok(vec![
        row("attention", att_s, ev.energy_pj * 1e-12, ev.offchip_bytes, u2, u1),
        row(
            "end_to_end",
            e2e_s,
            ev.energy_pj * 1e-12 + lin_j,
            ev.offchip_bytes + lin_b,
            (u2 * att_s + lin_busy) / e2e_s,
            u1 * att_s / e2e_s,
        ),
    ])
}

/// Metrics an attention-systems summary can report, in the order it reports them.
pub const METRICS: [&str; 6] = ["latency_s", "energy_j", "dram_bytes", "util_2d", "util_1d", "area_mm2"];

/// (model, N, batch, scope, PE_dim or empty): what rows of different systems are compared on.
type PointKey = (String, String, String, String, String);

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// The summary's column heading for `metric` against `base`.
fn metric_heading(metric: &str, base: &str) -> String {
    match metric {
        "latency_s" => format!("speedup over {base}"),
        "energy_j" => format!("energy / {base}"),
        "dram_bytes" => format!("DRAM bytes / {base}"),
        "util_2d" => "2D utilisation".into(),
        "util_1d" => "1D utilisation".into(),
        _ => "area (mm²)".into(),
    }
}

/// What a design point costs besides time: its area where the architecture models area, else
/// its energy. (column, label with unit)
pub fn cost_of(rows: &[Row]) -> (&'static str, &'static str) {
    if rows.iter().any(|r| r.f("area_mm2") > 0.0) { ("area_mm2", "area (mm²)") } else { ("energy_j", "energy (J)") }
}

/// The attention rows on the Pareto front of latency and [`cost_of`], fastest first.
pub fn pareto_front(rows: &[Row]) -> Vec<&Row> {
    let (cost, _) = cost_of(rows);
    let mut att: Vec<&Row> = rows.iter().filter(|r| r.s("scope") == "attention").collect();
    att.sort_by(|a, b| a.f("latency_s").total_cmp(&b.f("latency_s")).then(a.f(cost).total_cmp(&b.f(cost))));
    let mut front: Vec<&Row> = Vec::new();
    for r in att {
        if front.last().is_none_or(|l| r.f(cost) < l.f(cost)) {
            front.push(r);
        }
    }
    front
}

/// A sweep over spec paths: the design points on the (latency, energy) Pareto front with the
/// values of the swept paths, and the fastest point per system.
fn design_space(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let paths: Vec<&String> = spec.sweep.keys().filter(|k| k.contains('.')).collect();
    let value = |r: &Row, path: &str| {
        r.s("point").split(';').find_map(|kv| kv.strip_prefix(&format!("{path}="))).unwrap_or_default().to_string()
    };
    let att = rows.iter().filter(|r| r.s("scope") == "attention").count();
    let front = pareto_front(rows);
    let (_, cost) = cost_of(rows);
    let mut s = format!(
        "## Design space\n\n{att} design points over {}. {} are on the Pareto front of attention latency and {cost}:\n\n",
        paths.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
        front.len()
    );
    s += &format!(
        "| system | model | N | {} | attention latency (s) | energy (J) | area (mm²) | DRAM bytes | 2D util |\n|---|---|---|{}---|---|---|---|---|\n",
        paths.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(paths.len())
    );
    for r in &front {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.4e} | {:.4e} | {:.1} | {} | {:.3} |",
            r.s("system"),
            r.s("model"),
            r.s("seq_len"),
            paths.iter().map(|p| value(r, p)).collect::<Vec<_>>().join(" | "),
            r.f("latency_s"),
            r.f("energy_j"),
            r.f("area_mm2"),
            r.s("dram_bytes"),
            r.f("util_2d")
        );
    }
    s
}

/// The summary a person reads: means against the baseline, headline ratios and reference rows
/// against the published numbers, with errors.
fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    // Points that differ only in spec paths share (system, model, N): compare them as a design
    // space instead of system against system.
    if spec.sweep.keys().any(|k| k.contains('.')) {
        return design_space(spec, rows);
    }
    let mut s = String::new();
    let key = |r: &Row| (r.s("model"), r.s("seq_len"), r.s("batch"), r.s("scope"), r.opt("pe_dim"));
    let by: BTreeMap<(String, PointKey), &Row> = rows.iter().map(|r| ((r.s("system"), key(r)), r)).collect();
    // Per point, system `a` against system `b`: speedup b/a for latency, a/b otherwise.
    let ratio = |a: &str, b: &str, scope: &str, metric: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.s("system") == a && r.s("scope") == scope)
            .filter_map(|r| by.get(&(b.to_string(), key(r))).map(|o| (r, o)))
            .map(|(r, o)| if metric == "latency_s" { o.f(metric) / r.f(metric) } else { r.f(metric) / o.f(metric) })
            .collect()
    };
    let chosen: Vec<&str> =
        METRICS.iter().copied().filter(|m| spec.metrics.as_ref().is_none_or(|c| c.iter().any(|x| x == m))).collect();
    for scope in ["attention", "end_to_end"] {
        if let Some(base) = &spec.baseline {
            // Latency as speedup, energy and traffic normalised to the baseline; utilisation
            // and area as they are (a ratio of utilisations reads badly).
            let _ = write!(s, "## {scope}: mean over points, relative to {base}\n\n| system |");
            for m in &chosen {
                let _ = write!(s, " {} |", metric_heading(m, base));
            }
            let _ = writeln!(s, "\n|---|{}", "---|".repeat(chosen.len()));
            for sys in &spec.systems {
                let _ = write!(s, "| {} |", sys.name);
                for &m in &chosen {
                    let _ = match m {
                        "latency_s" => write!(s, " {:.2}× |", mean(&ratio(&sys.name, base, scope, m))),
                        "energy_j" | "dram_bytes" => {
                            write!(s, " {:.3} |", mean(&ratio(&sys.name, base, scope, m)))
                        }
                        _ => {
                            let v: Vec<f64> = rows
                                .iter()
                                .filter(|r| r.s("system") == sys.name && r.s("scope") == scope)
                                .map(|r| r.f(m))
                                .collect();
                            // Architectures without area figures record 0 mm².
                            match mean(&v) {
                                a if m == "area_mm2" && a == 0.0 => write!(s, " — |"),
                                a => write!(s, " {a:.3} |"),
                            }
                        }
                    };
                }
                s += "\n";
            }
            s += "\n";
        }
    }
    // Headline ratios against their targets.
    if !spec.targets.is_empty() {
        s += "## Headline ratios against the paper\n\n| metric | Strata | paper | error |\n|---|---|---|---|\n";
        for (name, target) in &spec.targets {
            // Names: <scope>_<speedup|energy>_<system>_over_<system>.
            let (scope, rest) = match name.strip_prefix("end_to_end_") {
                Some(rest) => ("end_to_end", rest),
                None => name.split_once('_').unwrap_or((name.as_str(), "")),
            };
            let (metric, systems) = rest.split_once('_').unwrap_or(("", ""));
            let (a, b) = systems.split_once("_over_").unwrap_or(("", ""));
            let value = match metric {
                "speedup" => mean(&ratio(a, b, scope, "latency_s")),
                "energy" => mean(&ratio(a, b, scope, "energy_j")),
                _ => f64::NAN,
            };
            let _ = writeln!(s, "| {name} | {value:.3} | {target:.3} | {:+.1}% |", 100.0 * (value / target - 1.0));
        }
        s += "\n";
    }
    if !spec.reference.is_empty() {
        s += "## Reference points\n\n| system | model | N | scope | metric | Strata | paper | error |\n|---|---|---|---|---|---|---|---|\n";
        for r in &spec.reference {
            let get = |k: &str| {
                r.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default()
            };
            let k = (get("system"), (get("model"), get("seq_len"), get("batch"), get("scope"), get("pe_dim")));
            let Some(row) = by.get(&k) else { continue };
            for &metric in &chosen {
                if let Some(v) = r.get(metric).and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64))) {
                    let got = row.f(metric);
                    let err = if metric.starts_with("util") {
                        format!("{:+.3}", got - v)
                    } else {
                        format!("{:+.1}%", 100.0 * (got / v - 1.0))
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {metric} | {got:.4e} | {v:.4e} | {err} |",
                        k.0, k.1.0, k.1.1, k.1.3
                    );
                }
            }
        }
    }
    s
}
