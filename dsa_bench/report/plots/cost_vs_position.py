"""cost_vs_position.png: cost per million tokens vs token position, prefill and decode panels, from the
run's cost_curves.csv (written by the cost model).

Linear axes, as in DeepSeek-V3.2's Figure 3: the cost of a token grows about linearly with its
position for dense attention and flattens for DSA. Where a dense and a DSA curve cross, the position
is found by `dsa_bench.report.crossover.curve_crossing` (the cost model's rule), drawn as a dotted
line, and stated in the panel's title and legend, not on the curves.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from dsa_bench.crossover import fmt_context
from dsa_bench.ops import MODEL_LABELS
from dsa_bench.report import crossover
from dsa_bench.report.load import Run
from dsa_bench.report.plots import _style as st

NAME = "cost_vs_position"
TITLE = "Cost per million tokens"
QUESTION = "Cost per million tokens vs position in the sequence, prefill and decode."
PHASE_TITLES = {"prefill": "prefill: cost of a prompt token", "decode": "decode: cost of a generated token"}


# --- data selection ----------------------------------------------------------------------------------

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


# --- drawing -------------------------------------------------------------------------------------------

@st.styled
def build(run: Run, notes: Optional[list[str]] = None) -> Optional[Figure]:
    if run.cost_curves is None or run.cost_curves.empty:
        st.note(notes, "this run has no cost data (cost_curves.csv, written by the cost model) in its directory")
        return None
    c = cost_frame(run.cost_curves)
    if c.empty:
        st.note(notes, "cost_curves.csv has no numeric cost values")
        return None
    shown = phases(c)
    cross = phase_crossings(c)
    held = held_below(run)
    fig, axes = st.new_figure(1, len(shown), figsize=(6.4 * len(shown), 4.8))
    palette: dict[str, str] = {}
    for fam, pal in (("dense", st.DENSE_COLORS), ("dsa", st.DSA_COLORS)):
        for i, m in enumerate(dict.fromkeys(c.loc[c["family"] == fam, "model"])):
            palette[m] = pal[i % len(pal)]
    for ax, phase in zip(axes[0], shown):
        p = c[c["phase"] == phase]
        for m in dict.fromkeys(p["model"]):
            s = p[p["model"] == m].sort_values("position_tokens")
            ax.plot(s["position_tokens"], s["usd_per_million_tokens"], color=palette.get(m, "#333333"), lw=2.2,
                    marker="o" if len(s) <= 12 else None, ms=4, label=m)
        title = PHASE_TITLES.get(phase, phase) + timing_text(p)
        if phase in cross:
            x0 = cross[phase]
            bracket = position_bracket(c, phase, x0) if x0 is not None and x0 > 0 else None
            if x0 is not None and x0 > 0:
                where = f" (positions {fmt_context(bracket[0])}-{fmt_context(bracket[1])})" if bracket else ""
                ax.axvline(x0, color=st.CROSSOVER_COLOR, lw=1, ls=":", label=f"crossover ≈ {fmt_context(x0)} tokens{where}")
            title += f"\n{crossing_text(x0, bracket, held.get(phase))}"  # above the plot area: never over a curve
        xmax = float(p["position_tokens"].max())
        step = 2 ** max(0, math.ceil(math.log2(max(xmax, 1) / 8)))
        ax.xaxis.set_major_locator(MultipleLocator(step))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: "0" if v == 0 else st.fmt_tokens(v)))
        ax.set_xlim(0, xmax * 1.02)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(st.fmt_usd))
        ax.set_xlabel("token position in the sequence (tokens)")
        ax.set_ylabel("USD per million tokens")
        ax.set_title(title, loc="left")
        ax.legend(loc="best", frameon=True, framealpha=0.9)
    gpu = str(c["gpu"].dropna().iloc[0]) if "gpu" in c.columns and c["gpu"].notna().any() else None
    hour = (pd.to_numeric(c["gpu_hour_usd"], errors="coerce").dropna() if "gpu_hour_usd" in c.columns
            else pd.Series(dtype=float))
    price = float(hour.iloc[0]) if len(hour) else run.gpu_hour_usd
    where = " ".join(x for x in (gpu or "", f"at ${price:g}/GPU-hour" if price else "") if x)
    st.suptitle(fig, "What does a million tokens cost at each position in the sequence?"
                + (f"  ({where})" if where else ""))
    st.note(notes, "from the cost model's cost_curves.csv in the run directory (whole model, all layers), not from "
                   "this run's attention timings alone")
    return fig


@st.styled
def plot(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    fig = build(run, notes)
    return st.save(fig, out_dir, NAME) if fig is not None else None
