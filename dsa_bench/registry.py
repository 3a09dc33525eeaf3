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


class Unavailable(RuntimeError):
    """Raised by `prepare` when the point cannot run here (a library or input format it needs is
    missing): the row is `skipped` with the message, not an `error`."""


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
    # The attention form the call ran ('sparse_mla' or 'masked_mha' for DSA; None: the family's usual
    # form): picks the reference for the check, the analytic work and the `attention_mode` column.
    mode: Optional[str] = None
    # The latent cache the attention really reads when it is not the workload's bf16 one (an FP8
    # serving cache, de-quantised): the reference attends over it, so the check judges the kernel,
    # not the cache format's rounding.
    reference_kv: Optional[Callable[[], "torch.Tensor"]] = None
    # Which kernel variant the call runs where an op has several (e.g. 'mla:gluon_sm90', 'mla:tl'):
    # the row's `kernel_variant` column.
    variant: Optional[str] = None


@dataclass(frozen=True)
class Implementation:
    name: str
    family: str  # "dense" (MLA over every token) or "dsa" (indexer -> top-k -> sparse MLA)
    backend: str  # "triton", "torch" (PyTorch reference), "vendor" (library baseline) or "production" (DSA as served)
    phases: frozenset
    prepare: Callable[["Workload"], Prepared] = field(repr=False)
    description: str = ""
    baseline: bool = False  # a dense baseline DSA is compared against
    is_reference: bool = False  # the check against the reference is trivially true: skip it
    cuda_only: bool = False  # cannot run on the CPU (no interpreter, no CPU kernel)
    # Why it cannot run in this process (a library missing, the wrong GPU), or None: checked before
    # each point, so the row is `skipped` with the reason instead of failing in prepare.
    unavailable: Optional[Callable[[], Optional[str]]] = field(default=None, repr=False)

    def supports(self, phase: str) -> bool:
        return phase in self.phases


class _Registry(dict):
    """name -> Implementation. The built-in implementations (dsa_bench/implementations.py) and the
    installed plug-ins are loaded on first read, so importing this module imports neither (no import
    cycle: implementations.py imports this module, not the other way round)."""

    _loaded = False

    def _ensure(self) -> None:
        if not _Registry._loaded:
            _Registry._loaded = True
            import dsa_bench.implementations  # noqa: F401 - registers the built-ins

            _load_entry_points()

    def __getitem__(self, key):
        self._ensure()
        return super().__getitem__(key)

    def __contains__(self, key):
        self._ensure()
        return super().__contains__(key)

    def __iter__(self):
        self._ensure()
        return super().__iter__()

    def __len__(self):
        self._ensure()
        return super().__len__()

    def get(self, key, default=None):
        self._ensure()
        return super().get(key, default)

    def keys(self):
        self._ensure()
        return super().keys()

    def values(self):
        self._ensure()
        return super().values()

    def items(self):
        self._ensure()
        return super().items()


REGISTRY: dict[str, Implementation] = _Registry()


# Names registered by register_failed_plugin: a later successful import of the plug-in replaces them.
_STAND_INS: set[str] = set()


def register(impl: Implementation) -> Implementation:
    REGISTRY._ensure()  # a plug-in registering first must still collide with a built-in of its name
    if impl.family not in FAMILIES:
        raise ValueError(f"{impl.name}: family must be one of {FAMILIES}, got {impl.family!r}")
    if dict.__contains__(REGISTRY, impl.name) and impl.name not in _STAND_INS:
        raise ValueError(f"implementation {impl.name!r} is registered twice")
    _STAND_INS.discard(impl.name)
    dict.__setitem__(REGISTRY, impl.name, impl)
    return impl


class PluginLoadFailed(RuntimeError):
    """Raised by a stand-in's prepare: the plug-in that should have registered it failed at import."""


def register_failed_plugin(name: str, reason: str) -> None:
    """A stand-in for implementation `name`, which a plug-in that failed at import would have registered:
    each of its points becomes an `error` row naming the failure, and the rest of the sweep runs."""

    def prepare(workload):
        raise PluginLoadFailed(f"not registered: {reason}")

    REGISTRY._ensure()
    if dict.__contains__(REGISTRY, name) and name not in _STAND_INS:
        return
    dict.__setitem__(REGISTRY, name, Implementation(
        name=name, family="dense", backend="plugin", phases=frozenset({"prefill", "decode"}), prepare=prepare,
        description=f"stand-in: {reason}"))
    _STAND_INS.add(name)


class PluginFileError(ValueError):
    """The path cannot be a plug-in (missing, not a regular file, not a .py file); nothing was run."""


class PluginImportFailed(Exception):
    """The plug-in's code raised `original` at import (any BaseException but the user's Ctrl-C)."""

    def __init__(self, original: BaseException):
        self.original = original
        super().__init__(f"{type(original).__name__}: {original}")


def load_plugin_file(path) -> None:
    """Import a plug-in module from a file (once per absolute path); it calls `register(...)`.

    Importing runs the file's code, as pytest's conftest.py does: only name files you trust. A real
    Ctrl-C meanwhile is
    recorded by dsa_bench.interrupts and propagates as KeyboardInterrupt; anything else the code raises
    (SystemExit and KeyboardInterrupt included) comes out as PluginImportFailed."""
    import hashlib
    import importlib.util
    import sys
    from pathlib import Path

    from dsa_bench.interrupts import reraise_if_user_interrupt, tracking

    path = Path(path).resolve()
    if not path.exists():
        raise PluginFileError(f"FileNotFoundError: no such file {str(path)!r}")
    if not path.is_file():
        raise PluginFileError(f"{str(path)!r} is not a regular file")
    if path.suffix != ".py":
        raise PluginFileError(f"{str(path)!r} is not a Python file (a plug-in is a .py module that calls "
                              "dsa_bench.registry.register)")
    name = "dsa_bench_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginFileError(f"{str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with tracking():  # the decision whose interrupt it is must be made while the handlers are in place
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - whatever a user's module raises
            del sys.modules[name]
            reraise_if_user_interrupt(exc)
            raise PluginImportFailed(exc) from exc


def _load_entry_points() -> None:
    """Installed packages can register implementations through the `dsa_bench.implementations`
    entry-point group (each entry point names a module or a callable that registers)."""
    from importlib.metadata import entry_points

    from dsa_bench.interrupts import reraise_if_user_interrupt, tracking

    for ep in entry_points(group="dsa_bench.implementations"):
        with tracking():
            try:
                obj = ep.load()
                if callable(obj):
                    obj()
            except BaseException as exc:  # noqa: BLE001 - an installed package's bug must not end every command
                reraise_if_user_interrupt(exc)
                text = str(exc).strip().splitlines()
                ENTRY_POINT_FAILURES.append(f"entry point {ep.name!r} ({ep.value}): "
                                            f"{type(exc).__name__}: {text[0] if text else ''}"[:300])


# Installed plug-ins (entry points) whose code failed: load_scenario treats them like failed plug-in files.
ENTRY_POINT_FAILURES: list[str] = []

