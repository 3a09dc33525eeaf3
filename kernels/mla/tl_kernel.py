"""Triton (`tl`) MLA forward shared by sparse_mla (gathered latents) and dense_mla (all visible latents):
the portable path (any GPU Triton supports, and the CPU interpreter).

MQA view: all H heads of one query token attend to the same latents, so a program takes a block of
BLOCK_H heads as the M dimension of the matmuls and each gathered kv row is loaded once per head block.
The 576-wide latent is split into the d_v (=512) part, which is both key and value, and the rope
(=64) part, so every tile is a power of two and the value tile is the key tile already loaded.

Split-K: when (query rows x head blocks) cannot fill the GPU (decode), the key range is cut into
`num_splits` slices; each writes a normalised partial (out, lse) and a combine kernel merges them.

Where it stands (H200, bf16, H = 128, k = 2048; dsa_bench/tune.py and the kernels-h200 runs): sparse
prefill S = 4096 at T = 128K, uniform indices, 10.1 ms = 230 TFLOP/s; sparse decode B = 128, S = 2,
T = 32K, 190-228 TFLOP/s; dense decode 270-277 TFLOP/s. What limits it, measured:
- ncu (sparse prefill): 255 registers and 221 KB shared memory a program -> one 8-warp program per
  SM (12.5% occupancy); one issue slot in 3.5 used; 504M unfused FP32 instructions (the online
  softmax and the [64, 512] rescale). Each block runs QK wgmma -> softmax -> PV wgmma in series with
  nothing to overlap it; FlashMLA-class kernels overlap them with warp specialisation (producer
  warps gathering, two consumer warpgroups ping-ponging), which Triton 3.6 does not apply here
  (tl.range(warp_specialize=True) leaves this loop unpartitioned on sm_90: checked in the TTGIR).
- The kv gather is pipelined by Triton itself (cp.async, num_stages deep; visible in the TTGIR once
  the row stride is known to be a multiple of 16). A hand-written register double buffer spills.
- Tried, slower (same run): BLOCK_N 32 (150-170 TF/s), 3-4 stages at BLOCK_N 32, BLOCK_H 32 with
  4 warps (190-217), 4 warps at BLOCK_H 64 (spills, 120), lazy rescaling of the accumulator (only
  when the row max grows by 2^8; the branch costs more than the multiply it saves: 199 vs 225).
- Kept: both head blocks of a query row are neighbours in launch order, so the second gather of
  the same kv rows hits L2 (+3-4%).
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl

from kernels._common import UPCAST_DOT, apply_interpreter_fixes, dot_precision, launch_config, next_pow2, num_sms

apply_interpreter_fixes()

LOG2E = 1.4426950408889634
MAX_SPLITS = 128
MIN_BLOCKS_PER_SPLIT = 4  # keep a split long enough to amortise writing its [BLOCK_H, 512] partial

# Tile sizes. GPU, from a sweep on an H200 (bf16, H=128, D=576): 64 heads x 64 tokens, 8 warps, 2 stages.
# The [64, 512] fp32 accumulator is 128 registers a thread over 8 warps (4 warps spill: ~4x slower);
# BLOCK_H=32/4 warps was about as fast but gathers every kv row twice as often. fp32 inputs (a
# correctness path) take 4-byte tiles, so smaller ones keep shared memory under the 227 KB limit.
# The interpreter uses BLOCK_N=32 for every dtype so that small test shapes still cover multi-block
# loops and splits. BLOCK_H is the largest head block (fewer heads take the next power of two >= 16);
# a head block under 64 runs at most 4 warps. dsa_bench/tune.py edits the "gpu" entries in place.
CONFIG = {
    "gpu": {
        "tiles": dict(BLOCK_H=64, BLOCK_N=64, num_warps=8, num_stages=2, LAZY_RESCALE=False),
        "fp32": dict(BLOCK_H=32, BLOCK_N=16, num_warps=4, num_stages=1, LAZY_RESCALE=False),
    },
    "interpreter": {
        "tiles": dict(BLOCK_H=64, BLOCK_N=32, num_warps=8, num_stages=2, LAZY_RESCALE=False),
        "fp32": dict(BLOCK_H=64, BLOCK_N=32, num_warps=8, num_stages=2, LAZY_RESCALE=False),
    },
}


@triton.jit
def _block_tokens(idx_base, n0, hi, T, BLOCK_N: tl.constexpr, GATHER: tl.constexpr):
    """Token ids of the key block starting at n0 (< hi) and which of them are real keys."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    if GATHER:
        tok = tl.load(idx_base + offs_n, mask=offs_n < hi, other=-1)
        valid = (tok >= 0) & (tok < T)  # -1 = empty; out-of-range ignored rather than read
        tok = tl.where(valid, tok, 0)
    else:
        valid = offs_n < hi
        tok = offs_n
    return tok, valid


