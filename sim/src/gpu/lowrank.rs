//! FlashSVD's low-rank FFN on a GPU, two ways (shared/reference/sparse-lowrank.md §2), both from
//! the rank-space inputs `P = x · A` of the up (and gate) projections:
//! - plain SVD inference: cuBLAS GEMMs rebuild the full-width gate and up activations, PyTorch's
//!   elementwise kernels apply the activation and the product, two more GEMMs take the result
//!   through the down projection's factors; every intermediate goes through device memory;
//! - the fused streaming kernel (`validation/gpu/measure_sparse.py`'s Triton kernel): one CTA per
//!   (token tile, output tile) loops over the FFN's width, rebuilds the gate and up tiles from
//!   the rank-space inputs on chip, applies the activation and the product, and accumulates
//!   `(T · A_down) · B_down`. Nothing wide reaches memory, but the rebuild is repeated once per
//!   output tile: the recompute that makes the fused kernel lose at high rank.

use super::launch::{self, Cta, Ctas, Grid, Overlap, Path, Shape};
use super::{Device, Gemm, Prediction, streaming};

/// A factorised FFN layer: `tokens` rows of `d_model`, `ffn` wide, every projection at `rank`;
/// `gated`: SwiGLU (gate and up), else one up projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowRankFfn {
    pub tokens: u64,
    pub d_model: u64,
    pub ffn: u64,
    pub rank: u64,
    pub gated: bool,
}

/// The fused kernel's tiles: token rows, output columns, FFN columns per step, rank per dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedTiles {
    pub block_m: u64,
    pub block_n: u64,
    pub block_f: u64,
    pub block_r: u64,
}

/// The tiles `measure_sparse.py` runs (an autotuner's menu): narrower output tiles rebuild more.
pub const FUSED_MENU: [FusedTiles; 4] = [
    FusedTiles { block_m: 64, block_n: 64, block_f: 64, block_r: 32 },
    FusedTiles { block_m: 64, block_n: 128, block_f: 64, block_r: 32 },
    FusedTiles { block_m: 64, block_n: 256, block_f: 64, block_r: 32 },
    FusedTiles { block_m: 16, block_n: 1024, block_f: 64, block_r: 32 },
];

impl LowRankFfn {
    fn gates(&self) -> u64 {
        if self.gated { 2 } else { 1 }
    }

    /// The FFN's wide activation through memory: `up` run for the gate and up projections,
    /// then the activation (read and write bf16; an exponential and a reciprocal per element)
    /// and, gated, the product.
    fn wide(&self, dev: &Device, up: Gemm) -> Vec<launch::Launch> {
        let mut launches: Vec<launch::Launch> = Vec::new();
        for _ in 0..self.gates() {
            launches.extend(up.predict(dev).launches);
        }
        let wide = (self.tokens * self.ffn) as f64;
        launches.extend(streaming::elementwise(dev, "activation", wide, 4.0, 2.0).launches);
        if self.gated {
            launches.extend(streaming::elementwise(dev, "mul", wide, 6.0, 0.0).launches);
        }
        launches
    }

    /// The rank-space inputs `x · A` of the gate and up projections (both paths start here).
    pub fn inputs(&self, dev: &Device) -> Prediction {
        let g = Gemm { m: self.tokens, n: self.rank, k: self.d_model };
        let launches: Vec<launch::Launch> = (0..self.gates()).flat_map(|_| g.predict(dev).launches).collect();
        Prediction::of(dev, launches, self.gates() as f64 * g.flops())
    }

    /// Plain SVD inference after the rank-space inputs: rebuild(s), activation, product, the
    /// down projection's two GEMMs.
    pub fn plain(&self, dev: &Device) -> Prediction {
        let (m, f) = (self.tokens, self.ffn);
        let rebuild = Gemm { m, n: f, k: self.rank };
        let mut launches = self.wide(dev, rebuild);
        let down_a = Gemm { m, n: self.rank, k: f };
        let down_b = Gemm { m, n: self.d_model, k: self.rank };
        launches.extend(down_a.predict(dev).launches);
        launches.extend(down_b.predict(dev).launches);
        let flops = self.gates() as f64 * rebuild.flops() + down_a.flops() + down_b.flops();
        Prediction::of(dev, launches, flops)
    }

