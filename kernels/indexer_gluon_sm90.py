"""Lightning indexer for Hopper (sm_90) in Gluon, warp-specialized: kernels.lightning_indexer's
contract (scores [B, S, T] fp32, -inf past the causal frontier), fp8 (e4m3, one scale per key) or bf16.

The `tl` kernel (kernels/indexer.py) keeps a [256, Di] key tile per program and runs, query after
query, the dot [256 keys, Di] x [Di, 64 heads] then the epilogue (ReLU, head weights, the sum over
heads, the key scale, the mask); ncu shows nothing overlapping that epilogue with the next dot. Here:
- the key tile is loaded once into shared memory, before the partitions fork;
- producer warps stream the program's queries ([64 heads, Di] each) by cp.async into a ring;
- two consumer warpgroups take alternate queries, each running async wgmma (keys as M = 256, heads
  as N = 64, so the head sum stays within a thread's accumulator fragment and 4 lanes) and its own
  epilogue: one warpgroup's epilogue runs while the other's matmul does.
Queries that see none of the tile skip the matmul and write -inf.

Written and compiled for sm_90 on a CPU machine, not yet run: selected only with
DSA_BENCH_INDEXER_GLUON=1 (kernels/indexer.py) until a GPU run checks it and times it against
DeepGEMM's fp8_mqa_logits.
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

ENV_SWITCH = "DSA_BENCH_INDEXER_GLUON"
# Registers: a partition is granted them per warpgroup, so the producer takes 4 warps (more issue
# slots for its copies) at no extra cost: 232 + 232 + 48 = 512 a thread-slot of the SM's 65536.
CONFIG = dict(BLOCK_T=256, S_PER_PROG=32, STAGES=4, CONSUMER_REGS=232, PRODUCER_REGS=48, PRODUCER_WARPS=4)


@gluon.jit
def _queries(Q, stride_qb, stride_qs, stride_qh, b, s0, S, q_ring, full, empty,
             HI: gl.constexpr, DI: gl.constexpr, S_PER_PROG: gl.constexpr, STAGES: gl.constexpr,
             PRODUCER_WARPS: gl.constexpr):
    """Producer: each query's [HI, DI] head block into the ring."""
    elems: gl.constexpr = 128 // Q.dtype.element_ty.primitive_bitwidth  # 16 bytes per cp.async
    ld: gl.constexpr = gl.BlockedLayout([1, elems], [32 * elems // DI, DI // elems], [PRODUCER_WARPS, 1], [1, 0])
    h = gl.arange(0, HI, layout=gl.SliceLayout(1, ld))
    d = gl.arange(0, DI, layout=gl.SliceLayout(0, ld))
    for j in range(S_PER_PROG):
        st = j % STAGES
        mbarrier.wait(empty.index(st), ((j // STAGES) & 1) ^ 1)
        s = s0 + j
        ok = gl.expand_dims(h < HI, 1) & gl.expand_dims(d < DI, 0) & (s < S)
        p = (Q + b * stride_qb + gl.where(s < S, s, 0).to(gl.int64) * stride_qs
             + gl.expand_dims(h.to(gl.int64) * stride_qh, 1) + gl.expand_dims(d, 0))
        p = gl.max_contiguous(gl.multiple_of(p, [1, 16]), [1, elems])
        async_copy.async_copy_global_to_shared(q_ring.index(st), p, mask=ok)
        async_copy.mbarrier_arrive(full.index(st), increment_count=False)


@gluon.jit
def _scores(W, KS, OUT, stride_wb, stride_ws, stride_ksb, stride_ob, stride_os, b, s0, S, t0, T, q_start, k_smem,
            q_ring, full, empty, WG: gl.constexpr, HI: gl.constexpr, BLOCK_T: gl.constexpr,
            S_PER_PROG: gl.constexpr, STAGES: gl.constexpr, HAS_SCALE: gl.constexpr):
    """Consumer warpgroup WG (0 or 1): queries j = WG, WG + 2, ... of the program."""
    acc_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HI, 32 if k_smem.dtype.primitive_bitwidth == 8 else 16])
    key_l: gl.constexpr = gl.SliceLayout(1, acc_l)
    head_l: gl.constexpr = gl.SliceLayout(0, acc_l)
    keys = t0 + gl.arange(0, BLOCK_T, layout=key_l)
    heads = gl.arange(0, HI, layout=head_l)
    # (register tensors do not cross into a partition: each warpgroup reads the key scales itself)
    if HAS_SCALE:
        scale = gl.load(KS + b * stride_ksb + keys, mask=keys < T, other=0.0)
    else:
        scale = gl.full([BLOCK_T], 1.0, gl.float32, layout=key_l)
    zero = gl.zeros([BLOCK_T, HI], gl.float32, layout=acc_l)
    for jj in range(S_PER_PROG // 2):
        j = 2 * jj + WG
        st = j % STAGES
        s = s0 + j
        pos = q_start + s  # the last key this query sees
        mbarrier.wait(full.index(st), (j // STAGES) & 1)
        fence_async_shared()  # cp.async wrote in the generic proxy; wgmma reads in the async one
        if pos >= t0:
            acc = warpgroup_mma(k_smem, q_ring.index(st).permute((1, 0)), zero, use_acc=False, is_async=True)
            w = gl.load(W + b * stride_wb + gl.where(s < S, s, 0).to(gl.int64) * stride_ws + heads)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
            logit = gl.sum(gl.maximum(acc, 0.0) * gl.expand_dims(w, 0), 1) * scale
            logit = gl.where(keys <= pos, logit, float("-inf"))
        else:
            logit = gl.full([BLOCK_T], float("-inf"), gl.float32, layout=key_l)
        mbarrier.arrive(empty.index(st), count=1)
        gl.store(OUT + b * stride_ob + s.to(gl.int64) * stride_os + keys, logit, mask=(keys < T) & (s < S))


@gluon.jit
def indexer_fwd_kernel(
    Q, W, K, KS, OUT,
    S, T, q_start,
    stride_qb, stride_qs, stride_qh, stride_wb, stride_ws, stride_kb, stride_kt, stride_ksb, stride_ob, stride_os,
    HI: gl.constexpr, DI: gl.constexpr, BLOCK_T: gl.constexpr, S_PER_PROG: gl.constexpr, STAGES: gl.constexpr,
    HAS_SCALE: gl.constexpr, CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr,
    PRODUCER_WARPS: gl.constexpr, num_warps: gl.constexpr,
):
    t0 = gl.program_id(0) * BLOCK_T
    s0 = gl.program_id(1) * S_PER_PROG
    b = gl.program_id(2).to(gl.int64)
    dtype: gl.constexpr = Q.dtype.element_ty
    bits: gl.constexpr = dtype.primitive_bitwidth
    sl: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=bits, rank=2)
    k_smem = gl.allocate_shared_memory(dtype, [BLOCK_T, DI], sl)
    q_ring = gl.allocate_shared_memory(dtype, [STAGES, HI, DI], sl)
    full, empty = ring_barriers(STAGES, PRODUCER_WARPS * 32)

    # The key tile and its scales, once, by the whole program before the partitions fork.
    elems: gl.constexpr = 128 // bits
    ld: gl.constexpr = gl.BlockedLayout([1, elems], [32 * elems // DI, DI // elems], [num_warps, 1], [1, 0])
    rows = t0 + gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, ld))
    cols = gl.arange(0, DI, layout=gl.SliceLayout(0, ld))
    kp = K + b * stride_kb + gl.expand_dims(rows.to(gl.int64) * stride_kt, 1) + gl.expand_dims(cols, 0)
    k_smem.store(gl.load(kp, mask=gl.expand_dims(rows < T, 1), other=0.0))
    fence_async_shared()

    gl.warp_specialize([
        (_scores, (W, KS, OUT, stride_wb, stride_ws, stride_ksb, stride_ob, stride_os, b, s0, S, t0, T, q_start,
                   k_smem, q_ring, full, empty, 0, HI, BLOCK_T, S_PER_PROG, STAGES, HAS_SCALE)),
        (_scores, (W, KS, OUT, stride_wb, stride_ws, stride_ksb, stride_ob, stride_os, b, s0, S, t0, T, q_start,
                   k_smem, q_ring, full, empty, 1, HI, BLOCK_T, S_PER_PROG, STAGES, HAS_SCALE)),
        (_queries, (Q, stride_qb, stride_qs, stride_qh, b, s0, S, q_ring, full, empty, HI, DI, S_PER_PROG, STAGES,
                    PRODUCER_WARPS)),
    ], [4, PRODUCER_WARPS], [CONSUMER_REGS, PRODUCER_REGS])
    release_ring_barriers(full, empty, STAGES)


def supports(q: torch.Tensor, k: torch.Tensor) -> bool:
    """sm_90, DeepSeek's 64 heads x 128 dims in fp8 or bf16, rows in whole 16-byte lines."""
    return (q.is_cuda and q.dtype in (torch.float8_e4m3fn, torch.bfloat16) and k.dtype == q.dtype
            and q.shape[2] == 64 and q.shape[3] == 128 and q.stride(-1) == 1 and k.stride(-1) == 1
            and torch.cuda.get_device_capability(q.device) == (9, 0))


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH) == "1"


def launch(q, weights, k, k_scale, out, *, q_start: int) -> None:
    import triton

    B, S, Hi, Di = q.shape
    T = k.shape[1]
    grid = (triton.cdiv(T, CONFIG["BLOCK_T"]), triton.cdiv(S, CONFIG["S_PER_PROG"]), B)
    ks = k_scale if k_scale is not None else weights
    indexer_fwd_kernel[grid](
        q, weights, k, ks, out, S, T, q_start,
        q.stride(0), q.stride(1), q.stride(2), weights.stride(0), weights.stride(1), k.stride(0), k.stride(1),
        k_scale.stride(0) if k_scale is not None else 0, out.stride(0), out.stride(1),
        HI=Hi, DI=Di, BLOCK_T=CONFIG["BLOCK_T"], S_PER_PROG=CONFIG["S_PER_PROG"], STAGES=CONFIG["STAGES"],
        HAS_SCALE=k_scale is not None, CONSUMER_REGS=CONFIG["CONSUMER_REGS"], PRODUCER_REGS=CONFIG["PRODUCER_REGS"],
        PRODUCER_WARPS=CONFIG["PRODUCER_WARPS"], num_warps=4)


VARIANTS = {"indexer-fp8": "*fp8e4nv", "indexer-bf16": "*bf16"}


def compile_variant(qk_type: str):
    """Compile for sm_90 as `launch` does; for CI (`python -m kernels.indexer_gluon_sm90 OUT_DIR`)."""
    from kernels._gluon import compile_sm90

    sig = {n: "i32" for n in indexer_fwd_kernel.arg_names}
    sig.update(Q=qk_type, K=qk_type, W="*fp32", KS="*fp32", OUT="*fp32")
    const = dict(HI=64, DI=128, BLOCK_T=CONFIG["BLOCK_T"], S_PER_PROG=CONFIG["S_PER_PROG"], STAGES=CONFIG["STAGES"],
                 HAS_SCALE=qk_type == "*fp8e4nv", CONSUMER_REGS=CONFIG["CONSUMER_REGS"],
                 PRODUCER_REGS=CONFIG["PRODUCER_REGS"], PRODUCER_WARPS=CONFIG["PRODUCER_WARPS"], num_warps=4)
    aligned = ("Q", "W", "K", "KS", "OUT") + tuple(n for n in indexer_fwd_kernel.arg_names if n.startswith("stride_"))
    return compile_sm90(indexer_fwd_kernel, sig, const, num_warps=4, aligned=aligned)


if __name__ == "__main__":
    import sys

    from kernels._gluon import write_compiled

    write_compiled({name: compile_variant(t) for name, t in VARIANTS.items()}, sys.argv[1])
