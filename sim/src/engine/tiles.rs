//! Lowering a mapping to a tile-level task graph and running it on the engine's event queue.
//!
//! The analytical model assumes every memory works in the background of the arrays at its full
//! bandwidth, perfectly spread over the run. The task graph makes the order visible: an
//! Einsum's *steps* are the temporal loops at the outermost level (off-chip memory); at each
//! step the operands whose tile changes are loaded from it, the step's work runs on the unit
//! (the inner levels serve the PEs in its background, so a step lasts the larger of its compute
//! and its inner levels' share), and the output tile drains back when it changes. Which operand
//! reloads at which step follows the counts' rule (a tile reloads when a loop above it, down to
//! the innermost one it depends on, advances); the bytes per load are the off-chip level's
//! counted reads (one per multicast) over the reloads, and a drain's its counted updates, so the
//! totals equal the analytical counts. Fused groups step through
//! their shared loops: each member's traffic and work are split evenly over the group's steps,
//! and a member waits for the previous one in the same step when it shares its unit or reads
//! its output.
//!
//! An Einsum with more steps than `Options::max_steps` runs in coarser steps of several
//! consecutive ones (their loads and drains merged), so any mapping fits the event budget.
//!
//! Buffers: with double buffering the load of step i+1 overlaps the work of step i (a step's
//! load may start once the work two steps back has freed its buffer) and a drain overlaps the
//! next step's work; with single buffering each load waits for the previous step's work.
//! `Auto` double-buffers when twice the on-chip tiles fit the level.
//!
//! Timing: `Ideal` moves bytes at the level's bandwidth with no latency and runs each step at
//! the unit's throughput, so a run with enough steps and no bursts matches the analytical model.
//! `Real` adds the level's (and its links') latency to every transfer, uses the bandwidth the
//! DRAM channel model sustains on a sequential stream for a level with a DRAM organisation, and
//! adds the unit's pipeline fill/drain latency to every step. Either way a transfer occupies the
//! memory port and every link it crosses.

use std::collections::BTreeMap;

use strata_arch::{Arch, LevelId};
use strata_mappings::{CascadeMapping, EinsumNest, Node};
use strata_workloads::Cascade;
use strata_workloads::einsum::TensorId;

use super::{EngineError, Queue, Time, device};
use crate::evaluate::{Evaluation, evaluate};

/// How memories time a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Ideal,
    Real,
}

/// Whether on-chip tiles are double-buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffering {
    Auto,
    Single,
    Double,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub memory: Memory,
    pub buffering: Buffering,
    /// Most tasks and events a run may take.
    pub budget: u64,
    /// Most steps one Einsum runs in (0: no limit); longer sequences are coarsened into steps of
    /// several consecutive ones, their loads and drains merged (totals exact, overlap coarser).
    pub max_steps: u64,
}

/// What a task is, compactly: its kind, Einsum, tensor (loads and drains) and step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub kind: Kind,
    pub einsum: usize,
    pub tensor: Option<TensorId>,
    pub step: u32,
}

impl Label {
    /// A name for people: `QK step 3`, `load K (QK step 3)`.
    pub fn name(&self, c: &Cascade) -> String {
        let e = &c.einsums()[self.einsum].name;
        let step = self.step;
        match (self.kind, self.tensor) {
            (Kind::Load, Some(t)) => format!("load {} ({e} step {step})", c.tensor(t).name),
            (Kind::Drain, Some(t)) => format!("drain {} ({e} step {step})", c.tensor(t).name),
            _ => format!("{e} step {step}"),
        }
    }
}

/// A slice of a track's time: one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub track: usize,
    pub label: Label,
    pub start: Time,
    pub end: Time,
    /// Bytes a load or drain moves (0 for work).
    pub bytes: u64,
}

/// Where a compute unit's time went.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitStalls {
    pub busy: f64,
    /// Seconds it waited for a tile to arrive.
    pub waiting_for_loads: f64,
    /// Seconds it waited for a buffer to drain, or for another member of its group.
    pub waiting_for_buffers: f64,
    /// Seconds it had nothing to do (before its first task, between nodes, after its last).
    pub idle: f64,
}

/// Where a memory port's or link's time went.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PortStalls {
    pub busy: f64,
    /// Seconds transfers spent queued behind others.
    pub queued: f64,
    pub bytes: u64,
}

