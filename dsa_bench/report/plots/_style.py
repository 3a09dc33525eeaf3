"""Look of the report's figures: colours, rc style, formatters, axes helpers, figure creation and saving.

Nothing here touches matplotlib's global state when imported. Figures are made with
`matplotlib.figure.Figure` directly (no pyplot, so no backend is chosen or needed: saving a PNG uses
the Agg canvas on its own), and the style is applied with `matplotlib.rc_context` only while a plot is
built and saved (`styled`), so rcParams are the same after a plot as before it.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable, Optional

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullLocator

from dsa_bench.ops import STAGE_LABELS, STAGES

DPI = 110
MAX_PANELS = 4
DENSE_COLORS = ["#1f5fa8", "#4fa3d9", "#555555", "#7b5ea7", "#2a9d8f"]
DSA_COLORS = ["#d1495b", "#f08a24", "#8c564b", "#e377c2", "#b8860b"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
CROSSOVER_COLOR = "#2b2b2b"

# One colour per DSA stage (ops.STAGES); masked MHA (the short-prefill mode that replaces sparse MLA
# for a call) gets its own. Any stage added to ops.STAGES later falls back to the spare colours.
_STAGE_BASE = {"indexer": "#f4a259", "topk": "#7b5ea7", "sparse_mla": "#5b8e7d", "masked_mha": "#2b6f8f"}
_SPARE = ["#b07aa1", "#9c755f", "#76b7b2", "#edc948"]
STAGE_COLORS = {s: _STAGE_BASE.get(s) or _SPARE[i % len(_SPARE)] for i, s in enumerate(STAGES)}
OTHER_COLOR = "#d9d9d9"  # the whole call's time no stage accounts for
OTHER_EDGE = "#9a9a9a"  # its hatch
OTHER_LABEL = "launch / host / other"


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage)


STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linestyle": "-", "axes.spines.top": False,
    "axes.spines.right": False, "figure.facecolor": "white",
}


# --- figures ---------------------------------------------------------------------------------------

def styled(fn: Callable) -> Callable:
    """Run fn (which builds and saves figures) with the report's style in force, restored afterwards."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize, squeeze: bool = False, **kw):
    """A Figure (no pyplot, no backend) with constrained layout, which makes room for suptitles and
    outside legends; returns (fig, axes) like plt.subplots."""
    layout = kw.pop("layout", "constrained")
    fig = Figure(figsize=figsize, layout=layout)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kw)
    return fig, axes


def save(fig: Figure, out_dir: Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def suptitle(fig: Figure, text: str) -> None:
    fig.suptitle(text, x=0.01, ha="left", fontsize=12, fontweight="bold")


# --- formatters ------------------------------------------------------------------------------------

def fmt_tokens(x: float, _pos=None) -> str:
    """1024 -> 1K, 65536 -> 64K, 1048576 -> 1M, 37 -> 37 (binary: contexts are powers of two)."""
    if x <= 0 or not math.isfinite(x):
        return ""
    for div, suf in ((1 << 20, "M"), (1 << 10, "K")):
        if x >= div:
            v = x / div
            return f"{v:.0f}{suf}" if abs(v - round(v)) < 0.05 else f"{v:.1f}{suf}"
    return f"{x:.0f}"


def fmt_bytes(x: float, _pos=None) -> str:
    """Binary (IEC) units, as memory sizes are read: 1.5 GiB, 576 KiB."""
    if x <= 0 or not math.isfinite(x):
        return ""
    for div, suf in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if x >= div:
            return f"{x / div:.3g} {suf}"
    return f"{x:.0f} B"


def fmt_ms(x: float) -> str:
    """A latency given in ms, three significant digits: 0.0123 -> 12.3 µs, 4.56 -> 4.56 ms, 1234 -> 1.23 s."""
    if not math.isfinite(x):
        return "-"
    if x >= 1000:
        return f"{x / 1000:.3g} s"
    if x >= 100:
        return f"{x:.0f} ms"
    if x >= 1:
        return f"{x:.3g} ms"
    return f"{x * 1000:.3g} µs"


def _eng(unit: str, scale: float = 1.0) -> Callable[[float], str]:
    """value -> engineering notation of value * scale with an SI prefix (matplotlib's EngFormatter)."""
    f = EngFormatter(unit=unit, sep=" ")

    def fmt(v: float) -> str:
        return "" if v <= 0 or not math.isfinite(v) else f.format_data(v * scale)

    return fmt


fmt_ms_tick = _eng("s", 1e-3)  # ms values -> "200 µs", "5 ms", "2 s"
fmt_tflops_tick = _eng("FLOP/s", 1e12)  # TFLOP/s values -> "300 GFLOP/s", "1 PFLOP/s"
fmt_gbps_tick = _eng("B/s", 1e9)  # GB/s values -> "800 GB/s", "4.8 TB/s"


def fmt_usd(v: float, _pos=None) -> str:
    return f"${v:.3g}" if v < 1000 else f"${v:,.0f}"


# --- axes ------------------------------------------------------------------------------------------

def context_axis(ax, contexts, mark_values: bool = True) -> None:
    """Log-2 token axis: the measured contexts as ticks when few, else powers of two (1K, 2K, 4K...)."""
    ax.set_xscale("log", base=2)
    ctx = sorted({int(c) for c in contexts if pd.notna(c)})
    if mark_values and 0 < len(ctx) <= 12:
        ax.set_xticks(ctx)
    else:
        ax.xaxis.set_major_locator(LogLocator(base=2, numticks=10))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_tokens))
    if len(ctx) == 1:
        ax.set_xlim(ctx[0] / 1.6, ctx[0] * 1.6)
    elif ctx:
        ax.set_xlim(ctx[0] / 1.25, ctx[-1] * 1.25)


def bytes_axis(ax) -> None:
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_locator(LogLocator(base=2, numticks=9))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(fmt_bytes))


def value_axis(ax, fmt: Callable[[float], str], axis: str = "y") -> None:
    """Log axis labelled with fmt; 2 and 5 ticks too when it spans less than four decades."""
    a = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    lo, hi = a.get_view_interval()
    subs = (1.0, 2.0, 5.0) if lo > 0 and hi / lo < 1e4 else (1.0,)
    a.set_major_locator(LogLocator(base=10, subs=subs))
    a.set_minor_locator(NullLocator())
    a.set_major_formatter(FuncFormatter(lambda v, _p: fmt(v)))


# --- colours ---------------------------------------------------------------------------------------

def impl_colors(df: pd.DataFrame) -> dict[str, str]:
    """Implementation -> colour: dense ones in blues/greys, DSA ones in reds/oranges, in order of appearance."""
    out: dict[str, str] = {}
    for fam, palette in (("dense", DENSE_COLORS), ("dsa", DSA_COLORS)):
        names = list(dict.fromkeys(df.loc[df["family"] == fam, "implementation"]))
        for i, n in enumerate(names):
            out[n] = palette[i % len(palette)]
    for n in dict.fromkeys(df["implementation"]):
        out.setdefault(n, "#333333")
    return out


def topk_colors(ks) -> dict:
    """k -> colour for the DSA series of a figure (the caller keeps at most len(DSA_COLORS) k values)."""
    return {k: DSA_COLORS[i % len(DSA_COLORS)] for i, k in enumerate(ks)}


def note(notes: Optional[list[str]], msg: str) -> None:
    if notes is not None:
        notes.append(msg)
