//! FlashAttention-2's forward pass as a mapping: one CTA per block of `Bm` query rows of one
//! head, streaming `Bn`-key tiles of K and V through shared memory; `S = QKᵀ` and `O += PV` on
//! the `mma.sync` path with the online softmax between them in the same warps (so MMA and the
//! exponentials take turns). One tile load is in flight at a time: V's under `S = QKᵀ`, the next
//! K's under the softmax and `O += PV` (`Overlap::KvAlternating`), so a decode whose 128-row
//! MMAs take most of a tile's load time is slower than memory alone. Causal blocks stop at the
//! diagonal. When the grid cannot fill the GPU (decode), the split-KV kernel divides each row's
//! keys among CTAs, chosen by FlashAttention's own efficiency heuristic, and a combine kernel
//! merges the partial outputs.
//! A single query is still computed as a full `Bm`-row tile: the padding is real work.

use super::launch::{self, Cta, Ctas, Grid, Overlap, Path, Shape};
use super::{Device, Prediction};

/// Scaled-dot-product attention over bf16 `[batch, heads, seq, head_dim]` tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    pub batch: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub seq_q: u64,
    pub seq_kv: u64,
    pub head_dim: u64,
    pub causal: bool,
}

/// FlashAttention-2's kernel traits (tile sizes per head dimension, 4 warps, 255 registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traits {
    pub block_m: u64,
    pub block_n: u64,
}

impl Traits {
    /// `Flash_fwd_kernel_traits` of the forward kernel.
    pub fn forward(head_dim: u64) -> Traits {
        if head_dim <= 64 { Traits { block_m: 128, block_n: 128 } } else { Traits { block_m: 128, block_n: 64 } }
    }

    /// The split-KV kernel's traits.
    pub fn split(head_dim: u64) -> Traits {
        let block_n = if head_dim <= 64 {
            256
        } else if head_dim <= 128 {
            128
        } else {
            64
        };
        Traits { block_m: 64, block_n }
    }

    /// A launch of these traits: 128 threads, 255 registers, a Q tile plus a K and a V tile in
    /// shared memory, MMAs on the `mma.sync` path pipelined with the loads.
    fn grid(&self, kernel: &str, head_dim: u64, ctas: Vec<Cta>) -> Grid {
        let shared_bytes = (self.block_m + 2 * self.block_n) * head_dim * 2;
        Grid {
            name: format!("{kernel} {}x{}", self.block_m, self.block_n),
            shape: Shape { threads: 128, registers: 255, shared_bytes, cluster: 1 },
            path: Path::Warp,
            overlap: Overlap::KvAlternating,
            ctas: Ctas::List(ctas),
        }
    }
}

/// FlashAttention-2's `num_splits_heuristic`: the fewest splits whose wave efficiency is within
/// 85% of the best, counting two CTAs per SM.
pub fn num_splits(rows_of_ctas: u64, sms: u64, key_blocks: u64) -> u64 {
    let slots = 2 * sms;
    if rows_of_ctas as f64 >= 0.8 * slots as f64 {
        return 1;
    }
    let max_splits = 128.min(slots).min(key_blocks).max(1);
    let eligible = |s: u64| s == 1 || key_blocks.div_ceil(s) != key_blocks.div_ceil(s - 1);
    let efficiency = |s: u64| {
        let waves = (rows_of_ctas * s) as f64 / slots as f64;
        waves / waves.ceil()
    };
    let best = (1..=max_splits).filter(|&s| eligible(s)).map(efficiency).fold(0.0, f64::max);
    (1..=max_splits).find(|&s| eligible(s) && efficiency(s) >= 0.85 * best).unwrap_or(1)
}

impl Attention {
    /// Useful flops: two matrix products over the visible (query, key) pairs.
    pub fn flops(&self) -> f64 {
        let pairs = if self.causal && self.seq_q == self.seq_kv {
            (self.seq_q * (self.seq_q + 1) / 2) as f64
        } else {
            (self.seq_q * self.seq_kv) as f64
        };
        4.0 * (self.batch * self.heads) as f64 * pairs * self.head_dim as f64
    }

