"""latency_vs_context.png: whole-call median latency vs context, one panel per (phase, batch), log-log,
with fitted exponents, the ideal-slope guides of the phase and the measured crossovers."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dsa_bench.crossover import fmt_bracket, fmt_context
from dsa_bench.report import crossover
from dsa_bench.report.fit import fit_power_law
from dsa_bench.report.load import Run, best_dense, main_implementations, topk_label
from dsa_bench.report.plots import _style as st
from dsa_bench.report.plots._data import cpu_tag, phase_kind, phase_kinds, phase_word, pick, pick_topks, sweep_contexts

NAME = "latency_vs_context"
TITLE = "Latency vs context"
QUESTION = ("How does each implementation's latency grow with context, and from which context is DSA faster? "
            "Exponents fitted in log-log; grey guides show the phase's ideal slopes; the crossover is computed.")

QUESTIONS = {
    "prefill": "Does DSA scale linearly in context where dense attention scales quadratically?",
    "decode": "Does DSA's decode step stay nearly flat in context while dense attention's grows linearly?",
    "prefill_step": ("Does DSA's chunked-prefill step stay nearly flat in context while dense attention's "
                     "grows linearly?"),
}

# (dense slope, dense label, DSA slope, DSA label) of the guides, per phase kind
GUIDES = {
    "prefill": (2, "O(L²) guide: dense attention", 1, "O(L·k) guide: sparse attention, fixed k"),
    "decode": (1, "O(L) guide: dense decode step", 0, "O(k) guide: sparse decode step, fixed k"),
    "prefill_step": (1, "O(L) guide: dense prefill step, fixed query count", 0,
                     "O(k) guide: sparse prefill step, fixed k"),
}


# --- data selection ----------------------------------------------------------------------------------

def question(kinds: list[str]) -> str:
    """The figure's title for the phase kinds it shows."""
    if len(kinds) == 1:
        return QUESTIONS[kinds[0]]
    return "How does latency grow with context, DSA vs dense attention?"


def panel_title(results: pd.DataFrame, phase: str, batch: int) -> str:
    return f"{phase_word(phase, results).capitalize()} latency vs context, batch {batch}"


def panels(ok: pd.DataFrame) -> list[tuple[str, int]]:
    return sorted({(p, int(b)) for p, b in zip(ok["phase"], ok["batch"])})


def shown_topks(ok: pd.DataFrame) -> list[int]:
    """DSA k values drawn: one colour each, so at most len(DSA_COLORS), the headline k always kept."""
    return pick_topks(ok.loc[ok["family"] == "dsa", "topk"], len(st.DSA_COLORS))


def panel_series(sub: pd.DataFrame, ks: list[int]) -> list[tuple[str, object, pd.DataFrame]]:
    """(implementation, k, rows sorted by context) of one panel; DSA series only for the k values in ks."""
    out = []
    for impl in dict.fromkeys(sub["implementation"]):
        s_impl = sub[sub["implementation"] == impl]
        dsa = s_impl["family"].iloc[0] == "dsa"
        for k, s in s_impl.groupby("topk", dropna=False, sort=True):
            if dsa and (pd.isna(k) or int(k) not in ks):
                continue
            out.append((impl, k, s.sort_values("context")))
    return out


def crossovers(sub: pd.DataFrame, best: pd.DataFrame, ks: list[int]) -> list[dict]:
    """Crossover of each main DSA implementation and shown k against the best dense baseline
    (dsa_bench.report.crossover.find_crossover, the rule of the report's crossover table)."""
    out = []
    if best.empty:
        return out
    for impl in main_implementations(sub, "dsa"):
        s = sub[sub["implementation"] == impl]
        for k, g in s.groupby("topk", sort=True):
            if int(k) not in ks:
                continue
            m = g.merge(best, on=["phase", "batch", "context"])
            c = crossover.find_crossover(m["context"].astype(float), m["latency_ms"], m["dense_ms"])
            out.append(dict(impl=impl, k=int(k), context=c.context, status=c.status, bracket=c.bracket))
    return out


# --- drawing -------------------------------------------------------------------------------------------

