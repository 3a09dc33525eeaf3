"""The lightning indexer's KL training objective, computed in query-row and head chunks.

Same contract as kernels.reference.indexer_loss (see there for the maths): index_scores [B,S,T],
main attention in MLA's absorbed form attn_q [B,S,H,D], attn_k [B,T,D]; dense warm-up (topk=None) or
sparse stage (topk=k); scalar loss = mean over the B*S query rows. Gradients reach index_scores only.

Memory: query rows go in chunks of `row_chunk`, so besides index_scores and one gradient buffer of its
size, nothing larger than [B, row_chunk, T] is held. The target p (head mean of the main attention) for a
row chunk comes either from
- `_target_kernel` (Triton): one program per query row, all heads of the row as the M of the dots, two
  passes over the visible key blocks (pass 1: per-head running max / sum; pass 2: probabilities summed
  over heads in registers). Only [T] values per row reach memory; no per-head probabilities do.
- a PyTorch fallback that walks heads in chunks of `head_chunk`, holding [B, row_chunk, head_chunk, T].
The loss and its gradient (softmax(I) * sum(p) - p over the selected set, divided by B*S) are computed in
the forward pass of an autograd.Function and the gradient kept for backward: no autograd graph of the
chunk temporaries survives, and attn_q / attn_k never receive gradients (the report's detached input).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import (FLOAT_DTYPES, UPCAST_DOT, apply_interpreter_fixes, check_triton_device, dot_precision,
                             next_pow2)
from kernels.reference.indexer_loss import LossDims, check_indexer_loss_args

apply_interpreter_fixes()

LOG2E = 1.4426950408889634
BUDGET_ELEMS = 1 << 26  # fp32 elements of the largest chunk temporary (256 MiB)
BLOCK_T = 64
MAX_BLOCK_H = 64
MAX_BLOCK_D = 64


@triton.jit
def _logits_block(q_base, k_base, offs_h, h_ok, offs_t, t_ok, D, sqh, sqd, skt, skd,
                  BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, N_DB: tl.constexpr,
                  UPCAST_DOT: tl.constexpr, DOT_PREC: tl.constexpr):
    """[BLOCK_H, BLOCK_T] fp32 q_h . k_t, the head dim walked in N_DB blocks (D = 576 fits no power of 2).

    A runtime loop, not static_range: the software pipeline then buffers one (q, k) block pair per
    stage instead of all N_DB of them (an unrolled D = 576 needed 433 KB of shared memory on an H200)."""
    acc = tl.zeros((BLOCK_H, BLOCK_T), dtype=tl.float32)
    for db in range(N_DB):
        offs_d = db * BLOCK_D + tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        q = tl.load(q_base + offs_h[:, None] * sqh + offs_d[None, :] * sqd,
                    mask=h_ok[:, None] & d_ok[None, :], other=0.0)
        k = tl.load(k_base + offs_t[:, None] * skt + offs_d[None, :] * skd,
                    mask=t_ok[:, None] & d_ok[None, :], other=0.0)
        if UPCAST_DOT:  # the CPU interpreter's bf16 dot is wrong; fp32 is exact
            q = q.to(tl.float32)
            k = k.to(tl.float32)
        acc = tl.dot(q, tl.trans(k), acc, input_precision=DOT_PREC)
    return acc


@triton.jit
def _target_kernel(
    q_ptr, k_ptr, p_ptr,
    T, H, D, q_start, row0, qk_scale, inv_h,
    sqb, sqs, sqh, sqd, skb, skt, skd, spb, sps, spt,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, N_HB: tl.constexpr,
    N_DB: tl.constexpr, UPCAST_DOT: tl.constexpr, DOT_PREC: tl.constexpr,
):
    r = tl.program_id(0)  # row within the chunk
    b = tl.program_id(1).to(tl.int64)
    i = row0 + r
    hi = tl.minimum(T, q_start + i + 1)  # keys [0, hi) are visible to this row
    q_base = q_ptr + b * sqb + i.to(tl.int64) * sqs
    k_base = k_ptr + b * skb
    p_base = p_ptr + b * spb + r.to(tl.int64) * sps
    for hb in tl.static_range(N_HB):
        offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        h_ok = offs_h < H
        # Pass 1: per-head max and sum of exp2 over the visible keys (log2 units).
        m_i = tl.full((BLOCK_H,), float("-inf"), tl.float32)
        l_i = tl.zeros((BLOCK_H,), dtype=tl.float32)
        for t0 in range(0, hi, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)
            t_ok = offs_t < hi
            s = _logits_block(q_base, k_base, offs_h, h_ok, offs_t, t_ok, D, sqh, sqd, skt, skd,
                              BLOCK_H, BLOCK_D, BLOCK_T, N_DB, UPCAST_DOT, DOT_PREC)
            s = tl.where(t_ok[None, :], s * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            l_i = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), 1)
            m_i = m_new
        inv_l = tl.where(h_ok, 1.0 / l_i, 0.0) * inv_h  # padded heads contribute nothing
        # Pass 2: the same logits again, now normalised; the head sum is a column sum in registers.
        for t0 in range(0, hi, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)
            t_ok = offs_t < hi
            s = _logits_block(q_base, k_base, offs_h, h_ok, offs_t, t_ok, D, sqh, sqd, skt, skd,
                              BLOCK_H, BLOCK_D, BLOCK_T, N_DB, UPCAST_DOT, DOT_PREC)
            s = tl.where(t_ok[None, :], s * qk_scale, float("-inf"))
            col = tl.sum(tl.exp2(s - m_i[:, None]) * inv_l[:, None], 0)
            if hb > 0:  # later head blocks add to what earlier ones of this same program wrote
                col += tl.load(p_base + offs_t * spt, mask=t_ok, other=0.0)
            tl.store(p_base + offs_t * spt, col, mask=t_ok)


def _target_rows_triton(attn_q, attn_k, d: LossDims, i0: int, i1: int) -> torch.Tensor:
    check_triton_device("attn_q", attn_q)
    r = i1 - i0
    p = torch.zeros(d.B, r, d.T, dtype=torch.float32, device=attn_q.device)  # invisible keys stay 0
    if p.numel() == 0:
        return p
    block_h = min(MAX_BLOCK_H, max(16, next_pow2(d.H)))  # heads are the dot's M: >= 16
    block_d = min(MAX_BLOCK_D, max(16, next_pow2(d.D)))
    q, k = attn_q.detach(), attn_k.detach()
    _target_kernel[(r, d.B)](
        q, k, p,
        d.T, d.H, d.D, d.q_start, i0, d.sm_scale * LOG2E, 1.0 / d.H,
        *q.stride(), *k.stride(), *p.stride(),
        BLOCK_H=block_h, BLOCK_D=block_d, BLOCK_T=BLOCK_T,
        N_HB=triton.cdiv(d.H, block_h), N_DB=triton.cdiv(d.D, block_d),
        UPCAST_DOT=UPCAST_DOT, DOT_PREC=dot_precision(q.dtype),
        num_warps=4,
    )
    return p


def _visible(d: LossDims, i0: int, i1: int, device) -> torch.Tensor:
    rows = d.q_start + torch.arange(i0, i1, device=device)
    return torch.arange(d.T, device=device)[None, :] <= rows[:, None]  # [r, T]


def _target_rows_torch(attn_q, attn_k, d: LossDims, i0: int, i1: int, head_chunk: int) -> torch.Tensor:
    dt = torch.float64 if attn_q.dtype == torch.float64 else torch.float32
    k = attn_k.detach().to(dt)
    invisible = ~_visible(d, i0, i1, attn_q.device)[None, :, None, :]
    p = torch.zeros(d.B, i1 - i0, d.T, dtype=dt, device=attn_q.device)
    for h0 in range(0, d.H, head_chunk):
        q = attn_q.detach()[:, i0:i1, h0:h0 + head_chunk].to(dt)
        logits = torch.einsum("brhd,btd->brht", q, k).mul_(d.sm_scale).masked_fill_(invisible, float("-inf"))
        p += torch.softmax(logits, dim=-1).sum(dim=2)
        del logits
    return p.div_(d.H)


def _resolve_impl(impl: str, attn_q: torch.Tensor) -> str:
    if impl == "auto":
        return "triton" if attn_q.is_cuda and attn_q.dtype in FLOAT_DTYPES else "torch"
    if impl not in ("triton", "torch"):
        raise ValueError(f"impl: expected 'auto', 'triton' or 'torch', got {impl!r}")
    if impl == "triton" and attn_q.dtype not in FLOAT_DTYPES:
        raise ValueError(f"attn_q: the Triton target kernel takes bf16/fp16/fp32, got {attn_q.dtype}")
    return impl


def _chunks(d: LossDims, row_chunk: int | None, head_chunk: int | None) -> tuple[int, int]:
    # ~8 [B, r, T] temporaries a row chunk; the torch target holds [B, r, head_chunk, T] on top.
    for name, v in (("row_chunk", row_chunk), ("head_chunk", head_chunk)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise ValueError(f"{name}: expected None or a positive int, got {v!r}")
    rc = row_chunk if row_chunk is not None else max(1, BUDGET_ELEMS // max(1, 8 * d.B * d.T))
    hc = head_chunk if head_chunk is not None else max(1, min(d.H, BUDGET_ELEMS // max(1, d.B * rc * d.T)))
    return rc, hc


def _target_rows(attn_q, attn_k, d, i0, i1, impl, head_chunk) -> torch.Tensor:
    if impl == "triton":
        return _target_rows_triton(attn_q, attn_k, d, i0, i1)
    return _target_rows_torch(attn_q, attn_k, d, i0, i1, head_chunk)


def attention_target(attn_q: torch.Tensor, attn_k: torch.Tensor, *, sm_scale: float, q_start: int | None = None,
                     impl: str = "auto", row_chunk: int | None = None,
                     head_chunk: int | None = None) -> torch.Tensor:
    """p [B,S,T]: main attention summed over heads, L1-normalised over the visible keys, 0 elsewhere.

    float32 (float64 when attn_q is float64 on the torch path). impl: 'auto' (Triton on CUDA, else
    torch), 'triton' (CUDA, or CPU under TRITON_INTERPRET=1) or 'torch'."""
    d = check_indexer_loss_args(None, attn_q, attn_k, sm_scale, q_start, None)
    impl = _resolve_impl(impl, attn_q)
    rc, hc = _chunks(d, row_chunk, head_chunk)
    parts = [_target_rows(attn_q, attn_k, d, i0, min(d.S, i0 + rc), impl, hc) for i0 in range(0, d.S, rc)]
    if not parts:
        return torch.zeros(d.B, 0, d.T, dtype=torch.float32, device=attn_q.device)
    return torch.cat(parts, dim=1)


def topk_mask(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """Boolean mask of each row's top-k finite entries (all finite ones when a row has fewer than k)."""
    kk = min(topk, scores.shape[-1])
    vals, idx = torch.topk(scores, kk, dim=-1)
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, vals > float("-inf"))


