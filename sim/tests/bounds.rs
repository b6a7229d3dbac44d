//! Lower bounds as properties (shared/reference/io-bounds.md):
//! - no valid attention mapping moves fewer off-chip bytes than reading Q, K, V and writing the
//!   output once;
//! - 1-pass mappings that keep as many queries on chip as the buffer holds follow the
//!   Θ(N²d²/M) scaling of FlashAttention and Saha & Ye: doubling N quadruples the traffic once
//!   it dominates, halving the buffer doubles it, and the traffic stays within a small constant
//!   of N²d²/M.

mod common;

use proptest::prelude::*;
use strata_mappings::CascadeMapping;
use strata_sim::evaluate;
use strata_workloads::attention::AttentionShape;
use strata_workloads::{Cascade, Phase};

fn attention(passes: u8, b: u64, h: u64, n: u64, d: u64, block: u64) -> Cascade {
    AttentionShape {
        passes,
        phase: Phase::Prefill { seq: n },
        batch: b,
        heads: h,
        kv_heads: h,
        head_dim: d,
        value_dim: d,
        block,
        causal: false,
        elem_bytes: 2,
    }
    .cascade_spec("attention", "")
    .build()
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn offchip_traffic_never_beats_the_compulsory_floor(
        passes in 1u8..=3, b in 1u64..3, h in 1u64..3, n in 1u64..12, d in 1u64..4, block in 1u64..5, seed in any::<u64>(),
    ) {
        let c = attention(passes, b, h, n, d, block);
        let arch = common::arch();
        let m = CascadeMapping::resolve(&common::random_mapping(&c, seed), &c, &arch).unwrap();
        let ev = evaluate(&arch, &c, &m);
        let floor = 4 * b * h * n * d * 2;
        prop_assert!(ev.offchip_bytes >= floor, "{} < {}", ev.offchip_bytes, floor);
    }
}

/// Off-chip words of the best such mapping: the largest query block (a divisor of N) whose
/// on-chip tiles fit, as the model itself counts them.
fn one_pass_traffic(n: u64, d: u64, words: u64) -> u64 {
    let c = attention(1, 1, 1, n, d, 16);
    let arch = strata_arch::presets::io_machine(words).unwrap();
    for queries in (1..=n.min(words)).rev().filter(|q| n.is_multiple_of(*q)) {
        let m = CascadeMapping::from_toml(&strata_mappings::presets::one_pass_query_block(queries), &c, &arch).unwrap();
        let ev = evaluate(&arch, &c, &m);
        if ev.violations.is_empty() {
            return ev.offchip_bytes / 2;
        }
    }
    panic!("nothing fits {words} words");
}

#[test]
fn one_pass_traffic_scales_as_n_squared_d_squared_over_m() {
    let d = 64;
    let mut ratios = Vec::new();
    for words in [d * d * 4, d * d * 8, d * d * 16] {
        let mut last = None;
        for n in [4096, 8192, 16384, 32768] {
            let t = one_pass_traffic(n, d, words);
            // Never below the floor of reading Q, K, V and writing O once.
            assert!(t >= 4 * n * d);
            let bound = (n * n * d * d) as f64 / words as f64;
            ratios.push(t as f64 / bound);
            if let Some(prev) = last {
                let growth = t as f64 / prev as f64;
                assert!((3.3..=4.2).contains(&growth), "doubling N grew traffic {growth:.2}× (M = {words})");
            }
            last = Some(t);
        }
    }
    // Halving M doubles the traffic (N = 32768 ≫ M/d).
    let small = one_pass_traffic(32768, d, d * d * 4);
    let big = one_pass_traffic(32768, d, d * d * 8);
    let halving = small as f64 / big as f64;
    assert!((1.7..=2.3).contains(&halving), "halving M grew traffic {halving:.2}×");
    // Within a small constant of N²d²/M: K and V (2Nd words) are re-read once per block of
    // about M/(c·d) queries, where c counts the per-query words the model keeps on chip.
    for r in &ratios {
        assert!((1.0..=32.0).contains(r), "traffic / (N²d²/M) = {r:.2}");
    }
    eprintln!("traffic / (N²d²/M) for M = 4d², 8d², 16d² × N = 4K..32K: {ratios:.2?}");
    let spread = ratios.iter().cloned().fold(f64::MIN, f64::max) / ratios.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 1.6, "the constant drifts by {spread:.2}× across N and M: not Θ(N²d²/M)");
}
