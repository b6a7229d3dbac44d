//! A system: how one step of a model (prefill or decode) runs on a whole machine. It says where
//! each tensor class lives (weights, KV cache; an ordered list of memories, the first that holds
//! it wins), how software reads it from there (block size and queue depth, which set a drive's
//! bandwidth), which unit runs which Einsums (by what they are: contractions with weights,
//! attention over the cache, the rest), what is read selectively, and whether reads from other
//! devices overlap compute. The engine (`sim::engine::step`) runs the step over the devices.
//!
//! Offloading (FlexGen, DeepSpeed), in-storage attention (InstInfer) and their compositions are
//! instances of this one description over one architecture file; nothing here names a paper.

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_arch::units::parse_bytes;
use strata_arch::{Arch, LevelId, UnitId};
use strata_workloads::sparse::Sparsity;
use strata_workloads::{Model, PhaseKind};

use crate::flash_tiling::Tile;
use crate::{SpecError, SpecResult};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    system: SystemSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemSpec {
    name: String,
    #[serde(default)]
    description: String,
    /// Share of each memory's capacity the placements may fill (the rest: runtime, fragments).
    #[serde(default = "usable")]
    usable: f64,
    /// The attention cascade the step's attention runs: FuseMax's 1-, 2- or 3-pass softmax.
    #[serde(default = "one_pass")]
    attention_passes: i64,
    placement: BTreeMap<String, PlacementSpec>,
    assign: Vec<AssignSpec>,
    #[serde(default)]
    overlap: OverlapSpec,
    /// Bytes per element the model runs at here (INT8: 1); absent: the model's own.
    bytes_per_element: Option<i64>,
    read_compute: Option<ReadComputeSpec>,
    sparse_attention: Option<SparseAttentionSpec>,
}

/// Double Sparsity's decode attention: label channels and selected tokens as shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SparseAttentionSpec {
    channels: f64,
    tokens: f64,
    /// Bits per label element: 16 (fp16, the paper's speed runs), 8, or 4 (the paper's 4-bit
    /// min-max labels, two to a byte).
    #[serde(default = "label_bits")]
    label_bits: i64,
    /// Layer ℓ predicts layer ℓ+1's query from its own input (one more projection), so the
    /// next layer's selection and gather can start early (DS-Offload).
    #[serde(default)]
    predict_next: bool,
}

fn label_bits() -> i64 {
    16
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadComputeSpec {
    tile: Option<String>,
    slice_control: Option<bool>,
    slices: Option<i64>,
    ecc: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitSpec {
    with: String,
    share: toml::Value,
}

fn usable() -> f64 {
    1.0
}

fn one_pass() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementSpec {
    #[serde(rename = "in")]
    memories: Vec<String>,
    /// Shares of the class in each memory (FlexGen's policy); absent: all in the first with room.
    fractions: Option<Vec<f64>>,
    read: Option<ReadSpec>,
    load_into: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadSpec {
    /// "page" (the drive's page) or a size ("128 KiB").
    block: String,
    queue: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignSpec {
    einsums: String,
    phase: Option<String>,
    unit: String,
    select: Option<SelectSpec>,
    split: Option<SplitSpec>,
}

/// A selection policy's parameters; which are required depends on the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectSpec {
    policy: String,
    keep: Option<f64>,
    inflation: Option<f64>,
    channels_per_page: Option<i64>,
    active: Option<f64>,
    loaded: Option<f64>,
    cached: Option<f64>,
    predictor_rank: Option<i64>,
    window: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverlapSpec {
    #[serde(default)]
    remote_reads: bool,
}

/// The largest read request a pattern may name: requests are simulated page by page.
const MAX_BLOCK: u64 = 64 << 20;

/// The tensor classes a placement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TensorClass {
    /// Every weight, or every weight outside the FFN when `ffn_weights` has its own placement.
    Weights,
    /// The feed-forward network's weights (what the FFN's linear Einsums read): optional, placed
    /// as `weights` unless given, so that a system can stream the FFN alone (LLM in a flash).
    FfnWeights,
    KvCache,
    /// A label cache (Double Sparsity: a few channels of the keys, kept apart to score tokens):
    /// optional, placed with the KV cache unless given (DS-Offload keeps it in HBM while the
    /// cache lives in host memory).
    KvLabels,
}

impl TensorClass {
    pub const ALL: [TensorClass; 4] =
        [TensorClass::Weights, TensorClass::FfnWeights, TensorClass::KvCache, TensorClass::KvLabels];

    pub fn key(self) -> &'static str {
        match self {
            TensorClass::Weights => "weights",
            TensorClass::FfnWeights => "ffn_weights",
            TensorClass::KvCache => "kv_cache",
            TensorClass::KvLabels => "kv_labels",
        }
    }
}

/// How much a read request moves: the drive's page, or a fixed size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Block {
    Page,
    Bytes(u64),
    /// What a selection picks as one contiguous unit: a sparse FFN's memory block (its cells'
    /// rows and columns stored together), else one neuron's.
    Selected,
}

/// How software reads a tensor class from where it lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadPattern {
    pub block: Block,
    pub queue: usize,
}

