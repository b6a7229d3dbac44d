//! `strata flash-compute` and the `flash-compute` kind: LLM decode on an NPU + in-flash-compute
//! machine (Cambricon-LLM) through the one system model: an architecture, a system file whose
//! linear Einsums are split between the drive's cores and the NPU (the design and its ablations
//! are system presets), the step engine running each GeMV on the NAND engine's read-compute
//! model. Tokens/s, each GeMV's time and channel use, the tile and the flash/NPU split.

use std::fmt::Write as _;

use strata_arch::Arch;
use strata_arch::arch::NandOrg;
use strata_mappings::flash_tiling::{self, Tile};
use strata_mappings::system::{Share, System, TileChoice};
use strata_sim::engine::device;
use strata_sim::engine::step::{self, StepReport};
use strata_workloads::{Model, Phase};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, Values, optional, required};

pub struct Args {
    pub arch: String,
    pub system: String,
    pub model: String,
    pub context: u64,
    pub tile: Option<String>,
    pub split: Option<String>,
    pub no_slicing: bool,
    pub slices: Option<u64>,
    pub no_ecc: bool,
    pub max_events: u64,
}

/// `arch` with its first NAND level's organisation resized where `channels` or `chips` is
/// non-zero (each die keeps its core: the cores' per-die rate is the unit's over its instances).
fn machine(arch: &Arch, channels: u64, chips: u64) -> Arch {
    let mut a = arch.clone();
    if let Some(l) = a.levels.iter_mut().find(|l| l.nand.is_some()) {
        let org = l.nand.as_mut().expect("found");
        if channels > 0 {
            org.channels = channels;
        }
        if chips > 0 {
            org.chips_per_channel = chips;
        }
    }
    a
}

/// What one decode token does on a system with a read-compute split.
pub struct Outcome {
    pub step: StepReport,
    /// The tile of a GeMV over the model's width (`None`: naive tiles, or no split), its α
    /// and the share of weight bytes α gives.
    pub tile: Option<Tile>,
    pub alpha: f64,
    pub alpha_share: f64,
    /// The share of the token's weight bytes read-computed in flash.
    pub share: f64,
    /// Time-weighted share of the channels' time spent carrying data during the GeMVs.
    pub data_utilisation: f64,
    /// GeMV events simulated.
    pub events: u64,
}

/// One decode token of `m` at `context` tokens of cache, run by the step engine.
pub fn simulate(a: &Arch, sys: &System, m: &Model, context: u64, budget: u64) -> CliResult<Outcome> {
    let step = step::step(a, m, sys, Phase::Decode { context }, 1, budget)
        .map_err(|e| crate::serving::step_error(&format!("{}, {}, {}", a.name, m.name, sys.name), &e))?;
    let (mut flash, mut all, mut busy, mut span, mut events) = (0.0, 0.0, 0.0, 0.0, 0);
    for g in &step.gemvs {
        flash += g.gemv.flash_bytes as f64 * g.times;
        all += (g.gemv.flash_bytes + g.gemv.npu_bytes) as f64 * g.times;
        busy += g.gemv.data_utilisation * g.gemv.seconds * g.times;
        span += g.gemv.seconds * g.times;
        events += g.gemv.events;
    }
    let (tile, alpha, alpha_share) = match sys.assign.iter().find_map(|x| x.split.map(|_| x.unit)) {
        Some(core) => {
            let level = a.level(a.unit(core).level);
            let nand = a.level(level.parent.expect("checked by the system")).nand.clone().expect("checked");
            let e = sys.bytes_per_element.unwrap_or(m.bytes_per_element);
            let buffer = level.capacity.map_or(u64::MAX, |c| c.0);
            let tile = sys.read_compute.tile.tile(&nand, e, m.d_model, buffer);
            let reference = sys.read_compute.tile.reference(&nand, e, m.d_model, buffer);
            (tile, flash_tiling::alpha(&nand, reference), flash_tiling::flash_share(&nand, e, reference))
        }
        None => (None, 0.0, 0.0),
    };
    Ok(Outcome {
        tile,
        alpha,
        alpha_share,
        share: if all > 0.0 { flash / all } else { 0.0 },
        data_utilisation: if span > 0.0 { busy / span } else { 0.0 },
        events,
        step,
    })
}

