//! Cascade specs (the TOML form) and their validation into a [`Cascade`].
//!
//! A cascade file looks like this (FuseMax's 3-pass softmax, abridged):
//!
//! ```toml
//! [cascade]
//! name = "softmax-3pass"
//! params = { N = 1024 }
//! ranks = { m = "N", p = "N", e = 64 }
//! [[cascade.einsums]]
//! expr = "GM[p] = QK[m,p]"
//! reduce = "max"
//! ```
//!
//! Tensor shapes are inferred from their accesses (positionally, as in Timeloop: a position
//! may be indexed by any rank of the same size); inputs are the tensors no Einsum produces.
//! Every rule the IR relies on is checked here and reported with the key path of the culprit.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::einsum::{
    Access, Cascade, CausalMask, Einsum, Index, Partition, Rank, RankId, ReduceOp, Role, Tensor, TensorId,
};
use crate::error::{SpecError, SpecResult, positive};
use crate::expr::{AccessAst, IndexAst, parse_einsum};

/// A cascade file: one `[cascade]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeFile {
    pub cascade: CascadeSpec,
}

/// The serde mirror of a cascade: sizes may name parameters, Einsums are text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Bytes per element of every tensor unless the tensor says otherwise.
    #[serde(default = "default_elem_bytes")]
    pub elem_bytes: i64,
    /// Whether Einsums that carry a `causal_mask` apply it.
    #[serde(default)]
    pub causal: bool,
    /// Named sizes that ranks and tiles may refer to.
    #[serde(default)]
    pub params: BTreeMap<String, i64>,
    pub ranks: BTreeMap<String, Size>,
    /// Keyed by the parent rank: `m = { outer = "m1", inner = "m0", tile = 256 }`.
    #[serde(default)]
    pub partitions: BTreeMap<String, PartitionSpec>,
    #[serde(default)]
    pub tensors: BTreeMap<String, TensorSpec>,
    pub einsums: Vec<EinsumSpec>,
}

fn default_elem_bytes() -> i64 {
    2
}

/// A size: a literal or the name of a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Literal(i64),
    Param(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    pub outer: String,
    pub inner: String,
    pub tile: Size,
}

/// Optional facts about a tensor that its accesses cannot tell.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub role: Option<Role>,
    /// Initial value of a running (iterative) tensor; TOML accepts `-inf`.
    pub init: Option<f64>,
    pub elem_bytes: Option<i64>,
    /// Bits per element, for formats narrower than a byte (4-bit labels); excludes `elem_bytes`.
    pub elem_bits: Option<i64>,
    /// A tensor the step produces that joins the KV cache (a layer's new keys and values): a
    /// system stores it wherever it keeps the cache.
    #[serde(default)]
    pub cache: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EinsumSpec {
    /// Defaults to the output tensor's name.
    pub name: Option<String>,
    pub expr: String,
    /// Reduction over the ranks absent from the output; `sum` unless given.
    pub reduce: Option<ReduceOp>,
    pub causal_mask: Option<MaskSpec>,
}

/// Names the key and query ranks (parent ranks if partitioned) of a maskable score Einsum.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    pub key: String,
    pub query: String,
}

impl EinsumSpec {
    pub fn new(expr: impl Into<String>) -> Self {
        EinsumSpec { name: None, expr: expr.into(), reduce: None, causal_mask: None }
    }
    pub fn reduce(mut self, op: ReduceOp) -> Self {
        self.reduce = Some(op);
        self
    }
    pub fn masked(mut self, key: &str, query: &str) -> Self {
        self.causal_mask = Some(MaskSpec { key: key.into(), query: query.into() });
        self
    }
}

impl CascadeSpec {
    /// An empty cascade to fill programmatically (the attention generator, the layer builder).
    pub fn new(name: impl Into<String>, description: impl Into<String>, elem_bytes: u64) -> Self {
        CascadeSpec {
            name: name.into(),
            description: description.into(),
            elem_bytes: elem_bytes as i64,
            causal: false,
            params: BTreeMap::new(),
            ranks: BTreeMap::new(),
            partitions: BTreeMap::new(),
            tensors: BTreeMap::new(),
            einsums: Vec::new(),
        }
    }

    /// Parses the TOML text of a cascade file.
    pub fn from_toml(text: &str) -> SpecResult<Self> {
        crate::toml_doc::from_toml::<CascadeFile>(text).map(|f| f.cascade)
    }