/// What the engine's run of a mapping produced: the analytical report with the engine's time,
/// the stall breakdown, and the tasks as slices for a timeline.
#[derive(Debug, Clone)]
pub struct Run {
    pub evaluation: Evaluation,
    /// The analytical model's cycles, for comparison.
    pub analytical_cycles: f64,
    /// (track name, what it is: "unit", "memory" or "link").
    pub tracks: Vec<(String, &'static str)>,
    pub units: Vec<(String, UnitStalls)>,
    pub ports: Vec<(String, PortStalls)>,
    pub slices: Vec<Slice>,
    pub events: u64,
    pub double_buffered: bool,
}

/// A task's kind: a tile loaded from off-chip memory, a step's work on a unit, a tile drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Load,
    Work,
    Drain,
}

struct Task {
    kind: Kind,
    tracks: Vec<usize>,
    duration: Time,
    bytes: u64,
    deps: u32,
    succ: Vec<usize>,
    /// `None` for the joins that end a node.
    label: Option<Label>,
    /// The kind of the dependency that finished last (what a late start waited for).
    last_dep: Option<Kind>,
}

struct Graph {
    tasks: Vec<Task>,
    budget: u64,
}

impl Graph {
    fn add(
        &mut self,
        kind: Kind,
        tracks: Vec<usize>,
        duration: Time,
        bytes: u64,
        label: Option<Label>,
    ) -> Result<usize, EngineError> {
        if self.tasks.len() as u64 >= self.budget {
            return Err(EngineError::Budget { events: self.budget });
        }
        self.tasks.push(Task { kind, tracks, duration, bytes, deps: 0, succ: Vec::new(), label, last_dep: None });
        Ok(self.tasks.len() - 1)
    }

    /// `after` waits for `before`. An edge given twice counts twice on both ends, which the
    /// countdown handles, so no search for duplicates is needed.
    fn dep(&mut self, before: Option<usize>, after: usize) {
        if let Some(b) = before
            && b != after
        {
            self.tasks[b].succ.push(after);
            self.tasks[after].deps += 1;
        }
    }
}

/// Resources and their transfer timing.
struct Machine<'a> {
    arch: &'a Arch,
    memory: Memory,
    tracks: Vec<(String, &'static str)>,
    index: BTreeMap<String, usize>,
    /// Bytes per second a level sustains, per level (real timing).
    sustained: BTreeMap<LevelId, f64>,
    /// Track of each memory channel, per level, and of each link.
    level_tracks: BTreeMap<LevelId, Vec<usize>>,
    link_tracks: BTreeMap<usize, usize>,
}

impl Machine<'_> {
    fn track(&mut self, name: &str, what: &'static str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.tracks.push((name.to_string(), what));
        self.index.insert(name.to_string(), self.tracks.len() - 1);
        self.tracks.len() - 1
    }

    /// The parts of a transfer of `bytes` between `outer` and `inner` (path indices of `nest`):
    /// one per channel of a level with a `[dram]` organisation, else one; each with the tracks it
    /// occupies (its memory channel and every link crossed), its duration and its bytes.
    fn transfer(&mut self, nest: &EinsumNest, outer: usize, inner: usize, bytes: u64) -> Vec<(Vec<usize>, Time, u64)> {
        let arch = self.arch;
        let level = arch.level(nest.path[outer]);
        let channels = level.dram.as_ref().map_or(1, |d| d.channels);
        let port_bw = level.read_bandwidth.map(|b| b * arch.clock.0 * level.instances() as f64 / channels as f64);
        let sustained = self.sustained.get(&nest.path[outer]).map(|bw| bw / channels as f64);
        let mut links = Vec::new();
        let mut latency = if self.memory == Memory::Real { level.latency.map_or(0.0, |l| l.0) } else { 0.0 };
        for j in outer + 1..=inner {
            if let Some(k) = arch.level(nest.path[j]).link {
                let l = &arch.links[k];
                let t = match self.link_tracks.get(&k) {
                    Some(&t) => t,
                    None => {
                        let t = self.track(&l.name, "link");
                        self.link_tracks.insert(k, t);
                        t
                    }
                };
                links.push((t, l.bandwidth.0 * l.count as f64));
                if self.memory == Memory::Real {
                    latency += l.latency.map_or(0.0, |x| x.0);
                }
            }
        }
        if !self.level_tracks.contains_key(&nest.path[outer]) {
            let names: Vec<String> = (0..channels)
                .map(|ch| if channels > 1 { format!("{} ch{ch}", level.name) } else { level.name.clone() })
                .collect();
            let ids = names.iter().map(|n| self.track(n, "memory")).collect();
            self.level_tracks.insert(nest.path[outer], ids);
        }
        let ids = self.level_tracks[&nest.path[outer]].clone();
        (0..channels)
            .map(|ch| {
                // Bytes interleave over the channels; the first ones take the remainder.
                let part = bytes / channels + u64::from(ch < bytes % channels);
                let mut tracks = vec![ids[ch as usize]];
                let mut seconds = port_bw.map_or(0.0, |bw| part as f64 / bw);
                if self.memory == Memory::Real
                    && let Some(bw) = sustained
                {
                    seconds = seconds.max(part as f64 / bw);
                }
                for &(t, bw) in &links {
                    tracks.push(t);
                    // The channels share the link.
                    seconds = seconds.max(bytes as f64 / bw / channels as f64);
                }
                (tracks, Time::from_seconds(seconds + latency), part)
            })
            .filter(|p| p.2 > 0)
            .collect()
    }
}

