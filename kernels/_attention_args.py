"""Argument validation shared by the Triton attention kernels and their PyTorch references.

Both versions call the same function, so a bad argument raises the same ValueError (naming the
argument) whichever implementation the caller picked. Device *kind* checks (CUDA or interpreter) are
Triton-only and live in the Triton wrappers.
"""
from __future__ import annotations

import math

import torch

from kernels._common import FLOAT_DTYPES, check_same_device, check_tensor, resolve_q_start

INDEX_DTYPES = (torch.int32, torch.int64)


def _check_scale(sm_scale: object) -> float:
    if isinstance(sm_scale, bool) or not isinstance(sm_scale, (int, float)) or not math.isfinite(sm_scale):
        raise ValueError(f"sm_scale: expected a finite number, got {sm_scale!r}")
    return float(sm_scale)


def _check_d_v(d_v: object, d: int) -> int:
    if isinstance(d_v, bool) or not isinstance(d_v, int) or not 0 < d_v <= d:
        raise ValueError(f"d_v: expected an int in [1, {d}] (q's last dimension), got {d_v!r}")
    return d_v


def _check_q_kv(q: torch.Tensor, kv: torch.Tensor) -> None:
    check_tensor("q", q, ndim=4, dtypes=FLOAT_DTYPES)
    B, _, _, D = q.shape
    check_tensor("kv", kv, ndim=3, dtypes=(q.dtype,), shape=(B, None, D))


def check_sparse_mla_args(q, kv, indices, sm_scale, d_v):
    """q [B,S,H,D], kv [B,T,D] (q's dtype), indices [B,S,K] int32/int64. Returns (B,S,H,D,T,K,scale)."""
    _check_q_kv(q, kv)
    B, S, H, D = q.shape
    check_tensor("indices", indices, ndim=3, dtypes=INDEX_DTYPES, shape=(B, S, None))
    check_same_device(q=q, kv=kv, indices=indices)
    scale = _check_scale(sm_scale)
    _check_d_v(d_v, D)
    return B, S, H, D, kv.shape[1], indices.shape[2], scale


def check_dense_mla_args(q, kv, sm_scale, d_v, q_start):
    """q [B,S,H,D], kv [B,T,D]. Returns (B,S,H,D,T,scale,q_start)."""
    _check_q_kv(q, kv)
    B, S, H, D = q.shape
    check_same_device(q=q, kv=kv)
    scale = _check_scale(sm_scale)
    _check_d_v(d_v, D)
    T = kv.shape[1]
    return B, S, H, D, T, scale, resolve_q_start(q_start, S, T)


def check_dense_mha_args(q, k, v, sm_scale, q_start):
    """q [B,S,H,Dqk], k [B,T,H,Dqk], v [B,T,H,Dv], one dtype. Returns (B,S,H,Dqk,T,Dv,scale,q_start)."""
    check_tensor("q", q, ndim=4, dtypes=FLOAT_DTYPES)
    B, S, H, D = q.shape
    check_tensor("k", k, ndim=4, dtypes=(q.dtype,), shape=(B, None, H, D))
    T = k.shape[1]
    check_tensor("v", v, ndim=4, dtypes=(q.dtype,), shape=(B, T, H, None))
    check_same_device(q=q, k=k, v=v)
    scale = _check_scale(sm_scale)
    return B, S, H, D, T, v.shape[3], scale, resolve_q_start(q_start, S, T)


def check_masked_mha_args(q, k, v, indices, sm_scale, q_start):
    """dense_mha's arguments plus indices [B,S,K] int32/int64. Returns (B,S,H,Dqk,T,Dv,K,scale,q_start)."""
    B, S, H, D, T, Dv, scale, q_start = check_dense_mha_args(q, k, v, sm_scale, q_start)
    check_tensor("indices", indices, ndim=3, dtypes=INDEX_DTYPES, shape=(B, S, None))
    check_same_device(q=q, indices=indices)
    return B, S, H, D, T, Dv, indices.shape[2], scale, q_start


def check_out_buffer(name: str, t: torch.Tensor | None, shape, dtype, device) -> None:
    """Optional caller-provided output buffer: exact shape, dtype, device; any strides with a unit
    last one (a slice of a larger output, as DSA's chunks write)."""
    if t is None:
        return
    check_tensor(name, t, ndim=len(shape), dtypes=(dtype,), shape=shape)
    if t.device != device:
        raise ValueError(f"{name}: expected device {device}, got {t.device}")
    if t.numel() and t.stride(-1) != 1:
        raise ValueError(f"{name}: expected unit stride in the last dimension, got strides {tuple(t.stride())}")