    /// Validates and resolves the spec. Error paths start with `cascade.`.
    pub fn build(&self) -> SpecResult<Cascade> {
        Builder::new(self).and_then(Builder::finish).map_err(|e| e.under("cascade"))
    }
}

/// Most iteration points one Einsum may have, and most bytes one tensor may hold: below this an
/// Einsum's accesses at a level times their element bytes (at most 8), reads and writes of all
/// its operands together, stay below 2⁶⁴. BERT's QK at 1M tokens and batch 64 has 2^55.6 points.
pub const MAX_POINTS: u128 = 1 << 58;

/// Most iteration points of all of a cascade's Einsums together (XLM's layer at 1M tokens and
/// batch 64 has 2^58.04): sums over Einsums stay below 2⁶⁴ for 2-byte elements whatever the
/// mapping, and for any mapping that reuses what it reads.
pub const MAX_TOTAL_POINTS: u128 = 1 << 60;

/// Rejects a cascade too large for 64-bit counts, naming the Einsum or tensor and its size.
fn check_sizes(c: &Cascade) -> SpecResult<()> {
    let size = |ranks: &[RankId]| -> u128 {
        ranks.iter().map(|r| u128::from(c.rank(*r).size)).fold(1u128, |a, b| a.saturating_mul(b))
    };
    let mut total = 0u128;
    for (i, e) in c.einsums.iter().enumerate() {
        // Partition pairs span their parent exactly; counting both halves only overestimates.
        let points = size(&e.iteration_ranks);
        total = total.saturating_add(points);
        if points > MAX_POINTS {
            return Err(SpecError::new(
                format!("einsums[{i}]"),
                format!(
                    "Einsum {} iterates over {points} points, more than 2^58 (the counts must fit 64 bits)",
                    e.name
                ),
            ));
        }
    }
    if total > MAX_TOTAL_POINTS {
        return Err(SpecError::new(
            "einsums",
            format!("the Einsums iterate over {total} points together, more than 2^60 (the counts must fit 64 bits)"),
        ));
    }
    for t in &c.tensors {
        let bytes =
            t.shape.iter().map(|&n| u128::from(n)).fold(u128::from(t.elem_bits), |a, b| a.saturating_mul(b)) / 8;
        if bytes > MAX_POINTS {
            return Err(SpecError::new(
                format!("tensors.{}", t.name),
                format!("holds {bytes} bytes, more than 2^58 (the counts must fit 64 bits)"),
            ));
        }
    }
    Ok(())
}

/// An access with its names resolved: tensor, indices, and a gathered position's ranks.
type Resolved = (String, Vec<Index>, Vec<RankId>);

/// Per-position facts one access tells about its tensor.
struct Position {
    extent: u64,
    iterative: bool,
}

