//! `strata flash-compute`: LLM decode on an NPU + in-flash-compute machine (Cambricon-LLM):
//! tokens/s, each GeMV's time and channel use, the tile and flash/NPU split the timing gives.

use std::fmt::Write as _;

use strata_arch::Arch;
use strata_mappings::flash_tiling::{self, Tile};
use strata_sim::flash_compute::{self, Options, System, Tiling, Token};
use strata_workloads::Model;

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, ExperimentSpec, Point, Row};
use crate::kind::{Axis, Kind, Values, optional, required};

pub struct Args {
    pub arch: String,
    pub model: String,
    pub context: u64,
    pub tile: String,
    pub split: String,
    pub no_slicing: bool,
    pub slices: u64,
    pub no_ecc: bool,
    pub max_events: u64,
}

/// How requests are tiled: `aware` (the least channel traffic per GeMV), `naive`, or `HxW`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TileChoice {
    Aware,
    Naive,
    Fixed(Tile),
}

pub fn tile_choice(s: &str) -> CliResult<TileChoice> {
    match s {
        "aware" => Ok(TileChoice::Aware),
        "naive" => Ok(TileChoice::Naive),
        _ => {
            let parse = |v: Option<&str>| v.and_then(|v| v.trim().parse::<u64>().ok());
            let mut it = s.split(['x', '×']);
            match (parse(it.next()), parse(it.next()), it.next()) {
                (Some(h), Some(w), None) => Ok(TileChoice::Fixed(Tile { h, w })),
                _ => Err(CliError::input(format!("tile: `{s}` is not `aware`, `naive` or HxW (e.g. 256x2048)"))),
            }
        }
    }
}

pub fn system(arch: &str) -> CliResult<(Arch, System)> {
    let a = crate::eval::arch(arch)?;
    let s = System::from_arch(&a).map_err(|e| CliError::input(format!("{arch}: {e}")))?;
    Ok((a, s))
}

/// How each GeMV's weights are split between read-compute and normal reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// Where the two sides finish together, found on the simulated timing.
    Balanced,
    /// The share of weight bytes the paper's α gives (§V), for every GeMV.
    Alpha,
    /// A given share of weight bytes.
    Fixed(f64),
}

pub fn split_choice(s: &str) -> CliResult<Split> {
    match s {
        "balanced" => Ok(Split::Balanced),
        "alpha" => Ok(Split::Alpha),
        _ => match s.parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => Ok(Split::Fixed(f)),
            _ => Err(CliError::input(format!("--split: `{s}` is not `balanced`, `alpha` or a share within 0 and 1"))),
        },
    }
}

/// What one configuration does: the token, the tile of the first GeMV, its α, the share of
/// weight bytes α gives, and the share the token's GeMVs put in flash.
pub struct Outcome {
    pub token: Token,
    pub tile: Option<Tile>,
    pub alpha: f64,
    pub alpha_share: f64,
    pub share: f64,
}

/// The knobs of one configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    pub context: u64,
    pub tile: TileChoice,
    pub split: Split,
    pub slicing: bool,
    pub slices: u64,
    pub ecc: bool,
    pub budget: u64,
}