/// Bytes per second each level with a `[dram]` organisation sustains: through the device
/// interface, its bandwidth times the share of its peak one of its channels reaches on a long
/// sequential stream of single bursts, 32 outstanding.
fn sustained(arch: &Arch) -> Result<BTreeMap<LevelId, f64>, EngineError> {
    let mut out = BTreeMap::new();
    for (i, l) in arch.levels.iter().enumerate() {
        let (Some(org), Some(bw)) = (&l.dram, l.read_bandwidth) else { continue };
        let peak = bw * arch.clock.0 * l.instances() as f64;
        let stream = device::Channels::stream(org)?;
        out.insert(LevelId(i), device::rate(&device::Channels { org: org.clone(), peak }, &stream, 1 << 24)?);
    }
    Ok(out)
}

/// The first level below `home` that keeps operand `o`, if any.
fn first_kept_below(nest: &EinsumNest, o: usize, home: usize) -> Option<usize> {
    (home + 1..nest.path.len()).find(|&l| nest.operands[o].keep[l])
}

/// Lowers `mapping` and runs it.
pub fn run(arch: &Arch, c: &Cascade, mapping: &CascadeMapping, opts: Options) -> Result<Run, EngineError> {
    let ev = evaluate(arch, c, mapping);
    let sustained = if opts.memory == Memory::Real { sustained(arch)? } else { BTreeMap::new() };
    let mut m = Machine {
        arch,
        memory: opts.memory,
        tracks: Vec::new(),
        index: BTreeMap::new(),
        sustained,
        level_tracks: BTreeMap::new(),
        link_tracks: BTreeMap::new(),
    };
    for u in &arch.units {
        m.track(&u.name, "unit");
    }
    let double = match opts.buffering {
        Buffering::Double => true,
        Buffering::Single => false,
        Buffering::Auto => fits_twice(arch, mapping, &ev),
    };
    let mut g = Graph { tasks: Vec::new(), budget: opts.budget };
    // The last task of the previous top-level node: nodes run one after another.
    let mut fence: Option<usize> = None;
    for node in &mapping.schedule {
        let (members, steps): (Vec<usize>, u64) = match node {
            Node::Einsum(e) => (vec![*e], 0),
            Node::Group(gr) => (node.einsums(), gr.prefix.iter().map(|p| p.1).product::<u64>().max(1)),
        };
        let mut per_step: Vec<Vec<usize>> = Vec::new();
        for &e in &members {
            let nest = &mapping.nests[e];
            let plan = plan(nest, &ev.einsums[e], steps, opts.max_steps);
            per_step.push(lower(&mut g, &mut m, arch, nest, &plan, double, fence)?);
        }
        // Within a group step, a member waits for the previous member when it shares its unit or
        // reads its output.
        for (k, &e) in members.iter().enumerate().skip(1) {
            let prev = members[k - 1];
            let reads =
                mapping.nests[e].operands.iter().skip(1).any(|o| o.tensor == mapping.nests[prev].operands[0].tensor);
            if reads || mapping.nests[e].unit == mapping.nests[prev].unit {
                for (&a, &b) in per_step[k - 1].iter().zip(&per_step[k]) {
                    g.dep(Some(a), b);
                }
            }
        }
        // A join task marks the node's end: every task of the node without a successor.
        let first = fence.map_or(0, |f| f + 1);
        let join = g.add(Kind::Work, Vec::new(), Time(0), 0, None)?;
        for t in first..join {
            if g.tasks[t].succ.is_empty() {
                g.dep(Some(t), join);
            }
        }
        fence = Some(join);
    }
    simulate(g, m, arch, ev, double, opts.budget)
}

