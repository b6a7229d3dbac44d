//! The Einsum-cascade IR: ranks, partitions, tensors, extended Einsums and cascades.
//!
//! A [`Cascade`] is only ever built by [`crate::cascade::build`], which checks every invariant
//! (each tensor produced once, consumers after producers, extents consistent, iterative
//! tensors initialised), so code that holds a `Cascade` may rely on them. Fields are private
//! and exposed through getters for that reason.
//!
//! Semantics follow FuseMax (MICRO'24, §II): an Einsum's iteration space is the product of
//! every rank named in its accesses; at each point the *map* operator combines the operands,
//! and points that project onto the same output element are combined with the *reduce*
//! operator. Partitioned ranks (`M → M1 × M0`) may be ragged: points whose joined coordinate
//! `m1 × M0 + m0` falls past `M` do not exist. An *iterative* rank (one written as `m1+1`)
//! orders the Einsums that use it: for each value of the rank, every such Einsum runs once.

use serde::{Deserialize, Serialize};

/// Index of a rank in [`Cascade::ranks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RankId(pub usize);

/// Index of a tensor in [`Cascade::tensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// A named rank (dimension) of the iteration space with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rank {
    pub name: String,
    pub size: u64,
}

/// `parent` split into `outer × inner`; `inner` has size `tile`, `outer` has `⌈parent/tile⌉`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub parent: RankId,
    pub outer: RankId,
    pub inner: RankId,
    pub tile: u64,
}

/// The element-wise (map) operator of an extended Einsum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapOp {
    Mul,
    Add,
    Sub,
    Div,
    Max,
    /// FuseMax's sub-then-exp: `e^(a - b)`. Defined as 0 when `a` is −∞ (a masked score).
    SubExp,
    Exp,
    Copy,
    Relu,
    Gelu,
    Silu,
}

impl MapOp {
    pub fn arity(self) -> usize {
        match self {
            MapOp::Mul | MapOp::Add | MapOp::Sub | MapOp::Div | MapOp::Max | MapOp::SubExp => 2,
            MapOp::Exp | MapOp::Copy | MapOp::Relu | MapOp::Gelu | MapOp::Silu => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MapOp::Mul => "mul",
            MapOp::Add => "add",
            MapOp::Sub => "sub",
            MapOp::Div => "div",
            MapOp::Max => "max",
            MapOp::SubExp => "sub_exp",
            MapOp::Exp => "exp",
            MapOp::Copy => "copy",
            MapOp::Relu => "relu",
            MapOp::Gelu => "gelu",
            MapOp::Silu => "silu",
        }
    }

    /// Whether the operator does arithmetic (a copy moves data but computes nothing).
    pub fn computes(self) -> bool {
        self != MapOp::Copy
    }
}

/// The reduction operator applied to points that land on the same output element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceOp {
    Sum,
    Max,
    /// Selection: each output record keeps the indices of its `k` largest candidates (a
    /// `top(..)` Einsum; `k` is the size of the output's slot rank). Written only by `top(..)`.
    Top,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Top => "top",
        }
    }
}

/// How one position of a tensor access is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// The coordinate of a rank.
    Var(RankId),
    /// `r+1`: the value an iterative Einsum produces for the next iteration.
    Next(RankId),
    /// `last(r)`: the final value of an iterative tensor, after every iteration.
    Last(RankId),
    /// `(outer, inner)`: the parent coordinate `outer × tile + inner` of a partition.
    Joined { outer: RankId, inner: RankId, tile: u64 },
    /// `s=I[..]`: an indirect (gathered) position over rank `rank`'s extent, addressed by the
    /// value the Einsum's input number `input` (the index access) holds at the point.
    Gather { rank: RankId, input: usize },
    /// The slot rank of a `top(..)` output: one output record holds `size(rank)` selected indices.
    Slot(RankId),
}

/// A tensor access: which tensor and how each of its positions is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub tensor: TensorId,
    pub indices: Vec<Index>,
    /// The iteration ranks a gathered position's index access depends on (empty without one):
    /// which element is read changes with them, so tiles and reuse follow them.
    pub via: Vec<RankId>,
}

