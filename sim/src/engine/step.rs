//! One step of a model (prefill, or decode at a context) run by a [`System`] over an
//! architecture's devices, and a serving run made of such steps.
//!
//! The step is the model's Einsums (`workloads`), each on the unit its system assigns. Time:
//! - consecutive Einsums on one device form a stage, which lasts as long as its busiest part:
//!   the device's units computing one after another, or a memory of the device serving what
//!   the stage reads from it (weights, the KV cache) at its bandwidth (a drive's at the read
//!   pattern the system gives, measured on the NAND engine);
//! - what crosses devices (a tensor read from another device's memory, an activation handed to
//!   a unit elsewhere, new keys and values stored where the cache lives) moves over the links
//!   of the path between them at the path's narrowest bandwidth (a drive read from outside adds
//!   its host interface), one transfer after another;
//! - transfers precede the compute that needs them, unless the system overlaps reads from other
//!   devices with compute, in which case the step lasts max(stages, transfers).
//!
//! A device with several copies (`arch.devices`) shares the work of every Einsum it runs and
//! every tensor it holds evenly (heads sharded over drives); its links are copied with it.
//! Activations that stay on one device are not charged to its memories: in decode they are KiB
//! per layer beside MiB of weights; in prefill the compute outlasts streaming them once about
//! fourfold (OPT-13B at batch 64, 1,024 tokens, on the A6000: 0.3 s of MACs a layer against
//! about 70 ms to write and read its activations and attention scores once over GDDR6), and a
//! mapping that keeps tiles on chip moves less. The mapper, not this engine, tiles a unit's work.

use std::collections::BTreeMap;

use strata_arch::{Arch, LevelId, UnitId};
use strata_mappings::flash_tiling;
use strata_mappings::point_ops;
use strata_mappings::system::{Block, EinsumClass, ReadPattern, Selection, Share, Split, System, TensorClass};
use strata_workloads::einsum::{TensorId, packed_bytes};
use strata_workloads::{Cascade, Model, Phase, PhaseKind, Role};

use super::nand::read_compute::{self, Gemv, Options, ReadCompute, Tiling};
use super::{EngineError, device};

/// Why a step could not be run: bad input (`key` names the system, arch or run key) or a
/// failure while it ran (`at_run_time`: a NAND simulation over its event budget, a drive that
/// ran out of free blocks).
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    pub key: String,
    pub reason: String,
    pub at_run_time: bool,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for StepError {}

fn err(key: impl Into<String>, reason: impl Into<String>) -> StepError {
    StepError { key: key.into(), reason: reason.into(), at_run_time: false }
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> StepError {
        match e {
            EngineError::Config { key, reason } => err(key, reason),
            EngineError::Budget { events } => StepError {
                key: "nand".into(),
                reason: format!("the drive simulation needed more than {events} events"),
                at_run_time: true,
            },
            EngineError::DriveFull { .. } => StepError { key: "nand".into(), reason: e.to_string(), at_run_time: true },
        }
    }
}

/// A serving run: `batch` sequences, `prompt` tokens in, `generate` out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub batch: u64,
    pub prompt: u64,
    pub generate: u64,
}

/// What one step takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepReport {
    pub seconds: f64,
    /// Of which: stages (compute and local memories) and transfers between devices.
    pub stage_seconds: f64,
    pub transfer_seconds: f64,
    /// Memory management of weights loaded into their load memory (neuron selection).
    pub load_seconds: f64,
    /// Seconds spent reading each memory, at its bandwidth or, from another device, the path's.
    pub tier_seconds: BTreeMap<String, f64>,
    /// The GeMVs a drive's cores ran with their split unit, in order.
    pub gemvs: Vec<GemvReport>,
    /// One layer and the LM head on a timeline: each stage on its device's track (its memories'
    /// reads beside it), each transfer on its links' track, in order.
    pub trace: Vec<Span>,
    /// On the same timeline, the reads and writes sent to memories a device engine serves (a
    /// `[nand]` or `[dram]` organisation): the request streams to replay on those engines.
    pub requests: Vec<MemoryRequests>,
    /// Peak bytes of activations live at once (a layer's or the LM head's, Einsum by Einsum,
    /// each tensor materialised whole): the step's transient memory.
    pub activation_bytes: f64,
    /// The part of the step due to attention over the cache: its stages and its transfers.
    pub kv_seconds: f64,
    /// Busy seconds per device (compute or its memories, whichever binds, per stage).
    pub devices: BTreeMap<String, f64>,
    /// (bytes, busy seconds) per link.
    pub links: BTreeMap<String, (f64, f64)>,
    /// Bytes read per memory (weights and KV cache, over all copies of its device).
    pub tiers: BTreeMap<String, f64>,
    pub energy_j: f64,
}

/// One GeMV group a drive's cores ran: its Einsums, shape, how many times the step ran it (the
/// layers) and what the read-compute simulation says.
#[derive(Debug, Clone, PartialEq)]
pub struct GemvReport {
    pub einsums: String,
    pub rows: u64,
    pub cols: u64,
    pub times: f64,
    pub gemv: Gemv,
}

/// A slice of a step's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub track: String,
    pub name: String,
    pub start: f64,
    pub seconds: f64,
}

/// Reads (or writes) of one memory on a step's timeline: `bytes` in requests of `block` bytes,
/// back to back or at scattered offsets, spread over `seconds` from `start` (the rate the engine
/// found the memory, or the path to or from it, to serve them at).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRequests {
    pub memory: String,
    pub start: f64,
    pub seconds: f64,
    pub bytes: f64,
    pub block: u64,
    pub scattered: bool,
    pub write: bool,
}

/// What a run takes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub prefill: StepReport,
    /// The decode step at the mean context (prompt + (generate − 1)/2).
    pub decode: StepReport,
    pub tokens_per_s: f64,
    /// Where the weights and the KV cache went: a memory, or memories with their shares.
    pub weights_home: String,
    pub kv_home: String,
    /// The memory holding the largest share of the cache.
    pub kv_level: String,
    /// Bytes per second the first decode read of the cache sustained from its main home (the
    /// home's bandwidth at the system's pattern, and the links when read from another device);
    /// 0 when no decode Einsum reads the cache.
    pub kv_read_bandwidth: f64,
    /// Bytes each memory holds: its placed shares, and a load memory's cached neurons.
    pub held: BTreeMap<String, f64>,
    /// The run's memory footprint: persistent weights and KV cache (at the run's longest
    /// context), and the peak transient activations of its prefill and decode steps.
    pub weight_bytes: f64,
    /// Keys and values, with a channel-indexed copy or a label cache where the system keeps one.
    pub kv_cache_bytes: f64,
    pub activation_bytes: f64,
    /// Bytes of the KV cache (labels included) each memory holds.
    pub kv_held: BTreeMap<String, f64>,
}

/// Most requests simulated to measure a read pattern's rate (a layer's burst is often fewer).
const SAMPLE: u64 = 4096;

/// Per Einsum: linear (reads a weight: the FFN's after attention's output projection),
/// attention (reads the cache, or what such an Einsum produced, before the next weight), or
/// neither. Attention's output projection is the first linear Einsum that reads what was
/// computed from keys or values (the cache, or in prefill the new keys and values), with the
/// factors of a factorised projection after it; a linear Einsum that reads the cache rebuilds
/// keys or values from a rank-space cache, and what reads them is attention over the cache.
fn classes(c: &Cascade) -> Vec<EinsumClass> {
    let es = c.einsums();
    let reads = |e: usize, role: Role| es[e].inputs.iter().any(|a| c.tensor(a.tensor).role == role);
    let mut class: Vec<EinsumClass> = Vec::with_capacity(es.len());
    let mut from_keys = vec![false; es.len()];
    let mut projection = vec![false; es.len()];
    let mut rebuilds = vec![false; es.len()];
    let mut projected = false;
    for e in 0..es.len() {
        let after = |f: &dyn Fn(usize) -> bool| es[e].inputs.iter().any(|a| c.producer(a.tensor).is_some_and(f));
        if reads(e, Role::Weight) {
            projection[e] = after(&|p| from_keys[p] || projection[p]);
            class.push(if projected && !projection[e] { EinsumClass::Ffn } else { EinsumClass::Linear });
            projected |= projection[e];
            rebuilds[e] = reads(e, Role::KvCache);
            from_keys[e] = rebuilds[e];
            continue;
        }
        let keys = es[e].inputs.iter().any(|a| c.tensor(a.tensor).role == Role::KvCache || c.tensor(a.tensor).cached)
            || after(&|p| from_keys[p]);
        from_keys[e] = keys;
        let k = if reads(e, Role::KvCache) || after(&|p| class.get(p) == Some(&EinsumClass::Attention) || rebuilds[p]) {
            EinsumClass::Attention
        } else {
            EinsumClass::Elementwise
        };
        class.push(k);
    }
    class
}

/// The memory holding the largest share of a class's homes (the first of equals).
fn primary(homes: &[(LevelId, f64)]) -> LevelId {
    homes.iter().rev().max_by(|a, b| a.1.total_cmp(&b.1)).expect("placed").0
}

/// An Einsum's unit, selection and split.
type Placed = (UnitId, Option<Selection>, Option<Split>);

/// The class of a tensor an Einsum of class `einsum` reads, for placement and reads: weights
/// (the FFN's when an FFN Einsum reads them) and the KV cache; `None` for activations.
/// `scorer`: the tensor scores a selection's candidates: a label cache is its own class, a
/// router's weights stay with the weights outside the FFN.
fn tensor_class(role: Role, einsum: &EinsumClass, scorer: bool) -> Option<TensorClass> {
    match role {
        Role::Weight if *einsum == EinsumClass::Ffn && !scorer => Some(TensorClass::FfnWeights),
        Role::Weight => Some(TensorClass::Weights),
        Role::KvCache if scorer => Some(TensorClass::KvLabels),
        Role::KvCache => Some(TensorClass::KvCache),
        _ => None,
    }
}

/// A read of a tensor: its bytes, the pattern software reads with, and the burst of the class
/// it belongs to (what a drive's queue sees).
struct Read {
    bytes: f64,
    pattern: Option<ReadPattern>,
    scattered: bool,
    burst: f64,
}

/// The engine's view of a system on an architecture for one model and run.
struct Engine<'a> {
    arch: &'a Arch,
    model: &'a Model,
    system: &'a System,
    budget: u64,
    batch: u64,
    /// Per class: each memory holding it and its share.
    homes: BTreeMap<TensorClass, Vec<(LevelId, f64)>>,
    /// Per level: its neighbours in the level trees and across peer links, with the link between.
    edges: Vec<Vec<(LevelId, Option<usize>)>>,
    /// What the first decode read of the cache from its main home sustained, bytes per second.
    kv_read: Option<f64>,
    /// Bytes each memory holds once placed.
    held: BTreeMap<LevelId, f64>,
    /// Bytes of the KV cache and its labels each memory holds.
    kv_held: BTreeMap<LevelId, f64>,
    /// GeMVs run on a drive's cores, by unit pair and shape: every layer repeats them.
    gemvs: BTreeMap<(UnitId, UnitId, u64, u64), Gemv>,
}

