//! One kernel launch: a grid of CTAs placed on SM slots in launch order.
//!
//! Occupancy (CTAs resident per SM) follows from the CTA's threads, registers and shared memory
//! against the SM's limits, as the CUDA occupancy calculator computes it. Each resident CTA gets
//! an equal share of its SM's tensor and ALU pipes and of the chip's memory bandwidth (shared by
//! the CTAs running at once); a CTA's time is its latency chain plus its memory and math times,
//! overlapped or in series as the kernel is written. CTAs are dispatched to the earliest free slot
//! in launch order, so waves, tail effects and uneven CTAs (causal attention) come out of the
//! schedule. The chip-wide bandwidth bound and the launch latency close the estimate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Device;

/// Which tensor-core instruction path a kernel's MMAs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Hopper warp-group MMA (`wgmma`), what cuBLAS's sm90 kernels issue.
    WarpGroup,
    /// Ampere-style warp MMA (`mma.sync`), what FlashAttention-2 issues.
    Warp,
}

/// The launch shape of a CTA: what occupancy is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub threads: u32,
    pub registers: u32,
    pub shared_bytes: u64,
    pub cluster: u32,
}

/// The work of one CTA.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cta {
    /// Device-memory bytes this CTA causes (its share of the kernel's unique traffic).
    pub hbm_bytes: f64,
    /// Bytes it moves between L2 and the SM.
    pub l2_bytes: f64,
    pub tensor_flops: f64,
    /// Issue cycles on its SM's FP32 and special-function pipes, at a whole SM's rate.
    pub alu_cycles: f64,
    /// Seconds of dependent latency (loads before the first use, barriers, reductions).
    pub latency: f64,
    /// Device-memory bytes (part of `hbm_bytes`) that must arrive before the first math can
    /// start: a pipeline's first stage, which nothing overlaps.
    pub fill_bytes: f64,
}

/// Whether memory time hides under math time within a CTA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Multi-stage pipelines (GEMM, FlashAttention): the larger of memory and math.
    Pipelined,
    /// Load, compute, store one after another (row softmax, elementwise).
    Serial,
    /// FlashAttention-2's loop: one tile load in flight at a time, half the bytes (the V tile)
    /// under `S = QKᵀ` (half the MMAs), the other half (the next K tile) under the softmax and
    /// `O += PV`. Each half waits for the slower of its load and its math.
    KvAlternating,
}

/// The CTAs of a grid, in launch order.
#[derive(Debug, Clone, PartialEq)]
pub enum Ctas {
    /// `count` CTAs with the same work: waves in closed form.
    Uniform(Cta, usize),
    /// CTAs that differ (causal attention, split remainders).
    List(Vec<Cta>),
}

impl Ctas {
    fn len(&self) -> usize {
        match self {
            Ctas::Uniform(_, n) => *n,
            Ctas::List(v) => v.len(),
        }
    }

    fn hbm_bytes(&self) -> f64 {
        match self {
            Ctas::Uniform(c, n) => c.hbm_bytes * *n as f64,
            Ctas::List(v) => v.iter().map(|c| c.hbm_bytes).sum(),
        }
    }
}

/// A kernel launch as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub name: String,
    pub shape: Shape,
    pub path: Path,
    pub overlap: Overlap,
    pub ctas: Ctas,
}

/// What one launch costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub name: String,
    pub grid: u64,
    pub ctas_per_sm: u32,
    pub seconds: f64,
    /// The part of `seconds` that is launch overhead: the launch latency, or the gap between
    /// kernels where this launch follows another in its stream.
    pub overhead: f64,
    pub hbm_bytes: f64,
}

/// Registers are allocated per warp in units of 256.
const REGISTER_UNIT: u32 = 256;

/// CTAs of `shape` that fit on one SM at once (at least one: a library never launches a kernel
/// that cannot run).
pub fn occupancy(dev: &Device, shape: &Shape) -> u32 {
    let g = &dev.gpu;
    let warps = shape.threads.div_ceil(32);
    let regs_per_warp = (shape.registers * 32).div_ceil(REGISTER_UNIT) * REGISTER_UNIT;
    let by_regs = g.registers_per_sm / (regs_per_warp * warps).max(1);
    let by_threads = g.max_threads_per_sm / (warps * 32).max(1);
    let by_smem =
        g.shared_memory_per_sm.checked_div(shape.shared_bytes).map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32);
    g.max_ctas_per_sm.min(by_regs).min(by_threads).min(by_smem).max(1)
}

