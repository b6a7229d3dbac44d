//! `strata map`: the mapper on any workload and architecture, with tile sizes from every divisor
//! of a rank and the loop order at every level (the experiments' linear layers keep the coarser
//! power-of-four ladder and the root's order only, so their numbers stay as they were). Each Einsum
//! is searched on every unit that has its operations (units are found by what they can do, never
//! by name), the best kept. A whole cascade of several Einsums is also searched fused
//! ([`strata_mappings::fusion`]: groups, shared tiles, where intermediates live, units, fan-out)
//! and the better of the two under the objective is kept; a cascade with running recurrences can
//! only be mapped fused. The result is a mapping file that `strata eval` reproduces exactly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use strata_arch::Arch;
use strata_mappings::mapper::{Mapspace, to_spec};
use strata_mappings::spec::{MappingFile, MappingSpec};
use strata_workloads::Cascade;

use crate::constraints::Constraints;
use crate::error::{CliError, CliResult};
use crate::experiment::MapperSpec;

/// What the search of one Einsum did.
#[derive(Debug, Clone, Serialize)]
pub struct EinsumSearch {
    pub einsum: String,
    /// The unit the best mapping runs on.
    pub unit: String,
    /// Units that have the Einsum's operations (each searched).
    pub candidates: Vec<String>,
    /// Mappings in the mapspaces searched (all candidate units together).
    pub mapspace: u128,
    /// Mappings the cost model evaluated.
    pub evaluated: u64,
    /// The objective's value of the best mapping (cycles, pJ or their product).
    pub objective: f64,
    /// Whether the time limit stopped the search early (the best mapping found by then is kept).
    pub time_limit_hit: bool,
}

/// What the fusion search over a whole cascade did.
#[derive(Debug, Clone, Serialize)]
pub struct FusionSearch {
    /// Distinct fused mappings the cost model evaluated.
    pub evaluated: u64,
    /// Plans in the fusion space (a float: it passes 2⁶⁴).
    pub space: f64,
    /// The objective's value of the best fused mapping, if one fits.
    pub objective: Option<f64>,
    /// Whether the fused mapping beat the Einsum-by-Einsum one (and is the one written).
    pub chosen: bool,
    /// Whether the time limit stopped the search early (the best found by then is kept).
    pub time_limit_hit: bool,
}

/// The mapper's result for a cascade: the mapping file and how it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Mapped {
    /// A `[mapping]` TOML file.
    pub mapping: String,
    /// The Einsum-by-Einsum searches (empty when the cascade can only be mapped fused).
    pub einsums: Vec<EinsumSearch>,
    /// The fusion search, for a whole cascade of several Einsums.
    pub fusion: Option<FusionSearch>,
    pub seconds: f64,
}

/// Who hears how a search goes, with the seconds since it started.
pub struct Listeners<'a> {
    /// Each Einsum's best mapping as its own search ends.
    pub einsum: &'a dyn Fn(&EinsumSearch, f64),
    /// The fusion search's mappings costed and best cost so far, after every descent.
    pub fusion: &'a (dyn Fn(u64, f64, f64) + Sync),
}

/// Nobody listens.
pub fn silent() -> Listeners<'static> {
    Listeners { einsum: &|_, _| {}, fusion: &|_, _, _| {} }
}

