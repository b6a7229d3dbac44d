//! The instrumented tiled executor: runs a mapped cascade on real numbers, with one buffer per
//! (operand, level instance) holding the tile it was filled with, and counts every fill, read
//! and update as it happens.
//!
//! It shares only the *policy* with the analytical model (a level reloads when the step of its
//! outer loops changes; outputs drain into their parent), not the arithmetic: tiles are found
//! by enumerating the points under them, multicast and reduction are found by remembering what
//! the parent already served, and the numbers flow through the buffers, so a wrong residency
//! decision shows up as a wrong result. Tests require its counts to equal
//! [`crate::counts::count`] exactly and its outputs to equal the reference interpreter's.
//! It is meant for small shapes: its cost grows with points × tile sizes.

use std::collections::{BTreeMap, HashMap, HashSet};

use strata_mappings::{CascadeMapping, EinsumNest, Node};
use strata_workloads::Cascade;
use strata_workloads::einsum::{Index, ReduceOp};
use strata_workloads::interp::{Dense, apply, rank_candidates};

use crate::counts::Access;

/// What the executor counted for one Einsum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCounts {
    pub access: Vec<Vec<Access>>,
    pub points: u64,
    pub temporal_steps: u64,
    /// `[operand][level]`: the largest tile an instance held (levels other than the home).
    pub peak_tile: Vec<Vec<u64>>,
}

#[derive(Debug, Clone)]
pub struct ExecResult {
    pub tensors: BTreeMap<String, Dense<f64>>,
    pub counts: Vec<ExecCounts>,
    /// Per tensor: the first and the last top-level schedule node in which the run wrote or
    /// read it in the outermost level (its home there), or `None` if it never touched it there.
    pub outermost: Vec<Option<(usize, usize)>>,
}

/// Names the multicast/reduction siblings of an instance: (operand, parent level, level, instance).
type SiblingKey<'a> = dyn Fn(usize, usize, usize, &[u64]) -> Vec<u64> + 'a;

/// A tile resident in one instance of one level. A select's output tile also holds, per
/// record, the candidates (score, index) offered to it since it was filled.
struct Tile {
    key: Vec<u64>,
    inst: Vec<u64>,
    values: HashMap<usize, f64>,
    picks: HashMap<usize, Vec<(f64, u64)>>,
}

/// What one Einsum's buffers hold between the steps of its enclosing groups: input tiles stay
/// resident (a later step may reuse them), outputs are drained at the end of every step.
#[derive(Default)]
struct State {
    tiles: HashMap<(usize, usize, Vec<u64>), Tile>,
    served: HashSet<(usize, usize, Vec<u64>, Vec<u64>)>,
    steps: HashSet<Vec<u64>>,
}

/// The full tensors at their home levels, with which elements have been written, and the
/// open top-k records of select Einsums (keyed by tensor and the record's first element).
struct Backing {
    data: Vec<Dense<f64>>,
    written: Vec<Vec<bool>>,
    records: BTreeMap<(usize, usize), Record>,
    /// The top-level schedule node running, and per tensor the nodes that first and last
    /// touched it in the outermost level.
    node: usize,
    outermost: Vec<Option<(usize, usize)>>,
}

/// A select Einsum's output record while candidates arrive: (score, index along the candidates).
struct Record {
    k: usize,
    slot_stride: usize,
    candidates: Vec<(f64, u64)>,
}

impl Backing {
    /// Notes an access to tensor `t` at its home, if that home is the outermost level.
    fn touch(&mut self, t: usize, home: usize) {
        if home == 0 {
            let n = self.node;
            self.outermost[t] = Some(self.outermost[t].map_or((n, n), |(a, _)| (a, n)));
        }
    }

    /// Writes every open record's selected indices, in `top(..)`'s order, into its tensor.
    fn close_records(&mut self) {
        for ((t, first), mut r) in std::mem::take(&mut self.records) {
            rank_candidates(&mut r.candidates);
            for (slot, &(_, index)) in r.candidates.iter().take(r.k).enumerate() {
                self.data[t].data[first + slot * r.slot_stride] = index as f64;
            }
        }
    }
}

