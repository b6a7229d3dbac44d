//! `strata offload`: FlexGen's offloading policy for a model on a GPU + CPU + disk machine —
//! block size and the placement of weights, KV cache and activations — and its throughput.

use std::fmt::Write as _;

use strata_arch::Arch;
use strata_mappings::offload::{self, Costs, Machine, Overlap, Workload};
use strata_workloads::Model;

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, Values, optional, required};

pub struct Args {
    pub model: String,
    pub costs: String,
    pub prompt: u64,
    pub generate: u64,
    pub overlap: Vec<String>,
    /// Where to write the first rule's policy as a system file.
    pub system_out: Option<std::path::PathBuf>,
    pub arch: String,
}

/// FlexGen's cost model for `arch`: a profile preset or file (`[offload]`: FlexGen's fitted
/// rates; what it leaves out is the architecture's sheet), or `sheet` for the architecture alone.
pub fn costs(arg: &str, arch: &Arch) -> CliResult<Costs> {
    if arg == "sheet" {
        return Costs::from_arch(arch, None).map_err(|e| CliError::spec(&arch.name, &e));
    }
    let (text, source) = crate::load::preset_or_file(arg, "a cost-model profile", offload::PRESETS)?;
    Costs::from_arch(arch, Some(&text)).map_err(|e| CliError::spec(&format!("{source} on {}", arch.name), &e))
}

fn overlap(name: &str) -> CliResult<Overlap> {
    match name {
        "code" => Ok(Overlap::CodeSum),
        "paper" => Ok(Overlap::PaperMax),
        other => Err(CliError::input(format!("overlap: `{other}` is not `code` or `paper`"))),
    }
}

/// The machine when an experiment names none: FlexGen's GCP T4.
const DEFAULT_ARCH: &str = "t4-host-ssd";

/// The `offload` experiment kind: FlexGen's policy search per model, prompt, generated tokens,
/// overlap rule, profile and architecture.
pub struct Offload;

const AXES: &[Axis] = &[
    required("model", Values::Model),
    required("prompt", Values::PositiveInt),
    required("generate", Values::PositiveInt),
    required("overlap", Values::OneOf(&["code", "paper"])),
    required("costs", Values::Text),
    optional("arch", Values::Arch),
];

impl Kind for Offload {
    fn name(&self) -> &'static str {
        "offload"
    }
    fn about(&self) -> &'static str {
        "FlexGen's offloading policy search per model, prompt, generated tokens, overlap rule and cost model"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["model", "arch"]
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        let mut c: Vec<String> =
            ["point", "arch", "model", "prompt", "generate", "overlap", "costs", "gpu_batch", "gpu_batches"]
                .map(String::from)
                .to_vec();
        for what in ["weights", "cache", "activations"] {
            c.extend(["gpu", "cpu", "disk"].map(|tier| format!("{what}_{tier}")));
        }
        c.extend(["prefill_layer_s", "decode_layer_s", "block_s", "tokens_per_s"].map(String::from));
        c
    }
    /// Every profile on every architecture it is priced on.
    fn check(&self, x: &Experiment) -> CliResult<()> {
        for arch in crate::kind::archs(x, DEFAULT_ARCH)? {
            for (i, v) in x.sweep.values("costs").into_iter().enumerate() {
                costs(&x.path(v.as_str().unwrap_or_default()), &arch).map_err(|e| {
                    CliError::input(format!("{}: {}", x.at(&format!("experiment.sweep.costs[{i}]")), e.message))
                })?;
            }
        }
        Ok(())
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        let m = crate::kind::model(x, &p.text("model"), Some(p))?;
        let name = p.values.get("arch").and_then(|v| v.as_str()).unwrap_or(DEFAULT_ARCH).to_string();
        let arch = crate::kind::arch(x, &name, Some(p))?;
        let k = costs(&x.path(&p.text("costs")), &arch)?;
        let mut rows =
            point(&p.key, &m, &p.text("model"), &k, &p.text("overlap"), p.int("prompt", 0), p.int("generate", 0))?;
        for r in &mut rows {
            r.cells.insert(1, ("arch".into(), Cell::Text(name.clone())));
        }
        Ok(rows)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(&x.spec, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
        crate::plots::offload(&x.spec, rows, dir)
    }
}

/// One point of an `offload` experiment.
fn point(key: &str, m: &Model, model: &str, k: &Costs, rule: &str, prompt: u64, generate: u64) -> CliResult<Vec<Row>> {
    let wl = Workload::of(m, prompt, generate);
    let p = offload::search(k, &wl, overlap(rule)?)
        .ok_or_else(|| CliError::input(format!("{model}: no placement fits: {}", offload::diagnose(k, &wl))))?;
    let mut cells = vec![
        ("point".to_string(), Cell::Text(key.to_string())),
        ("model".into(), Cell::Text(model.to_string())),
        ("prompt".into(), Cell::Int(prompt)),
        ("generate".into(), Cell::Int(generate)),
        ("overlap".into(), Cell::Text(rule.to_string())),
        ("costs".into(), Cell::Text(k.name.clone())),
        ("gpu_batch".into(), Cell::Int(p.gpu_batch)),
        ("gpu_batches".into(), Cell::Int(p.gpu_batches)),
    ];
    for (what, f) in
        [("weights", p.placement.weights), ("cache", p.placement.cache), ("activations", p.placement.activations)]
    {
        for (tier, v) in ["gpu", "cpu", "disk"].iter().zip(f) {
            cells.push((format!("{what}_{tier}"), Cell::Float(v)));
        }
    }
    cells.extend([
        ("prefill_layer_s".into(), Cell::Float(p.prefill_layer)),
        ("decode_layer_s".into(), Cell::Float(p.decode_layer)),
        ("block_s".into(), Cell::Float(p.total)),
        ("tokens_per_s".into(), Cell::Float(p.throughput)),
    ]);
    Ok(vec![Row { cells }])
}

