//! `strata nand`: the cycle-approximate engine's flash drive on host reads — one request size and
//! queue depth, or a sweep of both (a table, a CSV and a plot) — with the closed-form ceilings
//! (channels, array, controller, host link) beside what the drive achieved.

use std::fmt::Write as _;
use std::path::PathBuf;

use strata_arch::arch::{NAND_PRESETS, NandOrg};
use strata_arch::units::parse_bytes;
use strata_sim::engine::nand::{self, Request, Stats, Timing};

use crate::error::{CliError, CliResult};

pub struct Args {
    pub drive: String,
    pub pattern: String,
    pub size: String,
    pub queue_depth: usize,
    pub requests: u64,
    pub sweep: bool,
    pub out: PathBuf,
    pub max_events: u64,
}

/// Random requests fall anywhere in this many bytes of the drive (in all of its logical
/// capacity where it has a translation layer: uniform random writes over the whole drive).
const SPAN: u64 = 64 << 30;
const SIZES: [u64; 9] = [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20];
const DEPTHS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

fn drive(arg: &str) -> CliResult<(NandOrg, Timing)> {
    let (text, source) = crate::load::preset_or_file(arg, "a NAND", NAND_PRESETS)?;
    let org = NandOrg::from_toml(&text).map_err(|e| CliError::spec(&source, &e))?;
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

fn simulate(a: &Args, t: &Timing, bytes: u64, qd: usize, n: u64) -> CliResult<Stats> {
    let span = nand::logical_bytes(t).unwrap_or(SPAN);
    let reqs = requests(&a.pattern, bytes, n, span)?;
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
    let bytes = parse_bytes(&a.size).map_err(|e| CliError::input(format!("--size: {e}")))?.0;
    if bytes == 0 {
        return Err(CliError::input("--size: must be positive"));
    }
    let s = simulate(a, &t, bytes, a.queue_depth, a.requests)?;
    let mut b = t.bounds(bytes);
    if a.pattern.ends_with("write") {
        // Programs: every plane writes a page per tPROG.
        b.array *= t.t_read.seconds() / t.t_program.seconds();
    }
    let what = if a.pattern.ends_with("write") { "programs" } else { "reads" };
    let _ = writeln!(out, "{} {} B {what} ({}), queue depth {}", a.requests, bytes, a.pattern, a.queue_depth);
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
    Ok(out)
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
