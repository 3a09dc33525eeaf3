"""quality.png: recall vs k per method, and the cost / attention-output-error trade-off per k."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

STYLE = {  # method -> (colour, marker, legend label)
    "trained": ("#d62728", "o", "trained indexer"),
    "untrained": ("#7f7f7f", "s", "untrained indexer"),
    "recent": ("#1f77b4", "^", "most recent k tokens"),
}


def _final(evals_df: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation step's rows (evals holds one complete table per evaluation step)."""
    if "step" in evals_df:
        return evals_df[evals_df["step"] == evals_df["step"].max()]
    return evals_df


def plot_quality(evals_df: pd.DataFrame, cost_by_k: Optional[dict[int, float]], path,
                 cost_label: str = "DSA cost at k (USD per million tokens)") -> Path:
    """Write a two-panel PNG to `path` and return it.

    evals_df: run_quality's "evals" (or "summary") table: method, k, recall, output_rel_err (+ step).
    cost_by_k: cost of DSA at each k (e.g. USD per million tokens from the cost model) for the x axis of
    the trade-off panel (k values missing from it are left out there); None plots k itself as the relative
    attention work. cost_label: that axis's label when cost_by_k is given."""
    from matplotlib.figure import Figure  # no pyplot: no backend switch, no global figure state

    df = _final(evals_df)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 4.2))
    ax_r, ax_p = fig.subplots(1, 2)
    try:
        for method, (color, marker, label) in STYLE.items():
            m = df[df["method"] == method].sort_values("k")
            if m.empty:
                continue
            ax_r.plot(m["k"], m["recall"], color=color, marker=marker, label=label)
            known = m[m["k"].map(lambda k: cost_by_k is None or int(k) in cost_by_k)]
            x = known["k"] if cost_by_k is None else known["k"].map(lambda k: cost_by_k[int(k)])
            ax_p.plot(x, known["output_rel_err"], color=color, marker=marker, label=label)
            # Every method shares the x of a given k, so labelling the trained curve labels all.
            for xi, yi, k in zip(x, known["output_rel_err"], known["k"]) if method == "trained" else ():
                ax_p.annotate(f"k={int(k)}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7,
                              color=color)
        ks = sorted(int(k) for k in df["k"].unique())
        ax_r.set_xscale("log", base=2)
        ax_r.set_xticks(ks, [str(k) for k in ks])
        ax_r.set_xlabel("k (tokens selected per query)")
        ax_r.set_ylabel("attention-mass recall")
        ax_r.set_ylim(0, 1.02)
        ax_r.set_title("Share of the main attention inside the top-k")
        ax_r.grid(alpha=0.3)
        ax_r.legend(fontsize=8)
        if cost_by_k is None:
            ax_p.set_xscale("log", base=2)
            ax_p.set_xticks(ks, [str(k) for k in ks])
            ax_p.set_xlabel("relative attention work (k)")
        else:
            ax_p.set_xlabel(cost_label)
        ax_p.set_ylabel("attention output rel. error vs dense")
        ax_p.set_ylim(bottom=0)
        ax_p.margins(x=0.08)  # room for the k labels of the last point
        ax_p.set_title("Cost vs quality (lower left is better)")
        ax_p.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        return path