/// A read or write between devices: bytes over the links of a path.
struct Transfer {
    bytes: f64,
    /// Bytes per second of the narrowest part.
    bandwidth: f64,
    links: Vec<usize>,
    kv: bool,
}

/// The architecture as a graph: each level's neighbours up and down its tree and across peer
/// links, with the link crossed (none between levels of one chip).
fn edges(arch: &Arch) -> Vec<Vec<(LevelId, Option<usize>)>> {
    let mut edges: Vec<Vec<(LevelId, Option<usize>)>> = vec![Vec::new(); arch.levels.len()];
    for (i, l) in arch.levels.iter().enumerate() {
        if let Some(p) = l.parent {
            edges[i].push((p, l.link));
            edges[p.0].push((LevelId(i), l.link));
        }
    }
    for (k, l) in arch.links.iter().enumerate() {
        if let Some([x, y]) = l.connects {
            edges[x.0].push((y, Some(k)));
            edges[y.0].push((x, Some(k)));
        }
    }
    edges
}

impl<'a> Engine<'a> {
    fn device(&self, l: LevelId) -> &str {
        &self.arch.level(l).device
    }

    fn copies(&self, l: LevelId) -> f64 {
        self.arch.device_count(self.device(l)) as f64
    }

    /// A link's bytes per second, over every copy of the more replicated device it joins.
    fn link_bandwidth(&self, k: usize, ends: [LevelId; 2]) -> f64 {
        let l = &self.arch.links[k];
        l.bandwidth.0 * l.count as f64 * self.copies(ends[0]).max(self.copies(ends[1]))
    }

    /// The links from level `a` to level `b`: up and down the level trees and across peer links,
    /// fewest hops (breadth first, in level order, so the path does not depend on anything but
    /// the architecture). `None` when no path joins them.
    fn path(&self, a: LevelId, b: LevelId) -> Option<Vec<(usize, [LevelId; 2])>> {
        let n = self.arch.levels.len();
        let mut from: Vec<Option<(LevelId, Option<usize>)>> = vec![None; n];
        let mut seen = vec![false; n];
        let mut queue = std::collections::VecDeque::from([a]);
        seen[a.0] = true;
        while let Some(x) = queue.pop_front() {
            if x == b {
                let mut links = Vec::new();
                let mut y = b;
                while let Some((p, k)) = from[y.0] {
                    if let Some(k) = k {
                        links.push((k, [p, y]));
                    }
                    y = p;
                }
                links.reverse();
                return Some(links);
            }
            for &(y, k) in &self.edges[x.0] {
                if !seen[y.0] {
                    seen[y.0] = true;
                    from[y.0] = Some((x, k));
                    queue.push_back(y);
                }
            }
        }
        None
    }

    /// Bytes per second a memory serves to a reader, over every copy of its device: a drive at
    /// the read pattern (its host interface only when read from another device), measured on a
    /// burst of `burst` bytes per copy (up to `SAMPLE` requests: a short burst pays the queue's
    /// ramp), else its port.
    fn read_bandwidth(
        &mut self,
        l: LevelId,
        pattern: Option<ReadPattern>,
        scattered: bool,
        outside: bool,
        burst: f64,
    ) -> Result<f64, StepError> {
        let level = self.arch.level(l);
        let copies = self.copies(l);
        let port = level.port_bandwidth.map(|b| b * self.arch.clock.0);
        let located = |e: EngineError| match e {
            EngineError::Config { key, reason } => {
                err(format!("arch.levels.{}", level.name), format!("{key}: {reason}"))
            }
            e => e.into(),
        };
        let pattern = match (pattern, &level.nand, &level.dram) {
            (Some(p), ..) => self.pattern_of(l, p, scattered, burst),
            // Unsaid: a DRAM streams; a drive serves its sheet's bandwidth.
            (None, None, Some(org)) => device::Channels::stream(org).map_err(located)?,
            (None, ..) => return Ok(port.unwrap_or(f64::INFINITY) * copies),
        };
        let d = device::of(level, port, outside);
        Ok(device::rate(&*d, &pattern, self.budget).map_err(located)? * copies)
    }

    /// The request stream a read pattern makes of a burst of `burst` bytes from level `l` (a
    /// drive's page as the block where the pattern says `page`; up to `SAMPLE` requests).
    fn pattern_of(&self, l: LevelId, p: ReadPattern, scattered: bool, burst: f64) -> device::Pattern {
        let block = match (p.block, &self.arch.level(l).nand) {
            (Block::Page, Some(org)) => org.page_bytes.0,
            (Block::Page, None) => 4096,
            (Block::Bytes(b), _) => b,
            (Block::Selected, _) => self.selected_block(),
        };
        let requests = ((burst / block as f64).ceil() as u64).clamp(1, SAMPLE);
        device::Pattern { block, queue: p.queue, scattered, requests }
    }

    /// The requests `read` makes of level `l` over `seconds`, where a device engine serves the
    /// level (at time 0: the caller places them): in its pattern's block, else a DRAM's stream's
    /// or a drive's page.
    fn requests(&self, l: LevelId, read: &Read, seconds: f64, write: bool) -> Option<MemoryRequests> {
        let level = self.arch.level(l);
        let block = match (read.pattern, &level.dram, &level.nand) {
            (_, None, None) => return None,
            (Some(p), ..) => self.pattern_of(l, p, read.scattered, read.burst / self.copies(l)).block,
            (None, Some(org), _) => device::Channels::stream(org).ok()?.block,
            (None, None, Some(org)) => org.page_bytes.0,
        };
        let memory = level.name.clone();
        Some(MemoryRequests { memory, start: 0.0, seconds, bytes: read.bytes, block, scattered: read.scattered, write })
    }

    /// A transfer of `bytes` from level `a` to level `b`; `read`: the source memory's read
    /// bandwidth at its pattern over its burst limits it too, and the pattern's requests cross
    /// each link as that link serves them (its latency against the queue).
    fn transfer(
        &mut self,
        a: LevelId,
        b: LevelId,
        bytes: f64,
        read: Option<&Read>,
        kv: bool,
    ) -> Result<Transfer, StepError> {
        let path = self.path(a, b).ok_or_else(|| {
            err(
                "system",
                format!(
                    "no link joins `{}` ({}) and `{}` ({}) in {}",
                    self.arch.level(a).name,
                    self.device(a),
                    self.arch.level(b).name,
                    self.device(b),
                    self.arch.name
                ),
            )
        })?;
        let mut bandwidth = match read {
            Some(x) => self.read_bandwidth(a, x.pattern, x.scattered, true, x.burst / self.copies(a))?,
            None => f64::INFINITY,
        };
        let requests =
            read.and_then(|x| x.pattern.map(|p| self.pattern_of(a, p, x.scattered, x.burst / self.copies(a))));
        for &(k, ends) in &path {
            let l = &self.arch.links[k];
            let link = device::Link { peak: self.link_bandwidth(k, ends), latency: l.latency.map_or(0.0, |t| t.0) };
            bandwidth = bandwidth.min(match &requests {
                Some(p) => device::Device::serve(&link, p, self.budget)?,
                None => link.peak,
            });
        }
        Ok(Transfer { bytes, bandwidth, links: path.iter().map(|x| x.0).collect(), kv })
    }

    /// Places weights (the FFN's apart when the system places them apart), then the KV cache
    /// (`kv_bytes`, copies included): each tier its fraction, or all in the first of its tiers
    /// with room left over every copy of the tier's device. The FFN's load memory then takes a
    /// neuron selection's cached share and its predictor.
    fn place(&mut self, kv_bytes: f64, label_bytes: f64) -> Result<(), StepError> {
        let m = self.model;
        let mut used: BTreeMap<LevelId, f64> = BTreeMap::new();
        let mut placed: BTreeMap<TensorClass, Vec<(LevelId, f64)>> = BTreeMap::new();
        // DS-Offload's next-query projection is one more query-sized weight per layer.
        let predictor = match self.system.sparse_attention {
            Some(s) if s.predict_next => (m.layers * m.d_model * m.heads * m.head_dim * m.bytes_per_element) as f64,
            _ => 0.0,
        };
        let all = m.weight_bytes() as f64 + predictor;
        let ffn = (m.layers * m.ffn_params_per_layer() * m.bytes_per_element) as f64;
        let apart = self.system.ffn_apart();
        let mut classes = if apart {
            vec![(TensorClass::Weights, all - ffn), (TensorClass::FfnWeights, ffn), (TensorClass::KvCache, kv_bytes)]
        } else {
            vec![(TensorClass::Weights, all), (TensorClass::KvCache, kv_bytes)]
        };
        if self.system.sparse_attention.is_some() {
            classes.push((TensorClass::KvLabels, label_bytes));
        }
        let sizes: BTreeMap<TensorClass, f64> = classes.iter().copied().collect();
        let fits = |l: LevelId, bytes: f64, used: &BTreeMap<LevelId, f64>| {
            let cap = self.arch.level(l).capacity.map_or(f64::INFINITY, |c| c.0 as f64 * self.copies(l));
            used.get(&l).copied().unwrap_or(0.0) + bytes <= self.system.usable * cap
        };
        for (class, bytes) in classes {
            let p = self.system.placement(class);
            if let Some(fractions) = &p.fractions {
                let mut here = Vec::new();
                for (i, (&l, &f)) in p.tiers.iter().zip(fractions).enumerate() {
                    if f == 0.0 {
                        continue;
                    }
                    if !fits(l, bytes * f, &used) {
                        return Err(err(
                            format!("system.placement.{}.fractions[{i}]", class.key()),
                            format!(
                                "{:.1} GB ({f} of {:.1} GB) do not fit {} ({} of its capacity usable)",
                                bytes * f / 1e9,
                                bytes / 1e9,
                                self.arch.level(l).name,
                                self.system.usable
                            ),
                        ));
                    }
                    *used.entry(l).or_default() += bytes * f;
                    here.push((l, f));
                }
                placed.insert(class, here);
                continue;
            }
            let home = p.tiers.iter().copied().find(|&l| fits(l, bytes, &used)).ok_or_else(|| {
                let names: Vec<&str> = p.tiers.iter().map(|&l| self.arch.level(l).name.as_str()).collect();
                err(
                    format!("system.placement.{}", class.key()),
                    format!(
                        "{:.1} GB do not fit {} ({} of each memory's capacity usable)",
                        bytes / 1e9,
                        names.join(" or "),
                        self.system.usable
                    ),
                )
            })?;
            *used.entry(home).or_default() += bytes;
            placed.insert(class, vec![(home, 1.0)]);
        }
        if !apart {
            let weights = placed[&TensorClass::Weights].clone();
            placed.insert(TensorClass::FfnWeights, weights);
        }
        if !placed.contains_key(&TensorClass::KvLabels) {
            let cache = placed[&TensorClass::KvCache].clone();
            placed.insert(TensorClass::KvLabels, cache);
        }
        let mut kv_held: BTreeMap<LevelId, f64> = BTreeMap::new();
        for class in [TensorClass::KvCache, TensorClass::KvLabels] {
            for &(l, f) in &placed[&class] {
                *kv_held.entry(l).or_default() += sizes.get(&class).copied().unwrap_or(0.0) * f;
            }
        }
        // Rows gathered from a cache on another device land in a buffer beside the labels: one of
        // the selected tokens per layer (DS-Offload's k-token buffers).
        if let Some(sparse) = self.system.sparse_attention {
            let (labels, cache) = (primary(&placed[&TensorClass::KvLabels]), primary(&placed[&TensorClass::KvCache]));
            if self.device(labels) != self.device(cache) {
                let buffer = sparse.tokens * kv_bytes;
                if !fits(labels, buffer, &used) {
                    return Err(err(
                        "system.placement.kv_labels",
                        format!(
                            "{} cannot hold the selected rows' buffers ({:.2} GB) beside its {:.2} GB",
                            self.arch.level(labels).name,
                            buffer / 1e9,
                            used.get(&labels).copied().unwrap_or(0.0) / 1e9
                        ),
                    ));
                }
                *used.entry(labels).or_default() += buffer;
                *kv_held.entry(labels).or_default() += buffer;
            }
        }
        let load = self.system.placement(TensorClass::FfnWeights).load_into;
        if let (Some(l), Some(Selection::Neuron { active, cached, predictor_rank, .. })) =
            (load, self.system.neuron_selection())
        {
            let bytes = cached.max(active) * ffn + self.predictor_weights(predictor_rank) * m.layers as f64;
            if !fits(l, bytes, &used) {
                let key = if apart { "ffn_weights" } else { "weights" };
                return Err(err(
                    format!("system.placement.{key}.load_into"),
                    format!(
                        "{} cannot hold the FFN's {:.2} GB of cached neurons and predictors beside its {:.2} GB",
                        self.arch.level(l).name,
                        bytes / 1e9,
                        used.get(&l).copied().unwrap_or(0.0) / 1e9
                    ),
                ));
            }
            *used.entry(l).or_default() += bytes;
        }
        self.homes = placed;
        self.held = used;
        self.kv_held = kv_held;
        Ok(())
    }

