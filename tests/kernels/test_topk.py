"""Triton radix-select top-k (and the torch.topk baseline) checked as sets against the contract.

For each row: selected positions are distinct, in range and finite; the smallest selected score is >=
every unselected finite score (ties may be broken either way); the multiset of selected scores equals
torch.topk's; the number of -1 equals max(0, topk - finite count). Outputs are poisoned with -7 first.
"""
from __future__ import annotations

import pytest
import torch

from kernels.reference.topk import topk_indices as ref_topk
from kernels.topk import topk_indices, topk_indices_torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NEG_INF = float("-inf")


def _check(scores, topk, idx, q_start=None):
    assert idx.shape == (*scores.shape[:2], topk) and idx.dtype == torch.int32
    want = ref_topk(scores, topk, q_start=q_start)
    B, S, T = scores.shape
    for b in range(B):
        for s in range(S):
            row, ii = scores[b, s].cpu().clone(), idx[b, s].cpu().long()
            if q_start is not None:
                row[q_start + s + 1:] = NEG_INF  # past the frontier counts as -inf
            n_fin = int((row > NEG_INF).sum())
            assert int((ii == -1).sum()) == max(0, topk - n_fin), (b, s)
            sel = ii[ii != -1]
            assert ((sel >= 0) & (sel < T)).all(), (b, s, "index out of range or unwritten")
            assert sel.unique().numel() == sel.numel(), (b, s, "duplicates")
            assert (row[sel] > NEG_INF).all(), (b, s, "-inf selected")
            rest = torch.ones(T, dtype=torch.bool)
            rest[sel] = False
            rest &= row > NEG_INF
            if sel.numel() and rest.any():
                assert row[sel].min() >= row[rest].max(), (b, s, "a larger score was left out")
            w = want[b, s].cpu().long()
            assert torch.equal(row[sel].sort().values, row[w[w != -1]].sort().values), (b, s)


