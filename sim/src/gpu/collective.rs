//! Collectives between GPUs: NCCL's ring all-reduce, as tensor parallelism issues one after a
//! layer's attention output projection and one after its FFN.

/// Seconds of a ring all-reduce of `bytes` over `gpus` GPUs whose links move `bandwidth` bytes/s
/// each way and take `latency` per hop: a reduce-scatter and an all-gather, each `gpus − 1`
/// steps of `bytes / gpus` per GPU, so every GPU sends and receives 2(n − 1)/n of the buffer
/// and the 2(n − 1) steps each pay the latency. Nothing for one GPU.
pub fn ring_all_reduce(bytes: f64, gpus: u64, bandwidth: f64, latency: f64) -> f64 {
    if gpus <= 1 {
        return 0.0;
    }
    let n = gpus as f64;
    2.0 * (n - 1.0) / n * bytes / bandwidth + 2.0 * (n - 1.0) * latency
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring moves 2(n−1)/n of the buffer per GPU: 1 GB over 8 GPUs at 450 GB/s each way is
    /// 1.75 GB / 450 GB/s plus 14 hops of latency; bandwidth-bound buffers approach 2 × bytes /
    /// bandwidth as n grows, and a lone GPU reduces nothing.
    #[test]
    fn the_ring_moves_two_n_minus_one_over_n_of_the_buffer() {
        let t = ring_all_reduce(1e9, 8, 450e9, 1e-6);
        assert!((t - (1.75e9 / 450e9 + 14e-6)).abs() < 1e-12, "{t}");
        assert_eq!(ring_all_reduce(1e9, 1, 450e9, 1e-6), 0.0);
        let big = |n| ring_all_reduce(1e12, n, 450e9, 0.0);
        assert!(big(2) < big(4) && big(4) < big(64) && big(64) < 2.0 * 1e12 / 450e9);
    }
}
