//! cuBLAS's GEMM on Hopper as a mapping: output tiles of `a × b` (output features × tokens) over
//! persistent CTAs, one per SM (the TMA pipeline fills shared memory), optionally split over K
//! with a second kernel that reduces the fp32 partial sums, optionally launched in clusters whose
//! CTAs share operand loads by multicast. cuBLAS picks its kernel by heuristics; the model takes
//! the fastest of the same menu, which is what those heuristics aim at.

use super::launch::{self, Cta, Ctas, Grid, Overlap, Path, Shape};
use super::{Device, Prediction};

/// `y[m,n] = x[m,k] · w[n,k]ᵀ` in bf16 with fp32 accumulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub m: u64,
    pub n: u64,
    pub k: u64,
}

/// One point of the kernel menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Output features per tile.
    pub a: u64,
    /// Tokens per tile (the tensor cores compute all of them, padded or not).
    pub b: u64,
    pub split_k: u64,
    pub cluster: u32,
}

/// Tile edges of cuBLAS's sm90 kernels seen in the measured runs (`nvjet_sm90_tst_AxB_…`,
/// validation/gpu/h100 and h200): multiples of 8 between the powers of two, so that a layer's
/// width divides into whole waves.
const FEATURE_TILES: [u64; 9] = [64, 96, 112, 128, 168, 192, 256, 320, 448];
const TOKEN_TILES: [u64; 7] = [8, 16, 32, 64, 128, 192, 256];
/// The largest accumulator tile (output elements) of the kernels seen: 320×128 and 192×192 hold
/// their fp32 accumulators in two consumer warp groups' registers.
const MAX_TILE: u64 = 320 * 128;
const SPLITS: [u64; 3] = [1, 2, 4];
const CLUSTERS: [u32; 3] = [1, 2, 4];
/// K step of one pipeline stage.
const K_STEP: u64 = 64;
/// nvjet's launch shape (Nsight Compute: 384 threads, 168 registers, the shared memory filled
/// with pipeline stages), so one CTA per SM.
const SHAPE: Shape = Shape { threads: 384, registers: 168, shared_bytes: 200 * 1024, cluster: 1 };

impl Gemm {
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }

    /// Every tiling of the menu.
    pub fn tilings(&self) -> impl Iterator<Item = Tiling> + '_ {
        FEATURE_TILES.into_iter().flat_map(move |a| {
            TOKEN_TILES.into_iter().filter(move |&b| b <= a && a * b <= MAX_TILE).flat_map(move |b| {
                SPLITS
                    .into_iter()
                    .flat_map(move |split_k| CLUSTERS.into_iter().map(move |cluster| Tiling { a, b, split_k, cluster }))
            })
        })
    }

    /// The launches of one tiling.
    pub fn launches(&self, dev: &Device, t: Tiling) -> Vec<launch::Launch> {
        let (m, n, k) = (self.m as f64, self.n as f64, self.k as f64);
        let tiles = self.n.div_ceil(t.a) * self.m.div_ceil(t.b) * t.split_k;
        let k_tile = (self.k.div_ceil(t.split_k).div_ceil(K_STEP) * K_STEP) as f64;
        let partials = if t.split_k > 1 { 4.0 * m * n * t.split_k as f64 } else { 0.0 };
        // Operands are read once from device memory (L2 keeps the panels that neighbouring tiles
        // share); the output, or the fp32 partials of a split, are written once.
        let unique = 2.0 * (m * k + n * k) + if t.split_k > 1 { partials } else { 2.0 * m * n };
        let cta = Cta {
            hbm_bytes: unique / tiles as f64,
            l2_bytes: (t.a + t.b) as f64 * k_tile * 2.0 / t.cluster as f64,
            tensor_flops: 2.0 * (t.a * t.b) as f64 * k_tile,
            alu_cycles: 0.0,
            latency: dev.memory_latency,
            fill_bytes: 0.0,
        };
        let grid = Grid {
            name: format!("gemm {}x{} split-k {} cluster {}", t.a, t.b, t.split_k, t.cluster),
            shape: Shape { cluster: t.cluster, ..SHAPE },
            path: Path::WarpGroup,
            overlap: Overlap::Pipelined,
            ctas: Ctas::Uniform(cta, tiles as usize),
        };
        let mut out = vec![launch::run(dev, &grid)];
        if t.split_k > 1 {
            out.push(launch::streaming(dev, "split-k reduce", partials + 2.0 * m * n, 1));
        }
        out
    }

    /// The fastest tiling and its prediction; ties go to the first in menu order.
    pub fn best(&self, dev: &Device) -> (Tiling, Prediction) {
        let mut best: Option<(Tiling, Prediction)> = None;
        for t in self.tilings() {
            let p = Prediction::of(dev, self.launches(dev, t), self.flops());
            if best.as_ref().is_none_or(|b| p.seconds < b.1.seconds) {
                best = Some((t, p));
            }
        }
        best.expect("the menu is not empty")
    }

    pub fn predict(&self, dev: &Device) -> Prediction {
        self.best(dev).1
    }
}

