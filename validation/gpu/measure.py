#!/usr/bin/env python3
"""Measure the kernels that Strata's GPU presets must predict, on the GPU at hand.

Run on a machine with an NVIDIA GPU and PyTorch:

    python3 validation/gpu/measure.py --out validation/gpu/h100

It writes `measurements.csv` (one row per kernel point) and `environment.json`
(GPU name, driver, clocks, library versions) into the output directory.

Method (see the device tool's METHOD.md): random bf16 inputs, warm-up runs, then
many timed runs with CUDA events around each, the L2 cache emptied before every
run (outside the timed region; `--flush read`, the default, sums a 256 MiB buffer so the
L2 holds clean lines of other data), and the median reported with
the 10th and 90th percentiles. Each point is captured in a CUDA graph and the
replays are timed, so `median_us` is the GPU's time and not PyTorch's host-side
dispatch; `eager_us` is the eager median beside it, for reference. One profiled run per point records the names of
the kernels that the library launched (tile shapes, split-K, split-KV combine).

Rows whose `kind` is `calibration` are the device-level quantities that
`strata validate-gpu` may calibrate against: the bandwidth of a large
device-to-device copy, the throughput of a large bf16 GEMM, and the time of the
smallest kernel. Every other row is a validation point.
"""
import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

FIELDS = [
    "kind", "name", "m", "n", "k", "batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "causal",
    "elements", "bytes", "flops", "median_us", "p10_us", "p90_us", "reps", "eager_us", "backend", "kernels",
]

FLUSH = None
# How the L2 is emptied before each timed run: "read" sums a 256 MiB buffer (clean lines of other
# data: the cold cache the model assumes), "write" zeroes it (the L2 is left full of dirty lines
# that the next kernel must write back while it reads, 13-25% on memory-bound kernels; the
# sets of 2026-12-04/05 used it), "none" leaves the previous run's data in L2. The probe set
# compares the three.
FLUSH_MODE = "read"


def flush():
    if FLUSH_MODE == "write":
        FLUSH.zero_()
    elif FLUSH_MODE == "read":
        FLUSH.sum(dtype=torch.int32)


