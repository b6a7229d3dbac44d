//! Validating a mapping spec against its cascade and architecture.
//!
//! Everything a cost model or executor relies on is checked here, with the key path of the
//! culprit: names exist, each rank is covered exactly (only a rank's outermost loop may be
//! imperfect), spatial loops fit the fan-out, every operand is kept somewhere, tensors from
//! outside the cascade live at the root, fused intermediates are shared only inside a group,
//! recurrences step only in a group's shared loops, and the unit has every operation it needs.

use std::collections::BTreeMap;

use strata_arch::Arch;
use strata_workloads::einsum::{Cascade, RankId, ReduceOp};

use crate::nest::{CascadeMapping, Dim, EinsumNest, Group, Loop, Node, Operand, point_ops};
use crate::spec::{EinsumMappingSpec, GroupSpec, MappingFile, MappingSpec};
use crate::{SpecError, SpecResult};

/// The rank a shared-loop text (`[Level:]rank=bound`) names.
fn prefix_rank(text: &str) -> &str {
    let loop_text = text.split_once(':').map_or(text, |x| x.1);
    loop_text.split('=').next().unwrap_or("").trim()
}

/// A loop as written, before its `*` is resolved.
#[derive(Debug, Clone, Copy)]
struct RawLoop {
    rank: RankId,
    bound: Option<u64>,
    dim: Option<Dim>,
    level: usize,
}

fn parse_loop(c: &Cascade, path: &str, text: &str, level: usize) -> SpecResult<RawLoop> {
    let (rank, rest) = text.split_once('=').ok_or_else(|| {
        SpecError::new(path, format!("`{text}`: a loop is written `rank=bound`, `rank=*` or `rank=bound@x`"))
    })?;
    let rank_name = rank.trim();
    let rank = c.rank_id(rank_name).ok_or_else(|| {
        let names: Vec<&str> = c.ranks().iter().map(|r| r.name.as_str()).collect();
        SpecError::new(path, format!("`{text}`: unknown rank `{rank_name}` (ranks: {})", names.join(", ")))
    })?;
    let (bound, dim) = match rest.split_once('@') {
        Some((b, d)) => {
            let dim = match d.trim() {
                "x" | "X" => Dim::X,
                "y" | "Y" => Dim::Y,
                other => {
                    return Err(SpecError::new(path, format!("`{text}`: unknown array dimension `{other}` (x or y)")));
                }
            };
            (b.trim(), Some(dim))
        }
        None => (rest.trim(), None),
    };
    let bound = match bound {
        "*" => None,
        b => match b.parse::<i64>() {
            Ok(v) if v > 0 => Some(v as u64),
            _ => {
                return Err(SpecError::new(path, format!("`{text}`: the bound must be a positive integer or `*`")));
            }
        },
    };
    Ok(RawLoop { rank, bound, dim, level })
}

impl CascadeMapping {
    /// Parses and validates a mapping file's text.
    pub fn from_toml(text: &str, cascade: &Cascade, arch: &Arch) -> SpecResult<CascadeMapping> {
        let file: MappingFile = crate::from_toml(text)?;
        CascadeMapping::resolve(&file.mapping, cascade, arch)
    }

    pub fn resolve(spec: &MappingSpec, c: &Cascade, arch: &Arch) -> SpecResult<CascadeMapping> {
        let n = c.einsums().len();
        // Which spec entry maps which Einsum.
        let mut entry: Vec<Option<usize>> = vec![None; n];
        for (i, e) in spec.einsums.iter().enumerate() {
            let path = format!("mapping.einsums[{i}].einsum");
            let idx = c.einsums().iter().position(|x| x.name == e.einsum).ok_or_else(|| {
                let names: Vec<&str> = c.einsums().iter().map(|x| x.name.as_str()).collect();
                SpecError::new(&path, format!("unknown einsum `{}` (einsums: {})", e.einsum, names.join(", ")))
            })?;
            if let Some(prev) = entry[idx] {
                return Err(SpecError::new(
                    path,
                    format!("einsum `{}` is already mapped by einsums[{prev}]", e.einsum),
                ));
            }
            entry[idx] = Some(i);
        }
        if let Some(missing) = entry.iter().position(Option::is_none) {
            return Err(SpecError::new(
                "mapping.einsums",
                format!("no mapping for einsum `{}`", c.einsums()[missing].name),
            ));
        }

        let (schedule, prefixes) = build_schedule(spec, c)?;

        let mut nests = Vec::with_capacity(n);
        let mut prefix_bounds = Vec::with_capacity(n);
        for (idx, e) in entry.iter().enumerate() {
            let i = e.expect("checked above");
            let (nest, bounds) = resolve_einsum(&spec.einsums[i], i, idx, c, arch, &prefixes[idx])?;
            nests.push(nest);
            prefix_bounds.push(bounds);
        }
        let mut schedule = schedule;
        fill_group_prefixes(&mut schedule, spec, c, &prefix_bounds, 0);
        fill_barriers(&mut nests, c, &schedule, spec, &prefix_bounds);
        fill_shared(&mut nests, c, arch, &schedule, spec, &prefix_bounds)?;
        check_prefix_agreement(&schedule, &nests, c, spec)?;
        check_homes(&nests, c, arch, &schedule, spec)?;
        check_recurrences(&nests, c, &schedule, spec)?;
        check_selections(c, &schedule, spec)?;
        Ok(CascadeMapping { name: spec.name.clone(), description: spec.description.clone(), nests, schedule })
    }
}