/// Where a tensor class lives: the first of `tiers` that holds it, or each tier its fraction.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub tiers: Vec<LevelId>,
    /// One share per tier, summing to 1; `None`: the first tier with room takes it all.
    pub fractions: Option<Vec<f64>>,
    /// Sequential reads of whole blocks at this queue depth; `None`: the memory's bandwidth.
    pub read: Option<ReadPattern>,
    /// A memory that what is read from a tier on another device is copied into before the unit
    /// reads it from there (LLM in a flash loads weights into DRAM, then computes); it holds the
    /// class's cached share under a selection. `None`: units read remote tiers over the links
    /// (FlexGen's GPU from pinned host memory).
    pub load_into: Option<LevelId>,
}

/// Einsums named by what they are.
#[derive(Debug, Clone, PartialEq)]
pub enum EinsumClass {
    /// Every Einsum no earlier assignment took.
    All,
    /// Contractions with a weight tensor (projections, FFN, LM head).
    Linear,
    /// The feed-forward network's contractions: the linear Einsums after the one that projects
    /// attention's output (a subset of `Linear`).
    Ffn,
    /// Attention over the KV cache: what reads it and what follows from that before the next
    /// weight.
    Attention,
    /// Neither (residual adds, activations).
    Elementwise,
    /// One Einsum by name.
    Named(String),
}

/// A selection policy: what an assignment reads of the tensors it takes from the cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection {
    /// SparF (InstInfer): a channel-indexed copy of K is read for the `keep` share of channels
    /// (a page holds `channels_per_page` channels and is read if any is selected), then K and V
    /// of the `keep` share of tokens, `inflation` × that share as pages filter imperfectly;
    /// reads scatter, and K is stored twice.
    ChannelToken { keep: f64, inflation: f64, channels_per_page: u64 },
    /// Neuron selection ("LLM in a flash", Deja Vu): a low-rank predictor of rank
    /// `predictor_rank` per layer (its weights read and its MACs run before the FFN) picks the
    /// `active` share of the FFN's neurons, and the unit reads and computes only their rows and
    /// columns. Of those, the `loaded` share of all neurons is not already in the placement's
    /// `load_into` memory and is read from the weights' tier (the window's increment; `active`
    /// without a window), scattered at the read pattern's block (row-column bundling doubles
    /// it); the load memory keeps the `cached` share (the last tokens' neurons) resident.
    Neuron { active: f64, loaded: f64, cached: f64, predictor_rank: u64 },
    /// The neuron selection with its shares derived from a window of the last `window` tokens'
    /// neurons kept in memory (`System::for_model` turns it into `Neuron`): the model's active
    /// share, and what a window holds and what a token adds to it from the neuron reuse model
    /// ([`window_shares`]).
    NeuronWindow { window: u64, predictor_rank: u64 },
}

/// What the FFN's neurons reused over a window of `k` tokens hold and add: each neuron fires
/// with its own probability, drawn from a Beta distribution of mean `active` (some neurons are
/// hot, most rarely fire), so the share active in at least one of `k` tokens is
/// s(k) = 1 − Π_{i<k} (b + i) / (a + b + i) with a = active·c, b = (1 − active)·c. Returns
/// (loaded, cached) = (s(k+1) − s(k), s(k)). The concentration c is the one calibrated number:
/// LLM in a flash's OPT-6.7B, 10% active and 2.4% loaded per token with a window of 5
/// ([`reuse_concentration`]); the window it implies holds 27.5% of the FFN (the paper: ≈ 24%).
pub fn window_shares(active: f64, k: u64) -> (f64, f64) {
    let c = reuse_concentration();
    let s = |k: u64| {
        let (a, b) = (active * c, (1.0 - active) * c);
        1.0 - (0..k).map(|i| (b + i as f64) / (a + b + i as f64)).product::<f64>()
    };
    (s(k + 1) - s(k), s(k))
}