/// Runs a model's decode step. With a balanced split each GeMV is split where its two sides
/// finish together (whole requests in flash, the rest to the NPU): the controller splits each
/// matrix knowing its shape and the timing.
pub fn simulate(s: &System, m: &Model, k: &Knobs) -> CliResult<Outcome> {
    let tile_of = |cols: u64| match k.tile {
        TileChoice::Aware => Some(flash_tiling::aware_tile(&s.nand, s.elem_bytes, cols, s.core_buffer_bytes)),
        TileChoice::Fixed(t) => Some(t),
        TileChoice::Naive => None,
    };
    if let TileChoice::Fixed(t) = k.tile {
        t.check(&s.nand, s.elem_bytes).map_err(|e| CliError::input(format!("--tile: {e}")))?;
    }
    let first = tile_of(m.d_model);
    let reference =
        first.unwrap_or_else(|| flash_tiling::aware_tile(&s.nand, s.elem_bytes, m.d_model, s.core_buffer_bytes));
    let alpha = flash_tiling::alpha(&s.nand, reference);
    let alpha_share = flash_tiling::flash_share(&s.nand, s.elem_bytes, reference);
    let mut gemv_of = |rows: u64, cols: u64| {
        let tiling = tile_of(cols).map_or(Tiling::Naive, Tiling::Broadcast);
        let o = Options { tiling, flash_share: alpha_share, slicing: k.slicing, slices: k.slices, ecc: k.ecc };
        match k.split {
            Split::Balanced => flash_compute::balanced(s, &o, rows, cols, k.budget),
            Split::Alpha => flash_compute::gemv(s, &o, rows, cols, k.budget),
            Split::Fixed(f) => flash_compute::gemv(s, &Options { flash_share: f, ..o }, rows, cols, k.budget),
        }
    };
    let token = flash_compute::decode(s, m, k.context, &mut gemv_of).map_err(|e| CliError::flash(&m.name, &e))?;
    let bytes = |f: &dyn Fn(&flash_compute::Gemv) -> u64| {
        m.layers * token.gemvs.iter().map(|(_, g)| f(g)).sum::<u64>() + f(&token.lm_head)
    };
    let share = bytes(&|g| g.flash_bytes) as f64 / bytes(&|g| g.flash_bytes + g.npu_bytes).max(1) as f64;
    Ok(Outcome { token, tile: first, alpha, alpha_share, share })
}

pub fn run(a: &Args) -> CliResult<String> {
    let (arch, s) = system(&a.arch)?;
    let m = crate::run::model(&a.model)?;
    if a.context == 0 {
        return Err(CliError::input("--context: must be at least 1"));
    }
    let choice = tile_choice(&a.tile)?;
    if a.slices == 0 {
        return Err(CliError::input("--slices: must be at least 1"));
    }
    let knobs = Knobs {
        context: a.context,
        tile: choice,
        split: split_choice(&a.split)?,
        slicing: !a.no_slicing,
        slices: a.slices,
        ecc: !a.no_ecc,
        budget: a.max_events,
    };
    let out = simulate(&s, &m, &knobs)?;
    let t = &out.token;
    let n = &s.nand;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} on {}: {} channels × {} chips × {} dies ({} cores), {} KiB pages, tR {:.0} µs, {:.1} GB/s per channel",
        m.name,
        arch.name,
        n.channels,
        n.chips_per_channel,
        n.dies_per_chip,
        s.cores(),
        n.page_bytes.0 >> 10,
        n.t_read.0 * 1e6,
        n.channel_bandwidth.0 / 1e9
    );
    let tile = out.tile.map_or("naive (whole rows per page, no broadcast)".to_string(), |t| format!("{}×{}", t.h, t.w));
    let _ = writeln!(
        o,
        "  tile {tile}; α (read-compute share of requests) {:.3}, which puts {:.3} of the weight bytes in flash",
        out.alpha, out.alpha_share,
    );
    let how = match knobs.split {
        Split::Balanced => "each GeMV balanced on the timing",
        Split::Alpha => "α's share in every GeMV",
        Split::Fixed(_) => "a fixed share",
    };
    let _ = writeln!(o, "  split: {how}; share of weight bytes in flash {:.3}", out.share);
    let _ = writeln!(
        o,
        "  slicing {}, outlier ECC {} ({} B per page), context {} tokens",
        if a.no_slicing { "off" } else { "on" },
        if a.no_ecc { "off" } else { "on" },
        s.ecc_bytes(),
        a.context
    );
    let _ = writeln!(
        o,
        "  {:<10} {:>12} {:>12} {:>14} {:>14}",
        "GeMV", "rows × cols", "time (µs)", "channel data %", "in flash %"
    );
    let shapes = flash_compute::layer_gemvs(&m);
    for ((name, g), (_, r, c)) in t.gemvs.iter().zip(&shapes) {
        let _ = writeln!(
            o,
            "  {name:<10} {:>12} {:>12.1} {:>14.1} {:>14.1}",
            format!("{r}×{c}"),
            g.seconds * 1e6,
            100.0 * g.data_utilisation,
            100.0 * g.flash_bytes as f64 / (g.flash_bytes + g.npu_bytes) as f64
        );
    }
    let _ = writeln!(o, "  {:<10} {:>12} {:>12.1}", "attention", "", t.attention_seconds * 1e6);
    let _ = writeln!(
        o,
        "  {:<10} {:>12} {:>12.1} {:>14.1}",
        "lm-head",
        format!("{}×{}", m.vocab, m.d_model),
        t.lm_head.seconds * 1e6,
        100.0 * t.lm_head.data_utilisation
    );
    let _ = writeln!(
        o,
        "  per token {:.2} ms ({} layers) → {:.2} tokens/s; channels carry data {:.1}% of the time; {} events",
        t.seconds * 1e3,
        m.layers,
        t.tokens_per_s(),
        100.0 * t.data_utilisation,
        t.events
    );
    Ok(o)
}

