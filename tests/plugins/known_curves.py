"""Test plug-in: a dense and a DSA "implementation" whose latency is a known function of the context,
so a crossover and its refinement can be checked against the truth on any CPU.

A call advances a virtual clock by its latency instead of sleeping (a shared, loaded CPU oversleeps
by more than the curves differ near their crossing); tests point the timer at it with
`virtual_timer(monkeypatch)`, so every sample is exactly the curve's value.

The curve depends on the batch, one shape per series of a run:
  B = 1: dense 2 ms (T / 6144)^2, DSA 2 ms (T / 6144)^0.5: one crossing, at T = 6144 exactly
  B = 2: DSA twice dense everywhere: never crosses
  B = 3: DSA wins below ~1.5K, loses, and wins again from T = 6144 on: crosses twice
"""
from __future__ import annotations

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


class VirtualClock:
    """Seconds that pass only when a fake implementation runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


CLOCK = VirtualClock()


def virtual_timer(monkeypatch) -> None:
    """Make dsa_bench's CPU timer read the virtual clock (its perf_counter, nothing else)."""
    import dsa_bench.timing

    monkeypatch.setattr(dsa_bench.timing, "time", CLOCK)


def _sleeper(ms: float) -> Prepared:
    out = torch.zeros(1)

    def run():
        CLOCK.now += ms / 1e3
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
