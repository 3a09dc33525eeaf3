"""Triton sparse MLA vs the float32 PyTorch reference (CPU interpreter when there is no GPU).

Error is ||out - ref|| / ||ref||; lse is compared by absolute difference where the reference is finite
and its -inf pattern must match exactly. Outputs are poisoned with NaN before every call so any element
the kernel fails to write fails the test. Tolerances by dtype:
- float32: both sides accumulate exact fp32 products, only the summation order (online softmax,
  split-K merge) differs -> 1e-5 relative on out, 1e-4 absolute on lse.
- bfloat16: the output is rounded to bf16 (~2^-9 relative) and, on a GPU, the softmax weights are
  rounded to bf16 before the P @ V matmul -> 1e-2 relative on out; lse is still fp32 from exact products
  of bf16 inputs -> 1e-3 absolute.
Small latent dims (64 + 32, d_v = 64) keep the interpreter fast; one case runs at real dims (576/512).
"""
from __future__ import annotations

import pytest
import torch

from kernels.reference.sparse_mla import sparse_mla as ref_sparse_mla
from kernels.sparse_mla import sparse_mla

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (1e-2, 1e-3)}  # (out relative, lse absolute)


def _indices(B, S, T, K, g):
    """Distinct random tokens per row, K may exceed T (-1 padded); -1 holes in the middle of rows,
    one row with no valid index at all (when there are several rows) and one out-of-range index (ignored like -1)."""
    idx = torch.full((B, S, K), -1, dtype=torch.int32)
    for b in range(B):
        for s in range(S):
            n = min(K, T)
            idx[b, s, :n] = torch.randperm(T, generator=g)[:n].to(torch.int32)
            idx[b, s] = idx[b, s, torch.randperm(K, generator=g)]  # scatter the -1 padding
    idx[..., 1::7] = -1
    if B * S > 1:
        idx[0, -1] = -1  # no valid index: out 0, lse -inf
    idx[-1, 0, 0] = T  # out of range
    return idx


def _inputs(B, S, H, d_v, d_rope, T, K, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, H, d_v + d_rope, generator=g).to(dtype)
    kv = torch.randn(B, T, d_v + d_rope, generator=g).to(dtype)
    return q.to(DEVICE), kv.to(DEVICE), _indices(B, S, T, K, g).to(DEVICE)


def _run(q, kv, idx, d_v, num_splits):
    B, S, H, _ = q.shape
    out = torch.full((B, S, H, d_v), float("nan"), dtype=q.dtype, device=q.device)
    lse = torch.full((B, S, H), float("nan"), dtype=torch.float32, device=q.device)
    got = sparse_mla(q, kv, idx, sm_scale=0.125, d_v=d_v, num_splits=num_splits, out=out, lse=lse)
    assert got[0] is out and got[1] is lse
    return out, lse


def _compare(out, lse, ref_out, ref_lse, dtype):
    out_tol, lse_tol = TOL[dtype]
    assert not out.isnan().any() and not lse.isnan().any()
    rel = ((out.float() - ref_out.float()).norm() / ref_out.float().norm()).item()
    assert rel < out_tol, rel
    finite = torch.isfinite(ref_lse)
    assert torch.equal(finite, torch.isfinite(lse))
    assert (lse[~finite] == float("-inf")).all()
    assert (lse[finite] - ref_lse[finite]).abs().max().item() < lse_tol
    assert (out[~finite] == 0).all()  # rows with no valid index


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "B,S,H,T,K,num_splits",
    [
        (2, 3, 5, 301, 150, 1),  # K < T, odd sizes, no split
        (2, 3, 5, 301, 150, 3),  # split-K + combine
        (2, 2, 5, 101, 133, 2),  # K > T: -1 padding
        (1, 1, 16, 301, 190, None),  # decode, automatic split choice
        (1, 2, 72, 80, 100, 64),  # more splits asked than key blocks (clamped); 2 head blocks, 2nd partial
    ],
)
def test_sparse_mla_matches_reference(B, S, H, T, K, num_splits, dtype):
    q, kv, idx = _inputs(B, S, H, 64, 32, T, K, dtype, seed=B * 1000 + T + K)
    out, lse = _run(q, kv, idx, 64, num_splits)
    ref_out, ref_lse = ref_sparse_mla(q, kv, idx, sm_scale=0.125, d_v=64)
    assert ref_out.dtype == dtype and out.dtype == dtype
    _compare(out, lse, ref_out, ref_lse, dtype)
    if B * S > 1:
        assert torch.isinf(ref_lse[0, -1]).all()  # the all -1 row is really exercised


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("num_splits", [1, 2])
def test_sparse_mla_real_dims(num_splits, dtype):
    """One head block's worth of heads (64) at DeepSeek's latent dims: 512 value + 64 rope."""
    q, kv, idx = _inputs(1, 2, 64, 512, 64, 100, 90, dtype, seed=7)
    out, lse = _run(q, kv, idx, 512, num_splits)
    _compare(out, lse, *ref_sparse_mla(q, kv, idx, sm_scale=0.125, d_v=512), dtype)