pub fn run(a: &Args) -> CliResult<String> {
    let arch = crate::eval::arch(&a.arch)?;
    let m = crate::run::model(&a.model)?;
    if a.context == 0 {
        return Err(CliError::input("--context: must be at least 1"));
    }
    let (text, source) = crate::load::preset_or_file(&a.system, "a system", strata_mappings::system::PRESETS)?;
    let mut sys =
        System::from_toml(&text, &arch).map_err(|e| CliError::spec(&format!("{source} on {}", arch.name), &e))?;
    // The flags override the system's policies.
    if let Some(t) = &a.tile {
        sys.read_compute.tile = TileChoice::parse(t).map_err(|e| CliError::input(format!("--tile: {e}")))?;
    }
    if let Some(n) = a.slices {
        sys.read_compute.slices = n;
    }
    sys.read_compute.slice_control &= !a.no_slicing;
    sys.read_compute.ecc &= !a.no_ecc;
    if let Some(split) = &a.split {
        let share = Share::parse(split).ok_or_else(|| {
            CliError::input(format!("--split: `{split}` is not `balanced`, `alpha` or a share within 0 and 1"))
        })?;
        for x in sys.assign.iter_mut() {
            if let Some(sp) = x.split.as_mut() {
                sp.share = share;
            }
        }
    }
    let out = simulate(&arch, &sys, &m, a.context, a.max_events)?;
    let d = &out.step;
    let mut o = String::new();
    if let Some(n) = arch.levels.iter().find_map(|l| l.nand.as_ref()) {
        let _ = writeln!(
            o,
            "{} on {} ({}): {} channels × {} chips × {} dies, {} KiB pages, tR {:.0} µs, {:.1} GB/s per channel",
            m.name,
            arch.name,
            sys.name,
            n.channels,
            n.chips_per_channel,
            n.dies_per_chip,
            n.page_bytes.0 >> 10,
            n.t_read.0 * 1e6,
            n.channel_bandwidth.0 / 1e9
        );
    }
    let tile = out.tile.map_or("naive (whole rows per page, no broadcast)".to_string(), |t| format!("{}×{}", t.h, t.w));
    let _ = writeln!(
        o,
        "  tile {tile}; α (read-compute share of requests) {:.3}, which puts {:.3} of the weight bytes in flash",
        out.alpha, out.alpha_share,
    );
    let p = sys.read_compute;
    let _ = writeln!(
        o,
        "  share of weight bytes in flash {:.3}; Slice Control {} ({} slices), outlier ECC {}, context {} tokens",
        out.share,
        if p.slice_control { "on" } else { "off" },
        p.slices,
        if p.ecc { "on" } else { "off" },
        a.context
    );
    let _ = writeln!(
        o,
        "  {:<14} {:>12} {:>8} {:>12} {:>14} {:>12}",
        "GeMV", "rows × cols", "times", "time (µs)", "channel data %", "in flash %"
    );
    for g in &d.gemvs {
        let total = (g.gemv.flash_bytes + g.gemv.npu_bytes).max(1) as f64;
        let _ = writeln!(
            o,
            "  {:<14} {:>12} {:>8} {:>12.1} {:>14.1} {:>12.1}",
            g.einsums,
            format!("{}×{}", g.rows, g.cols),
            g.times,
            g.gemv.seconds * 1e6,
            100.0 * g.gemv.data_utilisation,
            100.0 * g.gemv.flash_bytes as f64 / total
        );
    }
    let _ = writeln!(o, "  attention over the cache: {:.2} ms per token", d.kv_seconds * 1e3);
    let _ = writeln!(
        o,
        "  per token {:.2} ms ({} layers) → {:.2} tokens/s; channels carry data {:.1}% of the GeMVs' time; {} events",
        d.seconds * 1e3,
        m.layers,
        1.0 / d.seconds,
        100.0 * out.data_utilisation,
        out.events
    );
    Ok(o)
}

