//! The `kv-offload` experiment kind (InstInfer): decode throughput per system (FlexGen,
//! DeepSpeed-style host offload, InstA, InstA-SparF), model, batch and number of computational
//! drives, and the paper's ratios between systems.

use std::fmt::Write as _;

use strata_arch::arch::{Arch, NandOrg};
use strata_sim::engine::nand::Timing;
use strata_sim::kv_offload::{self, Machine, Run, System};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, Values as V, optional, required};

pub const SYSTEMS: [&str; 4] = ["flexgen", "deepspeed", "insta", "insta-sparf"];
const BUDGET: u64 = 1 << 26;

fn level<'a>(a: &'a Arch, name: &str) -> CliResult<&'a strata_arch::arch::Level> {
    a.level_id(name)
        .map(|id| a.level(id))
        .ok_or_else(|| CliError::input(format!("{}: arch.levels: needs a level named `{name}`", a.name)))
}

fn link(a: &Arch, name: &str) -> CliResult<f64> {
    a.links
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.bandwidth.0 * l.count as f64)
        .ok_or_else(|| CliError::input(format!("{}: arch.links: needs a link named `{name}`", a.name)))
}

fn macs(a: &Arch, unit: &str) -> CliResult<f64> {
    let u = a
        .unit_id(unit)
        .map(|id| a.unit(id))
        .ok_or_else(|| CliError::input(format!("{}: arch.compute: needs a unit named `{unit}`", a.name)))?;
    u.rate("mac", a.clock).ok_or_else(|| {
        CliError::input(format!("{}: arch.compute.{unit}.ops.mac: the unit must have a `mac` operation", a.name))
    })
}

/// The InstInfer machine from an architecture with levels `HBM`, `HostDRAM`, `CSDFlash` (with a
/// `[nand]`), units `tensor` and `csd-engine`, links `pcie4x16` and `csd-p2p`, plus a host SSD.
pub fn machine(arch: &str, ssd: &str, csds: u64) -> CliResult<Machine> {
    let a = crate::eval::arch(arch)?;
    let hbm = level(&a, "HBM")?;
    let bytes = |l: &strata_arch::arch::Level| {
        l.capacity.map(|c| c.0 as f64).ok_or_else(|| {
            CliError::input(format!("{}: arch.levels.{}.capacity: needed for the placement", a.name, l.name))
        })
    };
    let flash = level(&a, "CSDFlash")?;
    let nand = flash
        .nand
        .as_ref()
        .ok_or_else(|| CliError::input(format!("{}: arch.levels.CSDFlash.nand: the drive's organisation", a.name)))?;
    let timing = |org: &NandOrg, what: &str| Timing::of(org).map_err(|e| CliError::input(format!("{what}: {e}")));
    let (text, source) = crate::load::preset_or_file(ssd, "a NAND", strata_arch::arch::NAND_PRESETS)?;
    let ssd_org = NandOrg::from_toml(&text).map_err(|e| CliError::spec(&source, &e))?;
    Ok(Machine {
        gpu_memory: bytes(hbm)?,
        gpu_bandwidth: hbm.port_bandwidth.map(|b| b * a.clock.0).ok_or_else(|| {
            CliError::input(format!("{}: arch.levels.HBM.read_bandwidth: needed for the GPU's GEMVs", a.name))
        })?,
        gpu_macs_per_s: macs(&a, "tensor")?,
        host_memory: bytes(level(&a, "HostDRAM")?)?,
        pcie: link(&a, "pcie4x16")?,
        ssd: timing(&ssd_org, &source)?,
        // The attention engine reads inside the drive: its host link does not apply.
        csd: timing(&NandOrg { host_bandwidth: None, ..nand.clone() }, &format!("{arch}: arch.levels.CSDFlash.nand"))?,
        p2p: link(&a, "csd-p2p")?,
        csd_macs_per_s: macs(&a, "csd-engine")?,
        csds,
        usable: 0.8,
    })
}

fn system(name: &str, p: &Point) -> CliResult<System> {
    Ok(match name {
        "flexgen" => System::FlexGen,
        "deepspeed" => System::HostOffload,
        "insta" => System::InstA,
        "insta-sparf" => System::InstASparF {
            keep: p.num("keep", 0.125),
            inflation: p.num("inflation", 2.0),
            channels_per_page: p.num("channels_per_page", 4.0) as u64,
        },
        other => {
            return Err(CliError::input(format!(
                "experiment.sweep.system: `{other}` is not one of {}",
                SYSTEMS.join(", ")
            )));
        }
    })
}

/// The `kv-offload` experiment kind.
pub struct KvOffload;

const AXES: &[Axis] = &[
    required("system", V::OneOf(&SYSTEMS)),
    required("model", V::Model),
    required("batch", V::Positive),
    optional("arch", V::Arch),
    optional("ssd", V::Text),
    optional("csds", V::Positive),
    optional("prompt", V::Positive),
    optional("generate", V::Positive),
    optional("keep", V::NonNegative),
    optional("inflation", V::NonNegative),
    optional("channels_per_page", V::NonNegative),
];