def _scores(B, S, T, seed, *, ties=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, (B, S, T), generator=g).float() if ties else torch.randn(B, S, T, generator=g)
    x[0, 0, T // 3:] = NEG_INF                  # causal-like row: a finite prefix
    x[-1, -1] = NEG_INF                         # row with no visible token
    if S > 1:
        x[0, 1, ::2] = NEG_INF                  # scattered -inf
    return x.to(DEVICE)


# (B, S, T, topk, splits): splits=None is the automatic choice (the interpreter counts 4 SMs, so
# a single row long against topk takes the two-stage split path).
CASES = [
    (2, 3, 301, 16, None),     # many rows: one program per row
    (2, 3, 301, 1, None),      # topk = 1 (Triton passes an int 1 argument as a constexpr)
    (1, 1, 1, 5, None),        # T = 1, one row
    (1, 1, 3001, 40, None),    # one long row: auto split (4 segments)
    (2, 2, 5000, 37, 1),       # rows longer than one 4096 block, no split
    (2, 2, 5000, 100, 3),      # forced split into 3 uneven segments
    (1, 3, 50, 64, None),      # topk > T: every finite score, then -1
    (2, 2, 301, 300, 2),       # topk > finite count in masked rows, with split
    (1, 2, 20000, 100, 1),     # long rows: sample -> filter -> select on the short list
    (1, 1, 30000, 300, None),  # one long row, auto split, sampled segments and merge
]


@pytest.mark.parametrize("B,S,T,topk,splits", CASES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_topk_triton(B, S, T, topk, splits, ties):
    sc = _scores(B, S, T, seed=T + topk, ties=ties)
    out = torch.full((B, S, topk), -7, dtype=torch.int32, device=DEVICE)
    got = topk_indices(sc, topk, out=out, splits=splits)
    assert got.data_ptr() == out.data_ptr()
    _check(sc, topk, out)


@pytest.mark.parametrize("impl", [topk_indices, ref_topk], ids=["triton", "reference"])
@pytest.mark.parametrize("T,q_start,splits", [(12000, 5000, 1), (9001, 0, None), (700, 650, 1)])
def test_topk_causal_frontier(impl, T, q_start, splits):
    """With q_start, row i ignores positions > q_start + i even when finite scores sit there."""
    B, S, topk = 1, 3, 64
    sc = torch.randn(B, S, T, generator=torch.Generator().manual_seed(T)).to(DEVICE)
    sc[..., -7:] = 1e6  # huge scores past every frontier must never be picked
    out = torch.full((B, S, topk), -7, dtype=torch.int32, device=DEVICE)
    kw = {"splits": splits} if impl is topk_indices else {}
    impl(sc, topk, q_start=q_start, out=out, **kw)
    _check(sc, topk, out, q_start=q_start)


def test_topk_fast_path_taken_and_fallback_on_ties():
    """Random long rows must take the sampled filter (no fallback); a row of few distinct values
    overflows the filter's list and must fall back to the whole-row select, still correct."""
    fb = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    sc = torch.randn(2, 2, 20000, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    out = topk_indices(sc, 100, splits=1, fallbacks=fb)
    _check(sc, 100, out)
    assert fb.item() == 0
    ties = torch.randint(-1, 2, (1, 2, 20000), generator=torch.Generator().manual_seed(4)).float().to(DEVICE)
    out = topk_indices(ties, 50, splits=1, fallbacks=fb)
    _check(ties, 50, out)
    assert fb.item() == 2


def test_topk_strided_scores_and_allocated_output():
    wide = torch.randn(2, 3, 400, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    sc = wide[..., 17:318]  # row stride 400, T = 301
    _check(sc, 20, topk_indices(sc, 20))


def test_topk_negative_values_and_signed_zero():
    # key mapping must order negatives, -0.0 and 0.0 correctly
    row = torch.tensor([-5.0, -0.0, 0.0, -1e-30, 1e-30, -3.0, 2.0, -2.5, NEG_INF, -1e30])
    sc = row.repeat(1, 2, 1).to(DEVICE)
    for topk in (1, 3, 5, 8, 9, 12):
        _check(sc, topk, topk_indices(sc, topk))


@pytest.mark.parametrize("impl", [topk_indices_torch, ref_topk], ids=["torch_baseline", "reference"])
def test_topk_torch_versions(impl):
    sc = _scores(2, 3, 301, seed=11)
    for topk in (16, 400):
        out = torch.full((2, 3, topk), -7, dtype=torch.int32, device=DEVICE)
        impl(sc, topk, out=out)
        _check(sc, topk, out)


@pytest.mark.parametrize("impl", [topk_indices, topk_indices_torch, ref_topk],
                         ids=["triton", "torch_baseline", "reference"])
def test_topk_argument_errors(impl):
    sc = _scores(1, 2, 30, seed=1)
    with pytest.raises(ValueError, match="^scores: expected dtype"):
        impl(sc.to(torch.bfloat16), 4)
    with pytest.raises(ValueError, match="^scores: expected 3 dimensions"):
        impl(sc[0], 4)
    with pytest.raises(ValueError, match="^topk: expected a positive int"):
        impl(sc, 0)
    with pytest.raises(ValueError, match="^out: dimension 2 must be 4"):
        impl(sc, 4, out=torch.empty(1, 2, 5, dtype=torch.int32, device=DEVICE))
    with pytest.raises(ValueError, match="^out: expected dtype"):
        impl(sc, 4, out=torch.empty(1, 2, 4, dtype=torch.int64, device=DEVICE))
    with pytest.raises(ValueError, match="^out: all tensors must be on one device"):
        impl(sc, 4, out=torch.empty(1, 2, 4, dtype=torch.int32, device="meta"))


def test_topk_triton_rejects_non_triton_device():
    with pytest.raises(ValueError, match="^scores: Triton kernels need a CUDA tensor"):
        topk_indices(torch.empty(1, 2, 30, device="meta"), 4)
