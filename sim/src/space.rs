//! Counting existing index combinations of a subset of a nest's loops — the one primitive the
//! analytical model is built from.
//!
//! A rank's coordinate is a mixed-radix number whose digits are its loops (outermost most
//! significant). A point exists when every rank's coordinate is below its size (only the
//! outermost loop of a rank may overshoot) and, for a partition `M → M1 × M0`, when
//! `m1 × M0 + m0 < M` (the ragged last block). For a subset U of loops, a combination of U's
//! indices *exists* if some existing point has those indices; since every existence condition
//! is an upper bound, that is the point with every loop outside U at index 0. Ranks (or
//! partition pairs) are independent, so the count is a product over them, and each factor is a
//! digit count ("how many mixed-radix numbers with these free digits are below L") in O(loops).

use strata_mappings::EinsumNest;
use strata_workloads::Cascade;

/// Most loops one rank may be split into (far more than any mapping uses).
pub const MAX_RANK_LOOPS: usize = 16;

/// The loops of one rank: (loop index in the nest, bound, stride within the rank), outermost
/// first, in a fixed array so that building a [`Space`] allocates once per group list.
#[derive(Debug, Clone)]
struct RankLoops {
    digits: [(usize, u64, u64); MAX_RANK_LOOPS],
    n: usize,
    size: u64,
    /// Bounds multiply to exactly the size: every combination exists.
    perfect: bool,
}

impl RankLoops {
    /// How many combinations of the free digits (others 0) give a coordinate below `limit`.
    fn count_below(&self, free: u64, limit: u64) -> u64 {
        let d = &self.digits[..self.n];
        // Max value and product of the free bounds of digits i.. .
        let mut maxval = [0u64; MAX_RANK_LOOPS + 1];
        let mut prod = [1u64; MAX_RANK_LOOPS + 1];
        for i in (0..d.len()).rev() {
            let (k, b, s) = d[i];
            let is_free = free >> k & 1 == 1;
            maxval[i] = maxval[i + 1] + if is_free { (b - 1) * s } else { 0 };
            prod[i] = prod[i + 1] * if is_free { b } else { 1 };
        }
        let mut total = 0;
        let mut rem = limit;
        for (i, &(k, _, s)) in d.iter().enumerate() {
            if rem > maxval[i] {
                return total + prod[i];
            }
            if free >> k & 1 == 1 {
                let q = rem / s;
                total += q * prod[i + 1];
                rem -= q * s;
            }
        }
        total + u64::from(rem > 0)
    }

    fn free_product(&self, free: u64) -> u64 {
        self.digits[..self.n].iter().filter(|(k, _, _)| free >> k & 1 == 1).map(|(_, b, _)| b).product()
    }
}

// Groups live in one Vec per Space; boxing the pair would add an allocation per partition
// to the mapper's hot path, so the size difference is accepted.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Group {
    Single(RankLoops),
    /// A partition: outer rank, inner rank, tile, parent size.
    Pair(RankLoops, RankLoops, u64, u64),
}

/// The existence structure of one nest, built once and queried many times.
#[derive(Debug, Clone)]
pub struct Space {
    groups: Vec<Group>,
    /// Bit mask of every loop.
    pub all: u64,
    /// Loops over ranks outside the Einsum's iteration space: a fused group's loops that make it
    /// recompute its tile at every step.
    pub foreign: u64,
}

impl Space {
    pub fn new(c: &Cascade, nest: &EinsumNest) -> Space {
        assert!(nest.loops.len() <= 64, "a nest has at most 64 loops");
        let einsum = &c.einsums()[nest.einsum];
        let rank_loops = |r| {
            let mut g = RankLoops { digits: [(0, 1, 1); MAX_RANK_LOOPS], n: 0, size: c.rank(r).size, perfect: false };
            let mut stride = 1;
            for k in (0..nest.loops.len()).rev() {
                if nest.loops[k].rank == r {
                    assert!(g.n < MAX_RANK_LOOPS, "a rank is split into at most {MAX_RANK_LOOPS} loops");
                    g.digits[g.n] = (k, nest.loops[k].bound, stride);
                    g.n += 1;
                    stride *= nest.loops[k].bound;
                }
            }
            g.digits[..g.n].reverse();
            g.perfect = stride == g.size;
            g
        };
        let mut groups = Vec::with_capacity(einsum.iteration_ranks.len());
        let mut paired = [strata_workloads::einsum::RankId(usize::MAX); 2 * MAX_RANK_LOOPS];
        let mut n_paired = 0;
        for p in c.partitions() {
            if einsum.iteration_ranks.contains(&p.outer) && einsum.iteration_ranks.contains(&p.inner) {
                groups.push(Group::Pair(rank_loops(p.outer), rank_loops(p.inner), p.tile, c.rank(p.parent).size));
                if n_paired + 2 <= paired.len() {
                    paired[n_paired] = p.outer;
                    paired[n_paired + 1] = p.inner;
                    n_paired += 2;
                }
            }
        }
        for &r in &einsum.iteration_ranks {
            if !paired[..n_paired].contains(&r) {
                // A lone inner half of a partition exists only below the parent's size.
                let mut g = rank_loops(r);
                if let Some(p) = c.partitions().iter().find(|p| p.inner == r) {
                    let parent = c.rank(p.parent).size;
                    if parent < g.size {
                        g.size = parent;
                        g.perfect = false;
                    }
                }
                groups.push(Group::Single(g));
            }
        }
        // Group loops over ranks the Einsum lacks repeat it (recompute): each is a plain counter.
        let mut foreign = 0u64;
        for (k, l) in nest.loops.iter().enumerate() {
            if !einsum.iteration_ranks.contains(&l.rank) {
                foreign |= 1 << k;
                let mut g = RankLoops { digits: [(0, 1, 1); MAX_RANK_LOOPS], n: 1, size: l.bound, perfect: true };
                g.digits[0] = (k, l.bound, 1);
                groups.push(Group::Single(g));
            }
        }
        let all = if nest.loops.len() == 64 { u64::MAX } else { (1u64 << nest.loops.len()) - 1 };
        Space { groups, all, foreign }
    }

    /// Existing index combinations of the loops in `u` (a bit mask over the nest's loops).
    pub fn combos(&self, u: u64) -> u64 {
        let mut total = 1u64;
        for g in &self.groups {
            total *= match g {
                Group::Single(r) if r.perfect => r.free_product(u),
                Group::Single(r) => r.count_below(u, r.size),
                Group::Pair(o, i, tile, parent) => {
                    if o.perfect && i.perfect && o.size * tile == *parent {
                        o.free_product(u) * i.free_product(u)
                    } else {
                        let m1 = o.size;
                        let rem = parent - (m1 - 1) * tile;
                        let full_blocks = o.count_below(u, m1 - 1);
                        let last_block = o.count_below(u, m1) - full_blocks;
                        full_blocks * i.count_below(u, i.size.min(*tile)) + last_block * i.count_below(u, rem)
                    }
                }
            };
            if total == 0 {
                return 0;
            }
        }
        total
    }
}
