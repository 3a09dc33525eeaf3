"""The torch.topk baseline for the top-k stage, with kernels.topk's contract (torch only, no Triton).

What a framework would call: one torch.topk over all rows. dsa-bench measures the Triton top-k against it."""
from __future__ import annotations

import torch

from kernels._indexer_args import check_topk_args
from kernels.reference.topk import topk_rows


def topk_indices_torch(scores: torch.Tensor, topk: int, *, q_start: int | None = None,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """Baseline with the same contract: one torch.topk over all rows (what a framework would call).

    q_start is accepted for the contract but not used to shorten rows: torch.topk reads whole rows
    (the causal indexer has put -inf past each row's frontier, which it then ignores)."""
    B, S, T = check_topk_args(scores, topk, out, triton=False, q_start=q_start)
    if out is None:
        out = torch.empty(B, S, topk, dtype=torch.int32, device=scores.device)
    return topk_rows(scores, topk, out)