/// The concentration of the neuron reuse model that gives LLM in a flash's OPT-6.7B numbers:
/// 10% of neurons active per token and 2.4% of them new per token with the last 5 tokens' kept
/// (shared/reference/llm-in-a-flash.md §3), solved by bisection (the increment grows with c).
pub fn reuse_concentration() -> f64 {
    static C: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *C.get_or_init(|| {
        let (active, loaded, window) = (0.10, 0.024, 5);
        let increment = |c: f64| {
            let (a, b) = (active * c, (1.0 - active) * c);
            let p: f64 = (0..window).map(|i| (b + i as f64) / (a + b + i as f64)).product();
            p * a / (a + b + window as f64)
        };
        let (mut lo, mut hi): (f64, f64) = (1e-3, 1e3);
        for _ in 0..200 {
            let mid = (lo * hi).sqrt();
            if increment(mid) < loaded { lo = mid } else { hi = mid }
        }
        (lo * hi).sqrt()
    })
}

impl Selection {
    /// The share of an Einsum's points (and of the weights it reads from where the unit reads
    /// them) that run.
    pub fn compute_share(&self) -> f64 {
        match *self {
            Selection::ChannelToken { keep, .. } => keep,
            Selection::Neuron { active, .. } => active,
            Selection::NeuronWindow { .. } => 1.0,
        }
    }
}

pub const SELECTION_POLICIES: &[&str] = &["channel-token", "neuron"];

/// How much of each GeMV a drive's cores take (the rest goes to the split's other unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    /// Where both sides finish together, found on the simulated timing.
    Balanced,
    /// The share of weight bytes Cambricon-LLM's α gives (§V) for the tile.
    Alpha,
    /// This share of weight bytes.
    Fixed(f64),
}

impl Share {
    /// `balanced`, `alpha` or a share within 0 and 1, as written.
    pub fn parse(s: &str) -> Option<Share> {
        match s {
            "balanced" => Some(Share::Balanced),
            "alpha" => Some(Share::Alpha),
            s => s.parse::<f64>().ok().and_then(Share::fixed),
        }
    }

    /// A fixed share, if within 0 and 1.
    pub fn fixed(f: f64) -> Option<Share> {
        (0.0..=1.0).contains(&f).then_some(Share::Fixed(f))
    }
}

/// A GeMV split between a drive's compute cores (the assignment's unit) and a unit beside the
/// drive (`with`, Cambricon-LLM's NPU), which also reduces the cores' partial sums.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub with: UnitId,
    pub share: Share,
}

/// How read-compute requests are tiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TileChoice {
    /// The least channel traffic per GeMV (`flash_tiling::aware_tile`).
    Aware,
    /// Prior in-flash compute: whole rows per page, no input broadcast.
    Naive,
    Fixed(Tile),
}

impl TileChoice {
    /// `aware`, `naive` or HxW (`256x2048`), as a system file and the command line write it.
    pub fn parse(t: &str) -> Result<TileChoice, String> {
        match t {
            "aware" => Ok(TileChoice::Aware),
            "naive" => Ok(TileChoice::Naive),
            _ => {
                let parse = |v: Option<&str>| v.and_then(|v| v.trim().parse::<u64>().ok()).filter(|&v| v > 0);
                let mut it = t.split(['x', '×']);
                match (parse(it.next()), parse(it.next()), it.next()) {
                    (Some(h), Some(w), None) => Ok(TileChoice::Fixed(Tile { h, w })),
                    _ => Err(format!("`{t}` is not `aware`, `naive` or HxW (e.g. 256x2048)")),
                }
            }
        }
    }

    /// The tile of a GeMV over `cols` columns on drive `nand` at `elem_bytes` per element with
    /// `buffer` bytes per core; `None`: naive tiles.
    pub fn tile(self, nand: &strata_arch::arch::NandOrg, elem_bytes: u64, cols: u64, buffer: u64) -> Option<Tile> {
        match self {
            TileChoice::Aware => Some(crate::flash_tiling::aware_tile(nand, elem_bytes, cols, buffer)),
            TileChoice::Fixed(t) => Some(t),
            TileChoice::Naive => None,
        }
    }

    /// The tile α and its flash share are computed from (§V): this choice's tile of a GeMV over
    /// the model's width `d_model`, or the aware one where tiles are naive.
    pub fn reference(self, nand: &strata_arch::arch::NandOrg, elem_bytes: u64, d_model: u64, buffer: u64) -> Tile {
        self.tile(nand, elem_bytes, d_model, buffer)
            .unwrap_or_else(|| crate::flash_tiling::aware_tile(nand, elem_bytes, d_model, buffer))
    }
}