@triton.jit
def _gather_kv(kv_base, tok, valid, stride_kvt, offs_dv, mask_dv, offs_dr, mask_dr, D_V: tl.constexpr):
    kv_ptr = kv_base + tok.to(tl.int64)[:, None] * stride_kvt
    k_nope = tl.load(kv_ptr + offs_dv[None, :], mask=valid[:, None] & mask_dv[None, :], other=0.0)
    k_rope = tl.load(kv_ptr + D_V + offs_dr[None, :], mask=valid[:, None] & mask_dr[None, :], other=0.0)
    return k_nope, k_rope


@triton.jit
def _attend_block(q_nope, q_rope, k_nope, k_rope, valid, m_i, l_i, acc, qk_scale,
                  UPCAST_DOT: tl.constexpr, DOT_PREC: tl.constexpr, LAZY_RESCALE: tl.constexpr):
    """One key block of the online softmax (log2 units): returns the updated (m, l, acc)."""
    if UPCAST_DOT:  # the CPU interpreter's bf16 dot is wrong; fp32 is exact
        k_nope = k_nope.to(tl.float32)
        k_rope = k_rope.to(tl.float32)
    qk = tl.dot(q_nope, tl.trans(k_nope), input_precision=DOT_PREC)
    qk = tl.dot(q_rope, tl.trans(k_rope), qk, input_precision=DOT_PREC)
    qk = tl.where(valid[None, :], qk * qk_scale, float("-inf"))
    m_blk = tl.max(qk, 1)
    if LAZY_RESCALE:
        # Move a row's running max only when it grows by more than 2^8: p stays <= 256 (safe in
        # fp32 and bf16) and the [BLOCK_H, 512] accumulator is rescaled only on those blocks.
        m_new = tl.where(m_blk > m_i + 8.0, m_blk, m_i)
    else:
        m_new = tl.maximum(m_i, m_blk)
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # all-masked so far: avoid inf - inf
    p = tl.exp2(qk - m_use[:, None])
    if LAZY_RESCALE:
        if tl.max((m_new != m_i).to(tl.int32), 0) > 0:
            alpha = tl.exp2(m_i - m_use)
            l_i = l_i * alpha
            acc = acc * alpha[:, None]
        l_i = l_i + tl.sum(p, 1)
        acc = tl.dot(p.to(k_nope.dtype), k_nope, acc, input_precision=DOT_PREC)
    else:
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p.to(k_nope.dtype), k_nope, acc * alpha[:, None], input_precision=DOT_PREC)
    return m_new, l_i, acc