    /// Bytes of one layer's neuron predictor: low rank `rank` × (model width + FFN width).
    /// (A sparse FFN's router is an Einsum of its cascade.)
    fn predictor_weights(&self, rank: u64) -> f64 {
        let m = self.model;
        (rank * (m.d_model + m.ffn_dim) * m.bytes_per_element) as f64
    }

    /// Bytes of what a selection reads as one unit: a sparse FFN's memory block of `ffn_block`
    /// cells (the block's rows of every matrix its index gathers, stored together), else one
    /// neuron's.
    fn selected_block(&self) -> u64 {
        let m = self.model;
        m.ffn_block.unwrap_or(1) * m.ffn_params_per_layer() / m.ffn_dim * m.bytes_per_element
    }

    /// The unit of Einsum `e` of `c` in `phase`, and its selection.
    fn assigned(&self, c: &Cascade, e: usize, class: &EinsumClass, phase: PhaseKind) -> Result<Placed, StepError> {
        let ein = &c.einsums()[e];
        let a = self
            .system
            .assign
            .iter()
            .find(|a| {
                a.phase.is_none_or(|p| p == phase)
                    && match &a.einsums {
                        EinsumClass::All => true,
                        EinsumClass::Named(n) => n == &ein.name,
                        EinsumClass::Linear => matches!(class, EinsumClass::Linear | EinsumClass::Ffn),
                        k => k == class,
                    }
            })
            .ok_or_else(|| {
                err(
                    "system.assign",
                    format!(
                        "no assignment takes Einsum `{}` in {}; add `einsums = \"*\"`",
                        ein.name,
                        format!("{phase:?}").to_lowercase()
                    ),
                )
            })?;
        let u = self.arch.unit(a.unit);
        for op in point_ops(ein.map, ein.reduce, !ein.reduced_ranks().is_empty()) {
            if !u.ops.contains_key(op) {
                return Err(err(
                    "system.assign",
                    format!(
                        "unit `{}` cannot run Einsum `{}` of {}: it has no `{op}` operation",
                        u.name,
                        ein.name,
                        c.name()
                    ),
                ));
            }
        }
        Ok((a.unit, a.select, a.split))
    }

