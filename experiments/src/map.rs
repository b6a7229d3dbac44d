//! `strata map`: the mapper on any workload and architecture, with tile sizes from every divisor
//! of a rank and the loop order at every level (the experiments' linear layers keep the coarser
//! power-of-four ladder and the root's order only, so their numbers stay as they were). Each Einsum
//! is searched on every unit that has its operations (units are found by what they can do, never
//! by name), the best kept; the Einsums of a cascade are mapped one by one, every intermediate
//! through the outermost level (fusion search is the next step). The result is a mapping file
//! that `strata eval` reproduces exactly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use strata_arch::Arch;
use strata_arch::arch::UnitId;
use strata_mappings::mapper::{Mapspace, to_spec};
use strata_mappings::spec::{MappingFile, MappingSpec};
use strata_workloads::Cascade;

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

/// The mapper's result for a cascade: the mapping file and how it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Mapped {
    /// A `[mapping]` TOML file.
    pub mapping: String,
    pub einsums: Vec<EinsumSearch>,
    pub seconds: f64,
}

/// Units of `arch` whose operations cover what Einsum `e` of `c` needs.
pub fn capable_units(arch: &Arch, c: &Cascade, e: usize) -> Vec<UnitId> {
    let e = &c.einsums()[e];
    let needs = strata_mappings::nest::point_ops(e.map, e.reduce, !e.reduced_ranks().is_empty());
    (0..arch.units.len()).map(UnitId).filter(|&u| needs.iter().all(|op| arch.unit(u).ops.contains_key(*op))).collect()
}

/// Maps the Einsums of `c` named in `only` (all when empty) on `arch`; `done` hears of each
/// Einsum's best mapping as its search ends, with the seconds since the start.
pub fn map(
    arch: &Arch,
    c: &Cascade,
    only: &[String],
    m: &MapperSpec,
    limit: Option<f64>,
    done: &dyn Fn(&EinsumSearch, f64),
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
    let deadline = limit.map(|s| started + Duration::from_secs_f64(s));
    let mut searches = Vec::new();
    let mut specs = Vec::new();
    for (i, e) in c.einsums().iter().enumerate().filter(|(_, e)| only.is_empty() || only.contains(&e.name)) {
        let units = capable_units(arch, c, i);
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
    // through a rank): that needs a fused group over the rank, which this mapper does not yet
    // search.
    strata_mappings::CascadeMapping::resolve(&spec, c, arch).map_err(|e| {
        CliError::input(format!(
            "{}: its Einsums cannot be mapped one by one ({e}); a cascade with running recurrences needs a fused group, which `strata map` does not search yet: give a mapping file to `strata eval` (e.g. the preset fusemax-1pass)",
            c.name()
        ))
    })?;
    let mapping = toml::to_string(&MappingFile { mapping: spec })
        .map_err(|e| CliError::runtime(format!("writing the mapping: {e}")))?;
    Ok(Mapped { mapping, einsums: searches, seconds: started.elapsed().as_secs_f64() })
}

/// `strata map`'s arguments.
pub struct Args {
    pub arch: String,
    pub workload: String,
    pub shape: crate::load::Shape,
    pub einsum: Vec<String>,
    pub mapper: MapperSpec,
    pub time_limit: Option<f64>,
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
    let mapped = map(&arch, &c, &a.einsum, &a.mapper, a.time_limit, &progress)?;
    std::fs::write(&a.out, &mapped.mapping).map_err(|e| crate::store::write_err(&a.out, e))?;
    let m = strata_mappings::CascadeMapping::from_toml(&mapped.mapping, &c, &arch)
        .map_err(|e| CliError::runtime(format!("the mapper's own mapping does not resolve: {e}")))?;
    let ev = strata_sim::evaluate(&arch, &c, &m);
    if a.json {
        let report: serde_json::Value = serde_json::from_str(&crate::eval::to_json(&arch, &c, &m, &ev)).expect("JSON");
        let doc = serde_json::json!({ "mapping_file": a.out.display().to_string(), "search": mapped.einsums, "seconds": mapped.seconds, "evaluation": report });
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
        mapped.einsums.len(),
        c.name(),
        arch.name,
        mapped.seconds,
        a.mapper.strategy,
        a.mapper.objective,
        a.out.display()
    );
    out += &t.render();
    out += "\n";
    out += &crate::eval::render(&arch, &c, &m, &ev);
    Ok(out)
}
