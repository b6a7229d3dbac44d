//! Experiment kinds: what a kind validates, how one point becomes rows, its summary and its
//! plots. Each kind is one file implementing [`Kind`] and one line in [`KINDS`].

use std::path::Path;

use strata_arch::Arch;
use strata_workloads::{Model, WorkloadSpec};

use crate::error::{CliError, CliResult};
use crate::experiment::{Experiment, Point, Row};
use crate::sweep::{self, PATH_ROOTS};

/// What values an axis takes; checked for every value before anything runs.
#[derive(Debug, Clone, Copy)]
pub enum Values {
    /// Whole numbers ≥ 1.
    PositiveInt,
    /// Whole numbers ≥ 0 (0 keeps the preset's value).
    Count,
    /// Finite numbers > 0.
    Positive,
    /// A model preset or file.
    Model,
    /// An architecture preset or file.
    Arch,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// Any string; the kind's own check looks closer.
    Text,
}

/// An axis a kind reads.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub name: &'static str,
    pub required: bool,
    pub values: Values,
}

pub const fn required(name: &'static str, values: Values) -> Axis {
    Axis { name, required: true, values }
}

pub const fn optional(name: &'static str, values: Values) -> Axis {
    Axis { name, required: false, values }
}

/// An experiment kind.
pub trait Kind: Sync {
    /// The name `kind = "..."` selects it by.
    fn name(&self) -> &'static str;
    /// One line for `strata list`.
    fn about(&self) -> &'static str;
    /// Every axis it reads (spec paths aside).
    fn axes(&self) -> &'static [Axis];
    /// Whether its points run per `[[experiment.systems]]` entry.
    fn uses_systems(&self) -> bool {
        false
    }
    /// Which spec-path roots (`arch`, `model`, `mapping`) its points apply.
    fn spec_paths(&self) -> &'static [&'static str] {
        &[]
    }
    /// The columns of its rows, in order: the result files' fixed schema.
    fn columns(&self, x: &Experiment) -> Vec<String>;
    /// Checks beyond the axes' value types, before anything runs.
    fn check(&self, _x: &Experiment) -> CliResult<()> {
        Ok(())
    }
    /// Builds every spec the point `p` derives under `root` (only its spec-path axes are set).
    fn check_paths(&self, x: &Experiment, root: &str, p: &Point) -> CliResult<()> {
        check_paths(x, root, p)
    }
    /// One point's rows; they are committed together.
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>>;
    /// The summary's body (after the experiment's title and description).
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String;
    /// Draws its plots into `dir`; returns the files written.
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &Path) -> Result<Vec<String>, String>;
}

/// Every kind, by name.
pub const KINDS: &[&dyn Kind] = &[
    &crate::attention_systems::AttentionSystems,
    &crate::double_sparsity::DoubleSparsity,
    &crate::io_curve::IoCurve,
    &crate::offload::Offload,
    &crate::flash_compute::FlashCompute,
    &crate::flash_offload::FlashOffload,
    &crate::flashsvd::FlashSvd,
    &crate::serving::Serving,
];