fn combine(reduce: ReduceOp, old: Option<f64>, v: f64) -> f64 {
    match old {
        None => v,
        Some(o) => match reduce {
            ReduceOp::Sum => o + v,
            // A record's value is its best score; its candidates travel in the tile's picks.
            ReduceOp::Max | ReduceOp::Top => o.max(v),
        },
    }
}

/// Runs the whole cascade under `mapping` on the given external tensors.
pub fn execute(c: &Cascade, mapping: &CascadeMapping, inputs: &BTreeMap<String, Dense<f64>>) -> ExecResult {
    let mut backing = Backing {
        data: Vec::new(),
        written: Vec::new(),
        records: BTreeMap::new(),
        node: 0,
        outermost: vec![None; c.tensors().len()],
    };
    for t in c.tensors() {
        let d =
            if t.role.is_external() { inputs[&t.name].clone() } else { Dense::filled(&t.shape, t.init.unwrap_or(0.0)) };
        // An init value is what a never-written element holds; the first write replaces it.
        let written = vec![false; d.data.len()];
        backing.data.push(d);
        backing.written.push(written);
    }
    let mut counts: Vec<ExecCounts> = mapping
        .nests
        .iter()
        .map(|n| ExecCounts {
            access: vec![vec![Access::default(); n.path.len()]; n.operands.len()],
            points: 0,
            temporal_steps: 0,
            peak_tile: vec![vec![0; n.path.len()]; n.operands.len()],
        })
        .collect();
    let mut state: Vec<State> = mapping.nests.iter().map(|_| State::default()).collect();
    let mut shared = SharedBuffers::new();
    let mut mach = Machine { backing: &mut backing, counts: &mut counts, state: &mut state, shared: &mut shared };
    // A select's records are complete once the outermost node holding it has run (its readers
    // sit in later nodes: `resolve` checks it), so they close between outermost nodes.
    for (i, node) in mapping.schedule.iter().enumerate() {
        mach.backing.node = i;
        run_nodes(c, mapping, std::slice::from_ref(node), &mut Vec::new(), &mut mach);
        // Outputs that accumulated over their group's innermost loops are complete now.
        for e in node.einsums() {
            let nest = &mapping.nests[e];
            let State { tiles, served, .. } = &mut mach.state[e];
            if !tiles.keys().any(|k| k.0 == 0) {
                continue;
            }
            let plan = Plan::new(c, nest, mach.backing);
            let key = |oi: usize, parent: usize, lv: usize, inst: &[u64]| plan.sibling_key(oi, parent, lv, inst);
            let reduce = c.einsums()[e].reduce;
            drain_resident(c, &plan, reduce, &key, tiles, served, mach.backing, &mut mach.counts[e]);
        }
        mach.backing.close_records();
    }
    for (k, s) in state.into_iter().enumerate() {
        counts[k].temporal_steps = s.steps.len() as u64;
    }
    let tensors = c.tensors().iter().zip(backing.data).map(|(t, d)| (t.name.clone(), d)).collect();
    ExecResult { tensors, counts, outermost: backing.outermost }
}

/// Everything a run mutates: the home tensors, the counters, each Einsum's buffers, and the
/// groups' shared buffers.
struct Machine<'a> {
    backing: &'a mut Backing,
    counts: &'a mut [ExecCounts],
    state: &'a mut [State],
    shared: &'a mut SharedBuffers,
}

fn run_nodes(c: &Cascade, m: &CascadeMapping, nodes: &[Node], prefix: &mut Vec<u64>, mach: &mut Machine<'_>) {
    for node in nodes {
        match node {
            Node::Einsum(e) => run_einsum(
                c,
                &m.nests[*e],
                prefix,
                mach.backing,
                &mut mach.counts[*e],
                &mut mach.state[*e],
                mach.shared,
            ),
            Node::Group(g) => {
                // The group's loops that survived (bound > 1) extend the prefix of every member.
                let bounds: Vec<u64> = g.prefix.iter().map(|p| p.1).filter(|&b| b > 1).collect();
                let mut idx = vec![0u64; bounds.len()];
                loop {
                    let depth = prefix.len();
                    prefix.extend_from_slice(&idx);
                    run_nodes(c, m, &g.members, prefix, mach);
                    prefix.truncate(depth);
                    if !odometer(&mut idx, &bounds) {
                        break;
                    }
                }
            }
        }
    }
}

