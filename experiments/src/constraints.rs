//! User constraints on `strata map`'s mappings, per level, as Timeloop and AccelForge users write
//! them: fixed tile factors, a fixed loop order, the tensors a level keeps.
//!
//! ```toml
//! [[constraints]]
//! einsum = "Z"                      # optional: every Einsum whose unit's path has the level
//! level = "GlobalBuffer"
//! factors = { k = 16 }              # the temporal loops over k at this level multiply to 16
//! order = ["k", "m"]                # k's loops come before m's at this level
//! keep = ["A", "B"]                 # this level keeps A and B and lets the rest pass by
//! ```
//!
//! Everything that can be checked before a search is: names, factors that do not divide their
//! rank, constraints that contradict each other (two factors, or two keep lists, for one rank or
//! level), factors of one rank over several levels that do not divide its size, a root that does
//! not keep what comes from outside. A search whose every mapping breaks a constraint says so.
//! Both the Einsum-by-Einsum search and the fusion search only keep mappings that satisfy them.

use std::collections::BTreeMap;

use serde::Deserialize;
use strata_arch::{Arch, LevelId};
use strata_mappings::EinsumNest;
use strata_workloads::Cascade;
use strata_workloads::einsum::{RankId, TensorId};

use crate::error::{CliError, CliResult};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintsFile {
    constraints: Vec<ConstraintSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintSpec {
    einsum: Option<String>,
    level: String,
    #[serde(default)]
    factors: BTreeMap<String, u64>,
    order: Option<Vec<String>>,
    keep: Option<Vec<String>>,
}

/// One constraint, resolved against a cascade and an architecture.
#[derive(Debug, Clone)]
struct Constraint {
    einsum: Option<usize>,
    level: LevelId,
    factors: Vec<(RankId, u64)>,
    order: Vec<RankId>,
    keep: Option<Vec<TensorId>>,
}

/// The constraints of a file, checked.
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    list: Vec<Constraint>,
}

