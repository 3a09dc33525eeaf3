"""Top-k selection in plain PyTorch: the check for kernels.topk (and, unchunked, its torch baseline)."""
from __future__ import annotations

import torch

from kernels._indexer_args import check_topk_args

_CHUNK_ELEMS = 1 << 26  # scores per chunk of rows


def topk_rows(scores: torch.Tensor, topk: int, out: torch.Tensor) -> torch.Tensor:
    """torch.topk over the last dim into `out`; picks that are -inf (or NaN) and missing slots become -1."""
    kk = min(topk, scores.shape[-1])
    vals, idx = torch.topk(scores, kk, dim=-1, sorted=False)
    out[..., :kk] = idx.to(torch.int32).masked_fill_(~(vals > float("-inf")), -1)
    out[..., kk:] = -1
    return out


def topk_indices(scores: torch.Tensor, topk: int, *, q_start: int | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """int32 [B, S, topk]: positions of the topk largest finite scores per row (any order), -1 padded.

    With q_start, row i only considers positions <= q_start + i (the rest counts as -inf)."""
    B, S, T = check_topk_args(scores, topk, out, triton=False, q_start=q_start)
    if out is None:
        out = torch.empty(B, S, topk, dtype=torch.int32, device=scores.device)
    chunk = max(1, _CHUNK_ELEMS // max(1, T))
    for b in range(B):
        for i0 in range(0, S, chunk):
            i1 = min(S, i0 + chunk)
            rows = scores[b, i0:i1]
            if q_start is not None:
                frontier = q_start + torch.arange(i0, i1, device=scores.device)
                pos = torch.arange(T, device=scores.device)
                rows = rows.masked_fill(pos[None, :] > frontier[:, None], float("-inf"))
            topk_rows(rows, topk, out[b, i0:i1])
    return out
