"""Triton causal flash attention (dense_mha) vs the float32 PyTorch reference.

||out - ref|| / ||ref|| < 1e-5 for fp32 (exact products, only summation order differs) and 1e-2 for
bf16 (bf16 output rounding and, on a GPU, bf16 softmax weights in P @ V). Outputs are NaN-poisoned.
Small head dims (48 = 32 + 16 qk, 32 v; and non-power-of-two 40/24) keep the interpreter fast; one case
runs at the real 192/128. The interpreter tiles are 32x32, so S=37/T=301 covers several query blocks,
the unmasked phase and the diagonal phase.
"""
from __future__ import annotations

import pytest
import torch

from kernels.dense_mha import dense_mha
from kernels.reference.dense_mha import dense_mha as ref_dense_mha

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def _inputs(B, S, H, T, d_qk, d_v, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, H, d_qk, generator=g).to(dtype)
    k = torch.randn(B, T, H, d_qk, generator=g).to(dtype)
    v = torch.randn(B, T, H, d_v, generator=g).to(dtype)
    return q.to(DEVICE), k.to(DEVICE), v.to(DEVICE)


def _check(q, k, v, q_start, dtype):
    B, S, H, _ = q.shape
    out = torch.full((B, S, H, v.shape[-1]), float("nan"), dtype=q.dtype, device=q.device)
    assert dense_mha(q, k, v, sm_scale=0.1, q_start=q_start, out=out) is out
    ref = ref_dense_mha(q, k, v, sm_scale=0.1, q_start=q_start)
    assert ref.dtype == dtype and torch.isfinite(out).all()
    rel = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    assert rel < TOL[dtype], rel


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "B,S,H,T,q_start,d_qk,d_v",
    [
        (2, 37, 3, 301, None, 48, 32),  # chunk at the end of the context (q_start = 264)
        (1, 37, 2, 301, 100, 48, 32),  # chunk in the middle: keys past q_start + S never seen
        (1, 70, 2, 70, 0, 48, 32),  # square causal prefill
        (1, 5, 2, 9, 2, 40, 24),  # odd, non-power-of-two head dims
        (1, 20, 2, 6, 0, 48, 32),  # queries past the end of the context see all of it
    ],
)
def test_dense_mha_matches_reference(B, S, H, T, q_start, d_qk, d_v, dtype):
    q, k, v = _inputs(B, S, H, T, d_qk, d_v, dtype, seed=S * 100 + T)
    _check(q, k, v, q_start, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dense_mha_real_dims(dtype):
    q, k, v = _inputs(1, 16, 2, 40, 192, 128, dtype, seed=9)
    _check(q, k, v, None, dtype)


def test_dense_mha_strided_inputs():
    q, k, v = _inputs(2, 9, 3, 33, 48, 32, torch.float32, seed=4)
    q, k = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k))  # heads outermost
    _check(q, k, v, None, torch.float32)


def _raises_same(match, *args, **kwargs):
    msgs = []
    for fn in (dense_mha, ref_dense_mha):
        with pytest.raises(ValueError, match=match) as e:
            fn(*args, **kwargs)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


def test_dense_mha_validation():
    q, k, v = _inputs(1, 4, 2, 10, 48, 32, torch.float32, seed=1)
    _raises_same("^q: expected dtype", q.long(), k, v, sm_scale=0.1)
    _raises_same("^k: expected dtype", q, k.bfloat16(), v, sm_scale=0.1)
    _raises_same("^v: expected dtype", q, k, v.bfloat16(), sm_scale=0.1)
    _raises_same("^k: dimension 2", q, k[:, :, :1], v, sm_scale=0.1)
    _raises_same("^k: dimension 3", q, k[..., :40], v, sm_scale=0.1)
    _raises_same("^v: dimension 1", q, k, v[:, :9], sm_scale=0.1)
    _raises_same("^v: expected 4 dimensions", q, k, v[0], sm_scale=0.1)
    _raises_same("^q_start: must be >= 0", q, k, v, sm_scale=0.1, q_start=-3)
    _raises_same("^sm_scale:", q, k, v, sm_scale=None)
    _raises_same("^v: all tensors must be on one device", q, k, v.to("meta"), sm_scale=0.1)
    with pytest.raises(ValueError, match="^q: Triton kernels need a CUDA tensor"):
        dense_mha(q.to("meta"), k.to("meta"), v.to("meta"), sm_scale=0.1)
