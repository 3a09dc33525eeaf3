"""Thin callers of the production kernels in dsa-bench's shapes and semantics (docs/KERNEL_API.md).

Each caller is built once per sweep point with that point's inputs (paged caches, block tables,
scheduler metadata made then, untimed) and is then the zero-argument call, or the stage function,
that the engine times. Nothing here computes attention itself.

Conventions bridged:
- batch: FlashMLA's sparse prefill and DeepGEMM's prefill logits take sequences concatenated along
  tokens (keys of sequence b at rows b * T ..), as vLLM batches prefills; decode kernels take a paged
  cache and a block table (`layouts.py`).
- causal: every visible-token window is [0, q_start + i] for query i; FlashMLA's and FA3's causal
  masks align to the bottom right, which is the same thing for S queries at the end of T.
- top-k: vLLM's kernels return positions within each row's window (-1 where a row has fewer than k
  visible tokens); FlashMLA's decode kernel wants positions in the whole paged cache.
- FlashMLA's sparse kernels read k in tiles: the index list is padded with -1 to a multiple of 128.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from dsa_bench.peers import layouts

TOPK_TILE = 128
TOPK_WORKSPACE_BYTES = 1 << 20  # vLLM's radix top-k workspace (RADIX_TOPK_WORKSPACE_SIZE)
PERSISTENT_TOPK_K = (512, 1024, 2048)  # k values vLLM's persistent / cooperative top-k are built for
COOPERATIVE_MAX_ROWS = 32


def visible_ends(S: int, q_start: int, device) -> torch.Tensor:
    """int32 [S]: tokens query i sees (q_start + i + 1)."""
    return (q_start + 1 + torch.arange(S, device=device)).to(torch.int32)


def pad_topk(indices: torch.Tensor) -> torch.Tensor:
    K = indices.shape[-1]
    pad = -K % TOPK_TILE
    if not pad:
        return indices
    return torch.nn.functional.pad(indices, (0, pad), value=-1)


# --- FlashAttention-3: dense prefill, MHA form ----------------------------------------------------

def fa3_prefill(lib, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, sm_scale: float):
    """q [B, S, H, 192], k [B, T, H, 192], v [B, T, H, 128] -> zero-argument call returning out
    [B, S, H, 128]; causal, bottom-right aligned, so S < T is one chunked-prefill step."""
    B, S, H, _ = q.shape
    T = k.shape[1]
    dev = q.device
    qf, kf, vf = q.reshape(B * S, H, -1), k.reshape(B * T, H, -1), v.reshape(B * T, H, -1)
    cu_q = (torch.arange(B + 1, device=dev, dtype=torch.int32) * S)
    cu_k = (torch.arange(B + 1, device=dev, dtype=torch.int32) * T)
    if lib.extra.get("interface") == "package":
        f = lib.api.flash_attn_varlen_func

        def run():
            r = f(qf, kf, vf, cu_q, cu_k, S, T, softmax_scale=sm_scale, causal=True)
            return (r[0] if isinstance(r, tuple) else r).view(B, S, H, -1)
        return run
    fwd = lib.api.fwd

    def run():
        out = fwd(qf, kf, vf, None, None, None, None, cu_q, cu_k, None, None, None, S, T,
                  None, None, None, None, None, None, None, None, None,
                  sm_scale, True, -1, -1, 0.0, True, None, 0, None, 0, None, 1, 0, None)[0]
        return out.view(B, S, H, -1)
    return run


# --- FlashMLA -------------------------------------------------------------------------------------

class FlashMLADenseDecode:
    """Dense MLA decode over a paged bf16 latent cache: q [B, S, H, 576], kv [B, T, 576]."""

    def __init__(self, lib, q: torch.Tensor, kv: torch.Tensor, *, sm_scale: float, d_v: int):
        B, T = kv.shape[:2]
        self.lib, self.q, self.sm_scale, self.d_v = lib, q, sm_scale, d_v
        self.cache = layouts.paged(kv)
        self.table = layouts.block_table(B, T, kv.device)
        self.seqlens = torch.full((B,), T, dtype=torch.int32, device=kv.device)
        self.meta = self.splits = None  # the tile scheduler's plan, made by the first call and reused
        self.sched = lib.api.get_mla_metadata()[0] if lib.extra.get("interface") == "package" else None

    def __call__(self):
        if self.sched is not None:
            return self.lib.api.flash_mla_with_kvcache(self.q, self.cache, self.table, self.seqlens, self.d_v,
                                                       self.sched, None, softmax_scale=self.sm_scale, causal=True)
        out, lse, meta, splits = self.lib.api.dense_decode_fwd(
            self.q, self.cache, self.d_v, self.seqlens, self.table, self.sm_scale, True,
            self.meta, self.splits, None)
        self.meta, self.splits = meta, splits
        return out, lse


def flashmla_sparse_prefill(lib, q: torch.Tensor, kv: torch.Tensor, indices: torch.Tensor, *,
                            sm_scale: float, d_v: int, out: Optional[torch.Tensor] = None,
                            lse: Optional[torch.Tensor] = None):
    """Sparse MLA over bf16 latents, kernels.sparse_mla's signature: q [B, S, H, 576], kv [B, T, 576],
    indices [B, S, K] (-1 = none) -> (out [B, S, H, d_v], lse [B, S, H] as FlashMLA returns it)."""
    B, S, H, D = q.shape
    T = kv.shape[1]
    idx = indices
    if B > 1:  # sequences concatenated along tokens: sequence b's keys start at b * T
        base = (torch.arange(B, device=q.device, dtype=torch.int32) * T).view(B, 1, 1)
        idx = torch.where(indices >= 0, indices + base, indices)
    flat_idx = pad_topk(idx.to(torch.int32).reshape(B * S, 1, -1))
    flat_q = q.reshape(B * S, H, D)
    flat_kv = kv.reshape(B * T, 1, D)
    target = out.reshape(B * S, H, d_v) if out is not None and B == 1 and out.is_contiguous() else None
    if lib.extra.get("interface") == "package":
        o, _, l = lib.api.flash_mla_sparse_fwd(flat_q, flat_kv, flat_idx, sm_scale, d_v)
    else:
        o, _, l = lib.api.sparse_prefill_fwd(flat_q, flat_kv, flat_idx, sm_scale, d_v, None, None, target)
    o, l = o.view(B, S, H, d_v), l.view(B, S, H)
    if out is not None:
        if target is None or o.data_ptr() != out.data_ptr():
            out.copy_(o)
        lse.copy_(l)
        return out, lse
    return o, l


class FlashMLASparseDecodeFP8:
    """Sparse MLA decode over the FP8 latent cache (656 bytes a token) DeepSeek-V3.2 serves with.

    The cache is written once, at construction, by vLLM's own cache op (`concat_and_cache_mla`,
    format "fp8_ds_mla") when it is loaded, else by layouts.quantize_latents_fp8. `reference_kv()` is
    the de-quantised cache: the latents the kernel attends over, which the correctness check compares
    against (the quantisation itself is the serving format's, not the kernel's, error)."""

    def __init__(self, lib, kv: torch.Tensor, *, sm_scale: float, d_v: int, cache_ops=None):
        B, T, D = kv.shape
        self.lib, self.sm_scale, self.d_v, self.T = lib, sm_scale, d_v, T
        n = layouts.pages_per_sequence(T)
        raw = torch.zeros(B * n, layouts.PAGE, layouts.FP8_TOKEN_BYTES, dtype=torch.uint8, device=kv.device)
        flat = kv.reshape(B * T, D)
        slots = layouts.slot_mapping(B, T, kv.device)
        if cache_ops is not None:
            cache_ops.concat_and_cache_mla(flat[:, :layouts.NOPE].contiguous(), flat[:, layouts.NOPE:].contiguous(),
                                           raw, slots, "fp8_ds_mla", torch.ones(1, device=kv.device))
            self.writer = "vLLM concat_and_cache_mla (fp8_ds_mla)"
        else:
            raw.view(-1, layouts.FP8_TOKEN_BYTES)[slots] = layouts.quantize_latents_fp8(flat)
            self.writer = "dsa_bench.peers.layouts.quantize_latents_fp8"
        self.raw = raw
        self.cache = raw.view(torch.float8_e4m3fn).view(B * n, layouts.PAGE, 1, layouts.FP8_TOKEN_BYTES)
        self.meta = self.splits = None
        self.sched = lib.api.get_mla_metadata()[0] if lib.extra.get("interface") == "package" else None
        self.B = B

    def reference_kv(self) -> torch.Tensor:
        """[B, T, 576] float32: what the kernel reads, de-quantised."""
        n = layouts.pages_per_sequence(self.T)
        return layouts.dequantize_latents_fp8(self.raw).view(self.B, n * layouts.PAGE, -1)[:, :self.T]

    def __call__(self, q: torch.Tensor, kv: torch.Tensor, indices: torch.Tensor, *, sm_scale: float,
                 d_v: int, out: Optional[torch.Tensor] = None, lse: Optional[torch.Tensor] = None):
        """kernels.sparse_mla's signature (kv is ignored: the FP8 cache made from it is read)."""
        idx = pad_topk(layouts.to_cache_indices(indices, self.T))
        if self.sched is not None:
            o, l = self.lib.api.flash_mla_with_kvcache(q, self.cache, None, None, self.d_v, self.sched, None,
                                                       softmax_scale=self.sm_scale, is_fp8_kvcache=True, indices=idx)
        else:
            o, l, meta, splits = self.lib.api.sparse_decode_fwd(
                q, self.cache, idx, None, None, self.meta, self.splits, None, None, None,
                self.d_v, self.sm_scale, None)
            self.meta, self.splits = meta, splits
        l = l.transpose(1, 2)  # [B, H, S] -> [B, S, H]
        if out is not None:
            out.copy_(o)
            lse.copy_(l)
            return out, lse
        return o, l


