//! Transformer models: the TOML spec, Hugging Face `config.json` import, and the builder that
//! lowers one layer (or the LM head) for a phase into an Einsum cascade.
//!
//! Norms and biases are left out of the lowered layer: they are under 0.1 % of a layer's
//! operations and bytes at the sizes Strata studies, and leaving them out keeps each Einsum
//! one a reader can match with the papers. Residual additions are kept.

use serde::Deserialize;

use crate::attention::{AttentionIo, AttentionShape};
use crate::cascade::{CascadeSpec, EinsumSpec, Size, TensorSpec};
use crate::einsum::{Cascade, EinsumCounts, Role};
use crate::error::{SpecError, SpecResult, positive};
use crate::phase::Phase;
use crate::sparse::{DoubleSparsity, INDEX_BYTES, Sparsity};

/// One linear projection of a layer, dense or factorised.
struct Projection<'a> {
    /// The output access, e.g. `Q[b,h,e,p]`.
    out: String,
    input: String,
    /// The weight's name; factors are `{w}A` and `{w}B`.
    w: &'a str,
    /// The weight's input and output positions (`d`; `h,e`).
    w_in: String,
    w_out: String,
    /// The rank's name and size, for a factorised projection.
    rank: Option<(&'a str, u64)>,
}

impl Projection<'_> {
    /// Its Einsums (two for a factorised projection: the rank-space activation `P{w}` first),
    /// adding its weights' names to `weights`.
    fn einsums(&self, weights: &mut Vec<String>) -> Vec<EinsumSpec> {
        let Projection { out, input, w, w_in, w_out, rank } = self;
        match rank {
            None => {
                weights.push(w.to_string());
                vec![EinsumSpec::new(format!("{out} = {input} * {w}[{w_in},{w_out}]"))]
            }
            Some((r, _)) => {
                weights.extend([format!("{w}A"), format!("{w}B")]);
                let p = format!("P{}[b,{r},p]", &w[1..]);
                vec![
                    EinsumSpec::new(format!("{p} = {input} * {w}A[{w_in},{r}]")),
                    EinsumSpec::new(format!("{out} = {p} * {w}B[{r},{w_out}]")),
                ]
            }
        }
    }
}

/// A model file: one `[model]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub model: ModelSpec,
}

/// The FFN's non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Gelu,
    Silu,
}

impl Activation {
    fn function(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
        }
    }
}

/// The serde mirror of a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub layers: i64,
    pub d_model: i64,
    pub heads: i64,
    /// Defaults to `heads` (multi-head attention).
    pub kv_heads: Option<i64>,
    /// Defaults to `d_model / heads`.
    pub head_dim: Option<i64>,
    pub ffn_dim: i64,
    /// A gated FFN (SwiGLU: gate and up projections, then down) has three weight matrices.
    #[serde(default)]
    pub gated_ffn: bool,
    pub activation: Activation,
    pub vocab: i64,
    #[serde(default = "two")]
    pub bytes_per_element: i64,
    /// Whether the LM head reuses the embedding matrix.
    #[serde(default)]
    pub tied_embeddings: bool,
    /// Decoder self-attention is causal; encoder attention (BERT) is not.
    #[serde(default = "yes")]
    pub causal: bool,
    /// The share of the FFN's neurons one token activates, as a predictor selects them (the
    /// activation's nonzero set and its false positives; OPT's ReLU: 10%, "LLM in a flash").
    pub ffn_active: Option<f64>,
    /// Cells (neurons) per memory block of a sparse FFN (S-FFN: a block is what a router
    /// selects, an expert of g cells); the FFN's width must be a multiple, and `ffn_active`
    /// says what share of the blocks a token selects. The FFN then lowers to Avg-K routing.
    pub ffn_block: Option<i64>,
    /// Ranks of SVD-factorised projections (FlashSVD): each one named is stored as two factors.
    #[serde(default)]
    pub ranks: Option<RanksSpec>,
}

/// The serde mirror of [`Ranks`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RanksSpec {
    pub q: Option<i64>,
    pub k: Option<i64>,
    pub v: Option<i64>,
    pub o: Option<i64>,
    pub gate: Option<i64>,
    pub up: Option<i64>,
    pub down: Option<i64>,
    /// Keep the KV cache in rank space (FlashSVD's decoder variant): per token the rank-space
    /// key and value projections, rebuilt into keys and values at every step.
    #[serde(default)]
    pub cache: bool,
}