def test_sparse_mla_strided_inputs_int64_indices_and_default_outputs():
    q, kv, idx = _inputs(2, 3, 5, 64, 32, 60, 40, torch.float32, seed=3)
    idx = idx.long()
    q = q.transpose(1, 2).contiguous().transpose(1, 2)  # heads outermost in memory
    kv = torch.cat([kv, kv[..., :8]], dim=-1)[..., :96]  # row stride 104
    out, lse = sparse_mla(q, kv, idx, sm_scale=0.125, d_v=64, num_splits=2)
    _compare(out, lse, *ref_sparse_mla(q, kv, idx, sm_scale=0.125, d_v=64), torch.float32)


def test_sparse_mla_empty_index_set():
    q, kv, _ = _inputs(1, 2, 4, 64, 32, 50, 1, torch.float32, seed=1)
    idx = torch.empty(1, 2, 0, dtype=torch.int32, device=DEVICE)
    for fn in (sparse_mla, ref_sparse_mla):
        out, lse = fn(q, kv, idx, sm_scale=0.125, d_v=64)
        assert (out == 0).all() and (lse == float("-inf")).all()


def _raises_same(match, *args, **kwargs):
    """Triton and reference raise the same ValueError, naming the argument."""
    msgs = []
    for fn in (sparse_mla, ref_sparse_mla):
        with pytest.raises(ValueError, match=match) as e:
            fn(*args, **kwargs)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


def test_sparse_mla_validation():
    q, kv, idx = _inputs(1, 2, 4, 64, 32, 50, 8, torch.float32, seed=2)
    kw = dict(sm_scale=0.125, d_v=64)
    _raises_same("^q: expected dtype", q.to(torch.int32), kv, idx, **kw)
    _raises_same("^kv: expected dtype", q, kv.to(torch.bfloat16), idx, **kw)
    _raises_same("^indices: expected dtype", q, kv, idx.float(), **kw)
    _raises_same("^q: expected 4 dimensions", q[0], kv, idx, **kw)
    _raises_same("^kv: dimension 2", q, kv[..., :80], idx, **kw)
    _raises_same("^kv: dimension 0", q, torch.cat([kv, kv]), idx, **kw)
    _raises_same("^indices: dimension 1", q, kv, idx[:, :1], **kw)
    _raises_same("^d_v:", q, kv, idx, sm_scale=0.125, d_v=97)
    _raises_same("^sm_scale:", q, kv, idx, sm_scale=float("nan"), d_v=64)
    _raises_same("^kv: all tensors must be on one device", q, kv.to("meta"), idx, **kw)
    with pytest.raises(ValueError, match="^q: Triton kernels need a CUDA tensor"):
        sparse_mla(q.to("meta"), kv.to("meta"), idx.to("meta"), **kw)
    with pytest.raises(ValueError, match="^out: "):
        sparse_mla(q, kv, idx, **kw, out=torch.empty(1, 2, 4, 32, device=DEVICE))
    with pytest.raises(ValueError, match="^num_splits: "):
        sparse_mla(q, kv, idx, **kw, num_splits=0)