def timed(fn, target_ms=200.0, min_reps=15, max_reps=400):
    """Median, p10, p90 (µs) of `fn` over event-timed runs, L2 flushed before each."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(3):
        flush()
        fn()
    torch.cuda.synchronize()
    est_ms = (time.perf_counter() - t0) * 1e3 / 3
    reps = int(max(min_reps, min(max_reps, target_ms / max(est_ms, 1e-3))))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        flush()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))
    q = statistics.quantiles(times, n=10)
    return statistics.median(times), q[0], q[-1], reps


def bench(fn, graph=True):
    """GPU time of `fn` (replayed from a CUDA graph, so the host's dispatch cost of
    the framework stays out) and, beside it, the eager median that includes it."""
    eager = timed(fn)
    if not graph:
        return eager + (eager[0],)
    try:
        for _ in range(2):
            fn()
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        torch.cuda.synchronize()
        return timed(g.replay) + (eager[0],)
    except Exception as exc:
        print(f"graph capture failed ({type(exc).__name__}: {exc}); eager time kept", flush=True)
        return eager + (eager[0],)


def kernel_names(fn):
    """Names of the GPU kernels one call of `fn` launches (cuBLAS tile, split-K, ...)."""
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        return ";".join(n[:160] for n in names)
    except Exception as exc:  # profiler unavailable: the timing still stands
        return f"profiler-error:{type(exc).__name__}"


MMA_SRC = r"""
extern "C" __global__ void mma_loop(float* out, int iters) {
  // bf16 operands 1.0/0.5 packed in pairs; eight independent accumulators keep the pipe full.
  unsigned a0 = 0x3f803f80u, a1 = 0x3f003f00u, a2 = 0x3f803f00u, a3 = 0x3f003f80u;
  unsigned b0 = 0x3f803f80u, b1 = 0x3f003f00u;
  float c[8][4];
  for (int j = 0; j < 8; j++) for (int q = 0; q < 4; q++) c[j][q] = 0.f;
  for (int i = 0; i < iters; i++) {
#pragma unroll
    for (int j = 0; j < 8; j++) {
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                   : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
  }
  float s = 0.f;
  for (int j = 0; j < 8; j++) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
extern "C" __global__ void chase(const unsigned long long* next, int steps, unsigned long long* out) {
  unsigned long long p = 0;
  for (int i = 0; i < steps; i++) p = next[p];
  out[0] = p;
}
"""


def micro_calibration(rows, writer, fh):
    """Device-level quantities that no library kernel exposes directly.

    * `mma_sync_peak`: the chip's throughput through the Ampere-style warp-level
      `mma.sync` bf16 instruction, the path FlashAttention-2 kernels use (cuBLAS on
      Hopper uses `wgmma`, measured by `gemm_peak`).
    * `memory_latency`: one thread chasing pointers through 512 MiB (beyond L2),
      the time of one dependent HBM load.
    """
    try:
        import cupy as cp
        import numpy as np
    except Exception as exc:
        print(f"micro-benchmarks skipped: {exc}")
        return
    with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):  # same stream as the events
        mod = cp.RawModule(code=MMA_SRC, options=("-std=c++17",))
        mma = mod.get_function("mma_loop")
        blocks, threads, iters = 132 * 16, 256, 2048
        out = cp.empty(blocks * threads, dtype=cp.float32)
        for name, it in (("mma_sync_peak", iters), ("mma_sync_short", iters // 32)):
            flops = blocks * (threads // 32) * it * 8 * 2 * 16 * 8 * 16
            record(rows, writer, fh, row(kind="calibration", name=name, flops=flops, backend="mma.sync.m16n8k16"),
                   lambda it=it: mma((blocks,), (threads,), (out, np.int32(it))), graph=False)
        n = (512 << 20) // 8
        line = 16  # one 128 B line per hop
        perm = np.random.default_rng(0).permutation(n // line)
        nxt = np.zeros(n, dtype=np.uint64)
        nxt[perm * line] = np.roll(perm, -1) * line
        dnext = cp.asarray(nxt)
        res = cp.empty(1, dtype=cp.uint64)
        chase = mod.get_function("chase")
        steps = 20000
        r = row(kind="calibration", name="memory_latency", elements=steps, bytes=8 * steps, backend="pointer-chase")
        record(rows, writer, fh, r, lambda: chase((1,), (1,), (dnext, np.int32(steps), res)), graph=False)
        # The same chase while the copy engines stream 1 GiB copies on another stream: the
        # latency of a dependent load when the memory runs at its bandwidth (what a kernel's
        # first loads wait while every SM issues its own).
        side = torch.cuda.Stream()
        src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)

        def loaded():
            with torch.cuda.stream(side):
                for _ in range(80):  # ~56 ms of copies: more than the chase takes under load
                    dst.copy_(src)
            chase((1,), (1,), (dnext, np.int32(steps), res))

        r = row(kind="calibration", name="memory_latency_loaded", elements=steps, bytes=8 * steps,
                backend="pointer-chase beside device-to-device copies")
        record(rows, writer, fh, r, loaded, graph=False)
        torch.cuda.synchronize()
        del dnext, src, dst


def row(**kw):
    r = {f: "" for f in FIELDS}
    r.update(kw)
    return r


def record(rows, writer, fh, r, fn, graph=True):
    med, p10, p90, reps, eager = bench(fn, graph)
    r.update(median_us=f"{med:.3f}", p10_us=f"{p10:.3f}", p90_us=f"{p90:.3f}", reps=reps, eager_us=f"{eager:.3f}")
    emit(rows, writer, fh, r, fn, f"(eager {eager:10.2f})")


def emit(rows, writer, fh, r, fn, note=""):
    """Writes a timed row (with the kernels `fn` launches) and prints it on the timeline."""
    r["kernels"] = kernel_names(fn)
    rows.append(r)
    writer.writerow(r)
    fh.flush()
    print(f"{time.time():.3f} {r['kind']:>14} {r['name']:<34} {float(r['median_us']):12.2f} us  {note}", flush=True)


def gemm_points():
    pts = []
    layers = [(4096, 4096), (12288, 4096), (11008, 4096), (4096, 11008), (8192, 8192), (28672, 8192)]
    for m in (1, 8, 32, 128):
        for n, k in layers:
            pts.append((m, n, k))
    for m in (512, 2048, 8192):
        for n, k in layers[:4]:
            pts.append((m, n, k))
    for s in (1024, 2048, 4096, 8192):
        pts.append((s, s, s))
    return pts


# The main set: (batch, heads, seq, head_dim) for prefill, (batch, heads, kv_heads, context,
# head_dim) for decode, bytes for copies, elements for adds, (rows, cols) for softmax and sums.
MAIN = dict(
    gemm=gemm_points(),
    prefill=[(1, 32, 32, 1024, 128), (1, 32, 32, 4096, 128), (1, 32, 32, 16384, 128), (8, 32, 32, 2048, 128),
             (2, 32, 32, 8192, 128), (16, 16, 16, 1024, 64), (4, 16, 16, 8192, 64), (32, 12, 12, 512, 64)],
    decode=[(1, 32, 32, 2048, 128), (1, 32, 32, 8192, 128), (1, 32, 32, 32768, 128), (1, 32, 32, 131072, 128),
            (8, 32, 32, 2048, 128), (8, 32, 32, 8192, 128), (8, 32, 32, 32768, 128), (8, 32, 32, 131072, 128),
            (32, 32, 32, 2048, 128), (32, 32, 32, 8192, 128), (32, 32, 32, 32768, 128),
            (8, 64, 8, 8192, 128), (8, 64, 8, 32768, 128), (32, 64, 8, 32768, 128)],
    copy=[1 << 20, 16 << 20, 256 << 20, 1 << 30],
    add=[1 << 20, 1 << 24, 1 << 28],
    rows=[(4096, 4096), (32768, 4096), (65536, 8192), (8192, 32768)],
)


def heldout_gemms():
    """Layer shapes absent from the main set (13B, Llama-3-8B/70B, Mixtral-style), other token counts."""
    layers = [(5120, 5120), (13824, 5120), (5120, 13824), (6144, 4096), (14336, 4096), (4096, 14336),
              (10240, 8192), (8192, 28672)]
    pts = [(m, n, k) for m in (1, 16, 64, 256) for n, k in layers]
    pts += [(m, n, k) for m in (1024, 4096) for n, k in layers[:4]]
    return pts + [(3072, 3072, 3072), (6144, 6144, 6144)]


# The held-out set: disjoint from MAIN in every point, measured once and never used to build the
# model (head dims 64/96/128, GQA ratios 1-16, other contexts and sizes).
HELDOUT = dict(
    gemm=heldout_gemms(),
    prefill=[(1, 32, 8, 2048, 128), (4, 32, 8, 4096, 128), (2, 40, 40, 2048, 128), (8, 16, 16, 1024, 96),
             (2, 32, 32, 4096, 96), (4, 24, 24, 2048, 64), (1, 64, 8, 8192, 128), (16, 32, 32, 512, 128)],
    decode=[(2, 32, 8, 4096, 128), (16, 32, 8, 16384, 128), (4, 40, 40, 4096, 128), (64, 32, 8, 4096, 128),
            (1, 64, 8, 65536, 128), (16, 32, 32, 4096, 96), (8, 16, 16, 16384, 64), (4, 32, 4, 131072, 128),
            (2, 64, 4, 32768, 128), (128, 32, 8, 1024, 128)],
    copy=[4 << 20, 64 << 20, 512 << 20],
    add=[1 << 22, 1 << 26],
    rows=[(16384, 2048), (2048, 65536), (131072, 1024)],
)

# The probe set: a few main-set points under each L2 flush mode (written to probe.csv).
PROBE = dict(
    gemm=[(1, 4096, 4096), (1, 12288, 4096), (1, 28672, 8192), (128, 8192, 8192), (2048, 4096, 4096)],
    prefill=[(2, 32, 32, 8192, 128)],
    decode=[(1, 32, 32, 2048, 128), (8, 32, 32, 8192, 128)],
    copy=[16 << 20, 256 << 20],
    add=[1 << 24],
    rows=[(4096, 4096)],
)


def sdpa(q, kk, v, causal, gqa):
    """SDPA with the flash backend, or the memory-efficient one where flash refuses the shape."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run(backend):
        def fn():
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, kk, v, is_causal=causal, enable_gqa=gqa)
        return fn

    fn = run(SDPBackend.FLASH_ATTENTION)
    try:
        fn()
        torch.cuda.synchronize()
        return fn, "flash"
    except Exception:
        return run(SDPBackend.EFFICIENT_ATTENTION), "efficient"


def measure_families(rows, writer, fh, pts, dev, extra=None):
    bf = torch.bfloat16
    extra = extra or {}

    def rec(r, fn, graph=True):
        r.update(extra)
        if "flush" in extra:
            r["name"] += "@" + extra["flush"]
        record(rows, writer, fh, r, fn, graph)

    # GEMM: y = x Wᵀ as an LLM linear layer runs.
    for m, nn, k in pts["gemm"]:
        x = torch.randn(m, k, dtype=bf, device=dev)
        w = torch.randn(nn, k, dtype=bf, device=dev)
        rec(row(kind="gemm", name=f"gemm_{m}x{nn}x{k}", m=m, n=nn, k=k, flops=2 * m * nn * k,
                bytes=2 * (m * k + nn * k + m * nn)), lambda: F.linear(x, w))
        del x, w

    # Prefill attention (GQA where kv_heads < heads).
    for bsz, h, hkv, s, d in pts["prefill"]:
        q = torch.randn(bsz, h, s, d, dtype=bf, device=dev)
        kk = torch.randn(bsz, hkv, s, d, dtype=bf, device=dev)
        v = torch.randn_like(kk)
        for causal in (False, True):
            fn, backend = sdpa(q, kk, v, causal, h != hkv)
            pairs = s * s // 2 if causal else s * s
            kv = "" if hkv == h else f"kv{hkv}"
            rec(row(kind="attention_prefill", name=f"fa_b{bsz}h{h}{kv}s{s}d{d}{'c' if causal else ''}",
                    batch=bsz, heads=h, kv_heads=hkv, seq_q=s, seq_kv=s, head_dim=d, causal=int(causal),
                    flops=4 * bsz * h * pairs * d, bytes=2 * (2 * bsz * h * s * d + 2 * bsz * hkv * s * d),
                    backend=backend), fn)
        del q, kk, v

    # Decode attention: one query against a long KV cache.
    for bsz, h, hkv, l, d in pts["decode"]:
        q = torch.randn(bsz, h, 1, d, dtype=bf, device=dev)
        kk = torch.randn(bsz, hkv, l, d, dtype=bf, device=dev)
        v = torch.randn_like(kk)
        fn, backend = sdpa(q, kk, v, False, h != hkv)
        dd = "" if d == 128 else f"d{d}"
        rec(row(kind="attention_decode", name=f"decode_b{bsz}h{h}kv{hkv}l{l}{dd}", batch=bsz, heads=h,
                kv_heads=hkv, seq_q=1, seq_kv=l, head_dim=d, causal=0, flops=4 * bsz * h * l * d,
                bytes=2 * (2 * bsz * hkv * l * d + 2 * bsz * h * d), backend=backend), fn)
        del q, kk, v

    # Memory, elementwise and row-reduction kernels.
    for size in pts["copy"]:
        src = torch.randn(size // 2, dtype=bf, device=dev)
        dst = torch.empty_like(src)
        rec(row(kind="copy", name=f"copy_{size >> 20}MiB", elements=size // 2, bytes=2 * size),
            lambda: dst.copy_(src), graph=False)
        del src, dst
    for elems in pts["add"]:
        x = torch.randn(elems, dtype=bf, device=dev)
        y = torch.randn(elems, dtype=bf, device=dev)
        rec(row(kind="elementwise", name=f"add_{elems}", elements=elems, bytes=6 * elems), lambda: torch.add(x, y))
        del x, y
    for rows_, cols in pts["rows"]:
        x = torch.randn(rows_, cols, dtype=bf, device=dev)
        rec(row(kind="softmax", name=f"softmax_{rows_}x{cols}", m=rows_, n=cols, elements=rows_ * cols,
                bytes=4 * rows_ * cols), lambda: torch.softmax(x, dim=-1))
        rec(row(kind="reduction", name=f"rowsum_{rows_}x{cols}", m=rows_, n=cols, elements=rows_ * cols,
                bytes=2 * rows_ * cols + 2 * rows_), lambda: x.sum(dim=-1))
        del x


def environment(dev):
    props = torch.cuda.get_device_properties(dev)
    env = {
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "l2_bytes": getattr(props, "L2_cache_size", None),
        "memory_bytes": props.total_memory,
        "compute_capability": f"{props.major}.{props.minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%d"),
        "timing": "CUDA events around CUDA-graph replays (eager_us: eager calls), L2 emptied before each run "
                  f"(flush mode {FLUSH_MODE!r}: 'read' sums a 256 MiB buffer, 'write' zeroes it), median of reps",
        "flush": FLUSH_MODE,
    }
    try:
        from importlib.metadata import version
        for pkg in ("nvidia-cublas", "nvidia-cublas-cu12", "nvidia-cudnn-cu13", "triton"):
            try:
                env[pkg] = version(pkg)
            except Exception:
                pass
    except Exception:
        pass
    try:
        q = "name,driver_version,clocks.max.sm,clocks.max.mem,clocks.sm,power.limit,memory.total"
        out = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        env["nvidia_smi"] = dict(zip(q.split(","), [s.strip() for s in out.split(",")]))
    except Exception as exc:
        env["nvidia_smi"] = f"error: {exc}"
    return env


def calibration(rows, writer, fh, dev):
    """Device-level ceilings: the only rows `strata validate-gpu` may calibrate against."""
    bf = torch.bfloat16
    n = 2 << 30  # 2 GiB each way
    src = torch.randn(n // 2, dtype=bf, device=dev)
    dst = torch.empty_like(src)
    # Copies are timed eagerly: a memcpy captured in a graph takes a slower kernel-based path.
    record(rows, writer, fh, row(kind="calibration", name="copy_peak", bytes=2 * n), lambda: dst.copy_(src),
           graph=False)
    del src, dst
    a = torch.randn(16384, 16384, dtype=bf, device=dev)
    b = torch.randn(16384, 16384, dtype=bf, device=dev)
    record(rows, writer, fh, row(kind="calibration", name="gemm_peak", m=16384, n=16384, k=16384,
                                 flops=2 * 16384 ** 3), lambda: torch.matmul(a, b))
    # The same GEMM's first runs after an idle spell: the boost clock that the validation points
    # (short runs) see, before the board's power limit lowers it over the ~0.4 s that gemm_peak
    # runs for (sustained.py shows the fall: 1980 MHz, then ~1380 at 700 W).
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    time.sleep(2.0)
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(5)]
    for start, end in ev:
        start.record()
        g.replay()
        end.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) * 1e3 for s, e in ev)
    q = statistics.quantiles(times, n=10)
    r = row(kind="calibration", name="gemm_peak_boost", m=16384, n=16384, k=16384, flops=2 * 16384 ** 3,
            backend="the first 5 graph replays after 2 s idle")
    r.update(median_us=f"{statistics.median(times):.3f}", p10_us=f"{q[0]:.3f}", p90_us=f"{q[-1]:.3f}", reps=5)
    emit(rows, writer, fh, r, lambda: torch.matmul(a, b))
    del a, b, g
    one = torch.randn(1, dtype=torch.float32, device=dev)
    record(rows, writer, fh, row(kind="calibration", name="kernel_floor", elements=1, bytes=8),
           lambda: one.add_(1.0))
    # Two dependent tiny kernels in one graph: the second costs the gap between kernels, not a
    # whole launch (split-K reductions, split-KV combines).
    record(rows, writer, fh, row(kind="calibration", name="kernel_pair", elements=2, bytes=16),
           lambda: one.add_(1.0).add_(1.0))
    micro_calibration(rows, writer, fh)


