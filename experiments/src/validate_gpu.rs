//! `strata validate-gpu`: predicts every kernel measured on a real GPU and reports the errors.
//!
//! The measurements are validation/gpu/<gpu>/measurements.csv, written by
//! validation/gpu/measure.py on the device; the H100 set is embedded so the command works with no
//! files around. Rows of kind `calibration` are device-level quantities (peak copy bandwidth, peak
//! GEMM and `mma.sync` throughput, the smallest kernel's time, memory latency) that replace the
//! architecture's figures unless `--datasheet` is given; every other row is a prediction.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_sim::gpu::{self, Attention, Calibration, Device, Gemm, Kernel};

use crate::error::{CliError, CliResult};

const H100_MEASUREMENTS: &str = include_str!("../../validation/gpu/h100/measurements.csv");
const H100_ENVIRONMENT: &str = include_str!("../../validation/gpu/h100/environment.json");
/// Calibration rows measured on the same kind of device after the set (`calibration.csv`).
const H100_CALIBRATION: &str = include_str!("../../validation/gpu/h100/calibration.csv");

pub struct Args {
    pub data: Option<PathBuf>,
    pub arch: String,
    pub out: PathBuf,
    pub datasheet: bool,
}

/// One row of measurements.csv (numbers left empty where a kind has no such field).
#[derive(Debug, Deserialize)]
struct Measured {
    kind: String,
    name: String,
    m: Option<u64>,
    n: Option<u64>,
    k: Option<u64>,
    batch: Option<u64>,
    heads: Option<u64>,
    kv_heads: Option<u64>,
    seq_q: Option<u64>,
    seq_kv: Option<u64>,
    head_dim: Option<u64>,
    causal: Option<u8>,
    elements: Option<f64>,
    bytes: Option<f64>,
    flops: Option<f64>,
    median_us: f64,
}

/// A predicted point.
pub struct Point {
    pub kind: String,
    pub name: String,
    pub measured_us: f64,
    pub predicted_us: f64,
    pub launches: String,
}

impl Point {
    pub fn error(&self) -> f64 {
        self.predicted_us / self.measured_us - 1.0
    }
}

/// What the command found: points, the calibration used and the source's environment.
pub struct Report {
    pub points: Vec<Point>,
    /// Our own sparse and low-rank kernels (`sparse.csv` of measure_sparse.py), where measured.
    pub sparse: Vec<Point>,
    pub calibration: Calibration,
    pub environment: String,
}

fn need<T: Copy>(source: &str, line: u64, v: Option<T>, field: &str, kind: &str) -> CliResult<T> {
    v.ok_or_else(|| CliError::input(format!("{source}:{line}: field `{field}` is required for kind `{kind}`")))
}

fn kernel(source: &str, line: u64, r: &Measured) -> CliResult<Kernel> {
    let f = |v, name| need(source, line, v, name, &r.kind);
    Ok(match r.kind.as_str() {
        "gemm" => Kernel::Gemm(Gemm { m: f(r.m, "m")?, n: f(r.n, "n")?, k: f(r.k, "k")? }),
        "attention_prefill" | "attention_decode" => Kernel::Attention(Attention {
            batch: f(r.batch, "batch")?,
            heads: f(r.heads, "heads")?,
            kv_heads: f(r.kv_heads, "kv_heads")?,
            seq_q: f(r.seq_q, "seq_q")?,
            seq_kv: f(r.seq_kv, "seq_kv")?,
            head_dim: f(r.head_dim, "head_dim")?,
            causal: need(source, line, r.causal, "causal", &r.kind)? != 0,
        }),
        "copy" => Kernel::Copy { bytes: need(source, line, r.bytes, "bytes", &r.kind)? },
        "elementwise" => Kernel::Add { elements: need(source, line, r.elements, "elements", &r.kind)? },
        "softmax" => Kernel::Softmax { rows: f(r.m, "m")?, cols: f(r.n, "n")? },
        "reduction" => Kernel::RowSum { rows: f(r.m, "m")?, cols: f(r.n, "n")? },
        other => {
            return Err(CliError::input(format!(
                "{source}:{line}: unknown kind `{other}` (known: calibration, gemm, attention_prefill, \
                 attention_decode, copy, elementwise, softmax, reduction)"
            )));
        }
    })
}

/// The rows of a measurements file, each with a positive time.
fn read_rows(source: &str, text: &str) -> CliResult<Vec<Measured>> {
    let mut rows = Vec::new();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    for rec in reader.deserialize::<Measured>() {
        let r = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            CliError::input(format!("{source}:{line}: {e}"))
        })?;
        if !(r.median_us.is_finite() && r.median_us > 0.0) {
            return Err(CliError::input(format!("{source}: {}: median_us must be a positive time", r.name)));
        }
        rows.push(r);
    }
    Ok(rows)
}