/// Per Einsum, the shared loops of its enclosing groups as (key path, loop text), outermost first.
type Prefixes = Vec<Vec<(String, String)>>;

/// Builds the execution tree and, per Einsum, the prefix loops of its enclosing groups.
fn build_schedule(spec: &MappingSpec, c: &Cascade) -> SpecResult<(Vec<Node>, Prefixes)> {
    let n = c.einsums().len();
    let group_index: BTreeMap<&str, usize> =
        spec.groups.iter().enumerate().map(|(i, g)| (g.name.as_str(), i)).collect();
    if group_index.len() != spec.groups.len() {
        return Err(SpecError::new("mapping.groups", "group names must be unique"));
    }
    let mut parent_of_einsum: Vec<Option<usize>> = vec![None; n];
    let mut parent_of_group: Vec<Option<usize>> = vec![None; spec.groups.len()];
    for (gi, g) in spec.groups.iter().enumerate() {
        if g.members.is_empty() {
            return Err(SpecError::new(format!("mapping.groups[{gi}].members"), "a group needs members"));
        }
        for m in &g.members {
            let path = format!("mapping.groups[{gi}].members");
            if let Some(&sub) = group_index.get(m.as_str()) {
                if parent_of_group[sub].is_some() || sub == gi {
                    return Err(SpecError::new(path, format!("group `{m}` is a member of more than one group")));
                }
                parent_of_group[sub] = Some(gi);
            } else if let Some(e) = c.einsums().iter().position(|x| &x.name == m) {
                if parent_of_einsum[e].is_some() {
                    return Err(SpecError::new(path, format!("einsum `{m}` is a member of more than one group")));
                }
                parent_of_einsum[e] = Some(gi);
            } else {
                return Err(SpecError::new(path, format!("`{m}` is neither an einsum nor a group")));
            }
        }
    }
    // Cycles among groups.
    for start in 0..spec.groups.len() {
        let mut g = start;
        let mut steps = 0;
        while let Some(p) = parent_of_group[g] {
            g = p;
            steps += 1;
            if steps > spec.groups.len() {
                return Err(SpecError::new(format!("mapping.groups[{start}]"), "groups contain each other in a cycle"));
            }
        }
    }
    fn node(spec: &MappingSpec, c: &Cascade, gi: usize, index: &BTreeMap<&str, usize>) -> Node {
        let g: &GroupSpec = &spec.groups[gi];
        let members = g
            .members
            .iter()
            .map(|m| match index.get(m.as_str()) {
                Some(&sub) => node(spec, c, sub, index),
                None => Node::Einsum(c.einsums().iter().position(|x| &x.name == m).expect("checked")),
            })
            .collect();
        Node::Group(Group { name: g.name.clone(), prefix: Vec::new(), members, pipelining: g.pipelining })
    }
    // Top level: Einsums and groups without a parent, ordered by their first Einsum.
    let mut top: Vec<Node> = Vec::new();
    for (gi, p) in parent_of_group.iter().enumerate() {
        if p.is_none() {
            top.push(node(spec, c, gi, &group_index));
        }
    }
    for (e, p) in parent_of_einsum.iter().enumerate() {
        if p.is_none() {
            top.push(Node::Einsum(e));
        }
    }
    top.sort_by_key(|nd| nd.einsums().into_iter().min().unwrap_or(usize::MAX));
    let order: Vec<usize> = top.iter().flat_map(Node::einsums).collect();
    if order != (0..n).collect::<Vec<_>>() {
        let names: Vec<&str> = order.iter().map(|&e| c.einsums()[e].name.as_str()).collect();
        return Err(SpecError::new(
            "mapping.groups",
            format!("the groups run the einsums out of cascade order ({})", names.join(", ")),
        ));
    }
    // Prefix texts per Einsum: (group path for errors, loop text), outermost group first.
    let mut prefixes: Prefixes = vec![Vec::new(); n];
    for (e, prefix) in prefixes.iter_mut().enumerate() {
        let mut chain = Vec::new();
        let mut g = parent_of_einsum[e];
        while let Some(gi) = g {
            chain.push(gi);
            g = parent_of_group[gi];
        }
        for gi in chain.into_iter().rev() {
            for (k, l) in spec.groups[gi].prefix.iter().enumerate() {
                prefix.push((format!("mapping.groups[{gi}].prefix[{k}]"), l.clone()));
            }
        }
    }
    Ok((top, prefixes))
}

