"""MLA forward for Hopper (sm_90) in Gluon, warp-specialized: the same contract, arguments and
partial/combine scheme as the `tl` kernel (kernels/mla/tl_kernel.py), so mla_forward can launch either.

Why Gluon: Triton 3.6's `tl` compiler runs this loop in one 8-warp program per SM with the gather,
QK^T, softmax and PV in series (ncu: one issue slot in 3.5 used), and does not warp-specialize it on
sm_90. Gluon lets the schedule be written down:

- producer partition (4 warps, few registers): for each block of BLOCK_N = 64 selected tokens, reads
  the indices, and gathers the tokens' 576-wide latents from global memory with cp.async straight
  into a STAGES-deep ring of NVMMA-swizzled shared buffers, the 512-wide NoPE part and the 64-wide
  RoPE part apart (both matmul-ready, and the NoPE part is also the value tile: loaded once, read by
  both matmuls). Each of its threads arrives on the stage's `full` mbarrier when its copies land
  (cp.async.mbarrier.arrive), so no warp waits for a copy it did not issue. Invalid indices (-1,
  out of range) are masked copies: cp.async zero-fills them, so no NaN from stale memory reaches PV.
- consumer (the default partition, 8 warps = 2 warpgroups, most registers): Q's 64-head tile stays
  in shared memory for the whole loop; per block, async wgmma S = Q_nope K_nope^T + Q_rope K_rope^T
  ([64 heads x 64 tokens], warps 4 x 2), the online softmax in base 2, then O += P V with P from
  registers and V the NoPE tile in shared memory; O [64 x 512] fp32 is split across the two
  warpgroups (128 registers a thread); the stage's `empty` mbarrier releases the buffer.
So gathers for the next STAGES - 1 blocks run under the current block's matmuls and softmax.

Shared memory (bf16, BLOCK_N = 64, 2 stages): Q 72 KB + 2 x 72 KB ring + P's layout exchange 8 KB
= 224 KB of the 227 KB a block may have (tests/kernels/test_mla_gluon.py checks the compiled figure).

Not yet done, and why: this kernel was written and compiled for sm_90 on a CPU machine (no GPU was
lent in that session); it has not run. The dispatch (kernels/mla/__init__.py) therefore selects it
only when DSA_BENCH_MLA_GLUON=1, until a GPU run checks it against the reference and times it; the
ping-pong of two consumer warpgroups over alternate blocks (FlashMLA's schedule, which also overlaps
one warpgroup's softmax with the other's matmuls) is the next step once it is measured.
"""
from __future__ import annotations

import os

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy

from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    warpgroup_mma,
    warpgroup_mma_wait,
)

from kernels._gluon import release_ring_barriers, ring_barriers

ENV_SWITCH = "DSA_BENCH_MLA_GLUON"
CONFIG = dict(BLOCK_H=64, BLOCK_N=64, STAGES=2, num_warps=8, PRODUCER_WARPS=4, PRODUCER_REGS=56)


@gluon.jit
def _producer(KV, IDX, kv_base, idx_base, lo, hi, T, stride_kvt,
              kn_ring, kr_ring, full, empty,
              D_V: gl.constexpr, D_ROPE: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
              GATHER: gl.constexpr, PRODUCER_WARPS: gl.constexpr):
    # 8 bf16 (16 bytes, one cp.async) per thread along the row; rows over lanes and warps.
    nope_l: gl.constexpr = gl.BlockedLayout([1, 8], [2, 16], [PRODUCER_WARPS, 1], [1, 0])
    rope_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [PRODUCER_WARPS, 1], [1, 0])
    cols_n = gl.arange(0, D_V, layout=gl.SliceLayout(0, nope_l))
    cols_r = gl.arange(0, D_ROPE, layout=gl.SliceLayout(0, rope_l))
    n_blocks = gl.cdiv(hi - lo, BLOCK_N)
    for i in range(n_blocks):
        st = i % STAGES
        # The ring starts empty: the first pass waits on the phase before the barrier's first.
        mbarrier.wait(empty.index(st), ((i // STAGES) & 1) ^ 1)
        n0 = lo + i * BLOCK_N
        rows_n = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, nope_l))
        rows_r = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, rope_l))
        if GATHER:
            tok_n = gl.load(idx_base + rows_n, mask=rows_n < hi, other=-1)
            tok_r = gl.load(idx_base + rows_r, mask=rows_r < hi, other=-1)
        else:
            tok_n = gl.where(rows_n < hi, rows_n, -1)
            tok_r = gl.where(rows_r < hi, rows_r, -1)
        ok_n = (tok_n >= 0) & (tok_n < T)
        ok_r = (tok_r >= 0) & (tok_r < T)
        off_n = gl.where(ok_n, tok_n, 0).to(gl.int64) * stride_kvt
        off_r = gl.where(ok_r, tok_r, 0).to(gl.int64) * stride_kvt
        p_n = kv_base + gl.expand_dims(off_n, 1) + gl.expand_dims(cols_n, 0)
        p_r = kv_base + D_V + gl.expand_dims(off_r, 1) + gl.expand_dims(cols_r, 0)
        p_n = gl.max_contiguous(gl.multiple_of(p_n, [1, 16]), [1, 16])
        p_r = gl.max_contiguous(gl.multiple_of(p_r, [1, 16]), [1, 16])
        m_n = gl.expand_dims(ok_n, 1) & gl.expand_dims(cols_n < D_V, 0)
        m_r = gl.expand_dims(ok_r, 1) & gl.expand_dims(cols_r < D_ROPE, 0)
        async_copy.async_copy_global_to_shared(kn_ring.index(st), p_n, mask=m_n)
        async_copy.async_copy_global_to_shared(kr_ring.index(st), p_r, mask=m_r)
        # Arrives (without raising the barrier's count: it was initialised to the producer's
        # threads) when this thread's copies so far have landed.
        async_copy.mbarrier_arrive(full.index(st), increment_count=False)