impl Constraints {
    /// Reads and checks a constraints file against `c` and `arch`; errors name the file and the
    /// constraint (exit 2).
    pub fn load(path: &str, c: &Cascade, arch: &Arch) -> CliResult<Constraints> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::read(std::path::Path::new(path), &e))?;
        Constraints::parse(&text, path, c, arch)
    }

    /// Checks the text of a constraints file; `source` names it in errors.
    pub fn parse(text: &str, source: &str, c: &Cascade, arch: &Arch) -> CliResult<Constraints> {
        let file: ConstraintsFile =
            strata_mappings::from_toml(text).map_err(|e| CliError::input(format!("{source}: {e}")))?;
        Constraints::check(&file, c, arch).map_err(|e| CliError::input(format!("{source}: {e}")))
    }

    fn check(file: &ConstraintsFile, c: &Cascade, arch: &Arch) -> Result<Constraints, String> {
        let mut list = Vec::new();
        for (i, s) in file.constraints.iter().enumerate() {
            let at = format!("constraints[{i}]");
            let einsum = match &s.einsum {
                Some(name) => Some(c.einsums().iter().position(|e| &e.name == name).ok_or_else(|| {
                    let names: Vec<&str> = c.einsums().iter().map(|e| e.name.as_str()).collect();
                    format!("{at}.einsum: `{name}` is not an Einsum of {} ({})", c.name(), names.join(", "))
                })?),
                None => None,
            };
            let level = arch.level_id(&s.level).ok_or_else(|| {
                let names: Vec<&str> = arch.levels.iter().map(|l| l.name.as_str()).collect();
                format!("{at}.level: `{}` is not a level of {} ({})", s.level, arch.name, names.join(", "))
            })?;
            let rank = |key: &str, name: &str| -> Result<RankId, String> {
                let r = c.rank_id(name).ok_or_else(|| format!("{at}.{key}: `{name}` is not a rank of {}", c.name()))?;
                if let Some(e) = einsum
                    && !c.einsums()[e].iteration_ranks.contains(&r)
                {
                    return Err(format!("{at}.{key}: Einsum {} does not iterate over `{name}`", c.einsums()[e].name));
                }
                Ok(r)
            };
            let mut factors = Vec::new();
            for (name, &f) in &s.factors {
                let r = rank(&format!("factors.{name}"), name)?;
                let size = c.rank(r).size;
                if f == 0 || !size.is_multiple_of(f) {
                    return Err(format!("{at}.factors.{name}: {f} does not divide the rank's size {size}"));
                }
                factors.push((r, f));
            }
            let mut order = Vec::new();
            for name in s.order.iter().flatten() {
                let r = rank("order", name)?;
                if order.contains(&r) {
                    return Err(format!("{at}.order: `{name}` is listed twice"));
                }
                order.push(r);
            }
            let keep = match &s.keep {
                Some(names) => Some(
                    names
                        .iter()
                        .map(|n| {
                            c.tensor_id(n).ok_or_else(|| format!("{at}.keep: `{n}` is not a tensor of {}", c.name()))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            if let Some(k) = &keep
                && arch.level(level).parent.is_none()
            {
                for (t, tensor) in c.tensors().iter().enumerate() {
                    let id = TensorId(t);
                    let outside = tensor.role.is_external() || tensor.role == strata_workloads::Role::Output;
                    if outside && !k.contains(&id) && einsum.is_none_or(|e| touches(c, e, id)) {
                        return Err(format!(
                            "{at}.keep: `{}` comes from or goes to outside the cascade, so the outermost level must keep it",
                            tensor.name
                        ));
                    }
                }
            }
            list.push(Constraint { einsum, level, factors, order, keep });
        }
        // Contradictions between constraints that can apply to the same Einsum and level.
        for (i, a) in list.iter().enumerate() {
            for (j, b) in list.iter().enumerate().skip(i + 1) {
                let overlap = a.level == b.level && (a.einsum.is_none() || b.einsum.is_none() || a.einsum == b.einsum);
                if !overlap {
                    continue;
                }
                for &(r, f) in &a.factors {
                    if let Some(&(_, g)) = b.factors.iter().find(|x| x.0 == r)
                        && f != g
                    {
                        return Err(format!(
                            "constraints[{i}] and constraints[{j}] contradict each other: rank `{}` at {} is {f} in one and {g} in the other",
                            c.rank(r).name,
                            arch.level(a.level).name
                        ));
                    }
                }
                if let (Some(x), Some(y)) = (&a.keep, &b.keep) {
                    let (mut x, mut y) = (x.clone(), y.clone());
                    x.sort();
                    y.sort();
                    if x != y {
                        return Err(format!(
                            "constraints[{i}] and constraints[{j}] contradict each other: they keep different tensors at {}",
                            arch.level(a.level).name
                        ));
                    }
                }
            }
        }
        // Per Einsum and rank, fixed factors over all levels must divide the rank's size.
        for (e, ein) in c.einsums().iter().enumerate() {
            for &r in &ein.iteration_ranks {
                let mut product = 1u128;
                let mut by = Vec::new();
                for (i, k) in list.iter().enumerate().filter(|(_, k)| k.einsum.is_none_or(|x| x == e)) {
                    if let Some(&(_, f)) = k.factors.iter().find(|x| x.0 == r) {
                        product *= u128::from(f);
                        by.push(format!("constraints[{i}]"));
                    }
                }
                let size = u128::from(c.rank(r).size);
                if by.len() > 1 && !size.is_multiple_of(product) {
                    return Err(format!(
                        "{} contradict each other: their factors of rank `{}` in Einsum {} multiply to {product}, which does not divide its size {size}",
                        by.join(" and "),
                        c.rank(r).name,
                        ein.name
                    ));
                }
            }
        }
        Ok(Constraints { list })
    }

    /// Whether the constraints are empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether `nest` satisfies every constraint that applies to it (those naming its Einsum or
    /// none, at a level on its unit's path).
    pub fn allows(&self, nest: &EinsumNest) -> bool {
        self.list.iter().all(|k| {
            if k.einsum.is_some_and(|e| e != nest.einsum) {
                return true;
            }
            let Some(lv) = nest.path.iter().position(|&l| l == k.level) else { return true };
            let temporal: Vec<_> = nest.loops.iter().filter(|l| l.level == lv && !l.is_spatial()).collect();
            let factors_ok = k
                .factors
                .iter()
                .all(|&(r, f)| temporal.iter().filter(|l| l.rank == r).map(|l| l.bound).product::<u64>() == f);
            let seen: Vec<RankId> = temporal.iter().map(|l| l.rank).filter(|r| k.order.contains(r)).collect();
            let order_ok = seen.windows(2).all(|w| {
                let p = |r: RankId| k.order.iter().position(|&x| x == r).unwrap_or(0);
                p(w[0]) <= p(w[1])
            });
            let keep_ok =
                k.keep.as_ref().is_none_or(|keep| nest.operands.iter().all(|o| o.keep[lv] == keep.contains(&o.tensor)));
            factors_ok && order_ok && keep_ok
        })
    }
}

/// Whether Einsum `e` reads or writes tensor `t`.
fn touches(c: &Cascade, e: usize, t: TensorId) -> bool {
    let ein = &c.einsums()[e];
    ein.output.tensor == t || ein.inputs.iter().any(|a| a.tensor == t)
}
