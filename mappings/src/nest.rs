//! Resolved mappings: every Einsum's full loop nest over the levels of its unit's path, which
//! operand each level keeps, and the tree of fused groups that orders execution.
//!
//! A level's tile of an operand is the projection of the loops at that level and below; the
//! loops above it iterate over tiles. Within a level, temporal loops come first, then spatial
//! loops that fan out over the next level's instances (or the unit's PEs at the last level).
//! The loops of enclosing fused groups (the *prefix*) are the outermost loops of every member.

use strata_arch::{LevelId, UnitId};
use strata_workloads::einsum::{MapOp, RankId, ReduceOp, TensorId};

use crate::spec::Pipelining;

/// The array dimension a spatial loop fans out over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    X,
    Y,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loop {
    pub rank: RankId,
    pub bound: u64,
    /// `Some` for a spatial loop.
    pub dim: Option<Dim>,
    /// Index into the nest's `path`.
    pub level: usize,
}

impl Loop {
    pub fn is_spatial(&self) -> bool {
        self.dim.is_some()
    }
}

/// One tensor access of an Einsum, as the mapping sees it: operand 0 is the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    pub tensor: TensorId,
    /// Iteration ranks the access depends on (both halves of a joined partition index).
    pub ranks: Vec<RankId>,
    /// Per path level: whether this level holds a tile of the operand.
    pub keep: Vec<bool>,
    pub is_output: bool,
    /// Bits per element (the tensor's; see [`strata_workloads::einsum::packed_bytes`]).
    pub elem_bits: u64,
    /// How many of the nest's leading (group) loops this operand must refresh at every step:
    /// those of the groups it shares with its producer, which writes it anew each step (for the
    /// output, every group loop). Data not yet produced cannot be held across steps.
    pub barrier: usize,
    /// A tile this operand reads from a group's shared buffer.
    pub shared: Option<SharedRead>,
}

/// An operand read through a group's shared buffer at `level`: the buffer is loaded once per
/// step of the nest's first `steps` loops (the group's loops), and only the group's first
/// reader in execution order pays the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedRead {
    pub level: usize,
    pub steps: usize,
    pub first: bool,
}

impl Operand {
    /// Bytes of `elements` of the operand's elements, packed.
    pub fn bytes(&self, elements: u64) -> u64 {
        strata_workloads::einsum::packed_bytes(elements, self.elem_bits)
    }

    /// The outermost level holding the operand: where its data lives for this Einsum.
    pub fn home(&self) -> usize {
        self.keep.iter().position(|&k| k).expect("validated: every operand is kept somewhere")
    }

    /// The innermost level holding the operand: what the PEs read or write.
    pub fn innermost(&self) -> usize {
        self.keep.iter().rposition(|&k| k).expect("validated: every operand is kept somewhere")
    }

    /// The next level outward that holds the operand.
    pub fn parent_of(&self, level: usize) -> Option<usize> {
        self.keep[..level].iter().rposition(|&k| k)
    }
}

/// The full loop nest of one Einsum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EinsumNest {
    pub einsum: usize,
    pub unit: UnitId,
    /// Storage levels from the root down to the unit's level.
    pub path: Vec<LevelId>,
    /// Outer to inner; the first `n_prefix` belong to enclosing groups.
    pub loops: Vec<Loop>,
    pub n_prefix: usize,
    pub operands: Vec<Operand>,
    /// Operation names (as the unit's `ops` table spells them) one point costs.
    pub ops: Vec<&'static str>,
}

/// A node of the execution tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Einsum(usize),
    Group(Group),
}

/// Members that share the group's loops, run once around all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    /// (rank, bound) of the shared loops, outermost first.
    pub prefix: Vec<(RankId, u64)>,
    pub members: Vec<Node>,
    pub pipelining: Pipelining,
}

impl Node {
    /// Einsums under this node in execution order.
    pub fn einsums(&self) -> Vec<usize> {
        match self {
            Node::Einsum(e) => vec![*e],
            Node::Group(g) => g.members.iter().flat_map(Node::einsums).collect(),
        }
    }
}

/// A mapping of a whole cascade, validated against its workload and architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeMapping {
    pub name: String,
    pub description: String,
    /// Indexed by Einsum.
    pub nests: Vec<EinsumNest>,
    /// Top-level nodes in execution order.
    pub schedule: Vec<Node>,
}

/// Units of `arch` whose operations cover what one point of `e` needs: the units that can run it,
/// found by what they do, never by name.
pub fn capable_units(arch: &strata_arch::Arch, e: &strata_workloads::einsum::Einsum) -> Vec<strata_arch::UnitId> {
    let needs = point_ops(e.map, e.reduce, !e.reduced_ranks().is_empty());
    (0..arch.units.len())
        .map(strata_arch::UnitId)
        .filter(|&u| needs.iter().all(|op| arch.unit(u).ops.contains_key(*op)))
        .collect()
}

/// The operations one iteration point of an Einsum costs on a PE, named as in arch `ops` tables.
///
/// A multiply reduced by a sum is one multiply-accumulate; FuseMax's sub-then-exp is one `exp`
/// (the architecture says what an exp costs: 7 MAC cycles on FuseMax, one issue on FLAT's unit).
/// GELU and SiLU are charged as their exponential; a copy costs nothing but data movement.
pub fn point_ops(map: MapOp, reduce: ReduceOp, reduced: bool) -> Vec<&'static str> {
    if map == MapOp::Mul && reduce == ReduceOp::Sum && reduced {
        return vec!["mac"];
    }
    let mut ops = Vec::new();
    match map {
        MapOp::Mul => ops.push("mac"),
        MapOp::Add | MapOp::Sub => ops.push("add"),
        MapOp::Div => ops.push("div"),
        MapOp::Max | MapOp::Relu => ops.push("max"),
        MapOp::SubExp | MapOp::Exp | MapOp::Gelu | MapOp::Silu => ops.push("exp"),
        MapOp::Copy => {}
    }
    if reduced {
        ops.push(match reduce {
            ReduceOp::Sum => "add",
            // A top-k record compares each candidate with its smallest kept score.
            ReduceOp::Max | ReduceOp::Top => "max",
        });
    }
    ops
}
