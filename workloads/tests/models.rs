//! Transformer models: presets, Hugging Face import, closed-form counts, and numerics of a
//! whole lowered layer on the reference interpreter.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_workloads::interp::{Dense, external_tensors, run};
use strata_workloads::model::Activation;
use strata_workloads::presets::{PRESETS, PresetKind};
use strata_workloads::{Model, ModelSpec, Phase, Role, WorkloadSpec};

fn preset_model(name: &str) -> Model {
    let p = strata_workloads::presets::find(name).expect("preset exists");
    ModelSpec::from_toml(p.text).unwrap().build().unwrap()
}

#[test]
fn every_preset_parses_and_validates() {
    for p in PRESETS {
        let spec = WorkloadSpec::from_toml(p.text).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        spec.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let name = match &spec {
            WorkloadSpec::Model(m) => &m.name,
            WorkloadSpec::Attention(a) => &a.name,
            WorkloadSpec::Cascade(c) => &c.name,
        };
        assert_eq!(name, p.name, "a preset's name matches its file");
    }
    assert!(PRESETS.iter().filter(|p| p.kind == PresetKind::Model).count() >= 13);
}

#[test]
fn kv_bytes_per_token_match_the_references() {
    // Llama-2-7B: 2 · 32 layers · 32 kv heads · 128 · 2 B (the foundation issue's check).
    assert_eq!(preset_model("llama2-7b").kv_bytes_per_token(), 524_288);
    // long-context.md: Yi-34B 2 · 60 · 8 · 128 · 2 B = 245,760 B.
    assert_eq!(preset_model("yi-34b").kv_bytes_per_token(), 245_760);
    // instinfer-flexgen.md: OPT-13B 2 · 40 · 5120 · 2 B = 819,200 B.
    assert_eq!(preset_model("opt-13b").kv_bytes_per_token(), 819_200);
}

#[test]
fn parameter_counts_match_published_sizes() {
    // Published sizes (billions); biases and norms are left out, so allow 2 %.
    for (name, billions) in
        [("opt-6.7b", 6.7), ("opt-13b", 13.0), ("opt-175b", 175.0), ("llama2-7b", 6.74), ("llama2-70b", 69.0)]
    {
        let p = preset_model(name).params() as f64 / 1e9;
        assert!((p / billions - 1.0).abs() < 0.02, "{name}: {p:.2}B vs {billions}B");
    }
}