impl RanksSpec {
    /// The ranks as written; each must be positive (its bound is the model's: [`Model::with_ranks`]).
    pub fn ranks(&self) -> SpecResult<Ranks> {
        let one = |key: &str, v: Option<i64>| v.map(|v| positive(&format!("ranks.{key}"), v)).transpose();
        Ok(Ranks {
            q: one("q", self.q)?,
            k: one("k", self.k)?,
            v: one("v", self.v)?,
            o: one("o", self.o)?,
            gate: one("gate", self.gate)?,
            up: one("up", self.up)?,
            down: one("down", self.down)?,
            cache: self.cache,
        })
    }
}

/// A low-rank model's projections: each one with a rank `R` is `x · A · B` with `A` of
/// `d_in × R` and `B` of `R × d_out` (a truncated SVD), its rank-space activation `x · A`
/// between the two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ranks {
    pub q: Option<u64>,
    pub k: Option<u64>,
    pub v: Option<u64>,
    pub o: Option<u64>,
    pub gate: Option<u64>,
    pub up: Option<u64>,
    pub down: Option<u64>,
    /// The KV cache holds the rank-space projections `x · A` of keys and values (`R_k + R_v`
    /// per token and layer instead of two rows of the kv heads' width), rebuilt each step.
    pub cache: bool,
}

impl Ranks {
    /// Every projection at rank `r` (`gated`: the FFN has a gate projection).
    pub fn all(r: u64, gated: bool) -> Ranks {
        Ranks {
            q: Some(r),
            k: Some(r),
            v: Some(r),
            o: Some(r),
            gate: gated.then_some(r),
            up: Some(r),
            down: Some(r),
            cache: false,
        }
    }

    /// Parameters of a `d_in × d_out` projection at `rank` (dense without one).
    pub fn params(rank: Option<u64>, d_in: u64, d_out: u64) -> u64 {
        rank.map_or(d_in * d_out, |r| r * (d_in + d_out))
    }
}

fn two() -> i64 {
    2
}
fn yes() -> bool {
    true
}

/// A validated model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    pub description: String,
    pub layers: u64,
    pub d_model: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub ffn_dim: u64,
    pub gated_ffn: bool,
    pub activation: Activation,
    pub vocab: u64,
    pub bytes_per_element: u64,
    pub tied_embeddings: bool,
    pub causal: bool,
    /// The share of FFN neurons one token activates, where known.
    pub ffn_active: Option<f64>,
    /// Cells per memory block of a sparse FFN, if it selects blocks: the FFN lowers to a
    /// router scoring every block by its mean key, `top(..)` over the blocks and the selected
    /// blocks' keys and values gathered (stored block-major: one row of g · d per block).
    pub ffn_block: Option<u64>,
    /// Ranks of its SVD-factorised projections (none: a dense model).
    pub ranks: Ranks,
}

impl ModelSpec {
    pub fn from_toml(text: &str) -> SpecResult<Self> {
        crate::toml_doc::from_toml::<ModelFile>(text).map(|f| f.model)
    }

    /// Validates the numbers; error paths start with `model.`.
    pub fn build(&self) -> SpecResult<Model> {
        self.build_inner().map_err(|e| e.under("model"))
    }