fn odometer(idx: &mut [u64], bounds: &[u64]) -> bool {
    for k in (0..idx.len()).rev() {
        idx[k] += 1;
        if idx[k] < bounds[k] {
            return true;
        }
        idx[k] = 0;
    }
    false
}

/// Per-nest facts the executor derives from the mapping's definition.
struct Plan<'a> {
    c: &'a Cascade,
    nest: &'a EinsumNest,
    /// Stride of each loop within its rank.
    stride: Vec<u64>,
    /// Per input: the index tensor's values where the input gathers a position (complete before
    /// the Einsum runs: `resolve` keeps a gather apart from its index's producer).
    index_values: Vec<Option<Vec<f64>>>,
}

impl<'a> Plan<'a> {
    fn new(c: &'a Cascade, nest: &'a EinsumNest, backing: &Backing) -> Self {
        let stride = (0..nest.loops.len())
            .map(|k| nest.loops[k + 1..].iter().filter(|l| l.rank == nest.loops[k].rank).map(|l| l.bound).product())
            .collect();
        let e = &c.einsums()[nest.einsum];
        let index_values = e
            .inputs
            .iter()
            .map(|a| a.gather().map(|(_, _, input)| backing.data[e.inputs[input].tensor.0].data.clone()))
            .collect();
        Plan { c, nest, stride, index_values }
    }

    /// Rank coordinates of a loop-index vector, or `None` if the point does not exist.
    fn coords(&self, idx: &[u64]) -> Option<Vec<u64>> {
        let mut coord = vec![0u64; self.c.ranks().len()];
        for (k, l) in self.nest.loops.iter().enumerate() {
            coord[l.rank.0] += idx[k] * self.stride[k];
        }
        let e = &self.c.einsums()[self.nest.einsum];
        for &r in &e.iteration_ranks {
            if coord[r.0] >= self.c.rank(r).size {
                return None;
            }
        }
        for p in self.c.partitions() {
            if e.iteration_ranks.contains(&p.outer)
                && e.iteration_ranks.contains(&p.inner)
                && coord[p.outer.0] * p.tile + coord[p.inner.0] >= self.c.rank(p.parent).size
            {
                return None;
            }
            if e.iteration_ranks.contains(&p.inner) && coord[p.inner.0] >= self.c.rank(p.parent).size {
                return None;
            }
        }
        Some(coord)
    }

    /// Flat element index of operand `oi` at a point (a select's output: its record's first slot).
    fn element(&self, oi: usize, coord: &[u64]) -> usize {
        let e = &self.c.einsums()[self.nest.einsum];
        let access = if oi == 0 { &e.output } else { &e.inputs[oi - 1] };
        let shape = &self.c.tensor(access.tensor).shape;
        let mut flat = 0u64;
        for (pos, ix) in access.indices.iter().enumerate() {
            let v = match *ix {
                Index::Var(r) => coord[r.0],
                Index::Next(r) => coord[r.0] + 1,
                Index::Last(r) => self.c.rank(r).size,
                Index::Joined { outer, inner, tile } => coord[outer.0] * tile + coord[inner.0],
                Index::Gather { input, .. } => {
                    let values = self.index_values[oi - 1].as_ref().expect("taken for every gathering input");
                    let v = values[self.element(input + 1, coord)];
                    assert!(v >= 0.0 && v.fract() == 0.0 && v < shape[pos] as f64, "gathered index {v} out of range");
                    v as u64
                }
                Index::Slot(_) => 0,
            };
            flat = flat * shape[pos] + v;
        }
        flat as usize
    }

    fn relevant(&self, oi: usize, k: usize) -> bool {
        self.nest.operands[oi].ranks.contains(&self.nest.loops[k].rank)
    }