impl Kind for KvOffload {
    fn name(&self) -> &'static str {
        "kv-offload"
    }
    fn about(&self) -> &'static str {
        "decode with the KV cache off the GPU (InstInfer) per system, model, batch and drives"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["model"]
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        [
            "system",
            "model",
            "batch",
            "csds",
            "kv_home",
            "kv_read_gb_per_s",
            "prefill_s",
            "step_s",
            "kv_share",
            "tokens_per_s",
        ]
        .map(String::from)
        .to_vec()
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        point(x, p)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(&x.spec, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
        crate::plots::kv_offload(&x.spec, rows, dir)
    }
}

fn point(x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
    let v = &p.values;
    let text = |k: &str, d: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or(d).to_string();
    let (arch, ssd, name, model) =
        (text("arch", "a6000-csd"), text("ssd", "tlc-client"), text("system", ""), text("model", ""));
    let csds = p.num("csds", 1.0) as u64;
    let mc = machine(&x.path(&arch), &x.path(&ssd), csds)?;
    let m = crate::kind::model(x, &model, Some(p))?;
    let run = Run {
        batch: p.num("batch", 1.0) as u64,
        prompt: p.num("prompt", 1024.0) as u64,
        generate: p.num("generate", 1024.0) as u64,
    };
    let o = kv_offload::simulate(&mc, &m, system(&name, p)?, run, BUDGET)
        .map_err(|e| CliError::flash(&format!("{arch}, {model}, {name}, batch {}", run.batch), &e))?;
    Ok(vec![Row {
        cells: vec![
            ("system".into(), Cell::Text(name)),
            ("model".into(), Cell::Text(model)),
            ("batch".into(), Cell::Int(run.batch)),
            ("csds".into(), Cell::Int(csds)),
            ("kv_home".into(), Cell::Text(o.kv_home.to_string())),
            ("kv_read_gb_per_s".into(), Cell::Float(o.kv_read_bandwidth / 1e9)),
            ("prefill_s".into(), Cell::Float(o.prefill_s)),
            ("step_s".into(), Cell::Float(o.step_s)),
            ("kv_share".into(), Cell::Float(o.step_kv_s / o.step_s)),
            ("tokens_per_s".into(), Cell::Float(o.tokens_per_s)),
        ],
    }])
}

/// The ratios InstInfer reports, from the rows (`None` where a row is missing).
fn ratio(rows: &[Row], quantity: &str) -> Option<f64> {
    let tps = |sys: &str, batch: u64, csds: u64| {
        rows.iter()
            .find(|r| r.s("system") == sys && r.f("batch") as u64 == batch && r.f("csds") as u64 == csds)
            .map(|r| r.f("tokens_per_s"))
    };
    let best = |sys: &str| {
        rows.iter()
            .filter(|r| r.s("system") == sys && r.f("csds") as u64 == 1)
            .map(|r| r.f("tokens_per_s"))
            .reduce(f64::max)
    };
    match quantity {
        "insta_over_flexgen_bs64" => Some(tps("insta", 64, 1)? / tps("flexgen", 64, 1)?),
        "sparf_over_flexgen_best" => Some(best("insta-sparf")? / best("flexgen")?),
        "sparf_over_insta_bs256" => Some(tps("insta-sparf", 256, 1)? / tps("insta", 256, 1)?),
        "insta_scaling_1_to_20" => Some(tps("insta", 256, 20)? / tps("insta", 256, 1)?),
        "sparf_scaling_1_to_20" => Some(tps("insta-sparf", 256, 20)? / tps("insta-sparf", 256, 1)?),
        _ => None,
    }
}

fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = String::from(
        "| system | model | batch | CSDs | KV cache in | KV read GB/s | prefill s | decode step s | KV share of step | tokens/s |\n\
         |---|---|---:|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.3} | {:.1}% | {:.3} |",
            r.s("system"),
            r.s("model"),
            r.s("batch"),
            r.s("csds"),
            r.s("kv_home"),
            r.f("kv_read_gb_per_s"),
            r.f("prefill_s"),
            r.f("step_s"),
            100.0 * r.f("kv_share"),
            r.f("tokens_per_s")
        );
    }
    if !spec.reference.is_empty() {
        s += "\n## Reference points (paper, never used to compute results)\n\n| quantity | Strata | paper | error |\n|---|---:|---:|---:|\n";
        for reference in &spec.reference {
            let q = reference.get("quantity").and_then(|v| v.as_str()).unwrap_or_default();
            let (Some(want), Some(got)) = (reference.get("value").and_then(|v| v.as_float()), ratio(rows, q)) else {
                continue;
            };
            let _ = writeln!(s, "| {q} | {got:.2} | {want} | {:+.1}% |", 100.0 * (got / want - 1.0));
        }
    }
    s
}