    /// Decode with grouped KV heads packs each group's query heads into the row dimension
    /// (PyTorch's `seqlenq_ngroups_swapped`), so one CTA serves a whole group.
    fn packed(&self) -> (u64, u64) {
        if self.seq_q == 1 && self.heads > self.kv_heads && !self.causal {
            (self.kv_heads, self.heads / self.kv_heads)
        } else {
            (self.heads, self.seq_q)
        }
    }

    /// The CTA that computes `rows` query rows against `tiles` key tiles.
    fn cta(&self, dev: &Device, t: Traits, rows: u64, tiles: u64, kv_readers: f64) -> Cta {
        let (d, tiles_f) = (self.head_dim as f64, tiles as f64);
        let tile_pairs = (t.block_m * t.block_n) as f64;
        let kv = tiles_f * t.block_n as f64 * d * 2.0 * 2.0;
        let q_o = rows as f64 * d * 2.0 * 2.0;
        let g = &dev.gpu;
        Cta {
            // K and V are read from device memory once per head and shared through L2 by the
            // CTAs of that head.
            hbm_bytes: q_o + kv / kv_readers,
            l2_bytes: q_o + kv,
            tensor_flops: 4.0 * tile_pairs * d * tiles_f,
            // Per score: one exp2 on the SFU; max, scale-subtract, sum and convert on FP32 lanes.
            // Per tile: the output accumulator (Bm × d) rescaled by the new running max.
            alu_cycles: tiles_f
                * (tile_pairs / g.sfu_lanes_per_sm as f64
                    + (4.0 * tile_pairs + t.block_m as f64 * d) / g.fp32_lanes_per_sm as f64),
            // Q and the first K tile before the first MMA; the output store drains at the end.
            latency: 2.0 * dev.memory_latency,
            // Q and the first K tile arrive before the first MMA: nothing overlaps their load.
            fill_bytes: rows as f64 * d * 2.0 + if tiles > 0 { t.block_n as f64 * d * 2.0 / kv_readers } else { 0.0 },
        }
    }

    /// Key tiles visible to query block `qb` (causal masks align to the bottom right).
    fn tiles(&self, t: Traits, rows: u64, qb: u64) -> u64 {
        let all = self.seq_kv.div_ceil(t.block_n);
        if !self.causal {
            return all;
        }
        let last_key = ((qb + 1) * t.block_m).min(rows) + self.seq_kv.saturating_sub(rows);
        last_key.min(self.seq_kv).div_ceil(t.block_n).min(all)
    }

    pub fn launches(&self, dev: &Device) -> Vec<launch::Launch> {
        let (heads, rows) = self.packed();
        let d = self.head_dim;
        let bh = self.batch * heads;
        let split = Traits::split(d);
        let splits = num_splits(bh * rows.div_ceil(64), dev.gpu.sms as u64, self.seq_kv.div_ceil(split.block_n));
        if splits == 1 {
            let t = Traits::forward(d);
            let blocks = rows.div_ceil(t.block_m);
            let readers = (blocks * (heads / self.kv_heads.max(1)).max(1)) as f64;
            let mut ctas = Vec::with_capacity((bh * blocks) as usize);
            for _ in 0..bh {
                for qb in 0..blocks {
                    let r = t.block_m.min(rows - qb * t.block_m);
                    ctas.push(self.cta(dev, t, r, self.tiles(t, rows, qb), readers));
                }
            }
            return vec![launch::run(dev, &t.grid("flash_fwd", d, ctas))];
        }
        let t = split;
        let blocks = rows.div_ceil(t.block_m);
        let key_blocks = self.seq_kv.div_ceil(t.block_n);
        let per_split = key_blocks.div_ceil(splits);
        let mut ctas = Vec::new();
        for _ in 0..bh * blocks {
            for s in 0..splits {
                let tiles = per_split.min(key_blocks.saturating_sub(s * per_split));
                if tiles > 0 {
                    ctas.push(self.cta(dev, t, t.block_m.min(rows), tiles, 1.0));
                }
            }
        }
        let grid = t.grid(&format!("flash_fwd_splitkv ({splits} splits)"), d, ctas);
        // Partial outputs and log-sum-exps in fp32, written by the splits and read by the combine.
        let partials = (bh * rows * splits) as f64 * (d + 1) as f64 * 4.0;
        // The combine loads every split's log-sum-exp at once, then each split's partial output
        // in turn, accumulating it before the next load issues: one dependent load per split
        // after the first.
        let bytes = 2.0 * partials + (bh * rows * d * 2) as f64;
        vec![launch::run(dev, &grid), launch::streaming(dev, "flash_fwd_splitkv_combine", bytes, 1 + splits)]
    }

