#!/usr/bin/env python3
"""How a kernel's time changes when it runs back to back for seconds: the power limit at work.

    python3 validation/gpu/sustained.py --out OUT        # beside an nvidia-smi sampler (measure_device.sh)

measure.py times each point for about 0.4 s (eager, then graph replays), so a kernel heavy
enough to draw more than the board's power limit is timed partly at the boost clock and partly
throttled. This script separates the two: after 2 s idle it replays one kernel back to back for
about 3 s, recording CUDA events around every replay, and writes each replay's start (ms after
the first) and duration to OUT/sustained.csv. With the SM clock and power sampled every 20 ms
(OUT/clocks.csv, the wall-clock time of each kernel's first replay in OUT/sustained.log) it
gives, per kernel, the time at the boost clock (first replays), the steady throttled time and
clock (last second), and how fast the limiter acts.
"""
import argparse
import csv
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402  (sdpa helper, mma.sync source)

bf = torch.bfloat16


def kernels(dev):
    """(name, callable, flops, bytes) of kernels from light to power-limited."""
    out = []

    def gemm(m, n, k):
        x = torch.randn(m, k, dtype=bf, device=dev)
        w = torch.randn(n, k, dtype=bf, device=dev)
        out.append((f"gemm_{m}x{n}x{k}", lambda: F.linear(x, w), 2 * m * n * k, 2 * (m * k + n * k + m * n)))

    gemm(16384, 16384, 16384)
    gemm(8192, 8192, 8192)
    gemm(8192, 4096, 4096)
    gemm(2048, 12288, 4096)
    gemm(128, 28672, 8192)
    # K and V are separate tensors: one tensor for both would halve the bytes read (the V tile
    # would hit the K tile's lines in L2), as the first run of 2026-12-06 did (since replaced).
    for b, h, s, causal in ((1, 32, 16384, True), (2, 32, 8192, False)):
        q = torch.randn(b, h, s, 128, dtype=bf, device=dev)
        k = torch.randn(b, h, s, 128, dtype=bf, device=dev)
        v = torch.randn_like(k)
        fn, _ = measure.sdpa(q, k, v, causal, False)
        pairs = s * s // 2 if causal else s * s
        out.append((f"fa_b{b}h{h}s{s}d128{'c' if causal else ''}", fn, 4 * b * h * pairs * 128, 8 * b * h * s * 128))
    for b, l in ((8, 131072), (32, 32768), (1, 131072)):
        q = torch.randn(b, 32, 1, 128, dtype=bf, device=dev)
        k = torch.randn(b, 32, l, 128, dtype=bf, device=dev)
        v = torch.randn_like(k)
        fn, _ = measure.sdpa(q, k, v, False, False)
        out.append((f"decode_b{b}h32kv32l{l}", fn, 4 * b * 32 * l * 128, 4 * b * 32 * l * 128))
    src = torch.randn(1 << 29, dtype=bf, device=dev)
    dst = torch.empty_like(src)
    out.append(("copy_1024MiB", lambda: dst.copy_(src), 0, 2 << 30))
    x = torch.randn(1 << 28, dtype=bf, device=dev)
    out.append(("add_268435456", lambda: torch.add(x, x), 0, 6 << 28))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--idle", type=float, default=2.0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    with open(os.path.join(args.out, "sustained.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "flops", "bytes", "replay", "start_ms", "duration_us"])
        for name, fn, flops, nbytes in kernels(dev):
            for _ in range(2):
                fn()
            torch.cuda.synchronize()
            run = fn
            if not name.startswith("copy"):  # a memcpy captured in a graph takes a slower path
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    fn()
                run = g.replay
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            est = max(time.perf_counter() - t0, 1e-5)
            n = int(min(20000, max(20, args.seconds / est)))
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            time.sleep(args.idle)
            print(f"{time.time():.3f} start {name} replays {n}", flush=True)
            for s, e in ev:
                s.record()
                run()
                e.record()
            torch.cuda.synchronize()
            print(f"{time.time():.3f} end {name}", flush=True)
            first = ev[0][0]
            for i, (s, e) in enumerate(ev):
                w.writerow([name, flops, nbytes, i, f"{first.elapsed_time(s):.3f}", f"{s.elapsed_time(e) * 1e3:.3f}"])
            fh.flush()
            d = sorted(s.elapsed_time(e) * 1e3 for s, e in ev[:5])
            tail = [s.elapsed_time(e) * 1e3 for s, e in ev[-max(5, n // 3):]]
            print(f"    first {d[len(d) // 2]:10.1f} us   last third {sorted(tail)[len(tail) // 2]:10.1f} us", flush=True)


if __name__ == "__main__":
    sys.exit(main())