fn resolve_einsum(
    spec: &EinsumMappingSpec,
    i: usize,
    idx: usize,
    c: &Cascade,
    arch: &Arch,
    prefix: &[(String, String)],
) -> SpecResult<(EinsumNest, Vec<u64>)> {
    let e = &c.einsums()[idx];
    let base = format!("mapping.einsums[{i}]");
    let unit = arch.unit_id(&spec.unit).ok_or_else(|| {
        let names: Vec<&str> = arch.units.iter().map(|u| u.name.as_str()).collect();
        SpecError::new(
            format!("{base}.unit"),
            format!("unknown compute unit `{}` (units: {})", spec.unit, names.join(", ")),
        )
    })?;
    let ops = point_ops(e.map, e.reduce, !e.reduced_ranks().is_empty());
    for op in &ops {
        if !arch.unit(unit).ops.contains_key(*op) {
            let have: Vec<&str> = arch.unit(unit).ops.keys().map(String::as_str).collect();
            return Err(SpecError::new(
                format!("{base}.unit"),
                format!("einsum `{}` needs `{op}` but unit `{}` has only {}", e.name, spec.unit, have.join(", ")),
            ));
        }
    }
    let path = arch.path_to(arch.unit(unit).level);
    let path_names: Vec<&str> = path.iter().map(|l| arch.level(*l).name.as_str()).collect();

    // Loops: prefix first (root level, temporal), then each listed level's loops.
    let mut raw: Vec<RawLoop> = Vec::new();
    let mut prefix_paths = Vec::new();
    let mut prefix_level = 0;
    for (p, text) in prefix {
        // `Level:rank=bound` places a shared loop at a level; the outermost level by default.
        let (level, text) = match text.split_once(':') {
            Some((name, rest)) => {
                let lv = path.iter().position(|l| arch.level(*l).name == name.trim()).ok_or_else(|| {
                    SpecError::new(
                        p,
                        format!(
                            "level `{}` is not on the path of member `{}` ({})",
                            name.trim(),
                            e.name,
                            path_names.join(" → ")
                        ),
                    )
                })?;
                (lv, rest)
            }
            None => (0, text.as_str()),
        };
        if level < prefix_level {
            return Err(SpecError::new(p, "shared loops must be placed at levels from outer to inner"));
        }
        prefix_level = level;
        let l = parse_loop(c, p, text, level)?;
        if l.dim.is_some() {
            return Err(SpecError::new(p, "group loops are temporal (no @x/@y)"));
        }
        if !e.iteration_ranks.contains(&l.rank) {
            // A group loop over a rank the member lacks recomputes the member's tile at every
            // step (a producer fused into a consumer that iterates further): its partial sums
            // cannot span steps, and a selection or a recurrence cannot be run twice.
            let why = if e.reduce == ReduceOp::Top {
                Some("a selection's candidates would be offered once per step".to_string())
            } else if e.iterative.is_some() {
                Some("a recurrence would advance once per step".to_string())
            } else {
                prefix
                    .iter()
                    .filter_map(|(_, t)| c.rank_id(prefix_rank(t)))
                    .find(|r| e.reduced_ranks().contains(r))
                    .map(|r| format!("its partial sums over the group loop `{}` would be recomputed", c.rank(r).name))
            };
            if let Some(why) = why {
                return Err(SpecError::new(
                    p,
                    format!(
                        "member `{}` lacks rank `{}`, so the group would recompute it at every step, but {why}",
                        e.name,
                        c.rank(l.rank).name
                    ),
                ));
            }
        }
        raw.push(l);
        prefix_paths.push(p.clone());
    }
    let n_prefix = raw.len();
    let mut keep: Vec<Option<(Vec<String>, bool)>> = vec![None; path.len()];
    let mut last_level: Option<usize> = None;
    for (k, ls) in spec.levels.iter().enumerate() {
        let lp = format!("{base}.levels[{k}]");
        let level = path.iter().position(|l| arch.level(*l).name == ls.level).ok_or_else(|| {
            SpecError::new(
                format!("{lp}.level"),
                format!("level `{}` is not on the path of unit `{}` ({})", ls.level, spec.unit, path_names.join(" → ")),
            )
        })?;
        if last_level.is_some_and(|p| p >= level) {
            return Err(SpecError::new(format!("{lp}.level"), "levels must be listed once each, outermost first"));
        }
        if level < prefix_level && !ls.loops.is_empty() {
            return Err(SpecError::new(
                format!("{lp}.loops"),
                format!(
                    "loops at `{}` would run outside the group's shared loops, which reach down to `{}`",
                    ls.level, path_names[prefix_level]
                ),
            ));
        }
        last_level = Some(level);
        let mut seen_spatial = false;
        for (j, text) in ls.loops.iter().enumerate() {
            let l = parse_loop(c, &format!("{lp}.loops[{j}]"), text, level)?;
            if !e.iteration_ranks.contains(&l.rank) {
                return Err(SpecError::new(
                    format!("{lp}.loops[{j}]"),
                    format!("rank `{}` is not in the iteration space of einsum `{}`", c.rank(l.rank).name, e.name),
                ));
            }
            if l.dim.is_some() {
                seen_spatial = true;
            } else if seen_spatial {
                return Err(SpecError::new(
                    format!("{lp}.loops[{j}]"),
                    "within a level, temporal loops come before spatial loops",
                ));
            }
            raw.push(l);
            prefix_paths.push(format!("{lp}.loops[{j}]"));
        }
        keep[level] = match (&ls.keep, &ls.bypass) {
            (Some(_), Some(_)) => return Err(SpecError::new(lp, "give `keep` or `bypass`, not both")),
            (Some(k), None) => Some((k.clone(), true)),
            (None, Some(b)) => Some((b.clone(), false)),
            (None, None) => Some((Vec::new(), false)),
        };
    }

    // Resolve `*` and check that each rank is covered exactly.
    let mut loops: Vec<Loop> = Vec::with_capacity(raw.len());
    let mut bounds: Vec<Option<u64>> = raw.iter().map(|l| l.bound).collect();
    for &r in &e.iteration_ranks {
        let idxs: Vec<usize> = (0..raw.len()).filter(|&k| raw[k].rank == r).collect();
        let size = c.rank(r).size;
        let name = &c.rank(r).name;
        if idxs.is_empty() && size == 1 {
            continue;
        }
        if idxs.is_empty() {
            return Err(SpecError::new(
                format!("{base}.levels"),
                format!("rank `{name}` of einsum `{}` has no loop (add `{name}=*` at the outermost level)", e.name),
            ));
        }
        let stars: Vec<usize> = idxs.iter().copied().filter(|&k| bounds[k].is_none()).collect();
        if stars.len() > 1 || stars.first().is_some_and(|&k| k != idxs[0]) {
            return Err(SpecError::new(
                &prefix_paths[stars[stars.len() - 1]],
                format!("only the outermost loop of rank `{name}` may be `*`"),
            ));
        }
        // Wide products: a bound written as 2⁶⁴ − 1 must be reported, not wrapped.
        let inner: u128 = idxs[1..]
            .iter()
            .map(|&k| u128::from(bounds[k].expect("only the outermost may be *")))
            .fold(1, u128::saturating_mul);
        if inner > u128::from(u64::MAX) {
            return Err(SpecError::new(
                &prefix_paths[idxs[1]],
                format!("the inner loops over rank `{name}` multiply to {inner}, past 2^64 (its size is {size})"),
            ));
        }
        let inner = inner as u64;
        if let Some(&k) = stars.first() {
            bounds[k] = Some(size.div_ceil(inner).max(1));
        }
        let outer = bounds[idxs[0]].expect("resolved");
        let (o, i, n) = (u128::from(outer), u128::from(inner), u128::from(size));
        if i >= n && o > 1 || (o - 1) * i >= n || o * i < n {
            return Err(SpecError::new(
                &prefix_paths[idxs[0]],
                format!(
                    "loops over rank `{name}` cover {} of its {size} positions (inner loops {inner}, outermost {outer}); only the outermost may overshoot, by less than one inner tile",
                    o * i
                ),
            ));
        }
    }
    // A recomputing group loop (a rank the member lacks) repeats the member: `*` is the rank's size.
    for (k, l) in raw.iter().enumerate() {
        if bounds[k].is_none() && !e.iteration_ranks.contains(&l.rank) {
            bounds[k] = Some(c.rank(l.rank).size);
        }
    }
    for (k, l) in raw.iter().enumerate() {
        let bound = bounds[k].expect("resolved");
        // A loop of bound 1 never changes its index: it cannot cause a reload, so drop it.
        if bound > 1 {
            loops.push(Loop { rank: l.rank, bound, dim: l.dim, level: l.level });
        }
    }
    let n_prefix_kept = (0..n_prefix).filter(|&k| bounds[k].expect("resolved") > 1).count();

    // Spatial loops must fit the fan-out of their level.
    for (lv, &level) in path.iter().enumerate() {
        let fan = arch.fanout(level, path.get(lv + 1).copied(), unit);
        for (dim, limit, name) in [(Dim::X, fan.0, "x"), (Dim::Y, fan.1, "y")] {
            let used: u64 = loops.iter().filter(|l| l.level == lv && l.dim == Some(dim)).map(|l| l.bound).product();
            if used > limit {
                let k = spec.levels.iter().position(|s| s.level == arch.level(level).name).unwrap_or(0);
                return Err(SpecError::new(
                    format!("{base}.levels[{k}].loops"),
                    format!(
                        "spatial loops at `{}` use {used} along {name} but the array offers {limit}",
                        arch.level(level).name
                    ),
                ));
            }
        }
    }

    // Operands and what each level keeps.
    let accesses = std::iter::once((&e.output, true)).chain(e.inputs.iter().map(|a| (a, false)));
    let mut operands = Vec::new();
    for (a, is_output) in accesses {
        let t = c.tensor(a.tensor);
        let ranks = a.ranks();
        let kept: Vec<bool> = keep
            .iter()
            .map(|k| match k {
                None => false,
                Some((list, true)) => list.contains(&t.name),
                Some((list, false)) => !list.contains(&t.name),
            })
            .collect();
        if !kept.iter().any(|&k| k) {
            return Err(SpecError::new(
                format!("{base}.levels"),
                format!("tensor `{}` is kept at no level of einsum `{}`", t.name, e.name),
            ));
        }
        operands.push(Operand {
            tensor: a.tensor,
            ranks,
            keep: kept,
            is_output,
            elem_bits: t.elem_bits,
            barrier: 0,
            shared: None,
        });
    }
    for (lv, k) in keep.iter().enumerate() {
        if let Some((list, _)) = k {
            for name in list {
                if !operands.iter().any(|o| &c.tensor(o.tensor).name == name) {
                    let li = spec.levels.iter().position(|s| s.level == arch.level(path[lv]).name).unwrap_or(0);
                    return Err(SpecError::new(
                        format!("{base}.levels[{li}]"),
                        format!("`{name}` is not a tensor of einsum `{}`", e.name),
                    ));
                }
            }
        }
    }
    let prefix_bounds = bounds[..n_prefix].iter().map(|b| b.expect("resolved")).collect();
    Ok((EinsumNest { einsum: idx, unit, path, loops, n_prefix: n_prefix_kept, operands, ops }, prefix_bounds))
}

