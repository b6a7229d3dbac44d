//! Double Sparsity's decode attention as the kernels its implementation launches: label scores
//! (each head's `r` label channels of every cached token against the query's, one CTA per
//! head and sequence), a row-wise top-k over those scores (a radix select: one digit pass per
//! byte of the fp16 score, the row read from device memory once and from L2 after), and
//! FlashAttention-2's decode kernel over the `k` selected tokens, whose key and value rows it
//! gathers by index. A gathered row is a head's `D` channels (256 B at D = 128): whole 32-B
//! sectors, so the attention reads the same bytes it would read of `k` contiguous tokens.

use strata_workloads::sparse::DoubleSparsity;

use super::launch::{self, Cta, Ctas, Grid, Overlap, Path, Shape};

use super::{Attention, Device, Prediction};

/// One decode step of Double Sparsity's attention (the cascade's shape: batch, heads, context,
/// label channels, tokens kept, label width).
pub type SparseAttention = DoubleSparsity;

/// Digit passes of the radix select over an fp16 score (8-bit digits).
const SELECT_PASSES: f64 = 2.0;

/// FlashAttention-2's decode over the selected tokens.
fn attention(s: &SparseAttention) -> Attention {
    Attention {
        batch: s.batch,
        heads: s.heads,
        kv_heads: s.kv_heads,
        seq_q: 1,
        seq_kv: s.selected,
        head_dim: s.head_dim,
        causal: false,
    }
}

/// Useful flops: label scores, and the exact attention on the selected tokens.
pub fn flops(s: &SparseAttention) -> f64 {
    let rows = (s.batch * s.heads) as f64;
    2.0 * rows * (s.context * s.label_channels) as f64 + attention(s).flops()
}

/// The launches: label scores, the top-k select, and the gathered attention (with its combine).
pub fn launches(x: &SparseAttention, dev: &Device) -> Vec<launch::Launch> {
    let g = &dev.gpu;
    let rows = (x.batch * x.heads) as usize;
    let (s, r) = (x.context as f64, x.label_channels as f64);
    // Query heads of a kv head share its labels through L2.
    let share = (x.heads / x.kv_heads.max(1)).max(1) as f64;
    // Sub-byte labels are packed: a 4-bit label costs half a byte of traffic.
    let label_bytes = x.label_bits as f64 / 8.0;
    let scores = Cta {
        hbm_bytes: s * r * label_bytes / share + s * 2.0,
        l2_bytes: s * r * label_bytes + s * 2.0,
        tensor_flops: 0.0,
        // One FMA per label element and a conversion, on the FP32 lanes.
        alu_cycles: 2.0 * s * r / g.fp32_lanes_per_sm as f64,
        latency: 2.0 * dev.memory_latency,
        fill_bytes: 0.0,
    };
    let select = Cta {
        hbm_bytes: s * 2.0 + x.selected as f64 * 4.0,
        l2_bytes: SELECT_PASSES * s * 2.0 + x.selected as f64 * 4.0,
        tensor_flops: 0.0,
        // Per pass: extract the digit, count it (shared-memory atomics), scan the counts;
        // a last pass writes the winners.
        alu_cycles: (SELECT_PASSES + 1.0) * 4.0 * s / g.fp32_lanes_per_sm as f64,
        latency: (SELECT_PASSES + 1.0) * (dev.memory_latency + 2.0 * g.block_reduce_cycles / g.clock.0),
        fill_bytes: 0.0,
    };
    let grid = |name: &str, cta: Cta| Grid {
        name: name.into(),
        shape: Shape { threads: 256, registers: 32, shared_bytes: 4096, cluster: 1 },
        path: Path::Warp,
        overlap: Overlap::Serial,
        ctas: Ctas::Uniform(cta, rows),
    };
    let mut launches =
        vec![launch::run(dev, &grid("label scores", scores)), launch::run(dev, &grid("top-k select", select))];
    launches.extend(attention(x).launches(dev).into_iter().map(|mut l| {
        l.name = format!("gathered {}", l.name);
        l
    }));
    launches
}

/// The step's prediction.
pub fn predict(s: &SparseAttention, dev: &Device) -> Prediction {
    Prediction::of(dev, launches(s, dev), flops(s))
}

#[cfg(test)]
mod tests {
    use super::super::h100;
    use super::*;

    fn ds(batch: u64, context: u64, label_bits: u64) -> SparseAttention {
        SparseAttention {
            batch,
            heads: 32,
            kv_heads: 32,
            context,
            head_dim: 128,
            label_channels: 8,
            selected: context / 16,
            elem_bytes: 2,
            label_bits,
            predict_next: false,
        }
    }

    fn dense(batch: u64, context: u64) -> Attention {
        Attention { batch, heads: 32, kv_heads: 32, seq_q: 1, seq_kv: context, head_dim: 128, causal: false }
    }

    /// At 1/16 of the channels and tokens the step reads 1/16 of the cache's rows and labels of
    /// 1/32 of its bytes, so it can be no more than 16 / (0.5 + 1) = 10.7× faster than dense
    /// decode with fp16 labels, 16 / (0.125 + 1) = 14.2× with 4-bit ones; at long contexts and
    /// large batches it comes within 25% of that.
    #[test]
    fn the_speedup_approaches_the_byte_ratio_and_never_passes_it() {
        let dev = h100();
        for (bits, bound) in [(16, 16.0 / 1.5), (4, 16.0 / 1.125)] {
            for (batch, context) in [(1, 4096), (8, 16384), (32, 65536)] {
                let d = dense(batch, context).predict(&dev);
                let s = predict(&ds(batch, context, bits), &dev);
                let speedup = d.seconds / s.seconds;
                let bytes = d.hbm_bytes / s.hbm_bytes;
                assert!(speedup <= bytes * 1.02, "{bits}-bit {batch}×{context}: {speedup} > {bytes}");
                assert!(bytes < bound * 1.02, "{bits}-bit: {bytes}");
                if batch * context >= 1 << 19 {
                    assert!(speedup > 0.75 * bound, "{bits}-bit {batch}×{context}: {speedup}");
                }
            }
        }
        // Smaller labels read fewer bytes.
        assert!(predict(&ds(32, 65536, 8), &dev).seconds < predict(&ds(32, 65536, 16), &dev).seconds);
    }
}
