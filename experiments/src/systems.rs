//! The systems an experiment compares: how each maps attention and the linear layers.
//!
//! Every family is a mapping template with one free choice that the architecture's capacity
//! settles, searched with the analytical model as the judge (as FuseMax sizes P1 and FLAT picks
//! its fusion granularity):
//! - `fusemax`: FuseMax's Mapping 1 of the 1-pass cascade, interleaved binding; the largest query
//!   block P1 whose state fits the buffer. `fusemax-sequential` is the same without the binding
//!   (FuseMax's "+Architecture").
//! - `cascade`: the 1-pass cascade on FLAT's hardware ("+Cascade"): the 2D array has no max or
//!   exp, so only BQK and SLNV run on it; everything else runs on the 1D array.
//! - `flat`: FLAT's fused 3-pass dataflow: the largest row block whose logits stay on chip, or,
//!   when none fits, the row block that spills them to DRAM at the least cost.
//! - `unfused`: QK and AV on their own, mapped by the mapper, and the 3-pass softmax fused per
//!   query row (reading each row of logits once from a shared buffer), with every intermediate
//!   between the three phases going through DRAM, as the FuseMax artifact runs it.
//!
//! Linear layers are mapped by the mapper with the experiment's strategy and objective.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_arch::Arch;
use strata_mappings::CascadeMapping;
use strata_mappings::mapper::{Mapspace, Strategy, to_spec};
use strata_mappings::spec::MappingSpec;
use strata_sim::{Evaluation, evaluate, quick};
use strata_workloads::Cascade;

use crate::error::{CliError, CliResult};
use crate::experiment::MapperSpec;

/// Attention mapping families, by the name experiment files use.
pub const FAMILIES: [&str; 5] = ["fusemax", "fusemax-sequential", "cascade", "flat", "unfused"];

/// How a system maps attention.
#[derive(Debug, Clone, PartialEq)]
pub enum AttentionMapping {
    /// A family of [`FAMILIES`]: a template whose free choice the capacity settles.
    Family(String),
    /// One mapping as written (`origin` names where, for errors); it must fit as it is.
    Fixed { text: String, origin: String, passes: u8 },
    /// The fusion search over the `passes`-pass cascade, no template assumed.
    Search { passes: u8 },
}

impl AttentionMapping {
    /// Which cascade it maps.
    pub fn passes(&self) -> u8 {
        match self {
            AttentionMapping::Family(f) if f == "flat" || f == "unfused" => 3,
            AttentionMapping::Family(_) => 1,
            AttentionMapping::Fixed { passes, .. } | AttentionMapping::Search { passes } => *passes,
        }
    }
}

const RUNNING: &str = r#"["BQK", "LM", "RM", "SLN", "SLD", "SLNV", "PRM", "SPD", "RD", "SPNV", "RNV"]"#;

fn einsum(name: &str, unit: &str, levels: &str) -> String {
    format!("[[mapping.einsums]]\neinsum = \"{name}\"\nunit = \"{unit}\"\nlevels = [{levels}]\n")
}

/// FuseMax's Mapping 1 with `p1` query tiles of `p0` queries held in the buffer.
fn fusemax_template(p1: u64, p0: u64, m0: u64, interleaved: bool) -> String {
    let pipelining = if interleaved { "interleaved" } else { "sequential" };
    let two_d = |extra: &str| format!("{extra}\"p={p0}@x\", \"m0={m0}@y\"");
    let one_d = |extra: &str| format!("{extra}\"p={p0}@x\"");
    let mut t = format!(
        "[mapping]\nname = \"fusemax\"\n[[mapping.groups]]\nname = \"query-block\"\nprefix = [\"b=*\", \"h=*\", \"p=*\"]\nmembers = [\"running\", \"AV\"]\n\
         [[mapping.groups]]\nname = \"running\"\nprefix = [\"m1=*\", \"GlobalBuffer:p={p1}\"]\nmembers = {RUNNING}\npipelining = \"{pipelining}\"\n"
    );
    let lv = |dram: &str, gb_loops: String, gb_keep: &str| {
        format!(
            "{{ level = \"DRAM\", keep = [{dram}] }}, {{ level = \"GlobalBuffer\", loops = [{gb_loops}]{gb_keep} }}, {{ level = \"{{RF}}\" }}"
        )
    };
    let rf = |s: String, unit: &str| s.replace("{RF}", if unit == "pe2d" { "RF2D" } else { "RF1D" });
    let e = |name: &str, unit: &str, dram: &str, gb_loops: String, gb_keep: &str| {
        einsum(name, unit, &rf(lv(dram, gb_loops, gb_keep), unit))
    };
    t += &e("BQK", "pe2d", "\"Q\", \"K\"", two_d("\"e=*\", "), ", keep = [\"Q\", \"K\"]");
    t += &e("LM", "pe2d", "", two_d(""), ", keep = [\"LM\"]");
    t += &e("RM", "pe1d", "", one_d(""), "");
    t += &e("SLN", "pe2d", "", two_d(""), ", keep = [\"RM\"]");
    t += &e("SLD", "pe2d", "", two_d(""), ", keep = [\"SLD\"]");
    t += &e("SLNV", "pe2d", "\"V\"", two_d("\"f=*\", "), ", keep = [\"V\", \"SLNV\"]");
    for name in ["PRM", "SPD", "RD"] {
        t += &e(name, "pe1d", "", one_d(""), "");
    }
    for name in ["SPNV", "RNV"] {
        t += &e(name, "pe1d", "", one_d("\"f=*\", "), "");
    }
    t += &e("AV", "pe1d", "\"AV\"", one_d(&format!("\"p={p1}\", \"f=*\", ")), "");
    t
}

