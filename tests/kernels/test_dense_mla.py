"""Triton dense (absorbed) MLA vs the float32 PyTorch reference (CPU interpreter when there is no GPU).

Same measures and tolerances as test_sparse_mla.py: ||out - ref|| / ||ref|| < 1e-5 (fp32: only the
summation order differs) or 1e-2 (bf16: output rounding, bf16 softmax weights in P @ V on a GPU); lse
absolute difference < 1e-4 (fp32) / 1e-3 (bf16, still fp32 arithmetic on exact bf16 products).
Outputs are NaN-poisoned before each call. Query i sits at q_start + i and sees tokens <= that.
"""
from __future__ import annotations

import pytest
import torch

from kernels.dense_mla import dense_mla
from kernels.reference.dense_mla import dense_mla as ref_dense_mla

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (1e-2, 1e-3)}  # (out relative, lse absolute)


def _inputs(B, S, H, d_v, d_rope, T, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, H, d_v + d_rope, generator=g).to(dtype)
    kv = torch.randn(B, T, d_v + d_rope, generator=g).to(dtype)
    return q.to(DEVICE), kv.to(DEVICE)


def _check(q, kv, d_v, q_start, num_splits, dtype):
    B, S, H, _ = q.shape
    out = torch.full((B, S, H, d_v), float("nan"), dtype=q.dtype, device=q.device)
    lse = torch.full((B, S, H), float("nan"), dtype=torch.float32, device=q.device)
    dense_mla(q, kv, sm_scale=0.125, d_v=d_v, q_start=q_start, num_splits=num_splits, out=out, lse=lse)
    ref_out, ref_lse = ref_dense_mla(q, kv, sm_scale=0.125, d_v=d_v, q_start=q_start)
    out_tol, lse_tol = TOL[dtype]
    assert out.dtype == ref_out.dtype == dtype
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()  # every row sees token 0
    rel = ((out.float() - ref_out.float()).norm() / ref_out.float().norm()).item()
    assert rel < out_tol, rel
    assert (lse - ref_lse).abs().max().item() < lse_tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "B,S,T,q_start,num_splits",
    [
        (2, 37, 301, 100, 1),  # chunk in the middle of the context (S > 1, q_start > 0), no split
        (3, 2, 301, None, 1),  # decode at the end of the context (q_start = T - S)
        (3, 2, 301, None, 4),  # decode, split-K + combine
        (1, 1, 301, None, None),  # automatic split choice
        (2, 5, 77, 0, 3),  # early rows see 1..5 tokens: later splits are empty for them
    ],
)
def test_dense_mla_matches_reference(B, S, T, q_start, num_splits, dtype):
    q, kv = _inputs(B, S, 5, 64, 32, T, dtype, seed=B * 1000 + S * 10 + T)
    _check(q, kv, 64, q_start, num_splits, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("num_splits", [1, 2])
def test_dense_mla_real_dims(num_splits, dtype):
    """One head block's worth of heads (64) at DeepSeek's latent dims: 512 value + 64 rope."""
    q, kv = _inputs(1, 2, 64, 512, 64, 90, dtype, seed=11)
    _check(q, kv, 512, None, num_splits, dtype)


def test_dense_mla_uses_only_visible_tokens():
    """Changing tokens past the last query's position must not change anything."""
    q, kv = _inputs(1, 3, 4, 64, 32, 120, torch.float32, seed=5)
    out, lse = dense_mla(q, kv, sm_scale=0.125, d_v=64, q_start=40, num_splits=2)
    kv[:, 43:] = 1e4
    out2, lse2 = dense_mla(q, kv, sm_scale=0.125, d_v=64, q_start=40, num_splits=2)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)


def _raises_same(match, *args, **kwargs):
    msgs = []
    for fn in (dense_mla, ref_dense_mla):
        with pytest.raises(ValueError, match=match) as e:
            fn(*args, **kwargs)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


def test_dense_mla_validation():
    q, kv = _inputs(1, 2, 4, 64, 32, 50, torch.float32, seed=2)
    kw = dict(sm_scale=0.125, d_v=64)
    _raises_same("^q: expected dtype", q.to(torch.float64), kv, **kw)
    _raises_same("^kv: expected dtype", q, kv.half(), **kw)
    _raises_same("^kv: expected 3 dimensions", q, kv[None], **kw)
    _raises_same("^kv: dimension 2", q, kv[..., :64], **kw)
    _raises_same("^q_start: must be >= 0", q, kv, **kw, q_start=-1)
    _raises_same("^q_start: expected an int", q, kv, **kw, q_start=1.5)
    _raises_same("^d_v:", q, kv, sm_scale=0.125, d_v=0)
    _raises_same("^sm_scale:", q, kv, sm_scale="x", d_v=64)
    _raises_same("^kv: all tensors must be on one device", q, kv.to("meta"), **kw)
    with pytest.raises(ValueError, match="^q: Triton kernels need a CUDA tensor"):
        dense_mla(q.to("meta"), kv.to("meta"), **kw)
    with pytest.raises(ValueError, match="^lse: "):
        dense_mla(q, kv, **kw, lse=torch.empty(1, 2, 4, dtype=torch.bfloat16, device=DEVICE))