/// The drive's read-compute policies: tiling, Slice Control (read-compute traffic first, normal
/// pages in `slices` pieces fitted to the gaps) and the outlier ECC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadComputePolicy {
    pub tile: TileChoice,
    pub slice_control: bool,
    pub slices: u64,
    pub ecc: bool,
}

impl Default for ReadComputePolicy {
    fn default() -> Self {
        ReadComputePolicy { tile: TileChoice::Aware, slice_control: true, slices: 4, ecc: true }
    }
}

/// Which unit runs a class of Einsums, in which phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub einsums: EinsumClass,
    /// `None`: both phases.
    pub phase: Option<PhaseKind>,
    pub unit: UnitId,
    pub select: Option<Selection>,
    pub split: Option<Split>,
}

/// A validated system over one architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct System {
    pub name: String,
    pub description: String,
    pub usable: f64,
    /// 1, 2 or 3: the softmax cascade of the step's attention.
    pub attention_passes: u8,
    pub placements: BTreeMap<TensorClass, Placement>,
    /// First match wins.
    pub assign: Vec<Assign>,
    /// Reads from other devices overlap the step's compute (prefetch) instead of preceding it.
    pub overlap_remote_reads: bool,
    /// Bytes per element the model runs at (INT8: 1); `None`: the model's.
    pub bytes_per_element: Option<u64>,
    pub read_compute: ReadComputePolicy,
    /// Decode attention as Double Sparsity's (labels, top-k, gathered rows); `None`: dense.
    pub sparse_attention: Option<Sparsity>,
}

