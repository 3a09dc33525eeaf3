"""Lightning indexer (DSA's token scorer) as one fused Triton kernel.

scores[b, i, s] = sum_j w[b, i, j] * relu(q[b, i, j] . k[b, s]) * k_scale[b, s], -inf where s > q_start + i.

Grid (T / BLOCK_T, S / S_PER_PROG, B). A program loads one [BLOCK_T, Di] key tile (and its k_scale)
once and, for each of its S_PER_PROG queries, runs one tensor-core dot [BLOCK_T, Di] x [Di, Hi] against
that query's heads; ReLU, head weights, the head sum (a row sum of the accumulator), k_scale and the
causal mask are applied in registers and only the [BLOCK_T] scores of the query reach memory. Keys are
the dot's M and heads its N so the head reduction stays inside a thread's accumulator fragment.

Measured on an H200 (Hi=64, Di=128): prefill S=2048, T=32K: bf16 2.19 ms (500 TFLOP/s), fp8 1.43 ms
(770 TFLOP/s); decode B=4, S=1, T=128K: bf16 52 us, fp8 34 us (reading k at 2-2.6 TB/s).
S=4096 at T=128K, fp8: 11.5 ms = 750 TFLOP/s (59% of the ~1270 measured fp8 matmul rate). ncu: 118
registers, 25% occupancy, 40% of issue slots used; per query the [256, 64] fp32 logits go through
ReLU, the head weights and a row sum in registers after the dot, and nothing overlaps that epilogue
with the next query's dot. Config sweep (BLOCK_T 128/256, 16-64 queries a program, 4/8 warps, 1-3
stages): 718-753 TFLOP/s fp8, 408-480 bf16; the default is the best of them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import UPCAST_DOT, apply_interpreter_fixes, dot_precision, launch_config, next_pow2, num_sms
from kernels._indexer_args import check_indexer_args

apply_interpreter_fixes()

# BLOCK_T: keys per program (the M of every dot); MAX_S_PER_PROG: queries per program, each reusing the
# program's key tile. GPU: the best of the sweep in the module docstring. The interpreter runs the
# same sizes (the tests' shapes are chosen around them).
CONFIG = {
    "gpu": dict(BLOCK_T=256, MAX_S_PER_PROG=32, num_warps=8, num_stages=2),
    "interpreter": dict(BLOCK_T=256, MAX_S_PER_PROG=32, num_warps=8, num_stages=2),
}


@triton.jit
def _indexer_kernel(
    q_ptr, w_ptr, k_ptr, ks_ptr, o_ptr,
    S, T, HI, DI, q_start,
    sqb, sqs, sqh, sqd, swb, sws, swh, skb, skt, skd, sksb, skst, sob, sos, sot,
    S_PER_PROG: tl.constexpr, HI_P: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
    HAS_SCALE: tl.constexpr, UPCAST_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    t0 = tl.program_id(0) * BLOCK_T
    s_first = tl.program_id(1) * S_PER_PROG
    b = tl.program_id(2).to(tl.int64)  # int64 so batch offsets into [B, S, T] cannot overflow

    # The key tile stays on chip for all S_PER_PROG queries of the program.
    offs_t = t0 + tl.arange(0, BLOCK_T)
    t_ok = offs_t < T
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < DI
    kt = tl.load(k_ptr + b * skb + offs_t[:, None] * skt + offs_d[None, :] * skd,
                 mask=t_ok[:, None] & d_ok[None, :], other=0.0)
    if UPCAST_DOT:  # the CPU interpreter gets bf16 dots wrong; fp32 operands are exact there
        kt = kt.to(tl.float32)
    if HAS_SCALE:
        ks = tl.load(ks_ptr + b * sksb + offs_t * skst, mask=t_ok, other=0.0)
    offs_h = tl.arange(0, HI_P)
    h_ok = offs_h < HI

    for i in range(S_PER_PROG):
        s = s_first + i
        s_ok = s < S
        # Heads are the N of the dot, so the head reduction is a row sum of the accumulator
        # (within a thread and its quad), not a reduction across warps.
        q_s = tl.load(q_ptr + b * sqb + s * sqs + offs_h[:, None] * sqh + offs_d[None, :] * sqd,
                      mask=s_ok & h_ok[:, None] & d_ok[None, :], other=0.0)
        if (t0 <= q_start + s) & s_ok:
            w_s = tl.load(w_ptr + b * swb + s * sws + offs_h * swh, mask=h_ok, other=0.0)
            if UPCAST_DOT:
                q_s = q_s.to(tl.float32)
            logits = tl.dot(kt, tl.trans(q_s), input_precision=DOT_PRECISION)  # [BLOCK_T, HI_P] fp32
            sc = tl.sum(tl.maximum(logits, 0.0) * w_s[None, :], axis=1)
            if HAS_SCALE:
                sc = sc * ks
            sc = tl.where(offs_t <= q_start + s, sc, float("-inf"))
        else:
            # Tile wholly past this query's causal frontier: no dot, but still written.
            sc = tl.full((BLOCK_T,), float("-inf"), tl.float32)
        tl.store(o_ptr + b * sob + s.to(tl.int64) * sos + offs_t * sot, sc, mask=t_ok & s_ok)


TL, GLUON_SM90 = "tl", "gluon_sm90"


def variant(q: torch.Tensor, k: torch.Tensor) -> str:
    """Which indexer kernel runs: the warp-specialized Gluon one (kernels/indexer_gluon_sm90.py) on
    sm_90 for DeepSeek's shapes when DSA_BENCH_INDEXER_GLUON=1 (until a GPU run has checked it), else tl."""
    if not q.is_cuda:
        return TL
    from kernels import indexer_gluon_sm90 as g

    return GLUON_SM90 if g.enabled() and g.supports(q, k) else TL


