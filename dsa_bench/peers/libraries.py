"""Where the production kernels are on this machine, and loading them once, with the reason when not.

Sources, in order of preference:
1. a standalone package importable here (`flash_mla`, `deep_gemm`, `flash_attn_interface`): built
   for this torch by whoever installed it;
2. the files of a vLLM install, found without importing vLLM (`importlib.util.find_spec` does not
   run `vllm/__init__.py`, which needs vLLM's whole Python stack), or of a folder named by
   `DSA_BENCH_VLLM_DIR` that holds the same files (`dsa-bench peers extract` makes one from the
   wheel): `_flashmla_C.abi3.so` (FlashMLA), `_C_stable_libtorch.abi3.so` (vLLM's DSA top-k and
   cache ops), `vllm_flash_attn/_vllm_fa3_C.abi3.so` (FlashAttention-3), `third_party/deep_gemm/`.

The FlashMLA and vLLM-op libraries use libtorch's stable ABI and load across torch versions; the FA3
library and DeepGEMM's `_C` use the unstable C++ ABI and load only into the exact torch vLLM pins
(checked before loading: a mismatch is a reason, not a crash). Each op's schema is checked before
the first call (`schemas.py`).
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dsa_bench.peers import schemas
from dsa_bench.registry import Unavailable

ENV_DIR = "DSA_BENCH_VLLM_DIR"
VLLM_HINT = (f"install vLLM built for this torch (vLLM 0.26.0 pins torch 2.11.0), or point {ENV_DIR} at the "
             "vllm folder of its wheel (`dsa-bench peers extract WHEEL DIR`)")


class PeerUnavailable(Unavailable):
    """A production kernel cannot be called here; the message says why and what to do."""


@dataclass(frozen=True)
class VllmFiles:
    root: Path                  # the folder holding vLLM's compiled libraries (the `vllm` package folder)
    origin: str                 # "installed vLLM" or "$DSA_BENCH_VLLM_DIR"
    version: Optional[str]      # vLLM's version, from its dist-info
    torch_pin: Optional[str]    # the torch version its wheel requires (==)

    def describe(self) -> str:
        v = f"vLLM {self.version}" if self.version else "vLLM (version unknown)"
        pin = f", built for torch {self.torch_pin}" if self.torch_pin else ""
        return f"{v} ({self.origin}: {self.root}{pin})"


@dataclass
class Library:
    """One production library: loaded (`api` set) or not (`reason` says why)."""

    name: str
    api: Any = None
    source: Optional[str] = None
    reason: Optional[str] = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.api is not None

    def require(self) -> "Library":
        """This library, loaded; PeerUnavailable with the reason if it is not."""
        if self.api is None:
            raise PeerUnavailable(f"{self.name}: {self.reason}")
        return self


def _metadata_fields(text: str) -> tuple[Optional[str], Optional[str]]:
    version = re.search(r"^Version:\s*(\S+)", text, re.M)
    pin = re.search(r"^Requires-Dist:\s*torch\s*==\s*([0-9][^\s;,]*)", text, re.M)
    return (version.group(1) if version else None), (pin.group(1) if pin else None)


def find_vllm() -> tuple[Optional[VllmFiles], Optional[str]]:
    """(files, None) where vLLM's libraries are, or (None, why not)."""
    named = os.environ.get(ENV_DIR)
    if named:
        root = Path(named).expanduser()
        if not root.is_dir():
            return None, f"{ENV_DIR}={named} is not a folder"
        meta = sorted(root.parent.glob("vllm-*.dist-info/METADATA")) + sorted(root.glob("METADATA"))
        version, pin = _metadata_fields(meta[0].read_text(errors="replace")) if meta else (None, None)
        return VllmFiles(root, f"${ENV_DIR}", version, pin), None
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError) as e:
        return None, f"vLLM cannot be located ({e})"
    if spec is None or not spec.submodule_search_locations:
        return None, "no vLLM install and " + f"{ENV_DIR} is not set"
    root = Path(list(spec.submodule_search_locations)[0])
    try:
        dist = importlib.metadata.distribution("vllm")
        version, pin = _metadata_fields(dist.read_text("METADATA") or "")
    except importlib.metadata.PackageNotFoundError:
        version, pin = None, None
    return VllmFiles(root, "installed vLLM", version, pin), None


