//! The execution resources of a GPU: what decides how many thread blocks (CTAs) run at once and
//! how fast each one goes. The level tree of [`crate::Arch`] says what memories a GPU has (the SM
//! count, shared memory per SM, L2 and DRAM bandwidth are read from it, never repeated here);
//! this says what its kernels see — SMs, occupancy limits, per-SM arithmetic pipes, the two tensor-core
//! instruction paths, launch and memory latency — so that `sim::gpu` can predict library kernels
//! (cuBLAS GEMMs, FlashAttention, PyTorch elementwise kernels) as grids of CTAs.

use serde::Deserialize;

use crate::error::{SpecError, SpecResult};
use crate::units::{BytesPerSecond, Hertz, Seconds, parse_frequency, parse_time};

/// `[arch.gpu]` as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// The SM clock under sustained load; per-SM pipe rates are per clock.
    pub clock: String,
    pub max_threads_per_sm: i64,
    pub max_ctas_per_sm: i64,
    pub registers_per_sm: i64,
    pub fp32_lanes_per_sm: i64,
    /// Special-function lanes (exp2, rcp) per SM.
    pub sfu_lanes_per_sm: i64,
    /// Dense bf16 rate of the warp-group MMA path (Hopper `wgmma`, what cuBLAS uses), TFLOP/s.
    /// Absent on GPUs without that path: kernels fall back to `mma_sync_tflops`.
    #[serde(default)]
    pub wgmma_tflops: Option<f64>,
    /// Dense bf16 rate of the warp-level `mma.sync` path (FlashAttention-2), TFLOP/s.
    pub mma_sync_tflops: f64,
    /// GPU-side time of the smallest kernel: launch, block dispatch, completion.
    pub launch_latency: String,
    /// What a kernel that follows another in the same stream adds beyond its own work (the
    /// drain and dispatch between them: a split-K reduction, a split-KV combine). Absent: a
    /// whole `launch_latency`, the conservative reading.
    #[serde(default)]
    pub kernel_gap: Option<String>,
    /// Latency of one dependent load that misses L2.
    pub memory_latency: String,
    /// Cycles of one block-wide reduction (a warp-shuffle tree, a barrier, a second tree, a
    /// barrier): the serial step of softmax-like kernels.
    pub block_reduce_cycles: f64,
    /// `[cluster size, SMs usable]` pairs: a cluster must sit inside one GPC, so large clusters
    /// leave SMs of odd-sized GPCs idle.
    #[serde(default)]
    pub cluster_sms: Vec<[i64; 2]>,
}

/// A validated `[arch.gpu]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub sms: u32,
    pub clock: Hertz,
    pub max_threads_per_sm: u32,
    pub max_ctas_per_sm: u32,
    pub registers_per_sm: u32,
    pub shared_memory_per_sm: u64,
    pub fp32_lanes_per_sm: u32,
    pub sfu_lanes_per_sm: u32,
    pub memory_bandwidth: BytesPerSecond,
    pub l2_bandwidth: BytesPerSecond,
    pub wgmma_flops: Option<f64>,
    pub mma_sync_flops: f64,
    pub launch_latency: Seconds,
    pub kernel_gap: Seconds,
    pub memory_latency: Seconds,
    pub block_reduce_cycles: f64,
    pub cluster_sms: Vec<(u32, u32)>,
    /// Bytes of L2: a write-back cache that holds a kernel's last writes when it ends.
    pub l2_capacity: u64,
}

fn count(path: &str, v: i64) -> SpecResult<u32> {
    u32::try_from(v)
        .ok()
        .filter(|&x| x > 0)
        .ok_or_else(|| SpecError::new(path, format!("must be a positive count (got {v})")))
}

fn rate(path: &str, v: f64) -> SpecResult<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v * 1e12)
    } else {
        Err(SpecError::new(path, format!("must be a positive TFLOP/s rate (got {v})")))
    }
}

fn parsed<T>(path: &str, s: &str, parse: fn(&str) -> Result<T, String>) -> SpecResult<T> {
    parse(s).map_err(|e| SpecError::new(path, e))
}

/// What a GPU's kernels see of its level tree: found by what the levels are (see
/// [`crate::Arch::from_spec`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuMemories {
    /// Instances of the level the SMs' units attach to.
    pub sms: u64,
    pub shared_memory_per_sm: u64,
    pub l2_bandwidth: BytesPerSecond,
    pub l2_capacity: u64,
    pub memory_bandwidth: BytesPerSecond,
}

