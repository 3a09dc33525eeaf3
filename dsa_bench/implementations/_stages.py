"""What every DSA implementation shares: the kernel module of a backend, the prefill chunks, and
the stage generator that times indexer, top-k and attention chunk by chunk as the whole call runs them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Optional

from dsa_bench.registry import Prepared

if TYPE_CHECKING:
    import torch

    from dsa_bench.workload import Workload

BOTH = frozenset({"prefill", "decode"})


def kernels_for(backend: str):
    if backend == "triton":
        import kernels as k
    else:
        import kernels.reference as k
    return k


def chunks(w: Workload) -> Iterator[tuple[int, int, int]]:
    """(first row, end row, absolute position of the first row) of each prefill chunk, as
    kernels.dsa.dsa_attention walks them (one chunk in decode)."""
    for i0 in range(0, w.S, w.chunk):
        yield i0, min(w.S, i0 + w.chunk), w.q_start + i0


def dsa_stages(w: Workload, k, attention: str, attend) -> Iterator[tuple[str, object]]:
    """DSA's stages chunk by chunk, as the whole call runs them (the engine sums each stage's chunk
    timings): indexer, top-k, then `attention` (sparse_mla or masked_mha) built by
    attend(i0, i1, q_start, indices). Each callable is timed before the generator resumes, so the
    scores and indices it reads are freed only after their stage was timed."""
    iq, iw, ik, iks = w.indexer_inputs()
    for i0, i1, qs in chunks(w):
        ciq, ciw = iq[:, i0:i1], iw[:, i0:i1]
        yield "indexer", lambda: k.lightning_indexer(ciq, ciw, ik, k_scale=iks, q_start=qs)
        scores = k.lightning_indexer(ciq, ciw, ik, k_scale=iks, q_start=qs)
        yield "topk", lambda: k.topk_indices(scores, w.topk, q_start=qs)
        idx = k.topk_indices(scores, w.topk, q_start=qs)
        del scores
        yield attention, attend(i0, i1, qs, idx)
        del idx


def sparse_dsa(w: Workload, k, reference_kv: Optional[Callable[[], "torch.Tensor"]] = None) -> Prepared:
    """DSA in its sparse MQA form over any kernel set `k` with the kernels package's stage functions
    (lightning_indexer, topk_indices, sparse_mla, dsa_attention): the whole call, its stages and its
    selection. `reference_kv`: the latents the attention really reads, when they are not the
    workload's (an FP8 cache, de-quantised), for the correctness check."""
    m = w.model
    q, kv = w.mla_inputs()
    iq, iw, ik, iks = w.indexer_inputs()
    args = dict(topk_tokens=w.topk, sm_scale=m.sm_scale, d_v=m.kv_lora_rank, index_k_scale=iks,
                q_start=w.q_start, chunk_size=w.chunk)

    def run():
        return k.dsa_attention(q, kv, iq, iw, ik, **args)

    def attend(i0, i1, qs, idx):
        cq = q[:, i0:i1]
        return lambda: k.sparse_mla(cq, kv, idx, sm_scale=m.sm_scale, d_v=m.kv_lora_rank)

    return Prepared(run=run, stages=lambda: dsa_stages(w, k, "sparse_mla", attend),
                    indices=lambda: k.dsa_attention(q, kv, iq, iw, ik, **args, return_indices=True)[2],
                    reference_kv=reference_kv)
