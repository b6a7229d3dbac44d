//! The proof of the analytical model: for random valid mappings of GEMMs and of the 1-, 2- and
//! 3-pass attention cascades, every access count equals what the instrumented executor counted,
//! and the executor's results equal the reference interpreter's.

mod common;

use proptest::prelude::*;
use std::collections::BTreeMap;
use strata_mappings::CascadeMapping;
use strata_sim::count;
use strata_sim::executor::execute;
use strata_workloads::attention::AttentionShape;

use strata_workloads::interp::{Dense, run};
use strata_workloads::sparse::{DoubleSparsity, Routing, SparseFfn};
use strata_workloads::{Cascade, Phase, Role};

fn check(c: &Cascade, seed: u64) -> Result<(), TestCaseError> {
    check_on(c, seed, common::inputs(c, seed))
}

fn check_on(c: &Cascade, seed: u64, ins: BTreeMap<String, Dense<f64>>) -> Result<(), TestCaseError> {
    check_mapping(c, common::random_mapping(c, seed), ins)
}

fn check_mapping(
    c: &Cascade,
    spec: strata_mappings::spec::MappingSpec,
    ins: BTreeMap<String, Dense<f64>>,
) -> Result<(), TestCaseError> {
    let arch = common::arch();
    let mapping = CascadeMapping::resolve(&spec, c, &arch)
        .map_err(|e| TestCaseError::fail(format!("generated mapping invalid: {e}\n{spec:#?}")))?;
    let exec = execute(c, &mapping, &ins);
    for (i, nest) in mapping.nests.iter().enumerate() {
        let want = count(c, nest);
        let got = &exec.counts[i];
        let name = &c.einsums()[i].name;
        prop_assert_eq!(got.points, want.points, "points of {}", name);
        prop_assert_eq!(got.temporal_steps, want.temporal_steps, "steps of {}", name);
        for (oi, o) in nest.operands.iter().enumerate() {
            for lv in 0..nest.path.len() {
                prop_assert_eq!(
                    got.access[oi][lv],
                    want.access[oi][lv],
                    "einsum {} operand {} ({}) level {}\nnest: {:?}",
                    name,
                    oi,
                    c.tensor(o.tensor).name,
                    common::LEVELS[lv],
                    nest.loops
                );
                if o.keep[lv] && lv != o.home() {
                    prop_assert_eq!(
                        got.peak_tile[oi][lv],
                        want.tile[oi][lv],
                        "tile of {} operand {} at {}",
                        name,
                        oi,
                        lv
                    );
                }
            }
        }
    }
    let reference = run(c, &ins).unwrap();
    for t in common::produced(c) {
        let (a, b) = (&exec.tensors[&t], &reference.tensors[&t]);
        let scale = b.data.iter().fold(1e-300f64, |m, x| if x.is_finite() { m.max(x.abs()) } else { m });
        for (x, y) in a.data.iter().zip(&b.data) {
            let same = x == y || (x - y).abs() <= 1e-9 * scale;
            prop_assert!(same, "tensor {} differs: {} vs {}", t, x, y);
        }
    }
    // The cost model runs on the same mapping without trouble.
    let ev = strata_sim::evaluate(&arch, c, &mapping);
    prop_assert!(ev.cycles > 0.0 && ev.energy_pj > 0.0);
    // Its peak of activations in the outermost level, from the mapping's liveness, is what the
    // executor held there.
    prop_assert_eq!(ev.peak_activation_bytes, measured_peak(c, &mapping, &exec), "peak activations");
    Ok(())
}

