"""Float32 attention helpers shared by the PyTorch references.

Memory is bounded by walking the context in key blocks and the queries in row chunks, merging the
per-block (out, lse) pairs exactly (log-sum-exp weights), so the references can check the kernels at
T = 128K on one GPU without materialising [B, H, S, T] scores.
"""
from __future__ import annotations

import torch

BUDGET_BYTES = 1 << 30  # rough cap on fp32 intermediates held at once
NEG_INF = float("-inf")


def softmax_attend(scores: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [..., n] fp32 (-inf = masked), v [..., n, dv] -> (softmax(scores) @ v, logsumexp).

    A row whose scores are all -inf gives out 0 and lse -inf (not NaN).
    """
    lse = torch.logsumexp(scores, dim=-1)
    shift = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    p = torch.exp(scores - shift[..., None])
    return p @ v, lse


def merge_into(acc: torch.Tensor, acc_lse: torch.Tensor, out: torch.Tensor, lse: torch.Tensor) -> None:
    """acc/acc_lse <- exact softmax merge of the two partial results (in place)."""
    new = torch.logaddexp(acc_lse, lse)
    shift = torch.where(torch.isinf(new), torch.zeros_like(new), new)
    acc.mul_(torch.exp(acc_lse - shift)[..., None]).add_(out * torch.exp(lse - shift)[..., None])
    acc_lse.copy_(new)


def dense_attention(q, k, v, sm_scale: float, q_start: int):
    """Causal attention in fp32: q [B,S,H,D], k [B,T,Hk,D], v [B,T,Hk,Dv] with Hk in {1, H}.

    Query i sees keys t <= q_start + i. Returns out [B,S,H,Dv] fp32 and lse [B,S,H] fp32.
    """
    B, S, H, D = q.shape
    T, Hk, Dv = k.shape[1], k.shape[2], v.shape[3]
    acc = torch.zeros(B, H, S, Dv, dtype=torch.float32, device=q.device)
    acc_lse = torch.full((B, H, S), NEG_INF, dtype=torch.float32, device=q.device)
    # Key block: its fp32 copy takes ~1/4 of the budget; row chunk: ~3 score-sized temporaries.
    kb = max(1, min(T, BUDGET_BYTES // 4 // max(1, B * Hk * (D + Dv) * 4)))
    rows = max(1, BUDGET_BYTES // (B * H * kb * 4 * 3))
    pos = q_start + torch.arange(S, device=q.device)
    for t0 in range(0, T, kb):
        t1 = min(T, t0 + kb)
        i_lo = max(0, t0 - q_start)  # earlier queries see nothing in this block
        if i_lo >= S:
            break
        kf = k[:, t0:t1].float().permute(0, 2, 3, 1)  # [B, Hk, D, n]
        vf = v[:, t0:t1].float().permute(0, 2, 1, 3)  # [B, Hk, n, Dv]
        keys = torch.arange(t0, t1, device=q.device)
        for i0 in range(i_lo, S, rows):
            i1 = min(S, i0 + rows)
            qf = q[:, i0:i1].float().permute(0, 2, 1, 3)  # [B, H, r, D]
            scores = (qf @ kf) * sm_scale  # Hk = 1 broadcasts over the heads
            scores.masked_fill_(keys[None, :] > pos[i0:i1, None], NEG_INF)
            out, lse = softmax_attend(scores, vf)
            merge_into(acc[:, :, i0:i1], acc_lse[:, :, i0:i1], out, lse)
            del scores, out
    return acc.permute(0, 2, 1, 3).contiguous(), acc_lse.permute(0, 2, 1).contiguous()
