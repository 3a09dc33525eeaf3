"""DSA composition: lightning indexer -> top-k selection -> sparse MLA.

Written once over the three stage functions so the Triton and the reference compositions are the
same code. Query rows go in chunks so the [B, chunk, T] fp32 score matrix, not [B, S, T], is what lives
in memory during prefill (a 128K prefill would otherwise hold 64 GiB of scores); each chunk's scores
are freed before its sparse stage, and every chunk writes its output and lse straight into the
preallocated [B, S, ...] tensors (no per-chunk copies to concatenate).
"""
from __future__ import annotations

from typing import Callable

import torch

from kernels._common import check_tensor

# Default chunk: the fp32 scores of one chunk stay within this (4096 rows at T = 128K, B = 1), so the
# DSA workspace beyond its inputs and outputs is ~2 GiB plus the chunk's indices.
SCORE_BUDGET_BYTES = 2 << 30


def default_chunk(B: int, S: int, T: int) -> int:
    """Query rows per chunk so that one chunk's [B, rows, T] fp32 scores fit SCORE_BUDGET_BYTES."""
    return max(1, min(S, SCORE_BUDGET_BYTES // max(1, 4 * B * T)))


def make_dsa_attention(indexer: Callable, topk: Callable, sparse: Callable) -> Callable:
    def dsa_attention(
        q: torch.Tensor,
        kv: torch.Tensor,
        index_q: torch.Tensor,
        index_weights: torch.Tensor,
        index_k: torch.Tensor,
        *,
        topk_tokens: int,
        sm_scale: float,
        d_v: int = 512,
        index_k_scale: torch.Tensor | None = None,
        q_start: int | None = None,
        chunk_size: int | None = None,
        return_indices: bool = False,
    ):
        """DSA attention for S query tokens over T context tokens.

        q [B, S, H, D], kv [B, T, D] (D = d_v + rope dims), index_q [B, S, Hi, Di],
        index_weights [B, S, Hi] fp32, index_k [B, T, Di] (+ index_k_scale [B, T] for fp8).
        Returns (out [B, S, H, d_v], lse [B, S, H]) and, with return_indices, the [B, S, topk] indices.
        chunk_size: query rows per chunk (default: `default_chunk`, ~2 GiB of scores).
        """
        check_tensor("q", q, ndim=4)
        check_tensor("kv", kv, ndim=3)
        if not isinstance(topk_tokens, int) or topk_tokens <= 0:
            raise ValueError(f"topk_tokens: expected a positive int, got {topk_tokens!r}")
        B, S, H = q.shape[:3]
        T = kv.shape[1]
        base = T - S if q_start is None else q_start
        step = int(chunk_size) if chunk_size else default_chunk(B, S, T)
        out = torch.empty(B, S, H, d_v, dtype=q.dtype, device=q.device)
        lse = torch.empty(B, S, H, dtype=torch.float32, device=q.device)
        idxs = torch.empty(B, S, topk_tokens, dtype=torch.int32, device=q.device) if return_indices else None
        for i0 in range(0, S, step):
            i1 = min(S, i0 + step)
            scores = indexer(
                index_q[:, i0:i1], index_weights[:, i0:i1], index_k,
                k_scale=index_k_scale, q_start=base + i0,
            )
            idx = topk(scores, topk_tokens, q_start=base + i0,
                       out=None if idxs is None else idxs[:, i0:i1])
            del scores  # before the sparse stage: its memory is the chunk's largest
            sparse(q[:, i0:i1], kv, idx, sm_scale=sm_scale, d_v=d_v,
                   out=out[:, i0:i1], lse=lse[:, i0:i1])
            del idx
        if return_indices:
            return out, lse, idxs
        return out, lse

    return dsa_attention
