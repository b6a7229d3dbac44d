#!/usr/bin/env python3
"""Measure the sparse and low-rank kernels Strata models (issue 18), on the GPU at hand.

Run on a machine with an NVIDIA GPU, PyTorch and Triton:

    python3 validation/gpu/measure_sparse.py --out validation/gpu/h200

It writes `sparse.csv` into the output directory, one row per kernel point, with the same
method as `measure.py` (whose timing helpers it uses: L2 flushed before every run, CUDA-graph
replays timed with CUDA events, median with p10/p90, the eager median beside it):

* Double Sparsity's decode attention, our own implementation of the mechanism in
  shared/reference/sparse-lowrank.md §1, stage by stage and whole, against dense decode SDPA
  (FlashAttention backend): `ds_dense` (SDPA over the whole cache), `ds_labels` (the query's
  label channels against the label cache: one score per cached token), `ds_topk`
  (`torch.topk` over the scores), `ds_gather_attention` (the selected rows gathered with
  `torch.gather`, then SDPA on them), `ds_total` (all of it). Llama-2-7B heads (32 × 128),
  fp16 labels of 1/16 of the channels, 1/16 of the tokens.
* FlashSVD's low-rank SwiGLU FFN at B = 8, L = 4096, d = 768, D_ff = 3072 over ranks:
  `lowrank_inputs` (the rank-space inputs x·A of gate and up, shared by both paths),
  `lowrank_plain` (the rebuilds, SiLU, the product and the down projection's two GEMMs, every
  intermediate through memory: plain SVD inference) and `lowrank_fused` (our Triton kernel of
  FlashSVD's fused FFN: per (token tile, output tile) it loops over the FFN's width, rebuilds
  the gate and up tiles from the rank-space inputs, applies SiLU and the product on chip, and
  accumulates (T · A_down) · B_down), per output tile width `block_n` (the rebuild is repeated
  once per output tile, so the tile width sets the recompute). `dense_ffn` is the unfactorised
  FFN for reference.

Each implementation is first checked against a plain reference on small inputs (Double Sparsity
keeping every token equals dense attention; the fused FFN equals the plain path), and the run
stops if one disagrees.
"""
import argparse
import csv
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402  (the shared timing helpers)

FIELDS = [
    "kind", "name", "batch", "heads", "seq_kv", "head_dim", "label_channels", "selected", "tokens", "d_model",
    "ffn", "rank", "block_n", "bytes", "flops", "median_us", "p10_us", "p90_us", "reps", "eager_us", "backend",
    "kernels",
]


def row(**kw):
    r = {f: "" for f in FIELDS}
    r.update(kw)
    return r


# --- Double Sparsity ------------------------------------------------------------------------

def ds_step(q, k, v, labels, channels, selected):
    """One decode step of Double Sparsity's attention: q [b,h,1,d], k/v [b,h,s,d], labels
    [b,h,s,r] (the keys' label channels), channels [h,r]. Returns the output [b,h,1,d]."""
    b, h, _, d = q.shape
    ql = torch.gather(q[:, :, 0, :], 2, channels.unsqueeze(0).expand(b, -1, -1))      # [b,h,r]
    scores = torch.matmul(labels, ql.unsqueeze(-1)).squeeze(-1)                         # [b,h,s]
    idx = torch.topk(scores, selected, dim=-1, sorted=False).indices                    # [b,h,k]
    rows = idx.unsqueeze(-1).expand(-1, -1, -1, d)
    ks, vs = torch.gather(k, 2, rows), torch.gather(v, 2, rows)
    return F.scaled_dot_product_attention(q, ks, vs)


def check_ds(dev):
    torch.manual_seed(0)
    b, h, s, d, r = 2, 4, 64, 32, 4
    q = torch.randn(b, h, 1, d, device=dev, dtype=torch.float32)
    k, v = torch.randn(b, h, s, d, device=dev), torch.randn(b, h, s, d, device=dev)
    channels = torch.stack([torch.randperm(d, device=dev)[:r] for _ in range(h)])
    labels = torch.gather(k, 3, channels.view(1, h, 1, r).expand(b, h, s, r))
    dense = F.scaled_dot_product_attention(q, k, v)
    sparse = ds_step(q, k, v, labels, channels, s)
    err = (dense - sparse).abs().max().item()
    if err > 1e-4:
        sys.exit(f"Double Sparsity keeping every token differs from dense attention by {err}")


