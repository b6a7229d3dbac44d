//! The mapper against brute force and against the hand-written preset.

mod common;

use strata_arch::Arch;
use strata_mappings::CascadeMapping;
use strata_mappings::mapper::{Mapspace, Strategy, to_spec};
use strata_mappings::spec::MappingSpec;
use strata_sim::{evaluate, quick};
use strata_workloads::Cascade;

fn fusemax() -> Arch {
    strata_arch::presets::load("fusemax").unwrap().unwrap()
}

fn latency(arch: &Arch, c: &Cascade) -> impl Fn(&strata_mappings::EinsumNest) -> Option<f64> + Sync {
    move |n| {
        let q = quick(arch, c, n);
        q.fits.then_some(q.cycles)
    }
}

#[test]
fn found_mappings_round_trip_through_the_spec() {
    let arch = fusemax();
    let c = common::gemm(512, 768, 1024);
    let unit = arch.unit_id("pe2d").unwrap();
    let space = Mapspace::new(&c, 0, &arch, unit, false);
    let (nest, cost) = space.search(Strategy::Exhaustive, &latency(&arch, &c)).unwrap();
    let spec = MappingSpec {
        name: "found".into(),
        description: String::new(),
        einsums: vec![to_spec(&c, &arch, &nest)],
        groups: vec![],
    };
    let resolved = CascadeMapping::resolve(&spec, &c, &arch).unwrap();
    let ev = evaluate(&arch, &c, &resolved);
    assert!((ev.cycles - cost).abs() <= 1e-9 * cost, "{} vs {cost}", ev.cycles);
    assert!(ev.violations.is_empty());
}

#[test]
fn heuristics_never_beat_exhaustive_and_exhaustive_beats_the_preset() {
    let arch = fusemax();
    let c = common::gemm(1024, 1024, 1024);
    let unit = arch.unit_id("pe2d").unwrap();
    let cost = latency(&arch, &c);
    let space = Mapspace::new(&c, 0, &arch, unit, false);
    let best = space.search(Strategy::Exhaustive, &cost).unwrap().1;
    let greedy = space.search(Strategy::Greedy, &cost).unwrap().1;
    let random = space.search(Strategy::Random { samples: 500, seed: 7 }, &cost).unwrap().1;
    assert!(greedy >= best && random >= best, "{greedy} {random} {best}");
    // The hand-written output-stationary preset is one point of a larger space: never better.
    let preset = strata_mappings::presets::find("gemm-fusemax").unwrap().text;
    let m = CascadeMapping::from_toml(preset, &c, &arch).unwrap();
    assert!(best <= evaluate(&arch, &c, &m).cycles);
    // A 1024³ GEMM has 2·1024³ MACs: 16384 cycles on 65536 PEs is the floor.
    assert!(best >= 16384.0);
}

#[test]
fn exhaustive_search_is_deterministic_across_thread_counts() {
    let arch = fusemax();
    let c = common::gemm(256, 3072, 768);
    let unit = arch.unit_id("pe2d").unwrap();
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let space = Mapspace::new(&c, 0, &arch, unit, true);
            let energy = |n: &strata_mappings::EinsumNest| {
                let q = quick(&arch, &c, n);
                q.fits.then_some(q.energy_pj * q.cycles)
            };
            space.search(Strategy::Exhaustive, &energy).unwrap()
        })
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
}

#[test]
fn milp_tile_search_finds_a_feasible_mapping_no_better_than_exhaustive() {
    let arch = fusemax();
    for (m, n, k) in [(1024, 1024, 1024), (4096, 768, 3072), (65536, 768, 768)] {
        let c = common::gemm(m, n, k);
        let unit = arch.unit_id("pe2d").unwrap();
        let cost = latency(&arch, &c);
        let space = Mapspace::new(&c, 0, &arch, unit, true);
        let best = space.search(Strategy::Exhaustive, &cost).unwrap().1;
        let (nest, milp) = space.search(Strategy::Milp { seconds: 1.0 }, &cost).unwrap();
        assert!(quick(&arch, &c, &nest).fits);
        assert!(milp >= best, "{milp} < {best}");
        eprintln!("{m}×{n}×{k}: MILP {milp} cycles, exhaustive {best} cycles ({:.3}×)", milp / best);
        // The proxy objective is only a proxy; it should still land within 2× of the optimum.
        assert!(milp <= 2.0 * best, "{m}×{n}×{k}: MILP {milp} vs exhaustive {best}");
    }
}

