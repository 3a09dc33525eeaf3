"""The correctness check's two halves for every implementation: is a DSA selection a valid top-k of
the reference indexer scores, and what does the PyTorch reference attention give for some query rows."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from dsa_bench.ops import dense_form

if TYPE_CHECKING:
    import torch

    from dsa_bench.workload import Workload


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
                   mode: Optional[str] = None, kv: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The PyTorch reference output for query rows [r0, r1) of the point (fp32 arithmetic).

    DSA with `indices`: the reference attention over that selection (judged apart by check_selection),
    in the form the call ran (`mode` 'masked_mha': MHA-form inputs with the selection as a mask).
    `kv`: the latents the call really read, if not the workload's (an FP8 cache, de-quantised); they
    are rounded to the workload's dtype as the kernel rounds them before its matmuls."""
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
        q, kv = _latents(w, kv)
        return ref.dense_mla(q[:, r0:r1], kv, sm_scale=m.sm_scale, d_v=m.kv_lora_rank, q_start=qs)[0]
    q, kv = _latents(w, kv)
    if indices is not None:
        return ref.sparse_mla(q[:, r0:r1], kv, indices[:, r0:r1], sm_scale=m.sm_scale, d_v=m.kv_lora_rank)[0]
    iq, iw, ik, iks = w.indexer_inputs()
    return ref.dsa_attention(
        q[:, r0:r1], kv, iq[:, r0:r1], iw[:, r0:r1], ik, topk_tokens=w.topk, sm_scale=m.sm_scale,
        d_v=m.kv_lora_rank, index_k_scale=iks, q_start=qs,
    )[0]


def _latents(w: Workload, kv: Optional[torch.Tensor]):
    q, own = w.mla_inputs()
    return q, own if kv is None else kv.to(device=own.device, dtype=own.dtype)
