//! The engine's tile-level lowering against the analytical model: with ideal memories and
//! enough evenly loaded steps it agrees within 2%; with real memory timing, single buffering or
//! bursty loads it is never faster.

mod common;

use proptest::prelude::*;
use strata_arch::Arch;
use strata_mappings::CascadeMapping;
use strata_sim::engine::tiles::{self, Buffering, Memory, Options};
use strata_workloads::Cascade;

fn fusemax() -> Arch {
    strata_arch::presets::load("fusemax").unwrap().unwrap()
}

/// An output-stationary GEMM on FuseMax's 2D array: `mt × nt` DRAM steps of 256 × 256 output
/// tiles, the reduction `k` whole on chip.
fn os_mapping(c: &Cascade, arch: &Arch, mt: u64, nt: u64, order_mn: bool) -> CascadeMapping {
    let outer = if order_mn { format!("\"m={mt}\", \"n={nt}\"") } else { format!("\"n={nt}\", \"m={mt}\"") };
    let text = format!(
        "[mapping]\nname = \"os\"\n[[mapping.einsums]]\neinsum = \"Z\"\nunit = \"pe2d\"\nlevels = [\n  {{ level = \"DRAM\", loops = [{outer}] }},\n  {{ level = \"GlobalBuffer\", loops = [\"k=*\", \"m=256@x\", \"n=256@y\"] }},\n  {{ level = \"RF2D\" }},\n]\n"
    );
    CascadeMapping::from_toml(&text, c, arch).unwrap()
}

const IDEAL: Options = Options { memory: Memory::Ideal, buffering: Buffering::Double, budget: 1 << 24, max_steps: 0 };

/// FuseMax with real HBM2 timing on its DRAM level, as four channels: 200 ns per transfer and the
/// bandwidth the channel model sustains on a stream.
fn fusemax_real() -> Arch {
    let text = strata_arch::presets::text("fusemax").unwrap().replace(
        "read_energy = \"62.4 pJ\"        # 249.6 pJ",
        "latency = \"200 ns\"\nread_energy = \"62.4 pJ\"        # 249.6 pJ",
    );
    let hbm2 = strata_arch::arch::DRAM_PRESETS.iter().find(|p| p.0 == "hbm2").unwrap().1;
    let org = hbm2.split("[dram]").nth(1).unwrap().replace("channels = 1", "channels = 4");
    let text = text.replacen(
        "\n[[arch.levels]]\nname = \"GlobalBuffer\"",
        &format!("[arch.levels.dram]{org}\n[[arch.levels]]\nname = \"GlobalBuffer\""),
        1,
    );
    Arch::from_toml(&text).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random GEMM mappings on a 4-level machine (every kind of fan-out, keep and bypass): the
    /// engine moves exactly the counted off-chip bytes and, one Einsum at a time, never beats the
    /// analytical model's bound.
    #[test]
    fn random_mappings_move_the_counted_bytes(m in 1u64..40, n in 1u64..40, k in 1u64..40, seed in any::<u64>()) {
        let arch = common::arch();
        let c = common::gemm(m, n, k);
        let spec = common::random_mapping(&c, seed);
        let Ok(mapping) = CascadeMapping::resolve(&spec, &c, &arch) else { return Ok(()) };
        for buffering in [Buffering::Double, Buffering::Single] {
            let r = tiles::run(&arch, &c, &mapping, Options { buffering, ..IDEAL }).unwrap();
            let dram = r.ports.iter().find(|p| p.0 == "DRAM").map_or(0, |p| p.1.bytes);
            prop_assert_eq!(dram, r.evaluation.offchip_bytes);
            // Task durations are whole picoseconds: each may round half a picosecond down.
            let slack = r.slices.len() as f64 * 0.5e-12 * arch.clock.0;
            prop_assert!(r.evaluation.cycles >= r.analytical_cycles - slack, "{} < {}", r.evaluation.cycles, r.analytical_cycles);
        }
    }

    /// Ideal memories, double buffering, at least 64 evenly loaded steps: the engine's cycles are
    /// within 2% of the analytical model's, and never fewer.
    #[test]
    fn ideal_engine_matches_the_analytical_model(mt in 8u64..=24, nt in 8u64..=24, k in prop::sample::select(vec![64u64, 256, 1024, 4096]), mn in any::<bool>()) {
        let arch = fusemax();
        let c = common::gemm(256 * mt, 256 * nt, k);
        let m = os_mapping(&c, &arch, mt, nt, mn);
        let r = tiles::run(&arch, &c, &m, IDEAL).unwrap();
        let ratio = r.evaluation.cycles / r.analytical_cycles;
        prop_assert!(ratio >= 1.0 - 1e-6, "engine faster: {ratio}");
        prop_assert!(ratio <= 1.02, "{mt}×{nt}, k {k}: engine / analytical = {ratio}");
        // Every byte the counts move off chip crosses the DRAM port.
        let dram = r.ports.iter().find(|p| p.0 == "DRAM").unwrap().1.bytes;
        prop_assert!((dram as f64 / r.evaluation.offchip_bytes as f64 - 1.0).abs() < 1e-3, "{dram} vs {}", r.evaluation.offchip_bytes);
    }

    /// Real DRAM timing, single buffering and few steps only ever add time.
    #[test]
    fn the_engine_is_never_faster_than_the_bound(mt in 1u64..=12, nt in 1u64..=12, k in prop::sample::select(vec![64u64, 512, 2048])) {
        let (ideal_arch, real_arch) = (fusemax(), fusemax_real());
        let c = common::gemm(256 * mt, 256 * nt, k);
        let m = os_mapping(&c, &real_arch, mt, nt, true);
        let real = tiles::run(&real_arch, &c, &m, Options { memory: Memory::Real, ..IDEAL }).unwrap();
        prop_assert!(real.evaluation.cycles >= real.analytical_cycles * (1.0 - 1e-6));
        // One track per memory channel; together they move every off-chip byte.
        let channels: Vec<_> = real.ports.iter().filter(|p| p.0.starts_with("DRAM ch")).collect();
        prop_assert_eq!(channels.len(), 4);
        let bytes: u64 = channels.iter().map(|p| p.1.bytes).sum();
        prop_assert!((bytes as f64 / real.evaluation.offchip_bytes as f64 - 1.0).abs() < 1e-3);
        let ideal = tiles::run(&ideal_arch, &c, &os_mapping(&c, &ideal_arch, mt, nt, true), IDEAL).unwrap();
        prop_assert!(real.evaluation.cycles >= ideal.evaluation.cycles);
        let single = tiles::run(&ideal_arch, &c, &os_mapping(&c, &ideal_arch, mt, nt, true), Options { buffering: Buffering::Single, ..IDEAL }).unwrap();
        prop_assert!(single.evaluation.cycles >= ideal.evaluation.cycles * (1.0 - 1e-9));
    }
}

