"""DSA composition: lightning indexer -> top-k selection -> sparse MLA.

Written once over the three stage functions so the Triton and the reference compositions are the
same code. Query rows are processed in chunks so the [B, chunk, T] score matrix, not [B, S, T], is
what lives in memory during prefill (a 128K prefill would otherwise hold 64 GiB of fp32 scores).
"""
from __future__ import annotations

from typing import Callable

import torch

from kernels._common import check_tensor


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
        """
        check_tensor("q", q, ndim=4)
        check_tensor("kv", kv, ndim=3)
        if not isinstance(topk_tokens, int) or topk_tokens <= 0:
            raise ValueError(f"topk_tokens: expected a positive int, got {topk_tokens!r}")
        B, S = q.shape[:2]
        T = kv.shape[1]
        base = T - S if q_start is None else q_start
        step = S if not chunk_size else int(chunk_size)
        outs, lses, idxs = [], [], []
        for i0 in range(0, S, step):
            i1 = min(S, i0 + step)
            scores = indexer(
                index_q[:, i0:i1], index_weights[:, i0:i1], index_k,
                k_scale=index_k_scale, q_start=base + i0,
            )
            idx = topk(scores, topk_tokens)
            del scores
            o, lse = sparse(q[:, i0:i1], kv, idx, sm_scale=sm_scale, d_v=d_v)
            outs.append(o)
            lses.append(lse)
            if return_indices:
                idxs.append(idx)
        out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        lse = torch.cat(lses, dim=1) if len(lses) > 1 else lses[0]
        if return_indices:
            return out, lse, (torch.cat(idxs, dim=1) if len(idxs) > 1 else idxs[0])
        return out, lse

    return dsa_attention