/// The 1-pass cascade on FLAT's hardware: BQK and SLNV on the 2D array, the rest on the 1D array;
/// what the two arrays exchange meets in the buffer.
fn cascade_template(p1: u64, p0: u64, m0: u64) -> String {
    let mut t = format!(
        "[mapping]\nname = \"cascade\"\n[[mapping.groups]]\nname = \"query-block\"\nprefix = [\"b=*\", \"h=*\", \"p=*\"]\nmembers = [\"running\", \"AV\"]\n\
         [[mapping.groups]]\nname = \"running\"\nprefix = [\"m1=*\", \"GlobalBuffer:p={p1}\"]\nmembers = {RUNNING}\npipelining = \"interleaved\"\n"
    );
    let two = |name: &str, dram: &str, loops: &str, keep: &str| {
        einsum(
            name,
            "pe2d",
            &format!(
                "{{ level = \"DRAM\", keep = [{dram}] }}, {{ level = \"GlobalBuffer\", loops = [{loops}\"p={p0}@x\", \"m0={m0}@y\"], keep = [{keep}] }}, {{ level = \"RF2D\" }}"
            ),
        )
    };
    let one = |name: &str, dram: &str, loops: &str| {
        einsum(
            name,
            "pe1d",
            &format!(
                "{{ level = \"DRAM\", keep = [{dram}] }}, {{ level = \"GlobalBuffer\", loops = [{loops}\"p={p0}@x\"] }}, {{ level = \"RF1D\" }}"
            ),
        )
    };
    t += &two("BQK", "\"Q\", \"K\"", "\"e=*\", ", "\"Q\", \"K\", \"BQK\"");
    t += &one("LM", "", "\"m0=*\", ");
    t += &one("RM", "", "");
    t += &one("SLN", "", "\"m0=*\", ");
    t += &one("SLD", "", "\"m0=*\", ");
    t += &two("SLNV", "\"V\"", "\"f=*\", ", "\"SLN\", \"V\", \"SLNV\"");
    for name in ["PRM", "SPD", "RD"] {
        t += &one(name, "", "");
    }
    for name in ["SPNV", "RNV"] {
        t += &one(name, "", "\"f=*\", ");
    }
    t += &one("AV", "\"AV\"", &format!("\"p={p1}\", \"f=*\", "));
    t
}

/// The 3-pass softmax of one query row on the 1D array, spatially over keys (M0 at a time,
/// fusemax.md §7.3), reading the row of logits once from a buffer the four passes share and
/// writing the normalised row once. `extra` adds members' outer keeps (`A` goes to DRAM).
fn softmax_rows(group: &str, prefix: &str, m0: u64) -> String {
    let mut t = format!(
        "[[mapping.groups]]\nname = \"{group}\"\nprefix = [{prefix}]\nmembers = [\"GM\", \"SN\", \"SD\", \"A\"]\nshared = [\"QK@GlobalBuffer\"]\n"
    );
    for (name, dram) in [("GM", "\"QK\""), ("SN", "\"QK\""), ("SD", ""), ("A", "\"A\"")] {
        t += &einsum(
            name,
            "pe1d",
            &format!(
                "{{ level = \"DRAM\", keep = [{dram}] }}, {{ level = \"GlobalBuffer\", loops = [\"m=*\", \"m={m0}@x\"] }}, {{ level = \"RF1D\" }}"
            ),
        );
    }
    t
}

