//! Latency against offered load, for any device the engine runs open loop (`strata dram
//! --load-sweep`, `strata nand --load-sweep`): open loops at 5% to 100% of what the device
//! sustained, written as one table, one CSV and one plot whatever the device.

use std::fmt::Write as _;
use std::path::Path;

use strata_sim::engine::Latency;

use crate::error::{CliError, CliResult};

/// Offered loads of a sweep, as shares of what the device sustained: 5%, 10%, … 100%.
pub fn shares() -> Vec<f64> {
    (1..=20).map(|k| k as f64 * 0.05).collect()
}

/// One open-loop run: its share of the sustained load, the offered and achieved throughput in
/// GB/s, and its requests' latency.
pub struct Point {
    pub share: f64,
    pub offered: f64,
    pub achieved: f64,
    pub latency: Latency,
}

/// How a sweep is written: where, its latency unit (nanoseconds for DRAM, microseconds for a
/// drive), its plot's title, and the reference line drawn under the curves (seconds, label).
pub struct Report<'a> {
    pub dir: &'a Path,
    pub stem: &'a str,
    pub unit: Unit,
    pub title: String,
    pub reference: (f64, &'a str),
}

#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Ns,
    Us,
}

impl Unit {
    fn per_second(self) -> f64 {
        match self {
            Unit::Ns => 1e9,
            Unit::Us => 1e6,
        }
    }

    /// The unit as the CSV's column names write it, and as the table and plot do.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Unit::Ns => ("ns", "ns"),
            Unit::Us => ("us", "µs"),
        }
    }
}

/// Appends the sweep's table to `out` and writes `<stem>.csv` and the plot into `r.dir`.
pub fn write(points: &[Point], r: &Report, out: &mut String) -> CliResult<()> {
    let (k, (csv_unit, unit)) = (r.unit.per_second(), r.unit.names());
    let _ = writeln!(
        out,
        "\n{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "load", "offered", "achieved", "mean", "p50", "p99"
    );
    let _ = writeln!(out, "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}", "", "GB/s", "GB/s", unit, unit, unit);
    let mut csv = format!(
        "share,offered_gb_per_s,achieved_gb_per_s,mean_{csv_unit},p50_{csv_unit},p99_{csv_unit},max_{csv_unit}\n"
    );
    for p in points {
        let l = p.latency;
        let _ = writeln!(
            out,
            "{:>7.0}% {:>10.3} {:>10.3} {:>10.1} {:>10.1} {:>10.1}",
            p.share * 100.0,
            p.offered,
            p.achieved,
            l.mean * k,
            l.p50 * k,
            l.p99 * k
        );
        let _ = writeln!(
            csv,
            "{:.2},{:.6},{:.6},{:.3},{:.3},{:.3},{:.3}",
            p.share,
            p.offered,
            p.achieved,
            l.mean * k,
            l.p50 * k,
            l.p99 * k,
            l.max * k
        );
    }
    std::fs::create_dir_all(r.dir).map_err(|e| crate::store::write_err(r.dir, e))?;
    let path = r.dir.join(format!("{}.csv", r.stem));
    std::fs::write(&path, csv).map_err(|e| crate::store::write_err(&path, e))?;
    let curve = |pick: fn(&Latency) -> f64| -> Vec<(f64, f64)> {
        points.iter().map(|p| (p.offered, pick(&p.latency) * k)).collect()
    };
    let series = vec![
        ("mean".to_string(), curve(|l| l.mean)),
        ("p50".to_string(), curve(|l| l.p50)),
        ("p99".to_string(), curve(|l| l.p99)),
    ];
    let reference = (r.reference.0 * k, r.reference.1);
    let files = crate::plots::latency_curves(r.dir, r.stem, &r.title, &series, unit, reference)
        .map_err(|e| CliError::runtime(format!("plot: {e}")))?;
    let _ = writeln!(out, "wrote {}, {}", path.display(), files.join(", "));
    Ok(())
}
