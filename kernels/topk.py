"""Top-k indices of each score row by radix select in Triton (no sort), plus the torch.topk baseline.

Scores map to uint32 keys whose unsigned order is the float order. One program per row:
  1. 32 / RADIX_BITS passes over the row, each building a histogram (tl.histogram) of the next digit
     over the finite keys that match the digits fixed so far, and fixing the digit in which the k-th
     largest key falls. After the last pass `thr` is exactly the k-th largest key and `k_eq` is how
     many keys equal to it must be taken.
  2. One pass writing the positions of keys > thr, then the first k_eq keys == thr (row order), at
     output slots counted with tl.cumsum; slots past the number of finite scores get -1.
-inf (and NaN) never count. When there are few rows and long ones (decode), each row is split into
segments that select their own top-k candidates (indices and values) in parallel, and a second launch
selects from the SPLITS * topk candidates: the union of segment top-ks contains the row's top-k.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels._common import num_sms
from kernels._indexer_args import check_topk_args
from kernels.reference.topk import topk_rows

BLOCK = 4096  # scores per loop step
# Digit width. tl.histogram's cost per element grows with its bins (ballot per bit, then each lane
# popcounts its bins), so narrow digits win despite more passes. Measured on an H200 (2048 rows of
# 32K / 128K scores, topk 2048): 4 bits 1.37 / 5.6 ms, 6 bits 1.42 / 5.5, 8 bits 1.58 / 6.6,
# 11 bits 6.3 / 25.7 ms.
RADIX_BITS = 4
# Many programs: small ones overlap well. Few programs (decode): wide ones finish each row sooner
# (4 rows of 128K: 16 warps 110 us, 4 warps 187 us).
NUM_WARPS_MANY, NUM_WARPS_FEW = 4, 16
_INT32_MIN = tl.constexpr(-(2**31))


@triton.jit
def _keys(x):
    # Flip every bit of negatives and only the sign bit of the rest: unsigned order == float order.
    bits = x.to(tl.int32, bitcast=True)
    return (bits ^ ((bits >> 31) | _INT32_MIN)).to(tl.uint32, bitcast=True)


@triton.jit
def _radix_pass(x_row, sxt, n, prefix, k_rem, SHIFT: tl.constexpr, MATCH: tl.constexpr,
                NBINS: tl.constexpr, BLOCK: tl.constexpr):
    """Histogram the digit at SHIFT of the finite keys whose bits >= MATCH equal prefix's; fix that digit."""
    hist = tl.zeros((NBINS,), tl.int32)
    t0 = n * 0
    while t0 < n:  # `while`, not range(): the interpreter cannot range() over runtime scalars
        offs = t0 + tl.arange(0, BLOCK)
        x = tl.load(x_row + offs * sxt, mask=offs < n, other=float("-inf"))
        key = _keys(x)
        cand = x > float("-inf")
        if MATCH < 32:
            cand = cand & ((key >> MATCH) == (prefix >> MATCH))
        digit = ((key >> SHIFT) & (NBINS - 1)).to(tl.int32)
        hist += tl.histogram(digit, NBINS, mask=cand)
        t0 += BLOCK
    # Highest bin whose count of candidates at or above it still reaches k_rem holds the k-th key.
    bins = tl.arange(0, NBINS)
    at_or_above = tl.cumsum(hist, 0, reverse=True)
    sel = tl.max(tl.where(at_or_above >= k_rem, bins, 0), 0)
    above = tl.sum(tl.where(bins > sel, hist, 0), 0)
    return prefix | (sel.to(tl.uint32) << SHIFT), k_rem - above, tl.sum(hist, 0)