class _IndexerKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, index_scores, attn_q, attn_k, d, topk, impl, rc, hc):
        dt = torch.float64 if index_scores.dtype == torch.float64 else torch.float32
        n_rows = d.B * d.S
        want_grad = index_scores.requires_grad
        grad = torch.zeros(d.B, d.S, d.T, dtype=dt, device=index_scores.device) if want_grad else None
        total = torch.zeros((), dtype=torch.float64, device=index_scores.device)
        for i0 in range(0, d.S, rc):
            i1 = min(d.S, i0 + rc)
            p = _target_rows(attn_q, attn_k, d, i0, i1, impl, hc).to(dt)
            scores = index_scores[:, i0:i1].detach().to(dt)
            sel = _visible(d, i0, i1, scores.device).expand_as(scores)
            if topk is not None:
                sel = topk_mask(scores.masked_fill(~sel, float("-inf")), topk) & sel
                p.mul_(sel)
                p.div_(p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(dt).tiny))
            log_q = torch.log_softmax(scores.masked_fill(~sel, float("-inf")), dim=-1)
            total += (torch.xlogy(p, p) - p * log_q.masked_fill(~sel, 0.0)).sum(dtype=torch.float64)
            if want_grad:
                # d/dI_s of sum_s p_s log p_s - p_s log_softmax(I)_s = softmax(I)_s * sum(p) - p_s on the set
                # (sum(p) is 1 except for a row whose selected p all underflowed to 0).
                q = log_q.exp_()
                grad[:, i0:i1] = (q * p.sum(dim=-1, keepdim=True) - p) / n_rows
            del p, scores, sel, log_q
        ctx.save_for_backward(grad)
        return (total / max(1, n_rows)).to(dt)

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None, None, None, None, None, None, None


def indexer_kl_loss(
    index_scores: torch.Tensor,
    attn_q: torch.Tensor,
    attn_k: torch.Tensor,
    *,
    sm_scale: float,
    q_start: int | None = None,
    topk: int | None = None,
    impl: str = "auto",
    row_chunk: int | None = None,
    head_chunk: int | None = None,
) -> torch.Tensor:
    """Scalar KL loss, differentiable w.r.t. index_scores only (same contract as the reference).

    index_scores [B,S,T] float32/float64 (finite at visible positions), attn_q [B,S,H,D], attn_k [B,T,D];
    query i at absolute position q_start + i (default T-S) sees tokens s <= q_start + i. topk=None: dense
    warm-up; topk=k: KL restricted to the top-k of index_scores. impl: see attention_target. row_chunk /
    head_chunk override the memory-derived chunk sizes (tests use odd ones)."""
    d = check_indexer_loss_args(index_scores, attn_q, attn_k, sm_scale, q_start, topk)
    impl = _resolve_impl(impl, attn_q)
    rc, hc = _chunks(d, row_chunk, head_chunk)
    return _IndexerKL.apply(index_scores, attn_q, attn_k, d, topk, impl, rc, hc)