/// FlexGen-SSD, the paper's baseline: an A100 with every weight on an NVMe SSD, streamed layer
/// by layer with loading and compute overlapped, so a token takes the weights' read time. The
/// SSD is the engine's `tlc-client` drive on 1 MiB sequential reads at queue depth 32, through
/// the device interface.
pub fn flexgen_ssd_tokens_per_s(m: &Model) -> CliResult<f64> {
    let org =
        NandOrg::preset("tlc-client").expect("preset").map_err(|e| CliError::input(format!("tlc-client: {e}")))?;
    let stream = device::Pattern { block: 1 << 20, queue: 32, scattered: false, requests: 4096 };
    let rate = device::rate(&device::Drive(org), &stream, u64::MAX).map_err(|e| CliError::engine("tlc-client", &e))?;
    Ok(rate / m.weight_bytes() as f64)
}

/// The `flash-compute` experiment kind: LLM decode on an NPU + in-flash-compute machine
/// (Cambricon-LLM) per architecture, model and system (the full design or an ablation).
pub struct FlashCompute;

const AXES: &[Axis] = &[
    required("arch", Values::Arch),
    required("model", Values::Model),
    required("system", Values::Text),
    optional("context", Values::Count),
    optional("channels", Values::Count),
    optional("chips_per_channel", Values::Count),
];

impl Kind for FlashCompute {
    fn name(&self) -> &'static str {
        "flash-compute"
    }
    fn about(&self) -> &'static str {
        "LLM decode with in-flash compute (Cambricon-LLM) per architecture, model and system file (the design or an ablation)"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["arch", "model"]
    }
    fn columns(&self, x: &Experiment) -> Vec<String> {
        let design = x.spec.sweep.keys().any(|k| k.contains('.')).then_some("design");
        [
            "arch",
            "model",
            "system",
            "context",
            "channels",
            "chips_per_channel",
            "tile",
            "alpha",
            "flash_share",
            "channel_data_utilisation",
            "attention_ms_per_token",
            "ms_per_token",
            "tokens_per_s",
            "flexgen_ssd_tokens_per_s",
            "speedup_over_flexgen_ssd",
        ]
        .into_iter()
        .chain(design)
        .map(String::from)
        .collect()
    }
    /// Every system file against every architecture it runs on.
    fn check(&self, x: &Experiment) -> CliResult<()> {
        crate::serving::check_systems(x, None)
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        let a = crate::kind::arch(x, &p.text("arch"), Some(p))?;
        let a = machine(&a, p.int("channels", 0), p.int("chips_per_channel", 0));
        let sys = crate::serving::system(x, &p.text("system"), &a)?;
        let m = crate::kind::model(x, &p.text("model"), Some(p))?;
        let mut rows = point(&a, &sys, &m, &p.text("model"), p.int("context", 1024))?;
        if x.spec.sweep.keys().any(|k| k.contains('.')) {
            for r in &mut rows {
                r.cells.push(("design".into(), Cell::Text(p.design())));
            }
        }
        Ok(rows)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(&x.spec, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
        crate::plots::flash_compute(&x.spec, rows, dir)
    }
}

