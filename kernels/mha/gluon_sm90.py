"""Causal MHA forward for Hopper (sm_90) in Gluon, warp-specialized, for the un-absorbed MLA prefill
form (qk 192 = 128 + 64, v 128): kernels.dense_mha's contract (q_start, chunked-prefill steps).

Schedule (FlashAttention-3's, written with Gluon's pieces):
- producer partition (4 warps, few registers): streams the key blocks of the program's (b, h) and
  query block, K [128 x 192] and V [128 x 128], by cp.async into a STAGES-deep ring of NVMMA-swizzled
  shared buffers, arriving on the stage's `full` mbarrier when its copies land;
- consumer (the default partition, 2 warpgroups, 64 query rows each): Q [128 x 192] stays in shared
  memory; per key block, async wgmma S = Q K^T, the causal mask and the online softmax in base 2 in
  registers, then O += P V with P from registers (each warpgroup owns its rows, so P never leaves
  its registers) and the `empty` mbarrier releases the stage. Key blocks past the diagonal are never
  loaded; the two warpgroups run independently, so one's softmax overlaps the other's matmuls.
Shared memory: Q 48 KB + 2 x (K 48 KB + V 32 KB) = 208 KB.

Like the MLA kernel beside it, written and compiled for sm_90 on a CPU machine and not yet run: the
dispatch (kernels/mha/__init__.py) selects it only with DSA_BENCH_MHA_GLUON=1 until a GPU run checks it
against the reference and times it. Not yet: masked MHA (DSA's short-prefill form), splitting the
unmasked key blocks from the diagonal ones (the mask is applied to every block), TMA loads.
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

ENV_SWITCH = "DSA_BENCH_MHA_GLUON"
CONFIG = dict(BLOCK_M=128, BLOCK_N=128, STAGES=2, num_warps=8, PRODUCER_WARPS=4, PRODUCER_REGS=56)


@gluon.jit
def _producer(k_base, v_base, stride_kt, stride_vt, hi, T, ka_ring, kb_ring, v_ring, full, empty,
              D_A: gl.constexpr, D_B: gl.constexpr, D_V: gl.constexpr, BLOCK_N: gl.constexpr,
              STAGES: gl.constexpr, PRODUCER_WARPS: gl.constexpr):
    k_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [PRODUCER_WARPS, 1], [1, 0])
    ca = gl.arange(0, D_A, layout=gl.SliceLayout(0, k_l))
    cb = gl.arange(0, D_B, layout=gl.SliceLayout(0, k_l))
    cv = gl.arange(0, D_V, layout=gl.SliceLayout(0, k_l))
    for i in range(gl.cdiv(hi, BLOCK_N)):
        st = i % STAGES
        mbarrier.wait(empty.index(st), ((i // STAGES) & 1) ^ 1)
        rows = i * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, k_l))
        ok = gl.expand_dims(rows < T, 1)
        r64 = gl.expand_dims(gl.where(rows < T, rows, 0).to(gl.int64), 1)
        k_row = k_base + r64 * stride_kt
        pa = gl.max_contiguous(gl.multiple_of(k_row + gl.expand_dims(ca, 0), [1, 16]), [1, 16])
        pb = gl.max_contiguous(gl.multiple_of(k_row + D_A + gl.expand_dims(cb, 0), [1, 16]), [1, 16])
        pv = gl.max_contiguous(gl.multiple_of(v_base + r64 * stride_vt + gl.expand_dims(cv, 0), [1, 16]), [1, 16])
        async_copy.async_copy_global_to_shared(ka_ring.index(st), pa, mask=ok & gl.expand_dims(ca < D_A, 0))
        async_copy.async_copy_global_to_shared(kb_ring.index(st), pb, mask=ok & gl.expand_dims(cb < D_B, 0))
        async_copy.async_copy_global_to_shared(v_ring.index(st), pv, mask=ok & gl.expand_dims(cv < D_V, 0))
        async_copy.mbarrier_arrive(full.index(st), increment_count=False)


@gluon.jit
def _consumer(qa_smem, qb_smem, ka_ring, kb_ring, v_ring, full, empty, m0, q_start, hi, T, qk_scale,
              BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, D_V: gl.constexpr, STAGES: gl.constexpr,
              num_warps: gl.constexpr):
    s_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                  instr_shape=[16, BLOCK_N, 16])
    o_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                  instr_shape=[16, D_V, 16])
    p_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_l, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_l)
    pos = q_start + m0 + gl.arange(0, BLOCK_M, layout=row_s)  # absolute position of each query row
    m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=row_s)
    l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
    acc = gl.zeros([BLOCK_M, D_V], gl.float32, layout=o_l)
    s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_l)
    for i in range(gl.cdiv(hi, BLOCK_N)):
        st = i % STAGES
        mbarrier.wait(full.index(st), (i // STAGES) & 1)
        fence_async_shared()  # cp.async wrote in the generic proxy; wgmma reads in the async one
        s = warpgroup_mma(qa_smem, ka_ring.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        s = warpgroup_mma(qb_smem, kb_ring.index(st).permute((1, 0)), s, is_async=True)
        cols = i * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_l))
        see = (gl.expand_dims(cols, 0) <= gl.expand_dims(pos, 1)) & gl.expand_dims(cols < T, 0)
        s = warpgroup_mma_wait(num_outstanding=0, deps=(s, ))
        s = gl.where(see, s * qk_scale, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, 1))
        m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
        p = gl.exp2(s - gl.expand_dims(m_use, 1))
        alpha = gl.exp2(m_i - m_use)
        l_i = l_i * alpha + gl.sum(p, 1)
        m_i = m_new
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_l)), 1)
        p_op = gl.convert_layout(p.to(qa_smem.dtype), p_l)
        acc = warpgroup_mma(p_op, v_ring.index(st), acc, is_async=True)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
        gl.thread_barrier()  # both warpgroups past their PV before the one arrival frees the stage
        mbarrier.arrive(empty.index(st), count=1)
    return l_i, acc


@gluon.jit
def mha_fwd_kernel(
    Q, K, V, O,
    S, H, T, q_start, qk_scale,
    stride_qb, stride_qs, stride_qh,
    stride_kb, stride_kt, stride_kh,
    stride_vb, stride_vt, stride_vh,
    stride_ob, stride_os, stride_oh,
    D_A: gl.constexpr, D_B: gl.constexpr, D_V: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
    STAGES: gl.constexpr, PRODUCER_WARPS: gl.constexpr, PRODUCER_REGS: gl.constexpr, num_warps: gl.constexpr,
):
    n_qb = gl.cdiv(S, BLOCK_M)
    qb = n_qb - 1 - gl.program_id(0)  # the longest query blocks first (tail balance)
    bh = gl.program_id(1)
    b = (bh // H).to(gl.int64)
    h = (bh % H).to(gl.int64)
    m0 = qb * BLOCK_M
    hi = gl.minimum(T, q_start + m0 + BLOCK_M)  # keys past the block's last row are never loaded

    dtype: gl.constexpr = Q.dtype.element_ty
    sl: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
    # qk 192 = 128 (NoPE) + 64 (RoPE), kept as two power-of-two tiles; S sums their two matmuls.
    qa_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, D_A], sl)
    qb_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, D_B], sl)
    ka_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D_A], sl)
    kb_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D_B], sl)
    v_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D_V], sl)
    full, empty = ring_barriers(STAGES, PRODUCER_WARPS * 32)

    ld_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [num_warps, 1], [1, 0])
    rows = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ld_l))
    ca = gl.arange(0, D_A, layout=gl.SliceLayout(0, ld_l))
    cb = gl.arange(0, D_B, layout=gl.SliceLayout(0, ld_l))
    q_row = Q + b * stride_qb + h * stride_qh + gl.expand_dims(rows.to(gl.int64) * stride_qs, 1)
    in_s = gl.expand_dims(rows < S, 1)
    qa_smem.store(gl.load(q_row + gl.expand_dims(ca, 0), mask=in_s, other=0.0))
    qb_smem.store(gl.load(q_row + D_A + gl.expand_dims(cb, 0), mask=in_s, other=0.0))
    fence_async_shared()

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    l_i, acc = gl.warp_specialize([
        (_consumer, (qa_smem, qb_smem, ka_ring, kb_ring, v_ring, full, empty, m0, q_start, hi, T, qk_scale,
                     BLOCK_M, BLOCK_N, D_V, STAGES, num_warps)),
        (_producer, (k_base, v_base, stride_kt, stride_vt, hi, T, ka_ring, kb_ring, v_ring, full, empty,
                     D_A, D_B, D_V, BLOCK_N, STAGES, PRODUCER_WARPS)),
    ], [PRODUCER_WARPS], [PRODUCER_REGS])
    release_ring_barriers(full, empty, STAGES)

    o_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                  instr_shape=[16, D_V, 16])
    l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_l))
    out = acc / gl.expand_dims(gl.where(l_o > 0.0, l_o, 1.0), 1)
    orow = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, o_l))
    ocol = gl.arange(0, D_V, layout=gl.SliceLayout(0, o_l))
    o_ptr = (O + b * stride_ob + h * stride_oh + gl.expand_dims(orow.to(gl.int64) * stride_os, 1)
             + gl.expand_dims(ocol, 0))
    gl.store(o_ptr, out.to(O.dtype.element_ty), mask=gl.expand_dims(orow < S, 1))


def supports(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """bf16/fp16 on sm_90 with DeepSeek's MHA-form head dims (qk 192, v 128), 16-byte aligned rows."""
    return (q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and q.shape[-1] == 192 and v.shape[-1] == 128
            and all(t.stride(-1) == 1 and t.stride(-2) % 8 == 0 and t.stride(-3) % 8 == 0 for t in (q, k, v))
            and torch.cuda.get_device_capability(q.device) == (9, 0))


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH) == "1"