impl Gpu {
    pub fn from_spec(s: &GpuSpec, m: GpuMemories) -> SpecResult<Gpu> {
        let p = |k: &str| format!("arch.gpu.{k}");
        let positive_time = |k: &str, v: &str| -> SpecResult<Seconds> {
            let t = parsed(&p(k), v, parse_time)?;
            if t.0 > 0.0 { Ok(t) } else { Err(SpecError::new(p(k), "must be positive")) }
        };
        let clock = parsed(&p("clock"), &s.clock, parse_frequency)?;
        if clock.0 <= 0.0 {
            return Err(SpecError::new(p("clock"), "must be positive"));
        }
        let sms = u32::try_from(m.sms).map_err(|_| SpecError::new("arch.gpu", "more SMs than 2^32"))?;
        let mut cluster_sms = Vec::new();
        for (i, &[size, usable]) in s.cluster_sms.iter().enumerate() {
            let key = p(&format!("cluster_sms[{i}]"));
            let (size, usable) = (count(&key, size)?, count(&key, usable)?);
            if usable > sms || usable % size != 0 {
                return Err(SpecError::new(
                    key,
                    format!("{usable} SMs for clusters of {size} must be a multiple of {size} and at most sms = {sms}"),
                ));
            }
            cluster_sms.push((size, usable));
        }
        let launch_latency = positive_time("launch_latency", &s.launch_latency)?;
        Ok(Gpu {
            sms,
            clock,
            max_threads_per_sm: count(&p("max_threads_per_sm"), s.max_threads_per_sm)?,
            max_ctas_per_sm: count(&p("max_ctas_per_sm"), s.max_ctas_per_sm)?,
            registers_per_sm: count(&p("registers_per_sm"), s.registers_per_sm)?,
            shared_memory_per_sm: m.shared_memory_per_sm,
            fp32_lanes_per_sm: count(&p("fp32_lanes_per_sm"), s.fp32_lanes_per_sm)?,
            sfu_lanes_per_sm: count(&p("sfu_lanes_per_sm"), s.sfu_lanes_per_sm)?,
            memory_bandwidth: m.memory_bandwidth,
            l2_bandwidth: m.l2_bandwidth,
            wgmma_flops: s.wgmma_tflops.map(|v| rate(&p("wgmma_tflops"), v)).transpose()?,
            mma_sync_flops: rate(&p("mma_sync_tflops"), s.mma_sync_tflops)?,
            launch_latency,
            kernel_gap: match &s.kernel_gap {
                Some(v) => positive_time("kernel_gap", v)?,
                None => launch_latency,
            },
            memory_latency: positive_time("memory_latency", &s.memory_latency)?,
            block_reduce_cycles: if s.block_reduce_cycles.is_finite() && s.block_reduce_cycles >= 0.0 {
                s.block_reduce_cycles
            } else {
                return Err(SpecError::new(p("block_reduce_cycles"), "must be a non-negative number of cycles"));
            },
            cluster_sms,
            l2_capacity: m.l2_capacity,
        })
    }

    /// SMs that a kernel launched in clusters of `size` CTAs can keep busy at once.
    pub fn usable_sms(&self, cluster: u32) -> u32 {
        if cluster <= 1 {
            return self.sms;
        }
        self.cluster_sms.iter().find(|c| c.0 == cluster).map_or(self.sms / cluster * cluster, |c| c.1)
    }
}

#[cfg(test)]
mod tests {
    use crate::Arch;
    use crate::presets;

    #[test]
    fn h100_and_a100_presets_carry_their_execution_resources() {
        let h = presets::load("h100").unwrap().unwrap().gpu.expect("h100 has [arch.gpu]");
        // Read from the levels: SMEM's mesh and capacity, L2's and HBM's bandwidth.
        assert_eq!(h.shared_memory_per_sm, 228 << 10);
        assert!((h.memory_bandwidth.0 / 3.35e12 - 1.0).abs() < 1e-12, "{:?}", h.memory_bandwidth);
        assert!((h.l2_bandwidth.0 / 5.5e12 - 1.0).abs() < 1e-12);
        assert_eq!((h.sms, h.max_threads_per_sm, h.registers_per_sm), (132, 2048, 65536));
        assert_eq!(h.usable_sms(1), 132);
        assert_eq!(h.usable_sms(4), 120);
        assert!(h.wgmma_flops.unwrap() > h.mma_sync_flops);
        let a = presets::load("a100").unwrap().unwrap().gpu.expect("a100 has [arch.gpu]");
        assert_eq!(a.sms, 108);
        assert!(a.wgmma_flops.is_none(), "Ampere has no warp-group MMA");
    }

    #[test]
    fn bad_gpu_sections_name_the_key() {
        let base = presets::text("h100").unwrap();
        for (from, to, key) in [
            ("clock = \"1980 MHz\"", "clock = \"0 MHz\"", "arch.gpu.clock"),
            ("max_ctas_per_sm = 32", "max_ctas_per_sm = 0", "arch.gpu.max_ctas_per_sm"),
            ("cluster_sms = [[2, 132], [4, 120]]", "cluster_sms = [[4, 130]]", "arch.gpu.cluster_sms[0]"),
            // What the levels say is not repeated: the old keys are unknown.
            ("clock = \"1980 MHz\"", "clock = \"1980 MHz\"\nsms = 132", "arch.gpu.sms"),
            // The levels give the GPU its memories: the SMs' level must say its capacity.
            ("capacity = \"228 KiB\"\n", "", "arch.levels.SMEM.capacity"),
        ] {
            assert!(base.contains(from), "{from}");
            let e = Arch::from_toml(&base.replace(from, to)).unwrap_err();
            assert_eq!(e.path, key, "{e}");
        }
    }
}