struct Builder<'a> {
    spec: &'a CascadeSpec,
    ranks: Vec<Rank>,
    partitions: Vec<Partition>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'a> Builder<'a> {
    fn new(spec: &'a CascadeSpec) -> SpecResult<Self> {
        if spec.name.trim().is_empty() {
            return Err(SpecError::new("name", "must not be empty"));
        }
        for (k, &v) in &spec.params {
            positive(&format!("params.{k}"), v)?;
        }
        positive("elem_bytes", spec.elem_bytes)?;
        let mut b = Builder { spec, ranks: Vec::new(), partitions: Vec::new() };
        for (name, size) in &spec.ranks {
            if !is_identifier(name) || name == "last" {
                return Err(SpecError::new(
                    format!("ranks.{name}"),
                    "a rank name must be an identifier other than `last`",
                ));
            }
            let size = b.size(&format!("ranks.{name}"), size)?;
            b.ranks.push(Rank { name: name.clone(), size });
        }
        for (parent, p) in &spec.partitions {
            let path = format!("partitions.{parent}");
            let parent_id = b
                .rank_id(parent)
                .ok_or_else(|| SpecError::new(&path, format!("unknown rank `{parent}` (ranks: {})", b.rank_list())))?;
            let tile = b.size(&format!("{path}.tile"), &p.tile)?;
            for (key, name) in [("outer", &p.outer), ("inner", &p.inner)] {
                if !is_identifier(name) || b.rank_id(name).is_some() {
                    return Err(SpecError::new(
                        format!("{path}.{key}"),
                        format!("`{name}` must be a new rank name (not an existing rank)"),
                    ));
                }
            }
            if p.outer == p.inner {
                return Err(SpecError::new(&path, "outer and inner ranks must differ"));
            }
            let parent_size = b.ranks[parent_id.0].size;
            let outer = RankId(b.ranks.len());
            b.ranks.push(Rank { name: p.outer.clone(), size: parent_size.div_ceil(tile) });
            let inner = RankId(b.ranks.len());
            b.ranks.push(Rank { name: p.inner.clone(), size: tile });
            b.partitions.push(Partition { parent: parent_id, outer, inner, tile });
        }
        if spec.einsums.is_empty() {
            return Err(SpecError::new("einsums", "a cascade needs at least one einsum"));
        }
        Ok(b)
    }

    fn rank_list(&self) -> String {
        self.ranks.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    fn rank_id(&self, name: &str) -> Option<RankId> {
        self.ranks.iter().position(|r| r.name == name).map(RankId)
    }

    fn size(&self, path: &str, size: &Size) -> SpecResult<u64> {
        match size {
            Size::Literal(v) => positive(path, *v),
            Size::Param(name) => match self.spec.params.get(name) {
                Some(&v) => positive(&format!("params.{name}"), v),
                None => {
                    let known: Vec<&str> = self.spec.params.keys().map(String::as_str).collect();
                    Err(SpecError::new(path, format!("unknown parameter `{name}` (params: {})", known.join(", "))))
                }
            },
        }
    }

    fn resolve_rank(&self, path: &str, name: &str) -> SpecResult<RankId> {
        self.rank_id(name)
            .ok_or_else(|| SpecError::new(path, format!("unknown rank `{name}` (ranks: {})", self.rank_list())))
    }

    fn resolve_index(&self, path: &str, ix: &IndexAst) -> SpecResult<Index> {
        Ok(match ix {
            IndexAst::Var(n) => Index::Var(self.resolve_rank(path, n)?),
            IndexAst::Next(n) => Index::Next(self.resolve_rank(path, n)?),
            IndexAst::Last(n) => Index::Last(self.resolve_rank(path, n)?),
            IndexAst::Gather(..) => {
                return Err(SpecError::new(path, "only an input may gather a position (`rank=Index[..]`)"));
            }
            IndexAst::Joined(o, i) => {
                let (outer, inner) = (self.resolve_rank(path, o)?, self.resolve_rank(path, i)?);
                let p = self.partitions.iter().find(|p| p.outer == outer && p.inner == inner).ok_or_else(|| {
                    SpecError::new(
                        path,
                        format!("`({o},{i})` is not a partition (declare it under [cascade.partitions])"),
                    )
                })?;
                Index::Joined { outer, inner, tile: p.tile }
            }
        })
    }

    fn position(&self, ix: &Index) -> Position {
        match *ix {
            Index::Var(r) | Index::Gather { rank: r, .. } | Index::Slot(r) => {
                Position { extent: self.ranks[r.0].size, iterative: false }
            }
            Index::Next(r) | Index::Last(r) => Position { extent: self.ranks[r.0].size, iterative: true },
            Index::Joined { outer, .. } => {
                let p = self.partitions.iter().find(|p| p.outer == outer).expect("joined index names a partition");
                Position { extent: self.ranks[p.parent.0].size, iterative: false }
            }
        }
    }

    fn finish(self) -> SpecResult<Cascade> {
        let spec = self.spec;
        // Parse every Einsum and resolve its names. A gathered position's index access becomes
        // one more input, after the map's operands.
        let mut parsed = Vec::new();
        for (i, e) in spec.einsums.iter().enumerate() {
            let path = format!("einsums[{i}].expr");
            let ast = parse_einsum(&e.expr).map_err(|m| SpecError::new(&path, m))?;
            let plain = |a: &AccessAst| -> SpecResult<Resolved> {
                let idx = a.indices.iter().map(|ix| self.resolve_index(&path, ix)).collect::<SpecResult<Vec<_>>>()?;
                Ok((a.tensor.clone(), idx, Vec::new()))
            };
            let out = plain(&ast.output)?;
            let mut ins = Vec::new();
            let mut index_inputs = Vec::new();
            for a in &ast.inputs {
                let mut idx = Vec::new();
                let mut via = Vec::new();
                for ix in &a.indices {
                    let IndexAst::Gather(rank, index) = ix else {
                        idx.push(self.resolve_index(&path, ix)?);
                        continue;
                    };
                    if !via.is_empty() || index.indices.is_empty() {
                        return Err(SpecError::new(&path, "an access may gather one position"));
                    }
                    let rank = self.resolve_rank(&path, rank)?;
                    let resolved = plain(index)?;
                    for ix in &resolved.1 {
                        if !matches!(ix, Index::Var(_) | Index::Joined { .. }) {
                            return Err(SpecError::new(
                                &path,
                                format!(
                                    "the index access `{}[..]` may name plain ranks and partitions only",
                                    index.tensor
                                ),
                            ));
                        }
                    }
                    via = Access { tensor: TensorId(0), indices: resolved.1.clone(), via: Vec::new() }.ranks();
                    idx.push(Index::Gather { rank, input: ast.inputs.len() + index_inputs.len() });
                    index_inputs.push(resolved);
                }
                ins.push((a.tensor.clone(), idx, via));
            }
            ins.extend(index_inputs);
            parsed.push((ast.map, ast.select, out, ins));
        }

        // Tensors in order of first appearance, with shapes inferred and checked.
        let mut names: Vec<String> = Vec::new();
        let mut shapes: Vec<Vec<Position>> = Vec::new();
        let mut producer: Vec<Option<usize>> = Vec::new();
        let mut consumed: Vec<bool> = Vec::new();
        for (i, (_, _, out, ins)) in parsed.iter().enumerate() {
            let path = format!("einsums[{i}].expr");
            for (k, (tname, idx, _)) in std::iter::once(out).chain(ins.iter()).enumerate() {
                let pos: Vec<Position> = idx.iter().map(|ix| self.position(ix)).collect();
                let t = match names.iter().position(|n| n == tname) {
                    Some(t) => t,
                    None => {
                        names.push(tname.clone());
                        shapes.push(pos.iter().map(|p| Position { extent: p.extent, iterative: false }).collect());
                        producer.push(None);
                        consumed.push(false);
                        names.len() - 1
                    }
                };
                if shapes[t].len() != pos.len() {
                    return Err(SpecError::new(
                        &path,
                        format!("tensor `{tname}` has {} positions here but {} elsewhere", pos.len(), shapes[t].len()),
                    ));
                }
                for (j, p) in pos.iter().enumerate() {
                    if shapes[t][j].extent != p.extent {
                        return Err(SpecError::new(
                            &path,
                            format!(
                                "position {j} of tensor `{tname}` has extent {} here but {} elsewhere",
                                p.extent, shapes[t][j].extent
                            ),
                        ));
                    }
                    shapes[t][j].iterative |= p.iterative;
                }
                if k == 0 {
                    if let Some(prev) = producer[t] {
                        return Err(SpecError::new(
                            format!("einsums[{i}]"),
                            format!(
                                "tensor `{tname}` is already produced by einsums[{prev}]; each tensor is produced once"
                            ),
                        ));
                    }
                    producer[t] = Some(i);
                } else {
                    consumed[t] = true;
                }
            }
        }

        // Declared tensor facts.
        for name in spec.tensors.keys() {
            if !names.contains(name) {
                return Err(SpecError::new(format!("tensors.{name}"), "no einsum uses this tensor"));
            }
        }
        let mut tensors = Vec::new();
        for (t, name) in names.iter().enumerate() {
            let decl = spec.tensors.get(name).cloned().unwrap_or_default();
            let path = format!("tensors.{name}");
            let role = match (decl.role, producer[t]) {
                (Some(r), Some(p)) if r.is_external() => {
                    return Err(SpecError::new(
                        format!("{path}.role"),
                        format!("`{}` is for tensors no einsum produces, but einsums[{p}] produces `{name}`", r.name()),
                    ));
                }
                (Some(r), None) if !r.is_external() => {
                    return Err(SpecError::new(
                        format!("{path}.role"),
                        format!("no einsum produces `{name}`, so its role must be input, weight or kv_cache"),
                    ));
                }
                (Some(r), _) => r,
                (None, None) => Role::Input,
                (None, Some(_)) if consumed[t] => Role::Intermediate,
                (None, Some(_)) => Role::Output,
            };
            let iterative: Vec<usize> = shapes[t].iter().enumerate().filter(|p| p.1.iterative).map(|p| p.0).collect();
            if iterative.len() > 1 {
                return Err(SpecError::new(&path, "a tensor may step through one iterative rank only"));
            }
            let iterative_position = iterative.first().copied();
            if iterative_position.is_some() && decl.init.is_none() {
                return Err(SpecError::new(
                    format!("{path}.init"),
                    format!("`{name}` is a running (iterative) tensor and needs an initial value"),
                ));
            }
            if let Some(v) = decl.init
                && v.is_nan()
            {
                return Err(SpecError::new(format!("{path}.init"), "must be a number or ±inf, not nan"));
            }
            if decl.cache && producer[t].is_none() {
                return Err(SpecError::new(
                    format!("{path}.cache"),
                    format!("no einsum produces `{name}`; only what the step produces joins the cache"),
                ));
            }
            let elem_bits = match (decl.elem_bits, decl.elem_bytes) {
                (Some(_), Some(_)) => {
                    return Err(SpecError::new(
                        format!("{path}.elem_bits"),
                        "give `elem_bits` or `elem_bytes`, not both",
                    ));
                }
                (Some(bits), None) => {
                    let bits = positive(&format!("{path}.elem_bits"), bits)?;
                    if bits > 64 {
                        return Err(SpecError::new(
                            format!("{path}.elem_bits"),
                            format!("must be at most 64 (got {bits})"),
                        ));
                    }
                    bits
                }
                (None, bytes) => 8 * positive(&format!("{path}.elem_bytes"), bytes.unwrap_or(spec.elem_bytes))?,
            };
            let shape = shapes[t].iter().map(|p| p.extent + u64::from(p.iterative)).collect();
            tensors.push(Tensor {
                name: name.clone(),
                shape,
                iterative_position,
                elem_bits,
                role,
                init: decl.init,
                cached: decl.cache,
            });
        }

        let iterative_ranks: Vec<RankId> = parsed
            .iter()
            .flat_map(|(_, _, out, ins)| std::iter::once(out).chain(ins).flat_map(|a| a.1.iter()))
            .filter_map(|ix| if let Index::Next(r) = ix { Some(*r) } else { None })
            .collect();

        // Einsums.
        let mut einsums = Vec::new();
        for (i, (map, select, (oname, mut oidx, _), ins)) in parsed.into_iter().enumerate() {
            let espec = &spec.einsums[i];
            let path = format!("einsums[{i}]");
            if select {
                self.select(&path, espec, &mut oidx, &ins)?;
            }
            let mut output_ranks = Vec::new();
            for ix in &oidx {
                match *ix {
                    Index::Var(r) | Index::Next(r) => output_ranks.push(r),
                    Index::Joined { outer, inner, .. } => output_ranks.extend([outer, inner]),
                    Index::Slot(_) => {}
                    Index::Last(_) => {
                        return Err(SpecError::new(format!("{path}.expr"), "`last(..)` may only be read, not written"));
                    }
                    Index::Gather { .. } => unreachable!("an output never resolves to a gather"),
                }
            }
            for (k, r) in output_ranks.iter().enumerate() {
                if output_ranks[..k].contains(r) {
                    return Err(SpecError::new(
                        format!("{path}.expr"),
                        format!("rank `{}` appears twice in the output", self.ranks[r.0].name),
                    ));
                }
            }
            let mut iteration_ranks = output_ranks.clone();
            for (_, idx, _) in &ins {
                for ix in idx {
                    let rs = match *ix {
                        Index::Var(r) | Index::Next(r) => vec![r],
                        Index::Joined { outer, inner, .. } => vec![outer, inner],
                        Index::Last(_) | Index::Gather { .. } | Index::Slot(_) => vec![],
                    };
                    for r in rs {
                        if !iteration_ranks.contains(&r) {
                            iteration_ranks.push(r);
                        }
                    }
                }
            }
            let n_output_ranks = output_ranks.len();
            let reduced = n_output_ranks < iteration_ranks.len();
            if espec.reduce == Some(ReduceOp::Top) && !select {
                return Err(SpecError::new(format!("{path}.reduce"), "`top` is written as `top(..)` in the expr"));
            }
            if espec.reduce.is_some() && !reduced {
                return Err(SpecError::new(
                    format!("{path}.reduce"),
                    "no rank is reduced (every rank of the inputs is in the output)",
                ));
            }
            let its: Vec<RankId> =
                iterative_ranks.iter().copied().filter(|r| iteration_ranks.contains(r)).collect::<Vec<_>>();
            let mut its_unique = its.clone();
            its_unique.dedup();
            its_unique.sort();
            its_unique.dedup();
            if its_unique.len() > 1 {
                return Err(SpecError::new(
                    format!("{path}.expr"),
                    "an einsum may step through one iterative rank only",
                ));
            }
            let iterative = its_unique.first().copied();
            if let Some(r) = iterative
                && !output_ranks.contains(&r)
            {
                return Err(SpecError::new(
                    format!("{path}.expr"),
                    format!("the iterative rank `{}` cannot be reduced", self.ranks[r.0].name),
                ));
            }
            let tid = |n: &str| TensorId(names.iter().position(|x| x == n).expect("tensor was collected"));
            let output = Access { tensor: tid(&oname), indices: oidx, via: Vec::new() };
            let inputs: Vec<Access> =
                ins.into_iter().map(|(n, indices, via)| Access { tensor: tid(&n), indices, via }).collect();
            let mask = match (&espec.causal_mask, spec.causal) {
                (Some(m), true) => {
                    Some(self.mask(&format!("{path}.causal_mask"), m, &iteration_ranks, n_output_ranks)?)
                }
                _ => None,
            };
            einsums.push(Einsum {
                name: espec.name.clone().unwrap_or_else(|| oname.clone()),
                text: espec.expr.clone(),
                output,
                inputs,
                map,
                reduce: if select { ReduceOp::Top } else { espec.reduce.unwrap_or(ReduceOp::Sum) },
                mask,
                iteration_ranks,
                n_output_ranks,
                iterative,
            });
        }

        let cascade = Cascade {
            name: spec.name.clone(),
            description: spec.description.clone(),
            ranks: self.ranks,
            partitions: self.partitions,
            tensors,
            einsums,
        };
        check_order(&cascade)?;
        check_sizes(&cascade)?;
        Ok(cascade)
    }

    /// Checks a `top(..)` Einsum and marks its output's slot rank: one plain input, one output
    /// rank the input lacks (the slot, of size `k`), one input rank the output lacks (the
    /// candidates), and `k` no larger than the candidates.
    fn select(&self, path: &str, espec: &EinsumSpec, oidx: &mut [Index], ins: &[Resolved]) -> SpecResult<()> {
        let expr = format!("{path}.expr");
        if espec.reduce.is_some_and(|r| r != ReduceOp::Top) {
            return Err(SpecError::new(
                format!("{path}.reduce"),
                "a `top(..)` einsum selects; it takes no other reduce",
            ));
        }
        if espec.causal_mask.is_some() {
            return Err(SpecError::new(format!("{path}.causal_mask"), "a `top(..)` einsum cannot be masked"));
        }
        let [(_, input, via)] = ins else { unreachable!("top(..) parses one operand") };
        if !via.is_empty() || input.iter().any(|ix| !matches!(ix, Index::Var(_))) {
            return Err(SpecError::new(&expr, "`top(..)` reads plain ranks only"));
        }
        let rank = |ix: &Index| if let Index::Var(r) = *ix { Some(r) } else { None };
        let name = |r: RankId| self.ranks[r.0].name.clone();
        let slots: Vec<usize> =
            (0..oidx.len()).filter(|&p| rank(&oidx[p]).is_some_and(|r| !input.contains(&Index::Var(r)))).collect();
        let candidates: Vec<RankId> =
            input.iter().filter_map(rank).filter(|r| !oidx.contains(&Index::Var(*r))).collect();
        let (&[slot], &[from]) = (slots.as_slice(), candidates.as_slice()) else {
            return Err(SpecError::new(
                &expr,
                "`top(..)` needs one output rank the input lacks (k, the selected slots) and one input rank the output lacks (the candidates)",
            ));
        };
        let slot_rank = rank(&oidx[slot]).expect("a plain rank");
        let (k, n) = (self.ranks[slot_rank.0].size, self.ranks[from.0].size);
        if k > n {
            return Err(SpecError::new(
                &expr,
                format!(
                    "`top(..)` keeps k = {k} (rank `{}`) of {n} candidates (rank `{}`): k is larger than the candidates",
                    name(slot_rank),
                    name(from)
                ),
            ));
        }
        oidx[slot] = Index::Slot(slot_rank);
        Ok(())
    }

    fn mask(&self, path: &str, m: &MaskSpec, iter: &[RankId], n_out: usize) -> SpecResult<CausalMask> {
        let locate = |key: &str, name: &str| -> SpecResult<(Index, u64)> {
            let r = self.resolve_rank(&format!("{path}.{key}"), name)?;
            let size = self.ranks[r.0].size;
            if iter[..n_out].contains(&r) {
                return Ok((Index::Var(r), size));
            }
            if let Some(p) = self.partitions.iter().find(|p| p.parent == r)
                && iter[..n_out].contains(&p.outer)
                && iter[..n_out].contains(&p.inner)
            {
                return Ok((Index::Joined { outer: p.outer, inner: p.inner, tile: p.tile }, size));
            }
            Err(SpecError::new(
                format!("{path}.{key}"),
                format!("rank `{name}` is not an output rank of this einsum (a masked rank cannot be reduced)"),
            ))
        };
        let (key, nk) = locate("key", &m.key)?;
        let (query, nq) = locate("query", &m.query)?;
        if nk < nq {
            return Err(SpecError::new(path, format!("more queries ({nq}) than keys ({nk})")));
        }
        Ok(CausalMask { key, query, offset: nk - nq })
    }
}

/// Checks that consumers follow producers, allowing only loop-carried reads of running tensors.
///
/// Reading `RD[m1]` before the Einsum that writes `RD[m1+1]` is fine: it reads the previous
/// iteration. Any other read before the producer is an error, reported as a cycle when the
/// dependencies form one.
fn check_order(c: &Cascade) -> SpecResult<()> {
    // Iterative Einsums over the same rank must be consecutive: they run as one loop.
    let mut seen_groups: Vec<(RankId, usize)> = Vec::new();
    for (i, e) in c.einsums.iter().enumerate() {
        if let Some(r) = e.iterative {
            let prev_in_group = i > 0 && c.einsums[i - 1].iterative == Some(r);
            if !prev_in_group && seen_groups.iter().any(|g| g.0 == r) {
                return Err(SpecError::new(
                    format!("einsums[{i}]"),
                    format!("einsums that step through `{}` must be consecutive", c.rank(r).name),
                ));
            }
            if !prev_in_group {
                seen_groups.push((r, i));
            }
        }
    }
    let carried = |reader: &Einsum, access: &Access, writer: usize| -> bool {
        let w = &c.einsums[writer];
        let r = match reader.iterative {
            Some(r) => r,
            None => return false,
        };
        w.iterative == Some(r) && w.output.indices.contains(&Index::Next(r)) && access.indices.contains(&Index::Var(r))
    };
    // Edges that must point forward.
    let mut edges: Vec<(usize, usize, TensorId)> = Vec::new();
    for (i, e) in c.einsums.iter().enumerate() {
        for a in &e.inputs {
            if let Some(j) = c.producer(a.tensor)
                && !carried(e, a, j)
            {
                edges.push((j, i, a.tensor));
            }
            for ix in &a.indices {
                if let Index::Last(r) = ix
                    && e.iterative == Some(*r)
                {
                    return Err(SpecError::new(
                        format!("einsums[{i}].expr"),
                        format!("`last({})` is read inside the loop over `{}`", c.rank(*r).name, c.rank(*r).name),
                    ));
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(c.einsums.len(), &edges) {
        let names: Vec<&str> = cycle.iter().map(|&i| c.einsums[i].name.as_str()).collect();
        return Err(SpecError::new(
            format!("einsums[{}]", cycle[0]),
            format!("the einsums form a cycle: {} -> {}", names.join(" -> "), names[0]),
        ));
    }
    for &(j, i, t) in &edges {
        if j >= i {
            return Err(SpecError::new(
                format!("einsums[{i}]"),
                format!(
                    "reads `{}` before einsums[{j}] produces it; order consumers after producers",
                    c.tensor(t).name
                ),
            ));
        }
    }
    Ok(())
}

fn find_cycle(n: usize, edges: &[(usize, usize, TensorId)]) -> Option<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b, _) in edges {
        adj[a].push(b);
    }
    // 0 = unvisited, 1 = on stack, 2 = done.
    let mut state = vec![0u8; n];
    let mut stack: Vec<usize> = Vec::new();
    fn dfs(u: usize, adj: &[Vec<usize>], state: &mut [u8], stack: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[u] = 1;
        stack.push(u);
        for &v in &adj[u] {
            if state[v] == 1 {
                let start = stack.iter().position(|&x| x == v).expect("v is on the stack");
                return Some(stack[start..].to_vec());
            }
            if state[v] == 0
                && let Some(c) = dfs(v, adj, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[u] = 2;
        None
    }
    (0..n).find_map(|u| if state[u] == 0 { dfs(u, &adj, &mut state, &mut stack) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(toml: &str) -> SpecResult<Cascade> {
        CascadeSpec::from_toml(toml)?.build()
    }

    const GEMM: &str = r#"
[cascade]
name = "gemm"
params = { M = 8, N = 4, K = 6 }
ranks = { m = "M", n = "N", k = "K" }
[[cascade.einsums]]
expr = "Z[m,n] = A[k,m] * B[k,n]"
"#;

    #[test]
    fn gemm_builds_with_inferred_roles() {
        let c = build(GEMM).unwrap();
        assert_eq!(c.tensors().len(), 3);
        assert_eq!(c.tensor(c.tensor_id("Z").unwrap()).role, Role::Output);
        assert_eq!(c.tensor(c.tensor_id("A").unwrap()).role, Role::Input);
        let counts = c.counts(&c.einsums()[0]);
        assert_eq!(counts.points, 8 * 4 * 6);
        assert_eq!(counts.reduce_ops, 8 * 4 * 5);
        assert_eq!(c.macs(), 8 * 4 * 6);
    }

    #[test]
    fn ragged_partition_counts_exist_points_only() {
        let c = build(
            r#"
[cascade]
name = "ragged"
ranks = { m = 10, p = 3 }
partitions = { m = { outer = "m1", inner = "m0", tile = 4 } }
[[cascade.einsums]]
expr = "LM[m1,p] = X[(m1,m0),p]"
reduce = "max"
"#,
        )
        .unwrap();
        assert_eq!(c.rank(c.rank_id("m1").unwrap()).size, 3);
        let k = c.counts(&c.einsums()[0]);
        assert_eq!((k.points, k.outputs, k.reduce_ops), (30, 9, 21));
    }

    #[test]
    fn rejects_what_the_ir_forbids() {
        let cases = [
            (GEMM.replace("\"K\" }", "\"Q\" }"), "cascade.ranks.k", "unknown parameter"),
            (GEMM.replace("K = 6", "K = 0"), "cascade.params.K", "positive"),
            (GEMM.replace("B[k,n]", "B[k,x]"), "cascade.einsums[0].expr", "unknown rank `x`"),
            (
                format!("{GEMM}\n[[cascade.einsums]]\nexpr = \"Z[m,n] = A[k,m] * B[k,n]\"\n"),
                "cascade.einsums[1]",
                "already produced",
            ),
            (
                format!("{GEMM}\n[[cascade.einsums]]\nexpr = \"Y[m,n] = A[k,n] * B[k,n]\"\n"),
                "cascade.einsums[1].expr",
                "extent",
            ),
            (GEMM.replace("Z[m,n] = A[k,m] * B[k,n]", "Z[m,m] = A[k,m] * B[k,m]"), "cascade.einsums[0].expr", "twice"),
        ];
        for (text, path, reason) in cases {
            let err = build(&text).unwrap_err();
            assert_eq!(err.path, path, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
    }

    #[test]
    fn detects_cycles_and_order() {
        let base = r#"
[cascade]
name = "c"
ranks = { m = 4 }
[[cascade.einsums]]
expr = "A[m] = B[m] + X[m]"
[[cascade.einsums]]
expr = "B[m] = A[m] * X[m]"
"#;
        let err = build(base).unwrap_err();
        assert!(err.reason.contains("cycle: A -> B"), "{err}");
        let order = base.replace("B[m] + X[m]", "C[m] + X[m]").replace("B[m] = A[m] * X[m]", "C[m] = X[m] * X[m]");
        let err = build(&order).unwrap_err();
        assert!(err.reason.contains("before einsums[1] produces"), "{err}");
    }

    #[test]
    fn running_tensor_needs_init() {
        let text = r#"
[cascade]
name = "prefix"
ranks = { i = 5 }
[[cascade.einsums]]
expr = "S[i+1] = S[i] + A[i]"
"#;
        let err = build(text).unwrap_err();
        assert_eq!(err.path, "cascade.tensors.S.init");
        let ok = format!("{text}\n[cascade.tensors]\nS = {{ init = 0.0 }}\n");
        let c = build(&ok).unwrap();
        assert_eq!(c.tensors()[0].shape, vec![6]);
        assert_eq!(c.einsums()[0].iterative, c.rank_id("i"));
    }
}
