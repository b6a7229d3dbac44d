//! `strata nand`: the cycle-approximate engine's flash drive on host reads — one request size and
//! queue depth, or a sweep of both (a table, a CSV and a plot) — with the closed-form ceilings
//! (channels, array, controller, host link) beside what the drive achieved.

use std::fmt::Write as _;
use std::path::PathBuf;

use strata_arch::arch::{NAND_PRESETS, NandOrg};
use strata_arch::units::parse_bytes;
use strata_sim::engine::Arrivals;
use strata_sim::engine::nand::{self, Request, Stats, Timing};

use crate::error::{CliError, CliResult};
use crate::load_curve;

/// `strata nand`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// NAND preset (mqsim-mlc, mqsim-mlc-shipped, tlc-client, cambricon-flash, m1-max-ssd), a file with a [nand] table, or an
    /// architecture's drive as ARCH:LEVEL (e.g. a6000-csd:SSD).
    #[arg(long, default_value = "mqsim-mlc")]
    pub drive: String,
    /// `random` or `sequential` reads, `write` (sequential page programs) or `randwrite`
    /// (programs at uniformly random request-aligned offsets).
    #[arg(long, default_value = "random")]
    pub pattern: String,
    /// Bytes per request, e.g. 16KiB.
    #[arg(long, default_value = "16 KiB")]
    pub size: String,
    /// Requests outstanding at once (reader threads; 1 to 65,536).
    #[arg(long, default_value_t = 32, value_parser = crate::cli::queue_depth)]
    pub queue_depth: usize,
    /// Requests in the stream (1 to 10⁷).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub requests: u64,
    /// Sweep request sizes 4 KiB…1 MiB × queue depths 1…64; write a CSV and a plot to --out.
    #[arg(long)]
    pub sweep: bool,
    /// Requests from a trace file instead of --pattern, each issued at its time: one per line,
    /// `time_ns R|W offset bytes` (R a read, W a program; offset decimal or 0x hex).
    #[arg(long, conflicts_with_all = ["rate", "sweep", "wa_sweep", "load_sweep"])]
    pub trace: Option<PathBuf>,
    /// Issue the pattern's requests at this many per second (open loop) instead of keeping
    /// --queue-depth outstanding.
    #[arg(long, conflicts_with_all = ["sweep", "wa_sweep", "load_sweep"])]
    pub rate: Option<f64>,
    /// Latency against offered load: open loops from 5% to 100% of what the pattern sustains at
    /// --queue-depth (a table, nand-latency.csv and a plot to --out).
    #[arg(long, conflicts_with_all = ["sweep", "wa_sweep"])]
    pub load_sweep: bool,
    /// Sweep over-provisioning 5…40% under uniform random page writes on one plane of the
    /// drive's translation layer: write amplification against the greedy-GC curve (a table,
    /// a CSV and a plot to --out).
    #[arg(long)]
    pub wa_sweep: bool,
    /// Where --sweep, --wa-sweep and --load-sweep write.
    #[arg(long, default_value = "results/nand")]
    pub out: PathBuf,
    /// Stop with an error after this many events.
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: u64,
}

/// Random requests fall anywhere in this many bytes of the drive (in all of its logical
/// capacity where it has a translation layer: uniform random writes over the whole drive).
const SPAN: u64 = 64 << 30;
const SIZES: [u64; 9] = [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20];
const DEPTHS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// A drive: a NAND preset, a file with a `[nand]` table, or an architecture's level
/// (`ARCH:LEVEL`).
fn drive(arg: &str) -> CliResult<(NandOrg, Timing)> {
    let (org, source) = match crate::load::arch_level(arg)? {
        Some((level, source)) => {
            let org = level
                .nand
                .ok_or_else(|| CliError::input(format!("`{arg}`: {source} is no flash drive (no [nand] table)")))?;
            (org, source)
        }
        None => {
            let (text, source) = crate::load::preset_or_file(arg, "a NAND", NAND_PRESETS).map_err(|e| {
                CliError::input(format!("{e}; or name an architecture's drive as ARCH:LEVEL (e.g. a6000-csd:SSD)"))
            })?;
            (NandOrg::from_toml(&text).map_err(|e| CliError::spec(&source, &e))?, source)
        }
    };
    let t = Timing::of(&org).map_err(|e| CliError::input(format!("{source}: {e}")))?;
    Ok((org, t))
}

