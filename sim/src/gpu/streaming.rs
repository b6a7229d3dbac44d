//! Kernels that stream through memory: the copy engine, PyTorch's vectorized elementwise kernel,
//! its block-per-row softmax and its row reduction. Their launch shapes are the ones Nsight
//! Compute reported for PyTorch 2.11 on the H100 (validation/gpu/h100/launch_stats.csv).

use super::launch::{self, Cta, Ctas, Grid, Overlap, Path, Shape};
use super::{Device, Prediction};

/// The copy engine: no SMs, one stream at the memory's bandwidth. `bytes` counts both ways (half
/// read, half written); the writes still in L2 at the end are written back later.
pub fn copy(dev: &Device, bytes: f64) -> Prediction {
    let mut l = launch::streaming(dev, "memcpy", launch::written_through(dev, bytes / 2.0, bytes / 2.0), 1);
    l.hbm_bytes = bytes;
    Prediction::of(dev, vec![l], 0.0)
}

/// `z = x + y` in bf16: 128-thread CTAs of 8-wide vectors, 1024 elements each. Twelve CTAs share
/// an SM, so one CTA's load latency hides under the others' transfers: no latency term.
pub fn add(dev: &Device, elements: f64) -> Prediction {
    elementwise(dev, "vectorized_elementwise add", elements, 6.0, 0.0)
}

/// PyTorch's vectorized elementwise kernel (the launch of [`add`]) moving `bytes_per_element`
/// (a bf16 output and its inputs) and issuing `sfu_per_element` special-function operations (an
/// activation's exponential and reciprocal) per element.
pub fn elementwise(
    dev: &Device,
    name: &str,
    elements: f64,
    bytes_per_element: f64,
    sfu_per_element: f64,
) -> Prediction {
    const PER_CTA: f64 = 1024.0;
    let ctas = (elements / PER_CTA).ceil().max(1.0) as usize;
    let (reads, writes) = (bytes_per_element - 2.0, 2.0);
    let cta = Cta {
        hbm_bytes: PER_CTA * launch::written_through(dev, elements * reads, elements * writes) / elements,
        l2_bytes: PER_CTA * bytes_per_element,
        alu_cycles: PER_CTA * sfu_per_element / dev.gpu.sfu_lanes_per_sm as f64,
        ..Cta::default()
    };
    let grid = Grid {
        name: name.into(),
        shape: Shape { threads: 128, registers: 34, shared_bytes: 0, cluster: 1 },
        path: Path::Warp,
        overlap: Overlap::Serial,
        ctas: Ctas::Uniform(cta, ctas),
    };
    Prediction::of(dev, vec![launch::run(dev, &grid)], elements)
}

/// Row softmax as PyTorch's `host_softmax` dispatches it: rows of at most 2048 bf16 elements
/// (8192 bytes) to the warp-per-row kernel ([`warp_softmax`]), longer ones to a block per row.
pub fn softmax(dev: &Device, rows: u64, cols: u64) -> Prediction {
    if cols <= WARP_SOFTMAX_COLS { warp_softmax(dev, rows, cols) } else { block_softmax(dev, rows, cols) }
}

/// The longest bf16 row PyTorch's persistent warp softmax takes (`dim_size <= 2048 &&
/// dim_size * sizeof(scalar_t) <= 8192` in SoftMax.cu).
const WARP_SOFTMAX_COLS: u64 = 2048;

/// `softmax_warp_forward`: 128-thread blocks; a warp owns a row (two rows of up to 128 columns),
/// each lane holding its share of the row in registers; max and sum are warp shuffles, with no
/// barrier, so many small blocks per SM hide each other's load latency. Registers are the row
/// values a lane holds plus 16, at least 24: what Nsight Compute counted at 64, 1024 and 2048
/// columns (24, 48, 80; validation/gpu/h100/launch_stats_softmax.csv).
fn warp_softmax(dev: &Device, rows: u64, cols: u64) -> Prediction {
    let pow2 = cols.next_power_of_two();
    let warp = pow2.min(32);
    let batch = if pow2 <= 128 { 2 } else { 1 };
    let rows_per_cta = 128 / warp * batch;
    let registers = (batch * pow2 / warp + 16).max(24) as u32;
    let g = &dev.gpu;
    let (c, r, per) = (cols as f64, rows as f64, rows_per_cta as f64);
    let cta = Cta {
        hbm_bytes: per * launch::written_through(dev, 2.0 * c * r, 2.0 * c * r) / r,
        l2_bytes: per * 4.0 * c,
        tensor_flops: 0.0,
        // One exp per element on the SFU (kept for the scaling); max, subtract, add, scale and
        // the conversions on the FP32 lanes.
        alu_cycles: per * (c / g.sfu_lanes_per_sm as f64 + 6.0 * c / g.fp32_lanes_per_sm as f64),
        // The row's load before its first use and the store at the end.
        latency: 2.0 * dev.memory_latency,
        fill_bytes: 0.0,
    };
    let grid = Grid {
        name: "softmax_warp_forward".into(),
        shape: Shape { threads: 128, registers, shared_bytes: 0, cluster: 1 },
        path: Path::Warp,
        overlap: Overlap::Serial,
        ctas: Ctas::Uniform(cta, rows.div_ceil(rows_per_cta) as usize),
    };
    Prediction::of(dev, vec![launch::run(dev, &grid)], 5.0 * (rows * cols) as f64)
}

