//! The design points of an experiment: axes (a kind's own, or any field of the architecture,
//! model or mapping by its path), zipped groups of axes that move together, a filter, and shards.
//!
//! Points are never all held at once: [`Sweep::point`] decodes the i-th point of the product in
//! mixed radix (systems outermost, then the axes in key order, a zipped group at the place of its
//! first member), so a sweep's memory does not grow with its size and any shard can be computed
//! from the index alone.

use std::collections::BTreeMap;

use crate::error::{CliError, CliResult};
use crate::experiment::{Experiment, ExperimentSpec, Point};
use crate::filter::Filter;
use crate::kind::Kind;

/// What a spec-path axis can change, by its first segment.
pub const PATH_ROOTS: [&str; 4] = ["arch", "model", "mapping", "system"];

/// Axes that move together and their value tuples.
#[derive(Debug, Clone)]
struct Group {
    names: Vec<String>,
    tuples: Vec<Vec<toml::Value>>,
}

/// One slice of a sweep: the points whose index is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with 0 ≤ I < N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("`{s}` is not I/N (e.g. 0/4)"))?;
        let (index, count): (u64, u64) = match (i.trim().parse(), n.trim().parse()) {
            (Ok(i), Ok(n)) => (i, n),
            _ => return Err(format!("`{s}` is not I/N with whole numbers")),
        };
        if count == 0 || index >= count {
            return Err(format!("`{s}`: need 0 ≤ I < N"));
        }
        Ok(Shard { index, count })
    }

    pub fn contains(&self, point: u64) -> bool {
        point % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A value of an axis and its position among the axis's values.
pub type Indexed<'a> = (usize, &'a toml::Value);

/// The axes of an experiment and how they combine.
#[derive(Debug, Clone)]
pub struct Sweep {
    groups: Vec<Group>,
    filter: Option<Filter>,
    /// Points of the full product, before the filter.
    len: u64,
    /// The experiment's source, for the filter's errors.
    source: String,
}

/// Most points a sweep may have before `--max-points` must allow it.
pub const DEFAULT_MAX_POINTS: u64 = 1_000_000;

impl Sweep {
    pub fn new(spec: &ExperimentSpec, kind: &dyn Kind, source: &str) -> CliResult<Sweep> {
        let err = |key: &str, msg: String| CliError::input(format!("{source}: experiment.{key}: {msg}"));
        for (axis, values) in &spec.sweep {
            if values.is_empty() {
                return Err(err(&format!("sweep.{axis}"), "an axis needs at least one value".into()));
            }
            // A zipped axis may repeat values; its group's tuples may not (checked below).
            let zipped = spec.zip.iter().any(|g| g.contains(axis));
            let mut seen: Vec<&toml::Value> = Vec::new();
            for (i, v) in values.iter().enumerate().filter(|_| !zipped) {
                if let Some(j) = seen.iter().position(|w| *w == v) {
                    return Err(err(&format!("sweep.{axis}[{i}]"), format!("{v} repeats value [{j}]")));
                }
                seen.push(v);
            }
            if axis == "system" && kind.uses_systems() {
                return Err(err("sweep.system", "this kind takes its systems from [[experiment.systems]]".into()));
            }
        }
        let mut in_zip: BTreeMap<&str, usize> = BTreeMap::new();
        for (z, group) in spec.zip.iter().enumerate() {
            if group.len() < 2 {
                return Err(err(&format!("zip[{z}]"), "a zipped group needs at least two axes".into()));
            }
            for name in group {
                let Some(values) = spec.sweep.get(name) else {
                    return Err(err(&format!("zip[{z}]"), format!("`{name}` is not an axis of experiment.sweep")));
                };
                if let Some(other) = in_zip.insert(name, z) {
                    return Err(err(&format!("zip[{z}]"), format!("`{name}` is already in zip[{other}]")));
                }
                let first = &spec.sweep[&group[0]];
                if values.len() != first.len() {
                    return Err(err(
                        &format!("zip[{z}]"),
                        format!("`{name}` has {} values but `{}` has {}", values.len(), group[0], first.len()),
                    ));
                }
            }
        }
        let mut groups = Vec::new();
        if !spec.systems.is_empty() {
            let tuples = spec.systems.iter().map(|s| vec![toml::Value::String(s.name.clone())]).collect();
            groups.push(Group { names: vec!["system".into()], tuples });
        }
        for (axis, values) in &spec.sweep {
            match in_zip.get(axis.as_str()) {
                Some(&z) if spec.zip[z].iter().any(|n| n < axis) => {} // placed with its group's first member
                Some(&z) => {
                    let mut names = spec.zip[z].clone();
                    names.sort();
                    let tuples: Vec<Vec<toml::Value>> =
                        (0..values.len()).map(|i| names.iter().map(|n| spec.sweep[n][i].clone()).collect()).collect();
                    for (i, t) in tuples.iter().enumerate() {
                        if let Some(j) = tuples[..i].iter().position(|u| u == t) {
                            return Err(err(&format!("zip[{z}]"), format!("values [{i}] repeat values [{j}]")));
                        }
                    }
                    groups.push(Group { names, tuples });
                }
                None => groups.push(Group {
                    names: vec![axis.clone()],
                    tuples: values.iter().map(|v| vec![v.clone()]).collect(),
                }),
            }
        }
        let len = groups
            .iter()
            .try_fold(1u64, |n, g| n.checked_mul(g.tuples.len() as u64))
            .ok_or_else(|| err("sweep", "the product of the axes has more than 2⁶⁴ points".into()))?;
        let names: Vec<String> = groups.iter().flat_map(|g| g.names.clone()).collect();
        let filter = match &spec.filter {
            Some(f) => Some(Filter::parse(f, &names).map_err(|e| err("filter", e))?),
            None => None,
        };
        Ok(Sweep { groups, filter, len, source: source.to_string() })
    }