@triton.jit
def _mla_fwd_kernel(
    Q, KV, IDX, O, LSE,
    S, H, T, n_keys, q_start, keys_per_split, qk_scale,
    stride_qb, stride_qs, stride_qh,
    stride_kvb, stride_kvt,
    stride_ib, stride_is,
    stride_ob, stride_os, stride_oh, stride_osp,
    stride_lb, stride_ls, stride_lh, stride_lsp,
    D_V: tl.constexpr, D_ROPE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_DR: tl.constexpr,
    GATHER: tl.constexpr, SPLIT: tl.constexpr, UPCAST_DOT: tl.constexpr, DOT_PREC: tl.constexpr,
    LAZY_RESCALE: tl.constexpr, N_HB: tl.constexpr,
):
    # Both head blocks of a row are neighbours in launch order, so the second gather of the same kv
    # rows hits L2 (axis 1 would put them a whole grid apart, and axis 1 is capped at 65535).
    row = tl.program_id(0) // N_HB  # b * S + s
    hb = tl.program_id(0) % N_HB
    sp = tl.program_id(1)
    b = row // S
    s = row % S
    b64 = b.to(tl.int64)
    s64 = s.to(tl.int64)

    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_dv = offs_dv < D_V
    offs_dr = tl.arange(0, BLOCK_DR)
    mask_dr = offs_dr < D_ROPE

    q_ptr = Q + b64 * stride_qb + s64 * stride_qs + offs_h[:, None] * stride_qh
    q_nope = tl.load(q_ptr + offs_dv[None, :], mask=mask_h[:, None] & mask_dv[None, :], other=0.0)
    q_rope = tl.load(q_ptr + D_V + offs_dr[None, :], mask=mask_h[:, None] & mask_dr[None, :], other=0.0)
    if UPCAST_DOT:  # the CPU interpreter's bf16 dot is wrong; fp32 is exact
        q_nope = q_nope.to(tl.float32)
        q_rope = q_rope.to(tl.float32)

    lo = sp * keys_per_split
    if GATHER:
        hi = tl.minimum(lo + keys_per_split, n_keys)
    else:  # causal: query s sits at q_start + s and sees tokens <= that
        hi = tl.minimum(lo + keys_per_split, tl.minimum(q_start + s + 1, T))

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], dtype=tl.float32)
    kv_base = KV + b64 * stride_kvb
    idx_base = IDX + b64 * stride_ib + s64 * stride_is
    # Triton pipelines these gathers itself (cp.async, num_stages deep) once it knows the kv row
    # stride is a multiple of 16; register double-buffering by hand instead spills (ptxas: 1.4 KB).
    for n0 in range(lo, hi, BLOCK_N):
        tok, valid = _block_tokens(idx_base, n0, hi, T, BLOCK_N, GATHER)
        k_nope, k_rope = _gather_kv(kv_base, tok, valid, stride_kvt, offs_dv, mask_dv, offs_dr, mask_dr, D_V)
        m_i, l_i, acc = _attend_block(q_nope, q_rope, k_nope, k_rope, valid, m_i, l_i, acc, qk_scale,
                                      UPCAST_DOT, DOT_PREC, LAZY_RESCALE)

    has = l_i > 0.0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse2 = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    o_ptr = O + b64 * stride_ob + s64 * stride_os + sp * stride_osp + offs_h[:, None] * stride_oh
    tl.store(o_ptr + offs_dv[None, :], out.to(O.dtype.element_ty), mask=mask_h[:, None] & mask_dv[None, :])
    l_ptr = LSE + b64 * stride_lb + s64 * stride_ls + sp * stride_lsp + offs_h * stride_lh
    if SPLIT:  # partials keep log2 units; the combine converts
        tl.store(l_ptr, lse2, mask=mask_h)
    else:
        tl.store(l_ptr, lse2 * 0.6931471805599453, mask=mask_h)


