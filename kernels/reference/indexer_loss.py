"""The lightning indexer's training objective (DeepSeek-V3.2 report) in plain float32 PyTorch.

Target: p_t = the main attention's probabilities summed over heads and L1-normalised over the visible
tokens (each head's softmax sums to 1, so this is the head mean). Loss per query row:
- dense warm-up (topk=None): KL(p_t || softmax(I_t)) over the visible (causal) tokens;
- sparse stage (topk=k): S_t = top-k of I_t among the visible tokens (all of them when k >= visible);
  p_t and softmax(I_t) are both renormalised over S_t and the KL is taken there.
The loss is the mean over all B*S query rows. The main attention is detached: gradients reach only
index_scores (and, through them, the indexer's parameters).

The main attention is MLA's absorbed (MQA) form used throughout the project: q [B,S,H,D] and one shared
key per token k [B,T,D]; logits = sm_scale * q_h . k. This reference holds [B,H,S,T] fp32: small shapes
only. kernels.indexer_loss computes the same thing in chunks (and with a fused Triton target kernel).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels._attention_args import _check_scale
from kernels._common import FLOAT_DTYPES, check_same_device, check_tensor, resolve_q_start

LOSS_DTYPES = (torch.float32, torch.float64)  # index scores / compute dtype (float64 for gradcheck)


@dataclass(frozen=True)
class LossDims:
    B: int
    S: int
    H: int
    D: int
    T: int
    q_start: int
    sm_scale: float


def check_indexer_loss_args(index_scores, attn_q, attn_k, sm_scale, q_start, topk) -> LossDims:
    """Shared by this reference and kernels.indexer_loss so both raise the same ValueErrors."""
    check_tensor("attn_q", attn_q, ndim=4, dtypes=FLOAT_DTYPES + (torch.float64,))
    B, S, H, D = attn_q.shape
    check_tensor("attn_k", attn_k, ndim=3, dtypes=(attn_q.dtype,), shape=(B, None, D))
    T = attn_k.shape[1]
    if index_scores is not None:
        check_tensor("index_scores", index_scores, ndim=3, dtypes=LOSS_DTYPES, shape=(B, S, T))
    if topk is not None and (not isinstance(topk, int) or isinstance(topk, bool) or topk <= 0):
        raise ValueError(f"topk: expected None or a positive int, got {topk!r}")
    check_same_device(index_scores=index_scores, attn_q=attn_q, attn_k=attn_k)
    return LossDims(B, S, H, D, T, resolve_q_start(q_start, S, T), _check_scale(sm_scale))


def attention_target(attn_q: torch.Tensor, attn_k: torch.Tensor, *, sm_scale: float,
                     q_start: int | None = None) -> torch.Tensor:
    """p [B,S,T] fp32: main-attention probabilities summed over heads, L1-normalised; 0 where invisible."""
    d = check_indexer_loss_args(None, attn_q, attn_k, sm_scale, q_start, None)
    dt = torch.float64 if attn_q.dtype == torch.float64 else torch.float32
    q, k = attn_q.detach().to(dt), attn_k.detach().to(dt)
    logits = torch.einsum("bshd,btd->bhst", q, k) * d.sm_scale
    vis = _visible(d.S, d.T, d.q_start, q.device)
    probs = torch.softmax(logits.masked_fill(~vis, float("-inf")), dim=-1)
    p = probs.sum(dim=1)
    return p / p.sum(dim=-1, keepdim=True)


def indexer_kl_loss(
    index_scores: torch.Tensor,
    attn_q: torch.Tensor,
    attn_k: torch.Tensor,
    *,
    sm_scale: float,
    q_start: int | None = None,
    topk: int | None = None,
) -> torch.Tensor:
    """Scalar KL loss (mean over query rows); see the module docstring.

    index_scores [B,S,T] float32/float64 (finite at visible positions; invisible ones are ignored),
    attn_q [B,S,H,D], attn_k [B,T,D] (one dtype), query i at absolute position q_start + i (default T-S)
    sees tokens s <= q_start + i. Computes in float64 when index_scores is float64, else float32.
    """
    d = check_indexer_loss_args(index_scores, attn_q, attn_k, sm_scale, q_start, topk)
    dt = torch.float64 if index_scores.dtype == torch.float64 else torch.float32
    p = attention_target(attn_q, attn_k, sm_scale=sm_scale, q_start=d.q_start).to(dt)
    scores = index_scores.to(dt)
    sel = _visible(d.S, d.T, d.q_start, scores.device).expand(d.B, d.S, d.T)
    if topk is not None:
        sel = _topk_mask(scores.detach().masked_fill(~sel, float("-inf")), topk) & sel
        p = p * sel
        p = p / p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(dt).tiny)
    log_q = torch.log_softmax(scores.masked_fill(~sel, float("-inf")), dim=-1)
    # Zero the unselected terms before the product so 0 * -inf never appears (and no NaN gradient).
    terms = torch.xlogy(p, p) - p * log_q.masked_fill(~sel, 0.0)
    return terms.sum(dim=-1).mean()


def _visible(S: int, T: int, q_start: int, device) -> torch.Tensor:
    rows = q_start + torch.arange(S, device=device)
    return torch.arange(T, device=device)[None, :] <= rows[:, None]  # [S, T]


def _topk_mask(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """Boolean mask of the top-k finite entries of each row (all finite ones when fewer than k)."""
    kk = min(topk, scores.shape[-1])
    vals, idx = torch.topk(scores, kk, dim=-1)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    return mask.scatter_(-1, idx, vals > float("-inf"))
