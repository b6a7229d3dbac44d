//! `strata bench`: how fast the analytical model evaluates mappings, on one core.
//!
//! Mappings are resolved before the clock starts, as a mapper would hold them; the timed part
//! is the model itself (access counts, cycles, energy, capacity). Results are reported per
//! second of one thread.

use std::fmt::Write;
use std::hint::black_box;
use std::time::{Duration, Instant};

use strata_mappings::CascadeMapping;
use strata_mappings::spec::{EinsumMappingSpec, LevelSpec, MappingSpec};
use strata_sim::engine::{dram, nand, tiles};
use strata_sim::{evaluate, quick};

use crate::error::{CliError, CliResult};

/// Runs `f` over `items` repeatedly for at least `budget`; returns evaluations per second.
fn rate<T>(items: &[T], budget: Duration, mut f: impl FnMut(&T)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for x in items {
            f(x);
        }
        n += items.len() as u64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs a simulation repeatedly for `budget` (at least once): its last result, and events and
/// runs per second, the events of a result counted by `events`.
fn event_rate<S>(
    budget: Duration,
    mut run: impl FnMut() -> CliResult<S>,
    events: impl Fn(&S) -> u64,
) -> CliResult<(S, f64, f64)> {
    let start = Instant::now();
    let mut last = run()?;
    let (mut total, mut runs) = (events(&last), 1u64);
    while start.elapsed() < budget {
        last = run()?;
        total += events(&last);
        runs += 1;
    }
    let t = start.elapsed().as_secs_f64();
    Ok((last, total as f64 / t, runs as f64 / t))
}

fn gemm_mappings(c: &strata_workloads::Cascade, arch: &strata_arch::Arch) -> CliResult<Vec<CascadeMapping>> {
    let mut out = Vec::new();
    let splits = [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
    for &tm in &splits[..5] {
        for &tn in &splits[..5] {
            for &tk in &splits {
                // DRAM iterates over (m, n, k) tiles; the buffer over the rest; 256×256 spatial.
                let levels = vec![
                    LevelSpec {
                        level: "DRAM".into(),
                        loops: vec!["m=*".into(), "n=*".into(), "k=*".into()],
                        keep: None,
                        bypass: None,
                    },
                    LevelSpec {
                        level: "GlobalBuffer".into(),
                        loops: vec![
                            format!("m={tm}"),
                            format!("n={tn}"),
                            format!("k={tk}"),
                            "m=256@x".into(),
                            "n=256@y".into(),
                        ],
                        keep: None,
                        bypass: None,
                    },
                    LevelSpec { level: "RF2D".into(), loops: vec![], keep: None, bypass: None },
                ];
                let spec = MappingSpec {
                    name: format!("gemm-{tm}-{tn}-{tk}"),
                    description: String::new(),
                    einsums: vec![EinsumMappingSpec { einsum: "Z".into(), unit: "pe2d".into(), levels }],
                    groups: vec![],
                };
                if let Ok(m) = CascadeMapping::resolve(&spec, c, arch) {
                    out.push(m);
                }
            }
        }
    }
    if out.is_empty() {
        return Err(CliError { code: 1, message: "no GEMM mapping resolved".into() });
    }
    Ok(out)
}

pub fn run(seconds: f64) -> CliResult<String> {
    let budget = Duration::from_secs_f64(seconds);
    let arch = crate::eval::arch("fusemax")?;
    let gemm = strata_workloads::CascadeSpec::from_toml(strata_workloads::presets::find("gemm").expect("preset").text)
        .and_then(|s| s.build())
        .map_err(|e| CliError::spec("preset gemm", &e))?;
    let mappings = gemm_mappings(&gemm, &arch)?;
    let nests: Vec<_> = mappings.iter().map(|m| m.nests[0].clone()).collect();
    let gemm_quick = rate(&nests, budget, |n| {
        black_box(quick(&arch, &gemm, black_box(n)));
    });
    let gemm_full = rate(&mappings, budget, |m| {
        black_box(evaluate(&arch, &gemm, black_box(m)));
    });
    let attention = crate::eval::cascade("attention-1pass", &crate::eval::EvalArgs::default())?;
    let preset = strata_mappings::presets::find("fusemax-1pass").expect("preset");
    let fm = CascadeMapping::from_toml(preset.text, &attention, &arch).map_err(|e| CliError::spec("preset", &e))?;
    let fusemax = rate(std::slice::from_ref(&fm), budget, |m| {
        black_box(evaluate(&arch, &attention, black_box(m)));
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "analytical model, one thread, {} GEMM mappings (1024³ on fusemax: DRAM → GlobalBuffer → RF2D):",
        nests.len()
    );
    let _ =
        writeln!(out, "  GEMM mapping, cost only (counts, cycles, energy, fit):  {:>12.0} evaluations/s", gemm_quick);
    let _ =
        writeln!(out, "  GEMM mapping, full report:                              {:>12.0} evaluations/s", gemm_full);
    let _ = writeln!(out, "  FuseMax 1-pass cascade (12 einsums), full report:      {:>12.0} evaluations/s", fusemax);
    let opts = tiles::Options {
        memory: tiles::Memory::Ideal,
        buffering: tiles::Buffering::Auto,
        budget: u64::MAX,
        max_steps: 0,
    };
    let (_, events, runs) = event_rate(
        budget,
        || tiles::run(&arch, &attention, black_box(&fm), opts).map_err(|e| CliError::engine("tile engine", &e)),
        |r| r.events,
    )?;
    let _ = writeln!(
        out,
        "cycle-approximate engine, one thread, FuseMax 1-pass lowered to tiles:  {events:>12.0} events/s ({runs:.1} runs/s)"
    );
    let _ = writeln!(out, "cycle-approximate engine, one thread, one DRAM channel (200,000 reads, window 32):");
    for (name, pattern) in
        [("hbm2", "sequential"), ("hbm2", "random"), ("ddr4-3200", "sequential"), ("ddr4-3200", "random")]
    {
        let org = strata_arch::arch::DramOrg::preset(name).expect("preset").map_err(|e| CliError::spec(name, &e))?;
        let t = dram::Timing::of(&org).map_err(|e| CliError::input(format!("{name}: {e}")))?;
        let reads = if pattern == "sequential" { dram::sequential(&t, 200_000) } else { dram::random(&t, 200_000, 7) };
        let (s, events, _) = event_rate(
            budget,
            || dram::run(&t, black_box(&reads), 32, u64::MAX).map_err(|e| CliError::engine(name, &e)),
            |s| s.events,
        )?;
        let _ = writeln!(
            out,
            "  {name:<10} {pattern:<10} {:>6.1}% of peak bandwidth   {events:>12.0} events/s",
            100.0 * s.bandwidth() / t.peak_bandwidth(),
        );
    }
    let _ = writeln!(out, "cycle-approximate engine, one thread, one flash drive (20,000 requests):");
    for (name, pattern, bytes, qd) in [
        ("mqsim-mlc", "random", 16u64 << 10, 64usize),
        ("mqsim-mlc-shipped", "random", 4 << 10, 32),
        ("m1-max-ssd", "sequential", 1 << 20, 32),
    ] {
        let org = strata_arch::arch::NandOrg::preset(name).expect("preset").map_err(|e| CliError::spec(name, &e))?;
        let t = nand::Timing::of(&org).map_err(|e| CliError::input(format!("{name}: {e}")))?;
        let reqs = if pattern == "sequential" {
            nand::sequential(bytes, 20_000)
        } else {
            // A drive with a translation layer is read over all its logical capacity.
            nand::random(bytes, 20_000, nand::logical_bytes(&t).unwrap_or(64 << 30), 11)
        };
        let (s, events, _) = event_rate(
            budget,
            || nand::run(&t, black_box(&reqs), qd, u64::MAX).map_err(|e| CliError::engine(name, &e)),
            |s| s.events,
        )?;
        let _ = writeln!(
            out,
            "  {name:<17} {pattern:<10} {:>4} KiB qd {qd:<3} {:>6.2} GB/s   {events:>12.0} events/s",
            bytes >> 10,
            s.bandwidth() / 1e9,
        );
    }
    // In-flash compute: one decode step, every GeMV split on the timing (a bisection of runs).
    let arch = crate::eval::arch("cambricon-llm-s")?;
    let sys = strata_mappings::system::System::from_toml(
        strata_mappings::system::preset("cambricon").expect("preset"),
        &arch,
    )
    .map_err(|e| CliError::spec("preset cambricon", &e))?;
    let m = crate::run::model("opt-6.7b")?;
    let (_, events, runs) = event_rate(
        budget,
        || crate::flash_compute::simulate(&arch, &sys, black_box(&m), 1024, u64::MAX),
        |o| o.events,
    )?;
    let _ = writeln!(
        out,
        "cycle-approximate engine, one thread, Cambricon-LLM S decoding OPT-6.7B (balanced splits):  {events:>12.0} events/s ({runs:.1} tokens/s simulated)"
    );
    // The one system model: a serving run of a 70B model on a composition of the InstInfer
    // machine's devices (weights tiered over GPU, host and SSD; cache and attention in 20 drives).
    let text = strata_arch::presets::text("a6000-csd").expect("preset").replace("count = 1", "count = 20");
    let arch = strata_arch::Arch::from_toml(&text).map_err(|e| CliError::spec("a6000-csd", &e))?;
    let system = strata_mappings::system::System::from_toml(SERVING_70B, &arch)
        .map_err(|e| CliError::spec("bench system", &e))?;
    let m = crate::run::model("llama2-70b")?;
    let run = strata_sim::engine::step::Run { batch: 16, prompt: 1024, generate: 1024 };
    let serve = || {
        strata_sim::engine::step::simulate(&arch, black_box(&m), &system, run, u64::MAX)
            .map_err(|e| CliError::input(format!("bench serving: {e}")))
    };
    // The first run measures the drives' read patterns on the NAND engine; later runs reuse them.
    let start = Instant::now();
    serve()?;
    let first = start.elapsed().as_secs_f64();
    let (_, _, runs) = event_rate(budget, serve, |_| 0)?;
    let _ = writeln!(
        out,
        "serving, one thread, Llama-2-70B on a6000-csd with 20 drives (prefill and two decode steps): {:.1} ms the first run (drive patterns measured), {:.2} ms a run after",
        1e3 * first,
        1e3 / runs
    );
    Ok(out)
}

/// The benchmark's composition (no paper ran it): weights tiered over the GPU, the host and the
/// SSD; the cache and decode attention in the drives.
const SERVING_70B: &str = r#"[system]
name = "tiered-70b"
usable = 0.8
[system.placement]
weights = { in = ["HBM", "HostDRAM", "SSD"], read = { block = "1 MiB", queue = 8 } }
kv_cache = { in = ["CSDFlash"], read = { block = "page", queue = 256 } }
[[system.assign]]
einsums = "attention"
phase = "decode"
unit = "csd-engine"
[[system.assign]]
einsums = "linear"
unit = "tensor"
[[system.assign]]
einsums = "*"
unit = "cuda"
"#;
