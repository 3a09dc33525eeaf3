"""Argument validation shared by the Triton and reference indexer / top-k, so both raise the same errors."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels._common import (
    FLOAT_DTYPES,
    FP8,
    check_same_device,
    check_tensor,
    check_triton_device,
    resolve_q_start,
)

INDEXER_DTYPES = FLOAT_DTYPES + ((FP8,) if FP8 is not None else ())


@dataclass(frozen=True)
class IndexerDims:
    B: int
    S: int
    Hi: int
    Di: int
    T: int
    q_start: int


def check_indexer_args(q, weights, k, k_scale, q_start, out, *, triton: bool) -> IndexerDims:
    check_tensor("q", q, ndim=4, dtypes=INDEXER_DTYPES)
    B, S, Hi, Di = q.shape
    check_tensor("weights", weights, ndim=3, dtypes=(torch.float32,), shape=(B, S, Hi))
    # q and k share one dtype: the kernel feeds both to one tensor-core dot.
    check_tensor("k", k, ndim=3, dtypes=(q.dtype,), shape=(B, None, Di))
    T = k.shape[1]
    if k_scale is None and FP8 is not None and q.dtype == FP8:
        raise ValueError("k_scale: required (float32 [B, T]) when q and k are float8_e4m3fn")
    if k_scale is not None:
        check_tensor("k_scale", k_scale, ndim=2, dtypes=(torch.float32,), shape=(B, T))
    if out is not None:
        check_tensor("out", out, ndim=3, dtypes=(torch.float32,), shape=(B, S, T))
    check_same_device(q=q, weights=weights, k=k, k_scale=k_scale, out=out)
    if triton:
        check_triton_device("q", q)
    return IndexerDims(B, S, Hi, Di, T, resolve_q_start(q_start, S, T))


def check_topk_args(scores, topk, out, *, triton: bool, q_start=None) -> tuple[int, int, int]:
    check_tensor("scores", scores, ndim=3, dtypes=(torch.float32,))
    if not isinstance(topk, int) or isinstance(topk, bool) or topk <= 0:
        raise ValueError(f"topk: expected a positive int, got {topk!r}")
    B, S, T = scores.shape
    if q_start is not None:
        resolve_q_start(q_start, S, T)  # an int >= 0 (rows past T simply see all of T)
    if out is not None:
        check_tensor("out", out, ndim=3, dtypes=(torch.int32,), shape=(B, S, topk))
    check_same_device(scores=scores, out=out)
    if triton:
        check_triton_device("scores", scores)
    return B, S, T
