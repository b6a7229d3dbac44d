#!/usr/bin/env python3
"""Kernels the model is furthest off on, for Nsight Compute to say where their warps wait:
softmax rows held in registers (4096 and 8192 columns), the three-pass softmax (32768 columns)
and row sums at the main set's shapes, and FlashAttention-2's forward kernel at head dims 128
(10–14% slower than predicted) and 64 (within 2–7%), causal and not.

    ncu --clock-control none -k regex:'softmax|SoftMax|reduce_kernel|flash_fwd' \\
        --section LaunchStats --section Occupancy --section WarpStateStats \\
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \\
        --csv python3 validation/gpu/stall_stats.py > stall_stats.csv

Per kernel: its grid, achieved occupancy, DRAM and shared-memory throughput, pipe utilisation
and the warp-state breakdown (long scoreboard: waiting on device memory; short scoreboard:
shared memory; barrier: __syncthreads; math pipe throttle; ...), which says how much of a CTA's
life is a dependent load, a block reduction or operand traffic.
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

dev, bf = "cuda", torch.bfloat16
for r, c in ((32768, 4096), (65536, 8192), (8192, 32768), (4096, 4096)):
    x = torch.randn(r, c, dtype=bf, device=dev)
    torch.softmax(x, dim=-1)
    x.sum(dim=-1)
    del x
for b, h, s, d in ((1, 32, 4096, 128), (4, 16, 8192, 64)):
    q, k, v = (torch.randn(b, h, s, d, dtype=bf, device=dev) for _ in range(3))
    for causal in (False, True):
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
torch.cuda.synchronize()
