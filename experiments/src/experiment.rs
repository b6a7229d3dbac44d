//! Experiments: a TOML file names the systems, the sweep and the plots; `strata run` evaluates
//! every design point in parallel and writes results, a summary and plots.
//!
//! Results are appended to `results.jsonl` and `results.csv` as each point finishes, so a killed
//! run loses nothing, and a rerun skips the points already there. When the run ends both files
//! are rewritten in point order, so the output is the same byte for byte whatever the thread
//! count.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use crate::error::{CliError, CliResult};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    pub experiment: ExperimentSpec,
}

/// What an experiment computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Systems × models × sequence lengths: attention and end-to-end layer cost.
    AttentionSystems,
    /// Off-chip traffic of 1-pass attention as on-chip memory grows, against the I/O bounds.
    IoCurve,
    /// FlexGen's offloading policy search per model, prompt, generated tokens, overlap rule and
    /// cost model.
    Offload,
    /// LLM decode on an NPU + in-flash-compute machine (Cambricon-LLM) per architecture, model
    /// and variant (the full design or an ablation).
    FlashCompute,
    /// Weights streamed from flash per token ("LLM in a flash") per system (`arch/unit`), model
    /// and configuration (the paper's cumulative techniques).
    FlashOffload,
    /// Decode with the KV cache off the GPU (InstInfer) per system, model, batch and number of
    /// computational drives.
    KvOffload,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: Kind,
    /// Default output directory (relative to where `strata run` is started).
    pub output: Option<String>,
    /// System the speedups and energies are normalised to.
    pub baseline: Option<String>,
    #[serde(default)]
    pub systems: Vec<SystemSpec>,
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
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

