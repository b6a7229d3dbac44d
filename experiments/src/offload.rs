//! `strata offload`: FlexGen's offloading policy for a model on a GPU + CPU + disk machine —
//! block size and the placement of weights, KV cache and activations — and its throughput.

use std::fmt::Write as _;

use strata_mappings::offload::{self, Costs, Overlap, Workload};

use crate::error::{CliError, CliResult};

pub struct Args {
    pub model: String,
    pub costs: String,
    pub prompt: u64,
    pub generate: u64,
    pub overlap: Vec<String>,
}

fn costs(arg: &str) -> CliResult<Costs> {
    if let Some(c) = Costs::preset(arg) {
        return c.map_err(|e| CliError::spec(&format!("preset {arg}"), &e));
    }
    let path = std::path::Path::new(arg);
    if !path.exists() {
        let names: Vec<&str> = offload::PRESETS.iter().map(|p| p.0).collect();
        return Err(CliError::input(format!(
            "`{arg}` is neither a cost-model preset ({}) nor a file",
            names.join(", ")
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?;
    Costs::from_toml(&text).map_err(|e| CliError::spec(&path.display().to_string(), &e))
}

pub fn run(a: &Args) -> CliResult<String> {
    let k = costs(&a.costs)?;
    let m = crate::run::model(&a.model)?;
    if a.prompt == 0 || a.generate == 0 {
        return Err(CliError::input("--prompt and --generate must be positive"));
    }
    let wl = Workload::of(&m, a.prompt, a.generate);
    let mut s = format!(
        "{} with FlexGen's cost model `{}`, prompt {} tokens, {} generated\n\n\
         | overlap | GPU batch × batches | weights GPU/CPU/disk % | KV cache % | activations % | prefill s/layer | decode s/layer | block s | tokens/s |\n\
         |---|---|---|---|---|---:|---:|---:|---:|\n",
        m.name, k.name, a.prompt, a.generate
    );
    for name in &a.overlap {
        let overlap = match name.as_str() {
            "code" => Overlap::CodeSum,
            "paper" => Overlap::PaperMax,
            other => return Err(CliError::input(format!("--overlap: `{other}` is not `code` or `paper`"))),
        };
        let p = offload::search(&k, &wl, overlap)
            .ok_or_else(|| CliError::input(format!("{}: no placement fits: {}", m.name, offload::diagnose(&k, &wl))))?;
        let pct = |f: [f64; 3]| format!("{:.0}/{:.0}/{:.0}", f[0] * 100.0, f[1] * 100.0, f[2] * 100.0);
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
    Ok(s)
}