    /// The loops whose advance replaces the tile at `lv`: the temporal loops above it down to
    /// the innermost one the operand depends on, plus the group loops it refreshes every step.
    fn step_loops(&self, oi: usize, lv: usize) -> Vec<usize> {
        let barrier = self.nest.operands[oi].barrier;
        let above: Vec<usize> = (0..self.nest.loops.len())
            .filter(|&k| self.nest.loops[k].level < lv && !self.nest.loops[k].is_spatial())
            .collect();
        let last = above.iter().copied().filter(|&k| self.relevant(oi, k) || k < barrier).max();
        let mut out: Vec<usize> = match last {
            Some(j) => above.into_iter().filter(|&k| k <= j).collect(),
            None => Vec::new(),
        };
        out.extend(0..barrier);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Instance of `lv` with the spatial loops in [parent, lv) that operand `oi` ignores blanked:
    /// the multicast/reduction siblings share it.
    fn sibling_key(&self, oi: usize, parent: usize, lv: usize, inst: &[u64]) -> Vec<u64> {
        self.instance_loops(lv)
            .into_iter()
            .zip(inst)
            .map(|(k, &v)| {
                let l = &self.nest.loops[k];
                if l.level >= parent && !self.relevant(oi, k) { u64::MAX } else { v }
            })
            .collect()
    }

    /// Spatial loops above `lv`: their indices name the instance.
    fn instance_loops(&self, lv: usize) -> Vec<usize> {
        (0..self.nest.loops.len())
            .filter(|&k| self.nest.loops[k].level < lv && self.nest.loops[k].is_spatial())
            .collect()
    }

    /// The elements of operand `oi` in the tile at `lv` for the point `idx`: every existing point
    /// that agrees with `idx` on the step and instance loops, projected.
    fn tile_elements(&self, oi: usize, lv: usize, idx: &[u64]) -> Vec<usize> {
        self.elements(oi, &self.step_loops(oi, lv).into_iter().chain(self.instance_loops(lv)).collect(), idx)
    }

    /// Elements of operand `oi` over every existing point that agrees with `idx` on `fixed`.
    fn elements(&self, oi: usize, fixed: &HashSet<usize>, idx: &[u64]) -> Vec<usize> {
        let free: Vec<usize> = (0..self.nest.loops.len()).filter(|k| !fixed.contains(k)).collect();
        let bounds: Vec<u64> = free.iter().map(|&k| self.nest.loops[k].bound).collect();
        let mut sub = vec![0u64; free.len()];
        let mut point = idx.to_vec();
        let mut out = HashSet::new();
        loop {
            for (j, &k) in free.iter().enumerate() {
                point[k] = sub[j];
            }
            if let Some(coord) = self.coords(&point) {
                out.insert(self.element(oi, &coord));
            }
            if !odometer(&mut sub, &bounds) {
                break;
            }
        }
        let mut v: Vec<usize> = out.into_iter().collect();
        v.sort_unstable();
        v
    }
}

/// A group's shared buffers: (tensor, level) → (step key, values).
type SharedBuffers = HashMap<(usize, usize), (Vec<u64>, HashMap<usize, f64>)>;

fn run_einsum(
    c: &Cascade,
    nest: &EinsumNest,
    prefix: &[u64],
    backing: &mut Backing,
    counts: &mut ExecCounts,
    state: &mut State,
    shared: &mut SharedBuffers,
) {
    let State { tiles, served, steps } = state;
    let plan = Plan::new(c, nest, backing);
    let e = &c.einsums()[nest.einsum];
    let n = nest.loops.len();
    assert_eq!(prefix.len(), nest.n_prefix, "group loops line up with the nest's prefix");
    let bounds: Vec<u64> = nest.loops.iter().map(|l| l.bound).collect();
    let mut idx = vec![0u64; n];
    idx[..nest.n_prefix].copy_from_slice(prefix);
    let own_bounds = bounds[nest.n_prefix..].to_vec();
    // A group loop over a rank this Einsum lacks makes every step recompute the same elements:
    // each step's values replace the last step's instead of adding to them.
    if nest.loops[..nest.n_prefix].iter().any(|l| !e.iteration_ranks.contains(&l.rank)) {
        let fixed: HashSet<usize> = (0..nest.n_prefix).collect();
        for el in plan.elements(0, &fixed, &idx) {
            backing.written[nest.operands[0].tensor.0][el] = false;
        }
    }
    let mut own = vec![0u64; n - nest.n_prefix];
    let step_loops: Vec<Vec<Vec<usize>>> =
        (0..nest.operands.len()).map(|oi| (0..nest.path.len()).map(|lv| plan.step_loops(oi, lv)).collect()).collect();
    let inst_loops: Vec<Vec<usize>> = (0..nest.path.len()).map(|lv| plan.instance_loops(lv)).collect();
    let pick = |idx: &[u64], ks: &[usize]| -> Vec<u64> { ks.iter().map(|&k| idx[k]).collect() };
    // Instance of `lv` with the spatial loops in [parent, lv) that operand `oi` ignores blanked:
    // the multicast/reduction siblings share it.
    let sibling_key = |oi: usize, parent: usize, lv: usize, inst: &[u64]| plan.sibling_key(oi, parent, lv, inst);
    let out_op = &nest.operands[0];
    let reduce = e.reduce;

    loop {
        idx[nest.n_prefix..].copy_from_slice(&own);
        if let Some(coord) = plan.coords(&idx) {
            counts.points += 1;
            steps.insert(idx.iter().zip(&nest.loops).filter(|(_, l)| !l.is_spatial()).map(|(v, _)| *v).collect());
            // 1. Output tiles whose step ended drain, innermost first.
            let out_levels: Vec<usize> = (out_op.home() + 1..nest.path.len()).filter(|&lv| out_op.keep[lv]).collect();
            for &lv in out_levels.iter().rev() {
                let inst = pick(&idx, &inst_loops[lv]);
                let key = pick(&idx, &step_loops[0][lv]);
                let stale = tiles.get(&(0, lv, inst.clone())).is_some_and(|t| t.key != key);
                if stale {
                    Drain { plan: &plan, c, reduce, sibling_key: &sibling_key, tiles, served, backing, counts }
                        .under(lv, &inst);
                }
            }
            for &lv in &out_levels {
                let inst = pick(&idx, &inst_loops[lv]);
                let key = pick(&idx, &step_loops[0][lv]);
                tiles.entry((0, lv, inst.clone())).or_insert(Tile {
                    key,
                    inst,
                    values: HashMap::new(),
                    picks: HashMap::new(),
                });
            }
            // 2. Input tiles whose step changed are refilled, outermost first.
            for (oi, o) in nest.operands.iter().enumerate().skip(1) {
                for lv in o.home() + 1..nest.path.len() {
                    if !o.keep[lv] {
                        continue;
                    }
                    let inst = pick(&idx, &inst_loops[lv]);
                    let parent = o.parent_of(lv).expect("below the home");
                    if let Some(sh) = o.shared.filter(|sh| sh.level == lv) {
                        // A group's shared buffer: whoever runs first in the step loads it.
                        let key = idx[..sh.steps].to_vec();
                        let slot = (o.tensor.0, nest.path[lv].0);
                        if shared.get(&slot).is_none_or(|b| b.0 != key) {
                            let fixed: HashSet<usize> = (0..sh.steps).collect();
                            let elements = plan.elements(oi, &fixed, &idx);
                            let values = elements.iter().map(|&el| (el, backing.data[o.tensor.0].data[el])).collect();
                            backing.touch(o.tensor.0, o.home());
                            let cnt = elements.len() as u64;
                            counts.access[oi][lv].fills += cnt;
                            counts.access[oi][parent].reads += cnt;
                            shared.insert(slot, (key.clone(), values));
                        }
                        if tiles.get(&(oi, lv, inst.clone())).is_none_or(|t| t.key != key) {
                            let values = shared[&slot].1.clone();
                            counts.peak_tile[oi][lv] = counts.peak_tile[oi][lv].max(values.len() as u64);
                            tiles.insert((oi, lv, inst.clone()), Tile { key, inst, values, picks: HashMap::new() });
                        }
                        continue;
                    }
                    let key = pick(&idx, &step_loops[oi][lv]);
                    if tiles.get(&(oi, lv, inst.clone())).is_some_and(|t| t.key == key) {
                        continue;
                    }
                    let elements = plan.tile_elements(oi, lv, &idx);
                    let mut values = HashMap::with_capacity(elements.len());
                    let pinst = pick(&idx, &inst_loops[parent]);
                    if parent == o.home() {
                        backing.touch(o.tensor.0, parent);
                    }
                    for &el in &elements {
                        let v = if parent == o.home() {
                            backing.data[o.tensor.0].data[el]
                        } else {
                            *tiles[&(oi, parent, pinst.clone())]
                                .values
                                .get(&el)
                                .expect("a parent tile covers its children")
                        };
                        values.insert(el, v);
                    }
                    let cnt = elements.len() as u64;
                    counts.access[oi][lv].fills += cnt;
                    if served.insert((oi, lv, key.clone(), sibling_key(oi, parent, lv, &inst))) {
                        counts.access[oi][parent].reads += cnt;
                    }
                    counts.peak_tile[oi][lv] = counts.peak_tile[oi][lv].max(cnt);
                    tiles.insert((oi, lv, inst.clone()), Tile { key, inst, values, picks: HashMap::new() });
                }
            }
            // 3. The PE computes the point from its innermost tiles.
            let mut operands = Vec::with_capacity(2);
            for (oi, o) in nest.operands.iter().enumerate().skip(1) {
                let lv = o.innermost();
                let el = plan.element(oi, &coord);
                let v = if lv == o.home() {
                    backing.touch(o.tensor.0, lv);
                    backing.data[o.tensor.0].data[el]
                } else {
                    tiles[&(oi, lv, pick(&idx, &inst_loops[lv]))].values[&el]
                };
                counts.access[oi][lv].reads += 1;
                operands.push(v);
            }
            let masked = e.mask.is_some_and(|m| {
                let at = |ix: Index| match ix {
                    Index::Var(r) | Index::Next(r) => coord[r.0],
                    Index::Joined { outer, inner, tile } => coord[outer.0] * tile + coord[inner.0],
                    Index::Last(_) | Index::Gather { .. } | Index::Slot(_) => unreachable!("masks index plain ranks"),
                };
                at(m.key) > at(m.query) + m.offset
            });
            let value = if masked {
                f64::NEG_INFINITY
            } else {
                let a = operands[0];
                let b = operands.get(1).copied().unwrap_or(a);
                apply(e.map, a, b)
            };
            let lv = out_op.innermost();
            let el = plan.element(0, &coord);
            counts.access[0][lv].updates += 1;
            if lv == out_op.home() {
                backing.touch(out_op.tensor.0, lv);
                // A read-modify-write unless the element is written for the first time.
                counts.access[0][lv].reads += u64::from(backing.written[out_op.tensor.0][el]);
                if reduce == ReduceOp::Top {
                    offer(c, e, backing, el, vec![(value, coord[e.reduced_ranks()[0].0])]);
                } else {
                    write_backing(backing, out_op.tensor.0, el, reduce, value);
                }
            } else {
                let t = tiles.get_mut(&(0, lv, pick(&idx, &inst_loops[lv]))).expect("created above");
                if reduce == ReduceOp::Top {
                    t.picks.entry(el).or_default().push((value, coord[e.reduced_ranks()[0].0]));
                }
                let old = t.values.get(&el).copied();
                counts.access[0][lv].reads += u64::from(old.is_some());
                t.values.insert(el, combine(reduce, old, value));
            }
        }
        if !odometer(&mut own, &own_bounds) {
            break;
        }
    }
    // The step is over: every output tile drains, innermost first, unless the output accumulates
    // over the group's innermost loops (it drains when its step changes, or after the node).
    if nest.operands[0].barrier == nest.n_prefix {
        drain_resident(c, &plan, reduce, &sibling_key, tiles, served, backing, counts);
    }
}

/// Drains every resident output tile of one Einsum, innermost first.
#[allow(clippy::too_many_arguments)]
fn drain_resident(
    c: &Cascade,
    plan: &Plan<'_>,
    reduce: ReduceOp,
    sibling_key: &SiblingKey<'_>,
    tiles: &mut HashMap<(usize, usize, Vec<u64>), Tile>,
    served: &mut HashSet<(usize, usize, Vec<u64>, Vec<u64>)>,
    backing: &mut Backing,
    counts: &mut ExecCounts,
) {
    let mut resident: Vec<(usize, Vec<u64>)> = tiles.keys().filter(|k| k.0 == 0).map(|k| (k.1, k.2.clone())).collect();
    resident.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (lv, inst) in resident {
        if tiles.contains_key(&(0, lv, inst.clone())) {
            Drain { plan, c, reduce, sibling_key, tiles, served, backing, counts }.under(lv, &inst);
        }
    }
}

/// Offers candidates (score, index along the reduced rank) to a select's record at its home
/// (`first` is the record's first slot).
fn offer(c: &Cascade, e: &strata_workloads::Einsum, backing: &mut Backing, first: usize, picks: Vec<(f64, u64)>) {
    let t = e.output.tensor.0;
    backing.written[t][first] = true;
    let slot = e.slot().expect("a select has a slot");
    let shape = &c.tensor(e.output.tensor).shape;
    let p = e.output.indices.iter().position(|ix| *ix == Index::Slot(slot)).expect("the slot is indexed");
    backing
        .records
        .entry((t, first))
        .or_insert_with(|| Record {
            k: c.rank(slot).size as usize,
            slot_stride: shape[p + 1..].iter().product::<u64>() as usize,
            candidates: Vec::new(),
        })
        .candidates
        .extend(picks);
}

/// First-writes set; later writes combine with the reduction (a map-only Einsum writes each element once).
fn write_backing(backing: &mut Backing, t: usize, el: usize, reduce: ReduceOp, v: f64) {
    let old = if backing.written[t][el] { Some(backing.data[t].data[el]) } else { None };
    backing.data[t].data[el] = combine(reduce, old, v);
    backing.written[t][el] = true;
}

/// What draining output tiles reads and updates: the Einsum's plan and reduction, the resident
/// tiles, the served-instance set, the backing store and the counts.
struct Drain<'r, 'p> {
    plan: &'r Plan<'p>,
    c: &'r Cascade,
    reduce: ReduceOp,
    sibling_key: &'r SiblingKey<'r>,
    tiles: &'r mut HashMap<(usize, usize, Vec<u64>), Tile>,
    served: &'r mut HashSet<(usize, usize, Vec<u64>, Vec<u64>)>,
    backing: &'r mut Backing,
    counts: &'r mut ExecCounts,
}

impl Drain<'_, '_> {
    /// Drains the output tile at (`lv`, `inst`) into its parent, after every deeper tile under it.
    fn under(&mut self, lv: usize, inst: &[u64]) {
        let mut deeper: Vec<(usize, Vec<u64>)> = self
            .tiles
            .keys()
            .filter(|k| k.0 == 0 && k.1 > lv && k.2.starts_with(inst))
            .map(|k| (k.1, k.2.clone()))
            .collect();
        deeper.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (dl, di) in deeper {
            if self.tiles.contains_key(&(0, dl, di.clone())) {
                self.one(dl, &di);
            }
        }
        self.one(lv, inst);
    }

