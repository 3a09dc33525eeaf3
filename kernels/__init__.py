"""Triton implementations of dense MLA and DeepSeek Sparse Attention (DSA).

Every public function here has a plain PyTorch twin with the same signature in `kernels.reference`;
tests compare the two. Shapes: B batch, S query tokens, T context tokens, H heads. Query i sits at
absolute position q_start + i (default T - S) and sees tokens s <= q_start + i.

The Triton modules are imported on first use of a name below, so that the torch-only parts of the
package (`kernels.reference`, `kernels.dsa`, `kernels.topk_torch`, the argument checks) never import
Triton. As before, `kernels.<name>` is always the function, also where a submodule has the same name
(`kernels.dense_mha`, ...; `import kernels.dense_mha as m` binds the function too): reach such a module's
contents with `from kernels.dense_mha import CONFIG`, or the module with importlib.import_module.
"""
from __future__ import annotations

import importlib
import sys
import types

# public name -> module defining it
_LAZY = {
    "lightning_indexer": "kernels.indexer",
    "topk_indices": "kernels.topk",
    "sparse_mla": "kernels.sparse_mla",
    "dense_mla": "kernels.dense_mla",
    "dense_mha": "kernels.dense_mha",
    "masked_mha": "kernels.masked_mha",
}

__all__ = [
    "lightning_indexer",
    "topk_indices",
    "sparse_mla",
    "dense_mla",
    "dense_mha",
    "masked_mha",
    "dsa_attention",
]


def _load(name: str):
    if name == "dsa_attention":
        from kernels.dsa import make_dsa_attention

        return make_dsa_attention(_resolve("lightning_indexer"), _resolve("topk_indices"), _resolve("sparse_mla"))
    return getattr(importlib.import_module(_LAZY[name]), name)


def _resolve(name: str):
    value = vars(_package).get(name)
    if value is None or isinstance(value, types.ModuleType):
        value = _load(name)
        vars(_package)[name] = value  # straight into the namespace: bypasses _Package.__setattr__
    return value


class _Package(types.ModuleType):
    """The package module: public names resolve lazily and stay the functions.

    Importing a submodule makes the import system set it as an attribute of the package; for a
    submodule named like its function (kernels/dense_mha.py defines dense_mha) that would shadow the
    function, so such assignments are dropped (the submodule stays in sys.modules)."""

    def __getattr__(self, name: str):
        if name in _LAZY or name == "dsa_attention":
            return _resolve(name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(__all__))


_package = sys.modules[__name__]
_package.__class__ = _Package
