"""Compiling Gluon kernels for Hopper (sm_90) without a GPU: what CI does to check that each Gluon
kernel still builds, fits its shared-memory and register budgets, and keeps the instructions it is
designed around (they cannot run in the Triton interpreter); and the ring barriers they share.

Compile in a process without TRITON_INTERPRET=1: with it set when Triton is imported, Triton's own
@jit helpers (gl.max's combine function, ...) become interpreter functions a compile cannot call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier

SM90 = ("cuda", 90, 32)


@dataclass
class Compiled:
    """What a compile for sm_90 produced: the PTX, the shared memory a program takes, the kernel."""

    ptx: str
    ttgir: str
    shared_bytes: int
    num_warps: int
    kernel: Any

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.ptx))

    def setmaxnreg(self) -> list[tuple[str, int]]:
        """(inc|dec, registers) of each register reallocation in the PTX."""
        return [(m.group(1), int(m.group(2))) for m in re.finditer(r"setmaxnreg\.(inc|dec)\.sync\.aligned\.u32\s+(\d+)", self.ptx)]


def compile_sm90(fn, signature: dict[str, str], constexprs: dict[str, Any], *, num_warps: int,
                 aligned: tuple[str, ...] = ()) -> Compiled:
    """Compile Gluon kernel `fn` for sm_90. `signature`: argument -> Triton type ('*bf16', 'i32',
    'fp32'; constexprs are added); `aligned`: arguments known to be multiples of 16 (pointers, strides)
    as the launcher's specialisation would see them on the GPU."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    names = fn.arg_names
    sig = {n: ("constexpr" if n in constexprs else signature[n]) for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    src = GluonASTSource(fn, sig, {n: v for n, v in constexprs.items()}, attrs)
    k = triton.compile(src, target=GPUTarget(*SM90), options={"num_warps": num_warps})
    return Compiled(ptx=k.asm["ptx"], ttgir=k.asm.get("ttgir", ""), shared_bytes=k.metadata.shared,
                    num_warps=num_warps, kernel=k)


def write_compiled(compiled: dict[str, Compiled], out_dir) -> None:
    """OUT/<name>.ptx, .ttgir and .json (shared bytes, warps) for each compiled kernel."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, c in compiled.items():
        (out / f"{name}.ptx").write_text(c.ptx)
        (out / f"{name}.ttgir").write_text(c.ttgir)
        (out / f"{name}.json").write_text(json.dumps({"shared_bytes": c.shared_bytes, "num_warps": c.num_warps}))



@gluon.jit
def ring_barriers(STAGES: gl.constexpr, PRODUCER_THREADS: gl.constexpr):
    """(full, empty) mbarriers for each stage of a producer/consumer ring: `full` completes when every
    producer thread's copies have landed; `empty` when the consumer (one arrival) released the stage."""
    full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(full.index(i), count=PRODUCER_THREADS)
        mbarrier.init(empty.index(i), count=1)
    return full, empty


@gluon.jit
def release_ring_barriers(full, empty, STAGES: gl.constexpr):
    for i in gl.static_range(STAGES):
        mbarrier.invalidate(full.index(i))
        mbarrier.invalidate(empty.index(i))