impl Access {
    /// The iteration ranks the accessed element depends on (both halves of a partition index;
    /// the index access's ranks for a gathered position; `last(r)` and a slot depend on none).
    pub fn ranks(&self) -> Vec<RankId> {
        let mut ranks = Vec::new();
        for ix in &self.indices {
            match *ix {
                Index::Var(r) | Index::Next(r) => ranks.push(r),
                Index::Joined { outer, inner, .. } => ranks.extend([outer, inner]),
                Index::Gather { .. } => {
                    for &r in &self.via {
                        if !ranks.contains(&r) {
                            ranks.push(r);
                        }
                    }
                }
                Index::Last(_) | Index::Slot(_) => {}
            }
        }
        ranks
    }

    /// The gathered position, if any: (position, the rank it spans, the Einsum input holding
    /// the index access).
    pub fn gather(&self) -> Option<(usize, RankId, usize)> {
        self.indices.iter().enumerate().find_map(|(p, ix)| match *ix {
            Index::Gather { rank, input } => Some((p, rank, input)),
            _ => None,
        })
    }
}

/// What a tensor is for; decides how it is counted (weights, KV cache) and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An activation supplied from outside the cascade.
    Input,
    /// A parameter tensor supplied from outside.
    Weight,
    /// Keys or values of earlier tokens supplied from outside.
    KvCache,
    /// Produced and consumed inside the cascade.
    Intermediate,
    /// Produced and not consumed: a result of the cascade.
    Output,
}

impl Role {
    pub fn is_external(self) -> bool {
        matches!(self, Role::Input | Role::Weight | Role::KvCache)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Weight => "weight",
            Role::KvCache => "kv_cache",
            Role::Intermediate => "intermediate",
            Role::Output => "output",
        }
    }
}

/// A tensor: extents per position (row-major), element size and role.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    /// Extent of each position; an iterative position holds `size + 1` values (initial + one per iteration).
    pub shape: Vec<u64>,
    /// The position indexed by an iterative rank, if any.
    pub iterative_position: Option<usize>,
    /// Bits per element: 16 for fp16, 4 for a 4-bit quantized label (two to a byte).
    pub elem_bits: u64,
    pub role: Role,
    /// Value every element holds before the cascade runs (the `r = 0` slice of a recurrence).
    pub init: Option<f64>,
    /// Produced by the step and stored to the KV cache (new keys and values).
    pub cached: bool,
}

impl Tensor {
    /// Elements stored, counting every iteration of an iterative position.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Elements live at one time: an iterative position keeps only its current value.
    pub fn live_elements(&self) -> u64 {
        self.shape.iter().enumerate().map(|(i, &n)| if Some(i) == self.iterative_position { 1 } else { n }).product()
    }

    /// Bytes live at one time (see [`Tensor::live_elements`]).
    pub fn bytes(&self) -> u64 {
        self.bytes_of(self.live_elements())
    }

    /// Bytes of `elements` of this tensor's elements, packed (see [`packed_bytes`]).
    pub fn bytes_of(&self, elements: u64) -> u64 {
        packed_bytes(elements, self.elem_bits)
    }
}

/// Bytes that `elements` elements of `bits` bits occupy, packed and rounded up to whole bytes:
/// sub-byte formats (4-bit labels) store two elements to a byte, so a count of them is
/// charged for the bytes it spans, never a byte each.
pub fn packed_bytes(elements: u64, bits: u64) -> u64 {
    elements.saturating_mul(bits).div_ceil(8)
}

/// Causal masking: iteration points whose key coordinate exceeds `query + offset` produce −∞.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CausalMask {
    pub key: Index,
    pub query: Index,
    /// `keys − queries`: the query at position `p` sees keys `0..=p + offset` (decode sees the whole cache).
    pub offset: u64,
}