# --- the lightning indexer: DeepGEMM's FP8 MQA logits --------------------------------------------

@dataclass
class Logits:
    """Indexer scores as the production kernels pass them: rows [rows, width] fp32 (row stride may
    exceed the width), row r's window [starts[r], ends[r]) of its columns; positions are counted from
    the window's start. What lies outside a window is not cleaned (vLLM runs clean_logits=False)."""

    rows: torch.Tensor
    starts: torch.Tensor
    ends: torch.Tensor
    B: int
    S: int


class DeepGEMMIndexer:
    """kernels.lightning_indexer's signature over fp8 queries and keys (one fp32 scale per key).

    Prefill: DeepGEMM fp8_mqa_logits over the sequences' keys concatenated (window of query i of
    sequence b: [b * T, b * T + q_start + i + 1)). Decode: fp8_paged_mqa_logits over the paged FP8
    key cache built once from the keys (`layouts.paged_index_keys`)."""

    def __init__(self, lib, k8: torch.Tensor, k_scale: torch.Tensor, *, phase: str, S: int):
        self.dg, self.phase = lib.api, phase
        B, T, D = k8.shape
        self.B, self.T = B, T
        if phase == "decode":
            self.cache = layouts.paged_index_keys(k8, k_scale)
            self.table = layouts.block_table(B, T, k8.device)
            self.context = visible_ends(S, T - S, k8.device).expand(B, S).contiguous()
            sms = torch.cuda.get_device_properties(k8.device).multi_processor_count if k8.is_cuda else 1
            self.schedule = self.dg.get_paged_mqa_logits_metadata(self.context, layouts.PAGE, sms)
        else:
            self.keys = (k8.reshape(B * T, D), k_scale.reshape(B * T).float().contiguous())

    def __call__(self, q: torch.Tensor, weights: torch.Tensor, k: torch.Tensor, *, k_scale=None,
                 q_start: Optional[int] = None) -> Logits:
        B, S, Hi, Di = q.shape
        qs = self.T - S if q_start is None else q_start
        if self.phase == "decode":
            logits = self.dg.fp8_paged_mqa_logits(q, self.cache, weights.reshape(B * S, Hi), self.context,
                                                  self.table, self.schedule, self.T, False)
            ends = self.context.reshape(-1)
            return Logits(logits, torch.zeros_like(ends), ends, B, S)
        base = (torch.arange(B, device=q.device, dtype=torch.int32) * self.T).view(B, 1)
        starts = base.expand(B, S).reshape(-1).contiguous()
        ends = (base + visible_ends(S, qs, q.device).view(1, S)).reshape(-1).contiguous()
        logits = self.dg.fp8_mqa_logits(q.reshape(B * S, Hi, Di), self.keys, weights.reshape(B * S, Hi),
                                        starts, ends, False)
        return Logits(logits, starts, ends, B, S)