    /// Reads `bytes` of a tensor from `home` for a unit at level `at` on `device`: from a memory
    /// of the device within the stage, else over the links. Returns the bandwidth it got.
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        home: LevelId,
        at: LevelId,
        read: &Read,
        attention: bool,
        stage: &mut Stage,
        r: &mut StepAcc,
        times: f64,
    ) -> Result<f64, StepError> {
        let level = self.arch.level(home);
        *r.tiers.entry(level.name.clone()).or_default() += read.bytes * times;
        r.energy_pj += read.bytes / self.arch.word_bytes as f64 * level.read_energy.0 * times;
        let bw = if self.device(home) == self.device(at) {
            let bw = self.read_bandwidth(home, read.pattern, read.scattered, false, read.burst / self.copies(home))?;
            *stage.memory.entry(home).or_default() += read.bytes / bw;
            if attention {
                *stage.kv_memory.entry(home).or_default() += read.bytes / bw;
            }
            stage.reads.extend(self.requests(home, read, read.bytes / bw, false));
            bw
        } else {
            let x = self.transfer(home, at, read.bytes, Some(read), attention)?;
            let bw = x.bandwidth;
            let start = r.transfer(self.arch, x, times);
            r.requests.extend(self.requests(home, read, read.bytes / bw, false).map(|q| MemoryRequests { start, ..q }));
            bw
        };
        *r.tier_seconds.entry(self.arch.level(home).name.clone()).or_default() += read.bytes / bw * times;
        Ok(bw)
    }

    /// One step of `c` (run `times` times: the layers), adding to `r`.
    fn cascade(&mut self, c: &Cascade, phase: PhaseKind, times: f64, r: &mut StepAcc) -> Result<(), StepError> {
        let (arch, system) = (self.arch, self.system);
        let es = c.einsums();
        let class = classes(c);
        let placed: Vec<Placed> =
            class.iter().enumerate().map(|(e, k)| self.assigned(c, e, k, phase)).collect::<Result<_, _>>()?;
        let unit_level = |u: UnitId| self.arch.unit(u).level;
        // Where each tensor is produced: the producer's unit level (a split GeMV's: the unit
        // that reduces it); the step's inputs come from the unit that ends the cascade (the
        // previous layer).
        let lands = |p: &Placed| unit_level(p.2.map_or(p.0, |s| s.with));
        let last = lands(&placed[es.len() - 1]);
        let made_at = |t: TensorId| c.producer(t).map_or(last, |p| lands(&placed[p]));
        let gemvs = self.gemv_groups(c, &class, &placed);
        // Label caches and routers' weights: what scores a selection's candidates.
        let scorers = c.scorer_inputs();
        // What an access reads: the tensor, or the rows a gather selects.
        let read_bytes = |a: &strata_workloads::einsum::Access| c.tensor(a.tensor).bytes_of(c.read_elements(a)) as f64;
        // The bytes of each class the cascade reads: one burst per class and layer.
        let mut class_bytes: BTreeMap<TensorClass, f64> = BTreeMap::new();
        for (e, ein) in es.iter().enumerate() {
            for a in &ein.inputs {
                let t = c.tensor(a.tensor);
                if let Some(k) = tensor_class(t.role, &class[e], scorers.contains(&a.tensor)) {
                    *class_bytes.entry(k).or_default() += read_bytes(a);
                }
            }
        }
        let mut stage: Option<Stage> = None;
        let mut first_cache_read = true;
        let mut predicted = false;
        for (e, ein) in es.iter().enumerate() {
            let (u, select, split) = placed[e];
            if let Some(split) = split {
                // A drive's cores and the split's unit run the group's GeMV, which carries its
                // input and partial sums on the channels and reads its weights in the drive.
                if let Some(members) = gemvs.get(&e) {
                    if let Some(open) = stage.take() {
                        r.close(self.arch, open, times);
                    }
                    self.split_gemv(c, &class, members, (u, split), phase, times, r)?;
                }
                self.store_cached(c, e, unit_level(split.with), r, times)?;
                continue;
            }
            let at = unit_level(u);
            let device = self.device(at).to_string();
            let copies = self.copies(at);
            let unit = arch.unit(u);
            let share = select.map_or(1.0, |s| s.compute_share());
            let points = c.counts(ein).points as f64;
            let ops = point_ops(ein.map, ein.reduce, !ein.reduced_ranks().is_empty());
            let cycles: f64 = ops.iter().map(|op| unit.ops[*op].cycles).sum();
            let rate = unit.pes() as f64 * self.arch.clock.0 * copies;
            let compute = points * share * cycles / rate;
            r.energy_pj += points * share * ops.iter().map(|op| unit.ops[*op].energy.0).sum::<f64>() * times;
            if stage.as_ref().is_some_and(|s| s.device != device) {
                r.close(self.arch, stage.take().expect("open"), times);
            }
            let mut s = stage.take().unwrap_or_else(|| Stage::new(&device));
            s.einsums.push(ein.name.clone());
            s.compute += compute;
            let attention = class[e] == EinsumClass::Attention;
            if attention {
                s.kv_compute += compute;
            }
            for a in &ein.inputs {
                let t = c.tensor(a.tensor);
                let bytes = read_bytes(a);
                let Some(k) = tensor_class(t.role, &class[e], scorers.contains(&a.tensor)) else {
                    let from = made_at(a.tensor);
                    if self.device(from) != device {
                        let kv = class[e] == EinsumClass::Attention
                            || c.producer(a.tensor).is_some_and(|p| class[p] == EinsumClass::Attention);
                        let x = self.transfer(from, at, bytes, None, kv)?;
                        r.transfer(self.arch, x, times);
                    }
                    continue;
                };
                let placement = system.placement(k);
                let pattern = placement.read;
                // What the unit reads of the tensor, what a load fetches of it, and whether
                // the reads scatter.
                let (read_share, fetch_share, scattered) = match (k, select) {
                    // A selection reads a share of the cache: keys (read first) through a
                    // channel-indexed copy, then keys and values of the selected tokens.
                    (TensorClass::KvCache, Some(Selection::ChannelToken { keep, inflation, channels_per_page })) => {
                        let d = self.model.head_dim;
                        let kept = (keep * d as f64).round() as u64;
                        let miss: f64 = (0..channels_per_page.min(d))
                            .map(|i| (d - kept).saturating_sub(i) as f64 / (d - i) as f64)
                            .product();
                        let tokens = (keep * inflation).min(1.0);
                        let share = if first_cache_read { 1.0 - miss + tokens } else { tokens };
                        (share, share, true)
                    }
                    (
                        TensorClass::Weights | TensorClass::FfnWeights,
                        Some(Selection::Neuron { active, loaded, .. }),
                    ) => (active, loaded, true),
                    // A gather reads its rows scattered over the tensor.
                    _ => (1.0, 1.0, a.gather().is_some()),
                };
                if k == TensorClass::KvCache {
                    first_cache_read = false;
                }
                let burst = |share: f64, part: f64| class_bytes[&k] * share * part;
                let predictor = if let Some(Selection::Neuron { predictor_rank, .. }) = select
                    && !predicted
                {
                    predicted = true;
                    Some(predictor_rank)
                } else {
                    None
                };
                for (home, part) in self.homes[&k].clone() {
                    // A home on another device than the load memory is first copied into it,
                    // then read from there.
                    let from = match placement.load_into {
                        Some(m) if self.device(m) != self.device(home) => {
                            let fetch = Read {
                                bytes: bytes * fetch_share * part,
                                pattern,
                                scattered,
                                burst: burst(fetch_share, part),
                            };
                            let level = self.arch.level(home);
                            *r.tiers.entry(level.name.clone()).or_default() += fetch.bytes * times;
                            r.energy_pj += fetch.bytes / self.arch.word_bytes as f64 * level.read_energy.0 * times;
                            let x = self.transfer(home, m, fetch.bytes, Some(&fetch), false)?;
                            let seconds = fetch.bytes / x.bandwidth;
                            *r.tier_seconds.entry(level.name.clone()).or_default() += seconds * times;
                            let start = r.transfer(self.arch, x, times);
                            let sent = self.requests(home, &fetch, seconds, false);
                            r.requests.extend(sent.map(|q| MemoryRequests { start, ..q }));
                            if scattered {
                                self.manage(m, fetch.bytes, r, times)?;
                            }
                            m
                        }
                        _ => home,
                    };
                    // The class's pattern is how its home is read; a load memory streams.
                    let (pattern, scattered) = if from == home { (pattern, scattered) } else { (None, false) };
                    let read =
                        Read { bytes: bytes * read_share * part, pattern, scattered, burst: burst(read_share, part) };
                    let bw = self.read(from, at, &read, attention, &mut s, r, times)?;
                    let first = k == TensorClass::KvCache && phase == PhaseKind::Decode && self.kv_read.is_none();
                    if first && home == self.primary(k) {
                        self.kv_read = Some(bw);
                    }
                }
                // The layer's neuron predictor runs before its first selected Einsum, reading its
                // weights from the load memory, or where the other weights live.
                if let Some(rank) = predictor {
                    let tokens = points / (self.model.d_model * self.model.ffn_dim) as f64;
                    let weights = self.predictor_weights(rank);
                    let macs = weights / self.model.bytes_per_element as f64 * tokens;
                    let mac = &unit.ops.get("mac").ok_or_else(|| {
                        err(
                            "system.assign",
                            format!("unit `{}` runs the neuron predictor and needs a `mac` operation", unit.name),
                        )
                    })?;
                    s.compute += macs * mac.cycles / rate;
                    r.energy_pj += macs * mac.energy.0 * times;
                    let from = placement.load_into.unwrap_or(self.homes[&TensorClass::Weights][0].0);
                    let read = Read { bytes: weights, pattern: None, scattered: false, burst: weights };
                    self.read(from, at, &read, false, &mut s, r, times)?;
                }
            }
            stage = Some(s);
            self.store_cached(c, e, at, r, times)?;
        }
        if let Some(s) = stage {
            r.close(self.arch, s, times);
        }
        Ok(())
    }

    /// The GeMV groups of a cascade's split Einsums, by first member: consecutive linear
    /// Einsums on one split assignment that read the same activation run as one GeMV (Q, K and
    /// V; a gated FFN's gate and up), their rows stacked.
    fn gemv_groups(&self, c: &Cascade, class: &[EinsumClass], placed: &[Placed]) -> BTreeMap<usize, Vec<usize>> {
        let es = c.einsums();
        let activation =
            |e: usize| es[e].inputs.iter().find(|a| c.tensor(a.tensor).role != Role::Weight).map(|a| a.tensor);
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut open: Option<usize> = None;
        for e in 0..es.len() {
            if placed[e].2.is_none() {
                open = None;
                continue;
            }
            let joins = open.is_some_and(|f| {
                placed[f] == placed[e]
                    && activation(f) == activation(e)
                    && matches!(class[e], EinsumClass::Linear | EinsumClass::Ffn)
            });
            if joins {
                groups.get_mut(&open.expect("open")).expect("group").push(e);
            } else {
                groups.insert(e, vec![e]);
                open = Some(e);
            }
        }
        groups
    }

    /// Runs one GeMV group on unit `core` (a drive's cores) split with `split.with`, adding its
    /// time as a stage of the drive's device, its weights as the drive's reads and its report.
    #[allow(clippy::too_many_arguments)]
    fn split_gemv(
        &mut self,
        c: &Cascade,
        class: &[EinsumClass],
        members: &[usize],
        (core, split): (UnitId, Split),
        phase: PhaseKind,
        times: f64,
        r: &mut StepAcc,
    ) -> Result<(), StepError> {
        let es = c.einsums();
        let flash = self.arch.level(self.arch.unit(core).level).parent.expect("checked by the system");
        let first = &es[members[0]];
        let cols = c.space_size(first.reduced_ranks());
        let mut rows = 0;
        for &e in members {
            let ein = &es[e];
            let out = c.space_size(ein.output_ranks());
            let weights: u64 = ein
                .inputs
                .iter()
                .filter(|a| c.tensor(a.tensor).role == Role::Weight)
                .map(|a| c.tensor(a.tensor).elements())
                .sum();
            if weights == 0 || c.space_size(ein.reduced_ranks()) != cols || out * cols != weights {
                return Err(err(
                    "system.assign",
                    format!(
                        "a split runs GeMVs of one token: Einsum `{}` of {} in {} is not one (batch {}, {} outputs over {} weights)",
                        ein.name,
                        c.name(),
                        format!("{phase:?}").to_lowercase(),
                        self.batch,
                        out,
                        weights
                    ),
                ));
            }
            for a in ein.inputs.iter().filter(|a| c.tensor(a.tensor).role == Role::Weight) {
                let k = tensor_class(Role::Weight, &class[e], false).expect("a weight's class");
                if self.homes[&k].iter().any(|&(l, _)| l != flash) {
                    return Err(err(
                        format!("system.placement.{}", k.key()),
                        format!(
                            "Einsum `{}` runs on the cores of {}, so its weight `{}` must live there",
                            ein.name,
                            self.arch.level(flash).name,
                            c.tensor(a.tensor).name
                        ),
                    ));
                }
            }
            rows += out;
        }
        let key = (core, split.with, rows, cols);
        let g = match self.gemvs.get(&key) {
            Some(g) => g.clone(),
            None => {
                let g = self.run_gemv(core, split, rows, cols)?;
                self.gemvs.insert(key, g.clone());
                g
            }
        };
        let level = self.arch.level(flash);
        let t = g.seconds * times;
        r.stages += t;
        *r.devices.entry(level.device.clone()).or_default() += t;
        let name = members.iter().map(|&e| es[e].name.as_str()).collect::<Vec<_>>().join("+");
        r.span(&format!("device: {}", level.device), &format!("{name} (read-compute GeMV)"), g.seconds, false);
        let bytes = (g.flash_bytes + g.npu_bytes) as f64;
        *r.tiers.entry(level.name.clone()).or_default() += bytes * times;
        *r.tier_seconds.entry(level.name.clone()).or_default() += t;
        let mac = |u: UnitId| self.arch.unit(u).ops.get("mac").map_or(0.0, |m| m.energy.0);
        let e = self.model.bytes_per_element as f64;
        r.energy_pj += (bytes / self.arch.word_bytes as f64 * level.read_energy.0
            + g.flash_bytes as f64 / e * mac(core)
            + g.npu_bytes as f64 / e * mac(split.with))
            * times;
        r.gemvs.push(GemvReport {
            einsums: members.iter().map(|&e| es[e].name.clone()).collect::<Vec<_>>().join("+"),
            rows,
            cols,
            times,
            gemv: g,
        });
        Ok(())
    }

    /// One GeMV of `rows` × `cols` on a drive's cores and `split.with`, tiled and split as the
    /// system's read-compute policy says.
    fn run_gemv(&self, core: UnitId, split: Split, rows: u64, cols: u64) -> Result<Gemv, StepError> {
        let e = self.model.bytes_per_element;
        let rc = ReadCompute::new(self.arch, core, split.with, e)?;
        let policy = self.system.read_compute;
        // α's share comes from the tile of a GeMV over the model's width (§V).
        let reference = policy.tile.reference(&rc.nand, e, self.model.d_model, rc.core_buffer_bytes);
        let alpha = flash_tiling::flash_share(&rc.nand, e, reference);
        let tiling = policy.tile.tile(&rc.nand, e, cols, rc.core_buffer_bytes).map_or(Tiling::Naive, Tiling::Broadcast);
        let o = Options {
            tiling,
            flash_share: alpha,
            slicing: policy.slice_control,
            slices: policy.slices,
            ecc: policy.ecc,
        };
        let located = |e: EngineError| match e {
            EngineError::Config { key, reason } => err(format!("system.read_compute.{key}"), reason),
            e => e.into(),
        };
        match split.share {
            Share::Balanced => read_compute::balanced(&rc, &o, rows, cols, self.budget),
            Share::Alpha => read_compute::gemv(&rc, &o, rows, cols, self.budget),
            Share::Fixed(f) => read_compute::gemv(&rc, &Options { flash_share: f, ..o }, rows, cols, self.budget),
        }
        .map_err(located)
    }

    /// The preallocated-matrix management of "LLM in a flash" (§3.3) for `bytes` of rows loaded
    /// into memory `m`: each is appended to its layer's matrix (copied from the arriving buffer:
    /// a read and a write) and as many evicted rows are deleted by moving the last rows into
    /// their holes (a read and a write), four passes at the memory's bandwidth, after the load
    /// and before the compute that needs the rows.
    fn manage(&mut self, m: LevelId, bytes: f64, r: &mut StepAcc, times: f64) -> Result<(), StepError> {
        let bw = self.read_bandwidth(m, None, false, false, bytes)?;
        let level = self.arch.level(m);
        let t = 4.0 * bytes / bw * times;
        r.load += t;
        r.span(&format!("memory: {}", level.name), "loaded rows into the preallocated matrix", t / times, false);
        *r.devices.entry(level.device.clone()).or_default() += t;
        r.energy_pj += 2.0 * bytes / self.arch.word_bytes as f64 * (level.read_energy.0 + level.write_energy.0) * times;
        Ok(())
    }

    /// New keys and values Einsum `e` produced at level `at` go where the cache lives (K twice
    /// under a channel-indexed copy).
    fn store_cached(
        &mut self,
        c: &Cascade,
        e: usize,
        at: LevelId,
        r: &mut StepAcc,
        times: f64,
    ) -> Result<(), StepError> {
        let out = c.tensor(c.einsums()[e].output.tensor);
        if out.cached {
            let label = c.label_tensors().contains(&c.einsums()[e].output.tensor);
            let class = if label { TensorClass::KvLabels } else { TensorClass::KvCache };
            for (home, part) in self.homes[&class].clone() {
                if self.device(home) != self.device(at) {
                    let copies = if self.selects() && first_key_output(c, e) { 2.0 } else { 1.0 };
                    let bytes = out.bytes() as f64 * copies * part;
                    let x = self.transfer(at, home, bytes, None, true)?;
                    let seconds = bytes / x.bandwidth;
                    let start = r.transfer(self.arch, x, times);
                    let append = Read { bytes, pattern: None, scattered: false, burst: bytes };
                    let sent = self.requests(home, &append, seconds, true);
                    r.requests.extend(sent.map(|q| MemoryRequests { start, ..q }));
                }
            }
        }
        Ok(())
    }

    /// Whether a decode assignment keeps a channel-indexed copy of the keys.
    fn selects(&self) -> bool {
        self.system.assign.iter().any(|a| matches!(a.select, Some(Selection::ChannelToken { .. })))
    }

    fn step(&mut self, phase: Phase) -> Result<StepReport, StepError> {
        let w = self
            .model
            .workload_with(phase, self.batch, self.system.attention_passes, self.system.sparse_attention.as_ref())
            .map_err(|e| err("model", e.to_string()))?;
        let kind = match phase {
            Phase::Prefill { .. } => PhaseKind::Prefill,
            Phase::Decode { .. } => PhaseKind::Decode,
        };
        let mut acc = StepAcc { overlap: self.system.overlap_remote_reads, ..StepAcc::default() };
        for (c, times) in [(&w.layer, self.model.layers as f64), (&w.lm_head, 1.0)] {
            acc.activations = acc.activations.max(c.peak_activation_bytes() as f64);
            let start = acc.clock.max(acc.transfer_clock);
            self.cascade(c, kind, times, &mut acc)?;
            // The cascade's span on the step's own track; the next starts when both clocks end.
            let end = acc.clock.max(acc.transfer_clock);
            (acc.clock, acc.transfer_clock) = (end, end);
            let name = if times > 1.0 { format!("{} (one of {times} layers)", c.name()) } else { c.name().to_string() };
            acc.trace.push(Span { track: "step".into(), name, start, seconds: end - start });
        }
        Ok(acc.finish(self.system.overlap_remote_reads))
    }
}