def lightning_indexer(
    q: torch.Tensor,
    weights: torch.Tensor,
    k: torch.Tensor,
    *,
    k_scale: torch.Tensor | None = None,
    q_start: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused lightning indexer: float32 scores [B, S, T] (see module docstring); `out` to write in place."""
    d = check_indexer_args(q, weights, k, k_scale, q_start, out, triton=True)
    if out is None:
        out = torch.empty(d.B, d.S, d.T, dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out

    if variant(q, k) == GLUON_SM90 and out.stride(-1) == 1 and weights.stride(-1) == 1:
        from kernels import indexer_gluon_sm90

        indexer_gluon_sm90.launch(q, weights, k, k_scale, out, q_start=d.q_start)
        return out
    cfg = launch_config(CONFIG)
    hi_p = max(16, next_pow2(d.Hi))  # heads are the dot's N: >= 16 for tensor cores
    block_d = max(16, next_pow2(d.Di))
    n_t = triton.cdiv(d.T, cfg["BLOCK_T"])
    # As many queries per program as keep ~4 programs per SM (more reuse of the key tile).
    s_per_prog = min(cfg["MAX_S_PER_PROG"], next_pow2(d.S))
    while s_per_prog > 1 and d.B * n_t * triton.cdiv(d.S, s_per_prog) < 4 * num_sms(q.device):
        s_per_prog //= 2
    grid = (n_t, triton.cdiv(d.S, s_per_prog), d.B)

    ks = k_scale if k_scale is not None else weights  # dummy pointer when HAS_SCALE is off
    _indexer_kernel[grid](
        q, weights, k, ks, out,
        d.S, d.T, d.Hi, d.Di, d.q_start,
        *q.stride(), *weights.stride(), *k.stride(),
        *(k_scale.stride() if k_scale is not None else (0, 0)), *out.stride(),
        S_PER_PROG=s_per_prog, HI_P=hi_p, BLOCK_D=block_d, BLOCK_T=cfg["BLOCK_T"],
        HAS_SCALE=k_scale is not None, UPCAST_DOT=UPCAST_DOT, DOT_PRECISION=dot_precision(q.dtype),
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    return out
