"""Scaling fits: latency ~ a * context^p, by least squares in log-log, with the exponent's standard error.

Launch-overhead rule (stated in the report): a point is in the launch-overhead regime when its
latency is below 4x the smallest latency of its series. Reason: if latency = c + a*L^p with a fixed
overhead c, the smallest latency is at least c, so at every point at or above 4x that floor at most
a quarter of the time is overhead and the local log-log slope is at least 3/4 of p (and tends to p
quickly); points below it are dominated by the floor and would flatten the fitted exponent. If
fewer than 3 points survive the rule, the 3 largest contexts are used instead and the fit is
flagged; a series of only 2 contexts is fitted through both, flagged.

The standard error is the ordinary least-squares one, sqrt(RSS / (n - 2) / sum((x - mean x)^2)) in
log space; with exactly 2 points the exponent is exact for those points and its error is unknown.
"""
from __future__ import annotations

from dsa_bench.ops import STAGE_ORDER

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

OVERHEAD_FACTOR = 4.0
MIN_FIT_POINTS = 3
RULE = (f"points with latency < {OVERHEAD_FACTOR:g}x the series' smallest latency are treated as launch "
        f"overhead and left out (above it at most a quarter of the time can be fixed overhead); if fewer than "
        f"{MIN_FIT_POINTS} remain, the {MIN_FIT_POINTS} largest contexts are used and the fit is flagged; a series "
        f"of 2 contexts is fitted through both, without an uncertainty")


@dataclass
class PowerLawFit:
    exponent: float
    stderr: float  # NaN when undetermined (2 points)
    prefactor: float  # a in y = a * x^p
    n_used: int
    n_total: int
    x_min: float  # smallest context in the fit
    x_max: float
    flag: str = ""  # why the fit deserves less trust; "" when none
    x_used: tuple = ()  # the contexts that entered the fit

    def predict(self, x) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** self.exponent

    def label(self) -> str:
        err = "" if math.isnan(self.stderr) else f" ± {self.stderr:.2f}" if self.stderr >= 0.005 else " ± <0.01"
        return f"L^{self.exponent:.2f}{err}"


def overhead_mask(y: Sequence[float], factor: float = OVERHEAD_FACTOR) -> np.ndarray:
    """True for points past the launch-overhead regime (latency >= factor * smallest latency)."""
    y = np.asarray(y, dtype=float)
    return y >= factor * np.min(y)


def fit_power_law(x: Sequence[float], y: Sequence[float], *, exclude_overhead: bool = True) -> Optional[PowerLawFit]:
    """Fit y = a * x^p over the points past the overhead regime; None with fewer than 2 distinct x."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[good], y[good]
    order = np.argsort(x)
    x, y = x[order], y[order]
    n_total = len(x)
    if len(np.unique(x)) < 2:
        return None
    flag = ""
    if exclude_overhead and n_total > 2:
        keep = overhead_mask(y)
        if keep.sum() < MIN_FIT_POINTS or len(np.unique(x[keep])) < 2:
            keep = np.zeros(n_total, dtype=bool)
            keep[-MIN_FIT_POINTS:] = True
            flag = (f"fewer than {MIN_FIT_POINTS} points past the overhead regime: fitted the "
                    f"{MIN_FIT_POINTS} largest contexts (overhead may flatten the exponent)")
        x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return None
    lx, ly = np.log(x), np.log(y)
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    slope = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / sxx)
    icpt = float(ly.mean() - slope * lx.mean())
    n = len(x)
    if n > 2:
        rss = float(np.sum((ly - (icpt + slope * lx)) ** 2))
        stderr = math.sqrt(rss / (n - 2) / sxx)
    else:
        stderr = math.nan
        flag = flag or "2 contexts only: uncertainty unknown, overhead not excluded"
    return PowerLawFit(slope, stderr, math.exp(icpt), n, n_total, float(x.min()), float(x.max()), flag,
                       tuple(float(v) for v in x))


SERIES_KEYS = ["implementation", "stage", "phase", "batch", "topk"]


def fit_table(ok: pd.DataFrame) -> pd.DataFrame:
    """One fit per (implementation, stage, phase, batch, topk) series of ok rows with >= 2 contexts."""
    out = []
    empty = pd.DataFrame(columns=SERIES_KEYS + ["exponent", "stderr", "n_used", "n_total", "context_range", "flag",
                                                "fit"])
    if ok.empty:
        return empty
    for key, g in ok.groupby(SERIES_KEYS, dropna=False, sort=True):
        g = g.groupby("context", as_index=False)["latency_ms"].median()
        if g["context"].nunique() < 2:
            continue
        f = fit_power_law(g["context"].astype(float), g["latency_ms"])
        if f is None:
            continue
        out.append(dict(zip(SERIES_KEYS, key), exponent=f.exponent, stderr=f.stderr, n_used=f.n_used,
                        n_total=f.n_total, context_range=f"{int(f.x_min)}-{int(f.x_max)}", flag=f.flag, fit=f))
    if not out:
        return empty
    df = pd.DataFrame(out)
    order = STAGE_ORDER
    df["_o"] = df["stage"].map(order).fillna(9)
    return df.sort_values(["phase", "implementation", "batch", "topk", "_o"], na_position="first",
                          kind="stable").drop(columns="_o").reset_index(drop=True)
