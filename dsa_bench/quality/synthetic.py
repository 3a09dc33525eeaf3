"""Synthetic main-attention inputs with known structure, and the hidden states an indexer learns from.

A fixed random "main model" (positional frequencies, per-head strengths, two random rotations) is drawn
from the seed; every call to `SyntheticGenerator.batch` then draws fresh sequences (needle positions,
needle codes, per-head noise, values) from the caller's torch.Generator. Structure of the logits: see
config.SyntheticSource. Everything is built in an interpretable factor space and rotated by a random
orthogonal matrix, so neither the main attention nor the indexer sees axis-aligned features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import torch

from dsa_bench.quality.config import SyntheticSource, factor_dims


@dataclass
class AttentionBatch:
    """One batch of prefill sequences (query i at position i, q_start = 0), float32."""

    attn_q: torch.Tensor   # [N, T, H, D] main-attention queries (MLA absorbed/MQA form)
    attn_k: torch.Tensor   # [N, T, D] one shared key per token
    values: torch.Tensor   # [N, T, Dv] one shared value per token
    hidden: torch.Tensor   # [N, T, hidden] what the indexer reads
    sm_scale: float

    def slice(self, i0: int, i1: int) -> "AttentionBatch":
        return AttentionBatch(self.attn_q[i0:i1], self.attn_k[i0:i1], self.values[i0:i1], self.hidden[i0:i1],
                              self.sm_scale)


def _orthogonal(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()  # sign fix: a Haar-distributed rotation


class SyntheticGenerator:
    """The fixed main model of a SyntheticSource; `batch(n, g)` draws n sequences."""

    def __init__(self, src: SyntheticSource):
        self.src = src
        dims = factor_dims(src.head_dim)
        self.F, self.dn, self.dc = dims["freqs"], dims["needle"], dims["content"]
        g = torch.Generator().manual_seed(src.seed)
        # Frequencies at quantiles of a half-normal: the mean of cos(w * d) is then close to a Gaussian
        # exp(-(c d / W)^2 / 2) in the distance d, ~0.07 at d = W (c = 2.15), with small far-field ripples.
        c = 2.15 / src.local_window
        self.freqs = torch.tensor(
            [c * NormalDist().inv_cdf(0.5 + 0.5 * (f + 0.5) / self.F) for f in range(self.F)], dtype=torch.float64)
        H = src.heads
        spread = lambda: 0.5 + torch.rand(H, generator=g)  # noqa: E731  (per-head factor in [0.5, 1.5])
        self.local_h = src.local_strength * spread()
        self.sink_h = src.sink_strength * spread()
        self.needle_h = src.needle_strength * spread()
        self.rot_attn = _orthogonal(src.head_dim, g)
        self.rot_hidden = _orthogonal(src.hidden_dim, g)
        self.sm_scale = src.head_dim ** -0.5

    def _positions(self, T: int) -> torch.Tensor:
        """[T, 2F] with pos(t) . pos(s) = mean_f cos(w_f (t - s)) = K(t - s)."""
        ang = torch.arange(T, dtype=torch.float64)[:, None] * self.freqs[None, :]
        return (torch.cat([ang.cos(), ang.sin()], dim=1) / math.sqrt(self.F)).float()

    def batch(self, n: int, g: torch.Generator) -> AttentionBatch:
        s, T, H, D = self.src, self.src.seq_len, self.src.heads, self.src.head_dim
        pos = self._positions(T).expand(n, T, 2 * self.F)
        sink = (torch.arange(T) < s.sinks).float()[None, :, None].expand(n, T, 1)
        # Needles sit in the first half (after the sinks); their queries come later, at least two
        # locality windows away, so only a long-range selection can find them.
        key_code = torch.zeros(n, T, self.dn)
        query_code = torch.zeros(n, T, self.dn)
        gap = int(2 * s.local_window) + 1
        for b in range(n):
            pool = s.sinks + torch.randperm(T // 2 - s.sinks, generator=g)[: s.needles]
            for pos_m in pool.tolist():
                code = torch.randn(self.dn, generator=g)
                code /= code.norm()
                key_code[b, pos_m] = code
                later = torch.arange(pos_m + gap, T)
                pick = later[torch.randperm(len(later), generator=g)[: s.needle_queries]]
                query_code[b, pick] += code
        # Content: unit-variance random logits per head once scaled by 1/sqrt(dc).
        ck = torch.randn(n, T, self.dc, generator=g)
        cq = torch.randn(n, T, H, self.dc, generator=g)

        k_f = torch.cat([pos, sink, key_code, ck / self.dc ** 0.25], dim=-1)  # [n, T, D]
        inv = 1.0 / self.sm_scale  # the attention multiplies q . k by sm_scale: pre-divide
        q_f = torch.cat([
            self.local_h[:, None] * pos[:, :, None, :],
            self.sink_h[:, None].expand(H, 1).expand(n, T, H, 1),
            self.needle_h[:, None] * query_code[:, :, None, :],
            s.noise * cq / self.dc ** 0.25,
        ], dim=-1) * inv  # [n, T, H, D]
        attn_k = k_f @ self.rot_attn
        attn_q = q_f @ self.rot_attn
        values = torch.randn(n, T, D, generator=g)

        ones = torch.ones(n, T, 1)
        h_f = torch.cat([pos * math.sqrt(self.F), sink, ones, key_code, query_code], dim=-1)
        h_f = torch.nn.functional.pad(h_f, (0, s.hidden_dim - h_f.shape[-1]))
        hidden = h_f @ self.rot_hidden
        return AttentionBatch(attn_q.contiguous(), attn_k.contiguous(), values, hidden.contiguous(), self.sm_scale)


class FileSource:
    """Real q/k/values/hidden captured offline (SyntheticSource.path): sequences are drawn from the file."""

    def __init__(self, path: str, sm_scale: float | None = None):
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"quality source file not found: {p} (expected a torch .pt dict with attn_q [N,T,H,D], "
                f"attn_k [N,T,D], values [N,T,Dv], hidden [N,T,hidden], optional sm_scale)")
        data = torch.load(p, map_location="cpu", weights_only=True)
        missing = [k for k in ("attn_q", "attn_k", "values", "hidden") if k not in data]
        if missing:
            raise ValueError(f"{p}: missing tensors {missing}")
        self.data = {k: data[k].float() for k in ("attn_q", "attn_k", "values", "hidden")}
        self.sm_scale = float(data.get("sm_scale", sm_scale or self.data["attn_q"].shape[-1] ** -0.5))
        N, T, H, D = self.data["attn_q"].shape
        if self.data["attn_k"].shape != (N, T, D) or self.data["hidden"].shape[:2] != (N, T) \
                or self.data["values"].shape[:2] != (N, T):
            raise ValueError(f"{p}: inconsistent shapes {[tuple(v.shape) for v in self.data.values()]}")
        self.hidden_dim = self.data["hidden"].shape[-1]

    def batch(self, n: int, g: torch.Generator) -> AttentionBatch:
        idx = torch.randint(0, self.data["attn_q"].shape[0], (n,), generator=g)
        d = {k: v[idx] for k, v in self.data.items()}
        return AttentionBatch(d["attn_q"], d["attn_k"], d["values"], d["hidden"], self.sm_scale)


def make_source(src: SyntheticSource) -> SyntheticGenerator | FileSource:
    return FileSource(src.path) if src.path is not None else SyntheticGenerator(src)
