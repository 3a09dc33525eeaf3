"""Selection quality for one top-k set per query row, against the main attention it stands in for.

All functions take boolean selections sel [B, S, T] (True = token kept for that query) and the
target p [B, S, T] (main attention summed over heads, L1-normalised over the visible tokens; see
kernels.indexer_loss.attention_target). Query i sits at absolute position q_start + i (default T - S).
- recall: share of p inside the selection, mean over rows;
- overlap: |sel & true top-k of p| / min(k, visible), mean over rows;
- output_rel_err: ||o_dsa - o_dense|| / ||o_dense|| over the whole batch (Frobenius), o_dsa being the
  main attention restricted to the selection (renormalised per head), o_dense the full causal attention.
"""
from __future__ import annotations

import torch

from kernels.indexer_loss import topk_mask


def _q_start(S: int, T: int, q_start: int | None) -> int:
    return T - S if q_start is None else q_start


def visible_mask(S: int, T: int, q_start: int | None = None, device=None) -> torch.Tensor:
    rows = _q_start(S, T, q_start) + torch.arange(S, device=device)
    return torch.arange(T, device=device)[None, :] <= rows[:, None]  # [S, T]


def select_topk(scores: torch.Tensor, k: int, q_start: int | None = None) -> torch.Tensor:
    """Top-k of each row of scores [B, S, T] among its visible tokens (all of them when fewer than k)."""
    vis = visible_mask(scores.shape[1], scores.shape[2], q_start, scores.device)
    return topk_mask(scores.masked_fill(~vis, float("-inf")), k) & vis


def select_recent(B: int, S: int, T: int, k: int, q_start: int | None = None, device=None) -> torch.Tensor:
    """Baseline: the k most recent visible tokens of each query (itself included)."""
    rows = _q_start(S, T, q_start) + torch.arange(S, device=device)
    pos = torch.arange(T, device=device)[None, :]
    return ((pos <= rows[:, None]) & (pos > rows[:, None] - k)).expand(B, S, T)


def recall(p: torch.Tensor, sel: torch.Tensor) -> float:
    return (p * sel).sum(dim=-1).mean().item()


def overlap(p: torch.Tensor, sel: torch.Tensor, k: int, q_start: int | None = None) -> float:
    vis = visible_mask(p.shape[1], p.shape[2], q_start, p.device)
    true = select_topk(p, k, q_start)
    denom = vis.sum(dim=-1).clamp(max=k).clamp(min=1)  # [S]: min(k, visible)
    return ((true & sel).sum(dim=-1) / denom).mean().item()


def head_probs(attn_q: torch.Tensor, attn_k: torch.Tensor, *, sm_scale: float,
               q_start: int | None = None) -> torch.Tensor:
    """Per-head causal attention probabilities [B, H, S, T] fp32 (small evaluation shapes only)."""
    S, T = attn_q.shape[1], attn_k.shape[1]
    vis = visible_mask(S, T, q_start, attn_q.device)
    logits = torch.einsum("bshd,btd->bhst", attn_q.float(), attn_k.float()) * sm_scale
    return torch.softmax(logits.masked_fill_(~vis, float("-inf")), dim=-1)


def output_rel_err_from_probs(probs: torch.Tensor, values: torch.Tensor, sel: torch.Tensor) -> float:
    """As output_rel_err, from head_probs(): restricting a softmax to a set and renormalising equals the
    softmax over that set, so the dense probabilities are computed once per evaluation set."""
    err = ref = 0.0
    for b in range(probs.shape[0]):  # one sequence at a time keeps the temporaries at [H, S, T]
        v = values[b].float()
        dense = probs[b] @ v
        kept = probs[b] * sel[b]
        sparse = (kept @ v) / kept.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
        err += (sparse - dense).pow(2).sum().item()
        ref += dense.pow(2).sum().item()
    return (err / ref) ** 0.5 if ref > 0 else 0.0


def output_rel_err(attn_q: torch.Tensor, attn_k: torch.Tensor, values: torch.Tensor, sel: torch.Tensor, *,
                   sm_scale: float, q_start: int | None = None) -> float:
    """Relative error of the selected-set attention output; attn_q [B,S,H,D], attn_k [B,T,D], values [B,T,Dv]."""
    return output_rel_err_from_probs(head_probs(attn_q, attn_k, sm_scale=sm_scale, q_start=q_start), values, sel)


def selection_metrics(p: torch.Tensor, probs: torch.Tensor, values: torch.Tensor, sel: torch.Tensor, k: int,
                      q_start: int | None = None) -> dict[str, float]:
    """recall, overlap and output_rel_err of one selection; probs from head_probs() of the same inputs."""
    return {
        "recall": recall(p, sel),
        "overlap": overlap(p, sel, k, q_start),
        "output_rel_err": output_rel_err_from_probs(probs, values, sel),
    }
