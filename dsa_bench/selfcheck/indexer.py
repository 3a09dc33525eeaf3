"""GPU check of the Triton indexer and top-k against the references at DeepSeek shapes (no I/O).

    from dsa_bench.selfcheck.indexer import check_indexer_topk  # or: dsa-bench check-kernels
    rows = check_indexer_topk()  # list of dicts: kernel, dtype, B, S, T, topk, rel_err, ok, tol

Indexer: ||tri - ref|| / ||ref|| over the finite entries, and the -inf pattern must match exactly.
For prefill, the float32 reference is evaluated on three 64-query slices (start, middle, end), since
the full [2048, 128K] product in fp32 takes minutes; the kernel output is compared on those rows.
Top-k runs on the kernel's scores and is judged against torch.topk on those same scores, so it is
checked apart from indexer error: the multiset of selected scores must equal torch.topk's (rel_err of
the sorted values, tol 0: ties may pick other positions but never other values), indices distinct and
in range, and the number of -1 equal to max(0, topk - finite count).
"""
from __future__ import annotations

import torch

from kernels._common import FP8
from kernels.indexer import lightning_indexer
from kernels.reference.indexer import lightning_indexer as ref_indexer
from kernels.reference.topk import topk_indices as ref_topk
from kernels.topk import topk_indices

HI, DI, TOPK = 64, 128, 2048
# bf16: both sides accumulate exact bf16 products in fp32, only the order differs. fp8: Hopper's fp8
# tensor-core accumulation keeps fewer mantissa bits than fp32.
TOL = {"bfloat16": 1e-2, "float8_e4m3fn": 5e-2}


def _cases():
    for T in (4096, 32768, 131072):
        for S in (1, 2):
            yield 4, S, T
    for T in (32768, 131072):
        yield 1, 2048, T


def _inputs(B, S, T, dtype, device, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(B, S, HI, DI, generator=g).to(device)
    k = torch.randn(B, T, DI, generator=g).to(device)
    w = (torch.randn(B, S, HI, generator=g) / HI**0.5).to(device)
    k_scale = None
    if dtype == FP8:
        k_scale = (torch.rand(B, T, generator=g) + 0.5).to(device)
    return q.to(dtype), w, k.to(dtype), k_scale


def _query_slices(S):
    if S <= 256:
        return [(0, S)]
    return [(0, 64), (S // 2 - 32, S // 2 + 32), (S - 64, S)]


def _check_indexer(q, w, k, k_scale, q_start, scores):
    """rel_err over finite entries (slices of rows), and whether the -inf patterns agree."""
    num = den = 0.0
    same_mask = True
    for i0, i1 in _query_slices(q.shape[1]):
        ref = ref_indexer(q[:, i0:i1], w[:, i0:i1], k, k_scale=k_scale, q_start=q_start + i0)
        tri = scores[:, i0:i1]
        fin = torch.isfinite(ref)
        same_mask &= bool(torch.equal(fin, torch.isfinite(tri)))
        same_mask &= bool(torch.equal(torch.isneginf(ref), torch.isneginf(tri)))
        num += float(((tri[fin] - ref[fin]).double() ** 2).sum())
        den += float((ref[fin].double() ** 2).sum())
    return (num / max(den, 1e-300)) ** 0.5, same_mask


def _check_topk(scores, idx):
    """rel_err of the sorted selected scores against torch.topk's, and the structural checks."""
    ref = ref_topk(scores, TOPK)
    T = scores.shape[-1]
    ok = bool(((idx >= -1) & (idx < T)).all())
    n_fin = (scores > float("-inf")).sum(-1)
    ok &= bool(torch.equal((idx == -1).sum(-1), (TOPK - n_fin).clamp(min=0)))
    srt = idx.sort(-1).values
    ok &= bool((((srt[..., 1:] != srt[..., :-1]) | (srt[..., 1:] == -1))).all())  # distinct

    def picked(ix):
        v = torch.gather(scores, -1, ix.clamp(min=0).long())
        return v.masked_fill(ix < 0, 0.0).sort(-1).values.double()

    got, want = picked(idx), picked(ref)
    rel = float((got - want).norm() / want.norm().clamp(min=1e-300))
    return rel, ok


def check_indexer_topk(device="cuda") -> list[dict]:
    results = []
    dtypes = [torch.bfloat16] + ([FP8] if FP8 is not None else [])
    seed = 0
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        for B, S, T in _cases():
            seed += 1
            q, w, k, k_scale = _inputs(B, S, T, dtype, device, seed)
            q_start = T - S
            scores = lightning_indexer(q, w, k, k_scale=k_scale, q_start=q_start)
            rel, same_mask = _check_indexer(q, w, k, k_scale, q_start, scores)
            base = dict(dtype=name, B=B, S=S, T=T, topk=TOPK)
            results.append(dict(kernel="lightning_indexer", **base, rel_err=rel,
                                ok=same_mask and rel <= TOL[name], tol=TOL[name]))
            if dtype == torch.bfloat16:  # top-k sees float32 scores either way: check it once per shape
                idx = topk_indices(scores, TOPK)
                rel_k, ok_k = _check_topk(scores, idx)
                results.append(dict(kernel="topk_indices", **dict(base, dtype="float32"), rel_err=rel_k,
                                    ok=ok_k and rel_k == 0.0, tol=0.0))
            del q, w, k, k_scale, scores
    return results
