"""MLA forward, sparse (gathered latents) and dense (all visible latents): its variants and the
dispatch between them, beside the PyTorch reference in kernels/reference/.

- `tl_kernel.py`: the Triton `tl` kernel, the portable path (any GPU, and the CPU interpreter);
- `gluon_sm90.py`: a warp-specialized Gluon kernel for Hopper (producer warps gathering by cp.async
  into a shared-memory ring, async wgmma consumers), same arguments, partials and combine.

`variant(q, d_v)` says which runs for given inputs; `mla_forward` runs it. The Gluon kernel is
selected only on sm_90, for the shapes it is written for, and, until a GPU run has checked and timed
it, only when DSA_BENCH_MLA_GLUON=1 (see gluon_sm90.py).
"""
from __future__ import annotations

from kernels.mla.tl_kernel import CONFIG, mla_forward as _tl_forward  # noqa: F401 - CONFIG: tune.py edits it

TL, GLUON_SM90 = "tl", "gluon_sm90"


def variant(q, d_v: int) -> str:
    """Which MLA forward runs for query `q` (its device, dtype, heads) and value width d_v."""
    if not q.is_cuda:
        return TL
    from kernels.mla import gluon_sm90

    return GLUON_SM90 if gluon_sm90.enabled() and gluon_sm90.supports(q, d_v) else TL


def mla_forward(q, kv, indices, *, scale, d_v, q_start, num_splits, out, lse):
    if variant(q, d_v) == GLUON_SM90:
        from kernels.mla import gluon_sm90

        cfg = gluon_sm90.CONFIG

        def launch(grid, args, **shape):
            gluon_sm90.mla_fwd_kernel[grid](
                *args, **shape, BLOCK_H=cfg["BLOCK_H"], BLOCK_N=cfg["BLOCK_N"], STAGES=cfg["STAGES"],
                PRODUCER_WARPS=cfg["PRODUCER_WARPS"], PRODUCER_REGS=cfg["PRODUCER_REGS"], num_warps=cfg["num_warps"])

        return _tl_forward(q, kv, indices, scale=scale, d_v=d_v, q_start=q_start, num_splits=num_splits, out=out,
                           lse=lse, fwd_kernel=launch, tiles=dict(BLOCK_H=cfg["BLOCK_H"], BLOCK_N=cfg["BLOCK_N"]))
    return _tl_forward(q, kv, indices, scale=scale, d_v=d_v, q_start=q_start, num_splits=num_splits, out=out, lse=lse)