/// Reads measurements, calibrates and predicts every point.
pub fn predict(args: &Args) -> CliResult<Report> {
    let (source, text, environment, extra) = match &args.data {
        None => (
            "validation/gpu/h100/measurements.csv (embedded)".to_string(),
            H100_MEASUREMENTS.to_string(),
            H100_ENVIRONMENT.to_string(),
            Some(("validation/gpu/h100/calibration.csv (embedded)".to_string(), H100_CALIBRATION.to_string())),
        ),
        Some(dir) => {
            let path = dir.join("measurements.csv");
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|e| CliError::input(format!("{}: cannot read: {e}", p.display())))
            };
            let env = read(&dir.join("environment.json")).unwrap_or_default();
            let cal = dir.join("calibration.csv");
            let extra = if cal.exists() { Some((cal.display().to_string(), read(&cal)?)) } else { None };
            (path.display().to_string(), read(&path)?, env, extra)
        }
    };
    let arch = crate::eval::arch(&args.arch)?;
    let Some(gpu_spec) = arch.gpu.as_ref() else {
        return Err(CliError::input(format!("{}: arch.gpu: this architecture has no [arch.gpu] section", args.arch)));
    };
    let mut rows = read_rows(&source, &text)?;
    // `calibration.csv` beside the set (`measure.py --set calibration`, later leases) adds the
    // calibration rows the set lacks; the set's own rows stand.
    if let Some((cal_source, cal_text)) = extra {
        for r in read_rows(&cal_source, &cal_text)? {
            if r.kind != "calibration" {
                return Err(CliError::input(format!("{cal_source}: {}: only calibration rows belong here", r.name)));
            }
            if !rows.iter().any(|x| x.kind == "calibration" && x.name == r.name) {
                rows.push(r);
            }
        }
    }
    let mut cal = Calibration::default();
    let mut pair = None;
    for r in rows.iter().filter(|r| r.kind == "calibration") {
        let t = r.median_us * 1e-6;
        let per = |v: Option<f64>| v.map(|x| x / t);
        match r.name.as_str() {
            "copy_peak" => cal.memory_bandwidth = per(r.bytes),
            "gemm_peak" => cal.wgmma = cal.wgmma.or(per(r.flops)),
            // The same GEMM's first runs after an idle spell, at the boost clock the validation
            // points (short runs) see, before the power limit lowers it: preferred.
            "gemm_peak_boost" => cal.wgmma = per(r.flops).or(cal.wgmma),
            "mma_sync_peak" => cal.mma_sync = per(r.flops),
            "kernel_floor" => cal.launch_latency = Some(t),
            "kernel_pair" => pair = Some(t),
            "memory_latency" => cal.memory_latency = r.elements.map(|steps| t / steps),
            _ => {}
        }
    }
    // Two dependent tiny kernels in one graph: the second adds the gap between kernels.
    cal.kernel_gap = pair.zip(cal.launch_latency).map(|(p, one)| p - one).filter(|g| *g > 0.0);
    let mut dev = Device::new(gpu_spec);
    if !args.datasheet {
        dev = dev.calibrated(&cal);
    }
    let mut points = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if r.kind == "calibration" {
            continue;
        }
        let k = kernel(&source, i as u64 + 2, r)?;
        let p = gpu::predict(&dev, &k);
        points.push(Point {
            kind: r.kind.clone(),
            name: r.name.clone(),
            measured_us: r.median_us,
            predicted_us: p.seconds * 1e6,
            launches: p.launches.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(" + "),
        });
    }
    if points.is_empty() {
        return Err(CliError::input(format!("{source}: no measured kernels to predict")));
    }
    let sparse = match &args.data {
        Some(dir) if dir.join("sparse.csv").exists() => predict_sparse(&dir.join("sparse.csv"), &dev)?,
        _ => Vec::new(),
    };
    Ok(Report { points, sparse, calibration: if args.datasheet { Calibration::default() } else { cal }, environment })
}

/// One row of sparse.csv (measure_sparse.py).
#[derive(Debug, Deserialize)]
struct SparseMeasured {
    kind: String,
    name: String,
    batch: Option<u64>,
    heads: Option<u64>,
    seq_kv: Option<u64>,
    head_dim: Option<u64>,
    label_channels: Option<u64>,
    selected: Option<u64>,
    tokens: Option<u64>,
    d_model: Option<u64>,
    ffn: Option<u64>,
    rank: Option<u64>,
    block_n: Option<u64>,
    median_us: f64,
}