/// Sets each operand's barrier: the group loops (that survived, bound > 1) of the groups its
/// consumer shares with its producer.
fn fill_barriers(nests: &mut [EinsumNest], c: &Cascade, schedule: &[Node], spec: &MappingSpec, bounds: &[Vec<u64>]) {
    for e in 0..nests.len() {
        let chain = enclosing_groups(schedule, e);
        // Loops each enclosing group contributes to this nest, outermost group first.
        let mut kept_per_group = Vec::with_capacity(chain.len());
        let mut at = 0;
        for g in &chain {
            let n = spec.groups.iter().find(|x| &x.name == g).map_or(0, |x| x.prefix.len());
            kept_per_group.push(bounds[e][at..at + n].iter().filter(|&&b| b > 1).count());
            at += n;
        }
        for oi in 0..nests[e].operands.len() {
            let o = &nests[e].operands[oi];
            let shared = match (o.is_output, c.producer(o.tensor)) {
                (true, _) => chain.len(),
                (false, Some(p)) => {
                    let pc = enclosing_groups(schedule, p);
                    chain.iter().zip(&pc).take_while(|(a, b)| a == b).count()
                }
                (false, None) => 0,
            };
            let mut barrier: usize = kept_per_group[..shared].iter().sum();
            // An output accumulates over the group's innermost loops on ranks its Einsum reduces
            // (no member reads it inside the group: `check_homes`): its tile stays across them.
            let ein = &c.einsums()[nests[e].einsum];
            if o.is_output && ein.reduce != ReduceOp::Top && ein.iterative.is_none() {
                while barrier > 0 && ein.reduced_ranks().contains(&nests[e].loops[barrier - 1].rank) {
                    barrier -= 1;
                }
            }
            nests[e].operands[oi].barrier = barrier;
        }
    }
}