impl System {
    /// Parses and checks a `[system]` file against the architecture it runs on: every memory,
    /// unit and class it names must exist there.
    pub fn from_toml(text: &str, arch: &Arch) -> SpecResult<System> {
        let f: SystemFile = strata_workloads::toml_doc::from_toml(text)?;
        let s = f.system;
        if s.name.trim().is_empty() {
            return Err(SpecError::new("system.name", "must not be empty"));
        }
        if !(s.usable > 0.0 && s.usable <= 1.0) {
            return Err(SpecError::new("system.usable", format!("must be in (0, 1] (got {})", s.usable)));
        }
        if !(1..=3).contains(&s.attention_passes) {
            return Err(SpecError::new(
                "system.attention_passes",
                format!("must be 1, 2 or 3 (got {})", s.attention_passes),
            ));
        }
        let mut placements = BTreeMap::new();
        for (key, p) in &s.placement {
            let path = format!("system.placement.{key}");
            let class = TensorClass::ALL.into_iter().find(|c| c.key() == key).ok_or_else(|| {
                SpecError::new(
                    &path,
                    format!("`{key}` is not a tensor class (weights, ffn_weights, kv_cache, kv_labels)"),
                )
            })?;
            if p.memories.is_empty() {
                return Err(SpecError::new(format!("{path}.in"), "name at least one memory"));
            }
            let tiers = p
                .memories
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    arch.level_id(m).ok_or_else(|| {
                        SpecError::new(format!("{path}.in[{i}]"), format!("`{m}` is not a memory of {}", arch.name))
                    })
                })
                .collect::<SpecResult<Vec<_>>>()?;
            let read = p
                .read
                .as_ref()
                .map(|r| {
                    let block = match r.block.trim() {
                        "page" => Block::Page,
                        "selected" => Block::Selected,
                        b => {
                            let bytes = parse_bytes(b).map_err(|e| SpecError::new(format!("{path}.read.block"), e))?.0;
                            if bytes == 0 || bytes > MAX_BLOCK {
                                return Err(SpecError::new(
                                    format!("{path}.read.block"),
                                    format!("must be between 1 B and 64 MiB (got {b})"),
                                ));
                            }
                            Block::Bytes(bytes)
                        }
                    };
                    if r.queue <= 0 || r.queue > 1 << 16 {
                        return Err(SpecError::new(format!("{path}.read.queue"), "must be in 1..=65536"));
                    }
                    Ok(ReadPattern { block, queue: r.queue as usize })
                })
                .transpose()?;
            let fractions = match &p.fractions {
                None => None,
                Some(f) => {
                    let fp = format!("{path}.fractions");
                    if f.len() != tiers.len() {
                        return Err(SpecError::new(
                            &fp,
                            format!("{} fractions for {} memories: give one per memory", f.len(), tiers.len()),
                        ));
                    }
                    if let Some(i) = f.iter().position(|x| !(0.0..=1.0).contains(x)) {
                        return Err(SpecError::new(format!("{fp}[{i}]"), format!("must be in [0, 1] (got {})", f[i])));
                    }
                    let sum: f64 = f.iter().sum();
                    if (sum - 1.0).abs() > 1e-9 {
                        return Err(SpecError::new(&fp, format!("must sum to 1 (they sum to {sum})")));
                    }
                    Some(f.clone())
                }
            };
            let load_into = p
                .load_into
                .as_ref()
                .map(|m| {
                    arch.level_id(m).ok_or_else(|| {
                        SpecError::new(format!("{path}.load_into"), format!("`{m}` is not a memory of {}", arch.name))
                    })
                })
                .transpose()?;
            placements.insert(class, Placement { tiers, fractions, read, load_into });
        }
        for class in [TensorClass::Weights, TensorClass::KvCache] {
            if !placements.contains_key(&class) {
                return Err(SpecError::new(
                    format!("system.placement.{}", class.key()),
                    "is required: say where it lives",
                ));
            }
        }
        if s.assign.is_empty() {
            return Err(SpecError::new("system.assign", "assign at least the Einsums `*` to a unit"));
        }
        let mut assign = Vec::new();
        for (i, a) in s.assign.iter().enumerate() {
            let path = format!("system.assign[{i}]");
            let einsums = match a.einsums.trim() {
                "*" => EinsumClass::All,
                "linear" => EinsumClass::Linear,
                "ffn" => EinsumClass::Ffn,
                "attention" => EinsumClass::Attention,
                "elementwise" => EinsumClass::Elementwise,
                "" => return Err(SpecError::new(format!("{path}.einsums"), "must not be empty")),
                name => EinsumClass::Named(name.to_string()),
            };
            let phase = match a.phase.as_deref() {
                None => None,
                Some("prefill") => Some(PhaseKind::Prefill),
                Some("decode") => Some(PhaseKind::Decode),
                Some(other) => {
                    return Err(SpecError::new(
                        format!("{path}.phase"),
                        format!("`{other}` is not a phase (prefill, decode)"),
                    ));
                }
            };
            let unit = arch.unit_id(&a.unit).ok_or_else(|| {
                SpecError::new(format!("{path}.unit"), format!("`{}` is not a compute unit of {}", a.unit, arch.name))
            })?;
            let select = a.select.as_ref().map(|x| selection(x, &format!("{path}.select"))).transpose()?;
            if matches!(select, Some(Selection::Neuron { .. } | Selection::NeuronWindow { .. }))
                && einsums != EinsumClass::Ffn
            {
                return Err(SpecError::new(
                    format!("{path}.select.policy"),
                    "the neuron policy selects the FFN's neurons: assign it with einsums = \"ffn\"",
                ));
            }
            let split =
                a.split.as_ref().map(|x| split(x, &einsums, unit, arch, &format!("{path}.split"))).transpose()?;
            assign.push(Assign { einsums, phase, unit, select, split });
        }
        Ok(System {
            name: s.name,
            description: s.description,
            usable: s.usable,
            attention_passes: s.attention_passes as u8,
            placements,
            assign,
            overlap_remote_reads: s.overlap.remote_reads,
            bytes_per_element: match s.bytes_per_element {
                None => None,
                Some(b @ 1..=8) => Some(b as u64),
                Some(b) => {
                    return Err(SpecError::new("system.bytes_per_element", format!("must be 1 to 8 (got {b})")));
                }
            },
            read_compute: s.read_compute.as_ref().map(read_compute).transpose()?.unwrap_or_default(),
            sparse_attention: s.sparse_attention.as_ref().map(sparse_attention).transpose()?,
        })
    }

    /// Where a class lives: the FFN's weights where the other weights are unless placed apart.
    pub fn placement(&self, class: TensorClass) -> &Placement {
        match class {
            TensorClass::FfnWeights if !self.placements.contains_key(&class) => &self.placements[&TensorClass::Weights],
            TensorClass::KvLabels if !self.placements.contains_key(&class) => &self.placements[&TensorClass::KvCache],
            _ => &self.placements[&class],
        }
    }

    /// The model as this system runs it (at its element width).
    pub fn model(&self, m: &Model) -> Model {
        Model { bytes_per_element: self.bytes_per_element.unwrap_or(m.bytes_per_element), ..m.clone() }
    }

    /// The neuron selection of the FFN, if an assignment makes one.
    pub fn neuron_selection(&self) -> Option<Selection> {
        self.assign.iter().find_map(|a| a.select.filter(|s| matches!(s, Selection::Neuron { .. })))
    }

    /// The system for model `m`: a window's neuron selection takes its shares from the model's
    /// active share and the neuron reuse model.
    pub fn for_model(&self, m: &Model) -> SpecResult<System> {
        let mut s = self.clone();
        for (i, a) in s.assign.iter_mut().enumerate() {
            if let Some(Selection::NeuronWindow { window, predictor_rank }) = a.select {
                let active = m.ffn_active.ok_or_else(|| {
                    SpecError::new(
                        format!("system.assign[{i}].select.window"),
                        format!("a window needs the model's active share: {} has no ffn_active", m.name),
                    )
                })?;
                let (loaded, cached) = window_shares(active, window);
                a.select = Some(Selection::Neuron { active, loaded, cached, predictor_rank });
            }
        }
        Ok(s)
    }

    /// Whether the FFN's weights have a placement of their own.
    pub fn ffn_apart(&self) -> bool {
        self.placements.contains_key(&TensorClass::FfnWeights)
    }
}

