//! `strata run`: evaluates an experiment's design points and writes results, summary and plots.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use strata_arch::Arch;
use strata_mappings::mapper::Mapspace;
use strata_sim::{evaluate, quick};
use strata_workloads::attention::AttentionShape;
use strata_workloads::{Cascade, CascadeSpec, Model, Phase, WorkloadSpec};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, ExperimentSpec, Kind, Point, Row, Sink, load, points};
use crate::{plots, systems};

pub struct RunArgs {
    pub experiment: Option<String>,
    pub out: Option<PathBuf>,
    pub jobs: Option<usize>,
}

pub fn run(a: &RunArgs) -> CliResult<String> {
    let (spec, source) = load(a.experiment.as_deref().unwrap_or("default"))?;
    check(&spec, &source)?;
    let out =
        a.out.clone().unwrap_or_else(|| PathBuf::from(spec.output.clone().unwrap_or_else(|| "strata-out".into())));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.jobs.unwrap_or(0))
        .build()
        .map_err(|e| CliError { code: 1, message: format!("thread pool: {e}") })?;
    pool.install(|| execute(&spec, &out))
}

/// Checks names before any work starts, so a typo fails at once with the key that holds it.
pub fn check(spec: &ExperimentSpec, source: &str) -> CliResult<()> {
    for (i, s) in spec.systems.iter().enumerate() {
        if let toml::Value::String(name) = &s.arch
            && strata_arch::presets::text(name).is_none()
            && !Path::new(name).exists()
        {
            return Err(CliError::input(format!(
                "{source}: experiment.systems[{i}].arch: unknown architecture `{name}`"
            )));
        }
        let (arch, origin) = s.arch_spec(source, i)?;
        Arch::from_spec(&arch).map_err(|e| CliError::input(format!("{origin}: {e}")))?;
        s.attention(source, i)?;
    }
    if let Some(models) = spec.sweep.get("model") {
        for (i, m) in models.iter().enumerate() {
            let name = m.as_str().unwrap_or_default();
            model(name)
                .map_err(|e| CliError::input(format!("{source}: experiment.sweep.model[{i}]: {}", e.message)))?;
        }
    }
    for (k, name) in spec.metrics.iter().flatten().enumerate() {
        if !METRICS.contains(&name.as_str()) {
            return Err(CliError::input(format!(
                "{source}: experiment.metrics[{k}]: unknown metric `{name}` (metrics: {})",
                METRICS.join(", ")
            )));
        }
    }
    for (k, name) in spec.plots.iter().flatten().enumerate() {
        if !plots::NAMES.contains(&name.as_str()) {
            return Err(CliError::input(format!(
                "{source}: experiment.plots[{k}]: unknown plot `{name}` (plots: {})",
                plots::NAMES.join(", ")
            )));
        }
    }
    if let Some(b) = &spec.baseline
        && !spec.systems.iter().any(|s| &s.name == b)
    {
        return Err(CliError::input(format!("{source}: experiment.baseline: no system is named `{b}`")));
    }
    let need: &[&str] = match spec.kind {
        Kind::AttentionSystems => &["model", "seq", "batch"],
        Kind::IoCurve => &["seq", "head_dim", "memory_words"],
        Kind::Offload => &["model", "prompt", "generate", "overlap", "costs"],
        Kind::FlashCompute => &["arch", "model", "variant"],
        Kind::FlashOffload => &["system", "model", "config"],
        Kind::KvOffload => &["system", "model", "batch"],
    };
    for axis in need {
        if !spec.sweep.contains_key(*axis) {
            return Err(CliError::input(format!(
                "{source}: experiment.sweep.{axis}: this kind of experiment needs the axis"
            )));
        }
    }
    if spec.kind == Kind::Offload {
        for (i, v) in spec.sweep["overlap"].iter().enumerate() {
            if !matches!(v.as_str(), Some("code" | "paper")) {
                return Err(CliError::input(format!(
                    "{source}: experiment.sweep.overlap[{i}]: {v} is not \"code\" or \"paper\""
                )));
            }
        }
        for (i, v) in spec.sweep["costs"].iter().enumerate() {
            crate::offload::costs(v.as_str().unwrap_or_default())
                .map_err(|e| CliError::input(format!("{source}: experiment.sweep.costs[{i}]: {}", e.message)))?;
        }
    }
    if spec.kind == Kind::FlashOffload {
        crate::flash_offload::check(spec, source)?;
    }
    if spec.kind == Kind::KvOffload {
        crate::kv_offload::check(spec, source)?;
    }
    Ok(())
}

