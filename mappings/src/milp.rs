//! MILP tile-size search (CoSA style, good_lp with the pure-Rust microlp backend).
//!
//! In log₂ space tile sizes become integer exponents and a tensor's tile becomes a sum, so
//! "each tensor's tile fits its share of the buffer" is linear, and so is the objective: the
//! log of every tensor's refetch factor, Σ_T Σ_{r refetches T} (max_r − x_r), which is what a
//! root-loop order makes a tensor pay for every rank it does not depend on above its innermost
//! relevant loop. The MILP chooses tiles for one spatial choice and one order; the mapper tries
//! each and keeps the best by the real cost model. Every solve has a time limit and reports
//! whether the solver proved optimality. `brute_force` solves the same problem by enumeration,
//! and a test requires the two optima to be equal.

use good_lp::solvers::WithTimeLimit;
use good_lp::{Expression, ProblemVariables, Solution, SolverModel, constraint, microlp, variable};

/// One tile-size problem in log₂ space.
#[derive(Debug, Clone, PartialEq)]
pub struct TileProblem {
    /// Per rank: the largest exponent its tile may take.
    pub max_exp: Vec<u32>,
    /// Per tensor: the ranks its tile spans and log₂ of the elements it may hold.
    pub tensors: Vec<(Vec<usize>, f64)>,
    /// Per tensor: the ranks whose outer loops make it refetch.
    pub refetch: Vec<Vec<usize>>,
}

/// A solution: an exponent per rank and the objective value.
#[derive(Debug, Clone, PartialEq)]
pub struct TileSolution {
    pub exponents: Vec<u32>,
    pub objective: f64,
    /// False when the time limit stopped the solver first (the incumbent is still feasible).
    pub proven: bool,
}

impl TileProblem {
    fn objective_of(&self, x: &[u32]) -> f64 {
        self.refetch.iter().flatten().map(|&r| f64::from(self.max_exp[r] - x[r])).sum()
    }

    fn feasible(&self, x: &[u32]) -> bool {
        self.tensors.iter().all(|(ranks, budget)| ranks.iter().map(|&r| f64::from(x[r])).sum::<f64>() <= *budget + 1e-9)
    }

    /// Solves with microlp under `seconds` of wall time; `None` if infeasible or nothing found.
    pub fn solve(&self, seconds: f64) -> Option<TileSolution> {
        let mut vars = ProblemVariables::new();
        let x: Vec<_> = self.max_exp.iter().map(|&m| vars.add(variable().integer().min(0).max(f64::from(m)))).collect();
        let objective: Expression =
            self.refetch.iter().flatten().map(|&r| f64::from(self.max_exp[r]) - x[r]).sum::<Expression>();
        let mut model = vars.minimise(objective).using(microlp).with_time_limit(seconds);
        for (ranks, budget) in &self.tensors {
            let tile: Expression = ranks.iter().map(|&r| x[r]).sum();
            model = model.with(constraint!(tile <= *budget));
        }
        let solution = model.solve().ok()?;
        let proven = matches!(solution.status(), good_lp::SolutionStatus::Optimal);
        let exponents: Vec<u32> = x.iter().map(|v| solution.value(*v).round().max(0.0) as u32).collect();
        self.feasible(&exponents).then(|| TileSolution { objective: self.objective_of(&exponents), exponents, proven })
    }

    /// The same problem by enumeration (for small problems and tests).
    pub fn brute_force(&self) -> Option<TileSolution> {
        let mut x = vec![0u32; self.max_exp.len()];
        let mut best: Option<TileSolution> = None;
        loop {
            if self.feasible(&x) {
                let o = self.objective_of(&x);
                if best.as_ref().is_none_or(|b| o < b.objective) {
                    best = Some(TileSolution { exponents: x.clone(), objective: o, proven: true });
                }
            }
            let mut k = 0;
            loop {
                if k == x.len() {
                    return best;
                }
                x[k] += 1;
                if x[k] <= self.max_exp[k] {
                    break;
                }
                x[k] = 0;
                k += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// The MILP optimum equals the brute-force optimum of the same problem.
        #[test]
        fn milp_matches_brute_force(
            max_exp in proptest::collection::vec(0u32..7, 2..4),
            budgets in proptest::collection::vec(0.0f64..10.0, 3),
            seed in any::<u64>(),
        ) {
            let n = max_exp.len();
            // Three tensors over random rank subsets; refetch sets are the ranks a tensor lacks.
            let mut s = seed;
            let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 33) as usize };
            let tensors: Vec<(Vec<usize>, f64)> = budgets.iter().map(|&b| {
                let ranks: Vec<usize> = (0..n).filter(|_| next() % 2 == 0).collect();
                (ranks, b.floor())
            }).collect();
            let refetch: Vec<Vec<usize>> = tensors.iter().map(|(rs, _)| (0..n).filter(|r| !rs.contains(r) && next() % 2 == 0).collect()).collect();
            let p = TileProblem { max_exp, tensors, refetch };
            let brute = p.brute_force();
            let milp = p.solve(5.0);
            match (brute, milp) {
                (Some(b), Some(m)) => {
                    prop_assert!(m.proven);
                    prop_assert!((b.objective - m.objective).abs() < 1e-9, "{} vs {}", b.objective, m.objective);
                }
                (None, None) => {}
                (b, m) => prop_assert!(false, "brute {b:?} milp {m:?}"),
            }
        }
    }
}