/// Whether Einsum `e` produces the first cached output (the keys).
fn first_key_output(c: &Cascade, e: usize) -> bool {
    c.einsums().iter().position(|x| c.tensor(x.output.tensor).cached) == Some(e)
}

/// A stage: consecutive Einsums on one device.
struct Stage {
    device: String,
    /// The Einsums it runs, for the trace.
    einsums: Vec<String>,
    compute: f64,
    /// Seconds each of the device's memories is busy.
    memory: BTreeMap<LevelId, f64>,
    /// The parts of those due to attention over the cache.
    kv_compute: f64,
    kv_memory: BTreeMap<LevelId, f64>,
    /// Its reads of memories a device engine serves, their start still to place.
    reads: Vec<MemoryRequests>,
}

impl Stage {
    fn new(device: &str) -> Stage {
        Stage {
            device: device.to_string(),
            einsums: Vec::new(),
            compute: 0.0,
            memory: BTreeMap::new(),
            kv_compute: 0.0,
            kv_memory: BTreeMap::new(),
            reads: Vec::new(),
        }
    }
}

#[derive(Default)]
struct StepAcc {
    stages: f64,
    transfers: f64,
    /// Memory management of loaded weights (after their load, before their compute).
    load: f64,
    /// Seconds spent reading each memory (at the memory's, or the path's, bandwidth).
    tier_seconds: BTreeMap<String, f64>,
    gemvs: Vec<GemvReport>,
    /// One run of each cascade (a layer, the LM head) on a timeline: serial work, and transfers
    /// on their own clock when they overlap the compute.
    trace: Vec<Span>,
    requests: Vec<MemoryRequests>,
    activations: f64,
    clock: f64,
    transfer_clock: f64,
    overlap: bool,
    kv: f64,
    devices: BTreeMap<String, f64>,
    links: BTreeMap<String, (f64, f64)>,
    tiers: BTreeMap<String, f64>,
    energy_pj: f64,
}

impl StepAcc {
    fn close(&mut self, arch: &Arch, s: Stage, times: f64) {
        let t = s.memory.values().copied().fold(s.compute, f64::max) * times;
        self.stages += t;
        let start = self.span(&format!("device: {}", s.device), &s.einsums.join(", "), t / times, false);
        for (&l, &busy) in &s.memory {
            let name = format!("{} read", s.einsums.join(", "));
            self.trace.push(Span { track: format!("memory: {}", arch.level(l).name), name, start, seconds: busy });
        }
        // A memory serves a stage's reads one after another.
        let mut clock: BTreeMap<&str, f64> = BTreeMap::new();
        for q in &s.reads {
            let at = clock.entry(&q.memory).or_insert(start);
            self.requests.push(MemoryRequests { start: *at, ..q.clone() });
            *at += q.seconds;
        }
        // Attention's share of the stage: its share of whatever binds (the compute or the
        // busiest memory).
        let busiest = s.memory.iter().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)));
        let share = match busiest {
            Some((l, &m)) if m > s.compute => s.kv_memory.get(l).copied().unwrap_or(0.0) / m,
            _ if s.compute > 0.0 => s.kv_compute / s.compute,
            _ => 0.0,
        };
        self.kv += t * share;
        *self.devices.entry(s.device).or_default() += t;
    }

    /// Adds a transfer run `times` times; returns where its one run starts on the timeline.
    fn transfer(&mut self, arch: &Arch, x: Transfer, times: f64) -> f64 {
        let t = x.bytes / x.bandwidth * times;
        self.transfers += t;
        let track = x.links.iter().map(|&k| arch.links[k].name.as_str()).collect::<Vec<_>>().join(" + ");
        let start = self.span(&format!("link: {track}"), &format!("{:.3} MB", x.bytes / 1e6), t / times, true);
        if x.kv {
            self.kv += t;
        }
        for k in x.links {
            let l = &arch.links[k];
            let e = self.links.entry(l.name.clone()).or_default();
            e.0 += x.bytes * times;
            e.1 += t;
            self.energy_pj += x.bytes * 8.0 * l.energy_per_bit.0 * times;
        }
        start
    }

    /// Appends a span of `seconds` on `track` at the end of its timeline; returns its start.
    fn span(&mut self, track: &str, name: &str, seconds: f64, transfer: bool) -> f64 {
        let clock = if transfer && self.overlap { &mut self.transfer_clock } else { &mut self.clock };
        let start = *clock;
        *clock += seconds;
        self.trace.push(Span { track: track.to_string(), name: name.to_string(), start, seconds });
        start
    }

    fn finish(self, overlap: bool) -> StepReport {
        let seconds = if overlap { self.stages.max(self.transfers) } else { self.stages + self.transfers } + self.load;
        StepReport {
            seconds,
            stage_seconds: self.stages,
            transfer_seconds: self.transfers,
            load_seconds: self.load,
            tier_seconds: self.tier_seconds,
            gemvs: self.gemvs,
            trace: self.trace,
            requests: self.requests,
            activation_bytes: self.activations,
            kv_seconds: self.kv.min(seconds),
            devices: self.devices,
            links: self.links,
            tiers: self.tiers,
            energy_j: self.energy_pj * 1e-12,
        }
    }
}

/// The mean of two steps, field by field (the decode step at a context halfway between).
fn mean(a: &StepReport, b: &StepReport) -> StepReport {
    let avg = |x: f64, y: f64| (x + y) / 2.0;
    let merge = |x: &BTreeMap<String, f64>, y: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        x.keys()
            .chain(y.keys())
            .map(|k| (k.clone(), avg(x.get(k).copied().unwrap_or(0.0), y.get(k).copied().unwrap_or(0.0))))
            .collect()
    };
    let links = a
        .links
        .keys()
        .chain(b.links.keys())
        .map(|k| {
            let (x, y) = (a.links.get(k).copied().unwrap_or_default(), b.links.get(k).copied().unwrap_or_default());
            (k.clone(), (avg(x.0, y.0), avg(x.1, y.1)))
        })
        .collect();
    StepReport {
        seconds: avg(a.seconds, b.seconds),
        stage_seconds: avg(a.stage_seconds, b.stage_seconds),
        transfer_seconds: avg(a.transfer_seconds, b.transfer_seconds),
        load_seconds: avg(a.load_seconds, b.load_seconds),
        tier_seconds: merge(&a.tier_seconds, &b.tier_seconds),
        // The two contexts' GeMVs are the same (they do not read the cache); the trace and its
        // requests are the lower context's.
        gemvs: a.gemvs.clone(),
        trace: a.trace.clone(),
        requests: a.requests.clone(),
        activation_bytes: a.activation_bytes.max(b.activation_bytes),
        kv_seconds: avg(a.kv_seconds, b.kv_seconds),
        devices: merge(&a.devices, &b.devices),
        links,
        tiers: merge(&a.tiers, &b.tiers),
        energy_j: avg(a.energy_j, b.energy_j),
    }
}

/// Runs one step of `model` at `batch` (the cache placed for the step's keys): what the decode
/// token of a batch-1 system such as Cambricon-LLM's takes.
pub fn step(
    arch: &Arch,
    model: &Model,
    system: &System,
    phase: Phase,
    batch: u64,
    budget: u64,
) -> Result<StepReport, StepError> {
    if batch == 0 || phase.keys() == 0 {
        return Err(err("run", "the batch and the step's tokens must be positive"));
    }
    let model = &system.model(model);
    let system = &system.for_model(model).map_err(|e| err(e.path, e.reason))?;
    let mut eng = Engine::new(arch, model, system, batch, budget);
    eng.place_for(batch * phase.keys())?;
    eng.step(phase)
}

/// Runs a serving run: the prefill step, then `generate` decode steps, each taken as the step at
/// the mean context (every part of a step grows linearly with the context; the mean of the steps
/// at the two whole contexts around it).
pub fn simulate(arch: &Arch, model: &Model, system: &System, run: Run, budget: u64) -> Result<RunReport, StepError> {
    if run.batch == 0 || run.prompt == 0 || run.generate == 0 {
        return Err(err("run", "batch, prompt and generated tokens must be positive"));
    }
    let model = &system.model(model);
    let system = &system.for_model(model).map_err(|e| err(e.path, e.reason))?;
    let mut eng = Engine::new(arch, model, system, run.batch, budget);
    eng.place_for(run.batch * (run.prompt + run.generate))?;
    let prefill = eng.step(Phase::Prefill { seq: run.prompt })?;
    let twice = 2 * run.prompt + run.generate - 1;
    let lo = eng.step(Phase::Decode { context: twice / 2 })?;
    let decode =
        if twice.is_multiple_of(2) { lo } else { mean(&lo, &eng.step(Phase::Decode { context: twice / 2 + 1 })?) };
    let tokens_per_s = (run.batch * run.generate) as f64 / (prefill.seconds + run.generate as f64 * decode.seconds);
    let kv_read_bandwidth = eng.kv_read.unwrap_or(0.0);
    let activation_bytes = prefill.activation_bytes.max(decode.activation_bytes);
    Ok(RunReport {
        prefill,
        decode,
        tokens_per_s,
        weights_home: eng.describe(TensorClass::Weights),
        kv_home: eng.describe(TensorClass::KvCache),
        kv_level: arch.level(eng.primary(TensorClass::KvCache)).name.clone(),
        kv_read_bandwidth,
        held: eng.held.iter().map(|(&l, &b)| (arch.level(l).name.clone(), b)).collect(),
        weight_bytes: model.weight_bytes() as f64,
        kv_cache_bytes: (run.batch * (run.prompt + run.generate) * model.kv_bytes_per_token()) as f64
            * if eng.selects() { 1.5 } else { 1.0 }
            + eng.label_bytes(run.batch * (run.prompt + run.generate)),
        kv_held: eng.kv_held.iter().map(|(&l, &b)| (arch.level(l).name.clone(), b)).collect(),
        activation_bytes,
    })
}

