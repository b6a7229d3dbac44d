//! Fusion search over any cascade: which Einsums share loops, where each intermediate lives, on
//! which unit each Einsum runs, which ranks fan out over each array, how large the shared tiles
//! are and in which order each Einsum's own loops run. No template and no name is assumed:
//! units are the ones whose operations cover an Einsum, levels are found on the units' paths.
//!
//! A point of the space is a [`Plan`]; [`FusionSpace::spec`] turns it into a mapping file:
//! - consecutive Einsums between two cuts form a fused group whose shared loops run, at the root,
//!   over every rank all members iterate and none reduces, in tiles of the plan's size;
//! - the members that step through a recurrence rank (`m1` of a 1-pass softmax) form a subgroup
//!   whose shared loops step it, as recurrences require;
//! - in a group without a recurrence, a run of consecutive members may form a subgroup that
//!   steps the group's tile one element at a time and reads what several of them take from
//!   outside it once, into a buffer they share (FLAT's row-by-row softmax over spilled logits);
//! - optionally the group also shares the tile's temporal loops at the deepest level common to
//!   the members (FuseMax's `p1`), so that what one member leaves in a PE's registers is the
//!   next member's input;
//! - each intermediate lives at the root when it crosses a cut, else at the deepest level on
//!   the paths of its producer and consumers (or the level above it, a plan choice);
//! - each unit fans out the ranks the plan names over its array's x and y (an Einsum may name its
//!   own), by the largest divisor of what is left of the rank that fits; a group's tiles are
//!   sized for its widest array.
//!
//! The search is coordinate descent with every alternative of a coordinate evaluated in
//! parallel and ties kept at the lower index, so the result does not depend on the thread
//! count. It starts from every Einsum in one group, once sharing the tiles' loops deep and
//! overlapping the arrays and once not, and kicks each local optimum: a tile shrunk, a cut
//! undone, every Einsum a unit can run moved onto it, then descends again; once those settle,
//! each spilled dataflow and a descent across the plateau (moves that keep the objective and
//! lower the caller's tie-break). Costs are cached by mapping. The caller supplies the cost
//! (`mappings` describes, `sim` evaluates).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use rayon::prelude::*;
use strata_arch::{Arch, LevelId, UnitId};
use strata_workloads::Cascade;
use strata_workloads::einsum::RankId;

use crate::nest::capable_units;
use crate::spec::{EinsumMappingSpec, GroupSpec, LevelSpec, MappingSpec, Pipelining};

/// A point of the fusion space: one choice per coordinate (indices into the option lists).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Plan {
    /// `cuts[i]`: Einsum `i + 1` starts a new group.
    cuts: Vec<bool>,
    /// Per rank: its tile below the root: the fan-out times a divisor (indices below the
    /// divisor count) or a divisor smaller than the fan-out (indices above).
    tile: Vec<usize>,
    /// Whether groups share the tile's loops at the level their members have in common.
    share_inner: bool,
    /// Whether group members overlap across the arrays from step to step.
    interleaved: bool,
    /// Per Einsum: its unit, an index into the units that can run it.
    unit: Vec<usize>,
    /// Per unit: the ranks over x and y (0: none, k: rank k − 1).
    spatial: Vec<[usize; 2]>,
    /// Per Einsum: 0 to fan out as its unit does, or `1 + x + y·(n + 1)` for its own ranks
    /// `x` and `y` (indices into its iteration ranks, `n` of them; `n` itself for none).
    own_spatial: Vec<usize>,
    /// Per Einsum: the order of its own temporal loops, a permutation index.
    order: Vec<usize>,
    /// Per tensor: an intermediate inside a group lives at the deepest common level (`true`) or
    /// the level above it.
    low: Vec<bool>,
    /// Per Einsum: 0, or `k` for input `k − 1` to pass by the levels between root and leaf.
    stream: Vec<usize>,
    /// Per Einsum in a group: 0, or `k` for its own rank `k − 1` to loop at the root as well
    /// (FLAT's spilled logits); what that loop cuts into moves to the root.
    split: Vec<usize>,
    /// 0, or `1 + k` for the `k`-th run of at least two consecutive Einsums (see [`run`]) to
    /// form a row subgroup with shared reads.
    sub: usize,
    /// Whether a group also loops over ranks only some members iterate, the others recomputing
    /// their tiles at every step (FlashSVD's rebuild per output tile): recompute against bytes.
    recompute: bool,
}

/// The `k`-th run `(first, last)` of at least two consecutive Einsums out of `n`, in order of
/// first, then last.
fn run(n: usize, k: usize) -> Option<(usize, usize)> {
    let mut k = k;
    for a in 0..n {
        let len = n - a - 1;
        if k < len {
            return Some((a, a + 1 + k));
        }
        k -= len;
    }
    None
}

/// One coordinate of a plan.
#[derive(Debug, Clone, Copy)]
enum Coord {
    Cut(usize),
    Tile(usize),
    ShareInner,
    Interleaved,
    Unit(usize),
    /// Both dimensions of a unit at once (x and y choices are coupled by what fits).
    Spatial(usize),
    /// One Einsum's own fan-out, overriding its unit's.
    OwnSpatial(usize),
    Order(usize),
    Low(usize),
    Stream(usize),
    Split(usize),
    /// The run of Einsums that forms a row subgroup.
    Sub,
    Recompute,
}

/// What a mapping costs: the objective, and a second number that breaks its ties. Once the
/// kicks settle, a last descent takes moves that keep the objective and lower the tie-break, so
/// that it crosses plateaus (an array off the critical path freed by one move, used by the next).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub objective: f64,
    pub tie: f64,
}

