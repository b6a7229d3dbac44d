//! The `flashsvd` experiment kind (FlashSVD, Shao et al. 2025): the memory a low-rank
//! (SVD-factorised) model's layer needs, run three ways: the dense model; plain low-rank
//! inference (each projection two GEMMs, every activation materialised: rank-space and
//! full-width); and FlashSVD's streaming kernels (Q, K, V rebuilt from their rank-space
//! projections tile by tile inside attention, the FFN's wide intermediate never leaving the
//! chip). Peak memory is the model's weights plus the layer's largest set of live
//! activations (`Cascade::peak_activation_bytes_fused`); transient memory is the activations
//! alone. References are ratios between rows, as in `serving`.

use std::fmt::Write as _;

use strata_workloads::model::Ranks;
use strata_workloads::{Model, Phase};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, Point, Row};
use crate::kind::{Axis, Kind, Values as V, required};

/// The `flashsvd` experiment kind.
pub struct FlashSvd;

const AXES: &[Axis] = &[
    required("model", V::Model),
    required("batch", V::PositiveInt),
    required("seq", V::PositiveInt),
    required("rank", V::PositiveInt),
];

/// How a layer runs.
const VARIANTS: [&str; 3] = ["dense", "svd", "flashsvd"];

impl Kind for FlashSvd {
    fn name(&self) -> &'static str {
        "flashsvd"
    }
    fn about(&self) -> &'static str {
        "peak and transient memory of a low-rank model: dense, plain SVD inference, FlashSVD's streaming kernels"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["model"]
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        ["model", "batch", "seq", "rank", "variant", "weights_mb", "transient_mb", "peak_mb"].map(String::from).to_vec()
    }
    fn check(&self, x: &Experiment) -> CliResult<()> {
        crate::serving::check_references(x, &self.columns(x))
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        point(x, p)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(x, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
        crate::plots::flashsvd(&x.spec, rows, dir)
    }
}

fn point(x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
    let name = p.text("model");
    let dense = crate::kind::model(x, &name, Some(p))?;
    let (batch, seq, rank) = (p.num("batch", 1.0) as u64, p.num("seq", 1.0) as u64, p.num("rank", 1.0) as u64);
    let low = dense.with_ranks(Ranks::all(rank, dense.gated_ffn)).map_err(|e| {
        CliError::input(format!(
            "{}: {name} at rank {rank}: model.{}: {}",
            x.at("experiment.sweep.rank"),
            e.path,
            e.reason
        ))
    })?;
    let phase = Phase::Prefill { seq };
    let layer = |m: &Model| {
        m.workload(phase, batch, 3).map(|w| w.layer).map_err(|e| {
            CliError::input(format!("{}: {name} at batch {batch}, seq {seq}: {e}", x.at("experiment.sweep")))
        })
    };
    let (dense_layer, low_layer) = (layer(&dense)?, layer(&low)?);
    let runs = [
        (&dense, dense_layer.peak_activation_bytes()),
        (&low, low_layer.peak_activation_bytes()),
        (&low, low_layer.peak_activation_bytes_fused(&low.streaming_groups(&low_layer))),
    ];
    let mb = |b: f64| Cell::Float(b / 1e6);
    Ok(VARIANTS
        .iter()
        .zip(runs)
        .map(|(variant, (m, transient))| {
            let weights = (m.layers * m.params_per_layer() * m.bytes_per_element) as f64;
            Row {
                cells: vec![
                    ("model".into(), Cell::Text(name.clone())),
                    ("batch".into(), Cell::Int(batch)),
                    ("seq".into(), Cell::Int(seq)),
                    ("rank".into(), Cell::Int(rank)),
                    ("variant".into(), Cell::Text(variant.to_string())),
                    ("weights_mb".into(), mb(weights)),
                    ("transient_mb".into(), mb(transient as f64)),
                    ("peak_mb".into(), mb(weights + transient as f64)),
                ],
            }
        })
        .collect())
}

fn summary(x: &Experiment, rows: &[Row]) -> String {
    let mut s = String::from(
        "Peak = the layers' weights (embeddings aside) + the largest set of one layer's activations live at once; \
         transient = the activations alone. Cuts are FlashSVD's against plain SVD inference at the same rank.\n\n\
         | model | batch | seq | rank | dense peak MB | SVD weights MB | SVD transient MB | SVD peak MB | FlashSVD transient MB | FlashSVD peak MB | peak cut | transient cut |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for key in crate::experiment::distinct_by(rows, |r| (r.s("model"), r.s("batch"), r.s("seq"), r.s("rank"))) {
        let get = |variant: &str| {
            rows.iter()
                .find(|r| (r.s("model"), r.s("batch"), r.s("seq"), r.s("rank")) == key && r.s("variant") == variant)
        };
        let (Some(d), Some(v), Some(f)) = (get("dense"), get("svd"), get("flashsvd")) else { continue };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}% | {:.1}% |",
            key.0,
            key.1,
            key.2,
            key.3,
            d.f("peak_mb"),
            v.f("weights_mb"),
            v.f("transient_mb"),
            v.f("peak_mb"),
            f.f("transient_mb"),
            f.f("peak_mb"),
            100.0 * (1.0 - f.f("peak_mb") / v.f("peak_mb")),
            100.0 * (1.0 - f.f("transient_mb") / v.f("transient_mb"))
        );
    }
    s += &crate::serving::references(&x.spec, rows);
    s
}