/// Marks the operands that read a group's shared buffers, checking that sharing is sound: the
/// tensor comes from outside the group, every member that reads it reads it the same way and
/// keeps it at the level, nothing above the level but the group's loops changes its tile, and
/// the level has one instance per group step (no fan-out above it).
fn fill_shared(
    nests: &mut [EinsumNest],
    c: &Cascade,
    arch: &Arch,
    schedule: &[Node],
    spec: &MappingSpec,
    bounds: &[Vec<u64>],
) -> SpecResult<()> {
    for (gi, g) in spec.groups.iter().enumerate() {
        for (k, text) in g.shared.iter().enumerate() {
            let path = format!("mapping.groups[{gi}].shared[{k}]");
            let (tname, lname) =
                text.split_once('@').ok_or_else(|| SpecError::new(&path, format!("`{text}`: write `Tensor@Level`")))?;
            let tensor = c
                .tensor_id(tname.trim())
                .ok_or_else(|| SpecError::new(&path, format!("unknown tensor `{}`", tname.trim())))?;
            let members: Vec<usize> = {
                let node = find_group(schedule, &g.name).expect("group exists");
                node.einsums()
            };
            if c.producer(tensor).is_some_and(|p| members.contains(&p)) {
                return Err(SpecError::new(
                    &path,
                    format!("`{tname}` is produced inside the group; keep it at a level instead"),
                ));
            }
            let readers: Vec<usize> =
                members.iter().copied().filter(|&e| c.einsums()[e].inputs.iter().any(|a| a.tensor == tensor)).collect();
            if readers.is_empty() {
                return Err(SpecError::new(&path, format!("no member of `{}` reads `{tname}`", g.name)));
            }
            let first_access =
                c.einsums()[readers[0]].inputs.iter().find(|a| a.tensor == tensor).expect("reader").indices.clone();
            for (n, &e) in readers.iter().enumerate() {
                let chain = enclosing_groups(schedule, e);
                let depth = chain.iter().position(|x| x == &g.name).expect("member of the group") + 1;
                // Loops of this group and its ancestors that survived (bound > 1).
                let mut at = 0;
                let mut steps = 0;
                for name in &chain[..depth] {
                    let len = spec.groups.iter().find(|x| &x.name == name).map_or(0, |x| x.prefix.len());
                    steps += bounds[e][at..at + len].iter().filter(|&&b| b > 1).count();
                    at += len;
                }
                let nest = &mut nests[e];
                let level = nest.path.iter().position(|l| arch.level(*l).name == lname.trim()).ok_or_else(|| {
                    SpecError::new(
                        &path,
                        format!("level `{}` is not on the path of `{}`", lname.trim(), c.einsums()[e].name),
                    )
                })?;
                for oi in 1..nest.operands.len() {
                    if nest.operands[oi].tensor != tensor {
                        continue;
                    }
                    if c.einsums()[e].inputs[oi - 1].indices != first_access {
                        return Err(SpecError::new(
                            &path,
                            format!("members read `{tname}` at different elements; they cannot share"),
                        ));
                    }
                    let o = &nest.operands[oi];
                    if !o.keep[level] || o.home() >= level || o.parent_of(level) != Some(o.home()) {
                        return Err(SpecError::new(
                            &path,
                            format!(
                                "`{}` must keep `{tname}` at `{}` and at no level between it and where it lives",
                                c.einsums()[e].name,
                                lname.trim()
                            ),
                        ));
                    }
                    let bad = nest.loops[steps..]
                        .iter()
                        .find(|l| l.level < level && (l.is_spatial() || o.ranks.contains(&l.rank)));
                    if let Some(l) = bad {
                        return Err(SpecError::new(
                            &path,
                            format!(
                                "`{}` loops over `{}` above `{}`; a shared tile may change only with the group's loops",
                                c.einsums()[e].name,
                                c.rank(l.rank).name,
                                lname.trim()
                            ),
                        ));
                    }
                    nest.operands[oi].shared = Some(crate::nest::SharedRead { level, steps, first: n == 0 });
                }
            }
        }
    }
    Ok(())
}

