"""The report's plots: one module per figure, each writing one PNG.

Each figure module has pure data-selection functions (pandas in, pandas out: what the tests check),
`build(run, notes) -> Figure | None` (the drawing) and `plot(run, out_dir, notes=None) -> Path | None`
(build and save). `plot` returns None, and appends the reason to `notes`, when the run lacks the data
for that figure, so the report can say what is missing instead of showing an empty figure; caveats
about a figure that was drawn are appended to `notes` too.

Importing this package changes no matplotlib state: no backend is chosen and rcParams stay as they
are. Figures are `matplotlib.figure.Figure` objects (no pyplot) and the style is applied with
`matplotlib.rc_context` while a figure is built and saved (see `_style`).

Modules: latency_vs_context, stage_breakdown, memory_vs_context, roofline, speedup_heatmap,
cost_vs_position; `_style` (colours, formatters, axes helpers) and `_data` (shared selection: panels,
the headline k, phases).
"""
from __future__ import annotations

from typing import Callable

from dsa_bench.report.plots import (
    cost_vs_position,
    latency_vs_context,
    memory_vs_context,
    roofline,
    speedup_heatmap,
    stage_breakdown,
)
from dsa_bench.report.plots._style import fmt_bytes, fmt_ms, fmt_ms_tick, fmt_tokens

_MODULES = (latency_vs_context, stage_breakdown, memory_vs_context, roofline, speedup_heatmap, cost_vs_position)

# name -> (function(run, out_dir, notes) -> Path | None, section title, what it answers)
PLOTS: dict[str, tuple[Callable, str, str]] = {m.NAME: (m.plot, m.TITLE, m.QUESTION) for m in _MODULES}

__all__ = ["PLOTS", "fmt_bytes", "fmt_ms", "fmt_ms_tick", "fmt_tokens", *(m.NAME for m in _MODULES)]