/// Earliest-free-slot list scheduling of CTA durations, in launch order; the makespan.
pub fn makespan(durations: impl IntoIterator<Item = f64>, slots: usize) -> f64 {
    // Times as integer picoseconds so the heap order is total and deterministic.
    let mut free: BinaryHeap<Reverse<u64>> = (0..slots.max(1)).map(|_| Reverse(0)).collect();
    let mut end = 0u64;
    for d in durations {
        let Reverse(start) = free.pop().expect("at least one slot");
        let done = start + (d * 1e12).round() as u64;
        end = end.max(done);
        free.push(Reverse(done));
    }
    end as f64 * 1e-12
}

/// Runs one launch on the device.
pub fn run(dev: &Device, grid: &Grid) -> Launch {
    let g = &dev.gpu;
    let per_sm = occupancy(dev, &grid.shape);
    let sms = g.usable_sms(grid.shape.cluster);
    let slots = (sms * per_sm) as usize;
    let active = slots.min(grid.ctas.len()).max(1) as f64;
    let hbm_share = dev.memory_bandwidth / active;
    let l2_share = g.l2_bandwidth.0 / active;
    let tensor = match grid.path {
        Path::WarpGroup => dev.wgmma,
        Path::Warp => dev.mma_sync,
    } / g.sms as f64
        / per_sm as f64;
    let alu_rate = dev.clock() / per_sm as f64;
    let duration = |c: &Cta| {
        let fill = c.fill_bytes / hbm_share;
        let memory = ((c.hbm_bytes - c.fill_bytes) / hbm_share).max((c.l2_bytes - c.fill_bytes) / l2_share);
        let math = c.tensor_flops / tensor + c.alu_cycles / alu_rate;
        c.latency
            + fill
            + match grid.overlap {
                Overlap::Pipelined => memory.max(math),
                Overlap::Serial => memory + math,
                Overlap::KvAlternating => {
                    let (half, mma) = (memory / 2.0, c.tensor_flops / tensor / 2.0);
                    half.max(mma) + half.max(mma + c.alu_cycles / alu_rate)
                }
            }
    };
    let span = match &grid.ctas {
        Ctas::Uniform(c, n) => n.div_ceil(slots) as f64 * duration(c),
        Ctas::List(v) => makespan(v.iter().map(duration), slots),
    };
    let hbm_bytes = grid.ctas.hbm_bytes();
    let busy = span.max(hbm_bytes / dev.memory_bandwidth);
    Launch {
        name: grid.name.clone(),
        grid: grid.ctas.len() as u64,
        ctas_per_sm: per_sm,
        seconds: dev.launch_latency + busy,
        overhead: dev.launch_latency,
        hbm_bytes,
    }
}

/// Device-memory bytes of a pass that reads `reads` and writes `writes` bytes through the L2,
/// a write-back cache: the lines still in L2 when the kernel ends (the last `l2_capacity`
/// bytes of its traffic, the writes' share of them) reach device memory later, when whatever
/// runs next evicts them. So an isolated kernel entered with a clean L2 writes back only what
/// its own traffic pushed out; in a chain of kernels the next one pays for the rest, often
/// while it reads those very lines from L2.
pub fn written_through(dev: &Device, reads: f64, writes: f64) -> f64 {
    let traffic = reads + writes;
    if traffic <= 0.0 {
        return 0.0;
    }
    let held = (dev.gpu.l2_capacity as f64).min(traffic) * writes / traffic;
    traffic - held
}

