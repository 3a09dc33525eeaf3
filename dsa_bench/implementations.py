"""Built-in implementations: Triton kernels, their PyTorch references, and a vendor dense baseline.

Kernel modules are imported inside `prepare`, not here, so that `dsa-bench list` and scenario
validation never import Triton, and the CLI can switch on the Triton interpreter (CPU runs) first.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

from dsa_bench.ops import dense_form
from dsa_bench.registry import Implementation, Prepared, register

if TYPE_CHECKING:  # torch and the workload are imported where used: listing and validating stay torch-free
    import torch

    from dsa_bench.workload import Workload


def _kernels(backend: str):
    if backend == "triton":
        import kernels as k
    else:
        import kernels.reference as k
    return k


# --- dense -------------------------------------------------------------------------------------

def _dense(backend: str):
    def prepare(w: Workload) -> Prepared:
        k, m = _kernels(backend), w.model
        if dense_form(w.point.phase) == "dense_mha":
            q, kk, v = w.mha_inputs()
            return Prepared(run=lambda: k.dense_mha(q, kk, v, sm_scale=m.sm_scale, q_start=w.q_start))
        q, kv = w.mla_inputs()
        return Prepared(run=lambda: k.dense_mla(q, kv, sm_scale=m.sm_scale, d_v=m.kv_lora_rank, q_start=w.q_start))

    return prepare


def _sdpa(w: Workload) -> Prepared:
    """torch scaled_dot_product_attention (cuDNN / flash backends) on the un-absorbed MHA form.

    S < T (a chunked-prefill step): SDPA's bottom-right causal mask takes a slow path (measured on an
    H200: 353 ms against 72 ms at S = 4096, T = 128K), so the step runs as the two mask-free calls the
    fast backends take (the S queries against the T - S earlier keys, then the S x S causal block)
    merged exactly by their log-sum-exps (cuDNN's attention op returns them).
    """
    import torch
    import torch.nn.functional as F

    q, k, v = (t.transpose(1, 2) for t in w.mha_inputs())  # [B, H, L, D] views, no copy
    scale = w.model.sm_scale
    if w.S == w.T:
        return Prepared(
            run=lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale),
            output=lambda o: o.transpose(1, 2),
        )
    cut = w.T - w.S
    kp, vp, kd, vd = k[:, :, :cut], v[:, :, :cut], k[:, :, cut:], v[:, :, cut:]

    def with_lse(kk, vv, causal):
        r = torch.ops.aten._scaled_dot_product_cudnn_attention(
            q, kk, vv, None, True, 0.0, causal, False, scale=scale)
        return r[0], r[1].reshape(q.shape[0], q.shape[1], q.shape[2], 1)

    def run():
        o1, l1 = with_lse(kp, vp, False)
        o2, l2 = with_lse(kd, vd, True)
        m = torch.maximum(l1, l2)
        w1, w2 = torch.exp(l1 - m), torch.exp(l2 - m)
        return ((o1.float() * w1 + o2.float() * w2) / (w1 + w2)).to(q.dtype)

    return Prepared(run=run, output=lambda o: o.transpose(1, 2))


# --- DSA ---------------------------------------------------------------------------------------

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


def _chunks(w: Workload) -> Iterator[tuple[int, int, int]]:
    """(first row, end row, absolute position of the first row) of each prefill chunk, as
    kernels.dsa.dsa_attention walks them (one chunk in decode)."""
    for i0 in range(0, w.S, w.chunk):
        yield i0, min(w.S, i0 + w.chunk), w.q_start + i0


def _dsa_stages(w: Workload, k, attention: str, attend) -> Iterator[tuple[str, object]]:
    """DSA's stages chunk by chunk, as the whole call runs them (the engine sums each stage's chunk
    timings): indexer, top-k, then `attention` (sparse_mla or masked_mha) built by
    attend(i0, i1, q_start, indices). Each callable is timed before the generator resumes, so the
    scores and indices it reads are freed only after their stage was timed."""
    iq, iw, ik, iks = w.indexer_inputs()
    for i0, i1, qs in _chunks(w):
        ciq, ciw = iq[:, i0:i1], iw[:, i0:i1]
        yield "indexer", lambda: k.lightning_indexer(ciq, ciw, ik, k_scale=iks, q_start=qs)
        scores = k.lightning_indexer(ciq, ciw, ik, k_scale=iks, q_start=qs)
        yield "topk", lambda: k.topk_indices(scores, w.topk, q_start=qs)
        idx = k.topk_indices(scores, w.topk, q_start=qs)
        del scores
        yield attention, attend(i0, i1, qs, idx)
        del idx


def _dsa(backend: str):
    def prepare(w: Workload) -> Prepared:
        k, m = (_TorchTopk() if backend == "triton-torchtopk" else _kernels(backend)), w.model
        q, kv = w.mla_inputs()
        iq, iw, ik, iks = w.indexer_inputs()
        args = dict(topk_tokens=w.topk, sm_scale=m.sm_scale, d_v=m.kv_lora_rank, index_k_scale=iks,
                    q_start=w.q_start, chunk_size=w.chunk)

        def run():
            return k.dsa_attention(q, kv, iq, iw, ik, **args)

        def attend(i0, i1, qs, idx):
            cq = q[:, i0:i1]
            return lambda: k.sparse_mla(cq, kv, idx, sm_scale=m.sm_scale, d_v=m.kv_lora_rank)

        return Prepared(run=run, stages=lambda: _dsa_stages(w, k, "sparse_mla", attend),
                        indices=lambda: k.dsa_attention(q, kv, iq, iw, ik, **args, return_indices=True)[2])

    return prepare


def _dsa_deployed(w: Workload) -> Prepared:
    """DSA as DeepSeek serves it: a prefill whose context is at most w.masked_mha_below tokens runs
    masked MHA (the indexer and top-k still run; their selection masks MHA over every visible token),
    anything longer, and every decode step, runs the sparse MQA form (dsa-triton)."""
    if w.point.phase != "prefill" or w.T > w.masked_mha_below:
        prepared = _dsa("triton")(w)
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
        for i0, i1, qs in _chunks(w):
            scores = k.lightning_indexer(iq[:, i0:i1], iw[:, i0:i1], ik, k_scale=iks, q_start=qs)
            idx = k.topk_indices(scores, w.topk, q_start=qs, out=None if idxs is None else idxs[:, i0:i1])
            del scores
            k.masked_mha(q[:, i0:i1], kk, v, idx, sm_scale=m.sm_scale, q_start=qs, out=out[:, i0:i1])
            del idx
        return (out, idxs) if return_indices else out

    def attend(i0, i1, qs, idx):
        cq = q[:, i0:i1]
        return lambda: k.masked_mha(cq, kk, v, idx, sm_scale=m.sm_scale, q_start=qs)

    return Prepared(run=run, stages=lambda: _dsa_stages(w, k, "masked_mha", attend),
                    indices=lambda: run(return_indices=True)[1], mode="masked_mha")


# --- reference outputs for the correctness check --------------------------------------------------

# Selection check: a selected token's reference score may fall below the reference k-th score by
# this much (relative to the row's largest |score|): the kernels' dot accumulation differs from fp32
# (bf16 products; fp8 tensor cores keep fewer accumulator bits), so near-ties may flip either way.
SELECTION_TOL = {"bf16": 1e-2, "fp8": 5e-2}


def check_selection(w: Workload, indices: torch.Tensor, r0: int, r1: int) -> Optional[str]:
    """None if the [B, S, k] selection of rows [r0, r1) is a valid top-k of the reference indexer
    scores (distinct visible tokens, min(k, visible) of them, none scoring clearly below the k-th);
    otherwise what is wrong."""
    import torch

    import kernels.reference as ref

    iq, iw, ik, iks = w.indexer_inputs()
    scores = ref.lightning_indexer(iq[:, r0:r1], iw[:, r0:r1], ik, k_scale=iks, q_start=w.q_start + r0)
    idx = indices[:, r0:r1].long()
    valid = idx >= 0
    want = torch.minimum(torch.tensor(w.topk, device=idx.device),
                         w.q_start + r0 + 1 + torch.arange(r1 - r0, device=idx.device))
    if not torch.equal(valid.sum(-1), want.expand(idx.shape[0], -1)):
        return "selection: wrong number of selected tokens"
    srt = idx.sort(-1).values
    if ((srt[..., 1:] == srt[..., :-1]) & (srt[..., 1:] >= 0)).any():
        return "selection: a token selected twice"
    chosen = scores.gather(-1, idx.clamp_min(0))
    if not torch.isfinite(chosen[valid]).all():
        return "selection: a token past the causal frontier"
    kth = scores.topk(min(w.topk, scores.shape[-1]), dim=-1).values.amin(-1, keepdim=True)
    scale = scores.masked_fill(~torch.isfinite(scores), 0).abs().amax(-1, keepdim=True)
    slack = SELECTION_TOL[w.indexer_dtype] * scale
    worst = ((kth - chosen) / scale.clamp_min(1e-30)).masked_fill(~valid, float("-inf")).max().item()
    if ((chosen < kth - slack) & valid).any():
        return f"selection: a selected score is {worst:.3g} of the row's scale below the k-th"
    return None


def reference_rows(family: str, w: Workload, r0: int, r1: int, indices: Optional[torch.Tensor] = None,
                   mode: Optional[str] = None) -> torch.Tensor:
    """The PyTorch reference output for query rows [r0, r1) of the point (fp32 arithmetic).

    DSA with `indices`: the reference attention over that selection (judged apart by check_selection),
    in the form the call ran (`mode` 'masked_mha': MHA-form inputs with the selection as a mask)."""
    import kernels.reference as ref

    m = w.model
    qs = w.q_start + r0
    if mode == "masked_mha":
        q, k, v = w.mha_inputs()
        return ref.masked_mha(q[:, r0:r1], k, v, indices[:, r0:r1], sm_scale=m.sm_scale, q_start=qs)
    if family == "dense":
        if dense_form(w.point.phase) == "dense_mha":
            q, k, v = w.mha_inputs()
            return ref.dense_mha(q[:, r0:r1], k, v, sm_scale=m.sm_scale, q_start=qs)
        q, kv = w.mla_inputs()
        return ref.dense_mla(q[:, r0:r1], kv, sm_scale=m.sm_scale, d_v=m.kv_lora_rank, q_start=qs)[0]
    q, kv = w.mla_inputs()
    if indices is not None:
        return ref.sparse_mla(q[:, r0:r1], kv, indices[:, r0:r1], sm_scale=m.sm_scale, d_v=m.kv_lora_rank)[0]
    iq, iw, ik, iks = w.indexer_inputs()
    return ref.dsa_attention(
        q[:, r0:r1], kv, iq[:, r0:r1], iw[:, r0:r1], ik, topk_tokens=w.topk, sm_scale=m.sm_scale,
        d_v=m.kv_lora_rank, index_k_scale=iks, q_start=qs,
    )[0]


BOTH = frozenset({"prefill", "decode"})

register(Implementation(
    "dense-triton", "dense", "triton", BOTH, _dense("triton"),
    "Triton flash attention: un-absorbed MHA (qk 192 / v 128) for prefill, absorbed MLA with split-K for decode",
    baseline=True,
))
register(Implementation(
    "dense-torch", "dense", "torch", BOTH, _dense("torch"),
    "PyTorch reference of dense MLA (fp32 arithmetic, chunked); the correctness oracle, slow",
    is_reference=True,
))
register(Implementation(
    "dense-sdpa", "dense", "vendor", frozenset({"prefill"}), _sdpa,
    "torch.nn.functional.scaled_dot_product_attention, causal MHA form: the best dense prefill a user can pick off the shelf (S < T: two cuDNN calls merged by LSE)",
    baseline=True,
))
register(Implementation(
    "dsa-triton", "dsa", "triton", BOTH, _dsa("triton"),
    "Triton DSA: fused lightning indexer -> radix-select top-k -> sparse MLA (gather in-kernel, split-K decode)",
))
register(Implementation(
    "dsa-triton-torchtopk", "dsa", "triton", BOTH, _dsa("triton-torchtopk"),
    "dsa-triton with torch.topk in place of the Triton top-k kernel (to measure that kernel against it)",
))
register(Implementation(
    "dsa-deployed", "dsa", "triton", BOTH, _dsa_deployed,
    "DSA as served: prefill at contexts up to `masked_mha_below` runs masked MHA (the top-k selection as a "
    "mask on MHA over all visible tokens), longer prefill and decode run dsa-triton's sparse MQA form",
))
register(Implementation(
    "dsa-torch", "dsa", "torch", BOTH, _dsa("torch"),
    "PyTorch reference of DSA (fp32 arithmetic, chunked); the correctness oracle, slow",
    is_reference=True,
))