/// The summary of an `offload` experiment: every policy, then the reference points with errors.
pub fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let pct = |r: &Row, what: &str| {
        format!(
            "{:.0}/{:.0}/{:.0}",
            100.0 * r.f(&format!("{what}_gpu")),
            100.0 * r.f(&format!("{what}_cpu")),
            100.0 * r.f(&format!("{what}_disk"))
        )
    };
    let mut s = String::from(
        "| model | prompt | generated | costs | overlap | GPU batch × batches | weights GPU/CPU/disk % | KV cache % | activations % | tokens/s |\n|---|---|---|---|---|---|---|---|---|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {}×{} | {} | {} | {} | {:.3} |",
            r.s("model"),
            r.s("prompt"),
            r.s("generate"),
            r.s("costs"),
            r.s("overlap"),
            r.s("gpu_batch"),
            r.s("gpu_batches"),
            pct(r, "weights"),
            pct(r, "cache"),
            pct(r, "activations"),
            r.f("tokens_per_s")
        );
    }
    if !spec.reference.is_empty() {
        s += "\n## Reference points\n\n| model | prompt | costs | overlap | Strata tokens/s | paper | error |\n|---|---|---|---|---:|---:|---:|\n";
        for reference in &spec.reference {
            let get = |k: &str| {
                reference.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default()
            };
            let Some(want) = reference.get("tokens_per_s").and_then(|v| v.as_float()) else { continue };
            for r in rows.iter().filter(|r| r.s("model") == get("model") && r.s("prompt") == get("prompt")) {
                let got = r.f("tokens_per_s");
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {got:.3} | {want} | {:+.1}% |",
                    r.s("model"),
                    r.s("prompt"),
                    r.s("costs"),
                    r.s("overlap"),
                    100.0 * (got / want - 1.0)
                );
            }
        }
    }
    s
}

pub fn run(a: &Args) -> CliResult<String> {
    let arch = crate::eval::arch(&a.arch)?;
    let k = costs(&a.costs, &arch)?;
    let m = crate::run::model(&a.model)?;
    let wl = Workload::of(&m, a.prompt, a.generate);
    let mut s = format!(
        "{} with FlexGen's cost model `{}` on {}, prompt {} tokens, {} generated\n\n\
         | overlap | GPU batch × batches | weights GPU/CPU/disk % | KV cache % | activations % | prefill s/layer | decode s/layer | block s | tokens/s |\n\
         |---|---|---|---|---|---:|---:|---:|---:|\n",
        m.name, k.name, arch.name, a.prompt, a.generate
    );
    let mut written = String::new();
    for name in &a.overlap {
        let overlap = overlap(name).map_err(|e| CliError::input(format!("--{}", e.message)))?;
        let p = offload::search(&k, &wl, overlap)
            .ok_or_else(|| CliError::input(format!("{}: no placement fits: {}", m.name, offload::diagnose(&k, &wl))))?;
        let pct = |f: [f64; 3]| format!("{:.0}/{:.0}/{:.0}", f[0] * 100.0, f[1] * 100.0, f[2] * 100.0);
        if let (Some(path), true) = (&a.system_out, name == &a.overlap[0]) {
            let mc = Machine::of(&arch).map_err(|e| CliError::spec(&arch.name, &e))?;
            let level = |i: usize| arch.level(mc.tiers[i]).name.clone();
            let unit = |u: strata_arch::UnitId| arch.unit(u).name.clone();
            let (t, u, cpu) =
                ([level(0), level(1), level(2)], [unit(mc.units[0]), unit(mc.units[1])], mc.cpu.map(unit));
            let about =
                format!("{} on {}, prompt {}, {} generated, {name} overlap", m.name, arch.name, a.prompt, a.generate);
            let text = p.system_toml(
                &format!("flexgen-lp-{}", m.name),
                &about,
                [&t[0], &t[1], &t[2]],
                [&u[0], &u[1]],
                cpu.as_deref(),
            );
            // What is written must be a valid system on that architecture.
            strata_mappings::system::System::from_toml(&text, &arch)
                .map_err(|e| CliError::runtime(format!("the policy's system file does not check: {e}")))?;
            std::fs::write(path, &text)
                .map_err(|e| CliError::runtime(format!("{}: cannot write: {e}", path.display())))?;
            written = format!("\nPolicy `{name}` written to {} as a system on {}.\n", path.display(), arch.name);
        }
        let _ = writeln!(
            s,
            "| {name} | {}×{} | {} | {} | {} | {:.3} | {:.4} | {:.0} | {:.3} |",
            p.gpu_batch,
            p.gpu_batches,
            pct(p.placement.weights),
            pct(p.placement.cache),
            pct(p.placement.activations),
            p.prefill_layer,
            p.decode_layer,
            p.total,
            p.throughput
        );
    }
    s.push_str("\ncode: the released code's overlap (reads and writes in series, no activations on disk); paper: Eq. 1's max.\n");
    s.push_str(&written);
    Ok(s)
}