    /// Points of the full product, before the filter.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The point at `index` of the product, or `None` where the filter skips it.
    pub fn point(&self, index: u64) -> CliResult<Option<Point>> {
        let mut values = BTreeMap::new();
        let mut rest = index;
        for g in self.groups.iter().rev() {
            let n = g.tuples.len() as u64;
            let tuple = &g.tuples[(rest % n) as usize];
            rest /= n;
            for (name, v) in g.names.iter().zip(tuple) {
                values.insert(name.clone(), v.clone());
            }
        }
        if let Some(f) = &self.filter
            && !f.keeps(&values).map_err(|e| CliError::input(format!("{}: experiment.filter: {e}", self.source)))?
        {
            return Ok(None);
        }
        let key = values
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
            .collect::<Vec<_>>()
            .join(";");
        Ok(Some(Point { index, key, values }))
    }

    /// The points of a shard, in index order.
    pub fn points(&self, shard: Shard) -> impl Iterator<Item = CliResult<Point>> + '_ {
        (shard.index..self.len).step_by(shard.count as usize).filter_map(move |i| self.point(i).transpose())
    }

    /// Every value of one axis (empty when the sweep lacks it).
    pub fn values(&self, axis: &str) -> Vec<&toml::Value> {
        for g in &self.groups {
            if let Some(k) = g.names.iter().position(|n| n == axis) {
                return g.tuples.iter().map(|t| &t[k]).collect();
            }
        }
        Vec::new()
    }

    /// The distinct pairs of values axes `a` and `b` take together: their zipped tuples when they
    /// move together, else every combination (positions in each axis's values come with them).
    pub fn pairs(&self, a: &str, b: &str) -> Vec<(Indexed<'_>, Indexed<'_>)> {
        let zipped = self.groups.iter().find_map(|g| {
            let i = g.names.iter().position(|n| n == a)?;
            let j = g.names.iter().position(|n| n == b)?;
            Some(g.tuples.iter().enumerate().map(|(k, t)| ((k, &t[i]), (k, &t[j]))).collect())
        });
        zipped.unwrap_or_else(|| {
            let (xs, ys) = (self.values(a), self.values(b));
            xs.iter()
                .enumerate()
                .flat_map(|(i, x)| ys.iter().enumerate().map(move |(j, y)| ((i, *x), (j, *y))))
                .collect()
        })
    }

    /// The distinct assignments of the spec-path axes under `root` (`arch`, `model`, ...): what
    /// derived specs the sweep builds from each base spec.
    pub fn path_assignments(&self, root: &str) -> Vec<Vec<(String, toml::Value)>> {
        let mut out: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for g in &self.groups {
            let picked: Vec<usize> = (0..g.names.len())
                .filter(|&k| g.names[k].split('.').next() == Some(root) && g.names[k].contains('.'))
                .collect();
            if picked.is_empty() {
                continue;
            }
            let mut tuples: Vec<Vec<(String, toml::Value)>> = Vec::new();
            for t in &g.tuples {
                let a: Vec<(String, toml::Value)> =
                    picked.iter().map(|&k| (g.names[k].clone(), t[k].clone())).collect();
                if !tuples.contains(&a) {
                    tuples.push(a);
                }
            }
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    tuples.iter().map(move |t| prefix.iter().cloned().chain(t.iter().cloned()).collect())
                })
                .collect();
        }
        out
    }
}