/// Variants an experiment compares: the full design and its ablations.
pub const VARIANTS: [&str; 10] = [
    "full",
    "no-slicing",
    "alpha-split",
    "no-slicing-alpha",
    "no-split",
    "naive-tiles",
    "tile-128x4096",
    "tile-4096x128",
    "tile-128x4096-alpha",
    "tile-4096x128-alpha",
];

fn knobs(variant: &str, context: u64) -> CliResult<Knobs> {
    let full = Knobs {
        context,
        tile: TileChoice::Aware,
        split: Split::Balanced,
        slicing: true,
        slices: 4,
        ecc: true,
        budget: 500_000_000,
    };
    Ok(match variant {
        "full" => full,
        "no-slicing" => Knobs { slicing: false, ..full },
        // The paper's own split (α for every GeMV), with and without Slice Control.
        "alpha-split" => Knobs { split: Split::Alpha, ..full },
        "no-slicing-alpha" => Knobs { split: Split::Alpha, slicing: false, ..full },
        // §V off: every weight is read-computed in flash (prior in-flash compute), no split.
        "no-split" => Knobs { split: Split::Fixed(1.0), ..full },
        // Prior tiles as well: whole rows per page and no input broadcast.
        "naive-tiles" => Knobs { split: Split::Fixed(1.0), tile: TileChoice::Naive, ..full },
        "tile-128x4096" => Knobs { tile: TileChoice::Fixed(Tile { h: 128, w: 4096 }), ..full },
        "tile-4096x128" => Knobs { tile: TileChoice::Fixed(Tile { h: 4096, w: 128 }), ..full },
        // The paper's procedure: each tile with the α its own timing gives.
        "tile-128x4096-alpha" => {
            Knobs { tile: TileChoice::Fixed(Tile { h: 128, w: 4096 }), split: Split::Alpha, ..full }
        }
        "tile-4096x128-alpha" => {
            Knobs { tile: TileChoice::Fixed(Tile { h: 4096, w: 128 }), split: Split::Alpha, ..full }
        }
        other => {
            return Err(CliError::input(format!(
                "experiment.sweep.variant: `{other}` is not one of {}",
                VARIANTS.join(", ")
            )));
        }
    })
}

/// FlexGen-SSD, the paper's baseline: an A100 with every weight on an NVMe SSD, streamed layer
/// by layer with loading and compute overlapped, so a token takes the weights' read time. The
/// SSD is the engine's `tlc-client` drive on 1 MiB sequential reads at queue depth 32.
pub fn flexgen_ssd_tokens_per_s(s: &System, m: &Model) -> CliResult<f64> {
    use std::sync::OnceLock;
    use strata_arch::arch::NandOrg;
    use strata_sim::engine::nand;
    // The drive's rate is the same for every point: simulate it once per process.
    static RATE: OnceLock<Result<f64, String>> = OnceLock::new();
    let rate = RATE.get_or_init(|| {
        let org = NandOrg::preset("tlc-client").expect("preset").map_err(|e| format!("tlc-client: {e}"))?;
        let t = nand::Timing::of(&org).map_err(|e| e.to_string())?;
        let st = nand::run(&t, &nand::sequential(1 << 20, 4096), 32, u64::MAX).map_err(|e| e.to_string())?;
        Ok(st.bandwidth())
    });
    let rate = rate.clone().map_err(CliError::input)?;
    Ok(rate / (m.params() * s.elem_bytes) as f64)
}

