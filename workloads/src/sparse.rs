//! Sparse attention as one cascade: Double Sparsity's decode step (Yang et al., 2024).
//!
//! Per kv head, a static set of `r` label channels (`CH`, ranked offline) picks the query's
//! channels; the label cache `KL` holds the keys' same channels as its own contiguous buffer.
//! Approximate scores over every past token select the `k` best per query head (`top`), and
//! exact softmax attention runs on those tokens only, reading their key and value rows by
//! gather from a token-major cache (`K[b,h,m,e]`: one row is a head's `D` channels). With `k`
//! equal to the context it is dense attention; the interpreter checks that it equals dense
//! attention masked to the selected tokens.

use crate::attention::AttentionShape;
use crate::cascade::{CascadeSpec, EinsumSpec, Size, TensorSpec};
use crate::einsum::{Cascade, ReduceOp, Role};
use crate::error::{SpecError, SpecResult, positive};
use crate::phase::Phase;

/// Double Sparsity's two sparsities and its label format, as a model run chooses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sparsity {
    /// Label channels per head as a share of the head's channels (r / D; the paper: 1/16).
    pub channels: f64,
    /// Tokens attended per head as a share of the context (k / S; the paper: 1/16).
    pub tokens: f64,
    /// Bits per label element (16 for fp16 labels, 8, or 4: packed two to a byte).
    pub label_bits: u64,
    /// Each layer predicts the next layer's query from its own input (DS-Offload): the
    /// selection reads the predicted query `QP`, so it need not wait for this layer's.
    pub predict_next: bool,
}

impl Sparsity {
    /// Label channels for a head of `head_dim` channels: at least one.
    pub fn label_channels(&self, head_dim: u64) -> u64 {
        ((self.channels * head_dim as f64).round() as u64).clamp(1, head_dim)
    }

    /// Tokens selected of a `context`-token cache: at least one.
    pub fn selected(&self, context: u64) -> u64 {
        ((self.tokens * context as f64).round() as u64).clamp(1, context.max(1))
    }

    /// A model's decode step at `batch` and `context` with this sparsity.
    pub fn decode(&self, m: &crate::Model, batch: u64, context: u64) -> DoubleSparsity {
        DoubleSparsity {
            batch,
            heads: m.heads,
            kv_heads: m.kv_heads,
            context,
            head_dim: m.head_dim,
            label_channels: self.label_channels(m.head_dim),
            selected: self.selected(context),
            elem_bytes: m.bytes_per_element,
            label_bits: self.label_bits,
            predict_next: self.predict_next,
        }
    }
}

/// One decode step of Double Sparsity's attention for one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoubleSparsity {
    pub batch: u64,
    pub heads: u64,
    /// Fewer than `heads` is grouped-query attention: labels and rows per kv head.
    pub kv_heads: u64,
    /// Past tokens in the cache (S).
    pub context: u64,
    /// Channels per head (D).
    pub head_dim: u64,
    /// Label channels per head (r), at most `head_dim`.
    pub label_channels: u64,
    /// Tokens selected per head (k), at most `context`.
    pub selected: u64,
    /// Bytes per element of queries, keys, values and scores.
    pub elem_bytes: u64,
    /// Bits per element of the label cache.
    pub label_bits: u64,
    /// Score with the query the previous layer predicted (`QP`) and predict the next's (`QPN`).
    pub predict_next: bool,
}

/// Bytes of one selected index or label channel number (int32).
pub const INDEX_BYTES: u64 = 4;

impl DoubleSparsity {
    /// The decode step of a model's layer with this sparsity.
    pub fn of(shape: &AttentionShape, s: &Sparsity) -> DoubleSparsity {
        let context = shape.phase.keys();
        DoubleSparsity {
            batch: shape.batch,
            heads: shape.heads,
            kv_heads: shape.kv_heads,
            context,
            head_dim: shape.head_dim,
            label_channels: s.label_channels(shape.head_dim),
            selected: s.selected(context),
            elem_bytes: shape.elem_bytes,
            label_bits: s.label_bits,
            predict_next: s.predict_next,
        }
    }

    fn check(&self) -> SpecResult<()> {
        let keys = [
            ("label_channels", self.label_channels, self.head_dim, "head_dim"),
            ("selected", self.selected, self.context, "context"),
        ];
        for (key, v, limit, of) in keys {
            positive(key, v as i64)?;
            if v > limit {
                return Err(SpecError::new(key, format!("{v} is larger than {of} ({limit})")));
            }
        }
        positive("label_bits", self.label_bits as i64)?;
        Ok(())
    }