/// A split at `path` of the Einsums `einsums` on `unit`: the unit must be a drive's cores and
/// the Einsums contractions with weights.
fn split(x: &SplitSpec, einsums: &EinsumClass, unit: UnitId, arch: &Arch, path: &str) -> SpecResult<Split> {
    if matches!(einsums, EinsumClass::All | EinsumClass::Attention | EinsumClass::Elementwise) {
        return Err(SpecError::new(path, "a split runs GeMVs: assign it `linear`, `ffn` or one Einsum by name"));
    }
    let u = arch.unit(unit);
    if arch.level(u.level).parent.is_none_or(|p| arch.level(p).nand.is_none()) {
        return Err(SpecError::new(
            path,
            format!(
                "unit `{}` is not a drive's cores (its level must sit directly under a level with a [nand] organisation)",
                u.name
            ),
        ));
    }
    let with = arch.unit_id(&x.with).ok_or_else(|| {
        SpecError::new(format!("{path}.with"), format!("`{}` is not a compute unit of {}", x.with, arch.name))
    })?;
    let share = match &x.share {
        toml::Value::String(s) => Share::parse(s),
        v => v.as_float().or(v.as_integer().map(|i| i as f64)).and_then(Share::fixed),
    }
    .ok_or_else(|| {
        SpecError::new(
            format!("{path}.share"),
            format!("{} is not `balanced`, `alpha` or a share within 0 and 1", x.share),
        )
    })?;
    Ok(Split { with, share })
}

/// The read-compute policies of `[system.read_compute]`.
fn read_compute(x: &ReadComputeSpec) -> SpecResult<ReadComputePolicy> {
    let d = ReadComputePolicy::default();
    let tile = match x.tile.as_deref() {
        None => d.tile,
        Some(t) => TileChoice::parse(t).map_err(|e| SpecError::new("system.read_compute.tile", e))?,
    };
    let slices = match x.slices {
        None => d.slices,
        Some(n @ 1..=64) => n as u64,
        Some(n) => return Err(SpecError::new("system.read_compute.slices", format!("must be 1 to 64 (got {n})"))),
    };
    Ok(ReadComputePolicy {
        tile,
        slice_control: x.slice_control.unwrap_or(d.slice_control),
        slices,
        ecc: x.ecc.unwrap_or(d.ecc),
    })
}

/// Double Sparsity's shares and label format, each in range.
fn sparse_attention(x: &SparseAttentionSpec) -> SpecResult<Sparsity> {
    let path = "system.sparse_attention";
    for (key, v) in [("channels", x.channels), ("tokens", x.tokens)] {
        if !(v > 0.0 && v <= 1.0) {
            return Err(SpecError::new(format!("{path}.{key}"), format!("must be a share in (0, 1] (got {v})")));
        }
    }
    if ![4, 8, 16].contains(&x.label_bits) {
        return Err(SpecError::new(format!("{path}.label_bits"), format!("must be 4, 8 or 16 (got {})", x.label_bits)));
    }
    Ok(Sparsity {
        channels: x.channels,
        tokens: x.tokens,
        label_bits: x.label_bits as u64,
        predict_next: x.predict_next,
    })
}