/// Whether two of every Einsum's on-chip tile sets fit their levels (double buffering possible).
fn fits_twice(arch: &Arch, mapping: &CascadeMapping, ev: &Evaluation) -> bool {
    mapping.nests.iter().zip(&ev.einsums).all(|(nest, e)| {
        (1..nest.path.len()).all(|l| {
            let need: u64 = nest
                .operands
                .iter()
                .enumerate()
                .filter(|(_, o)| o.keep[l])
                .map(|(oi, o)| o.bytes(e.counts.tile[oi][l]))
                .sum();
            arch.level(nest.path[l]).capacity.is_none_or(|cap| 2 * need <= cap.0)
        })
    })
}

/// One Einsum's steps: per step the bytes each operand loads and the output drains (0: none),
/// and the work per step. Steps may be coarsened: `group` original steps per step.
struct Plan {
    steps: usize,
    group: u64,
    /// Steps before coarsening.
    original: u64,
    /// (operand, outer level, inner level, bytes loaded before each step).
    loads: Vec<(usize, usize, usize, Vec<u64>)>,
    /// (outer level, inner level, bytes drained after each step).
    drain: Option<(usize, usize, Vec<u64>)>,
    /// Cycles of each step's work.
    work: Vec<f64>,
}

/// `total` bytes spread over the marked steps as evenly as whole bytes allow.
fn spread(total: u64, marks: &[bool]) -> Vec<u64> {
    let n = marks.iter().filter(|&&m| m).count() as u64;
    let mut k = 0u64;
    marks
        .iter()
        .map(|&m| {
            if !m || n == 0 {
                return 0;
            }
            k += 1;
            total / n + u64::from(k <= total % n)
        })
        .collect()
}

/// Sums of `group` consecutive entries.
fn coarsen(v: Vec<u64>, group: u64) -> Vec<u64> {
    if group <= 1 {
        return v;
    }
    v.chunks(group as usize).map(|c| c.iter().sum()).collect()
}