    fn build_inner(&self) -> SpecResult<Model> {
        if self.name.trim().is_empty() {
            return Err(SpecError::new("name", "must not be empty"));
        }
        let d_model = positive("d_model", self.d_model)?;
        let heads = positive("heads", self.heads)?;
        let kv_heads = positive("kv_heads", self.kv_heads.unwrap_or(self.heads))?;
        if heads % kv_heads != 0 {
            return Err(SpecError::new("kv_heads", format!("must divide heads ({heads}), got {kv_heads}")));
        }
        let head_dim = match self.head_dim {
            Some(h) => positive("head_dim", h)?,
            None if d_model % heads == 0 => d_model / heads,
            None => {
                return Err(SpecError::new(
                    "head_dim",
                    format!("missing, and d_model ({d_model}) is not a multiple of heads ({heads})"),
                ));
            }
        };
        let bytes = positive("bytes_per_element", self.bytes_per_element)?;
        if bytes > 8 {
            return Err(SpecError::new("bytes_per_element", format!("must be at most 8 (got {bytes})")));
        }
        // Far beyond any model, and small enough that parameter and byte counts stay in 64 bits.
        for (key, value, most) in [
            ("layers", self.layers, 1i64 << 12),
            ("d_model", self.d_model, 1 << 20),
            ("heads", self.heads, 1 << 20),
            ("head_dim", head_dim.min(1 << 40) as i64, 1 << 20),
            ("ffn_dim", self.ffn_dim, 1 << 20),
            ("vocab", self.vocab, 1 << 24),
        ] {
            if value > most {
                return Err(SpecError::new(key, format!("must be at most {most} (got {value})")));
            }
        }
        if heads * head_dim > 1 << 20 {
            return Err(SpecError::new(
                "heads",
                format!("heads × head_dim must be at most 2^20 (got {heads} × {head_dim})"),
            ));
        }
        Model {
            name: self.name.clone(),
            description: self.description.clone(),
            layers: positive("layers", self.layers)?,
            d_model,
            heads,
            kv_heads,
            head_dim,
            ffn_dim: positive("ffn_dim", self.ffn_dim)?,
            gated_ffn: self.gated_ffn,
            activation: self.activation,
            vocab: positive("vocab", self.vocab)?,
            bytes_per_element: bytes,
            tied_embeddings: self.tied_embeddings,
            causal: self.causal,
            ffn_active: match self.ffn_active {
                Some(a) if !(a > 0.0 && a <= 1.0) => {
                    return Err(SpecError::new("ffn_active", format!("must be in (0, 1] (got {a})")));
                }
                a => a,
            },
            ffn_block: match self.ffn_block {
                None => None,
                Some(_) if self.ffn_active.is_none() => {
                    return Err(SpecError::new(
                        "ffn_block",
                        "a sparse FFN selects the `ffn_active` share of its blocks: give ffn_active too",
                    ));
                }
                Some(g) if g > 0 && self.ffn_dim > 0 && self.ffn_dim % g == 0 => Some(g as u64),
                Some(g) => {
                    return Err(SpecError::new(
                        "ffn_block",
                        format!("must be a positive divisor of ffn_dim ({}) (got {g})", self.ffn_dim),
                    ));
                }
            },
            ranks: Ranks::default(),
        }
        .with_ranks(self.ranks.as_ref().map(RanksSpec::ranks).transpose()?.unwrap_or_default())
    }

    /// Imports a Hugging Face `config.json` (llama, mistral, opt, bert style keys).
    pub fn from_hf_json(text: &str, name: &str) -> SpecResult<Self> {
        let c: HfConfig = crate::toml_doc::from_json(text)?;
        let need =
            |v: Option<i64>, key: &str| v.ok_or_else(|| SpecError::new(key, "missing (required to build the model)"));
        let model_type = c.model_type.clone().unwrap_or_default();
        let act_name = c.hidden_act.clone().or(c.activation_function.clone()).unwrap_or_else(|| "gelu".into());
        let activation = match act_name.as_str() {
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            a if a.starts_with("gelu") => Activation::Gelu,
            other => {
                let key = if c.hidden_act.is_some() { "hidden_act" } else { "activation_function" };
                return Err(SpecError::new(key, format!("unsupported activation `{other}` (relu, gelu*, silu)")));
            }
        };
        let gated = matches!(model_type.as_str(), "llama" | "mistral" | "mixtral" | "qwen2" | "gemma" | "yi");
        let encoder = matches!(model_type.as_str(), "bert" | "roberta" | "xlm" | "xlm-roberta" | "t5" | "distilbert");
        // Newer configs write `dtype`; older ones `torch_dtype`. When both are there they must agree.
        let dtype_key = if c.dtype.is_some() { "dtype" } else { "torch_dtype" };
        if let (Some(a), Some(b)) = (&c.dtype, &c.torch_dtype)
            && a != b
        {
            return Err(SpecError::new("dtype", format!("`{a}` but torch_dtype is `{b}`")));
        }
        let bytes = match c.dtype.as_deref().or(c.torch_dtype.as_deref()) {
            Some("float32") => 4,
            Some("float16" | "bfloat16") | None => 2,
            Some("int8" | "float8_e4m3fn" | "float8_e5m2") => 1,
            Some(other) => {
                return Err(SpecError::new(dtype_key, format!("unsupported dtype `{other}`")));
            }
        };
        Ok(ModelSpec {
            name: name.to_string(),
            description: format!("imported from a Hugging Face config ({model_type})"),
            layers: need(c.num_hidden_layers, "num_hidden_layers")?,
            d_model: need(c.hidden_size, "hidden_size")?,
            heads: need(c.num_attention_heads, "num_attention_heads")?,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            ffn_dim: need(c.intermediate_size.or(c.ffn_dim), "intermediate_size")?,
            gated_ffn: gated,
            activation,
            vocab: need(c.vocab_size, "vocab_size")?,
            bytes_per_element: bytes,
            tied_embeddings: c.tie_word_embeddings.unwrap_or(model_type == "opt" || encoder),
            causal: !encoder,
            ffn_active: None,
            ffn_block: None,
            ranks: None,
        })
    }
}

