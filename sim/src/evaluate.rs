//! The analytical model: access counts turned into cycles, energy, utilisation and violations.
//!
//! Time. Each Einsum occupies its array for its temporal steps × the cycles of the point's ops
//! on one PE, and each level for its bytes in and out over the level's aggregate bandwidth.
//! Memories work in the background of the arrays (double buffering), so a node lasts the larger
//! of its array time and its busiest memory, as the FuseMax artifact computes latency. A
//! `sequential` group finishes each step before the next starts; within a step its members run
//! on their arrays in order, overlapping across arrays unless one reads another's output, and
//! the first result an array hands to another array in a step waits for the handing array's
//! fill/drain latency (FuseMax's "+Architecture" stall). An `interleaved` group overlaps
//! consecutive steps across arrays, so the busiest array sets the pace (TeAAL's rule).
//! Top-level nodes run one after another.
//!
//! Energy. Per element: reads cost the level's read energy, fills and updates its write
//! energy (per word, scaled by element size); each point costs its ops' energy; bytes that
//! cross a link cost its energy per bit. Leakage is not modelled.

use std::collections::BTreeMap;

use strata_arch::{Arch, LevelId, UnitId};
use strata_mappings::{CascadeMapping, EinsumNest, Node, Pipelining};
use strata_workloads::Cascade;
use strata_workloads::einsum::packed_bytes;

use crate::counts::{Access, NestCounts, count};

/// A tile set that does not fit a level: data, not an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The Einsum, or the fused group whose members' tiles share the level.
    pub scope: String,
    pub level: String,
    /// Bytes one instance must hold.
    pub needed: u64,
    pub capacity: u64,
}

/// Accesses of one tensor at one level, summed over the Einsums that touch it there.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub level: String,
    pub tensor: String,
    pub access: Access,
    /// Bits per element of the tensor (see [`strata_workloads::einsum::packed_bytes`]).
    pub elem_bits: u64,
}

impl Traffic {
    pub fn read_bytes(&self) -> u64 {
        packed_bytes(self.access.reads, self.elem_bits)
    }
    pub fn write_bytes(&self) -> u64 {
        packed_bytes(self.access.fills + self.access.updates, self.elem_bits)
    }
}

/// One Einsum's share of the evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EinsumEval {
    pub name: String,
    pub unit: String,
    pub counts: NestCounts,
    pub compute_cycles: f64,
    /// (level name, cycles its bandwidth needs).
    pub level_cycles: Vec<(String, f64)>,
    pub cycles: f64,
    /// Share of the unit's PEs busy while this Einsum computes.
    pub utilization: f64,
    pub energy_pj: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub einsums: Vec<EinsumEval>,
    pub traffic: Vec<Traffic>,
    pub cycles: f64,
    pub seconds: f64,
    /// (component, action, picojoules), in a stable order.
    pub energy: Vec<(String, String, f64)>,
    pub energy_pj: f64,
    /// (unit, busy share of its PEs over the whole run).
    pub utilization: Vec<(String, f64)>,
    /// (unit, operation, count).
    pub compute_actions: Vec<(String, String, u64)>,
    /// Bytes moved in and out of the outermost level(s).
    pub offchip_bytes: u64,
    /// Peak bytes of activations held at once in the outermost level (see
    /// [`peak_activation_bytes`]).
    pub peak_activation_bytes: u64,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Resource {
    Unit(UnitId),
    Level(LevelId),
}

/// Time of a schedule node: how long its arrays are occupied in sequence (`critical`) and how
/// long it keeps each resource busy. Memories work in the background, so the node lasts
/// max(critical, busiest memory).
struct Span {
    critical: f64,
    busy: BTreeMap<Resource, f64>,
}

impl Span {
    fn total(&self) -> f64 {
        self.busy.iter().filter(|(r, _)| matches!(r, Resource::Level(_))).map(|(_, v)| *v).fold(self.critical, f64::max)
    }
}

