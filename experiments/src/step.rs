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

pub struct Args {
    pub arch: String,
    pub system: String,
    pub model: String,
    pub phase: String,
    pub tokens: u64,
    pub batch: u64,
    pub trace: Option<PathBuf>,
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
    Ok(s)
}