    /// The attention shape whose ranks this step indexes (decode, one query per sequence).
    fn shape(&self) -> AttentionShape {
        AttentionShape {
            passes: 3,
            phase: Phase::Decode { context: self.context },
            batch: self.batch,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            value_dim: self.head_dim,
            block: 1,
            causal: false,
            elem_bytes: self.elem_bytes,
        }
    }

    /// Adds the label ranks and tensors and the Einsums from the query `Q[b,h,e,p]` to the
    /// output `AV[b,h,f,p]` to a spec that has attention's ranks; `new_key` (if any) is the
    /// step's new key, whose labels join the label cache.
    pub fn add_attention(&self, spec: &mut CascadeSpec, new_key: Option<&str>) -> SpecResult<()> {
        self.check()?;
        spec.ranks.insert("c".into(), Size::Literal(self.label_channels as i64));
        spec.ranks.insert("j".into(), Size::Literal(self.selected as i64));
        let (h, kv) = if self.kv_heads == self.heads { ("h", "h") } else { ("g,r", "g") };
        let declare =
            |role: Option<Role>, bits: u64| TensorSpec { role, elem_bits: Some(bits as i64), ..TensorSpec::default() };
        spec.tensors.insert("CH".into(), declare(Some(Role::Weight), 8 * INDEX_BYTES));
        spec.tensors.insert("KL".into(), declare(Some(Role::KvCache), self.label_bits));
        spec.tensors.insert("K".into(), declare(Some(Role::KvCache), 8 * self.elem_bytes));
        spec.tensors.insert("V".into(), declare(Some(Role::KvCache), 8 * self.elem_bytes));
        spec.tensors.insert("I".into(), declare(None, 8 * INDEX_BYTES));
        if let Some(kn) = new_key {
            self.add_labels(spec, kn, "p")?;
        }
        let e = |s: String| EinsumSpec::new(s);
        let query = if self.predict_next {
            spec.tensors.insert("WQP".into(), TensorSpec { role: Some(Role::Weight), ..TensorSpec::default() });
            spec.einsums.push(e(format!("QPN[b,{h},e,p] = X[b,d,p] * WQP[d,{h},e]")));
            "QP"
        } else {
            "Q"
        };
        spec.einsums.extend([
            e(format!("QL[b,{h},c,p] = {query}[b,{h},e=CH[{kv},c],p]")),
            e(format!("SL[b,{h},m,p] = QL[b,{h},c,p] * KL[b,{kv},m,c]")),
            e(format!("I[b,{h},j,p] = top(SL[b,{h},m,p])")),
            e(format!("QK[b,{h},j,p] = Q[b,{h},e,p] * K[b,{kv},m=I[b,{h},j,p],e]")),
            e(format!("GM[b,{h},p] = QK[b,{h},j,p]")).reduce(ReduceOp::Max),
            e(format!("SN[b,{h},j,p] = exp(QK[b,{h},j,p] - GM[b,{h},p])")),
            e(format!("SD[b,{h},p] = SN[b,{h},j,p]")),
            e(format!("SNV[b,{h},f,p] = SN[b,{h},j,p] * V[b,{kv},m=I[b,{h},j,p],f]")),
            e(format!("AV[b,{h},f,p] = SNV[b,{h},f,p] / SD[b,{h},p]")),
        ]);
        Ok(())
    }

    /// Adds the labels of the keys `keys[b,kv,e,tokens]` the step produces (`KLN`, joining the
    /// label cache) and the label channels `CH`: a prefill writes its prompt's labels, a decode
    /// step its new token's.
    pub fn add_labels(&self, spec: &mut CascadeSpec, keys: &str, tokens: &str) -> SpecResult<()> {
        self.check()?;
        spec.ranks.insert("c".into(), Size::Literal(self.label_channels as i64));
        let kv = if self.kv_heads == self.heads { "h" } else { "g" };
        spec.einsums.push(EinsumSpec::new(format!("KLN[b,{kv},c,{tokens}] = {keys}[b,{kv},e=CH[{kv},c],{tokens}]")));
        spec.tensors.insert(
            "KLN".into(),
            TensorSpec { cache: true, elem_bits: Some(self.label_bits as i64), ..TensorSpec::default() },
        );
        spec.tensors.insert(
            "CH".into(),
            TensorSpec { role: Some(Role::Weight), elem_bytes: Some(INDEX_BYTES as i64), ..TensorSpec::default() },
        );
        Ok(())
    }

