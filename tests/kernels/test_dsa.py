"""DSA composition: kernels.dsa_attention (Triton indexer -> top-k -> sparse MLA) vs the references.

Near-ties in the indexer scores may legitimately make the Triton top-k pick different tokens than the
reference, so the composition is checked in two parts on the indices it actually chose:
1. they are a valid top-k of the reference indexer scores: distinct, visible, min(topk, visible) of
   them, and their sorted scores equal the reference's top-k scores (to the indexer's tolerance:
   1e-4 of the score scale in fp32, 2e-2 in bf16, where a GPU's bf16 dot accumulates differently);
2. out/lse equal the reference sparse_mla run on those indices (tolerances as in test_sparse_mla.py:
   fp32 1e-5 relative / 1e-4 lse; bf16 1e-2 / 1e-3).
Rows whose index sets happen to equal the reference composition's must also match its output.
"""
from __future__ import annotations

import pytest
import torch

import kernels
import kernels.reference as ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: (1e-5, 1e-4, 1e-4), torch.bfloat16: (1e-2, 1e-3, 2e-2)}  # out, lse, scores
H, D_V, D_ROPE, HI, DI = 4, 64, 32, 4, 32


def _inputs(B, S, T, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, H, D_V + D_ROPE, generator=g).to(dtype)
    kv = torch.randn(B, T, D_V + D_ROPE, generator=g).to(dtype)
    iq = torch.randn(B, S, HI, DI, generator=g).to(dtype)
    w = torch.randn(B, S, HI, generator=g)
    ik = torch.randn(B, T, DI, generator=g).to(dtype)
    return [t.to(DEVICE) for t in (q, kv, iq, w, ik)]


def _check_topk(idx, scores, topk, score_tol):
    assert idx.dtype == torch.int32 and idx.shape == (*scores.shape[:2], topk)
    valid = idx >= 0
    n_visible = torch.isfinite(scores).sum(-1)
    assert torch.equal(valid.sum(-1), n_visible.clamp_max(topk))
    srt = idx.sort(-1).values
    assert not ((srt[..., 1:] == srt[..., :-1]) & (srt[..., 1:] >= 0)).any()  # distinct
    chosen = scores.gather(-1, idx.clamp_min(0).long()).masked_fill(~valid, float("-inf"))
    assert torch.isfinite(chosen[valid]).all()  # only visible tokens
    chosen = chosen.sort(-1, descending=True).values
    expected = scores.topk(topk, dim=-1).values
    scale = scores[torch.isfinite(scores)].abs().max()
    fin = torch.isfinite(expected)
    assert torch.equal(fin, torch.isfinite(chosen))
    assert (chosen[fin] - expected[fin]).abs().max() <= score_tol * scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "B,S,T,topk,q_start,chunk_size",
    [
        (2, 2, 97, 40, None, None),  # decode-like: every row sees more than topk tokens
        (1, 20, 61, 16, 0, None),  # prefill from 0: early rows see < topk tokens (-1 padding)
        (1, 20, 61, 16, 30, 7),  # chunked prefill in the middle of the context
        (2, 9, 40, 16, 20, 4),  # B > 1: each chunk writes a strided slice of the outputs in place
    ],
)
def test_dsa_matches_reference(B, S, T, topk, q_start, chunk_size, dtype):
    q, kv, iq, w, ik = _inputs(B, S, T, dtype, seed=S * 100 + T)
    kw = dict(topk_tokens=topk, sm_scale=0.125, d_v=D_V, q_start=q_start, chunk_size=chunk_size,
              return_indices=True)
    out, lse, idx = kernels.dsa_attention(q, kv, iq, w, ik, **kw)
    out_tol, lse_tol, score_tol = TOL[dtype]

    _check_topk(idx, ref.lightning_indexer(iq, w, ik, q_start=q_start), topk, score_tol)

    ref_out, ref_lse = ref.sparse_mla(q, kv, idx, sm_scale=0.125, d_v=D_V)
    assert out.dtype == dtype and torch.isfinite(out).all() and torch.isfinite(lse).all()
    rel = ((out.float() - ref_out.float()).norm() / ref_out.float().norm()).item()
    assert rel < out_tol, rel
    assert (lse - ref_lse).abs().max().item() < lse_tol

    full_out, full_lse, full_idx = ref.dsa_attention(q, kv, iq, w, ik, **kw)
    same = (idx.sort(-1).values == full_idx.sort(-1).values).all(-1)  # [B, S] rows with equal sets
    assert same.float().mean() > 0.5  # random scores: ties are rare, the check is not vacuous
    assert (lse[same] - full_lse[same]).abs().max().item() < lse_tol
    diff = (out[same].float() - full_out[same].float()).norm() / full_out[same].float().norm()
    assert diff.item() < out_tol