def _torch_base() -> str:
    import torch

    return torch.__version__.split("+")[0]


def _abi_problem(files: VllmFiles, what: str) -> Optional[str]:
    """Why an unstable-ABI library of this vLLM must not be loaded into this torch (None: it may)."""
    if files.torch_pin and files.torch_pin != _torch_base():
        return (f"{what} of {files.describe()} uses torch's unstable C++ ABI and loads only into torch "
                f"{files.torch_pin}; this is torch {_torch_base()}")
    return None


def _load_so(path: Path) -> Optional[str]:
    """Loads a torch op library; None on success, else why not."""
    import torch

    if not path.is_file():
        return f"{path} not found"
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"could not load {path}: {first}"
    return None


def _standalone(module: str, needs: tuple[str, ...]) -> tuple[Any, Optional[str]]:
    """(module, None) if a standalone package `module` imports and has `needs`; (None, why) if it is
    there but unusable; (None, None) if it is not installed."""
    try:
        if importlib.util.find_spec(module) is None:
            return None, None
    except (ImportError, ValueError):
        return None, None
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - a broken install is a reason, not a crash
        return None, f"package {module} does not import ({type(e).__name__}: {e})"
    missing = [n for n in needs if not hasattr(mod, n)]
    if missing:
        return None, f"package {module} lacks {', '.join(missing)} (an interface dsa-bench was not written for)"
    return mod, None