/// The keys Strata reads from a Hugging Face config; all others are ignored.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    hidden_size: Option<i64>,
    num_hidden_layers: Option<i64>,
    num_attention_heads: Option<i64>,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    intermediate_size: Option<i64>,
    ffn_dim: Option<i64>,
    vocab_size: Option<i64>,
    hidden_act: Option<String>,
    activation_function: Option<String>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
    tie_word_embeddings: Option<bool>,
}

/// Everything `workload show` reports about a model in one phase.
#[derive(Debug, Clone)]
pub struct ModelWorkload {
    pub phase: Phase,
    pub batch: u64,
    pub layer: Cascade,
    pub lm_head: Cascade,
}

impl ModelWorkload {
    /// Operation counts of the whole model: every layer plus the LM head.
    pub fn total_counts(&self, model: &Model) -> EinsumCounts {
        let l = self.layer.total_counts();
        let h = self.lm_head.total_counts();
        EinsumCounts {
            points: l.points * model.layers + h.points,
            outputs: l.outputs * model.layers + h.outputs,
            map_ops: l.map_ops * model.layers + h.map_ops,
            reduce_ops: l.reduce_ops * model.layers + h.reduce_ops,
        }
    }
}

/// Most whole-model iteration points or KV-cache bytes: totals are sums of a few such numbers.
const MAX_TOTAL: u128 = 1 << 63;

impl Model {
    /// Bytes of keys and values one token adds to the cache, over all layers (their rank-space
    /// projections for a rank-space cache).
    pub fn kv_bytes_per_token(&self) -> u64 {
        let per_layer = match (self.ranks.cache, self.ranks.k, self.ranks.v) {
            (true, Some(k), Some(v)) => k + v,
            _ => 2 * self.kv_heads * self.head_dim,
        };
        self.layers * per_layer * self.bytes_per_element
    }

