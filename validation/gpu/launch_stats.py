#!/usr/bin/env python3
"""One call of each kernel family, for Nsight Compute's launch statistics.

    ncu --clock-control none --section LaunchStats --section Occupancy --csv \\
        python3 validation/gpu/launch_stats.py > validation/gpu/h100/launch_stats.csv

The grid, block, registers per thread and shared memory per block that the
libraries chose are facts of the kernels (their mappings), which Strata's GPU
kernel models take as given; the occupancy that follows is what Strata derives.
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402  (the shared point lists)

dev, bf = "cuda", torch.bfloat16
torch.manual_seed(0)
for m, n, k in ((1, 12288, 4096), (1, 4096, 4096), (128, 4096, 4096), (8192, 4096, 4096)):
    F.linear(torch.randn(m, k, dtype=bf, device=dev), torch.randn(n, k, dtype=bf, device=dev))
# Every skinny GEMM of the main set (M <= 128): the grids and split-K cuBLAS picks for decode.
for m, n, k in measure.MAIN["gemm"]:
    if m <= 128:
        F.linear(torch.randn(m, k, dtype=bf, device=dev), torch.randn(n, k, dtype=bf, device=dev))
for b, h, s, d in ((1, 32, 1024, 128), (4, 16, 1024, 64)):
    q = torch.randn(b, h, s, d, dtype=bf, device=dev)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
for b, l in ((1, 8192), (8, 8192)):
    q = torch.randn(b, 32, 1, 128, dtype=bf, device=dev)
    kv = torch.randn(b, 32, l, 128, dtype=bf, device=dev)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        F.scaled_dot_product_attention(q, kv, kv)
x = torch.randn(1 << 24, dtype=bf, device=dev)
torch.add(x, x)
# Rows of up to 2048 elements take PyTorch's warp-per-row softmax (softmax_warp_forward).
for r, c in ((4096, 4096), (4096, 8192), (1024, 32768), (131072, 1024), (16384, 2048), (65536, 64)):
    x = torch.randn(r, c, dtype=bf, device=dev)
    torch.softmax(x, dim=-1)
    x.sum(dim=-1)
torch.cuda.synchronize()
# The fused low-rank FFN of measure_sparse.py (our Triton kernel): its registers, shared memory
# and occupancy at the ranks and output tile widths of the FlashSVD crossover.
import measure_sparse  # noqa: E402

fused = measure_sparse.fused_ffn_kernel()
for r in (96, 768):
    x, ag, au, bg, bu, ad, bd = measure_sparse.factors(8 * 4096, 768, 3072, r, dev)
    pg, pu = x @ ag, x @ au
    for block_n in (64, 256):
        fused(pg, pu, bg, bu, ad, bd, block_n)
torch.cuda.synchronize()