def _version_of(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _from_vllm(name: str, relpath: str, namespace: str, ops: tuple[str, ...], unstable_abi: bool) -> Library:
    files, why = find_vllm()
    if files is None:
        return Library(name, reason=f"{why}; {VLLM_HINT}")
    if unstable_abi:
        problem = _abi_problem(files, relpath)
        if problem:
            return Library(name, reason=problem)
    problem = _load_so(files.root / relpath) or schemas.check_ops(namespace, ops)
    if problem:
        return Library(name, reason=problem)
    import torch

    return Library(name, api=getattr(torch.ops, namespace), source=f"{relpath} of {files.describe()}",
                   extra={"vllm_version": files.version})


@functools.cache
def flashmla() -> Library:
    """FlashMLA: sparse prefill (bf16 latents), dense decode (paged bf16 cache), sparse decode (FP8 cache)."""
    mod, why = _standalone("flash_mla", ("flash_mla_with_kvcache", "flash_mla_sparse_fwd", "get_mla_metadata"))
    if mod is not None:
        return Library("FlashMLA", api=mod, source=f"package flash_mla {_version_of('flash_mla') or ''}".strip(),
                       extra={"interface": "package"})
    lib = _from_vllm("FlashMLA", "_flashmla_C.abi3.so", "_flashmla_C",
                     ("sparse_prefill_fwd", "dense_decode_fwd", "sparse_decode_fwd"), unstable_abi=False)
    lib.extra["interface"] = "ops"
    if why and not lib.ok:
        lib.reason = f"{why}; {lib.reason}"
    return lib


@functools.cache
def vllm_ops() -> Library:
    """vLLM's DSA top-k kernels and its MLA cache writer (FP8 latent cache)."""
    lib = _from_vllm("vLLM DSA top-k", "_C_stable_libtorch.abi3.so", "_C",
                     ("top_k_per_row_prefill", "top_k_per_row_decode", "persistent_topk", "cooperative_topk"),
                     unstable_abi=False)
    if lib.ok:
        problem = schemas.check_ops("_C_cache_ops", ("concat_and_cache_mla",))
        if problem:
            return Library(lib.name, reason=problem)
        import torch

        lib.extra["cache_ops"] = torch.ops._C_cache_ops
    return lib


@functools.cache
def fa3() -> Library:
    """FlashAttention-3 forward (Hopper)."""
    mod, why = _standalone("flash_attn_interface", ("flash_attn_varlen_func",))
    if mod is not None:
        return Library("FlashAttention-3", api=mod, extra={"interface": "package"},
                       source=f"package flash_attn_interface {_version_of('flash_attn_3') or _version_of('flash-attn-3') or ''}".strip())
    lib = _from_vllm("FlashAttention-3", "vllm_flash_attn/_vllm_fa3_C.abi3.so", "_vllm_fa3_C", ("fwd",),
                     unstable_abi=True)
    lib.extra["interface"] = "ops"
    if why and not lib.ok:
        lib.reason = f"{why}; {lib.reason}"
    return lib


DEEP_GEMM_NEEDS = ("fp8_mqa_logits", "fp8_paged_mqa_logits", "get_paged_mqa_logits_metadata")


@functools.cache
def deep_gemm() -> Library:
    """DeepGEMM's FP8 MQA logits (the lightning indexer), prefill and paged decode forms. It compiles
    its kernels with nvcc at the first call: the cache goes to DG_JIT_CACHE_DIR (default here:
    ~/.cache/dsa-bench/deep_gemm)."""
    os.environ.setdefault("DG_JIT_CACHE_DIR", str(Path.home() / ".cache" / "dsa-bench" / "deep_gemm"))
    mod, why = _standalone("deep_gemm", DEEP_GEMM_NEEDS)
    if mod is not None:
        return Library("DeepGEMM", api=mod, source=f"package deep_gemm {getattr(mod, '__version__', '')}".strip())
    files, located = find_vllm()
    if files is None:
        return Library("DeepGEMM", reason="; ".join(x for x in (why, located, VLLM_HINT) if x))
    folder = files.root / "third_party" / "deep_gemm"
    if not (folder / "__init__.py").is_file():
        return Library("DeepGEMM", reason=f"{folder} not found in {files.describe()}")
    problem = _abi_problem(files, "third_party/deep_gemm")
    if problem:
        return Library("DeepGEMM", reason=problem)
    # vLLM's copy is importable as the top-level package `deep_gemm` from its parent folder
    # (importing it as vllm.third_party.deep_gemm would run vLLM's __init__).
    if "deep_gemm" not in sys.modules:
        sys.path.insert(0, str(folder.parent))
    mod, why = _standalone("deep_gemm", DEEP_GEMM_NEEDS)
    if mod is None:
        return Library("DeepGEMM", reason=why or f"deep_gemm not importable from {folder.parent}")
    return Library("DeepGEMM", api=mod, source=f"third_party/deep_gemm of {files.describe()}",
                   extra={"vllm_version": files.version})


LOADERS = {"flashmla": flashmla, "vllm_ops": vllm_ops, "fa3": fa3, "deep_gemm": deep_gemm}


def reset() -> None:
    """Forget what was loaded or refused (tests; a changed environment)."""
    for f in LOADERS.values():
        f.cache_clear()


def loaded() -> dict[str, dict]:
    """What this process has loaded or refused so far, for run.json: name -> {source, reason}."""
    out = {}
    for key, f in LOADERS.items():
        if f.cache_info().currsize:
            lib = f()
            out[key] = {"library": lib.name, "source": lib.source, "ok": lib.ok, "reason": lib.reason}
    return out


# --- where each library would come from, without loading anything (dsa-bench list / peers) ---------

_STANDALONE = {"flashmla": "flash_mla", "fa3": "flash_attn_interface", "deep_gemm": "deep_gemm", "vllm_ops": None}
_VLLM_PATH = {"flashmla": ("_flashmla_C.abi3.so", False), "vllm_ops": ("_C_stable_libtorch.abi3.so", False),
              "fa3": ("vllm_flash_attn/_vllm_fa3_C.abi3.so", True), "deep_gemm": ("third_party/deep_gemm", True)}
NAMES = {"flashmla": "FlashMLA", "vllm_ops": "vLLM DSA top-k", "fa3": "FlashAttention-3", "deep_gemm": "DeepGEMM"}


def locate(key: str) -> tuple[Optional[str], Optional[str]]:
    """(where library `key` would be loaded from, None) or (None, why it cannot be), found from
    package metadata and files alone: nothing is imported or loaded."""
    module = _STANDALONE[key]
    if module:
        try:
            if importlib.util.find_spec(module) is not None:
                return f"package {module}", None
        except (ImportError, ValueError):
            pass
    files, why = find_vllm()
    if files is None:
        return None, f"{why}; {VLLM_HINT}"
    rel, unstable = _VLLM_PATH[key]
    if not (files.root / rel).exists():
        return None, f"{rel} not found in {files.describe()}"
    if unstable:
        problem = _abi_problem(files, rel)
        if problem:
            return None, problem
    return f"{rel} of {files.describe()}", None
