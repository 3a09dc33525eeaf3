"""Triton masked MHA: DSA's deployed short-prefill mode.

DeepSeek serves short prefills of V3.2-Exp with "a masked MHA mode to simulate DSA": the indexer and
top-k still run, and their selection becomes a mask on ordinary MHA-form attention (qk 192 / v 128,
128 heads) over every visible token. Below a few thousand tokens this beats gathering 576-value
latents for sparse MQA, because MHA does ~3.4x fewer FLOPs per attended pair.

The selection travels as a bitmask (one bit per key, int32 words) that the dense MHA kernel reads
per key block: S * T / 8 bytes, against the [S, k] int32 indices' 4 * S * k.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._attention_args import check_masked_mha_args, check_out_buffer
from kernels._common import apply_interpreter_fixes, check_triton_device, launch_config, next_pow2
from kernels.dense_mha import launch_mha

apply_interpreter_fixes()

# The bitmask kernel: indices per loop trip (the next power of two >= K, at most MAX_BLOCK_K). The
# attention launch itself is configured in kernels/dense_mha.py (CONFIG["..."]["masked"]).
CONFIG = {
    "gpu": dict(MAX_BLOCK_K=1024),
    "interpreter": dict(MAX_BLOCK_K=1024),
}


@triton.jit
def _bits_kernel(IDX, BITS, K, T, stride_ir, stride_br, BLOCK_K: tl.constexpr):
    """One program per query row: set bit idx % 32 of word idx // 32 for each valid index."""
    row = tl.program_id(0).to(tl.int64)
    for k0 in range(0, K, BLOCK_K):
        offs = k0 + tl.arange(0, BLOCK_K)
        idx = tl.load(IDX + row * stride_ir + offs, mask=offs < K, other=-1).to(tl.int32)
        ok = (idx >= 0) & (idx < T)
        safe = tl.where(ok, idx, 0)
        # Distinct indices may share a word: atomic OR merges them.
        tl.atomic_or(BITS + row * stride_br + safe // 32, tl.full([BLOCK_K], 1, tl.int32) << (safe % 32), mask=ok)


def selection_bits(indices: torch.Tensor, T: int) -> torch.Tensor:
    """[B, S, K] token indices (-1 or out of range = none) -> int32 bitmask [B, S, ceil(T / 32)]."""
    B, S, K = indices.shape
    words = triton.cdiv(max(T, 1), 32)
    bits = torch.zeros(B, S, words, dtype=torch.int32, device=indices.device)
    if B * S * K == 0:
        return bits
    idx = indices.reshape(B * S, K)
    if idx.stride(-1) != 1:
        idx = idx.contiguous()
    _bits_kernel[(B * S,)](idx, bits, K, T, idx.stride(0), words, BLOCK_K=min(launch_config(CONFIG)["MAX_BLOCK_K"], max(16, next_pow2(K))))
    return bits


def masked_mha(q, k, v, indices, *, sm_scale, q_start=None, out=None):
    """q [B,S,H,Dqk], k [B,T,H,Dqk], v [B,T,H,Dv], indices [B,S,K] (-1 = empty).

    Query i attends to the keys listed in indices[:, i] that it can see (t <= q_start + i, default
    q_start = T - S). Returns out [B,S,H,Dv] in q's dtype; a row with no such key gives 0.
    `out` (not in the contract): optional preallocated output.
    """
    B, S, H, D, T, Dv, K, scale, q_start = check_masked_mha_args(q, k, v, indices, sm_scale, q_start)
    check_triton_device("q", q)
    check_out_buffer("out", out, (B, S, H, Dv), q.dtype, q.device)
    return launch_mha(q, k, v, scale=scale, q_start=q_start, out=out, select_bits=selection_bits(indices, T))