def launch(q, k, v, out, *, qk_scale: float, q_start: int) -> None:
    """One launch over [B, S, H, 192] q, [B, T, H, 192] k, [B, T, H, 128] v into out [B, S, H, 128]."""
    import triton

    B, S, H, _ = q.shape
    T = k.shape[1]
    grid = (triton.cdiv(S, CONFIG["BLOCK_M"]), B * H)
    mha_fwd_kernel[grid](
        q, k, v, out, S, H, T, q_start, qk_scale,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
        D_A=128, D_B=64, D_V=128, BLOCK_M=CONFIG["BLOCK_M"], BLOCK_N=CONFIG["BLOCK_N"], STAGES=CONFIG["STAGES"],
        PRODUCER_WARPS=CONFIG["PRODUCER_WARPS"], PRODUCER_REGS=CONFIG["PRODUCER_REGS"],
        num_warps=CONFIG["num_warps"])


def compile_variant():
    """Compile for sm_90 as `launch` does (bf16); for CI (`python -m kernels.mha.gluon_sm90 OUT_DIR`)."""
    from kernels._gluon import compile_sm90

    sig = {n: "i32" for n in mha_fwd_kernel.arg_names}
    sig.update(Q="*bf16", K="*bf16", V="*bf16", O="*bf16", qk_scale="fp32")
    const = dict(D_A=128, D_B=64, D_V=128, BLOCK_M=CONFIG["BLOCK_M"], BLOCK_N=CONFIG["BLOCK_N"], STAGES=CONFIG["STAGES"],
                 PRODUCER_WARPS=CONFIG["PRODUCER_WARPS"], PRODUCER_REGS=CONFIG["PRODUCER_REGS"],
                 num_warps=CONFIG["num_warps"])
    aligned = ("Q", "K", "V", "O") + tuple(n for n in mha_fwd_kernel.arg_names if n.startswith("stride_"))
    return compile_sm90(mha_fwd_kernel, sig, const, num_warps=CONFIG["num_warps"], aligned=aligned)


if __name__ == "__main__":
    import sys

    from kernels._gluon import write_compiled

    write_compiled({"mha-causal": compile_variant()}, sys.argv[1])
