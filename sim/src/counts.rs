//! Access counts of one Einsum's mapping, in closed form.
//!
//! Semantics (the tiled executor in [`crate::executor`] implements the same by simulation):
//! - a level's tile of an operand is the projection of the loops at that level and below;
//! - a level reloads its tile when one of the temporal loops above it, down to the innermost
//!   one the operand depends on, advances; an operand rewritten at every step of a fused
//!   group's shared loops (the output, or what a fellow member produces) also refreshes at each
//!   of those steps, wherever the loops sit, since nothing can be held before it exists; spatial
//!   loops above it select the instance, and every active instance holds its own copy;
//! - inputs are *filled* from the next outer level that keeps them, which is *read* once per
//!   multicast (spatial loops between the two that the operand does not depend on);
//! - outputs are never re-filled: each evicted tile *drains* (a read) into the next outer level
//!   as *updates*, reduced in the network across the same spatial loops;
//! - every update is a read-modify-write: it *reads* the partial sum the level holds, except the
//!   first write of an element into an empty slot (once per residency of a tile below the
//!   home, once per element at the home), so partial sums drained to a parent are read back
//!   there as they accumulate;
//! - the PEs read each input operand once per point from its innermost level and update the
//!   output once per point there;
//! - a tile a fused group shares at a level is loaded once per step of the group's loops, and
//!   the group's first reader (in execution order) pays the load.
//! - a group loop over a rank the Einsum lacks repeats it (the member is recomputed for every
//!   step of its consumer's loop): points, fills and updates multiply like those of any loop the
//!   operands do not depend on, but each repetition *overwrites* the output, so at the home the
//!   first write of an element per repetition reads nothing (`resolve` keeps such a member's
//!   group loops off its reduced ranks, so a step's values are complete).
//!
//! - a gathered operand (`K[b, s=I[..], e]`) depends on the index access's ranks: its tile holds
//!   one row per index, exact when the indices under a tile pick distinct rows (a `top(..)`
//!   record's are distinct, and each record reads its own slice), an upper bound where two
//!   pick the same row (tokens routed to one block share it in the tile).
//!
//! Each count is `combos(U)` for a loop set U (see [`crate::space`]).

use strata_mappings::{EinsumNest, Operand};
use strata_workloads::Cascade;

use crate::space::Space;

/// Element accesses of one operand at one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    /// Elements written into the level from its parent.
    pub fills: u64,
    /// Elements read out of the level (by PEs, by children's fills, or drained to the parent).
    pub reads: u64,
    /// Elements written into the level by PEs or by children draining partial results.
    pub updates: u64,
}

impl Access {
    pub fn add(&mut self, o: Access) {
        self.fills += o.fills;
        self.reads += o.reads;
        self.updates += o.updates;
    }
}

/// Everything the cost model needs from one Einsum's nest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestCounts {
    /// `[operand][level]`.
    pub access: Vec<Vec<Access>>,
    /// Existing points of the iteration space.
    pub points: u64,
    /// Existing combinations of the temporal loops: the steps every PE takes.
    pub temporal_steps: u64,
    /// `[operand][level]`: elements of the largest tile one instance holds (0 where not kept).
    pub tile: Vec<Vec<u64>>,
}

fn bit(k: usize) -> u64 {
    1u64 << k
}

/// Most levels on one path (masks per level live on the stack).
pub const MAX_LEVELS: usize = 16;

/// The loop sets of one nest that every count is taken over, as bit masks over its loops.
pub struct Masks {
    /// Loops at levels ≥ ℓ, per level (index ℓ).
    below: [u64; MAX_LEVELS + 1],
    /// Spatial loops at levels < ℓ.
    spatial_above: [u64; MAX_LEVELS + 1],
    temporal: u64,
}

impl Masks {
    pub fn new(nest: &EinsumNest) -> Masks {
        let n_levels = nest.path.len();
        assert!(n_levels <= MAX_LEVELS, "a path has at most {MAX_LEVELS} levels");
        let mut below = [0u64; MAX_LEVELS + 1];
        let mut spatial_above = [0u64; MAX_LEVELS + 1];
        let mut temporal = 0;
        for (k, l) in nest.loops.iter().enumerate() {
            for lv in 0..=n_levels {
                if l.level >= lv {
                    below[lv] |= bit(k);
                } else if l.is_spatial() {
                    spatial_above[lv] |= bit(k);
                }
            }
            if !l.is_spatial() {
                temporal |= bit(k);
            }
        }
        Masks { below, spatial_above, temporal }
    }

    fn relevant(nest: &EinsumNest, o: &Operand) -> u64 {
        nest.loops.iter().enumerate().filter(|(_, l)| o.ranks.contains(&l.rank)).fold(0, |m, (k, _)| m | bit(k))
    }