    fn one(&mut self, lv: usize, inst: &[u64]) {
        let Drain { plan, c, reduce, sibling_key, tiles, served, backing, counts } = self;
        let (plan, reduce) = (*plan, *reduce);
        let mut tile = tiles.remove(&(0, lv, inst.to_vec())).expect("resident");
        let e = &c.einsums()[plan.nest.einsum];
        let o = &plan.nest.operands[0];
        let parent = o.parent_of(lv).expect("below the home");
        let cnt = tile.values.len() as u64;
        counts.access[0][lv].reads += cnt;
        counts.peak_tile[0][lv] = counts.peak_tile[0][lv].max(cnt);
        // Siblings reduced in the network update the parent once: the first to drain is counted.
        let counted = served.insert((0, lv, tile.key.clone(), sibling_key(0, parent, lv, &tile.inst)));
        if counted {
            counts.access[0][parent].updates += cnt;
        }
        let mut elements: Vec<(&usize, &f64)> = tile.values.iter().collect();
        elements.sort_by_key(|x| *x.0);
        // A counted update reads the partial sum the parent holds (read-modify-write), unless
        // it is the element's first write there.
        if parent == o.home() {
            backing.touch(o.tensor.0, parent);
            for (&el, &v) in elements {
                counts.access[0][parent].reads += u64::from(counted && backing.written[o.tensor.0][el]);
                match tile.picks.remove(&el) {
                    Some(picks) => offer(c, e, backing, el, picks),
                    None => write_backing(backing, o.tensor.0, el, reduce, v),
                }
            }
        } else {
            let pinst: Vec<u64> = tile.inst[..plan.instance_loops(parent).len()].to_vec();
            let p = tiles.get_mut(&(0, parent, pinst)).expect("the parent tile is resident while its children drain");
            for (&el, &v) in elements {
                let old = p.values.get(&el).copied();
                counts.access[0][parent].reads += u64::from(counted && old.is_some());
                p.values.insert(el, combine(reduce, old, v));
                if let Some(picks) = tile.picks.remove(&el) {
                    p.picks.entry(el).or_default().extend(picks);
                }
            }
        }
    }
}
