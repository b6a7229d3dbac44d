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
    pub memory: String,
    pub buffering: String,
    pub max_events: u64,
    pub max_steps: u64,
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
    let mut events = Vec::new();
    for (tid, (name, what)) in r.tracks.iter().enumerate() {
        events.push(json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": format!("{what}: {name}")}}));
        events.push(json!({"ph": "M", "name": "thread_sort_index", "pid": 1, "tid": tid, "args": {"sort_index": tid}}));
    }
    events.push(json!({"ph": "M", "name": "process_name", "pid": 1, "args": {"name": format!("{} on {}", mapping.name, arch.name)}}));
    for s in &r.slices {
        events.push(json!({
            "ph": "X",
            "name": s.label.name(&c),
            "pid": 1,
            "tid": s.track,
            "ts": s.start.seconds() * 1e6,
            "dur": (s.end - s.start).seconds() * 1e6,
        }));
    }
    let doc = json!({"traceEvents": events, "displayTimeUnit": "ns"});
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::store::write_err(dir, e))?;
    }
    std::fs::write(&a.out, serde_json::to_string(&doc).expect("serialisable"))
        .map_err(|e| crate::store::write_err(&a.out, e))?;
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
    Ok(s)
}
