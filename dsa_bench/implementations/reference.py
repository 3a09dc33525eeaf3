"""The PyTorch references as implementations: the correctness oracles (fp32 arithmetic, chunked), slow."""
from __future__ import annotations

from dsa_bench.implementations._stages import BOTH
from dsa_bench.implementations.triton import dense_prepare, dsa_prepare
from dsa_bench.registry import Implementation, register

register(Implementation(
    "dense-torch", "dense", "torch", BOTH, dense_prepare("torch"),
    "PyTorch reference of dense MLA (fp32 arithmetic, chunked); the correctness oracle, slow",
    is_reference=True,
))
register(Implementation(
    "dsa-torch", "dsa", "torch", BOTH, dsa_prepare("torch"),
    "PyTorch reference of DSA (fp32 arithmetic, chunked); the correctness oracle, slow",
    is_reference=True,
))