/// The longest bf16 row PyTorch's block softmax holds in registers (`cunn_SoftMaxForwardReg`).
const REG_SOFTMAX_COLS: u64 = 8192;

/// One CTA of up to 1024 threads per row; load the row, reduce its max across the block,
/// exponentiate and reduce the sum, write — each step waiting on the one before. Rows up to 8192
/// columns stay in registers (`cunn_SoftMaxForwardReg`, 30 registers at 4 values per thread, 37
/// at 8). Longer rows (`cunn_SoftMaxForward`, 32 registers) are streamed three times — for the
/// max, the sum and the output — each pass overlapping its loads with its math; the second and
/// third passes read from L2 only while the rows of all resident CTAs fit there.
fn block_softmax(dev: &Device, rows: u64, cols: u64) -> Prediction {
    let threads = cols.min(1024).div_ceil(32) * 32;
    let per_thread = cols.div_ceil(threads);
    let in_registers = cols <= REG_SOFTMAX_COLS;
    let registers = match (in_registers, per_thread <= 4) {
        (true, true) => 30,
        (true, false) => 37,
        (false, _) => 32,
    };
    let g = &dev.gpu;
    let c = cols as f64;
    let r = rows as f64;
    // Rows in registers are read once. Longer rows are read three times (max, sum, output); the
    // second and third reads find the row in L2 only if the rows of every CTA resident beside it,
    // in and out, fit there meanwhile (the reads' reuse distance).
    let shape = Shape { threads: threads as u32, registers, shared_bytes: 128, cluster: 1 };
    let resident = (launch::occupancy(dev, &shape) * g.sms) as f64;
    let rereads = if in_registers { 0.0 } else { 2.0 };
    let reuse_distance = resident.min(r) * 4.0 * c;
    let missed = if reuse_distance > g.l2_capacity as f64 { rereads } else { 0.0 };
    let cta = Cta {
        hbm_bytes: launch::written_through(dev, (2.0 + 2.0 * missed) * c * r, 2.0 * c * r) / r,
        l2_bytes: (4.0 + 2.0 * rereads) * c,
        tensor_flops: 0.0,
        // exp twice (for the sum, then for the output) on the SFU; max, subtract, add, scale and
        // conversions on the FP32 lanes.
        alu_cycles: 2.0 * c / g.sfu_lanes_per_sm as f64 + 8.0 * c / g.fp32_lanes_per_sm as f64,
        latency: 2.0 * dev.memory_latency + 2.0 * g.block_reduce_cycles / g.clock.0,
        fill_bytes: 0.0,
    };
    let grid = Grid {
        name: "softmax".into(),
        shape,
        path: Path::Warp,
        overlap: if in_registers { Overlap::Serial } else { Overlap::Pipelined },
        ctas: Ctas::Uniform(cta, rows as usize),
    };
    Prediction::of(dev, vec![launch::run(dev, &grid)], 5.0 * (rows * cols) as f64)
}

/// Row sums as PyTorch's `reduce_kernel<512, 1>` is configured for them (`setReduceConfig`):
/// 32 × 16 threads, a warp across the row. Each thread of a warp sums `cols / 32` values; while
/// that is under 256 each warp owns a row (16 rows a CTA), otherwise the whole CTA shares one
/// row and its warps combine through shared memory — the grids Nsight Compute reported (256
/// CTAs at 4096 × 4096, 4096 at 4096 × 8192, 1024 at 1024 × 32768). Too few such CTAs to fill
/// the GPU split a row further across CTAs (`ctas_per_output`), the last of them summing the
/// others' partials after a semaphore: one more dependent load.
pub fn row_sum(dev: &Device, rows: u64, cols: u64) -> Prediction {
    const WARPS: u64 = 16;
    let per_thread = cols.div_ceil(32);
    let block_per_row = per_thread >= 256;
    let shape = Shape { threads: 512, registers: 32, shared_bytes: if block_per_row { 2048 } else { 16 }, cluster: 1 };
    let outputs = if block_per_row { rows } else { rows.div_ceil(WARPS) };
    // PyTorch's target grid: as many CTAs as fit the GPU by threads.
    let target = u64::from(dev.gpu.sms * (dev.gpu.max_threads_per_sm / shape.threads));
    let split = if block_per_row && outputs <= target {
        target.div_ceil(outputs).min(per_thread.div_ceil(16)).max(per_thread.div_ceil(256))
    } else {
        1
    };
    let ctas = outputs * split;
    let bytes = (2 * rows * cols + 2 * rows) as f64 / ctas as f64;
    // A CTA's warps combine through shared memory and barriers; a warp's own shuffles are cheap
    // beside its loads.
    let reduce = if block_per_row { dev.gpu.block_reduce_cycles / dev.gpu.clock.0 } else { 0.0 };
    let cta = Cta {
        hbm_bytes: bytes,
        l2_bytes: bytes,
        latency: (2 + u64::from(split > 1)) as f64 * dev.memory_latency + reduce,
        ..Cta::default()
    };
    let grid = Grid {
        name: "reduce_kernel sum".into(),
        shape,
        path: Path::Warp,
        overlap: Overlap::Serial,
        ctas: Ctas::Uniform(cta, ctas as usize),
    };
    Prediction::of(dev, vec![launch::run(dev, &grid)], (rows * cols) as f64)
}