    /// The attention alone as a cascade: label scoring, selection, attention on gathered rows.
    pub fn spec(&self) -> SpecResult<CascadeSpec> {
        let mut spec = CascadeSpec::new(
            "double-sparsity",
            "Double Sparsity decode attention: label scores, top-k tokens, attention on gathered rows",
            self.elem_bytes,
        );
        self.shape().add_ranks(&mut spec);
        self.add_attention(&mut spec, None)?;
        Ok(spec)
    }

    /// The validated cascade.
    pub fn cascade(&self) -> SpecResult<Cascade> {
        self.spec()?.build()
    }
}

/// How a sparse FFN picks its memory blocks per token (S-FFN's selection methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Avg-K: the token's dot product with each block's mean key (`MK[nb,d]`), top `k_b`.
    AvgK,
    /// A learned gate (MoE's top-k routing, `WR[nb,d]`): the same scoring cost as Avg-K.
    TopK,
    /// Hash routing: the blocks come with the token (`I` is an input), nothing is scored.
    Hash,
}

/// A sparse FFN as memory blocks (S-FFN, Liu et al. 2023): `cells` key-value cells of width
/// `d_model` cut into blocks of `block` cells, `selected` blocks per token. A block's keys and
/// values are stored block-major (`K[nb,gc,d]`, `V[nb,gc,d]`), so a selected block is one
/// contiguous row of `block · d_model` elements per matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseFfn {
    pub tokens: u64,
    pub d_model: u64,
    pub cells: u64,
    /// Cells per block (g).
    pub block: u64,
    /// Blocks per token (k_b).
    pub selected: u64,
    pub routing: Routing,
    pub elem_bytes: u64,
}

impl SparseFfn {
    /// Memory blocks (N_b).
    pub fn blocks(&self) -> u64 {
        self.cells / self.block.max(1)
    }

    /// The cascade: scores, selection, the selected blocks' keys, the activation, their values.
    pub fn spec(&self) -> SpecResult<CascadeSpec> {
        positive("block", self.block as i64)?;
        if !self.cells.is_multiple_of(self.block) {
            return Err(SpecError::new(
                "block",
                format!("{} does not divide the FFN's {} cells", self.block, self.cells),
            ));
        }
        positive("selected", self.selected as i64)?;
        if self.selected > self.blocks() {
            return Err(SpecError::new(
                "selected",
                format!("{} blocks per token, but the FFN has {} blocks", self.selected, self.blocks()),
            ));
        }
        let mut spec =
            CascadeSpec::new("sparse-ffn", "S-FFN memory blocks: route, select, gather blocks", self.elem_bytes);
        for (rank, size) in
            [("t", self.tokens), ("d", self.d_model), ("nb", self.blocks()), ("kb", self.selected), ("gc", self.block)]
        {
            spec.ranks.insert(rank.into(), Size::Literal(size as i64));
        }
        let weight = TensorSpec { role: Some(Role::Weight), ..TensorSpec::default() };
        for w in ["K", "V"] {
            spec.tensors.insert(w.into(), weight.clone());
        }
        let e = |s: &str| EinsumSpec::new(s);
        match self.routing {
            Routing::AvgK | Routing::TopK => {
                let router = if self.routing == Routing::AvgK { "MK" } else { "WR" };
                spec.tensors.insert(router.into(), weight);
                spec.tensors
                    .insert("I".into(), TensorSpec { elem_bytes: Some(INDEX_BYTES as i64), ..TensorSpec::default() });
                spec.einsums.push(e(&format!("RS[t,nb] = X[t,d] * {router}[nb,d]")));
                spec.einsums.push(e("I[t,kb] = top(RS[t,nb])"));
            }
            Routing::Hash => {
                spec.tensors.insert(
                    "I".into(),
                    TensorSpec {
                        role: Some(Role::Input),
                        elem_bytes: Some(INDEX_BYTES as i64),
                        ..TensorSpec::default()
                    },
                );
            }
        }
        spec.einsums.extend([
            e("H[t,kb,gc] = X[t,d] * K[nb=I[t,kb],gc,d]"),
            e("A[t,kb,gc] = relu(H[t,kb,gc])"),
            e("Y[t,d] = A[t,kb,gc] * V[nb=I[t,kb],gc,d]"),
        ]);
        Ok(spec)
    }