#[cfg(test)]
mod tests {
    use super::super::h100;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn large_gemms_approach_the_tensor_roofline_and_skinny_ones_the_memory_roofline() {
        let dev = h100();
        let big = Gemm { m: 8192, n: 8192, k: 8192 };
        let t = big.predict(&dev).seconds;
        let roof = big.flops() / dev.wgmma;
        assert!(t >= roof && t < 1.15 * roof, "{t} vs {roof}");
        let gemv = Gemm { m: 1, n: 8192, k: 8192 };
        let t = gemv.predict(&dev).seconds;
        let bytes = 2.0 * 8192.0 * 8192.0;
        let roof = bytes / dev.memory_bandwidth;
        assert!(t >= roof && t < 1.3 * roof + 2.0 * dev.launch_latency, "{t} vs {roof}");
    }

    #[test]
    fn whole_waves_pick_the_tile_cublas_launched_and_a_split_pays_only_the_gap() {
        // The H100's measured rates (validation/gpu/h100: 736 TFLOP/s, 3.05 TB/s).
        let cal =
            super::super::Calibration { wgmma: Some(736e12), memory_bandwidth: Some(3.05e12), ..Default::default() };
        let dev = h100().calibrated(&cal);
        // 11008 features in 168-wide tiles × 4 blocks of 128 tokens: 264 CTAs, two whole waves
        // (cuBLAS launched nvjet_sm90_tst_168x128 on both devices).
        let (t, _) = Gemm { m: 512, n: 11008, k: 4096 }.best(&dev);
        assert_eq!((t.a, t.b), (168, 128), "{t:?}");
        assert!(Gemm { m: 8192, n: 8192, k: 8192 }.tilings().all(|t| t.a * t.b <= MAX_TILE));
        // A split-K tiling's reduction follows the GEMM in the stream: it pays the gap between
        // kernels, not a second launch latency, and regrouping launches does not pay it twice.
        let g = Gemm { m: 1, n: 4096, k: 4096 };
        let split = Tiling { a: 64, b: 8, split_k: 2, cluster: 1 };
        let p = Prediction::of(&dev, g.launches(&dev, split), g.flops());
        assert_eq!(p.launches.len(), 2);
        assert_eq!((p.launches[0].overhead, p.launches[1].overhead), (dev.launch_latency, dev.kernel_gap));
        let again = Prediction::of(&dev, p.launches.clone(), g.flops());
        assert_eq!(again.seconds, p.seconds);
    }

    proptest! {
        #[test]
        fn never_faster_than_either_roofline(m in 1u64..4096, n in 1u64..8192, k in 1u64..8192) {
            let dev = h100();
            let g = Gemm { m, n, k };
            let p = g.predict(&dev);
            let floor = (g.flops() / dev.wgmma).max(2.0 * (m * k + n * k + m * n) as f64 / dev.memory_bandwidth);
            prop_assert!(p.seconds >= floor + dev.launch_latency);
        }

        #[test]
        fn more_tokens_never_take_less_time(m in 1u64..2048, n in 64u64..8192, k in 64u64..8192) {
            let dev = h100();
            let a = Gemm { m, n, k }.predict(&dev).seconds;
            let b = Gemm { m: m * 2, n, k }.predict(&dev).seconds;
            prop_assert!(b >= a * 0.999, "{} tokens: {}, {}: {}", m, a, 2 * m, b);
        }
    }
}
