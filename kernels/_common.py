"""Shared helpers for the kernels package: argument validation, the backend (GPU or Triton's CPU
interpreter), per-backend launch configs and the interpreter fixes.

Validation raises ValueError naming the argument and what was expected, so a caller who passes the
wrong shape/dtype/device learns which tensor is wrong without reading kernel code.

This module imports torch only: the PyTorch references use it, and `import kernels.reference` must not
import Triton. Triton kernel modules call `apply_interpreter_fixes()` right after importing triton.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Iterable, Sequence

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Interpreter bug 1 (all Triton versions measured: 3.6, 3.9): the interpreter keeps bf16 values as raw
# uint16 bits and its tl.dot multiplies those bits, so a bf16 dot is wrong; fp32 operands are exact.
# Kernels take UPCAST_DOT as a constexpr and upcast dot operands to fp32 when it is set.
UPCAST_DOT = INTERPRET

FP8 = getattr(torch, "float8_e4m3fn", None)
FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision: "ieee" for fp32 inputs (a correctness path) and for the interpreter's
    upcast operands (which ignores the setting), else "tf32"."""
    return "ieee" if UPCAST_DOT or dtype == torch.float32 else "tf32"


# --- launch configs ----------------------------------------------------------------------------
# Every kernel module keeps one table, CONFIG = {"gpu": {...}, "interpreter": {...}}: the GPU entry holds
# the launch parameters measured on an H200, the interpreter entry the sizes the CPU tests run with
# (the interpreter's cost is per executed block operation, not per element, so its sizes are chosen
# for test time and coverage, never for speed on a GPU). Tuning scripts edit the "gpu" entry in place.

def backend() -> str:
    """Which entry of a kernel's CONFIG applies: "interpreter" under TRITON_INTERPRET=1, else "gpu"."""
    return "interpreter" if INTERPRET else "gpu"


def launch_config(table: dict) -> dict:
    """The entry of a kernel module's CONFIG table for this process's backend."""
    return table[backend()]


# --- interpreter fixes -------------------------------------------------------------------------
# Interpreter bug 2: the interpreter holds kernel scalars as 1-element arrays and converts them with
# int(array), which NumPy >= 2.4 rejects for arrays that are not 0-d ("only 0-dimensional arrays can be
# converted to Python scalars"), so any `for i in range(runtime_bound)` in a kernel fails. Checked in
# Triton 3.6.0's interpreter; no Triton release is known to have changed that conversion, so every
# Triton >= 3.0 is patched when NumPy is >= 2.4 (add an upper bound here once one does).
_INDEX_FIX_NUMPY = (2, 4)
_INDEX_FIX_TRITON = (3, 0)


def _major_minor(version: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def needs_scalar_index_fix(triton_version: str, numpy_version: str) -> bool:
    """Whether the interpreter's scalar-to-int conversion must be patched for these versions."""
    return _major_minor(numpy_version) >= _INDEX_FIX_NUMPY and _major_minor(triton_version) >= _INDEX_FIX_TRITON


def apply_interpreter_fixes() -> None:
    """Patch Triton's CPU interpreter for this process's NumPy (bug 2 above). Idempotent; a no-op on
    the GPU backend, for unaffected versions, and where the interpreter lacks the patched hook."""
    if not INTERPRET:
        return
    import numpy
    import triton
    from triton.runtime import interpreter

    if not needs_scalar_index_fix(triton.__version__, numpy.__version__):
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_dsa_index_fix", False):
        return

    def _scalar_index(self):
        return int(self.handle.data.reshape(-1)[0])

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", _scalar_index)

    patched._dsa_index_fix = True
    interpreter._patch_lang_tensor = patched


# --- argument checks ---------------------------------------------------------------------------

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