/// What a search found.
#[derive(Debug, Clone)]
pub struct Found {
    pub spec: MappingSpec,
    pub cost: f64,
    /// Distinct mappings costed.
    pub evaluated: u64,
    /// Plans in the space: the product of every coordinate's options.
    pub space: f64,
    /// Whether `stop` ended the search early.
    pub stopped: bool,
}

/// The fusion space of a cascade on an architecture.
pub struct FusionSpace<'a> {
    c: &'a Cascade,
    arch: &'a Arch,
    units: Vec<Vec<UnitId>>,
    divisors: Vec<Vec<u64>>,
}

/// The `k`-th permutation of `items` (Lehmer code; `k` taken modulo `items.len()!`).
fn permutation<T: Clone>(items: &[T], mut k: usize) -> Vec<T> {
    let mut pool = items.to_vec();
    let mut out = Vec::with_capacity(pool.len());
    while !pool.is_empty() {
        let rest: usize = (1..pool.len()).product();
        let i = (k / rest.max(1)) % pool.len();
        k %= rest.max(1);
        out.push(pool.remove(i));
    }
    out
}

fn factorial(n: usize) -> usize {
    (1..=n).product()
}

impl<'a> FusionSpace<'a> {
    /// `Err(e)` when no unit can run Einsum `e` (the caller names it).
    pub fn new(c: &'a Cascade, arch: &'a Arch) -> Result<FusionSpace<'a>, usize> {
        let units: Vec<Vec<UnitId>> = c.einsums().iter().map(|e| capable_units(arch, e)).collect();
        if let Some(e) = units.iter().position(Vec::is_empty) {
            return Err(e);
        }
        let divisors = c.ranks().iter().map(|r| crate::mapper::divisors(r.size)).collect();
        Ok(FusionSpace { c, arch, units, divisors })
    }

    fn path(&self, u: UnitId) -> Vec<LevelId> {
        self.arch.path_to(self.arch.unit(u).level)
    }

    /// Every Einsum in one group, every tile its fan-out, nothing spatial, each Einsum on its
    /// unit with the most PEs; `deep`: the group shares its tiles' loops down to the level its
    /// members have in common and overlaps across the arrays. (Cuts come from the descent; the
    /// caller compares with every Einsum mapped on its own.)
    fn start(&self, deep: bool) -> Plan {
        let n = self.c.einsums().len();
        let tensors = self.c.tensors().len();
        Plan {
            cuts: vec![false; n.saturating_sub(1)],
            tile: vec![0; self.c.ranks().len()],
            share_inner: deep,
            interleaved: deep,
            // The unit with the most PEs (the first of equals).
            unit: self
                .units
                .iter()
                .map(|us| (0..us.len()).rev().max_by_key(|&i| self.arch.unit(us[i]).pes()).unwrap_or(0))
                .collect(),
            spatial: vec![[0, 0]; self.arch.units.len()],
            own_spatial: vec![0; n],
            order: vec![0; n],
            low: vec![false; tensors],
            stream: vec![0; n],
            split: vec![0; n],
            sub: 0,
            recompute: false,
        }
    }

    /// Runs of Einsums that could share a read: two members read one tensor produced outside,
    /// and none steps a recurrence (whose members form a subgroup of their own).
    fn sharing_runs(&self) -> Vec<usize> {
        let es = self.c.einsums();
        let n = es.len();
        (0..n * n.saturating_sub(1) / 2)
            .filter(|&k| {
                let (a, b) = run(n, k).expect("in range");
                es[a..=b].iter().all(|e| e.iterative.is_none())
                    && !self.outside_reads(&(a..=b).collect::<Vec<_>>()).is_empty()
            })
            .collect()
    }

    /// Tensors produced outside `inside` that two or more of its Einsums read, each with its
    /// reads as (Einsum, input position).
    fn outside_reads(&self, inside: &[usize]) -> Vec<(usize, Vec<(usize, usize)>)> {
        let es = self.c.einsums();
        (0..self.c.tensors().len())
            .filter(|&t| !self.c.producer(strata_workloads::einsum::TensorId(t)).is_some_and(|e| inside.contains(&e)))
            .map(|t| {
                let reads = inside
                    .iter()
                    .filter_map(|&e| es[e].inputs.iter().position(|a| a.tensor.0 == t).map(|k| (e, k)))
                    .collect::<Vec<_>>();
                (t, reads)
            })
            .filter(|(_, reads)| reads.len() > 1)
            .collect()
    }

    /// `plan` with run `k` made a row subgroup and every other Einsum looping over its largest
    /// rank that the whole cascade does not share at the root: FLAT's spilled dataflow, where the
    /// rows' logits go to the root between producer, softmax and consumer, past the buffer.
    /// Coordinate descent does not reach it one coordinate at a time (each part alone costs
    /// more).
    fn spilled(&self, plan: &Plan, k: usize) -> Plan {
        let es = self.c.einsums();
        let (a, b) = run(es.len(), k).expect("a sharing run");
        let shared = |r: &RankId| es.iter().all(|e| e.iteration_ranks.contains(r) && !e.reduced_ranks().contains(r));
        let mut q = plan.clone();
        q.sub = k + 1;
        for (e, ein) in es.iter().enumerate() {
            let inside =
                |t: usize| self.c.producer(strata_workloads::einsum::TensorId(t)).is_some_and(|p| (a..=b).contains(&p));
            if !(a..=b).contains(&e) {
                // What crosses into or out of the run passes the buffers.
                let reads = es[a..=b].iter().any(|x| x.inputs.iter().any(|i| i.tensor == ein.output.tensor));
                if let Some(k) = ein.inputs.iter().position(|i| inside(i.tensor.0)) {
                    q.stream[e] = k + 1;
                } else if reads {
                    q.stream[e] = ein.inputs.len() + 1;
                }
            }
            q.split[e] = if (a..=b).contains(&e) {
                0
            } else {
                ein.iteration_ranks
                    .iter()
                    .filter(|r| !shared(r) && ein.iterative != Some(**r))
                    .max_by_key(|r| (self.c.rank(**r).size, std::cmp::Reverse(r.0)))
                    .map_or(0, |r| r.0 + 1)
            };
        }
        for i in a..b {
            q.cuts[i] = false;
        }
        q
    }

    /// 1 + the index of the Einsum's largest input from outside the cascade, or 0 if none.
    fn largest_input(&self, e: &strata_workloads::einsum::Einsum) -> usize {
        e.inputs
            .iter()
            .enumerate()
            .filter(|(_, a)| self.c.tensor(a.tensor).role.is_external())
            .max_by_key(|(i, a)| (self.c.tensor(a.tensor).elements(), std::cmp::Reverse(*i)))
            .map_or(0, |(i, _)| i + 1)
    }

    fn coords(&self) -> Vec<Coord> {
        let n = self.c.einsums().len();
        let used: BTreeSet<UnitId> = self.units.iter().flatten().copied().collect();
        // Fan-out first (each Einsum starts on its widest unit), then tiles, then units.
        let mut v: Vec<Coord> = used.iter().map(|u| Coord::Spatial(u.0)).collect();
        v.extend((0..self.c.ranks().len()).filter(|&r| self.divisors[r].len() > 1).map(Coord::Tile));
        v.extend((0..n).filter(|&e| self.units[e].len() > 1).map(Coord::Unit));
        v.extend((0..n).map(Coord::OwnSpatial));
        v.extend((0..n.saturating_sub(1)).map(Coord::Cut));
        v.extend([Coord::ShareInner, Coord::Interleaved]);
        v.extend((0..n).map(Coord::Order));
        v.extend(
            (0..self.c.tensors().len())
                .filter(|&t| self.c.tensors()[t].role == strata_workloads::Role::Intermediate)
                .map(Coord::Low),
        );
        v.extend((0..n).map(Coord::Stream));
        v.extend((0..n).map(Coord::Split));
        if n > 2 {
            v.push(Coord::Sub);
        }
        if n > 1 {
            v.push(Coord::Recompute);
        }
        v
    }

    /// How many options a coordinate has.
    fn options(&self, k: Coord) -> usize {
        match k {
            Coord::Cut(_) | Coord::ShareInner | Coord::Interleaved | Coord::Low(_) | Coord::Recompute => 2,
            Coord::Tile(r) => 2 * self.divisors[r].len(),
            Coord::Unit(e) => self.units[e].len(),
            Coord::Spatial(_) => (self.c.ranks().len() + 1).pow(2),
            Coord::OwnSpatial(e) => 1 + (self.c.einsums()[e].iteration_ranks.len() + 1).pow(2),
            Coord::Order(e) => factorial(self.c.einsums()[e].iteration_ranks.len().min(4)),
            Coord::Stream(e) => self.c.einsums()[e].inputs.len() + 2,
            Coord::Split(_) => self.c.ranks().len() + 1,
            Coord::Sub => {
                let n = self.c.einsums().len();
                1 + n * n.saturating_sub(1) / 2
            }
        }
    }

    fn with(&self, p: &Plan, k: Coord, v: usize) -> Plan {
        let mut q = p.clone();
        match k {
            Coord::Cut(i) => q.cuts[i] = v == 1,
            Coord::Tile(r) => q.tile[r] = v,
            Coord::ShareInner => q.share_inner = v == 1,
            Coord::Interleaved => q.interleaved = v == 1,
            Coord::Unit(e) => q.unit[e] = v,
            Coord::Spatial(u) => q.spatial[u] = [v % (self.c.ranks().len() + 1), v / (self.c.ranks().len() + 1)],
            Coord::OwnSpatial(e) => q.own_spatial[e] = v,
            Coord::Order(e) => q.order[e] = v,
            Coord::Low(t) => q.low[t] = v == 1,
            Coord::Stream(e) => q.stream[e] = v,
            Coord::Split(e) => q.split[e] = v,
            Coord::Sub => q.sub = v,
            Coord::Recompute => q.recompute = v == 1,
        }
        q
    }

    fn value(&self, p: &Plan, k: Coord) -> usize {
        match k {
            Coord::Cut(i) => usize::from(p.cuts[i]),
            Coord::Tile(r) => p.tile[r],
            Coord::ShareInner => usize::from(p.share_inner),
            Coord::Interleaved => usize::from(p.interleaved),
            Coord::Unit(e) => p.unit[e],
            Coord::Spatial(u) => p.spatial[u][0] + p.spatial[u][1] * (self.c.ranks().len() + 1),
            Coord::OwnSpatial(e) => p.own_spatial[e],
            Coord::Order(e) => p.order[e],
            Coord::Low(t) => usize::from(p.low[t]),
            Coord::Stream(e) => p.stream[e],
            Coord::Split(e) => p.split[e],
            Coord::Sub => p.sub,
            Coord::Recompute => usize::from(p.recompute),
        }
    }

    /// Plans in the space (as a float: it passes 2⁶⁴ quickly).
    pub fn size(&self) -> f64 {
        self.coords().iter().map(|&k| self.options(k) as f64).product()
    }

    /// The mapping file of a plan; `None` when the plan breaks a rule of fusion (a cut inside a
    /// recurrence, two recurrences in one group, units without a common root).
    pub fn spec(&self, p: &Plan) -> Option<MappingSpec> {
        let c = self.c;
        let arch = self.arch;
        let es = c.einsums();
        let n = es.len();
        for i in 0..n.saturating_sub(1) {
            if p.cuts[i] && es[i].iterative.is_some() && es[i].iterative == es[i + 1].iterative {
                return None;
            }
        }
        let unit: Vec<UnitId> = (0..n).map(|e| self.units[e][p.unit[e]]).collect();
        let paths: Vec<Vec<LevelId>> = unit.iter().map(|&u| self.path(u)).collect();
        if paths.iter().any(|q| q[0] != paths[0][0]) {
            return None;
        }
        // Segments: consecutive Einsums between cuts.
        let mut seg = vec![0usize; n];
        for i in 1..n {
            seg[i] = seg[i - 1] + usize::from(p.cuts[i - 1]);
        }
        let segments = seg.last().map_or(0, |s| s + 1);
        // The row subgroup's run, which must lie inside one group.
        let row_sub = p.sub.checked_sub(1).and_then(|k| run(n, k));
        if row_sub.is_some_and(|(a, b)| seg[a] != seg[b]) {
            return None;
        }
        let in_sub = |e: usize| row_sub.is_some_and(|(a, b)| (a..=b).contains(&e));
        let members = |s: usize| -> Vec<usize> { (0..n).filter(|&e| seg[e] == s).collect() };
        let consumers =
            |t: usize| -> Vec<usize> { (0..n).filter(|&e| es[e].inputs.iter().any(|a| a.tensor.0 == t)).collect() };
        let rerun = |e: usize| es[e].reduce != strata_workloads::ReduceOp::Top && es[e].iterative.is_none();
        // With recompute, the ranks that only members nobody in the group reads reduce, looped
        // innermost: those members accumulate across the steps and the others, lacking the
        // rank or iterating it, stream through it (FlashSVD's FFN over its width).
        let streamed_reductions = |m: &[usize]| -> Vec<RankId> {
            if !p.recompute || m.len() < 2 {
                return Vec::new();
            }
            let read_inside =
                |e: usize| m.iter().any(|&x| es[x].inputs.iter().any(|a| a.tensor == es[e].output.tensor));
            let mut out: Vec<RankId> = Vec::new();
            for &e in m {
                for &r in es[e].reduced_ranks() {
                    let ok = c.rank(r).size > 1
                        && !out.contains(&r)
                        && m.iter().all(|&x| {
                            let reduces = es[x].reduced_ranks().contains(&r);
                            (!reduces || !read_inside(x) && rerun(x))
                                && (reduces || es[x].iteration_ranks.contains(&r) || rerun(x))
                        });
                    if ok {
                        out.push(r);
                    }
                }
            }
            out
        };
        // Per segment: shared ranks (iterated by every member, reduced by none, not a
        // recurrence); with recompute, also those some members lack, if each of those can be
        // run again (neither a selection nor a recurrence), and the streamed reductions.
        let shared_of = |m: &[usize]| -> Vec<RankId> {
            let q: BTreeSet<RankId> = m.iter().filter_map(|&e| es[e].iterative).collect();
            // The first member's ranks in its order, then those only later members iterate.
            let mut candidates: Vec<RankId> = Vec::new();
            for r in m.iter().flat_map(|&e| es[e].iteration_ranks.iter().copied()) {
                if !candidates.contains(&r) {
                    candidates.push(r);
                }
            }
            candidates
                .into_iter()
                .filter(|r| {
                    m.iter().all(|&e| es[e].iteration_ranks.contains(r) || p.recompute && m.len() > 1 && rerun(e))
                })
                .filter(|r| m.iter().all(|&e| !es[e].reduced_ranks().contains(r)))
                .filter(|r| !q.contains(r) && c.rank(*r).size > 1)
                .chain(streamed_reductions(m))
                .collect()
        };
        // Per Einsum: the own rank that also loops at the root, if any.
        let all_members: Vec<Vec<usize>> = (0..segments).map(members).collect();
        let all_shared: Vec<Vec<RankId>> = all_members.iter().map(|m| shared_of(m)).collect();
        let split: Vec<Option<RankId>> = (0..n)
            .map(|e| {
                let r = RankId(p.split[e].checked_sub(1)?);
                let m = &all_members[seg[e]];
                let own = es[e].iteration_ranks.contains(&r)
                    && es[e].iterative != Some(r)
                    && c.rank(r).size > 1
                    && !all_shared[seg[e]].contains(&r);
                (own && (m.len() > 1 || es[e].iterative.is_some())).then_some(r)
            })
            .collect();
        // Where each tensor lives.
        let mut home: Vec<LevelId> = vec![paths[0][0]; c.tensors().len()];
        for (t, tensor) in c.tensors().iter().enumerate() {
            let Some(producer) = c.producer(strata_workloads::einsum::TensorId(t)) else { continue };
            if tensor.role != strata_workloads::Role::Intermediate {
                continue;
            }
            let users = consumers(t);
            if users.iter().any(|&e| seg[e] != seg[producer]) {
                continue;
            }
            // A root loop of the producer or a consumer over one of its ranks cuts it: root.
            let ranks_in = |e: usize| -> Vec<RankId> {
                std::iter::once(&es[e].output)
                    .chain(&es[e].inputs)
                    .filter(|a| a.tensor.0 == t)
                    .flat_map(|a| a.ranks())
                    .collect()
            };
            if std::iter::once(producer)
                .chain(users.iter().copied())
                .any(|e| split[e].is_some_and(|r| ranks_in(e).contains(&r)))
            {
                continue;
            }
            let mut common: Vec<LevelId> = paths[producer].clone();
            for &e in &users {
                let k = common.iter().zip(&paths[e]).take_while(|(a, b)| a == b).count();
                common.truncate(k);
            }
            let leaf = |l: LevelId| unit.iter().any(|&u| arch.unit(u).level == l);
            let deepest = *common.last().expect("a common root");
            home[t] = if p.low[t] || common.len() == 1 || !leaf(deepest) { deepest } else { common[common.len() - 2] };
        }
        // The spatial rank of unit `u` along dimension `d` for Einsum `e`, if `e` iterates it.
        let spatial_rank = |u: UnitId, d: usize, e: usize| -> Option<RankId> {
            if let Some(v) = p.own_spatial[e].checked_sub(1) {
                let ranks = &es[e].iteration_ranks;
                let n = ranks.len() + 1;
                let (x, y) = (v % n, v / n);
                let pick = if d == 0 { x } else { y };
                return ranks.get(pick).copied().filter(|_| !(d == 1 && x == y));
            }
            let k = p.spatial[u.0][d];
            let r = RankId(k.checked_sub(1)?);
            let other = p.spatial[u.0][1 - d];
            (es[e].iteration_ranks.contains(&r) && !(d == 1 && other == k)).then_some(r)
        };
        // The deepest level of a path that fans out over the unit's PEs, with (x, y).
        let fans: Vec<Option<(usize, (u64, u64))>> = (0..n)
            .map(|e| {
                let q = &paths[e];
                (0..q.len())
                    .rev()
                    .map(|i| (i, arch.fanout(q[i], q.get(i + 1).copied(), unit[e])))
                    .find(|(_, f)| f.0 * f.1 > 1)
            })
            .collect();
        let fan = |e: usize| fans[e];
        // How far Einsum `e` fans rank `r` out: the fan-out of the dimension it spreads `r` over.
        let fan_limit = |e: usize, r: RankId| -> Option<u64> {
            let (_, f) = fan(e)?;
            [(0, f.0), (1, f.1)].into_iter().find(|&(d, _)| spatial_rank(unit[e], d, e) == Some(r)).map(|x| x.1)
        };
        // The largest divisor of `n` (itself a divisor of rank `r`'s size) that is at most
        // `limit`, from the rank's divisors found once.
        let largest_divisor = |r: RankId, n: u64, limit: u64| -> u64 {
            self.divisors[r.0].iter().rev().copied().find(|&d| d <= limit && n.is_multiple_of(d)).unwrap_or(1)
        };
        let name = |r: RankId| c.rank(r).name.clone();
        // A rank's tile below the root in a segment: what its widest fan-out over the members'
        // arrays takes, times the plan's temporal factor (the largest divisor of what is left
        // that does not pass the option chosen), so that fanning out never waits on a tile.
        let segment_tile = |m: &[usize], r: RankId| -> u64 {
            let size = c.rank(r).size;
            // The tile is sized for the segment's widest array: a narrow unit's fan-out over a
            // rank does not grow every member's tile.
            let widest = m.iter().map(|&e| arch.unit(unit[e]).pes()).max().unwrap_or(1);
            let s = m
                .iter()
                .filter(|&&e| arch.unit(unit[e]).pes() == widest)
                .filter_map(|&e| fan_limit(e, r))
                .map(|limit| largest_divisor(r, size, limit))
                .max()
                .unwrap_or(1);
            // Options below the rank's divisor count multiply the fan-out by a temporal factor;
            // those above give a tile smaller than the fan-out (FLAT's 128-query row blocks).
            let d = &self.divisors[r.0];
            match p.tile[r.0].checked_sub(d.len()) {
                None => s * largest_divisor(r, size / s, d[p.tile[r.0]]),
                Some(i) => d[i.min(d.len() - 1)].min(s),
            }
        };

        let mut groups = Vec::new();
        let mut einsums = Vec::new();
        for s in 0..segments {
            let m = all_members[s].clone();
            let recurrences: BTreeSet<RankId> = m.iter().filter_map(|&e| es[e].iterative).collect();
            if recurrences.len() > 1 {
                return None;
            }
            let q = recurrences.first().copied();
            let grouped = m.len() > 1 || q.is_some();
            let shared: Vec<RankId> = if grouped { all_shared[s].clone() } else { Vec::new() };
            let inner_members: Vec<usize> = match q {
                Some(q) => m.iter().copied().filter(|&e| es[e].iterative == Some(q)).collect(),
                None => m.clone(),
            };
            if inner_members.windows(2).any(|w| w[1] != w[0] + 1) {
                return None;
            }
            let sub = q.is_some() && inner_members.len() < m.len();
            // A row subgroup here: a strict part of a group without a recurrence.
            let rows = row_sub.filter(|&(a, _)| seg[a] == s);
            if rows.is_some_and(|(a, b)| q.is_some() || b - a + 1 == m.len()) {
                return None;
            }
            let tiles: Vec<u64> = (0..c.ranks().len()).map(|r| segment_tile(&m, RankId(r))).collect();
            let tile = |r: RankId| tiles[r.0];
            // The deepest level every member's path shares below its leaf: where shared inner
            // loops run.
            let mut common: Vec<LevelId> = paths[m[0]][..paths[m[0]].len() - 1].to_vec();
            for &e in &m {
                let k = common.iter().zip(&paths[e][..paths[e].len() - 1]).take_while(|(a, b)| a == b).count();
                common.truncate(k);
            }
            let inner_level =
                (p.share_inner && grouped && rows.is_none() && common.len() > 1).then(|| common[common.len() - 1]);
            // Per shared rank: the inner shared loop and the spatial factor it leaves.
            let mut inner: Vec<(RankId, u64, u64)> = Vec::new();
            if inner_level.is_some() {
                for &r in &shared {
                    let limit = inner_members.iter().filter_map(|&e| fan_limit(e, r)).min().unwrap_or(1);
                    let s_r = largest_divisor(r, tile(r), limit);
                    inner.push((r, tile(r) / s_r, s_r));
                }
            }
            if grouped {
                // A rank some member lacks gets its bound written out: that member repeats, and
                // `*` would resolve to the rank's whole size for it.
                let prefix: Vec<String> = shared
                    .iter()
                    .map(|&r| match m.iter().all(|&e| es[e].iteration_ranks.contains(&r)) {
                        true => format!("{}=*", name(r)),
                        false => format!("{}={}", name(r), c.rank(r).size.div_ceil(tile(r))),
                    })
                    .collect();
                let inner_text: Vec<String> = inner
                    .iter()
                    .filter(|x| x.1 > 1)
                    .map(|&(r, t, _)| format!("{}:{}={t}", arch.level(inner_level.expect("set")).name, name(r)))
                    .collect();
                let pipelining = if p.interleaved { Pipelining::Interleaved } else { Pipelining::Sequential };
                let names = |v: &[usize]| v.iter().map(|&e| es[e].name.clone()).collect::<Vec<_>>();
                let q_text = q.map(|q| format!("{}=*", name(q)));
                if sub {
                    let sub_name = format!("g{s}-{}", name(q.expect("sub")));
                    let mut top = names(&m[..m.iter().position(|&e| e == inner_members[0]).expect("member")]);
                    top.push(sub_name.clone());
                    top.extend(names(
                        &m[m.iter().position(|&e| e == *inner_members.last().expect("member")).expect("m") + 1..],
                    ));
                    groups.push(GroupSpec { name: format!("g{s}"), prefix, members: top, pipelining, shared: vec![] });
                    groups.push(GroupSpec {
                        name: sub_name,
                        prefix: q_text.into_iter().chain(inner_text).collect(),
                        members: names(&inner_members),
                        pipelining,
                        shared: vec![],
                    });
                } else if let Some((a, b)) = rows {
                    let sub_name = format!("g{s}-rows");
                    let inside: Vec<usize> = (a..=b).collect();
                    let mut top = names(&m[..m.iter().position(|&e| e == a).expect("member")]);
                    top.push(sub_name.clone());
                    top.extend(names(&m[m.iter().position(|&e| e == b).expect("member") + 1..]));
                    groups.push(GroupSpec { name: format!("g{s}"), prefix, members: top, pipelining, shared: vec![] });
                    groups.push(GroupSpec {
                        name: sub_name,
                        prefix: shared
                            .iter()
                            .filter(|&&r| tile(r) > 1)
                            .map(|&r| format!("{}={}", name(r), tile(r)))
                            .collect(),
                        members: names(&inside),
                        pipelining,
                        shared: self.shared_reads(&inside, &paths, &home, p),
                    });
                } else {
                    groups.push(GroupSpec {
                        name: format!("g{s}"),
                        prefix: prefix.into_iter().chain(q_text).chain(inner_text).collect(),
                        members: names(&m),
                        pipelining,
                        shared: vec![],
                    });
                }
            }
            for &e in &m {
                let ein = &es[e];
                let path = &paths[e];
                let depth = |l: LevelId| path.iter().position(|&x| x == l);
                let fan_e = fan(e);
                let shares_inner = inner_level.is_some() && inner_members.contains(&e);
                // Loops per level index.
                let mut loops: Vec<Vec<String>> = vec![Vec::new(); path.len()];
                let buffer = path.len().saturating_sub(2);
                let mut temporal: Vec<(RankId, String)> = Vec::new();
                let mut spatial_loops: Vec<(usize, String)> = Vec::new();
                for &r in &ein.iteration_ranks {
                    if Some(r) == q || c.rank(r).size == 1 {
                        continue;
                    }
                    let is_shared = shared.contains(&r);
                    // What is left of the rank below the root.
                    // A row subgroup steps its members through the tile one element at a time.
                    let mut left = if is_shared && in_sub(e) {
                        1
                    } else if is_shared || !grouped {
                        tile(r)
                    } else {
                        c.rank(r).size
                    };
                    let root_split = grouped && split[e] == Some(r) && tile(r) < c.rank(r).size;
                    if root_split {
                        left = tile(r);
                    }
                    if (!grouped || root_split) && tile(r) < c.rank(r).size {
                        loops[0].push(format!("{}=*", name(r)));
                    }
                    if shares_inner && let Some(&(_, t, _)) = inner.iter().find(|x| x.0 == r) {
                        left /= t;
                    }
                    let mut s = 1;
                    if let Some((_, f)) = fan_e {
                        for (d, limit) in [(0, f.0), (1, f.1)] {
                            if spatial_rank(unit[e], d, e) == Some(r) {
                                s = largest_divisor(r, left, limit);
                                if s > 1 {
                                    spatial_loops
                                        .push((d, format!("{}={s}@{}", name(r), if d == 0 { "x" } else { "y" })));
                                }
                            }
                        }
                    }
                    let own_star = !is_shared && !root_split && (grouped || tile(r) == c.rank(r).size);
                    let t = left / s;
                    if own_star {
                        temporal.push((r, format!("{}=*", name(r))));
                    } else if t > 1 {
                        temporal.push((r, format!("{}={t}", name(r))));
                    }
                }
                let temporal: Vec<String> = permutation(&temporal, p.order[e]).into_iter().map(|x| x.1).collect();
                loops[buffer].extend(temporal);
                let fan_level = fan_e.map_or(buffer, |f| f.0);
                // x before y whatever the rank order, so that producers and consumers place a
                // tile over the PEs alike.
                spatial_loops.sort();
                loops[fan_level].extend(spatial_loops.into_iter().map(|x| x.1));
                // Input `k`, or the output after the inputs (FLAT's logits written past the buffer).
                let streamed = p.stream[e]
                    .checked_sub(1)
                    .and_then(|k| ein.inputs.get(k).or((k == ein.inputs.len()).then_some(&ein.output)))
                    .map(|a| a.tensor.0);
                let operands: BTreeSet<usize> =
                    std::iter::once(ein.output.tensor.0).chain(ein.inputs.iter().map(|a| a.tensor.0)).collect();
                let mut levels = Vec::new();
                for (i, &l) in path.iter().enumerate() {
                    let leaf = i + 1 == path.len();
                    let mut keep = Vec::new();
                    for &t in &operands {
                        let h = depth(home[t])?;
                        let middle = i > 0 && !leaf;
                        if h <= i && !(middle && streamed == Some(t) && h == 0) {
                            keep.push(c.tensors()[t].name.clone());
                        }
                    }
                    levels.push(LevelSpec {
                        level: arch.level(l).name.clone(),
                        loops: std::mem::take(&mut loops[i]),
                        keep: (!leaf).then_some(keep),
                        bypass: None,
                    });
                }
                einsums.push(EinsumMappingSpec {
                    einsum: ein.name.clone(),
                    unit: arch.unit(unit[e]).name.clone(),
                    levels,
                });
            }
        }
        Some(MappingSpec {
            name: format!("{}-fused", c.name()),
            description: "found by Strata's fusion search".into(),
            einsums,
            groups,
        })
    }

    /// What the members of a row subgroup read into a buffer they share: each tensor from outside
    /// it that two or more of them read alike (same elements, none streaming it past the
    /// buffers), at the level just below where it lives when every reader's path has that level
    /// above its unit.
    fn shared_reads(&self, inside: &[usize], paths: &[Vec<LevelId>], home: &[LevelId], p: &Plan) -> Vec<String> {
        let es = self.c.einsums();
        let mut out = Vec::new();
        for (t, reads) in self.outside_reads(inside) {
            if reads.iter().any(|&(e, k)| p.stream[e] == k + 1)
                || reads.iter().any(|&(e, k)| es[e].inputs[k].indices != es[reads[0].0].inputs[reads[0].1].indices)
            {
                continue;
            }
            let level = |e: usize| -> Option<LevelId> {
                let q = &paths[e];
                let h = q.iter().position(|&l| l == home[t])?;
                (h + 2 < q.len()).then(|| q[h + 1])
            };
            let first = level(reads[0].0);
            if let Some(l) = first
                && reads.iter().all(|&(e, _)| level(e) == first)
            {
                out.push(format!("{}@{}", self.c.tensors()[t].name, self.arch.level(l).name));
            }
        }
        out
    }

    /// Coordinate descent from two starts (everything fused, everything apart); `cost` returns
    /// `None` for a mapping that does not resolve or fit. At most `budget` plans are costed.
    /// The best plan found with at most `budget` mappings costed, stopping early once `stop`
    /// says so (a time limit); `progress` hears the mappings costed and the best cost so far
    /// after every descent.
    pub fn search(
        &self,
        cost: &(dyn Fn(&MappingSpec) -> Option<Cost> + Sync),
        budget: u64,
        stop: &(dyn Fn() -> bool + Sync),
        progress: &(dyn Fn(u64, f64) + Sync),
    ) -> Option<Found> {
        // Costs by mapping (plans that differ only in choices without effect share one).
        let seen: Mutex<HashMap<MappingSpec, Option<Cost>>> = Mutex::new(HashMap::new());
        let eval = |p: &Plan| -> Option<Cost> {
            let spec = self.spec(p)?;
            if let Some(v) = seen.lock().expect("lock").get(&spec) {
                return *v;
            }
            let v = cost(&spec);
            seen.lock().expect("lock").insert(spec, v);
            v
        };
        // `ties`: a move that keeps the objective and lowers the tie-break counts as better.
        let better_by = |a: Option<Cost>, b: Option<Cost>, ties: bool| match (a, b) {
            (Some(x), Some(y)) => x.objective < y.objective || (ties && x.objective == y.objective && x.tie < y.tie),
            (Some(_), None) => true,
            _ => false,
        };
        let better = |a: Option<Cost>, b: Option<Cost>| better_by(a, b, false);
        let coords = self.coords();
        let spent = || seen.lock().expect("lock").len() as u64 >= budget || stop();
        // Coordinate descent: each coordinate in turn takes its best value, until none moves.
        let descend_by = |mut plan: Plan, frozen: Option<usize>, ties: bool| -> (Plan, Option<Cost>) {
            let mut current = eval(&plan);
            loop {
                let mut improved = false;
                for (j, &k) in coords.iter().enumerate() {
                    if Some(j) == frozen {
                        continue;
                    }
                    if spent() {
                        return (plan, current);
                    }
                    let now = self.value(&plan, k);
                    let alternatives: Vec<Plan> =
                        (0..self.options(k)).filter(|&v| v != now).map(|v| self.with(&plan, k, v)).collect();
                    let costs: Vec<Option<Cost>> = alternatives.par_iter().map(&eval).collect();
                    let mut pick: Option<usize> = None;
                    for (i, &v) in costs.iter().enumerate() {
                        if better_by(v, pick.map_or(current, |j| costs[j]), ties) {
                            pick = Some(i);
                        }
                    }
                    if let Some(i) = pick {
                        plan = alternatives[i].clone();
                        current = costs[i];
                        improved = true;
                    }
                }
                if !improved {
                    return (plan, current);
                }
            }
        };
        let descend = |plan: Plan, frozen: Option<usize>| descend_by(plan, frozen, false);
        let mut best: Option<(Plan, Cost)> = None;
        let runs = self.sharing_runs();
        // Starts tried only when no descent before reaches a mapping that fits (kicks may, but
        // from a worse place): every Einsum streams its largest input past the buffers (keys and
        // values of a long context do not fit on chip whole); then each spilled dataflow (a row
        // of logits does, where a block of rows does not).
        let mut starts: Vec<Plan> = vec![self.start(true), self.start(false)];
        let mut streaming = self.start(false);
        streaming.stream = self.c.einsums().iter().map(|e| self.largest_input(e)).collect();
        starts.push(streaming);
        let fallback = 2;
        starts.extend(runs.iter().map(|&k| self.spilled(&self.start(false), k)));
        let mut descended = false;
        for (i, plan) in starts.into_iter().enumerate() {
            if i >= fallback && descended {
                break;
            }
            let (mut plan, mut current) = descend(plan, None);
            descended |= current.is_some();
            // Kicks: a tile that grew early can crowd out a better one (a batch tile taking the
            // buffer a query tile would reuse keys in), and a cut made early can keep apart what
            // fits together later; shrink each tile to its least or undo each cut, descend with
            // that held, then descend freely.
            let mut kicked = true;
            while kicked && !spent() {
                kicked = false;
                for (j, &k) in coords.iter().enumerate().filter(|(_, k)| matches!(k, Coord::Tile(_) | Coord::Cut(_))) {
                    if self.value(&plan, k) == 0 || spent() {
                        continue;
                    }
                    let (q, _) = descend(self.with(&plan, k, 0), Some(j));
                    let (q, v) = descend(q, None);
                    if better(v, current) {
                        (plan, current, kicked) = (q, v, true);
                    }
                }
                // Every Einsum that can run on a unit moved there at once: one Einsum alone
                // would find the unit fanned out for another (FuseMax's 1D array, which pays
                // only once it holds the whole running softmax).
                for u in 0..self.arch.units.len() {
                    if spent() {
                        break;
                    }
                    let mut q = plan.clone();
                    for (e, us) in self.units.iter().enumerate() {
                        if let Some(i) = us.iter().position(|x| x.0 == u) {
                            q.unit[e] = i;
                        }
                    }
                    if q == plan {
                        continue;
                    }
                    let (q, v) = descend(q, None);
                    if better(v, current) {
                        (plan, current, kicked) = (q, v, true);
                    }
                }
                // Each spilled dataflow, from where the kicks above settle (tried earlier, one
                // can win early and lead away from a better plan on chip).
                for &k in &runs {
                    if kicked || spent() {
                        break;
                    }
                    let q = self.spilled(&plan, k);
                    if q == plan || self.spec(&q).is_none() {
                        continue;
                    }
                    let (q, v) = descend(q, None);
                    if better(v, current) {
                        (plan, current, kicked) = (q, v, true);
                    }
                }
                // Across the plateau the kicks settled on: moves that keep the objective and
                // lower the tie-break, until one lowers the objective (an array off the critical
                // path sped up, then given work).
                if !kicked && !spent() {
                    let (q, v) = descend_by(plan.clone(), None, true);
                    if better(v, current) {
                        (plan, current, kicked) = (q, v, true);
                    }
                }
            }
            if let Some(v) = current
                && best.as_ref().is_none_or(|b| better(Some(v), Some(b.1)))
            {
                best = Some((plan, v));
            }
            if let Some(b) = &best {
                progress(seen.lock().expect("lock").len() as u64, b.1.objective);
            }
        }
        let evaluated = seen.into_inner().expect("lock").len() as u64;
        best.map(|(plan, v)| Found {
            spec: self.spec(&plan).expect("costed plans have a spec"),
            cost: v.objective,
            evaluated,
            space: self.size(),
            stopped: stop(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    /// The run index enumerates every run of two or more consecutive Einsums exactly once.
    #[test]
    fn runs_cover_every_stretch_once() {
        for n in 0usize..8 {
            let all: Vec<(usize, usize)> = (0..n * n.saturating_sub(1) / 2).map(|k| run(n, k).unwrap()).collect();
            let expected: Vec<(usize, usize)> = (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect();
            assert_eq!(all, expected, "{n} Einsums");
            assert_eq!(run(n, all.len()), None);
        }
    }
}
