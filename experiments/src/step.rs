//! `strata step`: one step of a model (prefill of a prompt, or decode at a context) run by a
//! system file on an architecture through the one system model's engine: where the time goes
//! (stages, transfers, management), per device, link and memory, energy, the GeMVs a drive's
//! cores ran, and optionally a Chrome trace of one layer and the LM head (Perfetto,
//! chrome://tracing).

use std::fmt::Write as _;
use std::path::PathBuf;

use strata_sim::engine::step;
use strata_workloads::Phase;

use crate::error::{CliError, CliResult};
use crate::trace::{Slice, write_chrome};

/// `strata step`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture preset or file.
    #[arg(long, default_value = "a6000-csd")]
    pub arch: String,
    /// System preset or file (`strata list` shows the presets).
    #[arg(long, default_value = "insta")]
    pub system: String,
    #[arg(long, default_value = "opt-13b")]
    pub model: String,
    /// `decode` (one token at a context of --tokens) or `prefill` (a prompt of --tokens).
    #[arg(long, default_value = "decode")]
    pub phase: String,
    /// The context (decode) or the prompt (prefill), 1 to 2²⁴ tokens.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub tokens: u64,
    /// Sequences in the batch (1 to 2²⁰).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub batch: u64,
    /// Write a Chrome trace event JSON of one layer and the LM head here.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write the requests one layer and the LM head send a memory (--memory) here, in the
    /// request trace format (`time_ns R|W address bytes`) that `strata nand --trace` and
    /// `strata dram --trace` replay.
    #[arg(long)]
    pub request_trace: Option<PathBuf>,
    /// The memory (an architecture level with a `[nand]` or `[dram]` organisation) whose
    /// requests --request-trace writes; needed where the step uses several.
    #[arg(long, requires = "request_trace")]
    pub memory: Option<String>,
    /// Most events each simulated device run may take.
    #[arg(long, default_value_t = 500_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: u64,
}

pub fn run(a: &Args) -> CliResult<String> {
    let arch = crate::eval::arch(&a.arch)?;
    let m = crate::run::model(&a.model)?;
    let (text, source) = crate::load::preset_or_file(&a.system, "a system", strata_mappings::system::PRESETS)?;
    let sys = strata_mappings::system::System::from_toml(&text, &arch)
        .map_err(|e| CliError::spec(&format!("{source} on {}", arch.name), &e))?;
    let phase = match a.phase.as_str() {
        "prefill" => Phase::Prefill { seq: a.tokens },
        "decode" => Phase::Decode { context: a.tokens },
        other => return Err(CliError::input(format!("--phase: `{other}` is not `prefill` or `decode`"))),
    };
    let d = step::step(&arch, &m, &sys, phase, a.batch, a.max_events)
        .map_err(|e| crate::serving::step_error(&format!("{}, {}, {}", arch.name, m.name, sys.name), &e))?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} of {} at batch {} ({} tokens) on {} with system {}: {:.6} s",
        m.name, a.phase, m.name, a.batch, a.tokens, arch.name, sys.name, d.seconds
    );
    let _ = writeln!(
        s,
        "  stages {:.6} s, transfers {:.6} s{}, memory management {:.6} s; attention over the cache {:.6} s; {:.3} J",
        d.stage_seconds,
        d.transfer_seconds,
        if sys.overlap_remote_reads { " (overlapped with the stages)" } else { "" },
        d.load_seconds,
        d.kv_seconds,
        d.energy_j
    );
    let _ = writeln!(s, "  busy seconds per device:");
    for (device, t) in &d.devices {
        let _ = writeln!(s, "    {device:<16} {t:.6}");
    }
    if !d.links.is_empty() {
        let _ = writeln!(s, "  links (GB, busy seconds):");
        for (link, (bytes, t)) in &d.links {
            let _ = writeln!(s, "    {link:<16} {:>10.3} {t:.6}", bytes / 1e9);
        }
    }
    let _ = writeln!(s, "  memories (GB read, seconds reading):");
    for (tier, bytes) in &d.tiers {
        let _ =
            writeln!(s, "    {tier:<16} {:>10.3} {:.6}", bytes / 1e9, d.tier_seconds.get(tier).copied().unwrap_or(0.0));
    }
    for g in &d.gemvs {
        let _ = writeln!(
            s,
            "  GeMV {} ({}×{}, ×{}): {:.1} µs, {:.1}% of its weights read-computed in the drive",
            g.einsums,
            g.rows,
            g.cols,
            g.times,
            g.gemv.seconds * 1e6,
            100.0 * g.gemv.flash_bytes as f64 / (g.gemv.flash_bytes + g.gemv.npu_bytes).max(1) as f64
        );
    }
    if let Some(out) = &a.trace {
        let mut tracks: Vec<String> = Vec::new();
        for x in &d.trace {
            if !tracks.contains(&x.track) {
                tracks.push(x.track.clone());
            }
        }
        let slices: Vec<Slice> = d
            .trace
            .iter()
            .map(|x| Slice {
                track: tracks.iter().position(|t| *t == x.track).expect("listed"),
                name: x.name.clone(),
                start: x.start,
                seconds: x.seconds,
            })
            .collect();
        write_chrome(out, &format!("{} {} on {} ({})", m.name, a.phase, arch.name, sys.name), &tracks, &slices)?;
        let _ = writeln!(s, "  trace of one layer and the LM head: {} ({} slices)", out.display(), d.trace.len());
    }
    if let Some(path) = &a.request_trace {
        let memory = traced_memory(&d, a.memory.as_deref())?;
        let level = arch.levels.iter().find(|l| l.name == memory).expect("a memory of the step is a level");
        let span = level.capacity.map_or(64 << 30, |c| c.0);
        let (text, requests, writes) = request_lines(&d, &memory, span);
        std::fs::write(path, &text).map_err(|e| crate::store::write_err(path, e))?;
        let engine = if level.nand.is_some() { "nand --drive" } else { "dram --standard" };
        let sent = || d.requests.iter().filter(|r| r.memory == memory);
        let _ = writeln!(
            s,
            "  requests of one layer and the LM head to {memory}: {} ({requests} requests, {writes} writes, {:.3} MB, \
             {:.6} s busy here); replay with `strata {engine} {}:{memory} --trace {}`",
            path.display(),
            sent().map(|r| r.bytes).sum::<f64>() / 1e6,
            sent().map(|r| r.seconds).sum::<f64>(),
            a.arch,
            path.display()
        );
    }
    Ok(s)
}