/// FLAT: per (batch, head, row block of `rows` queries) the logits of the block are produced,
/// normalised by the 3-pass softmax on the 1D array and consumed. On chip, the block's logits
/// stay in the buffer (K and V kept there or streamed past it). Spilled (FLAT's choice at long
/// sequences), QK and AV keep one block of keys stationary in the buffer per DRAM step, the
/// logits go to DRAM, and the softmax runs row by row from a shared buffer.
fn flat_template(rows: u64, p0: u64, m0: u64, on_chip: bool, stream_kv: bool) -> String {
    // Row blocks narrower than the array use fewer columns.
    let p0 = p0.min(rows);
    let r1 = rows / p0;
    if !on_chip {
        let mut t = "[mapping]\nname = \"flat\"\n[[mapping.groups]]\nname = \"rows\"\nprefix = [\"b=*\", \"h=*\", \"p=*\"]\nmembers = [\"QK\", \"row\", \"AV\"]\npipelining = \"interleaved\"\n".to_string();
        t += &softmax_rows("row", &format!("\"p={rows}\""), m0);
        t += &einsum(
            "QK",
            "pe2d",
            &format!(
                "{{ level = \"DRAM\", loops = [\"m=*\"] }}, {{ level = \"GlobalBuffer\", loops = [\"p={r1}\", \"e=*\", \"m={m0}@y\", \"p={p0}@x\"], keep = [\"Q\", \"K\"] }}, {{ level = \"RF2D\" }}"
            ),
        );
        t += &einsum(
            "AV",
            "pe2d",
            &format!(
                "{{ level = \"DRAM\", loops = [\"m=*\"] }}, {{ level = \"GlobalBuffer\", loops = [\"p={r1}\", \"f=*\", \"m={m0}@y\", \"p={p0}@x\"], keep = [\"V\", \"AV\"] }}, {{ level = \"RF2D\" }}"
            ),
        );
        return t;
    }
    let mut t = "[mapping]\nname = \"flat\"\n[[mapping.groups]]\nname = \"rows\"\nprefix = [\"b=*\", \"h=*\", \"p=*\"]\nmembers = [\"QK\", \"GM\", \"SN\", \"SD\", \"A\", \"AV\"]\npipelining = \"interleaved\"\n".to_string();
    // Streaming K and V past the buffer (FLAT keeps them off chip) reads them once per row block
    // without holding a whole head of keys in the buffer.
    let two = |name: &str, own: &str, loops: &str| {
        let bypass = match (stream_kv, name) {
            (true, "QK") => ", bypass = [\"K\"]",
            (true, "AV") => ", bypass = [\"V\"]",
            _ => "",
        };
        einsum(
            name,
            "pe2d",
            &format!(
                "{{ level = \"DRAM\", keep = [{own}] }}, {{ level = \"GlobalBuffer\", loops = [{loops}]{bypass} }}, {{ level = \"RF2D\" }}"
            ),
        )
    };
    let one = |name: &str, loops: &str| {
        einsum(
            name,
            "pe1d",
            &format!(
                "{{ level = \"DRAM\", keep = [] }}, {{ level = \"GlobalBuffer\", loops = [{loops}] }}, {{ level = \"RF1D\" }}"
            ),
        )
    };
    t += &two("QK", "\"Q\", \"K\"", &format!("\"m=*\", \"p={r1}\", \"e=*\", \"m={m0}@y\", \"p={p0}@x\""));
    // The 3-pass softmax runs on the 1D array spatially over keys, M0 at a time
    // (fusemax.md §7.3), so narrow row blocks still use every 1D PE.
    let keys = format!("\"m=*\", \"p={rows}\", \"m={m0}@x\"");
    for name in ["GM", "SN", "SD", "A"] {
        t += &one(name, &keys);
    }
    t += &two("AV", "\"V\", \"AV\"", &format!("\"p={r1}\", \"m=*\", \"f=*\", \"m={m0}@y\", \"p={p0}@x\""));
    t
}

/// A mapped and evaluated attention cascade.
pub struct Mapped {
    pub eval: Evaluation,
    /// The free choice the family settled (P1 query tiles, FLAT rows, ...), for reports.
    pub choice: String,
}

