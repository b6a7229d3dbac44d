//! The `flashsvd` experiment kind (FlashSVD, Shao et al. 2025): the memory a low-rank
//! (SVD-factorised) model's layer needs, run three ways: the dense model; plain low-rank
//! inference (each projection two GEMMs, every activation materialised: rank-space and
//! full-width); and FlashSVD's streaming kernels (Q, K, V rebuilt from their rank-space
//! projections tile by tile inside attention, the FFN's wide intermediate never leaving the
//! chip). Peak memory is the model's weights plus the layer's largest set of live
//! activations (`Cascade::peak_activation_bytes_fused`); transient memory is the activations
//! alone. References are ratios between rows, as in `serving`.
//!
//! With a `gpu` axis (an architecture with an `[arch.gpu]` section) each row also times the
//! layer's FFN on that GPU with the kernel model (`sim::gpu::lowrank`): the dense FFN; plain
//! SVD inference (rank-space inputs, rebuilds, activation and product, the down projection's two
//! GEMMs); FlashSVD's fused kernel at its fastest tile. That is the fused-vs-unfused rank
//! crossover.

use std::fmt::Write as _;

use strata_workloads::model::Ranks;
use strata_workloads::{Model, Phase};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, Point, Row};
use crate::kind::{Axis, Kind, Values as V, optional, required};

/// The `flashsvd` experiment kind.
pub struct FlashSvd;

const AXES: &[Axis] = &[
    required("model", V::Model),
    required("batch", V::PositiveInt),
    required("seq", V::PositiveInt),
    required("rank", V::PositiveInt),
    optional("gpu", V::Arch),
];

/// How a layer runs.
const VARIANTS: [&str; 3] = ["dense", "svd", "flashsvd"];

impl Kind for FlashSvd {
    fn name(&self) -> &'static str {
        "flashsvd"
    }
    fn about(&self) -> &'static str {
        "peak and transient memory of a low-rank model (dense, plain SVD inference, FlashSVD's streaming kernels), and with a gpu axis its FFN's time on that GPU"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["model"]
    }
    fn columns(&self, x: &Experiment) -> Vec<String> {
        let mut c: Vec<String> = ["model", "batch", "seq", "rank", "variant", "weights_mb", "transient_mb", "peak_mb"]
            .map(String::from)
            .to_vec();
        if x.spec.sweep.contains_key("gpu") {
            c.extend(["gpu", "ffn_ms", "ffn_kernels"].map(String::from));
        }
        c
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
    let gpu = p.text("gpu");
    let ffn_times = match gpu.is_empty() {
        false => Some((gpu.clone(), ffn_times(x, p, &gpu, &low, batch * seq, rank)?)),
        true => None,
    };
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
                ]
                .into_iter()
                .chain(ffn_times.iter().flat_map(|(gpu, times)| {
                    let (ms, kernels) = &times[VARIANTS.iter().position(|v| v == variant).expect("a variant")];
                    [
                        ("gpu".into(), Cell::Text(gpu.clone())),
                        ("ffn_ms".into(), Cell::Float(*ms)),
                        ("ffn_kernels".into(), Cell::Text(kernels.clone())),
                    ]
                }))
                .collect(),
            }
        })
        .collect())
}

/// One layer's FFN on the GPU `gpu` for each variant: (milliseconds, the kernels launched).
fn ffn_times(x: &Experiment, p: &Point, gpu: &str, m: &Model, tokens: u64, rank: u64) -> CliResult<Vec<(f64, String)>> {
    use strata_sim::gpu::lowrank::LowRankFfn;
    use strata_sim::gpu::{Device, Prediction};
    let arch = crate::kind::arch(x, gpu, Some(p))?;
    let Some(spec) = arch.gpu.as_ref() else {
        return Err(CliError::input(format!(
            "{}: {gpu}: arch.gpu: this architecture has no [arch.gpu] section",
            x.at("experiment.sweep.gpu")
        )));
    };
    let dev = Device::new(spec);
    let ffn = LowRankFfn { tokens, d_model: m.d_model, ffn: m.ffn_dim, rank, gated: m.gated_ffn };
    let names = |ps: &[&Prediction]| {
        let mut v: Vec<String> = Vec::new();
        for l in ps.iter().flat_map(|p| &p.launches) {
            v.push(l.name.clone());
        }
        v.join(" + ")
    };
    let inputs = ffn.inputs(&dev);
    let dense = ffn.dense(&dev);
    let plain = ffn.plain(&dev);
    let (_, fused) = ffn.fused_best(&dev);
    Ok(vec![
        (dense.seconds * 1e3, names(&[&dense])),
        ((inputs.seconds + plain.seconds) * 1e3, names(&[&inputs, &plain])),
        ((inputs.seconds + fused.seconds) * 1e3, names(&[&inputs, &fused])),
    ])
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
    if rows.iter().any(|r| r.get("ffn_ms").is_some()) {
        s += "\nOne layer's FFN on the GPU (kernel model, `sim::gpu::lowrank`): plain SVD inference against FlashSVD's \
              fused kernel at its fastest tile, both from the rank-space inputs.\n\n\
              | model | batch | seq | rank | gpu | dense ms | plain SVD ms | fused ms | fused / plain | fused kernel |\n\
              |---|---:|---:|---:|---|---:|---:|---:|---:|---|\n";
        for key in
            crate::experiment::distinct_by(rows, |r| (r.s("model"), r.s("batch"), r.s("seq"), r.s("rank"), r.s("gpu")))
        {
            let get = |variant: &str| {
                rows.iter().find(|r| {
                    (r.s("model"), r.s("batch"), r.s("seq"), r.s("rank"), r.s("gpu")) == key
                        && r.s("variant") == variant
                })
            };
            let (Some(d), Some(v), Some(f)) = (get("dense"), get("svd"), get("flashsvd")) else { continue };
            let kernel = f.s("ffn_kernels");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {} |",
                key.0,
                key.1,
                key.2,
                key.3,
                key.4,
                d.f("ffn_ms"),
                v.f("ffn_ms"),
                f.f("ffn_ms"),
                f.f("ffn_ms") / v.f("ffn_ms"),
                kernel.rsplit(" + ").next().unwrap_or_default()
            );
        }
    }
    s += &crate::serving::references(&x.spec, rows);
    s
}
