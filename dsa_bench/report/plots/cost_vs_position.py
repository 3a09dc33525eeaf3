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

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from dsa_bench.crossover import fmt_context
from dsa_bench.report.costdata import (  # noqa: F401 - the data selection lives there, shared with the answer
    cost_crossing, cost_frame, crossing_text, held_below, phase_crossings, phases, position_bracket, timing_text)
from dsa_bench.report.load import Run
from dsa_bench.report.plots import _style as st

NAME = "cost_vs_position"
TITLE = "Cost per token of the full model"
QUESTION = ("Cost per token of the full model (all layers, by the cost model): USD per million tokens vs position in "
            "the sequence, prefill and decode; a panel says whether its attention times are measured or modelled.")
PHASE_TITLES = {"prefill": "prefill: cost of a prompt token", "decode": "decode: cost of a generated token"}


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
    from dsa_bench.report.answer import pricing_text
    from dsa_bench.report.fullcost import full_model_cost

    shown = phases(c)
    fc = full_model_cost(run)  # the answer's figures: the panels state the same crossovers
    cross = {p["phase"]: p["crossover_tokens"] for p in fc["phases"]} if fc else {}
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
    st.suptitle(fig, "What does a million tokens cost at each position in the sequence?"
                + (f"  ({pricing_text(fc)})" if fc else ""))
    st.note(notes, "from the cost model's cost_curves.csv in the run directory (whole model, all layers), not from "
                   "this run's attention timings alone")
    return fig


@st.styled
def plot(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    fig = build(run, notes)
    return st.save(fig, out_dir, NAME) if fig is not None else None