    /// This model with its projections factorised at `ranks`: each rank at most its
    /// projection's smaller side (a larger one stores more than the dense matrix), a gate rank
    /// only for a gated FFN. Errors name `ranks.<projection>`.
    pub fn with_ranks(&self, ranks: Ranks) -> SpecResult<Model> {
        let (d, f) = (self.d_model, self.ffn_dim);
        let (q, kv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        if ranks.gate.is_some() && !self.gated_ffn {
            return Err(SpecError::new("ranks.gate", "the FFN has no gate projection (gated_ffn = false)"));
        }
        if ranks.cache && (ranks.k.is_none() || ranks.v.is_none()) {
            return Err(SpecError::new("ranks.cache", "a rank-space cache needs the k and v ranks"));
        }
        if let (Some(_), Some((key, _))) = (
            self.ffn_block,
            [("gate", ranks.gate), ("up", ranks.up), ("down", ranks.down)].into_iter().find(|r| r.1.is_some()),
        ) {
            return Err(SpecError::new(format!("ranks.{key}"), "a sparse FFN's memory blocks are not factorised"));
        }
        let sides = [
            ("q", ranks.q, d, q),
            ("k", ranks.k, d, kv),
            ("v", ranks.v, d, kv),
            ("o", ranks.o, q, d),
            ("gate", ranks.gate, d, f),
            ("up", ranks.up, d, f),
            ("down", ranks.down, f, d),
        ];
        for (key, rank, d_in, d_out) in sides {
            if let Some(r) = rank
                && (r == 0 || r > d_in.min(d_out))
            {
                return Err(SpecError::new(
                    format!("ranks.{key}"),
                    format!("rank {r} must be from 1 to the layer's smaller side ({d_in} × {d_out})"),
                ));
            }
        }
        Ok(Model { ranks, ..self.clone() })
    }

    /// Weights of one layer (attention projections and FFN; no norms or biases; factorised
    /// projections as their two factors).
    pub fn params_per_layer(&self) -> u64 {
        let (d, r) = (self.d_model, &self.ranks);
        let (q, kv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let attn =
            Ranks::params(r.q, d, q) + Ranks::params(r.k, d, kv) + Ranks::params(r.v, d, kv) + Ranks::params(r.o, q, d);
        attn + self.router_params_per_layer() + self.ffn_params_per_layer()
    }

    /// Weights of one layer's FFN: up (and gate) and down projections.
    pub fn ffn_params_per_layer(&self) -> u64 {
        let (d, f, r) = (self.d_model, self.ffn_dim, &self.ranks);
        let gate = if self.gated_ffn { Ranks::params(r.gate, d, f) } else { 0 };
        gate + Ranks::params(r.up, d, f) + Ranks::params(r.down, f, d)
    }

    /// A sparse FFN's blocks: (blocks N_b, selected per token k_b: the active share rounded to
    /// whole blocks, at least one, cells per block g).
    pub fn ffn_blocks(&self) -> Option<(u64, u64, u64)> {
        let g = self.ffn_block?;
        let blocks = self.ffn_dim / g;
        let active = self.ffn_active.unwrap_or(1.0);
        Some((blocks, ((active * blocks as f64).round() as u64).clamp(1, blocks), g))
    }

    /// Weights of one layer's router: a sparse FFN's mean key per block (Avg-K).
    pub fn router_params_per_layer(&self) -> u64 {
        self.ffn_blocks().map_or(0, |(blocks, _, _)| blocks * self.d_model)
    }

    /// Embedding and LM-head parameters.
    pub fn embedding_params(&self) -> u64 {
        self.vocab * self.d_model * if self.tied_embeddings { 1 } else { 2 }
    }

    pub fn params(&self) -> u64 {
        self.layers * self.params_per_layer() + self.embedding_params()
    }

    pub fn weight_bytes(&self) -> u64 {
        self.params() * self.bytes_per_element
    }

    fn attention(&self, phase: Phase, batch: u64, passes: u8, block: u64) -> AttentionShape {
        AttentionShape {
            passes,
            phase,
            batch,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            value_dim: self.head_dim,
            block,
            causal: self.causal,
            elem_bytes: self.bytes_per_element,
        }
    }

    /// One transformer layer for a phase, with attention as a `passes`-pass cascade.
    pub fn layer_spec(&self, phase: Phase, batch: u64, passes: u8, block: u64) -> CascadeSpec {
        self.layer_spec_with(phase, batch, passes, block, None).expect("dense attention has no sparsity to check")
    }

    /// [`Model::layer_spec`], with decode attention as Double Sparsity's when `sparse` is given
    /// (a token-major cache, a label cache that the new key's labels join, label scores, top-k
    /// and attention on the gathered rows); prefill stays dense and writes the labels.
    pub fn layer_spec_with(
        &self,
        phase: Phase,
        batch: u64,
        passes: u8,
        block: u64,
        sparse: Option<&Sparsity>,
    ) -> SpecResult<CascadeSpec> {
        let mut spec = CascadeSpec::new(format!("{}-layer-{}", self.name, phase.name()), "", self.bytes_per_element);
        spec.description = format!("one {} layer, {}, batch {batch}", self.name, phase.name());
        spec.params.insert("D".into(), self.d_model as i64);
        spec.params.insert("S".into(), self.ffn_dim as i64);
        spec.ranks.insert("d".into(), Size::Param("D".into()));
        spec.ranks.insert("s".into(), Size::Param("S".into()));
        let (hq, hkv) = if self.kv_heads == self.heads { ("h", "h") } else { ("g,r", "g") };
        let decode = matches!(phase, Phase::Decode { .. });
        let (k_new, v_new) = if decode { ("KN", "VN") } else { ("K", "V") };
        let e = |s: String| EinsumSpec::new(s);
        let r = self.ranks;
        let mut weights = Vec::new();
        let mut project = |spec: &mut CascadeSpec, p: Projection<'_>| {
            spec.einsums.extend(p.einsums(&mut weights));
            if let Some((rank, size)) = p.rank {
                spec.ranks.insert(rank.into(), Size::Literal(size as i64));
            }
        };
        let linear = |out: String, input: String, w: &'static str, w_in: String, w_out: String, rank| Projection {
            out,
            input,
            w,
            w_in,
            w_out,
            rank,
        };
        let x = "X[b,d,p]".to_string();
        project(
            &mut spec,
            linear(format!("Q[b,{hq},e,p]"), x.clone(), "WQ", "d".into(), format!("{hq},e"), r.q.map(|v| ("rq", v))),
        );
        // A rank-space cache (FlashSVD's decoder variant): a decode step caches its new key's and
        // value's rank-space projections and rebuilds every cached token's keys and values.
        let rank_cache = match (r.cache, r.k, r.v) {
            (true, Some(k), Some(v)) if decode => Some((k, v)),
            _ => None,
        };
        if rank_cache.is_some() && sparse.is_some() {
            return Err(SpecError::new(
                "ranks.cache",
                "Double Sparsity's labels and gathered rows read a dense cache, not a rank-space one",
            ));
        }
        let mut cache_weights = Vec::new();
        if let Some((rk, rv)) = rank_cache {
            for (w, rank, size, out, dims) in
                [("WK", "rk", rk, "K", format!("{hkv},e")), ("WV", "rv", rv, "V", format!("{hkv},f"))]
            {
                let p = format!("P{}", &w[1..]);
                spec.ranks.insert(rank.into(), Size::Literal(size as i64));
                spec.einsums.push(e(format!("{p}[b,{rank},p] = X[b,d,p] * {w}A[d,{rank}]")));
                spec.einsums.push(e(format!("{out}[b,{dims},m] = {p}C[b,{rank},m] * {w}B[{rank},{dims}]")));
                spec.tensors.insert(p, TensorSpec { cache: true, ..TensorSpec::default() });
                spec.tensors.insert(
                    format!("P{}C", &w[1..]),
                    TensorSpec { role: Some(Role::KvCache), ..TensorSpec::default() },
                );
                cache_weights.extend([format!("{w}A"), format!("{w}B")]);
            }
        } else {
            project(
                &mut spec,
                linear(
                    format!("{k_new}[b,{hkv},e,p]"),
                    x.clone(),
                    "WK",
                    "d".into(),
                    format!("{hkv},e"),
                    r.k.map(|v| ("rk", v)),
                ),
            );
            project(
                &mut spec,
                linear(
                    format!("{v_new}[b,{hkv},f,p]"),
                    x,
                    "WV",
                    "d".into(),
                    format!("{hkv},f"),
                    r.v.map(|v| ("rv", v)),
                ),
            );
        }
        let shape = self.attention(phase, batch, passes, block);
        match (sparse, decode) {
            (Some(s), true) => {
                let dense = self.attention(phase, batch, 3, block);
                dense.add_ranks(&mut spec);
                DoubleSparsity::of(&dense, s).add_attention(&mut spec, Some(k_new))?;
            }
            (Some(s), false) => {
                shape.add_to(&mut spec, AttentionIo::default());
                let ds = DoubleSparsity { context: phase.keys(), ..DoubleSparsity::of(&shape, s) };
                ds.add_labels(&mut spec, "K", "m")?;
            }
            (None, _) => {
                shape.add_to(&mut spec, AttentionIo::default());
                if rank_cache.is_some() {
                    // Keys and values are rebuilt here, not read from the cache.
                    spec.tensors.remove("K");
                    spec.tensors.remove("V");
                }
            }
        }
        project(
            &mut spec,
            linear(
                "Z[b,d,p]".into(),
                format!("AV[b,{hq},f,p]"),
                "WO",
                format!("{hq},f"),
                "d".into(),
                r.o.map(|v| ("ro", v)),
            ),
        );
        spec.einsums.push(e("Y1[b,d,p] = X[b,d,p] + Z[b,d,p]".into()));
        let act = self.activation.function();
        let y1 = "Y1[b,d,p]".to_string();
        if let Some((blocks, selected, g)) = self.ffn_blocks() {
            // Avg-K: score every block by its mean key, keep the best k_b, gather their cells'
            // keys (up, and gate) and values (down), block-major.
            for (rank, size) in [("nb", blocks), ("kb", selected), ("gc", g)] {
                spec.ranks.insert(rank.into(), Size::Literal(size as i64));
            }
            spec.tensors
                .insert("FI".into(), TensorSpec { elem_bytes: Some(INDEX_BYTES as i64), ..TensorSpec::default() });
            weights.push("MK".into());
            spec.einsums
                .extend([e("FR[b,nb,p] = Y1[b,d,p] * MK[nb,d]".into()), e("FI[b,kb,p] = top(FR[b,nb,p])".into())]);
            let block = |w: &str| format!("{w}[nb=FI[b,kb,p],gc,d]");
            let up = if self.gated_ffn { "WU" } else { "W1" };
            if self.gated_ffn {
                spec.einsums.extend([
                    e(format!("FG[b,kb,gc,p] = Y1[b,d,p] * {}", block("WG"))),
                    e(format!("FU[b,kb,gc,p] = Y1[b,d,p] * {}", block(up))),
                    e(format!("FA[b,kb,gc,p] = {act}(FG[b,kb,gc,p])")),
                    e("FH[b,kb,gc,p] = FA[b,kb,gc,p] * FU[b,kb,gc,p]".into()),
                    e(format!("FD[b,d,p] = FH[b,kb,gc,p] * {}", block("WD"))),
                ]);
                weights.extend(["WG".into(), up.into(), "WD".into()]);
            } else {
                spec.einsums.extend([
                    e(format!("FU[b,kb,gc,p] = Y1[b,d,p] * {}", block(up))),
                    e(format!("FA[b,kb,gc,p] = {act}(FU[b,kb,gc,p])")),
                    e(format!("FD[b,d,p] = FA[b,kb,gc,p] * {}", block("W2"))),
                ]);
                weights.extend([up.into(), "W2".into()]);
            }
        } else if self.gated_ffn {
            project(
                &mut spec,
                linear("FG[b,s,p]".into(), y1.clone(), "WG", "d".into(), "s".into(), r.gate.map(|v| ("rg", v))),
            );
            project(&mut spec, linear("FU[b,s,p]".into(), y1, "WU", "d".into(), "s".into(), r.up.map(|v| ("ru", v))));
            spec.einsums
                .extend([e(format!("FA[b,s,p] = {act}(FG[b,s,p])")), e("FH[b,s,p] = FA[b,s,p] * FU[b,s,p]".into())]);
            project(
                &mut spec,
                linear("FD[b,d,p]".into(), "FH[b,s,p]".into(), "WD", "s".into(), "d".into(), r.down.map(|v| ("rd", v))),
            );
        } else {
            project(&mut spec, linear("FU[b,s,p]".into(), y1, "W1", "d".into(), "s".into(), r.up.map(|v| ("ru", v))));
            spec.einsums.push(e(format!("FA[b,s,p] = {act}(FU[b,s,p])")));
            project(
                &mut spec,
                linear("FD[b,d,p]".into(), "FA[b,s,p]".into(), "W2", "s".into(), "d".into(), r.down.map(|v| ("rd", v))),
            );
        }
        spec.einsums.push(e("Y[b,d,p] = Y1[b,d,p] + FD[b,d,p]".into()));
        for w in weights {
            spec.tensors.insert(w, TensorSpec { role: Some(Role::Weight), ..TensorSpec::default() });
        }
        for w in cache_weights {
            spec.tensors.insert(w, TensorSpec { role: Some(Role::Weight), ..TensorSpec::default() });
        }
        // What joins the cache: the new keys and values, or their rank-space projections.
        let cached: [&str; 2] = if r.cache { ["PK", "PV"] } else { [k_new, v_new] };
        if rank_cache.is_none() {
            for t in cached {
                spec.tensors.insert(t.into(), TensorSpec { cache: true, ..TensorSpec::default() });
            }
        }
        Ok(spec)
    }

