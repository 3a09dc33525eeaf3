"""Triton sparse MLA: MQA over the kv latents that `indices` selects (DSA's attention stage).

The kernel gathers the selected rows itself (no [B, S, K, D] copy), skipping -1 entries; see
kernels/mla/ for the variants (tl, Gluon sm_90), the tiling, the split-K decode path and the launch config (CONFIG
table, shared with dense_mla).
"""
from __future__ import annotations

import torch

from kernels._attention_args import check_out_buffer, check_sparse_mla_args
from kernels._common import check_triton_device
from kernels.mla import mla_forward


def sparse_mla(q, kv, indices, *, sm_scale, d_v=512, num_splits=None, out=None, lse=None):
    """q [B,S,H,D], kv [B,T,D], indices [B,S,K] int32 (-1 = empty; out-of-range entries are ignored).

    Returns out [B,S,H,d_v] in q's dtype and lse [B,S,H] fp32 (natural log of the softmax denominator
    of sm_scale * q.k); a row with no valid index gives out 0 and lse -inf.
    Extras (not in the contract): num_splits forces the split-K factor over K (None = heuristic);
    out / lse are optional preallocated contiguous outputs.
    """
    B, S, H, D, T, K, scale = check_sparse_mla_args(q, kv, indices, sm_scale, d_v)
    check_triton_device("q", q)
    check_out_buffer("out", out, (B, S, H, d_v), q.dtype, q.device)
    check_out_buffer("lse", lse, (B, S, H), torch.float32, q.device)
    return mla_forward(q, kv, indices, scale=scale, d_v=d_v, q_start=0,
                       num_splits=num_splits, out=out, lse=lse)
