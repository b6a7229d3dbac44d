//! Attention written as extended-Einsum cascades: FuseMax's 3-pass, 2-pass and 1-pass forms.
//!
//! One generator serves the attention presets and the transformer builder, so the Einsums a
//! model layer runs are exactly the ones the attention proptests check against softmax.
//! Grouped-query attention indexes the query side by `(g, r)` (kv group, member) and the key
//! and value side by `g` alone; multi-head attention uses a single head rank `h`.

use serde::Deserialize;

use crate::cascade::{CascadeSpec, EinsumSpec, PartitionSpec, Size, TensorSpec};
use crate::einsum::{ReduceOp, Role};
use crate::error::{SpecError, SpecResult, positive};
use crate::phase::{Phase, PhaseKind};

/// An attention preset file: one `[attention]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionFile {
    pub attention: AttentionSpec,
}

/// The serde mirror of an attention workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// 1, 2 or 3 passes over each key fiber (FuseMax §IV).
    pub passes: i64,
    #[serde(default = "prefill")]
    pub phase: PhaseKind,
    pub batch: i64,
    pub heads: i64,
    /// Fewer kv heads than heads is grouped-query attention; defaults to `heads`.
    pub kv_heads: Option<i64>,
    /// Prompt length (prefill) or cached context length (decode).
    pub seq: i64,
    pub head_dim: i64,
    /// Width of V and the output per head; defaults to `head_dim`.
    pub value_dim: Option<i64>,
    /// Keys per block (M0) of the 1- and 2-pass cascades.
    #[serde(default = "default_block")]
    pub block: i64,
    #[serde(default)]
    pub causal: bool,
    #[serde(default = "default_elem_bytes")]
    pub elem_bytes: i64,
}

fn prefill() -> PhaseKind {
    PhaseKind::Prefill
}
fn default_block() -> i64 {
    256
}
fn default_elem_bytes() -> i64 {
    2
}

/// A validated attention shape.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionShape {
    pub passes: u8,
    pub phase: Phase,
    pub batch: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub value_dim: u64,
    pub block: u64,
    pub causal: bool,
    pub elem_bytes: u64,
}

/// Names of the tensors attention reads and writes, so a layer can wire it to its projections.
#[derive(Debug, Clone, Copy)]
pub struct AttentionIo<'a> {
    pub q: &'a str,
    pub k: &'a str,
    pub v: &'a str,
    pub out: &'a str,
}

impl Default for AttentionIo<'_> {
    fn default() -> Self {
        AttentionIo { q: "Q", k: "K", v: "V", out: "AV" }
    }
}

impl AttentionSpec {
    pub fn from_toml(text: &str) -> SpecResult<Self> {
        crate::toml_doc::from_toml::<AttentionFile>(text).map(|f| f.attention)
    }

    /// Validates the numbers; error paths start with `attention.`.
    pub fn shape(&self) -> SpecResult<AttentionShape> {
        self.shape_inner().map_err(|e| e.under("attention"))
    }

    fn shape_inner(&self) -> SpecResult<AttentionShape> {
        let passes = match self.passes {
            1..=3 => self.passes as u8,
            p => {
                return Err(SpecError::new("passes", format!("must be 1, 2 or 3 (got {p})")));
            }
        };
        let heads = positive("heads", self.heads)?;
        let kv_heads = positive("kv_heads", self.kv_heads.unwrap_or(self.heads))?;
        if heads % kv_heads != 0 {
            return Err(SpecError::new("kv_heads", format!("must divide heads ({heads}), got {kv_heads}")));
        }
        let head_dim = positive("head_dim", self.head_dim)?;
        Ok(AttentionShape {
            passes,
            phase: Phase::new(self.phase, positive("seq", self.seq)?),
            batch: positive("batch", self.batch)?,
            heads,
            kv_heads,
            head_dim,
            value_dim: positive("value_dim", self.value_dim.unwrap_or(self.head_dim))?,
            block: positive("block", self.block)?,
            causal: self.causal,
            elem_bytes: positive("elem_bytes", self.elem_bytes)?,
        })
    }
}

/// How the head ranks are written on the query side and on the key/value side.
struct Heads {
    q: &'static str,
    kv: &'static str,
}

impl AttentionShape {
    fn heads_ix(&self) -> Heads {
        if self.kv_heads == self.heads { Heads { q: "h", kv: "h" } } else { Heads { q: "g,r", kv: "g" } }
    }

    /// Adds this attention's parameters, ranks, partition and running tensors to a cascade spec.
    pub fn add_to(&self, spec: &mut CascadeSpec, io: AttentionIo<'_>) {
        self.add_ranks(spec);
        spec.causal = self.causal;
        if let Phase::Decode { .. } = self.phase {
            for t in [io.k, io.v] {
                spec.tensors.insert(t.into(), TensorSpec { role: Some(Role::KvCache), ..TensorSpec::default() });
            }
        }
        if self.passes == 1 {
            for (t, v) in [("RM", f64::NEG_INFINITY), ("RD", 0.0), ("RNV", 0.0)] {
                spec.tensors.insert(t.into(), TensorSpec { init: Some(v), ..TensorSpec::default() });
            }
        }
        spec.einsums.extend(self.einsums(io));
    }

