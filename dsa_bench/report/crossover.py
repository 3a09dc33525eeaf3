"""The crossover context: from which context on DSA's whole call is faster than the best dense baseline.

Method: at each measured context L of one (DSA implementation, phase, batch, topk) series, take
r(L) = log(DSA median / best dense baseline median at the same phase and batch). DSA wins where
r < 0. The crossover is the context after which DSA stays faster: between the last context where
r >= 0 and the next one, r is interpolated linearly in log(L) (both latency curves are treated as
straight lines in log-log between neighbouring contexts) and the zero is solved for:

    log L* = log L_j + r_j / (r_j - r_{j+1}) * (log L_{j+1} - log L_j)

When DSA is already faster at the smallest context, or still slower at the largest, there is no
crossover within the measured range and the result says so plainly instead of extrapolating.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from dsa_bench.report.load import best_dense, main_implementations, topk_label


@dataclass
class Crossover:
    context: Optional[float]  # None when DSA does not cross within the measured range
    status: str  # "crosses", "always_faster", "never_faster", "insufficient"
    message: str
    bracket: Optional[tuple[int, int]] = None  # measured contexts the crossover lies between


def find_crossover(contexts: Sequence[float], dsa_ms: Sequence[float], dense_ms: Sequence[float]) -> Crossover:
    L = np.asarray(contexts, dtype=float)
    a = np.asarray(dsa_ms, dtype=float)
    d = np.asarray(dense_ms, dtype=float)
    good = np.isfinite(L) & np.isfinite(a) & np.isfinite(d) & (L > 0) & (a > 0) & (d > 0)
    L, a, d = L[good], a[good], d[good]
    order = np.argsort(L)
    L, a, d = L[order], a[order], d[order]
    if len(L) == 0:
        return Crossover(None, "insufficient", "no context where both DSA and a dense baseline were measured")
    r = np.log(a / d)
    lo, hi = int(L[0]), int(L[-1])
    if np.all(r < 0):
        return Crossover(None, "always_faster",
                         f"DSA is faster at every measured context ({lo}-{hi}): the crossover is below {lo}")
    if r[-1] >= 0:
        extra = ""
        if np.any(r < 0):
            wins = ", ".join(str(int(x)) for x in L[r < 0])
            extra = f" (it is faster at {wins} only)"
        return Crossover(None, "never_faster",
                         f"DSA is not faster than dense at the largest measured context {hi}{extra}: "
                         f"no crossover within {lo}-{hi}")
    j = int(np.nonzero(r >= 0)[0][-1])  # last context where dense is at least as fast
    lx0, lx1 = math.log(L[j]), math.log(L[j + 1])
    t = r[j] / (r[j] - r[j + 1])
    ctx = math.exp(lx0 + t * (lx1 - lx0))
    sign_changes = int(np.sum(np.diff(np.sign(np.where(r >= 0, 1, -1))) != 0))
    msg = f"DSA is faster from context ≈ {ctx:,.0f} on (interpolated between {int(L[j])} and {int(L[j + 1])})"
    if sign_changes > 1:
        msg += f"; the curves cross {sign_changes} times, this is the last crossing, after which DSA stays faster"
    return Crossover(ctx, "crosses", msg, (int(L[j]), int(L[j + 1])))


METHOD = (
    "At each measured context L of a (DSA implementation, phase, batch, top-k) series, r(L) = log(DSA median / "
    "best dense baseline median at the same phase and batch); DSA wins where r < 0. The crossover is the "
    "context after which DSA stays faster: between the last context L_j where r >= 0 and the next one, r is "
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
    """Where a DSA curve falls to a dense one, for two curves sampled at the same x (e.g. the cost per
    million tokens at each token position): the cost model's rule, `costmodel.model.crossing_position`,
    linear between points. 0.0 when DSA is never above dense; None when it never gets to or below it.

    The one crossing rule for curves: the report's plots call this, not a copy of the rule, so the
    report and the cost model cannot disagree. (Measured latency series use find_crossover above.)
    """
    from dsa_bench.costmodel.model import crossing_position  # lazy: the report loads without the cost model

    xs = np.asarray(x, dtype=float)
    d = np.asarray(dense, dtype=float)
    s = np.asarray(dsa, dtype=float)
    good = np.isfinite(xs) & np.isfinite(d) & np.isfinite(s)
    xs, d, s = xs[good], d[good], s[good]
    if len(xs) == 0:
        return None
    order = np.argsort(xs, kind="stable")
    return crossing_position(xs[order], d[order], s[order])