fn plan(nest: &EinsumNest, e: &crate::evaluate::EinsumEval, group_steps: u64, max_steps: u64) -> Plan {
    let k = &e.counts;
    let step_loops: Vec<usize> = if group_steps > 0 {
        Vec::new()
    } else {
        (0..nest.loops.len()).filter(|&i| nest.loops[i].level == 0 && !nest.loops[i].is_spatial()).collect()
    };
    let steps =
        if group_steps > 0 { group_steps } else { step_loops.iter().map(|&i| nest.loops[i].bound).product::<u64>() };
    // The outermost step loop that advances at each step (0 for the first).
    let mut advance = vec![0usize; steps as usize];
    if !step_loops.is_empty() {
        let bounds: Vec<u64> = step_loops.iter().map(|&i| nest.loops[i].bound).collect();
        let mut idx = vec![0u64; bounds.len()];
        for a in advance.iter_mut().skip(1) {
            let mut j = bounds.len() - 1;
            loop {
                idx[j] += 1;
                if idx[j] < bounds[j] {
                    break;
                }
                idx[j] = 0;
                j -= 1;
            }
            *a = j;
        }
    }
    // Does operand o's tile change when step loop j (position in step_loops) advances?
    let changes = |o: usize, j: usize| {
        let inner = step_loops
            .iter()
            .rposition(|&i| nest.operands[o].ranks.contains(&nest.loops[i].rank))
            .map_or(-1i64, |p| p as i64);
        group_steps > 0 || (j as i64) <= inner
    };
    let pattern = |o: usize| -> Vec<bool> { (0..steps as usize).map(|i| i == 0 || changes(o, advance[i])).collect() };
    // Very long step sequences run in coarser steps of `group` consecutive ones.
    let group = if max_steps > 0 { steps.div_ceil(max_steps).max(1) } else { 1 };
    let mut loads = Vec::new();
    let mut drain = None;
    for (oi, o) in nest.operands.iter().enumerate() {
        let home = o.home();
        if home != 0 {
            continue;
        }
        // What the off-chip level serves (one read per multicast, however many instances it
        // fills) or takes (partial tiles reduced in the network on the way, each accumulation
        // reading back the partial sum it adds to).
        let a = k.access[oi][0];
        let total = o.bytes(if o.is_output { a.updates + a.reads } else { a.reads });
        if total == 0 {
            continue;
        }
        let (inner, marks) = match first_kept_below(nest, oi, home) {
            // A tile drains after the last step before its change; an input loads when it changes.
            Some(inner) if o.is_output => {
                let p = pattern(oi);
                (inner, (0..steps as usize).map(|i| i + 1 == steps as usize || p[i + 1]).collect())
            }
            Some(inner) => (inner, pattern(oi)),
            // The PEs read (or update) the operand in off-chip memory directly: its traffic
            // streams evenly through every step.
            None => (nest.path.len() - 1, vec![true; steps as usize]),
        };
        let bytes = coarsen(spread(total, &marks), group);
        if o.is_output {
            drain = Some((home, inner, bytes));
        } else {
            loads.push((oi, home, inner, bytes));
        }
    }
    let inner_levels = e.level_cycles.iter().skip(1).map(|x| x.1).fold(0.0, f64::max);
    let per_step = e.compute_cycles.max(inner_levels) / steps.max(1) as f64;
    let n = steps.div_ceil(group) as usize;
    let work = (0..n as u64).map(|i| per_step * group.min(steps - i * group) as f64).collect();
    Plan { steps: n, group, original: steps, loads, drain, work }
}

/// Adds one Einsum's tasks; returns its work task per step (its drains end the node through
/// the join).
#[allow(clippy::too_many_arguments)]
fn lower(
    g: &mut Graph,
    m: &mut Machine<'_>,
    arch: &Arch,
    nest: &EinsumNest,
    p: &Plan,
    double: bool,
    fence: Option<usize>,
) -> Result<Vec<usize>, EngineError> {
    let label = |kind: Kind, tensor: Option<TensorId>, step: usize| {
        Some(Label { kind, einsum: nest.einsum, tensor, step: step as u32 })
    };
    let unit = m.track(&arch.unit(nest.unit).name, "unit");
    // A unit is a pipeline: its throughput is the step's work; with real timing each step also
    // pays its fill and drain latency (the tile's first result leaves `pipeline_latency` cycles in).
    let fill = if m.memory == Memory::Real { arch.unit(nest.unit).pipeline_latency as f64 } else { 0.0 };
    let mut works: Vec<usize> = Vec::new();
    let mut drains: Vec<Vec<usize>> = Vec::new();
    for i in 0..p.steps {
        let first = i * p.group as usize;
        // Each original step in this one pays the pipeline's fill.
        let here = p.group.min(p.original - first as u64) as f64;
        let work_time = Time::from_seconds((p.work[i] + fill * here) / arch.clock.0);
        let w = g.add(Kind::Work, vec![unit], work_time, 0, label(Kind::Work, None, first))?;
        g.dep(fence, w);
        // The unit works through its steps in order.
        g.dep(works.last().copied(), w);
        // Buffers: a load for step i overwrites the tile of step i−2 (double) or i−1 (single).
        let freed = if double { i.checked_sub(2) } else { i.checked_sub(1) }.map(|j| works[j]);
        for (oi, outer, inner, bytes) in &p.loads {
            if bytes[i] == 0 {
                continue;
            }
            let t = nest.operands[*oi].tensor;
            for (tracks, d, part) in m.transfer(nest, *outer, *inner, bytes[i]) {
                let l = g.add(Kind::Load, tracks, d, part, label(Kind::Load, Some(t), first))?;
                g.dep(fence, l);
                g.dep(freed, l);
                g.dep(Some(l), w);
            }
        }
        // The output buffer of step i is the one drained two (double) or one (single) drains ago.
        let back = if double { 2 } else { 1 };
        let waits: Vec<usize> =
            drains.iter().rev().filter(|d| !d.is_empty()).nth(back - 1).cloned().unwrap_or_default();
        for d in waits {
            g.dep(Some(d), w);
        }
        let mut dr = Vec::new();
        if let Some((outer, inner, bytes)) = &p.drain
            && bytes[i] > 0
        {
            let t = nest.operands[0].tensor;
            for (tracks, d, part) in m.transfer(nest, *outer, *inner, bytes[i]) {
                let x = g.add(Kind::Drain, tracks, d, part, label(Kind::Drain, Some(t), first))?;
                g.dep(Some(w), x);
                dr.push(x);
            }
        }
        drains.push(dr);
        works.push(w);
    }
    Ok(works)
}

