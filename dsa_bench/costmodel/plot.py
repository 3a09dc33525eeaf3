"""cost_curves.png: the model's curves in two panels (prefill, decode), the paper's Figure 3 points on top."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional

import pandas as pd

COLORS = {"dense": "#1f77b4", "dsa": "#d62728"}
MARKERS = {"dense": "o", "dsa": "s"}


def _family(df: pd.DataFrame, labels: dict) -> pd.Series:
    if "family" in df:
        return df["family"]
    inv = {v: k for k, v in labels.items()}
    return df["model"].map(lambda m: inv.get(m, "dense"))


ZOOM_TOKENS = 16384


def _zoom(ins, g: pd.DataFrame, paper_df: Optional[pd.DataFrame], labels: dict, phase: str,
          cross: Optional[float]) -> None:
    """Zoom on the first 16K positions, where the short-sequence modes and k = 2048 shape the DSA curve."""
    sub = g[g["position_tokens"] <= ZOOM_TOKENS]
    if sub["position_tokens"].nunique() < 3:
        ins.set_visible(False)
        return
    for fam in ("dense", "dsa"):
        c = sub[sub["family"] == fam].sort_values("position_tokens")
        ins.plot(c["position_tokens"] / 1024, c["usd_per_million_tokens"], color=COLORS[fam], lw=1.8)
    if paper_df is not None and not paper_df.empty:
        p = paper_df[(paper_df["phase"] == phase) & (paper_df["position_tokens"] <= 2 * ZOOM_TOKENS)]
        fam_p = _family(p, labels)
        for fam in ("dense", "dsa"):
            q = p[fam_p == fam].sort_values("position_tokens")
            ins.plot(q["position_tokens"] / 1024, q["usd_per_million_tokens"], ls=":", lw=1.0, color=COLORS[fam],
                     marker=MARKERS[fam], ms=6, mfc="white", mew=1.5)
    if cross is not None and 0 < cross <= ZOOM_TOKENS:
        ins.axvline(cross / 1024, color="0.45", ls="--", lw=0.9)
    top = sub["usd_per_million_tokens"].max()
    ins.set_xlim(0, ZOOM_TOKENS / 1024)
    ins.set_ylim(0, top * 1.08)
    ins.set_title(f"{phase.capitalize()}: first 16K positions (paper points joined as in the paper)", fontsize=9.5)
    ins.set_xlabel("token position (K tokens)")
    ins.set_ylabel("USD per million tokens")
    if cross is not None and 0 < cross <= ZOOM_TOKENS:
        ins.annotate(f"model crossover {cross / 1024:.1f}K", (cross / 1024, 0.12 * top), xytext=(5, 0),
                     textcoords="offset points", fontsize=8.5, color="0.3")
    ins.grid(alpha=0.3)


def plot_cost_curves(df: pd.DataFrame, paper_df: Optional[pd.DataFrame], path: str | Path,
                     title: Optional[str] = None, model_df: Optional[pd.DataFrame] = None,
                     held_below: Optional[dict] = None) -> Path:
    """Draw both phases side by side; paper points as markers joined by thin dotted lines.

    model_df: the roofline model's curves, drawn dashed beside df's when df holds measured timings;
    held_below: phase -> the first timed context of the measured curves (their crossover's resolution
    says whether it lies below it)."""
    from matplotlib.figure import Figure  # no pyplot: no backend switch, no global figure state

    from dsa_bench.costmodel.model import curve_crossover_texts, curve_crossovers

    path = Path(path)
    labels = {f: df[df["family"] == f]["model"].iloc[0] for f in ("dense", "dsa") if (df["family"] == f).any()}
    phases = [p for p in ("prefill", "decode") if (df["phase"] == p).any()]
    fig = Figure(figsize=(6.6 * len(phases), 8.2))
    axes = fig.subplots(2, len(phases), squeeze=False,
                        gridspec_kw={"height_ratios": [2.0, 1.15]})
    cross = curve_crossovers(df)
    resolution = curve_crossover_texts(df, held_below)
    for col, phase in enumerate(phases):
        ax = axes[0][col]
        g = df[df["phase"] == phase]
        for fam in ("dense", "dsa"):
            c = g[g["family"] == fam].sort_values("position_tokens")
            if c.empty:
                continue
            ax.plot(c["position_tokens"] / 1024, c["usd_per_million_tokens"], color=COLORS[fam], lw=2.2,
                    label=f"{c['model'].iloc[0]} ({'measured' if model_df is not None else 'model'})")
            if model_df is not None:
                mc = model_df[(model_df["phase"] == phase) & (model_df["family"] == fam)].sort_values("position_tokens")
                ax.plot(mc["position_tokens"] / 1024, mc["usd_per_million_tokens"], color=COLORS[fam], lw=1.2,
                        ls="--", alpha=0.8, label=f"{c['model'].iloc[0]} (roofline model)")
        if paper_df is not None and not paper_df.empty:
            p = paper_df[paper_df["phase"] == phase]
            fam_p = _family(p, labels)
            for fam in ("dense", "dsa"):
                q = p[fam_p == fam].sort_values("position_tokens")
                if q.empty:
                    continue
                ax.plot(q["position_tokens"] / 1024, q["usd_per_million_tokens"], ls=":", lw=1.0,
                        color=COLORS[fam], marker=MARKERS[fam], ms=8, mfc="white", mew=2,
                        label=f"{q['model'].iloc[0]} (paper Fig. 3)")
        x = cross.get(phase)
        if x is not None and x > 0:
            ax.axvline(x / 1024, color="0.45", ls="--", lw=1.0)
            ymax = g["usd_per_million_tokens"].max()
            r = resolution[phase]
            lo, hi = r["bracket"]
            where = f"{lo / 1024:g}-{hi / 1024:g}K"
            if r["held_below"] and x < r["held_below"]:
                where += f", below the first timed {r['held_below'] / 1024:g}K: not measured"
            ax.annotate(f"{'measured' if model_df is not None else 'model'} crossover {x / 1024:.1f}K\n({where})",
                        (x / 1024, 0.55 * ymax), xytext=(6, 0), textcoords="offset points", fontsize=8.5, color="0.3")
        _zoom(axes[1][col], g, paper_df, labels, phase, x)
        ax.set_title(f"{phase.capitalize()}", fontsize=12)
        ax.set_xlabel("token position (K tokens, 1K = 1024)")
        ax.set_ylabel("cost (USD per million tokens)")
        ax.set_xlim(0, g["position_tokens"].max() / 1024 * 1.02)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8.5, loc="upper left")
    if title:
        fig.suptitle(textwrap.fill(title, 120), fontsize=10.5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path


__all__ = ["plot_cost_curves"]