@gluon.jit
def _consumer(IDX, idx_base, lo, hi, T, qk_scale, qn_smem, qr_smem, kn_ring, kr_ring, full, empty,
              BLOCK_H: gl.constexpr, BLOCK_N: gl.constexpr, D_V: gl.constexpr, STAGES: gl.constexpr,
              GATHER: gl.constexpr, num_warps: gl.constexpr):
    s_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, 32, 16])
    o_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, 256, 16])
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_l, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_l)
    row_o: gl.constexpr = gl.SliceLayout(1, o_l)

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=row_s)
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=row_s)
    acc = gl.zeros([BLOCK_H, D_V], gl.float32, layout=o_l)
    s_zero = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=s_l)
    n_blocks = gl.cdiv(hi - lo, BLOCK_N)
    for i in range(n_blocks):
        st = i % STAGES
        mbarrier.wait(full.index(st), (i // STAGES) & 1)
        fence_async_shared()  # cp.async wrote in the generic proxy; wgmma reads in the async one
        kn = kn_ring.index(st)
        s = warpgroup_mma(qn_smem, kn.permute((1, 0)), s_zero, use_acc=False, is_async=True)
        s = warpgroup_mma(qr_smem, kr_ring.index(st).permute((1, 0)), s, is_async=True)
        # the validity of each column, read while the matmul runs
        cols = lo + i * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_l))
        if GATHER:
            tok = gl.load(idx_base + cols, mask=cols < hi, other=-1)
            ok = (tok >= 0) & (tok < T)
        else:
            ok = cols < hi
        s = warpgroup_mma_wait(num_outstanding=0, deps=(s, ))
        s = gl.where(gl.expand_dims(ok, 0), s * qk_scale, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, 1))
        m_use = gl.where(m_new == float("-inf"), 0.0, m_new)  # all masked so far: no inf - inf
        p = gl.exp2(s - gl.expand_dims(m_use, 1))
        alpha = gl.exp2(m_i - m_use)
        l_i = l_i * alpha + gl.sum(p, 1)
        m_i = m_new
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, row_o), 1)
        p_op = gl.convert_layout(p.to(kn.dtype), p_l)
        acc = warpgroup_mma(p_op, kn, acc, is_async=True)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
        # One thread arrives for the partition: first both warpgroups must be past their PV wgmma,
        # which reads the stage the producer is about to overwrite.
        gl.thread_barrier()
        mbarrier.arrive(empty.index(st), count=1)
    return m_i, l_i, acc


