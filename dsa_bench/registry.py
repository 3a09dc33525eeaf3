"""The implementation registry: every benchmarked implementation registers itself here.

An implementation turns a Workload (the inputs of one sweep point) into a Prepared call; the
measurement engine does all timing, checking and metric derivation, so no implementation times
itself and every one is measured the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

if TYPE_CHECKING:
    import torch

    from dsa_bench.workload import Workload

FAMILIES = ("dense", "dsa")


@dataclass
class Prepared:
    """One implementation bound to one point's inputs."""

    run: Callable[[], Any]
    # Pulls the attention output [B, S, H, d_v] out of what `run` returns, for the correctness check.
    output: Callable[[Any], "torch.Tensor"] = lambda r: r[0] if isinstance(r, tuple) else r
    # Yields (stage, callable) pairs to time separately; untimed set-up may run between yields
    # (e.g. computing one chunk's scores before its top-k is timed).
    stages: Optional[Callable[[], Iterator[tuple[str, Callable[[], Any]]]]] = None
    # DSA: the [B, S, k] token selection the implementation makes, so the check can judge the
    # selection by the reference scores and the attention on that selection separately.
    indices: Optional[Callable[[], "torch.Tensor"]] = None


@dataclass(frozen=True)
class Implementation:
    name: str
    family: str  # "dense" (MLA over every token) or "dsa" (indexer -> top-k -> sparse MLA)
    backend: str  # "triton", "torch" (PyTorch reference) or "vendor" (library baseline)
    phases: frozenset
    prepare: Callable[["Workload"], Prepared] = field(repr=False)
    description: str = ""
    baseline: bool = False  # a dense baseline DSA is compared against
    is_reference: bool = False  # the check against the reference is trivially true: skip it
    cuda_only: bool = False  # cannot run on the CPU (no interpreter, no CPU kernel)

    def supports(self, phase: str) -> bool:
        return phase in self.phases


REGISTRY: dict[str, Implementation] = {}


def register(impl: Implementation) -> Implementation:
    if impl.family not in FAMILIES:
        raise ValueError(f"{impl.name}: family must be one of {FAMILIES}, got {impl.family!r}")
    if impl.name in REGISTRY:
        raise ValueError(f"implementation {impl.name!r} is registered twice")
    REGISTRY[impl.name] = impl
    return impl


# The built-in implementations register themselves on import.
from dsa_bench import implementations as _builtin  # noqa: E402,F401