/// Maps the Einsums of `c` named in `only` (all when empty) on `arch` under `constraints`, no
/// mapping costed after `limit` seconds; `hear` is told how the searches go.
pub fn map(
    arch: &Arch,
    c: &Cascade,
    only: &[String],
    m: &MapperSpec,
    limit: Option<f64>,
    constraints: &Constraints,
    hear: &Listeners,
) -> CliResult<Mapped> {
    let started = Instant::now();
    for name in only {
        if !c.einsums().iter().any(|e| &e.name == name) {
            let names: Vec<&str> = c.einsums().iter().map(|e| e.name.as_str()).collect();
            return Err(CliError::input(format!(
                "--einsum: `{name}` is not an Einsum of {} ({})",
                c.name(),
                names.join(", ")
            )));
        }
    }
    if let Some(e) = c.einsums().iter().find(|e| only.contains(&e.name) && e.iterative.is_some()) {
        return Err(CliError::input(format!(
            "--einsum {}: it steps through `{}` (a running recurrence), so it cannot be mapped one by one, only in a fused group: map the whole cascade (no --einsum)",
            e.name,
            c.rank(e.iterative.expect("found")).name
        )));
    }
    let deadline = limit.map(|s| started + Duration::from_secs_f64(s));
    // Einsums that step through a running recurrence can only be mapped fused: a whole cascade
    // holding one is not mapped one by one.
    let recurrent = only.is_empty() && c.einsums().iter().any(|e| e.iterative.is_some());
    let apart = if recurrent {
        Err(CliError::input(format!("{}: its running recurrences need a fused group", c.name())))
    } else {
        one_by_one(arch, c, only, m, deadline, constraints, hear.einsum)
    };
    // A whole cascade of several Einsums is searched fused as well; the better is kept.
    let progress = |n: u64, best: f64| (hear.fusion)(n, best, started.elapsed().as_secs_f64());
    let fused = (only.is_empty() && c.einsums().len() > 1)
        .then(|| crate::systems::fuse(c, arch, m, constraints, deadline, &progress));
    let value = |text: &str| -> CliResult<f64> {
        let mapping = strata_mappings::CascadeMapping::from_toml(text, c, arch)
            .map_err(|e| CliError::runtime(format!("the mapper's own mapping does not resolve: {e}")))?;
        Ok(crate::systems::objective_of(&strata_sim::evaluate(arch, c, &mapping), m))
    };
    let (mapping, einsums, fusion) = match (apart, fused) {
        (Ok((text, searches)), None) => (text, searches, None),
        (apart, Some(Ok(found))) => {
            let fused_text = mapping_file(found.spec.clone())?;
            let (text, searches, chosen) = match apart {
                Ok((text, searches)) if value(&text)? <= found.cost => (text, searches, false),
                Ok((_, searches)) => (fused_text, searches, true),
                Err(_) => (fused_text, Vec::new(), true),
            };
            let report = FusionSearch {
                evaluated: found.evaluated,
                space: found.space,
                objective: Some(found.cost),
                chosen,
                time_limit_hit: found.stopped,
            };
            (text, searches, Some(report))
        }
        (Ok((text, searches)), Some(Err(_))) => {
            let none = FusionSearch { evaluated: 0, space: 0.0, objective: None, chosen: false, time_limit_hit: false };
            (text, searches, Some(none))
        }
        (Err(e), _) => return Err(e),
    };
    Ok(Mapped { mapping, einsums, fusion, seconds: started.elapsed().as_secs_f64() })
}