/// The energy (pJ) of operand `oi`'s bytes crossing each link between level `lv` and the level
/// that serves it, given its accesses there: fills come down, an output's reads go back up.
/// [`evaluate`] and [`crate::quick`] both charge links through this one function.
pub fn link_energy<'a>(
    arch: &'a Arch,
    nest: &'a EinsumNest,
    oi: usize,
    lv: usize,
    a: Access,
) -> impl Iterator<Item = (usize, f64)> + 'a {
    let o = &nest.operands[oi];
    let crossed = o.bytes(if o.is_output { a.reads } else { a.fills });
    let from = o.parent_of(lv).map_or(lv + 1, |p| p + 1);
    (from..=lv).filter_map(move |j| {
        arch.level(nest.path[j]).link.map(|link| (link, crossed as f64 * 8.0 * arch.links[link].energy_per_bit.0))
    })
}

/// Evaluates a validated mapping of `c` on `arch`.
pub fn evaluate(arch: &Arch, c: &Cascade, mapping: &CascadeMapping) -> Evaluation {
    let word = arch.word_bytes as f64;
    let mut einsums = Vec::new();
    let mut traffic: BTreeMap<(usize, String), Traffic> = BTreeMap::new();
    let mut energy: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut actions: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut busy_pe_cycles: BTreeMap<UnitId, f64> = BTreeMap::new();
    // Per Einsum: (level, tensor, lives there) → bytes of the largest tile one instance holds.
    let mut tiles: Vec<BTreeMap<(LevelId, usize, bool), u64>> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    let mut offchip_bytes = 0u64;
    for nest in &mapping.nests {
        let e = &c.einsums()[nest.einsum];
        let unit = arch.unit(nest.unit);
        let k = count(c, nest);
        let point_cycles: f64 = nest.ops.iter().map(|op| unit.ops[*op].cycles).sum();
        let compute_cycles = k.temporal_steps as f64 * point_cycles;
        let mut e_energy = 0.0;
        for op in &nest.ops {
            let pj = k.points as f64 * unit.ops[*op].energy.0;
            *energy.entry((unit.name.clone(), (*op).to_string())).or_default() += pj;
            *actions.entry((unit.name.clone(), (*op).to_string())).or_default() += k.points;
            e_energy += pj;
        }
        *busy_pe_cycles.entry(nest.unit).or_default() += k.points as f64 * point_cycles;
        let mut level_cycles = Vec::new();
        let mut tile: BTreeMap<(LevelId, usize, bool), u64> = BTreeMap::new();
        let mut span =
            Span { critical: compute_cycles, busy: BTreeMap::from([(Resource::Unit(nest.unit), compute_cycles)]) };
        for (lv, &level_id) in nest.path.iter().enumerate() {
            let level = arch.level(level_id);
            let (mut rd, mut wr) = (0u64, 0u64);
            for (oi, o) in nest.operands.iter().enumerate() {
                let a = k.access[oi][lv];
                if a == Access::default() && !o.keep[lv] {
                    continue;
                }
                let t = c.tensor(o.tensor);
                rd += o.bytes(a.reads);
                wr += o.bytes(a.fills + a.updates);
                // Tiles of tensors that live here persist for the node; others stream through.
                let lives = o.home() == lv || o.shared.is_some_and(|sh| sh.level == lv);
                let held = tile.entry((level_id, o.tensor.0, lives)).or_default();
                *held = (*held).max(o.bytes(k.tile[oi][lv]));
                let words = o.elem_bits as f64 / 8.0 / word;
                let read_pj = a.reads as f64 * words * level.read_energy.0;
                let write_pj = (a.fills + a.updates) as f64 * words * level.write_energy.0;
                *energy.entry((level.name.clone(), "read".into())).or_default() += read_pj;
                *energy.entry((level.name.clone(), "write".into())).or_default() += write_pj;
                e_energy += read_pj + write_pj;
                traffic
                    .entry((level_id.0, t.name.clone()))
                    .or_insert(Traffic {
                        level: level.name.clone(),
                        tensor: t.name.clone(),
                        access: Access::default(),
                        elem_bits: o.elem_bits,
                    })
                    .access
                    .add(a);
                for (link, pj) in link_energy(arch, nest, oi, lv, a) {
                    *energy.entry((arch.links[link].name.clone(), "transfer".into())).or_default() += pj;
                    e_energy += pj;
                }
            }
            if lv == 0 {
                offchip_bytes += rd + wr;
            }
            let inst = level.instances() as f64;
            let t_read = level.read_bandwidth.map_or(0.0, |bw| rd as f64 / (bw * inst));
            let t_write = level.write_bandwidth.map_or(0.0, |bw| wr as f64 / (bw * inst));
            let cycles = t_read + t_write;
            level_cycles.push((level.name.clone(), cycles));
            *span.busy.entry(Resource::Level(level_id)).or_default() += cycles;
        }
        let utilization = k.points as f64 / (unit.pes() as f64 * k.temporal_steps.max(1) as f64);
        einsums.push(EinsumEval {
            name: e.name.clone(),
            unit: unit.name.clone(),
            compute_cycles,
            level_cycles,
            cycles: span.total(),
            utilization,
            energy_pj: e_energy,
            counts: k,
        });
        spans.push(span);
        tiles.push(tile);
    }
    let violations = capacity_violations(arch, c, mapping, &tiles);
    let cycles: f64 = mapping.schedule.iter().map(|n| node_span(arch, c, mapping, n, &spans, 1.0).total()).sum();
    let energy: Vec<(String, String, f64)> = energy.into_iter().map(|((a, b), v)| (a, b, v)).collect();
    let energy_pj = energy.iter().map(|x| x.2).sum();
    let utilization = arch
        .units
        .iter()
        .enumerate()
        .map(|(u, unit)| {
            let busy = busy_pe_cycles.get(&UnitId(u)).copied().unwrap_or(0.0);
            (unit.name.clone(), if cycles > 0.0 { busy / (unit.pes() as f64 * cycles) } else { 0.0 })
        })
        .collect();
    Evaluation {
        einsums,
        traffic: traffic.into_values().collect(),
        cycles,
        seconds: cycles / arch.clock.0,
        energy,
        energy_pj,
        utilization,
        compute_actions: actions.into_iter().map(|((u, o), n)| (u, o, n)).collect(),
        offchip_bytes,
        peak_activation_bytes: peak_activation_bytes(c, mapping),
        violations,
    }
}