/// Predicts our own implementations as they launch: Double Sparsity in PyTorch (the query's
/// label channels gathered, label scores, `torch.topk`, the selected keys and values gathered
/// into new tensors, then FlashAttention-2 over them) and FlashSVD's FFN (plain, fused).
fn predict_sparse(path: &Path, dev: &Device) -> CliResult<Vec<Point>> {
    use strata_sim::gpu::lowrank::{FusedTiles, LowRankFfn};
    use strata_sim::gpu::{sparse, streaming};
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CliError::input(format!("{source}: cannot read: {e}")))?;
    let mut points = Vec::new();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    for (i, rec) in reader.deserialize::<SparseMeasured>().enumerate() {
        let line = i as u64 + 2;
        let r = rec.map_err(|e| CliError::input(format!("{source}:{}: {e}", e.position().map_or(0, |p| p.line()))))?;
        let f = |v: Option<u64>, name: &str| need(&source, line, v, name, &r.kind);
        let launches: Vec<gpu::Launch> = if let Some(stage) = r.kind.strip_prefix("ds_") {
            let (batch, heads, context, d) =
                (f(r.batch, "batch")?, f(r.heads, "heads")?, f(r.seq_kv, "seq_kv")?, f(r.head_dim, "head_dim")?);
            let ds = gpu::SparseAttention {
                batch,
                heads,
                kv_heads: heads,
                context,
                head_dim: d,
                label_channels: f(r.label_channels, "label_channels")?,
                selected: f(r.selected, "selected")?,
                elem_bytes: 2,
                label_bits: 16,
                predict_next: false,
            };
            let all = sparse::launches(&ds, dev);
            // `torch.gather` copies the selected rows of K and V: read and write each.
            let rows = (batch * heads * ds.selected * d) as f64;
            let gathers = || (0..2).flat_map(|_| streaming::elementwise(dev, "gather", rows, 4.0, 0.0).launches);
            match stage {
                "dense" => {
                    Attention { batch, heads, kv_heads: heads, seq_q: 1, seq_kv: context, head_dim: d, causal: false }
                        .launches(dev)
                }
                "labels" => all[..1].to_vec(),
                "topk" => all[1..2].to_vec(),
                "gather_attention" => gathers().chain(all[2..].iter().cloned()).collect(),
                "total" => {
                    let q = (batch * heads * ds.label_channels) as f64;
                    streaming::elementwise(dev, "query labels", q, 4.0, 0.0)
                        .launches
                        .into_iter()
                        .chain(all[..2].iter().cloned())
                        .chain(gathers())
                        .chain(all[2..].iter().cloned())
                        .collect()
                }
                other => return Err(CliError::input(format!("{source}:{line}: unknown kind `ds_{other}`"))),
            }
        } else {
            let ffn = LowRankFfn {
                tokens: f(r.tokens, "tokens")?,
                d_model: f(r.d_model, "d_model")?,
                ffn: f(r.ffn, "ffn")?,
                rank: if r.kind == "dense_ffn" { 1 } else { f(r.rank, "rank")? },
                gated: true,
            };
            match r.kind.as_str() {
                "dense_ffn" => ffn.dense(dev).launches,
                "lowrank_inputs" => ffn.inputs(dev).launches,
                "lowrank_plain" => ffn.plain(dev).launches,
                "lowrank_fused" => {
                    let block_m = if r.name.contains("m16") { 16 } else { 64 };
                    let t = FusedTiles { block_m, block_n: f(r.block_n, "block_n")?, block_f: 64, block_r: 32 };
                    ffn.fused(dev, t).launches
                }
                other => return Err(CliError::input(format!("{source}:{line}: unknown kind `{other}`"))),
            }
        };
        points.push(Point {
            kind: r.kind.clone(),
            name: r.name.clone(),
            measured_us: r.median_us,
            predicted_us: launches.iter().map(|l| l.seconds).sum::<f64>() * 1e6,
            launches: launches.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(" + "),
        });
    }
    Ok(points)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// (count, median |error|, max |error|) per kernel family and overall ("all").
pub fn errors(points: &[Point]) -> BTreeMap<String, (usize, f64, f64)> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in points {
        by.entry(p.kind.clone()).or_default().push(p.error().abs());
        by.entry("all".into()).or_default().push(p.error().abs());
    }
    by.into_iter()
        .map(|(k, v)| {
            let max = v.iter().cloned().fold(0.0, f64::max);
            (k, (v.len(), median(v), max))
        })
        .collect()
}

/// The measured device's name (the environment's `gpu`), else the architecture's.
fn device(r: &Report, args: &Args) -> String {
    serde_json::from_str::<serde_json::Value>(&r.environment)
        .ok()
        .and_then(|v| v.get("gpu").and_then(|g| g.as_str()).map(str::to_string))
        .unwrap_or_else(|| args.arch.clone())
}