/// One extended Einsum, resolved against its cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct Einsum {
    pub name: String,
    /// The source text, kept for reports.
    pub text: String,
    pub output: Access,
    pub inputs: Vec<Access>,
    pub map: MapOp,
    pub reduce: ReduceOp,
    pub mask: Option<CausalMask>,
    /// Every rank of the iteration space: output ranks first (in output order), then reduced ranks.
    pub iteration_ranks: Vec<RankId>,
    /// How many leading entries of `iteration_ranks` index the output.
    pub n_output_ranks: usize,
    /// The iterative rank this Einsum steps through, if any.
    pub iterative: Option<RankId>,
}

impl Einsum {
    pub fn reduced_ranks(&self) -> &[RankId] {
        &self.iteration_ranks[self.n_output_ranks..]
    }

    pub fn output_ranks(&self) -> &[RankId] {
        &self.iteration_ranks[..self.n_output_ranks]
    }

    /// The slot rank of a `top(..)` Einsum's output (its size is `k`), if it selects.
    pub fn slot(&self) -> Option<RankId> {
        self.output.indices.iter().find_map(|ix| if let Index::Slot(r) = *ix { Some(r) } else { None })
    }
}

/// Operation and data counts of one Einsum, computed in closed form from the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EinsumCounts {
    /// Points of the iteration space that exist (ragged partitions excluded).
    pub points: u64,
    /// Distinct output elements written.
    pub outputs: u64,
    /// Map operations: one per point (zero for a copy).
    pub map_ops: u64,
    /// Reduce operations: points − outputs.
    pub reduce_ops: u64,
}

impl EinsumCounts {
    /// Arithmetic operations (map + reduce); a multiply-accumulate counts as two.
    pub fn flops(&self) -> u64 {
        self.map_ops + self.reduce_ops
    }
}

/// A validated cascade of extended Einsums.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) ranks: Vec<Rank>,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) tensors: Vec<Tensor>,
    pub(crate) einsums: Vec<Einsum>,
}