/// A selection policy from its spec at `path`: each policy's parameters, required and in range,
/// and no other policy's.
fn selection(x: &SelectSpec, path: &str) -> SpecResult<Selection> {
    let key = |k: &str| format!("{path}.{k}");
    let given: [(&str, bool); 8] = [
        ("keep", x.keep.is_some()),
        ("inflation", x.inflation.is_some()),
        ("channels_per_page", x.channels_per_page.is_some()),
        ("active", x.active.is_some()),
        ("loaded", x.loaded.is_some()),
        ("cached", x.cached.is_some()),
        ("predictor_rank", x.predictor_rank.is_some()),
        ("window", x.window.is_some()),
    ];
    let own: &[&str] = match x.policy.as_str() {
        "channel-token" => &["keep", "inflation", "channels_per_page"],
        "neuron" if x.window.is_some() => &["window", "predictor_rank"],
        "neuron" => &["active", "loaded", "cached", "predictor_rank"],
        other => {
            return Err(SpecError::new(
                key("policy"),
                format!("`{other}` is not a selection policy ({})", SELECTION_POLICIES.join(", ")),
            ));
        }
    };
    if let Some((k, _)) = given.iter().find(|(k, set)| *set && !own.contains(k)) {
        return Err(SpecError::new(
            key(k),
            format!("is not a parameter of the {} policy ({})", x.policy, own.join(", ")),
        ));
    }
    let need = |k: &str, v: Option<f64>| {
        v.ok_or_else(|| SpecError::new(key(k), format!("is required by the {} policy", x.policy)))
    };
    let fraction = |k: &str, v: Option<f64>| {
        let v = need(k, v)?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(SpecError::new(key(k), format!("must be in [0, 1] (got {v})")))
        }
    };
    if x.policy == "channel-token" {
        let keep = need("keep", x.keep)?;
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(SpecError::new(key("keep"), format!("must be in (0, 1] (got {keep})")));
        }
        let inflation = x.inflation.unwrap_or(1.0);
        if !(inflation >= 1.0 && inflation.is_finite()) {
            return Err(SpecError::new(key("inflation"), "must be at least 1"));
        }
        let channels = need("channels_per_page", x.channels_per_page.map(|c| c as f64))?;
        if channels <= 0.0 {
            return Err(SpecError::new(key("channels_per_page"), "must be positive"));
        }
        return Ok(Selection::ChannelToken { keep, inflation, channels_per_page: channels as u64 });
    }
    let rank = x.predictor_rank.unwrap_or(0);
    if !(0..=1 << 20).contains(&rank) {
        return Err(SpecError::new(key("predictor_rank"), format!("must be in 0..=1048576 (got {rank})")));
    }
    if let Some(w) = x.window {
        if !(0..=1 << 20).contains(&w) {
            return Err(SpecError::new(key("window"), format!("must be 0 to 2^20 tokens (got {w})")));
        }
        return Ok(Selection::NeuronWindow { window: w as u64, predictor_rank: rank as u64 });
    }
    let active = fraction("active", x.active)?;
    let loaded = fraction("loaded", x.loaded)?;
    if loaded > active {
        return Err(SpecError::new(key("loaded"), format!("cannot exceed the active share {active} (got {loaded})")));
    }
    let cached = fraction("cached", x.cached.or(Some(0.0)))?;
    Ok(Selection::Neuron { active, loaded, cached, predictor_rank: rank as u64 })
}

