//! A mapper for single Einsums (linear layers, GEMMs): it enumerates a mapspace, prunes by
//! capacity, and keeps the best mapping under a cost the caller supplies.
//!
//! The mapspace of an Einsum bound to a unit: which ranks fan out over the array's x and y
//! (the largest divisor of the rank that fits), tile sizes per rank at every level between the
//! root and the unit's level (divisors, or a coarser power-of-two ladder), the order of the
//! root loops (the order that decides which operand is reused), and which tensors each level
//! between the root and the PEs keeps or bypasses (the point that keeps everything comes first,
//! so ties prefer it).
//! Strategies: exhaustive, seeded random sampling, and greedy coordinate descent. The mapper
//! does not know costs: `mappings` describes, `sim` evaluates, and the caller joins them.

use strata_arch::{Arch, UnitId};
use strata_workloads::Cascade;
use strata_workloads::einsum::RankId;

use crate::nest::{Dim, EinsumNest, Loop, Operand, point_ops};
use crate::spec::{EinsumMappingSpec, LevelSpec};

/// A point of the space and its cost, if it fits.
type Scored = Option<(u128, f64)>;
/// Evaluates the point with an index.
type EvalFn<'a> = dyn Fn(u128) -> Scored + Sync + 'a;
/// The better of two points (ties keep the lower index).
type Better<'a> = dyn Fn(Scored, Scored) -> Scored + Sync + 'a;

/// How the mapper walks the mapspace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Every point (after capacity pruning by the cost function).
    Exhaustive,
    /// `samples` points drawn with a seeded generator.
    Random { samples: usize, seed: u64 },
    /// Random sampling, then greedy improvement from the best sample.
    RandomGreedy { samples: usize, seed: u64 },
    /// Exhaustive when the space has at most `budget` points. Otherwise: the best point that
    /// keeps every tensor everywhere (exhaustive when those fit the budget, else `budget`
    /// seeded samples of them), improved greedily with bypass included.
    Auto { budget: usize, seed: u64 },
    /// Start from the first point and improve one decision at a time until nothing improves.
    Greedy,
    /// For every spatial choice and root order, tile sizes at the level below the root from a
    /// time-limited MILP ([`crate::milp`]), judged by the cost function.
    Milp { seconds: f64 },
}

/// A point of the mapspace: per-decision choices, as indices into the option lists.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    spatial: usize,
    tiles: Vec<usize>,
    order: usize,
    /// Bit `m · tensors + t` set: tensor `t` bypasses middle level `m + 1`. 0 keeps everything.
    bypass: usize,
    /// Per middle level (below the root, above the leaf): the order of its loops, an index into
    /// the orders (0, the ranks' own order, when the mapspace does not search inner orders).
    level_orders: Vec<usize>,
}

/// A level (index on the path) and the (rank, fan-out limit) it spreads over x and y.
type SpatialAt = (usize, [Option<(RankId, u64)>; 2]);

/// The mapspace of one Einsum on one unit.
pub struct Mapspace<'a> {
    c: &'a Cascade,
    einsum: usize,
    unit: UnitId,
    path: Vec<strata_arch::LevelId>,
    ranks: Vec<RankId>,
    /// Spatial options: per level that fans out, the ranks over its x and y with the fan-out
    /// they may take (each takes the largest divisor of what is left of it that fits).
    spatial: Vec<Vec<SpatialAt>>,
    /// Per (middle level, rank): candidate tile factors.
    tile_options: Vec<Vec<u64>>,
    orders: Vec<Vec<RankId>>,
    /// Elements the level below the root holds (per instance), for the MILP's budgets.
    buffer_elements: Option<f64>,
    /// The Einsum's distinct tensors, in operand order: what keep/bypass decides over.
    tensors: Vec<strata_workloads::einsum::TensorId>,
    /// Orders searched at each middle level: all of them in a fine mapspace, else only the
    /// ranks' own order.
    inner_orders: usize,
    /// Whether tiles may leave the root's loop imperfect (a fine mapspace).
    imperfect: bool,
}

