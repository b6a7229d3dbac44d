//! `strata dram`: the cycle-approximate engine's DRAM channel on a microbenchmark — a sequential
//! stream, random bursts, writes, or reads and writes in runs of 16 — with achieved against peak bandwidth and the closed forms beside.

use std::fmt::Write as _;

use strata_arch::arch::DramOrg;
use strata_sim::engine::dram::{self, Refresh, Timing};

use crate::error::{CliError, CliResult};

pub struct Args {
    pub standard: String,
    pub pattern: String,
    pub reads: u64,
    pub window: usize,
    pub max_events: u64,
}

fn org(arg: &str) -> CliResult<DramOrg> {
    let (text, source) = crate::load::preset_or_file(arg, "a DRAM", strata_arch::arch::DRAM_PRESETS)?;
    DramOrg::from_toml(&text).map_err(|e| CliError::spec(&source, &e))
}

pub fn run(a: &Args) -> CliResult<String> {
    let o = org(&a.standard)?;
    let t = Timing::of(&o).map_err(|e| CliError::input(format!("{}: {e}", a.standard)))?;
    let reads = match a.pattern.as_str() {
        "sequential" => dram::sequential(&t, a.reads),
        "random" => dram::random(&t, a.reads, 7),
        "write" => dram::read_write(&t, a.reads, 0),
        "read-write" => dram::read_write(&t, a.reads, 16),
        other => {
            return Err(CliError::input(format!(
                "--pattern: `{other}` is not `sequential`, `random`, `write` or `read-write`"
            )));
        }
    };
    let s = dram::run(&t, &reads, a.window, a.max_events).map_err(|e| CliError::engine(&a.standard, &e))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} channel, {} {}-byte requests ({}), controller window {}",
        o.standard, a.reads, t.burst_bytes, a.pattern, a.window
    );
    let peak = t.peak_bandwidth();
    let _ = writeln!(
        out,
        "  achieved   {:>10.3} GB/s  ({:.1}% of the {:.3} GB/s peak)",
        s.bandwidth() / 1e9,
        100.0 * s.bandwidth() / peak,
        peak / 1e9
    );
    let _ = writeln!(
        out,
        "  requests served from an open row {}; activations of a closed bank {}, of a bank holding another row {}; writes {}",
        s.hits, s.misses, s.conflicts, s.writes
    );
    let refresh = match t.refresh {
        Refresh::None => "none".to_string(),
        Refresh::AllBank { refi, rfc } => {
            format!("all-bank, tRFC/tREFI = {:.1}%", 100.0 * rfc.0 as f64 / refi.0 as f64)
        }
        Refresh::PerBank { refi, rfc } => {
            format!("per-bank, one bank every {:.0} ns for {:.0} ns", refi.seconds() * 1e9, rfc.seconds() * 1e9)
        }
    };
    let _ = writeln!(out, "  refresh    {refresh}; {} refreshes", s.refreshes);
    let _ = writeln!(out, "  simulated  {:.3} µs in {} events", s.seconds * 1e6, s.events);
    Ok(out)
}