#[cfg(test)]
mod tests {
    use super::super::h100;
    use super::*;

    #[test]
    fn large_streams_run_at_memory_bandwidth() {
        let dev = h100();
        let bytes = 2.0 * (1u64 << 30) as f64;
        let t = copy(&dev, bytes).seconds;
        // The last L2 of the copy's traffic is written back after it ends: half of it writes.
        let through = bytes - 0.5 * dev.gpu.l2_capacity as f64;
        assert!((t - through / dev.memory_bandwidth - dev.launch_latency - dev.memory_latency).abs() < 1e-9);
        let e = (1u64 << 28) as f64;
        let t = add(&dev, e).seconds;
        let roof = launch::written_through(&dev, 4.0 * e, 2.0 * e) / dev.memory_bandwidth;
        assert!(t >= roof && t < 1.15 * roof, "{t} vs {roof}");
    }

    #[test]
    fn short_rows_take_the_warp_softmax_which_streams_near_bandwidth() {
        let dev = h100();
        let p = softmax(&dev, 131072, 1024);
        assert_eq!(p.launches[0].name, "softmax_warp_forward");
        assert_eq!(p.launches[0].grid, 131072 / 4, "four rows per 128-thread block");
        assert_eq!(softmax(&dev, 64, 64).launches[0].grid, 8, "two rows per warp below 129 columns");
        assert_eq!(softmax(&dev, 4096, 4096).launches[0].name, "softmax");
        // Never faster than its bytes; faster than a block per row, whose barriers and one or two
        // blocks per SM leave the memory idle between rows.
        let bytes = launch::written_through(&dev, 2.0 * 131072.0 * 1024.0, 2.0 * 131072.0 * 1024.0);
        assert!(p.seconds >= bytes / dev.memory_bandwidth + dev.launch_latency);
        assert!(p.seconds < block_softmax(&dev, 131072, 1024).seconds);
    }

    #[test]
    fn long_rows_are_reread_from_memory_once_the_resident_rows_outgrow_the_l2() {
        let dev = h100();
        // 32768 columns: two 1024-thread CTAs per SM hold 264 rows of 64 KiB in and out, 34.6 MB
        // against a 50 MB L2 (the reads hit); 65536 columns hold 69 MB (they miss).
        let hbm = |rows: u64, cols: u64| softmax(&dev, rows, cols).launches[0].hbm_bytes;
        let (r, c) = (8192.0, 32768.0);
        assert!((hbm(8192, 32768) - launch::written_through(&dev, 2.0 * r * c, 2.0 * r * c)).abs() < 1.0);
        let (r, c) = (2048.0, 65536.0);
        assert!((hbm(2048, 65536) - launch::written_through(&dev, 6.0 * r * c, 2.0 * r * c)).abs() < 1.0);
        // Few enough rows to fit at once: the reads hit whatever the width.
        assert!((hbm(64, 65536) - launch::written_through(&dev, 2.0 * 64.0 * c, 2.0 * 64.0 * c)).abs() < 1.0);
        // Rows held in registers are read once however many there are.
        let (r, c) = (65536.0, 8192.0);
        assert!((hbm(65536, 8192) - launch::written_through(&dev, 2.0 * r * c, 2.0 * r * c)).abs() < 1.0);
    }

    #[test]
    fn softmax_is_latency_bound_when_one_row_owns_an_sm() {
        let dev = h100();
        // 8192 columns hold one CTA per SM; the serial chain leaves memory idle part of the time.
        let t = softmax(&dev, 65536, 8192).seconds;
        let roof = 4.0 * 65536.0 * 8192.0 / dev.memory_bandwidth;
        assert!(t > 1.5 * roof, "{t} vs {roof}");
    }

    #[test]
    fn row_sums_launch_the_grids_nsight_compute_reported() {
        let dev = h100();
        let grid = |rows, cols| row_sum(&dev, rows, cols).launches[0].grid;
        // validation/gpu/h100/launch_stats.csv: a warp per row up to 4096 columns, a CTA per
        // row from 8192.
        assert_eq!(grid(4096, 4096), 256);
        assert_eq!(grid(4096, 8192), 4096);
        assert_eq!(grid(1024, 32768), 1024);
        // Sixteen long rows cannot fill 132 SMs × 4 slots: each is split over 33 CTAs (528 / 16,
        // under the 128 that would leave 16 values a thread).
        assert_eq!(grid(16, 65536), 16 * 33);
    }
}