    /// The fused streaming kernel at one tiling, after the rank-space inputs.
    pub fn fused(&self, dev: &Device, t: FusedTiles) -> Prediction {
        let gates = self.gates() as f64;
        let ctas = self.tokens.div_ceil(t.block_m) * self.d_model.div_ceil(t.block_n);
        let steps = self.ffn.div_ceil(t.block_f) as f64;
        // Padded shapes: every dot runs whole tiles.
        let r = (self.rank.div_ceil(t.block_r) * t.block_r) as f64;
        let (bm, bn, bf) = (t.block_m as f64, t.block_n as f64, t.block_f as f64);
        let (m, d, f, rk) = (self.tokens as f64, self.d_model as f64, self.ffn as f64, self.rank as f64);
        let unique = 2.0 * (gates * m * rk + gates * rk * f + f * rk + rk * d + m * d);
        let g = &dev.gpu;
        let cta = Cta {
            hbm_bytes: unique / ctas as f64,
            // Per FFN step: the rank-space input rows, the B tiles of gate and up, the A_down
            // tile and the B_down tile, all through L2.
            l2_bytes: steps * 2.0 * (gates * bm * r + gates * r * bf + bf * r + r * bn),
            tensor_flops: steps * 2.0 * (gates * bm * bf * r + bm * bf * r + bm * r * bn),
            // Per rebuilt element: SiLU's exponential and reciprocal on the SFU; the product,
            // scaling and conversions on the FP32 lanes.
            alu_cycles: steps * bm * bf * (2.0 / g.sfu_lanes_per_sm as f64 + 6.0 / g.fp32_lanes_per_sm as f64),
            latency: 2.0 * dev.memory_latency,
            fill_bytes: 0.0,
        };
        // Triton's launch: four warps; the fp32 accumulator and two rebuilt tiles in registers,
        // three pipeline stages of the inner loop's tiles in shared memory.
        let shared_bytes = 3 * 2 * (2 * t.block_m * t.block_r + 2 * t.block_r * t.block_f);
        let grid = Grid {
            name: format!("fused low-rank FFN {}x{}", t.block_m, t.block_n),
            shape: Shape { threads: 128, registers: 128, shared_bytes, cluster: 1 },
            // Triton issues warp-group MMAs for 64-row tiles on Hopper, warp MMAs below.
            path: if t.block_m >= 64 { Path::WarpGroup } else { Path::Warp },
            overlap: Overlap::Pipelined,
            ctas: Ctas::Uniform(cta, ctas as usize),
        };
        Prediction::of(dev, vec![launch::run(dev, &grid)], ctas as f64 * cta.tensor_flops)
    }

    /// The fastest tiling of the menu and its prediction (ties: the first).
    pub fn fused_best(&self, dev: &Device) -> (FusedTiles, Prediction) {
        FUSED_MENU
            .iter()
            .map(|&t| (t, self.fused(dev, t)))
            .fold(None, |best: Option<(FusedTiles, Prediction)>, x| match best {
                Some(b) if b.1.seconds <= x.1.seconds => Some(b),
                _ => Some(x),
            })
            .expect("the menu is not empty")
    }

    /// The unfactorised FFN (gate, up, activation, product, down), for reference.
    pub fn dense(&self, dev: &Device) -> Prediction {
        let (m, f, d) = (self.tokens, self.ffn, self.d_model);
        let up = Gemm { m, n: f, k: d };
        let down = Gemm { m, n: d, k: f };
        let mut launches = self.wide(dev, up);
        launches.extend(down.predict(dev).launches);
        Prediction::of(dev, launches, self.gates() as f64 * up.flops() + down.flops())
    }
}

#[cfg(test)]
mod tests {
    use super::super::h100;
    use super::*;

    fn ffn(rank: u64) -> LowRankFfn {
        LowRankFfn { tokens: 8 * 4096, d_model: 768, ffn: 3072, rank, gated: true }
    }

    /// The fused kernel moves only the rank-space inputs, the factors and the output, and its
    /// tensor work grows with the rebuilds: one per output tile.
    #[test]
    fn the_fused_kernel_recomputes_once_per_output_tile() {
        let dev = h100();
        let f = ffn(96);
        let narrow = f.fused(&dev, FUSED_MENU[0]);
        let wide = f.fused(&dev, FUSED_MENU[3]);
        // The gate and up rebuilds alone, once per output tile: 12 tiles of 64 columns.
        let rebuilds = 2.0 * 2.0 * 8.0 * 4096.0 * 3072.0 * 96.0 * 12.0;
        assert!(narrow.flops > rebuilds && wide.flops < narrow.flops, "{} {}", narrow.flops, wide.flops);
        let unique =
            2.0 * (2.0 * 32768.0 * 96.0 + 2.0 * 96.0 * 3072.0 + 3072.0 * 96.0 + 96.0 * 768.0 + 32768.0 * 768.0);
        assert!((narrow.hbm_bytes - unique).abs() < 1e-6 * unique);
        // The plain path writes and reads the wide intermediates: far more bytes.
        assert!(f.plain(&dev).hbm_bytes > 10.0 * unique);
    }

    /// The plain path's time hardly moves with the rank (its wide intermediates' bytes), the
    /// fused kernel's grows with it (its rebuilds): the fused-over-plain ratio rises with rank.
    #[test]
    fn the_fused_over_plain_ratio_rises_with_rank() {
        let dev = h100();
        let ratio = |r: u64| {
            let f = ffn(r);
            f.fused_best(&dev).1.seconds / f.plain(&dev).seconds
        };
        let ratios: Vec<f64> = [32, 96, 256, 768].iter().map(|&r| ratio(r)).collect();
        assert!(ratios.windows(2).all(|w| w[1] > w[0]), "{ratios:?}");
        let plain = |r: u64| ffn(r).plain(&dev).seconds;
        assert!(plain(96) < 1.1 * plain(32));
    }
}