fn try_template(text: &str, c: &Cascade, arch: &Arch) -> CliResult<Option<Mapped>> {
    let mapping =
        CascadeMapping::from_toml(text, c, arch).map_err(|e| CliError::input(format!("mapping template: {e}")))?;
    let eval = evaluate(arch, c, &mapping);
    Ok(eval.violations.is_empty().then_some(Mapped { eval, choice: String::new() }))
}

fn array(arch: &Arch) -> CliResult<(u64, u64)> {
    let u = arch
        .unit_id("pe2d")
        .ok_or_else(|| CliError::input(format!("architecture {} has no `pe2d` array", arch.name)))?;
    Ok((arch.unit(u).cols, arch.unit(u).rows))
}

/// Maps attention; errors when nothing fits (a capacity violation is bad input here).
pub fn map_attention(a: &AttentionMapping, c: &Cascade, arch: &Arch, m: &MapperSpec) -> CliResult<Mapped> {
    let family = match a {
        AttentionMapping::Family(f) => f.as_str(),
        AttentionMapping::Search { .. } => {
            // What `strata map` does with a whole cascade: fused and (without recurrences)
            // Einsum by Einsum, the better kept.
            let none = crate::constraints::Constraints::default();
            let found = crate::map::map(arch, c, &[], m, m.time_limit, &none, &crate::map::silent())?;
            // As every experiment search: a mapping cut short by the clock is not a result.
            let cut = found.fusion.as_ref().is_some_and(|f| f.time_limit_hit)
                || found.einsums.iter().any(|e| e.time_limit_hit);
            if cut {
                return Err(out_of_time(&format!("{} on {}", c.name(), arch.name), m, ""));
            }
            let mapping = CascadeMapping::from_toml(&found.mapping, c, arch)
                .map_err(|e| CliError::runtime(format!("the search's own mapping does not resolve: {e}")))?;
            let choice = match &found.fusion {
                Some(f) if f.chosen => format!("fusion search, {} mappings", f.evaluated),
                _ => "search: Einsum by Einsum".to_string(),
            };
            return Ok(Mapped { eval: evaluate(arch, c, &mapping), choice });
        }
        AttentionMapping::Fixed { text, origin, .. } => {
            let mapping =
                CascadeMapping::from_toml(text, c, arch).map_err(|e| CliError::input(format!("{origin}: {e}")))?;
            let eval = evaluate(arch, c, &mapping);
            if let Some(v) = eval.violations.first() {
                return Err(CliError::input(format!(
                    "{origin}: the mapping does not fit {} for {}: {} needs {} B of {} but one instance holds {} B",
                    arch.name,
                    c.name(),
                    v.scope,
                    v.needed,
                    v.level,
                    v.capacity
                )));
            }
            return Ok(Mapped { eval, choice: "as written".into() });
        }
    };
    let (p0_max, m0) = array(arch)?;
    let p = c.rank(c.rank_id("p").expect("attention has p")).size;
    let p0 = p0_max.min(p);
    if !p.is_multiple_of(p0) {
        return Err(CliError::input(format!("{family}: {p} queries do not tile over {p0} array columns")));
    }
    let tiles = p / p0;
    let candidates: Vec<u64> = strata_mappings::mapper::divisors(tiles).into_iter().rev().collect();
    let fail = || CliError::input(format!("{family}: no mapping of {} fits {} (capacity)", c.name(), arch.name));
    match family {
        "fusemax" | "fusemax-sequential" | "cascade" => {
            for &p1 in &candidates {
                let text = match family {
                    "cascade" => cascade_template(p1, p0, m0),
                    f => fusemax_template(p1, p0, m0, f == "fusemax"),
                };
                if let Some(mut m) = try_template(&text, c, arch)? {
                    m.choice = format!("P1 = {p1}");
                    return Ok(m);
                }
            }
            Err(fail())
        }
        "flat" => {
            // FLAT's search: row blocks of any size (a divisor of the queries), logits on chip
            // or spilled to DRAM; the fastest that fits wins.
            let rows: Vec<u64> = strata_mappings::mapper::divisors(p)
                .into_iter()
                .rev()
                .filter(|r| r.is_power_of_two() || *r == p)
                .collect();
            let mut best: Option<Mapped> = None;
            for (on_chip, stream_kv) in [(true, false), (true, true), (false, false)] {
                for &r in &rows {
                    if let Some(mut m) = try_template(&flat_template(r, p0, m0, on_chip, stream_kv), c, arch)?
                        && best.as_ref().is_none_or(|b| m.eval.cycles < b.eval.cycles)
                    {
                        let kv = if stream_kv { ", K/V streamed" } else { "" };
                        m.choice = format!("{r} rows, logits {}{kv}", if on_chip { "on chip" } else { "spilled" });
                        best = Some(m);
                    }
                }
            }
            best.ok_or_else(fail)
        }
        "unfused" => {
            // As the FuseMax artifact runs it: QK and AV mapped on their own, the softmax fused
            // per query row, every intermediate between the three phases through DRAM.
            let mut spec = map_each(c, arch, m, &["QK", "AV"])?;
            let one_d = arch.unit_id("pe1d").map_or(m0, |u| arch.unit(u).cols);
            let extra: MappingSpec = strata_mappings::from_toml::<strata_mappings::spec::MappingFile>(&format!(
                "[mapping]\nname = \"softmax\"\n{}",
                softmax_rows("softmax", "\"b=*\", \"h=*\", \"p=*\"", one_d)
            ))
            .map_err(|e| CliError::input(format!("unfused template: {e}")))?
            .mapping;
            spec.einsums.extend(extra.einsums);
            spec.groups.extend(extra.groups);
            let mapping =
                CascadeMapping::resolve(&spec, c, arch).map_err(|e| CliError::input(format!("unfused: {e}")))?;
            let eval = evaluate(arch, c, &mapping);
            Ok(Mapped { eval, choice: "mapper per einsum".into() })
        }
        other => {
            Err(CliError::input(format!("unknown attention family `{other}` (families: {})", FAMILIES.join(", "))))
        }
    }
}

