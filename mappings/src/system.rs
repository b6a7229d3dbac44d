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
use strata_workloads::PhaseKind;

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectSpec {
    policy: String,
    keep: f64,
    #[serde(default = "one")]
    inflation: f64,
    channels_per_page: i64,
}

fn one() -> f64 {
    1.0
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
    Weights,
    KvCache,
}

impl TensorClass {
    pub const ALL: [TensorClass; 2] = [TensorClass::Weights, TensorClass::KvCache];

    pub fn key(self) -> &'static str {
        match self {
            TensorClass::Weights => "weights",
            TensorClass::KvCache => "kv_cache",
        }
    }
}

/// How much a read request moves: the drive's page, or a fixed size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Block {
    Page,
    Bytes(u64),
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
}

/// Einsums named by what they are.
#[derive(Debug, Clone, PartialEq)]
pub enum EinsumClass {
    /// Every Einsum no earlier assignment took.
    All,
    /// Contractions with a weight tensor (projections, FFN, LM head).
    Linear,
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
}

pub const SELECTION_POLICIES: &[&str] = &["channel-token"];

/// Which unit runs a class of Einsums, in which phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub einsums: EinsumClass,
    /// `None`: both phases.
    pub phase: Option<PhaseKind>,
    pub unit: UnitId,
    pub select: Option<Selection>,
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
            let class = TensorClass::ALL
                .into_iter()
                .find(|c| c.key() == key)
                .ok_or_else(|| SpecError::new(&path, format!("`{key}` is not a tensor class (weights, kv_cache)")))?;
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
            placements.insert(class, Placement { tiers, fractions, read });
        }
        for class in TensorClass::ALL {
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
            let select = a
                .select
                .as_ref()
                .map(|x| {
                    let p = format!("{path}.select");
                    if x.policy != "channel-token" {
                        return Err(SpecError::new(
                            format!("{p}.policy"),
                            format!("`{}` is not a selection policy ({})", x.policy, SELECTION_POLICIES.join(", ")),
                        ));
                    }
                    if !(x.keep > 0.0 && x.keep <= 1.0) {
                        return Err(SpecError::new(format!("{p}.keep"), format!("must be in (0, 1] (got {})", x.keep)));
                    }
                    if !(x.inflation >= 1.0 && x.inflation.is_finite()) {
                        return Err(SpecError::new(format!("{p}.inflation"), "must be at least 1"));
                    }
                    if x.channels_per_page <= 0 {
                        return Err(SpecError::new(format!("{p}.channels_per_page"), "must be positive"));
                    }
                    Ok(Selection::ChannelToken {
                        keep: x.keep,
                        inflation: x.inflation,
                        channels_per_page: x.channels_per_page as u64,
                    })
                })
                .transpose()?;
            assign.push(Assign { einsums, phase, unit, select });
        }
        Ok(System {
            name: s.name,
            description: s.description,
            usable: s.usable,
            attention_passes: s.attention_passes as u8,
            placements,
            assign,
            overlap_remote_reads: s.overlap.remote_reads,
        })
    }

    pub fn placement(&self, class: TensorClass) -> &Placement {
        &self.placements[&class]
    }
}

/// System presets (name, TOML): the systems of InstInfer's evaluation on its testbed.
pub const PRESETS: &[(&str, &str)] = &[
    ("flexgen-ssd", include_str!("../presets/systems/flexgen-ssd.toml")),
    ("deepspeed-host", include_str!("../presets/systems/deepspeed-host.toml")),
    ("insta", include_str!("../presets/systems/insta.toml")),
    ("insta-sparf", include_str!("../presets/systems/insta-sparf.toml")),
];

/// A preset's text by name.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|p| p.0 == name).map(|p| p.1)
}