def measure_ds(rows, writer, fh, dev, quick):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    h, d = 32, 128
    points = [(1, 4096), (1, 16384), (1, 65536), (4, 4096), (4, 16384), (4, 32768), (16, 4096), (16, 8192),
              (32, 2048), (32, 4096)]
    if quick:
        points = points[:2]
    for bsz, s in points:
        r, sel = d // 16, s // 16
        q = torch.randn(bsz, h, 1, d, dtype=torch.bfloat16, device=dev)
        k = torch.randn(bsz, h, s, d, dtype=torch.bfloat16, device=dev)
        v = torch.randn_like(k)
        channels = torch.stack([torch.randperm(d, device=dev)[:r] for _ in range(h)])
        labels = torch.gather(k, 3, channels.view(1, h, 1, r).expand(bsz, h, s, r)).contiguous()
        common = dict(batch=bsz, heads=h, seq_kv=s, head_dim=d, label_channels=r, selected=sel)
        name = f"b{bsz}s{s}"

        def dense(q=q, k=k, v=v):
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v)

        measure.record(rows, writer, fh, row(kind="ds_dense", name=name, bytes=2 * 2 * bsz * h * s * d, backend="flash",
                                             **common), dense)
        ql = torch.gather(q[:, :, 0, :], 2, channels.unsqueeze(0).expand(bsz, -1, -1))
        measure.record(rows, writer, fh, row(kind="ds_labels", name=name, bytes=2 * bsz * h * s * (r + 1), **common),
                       lambda: torch.matmul(labels, ql.unsqueeze(-1)).squeeze(-1))
        scores = torch.matmul(labels, ql.unsqueeze(-1)).squeeze(-1)
        measure.record(rows, writer, fh, row(kind="ds_topk", name=name, bytes=2 * bsz * h * s + 8 * bsz * h * sel,
                                             **common),
                       lambda: torch.topk(scores, sel, dim=-1, sorted=False))
        idx = torch.topk(scores, sel, dim=-1, sorted=False).indices

        def gathered(idx=idx, q=q, k=k, v=v):
            rws = idx.unsqueeze(-1).expand(-1, -1, -1, d)
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(q, torch.gather(k, 2, rws), torch.gather(v, 2, rws))

        measure.record(rows, writer, fh, row(kind="ds_gather_attention", name=name, bytes=2 * 2 * 2 * bsz * h * sel * d,
                                             backend="gather+flash", **common), gathered)

        def total(q=q, k=k, v=v):
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return ds_step(q, k, v, labels, channels, sel)

        measure.record(rows, writer, fh, row(kind="ds_total", name=name, **common), total)
        del q, k, v, labels


# --- FlashSVD's low-rank FFN --------------------------------------------------------------

