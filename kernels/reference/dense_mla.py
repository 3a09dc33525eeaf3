"""PyTorch reference for dense (absorbed) MLA: MQA over every visible latent, in float32."""
from __future__ import annotations

from kernels._attention_args import check_dense_mla_args
from kernels.reference._attention import dense_attention


def dense_mla(q, kv, *, sm_scale, d_v=512, q_start=None):
    """q [B,S,H,D], kv [B,T,D]; query i sees kv[:, :q_start + i + 1]. Returns (out in q's dtype, lse fp32)."""
    B, S, H, D, T, scale, q_start = check_dense_mla_args(q, kv, sm_scale, d_v, q_start)
    latents = kv[:, :, None, :]  # one latent per token, shared by all heads
    out, lse = dense_attention(q, latents, latents[..., :d_v], scale, q_start)
    return out.to(q.dtype), lse