#[test]
fn bypassing_mappings_round_trip_and_can_win() {
    let arch = fusemax();
    let c = common::gemm(2048, 2048, 64);
    let unit = arch.unit_id("pe2d").unwrap();
    let space = Mapspace::new(&c, 0, &arch, unit, false);
    // The best mapping among those that bypass the global buffer for some tensor.
    let bypassing = |n: &strata_mappings::EinsumNest| {
        let q = quick(&arch, &c, n);
        (q.fits && n.operands.iter().any(|o| !o.keep[1])).then_some(q.energy_pj)
    };
    let (nest, energy) = space.search(Strategy::Exhaustive, &bypassing).unwrap();
    let spec = MappingSpec {
        name: "bypass".into(),
        description: String::new(),
        einsums: vec![to_spec(&c, &arch, &nest)],
        groups: vec![],
    };
    let resolved = CascadeMapping::resolve(&spec, &c, &arch).unwrap();
    assert_eq!(
        resolved.nests[0].operands.iter().map(|o| o.keep.clone()).collect::<Vec<_>>(),
        nest.operands.iter().map(|o| o.keep.clone()).collect::<Vec<_>>()
    );
    let ev = evaluate(&arch, &c, &resolved);
    assert!((ev.energy_pj - energy).abs() <= 1e-9 * energy);
    // With k = 64 the output-stationary tiles need little buffering: skipping the buffer's
    // read and write energy makes a bypassing mapping the least-energy one of the whole space.
    let energy_only = |n: &strata_mappings::EinsumNest| {
        let q = quick(&arch, &c, n);
        q.fits.then_some(q.energy_pj)
    };
    let (best, _) = space.search(Strategy::Exhaustive, &energy_only).unwrap();
    assert!(best.operands.iter().any(|o| !o.keep[1]), "the least-energy mapping bypasses something");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, failure_persistence: None, ..Default::default() })]

    /// The fine mapspace (every divisor, the loop order at every level) contains the coarse one
    /// (power-of-four ladder, the root's order only), so its exhaustive optimum is never worse;
    /// on FuseMax's machine the global buffer's loop order is one more decision (6 orders).
    #[test]
    fn the_fine_mapspace_never_loses_to_the_coarse_one(m in 1u64..40, n in 1u64..40, k in 1u64..40) {
        let arch = fusemax();
        let c = common::gemm(m, n, k);
        let unit = arch.unit_id("pe2d").unwrap();
        let cost = |nest: &strata_mappings::EinsumNest| {
            let q = quick(&arch, &c, nest);
            q.fits.then_some(q.energy_pj)
        };
        let coarse = Mapspace::new(&c, 0, &arch, unit, false);
        let fine = Mapspace::new(&c, 0, &arch, unit, true);
        proptest::prop_assert_eq!(fine.size() % 6, 0);
        let a = coarse.search(Strategy::Exhaustive, &cost).unwrap().1;
        let b = fine.search(Strategy::Exhaustive, &cost).unwrap().1;
        proptest::prop_assert!(b <= a * (1.0 + 1e-12), "fine {b} > coarse {a}");
    }
}

/// The fusion search weighs recompute against bytes on a low-rank FFN layer
/// (`T = P · B`, then `Y = T · W`, FlashSVD's rebuild and down projection): with FuseMax's
/// 16 MiB buffer a block of rows of `T` stays on chip and nothing is computed twice; with a
/// 256 KiB buffer the search streams `Y` over the FFN's width and recomputes `T` for each block
/// of output columns, which beats every plan that computes `T` once.
#[test]
fn the_fusion_search_weighs_recompute_against_bytes() {
    let text = "[cascade]\nname = \"low-rank-ffn\"\nranks = { m = 4096, r = 64, f = 3072, n = 768 }\n\
                [[cascade.einsums]]\nexpr = \"T[m,f] = P[m,r] * B[r,f]\"\n\
                [[cascade.einsums]]\nexpr = \"Y[m,n] = T[m,f] * W[f,n]\"\n";
    let c = strata_workloads::CascadeSpec::from_toml(text).unwrap().build().unwrap();
    let big = fusemax();
    let small = Arch::from_toml(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../arch/presets/fusemax.toml"))
            .unwrap()
            .replace("capacity = \"16 MiB\"", "capacity = \"256 KiB\""),
    )
    .unwrap();
    let recomputes = |m: &CascadeMapping| {
        m.nests.iter().any(|n| {
            let ranks = &c.einsums()[n.einsum].iteration_ranks;
            n.loops[..n.n_prefix].iter().any(|l| !ranks.contains(&l.rank))
        })
    };
    let search = |arch: &Arch, allow: bool| {
        let space = strata_mappings::fusion::FusionSpace::new(&c, arch).unwrap();
        let cost = |spec: &MappingSpec| {
            let m = CascadeMapping::resolve(spec, &c, arch).ok()?;
            if !allow && recomputes(&m) {
                return None;
            }
            let ev = evaluate(arch, &c, &m);
            let tie = ev.einsums.iter().map(|e| e.cycles).sum();
            ev.violations.is_empty().then_some(strata_mappings::fusion::Cost { objective: ev.cycles, tie })
        };
        let found = space.search(&cost, 5000, &|| false, &|_, _| {}).unwrap();
        (found.cost, recomputes(&CascadeMapping::resolve(&found.spec, &c, arch).unwrap()))
    };
    let (with, recomputed) = search(&big, true);
    assert!(!recomputed);
    assert_eq!(with, search(&big, false).0);
    let (with, recomputed) = search(&small, true);
    let (without, _) = search(&small, false);
    assert!(recomputed && with < without, "{with} with recompute, {without} without");
}
