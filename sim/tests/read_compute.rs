//! In-flash compute over random machines, tiles, matrices and splits, against bounds that do
//! not come from the simulator: every weight is counted once; a GeMV takes at least a tR per
//! request on every die and at least its normal pages' time on the channels; with Slice
//! Control the balanced split is the best; runs repeat exactly.

use proptest::prelude::*;
use strata_mappings::flash_tiling::Tile;
use strata_sim::engine::nand::read_compute::{self as flash_compute, Options, ReadCompute, Tiling};

fn system(channels: u64, chips: u64) -> ReadCompute {
    let a = strata_arch::presets::load("cambricon-llm-s").unwrap().unwrap();
    let mut s = ReadCompute::new(&a, a.unit_id("flash-core").unwrap(), a.unit_id("npu").unwrap(), 1).unwrap();
    s.nand.channels = channels;
    s.nand.chips_per_channel = chips;
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn gemvs_keep_every_weight_and_their_bounds(
        channels in prop::sample::select(vec![1u64, 2, 4, 8]),
        chips in prop::sample::select(vec![1u64, 2, 4]),
        log_a in 0u32..=14,
        rows in 1u64..6000,
        cols in 1u64..6000,
        share in 0.0f64..=1.0,
        slicing in any::<bool>(),
        ecc in any::<bool>(),
    ) {
        let s = system(channels, chips);
        let cores = chips * s.nand.dies_per_chip;
        let page = s.nand.page_bytes.0;
        let a = 1u64 << log_a;
        let tile = Tile { h: cores * a, w: channels * (page / a) };
        let o = Options { tiling: Tiling::Broadcast(tile), flash_share: share, slicing, slices: 4, ecc };
        let g = match flash_compute::gemv(&s, &o, rows, cols, 50_000_000) {
            Ok(g) => g,
            // The only refusal of a whole-page tile: its input strip and partial sums overflow
            // a core's buffer.
            Err(e) => {
                prop_assert!(e.to_string().starts_with("tile: ") && e.to_string().contains("core buffer"), "{}", e);
                prop_assert!(tile.w.min(cols) / channels + tile.h / cores > s.core_buffer_bytes);
                return Ok(());
            }
        };
        prop_assert_eq!(g.flash_bytes + g.npu_bytes, rows * cols);
        let t_read = s.nand.t_read.0;
        let weights_per_request = tile.h * tile.w.min(cols);
        let requests = g.flash_bytes.div_ceil(weights_per_request);
        prop_assert!(g.seconds >= requests as f64 * t_read * (1.0 - 1e-9), "{g:?}");
        let channel_rate = channels as f64 * s.nand.channel_bandwidth.0;
        prop_assert!(g.seconds >= g.npu_bytes as f64 / channel_rate * (1.0 - 1e-9), "{g:?}");
        prop_assert!(g.seconds >= g.read_compute_seconds.max(g.normal_seconds));
        prop_assert!(g.data_utilisation <= g.busy_utilisation + 1e-12 && g.busy_utilisation <= 1.0 + 1e-9, "{g:?}");
        prop_assert_eq!(flash_compute::gemv(&s, &o, rows, cols, 50_000_000).unwrap(), g);
    }

    /// With Slice Control normal reads never delay a request, so the two sides' finish times
    /// cross once and the crossing is the best split: no other share beats it by more than
    /// the request it cannot resolve.
    #[test]
    fn the_balanced_split_is_the_best_with_slicing(
        channels in prop::sample::select(vec![2u64, 4, 8]),
        chips in prop::sample::select(vec![1u64, 2]),
        rows in 256u64..8192,
        cols in 256u64..8192,
        share in 0.0f64..=1.0,
    ) {
        let s = system(channels, chips);
        let cores = chips * s.nand.dies_per_chip;
        let a = 64 / cores;
        let tile = Tile { h: cores * a, w: channels * (s.nand.page_bytes.0 / a) };
        let o = Options { tiling: Tiling::Broadcast(tile), flash_share: 0.0, slicing: true, slices: 4, ecc: true };
        let b = flash_compute::balanced(&s, &o, rows, cols, 50_000_000).unwrap();
        let g = flash_compute::gemv(&s, &Options { flash_share: share, ..o }, rows, cols, 50_000_000).unwrap();
        let request = 1.5 * s.nand.t_read.0;
        prop_assert!(b.seconds <= g.seconds + request, "share {share}: {} > {}", b.seconds, g.seconds);
    }
}
