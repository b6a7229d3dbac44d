//! `strata eval`: one (architecture, workload, mapping) through the analytical model.

use std::fmt::Write;
use std::path::Path;

use serde_json::json;
use strata_arch::Arch;
use strata_mappings::CascadeMapping;
use strata_sim::{Evaluation, evaluate};
use strata_workloads::{Cascade, WorkloadSpec};

use crate::error::{CliError, CliResult};
use crate::load::{self, Shape};
use crate::table::{Table, binary, si};

/// What the mapping commands (`eval`, `trace`) evaluate: a mapping and the architecture and
/// workload it maps, which default to the ones a mapping preset names.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EvalArgs {
    /// Architecture preset or file (defaults to the one a mapping preset names).
    #[arg(long)]
    pub arch: Option<String>,
    /// Workload preset or file (defaults to the one a mapping preset names).
    #[arg(long)]
    pub workload: Option<String>,
    /// Mapping preset or file.
    #[arg(long)]
    pub mapping: String,
    #[command(flatten)]
    pub shape: Shape,
    /// Report capacity violations as data instead of stopping with exit code 2.
    #[arg(long)]
    pub allow_violations: bool,
}

/// A mapping that does not fit is an error unless `--allow-violations` asks for it as data.
pub fn check_fit(a: &EvalArgs, m: &CascadeMapping, ev: &Evaluation) -> CliResult<()> {
    match ev.violations.first() {
        Some(v) if !a.allow_violations => Err(CliError::input(format!(
            "mapping {}: does not fit: {} needs {} B of {} but one instance holds {} B{} (--allow-violations reports it as data)",
            m.name,
            v.scope,
            v.needed,
            v.level,
            v.capacity,
            match ev.violations.len() {
                1 => String::new(),
                n => format!(", and {} more", n - 1),
            }
        ))),
        _ => Ok(()),
    }
}

/// The TOML text of an architecture preset or file, and where it came from.
pub fn arch_text(arg: &str) -> CliResult<(String, String)> {
    load::preset_or_file(arg, "an architecture", strata_arch::presets::PRESETS)
}

/// Loads an architecture preset or file; errors name it.
pub fn arch(arg: &str) -> CliResult<Arch> {
    let (text, source) = arch_text(arg)?;
    Arch::from_toml(&text).map_err(|e| CliError::input(format!("{source}: {e}")))
}

/// The cascade a workload lowers to for evaluation.
pub fn cascade(arg: &str, a: &EvalArgs) -> CliResult<Cascade> {
    let loaded = load::workload(arg)?;
    let err = |e: strata_workloads::SpecError| CliError::spec(&loaded.source, &e);
    match &loaded.spec {
        WorkloadSpec::Model(m) => {
            let model = m.build().map_err(err)?;
            let (phase, batch, passes) = a.shape.model();
            Ok(model.workload(phase, batch, passes).map_err(err)?.layer)
        }
        WorkloadSpec::Attention(s) => {
            let s = a.shape.attention(s);
            s.shape().and_then(|sh| sh.cascade_spec(&s.name, &s.description).build()).map_err(err)
        }
        WorkloadSpec::Cascade(c) => c.build().map_err(err),
    }
}

/// The architecture, cascade and validated mapping an `eval`-style command names.
pub fn load_all(a: &EvalArgs) -> CliResult<(Arch, Cascade, CascadeMapping)> {
    let preset = strata_mappings::presets::find(&a.mapping);
    let arch_arg = a.arch.as_deref().or(preset.map(|p| p.arch)).ok_or_else(|| {
        CliError::input(format!("--arch is needed: `{}` is not a mapping preset that names one", a.mapping))
    })?;
    let workload_arg = a.workload.as_deref().or(preset.map(|p| p.workload)).ok_or_else(|| {
        CliError::input(format!("--workload is needed: `{}` is not a mapping preset that names one", a.mapping))
    })?;
    let arch = arch(arch_arg)?;
    let c = cascade(workload_arg, a)?;
    let (source, text) = match preset {
        Some(p) => (format!("preset {}", p.name), p.text.to_string()),
        None => {
            let path = Path::new(&a.mapping);
            if !path.exists() {
                let names: Vec<&str> = strata_mappings::presets::PRESETS.iter().map(|p| p.name).collect();
                return Err(CliError::input(format!(
                    "`{}` is neither a mapping preset nor a file (presets: {})",
                    a.mapping,
                    names.join(", ")
                )));
            }
            (path.display().to_string(), std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?)
        }
    };
    let mapping = CascadeMapping::from_toml(&text, &c, &arch).map_err(|e| CliError::spec(&source, &e))?;
    Ok((arch, c, mapping))
}

pub fn run(a: &EvalArgs, json: bool) -> CliResult<String> {
    let (arch, c, mapping) = load_all(a)?;
    let ev = evaluate(&arch, &c, &mapping);
    check_fit(a, &mapping, &ev)?;
    Ok(if json { to_json(&arch, &c, &mapping, &ev) } else { render(&arch, &c, &mapping, &ev) })
}

fn seconds(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.4} s"),
        s if s >= 1e-3 => format!("{:.4} ms", s * 1e3),
        s => format!("{:.4} µs", s * 1e6),
    }
}