/// Peak bytes of activations (neither weights nor the KV cache) held at once in the outermost
/// level of the machine, from the mapping's liveness: the schedule's top-level nodes run one
/// after another; a tensor whose home is the outermost level lives there from the node that
/// produces it (an input: from the start) to the last node that reads it (a result: to the
/// end); a fused group's intermediate kept on chip is never materialised. The instrumented
/// executor measures the same from its writes and reads (`tests/exact_counts.rs`).
pub fn peak_activation_bytes(c: &Cascade, mapping: &CascadeMapping) -> u64 {
    let mut step = vec![0usize; c.einsums().len()];
    for (i, node) in mapping.schedule.iter().enumerate() {
        for e in node.einsums() {
            step[e] = i;
        }
    }
    let materialised =
        |t: strata_workloads::einsum::TensorId| c.producer(t).is_none_or(|p| mapping.nests[p].operands[0].home() == 0);
    c.peak_live_bytes(&step, &materialised)
}

/// What one top-level node needs at a level. Tiles of tensors that live there (a fused
/// group's intermediates) occupy it from their producer to their last consumer in execution
/// order; running tensors (recurrences) and tensors read before they are produced in a step
/// stay for the whole node. An element-wise Einsum that is the last reader of a same-level
/// tensor writes its output in that tensor's place (FLAT's in-place softmax), so the two share
/// one slot. Tiles that only stream through are reused from one member to the next, so the
/// largest member's set counts. The outermost level of a path holds whole tensors and is not
/// checked.
fn capacity_violations(
    arch: &Arch,
    c: &Cascade,
    mapping: &CascadeMapping,
    tiles: &[BTreeMap<(LevelId, usize, bool), u64>],
) -> Vec<Violation> {
    let mut out = Vec::new();
    for node in &mapping.schedule {
        let order = node.einsums();
        let pos = |e: usize| order.iter().position(|&x| x == e);
        // Resident tiles per (level, tensor), and streaming sets per level.
        let mut resident: BTreeMap<(LevelId, usize), u64> = BTreeMap::new();
        let mut streaming: BTreeMap<LevelId, u64> = BTreeMap::new();
        for &e in &order {
            let mut mine: BTreeMap<LevelId, u64> = BTreeMap::new();
            for (&(level, tensor, lives), &bytes) in &tiles[e] {
                if lives {
                    let x = resident.entry((level, tensor)).or_default();
                    *x = (*x).max(bytes);
                } else {
                    *mine.entry(level).or_default() += bytes;
                }
            }
            for (level, bytes) in mine {
                let x = streaming.entry(level).or_default();
                *x = (*x).max(bytes);
            }
        }
        // Live interval of each resident tensor in execution positions.
        let last = order.len().saturating_sub(1);
        let interval = |t: usize| -> (usize, usize) {
            let tensor = strata_workloads::einsum::TensorId(t);
            let born = c.producer(tensor).and_then(pos).unwrap_or(0);
            let readers: Vec<usize> = order
                .iter()
                .filter(|&&e| c.einsums()[e].inputs.iter().any(|a| a.tensor == tensor))
                .filter_map(|&e| pos(e))
                .collect();
            let whole = c.tensor(tensor).iterative_position.is_some() || readers.iter().any(|&r| r <= born);
            if whole { (0, last) } else { (born, readers.iter().copied().max().unwrap_or(born)) }
        };
        // In place: (level, dying input, output) for element-wise last readers.
        let mut in_place: Vec<(LevelId, usize, usize)> = Vec::new();
        for &e in &order {
            let einsum = &c.einsums()[e];
            if !einsum.reduced_ranks().is_empty() {
                continue;
            }
            let out_t = einsum.output.tensor;
            for a in &einsum.inputs {
                let (_, dies) = interval(a.tensor.0);
                if dies == pos(e).unwrap_or(usize::MAX)
                    && c.tensor(a.tensor).shape == c.tensor(out_t).shape
                    && a.tensor != out_t
                {
                    for (&(level, t), _) in resident.iter().filter(|((_, t), _)| *t == a.tensor.0) {
                        if resident.contains_key(&(level, out_t.0)) && t == a.tensor.0 {
                            in_place.push((level, a.tensor.0, out_t.0));
                        }
                    }
                }
            }
        }
        let mut per_level: BTreeMap<LevelId, u64> = streaming;
        let levels: std::collections::BTreeSet<LevelId> = resident.keys().map(|k| k.0).collect();
        for level in levels {
            let mut peak = 0u64;
            for k in 0..=last {
                let mut live: u64 = resident
                    .iter()
                    .filter(|((l, t), _)| {
                        *l == level && {
                            let (b, d) = interval(*t);
                            b <= k && k <= d
                        }
                    })
                    .map(|(_, v)| *v)
                    .sum();
                for &(l, dying, born) in &in_place {
                    if l == level && interval(dying).1 == k && interval(born).0 == k {
                        live -= resident[&(l, dying)].min(resident[&(l, born)]);
                    }
                }
                peak = peak.max(live);
            }
            *per_level.entry(level).or_default() += peak;
        }
        for (level, needed) in per_level {
            let l = arch.level(level);
            if let Some(cap) = l.capacity
                && l.parent.is_some()
                && needed > cap.0
            {
                let scope = match node {
                    Node::Einsum(e) => c.einsums()[*e].name.clone(),
                    Node::Group(g) => g.name.clone(),
                };
                out.push(Violation { scope, level: l.name.clone(), needed, capacity: cap.0 });
            }
        }
    }
    out
}

