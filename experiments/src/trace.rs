//! `strata trace`: lowers a mapping to the engine's tile task graph, runs it, writes a Chrome
//! trace event JSON (opens in Perfetto or chrome://tracing: one track per compute unit, memory
//! and link, the tiles as slices) and prints the engine's time against the analytical model's
//! with the stall breakdown.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::json;
use strata_sim::engine::tiles::{self, Buffering, Memory, Options};

use crate::error::{CliError, CliResult};
use crate::eval::EvalArgs;

pub struct Args {
    pub eval: EvalArgs,
    pub out: PathBuf,
    /// Where to write the outermost memory's request stream as a DRAM trace, if anywhere.
    pub dram_trace: Option<PathBuf>,
    pub memory: String,
    pub buffering: String,
    pub max_events: u64,
    pub max_steps: u64,
}

/// A slice of a Chrome trace: its track's index, name, start and length in seconds.
pub struct Slice {
    pub track: usize,
    pub name: String,
    pub start: f64,
    pub seconds: f64,
}

/// Writes a Chrome trace event JSON (Perfetto, chrome://tracing): one process, a thread per
/// track in order, the slices on them.
pub fn write_chrome(out: &std::path::Path, process: &str, tracks: &[String], slices: &[Slice]) -> CliResult<()> {
    let mut events = vec![json!({"ph": "M", "name": "process_name", "pid": 1, "args": {"name": process}})];
    for (tid, name) in tracks.iter().enumerate() {
        events.push(json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": name}}));
        events.push(json!({"ph": "M", "name": "thread_sort_index", "pid": 1, "tid": tid, "args": {"sort_index": tid}}));
    }
    for x in slices {
        events.push(
            json!({"ph": "X", "name": x.name, "pid": 1, "tid": x.track, "ts": x.start * 1e6, "dur": x.seconds * 1e6}),
        );
    }
    let doc = json!({"traceEvents": events, "displayTimeUnit": "ns"});
    write_file(out, &serde_json::to_string(&doc).expect("serialisable"))
}

/// Writes `text` to `path`, creating its folder.
fn write_file(path: &std::path::Path, text: &str) -> CliResult<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::store::write_err(dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| crate::store::write_err(path, e))
}

pub fn run(a: &Args) -> CliResult<String> {
    let memory = match a.memory.as_str() {
        "ideal" => Memory::Ideal,
        "real" => Memory::Real,
        other => return Err(CliError::input(format!("--memory: `{other}` is not `ideal` or `real`"))),
    };
    let buffering = match a.buffering.as_str() {
        "auto" => Buffering::Auto,
        "single" => Buffering::Single,
        "double" => Buffering::Double,
        other => return Err(CliError::input(format!("--buffering: `{other}` is not `auto`, `single` or `double`"))),
    };
    let (arch, c, mapping) = crate::eval::load_all(&a.eval)?;
    crate::eval::check_fit(&a.eval, &mapping, &strata_sim::evaluate(&arch, &c, &mapping))?;
    let r =
        tiles::run(&arch, &c, &mapping, Options { memory, buffering, budget: a.max_events, max_steps: a.max_steps })
            .map_err(|e| CliError::engine(&mapping.name, &e))?;
    let tracks: Vec<String> = r.tracks.iter().map(|(name, what)| format!("{what}: {name}")).collect();
    let slices: Vec<Slice> = r
        .slices
        .iter()
        .map(|x| Slice {
            track: x.track,
            name: x.label.name(&c),
            start: x.start.seconds(),
            seconds: (x.end - x.start).seconds(),
        })
        .collect();
    write_chrome(&a.out, &format!("{} on {}", mapping.name, arch.name), &tracks, &slices)?;
    let dram_trace = match &a.dram_trace {
        Some(path) => {
            let level = &arch.levels[0].name;
            let text = dram_requests(&r, &c, level);
            write_file(path, &text)?;
            Some(format!(
                "DRAM trace: {} ({} requests to {level}; replay with `strata dram --trace`)",
                path.display(),
                text.lines().filter(|l| !l.starts_with('#')).count()
            ))
        }
        None => None,
    };
    let ev = &r.evaluation;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} of {} on {}: {} memories, {} buffering",
        mapping.name,
        c.name(),
        arch.name,
        a.memory,
        if r.double_buffered { "double" } else { "single" }
    );
    let _ = writeln!(
        s,
        "engine {:.6e} cycles ({:.4e} s), analytical {:.6e} cycles: engine / analytical = {:.4}; {} events",
        ev.cycles,
        ev.seconds,
        r.analytical_cycles,
        ev.cycles / r.analytical_cycles,
        r.events
    );
    let pct = |x: f64| format!("{:.1}%", 100.0 * x / ev.seconds);
    s += "\n| unit | busy | waiting for loads | waiting for buffers | idle |\n|---|---:|---:|---:|---:|\n";
    for (name, u) in &r.units {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} |",
            pct(u.busy),
            pct(u.waiting_for_loads),
            pct(u.waiting_for_buffers),
            pct(u.idle)
        );
    }
    s += "\n| memory or link | busy | transfers queued (sum) | bytes |\n|---|---:|---:|---:|\n";
    for (name, p) in &r.ports {
        let _ = writeln!(s, "| {name} | {} | {:.4e} s | {} |", pct(p.busy), p.queued, p.bytes);
    }
    let _ = writeln!(s, "\ntrace: {} ({} slices; open in https://ui.perfetto.dev)", a.out.display(), r.slices.len());
    if let Some(line) = dram_trace {
        let _ = writeln!(s, "{line}");
    }
    Ok(s)
}

/// The loads (reads) and drains (writes) the engine ran on memory `level` as a DRAM trace
/// (`time_ns R|W address bytes`, one per line, in start order). The engine moves tiles, not
/// addresses: each tensor is laid out contiguously (4 KiB-aligned, in the cascade's order) and
/// each transfer takes the next span of its tensor, wrapping at its end, so a tensor streamed
/// again reads the same addresses again.
pub fn dram_requests(r: &tiles::Run, c: &strata_workloads::Cascade, level: &str) -> String {
    let mut base = Vec::new();
    let mut next = 0u64;
    for t in c.tensors() {
        base.push(next);
        next += t.bytes().div_ceil(4096) * 4096;
    }
    let mut cursor = vec![0u64; base.len()];
    let mut slices: Vec<&tiles::Slice> = r
        .slices
        .iter()
        .filter(|x| r.tracks[x.track].0 == level && x.bytes > 0 && x.label.kind != tiles::Kind::Work)
        .collect();
    slices.sort_by_key(|x| (x.start, x.end));
    let mut out = format!("# {level} requests of {}: time_ns R|W address bytes\n", c.name());
    for x in slices {
        let t = x.label.tensor.expect("loads and drains name their tensor");
        let size = c.tensor(t).bytes().max(1);
        let addr = base[t.0] + cursor[t.0] % size;
        cursor[t.0] += x.bytes;
        let op = if x.label.kind == tiles::Kind::Drain { "W" } else { "R" };
        let _ = writeln!(out, "{:.3} {op} {addr:#x} {}", x.start.seconds() * 1e9, x.bytes);
    }
    out
}