@triton.jit
def _mla_combine_kernel(
    PO, PL, O, LSE,
    S, H, n_splits,
    stride_ob, stride_os, stride_oh,
    stride_lb, stride_ls, stride_lh,
    D_V: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_SP: tl.constexpr, BLOCK_ALL: tl.constexpr,
):
    """One program per (row, head): out = sum_j w_j o_j / sum_j w_j with w_j = 2^(lse2_j - max)."""
    pid = tl.program_id(0)
    row = pid // H
    h = pid % H
    b64 = (row // S).to(tl.int64)
    s64 = (row % S).to(tl.int64)
    base = pid.to(tl.int64) * n_splits  # partials are contiguous [B*S*H, n_splits, (D_V)]
    offs_all = tl.arange(0, BLOCK_ALL)
    lse_all = tl.load(PL + base + offs_all, mask=offs_all < n_splits, other=float("-inf"))
    m = tl.max(lse_all, 0)
    m_use = tl.where(m == float("-inf"), 0.0, m)
    denom = tl.sum(tl.exp2(lse_all - m_use), 0)

    offs_d = tl.arange(0, BLOCK_DV)
    mask_d = offs_d < D_V
    acc = tl.zeros([BLOCK_DV], dtype=tl.float32)
    for j0 in range(0, n_splits, BLOCK_SP):
        offs_j = j0 + tl.arange(0, BLOCK_SP)
        mask_j = offs_j < n_splits
        w = tl.exp2(tl.load(PL + base + offs_j, mask=mask_j, other=float("-inf")) - m_use)
        o = tl.load(PO + (base + offs_j)[:, None] * D_V + offs_d[None, :],
                    mask=mask_j[:, None] & mask_d[None, :], other=0.0)
        acc += tl.sum(w[:, None] * o, 0)

    has = denom > 0.0
    out = acc / tl.where(has, denom, 1.0)
    lse = tl.where(has, (m_use + tl.log2(tl.where(has, denom, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(O + b64 * stride_ob + s64 * stride_os + h * stride_oh + offs_d, out.to(O.dtype.element_ty), mask=mask_d)
    tl.store(LSE + b64 * stride_lb + s64 * stride_ls + h * stride_lh, lse)


def mla_config(H: int, dtype: torch.dtype) -> dict:
    """The launch config for H heads of `dtype` inputs, from CONFIG (see there)."""
    cfg = dict(launch_config(CONFIG)["fp32" if dtype == torch.float32 else "tiles"])
    cfg["BLOCK_H"] = min(cfg["BLOCK_H"], max(16, next_pow2(H)))
    if cfg["BLOCK_H"] < 64:
        cfg["num_warps"] = min(cfg["num_warps"], 4)
    return cfg


def choose_splits(programs: int, n_blocks: int, device: torch.device) -> int:
    """Split the key range only when the unsplit grid leaves SMs idle, and stay within one wave
    (a program holds most of an SM's registers, so a second partial wave would be a long tail)."""
    sms = num_sms(device)
    return max(1, min(sms // programs, n_blocks // MIN_BLOCKS_PER_SPLIT, MAX_SPLITS))


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def mla_forward(q, kv, indices, *, scale, d_v, q_start, num_splits, out, lse, fwd_kernel=None, tiles=None):
    """Launch the MLA forward (+ combine when split). indices=None means dense causal attention.
    `fwd_kernel`: a launcher (grid, args, D_V, D_ROPE, GATHER, SPLIT, N_HB) taking the place of the
    `tl` forward kernel (the Gluon sm_90 kernel: same arguments, partials and combine), with its
    `tiles` (BLOCK_H, BLOCK_N: the head block and the key block the splits are cut in)."""
    B, S, H, D = q.shape
    T = kv.shape[1]
    q, kv = _last_dim_contiguous(q), _last_dim_contiguous(kv)
    gather = indices is not None
    if gather:
        indices = _last_dim_contiguous(indices)
    if out is None:
        out = torch.empty(B, S, H, d_v, dtype=q.dtype, device=q.device)
    if lse is None:
        lse = torch.empty(B, S, H, dtype=torch.float32, device=q.device)
    N = B * S
    if N == 0 or H == 0:
        return out, lse

    cfg = mla_config(H, q.dtype) if tiles is None else tiles
    block_n = cfg["BLOCK_N"]
    n_keys = indices.shape[2] if gather else T
    n_blocks = triton.cdiv(n_keys, block_n)
    head_blocks = triton.cdiv(H, cfg["BLOCK_H"])
    if num_splits is None:
        num_splits = choose_splits(N * head_blocks, n_blocks, q.device)
    elif isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
        raise ValueError(f"num_splits: expected a positive int or None, got {num_splits!r}")
    # Whole BLOCK_N blocks per split, and no split left without keys.
    blocks_per_split = max(1, triton.cdiv(n_blocks, min(num_splits, max(1, n_blocks))))
    keys_per_split = blocks_per_split * block_n
    splits = max(1, triton.cdiv(n_keys, keys_per_split))

    if splits == 1:
        o_t, l_t = out, lse
        o_strides = (*out.stride()[:3], 0)
        l_strides = (*lse.stride(), 0)
    else:
        o_t = torch.empty(B, S, H, splits, d_v, dtype=torch.float32, device=q.device)
        l_t = torch.empty(B, S, H, splits, dtype=torch.float32, device=q.device)
        o_strides = (o_t.stride(0), o_t.stride(1), o_t.stride(2), o_t.stride(3))
        l_strides = l_t.stride()
    idx_t = indices if gather else q  # dummy pointer when not gathering
    idx_strides = indices.stride()[:2] if gather else (0, 0)

    args = (q, kv, idx_t, o_t, l_t,
            S, H, T, n_keys, q_start, keys_per_split, scale * LOG2E,
            q.stride(0), q.stride(1), q.stride(2),
            kv.stride(0), kv.stride(1),
            *idx_strides,
            *o_strides,
            *l_strides)
    if fwd_kernel is not None:
        fwd_kernel((N * head_blocks, splits), args, D_V=d_v, D_ROPE=D - d_v, GATHER=gather, SPLIT=splits > 1,
                   N_HB=head_blocks)
    else:
        _mla_fwd_kernel[(N * head_blocks, splits)](
            *args,
            D_V=d_v, D_ROPE=D - d_v,
            BLOCK_H=cfg["BLOCK_H"], BLOCK_N=block_n,
            BLOCK_DV=max(16, next_pow2(d_v)), BLOCK_DR=max(16, next_pow2(D - d_v)),
            GATHER=gather, SPLIT=splits > 1, UPCAST_DOT=UPCAST_DOT, LAZY_RESCALE=cfg["LAZY_RESCALE"],
            N_HB=head_blocks,
            DOT_PREC=dot_precision(q.dtype),
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
        )
    if splits > 1:
        _mla_combine_kernel[(N * H,)](
            o_t, l_t, out, lse,
            S, H, splits,
            out.stride(0), out.stride(1), out.stride(2),
            lse.stride(0), lse.stride(1), lse.stride(2),
            D_V=d_v, BLOCK_DV=max(16, next_pow2(d_v)), BLOCK_SP=16, BLOCK_ALL=max(16, next_pow2(splits)),
            num_warps=4,
        )
    return out, lse
