"""A small trainable lightning indexer (DeepSeek-V3.2's token scorer) for the quality experiments.

I[t, s] = sum_j w[t, j] * heads^-0.5 * ReLU(q_I[t, j] . k_I[s]) * dim^-0.5, with q_I = W_q h_t
(heads x dim), one shared key k_I = W_k h_s (dim) and per-head weights w = W_w h_t, the scalings as in
the report. Causal: I[t, s] = -inf for s > t. Plain PyTorch (autograd), [B, T, heads, T] at once:
meant for the short synthetic sequences, not for 128K contexts (the Triton kernels.indexer is forward-only).
The score formula is the reference indexer's: this module only adds the projections.
"""
from __future__ import annotations

import torch
from torch import nn


class LightningIndexer(nn.Module):
    def __init__(self, hidden_dim: int, heads: int, dim: int):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.wq = nn.Linear(hidden_dim, heads * dim, bias=False)
        self.wk = nn.Linear(hidden_dim, dim, bias=False)
        self.ww = nn.Linear(hidden_dim, heads, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, hidden_dim] -> index scores [B, T, T] float32 (row t = query t, -inf where s > t).

        The scores are the PyTorch reference indexer's (kernels.reference.lightning_indexer, which is
        differentiable), with the two scalings folded into the per-head weights."""
        from kernels.reference.indexer import lightning_indexer

        B, T, _ = hidden.shape
        q = self.wq(hidden).view(B, T, self.heads, self.dim)
        k = self.wk(hidden)
        w = self.ww(hidden).float() * (self.heads ** -0.5 * self.dim ** -0.5)
        return lightning_indexer(q, w, k, q_start=0)
