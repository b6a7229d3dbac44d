//! Experiment files: a TOML file names the kind, the systems, the sweep and the plots.
//!
//! [`load`] parses one and [`Experiment::prepare`] runs every check before anything is computed,
//! so `strata validate` and `strata run` reject exactly the same files. Relative paths inside a
//! file (architectures, models, mappings, cost files) resolve against the file's own folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{CliError, CliResult};
use crate::kind::Kind;
use crate::sweep::Sweep;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    pub experiment: ExperimentSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// One of the kinds in [`crate::kind::KINDS`], by name.
    pub kind: String,
    /// Default output directory (relative to where `strata run` is started).
    pub output: Option<String>,
    /// System the speedups and energies are normalised to.
    pub baseline: Option<String>,
    #[serde(default)]
    pub systems: Vec<SystemSpec>,
    /// Axes: a kind's own (`model`, `seq`, ...) or a spec path (`"arch.levels.GlobalBuffer.capacity"`).
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
    /// Groups of axes whose values move together (the i-th values of each form one point).
    #[serde(default)]
    pub zip: Vec<Vec<String>>,
    /// A boolean expression over the axes; points where it is false are skipped.
    pub filter: Option<String>,
    /// Published numbers the summary compares against (never used to compute results).
    #[serde(default)]
    pub reference: Vec<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    pub targets: BTreeMap<String, f64>,
    /// How the mapper maps what no family template covers (linear layers, unfused Einsums).
    #[serde(default)]
    pub mapper: MapperSpec,
    /// Which plots to draw (all that apply when omitted); see `plots::NAMES`.
    pub plots: Option<Vec<String>>,
    /// Which metrics the summary reports (all of `run::METRICS` when omitted); results files keep every metric.
    pub metrics: Option<Vec<String>>,
}

impl ExperimentSpec {
    /// The number `field` of the reference point whose `keys` have the given values (strings,
    /// or numbers compared as written), if there is one.
    pub fn reference_value(&self, keys: &[(&str, &str)], field: &str) -> Option<f64> {
        let text = |v: &toml::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        self.reference
            .iter()
            .find(|r| keys.iter().all(|(k, want)| r.get(*k).is_some_and(|v| text(v) == *want)))
            .and_then(|r| r.get(field).and_then(|v| v.as_float()))
    }
}

/// A name as the loaders should see it: a preset name as written (presets come first, as every
/// loader has it), else a relative path to a file beside the experiment file joined to that
/// folder, else as written.
pub fn resolve(base: &Path, name: &str) -> String {
    static PRESET_NAMES: std::sync::OnceLock<std::collections::BTreeSet<&'static str>> = std::sync::OnceLock::new();
    let presets = PRESET_NAMES
        .get_or_init(|| crate::catalog::preset_tables().into_iter().flat_map(|t| t.presets).map(|p| p.0).collect());
    let p = Path::new(name);
    if presets.contains(name) || !p.is_relative() || !base.join(p).is_file() {
        return name.to_string();
    }
    base.join(p).display().to_string()
}

/// A parsed, checked experiment: what a run, a shard or a merge works from.
pub struct Experiment {
    pub spec: ExperimentSpec,
    /// Where it came from, for messages (`experiment default` or a file path).
    pub source: String,
    /// The folder relative paths inside it resolve against.
    pub base: PathBuf,
    /// The file's text, kept so that a merge can rebuild the experiment from a shard's manifest.
    pub text: String,
    pub kind: &'static dyn Kind,
    pub sweep: Sweep,
    /// Linear layers mapped once per (architecture content, GEMM shape) across the run's points.
    pub linear: crate::attention_systems::LinearCache,
}

