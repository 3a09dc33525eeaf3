"""This repository's Triton implementations: dense (MHA-form prefill, absorbed-MLA decode), DSA, DSA
with torch.topk in place of the Triton top-k, and DSA as deployed (masked MHA for short prefill).

Kernel modules are imported inside `prepare`, not here, so that `dsa-bench list` and scenario
validation never import Triton, and the CLI can switch on the Triton interpreter (CPU runs) first.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dsa_bench.implementations._stages import BOTH, chunks, dsa_stages, kernels_for, sparse_dsa
from dsa_bench.ops import dense_form
from dsa_bench.registry import Implementation, Prepared, register

if TYPE_CHECKING:
    from dsa_bench.workload import Workload


def dense_prepare(backend: str):
    def prepare(w: Workload) -> Prepared:
        k, m = kernels_for(backend), w.model
        if dense_form(w.point.phase) == "dense_mha":
            q, kk, v = w.mha_inputs()
            return Prepared(run=lambda: k.dense_mha(q, kk, v, sm_scale=m.sm_scale, q_start=w.q_start),
                            variant=mha_variant(backend, q, kk, v))
        q, kv = w.mla_inputs()
        return Prepared(run=lambda: k.dense_mla(q, kv, sm_scale=m.sm_scale, d_v=m.kv_lora_rank, q_start=w.q_start),
                        variant=mla_variant(backend, q, m.kv_lora_rank))

    return prepare


class _TorchTopk:
    """The Triton kernels with top-k swapped for torch.topk: the baseline the top-k kernel is measured against."""

    def __getattr__(self, name):
        import kernels
        from kernels.topk import topk_indices_torch

        if name == "topk_indices":
            return topk_indices_torch
        if name == "dsa_attention":
            from kernels.dsa import make_dsa_attention

            return make_dsa_attention(kernels.lightning_indexer, topk_indices_torch, kernels.sparse_mla)
        return getattr(kernels, name)


def mha_variant(backend: str, q, k, v) -> str:
    """'mha:<variant>' of this repository's MHA kernel for these inputs, 'mha:torch' for the reference."""
    if backend == "torch":
        return "mha:torch"
    from kernels.mha import variant

    return f"mha:{variant(q, k, v)}"


def mla_variant(backend: str, q, d_v: int) -> str:
    """'mla:<variant>' of this repository's MLA kernels for these inputs, 'mla:torch' for the reference."""
    if backend == "torch":
        return "mla:torch"
    from kernels.mla import variant

    return f"mla:{variant(q, d_v)}"


def dsa_variant(backend: str, w: Workload) -> str:
    """'indexer:<variant>,mla:<variant>' of a DSA call on this repository's kernels."""
    if backend == "torch":
        return "torch"
    from kernels.indexer import variant

    iq, _, ik, _ = w.indexer_inputs()
    return f"indexer:{variant(iq, ik)},{mla_variant(backend, w.mla_inputs()[0], w.model.kv_lora_rank)}"


def dsa_prepare(backend: str):
    def prepare(w: Workload) -> Prepared:
        prepared = sparse_dsa(w, _TorchTopk() if backend == "triton-torchtopk" else kernels_for(backend))
        prepared.variant = dsa_variant(backend, w)
        return prepared

    return prepare


def _dsa_deployed(w: Workload) -> Prepared:
    """DSA as DeepSeek serves it: a prefill whose context is at most w.masked_mha_below tokens runs
    masked MHA (the indexer and top-k still run; their selection masks MHA over every visible token),
    anything longer, and every decode step, runs the sparse MQA form (dsa-triton)."""
    if w.point.phase != "prefill" or w.T > w.masked_mha_below:
        prepared = dsa_prepare("triton")(w)
        prepared.mode = "sparse_mla"
        return prepared
    import torch

    import kernels as k

    m = w.model
    q, kk, v = w.mha_inputs()
    iq, iw, ik, iks = w.indexer_inputs()

    def run(return_indices: bool = False):
        out = torch.empty(w.B, w.S, m.heads, m.v_head_dim, dtype=q.dtype, device=q.device)
        idxs = torch.empty(w.B, w.S, w.topk, dtype=torch.int32, device=q.device) if return_indices else None
        for i0, i1, qs in chunks(w):
            scores = k.lightning_indexer(iq[:, i0:i1], iw[:, i0:i1], ik, k_scale=iks, q_start=qs)
            idx = k.topk_indices(scores, w.topk, q_start=qs, out=None if idxs is None else idxs[:, i0:i1])
            del scores
            k.masked_mha(q[:, i0:i1], kk, v, idx, sm_scale=m.sm_scale, q_start=qs, out=out[:, i0:i1])
            del idx
        return (out, idxs) if return_indices else out

    def attend(i0, i1, qs, idx):
        cq = q[:, i0:i1]
        return lambda: k.masked_mha(cq, kk, v, idx, sm_scale=m.sm_scale, q_start=qs)

    return Prepared(run=run, stages=lambda: dsa_stages(w, k, "masked_mha", attend),
                    indices=lambda: run(return_indices=True)[1], mode="masked_mha", variant="masked_mha:triton")


register(Implementation(
    "dense-triton", "dense", "triton", BOTH, dense_prepare("triton"),
    "Triton flash attention: un-absorbed MHA (qk 192 / v 128) for prefill, absorbed MLA with split-K for decode",
    baseline=True,
))
register(Implementation(
    "dsa-triton", "dsa", "triton", BOTH, dsa_prepare("triton"),
    "Triton DSA: fused lightning indexer -> radix-select top-k -> sparse MLA (gather in-kernel, split-K decode)",
))
register(Implementation(
    "dsa-triton-torchtopk", "dsa", "triton", BOTH, dsa_prepare("triton-torchtopk"),
    "dsa-triton with torch.topk in place of the Triton top-k kernel (to measure that kernel against it)",
))
register(Implementation(
    "dsa-deployed", "dsa", "triton", BOTH, _dsa_deployed,
    "DSA as served: prefill at contexts up to `masked_mha_below` runs masked MHA (the top-k selection as a "
    "mask on MHA over all visible tokens), longer prefill and decode run dsa-triton's sparse MQA form",
))
