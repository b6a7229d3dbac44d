//! GPU library kernels as grids of thread blocks (CTAs) on a [`Device`].
//!
//! A kernel here is what a library launches for one operator: cuBLAS's tiled GEMM (with split-K
//! and its reduction kernel), FlashAttention-2's forward kernel (and its split-KV variant with the
//! combine kernel), PyTorch's elementwise, softmax and row-reduction kernels, and the copy engine.
//! Each is described by its *mapping*: the tile every CTA computes, the CTA's launch shape
//! (threads, registers, shared memory, cluster) and which tensor-core path it uses. [`launch`]
//! turns that into time through mechanisms, not per-shape constants: occupancy from the SM's
//! limits, CTAs placed on SM slots in launch order (waves, tails, causal imbalance), a per-slot
//! share of tensor throughput and memory bandwidth, padded tiles, serial latency chains, and a
//! launch latency per kernel.
//!
//! The device-level rates come from the architecture's `[arch.gpu]` and may be replaced by a
//! [`Calibration`] measured on the real GPU (peak copy bandwidth, peak GEMM and `mma.sync`
//! throughput, the smallest kernel's time, memory latency) — never by per-kernel factors.

pub mod attention;
pub mod collective;
pub mod gemm;
pub mod inference;
pub mod launch;
pub mod lowrank;
pub mod sparse;
pub mod streaming;

use strata_arch::Gpu;

pub use attention::Attention;
pub use gemm::Gemm;
pub use launch::{Launch, Path};
pub use sparse::SparseAttention;

/// The rates a kernel model reads, in SI units.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub gpu: Gpu,
    /// Bytes/s of device memory.
    pub memory_bandwidth: f64,
    /// Flop/s of the warp-group MMA path (cuBLAS on Hopper); `mma_sync` where there is none.
    pub wgmma: f64,
    /// Flop/s of the warp-level `mma.sync` path (FlashAttention-2).
    pub mma_sync: f64,
    pub launch_latency: f64,
    /// What a launch that follows another in the same stream adds (see `Gpu::kernel_gap`).
    pub kernel_gap: f64,
    pub memory_latency: f64,
}

/// Device-level quantities measured on the real GPU; each replaces the architecture's figure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Calibration {
    pub memory_bandwidth: Option<f64>,
    pub wgmma: Option<f64>,
    pub mma_sync: Option<f64>,
    pub launch_latency: Option<f64>,
    pub kernel_gap: Option<f64>,
    pub memory_latency: Option<f64>,
}

impl Device {
    pub fn new(gpu: &Gpu) -> Device {
        Device {
            memory_bandwidth: gpu.memory_bandwidth.0,
            wgmma: gpu.wgmma_flops.unwrap_or(gpu.mma_sync_flops),
            mma_sync: gpu.mma_sync_flops,
            launch_latency: gpu.launch_latency.0,
            kernel_gap: gpu.kernel_gap.0,
            memory_latency: gpu.memory_latency.0,
            gpu: gpu.clone(),
        }
    }

    pub fn calibrated(mut self, c: &Calibration) -> Device {
        self.memory_bandwidth = c.memory_bandwidth.unwrap_or(self.memory_bandwidth);
        self.wgmma = c.wgmma.unwrap_or(self.wgmma);
        self.mma_sync = c.mma_sync.unwrap_or(self.mma_sync);
        self.launch_latency = c.launch_latency.unwrap_or(self.launch_latency);
        self.kernel_gap = c.kernel_gap.unwrap_or(self.kernel_gap);
        self.memory_latency = c.memory_latency.unwrap_or(self.memory_latency);
        self
    }

    fn clock(&self) -> f64 {
        self.gpu.clock.0
    }
}

/// One operator as a library runs it on a GPU; bf16 data throughout.
#[derive(Debug, Clone, PartialEq)]
pub enum Kernel {
    /// `y[m,n] = x[m,k] · w[n,k]ᵀ` (a linear layer; cuBLAS).
    Gemm(Gemm),
    /// Scaled-dot-product attention, FlashAttention-2 forward (prefill, or decode with `seq_q = 1`).
    Attention(Attention),
    /// Double Sparsity's decode attention: label scores, top-k, attention on gathered rows.
    SparseAttention(SparseAttention),
    /// Device-to-device copy of `bytes` by the copy engine.
    Copy { bytes: f64 },
    /// `z = x + y` over `elements` (PyTorch's vectorized elementwise kernel).
    Add { elements: f64 },
    /// Row softmax of a `rows × cols` matrix (PyTorch's block-per-row softmax).
    Softmax { rows: u64, cols: u64 },
    /// Row sums of a `rows × cols` matrix (PyTorch's reduce kernel).
    RowSum { rows: u64, cols: u64 },
}

/// What a kernel costs: its launches, end to end time, device-memory bytes and useful flops.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub launches: Vec<Launch>,
    pub seconds: f64,
    pub hbm_bytes: f64,
    pub flops: f64,
}

impl Prediction {
    /// One operator's launches, back to back in one stream: the first pays the launch latency,
    /// each later one only the gap between kernels.
    fn of(dev: &Device, mut launches: Vec<Launch>, flops: f64) -> Prediction {
        for l in launches.iter_mut().skip(1) {
            l.seconds += dev.kernel_gap - l.overhead;
            l.overhead = dev.kernel_gap;
        }
        Prediction {
            seconds: launches.iter().map(|l| l.seconds).sum(),
            hbm_bytes: launches.iter().map(|l| l.hbm_bytes).sum(),
            launches,
            flops,
        }
    }
}

/// Predicts one kernel on a device.
pub fn predict(dev: &Device, kernel: &Kernel) -> Prediction {
    match kernel {
        Kernel::Gemm(g) => g.predict(dev),
        Kernel::Attention(a) => a.predict(dev),
        Kernel::SparseAttention(a) => sparse::predict(a, dev),
        Kernel::Copy { bytes } => streaming::copy(dev, *bytes),
        Kernel::Add { elements } => streaming::add(dev, *elements),
        Kernel::Softmax { rows, cols } => streaming::softmax(dev, *rows, *cols),
        Kernel::RowSum { rows, cols } => streaming::row_sum(dev, *rows, *cols),
    }
}

#[cfg(test)]
pub(crate) fn h100() -> Device {
    Device::new(&strata_arch::presets::load("h100").unwrap().unwrap().gpu.unwrap())
}