/// System presets (name, TOML): the systems of InstInfer's evaluation on its testbed, and LLM in
/// a flash's cumulative techniques on its M1 Max (`-m1`) and RTX 4090 (`-4090`) machines, and
/// Cambricon-LLM's design (`cambricon`) and its ablations, and Double Sparsity's systems (`dense-gpu`, `ds-gpu`,
/// `ds-gpu-4bit`, the offloading baseline `kv-offload` and `ds-offload`), and a sparse FFN's blocks in HBM, LPDDR5X or
/// a drive (`ffn-in-*`, on `gh200-ssd`).
pub const PRESETS: &[(&str, &str)] = &[
    ("flexgen-ssd", include_str!("../presets/systems/flexgen-ssd.toml")),
    ("dense-gpu", include_str!("../presets/systems/dense-gpu.toml")),
    ("ds-gpu", include_str!("../presets/systems/ds-gpu.toml")),
    ("ds-gpu-4bit", include_str!("../presets/systems/ds-gpu-4bit.toml")),
    ("kv-offload", include_str!("../presets/systems/kv-offload.toml")),
    ("ds-offload", include_str!("../presets/systems/ds-offload.toml")),
    ("ffn-in-hbm", include_str!("../presets/systems/ffn-in-hbm.toml")),
    ("ffn-in-lpddr5x", include_str!("../presets/systems/ffn-in-lpddr5x.toml")),
    ("ffn-in-ssd", include_str!("../presets/systems/ffn-in-ssd.toml")),
    ("deepspeed-host", include_str!("../presets/systems/deepspeed-host.toml")),
    ("insta", include_str!("../presets/systems/insta.toml")),
    ("insta-sparf", include_str!("../presets/systems/insta-sparf.toml")),
    ("flash-naive-m1", include_str!("../presets/systems/flash-naive-m1.toml")),
    ("flash-hybrid-m1", include_str!("../presets/systems/flash-hybrid-m1.toml")),
    ("flash-predictor-m1", include_str!("../presets/systems/flash-predictor-m1.toml")),
    ("flash-windowing-m1", include_str!("../presets/systems/flash-windowing-m1.toml")),
    ("flash-bundling-m1", include_str!("../presets/systems/flash-bundling-m1.toml")),
    ("flash-naive-4090", include_str!("../presets/systems/flash-naive-4090.toml")),
    ("flash-hybrid-4090", include_str!("../presets/systems/flash-hybrid-4090.toml")),
    ("flash-predictor-4090", include_str!("../presets/systems/flash-predictor-4090.toml")),
    ("flash-windowing-4090", include_str!("../presets/systems/flash-windowing-4090.toml")),
    ("flash-bundling-4090", include_str!("../presets/systems/flash-bundling-4090.toml")),
    ("cambricon", include_str!("../presets/systems/cambricon.toml")),
    ("cambricon-no-slicing", include_str!("../presets/systems/cambricon-no-slicing.toml")),
    ("cambricon-alpha-split", include_str!("../presets/systems/cambricon-alpha-split.toml")),
    ("cambricon-no-slicing-alpha", include_str!("../presets/systems/cambricon-no-slicing-alpha.toml")),
    ("cambricon-no-split", include_str!("../presets/systems/cambricon-no-split.toml")),
    ("cambricon-naive-tiles", include_str!("../presets/systems/cambricon-naive-tiles.toml")),
    ("cambricon-tile-128x4096", include_str!("../presets/systems/cambricon-tile-128x4096.toml")),
    ("cambricon-tile-4096x128", include_str!("../presets/systems/cambricon-tile-4096x128.toml")),
    ("cambricon-tile-128x4096-alpha", include_str!("../presets/systems/cambricon-tile-128x4096-alpha.toml")),
    ("cambricon-tile-4096x128-alpha", include_str!("../presets/systems/cambricon-tile-4096x128-alpha.toml")),
];

/// A preset's text by name.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.0 == name).map(|p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The neuron reuse model gives back its calibration point (OPT-6.7B: 10% active, 2.4% new
    /// per token with a window of 5), loads the whole active share with no window, and its
    /// window grows by exactly what each token loads while what a token loads shrinks.
    #[test]
    fn window_shares_follow_the_reuse_model() {
        let (loaded, cached) = window_shares(0.10, 5);
        assert!((loaded - 0.024).abs() < 1e-9 && (cached - 0.2748).abs() < 1e-3, "{loaded} {cached}");
        let (loaded, cached) = window_shares(0.10, 0);
        assert!((loaded - 0.10).abs() < 1e-12 && cached == 0.0);
        for active in [0.01, 0.1, 0.5] {
            for k in 0..40 {
                let (l, c) = window_shares(active, k);
                let (l2, c2) = window_shares(active, k + 1);
                assert!((c + l - c2).abs() < 1e-12 && l2 < l && c2 > c && c2 < 1.0, "{active} {k}");
            }
        }
    }

    /// A window needs the model's active share; a window beside explicit shares is refused.
    #[test]
    fn windows_need_the_models_active_share() {
        let a = Arch::from_toml(strata_arch::presets::text("m1-max").unwrap()).unwrap();
        let text = preset("flash-windowing-m1").unwrap();
        let sys = System::from_toml(text, &a).unwrap();
        let llama = strata_workloads::ModelSpec::from_toml(strata_workloads::presets::find("llama2-7b").unwrap().text)
            .unwrap()
            .build()
            .unwrap();
        let e = sys.for_model(&llama).unwrap_err();
        assert_eq!(e.path, "system.assign[0].select.window", "{e}");
        let e = System::from_toml(&text.replace("window = 5", "window = 5, active = 0.1"), &a).unwrap_err();
        assert!(
            e.to_string().contains("select.active: is not a parameter of the neuron policy (window, predictor_rank)"),
            "{e}"
        );
    }
}
