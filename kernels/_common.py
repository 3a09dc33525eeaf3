"""Shared helpers for the kernels package: argument validation and interpreter detection.

Validation raises ValueError naming the argument and what was expected, so a caller who passes the
wrong shape/dtype/device learns which tensor is wrong without reading kernel code.
"""
from __future__ import annotations

import functools
import os
from typing import Iterable, Sequence

import torch

# Triton's CPU interpreter computes tl.dot on bf16 operands wrongly (measured with triton 3.6/3.9);
# kernels take this as a constexpr and upcast dot operands to fp32 when it is set.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

FP8 = getattr(torch, "float8_e4m3fn", None)
FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def check_tensor(
    name: str,
    t: object,
    *,
    ndim: int | None = None,
    dtypes: Iterable[torch.dtype] | None = None,
    shape: Sequence[int | None] | None = None,
) -> torch.Tensor:
    """Validate one tensor argument; `shape` entries of None are free."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if dtypes is not None:
        dtypes = tuple(dtypes)
        if t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            raise ValueError(f"{name}: expected dtype in ({names}), got {str(t.dtype).replace('torch.', '')}")
    if shape is not None:
        for i, (got, want) in enumerate(zip(t.shape, shape)):
            if want is not None and got != want:
                raise ValueError(
                    f"{name}: dimension {i} must be {want}, got shape {tuple(t.shape)}"
                )
    return t


def check_same_device(**tensors: torch.Tensor | None) -> torch.device:
    devs = {n: t.device for n, t in tensors.items() if t is not None}
    first = next(iter(devs.values()))
    for n, d in devs.items():
        if d != first:
            others = ", ".join(f"{k}={v}" for k, v in devs.items())
            raise ValueError(f"{n}: all tensors must be on one device, got {others}")
    return first


def check_triton_device(name: str, t: torch.Tensor) -> None:
    """Triton kernels run on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1."""
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and INTERPRET:
        return
    raise ValueError(
        f"{name}: Triton kernels need a CUDA tensor (or a CPU tensor with TRITON_INTERPRET=1), "
        f"got device {t.device}"
    )


def resolve_q_start(q_start: int | None, s: int, t: int, name: str = "q_start") -> int:
    """Absolute position of query 0; default T - S puts the queries at the end of the context."""
    if q_start is None:
        q_start = t - s
    if not isinstance(q_start, int) or isinstance(q_start, bool):
        raise ValueError(f"{name}: expected an int, got {type(q_start).__name__}")
    if q_start < 0:
        raise ValueError(f"{name}: must be >= 0, got {q_start} (S={s}, T={t})")
    return q_start


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def num_sms(device: torch.device) -> int:
    """SMs to fill when sizing grids (cached: read on every decode launch)."""
    if device.type != "cuda":
        return 4  # interpreter: any small number; tests force split counts explicitly
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())