impl SystemSpec {
    /// The system's architecture spec and a name for messages; errors name the key.
    /// The attention mapping of this system, read and checked for form (not yet for fit).
    pub fn attention(&self, source: &str, i: usize) -> CliResult<crate::systems::AttentionMapping> {
        use crate::systems::{AttentionMapping, FAMILIES};
        let key = format!("{source}: experiment.systems[{i}].attention");
        let passes = |default: Option<u8>| match self.passes.or(default) {
            Some(p @ 1..=3) => Ok(p),
            Some(p) => Err(CliError::input(format!("{source}: experiment.systems[{i}].passes: {p} is not 1, 2 or 3"))),
            None => Ok(1),
        };
        match &self.attention {
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
                let path = Path::new(name);
                if !path.exists() {
                    let presets: Vec<&str> = strata_mappings::presets::PRESETS.iter().map(|p| p.name).collect();
                    return Err(CliError::input(format!(
                        "{key}: `{name}` is neither a family ({}), a mapping preset ({}) nor a file",
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

    pub fn arch_spec(&self, source: &str, i: usize) -> CliResult<(strata_arch::spec::ArchSpec, String)> {
        match &self.arch {
            toml::Value::String(name) => {
                let (text, origin) = crate::eval::arch_text(name)?;
                let file: strata_arch::spec::ArchFile =
                    strata_workloads::toml_doc::from_toml(&text).map_err(|e| CliError::spec(&origin, &e))?;
                Ok((file.arch, origin))
            }
            toml::Value::Table(_) => {
                let spec: strata_arch::spec::ArchSpec =
                    serde_path_to_error::deserialize(self.arch.clone()).map_err(|e| {
                        CliError::input(format!(
                            "{source}: experiment.systems[{i}].arch.{}: {}",
                            e.path(),
                            e.inner().message()
                        ))
                    })?;
                Ok((spec, format!("{source}: experiment.systems[{i}].arch")))
            }
            _ => Err(CliError::input(format!(
                "{source}: experiment.systems[{i}].arch: a preset name, a file or an inline architecture table"
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
}

impl Default for MapperSpec {
    fn default() -> Self {
        MapperSpec { strategy: "auto".into(), objective: "edp".into(), samples: 20_000, seed: 1, milp_seconds: 1.0 }
    }
}

#[derive(Debug, Clone, Deserialize)]
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
];

/// Loads an experiment preset or file; errors name the file and key.
pub fn load(arg: &str) -> CliResult<(ExperimentSpec, String)> {
    let (text, source) = match PRESETS.iter().find(|p| p.0 == arg) {
        Some(p) => (p.1.to_string(), format!("experiment {}", p.0)),
        None => {
            let path = Path::new(arg);
            if !path.exists() {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                return Err(CliError::input(format!(
                    "`{arg}` is neither an experiment preset nor a file (experiments: {})",
                    names.join(", ")
                )));
            }
            (std::fs::read_to_string(path).map_err(|e| CliError::read(path, &e))?, path.display().to_string())
        }
    };
    let spec: ExperimentFile = strata_workloads::toml_doc::from_toml(&text).map_err(|e| CliError::spec(&source, &e))?;
    let spec = spec.experiment;
    if !["auto", "exhaustive", "random", "greedy", "milp"].contains(&spec.mapper.strategy.as_str()) {
        return Err(CliError::input(format!(
            "{source}: experiment.mapper.strategy: unknown strategy `{}` (auto, exhaustive, random, greedy, milp)",
            spec.mapper.strategy
        )));
    }
    if !["latency", "energy", "edp"].contains(&spec.mapper.objective.as_str()) {
        return Err(CliError::input(format!(
            "{source}: experiment.mapper.objective: unknown objective `{}` (latency, energy, edp)",
            spec.mapper.objective
        )));
    }
    if spec.mapper.samples == 0 || spec.mapper.milp_seconds.is_nan() || spec.mapper.milp_seconds <= 0.0 {
        return Err(CliError::input(format!("{source}: experiment.mapper: samples and milp_seconds must be positive")));
    }
    for (axis, values) in &spec.sweep {
        if values.is_empty() {
            return Err(CliError::input(format!(
                "{source}: experiment.sweep.{axis}: an axis needs at least one value"
            )));
        }
    }
    Ok((spec, source))
}

/// One result row: ordered (column, value) pairs. Values are already formatted, so CSV and
/// JSONL are deterministic.
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
    fn csv(&self) -> String {
        match self {
            Cell::Text(s) if s.contains(',') || s.contains('"') => format!("\"{}\"", s.replace('"', "\"\"")),
            Cell::Text(s) => s.clone(),
            Cell::Int(v) => v.to_string(),
            Cell::Float(v) => format!("{v:.6e}"),
        }
    }
    fn json(&self) -> serde_json::Value {
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
        match self {
            Cell::Text(s) => s.clone(),
            c => c.csv(),
        }
    }
}

impl Row {
    pub fn get(&self, key: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.0 == key).map(|c| &c.1)
    }
    pub fn f(&self, key: &str) -> f64 {
        self.get(key).map_or(f64::NAN, Cell::as_f64)
    }
    pub fn s(&self, key: &str) -> String {
        self.get(key).map_or_else(String::new, Cell::text)
    }
    fn json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> =
            self.cells.iter().map(|(k, v)| (k.clone(), v.json())).collect();
        serde_json::Value::Object(map).to_string()
    }
    fn from_json(line: &str) -> Option<Row> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let cells = v
            .as_object()?
            .iter()
            .map(|(k, v)| {
                let c = match v {
                    serde_json::Value::Number(n) => Cell::Int(n.as_u64().unwrap_or(0)),
                    serde_json::Value::String(s) => match s.parse::<f64>() {
                        Ok(f) if s.contains('e') => Cell::Float(f),
                        _ => Cell::Text(s.clone()),
                    },
                    other => Cell::Text(other.to_string()),
                };
                (k.clone(), c)
            })
            .collect();
        Some(Row { cells })
    }
}

/// A design point: its key (identifies it across runs) and its position in the sweep.
#[derive(Debug, Clone)]
pub struct Point {
    pub index: usize,
    pub key: String,
    pub values: BTreeMap<String, toml::Value>,
}

/// A numeric axis of a point: `default` when the sweep does not have it; values must be finite
/// and non-negative, or positive when `positive`.
pub fn number(values: &BTreeMap<String, toml::Value>, axis: &str, default: f64, positive: bool) -> CliResult<f64> {
    let Some(x) = values.get(axis) else { return Ok(default) };
    x.as_float()
        .or_else(|| x.as_integer().map(|i| i as f64))
        .filter(|f| f.is_finite() && (*f > 0.0 || (!positive && *f == 0.0)))
        .ok_or_else(|| {
            let what = if positive { "a positive" } else { "a non-negative" };
            CliError::input(format!("experiment.sweep.{axis}: {x} is not {what} number"))
        })
}

/// The cartesian product of the sweep axes (in key order), with `systems` as an extra axis.
pub fn points(spec: &ExperimentSpec) -> Vec<Point> {
    let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
    if !spec.systems.is_empty() {
        axes.push(("system".into(), spec.systems.iter().map(|s| toml::Value::String(s.name.clone())).collect()));
    }
    axes.extend(spec.sweep.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut out = vec![BTreeMap::new()];
    for (axis, values) in &axes {
        out = out
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut p2 = p.clone();
                    p2.insert(axis.clone(), v.clone());
                    p2
                })
            })
            .collect();
    }
    out.into_iter()
        .enumerate()
        .map(|(index, values)| {
            let key = values
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(";");
            Point { index, key, values }
        })
        .collect()
}

/// The two append-only result files and the rows seen so far, with their point index.
struct Files {
    jsonl: File,
    csv: File,
    rows: Vec<(usize, Vec<Row>)>,
}

/// Appends rows as points finish and keeps everything for the final rewrite.
pub struct Sink {
    dir: PathBuf,
    state: Mutex<Files>,
    header: Mutex<Option<Vec<String>>>,
}

fn io_err(path: &Path, e: std::io::Error) -> CliError {
    CliError::input(format!("{}: cannot write: {e}", path.display()))
}

impl Sink {
    /// Opens (or resumes) the result files in `dir`; returns the sink and the finished point keys.
    pub fn open(dir: &Path) -> CliResult<(Sink, BTreeMap<String, Vec<Row>>)> {
        std::fs::create_dir_all(dir.join("plots")).map_err(|e| io_err(dir, e))?;
        let jsonl = dir.join("results.jsonl");
        let mut done: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        if let Ok(f) = File::open(&jsonl) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Some(row) = Row::from_json(&line) {
                    done.entry(row.s("point")).or_default().push(row);
                }
            }
        }
        let open = |p: PathBuf| OpenOptions::new().create(true).append(true).open(&p).map_err(|e| io_err(&p, e));
        let j = open(jsonl)?;
        let c = open(dir.join("results.csv"))?;
        Ok((
            Sink {
                dir: dir.to_path_buf(),
                state: Mutex::new(Files { jsonl: j, csv: c, rows: Vec::new() }),
                header: Mutex::new(None),
            },
            done,
        ))
    }

    /// Records a finished point's rows, appending them to both files at once.
    pub fn push(&self, index: usize, rows: Vec<Row>, fresh: bool) -> CliResult<()> {
        let mut st = self.state.lock().expect("no panics while holding the lock");
        if fresh {
            let mut header = self.header.lock().expect("lock");
            for r in &rows {
                writeln!(st.jsonl, "{}", r.json()).map_err(|e| io_err(&self.dir, e))?;
                if header.is_none() {
                    let cols: Vec<String> = r.cells.iter().map(|c| c.0.clone()).collect();
                    if st.csv.metadata().map(|m| m.len() == 0).unwrap_or(true) {
                        writeln!(st.csv, "{}", cols.join(",")).map_err(|e| io_err(&self.dir, e))?;
                    }
                    *header = Some(cols);
                }
                let line: Vec<String> = r.cells.iter().map(|c| c.1.csv()).collect();
                writeln!(st.csv, "{}", line.join(",")).map_err(|e| io_err(&self.dir, e))?;
            }
            st.jsonl.flush().and_then(|_| st.csv.flush()).map_err(|e| io_err(&self.dir, e))?;
        }
        st.rows.push((index, rows));
        Ok(())
    }

    /// Rewrites both files in point order; returns every row in that order.
    pub fn finish(self) -> CliResult<Vec<Row>> {
        let mut all = self.state.into_inner().expect("lock").rows;
        all.sort_by_key(|x| x.0);
        let rows: Vec<Row> = all.into_iter().flat_map(|x| x.1).collect();
        let mut csv = String::new();
        if let Some(first) = rows.first() {
            csv += &first.cells.iter().map(|c| c.0.clone()).collect::<Vec<_>>().join(",");
            csv += "\n";
        }
        let mut jsonl = String::new();
        for r in &rows {
            csv += &r.cells.iter().map(|c| c.1.csv()).collect::<Vec<_>>().join(",");
            csv += "\n";
            jsonl += &r.json();
            jsonl += "\n";
        }
        for (name, text) in [("results.csv", csv), ("results.jsonl", jsonl)] {
            let tmp = self.dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, e))?;
            std::fs::rename(&tmp, self.dir.join(name)).map_err(|e| io_err(&self.dir, e))?;
        }
        Ok(rows)
    }
}
