"""The crossover context: from which context on DSA's whole call is faster than the best dense baseline.

Method: at each measured context L of one (DSA implementation, phase, batch, topk) series, take
r(L) = log(DSA median / best dense baseline median at the same phase and batch). DSA wins where
r <= 0. The crossover is the context after which DSA stays faster: between the last context where
r > 0 and the next one, r is interpolated linearly in log(L) (both latency curves are treated as
straight lines in log-log between neighbouring contexts) and the zero is solved for:

    log L* = log L_j + r_j / (r_j - r_{j+1}) * (log L_{j+1} - log L_j)

The interpolation is a guess between two measurements; what the data establish is the bracket, the
two measured contexts the crossover lies between. Every statement gives both: "between 16K and 64K
(log-log interpolation: ~25.8K)". `dsa-bench run --refine-crossover` narrows the bracket by
measuring more contexts inside it (dsa_bench/refine.py).

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

from dsa_bench.crossover import crossing, crossing_position, fmt_bracket, fmt_context
from dsa_bench.report.load import best_dense, main_implementations, topk_label


@dataclass
class Crossover:
    context: Optional[float]  # None when DSA does not cross within the measured range
    status: str  # "crosses", "always_faster", "never_faster", "insufficient"
    message: str
    bracket: Optional[tuple[int, int]] = None  # measured contexts the crossover lies between
    crossings: int = 0  # sign changes of DSA - dense along the contexts (more than 1: crosses several times)


def find_crossover(contexts: Sequence[float], dsa_ms: Sequence[float], dense_ms: Sequence[float]) -> Crossover:
    """The crossover of measured latencies (dsa_bench.crossover's rule on the log scale), with a message."""
    c = crossing(contexts, dense_ms, dsa_ms, scale="log")
    if c.status == "insufficient":
        return Crossover(None, "insufficient", "no context where both DSA and a dense baseline were measured")
    lo, hi = fmt_context(c.first), fmt_context(c.last)
    if c.status == "always":
        return Crossover(None, "always_faster",
                         f"DSA is faster at every measured context ({lo}-{hi}): the crossover is below {lo}")
    if c.status == "never":
        extra = f" (it is faster at {', '.join(fmt_context(w) for w in c.wins)} only)" if c.wins else ""
        return Crossover(None, "never_faster",
                         f"DSA is not faster than dense at the largest measured context {hi}{extra}: "
                         f"no crossover within {lo}-{hi}")
    a, b = (int(v) for v in c.bracket)
    msg = f"DSA is faster from a context {fmt_bracket((a, b))} (log-log interpolation: ~{fmt_context(c.x)})"
    return Crossover(c.x, "crosses", msg + several_crossings(c.crossings), (a, b), c.crossings)


def several_crossings(n: int) -> str:
    """What a message adds when the curves cross more than once (empty otherwise)."""
    if n <= 1:
        return ""
    return f"; the curves cross {n} times, this is the last crossing, after which DSA stays faster"


METHOD = (
    "At each measured context L of a (DSA implementation, phase, batch, top-k) series, r(L) = log(DSA median / "
    "best dense baseline median at the same phase and batch); DSA wins where r <= 0. The crossover is the "
    "context after which DSA stays faster: between the last context L_j where r > 0 and the next one, r is "
    "interpolated linearly in log L (both curves straight in log-log between neighbouring contexts) and "
    "solved for zero: log L* = log L_j + r_j / (r_j - r_j+1) * (log L_j+1 - log L_j). That value is a guess "
    "between two measurements: the crossover is stated as the bracket L_j-L_j+1 it is known to lie in, with the "
    "interpolation beside it (`dsa-bench run --refine-crossover` measures more contexts inside the bracket until "
    "it is narrow; refinement points are marked in results.csv). If DSA is already faster at the smallest "
    "context, or still slower at the largest, no crossover is reported and the result says so."
)

COLUMNS = ["dsa_impl", "dense_impls", "phase", "batch", "topk", "crossover_context", "status", "message",
           "bracket", "bracket_low", "bracket_high", "crossings", "refinement_points"]


@dataclass
class Series:
    """One (DSA implementation, phase, batch, topk) against the best dense baseline at each context."""

    dsa_impl: str
    phase: str
    batch: int
    topk: object  # the k (None / NA for a DSA implementation without one)
    points: pd.DataFrame  # DSA rows merged with best_dense: context, latency_ms, dense_ms, dense_impl
    crossover: Crossover

    def dense_at(self, context: int) -> str:
        """The dense baseline that was fastest at a measured context."""
        return str(self.points.loc[self.points["context"] == context, "dense_impl"].iloc[0])


def crossover_series(ok_total: pd.DataFrame) -> list[Series]:
    """Every series of successful whole-call rows with its crossover (the table, the plots' legends and
    the refinement all start here)."""
    best = best_dense(ok_total)
    out: list[Series] = []
    if best.empty:
        return out
    for impl in main_implementations(ok_total, "dsa"):
        s = ok_total[ok_total["implementation"] == impl]
        for (phase, batch, topk), g in s.groupby(["phase", "batch", "topk"], sort=True):
            m = g.merge(best, on=["phase", "batch", "context"]).sort_values("context")
            c = find_crossover(m["context"].astype(float), m["latency_ms"], m["dense_ms"])
            out.append(Series(impl, str(phase), int(batch), topk, m, c))
    return out


def refinement_points(points: pd.DataFrame) -> int:
    """Contexts of a series added by `--refine-crossover` (the `refinement` column is set on them)."""
    if "refinement" not in points:
        return 0
    marked = points["refinement"].astype(str).str.strip().isin(("", "nan", "<NA>", "None"))
    return int(points.loc[~marked, "context"].nunique())


def short_text(c: Crossover) -> str:
    """A crossover in a few words, for side-by-side tables (compare): its bracket first."""
    if c.status == "crosses":
        return f"{fmt_bracket(c.bracket)} (~{fmt_context(c.context)})" + (
            f", crosses {c.crossings} times" if c.crossings > 1 else "")
    return {"always_faster": "faster at every measured context", "never_faster": "not faster at the largest context",
            "insufficient": "-"}.get(c.status, c.status)


def crossover_table(ok_total: pd.DataFrame) -> pd.DataFrame:
    """One crossover per (DSA implementation, phase, batch, topk), against the best dense baseline."""
    rows = []
    for sr in crossover_series(ok_total):
        c, m = sr.crossover, sr.points
        rows.append(dict(dsa_impl=sr.dsa_impl, dense_impls=", ".join(sorted(set(m["dense_impl"]))) or "-",
                         phase=sr.phase, batch=sr.batch, topk=topk_label(sr.topk),
                         crossover_context=c.context if c.context is not None else math.nan,
                         status=c.status, message=c.message,
                         bracket=f"{c.bracket[0]}-{c.bracket[1]}" if c.bracket else "",
                         bracket_low=c.bracket[0] if c.bracket else math.nan,
                         bracket_high=c.bracket[1] if c.bracket else math.nan,
                         crossings=c.crossings, refinement_points=refinement_points(m)))
    return pd.DataFrame(rows, columns=COLUMNS)


def curve_crossing(x: Sequence[float], dense: Sequence[float], dsa: Sequence[float]) -> Optional[float]:
    """Where a DSA cost curve falls to and stays at or below a dense one (dsa_bench.crossover's rule on
    the linear scale, as the cost model uses it): 0.0 when DSA is never above dense, None when it is
    above at the end. The report's plots call this, so they and the cost model cannot disagree."""
    return crossing_position(x, dense, dsa)