impl Cascade {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn ranks(&self) -> &[Rank] {
        &self.ranks
    }
    pub fn rank(&self, id: RankId) -> &Rank {
        &self.ranks[id.0]
    }
    pub fn rank_id(&self, name: &str) -> Option<RankId> {
        self.ranks.iter().position(|r| r.name == name).map(RankId)
    }
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
    pub fn tensor(&self, id: TensorId) -> &Tensor {
        &self.tensors[id.0]
    }
    pub fn tensor_id(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name).map(TensorId)
    }
    pub fn einsums(&self) -> &[Einsum] {
        &self.einsums
    }

    /// The Einsum that produces a tensor, if any.
    pub fn producer(&self, tensor: TensorId) -> Option<usize> {
        self.einsums.iter().position(|e| e.output.tensor == tensor)
    }

    /// Peak bytes of activations live at once when the Einsums run one after another in order,
    /// each tensor materialised whole (no fusion): every tensor that is not a weight or the KV
    /// cache lives from its production (an input: from the start) to its last read (a result:
    /// to the end). What a step's transient memory must hold beside its weights and cache.
    pub fn peak_activation_bytes(&self) -> u64 {
        self.peak_activation_bytes_fused(&[])
    }

    /// [`Cascade::peak_activation_bytes`] when each set of Einsums in `fused` runs as one
    /// kernel, at its last member's place (once everything it reads exists): a tensor produced
    /// and read only inside one set stays in on-chip tiles and is never materialised; what a
    /// set reads or writes is live while it runs. FlashSVD's streaming kernels are such sets.
    pub fn peak_activation_bytes_fused(&self, fused: &[Vec<usize>]) -> u64 {
        let n = self.einsums.len();
        // Each Einsum's step: a fused set runs at its last member's.
        let mut step: Vec<usize> = (0..n).collect();
        for set in fused {
            let last = set.iter().copied().max().unwrap_or(0);
            for &e in set {
                step[e] = last;
            }
        }
        let group = |e: usize| fused.iter().position(|r| r.contains(&e));
        let inside = |id: TensorId| {
            let readers = self.readers(id);
            self.producer(id).is_some_and(|p| {
                self.tensor(id).role != Role::Output
                    && group(p).is_some()
                    && readers.iter().all(|&e| group(e) == group(p))
            })
        };
        self.peak_live_bytes(&step, &|id| !inside(id))
    }

    /// The Einsums that read a tensor, in order.
    pub fn readers(&self, id: TensorId) -> Vec<usize> {
        (0..self.einsums.len()).filter(|&e| self.einsums[e].inputs.iter().any(|a| a.tensor == id)).collect()
    }

    /// Peak bytes of activations live at once when Einsum `e` runs at step `step[e]` (steps in
    /// execution order; Einsums of one step run together) and only the tensors `materialised`
    /// says are held in memory: every such tensor that is not a weight or the KV cache lives
    /// from its producer's step (an input: from the start) to its last reader's (a result: to
    /// the end). The liveness a mapping's schedule gives its intermediates.
    pub fn peak_live_bytes(&self, step: &[usize], materialised: &dyn Fn(TensorId) -> bool) -> u64 {
        let steps = step.iter().copied().max().map_or(0, |s| s + 1);
        let mut span: Vec<Option<(usize, usize)>> = vec![None; self.tensors.len()];
        for (i, t) in self.tensors.iter().enumerate() {
            let id = TensorId(i);
            if matches!(t.role, Role::Weight | Role::KvCache) || !materialised(id) {
                continue;
            }
            let birth = self.producer(id).map_or(0, |p| step[p]);
            let last = self.readers(id).iter().map(|&e| step[e]).max();
            let death = match t.role {
                Role::Output => steps.saturating_sub(1),
                _ => last.unwrap_or(birth).max(birth),
            };
            span[i] = Some((birth, death));
        }
        (0..steps)
            .map(|e| {
                span.iter()
                    .zip(&self.tensors)
                    .filter(|(s, _)| s.is_some_and(|(b, d)| b <= e && e <= d))
                    .map(|(_, t)| t.bytes())
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Number of points of the sub-space spanned by `ranks`, with ragged partitions counted exactly.
    ///
    /// When both halves of a partition are present the pair spans exactly the parent's size;
    /// one half alone spans its own size.
    pub fn space_size(&self, ranks: &[RankId]) -> u64 {
        let mut size: u64 = 1;
        let mut paired = Vec::new();
        for p in &self.partitions {
            if ranks.contains(&p.outer) && ranks.contains(&p.inner) {
                size *= self.rank(p.parent).size;
                paired.push(p.outer);
                paired.push(p.inner);
            }
        }
        for r in ranks {
            if !paired.contains(r) {
                size *= self.rank(*r).size;
            }
        }
        size
    }

    /// Closed-form counts of one Einsum (causal masking is not subtracted: masked points still occupy the array).
    ///
    /// A `top(..)` Einsum offers every point to its output record: each candidate but a
    /// record's first is one comparison, and each record writes its `k` selected indices.
    pub fn counts(&self, einsum: &Einsum) -> EinsumCounts {
        let points = self.space_size(&einsum.iteration_ranks);
        let records = self.space_size(einsum.output_ranks());
        let k = einsum.slot().map_or(1, |r| self.rank(r).size);
        EinsumCounts {
            points,
            outputs: records * k,
            map_ops: if einsum.map.computes() { points } else { 0 },
            reduce_ops: points - records,
        }
    }

    /// Counts of every Einsum, summed.
    pub fn total_counts(&self) -> EinsumCounts {
        self.einsums.iter().map(|e| self.counts(e)).fold(EinsumCounts::default(), |a, c| EinsumCounts {
            points: a.points + c.points,
            outputs: a.outputs + c.outputs,
            map_ops: a.map_ops + c.map_ops,
            reduce_ops: a.reduce_ops + c.reduce_ops,
        })
    }

    /// What the Einsums that score a `top(..)`'s candidates read from outside: a label cache,
    /// a router's mean keys or gate.
    pub fn scorer_inputs(&self) -> Vec<TensorId> {
        let mut inputs: Vec<TensorId> = self
            .einsums
            .iter()
            .filter(|e| e.reduce == ReduceOp::Top)
            .filter_map(|e| self.producer(e.inputs[0].tensor))
            .flat_map(|p| self.einsums[p].inputs.iter().map(|a| a.tensor))
            .filter(|&t| self.tensor(t).role.is_external())
            .collect();
        inputs.sort();
        inputs.dedup();
        inputs
    }

    /// The label caches (Double Sparsity's), found by what they do: the KV-cache tensors the
    /// Einsum producing a `top(..)`'s candidates reads, and the cached tensors an Einsum gathers
    /// from another's channels (a new key's labels joining the label cache).
    pub fn label_tensors(&self) -> Vec<TensorId> {
        let mut labels: Vec<TensorId> =
            self.scorer_inputs().into_iter().filter(|&t| self.tensor(t).role == Role::KvCache).collect();
        for e in &self.einsums {
            if self.tensor(e.output.tensor).cached && e.inputs.iter().any(|a| a.gather().is_some()) {
                labels.push(e.output.tensor);
            }
        }
        labels.sort();
        labels.dedup();
        labels
    }

    /// Elements an access reads over the whole Einsum: the tensor's, or for a gathered access
    /// the rows its indices select, at most the tensor: exact when every index picks a row no
    /// other index picks (one `top(..)` record's are distinct; a head's rows are its own), an
    /// upper bound where they meet (query heads of one kv head, tokens routed to one block).
    pub fn read_elements(&self, access: &Access) -> u64 {
        let t = self.tensor(access.tensor);
        match access.gather() {
            None => t.live_elements(),
            Some((p, _, _)) => {
                // Per index: every position but the gathered one that the index access does not vary.
                let row: u64 = (0..access.indices.len())
                    .filter(|&q| q != p && !matches!(access.indices[q], Index::Var(r) if access.via.contains(&r)))
                    .map(|q| t.shape[q])
                    .product();
                (self.space_size(&access.via) * row).min(t.live_elements())
            }
        }
    }

    /// Bytes of one contiguous row an access gathers: for each index it reads the trailing
    /// positions that neither the gathered rank nor the index access vary (a key row of
    /// `head_dim` elements: 256 B in fp16 at D = 128). `None` for an access that gathers nothing.
    pub fn gather_row_bytes(&self, access: &Access) -> Option<u64> {
        let (p, _, _) = access.gather()?;
        let t = self.tensor(access.tensor);
        let mut row = 1;
        for q in (p + 1..access.indices.len()).rev() {
            match access.indices[q] {
                Index::Var(r) if !access.via.contains(&r) => row *= t.shape[q],
                _ => break,
            }
        }
        Some(t.bytes_of(row))
    }

    /// Bytes of the tensors with a given role.
    pub fn bytes_of(&self, role: Role) -> u64 {
        self.tensors.iter().filter(|t| t.role == role).map(Tensor::bytes).sum()
    }

    /// Multiply-accumulates of the contractions (a `mul` map reduced with `sum`), the usual "MACs".
    pub fn macs(&self) -> u64 {
        self.einsums
            .iter()
            .filter(|e| e.map == MapOp::Mul && e.reduce == ReduceOp::Sum && e.n_output_ranks < e.iteration_ranks.len())
            .map(|e| self.counts(e).points)
            .sum()
    }

    /// Renders an index for reports, e.g. `(m1,m0)` or `m1+1`.
    pub fn index_text(&self, index: &Index) -> String {
        match *index {
            Index::Var(r) => self.rank(r).name.clone(),
            Index::Next(r) => format!("{}+1", self.rank(r).name),
            Index::Last(r) => format!("last({})", self.rank(r).name),
            Index::Joined { outer, inner, .. } => {
                format!("({},{})", self.rank(outer).name, self.rank(inner).name)
            }
            Index::Gather { rank, input } => format!("{}=in{input}", self.rank(rank).name),
            Index::Slot(r) => self.rank(r).name.clone(),
        }
    }
}