fn execute(spec: &ExperimentSpec, out: &Path) -> CliResult<String> {
    let pts = points(spec);
    let (sink, done) = Sink::open(out)?;
    let bar = ProgressBar::new(pts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} points, {elapsed} elapsed, ETA {eta}")
            .expect("valid template"),
    );
    let cache = LinearCache::default();
    let results: Vec<CliResult<()>> = pts
        .par_iter()
        .map(|p| {
            let r = match done.get(&p.key) {
                Some(rows) => sink.push(p.index, rows.clone(), false),
                None => point(spec, p, &cache).and_then(|rows| sink.push(p.index, rows, true)),
            };
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    // Points that finished stay in the files even when another point failed.
    let rows = sink.finish()?;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    let summary = summary(spec, &rows);
    std::fs::write(out.join("summary.md"), &summary).map_err(|e| CliError::input(format!("{}: {e}", out.display())))?;
    let written = plots::draw(spec, &rows, &out.join("plots"))
        .map_err(|e| CliError { code: 1, message: format!("plots: {e}") })?;
    let mut msg = format!("{} points -> {}\n", pts.len(), out.display());
    let _ = writeln!(msg, "results: {0}/results.csv, {0}/results.jsonl", out.display());
    let _ = writeln!(msg, "summary: {}/summary.md", out.display());
    let _ = writeln!(msg, "plots:   {}", written.join(", "));
    Ok(msg + "\n" + &summary)
}

fn text(p: &Point, axis: &str) -> String {
    p.values.get(axis).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default()
}

fn int(p: &Point, axis: &str) -> CliResult<u64> {
    p.values
        .get(axis)
        .and_then(toml::Value::as_integer)
        .filter(|v| *v > 0)
        .map(|v| v as u64)
        .ok_or_else(|| CliError::input(format!("experiment.sweep.{axis}: values must be positive integers")))
}

/// An optional integer axis: `default` when the sweep does not have it; 0 keeps the preset.
fn opt_int(p: &Point, axis: &str, default: u64) -> CliResult<u64> {
    match p.values.get(axis) {
        None => Ok(default),
        Some(v) => {
            v.as_integer().filter(|v| *v >= 0).map(|v| v as u64).ok_or_else(|| {
                CliError::input(format!("experiment.sweep.{axis}: values must be non-negative integers"))
            })
        }
    }
}

fn point(spec: &ExperimentSpec, p: &Point, cache: &LinearCache) -> CliResult<Vec<Row>> {
    match spec.kind {
        Kind::AttentionSystems => attention_point(spec, p, cache),
        Kind::IoCurve => io_point(p),
        Kind::Offload => crate::offload::point(
            &p.key,
            &text(p, "model"),
            &text(p, "costs"),
            &text(p, "overlap"),
            int(p, "prompt")?,
            int(p, "generate")?,
        ),
        Kind::FlashCompute => crate::flash_compute::point(
            &text(p, "arch"),
            &text(p, "model"),
            &text(p, "variant"),
            opt_int(p, "context", 1024)?,
            opt_int(p, "channels", 0)?,
            opt_int(p, "chips_per_channel", 0)?,
        ),
        Kind::FlashOffload => crate::flash_offload::point(&p.values),
        Kind::KvOffload => crate::kv_offload::point(&p.values),
    }
}

/// A model by preset name or file (Strata TOML or a Hugging Face `config.json`).
pub fn model(name: &str) -> CliResult<Model> {
    let loaded = crate::load::workload(name)?;
    match loaded.spec {
        WorkloadSpec::Model(m) => m.build().map_err(|e| CliError::spec(&loaded.source, &e)),
        _ => Err(CliError::input(format!("{}: is not a model (experiments sweep whole models)", loaded.source))),
    }
}

fn unit_util(ev: &strata_sim::Evaluation, unit: &str) -> f64 {
    ev.utilization.iter().find(|u| u.0 == unit).map_or(0.0, |u| u.1)
}

/// Linear layers mapped once per (architecture, M, K, N).
#[derive(Default)]
struct LinearCache(Mutex<HashMap<LinearKey, LinearCost>>);

/// (architecture, M, K, N).
type LinearKey = (String, u64, u64, u64);
/// (seconds, joules, DRAM bytes, 2D busy seconds).
type LinearCost = (f64, f64, u64, f64);

/// (seconds, joules, DRAM bytes, 2D busy seconds) of an M×K·K×N GEMM mapped by the mapper.
fn linear(
    arch: &Arch,
    m: u64,
    k: u64,
    n: u64,
    cache: &LinearCache,
    settings: &crate::experiment::MapperSpec,
) -> CliResult<LinearCost> {
    let key = (arch.name.clone(), m, k, n);
    if let Some(v) = cache.0.lock().expect("lock").get(&key) {
        return Ok(*v);
    }
    let text = format!(
        "[cascade]\nname = \"linear\"\nranks = {{ m = {m}, n = {n}, k = {k} }}\n[cascade.tensors]\nB = {{ role = \"weight\" }}\n[[cascade.einsums]]\nexpr = \"Z[m,n] = A[k,m] * B[k,n]\"\n"
    );
    let c: Cascade = CascadeSpec::from_toml(&text)
        .and_then(|s| s.build())
        .map_err(|e| CliError::input(format!("linear layer: {e}")))?;
    let unit = arch.unit_id("pe2d").ok_or_else(|| CliError::input(format!("{} has no `pe2d` array", arch.name)))?;
    let space = Mapspace::new(&c, 0, arch, unit, false);
    let cost = |nest: &strata_mappings::EinsumNest| systems::objective(arch, &c, nest, settings);
    let (nest, _) = space
        .search(systems::strategy(settings), &cost)
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

fn attention_point(spec: &ExperimentSpec, p: &Point, cache: &LinearCache) -> CliResult<Vec<Row>> {
    let system_name = text(p, "system");
    let system = spec.systems.iter().find(|s| s.name == system_name).expect("points come from systems");
    let model_name = text(p, "model");
    let m = model(&model_name)?;
    let pe_dim = if p.values.contains_key("pe_dim") { Some(int(p, "pe_dim")?) } else { None };
    let index = spec.systems.iter().position(|s| s.name == system_name).expect("points come from systems");
    let (arch_spec, origin) = system.arch_spec("experiment", index)?;
    let arch = match pe_dim {
        Some(d) => scaled_arch(&arch_spec, &origin, d, m.head_dim, int(p, "seq")?)?,
        None => Arch::from_spec(&arch_spec).map_err(|e| CliError::input(format!("{origin}: {e}")))?,
    };
    let (seq, batch) = (int(p, "seq")?, int(p, "batch")?);
    let block = arch.unit_id("pe2d").map_or(256, |u| arch.unit(u).rows);
    let attention = system.attention("experiment", index)?;
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
        let (s, j, b, busy) = linear(&arch, tokens, k, n, cache, &spec.mapper)?;
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

fn io_point(p: &Point) -> CliResult<Vec<Row>> {
    let (n, d, words) = (int(p, "seq")?, int(p, "head_dim")?, int(p, "memory_words")?);
    let block = 64.min(n);
    let shape = AttentionShape {
        passes: 1,
        phase: Phase::Prefill { seq: n },
        batch: 1,
        heads: 1,
        kv_heads: 1,
        head_dim: d,
        value_dim: d,
        block,
        causal: false,
        elem_bytes: 2,
    };
    let c = shape.cascade_spec("attention", "").build().map_err(|e| CliError::input(format!("attention: {e}")))?;
    let arch = strata_arch::presets::io_machine(words).map_err(|e| CliError::input(format!("io machine: {e}")))?;
    // The mapper's choice: the largest query block (a divisor of N) whose tiles fit.
    let mut found = None;
    for queries in (1..=n.min(words)).rev().filter(|q| n.is_multiple_of(*q)) {
        let m = strata_mappings::CascadeMapping::from_toml(
            &strata_mappings::presets::one_pass_query_block(queries),
            &c,
            &arch,
        )
        .map_err(|e| CliError::input(format!("io mapping: {e}")))?;
        let ev = evaluate(&arch, &c, &m);
        if ev.violations.is_empty() {
            found = Some((queries, ev.offchip_bytes / 2));
            break;
        }
    }
    let (queries, words_moved) = found.ok_or_else(|| {
        CliError::input(format!("flash-io: no 1-pass mapping of N = {n}, d = {d} fits {words} words"))
    })?;
    // FlashAttention Algorithm 1's literal access count (io-bounds.md §1) and the bounds.
    let bc = words.div_ceil(4 * d);
    let tc = n.div_ceil(bc);
    let alg1 = 2 * n * d + tc * (3 * n * d + 4 * n);
    let bound = (n * n * d * d) as f64 / words as f64;
    Ok(vec![Row {
        cells: vec![
            ("point".into(), Cell::Text(p.key.clone())),
            ("seq_len".into(), Cell::Int(n)),
            ("head_dim".into(), Cell::Int(d)),
            ("memory_words".into(), Cell::Int(words)),
            ("queries_on_chip".into(), Cell::Int(queries)),
            ("strata_words".into(), Cell::Int(words_moved)),
            ("flash_alg1_words".into(), Cell::Int(alg1)),
            ("bound_n2d2_over_m".into(), Cell::Float(bound)),
            ("floor_4nd".into(), Cell::Int(4 * n * d)),
            ("ratio_to_bound".into(), Cell::Float(words_moved as f64 / bound)),
        ],
    }])
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

/// The summary a person reads: means against the baseline, headline ratios and reference rows
/// against the published numbers, with errors.
fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = format!("# {}\n\n{}\n\n", spec.name, spec.description);
    match spec.kind {
        Kind::Offload => s += &crate::offload::summary(spec, rows),
        Kind::FlashCompute => s += &crate::flash_compute::summary(spec, rows),
        Kind::FlashOffload => s += &crate::flash_offload::summary(spec, rows),
        Kind::KvOffload => s += &crate::kv_offload::summary(spec, rows),
        Kind::IoCurve => {
            s += "| N | d | on-chip words M | queries on chip | Strata words | Algorithm 1 words | N²d²/M | 4Nd floor | Strata / bound |\n|---|---|---|---|---|---|---|---|---|\n";
            for r in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {:.3e} | {} | {:.2} |",
                    r.s("seq_len"),
                    r.s("head_dim"),
                    r.s("memory_words"),
                    r.s("queries_on_chip"),
                    r.s("strata_words"),
                    r.s("flash_alg1_words"),
                    r.f("bound_n2d2_over_m"),
                    r.s("floor_4nd"),
                    r.f("ratio_to_bound")
                );
            }
            let ratios: Vec<f64> = rows.iter().map(|r| r.f("ratio_to_bound")).filter(|x| x.is_finite()).collect();
            let below = rows.iter().filter(|r| r.f("strata_words") < r.f("floor_4nd")).count();
            let _ = writeln!(
                s,
                "\nStrata's traffic / (N²d²/M): min {:.2}, max {:.2}; points below the 4Nd floor: {below}.",
                ratios.iter().cloned().fold(f64::MAX, f64::min),
                ratios.iter().cloned().fold(f64::MIN, f64::max)
            );
        }
        Kind::AttentionSystems => {
            let key = |r: &Row| (r.s("model"), r.s("seq_len"), r.s("batch"), r.s("scope"), r.s("pe_dim"));
            let by: BTreeMap<(String, PointKey), &Row> = rows.iter().map(|r| ((r.s("system"), key(r)), r)).collect();
            // Per point, system `a` against system `b`: speedup b/a for latency, a/b otherwise.
            let ratio = |a: &str, b: &str, scope: &str, metric: &str| -> Vec<f64> {
                rows.iter()
                    .filter(|r| r.s("system") == a && r.s("scope") == scope)
                    .filter_map(|r| by.get(&(b.to_string(), key(r))).map(|o| (r, o)))
                    .map(
                        |(r, o)| {
                            if metric == "latency_s" { o.f(metric) / r.f(metric) } else { r.f(metric) / o.f(metric) }
                        },
                    )
                    .collect()
            };
            let chosen: Vec<&str> = METRICS
                .iter()
                .copied()
                .filter(|m| spec.metrics.as_ref().is_none_or(|c| c.iter().any(|x| x == m)))
                .collect();
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
                    let _ =
                        writeln!(s, "| {name} | {value:.3} | {target:.3} | {:+.1}% |", 100.0 * (value / target - 1.0));
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
        }
    }
    s
}
