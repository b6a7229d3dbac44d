//! The `double-sparsity` experiment kind (Double Sparsity, Yang et al. 2024): one decode step of
//! a model at a batch and context, per architecture and system file. Each point runs two
//! models of the same step: the GPU kernel model (`sim::gpu`: FlashAttention-2's decode, or
//! Double Sparsity's label scores, top-k and gathered attention, with the projections and the
//! elementwise work) where the architecture has a GPU and the system keeps the cache in its
//! memory, and the one system model (`sim::engine::step`: placement, offload, overlap) for
//! every system, DS-Offload's included. Rows report both, with the KV cache's bytes and the
//! share of them in the GPU's memory; references are ratios between rows, as in `serving`.

use std::fmt::Write as _;

use strata_arch::Arch;
use strata_mappings::system::System;
use strata_sim::engine::step::{self, Run};
use strata_sim::gpu::{Attention, Device, Kernel, inference::Runner, predict};
use strata_workloads::Model;

use crate::error::CliResult;
use crate::experiment::{Cell, Experiment, Point, Row};
use crate::kind::{Axis, Kind, Values as V, optional, required};

const BUDGET: u64 = 1 << 26;

/// The `double-sparsity` experiment kind.
pub struct DoubleSparsity;

const AXES: &[Axis] = &[
    required("arch", V::Arch),
    required("system", V::Text),
    required("model", V::Model),
    required("context", V::PositiveInt),
    optional("batch", V::PositiveInt),
];

impl Kind for DoubleSparsity {
    fn name(&self) -> &'static str {
        "double-sparsity"
    }
    fn about(&self) -> &'static str {
        "one decode step with dense or Double Sparsity attention, on a GPU's kernels and on the system model (DS-Offload)"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn spec_paths(&self) -> &'static [&'static str] {
        &["arch", "model"]
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        [
            "arch",
            "system",
            "model",
            "batch",
            "context",
            "attention",
            "attention_us",
            "gpu_step_ms",
            "step_ms",
            "kv_gb",
            "kv_gpu_gb",
            "kv_gpu_share",
        ]
        .map(String::from)
        .to_vec()
    }
    fn check(&self, x: &Experiment) -> CliResult<()> {
        crate::serving::check_systems(x, None)?;
        crate::serving::check_references(x, &self.columns(x))
    }
    fn point(&self, x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        point(x, p)
    }
    fn summary(&self, x: &Experiment, rows: &[Row]) -> String {
        summary(x, rows)
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
        crate::plots::double_sparsity(&x.spec, rows, dir)
    }
}

/// The device the architecture's widest compute unit sits on: the GPU of a GPU machine.
fn compute_device(arch: &Arch) -> String {
    let widest = arch.units.iter().max_by_key(|u| u.pes()).expect("an architecture has a unit");
    arch.level(widest.level).device.clone()
}

/// The GPU kernel model's attention per layer and decode step, where the architecture has a GPU
/// and the system keeps the whole cache on it; `None` otherwise.
fn gpu_step(
    arch: &Arch,
    sys: &System,
    m: &Model,
    batch: u64,
    context: u64,
    kv_gpu: f64,
    kv: f64,
) -> Option<(f64, f64)> {
    let gpu = arch.gpu.as_ref()?;
    if kv_gpu < kv * (1.0 - 1e-9) {
        return None;
    }
    let dev = Device::new(gpu);
    let sparse = sys.sparse_attention.as_ref();
    let attention = match sparse {
        Some(s) => Kernel::SparseAttention(s.decode(m, batch, context)),
        None => Kernel::Attention(Attention {
            batch,
            heads: m.heads,
            kv_heads: m.kv_heads,
            seq_q: 1,
            seq_kv: context,
            head_dim: m.head_dim,
            causal: false,
        }),
    };
    let step = Runner::default().pass_with(&dev, m, batch, 1, context, sparse).total();
    Some((predict(&dev, &attention).seconds, step))
}

fn point(x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
    let (arch_name, name, model) = (p.text("arch"), p.text("system"), p.text("model"));
    let arch = crate::kind::arch(x, &arch_name, Some(p))?;
    let sys = crate::serving::system(x, &name, &arch)?;
    let m = crate::kind::model(x, &model, Some(p))?;
    let (batch, context) = (p.num("batch", 1.0) as u64, p.num("context", 1.0) as u64);
    let run = Run { batch, prompt: context, generate: 1 };
    let o = step::simulate(&arch, &m, &sys, run, BUDGET).map_err(|e| {
        crate::serving::step_error(&format!("{arch_name}, {model}, {name}, batch {batch}, context {context}"), &e)
    })?;
    let device = compute_device(&arch);
    let kv_gpu: f64 = o
        .kv_held
        .iter()
        .filter(|(l, _)| arch.level_id(l).is_some_and(|l| arch.level(l).device == device))
        .fold(0.0, |a, (_, b)| a + b);
    let run_model = sys.model(&m);
    // The dense cache's keys and values: what a share of GPU memory is measured against.
    let dense_kv = (batch * (context + 1) * run_model.kv_bytes_per_token()) as f64;
    let gpu = gpu_step(&arch, &sys, &run_model, batch, context + 1, kv_gpu, o.kv_cache_bytes);
    Ok(vec![Row {
        cells: vec![
            ("arch".into(), Cell::Text(arch_name)),
            ("system".into(), Cell::Text(sys.name.clone())),
            ("model".into(), Cell::Text(model)),
            ("batch".into(), Cell::Int(batch)),
            ("context".into(), Cell::Int(context)),
            ("attention".into(), Cell::Text(if sys.sparse_attention.is_some() { "sparse" } else { "dense" }.into())),
            // Empty where the GPU kernel model does not apply (the cache is not all in GPU memory).
            ("attention_us".into(), gpu.map_or(Cell::Text(String::new()), |g| Cell::Float(1e6 * g.0))),
            ("gpu_step_ms".into(), gpu.map_or(Cell::Text(String::new()), |g| Cell::Float(1e3 * g.1))),
            ("step_ms".into(), Cell::Float(1e3 * o.decode.seconds)),
            ("kv_gb".into(), Cell::Float(o.kv_cache_bytes / 1e9)),
            ("kv_gpu_gb".into(), Cell::Float(kv_gpu / 1e9)),
            ("kv_gpu_share".into(), Cell::Float(kv_gpu / dense_kv)),
        ],
    }])
}

fn summary(x: &Experiment, rows: &[Row]) -> String {
    let mut s = String::from(
        "Each point is one decode step at the context given (the step after a prompt of that length). \
         GPU kernels: the GPU kernel model (dash: the cache is not all in GPU memory). System model: the \
         one step engine, every system.\n\n\
         | architecture | system | model | batch | context | attention per layer µs (GPU kernels) | decode step ms (GPU kernels) | decode step ms (system model) | KV cache GB (labels included) | GPU memory's KV bytes / the dense cache's |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let cell = |v: f64, digits: usize| if v.is_finite() { format!("{v:.digits$}") } else { "—".into() };
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.2} | {:.1}% |",
            r.s("arch"),
            r.s("system"),
            r.s("model"),
            r.s("batch"),
            r.s("context"),
            cell(r.f("attention_us"), 1),
            cell(r.f("gpu_step_ms"), 3),
            r.f("step_ms"),
            r.f("kv_gb"),
            100.0 * r.f("kv_gpu_share")
        );
    }
    s += &crate::serving::references(&x.spec, rows);
    s
}
