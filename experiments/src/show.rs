//! `strata workload show`: the Einsums of a workload with ranks, shapes, op counts and bytes.

use std::fmt::Write;

use strata_workloads::{Cascade, CascadeSpec, Model, Phase, Role, WorkloadSpec};

use crate::error::{CliError, CliResult};
use crate::load::{Loaded, Shape};
use crate::table::{Table, binary, bytes, si};

/// Overrides given on the command line.
pub struct ShowArgs {
    pub shape: Shape,
    pub causal: bool,
    /// `NAME=VALUE` parameter overrides for cascade files.
    pub set: Vec<(String, i64)>,
}

pub fn show(loaded: &Loaded, args: &ShowArgs) -> CliResult<String> {
    let src = &loaded.source;
    let spec_err = |e: strata_workloads::SpecError| CliError::spec(src, &e);
    match &loaded.spec {
        WorkloadSpec::Model(m) => {
            reject_set(args)?;
            let model = m.build().map_err(spec_err)?;
            let (phase, batch, passes) = args.shape.model();
            let w = model.workload(phase, batch, passes).map_err(spec_err)?;
            Ok(render_model(&model, &w, passes))
        }
        WorkloadSpec::Attention(a) => {
            reject_set(args)?;
            let mut a = args.shape.attention(a);
            a.causal |= args.causal;
            let shape = a.shape().map_err(spec_err)?;
            let cascade = shape.cascade_spec(&a.name, &a.description).build().map_err(spec_err)?;
            let mut out = format!(
                "attention {}: {}-pass, {} of {} tokens, batch {}, {} heads ({} kv), head dim {}{}\n",
                a.name,
                shape.passes,
                shape.phase.name(),
                shape.phase.keys(),
                shape.batch,
                shape.heads,
                shape.kv_heads,
                shape.head_dim,
                if shape.causal { ", causal" } else { "" }
            );
            out += &render_cascade(&cascade);
            Ok(out)
        }
        WorkloadSpec::Cascade(c) => {
            if args.shape.is_set() {
                return Err(CliError::input(format!(
                    "{src}: --phase, --seq, --batch and --passes apply to models and attention; set cascade parameters with --set NAME=VALUE"
                )));
            }
            let mut c: CascadeSpec = c.clone();
            for (k, v) in &args.set {
                if !c.params.contains_key(k) {
                    let known: Vec<&str> = c.params.keys().map(String::as_str).collect();
                    return Err(CliError::input(format!(
                        "--set {k}: {src} has no parameter `{k}` (params: {})",
                        known.join(", ")
                    )));
                }
                c.params.insert(k.clone(), *v);
            }
            c.causal |= args.causal;
            let cascade = c.build().map_err(spec_err)?;
            Ok(format!("cascade {}\n{}", cascade.name(), render_cascade(&cascade)))
        }
    }
}

fn reject_set(args: &ShowArgs) -> CliResult<()> {
    match args.set.first() {
        Some((k, _)) => {
            Err(CliError::input(format!("--set {k}: --set applies to cascade files; use --seq, --batch or --phase")))
        }
        None => Ok(()),
    }
}

fn rank_line(c: &Cascade) -> String {
    let mut parts: Vec<String> = Vec::new();
    for r in c.ranks() {
        if c.partitions()
            .iter()
            .any(|p| p.outer == c.rank_id(&r.name).unwrap() || p.inner == c.rank_id(&r.name).unwrap())
        {
            continue;
        }
        let id = c.rank_id(&r.name).unwrap();
        match c.partitions().iter().find(|p| p.parent == id) {
            Some(p) => parts.push(format!(
                "{}={} ({}={} × {}={}{})",
                r.name,
                r.size,
                c.rank(p.outer).name,
                c.rank(p.outer).size,
                c.rank(p.inner).name,
                p.tile,
                if r.size % p.tile != 0 { ", ragged" } else { "" }
            )),
            None => parts.push(format!("{}={}", r.name, r.size)),
        }
    }
    parts.join(" ")
}