    /// FlashSVD's streaming kernels over a layer this model lowered: attention rebuilds Q, K
    /// and V tile by tile from their rank-space projections and runs the online softmax on them
    /// (the rebuilds and every Einsum to attention's output `AV`); the FFN rebuilds the gate and
    /// up tiles, applies the activation and runs both factors of the down projection per tile
    /// (the rebuilds to the FFN's output `FD`). A dense projection has no rebuild; its output
    /// is materialised and the kernel starts after it. The rank-space projections (`P…`), the
    /// attention's and the FFN's outputs are what reaches memory.
    pub fn streaming_groups(&self, layer: &Cascade) -> Vec<Vec<usize>> {
        let es = layer.einsums();
        let at = |name: &str| es.iter().position(|e| e.name == name);
        let r = &self.ranks;
        let (k, v) = if at("KN").is_some() { ("KN", "VN") } else { ("K", "V") };
        let Some(av) = at("AV") else { return Vec::new() };
        // Attention: from the first Einsum after the V projection, with the Q, K, V rebuilds.
        let v_at = at(v).unwrap_or(0);
        let mut attention: Vec<usize> = (v_at + 1..=av).collect();
        for (name, rank) in [("Q", r.q), (k, r.k), (v, r.v)] {
            if let (Some(i), Some(_)) = (at(name), rank) {
                attention.push(i);
            }
        }
        // The FFN: its rebuilds, then everything from the activation to its output.
        let (Some(fa), Some(fd)) = (at("FA"), at("FD")) else { return vec![attention] };
        let mut ffn: Vec<usize> = (fa..=fd).collect();
        let gate = if self.gated_ffn { Some(("FG", r.gate)) } else { None };
        for (name, rank) in gate.into_iter().chain([("FU", r.up)]) {
            if let (Some(i), Some(_)) = (at(name), rank) {
                ffn.push(i);
            }
        }
        attention.sort_unstable();
        ffn.sort_unstable();
        vec![attention, ffn]
    }