/// The spec-path axes of a point under `root`, in key order.
pub fn paths<'a>(p: &'a Point, root: &'a str) -> impl Iterator<Item = (&'a str, &'a toml::Value)> {
    p.values
        .iter()
        .filter(move |(k, _)| k.contains('.') && k.split('.').next() == Some(root))
        .map(|(k, v)| (k.as_str(), v))
}

/// The `[root]` table of the preset named `arg` among `presets`, or of the file `arg`, and where
/// it came from.
pub fn table_of(arg: &str, root: &str, what: &str, presets: &[(&str, &str)]) -> CliResult<(toml::Value, String)> {
    let (text, origin) = crate::load::preset_or_file(arg, what, presets)?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| CliError::input(format!("{origin}: {e}")))?;
    let table = doc.get(root).cloned().ok_or_else(|| CliError::input(format!("{origin}: no [{root}] table")))?;
    Ok((table, origin))
}

/// Sets the field at `path` (its segments after the root) in `doc` to `value`. Inside an array
/// of tables a segment picks the element whose `name` is that segment, or the element at that
/// index. A missing last key is added, so that the spec's own checks name an unknown field.
pub fn set(doc: &mut toml::Value, path: &str, value: &toml::Value) -> Result<(), String> {
    let segments: Vec<&str> = path.split('.').skip(1).collect();
    if segments.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(format!("`{path}` is not a dotted path like arch.levels.GlobalBuffer.capacity"));
    }
    let mut at = doc;
    let mut walked = path.split('.').next().unwrap_or_default().to_string();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        at = match at {
            toml::Value::Table(t) => {
                if last {
                    t.insert(seg.to_string(), value.clone());
                    return Ok(());
                }
                t.get_mut(*seg).ok_or_else(|| format!("{walked} has no key `{seg}`"))?
            }
            toml::Value::Array(items) => {
                let names: Vec<String> = items
                    .iter()
                    .map(|v| v.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string())
                    .collect();
                let k = names
                    .iter()
                    .position(|n| n == seg)
                    .or_else(|| seg.parse::<usize>().ok().filter(|&k| k < items.len()));
                let Some(k) = k else {
                    return Err(format!("{walked} has no element named `{seg}` (names: {})", names.join(", ")));
                };
                if last {
                    items[k] = value.clone();
                    return Ok(());
                }
                &mut items[k]
            }
            _ => return Err(format!("{walked} is a value, not a table, so it has no `{seg}`")),
        };
        walked = format!("{walked}.{seg}");
    }
    Ok(())
}

/// Applies a point's spec-path axes under `root` to `table`; errors name the axis and value.
pub fn apply(table: &mut toml::Value, p: &Point, root: &str, source: &str) -> CliResult<()> {
    for (axis, v) in paths(p, root) {
        set(table, axis, v)
            .map_err(|e| CliError::input(format!("{source}: experiment.sweep.\"{axis}\" = {v}: {e}")))?;
    }
    Ok(())
}

/// Builds every derived spec of the sweep once before anything runs, so that a path that does
/// not exist, a value of the wrong type or unit, or a derived spec its own checks reject exits 2
/// at once, naming the axis, the value and the key.
pub fn check_derived_specs(x: &Experiment) -> CliResult<()> {
    for root in PATH_ROOTS {
        let assignments = x.sweep.path_assignments(root);
        if assignments.iter().all(Vec::is_empty) {
            continue;
        }
        for a in &assignments {
            let values: BTreeMap<String, toml::Value> = a.iter().cloned().collect();
            let p = Point { index: 0, key: String::new(), values };
            let what: Vec<String> = a.iter().map(|(k, v)| format!("\"{k}\" = {v}")).collect();
            x.kind
                .check_paths(x, root, &p)
                .map_err(|e| CliError::input(format!("{} (with {})", e.message, what.join(", "))))?;
        }
    }
    Ok(())
}
