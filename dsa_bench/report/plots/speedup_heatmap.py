"""speedup_heatmap.png: speedup of DSA over the best dense baseline over context x top-k, one panel per
(DSA implementation, phase, batch), with each k's measured crossover beside its row."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from dsa_bench.crossover import fmt_context
from dsa_bench.report import crossover
from dsa_bench.report.load import Run, best_dense, dense_baselines, main_implementations, topk_label
from dsa_bench.report.plots import _style as st
from dsa_bench.report.plots._data import cpu_tag, headline_k, phase_word, pick_keeping

NAME = "speedup_heatmap"
TITLE = "Speedup heatmap"
QUESTION = "Speedup of DSA over the best dense baseline, over context x top-k (one panel per batch)."
MAX_HEATMAPS = 6


# --- data selection ----------------------------------------------------------------------------------

def speedup_panels(ok_total: pd.DataFrame) -> list[tuple[str, str, int, pd.DataFrame]]:
    """(DSA implementation, phase, batch, rows with `speedup` = best dense / DSA) per panel."""
    best = best_dense(ok_total)
    panels = []
    if best.empty:
        return panels
    for impl in main_implementations(ok_total, "dsa"):
        s = ok_total[ok_total["implementation"] == impl].merge(best, on=["phase", "batch", "context"])
        if s.empty:
            continue
        s = s.assign(speedup=s["dense_ms"] / s["latency_ms"])
        for (phase, batch), g in s.groupby(["phase", "batch"], sort=True):
            panels.append((impl, phase, int(batch), g))
    return panels


def row_crossing(g: pd.DataFrame) -> str:
    """The crossover text of one k's row (crossover.find_crossover, the report's rule)."""
    c = crossover.find_crossover(g["context"].astype(float), g["latency_ms"], g["dense_ms"])
    if c.context is not None:  # the measured bracket, then the interpolation inside it
        return f"wins from {fmt_context(c.bracket[0])}-{fmt_context(c.bracket[1])} (~{fmt_context(c.context)})"
    return {"always_faster": "wins everywhere", "never_faster": "never wins"}.get(c.status, "")


# --- drawing -------------------------------------------------------------------------------------------

@st.styled
def build(run: Run, notes: Optional[list[str]] = None) -> Optional[Figure]:
    ok = run.ok("total")
    best = best_dense(ok)
    if best.empty or not main_implementations(ok, "dsa"):
        st.note(notes, "needs successful whole-call rows of both a DSA implementation and a dense baseline "
                       f"(dense baselines here: {', '.join(dense_baselines(run.results)) or 'none'})")
        return None
    panels = speedup_panels(ok)
    if not panels:
        st.note(notes, "DSA and the dense baselines share no (batch, context) point")
        return None
    # Every k is a row of every panel; panels are only dropped beyond MAX_HEATMAPS, and the shown ones
    # are spread evenly (panels holding the headline k first).
    hk = headline_k(ok.loc[ok["family"] == "dsa", "topk"])
    shown = pick_keeping(panels, MAX_HEATMAPS, lambda p: hk is not None and (p[3]["topk"] == hk).any())
    if len(shown) < len(panels):
        st.note(notes, f"{len(shown)} of {len(panels)} (implementation, batch) panels shown")
    all_sp = np.concatenate([p[3]["speedup"].to_numpy(dtype=float) for p in shown])
    all_sp = all_sp[np.isfinite(all_sp) & (all_sp > 0)]
    lim = max(float(np.abs(np.log2(all_sp)).max()) if len(all_sp) else 0.0, 0.25)
    norm = mcolors.TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    cmap = matplotlib.colormaps["RdBu"]
    nctx = max(p[3]["context"].nunique() for p in shown)
    nk = max(p[3]["topk"].nunique() for p in shown)
    ncols = min(2 if nctx <= 5 else 1, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig, axes = st.new_figure(nrows, ncols,
                              figsize=(max(6.5, 1.0 * nctx + 4.0) * ncols, max(3.2, 0.6 * nk + 2.4) * nrows))
    im = None
    for ax, (impl, phase, batch, g) in zip(axes.flat, shown):
        piv = g.pivot_table(index="topk", columns="context", values="speedup", aggfunc="median").sort_index()
        piv = piv.reindex(columns=sorted(piv.columns))
        data = np.log2(piv.to_numpy(dtype=float))
        im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto")
        ax.set_facecolor("#dddddd")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = piv.iat[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2g}×", ha="center", va="center", fontsize=9,
                            color="white" if abs(data[i, j]) > 0.6 * lim else "black")
                else:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#555555")
        ax.set_xticks(range(len(piv.columns)))
        ax.set_xticklabels([st.fmt_tokens(c) for c in piv.columns])
        ax.set_yticks(range(len(piv.index)))
        ax.set_yticklabels([f"k={topk_label(k)}\n{row_crossing(g[g['topk'] == k])}" for k in piv.index], fontsize=8.5)
        ax.grid(False)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("top-k")
        ax.set_title(f"{impl}, {phase_word(phase, run.results)}, batch {batch}", loc="left")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.95, pad=0.02, aspect=25)
    ticks = [t for t in (-4, -3, -2, -1, 0, 1, 2, 3, 4) if -lim <= t <= lim] or [0]
    cb.set_ticks(ticks)
    cb.set_ticklabels([f"{2.0 ** t:g}×" for t in ticks])
    cb.set_label("speedup = best dense / DSA\n(>1: DSA faster, blue)")
    fig.suptitle(f"Where does DSA win? Speedup over the best dense baseline{cpu_tag(run)}",
                 x=0.0, ha="left", fontsize=12, fontweight="bold")
    return fig


@st.styled
def plot(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    fig = build(run, notes)
    return st.save(fig, out_dir, NAME) if fig is not None else None