/// The fusion search over a whole cascade ([`strata_mappings::fusion`]) under the settings'
/// objective, at most `samples` mappings costed and none after `deadline`: the best fused
/// mapping and how it was found.
pub fn fuse(
    c: &Cascade,
    arch: &Arch,
    m: &MapperSpec,
    constraints: &crate::constraints::Constraints,
    deadline: Option<std::time::Instant>,
    progress: &(dyn Fn(u64, f64) + Sync),
) -> CliResult<strata_mappings::fusion::Found> {
    let space = strata_mappings::fusion::FusionSpace::new(c, arch).map_err(|e| {
        CliError::input(format!("Einsum {} of {}: no unit of {} can run it", c.einsums()[e].name, c.name(), arch.name))
    })?;
    // Ties broken by the Einsums' cycles summed: of two mappings equally fast, the one whose
    // arrays off the critical path finish sooner leaves room for the next move.
    let cost = |spec: &MappingSpec| -> Option<strata_mappings::fusion::Cost> {
        let mapping = CascadeMapping::resolve(spec, c, arch).ok()?;
        if !mapping.nests.iter().all(|n| constraints.allows(n)) {
            return None;
        }
        let ev = evaluate(arch, c, &mapping);
        let tie = ev.einsums.iter().map(|e| e.cycles).sum();
        ev.violations.is_empty().then(|| strata_mappings::fusion::Cost { objective: objective_of(&ev, m), tie })
    };
    let stop = || deadline.is_some_and(|d| std::time::Instant::now() > d);
    space
        .search(&cost, m.samples as u64, &stop, progress)
        .ok_or_else(|| CliError::input(format!("no fused mapping of {} fits {} (capacity)", c.name(), arch.name)))
}

/// The settings' objective of an evaluated mapping (cycles, pJ or their product).
pub fn objective_of(ev: &Evaluation, m: &MapperSpec) -> f64 {
    match m.objective.as_str() {
        "latency" => ev.cycles,
        "energy" => ev.energy_pj,
        _ => ev.cycles * ev.energy_pj,
    }
}

/// The mapper's strategy for a space under the experiment's settings (`auto`: see
/// `Strategy::Auto`; seeded, so deterministic whatever the thread count).
pub fn strategy(m: &MapperSpec) -> Strategy {
    match m.strategy.as_str() {
        "exhaustive" => Strategy::Exhaustive,
        "random" => Strategy::Random { samples: m.samples, seed: m.seed },
        "greedy" => Strategy::Greedy,
        "milp" => Strategy::Milp { seconds: m.milp_seconds },
        _ => Strategy::Auto { budget: m.samples, seed: m.seed },
    }
}

/// Most mappings an exhaustive search may evaluate; larger mapspaces need a bounded strategy.
pub const EXHAUSTIVE_LIMIT: u128 = 10_000_000;