/// One point of a `flash-compute` experiment: an architecture (its drive possibly resized), a
/// system and a model.
fn point(a: &Arch, sys: &System, m: &Model, model: &str, context: u64) -> CliResult<Vec<Row>> {
    const BUDGET: u64 = 500_000_000;
    let out = simulate(a, sys, m, context, BUDGET)?;
    let tile = out.tile.map_or("naive".to_string(), |t| format!("{}x{}", t.h, t.w));
    let m = sys.model(m);
    let base = flexgen_ssd_tokens_per_s(&m)?;
    let tps = 1.0 / out.step.seconds;
    let nand = a.levels.iter().find_map(|l| l.nand.as_ref());
    Ok(vec![Row {
        cells: vec![
            ("arch".into(), Cell::Text(a.name.clone())),
            ("model".into(), Cell::Text(model.to_string())),
            ("system".into(), Cell::Text(sys.name.clone())),
            ("context".into(), Cell::Int(context)),
            ("channels".into(), Cell::Int(nand.map_or(0, |n| n.channels))),
            ("chips_per_channel".into(), Cell::Int(nand.map_or(0, |n| n.chips_per_channel))),
            ("tile".into(), Cell::Text(tile)),
            ("alpha".into(), Cell::Float(out.alpha)),
            ("flash_share".into(), Cell::Float(out.share)),
            ("channel_data_utilisation".into(), Cell::Float(out.data_utilisation)),
            ("attention_ms_per_token".into(), Cell::Float(out.step.kv_seconds * 1e3)),
            ("ms_per_token".into(), Cell::Float(out.step.seconds * 1e3)),
            ("tokens_per_s".into(), Cell::Float(tps)),
            ("flexgen_ssd_tokens_per_s".into(), Cell::Float(base)),
            ("speedup_over_flexgen_ssd".into(), Cell::Float(tps / base)),
        ],
    }])
}

/// The summary: every point, the reference tokens/s with errors, the ablation ratios.
/// Where adding flash stops paying, for sweeps over channels × chips per channel: per channel
/// count, the chips per channel after which the next step gains less than 10%; per chip count,
/// the speedup from the fewest to the most channels against their ratio.
fn scaling(rows: &[Row]) -> String {
    let n = |r: &Row, k: &str| r.s(k).parse::<u64>().unwrap_or(0);
    let mut grid: std::collections::BTreeMap<(u64, u64), f64> = Default::default();
    for r in rows.iter().filter(|r| r.s("system") == "full") {
        grid.insert((n(r, "channels"), n(r, "chips_per_channel")), r.f("tokens_per_s"));
    }
    let mut channels: Vec<u64> = grid.keys().map(|k| k.0).collect();
    let mut chips: Vec<u64> = grid.keys().map(|k| k.1).collect();
    channels.dedup();
    chips.sort_unstable();
    chips.dedup();
    if channels.len() < 2 || chips.len() < 2 {
        return String::new();
    }
    let mut s = String::from(
        "\n## Where scaling stops\n\n| channels | chips per channel after which the next step gains < 10% | best chips per channel | tokens/s there |\n|---:|---:|---:|---:|\n",
    );
    for &c in &channels {
        let line: Vec<(u64, f64)> = chips.iter().filter_map(|&k| grid.get(&(c, k)).map(|t| (k, *t))).collect();
        let stop = line.windows(2).find(|w| w[1].1 < 1.1 * w[0].1).map_or("none".to_string(), |w| w[0].0.to_string());
        let best = line.iter().cloned().fold((0, 0.0), |b, x| if x.1 > b.1 { x } else { b });
        let _ = writeln!(s, "| {c} | {stop} | {} | {:.2} |", best.0, best.1);
    }
    s += "\n| chips per channel | channels | speedup | channel ratio |\n|---:|---|---:|---:|\n";
    for &k in &chips {
        let line: Vec<(u64, f64)> = channels.iter().filter_map(|&c| grid.get(&(c, k)).map(|t| (c, *t))).collect();
        if let (Some(first), Some(last)) = (line.first(), line.last()) {
            let _ = writeln!(
                s,
                "| {k} | {} → {} | {:.1}× | {}× |",
                first.0,
                last.0,
                last.1 / first.1,
                last.0 / first.0.max(1)
            );
        }
    }
    s
}