/// Errors per kernel family, then every point (named by `label`).
fn tables(s: &mut String, points: &[Point], label: impl Fn(&Point) -> String) {
    let _ = writeln!(s, "| kernels | points | median abs. error | max abs. error |\n|---|---:|---:|---:|");
    for (k, (n, med, max)) in errors(points) {
        let _ = writeln!(s, "| {k} | {n} | {:.1}% | {:.1}% |", med * 100.0, max * 100.0);
    }
    let _ = writeln!(s, "\n| kernel | measured µs | predicted µs | error | launches |\n|---|---:|---:|---:|---|");
    for p in points {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.1} | {:+.1}% | {} |",
            label(p),
            p.measured_us,
            p.predicted_us,
            p.error() * 100.0,
            p.launches
        );
    }
}

fn summary(r: &Report, args: &Args) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# GPU validation: {} against kernels measured on {}\n", args.arch, device(r, args));
    let c = &r.calibration;
    if args.datasheet {
        let _ = writeln!(s, "Device-level rates: the architecture's datasheet figures (`--datasheet`).\n");
    } else {
        let _ = writeln!(
            s,
            "Calibrated device-level quantities (measured by validation/gpu/measure.py; nothing per kernel):\n"
        );
        let f = |v: Option<f64>, scale: f64, unit: &str| {
            v.map_or("(datasheet)".into(), |x| format!("{:.3} {unit}", x * scale))
        };
        let _ = writeln!(s, "| quantity | value |\n|---|---|");
        let _ = writeln!(s, "| copy bandwidth | {} |", f(c.memory_bandwidth, 1e-12, "TB/s"));
        let _ = writeln!(
            s,
            "| wgmma bf16 throughput (cuBLAS 16384³; its boost-clock runs where measured) | {} |",
            f(c.wgmma, 1e-12, "TFLOP/s")
        );
        let _ = writeln!(s, "| mma.sync bf16 throughput | {} |", f(c.mma_sync, 1e-12, "TFLOP/s"));
        let _ = writeln!(s, "| smallest kernel | {} |", f(c.launch_latency, 1e6, "µs"));
        let _ = writeln!(s, "| gap to a following kernel | {} |", f(c.kernel_gap, 1e6, "µs"));
        let _ = writeln!(s, "| memory latency | {} |\n", f(c.memory_latency, 1e9, "ns"));
    }
    tables(&mut s, &r.points, |p| p.name.clone());
    if !r.sparse.is_empty() {
        let _ = writeln!(
            s,
            "\n## Our sparse and low-rank kernels (validation/gpu/measure_sparse.py)\n\n\
             Double Sparsity as our PyTorch implementation launches it and FlashSVD's FFN (plain, and our fused \
             Triton kernel), predicted kernel by kernel; not part of the set above.\n"
        );
        tables(&mut s, &r.sparse, |p| format!("{} {}", p.kind, p.name));
    }
    if !r.environment.is_empty() {
        let _ = writeln!(s, "\nMeasured on:\n\n```json\n{}\n```", r.environment.trim());
    }
    s
}

pub fn run(args: &Args) -> CliResult<String> {
    let report = predict(args)?;
    let fail = |p: &Path, e: String| CliError::input(format!("{}: cannot write: {e}", p.display()));
    let plots = args.out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| fail(&plots, e.to_string()))?;
    let mut csv = String::from("kind,name,measured_us,predicted_us,error_pct,launches\n");
    for p in report.points.iter().chain(&report.sparse) {
        let _ = writeln!(
            csv,
            "{},{},{:.3},{:.3},{:.2},{}",
            p.kind,
            p.name,
            p.measured_us,
            p.predicted_us,
            p.error() * 100.0,
            p.launches
        );
    }
    let table = args.out.join("validation.csv");
    std::fs::write(&table, csv).map_err(|e| fail(&table, e.to_string()))?;
    let text = summary(&report, args);
    let md = args.out.join("summary.md");
    std::fs::write(&md, &text).map_err(|e| fail(&md, e.to_string()))?;
    let pts: Vec<(String, f64, f64)> =
        report.points.iter().map(|p| (p.kind.clone(), p.measured_us, p.predicted_us)).collect();
    crate::plots::predicted_vs_measured(&pts, &device(&report, args), &plots).map_err(|e| fail(&plots, e))?;
    let all = errors(&report.points)["all"];
    Ok(format!(
        "{} kernels: median |error| {:.1}%, max {:.1}%\nwrote {}, {} and {}\n",
        all.0,
        all.1 * 100.0,
        all.2 * 100.0,
        table.display(),
        md.display(),
        plots.join("predicted-vs-measured.png").display()
    ))
}
