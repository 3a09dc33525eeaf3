"""The crossover rule, once: from which x on DSA's curve stays at or below dense's.

Used for measured latencies against context (report/crossover.py, the headline's bootstrap) and for
the cost model's USD-per-million-token curves against position (costmodel/model.py, the plots).

Rule: r(x) is DSA's excess over dense at each sampled x (scale "log": log(DSA / dense), for latencies
measured at a few contexts a factor apart, interpolated in log x; scale "linear": DSA - dense, for
curves sampled densely from position 0, interpolated in x). DSA wins where r <= 0. The crossover is
the x after which DSA keeps winning: between the last x_j with r_j > 0 and the next sample, the zero
of the straight line through (x_j, r_j) and (x_j+1, r_j+1). If DSA wins at every sample the answer
is "always" (at or below the first x); if it loses at the last sample, "never" (within the range):
nothing is extrapolated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Crossing:
    x: Optional[float]  # the crossover; None unless status == "crosses"
    status: str  # "crosses", "always", "never", "insufficient"
    bracket: Optional[tuple[float, float]] = None  # the samples it lies between
    crossings: int = 0  # sign changes of r along x (more than 1: the curves cross several times)
    first: float = math.nan  # smallest and largest x with data
    last: float = math.nan
    wins: tuple[float, ...] = ()  # the sampled x where DSA is at or below dense

    @property
    def bracket_ratio(self) -> float:
        """How far apart the bracketing samples are (hi / lo; inf without a bracket or from 0): the
        resolution of the crossover, whatever the interpolation says."""
        if self.bracket is None or self.bracket[0] <= 0:
            return math.inf
        return self.bracket[1] / self.bracket[0]


def crossing(x: Sequence[float], dense: Sequence[float], dsa: Sequence[float],
             scale: Literal["log", "linear"] = "log") -> Crossing:
    """The crossover of two curves sampled at the same x (NaNs and, on the log scale, non-positive
    values are dropped; x is sorted)."""
    xs = np.asarray(x, dtype=float)
    d = np.asarray(dense, dtype=float)
    s = np.asarray(dsa, dtype=float)
    good = np.isfinite(xs) & np.isfinite(d) & np.isfinite(s)
    if scale == "log":
        good &= (xs > 0) & (d > 0) & (s > 0)
    xs, d, s = xs[good], d[good], s[good]
    if len(xs) == 0:
        return Crossing(None, "insufficient")
    order = np.argsort(xs, kind="stable")
    xs, d, s = xs[order], d[order], s[order]
    r = np.log(s / d) if scale == "log" else s - d
    lose = r > 0
    info = dict(crossings=int(np.sum(lose[1:] != lose[:-1])), first=float(xs[0]), last=float(xs[-1]),
                wins=tuple(float(v) for v in xs[~lose]))
    if not lose.any():
        return Crossing(None, "always", **info)
    if lose[-1]:
        return Crossing(None, "never", **info)
    j = int(np.nonzero(lose)[0][-1])
    t = r[j] / (r[j] - r[j + 1])
    if scale == "log":
        at = math.exp(math.log(xs[j]) + t * (math.log(xs[j + 1]) - math.log(xs[j])))
    else:
        at = float(xs[j] + t * (xs[j + 1] - xs[j]))
    return Crossing(at, "crosses", (float(xs[j]), float(xs[j + 1])), **info)


def fmt_context(x: float) -> str:
    """A context in tokens to 3 significant digits, K = 1024 (47497 -> '46.4K', 686 -> '686'): an
    interpolated crossover is not known to five digits."""
    if x >= 1024:
        return f"{float(f'{x / 1024:.3g}'):g}K"
    return f"{float(f'{x:.3g}'):g}"


def fmt_bracket(bracket: tuple[float, float]) -> str:
    """'between 16K and 64K': where a crossover is known to lie."""
    return f"between {fmt_context(bracket[0])} and {fmt_context(bracket[1])}"


def crossing_position(x: Sequence[float], dense: Sequence[float], dsa: Sequence[float]) -> Optional[float]:
    """The cost curves' form of the rule (linear scale): the crossover position, 0.0 when DSA is at or
    below dense everywhere, None when it is above at the last position."""
    c = crossing(x, dense, dsa, scale="linear")
    return {"crosses": c.x, "always": 0.0}.get(c.status)


def curve_crossing_text(c: Crossing, held_below: Optional[float] = None) -> str:
    """A cost-curve crossover (linear scale) with its resolution: the sampled positions it lies between
    and, for curves priced from measured timings, whether it falls below the first timed context,
    where the measured ratios are held at their first value (the position there is the roofline's
    shape, not a measurement)."""
    held = ""
    if held_below:
        held = f"; the measured curves are held below their first timed context {fmt_context(held_below)}"
    if c.status == "always":
        return "DSA cheaper at every position" + (f" ({held[2:]})" if held else "")
    if c.status != "crosses":
        return "DSA not cheaper at any position shown" if c.status == "never" else "no curves to compare"
    a, b = c.bracket
    text = f"DSA cheaper from ≈ {fmt_context(c.x)} tokens (between positions {fmt_context(a)} and {fmt_context(b)}, "
    text += f"sampled every {b - a:g} tokens{held}"
    if held_below and c.x < held_below:
        text += ": this crossover is not measured"
    return text + ")"