/// The divisors of `n` in ascending order, from its prime factors: trial division up to the
/// square root of what is left, so a rank of 2⁶² elements costs a few dozen divisions (never a
/// loop over every integer up to the size), and at worst √n for a product of two large primes.
pub fn divisors(n: u64) -> Vec<u64> {
    if n == 0 {
        return Vec::new();
    }
    let mut factors: Vec<(u64, u32)> = Vec::new();
    let mut rest = n;
    let mut p = 2u64;
    while p.saturating_mul(p) <= rest {
        let mut k = 0;
        while rest.is_multiple_of(p) {
            rest /= p;
            k += 1;
        }
        if k > 0 {
            factors.push((p, k));
        }
        p += if p == 2 { 1 } else { 2 };
    }
    if rest > 1 {
        factors.push((rest, 1));
    }
    let mut out = vec![1u64];
    for (p, k) in factors {
        let base = out.clone();
        let mut power = 1u64;
        for _ in 0..k {
            power *= p;
            out.extend(base.iter().map(|d| d * power));
        }
    }
    out.sort_unstable();
    out
}

/// Powers of four (and the rank itself) up to `n`: a coarse ladder that keeps spaces small.
fn ladder(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = std::iter::successors(Some(1u64), |x| Some(x * 4))
        .take_while(|&x| x <= n)
        .filter(|x| n.is_multiple_of(*x))
        .collect();
    if !v.contains(&n) {
        v.push(n);
    }
    v
}

fn permutations(items: &[RankId]) -> Vec<Vec<RankId>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x);
            out.push(p);
        }
    }
    out
}