/// A long step sequence run in coarser steps keeps every byte and never beats the bound; the
/// unit's track has at most `max_steps` steps.
#[test]
fn coarsened_steps_keep_the_totals() {
    let arch = fusemax();
    let c = common::gemm(256 * 24, 256 * 24, 512);
    let m = os_mapping(&c, &arch, 24, 24, true);
    let fine = tiles::run(&arch, &c, &m, IDEAL).unwrap();
    let coarse = tiles::run(&arch, &c, &m, Options { max_steps: 50, ..IDEAL }).unwrap();
    let bytes = |r: &tiles::Run| r.ports.iter().map(|p| p.1.bytes).sum::<u64>();
    assert_eq!(bytes(&fine), bytes(&coarse));
    assert_eq!(bytes(&coarse), coarse.evaluation.offchip_bytes);
    let steps = coarse.slices.iter().filter(|s| coarse.tracks[s.track].0 == "pe2d").count();
    assert!((40..=50).contains(&steps), "{steps}");
    assert!(coarse.evaluation.cycles >= coarse.analytical_cycles * (1.0 - 1e-6));
    assert!(coarse.evaluation.cycles <= coarse.analytical_cycles * 1.05);
}

/// One step cannot overlap anything: load, compute and drain run back to back, and the unit's
/// stall breakdown says it waited for its loads.
#[test]
fn one_step_serialises_load_compute_and_drain() {
    let arch = fusemax();
    let c = common::gemm(256, 256, 1024);
    let m = os_mapping(&c, &arch, 1, 1, true);
    let r = tiles::run(&arch, &c, &m, IDEAL).unwrap();
    let ev = &r.evaluation.einsums[0];
    let dram = ev.level_cycles[0].1;
    let work = ev.compute_cycles.max(ev.level_cycles.iter().skip(1).map(|x| x.1).fold(0.0, f64::max));
    assert!((r.evaluation.cycles / (dram + work) - 1.0).abs() < 1e-4, "{} vs {}", r.evaluation.cycles, dram + work);
    let pe = &r.units.iter().find(|u| u.0 == "pe2d").unwrap().1;
    assert!(pe.waiting_for_loads > 0.0 && pe.busy > 0.0);
    // Slices: one per task, on the unit and the DRAM tracks, in time order.
    let names: Vec<String> = r.slices.iter().map(|s| s.label.name(&c)).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(r.slices.iter().all(|s| s.end >= s.start));
}

/// A fused cascade (FuseMax's 1-pass attention mapping) lowers and runs; the engine takes at
/// least as long as the busiest resource's analytical time.
#[test]
fn fused_attention_lowers_and_runs() {
    let p = strata_mappings::presets::find("fusemax-1pass").unwrap();
    let arch = fusemax();
    let w = strata_workloads::presets::find(p.workload).unwrap();
    let c = match strata_workloads::WorkloadSpec::from_toml(w.text).unwrap() {
        strata_workloads::WorkloadSpec::Attention(s) => {
            s.shape().unwrap().cascade_spec(&s.name, &s.description).build().unwrap()
        }
        _ => unreachable!(),
    };
    let m = CascadeMapping::from_toml(p.text, &c, &arch).unwrap();
    let r = tiles::run(&arch, &c, &m, IDEAL).unwrap();
    assert!(r.evaluation.cycles > 0.0 && r.events > 0);
    let busiest = r.ports.iter().map(|p| p.1.busy).chain(r.units.iter().map(|u| u.1.busy)).fold(0.0, f64::max);
    assert!(r.evaluation.seconds >= busiest * (1.0 - 1e-9));
    // Every off-chip byte the counts move crosses the DRAM port (per-step rounding aside).
    let dram = r.ports.iter().find(|p| p.0 == "DRAM").unwrap().1.bytes as f64;
    assert!((dram / r.evaluation.offchip_bytes as f64 - 1.0).abs() < 1e-3, "{dram} vs {}", r.evaluation.offchip_bytes);
    let e = tiles::run(&arch, &c, &m, Options { budget: 10, ..IDEAL }).unwrap_err();
    assert!(e.to_string().contains("budget"), "{e}");
}
