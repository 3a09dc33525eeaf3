"""One sweep point's inputs, made lazily and on demand, and its analytic work (FLOPs, bytes).

FLOPs count only work that is really done: causal pairs that are visible, selected indices that are
valid (a row at position p < k selects p + 1 tokens, not k). Bytes are the fewest a kernel must move
through device memory: each input read once, each output written once.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import numpy as np
import torch

from dsa_bench.models import ModelShape
from dsa_bench.ops import Point, flops_per_pair  # noqa: F401 - Point re-exported: it used to live here

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Workload:
    model: ModelShape
    point: Point
    device: torch.device
    dtype: str = "bf16"
    indexer_dtype: str = "bf16"
    decode_tokens: int = 1
    prefill_tokens: Optional[int] = None  # prefill query tokens at the end of T (None = all T)
    seed: int = 0
    prefill_chunk: Optional[int] = None
    masked_mha_below: int = 0  # deployed DSA prefill: masked MHA when the context T <= this
    _cache: dict = field(default_factory=dict, repr=False)

    # --- geometry -------------------------------------------------------------------------------
    @property
    def B(self) -> int:
        return self.point.batch

    @property
    def T(self) -> int:
        return self.point.context

    @property
    def S(self) -> int:
        """Query tokens: the whole sequence in prefill (or its last prefill_tokens: one chunked-prefill
        step), 1 (or 2 with MTP) in decode."""
        if self.point.phase == "prefill":
            return self.T if self.prefill_tokens is None else min(self.prefill_tokens, self.T)
        return min(self.decode_tokens, self.T)

    @property
    def q_start(self) -> int:
        return self.T - self.S

    @property
    def topk(self) -> int:
        return self.point.topk or 0

    @property
    def chunk(self) -> int:
        if self.point.phase != "prefill":
            return self.S
        if self.prefill_chunk:
            return min(self.S, self.prefill_chunk)
        from kernels.dsa import default_chunk  # the kernels' own rule, so stages match the whole call

        return default_chunk(self.B, self.S, self.T)

    @cached_property
    def visible(self) -> np.ndarray:
        """Visible tokens per query row (causal)."""
        return self.q_start + 1 + np.arange(self.S, dtype=np.int64)

    @property
    def visible_pairs(self) -> int:
        return int(self.B * self.visible.sum())

    @property
    def selected_pairs(self) -> int:
        return int(self.B * np.minimum(self.visible, self.topk).sum())

    # --- inputs (lazy; seeded per point so every implementation sees the same data) -----------
    def _randn(self, name: str, *shape: int, scale: float = 1.0, dtype=None) -> torch.Tensor:
        if name not in self._cache:
            # crc32, not hash(): str hashes change between processes, and a resumed run must
            # regenerate the same inputs.
            seed = zlib.crc32(repr((self.seed, name, self.point.key())).encode())
            gen = torch.Generator(device=self.device).manual_seed(seed)
            t = torch.randn(*shape, device=self.device, dtype=torch.float32, generator=gen) * scale
            self._cache[name] = t.to(dtype or DTYPES[self.dtype])
        return self._cache[name]

    def mha_inputs(self):
        """Un-absorbed MLA (what dense prefill runs): q, k [B, S|T, H, 192], v [B, T, H, 128]."""
        m = self.model
        q = self._randn("mha_q", self.B, self.S, m.heads, m.qk_head_dim)
        k = self._randn("mha_k", self.B, self.T, m.heads, m.qk_head_dim)
        v = self._randn("mha_v", self.B, self.T, m.heads, m.v_head_dim)
        return q, k, v

    def mla_inputs(self):
        """Absorbed MLA / MQA: q [B, S, H, 576], latent cache kv [B, T, 576]."""
        m = self.model
        q = self._randn("mla_q", self.B, self.S, m.heads, m.latent_dim)
        kv = self._randn("mla_kv", self.B, self.T, m.latent_dim)
        return q, kv

    def indexer_inputs(self):
        """Indexer q [B, S, Hi, Di], weights [B, S, Hi] fp32, keys [B, T, Di], key scales or None."""
        m = self.model
        w = self._randn("idx_w", self.B, self.S, m.index_heads, scale=m.index_heads ** -0.5 * m.index_head_dim ** -0.5, dtype=torch.float32)
        if self.indexer_dtype == "fp8":
            if "idx_q8" not in self._cache:
                q = self._randn("idx_q", self.B, self.S, m.index_heads, m.index_head_dim, dtype=torch.float32)
                k = self._randn("idx_k", self.B, self.T, m.index_head_dim, dtype=torch.float32)
                # One scale per key (per 128 values, as the official cache does); q's scale folds into w.
                k_scale = k.abs().amax(-1).clamp_min(1e-6) / 448.0
                self._cache["idx_q8"] = q.clamp(-448, 448).to(torch.float8_e4m3fn)
                self._cache["idx_k8"] = (k / k_scale[..., None]).to(torch.float8_e4m3fn)
                self._cache["idx_ks"] = k_scale.contiguous()
                del self._cache["idx_q"], self._cache["idx_k"]
            return self._cache["idx_q8"], w, self._cache["idx_k8"], self._cache["idx_ks"]
        q = self._randn("idx_q", self.B, self.S, m.index_heads, m.index_head_dim)
        k = self._randn("idx_k", self.B, self.T, m.index_head_dim)
        return q, w, k, None

    def release(self) -> None:
        self._cache.clear()

    # --- analytic work ---------------------------------------------------------------------------
    @property
    def elem(self) -> int:
        return torch.finfo(DTYPES[self.dtype]).bits // 8

    @property
    def index_elem(self) -> int:
        return 1 if self.indexer_dtype == "fp8" else self.elem

    def kv_cache_bytes(self, family: str) -> int:
        """Bytes cached per sequence batch: the MLA latent, plus DSA's indexer key (and fp8 scale)."""
        m = self.model
        latent = self.B * self.T * m.latent_dim * self.elem
        if family == "dense":
            return latent
        scale = 4 if self.indexer_dtype == "fp8" else 0
        return latent + self.B * self.T * (m.index_head_dim * self.index_elem + scale)

    def work(self, kind: str) -> tuple[int, int]:
        """(FLOPs, bytes) of one stage: dense_mha, dense_mla, indexer, topk, sparse_mla, masked_mha,
        and of DSA's whole call: dsa (sparse MLA) or dsa_masked_mha (masked MHA).

        masked_mha computes every visible pair (the mask removes them after the dot), so it counts as
        dense MHA plus the selection bitmask (written once, read once per head)."""
        m, B, S, T, e = self.model, self.B, self.S, self.T, self.elem
        H, D, dv = m.heads, m.latent_dim, m.kv_lora_rank
        if kind == "dense_mha":
            flops = self.visible_pairs * flops_per_pair(m, kind)
            nbytes = e * B * H * (S * m.qk_head_dim + T * m.qk_head_dim + T * m.v_head_dim + S * m.v_head_dim)
            return flops, nbytes
        if kind == "dense_mla":
            flops = self.visible_pairs * flops_per_pair(m, kind)
            nbytes = e * B * (S * H * D + T * D + S * H * dv) + 4 * B * S * H
            return flops, nbytes
        if kind == "indexer":
            Hi, Di = m.index_heads, m.index_head_dim
            flops = self.visible_pairs * flops_per_pair(m, kind)
            scale = 4 * B * T if self.indexer_dtype == "fp8" else 0
            nbytes = self.index_elem * B * (S * Hi * Di + T * Di) + 4 * B * S * Hi + scale + 4 * B * S * T
            return flops, nbytes
        if kind == "topk":
            return 0, 4 * B * S * T + 4 * B * S * self.topk
        if kind == "sparse_mla":
            flops = self.selected_pairs * flops_per_pair(m, kind)
            # Latents gathered: each batch's selected rows, at most every token once (a lower bound).
            per_batch = min(T * 1.0, float(np.minimum(self.visible, self.topk).sum()))
            gathered = int(B * per_batch)
            nbytes = e * (B * S * H * D + gathered * D + B * S * H * dv) + 4 * B * S * (self.topk + H)
            return flops, nbytes
        if kind == "masked_mha":
            flops, nbytes = self.work("dense_mha")
            words = B * S * ((T + 31) // 32) * 4
            return flops, nbytes + 4 * B * S * self.topk + words * (1 + H)
        if kind in ("dsa", "dsa_masked_mha"):
            attn = "sparse_mla" if kind == "dsa" else "masked_mha"
            parts = [self.work(k) for k in ("indexer", "topk", attn)]
            return sum(p[0] for p in parts), sum(p[1] for p in parts)
        raise ValueError(f"unknown work kind {kind!r}")