    /// The parameters and ranks attention indexes (`b`, `p`, `m`, `e`, `f`, and `h` or `g, r`),
    /// with the key partition of the 1- and 2-pass cascades.
    pub fn add_ranks(&self, spec: &mut CascadeSpec) {
        let p = &mut spec.params;
        p.insert("B".into(), self.batch as i64);
        p.insert("P".into(), self.phase.queries() as i64);
        p.insert("M".into(), self.phase.keys() as i64);
        p.insert("E".into(), self.head_dim as i64);
        p.insert("F".into(), self.value_dim as i64);
        let r = &mut spec.ranks;
        for (rank, param) in [("b", "B"), ("p", "P"), ("m", "M"), ("e", "E"), ("f", "F")] {
            r.insert(rank.into(), Size::Param(param.into()));
        }
        if self.kv_heads == self.heads {
            spec.params.insert("H".into(), self.heads as i64);
            spec.ranks.insert("h".into(), Size::Param("H".into()));
        } else {
            spec.params.insert("G".into(), self.kv_heads as i64);
            spec.params.insert("R".into(), (self.heads / self.kv_heads) as i64);
            spec.ranks.insert("g".into(), Size::Param("G".into()));
            spec.ranks.insert("r".into(), Size::Param("R".into()));
        }
        if self.passes < 3 {
            spec.params.insert("M0".into(), self.block as i64);
            spec.partitions.insert(
                "m".into(),
                PartitionSpec { outer: "m1".into(), inner: "m0".into(), tile: Size::Param("M0".into()) },
            );
        }
    }

    /// A standalone cascade of this attention.
    pub fn cascade_spec(&self, name: &str, description: &str) -> CascadeSpec {
        let mut spec = CascadeSpec::new(name, description, self.elem_bytes);
        self.add_to(&mut spec, AttentionIo::default());
        spec
    }

    /// The Einsums of the chosen cascade, written in FuseMax's tensor names.
    fn einsums(&self, io: AttentionIo<'_>) -> Vec<EinsumSpec> {
        let Heads { q: h, kv } = self.heads_ix();
        let AttentionIo { q, k, v, out } = io;
        let e = |s: String| EinsumSpec::new(s);
        match self.passes {
            3 => vec![
                e(format!("QK[b,{h},m,p] = {q}[b,{h},e,p] * {k}[b,{kv},e,m]")).masked("m", "p"),
                e(format!("GM[b,{h},p] = QK[b,{h},m,p]")).reduce(ReduceOp::Max),
                e(format!("SN[b,{h},m,p] = exp(QK[b,{h},m,p] - GM[b,{h},p])")),
                e(format!("SD[b,{h},p] = SN[b,{h},m,p]")),
                e(format!("A[b,{h},m,p] = SN[b,{h},m,p] / SD[b,{h},p]")),
                e(format!("{out}[b,{h},f,p] = A[b,{h},m,p] * {v}[b,{kv},f,m]")),
            ],
            2 => vec![
                e(format!("BQK[b,{h},m1,m0,p] = {q}[b,{h},e,p] * {k}[b,{kv},e,(m1,m0)]")).masked("m", "p"),
                e(format!("LM[b,{h},m1,p] = BQK[b,{h},m1,m0,p]")).reduce(ReduceOp::Max),
                e(format!("GM[b,{h},p] = LM[b,{h},m1,p]")).reduce(ReduceOp::Max),
                e(format!("SLN[b,{h},m1,m0,p] = exp(BQK[b,{h},m1,m0,p] - LM[b,{h},m1,p])")),
                e(format!("SLD[b,{h},m1,p] = SLN[b,{h},m1,m0,p]")),
                e(format!("PRM[b,{h},m1,p] = exp(LM[b,{h},m1,p] - GM[b,{h},p])")),
                e(format!("SPD[b,{h},m1,p] = SLD[b,{h},m1,p] * PRM[b,{h},m1,p]")),
                e(format!("SD[b,{h},p] = SPD[b,{h},m1,p]")),
                e(format!("SPN[b,{h},m1,m0,p] = SLN[b,{h},m1,m0,p] * PRM[b,{h},m1,p]")),
                e(format!("A[b,{h},m1,m0,p] = SPN[b,{h},m1,m0,p] / SD[b,{h},p]")),
                e(format!("{out}[b,{h},f,p] = A[b,{h},m1,m0,p] * {v}[b,{kv},f,(m1,m0)]")),
            ],
            _ => vec![
                e(format!("BQK[b,{h},m1,m0,p] = {q}[b,{h},e,p] * {k}[b,{kv},e,(m1,m0)]")).masked("m", "p"),
                e(format!("LM[b,{h},m1,p] = BQK[b,{h},m1,m0,p]")).reduce(ReduceOp::Max),
                e(format!("RM[b,{h},m1+1,p] = max(RM[b,{h},m1,p], LM[b,{h},m1,p])")),
                e(format!("SLN[b,{h},m1,m0,p] = exp(BQK[b,{h},m1,m0,p] - RM[b,{h},m1+1,p])")),
                e(format!("SLD[b,{h},m1,p] = SLN[b,{h},m1,m0,p]")),
                e(format!("SLNV[b,{h},f,m1,p] = SLN[b,{h},m1,m0,p] * {v}[b,{kv},f,(m1,m0)]")),
                e(format!("PRM[b,{h},m1,p] = exp(RM[b,{h},m1,p] - RM[b,{h},m1+1,p])")),
                e(format!("SPD[b,{h},m1,p] = RD[b,{h},m1,p] * PRM[b,{h},m1,p]")),
                e(format!("RD[b,{h},m1+1,p] = SLD[b,{h},m1,p] + SPD[b,{h},m1,p]")),
                e(format!("SPNV[b,{h},f,m1,p] = RNV[b,{h},f,m1,p] * PRM[b,{h},m1,p]")),
                e(format!("RNV[b,{h},f,m1+1,p] = SLNV[b,{h},f,m1,p] + SPNV[b,{h},f,m1,p]")),
                e(format!("{out}[b,{h},f,p] = RNV[b,{h},f,last(m1),p] / RD[b,{h},last(m1),p]")),
            ],
        }
    }
}