pub fn find(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// Checks that the sweep has the axes the kind needs and no others, and every value's type.
pub fn check_axes(x: &Experiment) -> CliResult<()> {
    let (kind, source) = (x.kind, &x.source);
    let at = |axis: &str| format!("{source}: experiment.sweep.{axis}");
    for a in kind.axes() {
        if a.required && !x.spec.sweep.contains_key(a.name) {
            return Err(CliError::input(format!("{}: this kind of experiment needs the axis", at(a.name))));
        }
    }
    for (name, values) in &x.spec.sweep {
        if name.contains('.') {
            let root = name.split('.').next().unwrap_or_default();
            if !PATH_ROOTS.contains(&root) {
                return Err(CliError::input(format!(
                    "{source}: experiment.sweep.\"{name}\": a spec path starts with {}",
                    PATH_ROOTS.join(", ")
                )));
            }
            if !kind.spec_paths().contains(&root) {
                return Err(CliError::input(format!(
                    "{source}: experiment.sweep.\"{name}\": a `{}` experiment has no `{root}` spec to change{}",
                    kind.name(),
                    if kind.spec_paths().is_empty() {
                        String::new()
                    } else {
                        format!(" (it takes {} paths)", kind.spec_paths().join(", "))
                    }
                )));
            }
            continue;
        }
        let Some(axis) = kind.axes().iter().find(|a| a.name == name) else {
            let names: Vec<&str> = kind.axes().iter().map(|a| a.name).collect();
            return Err(CliError::input(format!(
                "{}: not an axis of a `{}` experiment (axes: {}; or a spec path such as \"arch.levels.NAME.capacity\")",
                at(name),
                kind.name(),
                names.join(", ")
            )));
        };
        for (i, v) in values.iter().enumerate() {
            check_value(x, axis.values, v).map_err(|e| CliError::input(format!("{}[{i}]: {e}", at(name))))?;
        }
    }
    Ok(())
}

fn check_value(x: &Experiment, values: Values, v: &toml::Value) -> Result<(), String> {
    let int = v.as_integer();
    let num = v.as_float().or_else(|| int.map(|i| i as f64)).filter(|f| f.is_finite());
    let ok = match values {
        Values::PositiveInt => int.is_some_and(|i| i > 0),
        Values::Count => int.is_some_and(|i| i >= 0),
        Values::Positive => num.is_some_and(|f| f > 0.0),
        Values::Model => {
            let name = v.as_str().ok_or_else(|| format!("{v} is not a model name or file"))?;
            model(x, name, None).map_err(|e| e.message)?;
            true
        }
        Values::Arch => {
            let name = v.as_str().ok_or_else(|| format!("{v} is not an architecture name or file"))?;
            arch(x, name, None).map_err(|e| e.message)?;
            true
        }
        Values::OneOf(names) => {
            if !v.as_str().is_some_and(|s| names.contains(&s)) {
                return Err(format!("{v} is not one of {}", names.join(", ")));
            }
            true
        }
        Values::Text => v.is_str(),
    };
    let what = match values {
        Values::PositiveInt => "a positive whole number",
        Values::Count => "a whole number ≥ 0",
        Values::Positive => "a positive number",
        Values::Text => "a string",
        _ => "valid",
    };
    if ok { Ok(()) } else { Err(format!("{v} is not {what}")) }
}

/// The model `name` (a preset or a file beside the experiment) with the point's `model.*` spec
/// paths applied.
pub fn model(x: &Experiment, name: &str, p: Option<&Point>) -> CliResult<Model> {
    let path = x.path(name);
    let overrides = p.is_some_and(|p| sweep::paths(p, "model").next().is_some());
    if !overrides {
        return crate::run::model(&path);
    }
    if path.ends_with(".json") {
        return Err(CliError::input(format!(
            "{}: model.* spec paths apply to Strata model files, not Hugging Face configs",
            x.at("experiment.sweep")
        )));
    }
    let presets: Vec<(&str, &str)> = strata_workloads::presets::PRESETS.iter().map(|p| (p.name, p.text)).collect();
    let (mut table, origin) = sweep::table_of(&path, "model", "a model", &presets)?;
    if let Some(p) = p {
        sweep::apply(&mut table, p, "model", &x.source)?;
    }
    let text = toml::to_string(&toml::Table::from_iter([("model".to_string(), table)]))
        .map_err(|e| CliError::input(format!("{origin}: {e}")))?;
    match WorkloadSpec::from_toml(&text).map_err(|e| CliError::spec(&origin, &e))? {
        WorkloadSpec::Model(m) => m.build().map_err(|e| CliError::spec(&origin, &e)),
        _ => Err(CliError::input(format!("{origin}: is not a model"))),
    }
}

/// The architecture `name` (a preset or a file beside the experiment) with the point's `arch.*`
/// spec paths applied.
pub fn arch(x: &Experiment, name: &str, p: Option<&Point>) -> CliResult<Arch> {
    let (table, origin) = sweep::table_of(&x.path(name), "arch", "an architecture", strata_arch::presets::PRESETS)?;
    arch_from(x, table, &origin, p)
}

/// An `[arch]` table with the point's `arch.*` spec paths applied, built and checked.
pub fn arch_from(x: &Experiment, table: toml::Value, origin: &str, p: Option<&Point>) -> CliResult<Arch> {
    let spec = arch_spec(x, table, origin, p)?;
    Arch::from_spec(&spec).map_err(|e| CliError::input(format!("{origin}: {e}")))
}

/// An `[arch]` table with the point's `arch.*` spec paths applied, read but not yet checked.
pub fn arch_spec(
    x: &Experiment,
    mut table: toml::Value,
    origin: &str,
    p: Option<&Point>,
) -> CliResult<strata_arch::spec::ArchSpec> {
    if let Some(p) = p {
        sweep::apply(&mut table, p, "arch", &x.source)?;
    }
    serde_path_to_error::deserialize(table)
        .map_err(|e| CliError::input(format!("{origin}: arch.{}: {}", e.path(), e.inner().message())))
}

/// A system's fixed attention mapping with the point's `mapping.*` spec paths applied; a family
/// (whose mapping the capacity settles) takes none.
pub fn attention_for(
    x: &Experiment,
    s: &crate::experiment::SystemSpec,
    index: usize,
    p: &Point,
) -> CliResult<crate::systems::AttentionMapping> {
    use crate::systems::AttentionMapping;
    let a = s.attention(x, index)?;
    if sweep::paths(p, "mapping").next().is_none() {
        return Ok(a);
    }
    match a {
        AttentionMapping::Family(f) => Err(CliError::input(format!(
            "{}: system `{}` maps attention with the family `{f}`, whose mapping the capacity settles; mapping.* paths need a fixed mapping",
            x.at("experiment.sweep"),
            s.name
        ))),
        AttentionMapping::Search { .. } => Err(CliError::input(format!(
            "{}: system `{}` maps attention with the fusion search; mapping.* paths need a fixed mapping",
            x.at("experiment.sweep"),
            s.name
        ))),
        AttentionMapping::Fixed { text, origin, passes } => {
            let mut doc: toml::Table = toml::from_str(&text).map_err(|e| CliError::input(format!("{origin}: {e}")))?;
            let table =
                doc.get_mut("mapping").ok_or_else(|| CliError::input(format!("{origin}: no [mapping] table")))?;
            sweep::apply(table, p, "mapping", &x.source)?;
            let text = toml::to_string(&doc).map_err(|e| CliError::input(format!("{origin}: {e}")))?;
            strata_mappings::from_toml::<strata_mappings::spec::MappingFile>(&text)
                .map_err(|e| CliError::spec(&origin, &e))?;
            Ok(AttentionMapping::Fixed { text, origin, passes })
        }
    }
}

/// The architectures of an experiment's `arch` axis (its base specs, before spec paths), or
/// `default` when the sweep has no such axis.
pub fn archs(x: &Experiment, default: &str) -> CliResult<Vec<strata_arch::Arch>> {
    let names: Vec<String> = match x.sweep.values("arch").as_slice() {
        [] => vec![default.to_string()],
        values => values.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
    };
    names.iter().map(|n| arch(x, n, None)).collect()
}

/// The default check of a kind's spec paths: every system, architecture, model and fixed
/// mapping the sweep names, with the paths applied, builds.
pub fn check_paths(x: &Experiment, root: &str, p: &Point) -> CliResult<()> {
    let axis = |name: &str| x.sweep.values(name).into_iter().filter_map(|v| v.as_str().map(str::to_string));
    match root {
        "system" | "mapping" => {
            for i in 0..x.spec.systems.len() {
                let s = x.system_at(i, p)?;
                let (table, origin) = s.arch_table(x, i)?;
                arch_from(x, table, &origin, None)?;
                attention_for(x, &s, i, p)?;
            }
        }
        "arch" => {
            for (i, s) in x.spec.systems.iter().enumerate() {
                let (table, origin) = s.arch_table(x, i)?;
                arch_from(x, table, &origin, Some(p))?;
            }
            for name in axis("arch") {
                arch(x, &name, Some(p))?;
            }
        }
        "model" => {
            for name in axis("model") {
                model(x, &name, Some(p))?;
            }
        }
        _ => {}
    }
    Ok(())
}