/// A launch that only streams `bytes` through device memory with CTAs that do nothing else
/// worth modelling (copies, split-K reductions, split-KV combines), after a chain of
/// `dependent_loads` loads each waiting for the one before.
pub fn streaming(dev: &Device, name: &str, bytes: f64, dependent_loads: u64) -> Launch {
    Launch {
        name: name.to_string(),
        grid: 0,
        ctas_per_sm: 0,
        seconds: dev.launch_latency + dependent_loads as f64 * dev.memory_latency + bytes / dev.memory_bandwidth,
        overhead: dev.launch_latency,
        hbm_bytes: bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::super::h100;
    use super::*;

    #[test]
    fn occupancy_matches_nsight_compute_on_the_h100() {
        // Launch shapes and the occupancy Nsight Compute reported for them (validation/gpu/h100).
        let dev = h100();
        let cases = [
            (128, 255, 65_536, 2),  // FlashAttention-2 forward, d = 128: register-limited
            (128, 246, 81_920, 2),  // its split-KV kernel
            (1024, 30, 128, 2),     // softmax, 4096 columns: thread-limited
            (1024, 37, 128, 1),     // softmax, 8192 columns: register-limited
            (384, 168, 164_308, 1), // cuBLAS nvjet GEMV
            (512, 32, 16, 4),       // reduce kernel
            (128, 34, 0, 12),       // vectorized elementwise kernel
        ];
        for (threads, registers, shared_bytes, want) in cases {
            let s = Shape { threads, registers, shared_bytes, cluster: 1 };
            assert_eq!(occupancy(&dev, &s), want, "{s:?}");
        }
    }

    #[test]
    fn a_clean_l2_holds_the_last_writes_of_a_kernel() {
        let dev = h100();
        let l2 = dev.gpu.l2_capacity as f64;
        // Everything fits: only the reads reach device memory during the kernel.
        assert_eq!(written_through(&dev, 0.2 * l2, 0.2 * l2), 0.2 * l2);
        // Four L2s of traffic, half of it writes: the last L2 of traffic stays, half of it written.
        let (r, w) = (2.0 * l2, 2.0 * l2);
        assert!((written_through(&dev, r, w) - (r + w - 0.5 * l2)).abs() < 1.0);
        // Read-only passes are untouched.
        assert_eq!(written_through(&dev, 3.0 * l2, 0.0), 3.0 * l2);
    }

    #[test]
    fn a_pipeline_fill_is_not_overlapped() {
        let dev = h100();
        let shape = Shape { threads: 128, registers: 64, shared_bytes: 0, cluster: 1 };
        let cta = Cta { hbm_bytes: 1e6, l2_bytes: 1e6, tensor_flops: 1e9, ..Cta::default() };
        let grid = |c: Cta| Grid {
            name: "g".into(),
            shape,
            path: Path::Warp,
            overlap: Overlap::Pipelined,
            ctas: Ctas::Uniform(c, 132),
        };
        let plain = run(&dev, &grid(cta)).seconds;
        // Math-bound: moving 64 KB of the CTA's bytes before its math adds their whole load time.
        let filled = run(&dev, &grid(Cta { fill_bytes: 65536.0, ..cta })).seconds;
        let share = dev.memory_bandwidth / 132.0;
        assert!((filled - plain - 65536.0 / share).abs() < 1e-12, "{plain} {filled}");
    }

    #[test]
    fn alternating_kv_loads_overlap_each_half_of_the_math_separately() {
        let dev = h100();
        let shape = Shape { threads: 128, registers: 64, shared_bytes: 0, cluster: 1 };
        let grid = |c: Cta, overlap: Overlap| Grid {
            name: "g".into(),
            shape,
            path: Path::Warp,
            overlap,
            ctas: Ctas::Uniform(c, 132),
        };
        let per_sm = occupancy(&dev, &shape) as f64;
        let share = dev.memory_bandwidth / 132.0;
        let tensor = dev.mma_sync / dev.gpu.sms as f64 / per_sm;
        let alu_rate = dev.clock() / per_sm;
        // Memory 2 µs, MMAs 1.2 µs, ALU 0.6 µs: the pipelined model hides all math (2 µs); the
        // loop hides the V load under S = QKᵀ (1 µs vs 0.6) but the K load only partly under
        // softmax and PV (1 µs vs 1.2): 1 + 1.2 = 2.2 µs.
        let cta = Cta {
            hbm_bytes: 2e-6 * share,
            l2_bytes: 0.0,
            tensor_flops: 1.2e-6 * tensor,
            alu_cycles: 0.6e-6 * alu_rate,
            ..Cta::default()
        };
        let piped = run(&dev, &grid(cta, Overlap::Pipelined)).seconds - dev.launch_latency;
        let alternating = run(&dev, &grid(cta, Overlap::KvAlternating)).seconds - dev.launch_latency;
        assert!((piped - 2e-6).abs() < 1e-11, "{piped}");
        assert!((alternating - 2.2e-6).abs() < 1e-11, "{alternating}");
        // Memory-bound with little math, or math-bound: both agree with the pipelined model.
        let light = Cta { tensor_flops: 0.2e-6 * tensor, alu_cycles: 0.1e-6 * alu_rate, ..cta };
        let heavy = Cta { hbm_bytes: 0.2e-6 * share, ..cta };
        for c in [light, heavy] {
            let (p, a) =
                (run(&dev, &grid(c, Overlap::Pipelined)).seconds, run(&dev, &grid(c, Overlap::KvAlternating)).seconds);
            assert!((p - a).abs() < 1e-11, "{p} {a}");
        }
    }

    #[test]
    fn makespan_is_waves_for_equal_ctas_and_the_longest_chain_otherwise() {
        assert_eq!(makespan([1.0; 264], 132), 2.0);
        assert_eq!(makespan([1.0; 265], 132), 3.0);
        // One long CTA first: it alone sets the time when the rest fit beside it.
        assert_eq!(makespan([10.0, 1.0, 1.0, 1.0], 2), 10.0);
        assert_eq!(makespan(Vec::<f64>::new(), 4), 0.0);
    }
}