/// The peak bytes of activations the executor held in the outermost level: each tensor from the
/// node that first wrote it there (an input: from the start) to the node that last read it (a
/// result: to the end).
fn measured_peak(c: &Cascade, mapping: &CascadeMapping, exec: &strata_sim::executor::ExecResult) -> u64 {
    let last = mapping.schedule.len() - 1;
    let spans: Vec<(usize, usize, u64)> = exec
        .outermost
        .iter()
        .enumerate()
        .filter_map(|(t, span)| {
            let tensor = &c.tensors()[t];
            let (first, touched) = (*span)?;
            if matches!(tensor.role, Role::Weight | Role::KvCache) {
                return None;
            }
            let id = strata_workloads::einsum::TensorId(t);
            let birth = if c.producer(id).is_some() { first } else { 0 };
            let death = if tensor.role == Role::Output { last } else { touched };
            Some((birth, death, tensor.bytes()))
        })
        .collect();
    (0..=last).map(|i| spans.iter().filter(|s| s.0 <= i && i <= s.1).map(|s| s.2).sum::<u64>()).max().unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn attention(passes: u8, b: u64, h: u64, p: u64, m: u64, e: u64, f: u64, block: u64, causal: bool) -> Cascade {
    let shape = AttentionShape {
        passes,
        phase: Phase::Prefill { seq: m },
        batch: b,
        heads: h,
        kv_heads: h,
        head_dim: e,
        value_dim: f,
        block,
        causal,
        elem_bytes: 2,
    };
    let mut spec = shape.cascade_spec("attention", "");
    spec.params.insert("P".into(), p.min(m) as i64);
    spec.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn gemm_counts_are_exact(m in 1u64..13, n in 1u64..13, k in 1u64..13, seed in any::<u64>()) {
        let c = common::gemm(m, n, k);
        check(&c, seed)?;
        // The mapper's fast path agrees with the full report, link energy included.
        let arch = common::arch_with_links();
        let mapping = CascadeMapping::resolve(&common::random_mapping(&c, seed), &c, &arch).unwrap();
        let full = strata_sim::evaluate(&arch, &c, &mapping);
        let fast = strata_sim::quick(&arch, &c, &mapping.nests[0]);
        prop_assert!((fast.cycles - full.cycles).abs() <= 1e-9 * full.cycles);
        prop_assert!((fast.energy_pj - full.energy_pj).abs() <= 1e-9 * full.energy_pj);
        prop_assert_eq!(fast.offchip_bytes, full.offchip_bytes);
        prop_assert_eq!(fast.fits, full.violations.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn attention_counts_are_exact(
        passes in 1u8..=3, b in 1u64..3, h in 1u64..3, p in 1u64..5, m in 1u64..9,
        e in 1u64..4, f in 1u64..3, block in 1u64..5, causal in any::<bool>(), seed in any::<u64>(),
    ) {
        check(&attention(passes, b, h, p, m, e, f, block, causal), seed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Label scoring, top-k and attention on gathered rows: the gathered operands' tiles follow
    /// the index's ranks, exact because a top-k record holds distinct tokens.
    #[test]
    fn double_sparsity_counts_are_exact(
        b in 1u64..3, h in 1u64..3, s in 1u64..9, d in 1u64..4, r in 1u64..4, k in 1u64..9, seed in any::<u64>(),
    ) {
        let ds = DoubleSparsity {
            batch: b, heads: h, kv_heads: h, context: s, head_dim: d, label_channels: r.min(d), selected: k.min(s),
            elem_bytes: 2, label_bits: 16, predict_next: false,
        };
        let c = ds.cascade().unwrap();
        let mut ins = common::inputs(&c, seed);
        // Label channels are channel indices: a rotation per head.
        let ch = ins.get_mut("CH").unwrap();
        let c_n = ch.shape[1];
        for (i, x) in ch.data.iter_mut().enumerate() {
            *x = ((i as u64 / c_n + i as u64 % c_n) % d) as f64;
        }
        check_on(&c, seed, ins)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A sparse FFN's router, block selection and gathered blocks for one token: exact counts,
    /// the executor's values the interpreter's. (Tokens that pick the same block share its rows
    /// in a tile, so over several tokens the closed form is an upper bound.)
    #[test]
    fn sparse_ffn_counts_are_exact(
        d in 1u64..4, blocks in 1u64..5, g in 1u64..4, k in 1u64..5, seed in any::<u64>(),
    ) {
        let f = SparseFfn {
            tokens: 1, d_model: d, cells: blocks * g, block: g, selected: k.min(blocks),
            routing: Routing::AvgK, elem_bytes: 2,
        };
        check(&f.cascade().unwrap(), seed)?;
    }
}

/// FuseMax's Mapping 1, scaled down to the test machine: BQK and SLN stay in the PE registers,
/// the running values and column reductions in L2, the recurrence steps m1 in DRAM and p1 in
/// L2, K and V blocks are ragged (M = 5, M0 = 2). Every intermediate lives on chip, so this
/// exercises homes below the root, shared placement and per-step refresh.
const FUSED: &str = r#"
[mapping]
name = "fused"
[[mapping.groups]]
name = "query-block"
prefix = ["b=*", "h=*", "p=*"]
members = ["running", "AV"]
[[mapping.groups]]
name = "running"
prefix = ["m1=*", "L2:p=2"]
members = ["BQK", "LM", "RM", "SLN", "SLD", "SLNV", "PRM", "SPD", "RD", "SPNV", "RNV"]
pipelining = "interleaved"
[[mapping.einsums]]
einsum = "BQK"
unit = "pe"
levels = [{ level = "DRAM", keep = ["Q", "K"] }, { level = "L2", keep = ["Q", "K"] }, { level = "Buf", loops = ["e=*", "p=2@x", "m0=2@y"], keep = ["Q", "K"] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "LM"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2", keep = ["LM"] }, { level = "Buf", loops = ["p=2@x", "m0=2@y"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "RM"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2" }, { level = "Buf", loops = ["p=2@x"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "SLN"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2", keep = ["RM"] }, { level = "Buf", loops = ["p=2@x", "m0=2@y"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "SLD"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2", keep = ["SLD"] }, { level = "Buf", loops = ["p=2@x", "m0=2@y"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "SLNV"
unit = "pe"
levels = [{ level = "DRAM", keep = ["V"] }, { level = "L2", keep = ["V", "SLNV"] }, { level = "Buf", loops = ["f=*", "p=2@x", "m0=2@y"], keep = ["V"] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "PRM"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2" }, { level = "Buf", loops = ["p=2@x"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "SPD"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2" }, { level = "Buf", loops = ["p=2@x"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "RD"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2" }, { level = "Buf", loops = ["p=2@x"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "SPNV"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2" }, { level = "Buf", loops = ["f=*", "p=2@x"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "RNV"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2" }, { level = "Buf", loops = ["f=*", "p=2@x"], keep = [] }, { level = "RF" }]
[[mapping.einsums]]
einsum = "AV"
unit = "pe"
levels = [{ level = "DRAM", keep = ["AV"] }, { level = "L2", loops = ["p=2"], keep = ["RNV", "RD", "AV"] }, { level = "Buf", loops = ["f=*", "p=2@x"], keep = [] }, { level = "RF" }]
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A producer fused into a consumer whose group loops over a rank the producer lacks is
    /// recomputed at every step: the counts stay exact and the values stay the interpreter's
    /// (a recomputed element is overwritten, never accumulated).
    #[test]
    fn recompute_counts_are_exact(
        m in 1u64..5, r in 1u64..4, f in 1u64..5, n in 2u64..5, seed in any::<u64>()
    ) {
        let c = common::low_rank_chain(m, r, f, n);
        check_mapping(&c, common::recompute_mapping(&c, seed), common::inputs(&c, seed))?;
        // The rebuild runs once per step of the consumer's `n` loop.
        let mapping = CascadeMapping::resolve(&common::recompute_mapping(&c, seed), &c, &common::arch()).unwrap();
        prop_assert_eq!(count(&c, &mapping.nests[0]).points, n * m * r * f);
    }
}

#[test]
fn fused_on_chip_mapping_is_exact() {
    for causal in [false, true] {
        let c = attention(1, 2, 2, 4, 5, 3, 2, 2, causal);
        let arch = common::arch();
        let m = CascadeMapping::from_toml(FUSED, &c, &arch).unwrap();
        let ins = common::inputs(&c, 11);
        let exec = execute(&c, &m, &ins);
        for (i, nest) in m.nests.iter().enumerate() {
            let want = count(&c, nest);
            assert_eq!(exec.counts[i].access, want.access, "einsum {}", c.einsums()[i].name);
            assert_eq!(exec.counts[i].points, want.points);
        }
        let reference = run(&c, &ins).unwrap();
        for (x, y) in exec.tensors["AV"].data.iter().zip(&reference.tensors["AV"].data) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} vs {y}");
        }
        // Only Q, K, V and AV touch DRAM, each once: the compulsory traffic.
        let ev = strata_sim::evaluate(&arch, &c, &m);
        assert_eq!(ev.offchip_bytes, 2 * 2 * 2 * (4 * 3 + 5 * 3 + 5 * 2 + 4 * 2));
        // And only they are ever held there: the logits and the softmax stay on chip.
        assert_eq!(ev.peak_activation_bytes, measured_peak(&c, &m, &exec));
        assert_eq!(ev.peak_activation_bytes, 2 * 2 * 2 * (4 * 3 + 5 * 3 + 5 * 2 + 4 * 2));
        assert!(ev.violations.is_empty(), "{:?}", ev.violations);
    }
}

/// The unfused cascade as the FuseMax artifact runs it: QK and AV on their own, the 3-pass
/// softmax fused per query row, reading each row of QK once from one shared buffer in L2.
const SHARED: &str = r#"
[mapping]
name = "shared"
[[mapping.groups]]
name = "softmax"
prefix = ["b=*", "h=*", "p=*"]
members = ["GM", "SN", "SD", "A"]
shared = ["QK@L2"]
[[mapping.einsums]]
einsum = "QK"
unit = "pe"
levels = [{ level = "DRAM", loops = ["b=*", "h=*", "p=*"] }, { level = "L2", loops = ["m=*", "e=*"] }, { level = "Buf" }, { level = "RF" }]
[[mapping.einsums]]
einsum = "GM"
unit = "pe"
levels = [{ level = "DRAM", keep = ["QK"] }, { level = "L2", loops = ["m=*"], keep = ["QK", "GM"] }, { level = "Buf" }, { level = "RF" }]
[[mapping.einsums]]
einsum = "SN"
unit = "pe"
levels = [{ level = "DRAM", keep = ["QK"] }, { level = "L2", loops = ["m=*"] }, { level = "Buf" }, { level = "RF" }]
[[mapping.einsums]]
einsum = "SD"
unit = "pe"
levels = [{ level = "DRAM", keep = [] }, { level = "L2", loops = ["m=*"] }, { level = "Buf" }, { level = "RF" }]
[[mapping.einsums]]
einsum = "A"
unit = "pe"
levels = [{ level = "DRAM", keep = ["A"] }, { level = "L2", loops = ["m=*"] }, { level = "Buf" }, { level = "RF" }]
[[mapping.einsums]]
einsum = "AV"
unit = "pe"
levels = [{ level = "DRAM", loops = ["b=*", "h=*", "p=*"] }, { level = "L2", loops = ["m=*", "f=*"] }, { level = "Buf" }, { level = "RF" }]
"#;

#[test]
fn a_shared_buffer_reads_each_row_once_for_every_pass() {
    let (b, h, p, m, e, f) = (2, 2, 3, 5, 2, 3);
    let c = attention(3, b, h, p, m, e, f, 1, false);
    let arch = common::arch();
    let mapping = CascadeMapping::from_toml(SHARED, &c, &arch).unwrap();
    let ins = common::inputs(&c, 5);
    let exec = execute(&c, &mapping, &ins);
    for (i, nest) in mapping.nests.iter().enumerate() {
        let want = count(&c, nest);
        assert_eq!(exec.counts[i].access, want.access, "einsum {}", c.einsums()[i].name);
        for (oi, o) in nest.operands.iter().enumerate() {
            for lv in 0..nest.path.len() {
                if o.keep[lv] && lv != o.home() {
                    assert_eq!(
                        exec.counts[i].peak_tile[oi][lv],
                        want.tile[oi][lv],
                        "tile of {} operand {oi} at {lv}",
                        c.einsums()[i].name
                    );
                }
            }
        }
    }
    let reference = run(&c, &ins).unwrap();
    for (x, y) in exec.tensors["AV"].data.iter().zip(&reference.tensors["AV"].data) {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} vs {y}");
    }
    // DRAM words: Q, K, V and AV once, QK written and read once, A written and read once.
    let ev = strata_sim::evaluate(&arch, &c, &mapping);
    let n = b * h;
    let words = n * (p * e + m * e + m * f + p * f) + 2 * n * p * m + 2 * n * p * m;
    assert_eq!(ev.offchip_bytes, 2 * words);
    // Without the shared buffer SN reads the row again.
    let unshared = CascadeMapping::from_toml(&SHARED.replace("shared = [\"QK@L2\"]\n", ""), &c, &arch).unwrap();
    assert_eq!(strata_sim::evaluate(&arch, &c, &unshared).offchip_bytes, 2 * (words + n * p * m));
}

/// Read-modify-write of partial sums: a 64×32×32 matmul whose output tiles spill to DRAM at
/// every step of k (k between n and m above every on-chip level) updates each element of Z in
/// DRAM K times and reads it back K − 1 times; the executor counts the same.
#[test]
fn spilled_partial_sums_are_read_back() {
    let (m, n, k) = (64u64, 32u64, 32u64);
    let c = common::gemm(m, n, k);
    let arch = common::arch();
    let text = "[mapping]\nname = \"spill\"\n[[mapping.einsums]]\neinsum = \"Z\"\nunit = \"pe\"\nlevels = [\n  { level = \"DRAM\", loops = [\"n=*\", \"k=*\", \"m=*\"] },\n  { level = \"L2\" },\n  { level = \"Buf\" },\n  { level = \"RF\" },\n]\n";
    let mapping = CascadeMapping::from_toml(text, &c, &arch).unwrap();
    let want = count(&c, &mapping.nests[0]);
    let z = mapping.nests[0].operands.iter().position(|o| o.is_output).unwrap();
    let dram = want.access[z][0];
    assert_eq!(dram.updates, k * m * n);
    assert_eq!(dram.reads, (k - 1) * m * n);
    // Inside, each element's tile lives one step: every update but the first of a residency
    // reads (here: none, one point per residency), and each drain reads the tile once.
    assert_eq!(want.access[z][3].reads, k * m * n);
    let ins = common::inputs(&c, 1);
    let exec = execute(&c, &mapping, &ins);
    assert_eq!(exec.counts[0].access[z][0], dram);
}

#[test]
fn a_selection_is_not_read_inside_the_group_that_produces_it() {
    let ds = DoubleSparsity {
        batch: 2,
        heads: 2,
        kv_heads: 2,
        context: 6,
        head_dim: 4,
        label_channels: 2,
        selected: 3,
        elem_bytes: 2,
        label_bits: 16,
        predict_next: false,
    };
    let c = ds.cascade().unwrap();
    let mut spec = (0..).map(|seed| common::random_mapping(&c, seed)).find(|s| s.groups.is_empty()).unwrap();
    let ok = CascadeMapping::resolve(&spec, &c, &common::arch());
    assert!(ok.is_ok(), "{:?}", ok.err());
    let members = ["I", "QK"];
    for m in spec.einsums.iter_mut().filter(|m| members.contains(&m.einsum.as_str())) {
        for lv in &mut m.levels {
            lv.loops.retain(|l| !l.starts_with("b="));
        }
    }
    spec.groups.push(strata_mappings::spec::GroupSpec {
        name: "select-and-read".into(),
        prefix: vec!["b=*".into()],
        members: members.iter().map(|m| m.to_string()).collect(),
        pipelining: strata_mappings::spec::Pipelining::Sequential,
        shared: vec![],
    });
    let err = CascadeMapping::resolve(&spec, &c, &common::arch()).unwrap_err().to_string();
    assert!(err.contains("mapping.einsums[3]") && err.contains("only once complete"), "{err}");
}

/// What a group may not recompute, each refused with the key and the reason: a member whose
/// partial sums the group's loops split, a group loop over a rank no member iterates.
#[test]
fn recompute_refuses_what_cannot_be_run_again() {
    let c = common::low_rank_chain(3, 2, 4, 3);
    let arch = common::arch();
    let no_f = |s: &strata_mappings::spec::MappingSpec| !s.groups[0].prefix.iter().any(|p| p.contains("f="));
    let base = (0..).map(|seed| common::recompute_mapping(&c, seed)).find(no_f).unwrap();
    assert!(CascadeMapping::resolve(&base, &c, &arch).is_ok());
    // `T` lacks `n` and reduces `r`: with the group also looping over `r`, each step would
    // recompute a partial sum of `T`.
    let mut spec = base.clone();
    for m in &mut spec.einsums {
        for lv in &mut m.levels {
            lv.loops.retain(|l| !l.starts_with("r="));
        }
    }
    let at = if spec.groups[0].prefix[0].starts_with("L2:") { "L2:" } else { "" };
    spec.groups[0].prefix.push(format!("{at}r=*"));
    let err = CascadeMapping::resolve(&spec, &c, &arch).unwrap_err().to_string();
    assert!(
        err.contains("mapping.groups[0].prefix")
            && err.contains("member `T` lacks rank `n`")
            && err.contains("partial sums over the group loop `r`"),
        "{err}"
    );
    // A loop over a rank of the cascade that no member iterates is refused by the group.
    let c = strata_workloads::CascadeSpec::from_toml(
        "[cascade]\nname = \"x\"\nranks = { m = 3, r = 2, f = 4, n = 3, z = 2 }\n[[cascade.einsums]]\nexpr = \"T[m,f] = P[m,r] * B[r,f]\"\n[[cascade.einsums]]\nexpr = \"Y[m,n] = T[m,f] * W[f,n]\"\n[[cascade.einsums]]\nexpr = \"U[z] = V[z] * V[z]\"\n",
    )
    .unwrap()
    .build()
    .unwrap();
    let mut spec = (0..).map(|seed| common::recompute_mapping(&c, seed)).find(no_f).unwrap();
    spec.groups[0].prefix.push(format!("{at}z=2"));
    spec.einsums.push(strata_mappings::spec::EinsumMappingSpec {
        einsum: "U".into(),
        unit: "pe".into(),
        levels: common::LEVELS
            .iter()
            .enumerate()
            .map(|(i, l)| strata_mappings::spec::LevelSpec {
                level: l.to_string(),
                loops: if i == 0 { vec!["z=*".into()] } else { vec![] },
                keep: None,
                bypass: None,
            })
            .collect(),
    });
    let err = CascadeMapping::resolve(&spec, &c, &arch).unwrap_err().to_string();
    assert!(err.contains("no member of group `fused` iterates over rank `z`"), "{err}");
}