impl<'a> Engine<'a> {
    fn new(arch: &'a Arch, model: &'a Model, system: &'a System, batch: u64, budget: u64) -> Engine<'a> {
        Engine {
            arch,
            model,
            system,
            budget,
            batch,
            homes: BTreeMap::new(),
            edges: edges(arch),
            kv_read: None,
            held: BTreeMap::new(),
            kv_held: BTreeMap::new(),
            gemvs: BTreeMap::new(),
        }
    }

    /// Places the classes with a cache of `tokens` tokens' keys and values (a channel-indexed
    /// copy of the keys stores them twice).
    fn place_for(&mut self, tokens: u64) -> Result<(), StepError> {
        let copies = if self.selects() { 1.5 } else { 1.0 };
        self.place((tokens * self.model.kv_bytes_per_token()) as f64 * copies, self.label_bytes(tokens))
    }

    /// Bytes of the label cache for `tokens` tokens: each kv head's label channels.
    fn label_bytes(&self, tokens: u64) -> f64 {
        let m = self.model;
        self.system.sparse_attention.map_or(0.0, |s| {
            packed_bytes(tokens * m.layers * m.kv_heads * s.label_channels(m.head_dim), s.label_bits) as f64
        })
    }

    /// The memory holding the largest share of a class (the first of equals).
    fn primary(&self, class: TensorClass) -> LevelId {
        primary(&self.homes[&class])
    }

    /// Where a class went: a memory's name, or each memory with its share.
    fn describe(&self, class: TensorClass) -> String {
        match self.homes[&class].as_slice() {
            [(l, _)] => self.arch.level(*l).name.clone(),
            homes => homes
                .iter()
                .map(|(l, f)| format!("{} {:.0}%", self.arch.level(*l).name, 100.0 * f))
                .collect::<Vec<_>>()
                .join(" + "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::nand::Timing;
    use proptest::prelude::*;

    fn arch(csds: u64) -> Arch {
        let text = strata_arch::presets::text("a6000-csd").unwrap();
        let text = text.replace("name = \"csd\"\ncount = 1", &format!("name = \"csd\"\ncount = {csds}"));
        Arch::from_toml(&text).unwrap()
    }

    fn system(name: &str, arch: &Arch) -> System {
        System::from_toml(strata_mappings::system::preset(name).unwrap(), arch).unwrap()
    }

    fn opt13() -> Model {
        let p = strata_workloads::presets::find("opt-13b").unwrap();
        strata_workloads::ModelSpec::from_toml(p.text).unwrap().build().unwrap()
    }

    const RUN: Run = Run { batch: 64, prompt: 1024, generate: 1024 };

    /// DS-Offload moves the selected rows over PCIe, nothing more: per layer `k` of the cache's
    /// rows of K and V (a head's D channels each), and the new token's key and value written
    /// back; the new labels stay in GPU memory beside the others. GPU memory holds the labels
    /// (r / 2D of the cache at fp16) and the selected rows' buffers (k / S). Offloading the whole
    /// cache moves all of it: 16× the bytes.
    #[test]
    fn ds_offload_gathers_the_selected_rows_over_pcie() {
        let a = strata_arch::presets::load("a100-host").unwrap().unwrap();
        let m = {
            let p = strata_workloads::presets::find("llama2-7b").unwrap();
            strata_workloads::ModelSpec::from_toml(p.text).unwrap().build().unwrap()
        };
        let (batch, context) = (2u64, 8192u64);
        let ds = step(&a, &m, &system("ds-offload", &a), Phase::Decode { context }, batch, 1 << 26).unwrap();
        let k = (context as f64 / 16.0).round();
        let row = (m.head_dim * m.bytes_per_element) as f64;
        let per_layer = batch as f64 * m.kv_heads as f64 * (2.0 * k * row + 2.0 * row);
        let pcie = ds.links["pcie4x16"].0;
        assert!((pcie - m.layers as f64 * per_layer).abs() < 1.0, "{pcie} vs {}", m.layers as f64 * per_layer);
        let whole = step(&a, &m, &system("kv-offload", &a), Phase::Decode { context }, batch, 1 << 26).unwrap();
        let cache = (batch * context * m.kv_bytes_per_token()) as f64;
        let new_rows = (batch * m.kv_bytes_per_token()) as f64;
        assert!((whole.links["pcie4x16"].0 - cache - new_rows).abs() < 1.0);
        // Both are bound by the link: the step time follows the bytes.
        let ratio = whole.seconds / ds.seconds;
        assert!((ratio - (cache + new_rows) / pcie).abs() < 0.05 * ratio, "{ratio}");
        let run = Run { batch, prompt: context, generate: 1 };
        let o = simulate(&a, &m, &system("ds-offload", &a), run, 1 << 26).unwrap();
        let kv = (batch * (context + 1) * m.kv_bytes_per_token()) as f64;
        let want = kv / 32.0 + kv / 16.0;
        assert!((o.kv_held["HBM"] - want).abs() < 1e-9 * want, "{} vs {want}", o.kv_held["HBM"]);
        assert!((o.kv_held["HostDRAM"] - kv).abs() < 1e-9 * kv);
    }

    fn run(name: &str, csds: u64, run: Run) -> RunReport {
        let a = arch(csds);
        simulate(&a, &opt13(), &system(name, &a), run, 1 << 26).unwrap()
    }

    /// In storage, decode attention is bound by the drive's internal channels (8 × 1.4 GB/s), not
    /// by the 7 GB/s host link that FlexGen's reads cross at queue depth 1; FlexGen's step is its
    /// cache over that bandwidth (plus the new keys and values it writes back).
    #[test]
    fn in_storage_attention_reads_at_the_channel_rate() {
        let m = opt13();
        let insta = run("insta", 1, RUN);
        assert!(insta.kv_read_bandwidth > 0.9 * 10.0e9 && insta.kv_read_bandwidth <= 11.2e9, "{insta:?}");
        let flexgen = run("flexgen-ssd", 1, RUN);
        assert!(flexgen.kv_read_bandwidth < 7e9, "{flexgen:?}");
        let kv = 64.0 * (1024.0 + 511.5) * m.kv_bytes_per_token() as f64;
        let bound = kv / flexgen.kv_read_bandwidth;
        assert!(
            flexgen.decode.seconds >= bound && flexgen.decode.seconds < 1.002 * bound,
            "{} vs {bound}",
            flexgen.decode.seconds
        );
        assert!(insta.tokens_per_s > 4.0 * flexgen.tokens_per_s);
    }

    /// More drives split the heads: attention's part shrinks by the drive count; reading less
    /// (SparF) never makes a step slower than reading every page at the same queue, but scattered
    /// reads of everything (and K twice) lose to InstA's stream.
    #[test]
    fn drives_and_sparsity_shrink_the_attention_part() {
        let one = run("insta", 1, RUN);
        let four = run("insta", 4, RUN);
        assert!((four.decode.kv_seconds / one.decode.kv_seconds - 0.25).abs() < 0.01, "{one:?} {four:?}");
        let sparf = run("insta-sparf", 1, RUN);
        assert!(sparf.decode.seconds < one.decode.seconds);
        let a = arch(1);
        let dense = strata_mappings::system::preset("insta-sparf")
            .unwrap()
            .replace("keep = 0.125, inflation = 2.0", "keep = 1.0, inflation = 1.0");
        let dense = simulate(&a, &opt13(), &System::from_toml(&dense, &a).unwrap(), RUN, 1 << 26).unwrap();
        assert!(dense.decode.seconds > one.decode.seconds);
    }

    /// Host offload keeps the cache in host DRAM while it fits beside the weights, and spills it
    /// to the SSD beyond.
    #[test]
    fn host_offload_spills_when_the_host_is_full() {
        let small = run("deepspeed-host", 1, Run { batch: 16, ..RUN });
        let big = run("deepspeed-host", 1, Run { batch: 32, ..RUN });
        assert_eq!((small.kv_home.as_str(), big.kv_home.as_str()), ("HostDRAM", "SSD"));
        assert!(big.tokens_per_s < small.tokens_per_s);
    }

    /// FlexGen-style fractions: each tier serves its share of the class's bytes, and the step
    /// lies between the placements that put it all in one tier or the other; bad fractions are
    /// located errors.
    #[test]
    fn fractions_split_a_class_across_tiers() {
        let a = arch(1);
        let m = opt13();
        let insta = strata_mappings::system::preset("insta").unwrap();
        let with = |weights: &str| {
            let text = insta.replace("weights = { in = [\"HBM\"] }", weights);
            simulate(&a, &m, &System::from_toml(&text, &a).unwrap(), RUN, 1 << 26).unwrap()
        };
        let gpu = with("weights = { in = [\"HBM\"] }");
        let host = with("weights = { in = [\"HostDRAM\"] }");
        let half = with("weights = { in = [\"HBM\", \"HostDRAM\"], fractions = [0.5, 0.5] }");
        let w = m.weight_bytes() as f64;
        assert!((half.decode.tiers["HBM"] / (0.5 * w) - 1.0).abs() < 1e-12, "{:?}", half.decode.tiers);
        assert!((half.decode.tiers["HostDRAM"] / (0.5 * w) - 1.0).abs() < 1e-12);
        assert!(gpu.decode.seconds < half.decode.seconds && half.decode.seconds < host.decode.seconds);
        assert_eq!(half.weights_home, "HBM 50% + HostDRAM 50%");
        let bad = insta
            .replace("weights = { in = [\"HBM\"] }", "weights = { in = [\"HBM\", \"SSD\"], fractions = [0.5, 0.4] }");
        let e = System::from_toml(&bad, &a).unwrap_err();
        assert!(e.to_string().contains("system.placement.weights.fractions: must sum to 1"), "{e}");
        let big = insta
            .replace("weights = { in = [\"HBM\"] }", "weights = { in = [\"SMEM\", \"HBM\"], fractions = [0.5, 0.5] }");
        let e = simulate(&a, &m, &System::from_toml(&big, &a).unwrap(), RUN, 1 << 26).unwrap_err();
        assert_eq!(e.key, "system.placement.weights.fractions[0]", "{e}");
    }

    fn opt67() -> Model {
        let p = strata_workloads::presets::find("opt-6.7b").unwrap();
        strata_workloads::ModelSpec::from_toml(p.text).unwrap().build().unwrap()
    }

    /// One decode token at 256 tokens of context, batch 1 (LLM in a flash's setting).
    const TOKEN: Run = Run { batch: 1, prompt: 256, generate: 1 };

    fn flash(arch: &str, text: &str) -> RunReport {
        let a = Arch::from_toml(strata_arch::presets::text(arch).unwrap()).unwrap();
        simulate(&a, &opt67(), &System::from_toml(text, &a).unwrap(), TOKEN, 1 << 28).unwrap()
    }

    fn preset(name: &str) -> &'static str {
        strata_mappings::system::preset(name).unwrap()
    }

    /// Naive streaming moves the whole model from flash (2 bytes a weight) and, read in 1 MiB
    /// requests, runs near the drive's channel ceiling; I/O is those bytes over that rate, and
    /// nothing overlaps: the token is I/O plus compute over every weight in memory.
    #[test]
    fn streamed_weights_cross_at_the_drives_rate_then_compute() {
        let m = opt67();
        let o = flash("m1-max", preset("flash-naive-m1"));
        let d = &o.decode;
        assert_eq!(d.tiers["Flash"], m.weight_bytes() as f64);
        let rate = d.tiers["Flash"] / d.tier_seconds["Flash"];
        let a = Arch::from_toml(strata_arch::presets::text("m1-max").unwrap()).unwrap();
        let org = a.level(a.level_id("Flash").unwrap()).nand.clone().unwrap();
        let ceiling = Timing::of(&org).unwrap().bounds(1 << 20).least();
        assert!(rate <= ceiling * 1.0001 && rate >= 0.9 * ceiling, "{rate} vs {ceiling}");
        assert!((d.transfer_seconds - d.tiers["Flash"] / rate).abs() < 1e-9);
        // The CPU reads every weight from DRAM after the load.
        assert!(d.tiers["DRAM"] >= m.weight_bytes() as f64);
        assert!((d.seconds - (d.transfer_seconds + d.stage_seconds)).abs() < 1e-12 && d.load_seconds == 0.0);
        let half = flash("m1-max", preset("flash-hybrid-m1"));
        assert!((half.decode.tiers["Flash"] / d.tiers["Flash"] - 0.5).abs() < 1e-9);
        assert!((half.held["DRAM"] - o.held["DRAM"] - 0.5 * m.weight_bytes() as f64).abs() < 1.0);
    }

    /// Small scattered reads are slower per byte than large sequential ones; bundling (twice the
    /// block) is faster per byte but never twice; windowing moves only its increment; a shallower
    /// queue never reads faster.
    #[test]
    fn read_size_windowing_and_queue_change_io_as_the_drive_says() {
        let rate = |o: &RunReport| o.decode.tiers["Flash"] / o.decode.tier_seconds["Flash"];
        let dense = flash("m1-max", preset("flash-naive-m1"));
        let predictor = flash("m1-max", preset("flash-predictor-m1"));
        assert!(rate(&predictor) < 0.5 * rate(&dense));
        let window = flash("m1-max", preset("flash-windowing-m1"));
        let ratio = window.decode.tiers["Flash"] / predictor.decode.tiers["Flash"];
        assert!((ratio - 0.024 / 0.1).abs() < 1e-9, "{ratio}");
        let bundled = flash("m1-max", preset("flash-bundling-m1"));
        assert!(rate(&bundled) > rate(&window) && rate(&bundled) < 2.0 * rate(&window));
        let shallow = flash("m1-max", &preset("flash-windowing-m1").replace("queue = 32", "queue = 4"));
        assert!(rate(&shallow) < rate(&window));
    }

    /// Under a neuron selection the bytes are the closed form: flash serves the loaded share of
    /// the FFN; memory serves every other weight, the active share of the FFN, the predictors
    /// and the cache; compute shrinks by the FFN's inactive share (the GPU is memory-bound) and
    /// the load memory holds the window; the management is four passes over what was loaded.
    #[test]
    fn neuron_selection_reads_the_closed_form_bytes() {
        let m = opt67();
        let o = flash("rtx4090-host", preset("flash-windowing-4090"));
        let d = &o.decode;
        let e = m.bytes_per_element as f64;
        let ffn = (m.layers * m.ffn_params_per_layer()) as f64 * e;
        let all = m.weight_bytes() as f64;
        let predictors = (128 * (m.d_model + m.ffn_dim) * m.layers) as f64 * e;
        let kv = 256.0 * m.kv_bytes_per_token() as f64;
        let close = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-9;
        // The window of 5 over OPT's 10% active share: the reuse model's shares.
        let (loaded, cached) = strata_mappings::system::window_shares(0.10, 5);
        assert!(close(d.tiers["Flash"], loaded * ffn), "{:?}", d.tiers);
        assert!(close(d.tiers["GDDR"], all - 0.9 * ffn + predictors + kv), "{:?}", d.tiers);
        assert!(close(o.held["GDDR"], all - ffn + cached * ffn + predictors + 257.0 * m.kv_bytes_per_token() as f64));
        assert!(close(d.load_seconds, 4.0 * loaded * ffn / 1008e9));
        // Memory-bound: the GPU's stages last as long as GDDR serves what they read.
        assert!((d.stage_seconds / (d.tiers["GDDR"] / 1008e9) - 1.0).abs() < 1e-6, "{d:?}");
    }

    /// A memory with a DRAM organisation serves the step through the device interface: the
    /// memory-bound GPU's stages last as long as GDDR's bytes take at the channel engine's
    /// sustained share of its peak on a stream, not at the peak.
    #[test]
    fn dram_organisations_set_the_memorys_rate() {
        let ddr = "[arch.levels.dram]\nstandard = \"DDR4-3200\"\nchannels = 12\nbank_groups = 4\nbanks_per_group = 4\nrows = 65536\nrow_bytes = \"8 KiB\"\nbus_bits = 64\nt_ck = \"0.625 ns\"\ntiming = { BL = 8, nBL = 4, CL = 22, tRCD = 22, tRP = 22, tRAS = 52, tRC = 74, tCCD_S = 4, tCCD_L = 8, tRRD_S = 4, tRRD_L = 8, tFAW = 34, tRFC = 560, tREFI = 12480 }\n";
        let text = strata_arch::presets::text("rtx4090-host")
            .unwrap()
            .replace("read_energy = \"15 pJ\"          # estimate\n", &format!("read_energy = \"15 pJ\"\n{ddr}"));
        let a = Arch::from_toml(&text).unwrap();
        let org = a.level(a.level_id("GDDR").unwrap()).dram.clone().unwrap();
        let sys = System::from_toml(preset("flash-windowing-4090"), &a).unwrap();
        let d = simulate(&a, &opt67(), &sys, TOKEN, 1 << 28).unwrap().decode;
        let gddr = a.level(a.level_id("GDDR").unwrap());
        let channels = device::Channels { org: org.clone(), peak: gddr.port_bandwidth.unwrap() * a.clock.0 };
        let rate = device::rate(&channels, &device::Channels::stream(&org).unwrap(), 1 << 24).unwrap();
        assert!(rate < 0.99 * 1008e9, "{rate}");
        assert!((d.stage_seconds / (d.tiers["GDDR"] / rate) - 1.0).abs() < 1e-6, "{d:?} at {rate}");
    }

    fn cambricon(arch: &str) -> (Arch, System) {
        let a = Arch::from_toml(strata_arch::presets::text(arch).unwrap()).unwrap();
        let s = System::from_toml(preset("cambricon"), &a).unwrap();
        (a, s)
    }

    /// Cambricon-LLM's decode token: the drive's cores and the NPU read every INT8 weight once
    /// (Q, K and V as one GeMV, as their input is shared); each GeMV lasts at least its normal
    /// reads over the channels and a tR per read-compute request wave; the step is the GeMVs
    /// plus the NPU's attention, never less than the cache over the LPDDR5X.
    #[test]
    fn split_gemvs_read_every_weight_once_within_their_bounds() {
        let (a, sys) = cambricon("cambricon-llm-s");
        let m = opt67();
        let d = step(&a, &m, &sys, Phase::Decode { context: 1024 }, 1, 1 << 29).unwrap();
        assert_eq!(d.tiers["Flash"], m.params() as f64, "{:?}", d.tiers);
        let names: Vec<&str> = d.gemvs.iter().map(|g| g.einsums.as_str()).collect();
        assert_eq!(names, ["Q+KN+VN", "Z", "FU", "FD", "LOGITS"]);
        let nand = a.level(a.level_id("Flash").unwrap()).nand.clone().unwrap();
        let channels = nand.channels as f64 * nand.channel_bandwidth.0;
        let dies = (nand.channels * nand.chips_per_channel * nand.dies_per_chip) as f64;
        for g in &d.gemvs {
            let normal = g.gemv.npu_bytes as f64 / channels;
            let pages = (g.gemv.flash_bytes as f64 / nand.page_bytes.0 as f64 / dies).ceil();
            assert!(g.gemv.seconds >= normal.max(pages * nand.t_read.0), "{g:?}");
        }
        let gemvs: f64 = d.gemvs.iter().map(|g| g.gemv.seconds * g.times).sum();
        let kv = (1024 * m.kv_bytes_per_token()) as f64 / 2.0; // INT8: half the model's fp16 bytes
        assert!(d.seconds >= gemvs + kv / 40e9 * (1.0 - 1e-9), "{} vs {gemvs} + {}", d.seconds, kv / 40e9);
        assert!(d.kv_seconds > 0.0 && d.seconds < gemvs * 1.05);
    }

    /// A split is checked where it is written and where it runs: on Einsums that are not
    /// contractions, on a unit that is not a drive's cores, with weights away from the drive, at
    /// a batch that makes GeMMs.
    #[test]
    fn bad_splits_are_named() {
        let (a, _) = cambricon("cambricon-llm-s");
        let text = preset("cambricon");
        let e = |t: &str| System::from_toml(t, &a).unwrap_err().to_string();
        assert!(e(&text.replacen("einsums = \"linear\"", "einsums = \"attention\"", 1)).contains("split runs GeMVs"));
        assert!(e(&text.replacen("unit = \"flash-core\"", "unit = \"npu\"", 1)).contains("is not a drive's cores"));
        assert!(e(&text.replace("share = \"balanced\"", "share = 2.0")).contains("split.share: 2.0 is not"));
        assert!(e(&text.replace("tile = \"aware\"", "tile = \"wide\"")).contains("system.read_compute.tile"));
        let away =
            System::from_toml(&text.replace("weights = { in = [\"Flash\"] }", "weights = { in = [\"LPDDR5X\"] }"), &a)
                .unwrap();
        let err = step(&a, &opt67(), &away, Phase::Decode { context: 16 }, 1, 1 << 29).unwrap_err();
        assert_eq!(err.key, "system.placement.weights", "{err}");
        let sys = System::from_toml(text, &a).unwrap();
        let err = step(&a, &opt67(), &sys, Phase::Decode { context: 16 }, 4, 1 << 29).unwrap_err();
        assert!(err.reason.contains("a split runs GeMVs of one token"), "{err}");
    }

    /// The trace lays one layer and the LM head on a timeline: spans on one track never
    /// overlap, and where nothing overlaps, the layer's span times the layers plus the LM head's
    /// is the step (a drive's GeMVs, stages, transfers and management alike).
    #[test]
    fn traces_add_up_to_the_step() {
        let m = opt67();
        let (a, sys) = cambricon("cambricon-llm-s");
        let cam = step(&a, &m, &sys, Phase::Decode { context: 1024 }, 1, 1 << 29).unwrap();
        let flash = flash("rtx4090-host", preset("flash-windowing-4090")).decode;
        for d in [&cam, &flash] {
            let steps: Vec<&Span> = d.trace.iter().filter(|x| x.track == "step").collect();
            assert_eq!(steps.len(), 2, "{:?}", d.trace);
            let total = steps[0].seconds * m.layers as f64 + steps[1].seconds;
            assert!((total / d.seconds - 1.0).abs() < 1e-9, "{total} vs {}", d.seconds);
            let mut tracks: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
            for x in &d.trace {
                tracks.entry(x.track.as_str()).or_default().push(x);
            }
            for (track, spans) in tracks {
                for w in spans.windows(2) {
                    assert!(w[1].start >= w[0].start + w[0].seconds * (1.0 - 1e-12), "{track}: {w:?}");
                }
            }
        }
        assert!(cam.trace.iter().any(|x| x.name == "Q+KN+VN (read-compute GeMV)"));
        assert!(flash.trace.iter().any(|x| x.track == "link: pcie4x16"));
    }

    /// A drive read over a link with latency pays it per request: FlexGen's cache reads at
    /// queue depth 1 over an NVMe link of 100 µs per request sustain at most one 128 KiB block
    /// per latency plus transfer time (Little's law), below the latency-free rate.
    #[test]
    fn link_latency_limits_shallow_reads() {
        let m = opt13();
        let plain = run("flexgen-ssd", 1, RUN);
        let text = strata_arch::presets::text("a6000-csd").unwrap().replace(
            "bandwidth = \"7 GB/s\"         # the host SSD's PCIe 4.0 ×4",
            "bandwidth = \"7 GB/s\"\nlatency = \"100 us\"",
        );
        let a = Arch::from_toml(&text).unwrap();
        let slow = simulate(&a, &m, &system("flexgen-ssd", &a), RUN, 1 << 26).unwrap();
        let block = (128 << 10) as f64;
        let bound = block / (100e-6 + block / 7e9);
        assert!(slow.kv_read_bandwidth <= bound * (1.0 + 1e-12), "{} > {bound}", slow.kv_read_bandwidth);
        assert!(slow.kv_read_bandwidth < plain.kv_read_bandwidth && slow.tokens_per_s < plain.tokens_per_s);
    }

    /// A sparse FFN (Avg-K, lowered from the model's `ffn_block`): the FFN's home serves the
    /// selected whole blocks' rows (the active share rounded to whole blocks), gathered, and the
    /// router reads one mean key per block beside the other weights.
    #[test]
    fn sparse_ffns_read_whole_blocks_and_the_mean_keys() {
        let a = Arch::from_toml(strata_arch::presets::text("rtx4090-host").unwrap()).unwrap();
        let text = preset("flash-windowing-4090")
            .replace("select = { policy = \"neuron\", window = 5, predictor_rank = 128 }\n", "")
            .replace(
                ", load_into = \"GDDR\", read = { block = \"16 KiB\", queue = 32 }",
                ", load_into = \"GDDR\", read = { block = \"selected\", queue = 32 }",
            );
        let sys = System::from_toml(&text, &a).unwrap();
        let m = opt67();
        let blocked = Model { ffn_block: Some(1024), ..m.clone() };
        let d = simulate(&a, &blocked, &sys, TOKEN, 1 << 28).unwrap().decode;
        let ffn = (m.layers * m.ffn_params_per_layer() * m.bytes_per_element) as f64;
        // 16 blocks of 1024 cells; 10% of 16 rounds to 2 blocks: 1/8 of the FFN.
        assert!((d.tiers["Flash"] / (ffn / 8.0) - 1.0).abs() < 1e-12, "{:?}", d.tiers);
        let all = m.weight_bytes() as f64;
        let keys = (16 * m.d_model * m.layers * m.bytes_per_element) as f64;
        assert_eq!(blocked.weight_bytes() as f64, all + keys);
        let kv = 256.0 * m.kv_bytes_per_token() as f64;
        assert!((d.tiers["GDDR"] / (all - ffn + ffn / 8.0 + keys + kv) - 1.0).abs() < 1e-12, "{:?}", d.tiers);
    }

    /// A factorised output projection's two factors are the projection, not the FFN: with the
    /// FFN's weights apart, that memory serves the FFN's weights and nothing else.
    #[test]
    fn a_factorised_output_projection_stays_outside_the_ffn() {
        let a = Arch::from_toml(strata_arch::presets::text("rtx4090-host").unwrap()).unwrap();
        let text = "[system]\nname = \"apart\"\n[system.placement]\nweights = { in = [\"GDDR\"] }\n\
                    ffn_weights = { in = [\"HostDRAM\"] }\nkv_cache = { in = [\"GDDR\"] }\n\
                    [[system.assign]]\neinsums = \"linear\"\nunit = \"tensor\"\n\
                    [[system.assign]]\neinsums = \"*\"\nunit = \"cuda\"\n";
        let sys = System::from_toml(text, &a).unwrap();
        let m = opt67()
            .with_ranks(strata_workloads::model::Ranks { o: Some(512), q: Some(512), ..Default::default() })
            .unwrap();
        let d = simulate(&a, &m, &sys, TOKEN, 1 << 28).unwrap().decode;
        let ffn = (m.layers * m.ffn_params_per_layer() * m.bytes_per_element) as f64;
        assert!((d.tiers["HostDRAM"] - ffn).abs() < 1.0, "{} vs {ffn}", d.tiers["HostDRAM"]);
    }

    /// A run's footprint: every weight, the cache of its longest context (its channel-indexed
    /// key copy under SparF), and the larger of its steps' activation peaks, each the peak of a
    /// layer or the LM head Einsum by Einsum.
    #[test]
    fn footprints_are_weights_cache_and_peak_activations() {
        let m = opt13();
        for (name, copies) in [("insta", 1.0), ("insta-sparf", 1.5)] {
            let o = run(name, 1, RUN);
            assert_eq!(o.weight_bytes, m.weight_bytes() as f64);
            assert_eq!(o.kv_cache_bytes, (64 * 2048 * m.kv_bytes_per_token()) as f64 * copies);
            let peak = |phase: Phase| {
                let w = m.workload(phase, 64, 1).unwrap();
                w.layer.peak_activation_bytes().max(w.lm_head.peak_activation_bytes()) as f64
            };
            let want = peak(Phase::Prefill { seq: 1024 }).max(peak(Phase::Decode { context: 1535 }));
            assert_eq!(o.activation_bytes, want, "{name}");
            assert!(o.prefill.activation_bytes > o.decode.activation_bytes);
        }
    }

    /// Bad neuron selections and load memories are located errors.
    #[test]
    fn bad_neuron_systems_are_named() {
        let a = Arch::from_toml(strata_arch::presets::text("m1-max").unwrap()).unwrap();
        let text = &preset("flash-windowing-m1").replace("window = 5", "active = 0.10, loaded = 0.024, cached = 0.24");
        let e = |t: &str| System::from_toml(t, &a).unwrap_err().to_string();
        assert!(
            e(&text.replace("loaded = 0.024", "loaded = 0.5"))
                .contains("select.loaded: cannot exceed the active share")
        );
        assert!(
            e(&text.replace("einsums = \"ffn\"", "einsums = \"linear\""))
                .contains("the neuron policy selects the FFN's neurons")
        );
        assert!(
            e(&text.replace("cached = 0.24", "keep = 0.24"))
                .contains("select.keep: is not a parameter of the neuron policy")
        );
        assert!(
            e(&text.replace("load_into = \"DRAM\"", "load_into = \"HBM\""))
                .contains("ffn_weights.load_into: `HBM` is not a memory")
        );
        let small = Arch::from_toml(
            &strata_arch::presets::text("m1-max").unwrap().replace("capacity = \"64 GB\"", "capacity = \"5 GB\""),
        )
        .unwrap();
        let sys = System::from_toml(text, &small).unwrap();
        let e = simulate(&small, &opt67(), &sys, TOKEN, 1 << 28).unwrap_err();
        assert_eq!(e.key, "system.placement.ffn_weights.load_into", "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the system, batch and drive count: the decode step is never shorter than the
        /// busiest memory's bytes over its peak (a drive's channels, a DRAM's port, over every
        /// copy of its device), nor than any device's busy time; the bytes each tier serves are
        /// the model's own: every weight once, the cache of the mean context once (a selection
        /// reads its closed-form share of it).
        #[test]
        fn steps_respect_their_bounds_and_counts(
            which in 0usize..4,
            batch in 1u64..512,
            csds in 1u64..24,
        ) {
            let names = ["flexgen-ssd", "deepspeed-host", "insta", "insta-sparf"];
            let a = arch(csds);
            let m = opt13();
            let sys = system(names[which], &a);
            let r = Run { batch, prompt: 256, generate: 64 };
            let o = simulate(&a, &m, &sys, r, 1 << 26).unwrap();
            let d = &o.decode;
            for (tier, bytes) in &d.tiers {
                let l = a.level(a.level_id(tier).unwrap());
                let copies = a.device_count(&l.device) as f64;
                let peak = match &l.nand {
                    Some(n) => n.channels as f64 * n.channel_bandwidth.0,
                    None => l.port_bandwidth.unwrap() * a.clock.0,
                } * copies;
                prop_assert!(d.seconds >= bytes / peak * (1.0 - 1e-12), "{tier}: {} s < {bytes} B at {peak} B/s", d.seconds);
            }
            for (device, busy) in &d.devices {
                prop_assert!(d.seconds >= busy * (1.0 - 1e-12), "{device}");
            }
            let weights = m.weight_bytes() as f64;
            let mean = 256.0 + 63.0 / 2.0;
            let kv = batch as f64 * mean * m.kv_bytes_per_token() as f64;
            let share = if names[which] == "insta-sparf" {
                // 1/8 of 128 channels = 16; a page of 4 is missed with probability C(112,4)/C(128,4).
                let miss: f64 = (0..4).map(|i| (112 - i) as f64 / (128 - i) as f64).product();
                0.5 * (1.0 - miss) + 0.25
            } else {
                1.0
            };
            let close = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-12;
            if o.weights_home == o.kv_home {
                let got = d.tiers[&o.kv_home];
                prop_assert!(close(got, weights + kv * share), "{got} vs {}", weights + kv * share);
            } else {
                prop_assert!(close(d.tiers[&o.weights_home], weights), "{:?}", d.tiers);
                prop_assert!(close(d.tiers[&o.kv_home], kv * share), "{:?} vs {}", d.tiers, kv * share);
            }
        }
    }
}
