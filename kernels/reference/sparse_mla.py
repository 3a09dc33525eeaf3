"""PyTorch reference for sparse MLA (MQA over the latents selected by `indices`), in float32."""
from __future__ import annotations

import torch

from kernels._attention_args import check_out_buffer, check_sparse_mla_args
from kernels.reference._attention import BUDGET_BYTES, NEG_INF, softmax_attend


def sparse_mla(q, kv, indices, *, sm_scale, d_v=512, out=None, lse=None):
    """q [B,S,H,D], kv [B,T,D], indices [B,S,K] (-1 = empty; out-of-range also ignored).

    Returns out [B,S,H,d_v] in q's dtype and lse [B,S,H] fp32; rows with no valid index give 0 / -inf.
    out / lse: optional buffers written in place (as the Triton kernel's).
    """
    B, S, H, D, T, K, scale = check_sparse_mla_args(q, kv, indices, sm_scale, d_v)
    check_out_buffer("out", out, (B, S, H, d_v), q.dtype, q.device)
    check_out_buffer("lse", lse, (B, S, H), torch.float32, q.device)
    if out is not None or lse is not None:
        o, l = sparse_mla(q, kv, indices, sm_scale=sm_scale, d_v=d_v)
        if out is not None:
            out.copy_(o)
        if lse is not None:
            lse.copy_(l)
        return (o if out is None else out), (l if lse is None else lse)
    N = B * S
    out = torch.empty(N, H, d_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(N, H, dtype=torch.float32, device=q.device)
    if N == 0:
        return out.view(B, S, H, d_v), lse.view(B, S, H)
    idx = indices.reshape(N, K).long()
    valid = (idx >= 0) & (idx < T)
    batch = torch.arange(B, device=q.device).repeat_interleave(S)[:, None]
    rows_flat = torch.where(valid, idx, 0) + batch * T  # row in kv viewed as [B*T, D]
    kv_flat = kv.reshape(B * T, D)
    q_flat = q.reshape(N, H, D)
    per_row = 4 * (K * D + 3 * H * K + H * (D + d_v))
    step = max(1, BUDGET_BYTES // per_row)
    for r0 in range(0, N, step):
        r1 = min(N, r0 + step)
        g = kv_flat[rows_flat[r0:r1]].float()  # [r, K, D]
        scores = (q_flat[r0:r1].float() @ g.transpose(1, 2)) * scale  # [r, H, K]
        scores.masked_fill_(~valid[r0:r1, None, :], NEG_INF)
        o, l = softmax_attend(scores, g[..., :d_v])
        out[r0:r1] = o.to(q.dtype)
        lse[r0:r1] = l
        del g, scores, o
    return out.view(B, S, H, d_v), lse.view(B, S, H)
