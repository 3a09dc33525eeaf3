"""Adaptive crossover refinement (`dsa-bench run S.yaml --refine-crossover [TOL]`).

A sweep measures contexts a factor apart, so a crossover is only known to lie between two of them
(report/crossover.py states that bracket). After the sweep, for every (DSA implementation, phase,
batch, k) whose curves cross, this measures that DSA implementation and the dense baseline(s) that
were fastest at the bracket's ends, and nothing else, at the bracket's geometric midpoint; the
crossover is recomputed from all rows with the report's rule and the step repeats until the bracket
is within `tolerance` (hi / lo - 1 <= tolerance) or the series has used `max_points` new contexts.

- New points are ordinary rows of the same run directory, marked with the round that added them in
  the `refinement` column: resume, the lock and the reports need nothing new. A resumed run redoes
  only what is missing (the next round is planned from the rows on disk).
- Contexts stay inside a bracket whose two ends both implementations measured successfully: within
  the scenario's limits, and needing no more memory than the upper end, which fit. A new context is
  rounded to a multiple of a power of two near 1/64 of the lower end (16K: 256 tokens), so kernels see
  block-aligned lengths; a bracket that cannot be split any further stops there.
- A point that fails (oom, error) is not retried: its series stops with the bracket it had.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from dsa_bench.crossover import fmt_bracket
from dsa_bench.ops import Point
from dsa_bench.report.crossover import Series, crossover_series
from dsa_bench.report.load import load_run, topk_label
from dsa_bench.store import RunStore, row_key


def next_context(lo: int, hi: int) -> Optional[int]:
    """The geometric midpoint of a bracket, rounded to a block multiple; None when no whole context
    lies strictly inside it."""
    mid = math.sqrt(lo * hi)
    granule = 2 ** int(math.floor(math.log2(max(lo / 64, 1))))
    for step in (granule, 1):
        t = int(round(mid / step)) * step
        if lo < t < hi:
            return t
    return None


def within(bracket: tuple[int, int], tolerance: float) -> bool:
    return bracket[1] / bracket[0] - 1 <= tolerance + 1e-12


@dataclass
class SeriesState:
    """Where one series' refinement stands (for the run's notes)."""

    label: str
    bracket: Optional[tuple[int, int]]
    points: int  # refinement contexts measured so far
    state: str  # "converged", "budget", "unsplittable", "failed", "refining", "not filtered in"

    def text(self, tolerance: float) -> str:
        where = fmt_bracket(self.bracket) if self.bracket else "no bracket"
        why = {"converged": f"within {tolerance:.0%}", "budget": "point budget spent",
               "unsplittable": "no context left inside it", "failed": "a refinement point failed",
               "refining": "not finished", "not filtered in": "outside --filter"}[self.state]
        return f"{self.label}: crossover {where} after {self.points} refinement point(s) ({why})"


class Refinement:
    """Plans the rounds of one run directory (see the module docstring)."""

    def __init__(self, run_dir: Path, implementations: list[str], tolerance: float, max_points: int,
                 keep: Optional[Callable[[Point], bool]] = None):
        self.run_dir = Path(run_dir)
        self.implementations = set(implementations)
        self.tolerance = tolerance
        self.max_points = max_points
        self.keep = keep

    def plan(self) -> tuple[list, list[SeriesState]]:
        """The next round's tasks (empty: nothing left to do) and each crossing series' state."""
        from dsa_bench.registry import REGISTRY
        from dsa_bench.runner import Task

        run = load_run(self.run_dir)
        rows = run.results
        attempted = {row_key(r) for r in RunStore(self.run_dir).rows()}  # any status: a failure is not retried
        marked = pd.to_numeric(rows["refinement"], errors="coerce")
        round_no = int(marked.max()) + 1 if marked.notna().any() else 1
        tasks, states, planned = [], [], set()
        for sr in crossover_series(run.ok("total")):
            if sr.crossover.status != "crosses" or sr.dsa_impl not in self.implementations:
                continue
            state, new = self._next(sr, rows, marked, attempted)
            states.append(state)
            for name, point in new:
                key = (name, point.key())
                if key not in planned:
                    planned.add(key)
                    tasks.append(Task(REGISTRY[name], point, refinement=round_no))
        return tasks, states

    def _next(self, sr: Series, rows: pd.DataFrame, marked: pd.Series, attempted: set):
        lo, hi = sr.crossover.bracket
        k = None if pd.isna(sr.topk) else int(sr.topk)
        label = (f"{sr.dsa_impl} vs {sr.dense_at(lo)}{'/' + sr.dense_at(hi) if sr.dense_at(hi) != sr.dense_at(lo) else ''}"
                 f", {sr.phase} B={sr.batch} k={topk_label(sr.topk)}")
        same_k = rows["topk"].eq(k).fillna(False) if k is not None else rows["topk"].isna()
        mine = rows[(rows["implementation"] == sr.dsa_impl) & (rows["phase"] == sr.phase)
                    & (rows["batch"] == sr.batch) & same_k & marked.notna()]
        used = int(mine["context"].nunique())

        def state(s: str) -> SeriesState:
            return SeriesState(label, (lo, hi), used, s)

        if within((lo, hi), self.tolerance):
            return state("converged"), []
        if used >= self.max_points:
            return state("budget"), []
        t = next_context(lo, hi)
        if t is None:
            return state("unsplittable"), []
        dsa = Point(phase=sr.phase, batch=sr.batch, context=t, topk=k)
        if self.keep is not None and not self.keep(dsa):
            return state("not filtered in"), []
        dense = Point(phase=sr.phase, batch=sr.batch, context=t, topk=None)
        wanted = [(sr.dsa_impl, dsa)] + [(d, dense) for d in dict.fromkeys((sr.dense_at(lo), sr.dense_at(hi)))
                                         if d in self.implementations]
        new = [(n, p) for n, p in wanted
               if row_key({"implementation": n, "phase": p.phase, "batch": p.batch, "context": p.context,
                           "topk": p.topk}) not in attempted]
        if not new:  # measured at the midpoint already and still bracketed around it: a point failed
            return state("failed"), []
        return state("refining"), new


def refine_crossovers(run_dir: Path, implementations: list[str], tolerance: float, max_points: int,
                      measure: Callable[[list], None], keep: Optional[Callable[[Point], bool]] = None) -> list[str]:
    """Run refinement rounds until no series needs another point; `measure(tasks)` measures one round
    and appends its rows to the run directory. Returns one line per crossing series."""
    r = Refinement(run_dir, implementations, tolerance, max_points, keep)
    for _ in range(max_points + 1):  # each round adds at most one context per series
        tasks, states = r.plan()
        if not tasks:
            break
        measure(tasks)
    else:
        _, states = r.plan()
    return [s.text(tolerance) for s in states]


__all__ = ["Refinement", "SeriesState", "next_context", "refine_crossovers", "within"]
