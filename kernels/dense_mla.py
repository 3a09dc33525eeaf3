"""Triton dense MLA (absorbed form): MQA over every visible latent, what dense decode runs.

Same kernel as sparse_mla with the gather turned off (kernels/mla/): each query row loops
only over tokens it can see, and decode splits the context over SMs with a combine kernel. Launch
config: CONFIG in kernels/mla/tl_kernel.py (shared with sparse_mla).
"""
from __future__ import annotations

import torch

from kernels._attention_args import check_dense_mla_args, check_out_buffer
from kernels._common import check_triton_device
from kernels.mla import mla_forward


def dense_mla(q, kv, *, sm_scale, d_v=512, q_start=None, num_splits=None, out=None, lse=None):
    """q [B,S,H,D], kv [B,T,D]; query i sees kv[:, :q_start + i + 1] (q_start defaults to T - S).

    Returns out [B,S,H,d_v] in q's dtype and lse [B,S,H] fp32. Extras (not in the contract):
    num_splits forces the split-K factor over T; out / lse are optional preallocated outputs.
    """
    B, S, H, D, T, scale, q_start = check_dense_mla_args(q, kv, sm_scale, d_v, q_start)
    check_triton_device("q", q)
    check_out_buffer("out", out, (B, S, H, d_v), q.dtype, q.device)
    check_out_buffer("lse", lse, (B, S, H), torch.float32, q.device)
    return mla_forward(q, kv, None, scale=scale, d_v=d_v, q_start=q_start,
                       num_splits=num_splits, out=out, lse=lse)