    pub fn predict(&self, dev: &Device) -> Prediction {
        Prediction::of(dev, self.launches(dev), self.flops())
    }
}

#[cfg(test)]
mod tests {
    use super::super::h100;
    use super::*;

    #[test]
    fn split_heuristic_reproduces_the_grids_nsight_compute_saw() {
        // decode, 1 × 32 heads, 8192 keys, d = 128: 7 splits → a grid of 224 CTAs.
        assert_eq!(num_splits(32, 132, 8192u64.div_ceil(128)), 7);
        // 8 × 32 heads fill the GPU: no split (the plain forward kernel ran).
        assert_eq!(num_splits(256, 132, 64), 1);
    }

    #[test]
    fn causal_costs_about_half_at_long_sequences_and_nothing_less_at_one_block_per_head() {
        let dev = h100();
        let a = |causal, s| Attention { batch: 1, heads: 32, kv_heads: 32, seq_q: s, seq_kv: s, head_dim: 128, causal };
        let long = a(true, 16384).predict(&dev).seconds / a(false, 16384).predict(&dev).seconds;
        assert!((0.48..0.56).contains(&long), "{long}");
        // At 1024 the last query block of each head sees every key, and sets the time.
        let short = a(true, 1024).predict(&dev).seconds / a(false, 1024).predict(&dev).seconds;
        assert!(short > 0.95, "{short}");
    }

    #[test]
    fn the_combine_waits_for_each_split_in_turn() {
        let dev = h100();
        // 1 × 32 heads over 2048 keys: 8 splits of 2 key tiles. Its combine streams a few
        // kilobytes but waits for the log-sum-exps and then for each split's partial output.
        let a = Attention { batch: 1, heads: 32, kv_heads: 32, seq_q: 1, seq_kv: 2048, head_dim: 128, causal: false };
        let l = a.launches(&dev);
        assert_eq!(l[0].name, "flash_fwd_splitkv (8 splits) 64x128");
        let partials = (32 * 8 * 129 * 4) as f64;
        let bytes = 2.0 * partials + (32 * 128 * 2) as f64;
        let want = dev.launch_latency + 9.0 * dev.memory_latency + bytes / dev.memory_bandwidth;
        assert!((l[1].seconds - want).abs() < 1e-12, "{} vs {want}", l[1].seconds);
    }

    #[test]
    fn decode_reads_the_whole_cache_and_is_never_faster_than_memory() {
        let dev = h100();
        for (batch, l) in [(1, 2048), (8, 32768), (32, 8192)] {
            let a = Attention { batch, heads: 32, kv_heads: 32, seq_q: 1, seq_kv: l, head_dim: 128, causal: false };
            let p = a.predict(&dev);
            let cache = (2 * batch * 32 * l * 128 * 2) as f64;
            assert!(p.hbm_bytes >= cache, "{} < {cache}", p.hbm_bytes);
            assert!(p.seconds >= cache / dev.memory_bandwidth);
        }
    }
}
