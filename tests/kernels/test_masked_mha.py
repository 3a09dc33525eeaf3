"""Triton masked MHA (DSA's short-prefill mode) vs the float32 PyTorch reference.

Tolerances as for dense_mha: 1e-5 relative to the reference's norm in fp32, 1e-2 in bf16. Outputs are
NaN-poisoned. Selections are random subsets of each row's visible keys (k below, at and above the
visible count), padded with -1; the interpreter's 32x32 tiles make S=37 / T=301 cover several query
and key blocks, both kernel phases and bitmask words shared by many keys.
"""
from __future__ import annotations

import pytest
import torch

from kernels.dense_mha import dense_mha
from kernels.masked_mha import masked_mha, selection_bits
from kernels.reference.masked_mha import masked_mha as ref_masked_mha

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def _inputs(B, S, H, T, d_qk, d_v, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, H, d_qk, generator=g).to(dtype)
    k = torch.randn(B, T, H, d_qk, generator=g).to(dtype)
    v = torch.randn(B, T, H, d_v, generator=g).to(dtype)
    return g, q.to(DEVICE), k.to(DEVICE), v.to(DEVICE)


def _selection(g, B, S, T, K, q_start):
    """Up to K distinct visible keys per row (random order), -1 padded, like the top-k kernel's output."""
    idx = torch.full((B, S, K), -1, dtype=torch.int32)
    for b in range(B):
        for i in range(S):
            vis = min(T, q_start + i + 1)
            n = min(K, vis)
            idx[b, i, :n] = torch.randperm(vis, generator=g)[:n].to(torch.int32)
    return idx.to(DEVICE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "B,S,H,T,q_start,K",
    [
        (2, 37, 3, 301, None, 40),  # chunk at the end of the context, k << visible
        (1, 37, 2, 301, 100, 500),  # k larger than the context: every visible key
        (1, 70, 2, 70, 0, 17),  # square causal prefill, odd k
    ],
)
def test_masked_mha_matches_reference(B, S, H, T, q_start, K, dtype):
    g, q, k, v = _inputs(B, S, H, T, 48, 32, dtype, seed=S + T + K)
    qs = T - S if q_start is None else q_start
    idx = _selection(g, B, S, T, K, qs)
    out = torch.full((B, S, H, 32), float("nan"), dtype=dtype, device=DEVICE)
    assert masked_mha(q, k, v, idx, sm_scale=0.1, q_start=q_start, out=out) is out
    ref = ref_masked_mha(q, k, v, idx, sm_scale=0.1, q_start=q_start)
    assert torch.isfinite(out).all()
    rel = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    assert rel < TOL[dtype], rel


def test_per_key_selection_loads_match(monkeypatch):
    """The kernel's other bit-reading variant (a word per key; SEL_PER_KEY in dense_mha's CONFIG) agrees too."""
    from kernels._common import launch_config
    from kernels.dense_mha import CONFIG

    monkeypatch.setitem(launch_config(CONFIG)["masked"], "SEL_PER_KEY", True)
    g, q, k, v = _inputs(2, 37, 2, 301, 48, 32, torch.float32, seed=11)
    idx = _selection(g, 2, 37, 301, 40, 301 - 37)
    out = masked_mha(q, k, v, idx, sm_scale=0.1)
    ref = ref_masked_mha(q, k, v, idx, sm_scale=0.1)
    assert ((out - ref).norm() / ref.norm()).item() < 1e-5


def test_full_selection_equals_dense():
    """Selecting every visible key is plain causal MHA."""
    g, q, k, v = _inputs(1, 33, 2, 97, 48, 32, torch.float32, seed=3)
    idx = _selection(g, 1, 33, 97, 97, 97 - 33)
    out = masked_mha(q, k, v, idx, sm_scale=0.2)
    dense = dense_mha(q, k, v, sm_scale=0.2)
    assert ((out - dense).norm() / dense.norm()).item() < 1e-5


def test_selection_bits_and_invisible_indices():
    """Bits land where the indices say; -1 and out-of-range entries set nothing; a listed key past
    the causal frontier is not attended (reference and kernel agree, the row equals its visible part)."""
    idx = torch.tensor([[[0, 31, 32, 70, -1, 500]]], dtype=torch.int32, device=DEVICE)
    bits = selection_bits(idx, 71).cpu()
    assert bits.shape == (1, 1, 3)
    want = torch.zeros(71, dtype=torch.bool)
    want[[0, 31, 32, 70]] = True
    got = torch.tensor([(int(bits[0, 0, t // 32]) >> (t % 32)) & 1 for t in range(71)], dtype=torch.bool)
    assert torch.equal(got, want)
    g, q, k, v = _inputs(1, 2, 1, 40, 48, 32, torch.float32, seed=5)
    sel = torch.tensor([[[0, 5, 39], [0, 5, 39]]], dtype=torch.int32, device=DEVICE)  # 39 invisible to row 0
    out = masked_mha(q, k, v, sel, sm_scale=0.3, q_start=10)
    ref = ref_masked_mha(q, k, v, sel, sm_scale=0.3, q_start=10)
    vis = ref_masked_mha(q, k, v, sel[..., :2].contiguous(), sm_scale=0.3, q_start=10)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(ref, vis, atol=1e-6)


def test_masked_mha_validation():
    g, q, k, v = _inputs(1, 4, 2, 10, 48, 32, torch.float32, seed=1)
    for fn in (masked_mha, ref_masked_mha):
        with pytest.raises(ValueError, match="^indices: expected dtype"):
            fn(q, k, v, torch.zeros(1, 4, 3), sm_scale=0.1)
        with pytest.raises(ValueError, match="^indices: dimension 1 must be 4"):
            fn(q, k, v, torch.zeros(1, 5, 3, dtype=torch.int32), sm_scale=0.1)
