"""MHA-form attention forward (dense prefill, and masked MHA through kernels/masked_mha.py): its
variants and the dispatch between them. The `tl` kernel lives in kernels/dense_mha.py (the portable
and interpreter path); `gluon_sm90.py` is a warp-specialized Gluon kernel for Hopper, selected only on
sm_90 for unmasked calls with DeepSeek's head dims and, until a GPU run has checked and timed it,
only when DSA_BENCH_MHA_GLUON=1."""
from __future__ import annotations

TL, GLUON_SM90 = "tl", "gluon_sm90"


def variant(q, k, v, out=None, masked: bool = False) -> str:
    if masked or not q.is_cuda:
        return TL
    from kernels.mha import gluon_sm90

    ok = gluon_sm90.enabled() and gluon_sm90.supports(q, k, v) and (
        out is None or (out.stride(-1) == 1 and out.stride(-2) % 8 == 0 and out.stride(-3) % 8 == 0))
    return GLUON_SM90 if ok else TL
