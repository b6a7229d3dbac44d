//! `strata capacity`: what a long context costs one GPU serving a model — KV cache per request,
//! how many requests fit beside the weights, prefill, decode and a context switch — two ways:
//! the peak analysis of Yao Fu's "Challenges in deploying long-context transformers" (FLOPs over
//! peak throughput, bytes over peak bandwidth) and the library-kernel model of `sim::gpu`.
//!
//! With `--gpus N` the model is tensor-parallel (Megatron-style): each GPU holds 1/N of the
//! heads, the FFN's width and the vocabulary, its share of the KV cache (kv heads split, or
//! replicated where there are fewer than N), and every layer adds two ring all-reduces of the
//! activations over the architecture's NVLink (`sim::gpu::collective`).

use std::fmt::Write as _;

use strata_sim::gpu::inference::Runner;
use strata_sim::gpu::{Device, collective};

use crate::error::{CliError, CliResult};

pub struct Args {
    pub model: String,
    pub arch: String,
    pub context: Vec<u64>,
    pub generate: u64,
    pub batch: u64,
    /// GPUs the model is tensor-parallel over.
    pub gpus: u64,
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
    /// Seconds of the decode steps' all-reduces (in both decode columns).
    pub all_reduce: f64,
}

/// One GPU's shard of a model tensor-parallel over `n` GPUs, or why it cannot be split so.
fn shard(m: &strata_workloads::Model, n: u64) -> Result<strata_workloads::Model, String> {
    if !m.heads.is_multiple_of(n) || !m.ffn_dim.is_multiple_of(n) {
        return Err(format!("--gpus {n} must divide the model's {} heads and its FFN width {}", m.heads, m.ffn_dim));
    }
    if !(m.kv_heads.is_multiple_of(n) || n.is_multiple_of(m.kv_heads)) {
        return Err(format!("--gpus {n} and the model's {} kv heads must divide one another", m.kv_heads));
    }
    Ok(strata_workloads::Model {
        heads: m.heads / n,
        // Fewer kv heads than GPUs: each GPU keeps the one its query heads share.
        kv_heads: (m.kv_heads / n).max(1),
        ffn_dim: m.ffn_dim / n,
        vocab: m.vocab.div_ceil(n),
        ..m.clone()
    })
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
    let n = args.gpus;
    let full = m;
    let m = shard(&full, n).map_err(|e| CliError::input(format!("{}: {e}", full.name)))?;
    let nvlink = arch.links.iter().find(|l| matches!(l.kind, strata_arch::spec::LinkKind::Nvlink));
    let (ring_bw, ring_latency) = match (n, nvlink) {
        (1, _) => (f64::INFINITY, 0.0),
        (_, Some(l)) => (l.bandwidth.0 * l.count as f64, l.latency.map_or(0.0, |t| t.0)),
        (_, None) => {
            return Err(CliError::input(format!(
                "{}: arch.links: --gpus {n} needs an NVLink (a link of kind nvlink) for the all-reduces",
                args.arch
            )));
        }
    };
    // Two all-reduces per layer (after attention's output projection and after the FFN), of
    // `rows` rows of the model's width.
    let all_reduces = |rows: u64| {
        let bytes = (rows * m.d_model * m.bytes_per_element) as f64;
        2.0 * m.layers as f64 * collective::ring_all_reduce(bytes, n, ring_bw, ring_latency)
    };
    let weights = m.weight_bytes() as f64;
    let per_token = m.kv_bytes_per_token() as f64;
    if weights > hbm {
        return Err(CliError::input(format!(
            "{}: {:.1} GB of weights{} do not fit the {:.1} GB of {}{}",
            m.name,
            weights / 1e9,
            if n > 1 { " per GPU" } else { "" },
            hbm / 1e9,
            arch.name,
            if n > 1 { "" } else { " (--gpus N shards them)" }
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
        let (prefill_ar, decode_ar) = (all_reduces(args.batch * c), args.generate as f64 * all_reduces(args.batch));
        out.push(Row {
            context: c,
            kv_bytes: kv,
            fits: ((hbm - weights) / kv).floor().max(0.0) as u64,
            prefill_peak: b * (2.0 * m.params() as f64 * s + attention_flops(s)) / peak + prefill_ar,
            prefill_kernels: runner.pass(&dev, &m, args.batch, c, c).total() + prefill_ar,
            decode_peak: (g * weights + cache_reads) / dev.memory_bandwidth + decode_ar,
            decode_kernels: runner.decode(&dev, &m, args.batch, c, args.generate).total() + decode_ar,
            switch: 2.0 * kv * b / (link.bandwidth.0 * link.count as f64),
            all_reduce: decode_ar,
        });
    }
    let mut head = format!(
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
    if n > 1 {
        let _ = writeln!(
            head,
            "tensor-parallel over {n} GPUs: per GPU {} heads, {} kv heads, FFN width {}; weights and KV cache above are one GPU's; \
             ring all-reduces over {:.0} GB/s NVLink, {:.1} µs per decode layer at batch {}",
            m.heads,
            m.kv_heads,
            m.ffn_dim,
            ring_bw / 1e9,
            1e6 * all_reduces(args.batch) / m.layers as f64,
            args.batch
        );
    }
    Ok((head, out))
}

pub fn run(args: &Args) -> CliResult<String> {
    let (mut s, rows) = rows(args)?;
    let _ = writeln!(
        s,
        "\n| context | KV per request (GB) | requests beside the weights | prefill, peak (s) | prefill, kernels (s) | decode {} tokens, peak (s) | decode, kernels (s) | of it all-reduces (s) | context switch (s) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        args.generate
    );
    for r in &rows {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} |",
            r.context,
            r.kv_bytes / 1e9,
            r.fits,
            r.prefill_peak,
            r.prefill_kernels,
            r.decode_peak,
            r.decode_kernels,
            r.all_reduce,
            r.switch
        );
    }
    s.push_str(
        "\npeak: prefill = (2·params·tokens + causal attention 2·layers·heads·head_dim·s(s+1)) / peak tensor rate; \
         decode = (weights + every cache) bytes per step / bandwidth; switch = two caches over the host link.\n\
         kernels: sim::gpu's library-kernel model (cuBLAS GEMMs, FlashAttention-2, elementwise streams), per layer.\n\
         With --gpus N both add two ring all-reduces per layer: 2(N-1)/N of the activations over the NVLink + 2(N-1) hops.\n",
    );
    Ok(s)
}