@triton.jit
def _topk_kernel(
    x_ptr, map_ptr, oi_ptr, ov_ptr,
    S, L, seg, K,
    sxb, sxs, sxt, smb, sms, smt, sob, sos, soj,
    BLOCK: tl.constexpr, HAS_MAP: tl.constexpr, WRITE_VALUES: tl.constexpr, NBINS: tl.constexpr,
    S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr, S3: tl.constexpr,
    S4: tl.constexpr, S5: tl.constexpr, S6: tl.constexpr, S7: tl.constexpr,
):
    row = tl.program_id(0)
    j = tl.program_id(1)
    b = (row // S).to(tl.int64)
    s = (row % S).to(tl.int64)
    start = j * seg
    n = tl.minimum(seg, L - start)  # this program's segment [start, start + n) of the row
    x_row = x_ptr + b * sxb + s * sxs + start.to(tl.int64) * sxt
    o_off = b * sob + s * sos + j * soj

    # Radix passes, most significant digit first; S_i = -1 marks an unused pass.
    prefix = (n * 0).to(tl.uint32)  # from n, a tensor: K may arrive as a Python int (topk=1 is specialized)
    prefix, k_rem, n_valid = _radix_pass(x_row, sxt, n, prefix, K, S0, 32, NBINS, BLOCK)
    if S1 >= 0:
        prefix, k_rem, _ = _radix_pass(x_row, sxt, n, prefix, k_rem, S1, S0, NBINS, BLOCK)
    if S2 >= 0:
        prefix, k_rem, _ = _radix_pass(x_row, sxt, n, prefix, k_rem, S2, S1, NBINS, BLOCK)
    if S3 >= 0:
        prefix, k_rem, _ = _radix_pass(x_row, sxt, n, prefix, k_rem, S3, S2, NBINS, BLOCK)
    if S4 >= 0:
        prefix, k_rem, _ = _radix_pass(x_row, sxt, n, prefix, k_rem, S4, S3, NBINS, BLOCK)
    if S5 >= 0:
        prefix, k_rem, _ = _radix_pass(x_row, sxt, n, prefix, k_rem, S5, S4, NBINS, BLOCK)
    if S6 >= 0:
        prefix, k_rem, _ = _radix_pass(x_row, sxt, n, prefix, k_rem, S6, S5, NBINS, BLOCK)
    if S7 >= 0:
        prefix, k_rem, _ = _radix_pass(x_row, sxt, n, prefix, k_rem, S7, S6, NBINS, BLOCK)
    # Fewer finite keys than K: take them all (every finite key is > 0 as a uint32 key).
    take_all = n_valid <= K
    thr = tl.where(take_all, 0, prefix)
    k_eq = tl.where(take_all, 0, k_rem)
    n_sel = tl.minimum(n_valid, K)
    n_gt = n_sel - k_eq

    seen_gt = k_eq * 0
    seen_eq = k_eq * 0
    t0 = n * 0
    while t0 < n:
        offs = t0 + tl.arange(0, BLOCK)
        x = tl.load(x_row + offs * sxt, mask=offs < n, other=float("-inf"))
        key = _keys(x)
        finite = x > float("-inf")
        gt = (finite & (key > thr)).to(tl.int32)
        eq = (finite & (key == thr)).to(tl.int32)
        rank_eq = seen_eq + tl.cumsum(eq, 0) - 1
        take = (gt != 0) | ((eq != 0) & (rank_eq < k_eq))
        pos = tl.where(gt != 0, seen_gt + tl.cumsum(gt, 0) - 1, n_gt + rank_eq)
        if HAS_MAP:
            idx = tl.load(map_ptr + b * smb + s * sms + offs * smt, mask=take, other=-1)
        else:
            idx = start + offs
        tl.store(oi_ptr + o_off + pos, idx, mask=take)
        if WRITE_VALUES:
            tl.store(ov_ptr + o_off + pos, x, mask=take)
        seen_gt += tl.sum(gt, 0)
        seen_eq += tl.sum(eq, 0)
        t0 += BLOCK
    p0 = n_sel // BLOCK * BLOCK  # only the tail of the row needs -1
    while p0 < K:
        p = p0 + tl.arange(0, BLOCK)
        pad = (p >= n_sel) & (p < K)
        tl.store(oi_ptr + o_off + p, tl.full((BLOCK,), -1, tl.int32), mask=pad)
        if WRITE_VALUES:
            tl.store(ov_ptr + o_off + p, tl.full((BLOCK,), float("-inf"), tl.float32), mask=pad)
        p0 += BLOCK


def _shift_args(bits: int) -> dict:
    """Digit shifts, most significant first; the last digit overlaps already fixed bits if needed."""
    shifts = list(range(32 - bits, 0, -bits)) + [0]
    assert len(shifts) <= 8, "RADIX_BITS must be >= 4"
    shifts += [-1] * (8 - len(shifts))
    return dict(NBINS=1 << bits, **{f"S{i}": v for i, v in enumerate(shifts)})


def _auto_splits(rows: int, T: int, topk: int, sms: int) -> int:
    """Split rows only when rows alone leave SMs idle and rows are long against topk.

    Cost ~ T / splits (stage 1) + splits * topk (stage 2), least at splits = sqrt(T / topk).
    """
    if rows >= sms or T < 16 * topk:
        return 1
    return 1 << int(round(math.log2(math.sqrt(T / topk))))


def topk_indices(
    scores: torch.Tensor,
    topk: int,
    *,
    out: torch.Tensor | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """int32 [B, S, topk]: positions of the topk largest finite scores per row (any order), -1 padded.

    `splits` forces the number of row segments (tests); by default chosen by `_auto_splits`.
    """
    B, S, T = check_topk_args(scores, topk, out, triton=True)
    if out is None:
        out = torch.empty(B, S, topk, dtype=torch.int32, device=scores.device)
    rows = B * S
    if rows == 0:
        return out
    if out.stride(2) != 1:  # the kernel writes slots of a row contiguously
        out.copy_(topk_indices(scores, topk, splits=splits))
        return out
    sms = num_sms(scores.device)
    if splits is None:
        splits = _auto_splits(rows, T, topk, sms)
    splits = max(1, min(int(splits), T))
    launch = dict(BLOCK=BLOCK, **_shift_args(RADIX_BITS))

    def nw(programs: int) -> int:
        return NUM_WARPS_MANY if programs >= 2 * sms else NUM_WARPS_FEW
    if splits == 1:
        _topk_kernel[(rows, 1)](
            scores, scores, out, out, S, T, T, topk,
            *scores.stride(), 0, 0, 0, out.stride(0), out.stride(1), 0,
            HAS_MAP=False, WRITE_VALUES=False, num_warps=nw(rows), **launch,
        )
        return out
    seg = triton.cdiv(T, splits)
    splits = triton.cdiv(T, seg)  # no empty segments
    cand_i = torch.empty(B, S, splits, topk, dtype=torch.int32, device=scores.device)
    cand_v = torch.empty(B, S, splits, topk, dtype=torch.float32, device=scores.device)
    _topk_kernel[(rows, splits)](
        scores, scores, cand_i, cand_v, S, T, seg, topk,
        *scores.stride(), 0, 0, 0, *cand_i.stride()[:3],
        HAS_MAP=False, WRITE_VALUES=True, num_warps=nw(rows * splits), **launch,
    )
    L2 = splits * topk
    cv, ci = cand_v.view(B, S, L2), cand_i.view(B, S, L2)
    _topk_kernel[(rows, 1)](
        cv, ci, out, out, S, L2, L2, topk,
        *cv.stride(), *ci.stride(), out.stride(0), out.stride(1), 0,
        HAS_MAP=True, WRITE_VALUES=False, num_warps=nw(rows), **launch,
    )
    return out


def topk_indices_torch(scores: torch.Tensor, topk: int, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Baseline with the same contract: one torch.topk over all rows (what a framework would call)."""
    B, S, T = check_topk_args(scores, topk, out, triton=False)
    if out is None:
        out = torch.empty(B, S, topk, dtype=torch.int32, device=scores.device)
    return topk_rows(scores, topk, out)
