"""Test plug-in: a dense and a DSA "implementation" whose latency is a known function of the context
(they sleep), so a crossover and its refinement can be checked against the truth on any CPU.

The curve depends on the batch, one shape per series of a run:
  B = 1: dense 2 ms (T / 6144)^2, DSA 2 ms (T / 6144)^0.5: one crossing, at T = 6144 exactly
  B = 2: DSA twice dense everywhere: never crosses
  B = 3: DSA wins below ~1.5K, loses, and wins again from T = 6144 on: crosses twice
"""
from __future__ import annotations

import time

import torch

from dsa_bench.registry import Implementation, Prepared, register

CROSSOVER = 6144.0
BASE_MS = 2.0


def dense_ms(T: int, B: int) -> float:
    return BASE_MS * (T / CROSSOVER) ** 2


def dsa_ms(T: int, B: int) -> float:
    if B == 2:
        return 2 * dense_ms(T, B)
    if B == 3 and T <= 1536:
        return 0.5 * dense_ms(T, B)
    return BASE_MS * (T / CROSSOVER) ** 0.5


def _sleeper(ms: float) -> Prepared:
    out = torch.zeros(1)

    def run():
        time.sleep(ms / 1e3)
        return out

    return Prepared(run=run)


register(Implementation(
    name="fake-dense", family="dense", backend="plugin", phases=frozenset({"decode", "prefill"}),
    prepare=lambda w: _sleeper(dense_ms(w.T, w.B)), baseline=True,
    description="test plug-in: dense latency 2 ms (T / 6144)^2 (tests/plugins/known_curves.py)"))
register(Implementation(
    name="fake-dsa", family="dsa", backend="plugin", phases=frozenset({"decode", "prefill"}),
    prepare=lambda w: _sleeper(dsa_ms(w.T, w.B)),
    description="test plug-in: DSA latency 2 ms (T / 6144)^0.5 (tests/plugins/known_curves.py)"))
