//! `strata dram`: the cycle-approximate engine's DRAM channel on a microbenchmark — a sequential
//! stream, random bursts, writes, or reads and writes in runs of 16 — queued at once, in a closed
//! loop at a queue depth, or open loop at an offered load (or a sweep of loads): achieved against
//! peak bandwidth, request latency (mean, p50, p99, max) and the closed forms beside.

use std::fmt::Write as _;

use strata_arch::arch::DramOrg;
use strata_arch::dram_map::{AddressField, AddressMapping};
use strata_sim::engine::dram::{self, Arrivals, Refresh, Timing, Writes};

use crate::error::{CliError, CliResult};
use crate::load_curve;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// DRAM preset (hbm2, hbm3, ddr4-3200, ddr5-4800, lpddr5-6400), a file with a [dram] table, or an
    /// architecture's DRAM as ARCH:LEVEL.
    #[arg(long, default_value = "hbm2")]
    pub standard: String,
    /// `sequential`, `random`, `write` (a sequential write stream) or `read-write` (runs of 16).
    #[arg(long, default_value = "sequential")]
    pub pattern: String,
    /// Requests in the stream (1 to 10⁷).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub reads: u64,
    /// Requests the controller can choose among (1 to 4096).
    #[arg(long, default_value_t = 32, value_parser = crate::cli::window)]
    pub window: usize,
    /// Stop with an error after this many events.
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: u64,
    /// Channels (HBM pseudo-channels), replacing the standard's count.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub channels: Option<u64>,
    /// Ranks per channel, replacing the standard's count (more than one needs `tRTRS`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub ranks: Option<u64>,
    /// Address mapping, most significant field first (`RoBaCoBgCh`; fields Ch, Ra, Bg, Ba, Ro,
    /// Co), replacing the standard's; a field named twice is split into chunks, each but one
    /// with its width in bits (`RoBaCoBgCo1`).
    #[arg(long)]
    pub mapping: Option<String>,
    /// Close each row after its access unless a waiting request hits it (default: open page).
    #[arg(long)]
    pub close_page: bool,
    /// Per-bank refresh in bank order (Ramulator's) instead of a due bank no request needs.
    #[arg(long)]
    pub refresh_in_order: bool,
    /// Hold writes in a 32-entry queue of their own, drained from 80% full down to 20% (Ramulator
    /// 2's controller), instead of serving them from the read window in stream order.
    #[arg(long)]
    pub write_queue: bool,
    /// A closed loop: this many requests in flight, the next arriving as one completes
    /// (default: every request queued at time 0).
    #[arg(long, conflicts_with_all = ["rate", "load_sweep"], value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub queue_depth: Option<u64>,
    /// An open loop: requests arrive evenly spaced at this offered load, in GB/s.
    #[arg(long, conflicts_with = "load_sweep")]
    pub rate: Option<f64>,
    /// Latency against offered load: open loops from 5% to 100% of what the pattern sustains
    /// (a table, dram-latency.csv and a plot in --out).
    #[arg(long)]
    pub load_sweep: bool,
    /// Where --load-sweep writes.
    #[arg(long, default_value = "strata-out/dram")]
    pub out: std::path::PathBuf,
    /// Requests from a trace file instead of --pattern: one per line, `time_ns R|W address bytes`
    /// (address decimal or 0x hex; a request of several bursts splits into consecutive bursts;
    /// `#` starts a comment).
    #[arg(long, conflicts_with_all = ["rate", "load_sweep"])]
    pub trace: Option<std::path::PathBuf>,
}

/// Reads a request trace (`time_ns R|W address bytes` per line, see [`crate::request_trace`]),
/// each request split into the bursts it covers.
pub fn trace(path: &std::path::Path, burst: u64) -> CliResult<Vec<dram::Request>> {
    let mut out = Vec::new();
    for r in crate::request_trace::read(path)? {
        let at = strata_sim::engine::Time((r.ns * 1e3).round() as u64);
        // `read` checked that the request ends below 2^64.
        out.extend((r.addr / burst..=(r.addr + r.bytes - 1) / burst).map(|b| dram::Request {
            addr: b * burst,
            at,
            write: r.write,
        }));
    }
    Ok(out)
}

/// A DRAM: a preset, a file with a `[dram]` table, or an architecture's level (`ARCH:LEVEL`).
fn org(arg: &str) -> CliResult<DramOrg> {
    if let Some((level, source)) = crate::load::arch_level(arg)? {
        return level.dram.ok_or_else(|| CliError::input(format!("`{arg}`: {source} has no [dram] organisation")));
    }
    let (text, source) = crate::load::preset_or_file(arg, "a DRAM", strata_arch::arch::DRAM_PRESETS)
        .map_err(|e| CliError::input(format!("{e}; or name an architecture's DRAM as ARCH:LEVEL")))?;
    DramOrg::from_toml(&text).map_err(|e| CliError::spec(&source, &e))
}