def main():
    global FLUSH, FLUSH_MODE
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", choices=["main", "heldout", "probe", "calibration"], default="main",
                    help="main: the validation set; heldout: the disjoint held-out set; "
                         "probe: a few points under each L2 flush mode, into probe.csv; "
                         "calibration: the calibration rows alone, into calibration.csv")
    ap.add_argument("--quick", action="store_true", help="a few points only (smoke test)")
    ap.add_argument("--flush", choices=["read", "write", "none"], default="read",
                    help="how the L2 is emptied before each timed run (the probe set tries all three)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    FLUSH = torch.empty(256 << 20, dtype=torch.int8, device=dev)
    FLUSH_MODE = args.flush
    env = environment(dev)
    env["set"] = args.set
    pts = {"main": MAIN, "heldout": HELDOUT, "probe": PROBE, "calibration": {}}[args.set]
    if args.quick:
        pts = {k: v[:1] for k, v in pts.items()}

    rows = []
    name = {"probe": "probe.csv", "calibration": "calibration.csv"}.get(args.set, "measurements.csv")
    fields = FIELDS + ["flush"] if args.set == "probe" else FIELDS
    with open(os.path.join(args.out, name), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        if args.set == "probe":
            for mode in ("write", "read", "none"):
                FLUSH_MODE = mode
                measure_families(rows, writer, fh, pts, dev, {"flush": mode})
        else:
            calibration(rows, writer, fh, dev)
            if pts:
                measure_families(rows, writer, fh, pts, dev)
    if args.set in ("main", "heldout"):
        with open(os.path.join(args.out, "environment.json"), "w") as f:
            json.dump(env, f, indent=2, sort_keys=True)
        print(json.dumps(env, indent=2))
    print(f"{len(rows)} points written to {os.path.join(args.out, name)}")


if __name__ == "__main__":
    sys.exit(main())
