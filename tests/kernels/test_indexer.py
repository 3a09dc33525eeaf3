"""Triton lightning indexer vs the float32 PyTorch reference (CPU interpreter when there is no GPU).

Error is ||out - ref|| / ||ref|| over the finite entries; the -inf (masked) pattern must match exactly
and no output may stay NaN (outputs are poisoned with NaN before every call). Tolerances by dtype:
- float32: exact products, only the summation order differs -> 1e-5.
- bfloat16: inputs are exact in fp32 and both sides accumulate in fp32, but on a GPU the tensor-core
  accumulation order/rounding differs from the reference's -> 1e-2 (generous; observed far smaller).
- float8_e4m3fn: Hopper's fp8 tensor-core accumulator keeps fewer mantissa bits than fp32 -> 5e-2.
fp8 in the interpreter: loads, fp8->fp32 casts and even fp8 tl.dot are exact there (checked with triton
3.6); the kernel still upcasts dot operands under TRITON_INTERPRET, so the fp8 cases here check the fp8
loads, k_scale and masking, while native fp8 tensor-core dots are only exercised on a GPU.
"""
from __future__ import annotations

import pytest
import torch

from kernels._common import FP8
from kernels.indexer import lightning_indexer
from kernels.reference.indexer import lightning_indexer as ref_indexer

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, FP8: 5e-2}


def _inputs(B, S, Hi, Di, T, dtype, seed, *, strided=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, Hi, Di, generator=g).to(dtype).to(DEVICE)
    w = torch.randn(B, S, Hi, generator=g).to(DEVICE)
    k = torch.randn(B, T, Di + 7, generator=g).to(dtype).to(DEVICE)
    k_scale = (torch.rand(B, T, generator=g) + 0.5).to(DEVICE) if dtype == FP8 else None
    # strided: k is a column slice of a wider tensor (row stride != Di), q has heads and queries swapped
    # (views made on DEVICE: copying a non-contiguous view to another device makes it contiguous)
    k = k[..., :Di] if strided else k[..., :Di].contiguous()
    if strided:
        q = q.transpose(1, 2).contiguous().transpose(1, 2)
    return q, w, k, k_scale


def _compare(q, w, k, k_scale, q_start, dtype):
    B, S, T = q.shape[0], q.shape[1], k.shape[1]
    out = torch.full((B, S, T), float("nan"), device=DEVICE)
    got = lightning_indexer(q, w, k, k_scale=k_scale, q_start=q_start, out=out)
    assert got.data_ptr() == out.data_ptr()
    ref = ref_indexer(q, w, k, k_scale=k_scale, q_start=q_start)
    assert not torch.isnan(out).any(), "unwritten (NaN) outputs"
    assert torch.equal(torch.isneginf(out), torch.isneginf(ref)), "-inf pattern differs"
    fin = torch.isfinite(ref)
    assert torch.equal(fin, torch.isfinite(out))
    # the causal pattern itself, independently of the reference
    qs = T - S if q_start is None else q_start
    pos = torch.arange(T, device=DEVICE)
    want_masked = pos[None, :] > (qs + torch.arange(S, device=DEVICE))[:, None]
    assert torch.equal(torch.isneginf(ref), want_masked.expand(B, S, T))
    rel = ((out[fin] - ref[fin]).norm() / ref[fin].norm()).item()
    assert rel <= TOL[dtype], f"rel err {rel:.3e} > {TOL[dtype]:.0e}"


# (B, S, Hi, Di, T, q_start, dtype): odd sizes that are multiples of no block size.
CASES = [
    (2, 37, 4, 32, 301, None, torch.float32),   # default q_start = T - S
    (2, 37, 4, 32, 301, 0, torch.float32),      # causal frontier inside the first tiles: whole tiles -inf
    (2, 37, 5, 33, 301, 100, torch.bfloat16),   # Hi, Di not powers of two, S > 1 with q_start > 0
    (3, 1, 8, 32, 301, None, torch.bfloat16),   # decode, B > 1
    (1, 2, 6, 32, 150, 180, torch.float32),     # q_start + S > T: every key visible
    (2, 5, 8, 32, 150, 3, FP8),                 # fp8 with k_scale
    (2, 1, 8, 48, 137, None, FP8),              # fp8 decode
    (1, 3, 64, 128, 200, 100, torch.bfloat16),  # DeepSeek dims Hi=64, Di=128
    (1, 2, 64, 128, 133, None, FP8),            # DeepSeek dims, fp8
    (1, 1, 1, 16, 1, None, torch.float32),      # sizes of 1 (Triton passes int args == 1 as constexprs)
]


@pytest.mark.parametrize("B,S,Hi,Di,T,q_start,dtype", CASES)
def test_indexer_matches_reference(B, S, Hi, Di, T, q_start, dtype):
    q, w, k, ks = _inputs(B, S, Hi, Di, T, dtype, seed=hash((B, S, Hi, Di, T)) % 1000)
    _compare(q, w, k, ks, q_start, dtype)


def test_indexer_strided_inputs():
    q, w, k, ks = _inputs(2, 9, 4, 32, 211, torch.bfloat16, seed=7, strided=True)
    assert not k.is_contiguous() and not q.is_contiguous()
    _compare(q, w, k, ks, 40, torch.bfloat16)


def test_indexer_allocates_output():
    q, w, k, ks = _inputs(1, 3, 4, 32, 70, torch.float32, seed=3)
    got = lightning_indexer(q, w, k)
    assert got.shape == (1, 3, 70) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref_indexer(q, w, k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", [lightning_indexer, ref_indexer], ids=["triton", "reference"])
def test_indexer_argument_errors(impl):
    q, w, k, _ = _inputs(1, 3, 4, 32, 20, torch.float32, seed=1)
    with pytest.raises(ValueError, match="^weights: expected dtype"):
        impl(q, w.to(torch.bfloat16), k)
    with pytest.raises(ValueError, match="^k: expected dtype"):
        impl(q, w, k.to(torch.bfloat16))  # q and k must share a dtype
    with pytest.raises(ValueError, match="^q: expected dtype"):
        impl(q.to(torch.int32), w, k)
    with pytest.raises(ValueError, match="^k: dimension 2 must be 32"):
        impl(q, w, k[..., :16])
    with pytest.raises(ValueError, match="^weights: dimension 2 must be 4"):
        impl(q, w[..., :3], k)
    with pytest.raises(ValueError, match="^q: expected 4 dimensions"):
        impl(q[0], w, k)
    with pytest.raises(ValueError, match="^k_scale: dimension 1 must be 20"):
        impl(q, w, k, k_scale=torch.ones(1, 19, device=DEVICE))
    with pytest.raises(ValueError, match="^k_scale: required"):
        impl(q.to(FP8), w, k.to(FP8))
    with pytest.raises(ValueError, match="^out: dimension 2 must be 20"):
        impl(q, w, k, out=torch.empty(1, 3, 21, device=DEVICE))
    with pytest.raises(ValueError, match="^q_start: must be >= 0"):
        impl(q, w, k, q_start=-1)
    with pytest.raises(ValueError, match="^k: all tensors must be on one device"):
        impl(q, w, k.to("meta"))


def test_indexer_triton_rejects_non_triton_device():
    q, w, k, _ = _inputs(1, 3, 4, 32, 20, torch.float32, seed=1)
    with pytest.raises(ValueError, match="^q: Triton kernels need a CUDA tensor"):
        lightning_indexer(q.to("meta"), w.to("meta"), k.to("meta"))