    pub fn cascade(&self) -> SpecResult<Cascade> {
        self.spec()?.build()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::interp::{Dense, RunError, run};

    fn ds(batch: u64, heads: u64, context: u64, head_dim: u64, label_channels: u64, selected: u64) -> DoubleSparsity {
        DoubleSparsity {
            batch,
            heads,
            kv_heads: heads,
            context,
            head_dim,
            label_channels,
            selected,
            elem_bytes: 2,
            label_bits: 16,
            predict_next: false,
        }
    }

    /// Deterministic pseudo-random values in [-2, 2).
    fn values(n: u64, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
            })
            .collect()
    }

    /// Inputs with the label cache holding the keys' label channels, as Double Sparsity builds it.
    fn inputs(d: &DoubleSparsity, seed: u64) -> BTreeMap<String, Dense<f64>> {
        let (b, h, s, e, c) = (d.batch, d.heads, d.context, d.head_dim, d.label_channels);
        let q = Dense { shape: vec![b, h, e, 1], data: values(b * h * e, seed) };
        let k = Dense { shape: vec![b, h, s, e], data: values(b * h * s * e, seed + 1) };
        let v = Dense { shape: vec![b, h, s, e], data: values(b * h * s * e, seed + 2) };
        // Each head's label channels: a rotation of the channels, so heads differ.
        let ch: Vec<f64> = (0..h).flat_map(|hh| (0..c).map(move |cc| ((hh + cc * 3) % e) as f64)).collect();
        let ch = Dense { shape: vec![h, c], data: ch };
        let mut kl = Vec::new();
        for bb in 0..b {
            for hh in 0..h {
                for ss in 0..s {
                    for cc in 0..c {
                        kl.push(k.at(&[bb, hh, ss, ch.at(&[hh, cc]) as u64]));
                    }
                }
            }
        }
        let kl = Dense { shape: vec![b, h, s, c], data: kl };
        [("Q", q), ("K", k), ("V", v), ("CH", ch), ("KL", kl)].into_iter().map(|(n, t)| (n.to_string(), t)).collect()
    }

    /// Dense attention over every past token, masked to `keep(b, h, s)`, written directly.
    fn masked_attention(
        d: &DoubleSparsity,
        x: &BTreeMap<String, Dense<f64>>,
        keep: impl Fn(u64, u64, u64) -> bool,
    ) -> Vec<f64> {
        let mut out = Vec::new();
        for b in 0..d.batch {
            for h in 0..d.heads {
                let score =
                    |s: u64| (0..d.head_dim).map(|e| x["Q"].at(&[b, h, e, 0]) * x["K"].at(&[b, h, s, e])).sum::<f64>();
                let kept: Vec<u64> = (0..d.context).filter(|&s| keep(b, h, s)).collect();
                let max = kept.iter().map(|&s| score(s)).fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = kept.iter().map(|&s| (score(s) - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for f in 0..d.head_dim {
                    let acc: f64 = kept.iter().zip(&weights).map(|(&s, w)| w * x["V"].at(&[b, h, s, f])).sum();
                    out.push(acc / total);
                }
            }
        }
        out
    }

    /// The `k` tokens with the largest label scores, found by sorting (ties: lower index).
    fn selected(d: &DoubleSparsity, x: &BTreeMap<String, Dense<f64>>, b: u64, h: u64) -> Vec<u64> {
        let mut scored: Vec<(f64, u64)> = (0..d.context)
            .map(|s| {
                let label = (0..d.label_channels)
                    .map(|c| x["Q"].at(&[b, h, x["CH"].at(&[h, c]) as u64, 0]) * x["KL"].at(&[b, h, s, c]))
                    .sum::<f64>();
                (label, s)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.iter().take(d.selected as usize).map(|p| p.1).collect()
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs()))
    }

    #[test]
    fn sparse_attention_equals_dense_attention_masked_to_the_selected_tokens() {
        for (i, d) in [ds(2, 3, 16, 8, 2, 4), ds(1, 2, 9, 4, 1, 1), ds(1, 1, 5, 3, 3, 5)].iter().enumerate() {
            let c = d.cascade().unwrap();
            let x = inputs(d, i as u64 + 7);
            let r = run(&c, &x).unwrap();
            let chosen: Vec<Vec<Vec<u64>>> =
                (0..d.batch).map(|b| (0..d.heads).map(|h| selected(d, &x, b, h)).collect()).collect();
            // The selection is the sort's, in its order.
            for b in 0..d.batch {
                for h in 0..d.heads {
                    let got: Vec<u64> = (0..d.selected).map(|j| r.tensors["I"].at(&[b, h, j, 0]) as u64).collect();
                    assert_eq!(got, chosen[b as usize][h as usize], "selection of b{b} h{h}");
                }
            }
            let want = masked_attention(d, &x, |b, h, s| chosen[b as usize][h as usize].contains(&s));
            assert!(close(&r.tensors["AV"].data, &want), "case {i}: {:?} vs {want:?}", r.tensors["AV"].data);
            // Masked to fewer tokens than it kept, the answer changes: the check can fail.
            if d.selected > 1 {
                let fewer = masked_attention(d, &x, |b, h, s| chosen[b as usize][h as usize][1..].contains(&s));
                assert!(!close(&r.tensors["AV"].data, &fewer));
            }
        }
        // Keeping every token is dense attention.
        let d = ds(1, 2, 6, 4, 2, 6);
        let x = inputs(&d, 3);
        let r = run(&d.cascade().unwrap(), &x).unwrap();
        assert!(close(&r.tensors["AV"].data, &masked_attention(&d, &x, |_, _, _| true)));
    }

    #[test]
    fn counts_follow_the_selection() {
        let d = ds(2, 3, 16, 8, 2, 4);
        let c = d.cascade().unwrap();
        let x = inputs(&d, 1);
        let r = run(&c, &x).unwrap();
        for (i, e) in c.einsums().iter().enumerate() {
            let want = c.counts(e);
            assert_eq!((r.counts[i].points, r.counts[i].outputs), (want.points, want.outputs), "{}", e.name);
        }
        let top = &c.einsums()[2];
        let n = c.counts(top);
        // Every token of every head is a candidate once; each record keeps k indices.
        assert_eq!((n.points, n.outputs, n.reduce_ops), (2 * 3 * 16, 2 * 3 * 4, 2 * 3 * 16 - 2 * 3));
        // The attention reads k gathered rows, not the context: D · k MACs per head.
        assert_eq!(c.counts(&c.einsums()[3]).points, 2 * 3 * 4 * 8);
        // A gathered key row is one head's D channels.
        assert_eq!(c.gather_row_bytes(&c.einsums()[3].inputs[1]), Some(8 * 2));
        assert_eq!(c.einsums()[3].name, "QK");
        assert_eq!(c.gather_row_bytes(&c.einsums()[3].inputs[0]), None);
    }

    #[test]
    fn bad_selections_name_the_key() {
        let err = ds(1, 1, 8, 4, 2, 9).cascade().unwrap_err();
        assert!(err.to_string().contains("selected") && err.to_string().contains("context"), "{err}");
        let err = ds(1, 1, 8, 4, 5, 2).cascade().unwrap_err();
        assert!(err.to_string().contains("label_channels"), "{err}");
        let text =
            "[cascade]\nname = \"t\"\nranks = { s = 4, j = 5 }\n[[cascade.einsums]]\nexpr = \"I[j] = top(S[s])\"\n";
        let err = CascadeSpec::from_toml(text).unwrap().build().unwrap_err().to_string();
        assert!(err.contains("einsums[0].expr") && err.contains("k = 5") && err.contains("larger"), "{err}");
        let text = text.replace("j = 5", "j = 2").replace("top(S[s])", "top(S[s]) ").replace("I[j]", "I[j,s]");
        let err = CascadeSpec::from_toml(&text).unwrap().build().unwrap_err().to_string();
        assert!(err.contains("one output rank the input lacks"), "{err}");
        let text =
            "[cascade]\nname = \"t\"\nranks = { s = 4, j = 2 }\n[[cascade.einsums]]\nexpr = \"Z[s=I[j]] = A[j]\"\n";
        let err = CascadeSpec::from_toml(text).unwrap().build().unwrap_err().to_string();
        assert!(err.contains("only an input may gather"), "{err}");
    }

    #[test]
    fn a_gather_past_the_extent_is_a_run_error() {
        let text =
            "[cascade]\nname = \"t\"\nranks = { s = 4, j = 2 }\n[[cascade.einsums]]\nexpr = \"Z[j] = A[s=I[j]]\"\n";
        let c = CascadeSpec::from_toml(text).unwrap().build().unwrap();
        let mut x = BTreeMap::new();
        x.insert("A".to_string(), Dense { shape: vec![4], data: vec![1.0, 2.0, 3.0, 4.0] });
        x.insert("I".to_string(), Dense { shape: vec![2], data: vec![3.0, 1.0] });
        assert_eq!(run(&c, &x).unwrap().tensors["Z"].data, vec![4.0, 2.0]);
        x.insert("I".to_string(), Dense { shape: vec![2], data: vec![3.0, 4.0] });
        assert!(matches!(run(&c, &x), Err(RunError::Index { .. })));
    }

    fn sffn(routing: Routing, block: u64, selected: u64) -> SparseFfn {
        SparseFfn { tokens: 3, d_model: 4, cells: 12, block, selected, routing, elem_bytes: 2 }
    }

    /// Avg-K scores every block once per token (2·d·N_b flops), and the selected blocks' keys
    /// and values are all the FFN reads of its cells: k_b·g·2·d elements per token; hash routing
    /// scores nothing.
    #[test]
    fn avg_k_counts_its_router_and_reads_the_selected_blocks() {
        let f = sffn(Routing::AvgK, 3, 2);
        let c = f.cascade().unwrap();
        let router = c.counts(&c.einsums()[0]);
        assert_eq!(router.flops(), 3 * (2 * 4 * 4 - 4), "3 tokens × N_b = 4 dot products of d = 4");
        assert_eq!(c.macs() - 3 * 4 * 4, 3 * 2 * 3 * 4 * 2, "the blocks' keys and values: k_b · g · d each");
        let keys = &c.einsums()[2].inputs[1];
        // 3 tokens × 2 blocks of 3 × 4 is more than the 4 blocks there are: at most all of them.
        assert_eq!(c.read_elements(keys), 4 * 3 * 4);
        let one = sffn(Routing::AvgK, 3, 1).cascade().unwrap();
        assert_eq!(one.read_elements(&one.einsums()[2].inputs[1]), 3 * 3 * 4);
        assert_eq!(c.gather_row_bytes(keys), Some(3 * 4 * 2), "a block is one row of g · d elements");
        let hashed = sffn(Routing::Hash, 3, 2).cascade().unwrap();
        assert_eq!(hashed.einsums().len(), 3);
        assert_eq!(hashed.macs(), 3 * 2 * 3 * 4 * 2);
    }

    /// The sparse FFN equals the dense FFN with every unselected block's cells masked off; all
    /// blocks selected, it is the dense FFN.
    #[test]
    fn a_sparse_ffn_is_the_dense_ffn_on_its_selected_blocks() {
        for selected in [1, 2, 4] {
            let f = sffn(Routing::AvgK, 3, selected);
            let c = f.cascade().unwrap();
            let x: BTreeMap<String, Dense<f64>> =
                [("X", vec![3, 4], 1), ("K", vec![4, 3, 4], 2), ("V", vec![4, 3, 4], 3), ("MK", vec![4, 4], 4)]
                    .into_iter()
                    .map(|(n, shape, seed)| {
                        let len = shape.iter().product();
                        (n.to_string(), Dense { shape, data: values(len, seed) })
                    })
                    .collect();
            let r = run(&c, &x).unwrap();
            for t in 0..3u64 {
                let picked: Vec<u64> = (0..selected).map(|j| r.tensors["I"].at(&[t, j]) as u64).collect();
                // Independently: the blocks by the token's score against each mean key.
                let mut scores: Vec<(f64, u64)> = (0..4u64)
                    .map(|nb| ((0..4).map(|d| x["X"].at(&[t, d]) * x["MK"].at(&[nb, d])).sum::<f64>(), nb))
                    .collect();
                scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let want: Vec<u64> = scores.iter().take(selected as usize).map(|s| s.1).collect();
                assert_eq!(picked, want);
                for d in 0..4u64 {
                    let mut y = 0.0;
                    for nb in want.iter().copied() {
                        for g in 0..3u64 {
                            let h: f64 = (0..4).map(|k| x["X"].at(&[t, k]) * x["K"].at(&[nb, g, k])).sum();
                            y += h.max(0.0) * x["V"].at(&[nb, g, d]);
                        }
                    }
                    assert!((r.tensors["Y"].at(&[t, d]) - y).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn bad_blocks_name_the_key() {
        let e = sffn(Routing::AvgK, 5, 1).cascade().unwrap_err();
        assert!(e.path == "block" && e.reason.contains("does not divide"), "{e}");
        let e = sffn(Routing::TopK, 3, 5).cascade().unwrap_err();
        assert!(e.path == "selected" && e.reason.contains("4 blocks"), "{e}");
    }
}
