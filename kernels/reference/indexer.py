"""Lightning indexer in plain PyTorch (float32), the check for kernels.indexer.

Query rows go in chunks so the [chunk, Hi, T] logits stay near 256 MiB even at T = 128K.
On CUDA this relies on torch's default of no TF32 for float32 matmuls.
"""
from __future__ import annotations

import torch

from kernels._indexer_args import check_indexer_args

_CHUNK_ELEMS = 1 << 26  # fp32 elements of the per-chunk logits (256 MiB)


def lightning_indexer(
    q: torch.Tensor,
    weights: torch.Tensor,
    k: torch.Tensor,
    *,
    k_scale: torch.Tensor | None = None,
    q_start: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """scores[b,i,s] = sum_j weights[b,i,j] * relu(q[b,i,j] . k[b,s]) * k_scale[b,s]; -inf if s > q_start+i."""
    d = check_indexer_args(q, weights, k, k_scale, q_start, out, triton=False)
    if out is None:
        out = torch.empty(d.B, d.S, d.T, dtype=torch.float32, device=q.device)
    chunk = max(1, _CHUNK_ELEMS // max(1, d.Hi * d.T))
    pos = torch.arange(d.T, device=q.device)
    for b in range(d.B):
        kb = k[b].float()  # [T, Di]
        for i0 in range(0, d.S, chunk):
            i1 = min(d.S, i0 + chunk)
            logits = torch.einsum("ihd,td->iht", q[b, i0:i1].float(), kb).relu_()
            sc = torch.einsum("iht,ih->it", logits, weights[b, i0:i1])
            del logits
            if k_scale is not None:
                sc = sc * k_scale[b][None, :]
            rows = d.q_start + torch.arange(i0, i1, device=q.device)
            sc = sc.masked_fill(pos[None, :] > rows[:, None], float("-inf"))
            out[b, i0:i1] = sc
    return out