fn find_group(nodes: &[Node], name: &str) -> Option<Node> {
    nodes.iter().find_map(|n| match n {
        Node::Group(g) if g.name == name => Some(n.clone()),
        Node::Group(g) => find_group(&g.members, name),
        Node::Einsum(_) => None,
    })
}

/// Gives each group its shared loops, resolved (a `*` resolves the same for every member).
fn fill_group_prefixes(nodes: &mut [Node], spec: &MappingSpec, c: &Cascade, bounds: &[Vec<u64>], depth: usize) {
    for node in nodes {
        if let Node::Group(g) = node {
            let gs = spec.groups.iter().find(|x| x.name == g.name).expect("group exists");
            let first = Node::Group(g.clone()).einsums()[0];
            g.prefix = gs
                .prefix
                .iter()
                .enumerate()
                .map(|(k, text)| {
                    let rank = c.rank_id(prefix_rank(text)).expect("parsed before");
                    (rank, bounds[first][depth + k])
                })
                .collect();
            let len = gs.prefix.len();
            fill_group_prefixes(&mut g.members, spec, c, bounds, depth + len);
        }
    }
}

/// Members of a group must see the same shared loops (a `*` resolves per member).
fn check_prefix_agreement(schedule: &[Node], nests: &[EinsumNest], c: &Cascade, spec: &MappingSpec) -> SpecResult<()> {
    fn walk(nodes: &[Node], nests: &[EinsumNest], c: &Cascade, spec: &MappingSpec) -> SpecResult<()> {
        for nd in nodes {
            if let Node::Group(g) = nd {
                let members = nd.einsums();
                let gi = spec.groups.iter().position(|x| x.name == g.name).unwrap_or(0);
                for (k, &(rank, _)) in g.prefix.iter().enumerate() {
                    if !members.iter().any(|&m| c.einsums()[m].iteration_ranks.contains(&rank)) {
                        return Err(SpecError::new(
                            format!("mapping.groups[{gi}].prefix[{k}]"),
                            format!("no member of group `{}` iterates over rank `{}`", g.name, c.rank(rank).name),
                        ));
                    }
                }
                let first = &nests[members[0]];
                for &m in &members[1..] {
                    let other = &nests[m];
                    let depth = first.n_prefix.min(other.n_prefix);
                    let a: Vec<(RankId, u64)> = first.loops[..depth].iter().map(|l| (l.rank, l.bound)).collect();
                    let b: Vec<(RankId, u64)> = other.loops[..depth].iter().map(|l| (l.rank, l.bound)).collect();
                    if a != b {
                        return Err(SpecError::new(
                            format!("mapping.groups[{gi}].prefix"),
                            format!(
                                "members `{}` and `{}` resolve the shared loops differently; give explicit bounds",
                                c.einsums()[members[0]].name,
                                c.einsums()[m].name
                            ),
                        ));
                    }
                }
                walk(&g.members, nests, c, spec)?;
            }
        }
        Ok(())
    }
    walk(schedule, nests, c, spec)
}

