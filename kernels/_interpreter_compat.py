"""Make Triton 3.6's CPU interpreter work with NumPy >= 2.4 (only applied under TRITON_INTERPRET=1).

The interpreter holds kernel scalars as 1-element arrays and converts them with int(array), which
NumPy 2.4 rejects for non-0-d arrays, so any `for i in range(runtime_bound)` loop in a kernel fails
with "only 0-dimensional arrays can be converted to Python scalars". We wrap the interpreter's tensor
patching to convert through .reshape(-1)[0] instead. Idempotent; a no-op when not interpreting.
"""
from __future__ import annotations

from kernels._common import INTERPRET


def apply() -> None:
    if not INTERPRET:
        return
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "_dsa_index_fix", False):
        return

    def _scalar_index(self):
        return int(self.handle.data.reshape(-1)[0])

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", _scalar_index)

    patched._dsa_index_fix = True
    interpreter._patch_lang_tensor = patched


apply()