    /// The LM head: logits of the last position of each sequence (what generation needs).
    pub fn lm_head_spec(&self, batch: u64) -> CascadeSpec {
        let mut spec = CascadeSpec::new(format!("{}-lm-head", self.name), "", self.bytes_per_element);
        spec.description = format!("logits of the last token, batch {batch}");
        for (rank, param, v) in [("b", "B", batch), ("d", "D", self.d_model), ("v", "VOCAB", self.vocab)] {
            spec.params.insert(param.into(), v as i64);
            spec.ranks.insert(rank.into(), Size::Param(param.into()));
        }
        spec.einsums.push(EinsumSpec::new("LOGITS[b,v] = H[b,d] * WE[d,v]"));
        spec.tensors.insert("WE".into(), TensorSpec { role: Some(Role::Weight), ..TensorSpec::default() });
        spec
    }

    /// Lowers the model for a phase and batch size.
    pub fn workload(&self, phase: Phase, batch: u64, passes: u8) -> SpecResult<ModelWorkload> {
        self.workload_with(phase, batch, passes, None)
    }

    /// [`Model::workload`] with Double Sparsity's attention when `sparse` is given.
    pub fn workload_with(
        &self,
        phase: Phase,
        batch: u64,
        passes: u8,
        sparse: Option<&Sparsity>,
    ) -> SpecResult<ModelWorkload> {
        const BLOCK: u64 = 256;
        let w = ModelWorkload {
            phase,
            batch,
            layer: self.layer_spec_with(phase, batch, passes, BLOCK, sparse)?.build()?,
            lm_head: self.lm_head_spec(batch).build()?,
        };
        // Whole-model totals multiply a layer's counts by the layers, and the KV cache its
        // bytes per token by the tokens: both must fit 64 bits too (the per-layer bound of 2^58
        // leaves the model's own counts the room they need; totals only need to fit).
        let points = u128::from(w.layer.total_counts().points) * u128::from(self.layers)
            + u128::from(w.lm_head.total_counts().points);
        let kv = u128::from(self.kv_bytes_per_token()) * u128::from(batch) * u128::from(phase.keys());
        if points > MAX_TOTAL || kv > MAX_TOTAL {
            return Err(SpecError::new(
                "model",
                format!(
                    "{} layers at batch {batch} and {} tokens: {points} iteration points and {kv} KV-cache bytes, more than 2^63 (the totals must fit 64 bits)",
                    self.layers,
                    phase.keys()
                ),
            ));
        }
        Ok(w)
    }
}
