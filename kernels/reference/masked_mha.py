"""PyTorch reference for masked MHA (DSA's short-prefill mode: top-k selection as an MHA mask), in float32."""
from __future__ import annotations

import torch

from kernels._attention_args import check_masked_mha_args, check_out_buffer
from kernels.reference._attention import BUDGET_BYTES, NEG_INF, softmax_attend


def masked_mha(q, k, v, indices, *, sm_scale, q_start=None, out=None):
    """q [B,S,H,Dqk], k [B,T,H,Dqk], v [B,T,H,Dv], indices [B,S,K] (-1 = empty); query i attends to
    its listed keys with t <= q_start + i. Returns out [B,S,H,Dv] in q's dtype (0 for an empty row)."""
    B, S, H, D, T, Dv, K, scale, q_start = check_masked_mha_args(q, k, v, indices, sm_scale, q_start)
    check_out_buffer("out", out, (B, S, H, Dv), q.dtype, q.device)
    res = torch.empty(B, S, H, Dv, dtype=q.dtype, device=q.device) if out is None else out
    kf = k.float().permute(0, 2, 3, 1)  # [B, H, D, T]
    vf = v.float().permute(0, 2, 1, 3)  # [B, H, T, Dv]
    keys = torch.arange(T, device=q.device)
    rows = max(1, BUDGET_BYTES // max(1, B * H * T * 4 * 3))
    for i0 in range(0, S, rows):
        i1 = min(S, i0 + rows)
        idx = indices[:, i0:i1].long()
        ok = (idx >= 0) & (idx < T)
        allowed = torch.zeros(B, i1 - i0, T + 1, dtype=torch.bool, device=q.device)
        allowed.scatter_(2, torch.where(ok, idx, T), True)  # invalid entries land in the spare column
        allowed = allowed[..., :T] & (keys[None, None, :] <= (q_start + torch.arange(i0, i1, device=q.device))[None, :, None])
        scores = (q[:, i0:i1].float().permute(0, 2, 1, 3) @ kf) * scale  # [B, H, r, T]
        scores.masked_fill_(~allowed[:, None], NEG_INF)
        o, _ = softmax_attend(scores, vf)
        res[:, i0:i1] = o.permute(0, 2, 1, 3).to(q.dtype)
        del scores, o
    return res
