"""CPU stand-ins for the production kernels, written from their documented semantics (the vLLM 0.26
Python wrappers and docstrings, ../shared/peers/README.md), computing with the PyTorch references.

They test dsa-bench's side of the bridge (batching, windows, paging, index offsets, FP8 layout,
out= handling) on the CPU; whether the real kernels behave as these do is what the GPU run checks.
Outside each row's window the fake logits are huge, so a wrong window selects garbage and fails.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

import kernels.reference as ref
from dsa_bench.peers import layouts
from dsa_bench.peers.libraries import Library

GARBAGE = 1e30


def _rows(logits, n, s0, s1, width):
    return torch.as_strided(logits, (n, width), (s0, s1))


def _select(row: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.full((k,), -1, dtype=torch.int32)
    take = min(k, row.numel())
    if take:
        out[:take] = row.topk(take).indices.to(torch.int32)
    return out


class FakeVllmOps:
    def top_k_per_row_prefill(self, logits, starts, ends, out, n, s0, s1, k):
        rows = _rows(logits, n, s0, s1, logits.shape[-1])
        for r in range(n):
            out[r] = _select(rows[r, int(starts[r]):int(ends[r])], k)

    def top_k_per_row_decode(self, logits, next_n, seq_lens, out, n, s0, s1, k):
        rows = _rows(logits, n, s0, s1, logits.shape[-1])
        for r in range(n):
            end = int(seq_lens[r // next_n]) - next_n + r % next_n + 1
            out[r] = _select(rows[r, :end], k)

    def persistent_topk(self, logits, lengths, out, workspace, k, max_seq_len):
        flat = lengths.reshape(-1)
        for r in range(out.shape[0]):
            out[r] = _select(logits[r, :int(flat[r])], k)

    cooperative_topk = persistent_topk


class FakeCacheOps:
    def concat_and_cache_mla(self, kv_c, k_pe, kv_cache, slots, fmt, scale):
        assert fmt == "fp8_ds_mla"
        kv_cache.view(-1, layouts.FP8_TOKEN_BYTES)[slots] = layouts.quantize_latents_fp8(torch.cat([kv_c, k_pe], -1))


class FakeDeepGEMM:
    @staticmethod
    def _logits(q, k, ks, w):
        s = torch.einsum("mhd,nd->mhn", q.float(), k.float()).relu()
        return (s * w.float()[..., None]).sum(1) * ks.float()[None]

    def fp8_mqa_logits(self, q, kv, w, starts, ends, clean):
        k, ks = kv
        out = self._logits(q, k, ks, w)
        cols = torch.arange(out.shape[1])[None]
        return out.masked_fill((cols < starts[:, None]) | (cols >= ends[:, None]), GARBAGE)

    def get_paged_mqa_logits_metadata(self, context, page, sms):
        return torch.zeros(sms + 1, 2, dtype=torch.int32)

    def fp8_paged_mqa_logits(self, q, cache, w, context, table, schedule, max_len, clean):
        B, n = q.shape[:2]
        T = max_len
        k8, ks = layouts.unpage_index_keys(cache, T)
        rows = []
        for b in range(B):
            rows.append(self._logits(q[b], k8[b], ks[b], w[b * n:(b + 1) * n]))
        out = torch.cat(rows)
        cols = torch.arange(T)[None]
        return out.masked_fill(cols >= context.reshape(-1)[:, None], GARBAGE)


class FakeFlashMLA:
    """The ops interface (torch.ops._flashmla_C)."""

    def sparse_prefill_fwd(self, q, kv, idx, sm_scale, d_v, sink, topk_length, out):
        o, lse = ref.sparse_mla(q[None], kv[None, :, 0], idx[None, :, 0], sm_scale=sm_scale, d_v=d_v)
        o = o[0].to(q.dtype)
        if out is not None:
            out.copy_(o)
            o = out
        return [o, lse[0], lse[0]]

    def dense_decode_fwd(self, q, kcache, d_v, seqlens, table, sm_scale, causal, meta, splits, out):
        B = q.shape[0]
        T = int(seqlens[0])
        kv = kcache[table.long().reshape(-1)].reshape(B, -1, kcache.shape[-1])[:, :T]
        o, lse = ref.dense_mla(q, kv, sm_scale=sm_scale, d_v=d_v)
        return o.to(q.dtype), lse.transpose(1, 2), torch.zeros(1), torch.zeros(1)

    def sparse_decode_fwd(self, q, cache, idx, topk_length, sink, meta, splits, ekv, eidx, elen, d_v, sm_scale, out):
        whole = layouts.dequantize_latents_fp8(cache.view(torch.uint8).reshape(-1, layouts.FP8_TOKEN_BYTES))
        whole = whole.to(q.dtype)
        B = q.shape[0]
        o, lse = ref.sparse_mla(q, whole[None].expand(B, -1, -1), idx, sm_scale=sm_scale, d_v=d_v)
        return o.to(q.dtype), lse.transpose(1, 2), torch.zeros(1), torch.zeros(1)


class FakeFA3:
    def fwd(self, q, k, v, k_new, v_new, q_v, out, cu_q, cu_k, cu_k_new, seqused_q, seqused_k, max_q, max_k,
            *rest):
        sm_scale, causal = rest[9], rest[10]
        assert causal
        B = cu_q.numel() - 1
        outs = []
        for b in range(B):
            qb = q[int(cu_q[b]):int(cu_q[b + 1])][None]
            kb, vb = (t[int(cu_k[b]):int(cu_k[b + 1])][None] for t in (k, v))
            outs.append(ref.dense_mha(qb, kb, vb, sm_scale=sm_scale)[0].to(q.dtype))
        return [torch.cat(outs), torch.zeros(1)]


def libraries() -> dict[str, Library]:
    """key -> a loaded-looking Library over the fakes."""
    return {
        "flashmla": Library("FlashMLA", api=FakeFlashMLA(), source="fake", extra={"interface": "ops"}),
        "vllm_ops": Library("vLLM DSA top-k", api=FakeVllmOps(), source="fake", extra={"cache_ops": FakeCacheOps()}),
        "fa3": Library("FlashAttention-3", api=FakeFA3(), source="fake", extra={"interface": "ops"}),
        "deep_gemm": Library("DeepGEMM", api=FakeDeepGEMM(), source="fake"),
    }


def namespace(**ops) -> SimpleNamespace:
    return SimpleNamespace(**ops)
