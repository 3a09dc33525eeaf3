"""The crossover context: from which context on DSA's whole call is faster than the best dense baseline.

Method: at each measured context L of one (DSA implementation, phase, batch, topk) series, take
r(L) = log(DSA median / best dense baseline median at the same phase and batch). DSA wins where
r <= 0. The crossover is the context after which DSA stays faster: between the last context where
r > 0 and the next one, r is interpolated linearly in log(L) (both latency curves are treated as
straight lines in log-log between neighbouring contexts) and the zero is solved for:

    log L* = log L_j + r_j / (r_j - r_{j+1}) * (log L_{j+1} - log L_j)

When DSA is already faster at the smallest context, or still slower at the largest, there is no
crossover within the measured range and the result says so plainly instead of extrapolating.
The rule itself is dsa_bench/crossover.py (shared with the cost model's curves); this module adds
the messages and the per-series table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import pandas as pd

from dsa_bench.crossover import crossing, crossing_position, fmt_context
from dsa_bench.report.load import best_dense, main_implementations, topk_label


@dataclass
class Crossover:
    context: Optional[float]  # None when DSA does not cross within the measured range
    status: str  # "crosses", "always_faster", "never_faster", "insufficient"
    message: str
    bracket: Optional[tuple[int, int]] = None  # measured contexts the crossover lies between


def find_crossover(contexts: Sequence[float], dsa_ms: Sequence[float], dense_ms: Sequence[float]) -> Crossover:
    """The crossover of measured latencies (dsa_bench.crossover's rule on the log scale), with a message."""
    c = crossing(contexts, dense_ms, dsa_ms, scale="log")
    if c.status == "insufficient":
        return Crossover(None, "insufficient", "no context where both DSA and a dense baseline were measured")
    lo, hi = int(c.first), int(c.last)
    if c.status == "always":
        return Crossover(None, "always_faster",
                         f"DSA is faster at every measured context ({lo}-{hi}): the crossover is below {lo}")
    if c.status == "never":
        extra = f" (it is faster at {', '.join(str(int(w)) for w in c.wins)} only)" if c.wins else ""
        return Crossover(None, "never_faster",
                         f"DSA is not faster than dense at the largest measured context {hi}{extra}: "
                         f"no crossover within {lo}-{hi}")
    a, b = (int(v) for v in c.bracket)
    msg = f"DSA is faster from context ≈ {fmt_context(c.x)} on (interpolated between {a} and {b})"
    if c.crossings > 1:
        msg += f"; the curves cross {c.crossings} times, this is the last crossing, after which DSA stays faster"
    return Crossover(c.x, "crosses", msg, (a, b))


METHOD = (
    "At each measured context L of a (DSA implementation, phase, batch, top-k) series, r(L) = log(DSA median / "
    "best dense baseline median at the same phase and batch); DSA wins where r <= 0. The crossover is the "
    "context after which DSA stays faster: between the last context L_j where r > 0 and the next one, r is "
    "interpolated linearly in log L (both curves straight in log-log between neighbouring contexts) and "
    "solved for zero: log L* = log L_j + r_j / (r_j - r_j+1) * (log L_j+1 - log L_j). If DSA is already faster "
    "at the smallest context, or still slower at the largest, no crossover is reported and the result says so."
)

COLUMNS = ["dsa_impl", "dense_impls", "phase", "batch", "topk", "crossover_context", "status", "message",
           "bracket"]


def crossover_table(ok_total: pd.DataFrame) -> pd.DataFrame:
    """One crossover per (DSA implementation, phase, batch, topk), against the best dense baseline."""
    best = best_dense(ok_total)
    rows = []
    if best.empty:
        return pd.DataFrame(columns=COLUMNS)
    for impl in main_implementations(ok_total, "dsa"):
        s = ok_total[ok_total["implementation"] == impl]
        for (phase, batch, topk), g in s.groupby(["phase", "batch", "topk"], sort=True):
            m = g.merge(best, on=["phase", "batch", "context"])
            c = find_crossover(m["context"].astype(float), m["latency_ms"], m["dense_ms"])
            rows.append(dict(dsa_impl=impl, dense_impls=", ".join(sorted(set(m["dense_impl"]))) or "-",
                             phase=phase, batch=int(batch), topk=topk_label(topk),
                             crossover_context=c.context if c.context is not None else math.nan,
                             status=c.status, message=c.message,
                             bracket=f"{c.bracket[0]}-{c.bracket[1]}" if c.bracket else ""))
    return pd.DataFrame(rows, columns=COLUMNS)


def curve_crossing(x: Sequence[float], dense: Sequence[float], dsa: Sequence[float]) -> Optional[float]:
    """Where a DSA cost curve falls to and stays at or below a dense one (dsa_bench.crossover's rule on
    the linear scale, as the cost model uses it): 0.0 when DSA is never above dense, None when it is
    above at the end. The report's plots call this, so they and the cost model cannot disagree."""
    return crossing_position(x, dense, dsa)
