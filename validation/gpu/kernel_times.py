#!/usr/bin/env python3
"""Split-KV decode shapes, for Nsight Compute to time each of their kernels on its own.

    ncu --clock-control none --metrics gpu__time_duration.sum --csv \\
        python3 validation/gpu/kernel_times.py > kernel_times.csv

measure.py times a decode as a whole (the split-KV kernel and its combine in one graph); this
splits that time between the two kernels, with the caches flushed before each (ncu's default),
so the model's split and combine can be checked one by one. Three calls per shape: ncu reports
every launch.
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

dev, bf = "cuda", torch.bfloat16
torch.manual_seed(0)
# (batch, heads, kv_heads, context): the main set's split-KV decodes, short and long.
for b, h, hkv, l in ((1, 32, 32, 2048), (1, 32, 32, 8192), (1, 32, 32, 131072), (8, 64, 8, 8192)):
    q = torch.randn(b, h, 1, 128, dtype=bf, device=dev)
    k = torch.randn(b, hkv, l, 128, dtype=bf, device=dev)
    v = torch.randn_like(k)
    for _ in range(3):
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(q, k, v, enable_gqa=h != hkv)
    torch.cuda.synchronize()
