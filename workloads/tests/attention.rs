//! The attention cascades against plain softmax attention computed with nalgebra.
//!
//! For random shapes (batch, kv heads × group size, queries, keys, head dims, block sizes
//! that need not divide the key count), causal or not, the 1-, 2- and 3-pass cascades run on
//! the reference interpreter must equal `softmax(QᵀK)·Vᵀ` within 1e-9 (f64), and the
//! interpreter's counted points must equal the closed-form counts of the IR.

use std::collections::BTreeMap;

use nalgebra::DMatrix;
use proptest::prelude::*;
use strata_workloads::attention::AttentionShape;
use strata_workloads::interp::{Dense, Scalar, external_tensors, run};
use strata_workloads::{Cascade, Phase};

#[derive(Debug, Clone)]
struct Case {
    passes: u8,
    batch: u64,
    kv_heads: u64,
    group: u64,
    queries: u64,
    keys: u64,
    e: u64,
    f: u64,
    block: u64,
    causal: bool,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1u8..=3,
        1u64..=2,
        1u64..=2,
        1u64..=3,
        1u64..=6,
        1u64..=13,
        1u64..=4,
        1u64..=4,
        1u64..=6,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(passes, batch, kv_heads, group, queries, keys, e, f, block, causal, seed)| Case {
            passes,
            batch,
            kv_heads,
            group,
            queries: queries.min(keys),
            keys,
            e,
            f,
            block,
            causal,
            seed,
        })
}

fn cascade(c: &Case) -> Cascade {
    let shape = AttentionShape {
        passes: c.passes,
        phase: Phase::Prefill { seq: c.keys },
        batch: c.batch,
        heads: c.kv_heads * c.group,
        kv_heads: c.kv_heads,
        head_dim: c.e,
        value_dim: c.f,
        block: c.block,
        causal: c.causal,
        elem_bytes: 2,
    };
    let mut spec = shape.cascade_spec("under-test", "");
    // Queries and keys are independent here: a chunk of queries against a longer context.
    spec.params.insert("P".into(), c.queries as i64);
    spec.build().expect("generated cascade is valid")
}

/// Deterministic inputs in [-3, 3) from a seed (SplitMix64).
fn inputs<T: Scalar>(c: &Cascade, seed: u64) -> BTreeMap<String, Dense<T>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0
    };
    external_tensors(c)
        .map(|(name, shape)| {
            let n: u64 = shape.iter().product();
            let data = (0..n).map(|_| T::from_f64(next())).collect();
            (name.to_string(), Dense { shape: shape.to_vec(), data })
        })
        .collect()
}

/// Plain softmax attention per (batch, head) with nalgebra: O = softmax(QᵀK)·Vᵀ, shape P×F.
fn reference(c: &Case, q: &Dense<f64>, k: &Dense<f64>, v: &Dense<f64>) -> Vec<DMatrix<f64>> {
    let (p, m, e, f) = (c.queries as usize, c.keys as usize, c.e as usize, c.f as usize);
    let mut outs = Vec::new();
    for b in 0..c.batch {
        for g in 0..c.kv_heads {
            for r in 0..c.group {
                let qi = |ee: usize, pp: usize| {
                    if c.group == 1 {
                        q.at(&[b, g, ee as u64, pp as u64])
                    } else {
                        q.at(&[b, g, r, ee as u64, pp as u64])
                    }
                };
                let qm = DMatrix::from_fn(e, p, qi);
                let km = DMatrix::from_fn(e, m, |ee, mm| k.at(&[b, g, ee as u64, mm as u64]));
                let vm = DMatrix::from_fn(f, m, |ff, mm| v.at(&[b, g, ff as u64, mm as u64]));
                let mut s = qm.transpose() * km;
                let offset = m.saturating_sub(p);
                for pp in 0..p {
                    for mm in 0..m {
                        if c.causal && mm > pp + offset {
                            s[(pp, mm)] = f64::NEG_INFINITY;
                        }
                    }
                    let max = s.row(pp).iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let mut sum = 0.0;
                    for mm in 0..m {
                        let x = (s[(pp, mm)] - max).exp();
                        s[(pp, mm)] = x;
                        sum += x;
                    }
                    for mm in 0..m {
                        s[(pp, mm)] /= sum;
                    }
                }
                outs.push(s * vm.transpose());
            }
        }
    }
    outs
}