# --- top-k: vLLM's DSA kernels ----------------------------------------------------------------------

class VllmTopk:
    """kernels.topk_indices' signature: int32 [B, S, k] positions of the k largest scores of each row's
    window, -1 padded. Takes `Logits` (the production indexer) or dense [B, S, T] scores (-inf past
    the frontier, this repository's indexer). Prefill rows: top_k_per_row_prefill. Decode (few rows):
    cooperative_topk up to 32 rows, persistent_topk above, for k in 512 / 1024 / 2048 (what they are
    built for, as vLLM picks them), else top_k_per_row_decode."""

    def __init__(self, lib, *, phase: str, device):
        self.ops, self.phase = lib.api, phase
        self.workspace = torch.empty(TOPK_WORKSPACE_BYTES, dtype=torch.uint8, device=device) if phase == "decode" else None

    def __call__(self, scores, topk: int, *, q_start: Optional[int] = None, out: Optional[torch.Tensor] = None):
        if isinstance(scores, Logits):
            rows, starts, ends, B, S = scores.rows, scores.starts, scores.ends, scores.B, scores.S
        else:
            B, S, T = scores.shape
            qs = T - S if q_start is None else q_start
            rows = scores.reshape(B * S, T)
            ends = visible_ends(S, qs, scores.device).repeat(B)
            starts = torch.zeros_like(ends)
        n = B * S
        dst = out.reshape(n, topk) if out is not None and out.is_contiguous() else torch.empty(
            n, topk, dtype=torch.int32, device=rows.device)
        if self.phase == "decode" and topk in PERSISTENT_TOPK_K:
            use_coop = n <= COOPERATIVE_MAX_ROWS and rows.stride(0) % 4 == 0
            op = self.ops.cooperative_topk if use_coop else self.ops.persistent_topk
            op(rows, ends, dst, self.workspace, topk, rows.shape[1])
        elif self.phase == "decode":  # every decode window starts at 0 and ends at T - S + j + 1
            seq = ends.view(B, S)[:, -1].contiguous()
            self.ops.top_k_per_row_decode(rows, S, seq, dst, n, rows.stride(0), rows.stride(1), topk)
        else:
            self.ops.top_k_per_row_prefill(rows, starts, ends, dst, n, rows.stride(0), rows.stride(1), topk)
        res = dst.view(B, S, topk)
        if out is not None and res.data_ptr() != out.data_ptr():
            out.copy_(res)
            return out
        return res