def fused_ffn_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def fused_ffn(PG, PU, BG, BU, AD, BD, Y, M, D, FF, R,
                  s_pm, s_pr, s_br, s_bf, s_af, s_ar, s_dr, s_dn, s_ym, s_yn,
                  BM: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr, BR: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        rm = pid_m * BM + tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for f0 in range(0, FF, BF):
            rf = f0 + tl.arange(0, BF)
            tg = tl.zeros((BM, BF), dtype=tl.float32)
            tu = tl.zeros((BM, BF), dtype=tl.float32)
            for r0 in range(0, R, BR):
                rr = r0 + tl.arange(0, BR)
                pmask = (rm[:, None] < M) & (rr[None, :] < R)
                bmask = (rr[:, None] < R) & (rf[None, :] < FF)
                pg = tl.load(PG + rm[:, None] * s_pm + rr[None, :] * s_pr, mask=pmask, other=0.0)
                pu = tl.load(PU + rm[:, None] * s_pm + rr[None, :] * s_pr, mask=pmask, other=0.0)
                bg = tl.load(BG + rr[:, None] * s_br + rf[None, :] * s_bf, mask=bmask, other=0.0)
                bu = tl.load(BU + rr[:, None] * s_br + rf[None, :] * s_bf, mask=bmask, other=0.0)
                tg += tl.dot(pg, bg)
                tu += tl.dot(pu, bu)
            t = (tg * tl.sigmoid(tg) * tu).to(tl.bfloat16)
            for r0 in range(0, R, BR):
                rr = r0 + tl.arange(0, BR)
                ad = tl.load(AD + rf[:, None] * s_af + rr[None, :] * s_ar,
                             mask=(rf[:, None] < FF) & (rr[None, :] < R), other=0.0)
                sr = tl.dot(t, ad).to(tl.bfloat16)
                bd = tl.load(BD + rr[:, None] * s_dr + rn[None, :] * s_dn,
                             mask=(rr[:, None] < R) & (rn[None, :] < D), other=0.0)
                acc += tl.dot(sr, bd)
        tl.store(Y + rm[:, None] * s_ym + rn[None, :] * s_yn, acc.to(tl.bfloat16),
                 mask=(rm[:, None] < M) & (rn[None, :] < D))

    def run(pg, pu, bg, bu, ad, bd, block_n, block_m=64, block_f=64, block_r=32):
        m, r = pg.shape
        ff, d = bg.shape[1], bd.shape[1]
        y = torch.empty(m, d, dtype=pg.dtype, device=pg.device)
        grid = (triton.cdiv(m, block_m), triton.cdiv(d, block_n))
        fused_ffn[grid](pg, pu, bg, bu, ad, bd, y, m, d, ff, r,
                        pg.stride(0), pg.stride(1), bg.stride(0), bg.stride(1), ad.stride(0), ad.stride(1),
                        bd.stride(0), bd.stride(1), y.stride(0), y.stride(1),
                        BM=block_m, BN=block_n, BF=block_f, BR=block_r)
        return y

    return run


def plain_ffn(pg, pu, bg, bu, ad, bd):
    h = F.silu(pg @ bg) * (pu @ bu)
    return (h @ ad) @ bd


def factors(m, d, ff, r, dev, scale=0.05):
    def t(*shape):
        return (torch.randn(*shape, device=dev) * scale).to(torch.bfloat16)
    x = t(m, d) * 20
    ag, au, bg, bu, ad, bd = t(d, r), t(d, r), t(r, ff), t(r, ff), t(ff, r), t(r, d)
    return x, ag, au, bg, bu, ad, bd


def check_fused(dev, fused):
    torch.manual_seed(1)
    x, ag, au, bg, bu, ad, bd = factors(256, 128, 512, 64, dev)
    pg, pu = x @ ag, x @ au
    want = plain_ffn(pg.float(), pu.float(), bg.float(), bu.float(), ad.float(), bd.float())
    for block_m, block_n in ((64, 64), (64, 128), (16, 128)):
        got = fused(pg, pu, bg, bu, ad, bd, block_n, block_m=block_m).float()
        err = (got - want).norm() / want.norm()
        if err > 3e-2:
            sys.exit(f"the fused FFN ({block_m} x {block_n}) differs from the plain path by {err:.3e} (relative)")


def measure_lowrank(rows, writer, fh, dev, quick):
    b, seq, d, ff = 8, 4096, 768, 3072
    m = b * seq
    fused = fused_ffn_kernel()
    check_fused(dev, fused)
    ranks = [32, 64, 96, 128, 192, 256, 384, 512, 768]
    if quick:
        ranks = [96, 768]
    common = dict(batch=b, tokens=m, d_model=d, ffn=ff)
    wg, wu, wd = (torch.randn(d, ff, device=dev, dtype=torch.bfloat16) * 0.05 for _ in range(3))
    x0 = torch.randn(m, d, device=dev, dtype=torch.bfloat16)
    measure.record(rows, writer, fh, row(kind="dense_ffn", name="dense", flops=2 * m * d * ff * 3, **common),
                   lambda: (F.silu(x0 @ wg) * (x0 @ wu)) @ wd.t())
    del wg, wu, wd
    for r in ranks:
        x, ag, au, bg, bu, ad, bd = factors(m, d, ff, r, dev)
        pg, pu = x @ ag, x @ au
        name = f"r{r}"
        measure.record(rows, writer, fh, row(kind="lowrank_inputs", name=name, rank=r, flops=2 * 2 * m * d * r, **common),
                       lambda: (x @ ag, x @ au))
        flops = 2 * m * (2 * r * ff + ff * r + r * d)
        measure.record(rows, writer, fh, row(kind="lowrank_plain", name=name, rank=r, flops=flops, **common),
                       lambda: plain_ffn(pg, pu, bg, bu, ad, bd))
        # (token tile, output tile): narrower output tiles rebuild the gate and up tiles more
        # often; 16 x 1024 (masked to 768) rebuilds them once: the whole output row in registers.
        for block_m, block_n in ((64, 64), (64, 128), (64, 256), (16, 1024)):
            measure.record(rows, writer, fh,
                           row(kind="lowrank_fused", name=f"{name}m{block_m}n{block_n}", rank=r, block_n=block_n,
                               flops=flops, backend="triton", **common),
                           lambda bm=block_m, bn=block_n: fused(pg, pu, bg, bu, ad, bd, bn, block_m=bm))
        del x, ag, au, bg, bu, ad, bd, pg, pu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="two points per family (a smoke test)")
    ap.add_argument("--only", choices=["ds", "lowrank"], help="one family")
    args = ap.parse_args()
    dev = torch.device("cuda")
    os.makedirs(args.out, exist_ok=True)
    measure.FLUSH = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    check_ds(dev)
    rows = []
    with open(os.path.join(args.out, "sparse.csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        if args.only in (None, "ds"):
            measure_ds(rows, writer, fh, dev, args.quick)
        if args.only in (None, "lowrank"):
            measure_lowrank(rows, writer, fh, dev, args.quick)
    print(f"{len(rows)} points written to {args.out}/sparse.csv")


if __name__ == "__main__":
    sys.exit(main())