/// The Einsum table, tensor table and totals of one cascade.
pub fn render_cascade(c: &Cascade) -> String {
    let mut out = String::new();
    if !c.description().is_empty() {
        let _ = writeln!(out, "{}", c.description());
    }
    let _ = writeln!(out, "ranks: {}\n", rank_line(c));
    let mut t = Table::new(&[
        ("#", true),
        ("einsum", false),
        ("map", false),
        ("reduce", false),
        ("iteration space", false),
        ("points", true),
        ("map ops", true),
        ("reduce ops", true),
        ("out bytes", true),
    ]);
    for (i, e) in c.einsums().iter().enumerate() {
        let k = c.counts(e);
        let reduced: Vec<&str> = e.reduced_ranks().iter().map(|r| c.rank(*r).name.as_str()).collect();
        let reduce =
            if reduced.is_empty() { "-".to_string() } else { format!("{}({})", e.reduce.name(), reduced.join(",")) };
        let space: Vec<String> = e.iteration_ranks.iter().map(|r| c.rank(*r).name.clone()).collect();
        let mut space = space.join(",");
        if let Some(r) = e.iterative {
            space += &format!(" [iterates {}]", c.rank(r).name);
        }
        if e.mask.is_some() {
            space += " [causal]";
        }
        t.row(vec![
            (i + 1).to_string(),
            e.text.clone(),
            e.map.name().into(),
            reduce,
            space,
            si(k.points),
            si(k.map_ops),
            si(k.reduce_ops),
            binary(c.tensor(e.output.tensor).bytes()),
        ]);
    }
    out += &t.render();
    let mut tt = Table::new(&[("tensor", false), ("role", false), ("shape", false), ("bytes", true)]);
    for tensor in c.tensors() {
        let shape: Vec<String> = tensor
            .shape
            .iter()
            .enumerate()
            .map(|(i, n)| if Some(i) == tensor.iterative_position { format!("{}+1", n - 1) } else { n.to_string() })
            .collect();
        let role = if tensor.iterative_position.is_some() {
            format!("{} (running)", tensor.role.name())
        } else {
            tensor.role.name().into()
        };
        tt.row(vec![tensor.name.clone(), role, format!("[{}]", shape.join("×")), binary(tensor.bytes())]);
    }
    out += "\n";
    out += &tt.render();
    let k = c.total_counts();
    let _ = writeln!(
        out,
        "\ntotals: {} einsums, {} FLOPs ({} map + {} reduce), {} MACs in contractions",
        c.einsums().len(),
        si(k.flops()),
        si(k.map_ops),
        si(k.reduce_ops),
        si(c.macs())
    );
    let _ = writeln!(
        out,
        "        inputs {}, weights {}, KV cache {}, outputs {}, intermediates {}",
        binary(c.bytes_of(Role::Input)),
        binary(c.bytes_of(Role::Weight)),
        binary(c.bytes_of(Role::KvCache)),
        binary(c.bytes_of(Role::Output)),
        binary(c.bytes_of(Role::Intermediate))
    );
    out
}

fn render_model(m: &Model, w: &strata_workloads::ModelWorkload, passes: u8) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {}: {} layers, d_model {}, {} heads ({} kv), head_dim {}, ffn {} ({}{}), vocab {}, {} B/element{}",
        m.name,
        m.layers,
        m.d_model,
        m.heads,
        m.kv_heads,
        m.head_dim,
        m.ffn_dim,
        if m.gated_ffn { "gated, " } else { "" },
        format!("{:?}", m.activation).to_lowercase(),
        m.vocab,
        m.bytes_per_element,
        if m.causal { ", causal" } else { "" }
    );
    let (len_name, len) = match w.phase {
        Phase::Prefill { seq } => ("prompt", seq),
        Phase::Decode { context } => ("context", context),
    };
    let _ = writeln!(out, "phase {}, {len_name} {len}, batch {}, attention {passes}-pass\n", w.phase.name(), w.batch);
    let _ = writeln!(out, "one layer ({}):", w.layer.name());
    out += &render_cascade(&w.layer);
    let total = w.total_counts(m);
    let kv_tokens = w.batch * w.phase.keys();
    let kv = m.kv_bytes_per_token();
    let _ = writeln!(out, "\nwhole model ({} layers + LM head):", m.layers);
    let _ = writeln!(out, "  parameters: {} ({})", m.params(), si(m.params()));
    let _ = writeln!(out, "  weight bytes: {}", bytes(m.weight_bytes()));
    let _ = writeln!(out, "  KV bytes per token = {kv} ({})", binary(kv));
    let _ = writeln!(out, "  KV cache bytes: {} for {} × {len} tokens", bytes(kv * kv_tokens), w.batch);
    let _ = writeln!(out, "  FLOPs: {}", si(total.flops()));
    let _ = writeln!(out, "  MACs: {}", si(w.layer.macs() * m.layers + w.lm_head.macs()));
    out
}

/// Parses `NAME=VALUE` for `--set`.
pub fn parse_set(s: &str) -> Result<(String, i64), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got `{s}`"))?;
    let v: i64 = v.trim().parse().map_err(|_| format!("`{v}` is not an integer"))?;
    Ok((k.trim().to_string(), v))
}