/// Searches `space` with the settings' strategy and objective; `what` names the Einsum for
/// messages. An exhaustive search over more than [`EXHAUSTIVE_LIMIT`] mappings is refused
/// before it starts (the other strategies are bounded by `samples` or the MILP's time limit);
/// a search that outlasts the settings' `time_limit` fails (exit 1) with what it evaluated;
/// `Ok(None)` when no mapping fits.
pub fn search(
    space: &Mapspace,
    arch: &Arch,
    c: &Cascade,
    m: &MapperSpec,
    what: &str,
) -> CliResult<Option<(strata_mappings::EinsumNest, f64)>> {
    check_exhaustive(space, m, what)?;
    let deadline = m.time_limit.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let (evaluated, hit) = (AtomicU64::new(0), AtomicBool::new(false));
    let found = space.search(strategy(m), &|n: &strata_mappings::EinsumNest| {
        if deadline.is_some_and(|d| Instant::now() > d) {
            hit.store(true, Ordering::Relaxed);
            return None;
        }
        evaluated.fetch_add(1, Ordering::Relaxed);
        objective(arch, c, n, m)
    });
    if hit.into_inner() {
        let detail = format!(" after {} of {} mappings", evaluated.into_inner(), space.size());
        return Err(out_of_time(what, m, &detail));
    }
    Ok(found)
}

/// The failure of an experiment's search that ran out of `experiment.mapper.time_limit` (exit 1):
/// a mapping cut short by the clock is never kept.
fn out_of_time(what: &str, m: &MapperSpec, detail: &str) -> CliError {
    CliError::runtime(format!(
        "{what}: the mapper ran out of experiment.mapper.time_limit ({} s){detail}; a mapping cut short \
         by the clock would change from machine to machine, so raise the limit or lower experiment.mapper.samples",
        m.time_limit.unwrap_or_default()
    ))
}

/// Refuses an exhaustive search over more than [`EXHAUSTIVE_LIMIT`] mappings before it starts.
pub fn check_exhaustive(space: &Mapspace, m: &MapperSpec, what: &str) -> CliResult<()> {
    if m.strategy == "exhaustive" && space.size() > EXHAUSTIVE_LIMIT {
        return Err(CliError::input(format!(
            "{what}: the mapspace has {} mappings, more than {EXHAUSTIVE_LIMIT} for an exhaustive search (use auto, random, greedy or milp)",
            space.size()
        )));
    }
    Ok(())
}

/// The mapper's objective for a nest under the experiment's settings; `None` if it does not fit.
pub fn objective(arch: &Arch, c: &Cascade, nest: &strata_mappings::EinsumNest, m: &MapperSpec) -> Option<f64> {
    let q = quick(arch, c, nest);
    q.fits.then_some(match m.objective.as_str() {
        "latency" => q.cycles,
        "energy" => q.energy_pj,
        _ => q.cycles * q.energy_pj,
    })
}

/// Maps every Einsum of a cascade (or those named in `only`) on its own with the mapper: contractions on the 2D array,
/// the rest on the 1D array (when there is one), everything kept at every level, so
/// intermediates round-trip through the outermost level. Objective: energy-delay product.
pub fn map_each(c: &Cascade, arch: &Arch, m: &MapperSpec, only: &[&str]) -> CliResult<MappingSpec> {
    let two_d = arch.unit_id("pe2d").ok_or_else(|| CliError::input(format!("{} has no `pe2d` array", arch.name)))?;
    let one_d = arch.unit_id("pe1d").unwrap_or(two_d);
    let mut einsums = Vec::new();
    for (i, e) in c.einsums().iter().enumerate().filter(|(_, e)| only.is_empty() || only.contains(&e.name.as_str())) {
        let contraction = e.map == strata_workloads::MapOp::Mul && !e.reduced_ranks().is_empty();
        let unit = if contraction { two_d } else { one_d };
        let space = Mapspace::new(c, i, arch, unit, false);
        let (nest, _) = search(&space, arch, c, m, &format!("einsum {}", e.name))?
            .ok_or_else(|| CliError::input(format!("no mapping of einsum {} fits {}", e.name, arch.name)))?;
        einsums.push(to_spec(c, arch, &nest));
    }
    Ok(MappingSpec {
        name: format!("{}-mapped", c.name()),
        description: "mapped einsum by einsum".into(),
        einsums,
        groups: vec![],
    })
}
