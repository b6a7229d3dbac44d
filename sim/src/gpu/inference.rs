//! A whole model's prefill and decode on one GPU, as the library kernels it launches: per layer
//! the Q, K, V, output and FFN GEMMs, FlashAttention-2, and the memory-bound elementwise work
//! (two norms, two residual adds, the activation) as streams of the same bytes; then the LM head
//! on the last position. Decode steps over a growing context, one token per sequence per step.

use std::collections::HashMap;

use strata_workloads::model::Model;

use strata_workloads::sparse::Sparsity;

use super::{Attention, Device, Gemm, Kernel, predict, streaming};

/// Seconds of one forward pass, by kind of kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pass {
    pub gemm: f64,
    pub attention: f64,
    pub elementwise: f64,
}

impl Pass {
    pub fn total(&self) -> f64 {
        self.gemm + self.attention + self.elementwise
    }

    fn add(&mut self, o: Pass) {
        self.gemm += o.gemm;
        self.attention += o.attention;
        self.elementwise += o.elementwise;
    }
}

/// Predicts GEMMs once per shape: decode repeats the same shapes at every step.
#[derive(Default)]
pub struct Runner {
    gemms: HashMap<(u64, u64, u64), f64>,
}

impl Runner {
    fn gemm(&mut self, dev: &Device, m: u64, n: u64, k: u64) -> f64 {
        *self.gemms.entry((m, n, k)).or_insert_with(|| Gemm { m, n, k }.predict(dev).seconds)
    }

    /// One forward pass of `tokens` new positions per sequence over `batch` sequences whose
    /// context (cache included) is `context` long.
    pub fn pass(&mut self, dev: &Device, model: &Model, batch: u64, tokens: u64, context: u64) -> Pass {
        self.pass_with(dev, model, batch, tokens, context, None)
    }

    /// [`Runner::pass`] with decode attention as Double Sparsity's kernels when `sparse` is
    /// given (prefill stays dense).
    pub fn pass_with(
        &mut self,
        dev: &Device,
        model: &Model,
        batch: u64,
        tokens: u64,
        context: u64,
        sparse: Option<&Sparsity>,
    ) -> Pass {
        let rows = batch * tokens;
        let (d, hd) = (model.d_model, model.head_dim);
        let (q, kv) = (model.heads * hd, model.kv_heads * hd);
        let ffn_in = if model.gated_ffn { 2 } else { 1 };
        let mut layer = Pass::default();
        for (n, k, times) in [(q, d, 1), (kv, d, 2), (d, q, 1), (model.ffn_dim, d, ffn_in), (d, model.ffn_dim, 1)] {
            layer.gemm += times as f64 * self.gemm(dev, rows, n, k);
        }
        let attention = Attention {
            batch,
            heads: model.heads,
            kv_heads: model.kv_heads,
            seq_q: tokens,
            seq_kv: context,
            head_dim: hd,
            causal: model.causal && tokens > 1,
        };
        let kernel = match sparse {
            Some(s) if tokens == 1 => Kernel::SparseAttention(s.decode(model, batch, context)),
            _ => Kernel::Attention(attention),
        };
        layer.attention = predict(dev, &kernel).seconds;
        // Norms read and write d per row, residual adds read two and write one, the activation
        // reads the FFN's inputs and writes its width: in units of an add's 3 element streams.
        let streams = (2.0 * 2.0 * d as f64 + 2.0 * 3.0 * d as f64 + (ffn_in + 1) as f64 * model.ffn_dim as f64) / 3.0;
        layer.elementwise = streaming::add(dev, rows as f64 * streams).seconds;
        let mut total = Pass::default();
        for _ in 0..model.layers {
            total.add(layer);
        }
        total.gemm += self.gemm(dev, batch, model.vocab, d);
        total
    }

    /// `generate` decode steps after a prompt of `prompt` tokens.
    pub fn decode(&mut self, dev: &Device, model: &Model, batch: u64, prompt: u64, generate: u64) -> Pass {
        let mut total = Pass::default();
        for i in 0..generate {
            total.add(self.pass(dev, model, batch, 1, prompt + i + 1));
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::super::h100;
    use super::*;

    fn model(name: &str) -> Model {
        let p = strata_workloads::presets::find(name).unwrap();
        strata_workloads::model::ModelSpec::from_toml(p.text).unwrap().build().unwrap()
    }

    #[test]
    fn decode_is_bound_by_reading_the_weights_and_the_cache() {
        let dev = h100();
        let m = model("llama2-7b");
        let step = Runner::default().pass(&dev, &m, 1, 1, 4096).total();
        let bytes = (m.weight_bytes() + 4096 * m.kv_bytes_per_token()) as f64;
        let floor = bytes / dev.memory_bandwidth;
        assert!(step > floor && step < 1.5 * floor, "{step} vs {floor}");
    }

    #[test]
    fn prefill_is_bound_by_the_tensor_cores() {
        let dev = h100();
        let m = model("llama2-7b");
        let t = Runner::default().pass(&dev, &m, 1, 8192, 8192).total();
        let flops = 2.0 * m.params() as f64 * 8192.0;
        let floor = flops / dev.wgmma;
        assert!(t > floor && t < 1.6 * floor, "{t} vs {floor}");
    }
}
