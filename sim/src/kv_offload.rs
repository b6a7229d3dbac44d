//! Decode with the KV cache off the GPU (InstInfer/InstAttention, HPCA'25, against FlexGen and
//! DeepSpeed): where the cache lives and who runs decode attention decides the time per step.
//!
//! Every system runs the non-attention work of a decode step (QKV, output projection, FFN) on the
//! GPU: the weights are read once per step, the GEMMs run at the tensor rate, whichever binds.
//! Attention differs:
//! - `HostOffload` (DeepSpeed ZeRO-Inference): weights and cache in host DRAM, both cross PCIe
//!   every step; a cache larger than the host spills to the SSD, read with DeepSpeed's async I/O
//!   (1 MiB blocks, queue depth 8);
//! - `FlexGen` as InstInfer runs it: weights on the GPU, the cache offloaded to the SSD and read
//!   through memory-mapped files, i.e. one 128 KiB readahead window at a time (queue depth 1),
//!   overlapped with the GPU's work;
//! - `InstA`: the cache in a computational SSD; the GPU sends q, k, v per layer over peer-to-peer
//!   PCIe, the drive reads every KV page over its own channels (deep queue, whole pages) and its
//!   attention engine computes; the GPU waits (layer i+1 needs layer i's output);
//! - `InstASparF`: the same with SparF: a channel-indexed copy of K is read for the selected
//!   channels (a page holds `channels_per_page` channels and is read if any of them is
//!   selected) and the token-indexed K and V for the selected tokens (page filtering reads
//!   `inflation` × the ideal share), each page a scattered read.
//!
//! Storage reads run on the engine's NAND model (`engine::nand`), so the access pattern (read
//! size, queue depth) sets the bandwidth, not a table. Prefill runs on the GPU; its KV cache is
//! written to wherever the cache lives at that medium's link rate.

use strata_workloads::Model;

use crate::engine::nand::{self, Timing};
use crate::flash_compute::FlashError;

/// Where the KV cache lives and who computes decode attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum System {
    HostOffload,
    FlexGen,
    InstA,
    InstASparF { keep: f64, inflation: f64, channels_per_page: u64 },
}

/// The machine: a GPU, its host, an SSD and `csds` computational drives.
#[derive(Debug, Clone)]
pub struct Machine {
    pub gpu_memory: f64,
    pub gpu_bandwidth: f64,
    /// MACs per second of the GPU's tensor cores (their peak: decode GEMMs are bound by the weights' bandwidth).
    pub gpu_macs_per_s: f64,
    pub host_memory: f64,
    /// GPU ↔ host bytes per second.
    pub pcie: f64,
    pub ssd: Timing,
    /// The computational drive's flash as its own engine reads it (no host link).
    pub csd: Timing,
    /// GPU ↔ CSD peer-to-peer bytes per second, per drive.
    pub p2p: f64,
    pub csd_macs_per_s: f64,
    pub csds: u64,
    /// Fraction of each memory that may hold weights and caches.
    pub usable: f64,
}

/// A serving run: `batch` sequences, `prompt` tokens in, `generate` out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub batch: u64,
    pub prompt: u64,
    pub generate: u64,
}

/// What a run takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub prefill_s: f64,
    /// The decode step at the mean context.
    pub step_s: f64,
    /// Of which attention and KV movement.
    pub step_kv_s: f64,
    pub tokens_per_s: f64,
    /// Bytes per second the cache's storage sustained on the system's read pattern (0: none).
    pub kv_read_bandwidth: f64,
    /// Where the cache went: "gpu", "host", "ssd", "csd".
    pub kv_home: &'static str,
}

fn err(key: &str, reason: impl Into<String>) -> FlashError {
    FlashError { key: key.into(), reason: reason.into(), budget_exceeded: false }
}

/// Requests simulated to measure a read pattern's steady bandwidth.
const SAMPLE: u64 = 4096;
const SPAN: u64 = 64 << 30;

fn bandwidth(t: &Timing, bytes: u64, qd: usize, random: bool, budget: u64) -> Result<f64, FlashError> {
    let reqs = if random { nand::random(bytes, SAMPLE, SPAN, 5) } else { nand::sequential(bytes, SAMPLE) };
    Ok(nand::run(t, &reqs, qd, budget)?.bandwidth())
}