/// The `flash-compute` experiment kind: LLM decode on an NPU + in-flash-compute machine
/// (Cambricon-LLM) per architecture, model and variant (the full design or an ablation).
pub struct FlashCompute;

const AXES: &[Axis] = &[
    required("arch", Values::Arch),
    required("model", Values::Model),
    required("variant", Values::OneOf(&VARIANTS)),
    optional("context", Values::Count),
    optional("channels", Values::Count),
    optional("chips_per_channel", Values::Count),
];

impl Kind for FlashCompute {
    fn name(&self) -> &'static str {
        "flash-compute"
    }
    fn about(&self) -> &'static str {
        "LLM decode with in-flash compute (Cambricon-LLM) per architecture, model and variant"
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
            "variant",
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
    fn check(&self, x: &Experiment) -> CliResult<()> {
        for (i, v) in x.sweep.values("arch").into_iter().enumerate() {
            let a = crate::kind::arch(x, v.as_str().unwrap_or_default(), None)?;
            System::from_arch(&a)
                .map_err(|e| CliError::input(format!("{}: {e}", x.at(&format!("experiment.sweep.arch[{i}]")))))?;
        }
        Ok(())
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        let a = crate::kind::arch(x, &p.text("arch"), Some(p))?;
        let m = crate::kind::model(x, &p.text("model"), Some(p))?;
        let mut rows = point(
            &a,
            &m,
            &p.text("model"),
            &p.text("variant"),
            p.int("context", 1024),
            p.int("channels", 0),
            p.int("chips_per_channel", 0),
        )?;
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

/// One point of a `flash-compute` experiment: an architecture (optionally with its channel or
/// chip count replaced), a model and a variant.
fn point(
    a: &Arch,
    m: &Model,
    model: &str,
    variant: &str,
    context: u64,
    channels: u64,
    chips: u64,
) -> CliResult<Vec<Row>> {
    let mut s = System::from_arch(a).map_err(|e| CliError::input(format!("{}: {e}", a.name)))?;
    if channels > 0 {
        s.nand.channels = channels;
    }
    if chips > 0 {
        s.nand.chips_per_channel = chips;
    }
    let k = knobs(variant, context)?;
    let out = simulate(&s, m, &k)?;
    let tile = out.tile.map_or("naive".to_string(), |t| format!("{}x{}", t.h, t.w));
    let base = flexgen_ssd_tokens_per_s(&s, m)?;
    let tps = out.token.tokens_per_s();
    Ok(vec![Row {
        cells: vec![
            ("arch".into(), Cell::Text(a.name.clone())),
            ("model".into(), Cell::Text(model.to_string())),
            ("variant".into(), Cell::Text(variant.to_string())),
            ("context".into(), Cell::Int(context)),
            ("channels".into(), Cell::Int(s.nand.channels)),
            ("chips_per_channel".into(), Cell::Int(s.nand.chips_per_channel)),
            ("tile".into(), Cell::Text(tile)),
            ("alpha".into(), Cell::Float(out.alpha)),
            ("flash_share".into(), Cell::Float(out.share)),
            ("channel_data_utilisation".into(), Cell::Float(out.token.data_utilisation)),
            ("attention_ms_per_token".into(), Cell::Float(out.token.attention_seconds * m.layers as f64 * 1e3)),
            ("ms_per_token".into(), Cell::Float(out.token.seconds * 1e3)),
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
    for r in rows.iter().filter(|r| r.s("variant") == "full") {
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
    let full: Vec<&Row> = rows.iter().filter(|r| r.s("variant") == "full").collect();
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
        "| arch | model | variant | channels × chips | tile | flash share | channel data % | ms/token | tokens/s | × FlexGen-SSD |\n|---|---|---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}×{} | {} | {:.3} | {:.1} | {:.2} | {:.3} | {:.1} |",
            r.s("arch"),
            r.s("model"),
            r.s("variant"),
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
    let find = |arch: &str, model: &str, variant: &str| {
        rows.iter()
            .find(|r| r.s("arch") == arch && r.s("model") == model && r.s("variant") == variant)
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