fn requests(pattern: &str, bytes: u64, n: u64, span: u64) -> CliResult<Vec<Request>> {
    let program = |v: Vec<Request>| v.into_iter().map(|r| Request { op: nand::Op::Program, ..r }).collect();
    match pattern {
        "random" => Ok(nand::random(bytes, n, span, 11)),
        "sequential" => Ok(nand::sequential(bytes, n)),
        "write" => Ok(program(nand::sequential(bytes, n))),
        "randwrite" => Ok(program(nand::random(bytes, n, span, 11))),
        other => {
            Err(CliError::input(format!("--pattern: `{other}` is not `random`, `sequential`, `write` or `randwrite`")))
        }
    }
}

/// Where random requests fall on drive `t`.
fn span(t: &Timing) -> u64 {
    nand::logical_bytes(t).unwrap_or(SPAN)
}

fn simulate(a: &Args, t: &Timing, bytes: u64, qd: usize, n: u64) -> CliResult<Stats> {
    let reqs = requests(&a.pattern, bytes, n, span(t))?;
    nand::run(t, &reqs, qd, a.max_events).map_err(|e| CliError::engine(&a.drive, &e))
}

pub fn run(a: &Args) -> CliResult<String> {
    let (org, t) = drive(&a.drive)?;
    let name = if org.name.is_empty() { a.drive.clone() } else { org.name.clone() };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{name}: {} channels × {} chips × {} dies × {} planes, {} B pages, tR {:.1} µs, {:.0} MB/s per channel",
        org.channels,
        org.chips_per_channel,
        org.dies_per_chip,
        org.planes_per_die,
        org.page_bytes.0,
        org.t_read.0 * 1e6,
        org.channel_bandwidth.0 / 1e6
    );
    if a.sweep {
        return sweep(a, &t, out);
    }
    if a.wa_sweep {
        return wa_sweep(a, &org, out);
    }
    let bytes = parse_bytes(&a.size).map_err(|e| CliError::input(format!("--size: {e}")))?.0;
    if bytes == 0 {
        return Err(CliError::input("--size: must be positive"));
    }
    let (s, bytes, writes) = match (&a.trace, a.rate) {
        (Some(path), _) => {
            let reqs: Vec<Request> = crate::request_trace::read(path)?
                .into_iter()
                .map(|r| Request {
                    offset: r.addr,
                    bytes: r.bytes,
                    op: if r.write { nand::Op::Program } else { nand::Op::Read },
                    at: strata_sim::engine::Time((r.ns * 1e3).round() as u64),
                })
                .collect();
            let s = nand::simulate(&t, &reqs, Arrivals::AsGiven, a.max_events)
                .map_err(|e| CliError::engine(&format!("{} on {}", path.display(), a.drive), &e))?;
            let writes = reqs.iter().filter(|r| r.op == nand::Op::Program).count();
            let _ = writeln!(
                out,
                "{} requests from {} ({writes} writes), each issued at its time",
                reqs.len(),
                path.display()
            );
            let mean = (s.bytes / s.requests).max(1);
            (s, mean, 2 * writes > reqs.len())
        }
        (None, Some(rate)) => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(CliError::input(format!(
                    "--rate: must be a positive number of requests per second (got {rate})"
                )));
            }
            let reqs = nand::at_rate(&requests(&a.pattern, bytes, a.requests, span(&t))?, rate);
            let s = nand::simulate(&t, &reqs, Arrivals::AsGiven, a.max_events)
                .map_err(|e| CliError::engine(&a.drive, &e))?;
            let _ = writeln!(
                out,
                "{} {} B requests ({}), open loop at {:.1}k requests/s offered",
                a.requests,
                bytes,
                a.pattern,
                rate / 1e3
            );
            (s, bytes, a.pattern.ends_with("write"))
        }
        (None, None) => {
            let s = simulate(a, &t, bytes, a.queue_depth, a.requests)?;
            let what = if a.pattern.ends_with("write") { "programs" } else { "reads" };
            let _ = writeln!(out, "{} {} B {what} ({}), queue depth {}", a.requests, bytes, a.pattern, a.queue_depth);
            (s, bytes, a.pattern.ends_with("write"))
        }
    };
    let mut b = t.bounds(bytes);
    if writes {
        // Programs: every plane writes a page per tPROG.
        b.array *= t.t_read.seconds() / t.t_program.seconds();
    }
    let _ = writeln!(
        out,
        "  achieved     {:>9.3} GB/s, {:.1}k IOPS; latency mean {:.1}, p50 {:.1}, p99 {:.1}, max {:.1} µs",
        s.bandwidth() / 1e9,
        s.requests as f64 / s.seconds / 1e3,
        s.latency.mean * 1e6,
        s.latency.p50 * 1e6,
        s.latency.p99 * 1e6,
        s.latency.max * 1e6
    );
    let _ = writeln!(
        out,
        "  ceilings     channels {:.3}, array {:.3}, controller {:.3}, host {:.3} GB/s",
        b.channels / 1e9,
        b.array / 1e9,
        b.controller / 1e9,
        b.host / 1e9
    );
    let busy = s.channel_busy.iter().sum::<f64>() / s.channel_busy.len() as f64;
    let _ = writeln!(
        out,
        "  array reads  {} ({} multi-plane); channel buses busy {:.1}% on average",
        s.array_reads,
        s.multi_plane_reads,
        100.0 * busy
    );
    if let Some(f) = &s.ftl {
        let _ = writeln!(
            out,
            "  FTL          write amplification {:.3} ({} GC copies, {} erases); mapping cache hit rate {:.1}% ({} translation reads, {} written back)",
            f.write_amplification,
            f.gc_copies,
            f.erases,
            100.0 * f.mapping_hit_rate,
            f.translation_reads,
            f.translation_writes
        );
    }
    let _ = writeln!(out, "  simulated    {:.3} ms in {} events", s.seconds * 1e3, s.events);
    if a.load_sweep {
        load_sweep(a, &t, bytes, &s, &mut out)?;
    }
    Ok(out)
}

