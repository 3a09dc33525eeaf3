"""The full-model cost curves of a run (cost_curves.csv, written by the cost model) as data: cleaned
frame, phases, where DSA becomes cheaper, and where the timings came from.

Shared by the cost plot and the answer (summary.json, the report's answer box, the terminal), so they
cannot disagree.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from dsa_bench.crossover import fmt_context
from dsa_bench.ops import MODEL_LABELS
from dsa_bench.report import crossover
from dsa_bench.report.load import Run

def _family_of(model: str) -> str:
    inv = {v: k for k, v in MODEL_LABELS.items()}
    if model in inv:
        return inv[model]
    m = model.lower()
    return "dsa" if ("dsa" in m or "sparse" in m or "v3.2" in m) else "dense"


def cost_frame(c: Optional[pd.DataFrame]) -> pd.DataFrame:
    """cost_curves.csv cleaned: numeric finite positions >= 0 and costs, with `model` and `family` columns
    (family from MODEL_LABELS when the file has none; model from the family's label when it has none)."""
    if c is None or c.empty:
        return pd.DataFrame(columns=["phase", "model", "family", "position_tokens", "usd_per_million_tokens"])
    c = c.copy()
    c["position_tokens"] = pd.to_numeric(c["position_tokens"], errors="coerce")
    c["usd_per_million_tokens"] = pd.to_numeric(c["usd_per_million_tokens"], errors="coerce")
    c = c[np.isfinite(c["position_tokens"]) & np.isfinite(c["usd_per_million_tokens"]) & (c["position_tokens"] >= 0)]
    if "model" not in c.columns:
        c["model"] = (c["family"].map(lambda f: MODEL_LABELS.get(str(f), str(f))) if "family" in c.columns
                      else "cost")
    c["model"] = c["model"].astype(str)
    if "family" not in c.columns:
        c["family"] = [_family_of(m) for m in c["model"]]
    return c


def phases(c: pd.DataFrame) -> list[str]:
    got = set(c["phase"])
    return [p for p in ("prefill", "decode") if p in got] + sorted(got - {"prefill", "decode"})


def cost_crossing(dense: pd.DataFrame, dsa: pd.DataFrame) -> Optional[float]:
    """Position where the DSA curve falls to the dense one: both curves on the union of their positions
    (linear between points), then crossover.curve_crossing. 0.0: DSA never costs more; None: never less."""
    x = np.union1d(dense["position_tokens"], dsa["position_tokens"]).astype(float)
    d = dense.sort_values("position_tokens")
    s = dsa.sort_values("position_tokens")
    yd = np.interp(x, d["position_tokens"], d["usd_per_million_tokens"])
    ys = np.interp(x, s["position_tokens"], s["usd_per_million_tokens"])
    return crossover.curve_crossing(x, yd, ys)


def phase_crossings(c: pd.DataFrame) -> dict[str, Optional[float]]:
    """phase -> cost_crossing of its one dense and one DSA curve (phases with other mixes left out)."""
    out = {}
    for phase in phases(c):
        p = c[c["phase"] == phase]
        models = {f: list(dict.fromkeys(p.loc[p["family"] == f, "model"])) for f in ("dense", "dsa")}
        if len(models["dense"]) == 1 and len(models["dsa"]) == 1:
            out[phase] = cost_crossing(p[p["model"] == models["dense"][0]], p[p["model"] == models["dsa"][0]])
    return out


def timing_text(p: pd.DataFrame) -> str:
    """' (measured kernels)' / ' (roofline: not timed in this run)' from the curves' timing_source, so a
    run that timed one phase does not pass the other phase's roofline off as a measurement."""
    if "timing_source" not in p.columns:
        return ""
    src = set(",".join(p["timing_source"].dropna().astype(str)).split(",")) - {""}
    if src == {"measured"}:
        return " (measured kernels)"
    if src and src <= {"roofline-fallback"}:
        return " (roofline: not timed in this run)"
    if "measured" in src:
        return " (measured, roofline where not timed)"
    return " (roofline model)" if src else ""


def crossing_text(x0: Optional[float], bracket: Optional[tuple[float, float]] = None,
                  held_below: Optional[float] = None) -> str:
    """The panel's crossover sentence, with the positions it lies between and, for measured curves,
    whether it is below the first timed context (where the measured ratios are held)."""
    if x0 is None:
        return "DSA not cheaper at any position shown"
    if x0 <= 0:
        return "DSA cheaper at every position"
    text = f"DSA cheaper from ≈ {fmt_context(x0)} tokens"
    if bracket is not None:
        text += f" (between positions {fmt_context(bracket[0])} and {fmt_context(bracket[1])}"
        if held_below and x0 < held_below:
            text += f"; below the first timed context {fmt_context(held_below)}: not measured"
        text += ")"
    return text


def held_below(run: Run) -> dict[str, float]:
    """phase -> first timed context of the run's measured cost curves (cost_calibration.json)."""
    import json

    path = run.dir / "cost_calibration.json"
    try:
        info = json.loads(path.read_text()) if path.exists() else {}
        return {p: float(r["held_below"]) for p, r in (info.get("crossover_resolution") or {}).items()
                if r.get("held_below")}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def position_bracket(c: pd.DataFrame, phase: str, x0: float) -> Optional[tuple[float, float]]:
    """The two sampled positions of a phase's curves around x0."""
    pos = np.unique(c.loc[c["phase"] == phase, "position_tokens"].astype(float))
    i = int(np.searchsorted(pos, x0))
    return (float(pos[i - 1]), float(pos[i])) if 0 < i < len(pos) else None


def timing_kind(p: pd.DataFrame) -> str:
    """'measured', 'modelled' (roofline) or 'mixed' (measured, roofline where not timed), from timing_source."""
    if "timing_source" not in p.columns:
        return "modelled"
    src = set(",".join(p["timing_source"].dropna().astype(str)).split(",")) - {""}
    if src == {"measured"}:
        return "measured"
    return "mixed" if "measured" in src else "modelled"