/// The memory --request-trace writes: the one named, or the only one the step sends requests to.
fn traced_memory(d: &step::StepReport, named: Option<&str>) -> CliResult<String> {
    let mut memories: Vec<&str> = Vec::new();
    for r in &d.requests {
        if !memories.contains(&r.memory.as_str()) {
            memories.push(&r.memory);
        }
    }
    match (named, memories.as_slice()) {
        (_, []) => Err(CliError::input(
            "--request-trace: this step sends no requests to a memory with a [nand] or [dram] organisation",
        )),
        (Some(m), _) if memories.contains(&m) => Ok(m.to_string()),
        (Some(m), _) => Err(CliError::input(format!(
            "--memory: the step sends `{m}` no requests; it sends them to {}",
            memories.join(", ")
        ))),
        (None, [one]) => Ok(one.to_string()),
        (None, _) => Err(CliError::input(format!(
            "--request-trace: the step sends requests to {}; name one with --memory",
            memories.join(", ")
        ))),
    }
}

/// `memory`'s requests on the step's timeline as a request trace (`time_ns R|W address bytes`):
/// each run of requests in its block size, spread evenly over the seconds the engine gave it;
/// back-to-back runs continue where the last left off, scattered ones fall at block-aligned
/// offsets drawn from a fixed seed, all within `span` bytes. Returns the text, the requests
/// and the writes among them.
fn request_lines(d: &step::StepReport, memory: &str, span: u64) -> (String, u64, u64) {
    let mut out = format!("# requests of one layer and the LM head to {memory}: time_ns R|W address bytes\n");
    let (mut cursor, mut requests, mut writes) = (0u64, 0u64, 0u64);
    let mut draw = strata_sim::engine::xorshift(7);
    for r in d.requests.iter().filter(|r| r.memory == memory) {
        let block = r.block.clamp(1, span);
        let n = (r.bytes / block as f64).ceil().max(1.0) as u64;
        let op = if r.write { "W" } else { "R" };
        for i in 0..n {
            let addr = if r.scattered {
                draw.next().expect("an endless stream") % (span / block) * block
            } else {
                let a = cursor % (span - span % block);
                cursor = a + block;
                a
            };
            let ns = (r.start + r.seconds * i as f64 / n as f64) * 1e9;
            let _ = writeln!(out, "{ns:.3} {op} {addr:#x} {block}");
        }
        requests += n;
        writes += if r.write { n } else { 0 };
    }
    (out, requests, writes)
}