impl Experiment {
    /// Parses `text` and runs every check `strata run` relies on; errors name `source` and the key.
    pub fn prepare(text: &str, source: &str, base: &Path) -> CliResult<Experiment> {
        let file: ExperimentFile =
            strata_workloads::toml_doc::from_toml(text).map_err(|e| CliError::spec(source, &e))?;
        let spec = file.experiment;
        let kind = crate::kind::find(&spec.kind).ok_or_else(|| {
            let names: Vec<&str> = crate::kind::KINDS.iter().map(|k| k.name()).collect();
            CliError::input(format!(
                "{source}: experiment.kind: unknown kind `{}` (kinds: {})",
                spec.kind,
                names.join(", ")
            ))
        })?;
        spec.mapper.check(source)?;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in spec.systems.iter().enumerate() {
            if let Some(j) = seen.insert(s.name.as_str(), i) {
                return Err(CliError::input(format!(
                    "{source}: experiment.systems[{j}] and experiment.systems[{i}] are both named `{}`",
                    s.name
                )));
            }
        }
        if !spec.systems.is_empty() && !kind.uses_systems() {
            return Err(CliError::input(format!(
                "{source}: experiment.systems: a `{}` experiment takes no systems",
                kind.name()
            )));
        }
        if let Some(b) = &spec.baseline
            && !spec.systems.iter().any(|s| &s.name == b)
        {
            return Err(CliError::input(format!("{source}: experiment.baseline: no system is named `{b}`")));
        }
        for (k, name) in spec.plots.iter().flatten().enumerate() {
            if !crate::plots::NAMES.contains(&name.as_str()) {
                return Err(CliError::input(format!(
                    "{source}: experiment.plots[{k}]: unknown plot `{name}` (plots: {})",
                    crate::plots::NAMES.join(", ")
                )));
            }
        }
        let sweep = Sweep::new(&spec, kind, source)?;
        let x = Experiment {
            spec,
            source: source.to_string(),
            base: base.to_path_buf(),
            text: text.to_string(),
            kind,
            sweep,
            linear: Default::default(),
        };
        crate::kind::check_axes(&x)?;
        kind.check(&x)?;
        crate::sweep::check_derived_specs(&x)?;
        Ok(x)
    }

    /// `name` resolved against the experiment's folder (see [`resolve`]).
    pub fn path(&self, name: &str) -> String {
        resolve(&self.base, name)
    }

    /// The system named `name` and its index.
    pub fn system(&self, name: &str) -> Option<(usize, &SystemSpec)> {
        self.spec.systems.iter().enumerate().find(|(_, s)| s.name == name)
    }

    /// The system `index` with the point's `system.*` spec paths applied.
    pub fn system_at(&self, index: usize, p: &Point) -> CliResult<SystemSpec> {
        let base = &self.spec.systems[index];
        if crate::sweep::paths(p, "system").next().is_none() {
            return Ok(base.clone());
        }
        let at = format!("{}: experiment.systems[{index}]", self.source);
        let mut table = toml::Value::try_from(base).map_err(|e| CliError::input(format!("{at}: {e}")))?;
        crate::sweep::apply(&mut table, p, "system", &self.source)?;
        let derived: SystemSpec = serde_path_to_error::deserialize(table)
            .map_err(|e| CliError::input(format!("{at}.{}: {}", e.path(), e.inner().message())))?;
        if derived.name != base.name {
            return Err(CliError::input(format!("{at}: a sweep cannot rename a system (system.name)")));
        }
        Ok(derived)
    }

    /// A message prefix naming the file and the key.
    pub fn at(&self, key: &str) -> String {
        format!("{}: {key}", self.source)
    }
}