/// One step of a sequential group: members list-scheduled on their arrays in order, after the
/// members whose outputs they read (plus the producer array's fill/drain latency, paid once per
/// array and step).
fn sequential_step(arch: &Arch, c: &Cascade, m: &CascadeMapping, nodes: &[Node], spans: &[Span], steps: f64) -> f64 {
    let units = |n: &Node| -> Vec<UnitId> {
        let mut u: Vec<UnitId> = n.einsums().iter().map(|&e| m.nests[e].unit).collect();
        u.sort();
        u.dedup();
        u
    };
    let reads = |n: &Node| -> Vec<_> {
        n.einsums().iter().flat_map(|&e| c.einsums()[e].inputs.iter().map(|a| a.tensor)).collect()
    };
    let mut free: BTreeMap<UnitId, f64> = BTreeMap::new();
    let mut drained: Vec<UnitId> = Vec::new();
    let mut ends: Vec<f64> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let (mine, inputs) = (units(n), reads(n));
        let mut start = mine.iter().map(|u| free.get(u).copied().unwrap_or(0.0)).fold(0.0, f64::max);
        for (j, p) in nodes[..i].iter().enumerate() {
            // The arrays of the producer's Einsums whose outputs this member reads.
            for from in p
                .einsums()
                .into_iter()
                .filter(|&e| inputs.contains(&c.einsums()[e].output.tensor))
                .map(|e| m.nests[e].unit)
            {
                let mut ready = ends[j];
                if !mine.contains(&from) && !drained.contains(&from) {
                    ready += arch.unit(from).pipeline_latency as f64;
                    drained.push(from);
                }
                start = start.max(ready);
            }
        }
        let end = start + spans[i].critical / steps;
        for u in mine {
            free.insert(u, end);
        }
        ends.push(end);
    }
    ends.into_iter().fold(0.0, f64::max)
}