pub fn render(arch: &Arch, c: &Cascade, m: &CascadeMapping, ev: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "mapping {} of {} on {}", m.name, c.name(), arch.name);
    let _ = writeln!(out, "latency: {:.6e} cycles = {} at {} MHz", ev.cycles, seconds(ev.seconds), arch.clock.0 / 1e6);
    let _ = writeln!(out, "energy: {:.6e} pJ = {:.6e} J", ev.energy_pj, ev.energy_pj * 1e-12);
    let _ = writeln!(out, "off-chip traffic: {} B ({})", ev.offchip_bytes, binary(ev.offchip_bytes));
    let _ = writeln!(
        out,
        "peak activations off chip: {} B ({})",
        ev.peak_activation_bytes,
        binary(ev.peak_activation_bytes)
    );
    let util: Vec<String> = ev.utilization.iter().map(|(u, x)| format!("{u} {x:.3}")).collect();
    let _ = writeln!(out, "utilisation: {}\n", util.join(", "));

    let mut t = Table::new(&[
        ("einsum", false),
        ("unit", false),
        ("points", true),
        ("steps", true),
        ("compute cyc", true),
        ("slowest memory", false),
        ("cycles", true),
        ("util", true),
        ("energy pJ", true),
    ]);
    for e in &ev.einsums {
        let (lname, lcyc) =
            e.level_cycles.iter().fold(("-", 0.0), |acc, (n, v)| if *v > acc.1 { (n, *v) } else { acc });
        t.row(vec![
            e.name.clone(),
            e.unit.clone(),
            si(e.counts.points),
            si(e.counts.temporal_steps),
            format!("{:.4e}", e.compute_cycles),
            format!("{lname} {lcyc:.4e}"),
            format!("{:.4e}", e.cycles),
            format!("{:.3}", e.utilization),
            format!("{:.4e}", e.energy_pj),
        ]);
    }
    out += "per einsum:\n";
    out += &t.render();

    let mut t = Table::new(&[
        ("level", false),
        ("tensor", false),
        ("fills", true),
        ("reads", true),
        ("updates", true),
        ("bytes read", true),
        ("bytes written", true),
    ]);
    for x in &ev.traffic {
        t.row(vec![
            x.level.clone(),
            x.tensor.clone(),
            x.access.fills.to_string(),
            x.access.reads.to_string(),
            x.access.updates.to_string(),
            x.read_bytes().to_string(),
            x.write_bytes().to_string(),
        ]);
    }
    out += "\naccesses per level and tensor (elements):\n";
    out += &t.render();

    let mut t = Table::new(&[("component", false), ("action", false), ("pJ", true), ("share", true)]);
    for (comp, action, pj) in &ev.energy {
        t.row(vec![comp.clone(), action.clone(), format!("{pj:.4e}"), format!("{:.1}%", 100.0 * pj / ev.energy_pj)]);
    }
    out += "\nenergy by component and action:\n";
    out += &t.render();
    let actions: Vec<String> = ev.compute_actions.iter().map(|(u, o, n)| format!("{u}.{o} {n}")).collect();
    let _ = writeln!(out, "\ncompute actions: {}", actions.join(", "));
    if ev.violations.is_empty() {
        out += "violations: none\n";
    } else {
        out += "violations:\n";
        for v in &ev.violations {
            let _ = writeln!(
                out,
                "  {} needs {} at {} per instance, which holds {}",
                v.scope,
                binary(v.needed),
                v.level,
                binary(v.capacity)
            );
        }
    }
    out
}

pub fn to_json(arch: &Arch, c: &Cascade, m: &CascadeMapping, ev: &Evaluation) -> String {
    let v = json!({
        "mapping": m.name,
        "workload": c.name(),
        "arch": arch.name,
        "cycles": ev.cycles,
        "seconds": ev.seconds,
        "energy_pj": ev.energy_pj,
        "offchip_bytes": ev.offchip_bytes,
        "peak_activation_bytes": ev.peak_activation_bytes,
        "utilization": ev.utilization.iter().map(|(u, x)| json!({"unit": u, "utilization": x})).collect::<Vec<_>>(),
        "einsums": ev.einsums.iter().map(|e| json!({
            "name": e.name,
            "unit": e.unit,
            "points": e.counts.points,
            "temporal_steps": e.counts.temporal_steps,
            "compute_cycles": e.compute_cycles,
            "level_cycles": e.level_cycles.iter().map(|(l, x)| json!({"level": l, "cycles": x})).collect::<Vec<_>>(),
            "cycles": e.cycles,
            "utilization": e.utilization,
            "energy_pj": e.energy_pj,
        })).collect::<Vec<_>>(),
        "traffic": ev.traffic.iter().map(|x| json!({
            "level": x.level, "tensor": x.tensor, "fills": x.access.fills, "reads": x.access.reads,
            "updates": x.access.updates, "read_bytes": x.read_bytes(), "write_bytes": x.write_bytes(),
        })).collect::<Vec<_>>(),
        "energy": ev.energy.iter().map(|(comp, a, pj)| json!({"component": comp, "action": a, "pj": pj})).collect::<Vec<_>>(),
        "compute_actions": ev.compute_actions.iter().map(|(u, o, n)| json!({"unit": u, "op": o, "count": n})).collect::<Vec<_>>(),
        "violations": ev.violations.iter().map(|v| json!({"scope": v.scope, "level": v.level, "needed_bytes": v.needed, "capacity_bytes": v.capacity})).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).expect("json values serialize") + "\n"
}
