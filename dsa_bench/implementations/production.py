"""The production kernels DeepSeek-V3.2 is served with, as peers of this repository's (see
dsa_bench/peers/): measured by the same engine, checked against the same references.

- dense-fa3: FlashAttention-3 forward, MHA form (prefill, and a chunked-prefill step natively).
- dense-flashmla: FlashMLA dense MLA decode over a paged bf16 latent cache.
- dsa-production: DeepGEMM's FP8 MQA logits (indexer) -> vLLM's DSA top-k -> FlashMLA sparse
  attention (bf16 latents in prefill; in decode the 656-byte FP8 latent cache vLLM serves V3.2 with,
  written by vLLM's own cache op); stages timed like dsa-triton's.
- dsa-triton-vllmtopk / dsa-triton-flashmla: dsa-triton with one production stage swapped in, to
  see which of this repository's stages is the gap.

Each says why it cannot run (no CUDA, not sm_90, a library missing, an ABI or schema mismatch) as the
row's `skipped` reason. The FP8-cache decode is checked against the reference attention over the
de-quantised cache (what the kernel reads) at the bf16 tolerance; the cache format's own rounding
(e4m3 with a scale per 128 values: ~2-4% of a latent's norm) is DeepSeek's serving choice, not a
kernel error, and is not counted against it.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Optional

from dsa_bench.implementations._stages import BOTH, sparse_dsa
from dsa_bench.peers import libraries
from dsa_bench.peers.libraries import PeerUnavailable
from dsa_bench.registry import Implementation, Prepared, register

if TYPE_CHECKING:
    from dsa_bench.workload import Workload

SM90 = (9, 0)


def why_unavailable(*keys: str) -> Callable[[], Optional[str]]:
    """A check for the runner: None when a CUDA sm_90 GPU is here and every library in `keys` loads
    with the schemas dsa-bench calls; else the first reason (libraries are loaded once per process)."""
    def check() -> Optional[str]:
        import torch

        if not torch.cuda.is_available():
            return "needs a CUDA GPU (sm_90)"
        cap = torch.cuda.get_device_capability()
        if tuple(cap) != SM90:
            return f"the production kernels here are built for sm_90 (Hopper); this GPU is sm_{cap[0]}{cap[1]}"
        for key in keys:
            lib = libraries.LOADERS[key]()
            if not lib.ok:
                return f"{lib.name}: {lib.reason}"
        return None

    return check


class StageKernels:
    """A kernel set with the kernels package's stage signatures, from three stage functions."""

    def __init__(self, lightning_indexer, topk_indices, sparse_mla):
        from kernels.dsa import make_dsa_attention

        self.lightning_indexer, self.topk_indices, self.sparse_mla = lightning_indexer, topk_indices, sparse_mla
        self.dsa_attention = make_dsa_attention(lightning_indexer, topk_indices, sparse_mla)


def _fa3(w: Workload) -> Prepared:
    from dsa_bench.peers import calls  # torch-using: imported when a point runs, not when listing

    q, k, v = w.mha_inputs()
    return Prepared(run=calls.fa3_prefill(libraries.fa3().require(), q, k, v, sm_scale=w.model.sm_scale))


def _flashmla_dense(w: Workload) -> Prepared:
    from dsa_bench.peers import calls

    q, kv = w.mla_inputs()
    return Prepared(run=calls.FlashMLADenseDecode(libraries.flashmla().require(), q, kv,
                                                  sm_scale=w.model.sm_scale, d_v=w.model.kv_lora_rank))


def _dsa(indexer: bool, topk: bool, attention: bool):
    """DSA with the production kernel at each stage flagged, this repository's Triton kernel elsewhere."""
    def prepare(w: Workload) -> Prepared:
        import kernels as ours
        from dsa_bench.peers import calls

        phase, m = w.point.phase, w.model
        if indexer and w.indexer_dtype != "fp8":
            raise PeerUnavailable("DeepGEMM's indexer reads fp8 keys: set measure.indexer_dtype: fp8")
        _, _, ik, iks = w.indexer_inputs()
        index = (calls.DeepGEMMIndexer(libraries.deep_gemm().require(), ik, iks, phase=phase, S=w.S)
                 if indexer else ours.lightning_indexer)
        select = (calls.VllmTopk(libraries.vllm_ops().require(), phase=phase, device=w.device)
                  if topk else ours.topk_indices)
        reference_kv = None
        attend = ours.sparse_mla
        if attention:
            flashmla = libraries.flashmla().require()
            if phase == "decode":
                _, kv = w.mla_inputs()
                writer = libraries.vllm_ops()
                attend = calls.FlashMLASparseDecodeFP8(flashmla, kv, sm_scale=m.sm_scale, d_v=m.kv_lora_rank,
                                                        cache_ops=writer.extra.get("cache_ops") if writer.ok else None)
                reference_kv = attend.reference_kv
            else:
                attend = functools.partial(calls.flashmla_sparse_prefill, flashmla)
        prepared = sparse_dsa(w, StageKernels(index, select, attend), reference_kv=reference_kv)
        if not attention:
            from dsa_bench.implementations.triton import mla_variant

            prepared.variant = mla_variant("triton", w.mla_inputs()[0], m.kv_lora_rank)
        else:
            prepared.variant = "mla:flashmla-fp8" if phase == "decode" else "mla:flashmla"
        return prepared

    return prepare


NEEDS: dict[str, tuple[str, ...]] = {}  # implementation -> the libraries it loads (dsa-bench list / peers)


def _production(name, family, phases, prepare, description, needs, **kw) -> None:
    NEEDS[name] = needs
    register(Implementation(name, family, "production", phases, prepare, description, cuda_only=True,
                            unavailable=why_unavailable(*needs), **kw))


_production("dense-fa3", "dense", frozenset({"prefill"}), _fa3,
            "FlashAttention-3 forward (vLLM's Hopper build), causal MHA form qk 192 / v 128; S < T is one "
            "chunked-prefill step in one call", ("fa3",), baseline=True)
_production("dense-flashmla", "dense", frozenset({"decode"}), _flashmla_dense,
            "FlashMLA dense MLA decode over a paged bf16 latent cache (64-token pages)", ("flashmla",),
            baseline=True)
_production("dsa-production", "dsa", BOTH, _dsa(True, True, True),
            "DSA as served: DeepGEMM fp8 MQA logits -> vLLM DSA top-k -> FlashMLA sparse attention "
            "(bf16 latents in prefill, the 656-byte FP8 latent cache in decode)",
            ("deep_gemm", "vllm_ops", "flashmla"))
_production("dsa-triton-vllmtopk", "dsa", BOTH, _dsa(False, True, False),
            "dsa-triton with vLLM's DSA top-k in place of the Triton top-k", ("vllm_ops",))
_production("dsa-triton-flashmla", "dsa", BOTH, _dsa(False, False, True),
            "dsa-triton with FlashMLA's sparse attention in place of the Triton sparse MLA "
            "(FP8 latent cache in decode)", ("flashmla", "vllm_ops"))