/// Combines member spans by the group's pipelining rule. `repeats` is how often this node's
/// member sequence runs (the product of the enclosing groups' loop bounds).
fn node_span(arch: &Arch, c: &Cascade, m: &CascadeMapping, node: &Node, spans: &[Span], repeats: f64) -> Span {
    match node {
        Node::Einsum(e) => Span { critical: spans[*e].critical, busy: spans[*e].busy.clone() },
        Node::Group(g) => {
            let steps: f64 = g.prefix.iter().map(|p| p.1 as f64).product::<f64>() * repeats;
            let members: Vec<Span> = g.members.iter().map(|n| node_span(arch, c, m, n, spans, steps)).collect();
            let mut busy: BTreeMap<Resource, f64> = BTreeMap::new();
            for s in &members {
                for (r, v) in &s.busy {
                    *busy.entry(*r).or_default() += v;
                }
            }
            let critical = match g.pipelining {
                // Consecutive steps overlap across arrays: the busiest array sets the pace.
                Pipelining::Interleaved => {
                    busy.iter().filter(|(r, _)| matches!(r, Resource::Unit(_))).map(|(_, v)| *v).fold(0.0, f64::max)
                }
                // One step at a time: a step's tiles are produced and consumed before the next
                // step starts. Within a step, members on different arrays overlap unless one
                // reads the other's output, and the first result an array hands to another array
                // in a step waits for the handing array's fill/drain latency.
                Pipelining::Sequential => steps * sequential_step(arch, c, m, &g.members, &members, steps),
            };
            Span { critical, busy }
        }
    }
}