impl SystemSpec {
    /// The attention mapping of this system, read and checked for form (not yet for fit).
    pub fn attention(&self, x: &Experiment, i: usize) -> CliResult<crate::systems::AttentionMapping> {
        use crate::systems::{AttentionMapping, FAMILIES};
        let source = &x.source;
        let key = format!("{source}: experiment.systems[{i}].attention");
        let passes = |default: Option<u8>| match self.passes.or(default) {
            Some(p @ 1..=3) => Ok(p),
            Some(p) => Err(CliError::input(format!("{source}: experiment.systems[{i}].passes: {p} is not 1, 2 or 3"))),
            None => Ok(1),
        };
        match &self.attention {
            toml::Value::String(name) if name == "search" => Ok(AttentionMapping::Search { passes: passes(None)? }),
            toml::Value::String(name) if FAMILIES.contains(&name.as_str()) => {
                if self.passes.is_some() {
                    return Err(CliError::input(format!(
                        "{source}: experiment.systems[{i}].passes: family `{name}` fixes its own cascade"
                    )));
                }
                Ok(AttentionMapping::Family(name.clone()))
            }
            toml::Value::String(name) => {
                if let Some(p) = strata_mappings::presets::find(name) {
                    let own = p.workload.strip_prefix("attention-").and_then(|w| w[..1].parse().ok());
                    if own.is_none() {
                        return Err(CliError::input(format!(
                            "{key}: mapping preset `{name}` maps `{}`, not attention",
                            p.workload
                        )));
                    }
                    if self.passes.is_some_and(|p| Some(p) != own) {
                        return Err(CliError::input(format!(
                            "{source}: experiment.systems[{i}].passes: mapping preset `{name}` maps `{}`",
                            p.workload
                        )));
                    }
                    let origin = format!("mapping preset {name}");
                    return Ok(AttentionMapping::Fixed { text: p.text.to_string(), origin, passes: passes(own)? });
                }
                let resolved = x.path(name);
                let path = Path::new(&resolved);
                if !path.exists() {
                    let presets: Vec<&str> = strata_mappings::presets::PRESETS.iter().map(|p| p.name).collect();
                    return Err(CliError::input(format!(
                        "{key}: `{name}` is neither a family ({}), `search` (the fusion search), a mapping preset ({}) nor a file",
                        FAMILIES.join(", "),
                        presets.join(", ")
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?;
                Ok(AttentionMapping::Fixed { text, origin: path.display().to_string(), passes: passes(None)? })
            }
            toml::Value::Table(t) => {
                let file =
                    toml::Value::Table([("mapping".to_string(), toml::Value::Table(t.clone()))].into_iter().collect());
                let text = toml::to_string(&file).map_err(|e| CliError::input(format!("{key}: {e}")))?;
                Ok(AttentionMapping::Fixed { text, origin: key, passes: passes(None)? })
            }
            _ => Err(CliError::input(format!(
                "{key}: a family name, a mapping preset, a file or an inline mapping table"
            ))),
        }
    }

    /// The system's `[arch]` table as TOML (from a preset, a file or inline) and where it came
    /// from, for messages; spec-path axes are applied to it before it is read.
    pub fn arch_table(&self, x: &Experiment, i: usize) -> CliResult<(toml::Value, String)> {
        match &self.arch {
            toml::Value::String(name) => {
                if strata_arch::presets::text(name).is_none() && !Path::new(&x.path(name)).exists() {
                    return Err(CliError::input(format!(
                        "{}: experiment.systems[{i}].arch: unknown architecture `{name}`",
                        x.source
                    )));
                }
                crate::sweep::table_of(&x.path(name), "arch", "an architecture", strata_arch::presets::PRESETS)
            }
            toml::Value::Table(_) => Ok((self.arch.clone(), format!("{}: experiment.systems[{i}].arch", x.source))),
            _ => Err(CliError::input(format!(
                "{}: experiment.systems[{i}].arch: a preset name, a file or an inline architecture table",
                x.source
            ))),
        }
    }
}

/// Mapper settings of an experiment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapperSpec {
    /// `auto` (exhaustive within `samples` points, else the keep-all subspace or a sample, then
    /// greedy), `exhaustive`, `random`, `greedy`, `milp`.
    pub strategy: String,
    /// `latency`, `energy` or `edp`.
    pub objective: String,
    pub samples: usize,
    pub seed: u64,
    /// Wall-clock limit of each MILP solve.
    pub milp_seconds: f64,
    /// Wall-clock limit of each Einsum's search, in seconds (none by default: `samples` bounds
    /// the work). A point whose search runs out of it fails, naming the Einsum, instead of
    /// keeping a mapping that would depend on the machine's speed.
    pub time_limit: Option<f64>,
}

impl Default for MapperSpec {
    fn default() -> Self {
        MapperSpec {
            strategy: "auto".into(),
            objective: "edp".into(),
            samples: 20_000,
            seed: 1,
            milp_seconds: 1.0,
            time_limit: None,
        }
    }
}

impl MapperSpec {
    fn check(&self, source: &str) -> CliResult<()> {
        if !["auto", "exhaustive", "random", "greedy", "milp"].contains(&self.strategy.as_str()) {
            return Err(CliError::input(format!(
                "{source}: experiment.mapper.strategy: unknown strategy `{}` (auto, exhaustive, random, greedy, milp)",
                self.strategy
            )));
        }
        if !["latency", "energy", "edp"].contains(&self.objective.as_str()) {
            return Err(CliError::input(format!(
                "{source}: experiment.mapper.objective: unknown objective `{}` (latency, energy, edp)",
                self.objective
            )));
        }
        if self.samples == 0 || !self.milp_seconds.is_finite() || self.milp_seconds <= 0.0 {
            return Err(CliError::input(format!(
                "{source}: experiment.mapper: samples and milp_seconds must be positive"
            )));
        }
        if let Some(t) = self.time_limit
            && !(t.is_finite() && t > 0.0)
        {
            return Err(CliError::input(format!(
                "{source}: experiment.mapper.time_limit: {t} is not a positive number of seconds"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    pub name: String,
    /// An architecture preset name or file, or an inline `[arch]`-style table.
    pub arch: toml::Value,
    /// How attention is mapped: a family (see `systems::FAMILIES`) whose free choice the
    /// capacity settles, or one fixed mapping: a mapping preset, a mapping file, or an inline
    /// `[mapping]`-style table.
    pub attention: toml::Value,
    /// Which cascade (1-, 2- or 3-pass) a fixed mapping maps; a family or a mapping preset knows.
    #[serde(default)]
    pub passes: Option<u8>,
}

/// Embedded experiments: (name, TOML).
pub const PRESETS: &[(&str, &str)] = &[
    ("default", include_str!("../default.toml")),
    ("fusemax", include_str!("../fusemax.toml")),
    ("flash-io", include_str!("../flash-io.toml")),
    ("fusemax-pareto", include_str!("../fusemax-pareto.toml")),
    ("flexgen", include_str!("../flexgen.toml")),
    ("cambricon-llm", include_str!("../cambricon-llm.toml")),
    ("cambricon-ablation", include_str!("../cambricon-ablation.toml")),
    ("cambricon-scaling", include_str!("../cambricon-scaling.toml")),
    ("llm-in-a-flash", include_str!("../llm-in-a-flash.toml")),
    ("instinfer", include_str!("../instinfer.toml")),
    ("double-sparsity", include_str!("../double-sparsity.toml")),
    ("flashsvd", include_str!("../flashsvd.toml")),
    ("flashsvd-ffn", include_str!("../flashsvd-ffn.toml")),
    ("sparse-ffn", include_str!("../sparse-ffn.toml")),
];

/// Loads and checks an experiment preset or file; errors name the file and key.
pub fn load(arg: &str) -> CliResult<Experiment> {
    match PRESETS.iter().find(|p| p.0 == arg) {
        Some(p) => Experiment::prepare(p.1, &format!("experiment {}", p.0), Path::new(".")),
        None => {
            let path = Path::new(arg);
            if !path.exists() {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                return Err(CliError::input(format!(
                    "`{arg}` is neither an experiment preset nor a file (experiments: {})",
                    names.join(", ")
                )));
            }
            let text = std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?;
            let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
            let base = std::fs::canonicalize(&base).unwrap_or(base);
            Experiment::prepare(&text, &path.display().to_string(), &base)
        }
    }
}

/// One result row: ordered (column, value) pairs. Values are already formatted, so CSV and
/// JSONL are deterministic.
/// The distinct values of `key` over `rows`, in order of first appearance: the groups a summary
/// or a plot draws, in the order the sweep made them.
pub fn distinct_by<'a, K: PartialEq>(rows: impl IntoIterator<Item = &'a Row>, key: impl Fn(&Row) -> K) -> Vec<K> {
    let mut v: Vec<K> = Vec::new();
    for r in rows {
        let k = key(r);
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<(String, Cell)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(u64),
    Float(f64),
}

impl Cell {
    /// The CSV field; quoting is the csv crate's (commas, quotes, newlines).
    pub fn csv(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(v) => v.to_string(),
            Cell::Float(v) => format!("{v:.6e}"),
        }
    }
    pub fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Int(v) => serde_json::Value::from(*v),
            Cell::Float(v) => serde_json::Value::String(format!("{v:.6e}")),
        }
    }
    pub fn as_f64(&self) -> f64 {
        match self {
            Cell::Text(s) => s.parse().unwrap_or(f64::NAN),
            Cell::Int(v) => *v as f64,
            Cell::Float(v) => *v,
        }
    }
    pub fn text(&self) -> String {
        self.csv()
    }
}

impl Row {
    /// The cell of an optional column.
    pub fn get(&self, key: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.0 == key).map(|c| &c.1)
    }

    /// The cell of a column the kind's schema has. Summaries and plots read columns by the
    /// names their kind writes, so a misspelled name is a bug that must fail loudly (every
    /// kind's summary and plots run in the tests), never a silent NaN in a report.
    fn cell(&self, key: &str) -> &Cell {
        self.get(key).unwrap_or_else(|| {
            let cols: Vec<&str> = self.cells.iter().map(|c| c.0.as_str()).collect();
            panic!("no column `{key}` in a row with columns {}", cols.join(", "))
        })
    }
    /// The text of an optional column; empty when the row lacks it.
    pub fn opt(&self, key: &str) -> String {
        self.get(key).map_or_else(String::new, Cell::text)
    }
    pub fn f(&self, key: &str) -> f64 {
        self.cell(key).as_f64()
    }
    pub fn s(&self, key: &str) -> String {
        self.cell(key).text()
    }
    pub fn json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> =
            self.cells.iter().map(|(k, v)| (k.clone(), v.json())).collect();
        serde_json::Value::Object(map).to_string()
    }
}

/// A design point: its key (identifies it across runs) and its position in the sweep.
#[derive(Debug, Clone)]
pub struct Point {
    pub index: u64,
    pub key: String,
    pub values: BTreeMap<String, toml::Value>,
}

impl Point {
    /// The point's swept spec paths as `path=value` pairs joined by `; ` (empty without any):
    /// what tells apart points of one design sweep in rows and summaries.
    pub fn design(&self) -> String {
        self.values
            .iter()
            .filter(|(k, _)| k.contains('.'))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A text axis as written (numbers as TOML writes them); empty when absent.
    pub fn text(&self, axis: &str) -> String {
        self.values.get(axis).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default()
    }

    /// An integer axis the kind's schema declares (checked before the run), else `default`.
    pub fn int(&self, axis: &str, default: u64) -> u64 {
        self.values.get(axis).and_then(toml::Value::as_integer).map_or(default, |v| v as u64)
    }

    /// A numeric axis (integer or float; checked before the run), else `default`.
    pub fn num(&self, axis: &str, default: f64) -> f64 {
        self.values.get(axis).and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))).unwrap_or(default)
    }
}
