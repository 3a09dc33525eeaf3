"""PyTorch reference for causal multi-head attention (the un-absorbed MLA prefill form), in float32."""
from __future__ import annotations

from kernels._attention_args import check_dense_mha_args
from kernels.reference._attention import dense_attention


def dense_mha(q, k, v, *, sm_scale, q_start=None):
    """q [B,S,H,Dqk], k [B,T,H,Dqk], v [B,T,H,Dv]; query i sees keys <= q_start + i. out in q's dtype."""
    B, S, H, D, T, Dv, scale, q_start = check_dense_mha_args(q, k, v, sm_scale, q_start)
    out, _ = dense_attention(q, k, v, scale, q_start)
    return out.to(q.dtype)