@st.styled
def build(run: Run, notes: Optional[list[str]] = None) -> Optional[Figure]:
    ok = run.ok("total")
    if ok.empty or ok["context"].nunique() < 2:
        st.note(notes, "needs successful whole-call rows at 2 or more context lengths")
        return None
    colors = st.impl_colors(run.results)
    all_panels = panels(ok)
    shown = pick(all_panels, st.MAX_PANELS)
    if len(shown) < len(all_panels):
        st.note(notes, f"batches shown: {', '.join(str(b) for _, b in shown)} of {len(all_panels)}")
    ks = shown_topks(ok)
    all_ks = sorted({int(k) for k in ok.loc[ok["family"] == "dsa", "topk"].dropna()})
    if len(ks) < len(all_ks):
        st.note(notes, f"k values shown: {', '.join(map(str, ks))} of {', '.join(map(str, all_ks))} "
                       "(one colour each; the others are in the tables)")
    kcolor = st.topk_colors(ks)
    dsa_marker = {n: st.MARKERS[(i + 1) % len(st.MARKERS)]
                  for i, n in enumerate(dict.fromkeys(ok.loc[ok["family"] == "dsa", "implementation"]))}
    fig, axes = st.new_figure(len(shown), 1, figsize=(10.5, 4.8 * len(shown)))
    best = best_dense(ok)
    for ax, (phase, batch) in zip(axes[:, 0], shown):
        sub = ok[(ok["phase"] == phase) & (ok["batch"] == batch)]
        bst = best[(best["phase"] == phase) & (best["batch"] == batch)]
        for impl, k, s in panel_series(sub, ks):
            ref = bool(s["is_reference"].iloc[0])
            dsa = s["family"].iloc[0] == "dsa"
            color = kcolor[int(k)] if dsa else colors[impl]
            marker = dsa_marker[impl] if dsa else "o"
            x, y = s["context"].astype(float).to_numpy(), s["latency_ms"].to_numpy()
            klabel = f" k={topk_label(k)}" if dsa else ""
            f = fit_power_law(x, y)
            fit_txt = f": ∝ {f.label()}" if f else ""
            alpha = 0.7 if ref else 1.0
            ax.plot(x, y, marker=marker, ms=5.5, color=color, lw=1.2 if ref else 2.0, ls="--" if ref else "-",
                    alpha=alpha, label=f"{impl}{klabel}{' (reference)' if ref else ''}{fit_txt}", zorder=3)
            q1 = s["latency_ms_q1"].fillna(s["latency_ms"]).to_numpy()
            q3 = s["latency_ms_q3"].fillna(s["latency_ms"]).to_numpy()
            ax.errorbar(x, y, yerr=np.vstack([y - q1, q3 - y]).clip(0), fmt="none", ecolor=color, elinewidth=1,
                        capsize=2, alpha=alpha, zorder=2)
            unused = ~np.isin(x, f.x_used) if f else np.zeros(len(y), bool)
            ax.plot(x[unused], y[unused], ls="none", marker=marker, ms=5.5, mfc="white", mec=color, zorder=4)
        r = run.results
        bad = r[(r["stage"] == "total") & (r["phase"] == phase) & (r["batch"] == batch)
                & r["status"].isin(["oom", "error", "wrong"])]
        for (impl, status), g in bad.groupby(["implementation", "status"]):
            ax.plot(g["context"].astype(float), [0.97] * len(g), ls="none", marker="x", ms=8, mew=2,
                    color=colors.get(impl, "#cc0000"), transform=ax.get_xaxis_transform(), clip_on=False,
                    label=f"{impl}: {status} (not measured)", zorder=5)
        _guides(ax, sub, bst, phase_kind(r, phase), ks)
        # Crossovers: a vertical line in the k's colour, explained in the legend (outside the plot
        # area), so no label sits on the curves.
        for c in crossovers(sub, bst, ks):
            if c["context"] is None:
                continue
            ax.axvline(c["context"], color=kcolor[c["k"]], lw=1.2, ls=":", zorder=1,
                       label=f"crossover: {c['impl']} k={c['k']} faster from L {fmt_bracket(c['bracket'])} "
                             f"(log-log interpolation: ~{fmt_context(c['context'])})")
        st.context_axis(ax, sweep_contexts(sub))
        st.value_axis(ax, st.fmt_ms_tick)
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel("median latency (log scale), bars: IQR")
        ax.set_title(f"{panel_title(r, phase, batch)}{cpu_tag(run)}", loc="left")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], marker="o", ls="none", mfc="white", mec="#555555"))
        labels.append("hollow: launch-overhead regime, not fitted")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title="implementation: fitted exponent ± s.e.", title_fontsize=8.5)
    st.suptitle(fig, question(phase_kinds(run.results, [p for p, _ in shown])))
    return fig


def _guides(ax, sub: pd.DataFrame, best: pd.DataFrame, kind: str, ks: list[int]) -> None:
    """The phase's ideal-slope guides through half of the followed series' last points: dense through
    the best dense baseline, sparse through the smallest shown k of the main DSA implementation."""
    ctx = np.array(sorted(sub["context"].astype(float).unique()))
    if len(ctx) < 2:
        return
    xs = np.geomspace(ctx[0], ctx[-1], 50)
    dense_slope, dense_lbl, dsa_slope, dsa_lbl = GUIDES[kind]
    if not best.empty:
        b = best.sort_values("context").iloc[-1]
        ax.plot(xs, 0.5 * b["dense_ms"] * (xs / float(b["context"])) ** dense_slope, ls=(0, (6, 3)),
                color="#8a8a8a", lw=1.2, label=dense_lbl, zorder=1)
    dsa = sub[(sub["family"] == "dsa") & ~sub["is_reference"]]
    if dsa.empty:
        dsa = sub[sub["family"] == "dsa"]
    dsa = dsa[dsa["topk"].isin(ks)] if dsa["topk"].isin(ks).any() else dsa
    if not dsa.empty:
        k0 = dsa["topk"].dropna().min() if dsa["topk"].notna().any() else None
        s = dsa[dsa["topk"] == k0] if k0 is not None else dsa
        b = s.sort_values("context").iloc[-1]
        ax.plot(xs, 0.5 * b["latency_ms"] * (xs / float(b["context"])) ** dsa_slope, ls=(0, (1, 2)),
                color="#444444", lw=1.4, label=dsa_lbl, zorder=1)


@st.styled
def plot(run: Run, out_dir: Path, notes: Optional[list[str]] = None) -> Optional[Path]:
    fig = build(run, notes)
    return st.save(fig, out_dir, NAME) if fig is not None else None