    /// U for a fill (or drain) of an operand at level `lv`. `barrier` holds the group loops the
    /// operand must refresh at every step (its producer rewrites it each step), wherever they sit.
    fn fill_set(&self, relevant: u64, barrier: u64, lv: usize) -> u64 {
        let above_temporal = self.temporal & !self.below[lv];
        // Temporal loops above the level, down to the innermost one that changes the tile.
        let changing = above_temporal & (relevant | barrier);
        let through = match changing {
            0 => 0,
            _ if changing.leading_zeros() == 0 => u64::MAX,
            _ => (1u64 << (64 - changing.leading_zeros())) - 1,
        };
        (above_temporal & through) | self.spatial_above[lv] | (self.below[lv] & relevant) | barrier
    }

    /// Spatial loops between the operand's parent level and `lv` that it does not depend on.
    fn multicast(&self, nest: &EinsumNest, relevant: u64, parent: usize, lv: usize) -> u64 {
        nest.loops
            .iter()
            .enumerate()
            .filter(|(k, l)| l.is_spatial() && l.level >= parent && l.level < lv && relevant & bit(*k) == 0)
            .fold(0, |m, (k, _)| m | bit(k))
    }
}

/// Counts every access of one Einsum's nest.
pub fn count(c: &Cascade, nest: &EinsumNest) -> NestCounts {
    let space = Space::new(c, nest);
    let masks = Masks::new(nest);
    count_with(nest, &space, &masks)
}

/// [`count`] with the space and masks built by the caller.
pub fn count_with(nest: &EinsumNest, space: &Space, masks: &Masks) -> NestCounts {
    let n_levels = nest.path.len();
    let mut access = vec![vec![Access::default(); n_levels]; nest.operands.len()];
    let mut tile = vec![vec![0u64; n_levels]; nest.operands.len()];
    let (points, temporal_steps) =
        visit(nest, space, masks, |oi, lv, a| access[oi][lv].add(a), |oi, lv, t| tile[oi][lv] = t);
    NestCounts { access, points, temporal_steps, tile }
}

/// Walks every count without storing them: `add(operand, level, access)` receives each
/// contribution, `tile(operand, level, elements)` each kept level's largest tile. Returns
/// (points, temporal steps).
pub fn visit(
    nest: &EinsumNest,
    space: &Space,
    masks: &Masks,
    mut add: impl FnMut(usize, usize, Access),
    mut tile: impl FnMut(usize, usize, u64),
) -> (u64, u64) {
    let points = space.combos(space.all);
    let temporal_steps = space.combos(masks.temporal);
    for (oi, o) in nest.operands.iter().enumerate() {
        let relevant = Masks::relevant(nest, o);
        let barrier = (0..o.barrier).fold(0, |m, k| m | bit(k));
        // An output's updates and drains per level, for its read-modify-write reads.
        let (mut updates, mut drains) = ([0u64; MAX_LEVELS], [0u64; MAX_LEVELS]);
        for lv in (0..nest.path.len()).filter(|&lv| o.keep[lv]) {
            // A tile holds one step of the loops the operand refreshes at every step (a shared
            // buffer one step of the group's loops).
            let step = match o.shared {
                Some(sh) if sh.level == lv => (0..sh.steps).fold(0, |m, k| m | bit(k)),
                _ => barrier,
            };
            tile(oi, lv, space.combos(masks.below[lv] & relevant & !step));
            let Some(parent) = o.parent_of(lv) else { continue };
            let (here, there) = match o.shared {
                // A group's shared buffer: loaded once per group step, paid by the first reader.
                Some(sh) if sh.level == lv => {
                    let steps = (0..sh.steps).fold(0, |m, k| m | bit(k));
                    let load = if sh.first { space.combos(steps | relevant) } else { 0 };
                    (load, load)
                }
                _ => {
                    let u = masks.fill_set(relevant, barrier, lv);
                    (space.combos(u), space.combos(u & !masks.multicast(nest, relevant, parent, lv)))
                }
            };
            if o.is_output {
                add(oi, lv, Access { reads: here, ..Access::default() });
                add(oi, parent, Access { updates: there, ..Access::default() });
                drains[lv] += here;
                updates[parent] += there;
            } else {
                add(oi, lv, Access { fills: here, ..Access::default() });
                add(oi, parent, Access { reads: there, ..Access::default() });
            }
        }
        let inner = o.innermost();
        if o.is_output {
            add(oi, inner, Access { updates: points, ..Access::default() });
            updates[inner] += points;
            // Each update reads what the level holds, but for the first write of an element
            // into an empty slot: one per drained element below the home, one per element there.
            let home = o.home();
            for lv in (home..nest.path.len()).filter(|&lv| o.keep[lv]) {
                let first = if lv == home { space.combos(relevant | space.foreign) } else { drains[lv] };
                add(oi, lv, Access { reads: updates[lv] - first, ..Access::default() });
            }
        } else {
            add(oi, inner, Access { reads: points, ..Access::default() });
        }
    }
    (points, temporal_steps)
}
