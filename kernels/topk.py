"""Top-k indices of each score row in Triton: sample, filter once, radix-select the few survivors.

Scores map to uint32 keys whose unsigned order is the float order (-inf and NaN never count). Per row
(or row segment), one program:
  1. reads a sample of SAMPLE_CHUNKS x SAMPLE_WIDTH scores spread over the row (whole 128-byte lines)
     and finds, in registers, the sample key whose rank predicts ~OVERSAMPLE * k row keys above it;
  2. reads the row once, appending every key >= that threshold (value and index) to a per-program
     scratch list of CAP entries (in L2), slots counted with tl.cumsum;
  3. if the list holds between k and CAP keys (or every finite key), radix-selects the k-th key on the
     list (4-bit digits, tl.histogram; a few KB, so the eight passes are cheap) and writes the keys
     above it, then the first keys equal to it; otherwise (a skewed sample, heavy ties) it falls back
     to the same radix select over the whole row, which is always right and 9 row reads slow.
So a long row costs one read plus the sample. Rows shorter than CAP go straight to the radix select.
With `q_start`, row i only reads its visible prefix [0, q_start + i] (causal prefill: half the bytes).

Few long rows (decode): each row is cut into segments that select their own top-k (values kept), and
a second launch selects from the segments' candidates (the union of segment top-ks holds the row's).

History, H200, [4096 x 131072] fp32 rows, k = 2048: the previous kernel (eight 4-bit histogram passes
over the row, then a write pass) took 11.2 ms against torch.topk's 6.2 ms; 11-bit digits (3 passes)
were slower still (tl.histogram's cost grows with its bins). The new kernel's numbers are in the README.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels._common import apply_interpreter_fixes, launch_config, num_sms
from kernels._indexer_args import check_topk_args
from kernels.topk_torch import topk_indices_torch  # noqa: F401  (re-export: the torch.topk baseline)

apply_interpreter_fixes()

# GPU launch shapes by regime, measured on an H200 (k = 2048, fp32 rows of 128K):
# - many rows (prefill): 4 warps; 4096-score blocks took 255 registers a thread (ncu: 12.5%
#   occupancy, one scheduler slot in four issued), 512 take 89, so 5 programs stay resident per SM:
#   [4096 x 131072] 3.93 ms -> 2.63 ms (1024-score blocks: 3.49 ms);
# - rows <= 2 x SMs (decode): one program per row, 16 warps, 4096-score blocks: B=64 x 2 tokens
#   0.111 ms (512: 0.31 ms, 1024: 0.20 ms).
# RADIX_BITS: digit width (tl.histogram costs grow with bins: 4 bits measured best, see history);
# SAMPLE_CHUNKS x SAMPLE_WIDTH: the sampled scores, in 128-byte runs.
# The interpreter pays per executed block operation, not per element, and the CPU tests run many short
# rows through the radix select: 8-bit digits halve its passes (4 instead of 8) and cut a top-k call by
# ~40%. Block and sample sizes stay the GPU's: narrower blocks only add loop trips there, and a
# smaller sample would make the sampled filter miss (and fall back) far more often.
CONFIG = {
    "gpu": dict(BLOCK_MANY=512, PROGRAMS_PER_SM_MANY=5, NUM_WARPS_MANY=4, BLOCK_FEW=4096, NUM_WARPS_FEW=16,
                RADIX_BITS=4, SAMPLE_CHUNKS=128, SAMPLE_WIDTH=32),
    "interpreter": dict(BLOCK_MANY=512, PROGRAMS_PER_SM_MANY=5, NUM_WARPS_MANY=4, BLOCK_FEW=4096, NUM_WARPS_FEW=16,
                        RADIX_BITS=8, SAMPLE_CHUNKS=128, SAMPLE_WIDTH=32),
}
OVERSAMPLE = 1.5  # aim the filter at 1.5 k + 128 survivors: k is missed only ~4 sigma off
_INT32_MIN = tl.constexpr(-(2**31))


@triton.jit
def _keys(x):
    # Flip every bit of negatives and only the sign bit of the rest: unsigned order == float order.
    bits = x.to(tl.int32, bitcast=True)
    return (bits ^ ((bits >> 31) | _INT32_MIN)).to(tl.uint32, bitcast=True)


@triton.jit
def _pick_digit(hist, prefix, k_rem, SHIFT: tl.constexpr, NBINS: tl.constexpr):
    """Fix the digit at SHIFT: the highest bin whose count at-or-above still reaches k_rem."""
    bins = tl.arange(0, NBINS)
    at_or_above = tl.cumsum(hist, 0, reverse=True)
    sel = tl.max(tl.where(at_or_above >= k_rem, bins, 0), 0)
    above = tl.sum(tl.where(bins > sel, hist, 0), 0)
    return prefix | (sel.to(tl.uint32) << SHIFT), k_rem - above


@triton.jit
def _radix_select(v_ptr, sv, n, K, step, RADIX_BITS: tl.constexpr, BLOCK: tl.constexpr, WIDTH: tl.constexpr):
    """Over n scores at v_ptr (stride sv): (k-th largest finite key, how many keys equal to it to
    take, number of finite keys); every pass re-reads the n scores. WIDTH = 0: the n scores are
    contiguous; WIDTH > 0: a sampled view, score i at (i // WIDTH) * step + i % WIDTH."""
    NBINS: tl.constexpr = 1 << RADIX_BITS
    prefix = (n * 0).to(tl.uint32)
    k_rem = K + n * 0  # K may arrive as a Python int (topk = 1 is specialised)
    n_valid = n * 0
    for i in tl.static_range(32 // RADIX_BITS):
        SHIFT = 32 - RADIX_BITS * (i + 1)
        hist = tl.zeros((NBINS,), tl.int32)
        t0 = n * 0
        while t0 < n:
            offs = t0 + tl.arange(0, BLOCK)
            if WIDTH > 0:
                at = (offs // WIDTH) * step + offs % WIDTH
            else:
                at = offs
            x = tl.load(v_ptr + at * sv, mask=offs < n, other=float("-inf"))
            key = _keys(x)
            cand = x > float("-inf")
            if i > 0:
                cand = cand & ((key >> (SHIFT + RADIX_BITS)) == (prefix >> (SHIFT + RADIX_BITS)))
            hist += tl.histogram(((key >> SHIFT) & (NBINS - 1)).to(tl.int32), NBINS, mask=cand)
            t0 += BLOCK
        if i == 0:
            n_valid = tl.sum(hist, 0)
        prefix, k_rem = _pick_digit(hist, prefix, k_rem, SHIFT, NBINS)
    # Fewer finite keys than K: take them all (every finite key is > 0 as a uint32 key).
    take_all = n_valid <= K
    return tl.where(take_all, 0, prefix), tl.where(take_all, 0, k_rem), n_valid


@triton.jit
def _sample_threshold(v_ptr, sv, n, target, NCH: tl.constexpr, WIDTH: tl.constexpr,
                      RADIX_BITS: tl.constexpr, BLOCK: tl.constexpr):
    """A key such that about `target` of the n row keys are >= it: the r-th largest key of a sample
    of NCH runs of WIDTH scores spread over the row (n >= NCH * WIDTH), r scaled from target.
    0 (= every finite key) when the sample has at most r finite keys. The sample is re-read from L2
    on each radix pass, BLOCK at a time, rather than held in registers (registers set occupancy)."""
    M: tl.constexpr = NCH * WIDTH
    r = tl.maximum((target * M + n - 1) // n, 1)
    thr, _, _ = _radix_select(v_ptr, sv, n * 0 + M, r, n // NCH, RADIX_BITS, BLOCK, WIDTH)
    return thr


@triton.jit
def _filter(v_ptr, sv, m_ptr, sm, HAS_MAP: tl.constexpr, base, n, thr, cv_ptr, ci_ptr,
            CAP: tl.constexpr, BLOCK: tl.constexpr):
    """Append (value, index) of every finite key >= thr to the scratch list; returns how many there
    were (entries past CAP are counted, not stored).

    The block is viewed as [BLOCK / 32, 32]: slots come from a scan of the 32-wide rows' counts plus
    a scan inside each row. A flat tl.cumsum over 4096 lanes compiles to ~2x the instructions and
    barriers (242 shuffles, 39 barriers a block vs 66 / 27, from the PTX), and this pass is the one
    that reads the whole row.
    """
    R: tl.constexpr = BLOCK // 32
    count = n * 0
    t0 = n * 0
    while t0 < n:
        offs = t0 + tl.arange(0, R)[:, None] * 32 + tl.arange(0, 32)[None, :]
        x = tl.load(v_ptr + offs * sv, mask=offs < n, other=float("-inf"))
        keep = (x > float("-inf")) & (_keys(x) >= thr)
        k32 = keep.to(tl.int32)
        row_cnt = tl.sum(k32, 1)
        pos = count + (tl.cumsum(row_cnt, 0) - row_cnt)[:, None] + tl.cumsum(k32, 1) - 1
        st = keep & (pos < CAP)
        if HAS_MAP:
            idx = tl.load(m_ptr + offs * sm, mask=st, other=-1)
        else:
            idx = base + offs
        tl.store(cv_ptr + pos, x, mask=st)
        tl.store(ci_ptr + pos, idx, mask=st)
        count += tl.sum(row_cnt, 0)
        t0 += BLOCK
    return count


@triton.jit
def _write_selected(v_ptr, sv, i_ptr, si, use_map, base, n, thr, k_eq, n_sel, K,
                    oi_ptr, ov_ptr, WRITE_VALUES: tl.constexpr, BLOCK: tl.constexpr):
    """Write the keys > thr, then the first k_eq keys == thr (row order), then -1 up to K slots."""
    n_gt = n_sel - k_eq
    seen_gt = k_eq * 0
    seen_eq = k_eq * 0
    t0 = n * 0
    while t0 < n:
        offs = t0 + tl.arange(0, BLOCK)
        x = tl.load(v_ptr + offs * sv, mask=offs < n, other=float("-inf"))
        key = _keys(x)
        finite = x > float("-inf")
        gt = (finite & (key > thr)).to(tl.int32)
        eq = (finite & (key == thr)).to(tl.int32)
        rank_eq = seen_eq + tl.cumsum(eq, 0) - 1
        take = (gt != 0) | ((eq != 0) & (rank_eq < k_eq))
        pos = tl.where(gt != 0, seen_gt + tl.cumsum(gt, 0) - 1, n_gt + rank_eq)
        idx = tl.where(use_map, tl.load(i_ptr + offs * si, mask=take & use_map, other=-1), base + offs)
        tl.store(oi_ptr + pos, idx, mask=take)
        if WRITE_VALUES:
            tl.store(ov_ptr + pos, x, mask=take)
        seen_gt += tl.sum(gt, 0)
        seen_eq += tl.sum(eq, 0)
        t0 += BLOCK
    p0 = n_sel // BLOCK * BLOCK  # only the tail of the row needs -1
    while p0 < K:
        p = p0 + tl.arange(0, BLOCK)
        pad = (p >= n_sel) & (p < K)
        tl.store(oi_ptr + p, tl.full((BLOCK,), -1, tl.int32), mask=pad)
        if WRITE_VALUES:
            tl.store(ov_ptr + p, tl.full((BLOCK,), float("-inf"), tl.float32), mask=pad)
        p0 += BLOCK


@triton.jit
def _topk_kernel(
    x_ptr, map_ptr, oi_ptr, ov_ptr, cv_ptr, ci_ptr, fb_ptr,
    S, L, seg, n_seg, K, target, q_start, n_work,
    sxb, sxs, sxt, smb, sms, smt, sob, sos, soj,
    HAS_MAP: tl.constexpr, WRITE_VALUES: tl.constexpr, CAUSAL: tl.constexpr, COUNT_FB: tl.constexpr,
    CAP: tl.constexpr, BLOCK: tl.constexpr, RADIX_BITS: tl.constexpr,
    NCH: tl.constexpr, WIDTH: tl.constexpr,
):
    pid = tl.program_id(0)
    cv = cv_ptr + pid.to(tl.int64) * CAP  # this program's scratch list
    ci = ci_ptr + pid.to(tl.int64) * CAP
    w = pid
    while w < n_work:  # persistent: work items are (row, segment)
        row = w // n_seg
        j = w % n_seg
        b = (row // S).to(tl.int64)
        s = (row % S).to(tl.int64)
        row_len = L
        if CAUSAL:
            row_len = tl.minimum(L, q_start + (row % S) + 1)
        start = j * seg
        n = tl.maximum(tl.minimum(seg, row_len - start), 0)  # segment [start, start + n)
        x_row = x_ptr + b * sxb + s * sxs + start.to(tl.int64) * sxt
        m_row = map_ptr + b * smb + s * sms + start.to(tl.int64) * smt
        o_off = b * sob + s * sos + j * soj

        ok = n < 0
        count = n * 0
        if n > CAP:
            thr = _sample_threshold(x_row, sxt, n, target, NCH, WIDTH, RADIX_BITS, BLOCK)
            count = _filter(x_row, sxt, m_row, smt, HAS_MAP, start, n, thr, cv, ci, CAP, BLOCK)
            ok = (count <= CAP) & ((count >= K) | (thr == 0))
            tl.debug_barrier()  # the list is read back by other threads of the program
            if COUNT_FB:
                tl.atomic_add(fb_ptr, tl.where(ok, 0, 1))
        if ok:
            src_v, src_sv, src_i, src_si, use_map, m = cv, n * 0 + 1, ci, n * 0 + 1, n >= 0, count
        else:  # stride args may arrive as constexpr 1: make both branches i32 tensors
            src_v, src_sv, src_i, src_si, use_map, m = x_row, n * 0 + sxt, m_row, n * 0 + smt, (n >= 0) & HAS_MAP, n
        thr, k_eq, n_valid = _radix_select(src_v, src_sv, m, K, m * 0, RADIX_BITS, BLOCK, 0)
        _write_selected(src_v, src_sv, src_i, src_si, use_map, start, m, thr, k_eq,
                        tl.minimum(n_valid, K), K, oi_ptr + o_off, ov_ptr + o_off, WRITE_VALUES, BLOCK)
        tl.debug_barrier()  # the next work item overwrites the list
        w += tl.num_programs(0)


def _auto_splits(rows: int, T: int, topk: int, sms: int) -> int:
    """Split rows only when rows leave most SMs idle and rows are long against topk.

    Cost ~ T / splits (stage 1) + splits * topk (stage 2), least at splits = sqrt(T / topk), and no
    more segments than fill the SMs. Measured on an H200 (fp32 rows of 128K, k = 2048): 128 rows
    0.16 ms unsplit, 0.23 / 0.30 / 0.41 ms in 2 / 4 / 8 segments; so half-full is left unsplit.
    """
    if 2 * rows >= sms or T < 16 * topk:
        return 1
    best = 1 << int(round(math.log2(math.sqrt(T / topk))))
    return max(1, min(best, 1 << int(math.log2(sms // rows))))


def _capacity(topk: int, cfg: dict) -> int:  # scratch entries per program: room for ~2.5x the filter's target
    return max(cfg["SAMPLE_CHUNKS"] * cfg["SAMPLE_WIDTH"], triton.next_power_of_2(4 * topk))


def _launch(x, xmap, oi, ov, *, S, L, seg, n_seg, topk, q_start, o_strides, map_strides, fallbacks):
    rows = x.shape[0] * S
    n_work = rows * n_seg
    cfg = launch_config(CONFIG)
    sms = num_sms(x.device)
    many = n_work >= 2 * sms
    block, nw = (cfg["BLOCK_MANY"], cfg["NUM_WARPS_MANY"]) if many else (cfg["BLOCK_FEW"], cfg["NUM_WARPS_FEW"])
    programs = max(1, min(n_work, sms * (cfg["PROGRAMS_PER_SM_MANY"] if many else 1)))  # persistent
    cap = _capacity(topk, cfg)
    cv = torch.empty(programs, cap, dtype=torch.float32, device=x.device)
    ci = torch.empty(programs, cap, dtype=torch.int32, device=x.device)
    target = min(cap // 2, int(OVERSAMPLE * topk) + 128)
    _topk_kernel[(programs,)](
        x, oi if xmap is None else xmap, oi, oi if ov is None else ov, cv, ci,
        oi if fallbacks is None else fallbacks,
        S, L, seg, n_seg, topk, target, 0 if q_start is None else q_start, n_work,
        *x.stride(), *map_strides, *o_strides,
        HAS_MAP=xmap is not None, WRITE_VALUES=ov is not None, CAUSAL=q_start is not None,
        COUNT_FB=fallbacks is not None,
        CAP=cap, BLOCK=block, RADIX_BITS=cfg["RADIX_BITS"], NCH=cfg["SAMPLE_CHUNKS"], WIDTH=cfg["SAMPLE_WIDTH"],
        num_warps=nw,
    )


def topk_indices(
    scores: torch.Tensor,
    topk: int,
    *,
    q_start: int | None = None,
    out: torch.Tensor | None = None,
    splits: int | None = None,
    fallbacks: torch.Tensor | None = None,
) -> torch.Tensor:
    """int32 [B, S, topk]: positions of the topk largest finite scores per row (any order), -1 padded.

    With q_start, row i only considers positions <= q_start + i (the rest is not read: what the
    causal indexer leaves there is -inf anyway). `splits` forces the number of row segments (tests);
    by default chosen by `_auto_splits`. `fallbacks` (int32 [1], optional) is incremented once for
    every sampled row (segment) whose filter missed and that took the slow whole-row select.
    """
    B, S, T = check_topk_args(scores, topk, out, triton=True, q_start=q_start)
    if out is None:
        out = torch.empty(B, S, topk, dtype=torch.int32, device=scores.device)
    rows = B * S
    if rows == 0:
        return out
    if out.stride(2) != 1:  # the kernel writes slots of a row contiguously
        out.copy_(topk_indices(scores, topk, q_start=q_start, splits=splits, fallbacks=fallbacks))
        return out
    if splits is None:
        splits = _auto_splits(rows, T, topk, num_sms(scores.device))
    splits = max(1, min(int(splits), T))
    if splits == 1:
        _launch(scores, None, out, None, S=S, L=T, seg=T, n_seg=1, topk=topk, q_start=q_start,
                o_strides=(out.stride(0), out.stride(1), 0), map_strides=(0, 0, 0), fallbacks=fallbacks)
        return out
    seg = triton.cdiv(T, splits)
    splits = triton.cdiv(T, seg)  # no empty segments
    cand_i = torch.empty(B, S, splits, topk, dtype=torch.int32, device=scores.device)
    cand_v = torch.empty(B, S, splits, topk, dtype=torch.float32, device=scores.device)
    _launch(scores, None, cand_i, cand_v, S=S, L=T, seg=seg, n_seg=splits, topk=topk,
            q_start=q_start, o_strides=cand_i.stride()[:3], map_strides=(0, 0, 0), fallbacks=fallbacks)
    L2 = splits * topk
    cv, ci = cand_v.view(B, S, L2), cand_i.view(B, S, L2)
    _launch(cv, ci, out, None, S=S, L=L2, seg=L2, n_seg=1, topk=topk, q_start=None,
            o_strides=(out.stride(0), out.stride(1), 0), map_strides=ci.stride(), fallbacks=fallbacks)
    return out
