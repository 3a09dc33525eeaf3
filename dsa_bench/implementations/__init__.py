"""Built-in implementations, one module per family: this repository's Triton kernels (`triton`), the
PyTorch references (`reference`), off-the-shelf dense baselines (`vendor`), and the production DSA
kernels DeepSeek-V3.2 is served with, timed as peers when installed (`production`).

Importing this package registers them all (the registry imports it on first use, never the reverse).
"""
from dsa_bench.implementations import triton, reference, vendor, production  # noqa: F401, I001 - registers, in this order
from dsa_bench.implementations.checks import SELECTION_TOL, check_selection, reference_rows

__all__ = ["SELECTION_TOL", "check_selection", "reference_rows"]