enum Event {
    Ready(usize),
    Done(usize),
}

fn simulate(
    mut g: Graph,
    m: Machine<'_>,
    arch: &Arch,
    mut ev: Evaluation,
    double: bool,
    budget: u64,
) -> Result<Run, EngineError> {
    let n_tracks = m.tracks.len();
    let mut free = vec![Time(0); n_tracks];
    let mut q: Queue<Event> = Queue::new(budget);
    for (i, t) in g.tasks.iter().enumerate() {
        if t.deps == 0 {
            q.push(Time(0), Event::Ready(i));
        }
    }
    let mut slices = Vec::new();
    let mut units: Vec<UnitStalls> = vec![UnitStalls::default(); n_tracks];
    let mut ports: Vec<PortStalls> = vec![PortStalls::default(); n_tracks];
    let mut last_end = vec![Time(0); n_tracks];
    let mut started = vec![false; n_tracks];
    let mut end = Time(0);
    while let Some((now, e)) = q.pop()? {
        match e {
            Event::Ready(i) => {
                let t = &g.tasks[i];
                let start = t.tracks.iter().map(|&k| free[k]).fold(now, Time::max);
                let done = start + t.duration;
                for &k in &t.tracks {
                    free[k] = done;
                    let what = m.tracks[k].1;
                    if what == "unit" {
                        // The gap before this task goes to whatever it waited for last.
                        let gap = (start - last_end[k]).seconds();
                        let u = &mut units[k];
                        match t.last_dep {
                            Some(Kind::Load) => u.waiting_for_loads += gap,
                            Some(Kind::Drain | Kind::Work) if started[k] => u.waiting_for_buffers += gap,
                            _ => u.idle += gap,
                        }
                        u.busy += t.duration.seconds();
                    } else {
                        let p = &mut ports[k];
                        p.busy += t.duration.seconds();
                        p.queued += (start - now).seconds();
                        p.bytes += t.bytes;
                    }
                    started[k] = true;
                    last_end[k] = done;
                    if let Some(label) = t.label {
                        slices.push(Slice { track: k, label, start, end: done, bytes: t.bytes });
                    }
                }
                q.push(done, Event::Done(i));
            }
            Event::Done(i) => {
                end = end.max(now);
                let kind = g.tasks[i].kind;
                let succ = std::mem::take(&mut g.tasks[i].succ);
                for s in succ {
                    let t = &mut g.tasks[s];
                    t.deps -= 1;
                    t.last_dep = Some(kind);
                    if t.deps == 0 {
                        q.push(now, Event::Ready(s));
                    }
                }
            }
        }
    }
    let analytical_cycles = ev.cycles;
    let seconds = end.seconds();
    ev.cycles = seconds * arch.clock.0;
    ev.seconds = seconds;
    for (_, util) in ev.utilization.iter_mut() {
        if analytical_cycles > 0.0 && ev.cycles > 0.0 {
            *util *= analytical_cycles / ev.cycles;
        }
    }
    for (k, u) in units.iter_mut().enumerate() {
        if m.tracks[k].1 == "unit" {
            u.idle += (end - last_end[k]).seconds();
            if !started[k] {
                u.idle = seconds;
            }
        }
    }
    slices.sort_by_key(|s| (s.track, s.start));
    Ok(Run {
        evaluation: ev,
        analytical_cycles,
        units: m.tracks.iter().zip(units).filter(|(t, _)| t.1 == "unit").map(|(t, u)| (t.0.clone(), u)).collect(),
        ports: m.tracks.iter().zip(ports).filter(|(t, _)| t.1 != "unit").map(|(t, p)| (t.0.clone(), p)).collect(),
        tracks: m.tracks,
        slices,
        events: q.events(),
        double_buffered: double,
    })
}