pub fn run(a: &Args) -> CliResult<String> {
    let mut o = org(&a.standard)?;
    if let Some(n) = a.channels {
        o.channels = n;
        if !o.address_mapping.has(AddressField::Channel) {
            o.address_mapping = AddressMapping::default_for(n, o.ranks);
        }
    }
    if let Some(n) = a.ranks {
        o.ranks = n;
        if !o.address_mapping.has(AddressField::Rank) {
            o.address_mapping = AddressMapping::default_for(o.channels, n);
        }
    }
    if let Some(name) = &a.mapping {
        o.address_mapping = AddressMapping::parse(name, o.channels, o.ranks, "--mapping")
            .map_err(|e| CliError::input(format!("{}: {}", e.path, e.reason)))?;
    }
    let mut t = Timing::of(&o).map_err(|e| CliError::input(format!("{}: {e}", a.standard)))?;
    t.close_page = a.close_page;
    t.refresh_in_order = a.refresh_in_order;
    let reads = match (&a.trace, a.pattern.as_str()) {
        (Some(path), _) => trace(path, t.burst_bytes)?,
        (None, "sequential") => dram::sequential(&t, a.reads),
        (None, "random") => dram::random(&t, a.reads, 7),
        (None, "write") => dram::read_write(&t, a.reads, 0),
        (None, "read-write") => dram::read_write(&t, a.reads, 16),
        (None, other) => {
            return Err(CliError::input(format!(
                "--pattern: `{other}` is not `sequential`, `random`, `write` or `read-write`"
            )));
        }
    };
    let arrivals = match (a.queue_depth, a.rate) {
        (Some(d), _) => Arrivals::Closed { depth: d as usize },
        _ => Arrivals::AsGiven,
    };
    let reads = match a.rate {
        Some(r) if !(r.is_finite() && r > 0.0) => {
            return Err(CliError::input(format!("--rate: {r} GB/s is not a positive offered load")));
        }
        Some(r) => dram::at_rate(&reads, r * 1e9 / t.burst_bytes as f64),
        None => reads,
    };
    let writes = if a.write_queue { Writes::RAMULATOR } else { Writes::Window };
    let s = dram::simulate(&t, &reads, arrivals, a.window, writes, a.max_events)
        .map_err(|e| CliError::engine(&a.standard, &e))?;
    let mut out = String::new();
    let how = match (a.queue_depth, a.rate) {
        (Some(d), _) => format!("closed loop at queue depth {d}"),
        (_, Some(r)) => format!("open loop at {r} GB/s offered"),
        _ if a.trace.is_some() => "arriving at the trace's times".to_string(),
        _ => "all queued at time 0".to_string(),
    };
    let _ = writeln!(
        out,
        "{}, {} channel(s) mapped {}, {} {}-byte requests ({}, {how}), controller window {} per channel{}",
        o.standard,
        t.channels,
        t.mapping.name(),
        reads.len(),
        t.burst_bytes,
        a.trace.as_ref().map_or(a.pattern.clone(), |p| format!("trace {}", p.display())),
        a.window,
        if a.write_queue { ", writes drained from a 32-entry queue (80%/20%)" } else { "" }
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
    let ns = |x: f64| x * 1e9;
    let _ = writeln!(
        out,
        "  latency    mean {:.1} ns, p50 {:.1} ns, p99 {:.1} ns, max {:.1} ns (unloaded read to a closed bank: {:.1} ns = tRCD + CL + nBL)",
        ns(s.latency.mean),
        ns(s.latency.p50),
        ns(s.latency.p99),
        ns(s.latency.max),
        ns(unloaded(&t))
    );
    if let Some(e) = s.energy {
        let _ = writeln!(
            out,
            "  energy     {:.3} µJ ({:.2} pJ/bit): activate {:.3}, read {:.3}, write {:.3}, refresh {:.3}, background {:.3} µJ",
            e.total() * 1e6,
            e.total() * 1e12 / (8.0 * s.bytes as f64),
            e.activate * 1e6,
            e.read * 1e6,
            e.write * 1e6,
            e.refresh * 1e6,
            e.background * 1e6
        );
    }
    let _ = writeln!(out, "  simulated  {:.3} µs in {} events", s.seconds * 1e6, s.events);
    if a.load_sweep {
        return sweep(a, &t, &reads, &s, out);
    }
    Ok(out)
}

/// An isolated read to a closed bank: activate, read, burst.
fn unloaded(t: &Timing) -> f64 {
    (t.rcd + t.cl + t.n_bl).seconds()
}

/// Open loops at 5% to 100% of what the stream sustained queued at once: latency against
/// offered load, as a table, `dram-latency.csv` and a plot.
fn sweep(a: &Args, t: &Timing, reads: &[dram::Request], sustained: &dram::Stats, mut out: String) -> CliResult<String> {
    use rayon::prelude::*;
    let rate = reads.len() as f64 / sustained.seconds;
    let writes = if a.write_queue { Writes::RAMULATOR } else { Writes::Window };
    let points: Vec<load_curve::Point> = load_curve::shares()
        .par_iter()
        .map(|&f| {
            let s =
                dram::simulate(t, &dram::at_rate(reads, f * rate), Arrivals::AsGiven, a.window, writes, a.max_events)
                    .map_err(|e| CliError::engine(&a.standard, &e))?;
            let offered = f * sustained.bandwidth() / 1e9;
            Ok(load_curve::Point { share: f, offered, achieved: s.bandwidth() / 1e9, latency: s.latency })
        })
        .collect::<CliResult<_>>()?;
    let report = load_curve::Report {
        dir: &a.out,
        stem: "dram-latency",
        unit: load_curve::Unit::Ns,
        title: format!("{}: {} read latency vs offered load (one channel)", a.standard, a.pattern),
        reference: (unloaded(t), "unloaded read to a closed bank (closed form)"),
    };
    load_curve::write(&points, &report, &mut out)?;
    Ok(out)
}