impl<'a> Mapspace<'a> {
    /// The mapspace of `einsum` on `unit`. `fine` uses every divisor as a tile size and searches
    /// the loop order at every level; otherwise a power-of-four ladder and the root's order only.
    pub fn new(c: &'a Cascade, einsum: usize, arch: &Arch, unit: UnitId, fine: bool) -> Mapspace<'a> {
        let e = &c.einsums()[einsum];
        let path = arch.path_to(arch.unit(unit).level);
        let ranks = e.iteration_ranks.clone();
        // Every level with a fan-out greater than one spreads ranks over its x and y (4 cores
        // of 128×128 PEs fan out twice); the choices of all of them form one spatial option.
        let fan_levels: Vec<usize> = (0..path.len())
            .filter(|&lv| {
                let f = arch.fanout(path[lv], path.get(lv + 1).copied(), unit);
                f.0 * f.1 > 1
            })
            .collect();
        let fit = |r: RankId, limit: u64| -> u64 {
            divisors(c.rank(r).size).into_iter().filter(|&d| d <= limit).max().unwrap_or(1)
        };
        let mut spatial: Vec<Vec<SpatialAt>> = vec![Vec::new()];
        for &lv in &fan_levels {
            let fan = arch.fanout(path[lv], path.get(lv + 1).copied(), unit);
            let along = |limit: u64| -> Vec<Option<(RankId, u64)>> {
                std::iter::once(None)
                    .chain(ranks.iter().filter(|&&r| fit(r, limit) > 1).map(|&r| Some((r, limit))))
                    .collect()
            };
            let (xs, ys) = (along(fan.0), along(fan.1));
            let mut here = Vec::new();
            for x in &xs {
                for y in &ys {
                    if x.is_none() || y.is_none() || x.map(|v| v.0) != y.map(|v| v.0) {
                        here.push((lv, [*x, *y]));
                    }
                }
            }
            spatial = here
                .iter()
                .flat_map(|h| {
                    spatial.iter().map(move |outer| {
                        let mut v = outer.clone();
                        v.push(*h);
                        v
                    })
                })
                .collect();
        }
        // Tile options for every (level below the root, rank); the leaf gets few (registers).
        let mut tile_options = Vec::new();
        for lv in 1..path.len() {
            for &r in &ranks {
                let size = c.rank(r).size;
                let opts = if lv == path.len() - 1 {
                    vec![1]
                } else if fine {
                    // Every divisor, and the powers of two that do not divide: the rank's
                    // outermost loop then overshoots by less than one tile (imperfect
                    // factorisation, as the mapping spec allows).
                    let mut v = divisors(size);
                    v.extend(std::iter::successors(Some(2u64), |x| x.checked_mul(2)).take_while(|&x| x < size));
                    v.sort_unstable();
                    v.dedup();
                    v
                } else {
                    ladder(size)
                };
                tile_options.push(opts);
            }
        }
        let orders = permutations(&ranks);
        let elem = c.tensor(e.output.tensor).elem_bits as f64 / 8.0;
        let buffer_elements = path.get(1).and_then(|l| arch.level(*l).capacity).map(|b| b.0 as f64 / elem);
        let mut tensors = Vec::new();
        for a in std::iter::once(&e.output).chain(&e.inputs) {
            if !tensors.contains(&a.tensor) {
                tensors.push(a.tensor);
            }
        }
        let inner_orders = if fine { orders.len() } else { 1 };
        Mapspace {
            c,
            einsum,
            unit,
            path,
            ranks,
            spatial,
            tile_options,
            orders,
            buffer_elements,
            tensors,
            inner_orders,
            imperfect: fine,
        }
    }

    /// Number of points in the space.
    pub fn size(&self) -> u128 {
        self.spatial.len() as u128
            * self.orders.len() as u128
            * self.tile_options.iter().map(|o| o.len() as u128).product::<u128>()
            * self.bypass_options() as u128
            * (self.inner_orders as u128).pow(self.middle_levels() as u32)
    }

    /// Levels below the root and above the leaf: where bypass and inner orders are decided.
    fn middle_levels(&self) -> usize {
        self.path.len().saturating_sub(2)
    }

    /// Keep/bypass choices: every distinct tensor at every level strictly between the root
    /// (which keeps everything) and the PEs' own level (which keeps everything).
    fn bypass_options(&self) -> usize {
        1 << (self.path.len().saturating_sub(2) * self.tensors.len())
    }

    fn index_to_choice(&self, mut i: u128) -> Choice {
        let spatial = (i % self.spatial.len() as u128) as usize;
        i /= self.spatial.len() as u128;
        let order = (i % self.orders.len() as u128) as usize;
        i /= self.orders.len() as u128;
        let tiles = self
            .tile_options
            .iter()
            .map(|o| {
                let k = (i % o.len() as u128) as usize;
                i /= o.len() as u128;
                k
            })
            .collect();
        // Bypass is the most significant digit, so the indices below `size / bypass_options`
        // are the points that keep everything (what `Auto` starts from).
        let level_orders = (0..self.middle_levels())
            .map(|_| {
                let k = (i % self.inner_orders as u128) as usize;
                i /= self.inner_orders as u128;
                k
            })
            .collect();
        let bypass = (i % self.bypass_options() as u128) as usize;
        Choice { spatial, tiles, order, bypass, level_orders }
    }

    /// The spatial loops of option `k`, innermost fan-out first, each the largest divisor of
    /// what is left of its rank that fits; divides them out of `remaining`.
    fn spatial_loops(&self, k: usize, remaining: &mut [u64]) -> Vec<Loop> {
        let mut out = Vec::new();
        for &(lv, pair) in self.spatial[k].iter().rev() {
            for (slot, dim) in [(0, Dim::X), (1, Dim::Y)] {
                if let Some((r, limit)) = pair[slot] {
                    let i = self.ranks.iter().position(|&x| x == r).expect("rank of the einsum");
                    let f = divisors(remaining[i]).into_iter().filter(|&d| d <= limit).max().unwrap_or(1);
                    if f > 1 {
                        remaining[i] /= f;
                        out.push(Loop { rank: r, bound: f, dim: Some(dim), level: lv });
                    }
                }
            }
        }
        out.sort_by_key(|l| (l.level, l.dim == Some(Dim::Y)));
        out
    }

    /// The nest of a choice, or `None` when its factors do not divide the ranks.
    fn nest(&self, ch: &Choice) -> Option<EinsumNest> {
        let e = &self.c.einsums()[self.einsum];
        let n_levels = self.path.len();
        let mut remaining: Vec<u64> = self.ranks.iter().map(|&r| self.c.rank(r).size).collect();
        let mut per_level: Vec<Vec<Loop>> = vec![Vec::new(); n_levels];
        // Spatial factors first (innermost), then tiles from the leaf outward.
        let spatial_loops = self.spatial_loops(ch.spatial, &mut remaining);
        // Per rank: the product of its loops below the root.
        let mut inner: Vec<u64> =
            self.ranks.iter().enumerate().map(|(j, &r)| self.c.rank(r).size / remaining[j]).collect();
        for lv in (1..n_levels).rev() {
            let order = ch.level_orders.get(lv - 1).map_or(&self.ranks, |&k| &self.orders[k]);
            for &r in order {
                let j = self.ranks.iter().position(|&x| x == r).expect("rank of the einsum");
                let f = self.tile_options[(lv - 1) * self.ranks.len() + j][ch.tiles[(lv - 1) * self.ranks.len() + j]];
                if f == 1 {
                    continue;
                }
                inner[j] = inner[j].saturating_mul(f);
                if self.imperfect {
                    if inner[j] > self.c.rank(r).size {
                        return None;
                    }
                } else if !remaining[j].is_multiple_of(f) {
                    return None;
                }
                remaining[j] /= f;
                per_level[lv].push(Loop { rank: r, bound: f, dim: None, level: lv });
            }
        }
        for &r in &self.orders[ch.order] {
            let j = self.ranks.iter().position(|&x| x == r).expect("rank of the einsum");
            // What the inner loops leave, rounded up when they do not divide the rank.
            let root = if self.imperfect { self.c.rank(r).size.div_ceil(inner[j]) } else { remaining[j] };
            if root > 1 {
                per_level[0].push(Loop { rank: r, bound: root, dim: None, level: 0 });
            }
        }
        let mut loops = Vec::new();
        for (lv, mut l) in per_level.into_iter().enumerate() {
            loops.append(&mut l);
            loops.extend(spatial_loops.iter().filter(|s| s.level == lv).copied());
        }
        let accesses = std::iter::once((&e.output, true)).chain(e.inputs.iter().map(|a| (a, false)));
        let operands = accesses
            .map(|(a, is_output)| Operand {
                tensor: a.tensor,
                ranks: a.ranks(),
                keep: (0..n_levels)
                    .map(|lv| {
                        let t = self.tensors.iter().position(|&x| x == a.tensor).expect("collected");
                        lv == 0 || lv == n_levels - 1 || ch.bypass >> ((lv - 1) * self.tensors.len() + t) & 1 == 0
                    })
                    .collect(),
                is_output,
                elem_bits: self.c.tensor(a.tensor).elem_bits,
                barrier: 0,
                shared: None,
            })
            .collect();
        Some(EinsumNest {
            einsum: self.einsum,
            unit: self.unit,
            path: self.path.clone(),
            loops,
            n_prefix: 0,
            operands,
            ops: point_ops(e.map, e.reduce, !e.reduced_ranks().is_empty()),
        })
    }

    /// Searches the space; `cost` returns `None` for a mapping that does not fit. Returns the
    /// best nest and its cost; ties keep the earliest point, so results do not depend on threads.
    pub fn search(
        &self,
        strategy: Strategy,
        cost: &(dyn Fn(&EinsumNest) -> Option<f64> + Sync),
    ) -> Option<(EinsumNest, f64)> {
        let total = self.size();
        let eval = |i: u128| -> Option<(u128, f64)> {
            let n = self.nest(&self.index_to_choice(i))?;
            cost(&n).map(|c| (i, c))
        };
        let better = |a: Option<(u128, f64)>, b: Option<(u128, f64)>| match (a, b) {
            (Some(x), Some(y)) => Some(if y.1 < x.1 || (y.1 == x.1 && y.0 < x.0) { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        };
        let best = match strategy {
            Strategy::Exhaustive => {
                use rayon::prelude::*;
                let n = u64::try_from(total).expect("exhaustive spaces fit in u64");
                (0..n).into_par_iter().map(|i| eval(u128::from(i))).reduce(|| None, better)
            }
            Strategy::Random { samples, seed } => self.sample(samples, seed, total, &eval, &better),
            Strategy::RandomGreedy { samples, seed } => {
                let start = self.sample(samples, seed, total, &eval, &better)?;
                Some(self.greedy(start, &eval, &better))
            }
            Strategy::Auto { budget, seed } => {
                use rayon::prelude::*;
                let keep_all = total / self.bypass_options() as u128;
                let start = if keep_all <= budget as u128 {
                    let n = u64::try_from(keep_all).expect("within the budget");
                    (0..n).into_par_iter().map(|i| eval(u128::from(i))).reduce(|| None, better)
                } else {
                    self.sample(budget, seed, keep_all, &eval, &better)
                }?;
                Some(if total <= budget as u128 {
                    let n = u64::try_from(total).expect("within the budget");
                    (0..n)
                        .into_par_iter()
                        .map(|i| eval(u128::from(i)))
                        .reduce(|| None, better)
                        .expect("start is in the space")
                } else {
                    self.greedy(start, &eval, &better)
                })
            }
            Strategy::Milp { seconds } => {
                let mut best = None;
                for spatial in 0..self.spatial.len() {
                    for order in 0..self.orders.len() {
                        if let Some(ch) = self.milp_choice(spatial, order, seconds) {
                            best = better(best, eval(self.choice_to_index(&ch)));
                        }
                    }
                }
                best
            }
            Strategy::Greedy => {
                let start = (0..total.min(4096)).find_map(eval)?;
                Some(self.greedy(start, &eval, &better))
            }
        }?;
        let nest = self.nest(&self.index_to_choice(best.0)).expect("evaluated");
        Some((nest, best.1))
    }

    /// The best of `samples` seeded random points among the first `limit` indices.
    fn sample(&self, samples: usize, seed: u64, limit: u128, eval: &EvalFn<'_>, better: &Better<'_>) -> Scored {
        use rayon::prelude::*;
        (0..samples as u64)
            .into_par_iter()
            .map(|k| {
                let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                eval(u128::from(z ^ (z >> 31)) % limit)
            })
            .reduce(|| None, better)
    }

    /// Improves one decision at a time from `cur` until no single change helps.
    fn greedy(&self, mut cur: (u128, f64), eval: &EvalFn<'_>, better: &Better<'_>) -> (u128, f64) {
        loop {
            let ch = self.index_to_choice(cur.0);
            let mut next = Some(cur);
            for (d, len) in self.decisions() {
                for k in 0..len {
                    let mut c2 = ch.clone();
                    let tiles = self.tile_options.len();
                    match d {
                        0 => c2.spatial = k,
                        1 => c2.order = k,
                        t if t < 2 + tiles => c2.tiles[t - 2] = k,
                        t if t == 2 + tiles => c2.bypass = k,
                        t => c2.level_orders[t - 3 - tiles] = k,
                    }
                    next = better(next, eval(self.choice_to_index(&c2)));
                }
            }
            let n = next.expect("current is valid");
            if n == cur {
                return cur;
            }
            cur = n;
        }
    }

    /// Tiles at the level below the root from the MILP for one spatial choice and root order;
    /// deeper levels get tile 1. `None` when the MILP finds nothing.
    fn milp_choice(&self, spatial: usize, order: usize, seconds: f64) -> Option<Choice> {
        let capacity = self.buffer_elements?;
        let n = self.ranks.len();
        let mut rem: Vec<u64> = self.ranks.iter().map(|&r| self.c.rank(r).size).collect();
        let mut spatial_log = vec![0.0f64; n];
        for l in self.spatial_loops(spatial, &mut rem) {
            let i = self.ranks.iter().position(|&x| x == l.rank)?;
            spatial_log[i] += (l.bound as f64).log2();
        }
        let max_exp: Vec<u32> = rem.iter().map(|v| v.trailing_zeros()).collect();
        let e = &self.c.einsums()[self.einsum];
        let accesses: Vec<&strata_workloads::einsum::Access> = std::iter::once(&e.output).chain(&e.inputs).collect();
        let depends = |a: &strata_workloads::einsum::Access, r: RankId| a.ranks().contains(&r);
        let share = (capacity / accesses.len() as f64).log2();
        let tensors = accesses
            .iter()
            .map(|a| {
                let ranks: Vec<usize> = (0..n).filter(|&i| depends(a, self.ranks[i])).collect();
                let budget = (share - ranks.iter().map(|&i| spatial_log[i]).sum::<f64>()).floor();
                (ranks, budget)
            })
            .collect();
        let ord = &self.orders[order];
        let refetch = accesses
            .iter()
            .map(|a| {
                let last = ord.iter().rposition(|&r| depends(a, r));
                match last {
                    Some(j) => ord[..j]
                        .iter()
                        .filter(|&&r| !depends(a, r))
                        .map(|r| self.ranks.iter().position(|x| x == r).expect("rank"))
                        .collect(),
                    None => Vec::new(),
                }
            })
            .collect();
        let sol = crate::milp::TileProblem { max_exp, tensors, refetch }.solve(seconds)?;
        let mut tiles = vec![0usize; self.tile_options.len()];
        for (i, &x) in sol.exponents.iter().enumerate() {
            // The largest offered tile not above 2^x (options ascend; index 0 is tile 1).
            let want = 1u64 << x;
            let opts = &self.tile_options[i];
            tiles[i] = opts.iter().rposition(|&t| t <= want && rem[i].is_multiple_of(t)).unwrap_or(0);
        }
        Some(Choice { spatial, tiles, order, bypass: 0, level_orders: vec![0; self.middle_levels()] })
    }

    /// (decision id, number of options): 0 spatial, 1 order, 2.. tiles, then bypass, then the
    /// order at each middle level.
    fn decisions(&self) -> Vec<(usize, usize)> {
        let mut d = vec![(0, self.spatial.len()), (1, self.orders.len())];
        d.extend(self.tile_options.iter().enumerate().map(|(k, o)| (k + 2, o.len())));
        d.push((2 + self.tile_options.len(), self.bypass_options()));
        d.extend((0..self.middle_levels()).map(|m| (3 + self.tile_options.len() + m, self.inner_orders)));
        d
    }

    fn choice_to_index(&self, ch: &Choice) -> u128 {
        let mut i: u128 = 0;
        let mut scale: u128 = 1;
        i += ch.spatial as u128 * scale;
        scale *= self.spatial.len() as u128;
        i += ch.order as u128 * scale;
        scale *= self.orders.len() as u128;
        for (k, o) in self.tile_options.iter().enumerate() {
            i += ch.tiles[k] as u128 * scale;
            scale *= o.len() as u128;
        }
        for &k in &ch.level_orders {
            i += k as u128 * scale;
            scale *= self.inner_orders as u128;
        }
        i + ch.bypass as u128 * scale
    }
}

/// Writes a found nest back as a mapping spec (for reports and reproducibility).
pub fn to_spec(c: &Cascade, arch: &Arch, nest: &EinsumNest) -> EinsumMappingSpec {
    let levels = nest
        .path
        .iter()
        .enumerate()
        .map(|(lv, &l)| LevelSpec {
            level: arch.level(l).name.clone(),
            loops: nest
                .loops
                .iter()
                .filter(|x| x.level == lv)
                .map(|x| {
                    let dim = match x.dim {
                        Some(Dim::X) => "@x",
                        Some(Dim::Y) => "@y",
                        None => "",
                    };
                    format!("{}={}{dim}", c.rank(x.rank).name, x.bound)
                })
                .collect(),
            keep: {
                let kept: Vec<String> = nest
                    .operands
                    .iter()
                    .filter(|o| o.keep[lv])
                    .map(|o| c.tensor(o.tensor).name.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                (nest.operands.iter().any(|o| !o.keep[lv])).then_some(kept)
            },
            bypass: None,
        })
        .collect();
    EinsumMappingSpec { einsum: c.einsums()[nest.einsum].name.clone(), unit: arch.unit(nest.unit).name.clone(), levels }
}

#[cfg(test)]
mod tests {
    use super::divisors;

    #[test]
    fn divisors_match_brute_force_and_stay_fast_on_huge_ranks() {
        for n in 1..=3000u64 {
            let brute: Vec<u64> = (1..=n).filter(|d| n % d == 0).collect();
            assert_eq!(divisors(n), brute, "{n}");
        }
        assert_eq!(divisors(1 << 62).len(), 63);
        let (p, q) = (2_147_483_647u64, 65_537u64); // both prime
        assert_eq!(divisors(p * q), [1, q, p, p * q]);
        assert_eq!(divisors(0), Vec::<u64>::new());
    }
}