#[test]
fn hugging_face_configs_import_to_the_presets() {
    for (file, preset) in [("llama-2-7b-config.json", "llama2-7b"), ("opt-6.7b-config.json", "opt-6.7b")] {
        let text = std::fs::read_to_string(format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let imported = ModelSpec::from_hf_json(&text, preset).unwrap().build().unwrap();
        let want = preset_model(preset);
        // A config does not say how sparse the FFN runs; the preset may.
        assert_eq!(
            Model {
                description: want.description.clone(),
                ffn_active: want.ffn_active,
                ffn_block: want.ffn_block,
                ranks: want.ranks,
                ..imported
            },
            want,
            "{file}"
        );
    }
    let err = ModelSpec::from_hf_json(r#"{"model_type": "llama", "hidden_size": 8}"#, "x").unwrap_err();
    assert_eq!(err.path, "num_hidden_layers");
    let err = ModelSpec::from_hf_json(r#"{"hidden_size": "big"}"#, "x").unwrap_err();
    assert_eq!(err.path, "hidden_size");
}

/// FLOPs of one layer with 3-pass attention, written out independently of the IR:
/// a contraction over K producing n outputs costs n·(2K − 1); element-wise ops cost 1 each.
fn closed_form_flops(m: &Model, phase: Phase, batch: u64) -> u64 {
    let (p, mk) = (phase.queries(), phase.keys());
    let t = batch * p;
    let (d, hq, g, hd, s) = (m.d_model, m.heads, m.kv_heads, m.head_dim, m.ffn_dim);
    let proj = t * hq * hd * (2 * d - 1) + 2 * t * g * hd * (2 * d - 1);
    let bh = batch * hq;
    let attn = bh * mk * p * (2 * hd - 1) // QK
        + bh * p * (mk - 1) // GM
        + bh * mk * p // SN
        + bh * p * (mk - 1) // SD
        + bh * mk * p // A
        + bh * hd * p * (2 * mk - 1); // AV
    let out = t * d * (2 * hq * hd - 1) + t * d;
    let ffn = if m.gated_ffn {
        2 * t * s * (2 * d - 1) + 2 * t * s + t * d * (2 * s - 1) + t * d
    } else {
        t * s * (2 * d - 1) + t * s + t * d * (2 * s - 1) + t * d
    };
    proj + attn + out + ffn
}

/// BERT at 1M tokens and batch 64: every count of the layer equals the closed form exactly (no
/// wrap); at 32M tokens the lowering refuses with the Einsum and its size instead of wrapping.
#[test]
fn a_million_token_bert_counts_exactly_and_larger_ones_are_refused() {
    let m = preset_model("bert");
    let phase = Phase::Prefill { seq: 1 << 20 };
    let w = m.workload(phase, 64, 3).unwrap();
    assert_eq!(w.layer.total_counts().flops(), closed_form_flops(&m, phase, 64));
    // QK alone: B·H·P·M·E multiply-accumulates.
    let qk = w.layer.einsums().iter().find(|e| e.name == "QK").unwrap();
    assert_eq!(w.layer.counts(qk).points, 64 * 12 * (1 << 20) * (1 << 20) * 64);
    let err = m.workload(Phase::Prefill { seq: 1 << 25 }, 64, 3).unwrap_err();
    assert!(err.reason.contains("more than 2^58"), "{err}");
    assert!(err.to_string().contains("QK"), "{err}");
}

/// `dtype` (newer Hugging Face configs) sets the element size as `torch_dtype` does; the two must agree.
#[test]
fn hugging_face_dtype_sets_the_element_size() {
    let base = r#""model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100, "hidden_act": "silu""#;
    let bytes = |extra: &str| {
        ModelSpec::from_hf_json(&format!("{{{base}{extra}}}"), "x").map(|m| m.build().unwrap().bytes_per_element)
    };
    assert_eq!(bytes("").unwrap(), 2);
    assert_eq!(bytes(r#", "dtype": "float32""#).unwrap(), 4);
    assert_eq!(bytes(r#", "torch_dtype": "float32""#).unwrap(), 4);
    assert_eq!(bytes(r#", "dtype": "int8", "torch_dtype": "int8""#).unwrap(), 1);
    assert_eq!(bytes(r#", "dtype": "float32", "torch_dtype": "float16""#).unwrap_err().path, "dtype");
    assert_eq!(bytes(r#", "dtype": "float64""#).unwrap_err().path, "dtype");
}

fn small_model() -> impl Strategy<Value = (Model, Phase, u64)> {
    (1u64..4, 1u64..4, 1u64..9, 1u64..40, any::<bool>(), 1u64..700, any::<bool>(), 1u64..4).prop_map(
        |(kv, group, hd, ffn, gated, len, decode, batch)| {
            let heads = kv * group;
            let m = Model {
                name: "m".into(),
                description: String::new(),
                layers: 2,
                d_model: heads * hd + 3,
                heads,
                kv_heads: kv,
                head_dim: hd,
                ffn_dim: ffn,
                gated_ffn: gated,
                activation: if gated { Activation::Silu } else { Activation::Relu },
                vocab: 100,
                bytes_per_element: 2,
                tied_embeddings: false,
                causal: true,
                ffn_active: None,
                ffn_block: None,
                ranks: Default::default(),
            };
            let phase = if decode { Phase::Decode { context: len } } else { Phase::Prefill { seq: len } };
            (m, phase, batch)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn layer_flops_equal_the_closed_form((m, phase, batch) in small_model()) {
        let w = m.workload(phase, batch, 3).unwrap();
        prop_assert_eq!(w.layer.total_counts().flops(), closed_form_flops(&m, phase, batch));
        // The matmul MACs do not depend on the softmax cascade.
        let t = batch * phase.queries();
        let macs = t * m.params_per_layer() + 2 * batch * m.heads * phase.queries() * phase.keys() * m.head_dim;
        for passes in 1..=3 {
            prop_assert_eq!(m.workload(phase, batch, passes).unwrap().layer.macs(), macs);
        }
        // Weights and KV cache seen by the lowered layer agree with the model's closed forms.
        prop_assert_eq!(w.layer.bytes_of(Role::Weight), m.params_per_layer() * m.bytes_per_element);
        if let Phase::Decode { context } = phase {
            let per_layer = m.kv_bytes_per_token() / m.layers;
            prop_assert_eq!(w.layer.bytes_of(Role::KvCache), batch * context * per_layer);
        }
    }
}

#[test]
fn a_whole_layer_runs_and_its_attention_passes_agree() {
    let m = tiny_gqa();
    for phase in [Phase::Prefill { seq: 9 }, Phase::Decode { context: 11 }] {
        let mut outs = Vec::new();
        for passes in 1..=3 {
            let spec = m.layer_spec(phase, 2, passes, 4);
            let c = spec.build().unwrap();
            let ins = random_inputs(&c, 1);
            outs.push(run(&c, &ins).unwrap().tensors["Y"].clone());
        }
        for o in &outs[1..] {
            let err = o.data.iter().zip(&outs[0].data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "{phase:?}: {err:e}");
        }
    }
}

/// Activations live from their producer to their last reader, results to the end: a
/// projection, an activation and a projection back hold at most the two tensors the middle
/// Einsum touches; weights are never counted.
#[test]
fn peak_activation_bytes_follow_liveness() {
    use strata_workloads::cascade::{CascadeSpec, EinsumSpec, Size, TensorSpec};
    let mut spec = CascadeSpec::new("mlp", "", 2);
    for (rank, param, v) in [("m", "M", 2), ("k", "K", 3), ("n", "N", 5)] {
        spec.params.insert(param.into(), v);
        spec.ranks.insert(rank.into(), Size::Param(param.into()));
    }
    spec.einsums.extend([
        EinsumSpec::new("H[m,n] = X[m,k] * W1[k,n]"),
        EinsumSpec::new("G[m,n] = relu(H[m,n])"),
        EinsumSpec::new("Y[m,k] = G[m,n] * W2[n,k]"),
    ]);
    for w in ["W1", "W2"] {
        spec.tensors
            .insert(w.into(), TensorSpec { role: Some(strata_workloads::Role::Weight), ..TensorSpec::default() });
    }
    let c = spec.build().unwrap();
    // X 12 B, H and G 20 B each, Y 12 B: at G's Einsum H and G are both live.
    assert_eq!(c.peak_activation_bytes(), 40);
}

/// Double Sparsity's decode layer keeping every token and channel is the dense layer (its
/// token-major cache is the dense cache transposed; its labels are the keys' channels); keeping
/// half the tokens changes the answer. GQA, so labels and rows are per kv head.
#[test]
fn a_double_sparsity_layer_keeping_everything_is_the_dense_layer() {
    use strata_workloads::sparse::Sparsity;
    let m = tiny_gqa();
    let phase = Phase::Decode { context: 8 };
    let dense = m.layer_spec(phase, 2, 3, 4).build().unwrap();
    let ins = random_inputs(&dense, 7);
    let want = run(&dense, &ins).unwrap().tensors["Y"].clone();
    let sparse_run = |tokens: f64| {
        let s = Sparsity { channels: 1.0, tokens, label_bits: 16, predict_next: false };
        let c = m.layer_spec_with(phase, 2, 3, 4, Some(&s)).unwrap().build().unwrap();
        let mut x = ins.clone();
        // Token-major K and V: [b, g, e, m] → [b, g, m, e].
        for t in ["K", "V"] {
            let d = &ins[t];
            let (b, g, e, n) = (d.shape[0], d.shape[1], d.shape[2], d.shape[3]);
            let mut data = Vec::new();
            for i in 0..b {
                for h in 0..g {
                    for mm in 0..n {
                        for ee in 0..e {
                            data.push(d.at(&[i, h, ee, mm]));
                        }
                    }
                }
            }
            x.insert(t.to_string(), Dense { shape: vec![b, g, n, e], data });
        }
        let ch: Vec<f64> = (0..2).flat_map(|_| (0..3).map(|c| c as f64)).collect();
        x.insert("CH".into(), Dense { shape: vec![2, 3], data: ch });
        let mut kl = x["K"].clone();
        kl.shape = vec![2, 2, 8, 3];
        kl.data = x["K"].data.clone();
        x.insert("KL".into(), kl);
        run(&c, &x).unwrap().tensors["Y"].clone()
    };
    let err = |y: &Dense<f64>| y.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err(&sparse_run(1.0)) < 1e-12, "{:e}", err(&sparse_run(1.0)));
    assert!(err(&sparse_run(0.5)) > 1e-6);
    // A prefill with labels is dense attention that also writes the prompt's labels.
    let s = Sparsity { channels: 0.5, tokens: 0.25, label_bits: 8, predict_next: false };
    let c = m.layer_spec_with(Phase::Prefill { seq: 5 }, 2, 3, 4, Some(&s)).unwrap().build().unwrap();
    let labels = c.tensors().iter().find(|t| t.name == "KLN").unwrap();
    assert!(labels.cached && labels.elem_bits == 8 && labels.shape == vec![2, 2, 2, 5]);
    // 4-bit labels pack two to a byte: the same 40 labels in 20 bytes.
    let s4 = Sparsity { label_bits: 4, ..s };
    let c4 = m.layer_spec_with(Phase::Prefill { seq: 5 }, 2, 3, 4, Some(&s4)).unwrap().build().unwrap();
    let labels4 = c4.tensors().iter().find(|t| t.name == "KLN").unwrap();
    assert_eq!((labels.bytes(), labels4.elem_bits, labels4.bytes()), (40, 4, 20));
}

/// Sub-byte elements are charged for the bytes they span, rounded up; a tensor gives its size
/// in bits or in bytes, not both, and at most 64 bits.
#[test]
fn packed_elements_and_their_keys() {
    use strata_workloads::cascade::{CascadeSpec, EinsumSpec, Size, TensorSpec};
    use strata_workloads::einsum::packed_bytes;
    assert_eq!([packed_bytes(3, 4), packed_bytes(4, 4), packed_bytes(3, 16), packed_bytes(1, 1)], [2, 2, 6, 1]);
    let spec = |bits: Option<i64>, bytes: Option<i64>| {
        let mut s = CascadeSpec::new("gemv", "", 2);
        s.ranks.insert("m".into(), Size::Literal(3));
        s.ranks.insert("k".into(), Size::Literal(5));
        s.einsums.push(EinsumSpec::new("Y[m] = X[k] * W[k,m]"));
        s.tensors.insert(
            "W".into(),
            TensorSpec { role: Some(Role::Weight), elem_bits: bits, elem_bytes: bytes, ..TensorSpec::default() },
        );
        s.build()
    };
    let w = |c: &strata_workloads::Cascade| c.tensors().iter().find(|t| t.name == "W").unwrap().bytes();
    assert_eq!(w(&spec(Some(4), None).unwrap()), 8);
    assert_eq!(w(&spec(None, Some(1)).unwrap()), 15);
    assert_eq!(w(&spec(None, None).unwrap()), 30);
    for (bits, bytes, key) in [
        (Some(4), Some(1), "tensors.W.elem_bits"),
        (Some(65), None, "tensors.W.elem_bits"),
        (Some(0), None, "tensors.W.elem_bits"),
    ] {
        let e = spec(bits, bytes).unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }
}

/// Fused sets of Einsums never materialise what they produce and read inside: a projection, an
/// activation and a projection back, the last two fused, hold at most the wide tensor the
/// first produces and the result, never the activation's output.
#[test]
fn fused_sets_hold_only_what_crosses_them() {
    use strata_workloads::cascade::{CascadeSpec, EinsumSpec, Size, TensorSpec};
    let mut spec = CascadeSpec::new("mlp", "", 2);
    for (rank, v) in [("m", 2), ("k", 3), ("n", 5)] {
        spec.ranks.insert(rank.into(), Size::Literal(v));
    }
    spec.einsums.extend([
        EinsumSpec::new("H[m,n] = X[m,k] * W1[k,n]"),
        EinsumSpec::new("G[m,n] = relu(H[m,n])"),
        EinsumSpec::new("Y[m,k] = G[m,n] * W2[n,k]"),
    ]);
    for w in ["W1", "W2"] {
        spec.tensors.insert(w.into(), TensorSpec { role: Some(Role::Weight), ..TensorSpec::default() });
    }
    let c = spec.build().unwrap();
    let (x, h, y) = (2 * 3 * 2, 2 * 5 * 2, 2 * 3 * 2);
    // Unfused: X+H, then H+G, then G+Y.
    assert_eq!(c.peak_activation_bytes(), h + h);
    // relu fused into the second projection: X+H, then H+Y (G stays on chip).
    assert_eq!(c.peak_activation_bytes_fused(&[vec![1, 2]]), (x + h).max(h + y));
    // Everything fused: only what enters and leaves.
    assert_eq!(c.peak_activation_bytes_fused(&[vec![0, 1, 2]]), x + y);
}

/// A factorised projection is two factors whose product is the dense weight: the low-rank layer
/// computes the dense layer's output when every weight is such a product; its weights are the
/// factors' parameters; ranks past a projection's side, zero, or a gate without one are located.
#[test]
fn low_rank_layers_compute_their_factors_product() {
    use strata_workloads::model::{Ranks, RanksSpec};
    let m = Model {
        name: "tiny".into(),
        description: String::new(),
        layers: 1,
        d_model: 8,
        heads: 2,
        kv_heads: 2,
        head_dim: 4,
        ffn_dim: 12,
        gated_ffn: true,
        activation: Activation::Silu,
        vocab: 16,
        bytes_per_element: 2,
        tied_embeddings: false,
        causal: false,
        ffn_active: None,
        ffn_block: None,
        ranks: Ranks::default(),
    };
    let low = m.with_ranks(Ranks::all(3, true)).unwrap();
    let phase = Phase::Prefill { seq: 5 };
    let cl = low.layer_spec(phase, 2, 3, 4).build().unwrap();
    let cd = m.layer_spec(phase, 2, 3, 4).build().unwrap();
    assert_eq!(cl.bytes_of(Role::Weight), low.params_per_layer() * 2);
    assert!(low.params_per_layer() < m.params_per_layer());
    let low_in = random_inputs(&cl, 3);
    let mut dense_in: BTreeMap<String, Dense<f64>> = BTreeMap::new();
    for (n, s) in external_tensors(&cd) {
        let (a, b) = (low_in.get(&format!("{n}A")), low_in.get(&format!("{n}B")));
        let data = match (a, b) {
            (Some(a), Some(b)) => {
                // W[i, o] = Σ_r A[i, r] · B[r, o], flattened row-major.
                let r = *b.shape.first().unwrap() as usize;
                let (rows, cols) = (a.data.len() / r, b.data.len() / r);
                (0..rows * cols)
                    .map(|k| (0..r).map(|j| a.data[(k / cols) * r + j] * b.data[j * cols + k % cols]).sum())
                    .collect()
            }
            _ => low_in[n].data.clone(),
        };
        dense_in.insert(n.to_string(), Dense { shape: s.to_vec(), data });
    }
    let (yl, yd) = (run(&cl, &low_in).unwrap().tensors["Y"].clone(), run(&cd, &dense_in).unwrap().tensors["Y"].clone());
    let err = yl.data.iter().zip(&yd.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-12, "{err:e}");
    // Bad ranks name their key.
    let e = m.with_ranks(Ranks { o: Some(9), ..Ranks::default() }).unwrap_err();
    assert!(e.path == "ranks.o" && e.reason.contains("8 × 8"), "{e}");
    let e =
        Model { gated_ffn: false, ..m.clone() }.with_ranks(Ranks { gate: Some(2), ..Ranks::default() }).unwrap_err();
    assert_eq!(e.path, "ranks.gate");
    let e = RanksSpec { q: Some(0), ..RanksSpec::default() }.ranks().unwrap_err();
    assert_eq!(e.path, "ranks.q");
}

/// A one-layer GQA model small enough for the interpreter: 4 heads over 2 kv heads of 3 channels.
fn tiny_gqa() -> Model {
    Model {
        name: "tiny".into(),
        description: String::new(),
        layers: 1,
        d_model: 12,
        heads: 4,
        kv_heads: 2,
        head_dim: 3,
        ffn_dim: 10,
        gated_ffn: true,
        activation: Activation::Silu,
        vocab: 16,
        bytes_per_element: 2,
        tied_embeddings: false,
        causal: true,
        ffn_active: None,
        ffn_block: None,
        ranks: Default::default(),
    }
}

/// A rank-space KV cache (FlashSVD's decoder variant) holds R_k + R_v numbers per token and
/// layer, and its step equals the dense-cache step whose keys and values are the rank-space
/// entries rebuilt; without k and v ranks it is refused.
#[test]
fn a_rank_space_cache_rebuilds_the_dense_cache() {
    use strata_workloads::model::Ranks;
    let m = tiny_gqa();
    let ranks = Ranks { k: Some(2), v: Some(3), q: Some(4), ..Ranks::default() };
    let dense_cache = m.with_ranks(ranks).unwrap();
    let rank_cache = m.with_ranks(Ranks { cache: true, ..ranks }).unwrap();
    assert_eq!(rank_cache.kv_bytes_per_token(), (2 + 3) * 2);
    assert_eq!(dense_cache.kv_bytes_per_token(), 2 * 2 * 3 * 2);
    let phase = Phase::Decode { context: 6 };
    let cr = rank_cache.layer_spec(phase, 2, 3, 4).build().unwrap();
    let cd = dense_cache.layer_spec(phase, 2, 3, 4).build().unwrap();
    assert_eq!(cr.bytes_of(Role::KvCache), 2 * 6 * (2 + 3) * 2);
    let ins = random_inputs(&cr, 11);
    let mut dense_in = ins.clone();
    for (cache, factor, out) in [("PKC", "WKB", "K"), ("PVC", "WVB", "V")] {
        // K[b,g,e,m] = Σ_r PKC[b,r,m] · WKB[r,g,e].
        let (p, w) = (&ins[cache], &ins[factor]);
        let (b, r, n) = (p.shape[0], p.shape[1], p.shape[2]);
        let (g, e) = (w.shape[1], w.shape[2]);
        let mut data = Vec::new();
        for bb in 0..b {
            for gg in 0..g {
                for ee in 0..e {
                    for mm in 0..n {
                        data.push((0..r).map(|rr| p.at(&[bb, rr, mm]) * w.at(&[rr, gg, ee])).sum());
                    }
                }
            }
        }
        dense_in.insert(out.to_string(), Dense { shape: vec![b, g, e, n], data });
    }
    let dense_in: BTreeMap<String, Dense<f64>> =
        external_tensors(&cd).map(|(n, _)| (n.to_string(), dense_in[n].clone())).collect();
    let (yr, yd) = (run(&cr, &ins).unwrap().tensors["Y"].clone(), run(&cd, &dense_in).unwrap().tensors["Y"].clone());
    let err = yr.data.iter().zip(&yd.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-12, "{err:e}");
    let e = m.with_ranks(Ranks { cache: true, k: Some(2), ..Ranks::default() }).unwrap_err();
    assert_eq!(e.path, "ranks.cache");
    // A prefill caches the prompt's rank-space projections, not its keys and values.
    let p = rank_cache.layer_spec(Phase::Prefill { seq: 5 }, 2, 3, 4).build().unwrap();
    let cached: Vec<&str> = p.tensors().iter().filter(|t| t.cached).map(|t| t.name.as_str()).collect();
    assert_eq!(cached, ["PK", "PV"]);
}

/// Values in [-0.25, 0.25) for every tensor a cascade reads from outside, from a seeded LCG.
fn random_inputs(c: &strata_workloads::Cascade, mut seed: u64) -> BTreeMap<String, Dense<f64>> {
    external_tensors(c)
        .map(|(n, s)| {
            let len: u64 = s.iter().product();
            let data = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.5
                })
                .collect();
            (n.to_string(), Dense { shape: s.to_vec(), data })
        })
        .collect()
}