@gluon.jit
def mla_fwd_kernel(
    Q, KV, IDX, O, LSE,
    S, H, T, n_keys, q_start, keys_per_split, qk_scale,
    stride_qb, stride_qs, stride_qh,
    stride_kvb, stride_kvt,
    stride_ib, stride_is,
    stride_ob, stride_os, stride_oh, stride_osp,
    stride_lb, stride_ls, stride_lh, stride_lsp,
    D_V: gl.constexpr, D_ROPE: gl.constexpr, BLOCK_H: gl.constexpr, BLOCK_N: gl.constexpr,
    GATHER: gl.constexpr, SPLIT: gl.constexpr, N_HB: gl.constexpr, STAGES: gl.constexpr,
    PRODUCER_WARPS: gl.constexpr, PRODUCER_REGS: gl.constexpr, num_warps: gl.constexpr,
):
    row = gl.program_id(0) // N_HB  # b * S + s; both head blocks of a row adjacent (L2 reuse)
    hb = gl.program_id(0) % N_HB
    sp = gl.program_id(1)
    b = (row // S).to(gl.int64)
    s_ = (row % S).to(gl.int64)
    lo = sp * keys_per_split
    if GATHER:
        hi = gl.minimum(lo + keys_per_split, n_keys)
    else:
        hi = gl.minimum(lo + keys_per_split, gl.minimum(q_start + (row % S) + 1, T))

    dtype: gl.constexpr = Q.dtype.element_ty
    q_sl: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    qn_smem = gl.allocate_shared_memory(dtype, [BLOCK_H, D_V], q_sl)
    qr_smem = gl.allocate_shared_memory(dtype, [BLOCK_H, D_ROPE], q_sl)
    kn_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D_V], q_sl)
    kr_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D_ROPE], q_sl)
    full, empty = ring_barriers(STAGES, PRODUCER_WARPS * 32)

    # Q's head block into shared memory once, by the whole program, before the partitions fork.
    ld_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [num_warps, 1], [1, 0])
    heads = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, ld_l))
    q_row = Q + b * stride_qb + s_ * stride_qs + gl.expand_dims(heads.to(gl.int64) * stride_qh, 1)
    cn = gl.arange(0, D_V, layout=gl.SliceLayout(0, ld_l))
    cr = gl.arange(0, D_ROPE, layout=gl.SliceLayout(0, ld_l))
    hmask = gl.expand_dims(heads < H, 1)
    qn_smem.store(gl.load(q_row + gl.expand_dims(cn, 0), mask=hmask, other=0.0))
    qr_smem.store(gl.load(q_row + D_V + gl.expand_dims(cr, 0), mask=hmask, other=0.0))
    fence_async_shared()  # generic-proxy stores, read next by wgmma (async proxy)

    kv_base = KV + b * stride_kvb
    idx_base = IDX + b * stride_ib + s_ * stride_is
    m_i, l_i, acc = gl.warp_specialize([
        (_consumer, (IDX, idx_base, lo, hi, T, qk_scale, qn_smem, qr_smem, kn_ring, kr_ring, full, empty,
                     BLOCK_H, BLOCK_N, D_V, STAGES, GATHER, num_warps)),
        (_producer, (KV, IDX, kv_base, idx_base, lo, hi, T, stride_kvt, kn_ring, kr_ring, full, empty,
                     D_V, D_ROPE, BLOCK_N, STAGES, GATHER, PRODUCER_WARPS)),
    ], [PRODUCER_WARPS], [PRODUCER_REGS])

    release_ring_barriers(full, empty, STAGES)

    o_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, 256, 16])
    row_o: gl.constexpr = gl.SliceLayout(1, o_l)
    l_o = gl.convert_layout(l_i, row_o)
    m_o = gl.convert_layout(m_i, row_o)
    has = l_o > 0.0
    out = acc / gl.expand_dims(gl.where(has, l_o, 1.0), 1)
    lse2 = gl.where(has, m_o + gl.log2(gl.where(has, l_o, 1.0)), float("-inf"))
    oh = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=row_o)
    od = gl.arange(0, D_V, layout=gl.SliceLayout(0, o_l))
    o_ptr = (O + b * stride_ob + s_ * stride_os + sp * stride_osp
             + gl.expand_dims(oh.to(gl.int64) * stride_oh, 1) + gl.expand_dims(od, 0))
    gl.store(o_ptr, out.to(O.dtype.element_ty), mask=gl.expand_dims(oh < H, 1))
    l_ptr = LSE + b * stride_lb + s_ * stride_ls + sp * stride_lsp + oh * stride_lh
    if SPLIT:  # partials keep log2 units; the combine converts
        gl.store(l_ptr, lse2, mask=oh < H)
    else:
        gl.store(l_ptr, lse2 * 0.6931471805599453, mask=oh < H)


def supports(q: torch.Tensor, d_v: int) -> bool:
    """Shapes and devices this kernel is written for: bf16/fp16 on sm_90, d_v 512 + 64 RoPE values,
    heads in whole 64-head blocks."""
    return (q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and d_v == 512 and q.shape[-1] == 576
            and q.shape[2] % CONFIG["BLOCK_H"] == 0 and torch.cuda.get_device_capability(q.device) == (9, 0))


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH) == "1"


# --- compiling for sm_90 without a GPU (CI; `python -m kernels.mla.gluon_sm90 OUT_DIR`) ------------

VARIANTS = {"sparse-prefill": (True, False), "sparse-decode-split": (True, True), "dense-decode-split": (False, True)}


def compile_variant(gather: bool, split: bool):
    """Compile the kernel for sm_90 as mla_forward launches it (bf16, DeepSeek's 576 = 512 + 64)."""
    from kernels._gluon import compile_sm90

    sig = {n: "i32" for n in mla_fwd_kernel.arg_names}
    sig.update(Q="*bf16", KV="*bf16", IDX="*i32" if gather else "*bf16", O="*fp32" if split else "*bf16",
               LSE="*fp32", qk_scale="fp32")
    const = dict(D_V=512, D_ROPE=64, BLOCK_H=CONFIG["BLOCK_H"], BLOCK_N=CONFIG["BLOCK_N"], GATHER=gather,
                 SPLIT=split, N_HB=2, STAGES=CONFIG["STAGES"], PRODUCER_WARPS=CONFIG["PRODUCER_WARPS"],
                 PRODUCER_REGS=CONFIG["PRODUCER_REGS"], num_warps=CONFIG["num_warps"])
    aligned = ("Q", "KV", "IDX", "O", "LSE", "stride_qb", "stride_qs", "stride_qh", "stride_kvb", "stride_kvt")
    return compile_sm90(mla_fwd_kernel, sig, const, num_warps=CONFIG["num_warps"], aligned=aligned)


if __name__ == "__main__":
    import sys

    from kernels._gluon import write_compiled

    write_compiled({name: compile_variant(*flags) for name, flags in VARIANTS.items()}, sys.argv[1])