/// Open loops at 5% to 100% of what the pattern sustained at --queue-depth (`sustained`):
/// latency against offered load, as a table, `nand-latency.csv` and a plot, over the latency of
/// one request at a time.
fn load_sweep(a: &Args, t: &Timing, bytes: u64, sustained: &Stats, out: &mut String) -> CliResult<()> {
    use rayon::prelude::*;
    let reqs = requests(&a.pattern, bytes, a.requests, span(t))?;
    let rate = sustained.requests as f64 / sustained.seconds;
    let engine = |e| CliError::engine(&a.drive, &e);
    let points: Vec<load_curve::Point> = load_curve::shares()
        .par_iter()
        .map(|&f| {
            let s =
                nand::simulate(t, &nand::at_rate(&reqs, f * rate), Arrivals::AsGiven, a.max_events).map_err(engine)?;
            let offered = f * sustained.bandwidth() / 1e9;
            Ok(load_curve::Point { share: f, offered, achieved: s.bandwidth() / 1e9, latency: s.latency })
        })
        .collect::<CliResult<_>>()?;
    let alone = nand::run(t, &reqs, 1, a.max_events).map_err(engine)?;
    let what = if a.pattern.ends_with("write") { "program" } else { "read" };
    let report = load_curve::Report {
        dir: &a.out,
        stem: "nand-latency",
        unit: load_curve::Unit::Us,
        title: format!("{}: {} B {} {what} latency vs offered load", a.drive, bytes, a.pattern),
        reference: (alone.latency.mean, "one request at a time (queue depth 1, mean)"),
    };
    load_curve::write(&points, &report, out)
}

/// Every request size × queue depth: a table of GB/s, `nand-sweep.csv` and a plot.
fn sweep(a: &Args, t: &Timing, mut out: String) -> CliResult<String> {
    use rayon::prelude::*;
    let points: Vec<(u64, usize)> = SIZES.iter().flat_map(|&b| DEPTHS.iter().map(move |&q| (b, q))).collect();
    let stats: Vec<Stats> = points
        .par_iter()
        .map(|&(b, q)| simulate(a, t, b, q, a.requests.max(8 * q as u64)))
        .collect::<CliResult<_>>()?;
    let _ = writeln!(out, "{} reads: GB/s by request size (rows) and queue depth (columns)", a.pattern);
    let _ = write!(out, "{:>8}", "size");
    for q in DEPTHS {
        let _ = write!(out, "{:>8}", format!("qd {q}"));
    }
    let _ = writeln!(out, "{:>10}", "ceiling");
    let mut csv = String::from("bytes,queue_depth,gb_per_s,mean_latency_us,ceiling_gb_per_s\n");
    for (i, &b) in SIZES.iter().enumerate() {
        let _ = write!(out, "{:>8}", format!("{} KiB", b >> 10));
        for (j, &q) in DEPTHS.iter().enumerate() {
            let s = &stats[i * DEPTHS.len() + j];
            let _ = write!(out, "{:>8.3}", s.bandwidth() / 1e9);
            let _ = writeln!(
                csv,
                "{b},{q},{:.6},{:.3},{:.6}",
                s.bandwidth() / 1e9,
                s.latency.mean * 1e6,
                t.bounds(b).least() / 1e9
            );
        }
        let _ = writeln!(out, "{:>10.3}", t.bounds(b).least() / 1e9);
    }
    std::fs::create_dir_all(&a.out).map_err(|e| crate::store::write_err(&a.out, e))?;
    let path = a.out.join("nand-sweep.csv");
    std::fs::write(&path, csv).map_err(|e| crate::store::write_err(&path, e))?;
    let series: Vec<(String, Vec<(f64, f64)>)> = DEPTHS
        .iter()
        .enumerate()
        .map(|(j, q)| {
            let pts = SIZES.iter().enumerate().map(|(i, &b)| (b as f64, stats[i * DEPTHS.len() + j].bandwidth() / 1e9));
            (format!("queue depth {q}"), pts.collect())
        })
        .collect();
    let ceiling: Vec<(f64, f64)> = SIZES.iter().map(|&b| (b as f64, t.bounds(b).least() / 1e9)).collect();
    let title = format!("{}: {} read throughput", a.drive, a.pattern);
    let files = crate::plots::throughput_curves(&a.out, "nand-sweep", &title, &series, &ceiling)
        .map_err(|e| CliError::runtime(format!("plot: {e}")))?;
    let _ = writeln!(out, "wrote {}, {}", path.display(), files.join(", "));
    Ok(out)
}

