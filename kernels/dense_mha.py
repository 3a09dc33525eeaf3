"""Triton causal flash attention forward for the un-absorbed MLA prefill form (qk 192 = 128 + 64, v 128).

Grid: (query blocks, B * H). Each program walks key blocks in two phases: blocks every row of its
query block can fully see (no masking), then the few straddling the causal diagonal (masked). Key
blocks past the diagonal are never visited, so a prefill does about half the work of full attention.
Query blocks are issued last-first because they have the most keys (better tail balance).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._attention_args import check_dense_mha_args, check_out_buffer
from kernels._common import UPCAST_DOT, apply_interpreter_fixes, check_triton_device, dot_precision, launch_config, next_pow2

apply_interpreter_fixes()

LOG2E = 1.4426950408889634

# Tile sizes. GPU "tiles", from a sweep on an H200 (bf16, H=128, 192/128): 128x128 tiles, 8 warps,
# 2 stages, ~430-480 TFLOP/s; smem = q 48 KB + 2 stages of k 48 KB + v 32 KB. "small_tiles": fp32
# inputs (a correctness path) or heads wider than 256, to stay under 227 KB.
# "masked": masked MHA's launch (kernels/masked_mha.py): the bit-reading variant, and on a GPU tile
# overrides for 16-bit inputs (fp32 tiles would not fit). Measured on an H200 (tools/bench_masked_mha.py,
# S = T = 8192, 128 heads, k = 2048): dense 5.96 ms; masked, words expanded in registers, BLOCK_N 64 /
# 3 stages 9.46 ms (128 / 2: 10.53); a word per key 31.7-34.3 ms (and over shared memory at 128 / 2).
# The gap to dense is the per-key bit extraction and the reshape into the accumulator's layout, paid
# on every key block.
# The interpreter uses 32x32 tiles so small test shapes still cover several query blocks and both
# (unmasked, diagonal) key phases.
CONFIG = {
    "gpu": {
        "tiles": dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=2),
        "small_tiles": dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=1),
        "masked": dict(SEL_PER_KEY=False, BLOCK_N=64, num_stages=3),
    },
    "interpreter": {
        "tiles": dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1),
        "small_tiles": dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1),
        "masked": dict(SEL_PER_KEY=False),
    },
}


@triton.jit
def _mha_key_blocks(
    acc, l_i, m_i, q_a, q_b, k_base, v_base, stride_kt, stride_vt, pos, lo, hi, T, qk_scale,
    sel_rows, sel_ok,
    D_A: tl.constexpr, D_B: tl.constexpr, D_V: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DA: tl.constexpr, BLOCK_DB: tl.constexpr,
    BLOCK_DV: tl.constexpr, MASKED: tl.constexpr, SEL_PER_KEY: tl.constexpr, HAS_SEL: tl.constexpr, UPCAST_DOT: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Online-softmax over key blocks [lo, hi). MASKED applies the causal and t < T masks; HAS_SEL
    also keeps only the keys whose bit is set in the rows' selection bitmask (sel_rows: per-row
    pointers to int32 words, bit t % 32 of word t // 32)."""
    offs_da = tl.arange(0, BLOCK_DA)
    offs_db = tl.arange(0, BLOCK_DB)
    offs_dv = tl.arange(0, BLOCK_DV)
    for n0 in range(lo, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_t = offs_n < T
        k_ptr = k_base + offs_n.to(tl.int64)[:, None] * stride_kt
        k_a = tl.load(k_ptr + offs_da[None, :], mask=in_t[:, None] & (offs_da < D_A)[None, :], other=0.0)
        if UPCAST_DOT:
            k_a = k_a.to(tl.float32)
        qk = tl.dot(q_a, tl.trans(k_a), input_precision=DOT_PREC)
        if D_B > 0:
            k_b = tl.load(k_ptr + D_A + offs_db[None, :], mask=in_t[:, None] & (offs_db < D_B)[None, :], other=0.0)
            if UPCAST_DOT:
                k_b = k_b.to(tl.float32)
            qk = tl.dot(q_b, tl.trans(k_b), qk, input_precision=DOT_PREC)
        qk = qk * qk_scale  # log2 units
        if HAS_SEL:
            if SEL_PER_KEY:
                # One word per key, re-read by the 32 keys sharing it (L1 hits); no layout change.
                words = tl.load(sel_rows[:, None] + (offs_n // 32)[None, :], mask=sel_ok[:, None] & in_t[None, :], other=0)
                picked = ((words >> (offs_n % 32)[None, :]) & 1) != 0
            else:
                # BLOCK_N // 32 words per row (n0 is a multiple of BLOCK_N >= 32), expanded to one bit
                # per key in registers: 4 words per row instead of a [BLOCK_M, BLOCK_N] int32 tile,
                # which the software pipeline would stage in shared memory per stage.
                offs_w = n0 // 32 + tl.arange(0, BLOCK_N // 32)
                words = tl.load(sel_rows[:, None] + offs_w[None, :], mask=sel_ok[:, None] & (offs_w * 32 < T)[None, :], other=0)
                bits = (words[:, :, None] >> tl.arange(0, 32)[None, None, :]) & 1
                picked = tl.reshape(bits, [BLOCK_M, BLOCK_N]) != 0
            seen = picked & (offs_n[None, :] <= pos[:, None]) & in_t[None, :]
            qk = tl.where(seen, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        elif MASKED:
            seen = (offs_n[None, :] <= pos[:, None]) & in_t[None, :]
            qk = tl.where(seen, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # row saw nothing yet
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_use = m_new
        alpha = tl.exp2(m_i - m_use)
        p = tl.exp2(qk - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + offs_n.to(tl.int64)[:, None] * stride_vt + offs_dv[None, :],
                    mask=in_t[:, None] & (offs_dv < D_V)[None, :], other=0.0)
        if UPCAST_DOT:
            v = v.to(tl.float32)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _mha_fwd_kernel(
    Q, K, V, O, SEL,
    S, T, H, q_start, qk_scale,
    stride_selb, stride_sels,
    stride_qb, stride_qs, stride_qh,
    stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    stride_ob, stride_os, stride_oh,
    D_A: tl.constexpr, D_B: tl.constexpr, D_V: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DA: tl.constexpr, BLOCK_DB: tl.constexpr, BLOCK_DV: tl.constexpr,
    HAS_SEL: tl.constexpr, SEL_PER_KEY: tl.constexpr, UPCAST_DOT: tl.constexpr, DOT_PREC: tl.constexpr,
):
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # longest query blocks first
    bh = tl.program_id(1)
    b64 = (bh // H).to(tl.int64)
    h64 = (bh % H).to(tl.int64)
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    mask_m = offs_m < S
    pos = q_start + offs_m

    q_ptr = Q + b64 * stride_qb + h64 * stride_qh + offs_m.to(tl.int64)[:, None] * stride_qs
    offs_da = tl.arange(0, BLOCK_DA)
    q_a = tl.load(q_ptr + offs_da[None, :], mask=mask_m[:, None] & (offs_da < D_A)[None, :], other=0.0)
    offs_db = tl.arange(0, BLOCK_DB)
    q_b = tl.load(q_ptr + D_A + offs_db[None, :], mask=mask_m[:, None] & (offs_db < D_B)[None, :], other=0.0)
    if UPCAST_DOT:  # the CPU interpreter's bf16 dot is wrong; fp32 is exact
        q_a = q_a.to(tl.float32)
        q_b = q_b.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    k_base = K + b64 * stride_kb + h64 * stride_kh
    v_base = V + b64 * stride_vb + h64 * stride_vh
    sel_rows = SEL + b64 * stride_selb + offs_m.to(tl.int64) * stride_sels  # unused without HAS_SEL
    # Keys < q_start + m0 + 1 are visible to every row of the block: whole such blocks skip masking.
    full_hi = (tl.minimum(q_start + m0 + 1, T) // BLOCK_N) * BLOCK_N
    hi = tl.minimum(q_start + tl.minimum(m0 + BLOCK_M, S), T)  # last row's horizon, exclusive
    acc, l_i, m_i = _mha_key_blocks(
        acc, l_i, m_i, q_a, q_b, k_base, v_base, stride_kt, stride_vt, pos, 0, full_hi, T, qk_scale,
        sel_rows, mask_m, D_A, D_B, D_V, BLOCK_M, BLOCK_N, BLOCK_DA, BLOCK_DB, BLOCK_DV, False, SEL_PER_KEY, HAS_SEL, UPCAST_DOT, DOT_PREC)
    acc, l_i, m_i = _mha_key_blocks(
        acc, l_i, m_i, q_a, q_b, k_base, v_base, stride_kt, stride_vt, pos, full_hi, hi, T, qk_scale,
        sel_rows, mask_m, D_A, D_B, D_V, BLOCK_M, BLOCK_N, BLOCK_DA, BLOCK_DB, BLOCK_DV, True, SEL_PER_KEY, HAS_SEL, UPCAST_DOT, DOT_PREC)

    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]  # no visible key (T = 0) -> 0
    offs_dv = tl.arange(0, BLOCK_DV)
    o_ptr = O + b64 * stride_ob + h64 * stride_oh + offs_m.to(tl.int64)[:, None] * stride_os + offs_dv[None, :]
    tl.store(o_ptr, out.to(O.dtype.element_ty), mask=mask_m[:, None] & (offs_dv < D_V)[None, :])


def mha_config(d_qk: int, dtype: torch.dtype, masked: bool = False) -> dict:
    """The launch config from CONFIG (see there), with SEL_PER_KEY; `masked` applies the "masked"
    entry's tile overrides to 16-bit inputs."""
    table = launch_config(CONFIG)
    cfg = dict(table["small_tiles" if dtype == torch.float32 or d_qk > 256 else "tiles"])
    if masked and dtype != torch.float32:
        cfg.update({key: val for key, val in table["masked"].items() if key in cfg})
    cfg["SEL_PER_KEY"] = bool(table["masked"].get("SEL_PER_KEY"))
    return cfg


def dense_mha(q, k, v, *, sm_scale, q_start=None, out=None):
    """q [B,S,H,Dqk], k [B,T,H,Dqk], v [B,T,H,Dv]; query i sees keys <= q_start + i (default T - S).

    Returns out [B,S,H,Dv] in q's dtype. `out` (not in the contract): optional preallocated output.
    """
    B, S, H, D, T, Dv, scale, q_start = check_dense_mha_args(q, k, v, sm_scale, q_start)
    check_triton_device("q", q)
    check_out_buffer("out", out, (B, S, H, Dv), q.dtype, q.device)
    return launch_mha(q, k, v, scale=scale, q_start=q_start, out=out)


def launch_mha(q, k, v, *, scale, q_start, out=None, select_bits=None):
    """The kernel launch behind dense_mha and masked_mha (arguments already checked).

    select_bits: optional int32 [B, S, ceil(T / 32)] bitmask; query row i then attends only to the
    visible keys whose bit is set (kernels/masked_mha.py builds it from top-k indices)."""
    B, S, H, D = q.shape
    T, Dv = k.shape[1], v.shape[3]
    if out is None:
        out = torch.empty(B, S, H, Dv, dtype=q.dtype, device=q.device)
    if B * S * H == 0:
        return out
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    from kernels.mha import GLUON_SM90, variant

    if variant(q, k, v, out, masked=select_bits is not None) == GLUON_SM90:
        from kernels.mha import gluon_sm90

        gluon_sm90.launch(q, k, v, out, qk_scale=scale * LOG2E, q_start=q_start)
        return out
    d_a = 1 << (D.bit_length() - 1)  # 192 -> 128 + 64: power-of-two tiles without padding to 256
    d_b = D - d_a
    cfg = mha_config(D, q.dtype, masked=select_bits is not None)
    grid = (triton.cdiv(S, cfg["BLOCK_M"]), B * H)
    sel = select_bits if select_bits is not None else out  # a dummy pointer when unused
    sel_strides = (select_bits.stride(0), select_bits.stride(1)) if select_bits is not None else (0, 0)
    _mha_fwd_kernel[grid](
        q, k, v, out, sel,
        S, T, H, q_start, scale * LOG2E,
        *sel_strides,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        D_A=d_a, D_B=d_b, D_V=Dv,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
        BLOCK_DA=max(16, d_a), BLOCK_DB=max(16, next_pow2(d_b)), BLOCK_DV=max(16, next_pow2(Dv)),
        HAS_SEL=select_bits is not None, SEL_PER_KEY=cfg["SEL_PER_KEY"], UPCAST_DOT=UPCAST_DOT, DOT_PREC=dot_precision(q.dtype),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return out