/// Maps the Einsums of `c` (those in `only`, all when empty) one by one, every intermediate
/// through the outermost level: the mapping file and each Einsum's search.
fn one_by_one(
    arch: &Arch,
    c: &Cascade,
    only: &[String],
    m: &MapperSpec,
    deadline: Option<Instant>,
    constraints: &Constraints,
    done: &dyn Fn(&EinsumSearch, f64),
) -> CliResult<(String, Vec<EinsumSearch>)> {
    let started = Instant::now();
    let mut searches = Vec::new();
    let mut specs = Vec::new();
    for (i, e) in c.einsums().iter().enumerate().filter(|(_, e)| only.is_empty() || only.contains(&e.name)) {
        let units = strata_mappings::nest::capable_units(arch, e);
        if units.is_empty() {
            let needs = strata_mappings::nest::point_ops(e.map, e.reduce, !e.reduced_ranks().is_empty());
            return Err(CliError::input(format!(
                "Einsum {} of {}: no unit of {} has {} (units: {})",
                e.name,
                c.name(),
                arch.name,
                needs.join(" and "),
                arch.units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let evaluated = AtomicU64::new(0);
        let hit = AtomicBool::new(false);
        let mut best: Option<(strata_mappings::EinsumNest, f64)> = None;
        let mut size = 0u128;
        for &u in &units {
            let space = Mapspace::new(c, i, arch, u, true);
            size += space.size();
            // Past the deadline no mapping is evaluated: the search winds down keeping its best.
            let cost = |n: &strata_mappings::EinsumNest| {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    hit.store(true, Ordering::Relaxed);
                    return None;
                }
                evaluated.fetch_add(1, Ordering::Relaxed);
                if !constraints.allows(n) {
                    return None;
                }
                crate::systems::objective(arch, c, n, m)
            };
            crate::systems::check_exhaustive(&space, m, &format!("Einsum {} on {}", e.name, arch.unit(u).name))?;
            if let Some((nest, v)) = space.search(crate::systems::strategy(m), &cost)
                && best.as_ref().is_none_or(|b| v < b.1)
            {
                best = Some((nest, v));
            }
        }
        let (nest, objective) = best.ok_or_else(|| {
            CliError::input(format!(
                "Einsum {} of {}: no mapping fits {} ({} of {} mappings evaluated)",
                e.name,
                c.name(),
                arch.name,
                evaluated.load(Ordering::Relaxed),
                size
            ))
        })?;
        let search = EinsumSearch {
            einsum: e.name.clone(),
            unit: arch.unit(nest.unit).name.clone(),
            candidates: units.iter().map(|&u| arch.unit(u).name.clone()).collect(),
            mapspace: size,
            evaluated: evaluated.into_inner(),
            objective,
            time_limit_hit: hit.into_inner(),
        };
        done(&search, started.elapsed().as_secs_f64());
        searches.push(search);
        specs.push(to_spec(c, arch, &nest));
    }
    let spec = MappingSpec {
        name: format!("{}-on-{}", c.name(), arch.name),
        description: format!(
            "found by `strata map` ({} search, {} objective), Einsum by Einsum",
            m.strategy, m.objective
        ),
        einsums: specs,
        groups: vec![],
    };
    // Einsums mapped one by one cannot carry a recurrence (a running max or sum stepping
    // through a rank): that needs a fused group over the rank. Only a mapping of every Einsum
    // can be checked whole.
    if spec.einsums.len() < c.einsums().len() {
        return Ok((mapping_file(spec)?, searches));
    }
    strata_mappings::CascadeMapping::resolve(&spec, c, arch).map_err(|e| {
        CliError::input(format!(
            "{}: its Einsums cannot be mapped one by one ({e}); a cascade with running recurrences needs a fused group: map the whole cascade (no --einsum) to search one",
            c.name()
        ))
    })?;
    Ok((mapping_file(spec)?, searches))
}

/// A mapping spec as the text of a mapping file.
fn mapping_file(spec: MappingSpec) -> CliResult<String> {
    toml::to_string(&MappingFile { mapping: spec }).map_err(|e| CliError::runtime(format!("writing the mapping: {e}")))
}

/// `strata map`'s arguments.
pub struct Args {
    pub arch: String,
    pub workload: String,
    pub shape: crate::load::Shape,
    pub einsum: Vec<String>,
    pub mapper: MapperSpec,
    pub time_limit: Option<f64>,
    /// A constraints file ([`crate::constraints`]).
    pub constraints: Option<String>,
    pub out: std::path::PathBuf,
    pub json: bool,
}

/// Maps, writes the mapping file and reports its evaluation and the search.
pub fn run(a: &Args) -> CliResult<String> {
    if !["auto", "exhaustive", "random", "greedy", "milp"].contains(&a.mapper.strategy.as_str()) {
        return Err(CliError::input(format!(
            "--search: `{}` is not auto, exhaustive, random, greedy or milp",
            a.mapper.strategy
        )));
    }
    if !["latency", "energy", "edp"].contains(&a.mapper.objective.as_str()) {
        return Err(CliError::input(format!("--objective: `{}` is not latency, energy or edp", a.mapper.objective)));
    }
    let arch = crate::eval::arch(&a.arch)?;
    let args = crate::eval::EvalArgs {
        arch: None,
        workload: None,
        mapping: String::new(),
        shape: a.shape.clone(),
        allow_violations: false,
    };
    let c = crate::eval::cascade(&a.workload, &args)?;
    // Long searches say how far they are: one line per Einsum once a second has passed.
    let progress = |s: &EinsumSearch, t: f64| {
        if t > 1.0 {
            eprintln!(
                "{:.1} s: Einsum {} on {}, best {:.4e} ({} of {} mappings evaluated)",
                t, s.einsum, s.unit, s.objective, s.evaluated, s.mapspace
            );
        }
    };
    let constraints = match &a.constraints {
        Some(path) => Constraints::load(path, &c, &arch)?,
        None => Constraints::default(),
    };
    let fusing = |n: u64, best: f64, t: f64| {
        if t > 1.0 {
            eprintln!("{t:.1} s: fusion search, best {best:.4e} ({n} mappings evaluated)");
        }
    };
    let hear = Listeners { einsum: &progress, fusion: &fusing };
    let mapped = map(&arch, &c, &a.einsum, &a.mapper, a.time_limit, &constraints, &hear).map_err(|e| {
        if constraints.is_empty() || e.code != 2 {
            return e;
        }
        CliError::input(format!(
            "{} (under the constraints of {})",
            e.message,
            a.constraints.as_deref().unwrap_or_default()
        ))
    })?;
    std::fs::write(&a.out, &mapped.mapping).map_err(|e| crate::store::write_err(&a.out, e))?;
    // A mapping of some of a cascade's Einsums is reported by its searches; only a whole
    // mapping evaluates.
    let whole = a.einsum.is_empty() || c.einsums().iter().all(|e| a.einsum.contains(&e.name));
    let evaluated = if whole {
        let m = strata_mappings::CascadeMapping::from_toml(&mapped.mapping, &c, &arch)
            .map_err(|e| CliError::runtime(format!("the mapper's own mapping does not resolve: {e}")))?;
        let ev = strata_sim::evaluate(&arch, &c, &m);
        Some((m, ev))
    } else {
        None
    };
    if a.json {
        let report: serde_json::Value = match &evaluated {
            Some((m, ev)) => serde_json::from_str(&crate::eval::to_json(&arch, &c, m, ev)).expect("JSON"),
            None => serde_json::Value::Null,
        };
        let doc = serde_json::json!({ "mapping_file": a.out.display().to_string(), "search": mapped.einsums, "fusion": mapped.fusion, "seconds": mapped.seconds, "evaluation": report });
        return Ok(serde_json::to_string_pretty(&doc).expect("serialisable") + "\n");
    }
    let mut t = crate::table::Table::new(&[
        ("einsum", false),
        ("unit", false),
        ("units that can", false),
        ("mapspace", true),
        ("evaluated", true),
        ("objective", true),
    ]);
    for s in &mapped.einsums {
        t.row(vec![
            s.einsum.clone(),
            s.unit.clone(),
            s.candidates.join(", "),
            s.mapspace.to_string(),
            s.evaluated.to_string(),
            format!("{:.4e}{}", s.objective, if s.time_limit_hit { " (time limit)" } else { "" }),
        ]);
    }
    let mut out = format!(
        "mapped {} Einsum(s) of {} on {} in {:.2} s ({} search, {} objective); mapping written to {}\n\n",
        if mapped.einsums.is_empty() { c.einsums().len() } else { mapped.einsums.len() },
        c.name(),
        arch.name,
        mapped.seconds,
        a.mapper.strategy,
        a.mapper.objective,
        a.out.display()
    );
    if !mapped.einsums.is_empty() {
        out += "Einsum by Einsum (intermediates through the outermost level):\n";
        out += &t.render();
        out += "\n";
    }
    if let Some(f) = &mapped.fusion {
        out += &match f.objective {
            Some(v) => format!(
                "fusion search: {} mappings evaluated of a space of {:.3e} plans{}; best {v:.4e}; {}\n\n",
                f.evaluated,
                f.space,
                if f.time_limit_hit { " (time limit)" } else { "" },
                if f.chosen {
                    "chosen (better than Einsum by Einsum)"
                } else {
                    "not chosen (Einsum by Einsum is as good or better)"
                }
            ),
            None => "fusion search: no fused mapping fits\n\n".to_string(),
        };
    }
    match &evaluated {
        Some((m, ev)) => out += &crate::eval::render(&arch, &c, m, ev),
        None => out += "(some of the cascade's Einsums: the mapping file holds them alone, so it is not evaluated)\n",
    }
    Ok(out)
}