/// Where the context varies: tokens/s per context for each (arch, model, design) of the full
/// design, the KV cache's share of a token growing with it.
fn by_context(rows: &[Row]) -> String {
    let full: Vec<&Row> = rows.iter().filter(|r| r.s("system") == "full").collect();
    let mut contexts: Vec<u64> = full.iter().map(|r| r.f("context") as u64).collect();
    contexts.sort_unstable();
    contexts.dedup();
    if contexts.len() < 2 {
        return String::new();
    }
    let mut s = format!(
        "\n## Tokens/s by context\n\n| arch | model | design | {} |\n|---|---|---|{}\n",
        contexts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(contexts.len())
    );
    let keys = crate::experiment::distinct_by(full.iter().copied(), |r| (r.s("arch"), r.s("model"), r.opt("design")));
    for (arch, model, design) in keys {
        let cells: Vec<String> = contexts
            .iter()
            .map(|&c| {
                full.iter()
                    .find(|r| {
                        r.s("arch") == arch
                            && r.s("model") == model
                            && r.opt("design") == design
                            && r.f("context") as u64 == c
                    })
                    .map_or("—".to_string(), |r| format!("{:.3}", r.f("tokens_per_s")))
            })
            .collect();
        let d = if design.is_empty() { "—" } else { &design };
        let _ = writeln!(s, "| {arch} | {model} | {d} | {} |", cells.join(" | "));
    }
    s
}

fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = String::from(
        "| arch | model | system | channels × chips | tile | flash share | channel data % | ms/token | tokens/s | × FlexGen-SSD |\n|---|---|---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}×{} | {} | {:.3} | {:.1} | {:.2} | {:.3} | {:.1} |",
            r.s("arch"),
            r.s("model"),
            r.s("system"),
            r.s("channels"),
            r.s("chips_per_channel"),
            r.s("tile"),
            r.f("flash_share"),
            100.0 * r.f("channel_data_utilisation"),
            r.f("ms_per_token"),
            r.f("tokens_per_s"),
            r.f("speedup_over_flexgen_ssd")
        );
    }
    s += &scaling(rows);
    s += &by_context(rows);
    let find = |arch: &str, model: &str, system: &str| {
        rows.iter()
            .find(|r| r.s("arch") == arch && r.s("model") == model && r.s("system") == system)
            .map(|r| r.f("tokens_per_s"))
    };
    if !spec.reference.is_empty() {
        s += "\n## Reference points (paper, never used to compute results)\n\n| arch | model | quantity | Strata | paper | error |\n|---|---|---|---:|---:|---:|\n";
        for reference in &spec.reference {
            let get = |k: &str| reference.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let want = |k: &str| reference.get(k).and_then(|v| v.as_float());
            let (arch, model) = (get("arch"), get("model"));
            let Some(full) = find(&arch, &model, "full") else { continue };
            let mut line = |what: &str, got: f64, paper: f64| {
                let _ = writeln!(
                    s,
                    "| {arch} | {model} | {what} | {got:.3} | {paper} | {:+.1}% |",
                    100.0 * (got / paper - 1.0)
                );
            };
            if let Some(w) = want("tokens_per_s") {
                line("tokens/s", full, w);
            }
            for (base, variant, key) in [
                ("full", "no-slicing", "slicing_speedup"),
                ("alpha-split", "no-slicing-alpha", "slicing_speedup"),
                ("full", "no-split", "tiling_speedup"),
                ("full", "tile-128x4096", "gain_over_128x4096"),
                ("full", "tile-4096x128", "gain_over_4096x128"),
                ("alpha-split", "tile-128x4096-alpha", "gain_over_128x4096"),
                ("alpha-split", "tile-4096x128-alpha", "gain_over_4096x128"),
            ] {
                if let (Some(w), Some(b), Some(v)) =
                    (want(key), find(&arch, &model, base), find(&arch, &model, variant))
                {
                    line(&format!("{key} ({base} / {variant})"), b / v, w);
                }
            }
        }
    }
    s
}
