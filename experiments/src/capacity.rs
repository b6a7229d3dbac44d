//! `strata capacity`: what a long context costs one GPU serving a model — KV cache per request,
//! how many requests fit beside the weights, prefill, decode and a context switch — two ways:
//! the peak analysis of Yao Fu's "Challenges in deploying long-context transformers" (FLOPs over
//! peak throughput, bytes over peak bandwidth) and the library-kernel model of `sim::gpu`.

use std::fmt::Write as _;

use strata_sim::gpu::Device;
use strata_sim::gpu::inference::Runner;

use crate::error::{CliError, CliResult};

pub struct Args {
    pub model: String,
    pub arch: String,
    pub context: Vec<u64>,
    pub generate: u64,
    pub batch: u64,
}

/// The costs of one context length.
pub struct Row {
    pub context: u64,
    pub kv_bytes: f64,
    pub fits: u64,
    pub prefill_peak: f64,
    pub prefill_kernels: f64,
    pub decode_peak: f64,
    pub decode_kernels: f64,
    pub switch: f64,
}

pub fn rows(args: &Args) -> CliResult<(String, Vec<Row>)> {
    let m = crate::run::model(&args.model)?;
    let arch = crate::eval::arch(&args.arch)?;
    let gpu = arch.gpu.as_ref().ok_or_else(|| {
        CliError::input(format!("{}: arch.gpu: this architecture has no [arch.gpu] section", args.arch))
    })?;
    let hbm = arch.levels[0].capacity.map(|c| c.0 as f64).ok_or_else(|| {
        CliError::input(format!("{}: arch.levels[0].capacity: device memory needs a capacity", args.arch))
    })?;
    let link = arch.links.iter().find(|l| matches!(l.kind, strata_arch::spec::LinkKind::Pcie)).ok_or_else(|| {
        CliError::input(format!("{}: arch.links: no PCIe link to move KV caches to the host over", args.arch))
    })?;
    let dev = Device::new(gpu);
    let weights = m.weight_bytes() as f64;
    let per_token = m.kv_bytes_per_token() as f64;
    if weights > hbm {
        return Err(CliError::input(format!(
            "{}: {:.1} GB of weights do not fit the {:.1} GB of {}",
            m.name,
            weights / 1e9,
            hbm / 1e9,
            arch.name
        )));
    }
    let peak = dev.wgmma;
    let attention_flops = |s: f64| 4.0 * (m.layers * m.heads * m.head_dim) as f64 * s * (s + 1.0) / 2.0;
    let mut out = Vec::new();
    let mut runner = Runner::default();
    let b = args.batch as f64;
    for &c in &args.context {
        let s = c as f64;
        let kv = per_token * s;
        let g = args.generate as f64;
        // Every decode step reads the weights once and each sequence's cache, which grows by one.
        let cache_reads = b * per_token * (g * s + g * (g + 1.0) / 2.0);
        out.push(Row {
            context: c,
            kv_bytes: kv,
            fits: ((hbm - weights) / kv).floor().max(0.0) as u64,
            prefill_peak: b * (2.0 * m.params() as f64 * s + attention_flops(s)) / peak,
            prefill_kernels: runner.pass(&dev, &m, args.batch, c, c).total(),
            decode_peak: (g * weights + cache_reads) / dev.memory_bandwidth,
            decode_kernels: runner.decode(&dev, &m, args.batch, c, args.generate).total(),
            switch: 2.0 * kv * b / (link.bandwidth.0 * link.count as f64),
        });
    }
    let head = format!(
        "{} on {}: weights {:.1} GB, KV cache {} B per token; {:.0} GB device memory, {:.3} TB/s, {:.0} TFLOP/s bf16, host link {} {:.0} GB/s; batch {}\n",
        m.name,
        arch.name,
        weights / 1e9,
        per_token,
        hbm / 1e9,
        dev.memory_bandwidth / 1e12,
        peak / 1e12,
        link.name,
        link.bandwidth.0 * link.count as f64 / 1e9,
        args.batch
    );
    Ok((head, out))
}

pub fn run(args: &Args) -> CliResult<String> {
    let (mut s, rows) = rows(args)?;
    let _ = writeln!(
        s,
        "\n| context | KV per request (GB) | requests beside the weights | prefill, peak (s) | prefill, kernels (s) | decode {} tokens, peak (s) | decode, kernels (s) | context switch (s) |\n|---:|---:|---:|---:|---:|---:|---:|---:|",
        args.generate
    );
    for r in &rows {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.context,
            r.kv_bytes / 1e9,
            r.fits,
            r.prefill_peak,
            r.prefill_kernels,
            r.decode_peak,
            r.decode_kernels,
            r.switch
        );
    }
    s.push_str(
        "\npeak: prefill = (2·params·tokens + causal attention 2·layers·heads·head_dim·s(s+1)) / peak tensor rate; \
         decode = (weights + every cache) bytes per step / bandwidth; switch = two caches over the host link.\n\
         kernels: sim::gpu's library-kernel model (cuBLAS GEMMs, FlashAttention-2, elementwise streams), per layer.\n",
    );
    Ok(s)
}