pub fn simulate(mc: &Machine, m: &Model, sys: System, r: Run, budget: u64) -> Result<Outcome, FlashError> {
    if r.batch == 0 || r.prompt == 0 || r.generate == 0 {
        return Err(err("run", "batch, prompt and generated tokens must be positive"));
    }
    if mc.csds == 0 && matches!(sys, System::InstA | System::InstASparF { .. }) {
        return Err(err("csds", "in-storage attention needs at least one computational drive"));
    }
    let e = m.bytes_per_element as f64;
    let b = r.batch as f64;
    let weights = m.weight_bytes() as f64;
    let kv_token = m.kv_bytes_per_token() as f64;
    let mean_ctx = r.prompt as f64 + (r.generate as f64 - 1.0) / 2.0;
    let kv_total = b * (r.prompt + r.generate) as f64 * kv_token;
    if weights > mc.usable * mc.gpu_memory {
        return Err(err("gpu_memory", format!("{:.1} GB of weights do not fit the GPU", weights / 1e9)));
    }
    let kv_step = b * mean_ctx * kv_token;
    let macs = m.params() as f64;
    let gemm = |b: f64| (weights / mc.gpu_bandwidth).max(b * macs / mc.gpu_macs_per_s);
    let attn_macs = 2.0 * b * mean_ctx * (m.layers * m.heads * m.head_dim) as f64;
    // Prefill: the GEMMs and causal attention of `prompt` tokens per sequence on the GPU.
    let s = r.prompt as f64;
    let prefill_compute = (b * s * macs + b * s * s * (m.layers * m.heads * m.head_dim) as f64) / mc.gpu_macs_per_s;
    let prompt_kv = b * s * kv_token;
    let (home, kv_bw, step_kv, gpu_part, overlap, prefill_write) = match sys {
        System::HostOffload => {
            let weights_over_pcie = weights / mc.pcie + b * macs / mc.gpu_macs_per_s;
            if weights + kv_total <= mc.usable * mc.host_memory {
                ("host", mc.pcie, kv_step / mc.pcie, weights_over_pcie, false, prompt_kv / mc.pcie)
            } else {
                let bw = bandwidth(&mc.ssd, 1 << 20, 8, false, budget)?.min(mc.pcie);
                ("ssd", bw, kv_step / bw, weights_over_pcie, false, prompt_kv / bw)
            }
        }
        System::FlexGen => {
            let bw = bandwidth(&mc.ssd, 128 << 10, 1, false, budget)?.min(mc.pcie);
            ("ssd", bw, kv_step / bw, gemm(b), true, prompt_kv / bw)
        }
        System::InstA => {
            let n = mc.csds as f64;
            let page = mc.csd.page_bytes;
            let bw = n * bandwidth(&mc.csd, page, 256, false, budget)?;
            let t = (kv_step / bw).max(attn_macs / (n * mc.csd_macs_per_s));
            let vectors = b * (4 * m.layers * m.d_model) as f64 * e / (n * mc.p2p);
            ("csd", bw, t + vectors, gemm(b), false, prompt_kv / (n * mc.p2p))
        }
        System::InstASparF { keep, inflation, channels_per_page } => {
            let d = m.head_dim;
            if !(keep > 0.0 && keep <= 1.0) || inflation < 1.0 || channels_per_page == 0 || channels_per_page > d {
                return Err(err(
                    "sparf",
                    format!(
                        "keep must be in (0, 1], inflation ≥ 1 and channels per page in 1..={d} (got {keep}, {inflation}, {channels_per_page})"
                    ),
                ));
            }
            let n = mc.csds as f64;
            let page = mc.csd.page_bytes;
            let bw = n * bandwidth(&mc.csd, page, 256, true, budget)?;
            // Channel step: of a head's d channels, r = keep·d are selected; a page of c channels
            // is read unless all c are unselected.
            let r = (keep * d as f64).round() as u64;
            let miss: f64 = (0..channels_per_page).map(|i| (d - r).saturating_sub(i) as f64 / (d - i) as f64).product();
            let channel_share = 1.0 - miss;
            let token_share = (keep * inflation).min(1.0);
            // Channel-indexed K (half the cache), then token-indexed K and V.
            let read = kv_step * (0.5 * channel_share + token_share);
            let t = (read / bw).max(keep * attn_macs / (n * mc.csd_macs_per_s));
            let vectors = b * (4 * m.layers * m.d_model) as f64 * e / (n * mc.p2p);
            // SparF stores K twice.
            ("csd", bw, t + vectors, gemm(b), false, 1.5 * prompt_kv / (n * mc.p2p))
        }
    };
    let step = if overlap { gpu_part.max(step_kv) } else { gpu_part + step_kv };
    let prefill = prefill_compute + prefill_write;
    let decode = step * r.generate as f64;
    Ok(Outcome {
        prefill_s: prefill,
        step_s: step,
        step_kv_s: step_kv,
        tokens_per_s: b * r.generate as f64 / (prefill + decode),
        kv_read_bandwidth: kv_bw,
        kv_home: home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_arch::arch::NandOrg;

    fn machine(csds: u64) -> Machine {
        let t = |n: &str| Timing::of(&NandOrg::preset(n).unwrap().unwrap()).unwrap();
        // InstInfer's drive (arch preset a6000-csd): 8 × 1.4 GB/s channels, 64 dies of 2 planes, tR
        // 50 µs; its engine's reads stay inside it (no host link, no NVMe command per read).
        let internal = NandOrg {
            host_bandwidth: None,
            request_overhead: strata_arch::units::Seconds(0.0),
            chips_per_channel: 4,
            planes_per_die: 2,
            t_read: strata_arch::units::Seconds(50e-6),
            ..NandOrg::preset("tlc-client").unwrap().unwrap()
        };
        Machine {
            gpu_memory: 48e9,
            gpu_bandwidth: 768e9,
            gpu_macs_per_s: 77e12,
            host_memory: 96e9,
            pcie: 32e9,
            ssd: t("tlc-client"),
            csd: Timing::of(&internal).unwrap(),
            p2p: 7e9,
            csd_macs_per_s: 28.8e9,
            csds,
            usable: 0.8,
        }
    }

    fn opt13() -> Model {
        let p = strata_workloads::presets::find("opt-13b").unwrap();
        strata_workloads::ModelSpec::from_toml(p.text).unwrap().build().unwrap()
    }

    const RUN: Run = Run { batch: 64, prompt: 1024, generate: 1024 };

    /// In storage, decode attention is bound by the drive's internal channels (8 × 1.4 GB/s),
    /// not by the 7 GB/s host link that FlexGen's reads cross at queue depth 1.
    #[test]
    fn in_storage_attention_reads_at_the_channel_rate() {
        let (mc, m) = (machine(1), opt13());
        let insta = simulate(&mc, &m, System::InstA, RUN, 1 << 26).unwrap();
        assert!(insta.kv_read_bandwidth > 0.9 * 10.0e9 && insta.kv_read_bandwidth <= 11.2e9, "{insta:?}");
        let flexgen = simulate(&mc, &m, System::FlexGen, RUN, 1 << 26).unwrap();
        assert!(flexgen.kv_read_bandwidth < 7e9 && flexgen.step_kv_s > flexgen.step_s * 0.99, "{flexgen:?}");
        // The step is the KV cache of the mean context over that bandwidth, plus (for InstA) the GPU's part.
        let kv = 64.0 * (1024.0 + 511.5) * m.kv_bytes_per_token() as f64;
        assert!((flexgen.step_s - kv / flexgen.kv_read_bandwidth).abs() < 1e-9 * flexgen.step_s);
        assert!(insta.tokens_per_s > 4.0 * flexgen.tokens_per_s);
    }

    /// More drives split the heads: the attention part shrinks by the drive count; reading less
    /// (SparF) never makes a step slower than reading every page at the same queue.
    #[test]
    fn drives_and_sparsity_shrink_the_attention_part() {
        let m = opt13();
        let one = simulate(&machine(1), &m, System::InstA, RUN, 1 << 26).unwrap();
        let four = simulate(&machine(4), &m, System::InstA, RUN, 1 << 26).unwrap();
        assert!((four.step_kv_s / one.step_kv_s - 0.25).abs() < 0.01, "{one:?} {four:?}");
        let sparf = System::InstASparF { keep: 0.125, inflation: 2.0, channels_per_page: 4 };
        let s = simulate(&machine(1), &m, sparf, RUN, 1 << 26).unwrap();
        assert!(s.step_s < one.step_s);
        let dense = simulate(
            &machine(1),
            &m,
            System::InstASparF { keep: 1.0, inflation: 1.0, channels_per_page: 4 },
            RUN,
            1 << 26,
        )
        .unwrap();
        assert!(dense.step_s > one.step_s, "scattered reads of everything (and K twice) lose to a stream");
    }

    /// Host offload keeps the cache in DRAM while it fits and spills to the SSD beyond.
    #[test]
    fn host_offload_spills_when_the_host_is_full() {
        let (mc, m) = (machine(1), opt13());
        let small = simulate(&mc, &m, System::HostOffload, Run { batch: 16, ..RUN }, 1 << 26).unwrap();
        let big = simulate(&mc, &m, System::HostOffload, Run { batch: 32, ..RUN }, 1 << 26).unwrap();
        assert_eq!((small.kv_home, big.kv_home), ("host", "ssd"));
        assert!(big.tokens_per_s < small.tokens_per_s);
        let e = simulate(&machine(0), &m, System::InstA, RUN, 1 << 26).unwrap_err();
        assert_eq!(e.key, "csds");
        let e = simulate(&mc, &m, System::InstASparF { keep: 0.0, inflation: 2.0, channels_per_page: 4 }, RUN, 1 << 26)
            .unwrap_err();
        assert_eq!(e.key, "sparf");
    }
}