/// Over-provisioning shares of the write-amplification sweep.
const SPARES: [f64; 7] = [0.05, 0.07, 0.10, 0.15, 0.20, 0.28, 0.40];

/// Uniform random page writes on one plane of the drive's translation layer (static striping
/// gives every plane the same uniform stream) at each over-provisioning share: three drive
/// writes to reach the steady state, three measured; write amplification beside the greedy
/// curve at the spare share the collector sees.
fn wa_sweep(a: &Args, org: &NandOrg, mut out: String) -> CliResult<String> {
    use rayon::prelude::*;
    use strata_sim::engine::nand::ftl::{greedy_write_amplification, random_writes};
    let (Some(ftl), Some(blocks)) = (org.ftl, org.blocks_per_plane) else {
        return Err(CliError::input(format!("--wa-sweep: `{}` has no [nand.ftl] table", a.drive)));
    };
    let ppb = org.pages_per_block;
    let points: Vec<(f64, f64, f64, f64)> = SPARES
        .par_iter()
        .map(|&op| {
            let s = random_writes(&strata_arch::arch::Ftl { over_provisioning: op, ..ftl }, blocks, ppb, 3, 11)
                .map_err(|e| CliError::runtime(format!("{}: no free block on plane {}", a.drive, e.plane)))?;
            // No spare beyond what GC keeps free: the curve has no value there.
            let curve = if s.spare > 0.0 { greedy_write_amplification(s.spare) } else { f64::NAN };
            Ok((op, s.spare, s.write_amplification, curve))
        })
        .collect::<CliResult<_>>()?;
    let _ = writeln!(
        out,
        "uniform random page writes, one plane of {blocks} blocks × {ppb} pages, GC below {:.0}% free",
        100.0 * ftl.gc_threshold
    );
    let _ = writeln!(out, "| over-provisioning | spare seen by GC | write amplification | greedy curve | ratio |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    let mut csv = String::from("over_provisioning,spare,write_amplification,greedy_curve\n");
    for &(op, spare, wa, curve) in &points {
        if curve.is_nan() {
            let _ = writeln!(out, "| {:.0}% | {:.1}% | {wa:.3} | — | — |", 100.0 * op, 100.0 * spare);
            let _ = writeln!(csv, "{op},{spare:.6},{wa:.6},");
        } else {
            let _ = writeln!(
                out,
                "| {:.0}% | {:.1}% | {wa:.3} | {curve:.3} | {:.3} |",
                100.0 * op,
                100.0 * spare,
                wa / curve
            );
            let _ = writeln!(csv, "{op},{spare:.6},{wa:.6},{curve:.6}");
        }
    }
    if points.iter().any(|p| p.3.is_nan()) {
        let _ = writeln!(
            out,
            "(—: the free blocks GC keeps take all of the over-provisioning, so every collection copies nearly a \
             whole block; the plot leaves those points out)"
        );
    }
    std::fs::create_dir_all(&a.out).map_err(|e| crate::store::write_err(&a.out, e))?;
    let path = a.out.join("nand-wa.csv");
    std::fs::write(&path, csv).map_err(|e| crate::store::write_err(&path, e))?;
    let shown = || points.iter().filter(|p| !p.3.is_nan());
    let simulated: Vec<(f64, f64)> = shown().map(|p| (p.1, p.2)).collect();
    let curve: Vec<(f64, f64)> = shown().map(|p| (p.1, p.3)).collect();
    let title = format!("{}: write amplification under uniform random writes", a.drive);
    let files = crate::plots::write_amplification(&a.out, &title, &simulated, &curve)
        .map_err(|e| CliError::runtime(format!("plot: {e}")))?;
    let _ = writeln!(out, "wrote {}, {}", path.display(), files.join(", "));
    Ok(out)
}