/// The innermost group that contains every Einsum in `es`, as a chain of group names from the top.
fn enclosing_groups(schedule: &[Node], e: usize) -> Vec<String> {
    fn find(nodes: &[Node], e: usize, chain: &mut Vec<String>) -> bool {
        for nd in nodes {
            match nd {
                Node::Einsum(x) if *x == e => return true,
                Node::Group(g) => {
                    chain.push(g.name.clone());
                    if find(&g.members, e, chain) {
                        return true;
                    }
                    chain.pop();
                }
                Node::Einsum(_) => {}
            }
        }
        false
    }
    let mut chain = Vec::new();
    find(schedule, e, &mut chain);
    chain
}

/// Tensors from outside the cascade live at the root; an intermediate homed below the root
/// must be produced and consumed inside one group, at the same level.
fn check_homes(
    nests: &[EinsumNest],
    c: &Cascade,
    arch: &Arch,
    schedule: &[Node],
    spec: &MappingSpec,
) -> SpecResult<()> {
    let entry = |e: usize| spec.einsums.iter().position(|x| x.einsum == c.einsums()[e].name).unwrap_or(0);
    let mut homes: BTreeMap<usize, (usize, strata_arch::LevelId)> = BTreeMap::new();
    for nest in nests {
        for o in &nest.operands {
            let t = c.tensor(o.tensor);
            let home = nest.path[o.home()];
            let external = t.role.is_external() || c.producer(o.tensor).is_none();
            if (external || t.role == strata_workloads::Role::Output) && o.home() != 0 {
                return Err(SpecError::new(
                    format!("mapping.einsums[{}].levels", entry(nest.einsum)),
                    format!(
                        "`{}` comes from or goes to outside the cascade, so the outermost level must keep it",
                        t.name
                    ),
                ));
            }
            match homes.get(&o.tensor.0) {
                Some(&(first, level)) if level != home => {
                    return Err(SpecError::new(
                        format!("mapping.einsums[{}].levels", entry(nest.einsum)),
                        format!(
                            "`{}` lives at a different level here than in einsum `{}`; producer and consumers must agree",
                            t.name,
                            c.einsums()[first].name
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    homes.insert(o.tensor.0, (nest.einsum, home));
                }
            }
            if o.home() != 0 {
                // The tile at the home level must be whole when the consumer reads it: every loop
                // above the home that changes the tile must be shared by the whole group.
                let own_relevant = nest.loops[nest.n_prefix..]
                    .iter()
                    .find(|l| !l.is_spatial() && l.level < o.home() && o.ranks.contains(&l.rank));
                if let Some(l) = own_relevant {
                    return Err(SpecError::new(
                        format!("mapping.einsums[{}].levels", entry(nest.einsum)),
                        format!(
                            "`{}` stays at `{}` but einsum `{}` loops over `{}` above it; move that loop into the group's shared loops",
                            t.name,
                            arch.level(home).name,
                            c.einsums()[nest.einsum].name,
                            c.rank(l.rank).name
                        ),
                    ));
                }
            }
            if o.home() != 0 && !o.is_output {
                // The consumer must find each element in the instance the producer left it in.
                let producer = c.producer(o.tensor).expect("intermediate");
                let placement = |n: &EinsumNest, op: &Operand| -> Vec<(RankId, u64, Option<crate::nest::Dim>, usize)> {
                    n.loops
                        .iter()
                        .filter(|l| l.is_spatial() && l.level < op.home() && op.ranks.contains(&l.rank))
                        .map(|l| (l.rank, l.bound, l.dim, l.level))
                        .collect()
                };
                let pn = &nests[producer];
                if placement(pn, &pn.operands[0]) != placement(nest, o) {
                    return Err(SpecError::new(
                        format!("mapping.einsums[{}].levels", entry(nest.einsum)),
                        format!(
                            "`{}` stays at `{}` but `{}` spreads it over the instances differently than `{}` does",
                            t.name,
                            arch.level(home).name,
                            c.einsums()[nest.einsum].name,
                            c.einsums()[producer].name
                        ),
                    ));
                }
            }
            if !o.is_output
                && let Some(producer) = c.producer(o.tensor)
            {
                // A consumer inside a group cannot read what the producer still reduces over the group's loops.
                let (a, b) = (enclosing_groups(schedule, producer), enclosing_groups(schedule, nest.einsum));
                for g in a.iter().zip(&b).take_while(|(x, y)| x == y).map(|x| x.0) {
                    let gs = spec.groups.iter().find(|x| &x.name == g).expect("group exists");
                    for text in &gs.prefix {
                        let r = c.rank_id(prefix_rank(text)).expect("parsed");
                        // A loop over a rank the producer lacks recomputes it instead.
                        let reduced = c.einsums()[producer].iteration_ranks.contains(&r);
                        if reduced && !nests[producer].operands[0].ranks.contains(&r) {
                            return Err(SpecError::new(
                                format!(
                                    "mapping.groups[{}].members",
                                    spec.groups.iter().position(|x| &x.name == g).unwrap_or(0)
                                ),
                                format!(
                                    "`{}` reads `{}` inside group `{g}`, but `{}` is still reducing it over the group's loop on `{}`",
                                    c.einsums()[nest.einsum].name,
                                    t.name,
                                    c.einsums()[producer].name,
                                    c.rank(r).name
                                ),
                            ));
                        }
                    }
                }
            }
            if o.home() != 0 && !o.is_output {
                let producer = c.producer(o.tensor).expect("intermediate");
                let a = enclosing_groups(schedule, producer);
                let b = enclosing_groups(schedule, nest.einsum);
                if a.is_empty() || a.first() != b.first() {
                    return Err(SpecError::new(
                        format!("mapping.einsums[{}].levels", entry(nest.einsum)),
                        format!(
                            "`{}` stays on chip between `{}` and `{}`, which share no group; fuse them or keep it at the root",
                            t.name,
                            c.einsums()[producer].name,
                            c.einsums()[nest.einsum].name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A selection is complete before anything reads it: a gather's index tensor and a `top(..)`
/// output are read only outside the outermost group that produces them (a record holds its
/// final `k` only after every candidate arrived; a gather addresses by final indices).
fn check_selections(c: &Cascade, schedule: &[Node], spec: &MappingSpec) -> SpecResult<()> {
    for (e, einsum) in c.einsums().iter().enumerate() {
        for a in &einsum.inputs {
            let indexes = einsum.inputs.iter().any(|g| g.gather().is_some_and(|(_, _, i)| einsum.inputs[i] == *a));
            let Some(p) = c.producer(a.tensor) else { continue };
            if !indexes && c.einsums()[p].reduce != ReduceOp::Top {
                continue;
            }
            let (outer_p, outer_e) = (enclosing_groups(schedule, p), enclosing_groups(schedule, e));
            if let (Some(g), Some(h)) = (outer_p.first(), outer_e.first())
                && g == h
            {
                let i = spec.einsums.iter().position(|x| x.einsum == einsum.name).unwrap_or(0);
                return Err(SpecError::new(
                    format!("mapping.einsums[{i}]"),
                    format!(
                        "einsum `{}` reads `{}` to select or gather inside group `{g}` that produces it; \
                         a selection is read only once complete, outside its producer's group",
                        einsum.name,
                        c.tensor(a.tensor).name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A recurrence over an iterative rank steps in the shared loops of one group that holds all of its Einsums.
fn check_recurrences(nests: &[EinsumNest], c: &Cascade, schedule: &[Node], spec: &MappingSpec) -> SpecResult<()> {
    let mut owner: BTreeMap<usize, (String, usize)> = BTreeMap::new();
    for (e, einsum) in c.einsums().iter().enumerate() {
        let Some(r) = einsum.iterative else { continue };
        let nest = &nests[e];
        let i = spec.einsums.iter().position(|x| x.einsum == einsum.name).unwrap_or(0);
        let own = nest.loops.iter().enumerate().filter(|(k, l)| l.rank == r && *k >= nest.n_prefix).count();
        let shared: Vec<&Loop> = nest.loops[..nest.n_prefix].iter().filter(|l| l.rank == r).collect();
        // A rank of size 1 has no loop left (bound-1 loops are dropped); it steps once.
        let covered = c.rank(r).size == 1 || (shared.len() == 1 && shared[0].bound == c.rank(r).size);
        if own > 0 || !covered {
            return Err(SpecError::new(
                format!("mapping.einsums[{i}]"),
                format!(
                    "einsum `{}` steps through `{}`: loop over it once, in full, in the shared loops of an enclosing group",
                    einsum.name,
                    c.rank(r).name
                ),
            ));
        }
        // The group whose prefix holds the loop: the deepest enclosing group whose prefix names r.
        let chain = enclosing_groups(schedule, e);
        let holder = chain
            .iter()
            .rev()
            .find(|g| {
                spec.groups
                    .iter()
                    .find(|x| &x.name == *g)
                    .is_some_and(|x| x.prefix.iter().any(|l| prefix_rank(l) == c.rank(r).name))
            })
            .cloned()
            .unwrap_or_default();
        match owner.get(&r.0) {
            Some((g, first)) if *g != holder => {
                return Err(SpecError::new(
                    format!("mapping.einsums[{i}]"),
                    format!(
                        "einsums `{}` and `{}` step through `{}` in different groups; a recurrence must run in one",
                        c.einsums()[*first].name,
                        einsum.name,
                        c.rank(r).name
                    ),
                ));
            }
            Some(_) => {}
            None => {
                owner.insert(r.0, (holder, e));
            }
        }
    }
    Ok(())
}