fn max_rel_error<T: Scalar>(c: &Case, cascade: &Cascade, seed: u64) -> f64 {
    let ins = inputs::<T>(cascade, seed);
    let result = run(cascade, &ins).expect("inputs match");
    for (i, e) in cascade.einsums().iter().enumerate() {
        let k = cascade.counts(e);
        assert_eq!((result.counts[i].points, result.counts[i].outputs), (k.points, k.outputs), "counts of {}", e.name);
    }
    let to64 = |d: &Dense<T>| Dense { shape: d.shape.clone(), data: d.data.iter().map(|x| x.to_f64()).collect() };
    let (q, k, v) = (to64(&ins["Q"]), to64(&ins["K"]), to64(&ins["V"]));
    let av = to64(&result.tensors["AV"]);
    let want = reference(c, &q, &k, &v);
    let mut worst: f64 = 0.0;
    let mut scale: f64 = 0.0;
    let mut idx = 0;
    for b in 0..c.batch {
        for g in 0..c.kv_heads {
            for r in 0..c.group {
                for ff in 0..c.f {
                    for pp in 0..c.queries {
                        let got = if c.group == 1 { av.at(&[b, g, ff, pp]) } else { av.at(&[b, g, r, ff, pp]) };
                        let w = want[idx][(pp as usize, ff as usize)];
                        worst = worst.max((got - w).abs());
                        scale = scale.max(w.abs());
                    }
                }
                idx += 1;
            }
        }
    }
    worst / scale.max(1e-300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cascades_equal_softmax_attention_f64(c in case()) {
        let cascade = cascade(&c);
        let err = max_rel_error::<f64>(&c, &cascade, c.seed);
        prop_assert!(err <= 1e-9, "relative error {err:e} for {c:?}");
    }

    #[test]
    fn cascades_equal_softmax_attention_f32(c in case()) {
        let cascade = cascade(&c);
        let err = max_rel_error::<f32>(&c, &cascade, c.seed);
        prop_assert!(err <= 1e-4, "relative error {err:e} for {c:?}");
    }
}

#[test]
fn decode_attention_matches_softmax() {
    for passes in 1..=3 {
        for (kv_heads, group) in [(2, 1), (2, 4)] {
            let c = Case {
                passes,
                batch: 2,
                kv_heads,
                group,
                queries: 1,
                keys: 37,
                e: 8,
                f: 5,
                block: 8,
                causal: true,
                seed: 7,
            };
            let shape = AttentionShape {
                passes,
                phase: Phase::Decode { context: 37 },
                batch: 2,
                heads: kv_heads * group,
                kv_heads,
                head_dim: 8,
                value_dim: 5,
                block: 8,
                causal: true,
                elem_bytes: 2,
            };
            let cascade = shape.cascade_spec("decode", "").build().unwrap();
            assert_eq!(cascade.rank(cascade.rank_id("p").unwrap()).size, 1);
            let err = max_rel_error::<f64>(&c, &cascade, c.seed);
            assert!(err <= 1e-9, "passes {passes}, group {group}: {err:e}");
        }
    }
}

#[test]
fn one_pass_cascade_has_fusemax_twelve_einsums_in_order() {
    let c = Case {
        passes: 1,
        batch: 1,
        kv_heads: 1,
        group: 1,
        queries: 4,
        keys: 4,
        e: 2,
        f: 2,
        block: 2,
        causal: false,
        seed: 0,
    };
    let names: Vec<String> = cascade(&c).einsums().iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["BQK", "LM", "RM", "SLN", "SLD", "SLNV", "PRM", "SPD", "RD", "SPNV", "RNV", "AV"]);
}

#[test]
fn fusemax_toy_sizes_match_softmax() {
    // The TeAAL notebook's toy check: E = F = 2, M = 4, P = 8 (queries beyond keys are not
    // allowed causally, so this runs unmasked), M0 = 2.
    let c = Case {
        passes: 1,
        batch: 1,
        kv_heads: 1,
        group: 1,
        queries: 4,
        keys: 4,
        e: 2,
        f: 2,
        block: 2,
        causal: false,
        seed: 3,
    };
    let mut spec = AttentionShape {
        passes: 1,
        phase: Phase::Prefill { seq: 4 },
        batch: 1,
        heads: 1,
        kv_heads: 1,
        head_dim: 2,
        value_dim: 2,
        block: 2,
        causal: false,
        elem_bytes: 2,
    }
    .cascade_spec("toy", "");
    spec.params.insert("P".into(), 8);
    let cascade = spec.build().unwrap();
    let c8 = Case { queries: 8, ..c };
    assert!(max_rel_error::<f64>(&c8, &cascade, 3) <= 1e-9);
}
